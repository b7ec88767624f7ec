//! Readable histories: the timeline `reprise history` prints and the
//! summary `reprise status` prints, for local databases and servers alike.

use std::collections::{BTreeMap, HashMap};

use super::output::Format;
use crate::journal::{Event, RecordedEvent};
use crate::store::{ExecutionRecord, HistoryExport};

/// `reprise history`: the timeline, or with `--json` the export
/// `replay --history FILE` reads.
pub fn print_history(export: &HistoryExport, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(export)?),
        Format::Human => print_timeline(&export.execution, &export.events),
    }
    Ok(())
}

fn print_timeline(record: &ExecutionRecord, events: &[RecordedEvent]) {
    println!(
        "execution {} (run {}) type {} — {}",
        record.workflow_id,
        record.run_id,
        record.workflow_type,
        record.status.as_str()
    );
    // seq → the saga step its compensation undoes, to mark every line of
    // the compensation chain (schedule, attempts, outcome).
    let compensations: HashMap<u64, &str> = events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            Event::ActivityScheduled { seq, options, .. } => {
                options.compensates.as_deref().map(|step| (*seq, step))
            }
            _ => None,
        })
        .collect();
    for recorded in events {
        let compensation = match &recorded.event {
            Event::ActivityAttemptFailed { seq, .. }
            | Event::ActivityCompleted { seq, .. }
            | Event::ActivityFailed { seq, .. } => compensations.get(seq).copied(),
            _ => None,
        };
        let detail = match &recorded.event {
            Event::WorkflowStarted {
                input,
                continued_from,
                ..
            } => match continued_from {
                Some(run_id) => format!("input {input}, continuing run {run_id}"),
                None => format!("input {input}"),
            },
            Event::ClockRead {
                clock, value_ns, ..
            } => format!("{clock:?} clock = {value_ns} ns"),
            Event::RandomDrawn { bytes, .. } => format!("{} bytes", bytes.len() / 2),
            Event::ActivityScheduled {
                name,
                input,
                idempotency_key,
                options,
                ..
            } => match &options.compensates {
                Some(step) => {
                    format!("↺ compensates `{step}`: {name}({input}) key {idempotency_key}")
                }
                None => format!("{name}({input}) key {idempotency_key}"),
            },
            Event::ActivityAttemptFailed {
                attempt,
                error,
                retry_at_ms,
                ..
            } => format!(
                "attempt {attempt} failed: {}: {}{}",
                error.error_type,
                error.message,
                retry_at_ms
                    .map(|at| format!(" — retry at {}", utc_time(at as i64)))
                    .unwrap_or_default()
            ),
            Event::ActivityCompleted {
                attempt, output, ..
            } => format!("attempt {attempt} → {output}"),
            Event::ActivityFailed { failure, .. } => format!(
                "{:?} after {} attempts: {}",
                failure.reason, failure.attempts, failure.last_error.message
            ),
            Event::TimerStarted {
                duration_ms,
                fire_at_ms,
                ..
            } => format!(
                "{duration_ms} ms, fires at {}",
                utc_time(*fire_at_ms as i64)
            ),
            Event::TimerFired { .. } => String::new(),
            Event::TimersPolled { timers, ready, .. } => {
                format!("timers {timers:?}: fired {ready:?}")
            }
            Event::SignalAwaited {
                name, deadline_ms, ..
            } => match deadline_ms {
                Some(deadline) => {
                    format!("waits for `{name}` until {}", utc_time(*deadline as i64))
                }
                None => format!("waits for `{name}`"),
            },
            Event::SignalReceived {
                name,
                payload,
                message_id,
                ..
            } => format!("`{name}` {payload} (id {message_id})"),
            Event::SignalTimedOut { .. } | Event::UpdateTimedOut { .. } => String::new(),
            Event::UpdateAwaited {
                names, deadline_ms, ..
            } => {
                let names = names.join("`, `");
                match deadline_ms {
                    Some(deadline) => format!(
                        "waits for an update `{names}` until {}",
                        utc_time(*deadline as i64)
                    ),
                    None => format!("waits for an update `{names}`"),
                }
            }
            Event::UpdateReceived {
                update_id,
                name,
                args,
                ..
            } => format!("`{name}` {args} (id {update_id})"),
            Event::UpdateCompleted {
                update_id, output, ..
            } => format!("update {update_id} → {output}"),
            Event::UpdateFailed {
                update_id, error, ..
            } => format!("update {update_id} failed: {error}"),
            Event::CancellationDelivered { wait } => format!("delivered to blocking call #{wait}"),
            Event::ChildStarted {
                workflow_type,
                workflow_id,
                input,
                ..
            } => format!("{workflow_type}({input}) as {workflow_id}"),
            Event::ChildCompleted { output, .. } => format!("→ {output}"),
            Event::ChildFailed { error, .. } => error.to_string(),
            Event::WorkflowCompleted { output } => format!("output {output}"),
            Event::WorkflowFailed { error } | Event::WorkflowCancelled { error } => {
                error.to_string()
            }
            Event::WorkflowTerminated { reason } => reason.clone(),
            Event::SearchAttributesUpserted { attributes, .. } => {
                format!("search attributes {attributes}")
            }
            Event::ModuleUpgraded {
                from_digest,
                module_digest,
            } => format!("module {:.12}… → {:.12}…", from_digest, module_digest),
            Event::PatchMarked { change_id } => format!("patch `{change_id}`: new path"),
            Event::WorkflowContinuedAsNew {
                input, next_run_id, ..
            } => format!("next run {next_run_id} with input {input}"),
        };
        let detail = match compensation {
            Some(step) => format!("↺ `{step}`: {detail}"),
            None => detail,
        };
        let seq = recorded
            .event
            .command_seq()
            .map(|seq| format!("seq {seq:>3}"))
            .unwrap_or_else(|| "       ".to_string());
        println!(
            "{:>5}  {}  {seq}  {:<22} {detail}",
            recorded.position,
            utc_time(recorded.recorded_at_ms as i64),
            recorded.event.kind()
        );
    }
}

/// `2026-11-27 23:50:01.123` (UTC) for milliseconds since the epoch.
pub fn utc_time(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day
/// number (0 = 1970-01-01).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The summary `reprise status` prints: state, what it waits for,
/// attempts so far, the last error — or the same as JSON.
pub fn print_status(record: &ExecutionRecord, events: &[RecordedEvent], format: Format) {
    let summary = summarize(events);
    if format == Format::Json {
        /// The result goes out as recorded (a `Value` would round numbers).
        #[derive(serde::Serialize)]
        struct StatusJson<'a> {
            workflow_id: &'a str,
            run_id: &'a str,
            workflow_type: &'a str,
            status: &'a str,
            waiting_for: &'a [String],
            attempts: u32,
            failed_attempts: u32,
            last_error: Option<&'a str>,
            compensations: u32,
            result: Option<Box<serde_json::value::RawValue>>,
        }
        let answer = StatusJson {
            workflow_id: &record.workflow_id,
            run_id: &record.run_id,
            workflow_type: &record.workflow_type,
            status: record.status.as_str(),
            waiting_for: &summary.waiting_for,
            attempts: summary.attempts,
            failed_attempts: summary.failed_attempts,
            last_error: summary.last_error.as_deref(),
            compensations: summary.compensations,
            result: record
                .result
                .clone()
                .and_then(|text| serde_json::value::RawValue::from_string(text).ok()),
        };
        match serde_json::to_string(&answer) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("error: the status could not be written as JSON: {error}"),
        }
        return;
    }
    let rows = [
        ("workflow id", record.workflow_id.clone()),
        ("run id", record.run_id.clone()),
        ("type", record.workflow_type.clone()),
        ("module", record.module_digest.clone()),
        ("status", record.status.as_str().to_string()),
        ("started", utc_time(record.created_at_ms)),
        ("updated", utc_time(record.updated_at_ms)),
        ("waiting for", summary.waiting_for.join("; ")),
        (
            "attempts",
            format!("{} ({} failed)", summary.attempts, summary.failed_attempts),
        ),
        ("last error", summary.last_error.unwrap_or_default()),
        ("compensations", summary.compensations.to_string()),
        ("result", record.result.clone().unwrap_or_default()),
    ];
    for (label, value) in rows {
        if !value.is_empty() {
            println!("{label:<14}{value}");
        }
    }
}

/// What an execution is doing and has been through, read off its history.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    /// What it waits for now (empty when it has finished or runs).
    pub waiting_for: Vec<String>,
    /// Activity attempts so far, and how many of them failed.
    pub attempts: u32,
    pub failed_attempts: u32,
    /// The newest activity error: "Type: message".
    pub last_error: Option<String>,
    pub compensations: u32,
}

pub fn summarize(events: &[RecordedEvent]) -> Summary {
    let mut summary = Summary::default();
    // seq → what it waits for, removed when resolved.
    let mut open: BTreeMap<u64, String> = BTreeMap::new();
    for recorded in events {
        match &recorded.event {
            Event::ActivityScheduled {
                seq, name, options, ..
            } => {
                if options.compensates.is_some() {
                    summary.compensations += 1;
                }
                open.insert(*seq, format!("activity `{name}` (seq {seq})"));
            }
            Event::ActivityAttemptFailed {
                seq,
                attempt,
                error,
                retry_at_ms,
                ..
            } => {
                summary.attempts += 1;
                summary.failed_attempts += 1;
                summary.last_error = Some(format!("{}: {}", error.error_type, error.message));
                if let (Some(waiting), Some(at)) = (open.get_mut(seq), retry_at_ms) {
                    let name = waiting.split(" (").next().unwrap_or_default().to_string();
                    *waiting = format!(
                        "{name} (seq {seq}): attempt {} at {}",
                        attempt + 1,
                        utc_time(*at as i64)
                    );
                }
            }
            Event::ActivityCompleted { seq, .. } => {
                summary.attempts += 1;
                open.remove(seq);
            }
            Event::ActivityFailed { seq, .. }
            | Event::TimerFired { seq }
            | Event::SignalReceived { seq, .. }
            | Event::SignalTimedOut { seq }
            | Event::UpdateReceived { seq, .. }
            | Event::UpdateTimedOut { seq }
            | Event::ChildCompleted { seq, .. }
            | Event::ChildFailed { seq, .. } => {
                open.remove(seq);
            }
            Event::TimerStarted {
                seq, fire_at_ms, ..
            } => {
                open.insert(
                    *seq,
                    format!(
                        "timer (seq {seq}) firing at {}",
                        utc_time(*fire_at_ms as i64)
                    ),
                );
            }
            Event::SignalAwaited { seq, name, .. } => {
                open.insert(*seq, format!("signal `{name}` (seq {seq})"));
            }
            Event::UpdateAwaited { seq, names, .. } => {
                open.insert(*seq, format!("update `{}` (seq {seq})", names.join("`, `")));
            }
            Event::ChildStarted {
                seq, workflow_id, ..
            } => {
                open.insert(*seq, format!("child workflow `{workflow_id}` (seq {seq})"));
            }
            event if event.is_terminal() => open.clear(),
            _ => {}
        }
    }
    summary.waiting_for = open.into_values().collect();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_reads_like_a_calendar() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc_time(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(utc_time(1_795_824_000_000), "2026-11-28 00:00:00.000");
    }
}
