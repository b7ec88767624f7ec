//! Journal events → finished spans.
//!
//! The span tree of an execution:
//!
//! ```text
//! workflow {type}                      WorkflowStarted → terminal event
//! ├─ activity {name}                   ActivityScheduled → ActivityCompleted | ActivityFailed
//! │  └─ attempt {n} {name}             attempt start → ActivityAttemptFailed | ActivityCompleted
//! ├─ compensation {step}: {name}       (an activity that compensates a saga step)
//! ├─ timer                             TimerStarted → TimerFired
//! ├─ signal {name}                     SignalAwaited → SignalReceived | SignalTimedOut
//! ├─ child workflow {type}             ChildStarted → ChildCompleted | ChildFailed
//! └─ activation                        instantiation → first wait (replay cost)
//! ```
//!
//! Ids are derived, not drawn: the same event always yields the same span
//! id, and the trace id comes from the journal.

use sha2::{Digest, Sha256};

use crate::journal::{Event, History, RecordedEvent, Seq, TraceContext};
use crate::store::ExecutionRecord;

/// A span attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    Text(String),
    Int(i64),
}

impl From<&str> for Attribute {
    fn from(text: &str) -> Attribute {
        Attribute::Text(text.to_string())
    }
}

impl From<String> for Attribute {
    fn from(text: String) -> Attribute {
        Attribute::Text(text)
    }
}

impl From<u64> for Attribute {
    fn from(value: u64) -> Attribute {
        Attribute::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Attribute {
    fn from(value: u32) -> Attribute {
        Attribute::Int(i64::from(value))
    }
}

/// A finished span, ready to export.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub attributes: Vec<(&'static str, Attribute)>,
    /// Set when the span's work failed: the error, for the span status.
    pub error: Option<String>,
}

/// What kind of span an id is for.
#[derive(Clone, Copy)]
enum SpanKind {
    Workflow,
    Activity,
    Attempt,
    Timer,
    Signal,
    Child,
    Activation,
}

/// The id of a span of the execution `run_id`, from what it stands for.
fn span_id(run_id: &str, kind: SpanKind, seq: u64, attempt: u64) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(run_id.as_bytes())
        .chain_update([kind as u8])
        .chain_update(seq.to_le_bytes())
        .chain_update(attempt.to_le_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    if id == [0u8; 8] {
        // All zeros is the invalid span id in W3C trace context.
        id[7] = 1;
    }
    id
}

fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = hex::decode(text).ok()?;
    let array: [u8; N] = bytes.try_into().ok()?;
    (array != [0u8; N]).then_some(array)
}

/// A new trace for an execution started without a caller's context.
pub fn new_root_trace() -> TraceContext {
    let mut trace_id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut trace_id);
    TraceContext {
        trace_id: hex::encode(trace_id),
        parent_span_id: None,
    }
}

/// The caller's context from a W3C `traceparent` header
/// (`00-<trace id>-<parent id>-<flags>`); `None` if malformed.
pub fn trace_from_traceparent(header: &str) -> Option<TraceContext> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = version.len() == 2
        && version != "ff"
        && flags.len() == 2
        && trace_id.len() == 32
        && parent_id.len() == 16;
    if !well_formed || (version == "00" && parts.next().is_some()) {
        return None;
    }
    decode_hex::<16>(trace_id)?;
    decode_hex::<8>(parent_id)?;
    Some(TraceContext {
        trace_id: trace_id.to_ascii_lowercase(),
        parent_span_id: Some(parent_id.to_ascii_lowercase()),
    })
}

/// The execution's trace id: the one its `WorkflowStarted` recorded, or
/// (for executions recorded before traces were) one derived from its run id.
fn trace_of(record: &ExecutionRecord, history: &History) -> ([u8; 16], Option<[u8; 8]>) {
    if let Some(trace) = history.trace()
        && let Some(trace_id) = decode_hex(&trace.trace_id)
    {
        let parent = trace.parent_span_id.as_deref().and_then(decode_hex);
        return (trace_id, parent);
    }
    let digest = Sha256::digest(record.run_id.as_bytes());
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(&digest[..16]);
    (trace_id, None)
}

/// The execution's trace id, 32 hex digits.
pub fn trace_id_hex(record: &ExecutionRecord, history: &History) -> String {
    hex::encode(trace_of(record, history).0)
}

/// The W3C `traceparent` attempt `attempt` of the activity at `seq`
/// passes on: its own span is the parent of whatever the activity does.
pub fn attempt_traceparent(trace_id_hex: &str, run_id: &str, seq: Seq, attempt: u32) -> String {
    let span = span_id(run_id, SpanKind::Attempt, seq, u64::from(attempt));
    format!("00-{trace_id_hex}-{}-01", hex::encode(span))
}

/// Builds spans for one execution.
struct Builder<'a> {
    record: &'a ExecutionRecord,
    trace_id: [u8; 16],
    root_parent: Option<[u8; 8]>,
}

impl Builder<'_> {
    fn id(&self, kind: SpanKind, seq: u64, attempt: u64) -> [u8; 8] {
        span_id(&self.record.run_id, kind, seq, attempt)
    }

    fn root(&self) -> [u8; 8] {
        self.id(SpanKind::Workflow, 0, 0)
    }

    fn span(
        &self,
        name: String,
        span_id: [u8; 8],
        parent_span_id: Option<[u8; 8]>,
        (start_ms, end_ms): (u64, u64),
    ) -> SpanRecord {
        SpanRecord {
            trace_id: self.trace_id,
            span_id,
            parent_span_id,
            name,
            start_ms,
            end_ms: end_ms.max(start_ms),
            attributes: vec![
                ("reprise.tenant", self.record.tenant.as_str().into()),
                (
                    "reprise.workflow.type",
                    self.record.workflow_type.as_str().into(),
                ),
                (
                    "reprise.workflow.id",
                    self.record.workflow_id.as_str().into(),
                ),
                ("reprise.run.id", self.record.run_id.as_str().into()),
            ],
            error: None,
        }
    }
}

/// When attempt `attempt` of the activity at `seq` started: its schedule
/// for the first, the journaled retry time of the one before for the rest.
pub(super) fn attempt_started_ms(
    history: &History,
    seq: Seq,
    attempt: u32,
    scheduled_ms: u64,
) -> u64 {
    if attempt <= 1 {
        return scheduled_ms;
    }
    history
        .events()
        .iter()
        .rev()
        .find_map(|recorded| match &recorded.event {
            Event::ActivityAttemptFailed {
                seq: failed,
                attempt: previous,
                retry_at_ms,
                ..
            } if *failed == seq && *previous + 1 == attempt => {
                Some(retry_at_ms.unwrap_or(recorded.recorded_at_ms))
            }
            _ => None,
        })
        .unwrap_or(scheduled_ms)
}

/// The spans that `new_events`, just appended to `history`, end.
pub fn ended_by(
    record: &ExecutionRecord,
    history: &History,
    new_events: &[RecordedEvent],
) -> Vec<SpanRecord> {
    let (trace_id, root_parent) = trace_of(record, history);
    let builder = Builder {
        record,
        trace_id,
        root_parent,
    };
    let mut spans = Vec::new();
    for recorded in new_events {
        let end_ms = recorded.recorded_at_ms;
        let command = |seq: Seq| history.command(seq);
        match &recorded.event {
            Event::ActivityAttemptFailed {
                seq,
                attempt,
                error,
                retry_at_ms,
                ..
            } => {
                if let Some(scheduled) = command(*seq) {
                    let mut span =
                        attempt_span(&builder, history, scheduled, *seq, *attempt, end_ms);
                    span.attributes.push(("reprise.outcome", "failed".into()));
                    span.attributes
                        .push(("error.type", error.error_type.as_str().into()));
                    if let Some(retry_at) = retry_at_ms {
                        span.attributes.push((
                            "reprise.retry.delay_ms",
                            retry_at.saturating_sub(end_ms).into(),
                        ));
                    }
                    span.error = Some(format!("{}: {}", error.error_type, error.message));
                    spans.push(span);
                }
            }
            Event::ActivityCompleted { seq, attempt, .. } => {
                if let Some(scheduled) = command(*seq) {
                    let mut span =
                        attempt_span(&builder, history, scheduled, *seq, *attempt, end_ms);
                    span.attributes
                        .push(("reprise.outcome", "completed".into()));
                    spans.push(span);
                    let mut call = activity_span(&builder, scheduled, *seq, end_ms);
                    call.attributes
                        .push(("reprise.outcome", "completed".into()));
                    call.attributes
                        .push(("reprise.attempts", (*attempt).into()));
                    spans.push(call);
                }
            }
            Event::ActivityFailed { seq, failure } => {
                if let Some(scheduled) = command(*seq) {
                    let mut call = activity_span(&builder, scheduled, *seq, end_ms);
                    call.attributes.push(("reprise.outcome", "failed".into()));
                    call.attributes
                        .push(("reprise.attempts", failure.attempts.into()));
                    call.attributes
                        .push(("error.type", failure.last_error.error_type.as_str().into()));
                    call.error = Some(format!(
                        "{:?}: {}",
                        failure.reason, failure.last_error.message
                    ));
                    spans.push(call);
                }
            }
            Event::TimerFired { seq } => {
                if let Some(started) = command(*seq) {
                    let mut span = builder.span(
                        "timer".to_string(),
                        builder.id(SpanKind::Timer, *seq, 0),
                        Some(builder.root()),
                        (started.recorded_at_ms, end_ms),
                    );
                    span.attributes.push(("reprise.seq", (*seq).into()));
                    spans.push(span);
                }
            }
            Event::SignalReceived { seq, .. } | Event::SignalTimedOut { seq } => {
                if let Some(awaited) = command(*seq) {
                    let name = match &awaited.event {
                        Event::SignalAwaited { name, .. } => name.as_str(),
                        _ => "",
                    };
                    let mut span = builder.span(
                        format!("signal {name}"),
                        builder.id(SpanKind::Signal, *seq, 0),
                        Some(builder.root()),
                        (awaited.recorded_at_ms, end_ms),
                    );
                    let outcome = if matches!(recorded.event, Event::SignalTimedOut { .. }) {
                        "timed_out"
                    } else {
                        "received"
                    };
                    span.attributes.push(("reprise.seq", (*seq).into()));
                    span.attributes.push(("reprise.outcome", outcome.into()));
                    spans.push(span);
                }
            }
            Event::ChildCompleted { seq, .. } | Event::ChildFailed { seq, .. } => {
                if let Some(Event::ChildStarted {
                    workflow_type,
                    workflow_id,
                    ..
                }) = command(*seq).map(|started| &started.event)
                {
                    let started_ms = command(*seq).map_or(end_ms, |started| started.recorded_at_ms);
                    let mut span = builder.span(
                        format!("child workflow {workflow_type}"),
                        builder.id(SpanKind::Child, *seq, 0),
                        Some(builder.root()),
                        (started_ms, end_ms),
                    );
                    span.attributes.push(("reprise.seq", (*seq).into()));
                    span.attributes
                        .push(("reprise.child.workflow.id", workflow_id.as_str().into()));
                    if let Event::ChildFailed { error, .. } = &recorded.event {
                        span.error = Some(error.to_string());
                    }
                    spans.push(span);
                }
            }
            event if event.is_terminal() => {
                let started_ms = history
                    .events()
                    .first()
                    .map_or(end_ms, |first| first.recorded_at_ms);
                let mut span = builder.span(
                    format!("workflow {}", record.workflow_type),
                    builder.root(),
                    builder.root_parent,
                    (started_ms, end_ms),
                );
                span.attributes
                    .push(("reprise.outcome", event.kind().into()));
                span.error = match event {
                    Event::WorkflowFailed { error } | Event::WorkflowCancelled { error } => {
                        Some(error.to_string())
                    }
                    Event::WorkflowTerminated { reason } => Some(reason.clone()),
                    _ => None,
                };
                spans.push(span);
            }
            _ => {}
        }
    }
    spans
}

/// The name and attributes an activity's spans share.
fn activity_identity(scheduled: &RecordedEvent) -> (String, Vec<(&'static str, Attribute)>) {
    let Event::ActivityScheduled {
        name,
        idempotency_key,
        options,
        ..
    } = &scheduled.event
    else {
        return ("activity".to_string(), Vec::new());
    };
    let mut attributes = vec![
        ("reprise.activity.name", name.as_str().into()),
        ("reprise.idempotency_key", idempotency_key.as_str().into()),
    ];
    let label = match &options.compensates {
        Some(step) => {
            attributes.push(("reprise.compensates", step.as_str().into()));
            format!("compensation {step}: {name}")
        }
        None => format!("activity {name}"),
    };
    (label, attributes)
}

fn activity_span(
    builder: &Builder<'_>,
    scheduled: &RecordedEvent,
    seq: Seq,
    end_ms: u64,
) -> SpanRecord {
    let (label, attributes) = activity_identity(scheduled);
    let mut span = builder.span(
        label,
        builder.id(SpanKind::Activity, seq, 0),
        Some(builder.root()),
        (scheduled.recorded_at_ms, end_ms),
    );
    span.attributes.push(("reprise.seq", seq.into()));
    span.attributes.extend(attributes);
    span
}

fn attempt_span(
    builder: &Builder<'_>,
    history: &History,
    scheduled: &RecordedEvent,
    seq: Seq,
    attempt: u32,
    end_ms: u64,
) -> SpanRecord {
    let (label, attributes) = activity_identity(scheduled);
    let name = label.strip_prefix("activity ").unwrap_or(&label);
    let started_ms = attempt_started_ms(history, seq, attempt, scheduled.recorded_at_ms);
    let mut span = builder.span(
        format!("attempt {attempt} {name}"),
        builder.id(SpanKind::Attempt, seq, u64::from(attempt)),
        Some(builder.id(SpanKind::Activity, seq, 0)),
        (started_ms, end_ms),
    );
    span.attributes.push(("reprise.seq", seq.into()));
    span.attributes.push(("reprise.attempt", attempt.into()));
    span.attributes.extend(attributes);
    span
}

/// The span of one activation: instantiation and replay, up to the first
/// wait or the end.
pub fn activation(
    record: &ExecutionRecord,
    history: &History,
    started_ms: u64,
    ended_ms: u64,
    replayed: u64,
) -> SpanRecord {
    let (trace_id, root_parent) = trace_of(record, history);
    let builder = Builder {
        record,
        trace_id,
        root_parent,
    };
    let mut span = builder.span(
        "activation".to_string(),
        builder.id(SpanKind::Activation, started_ms, replayed),
        Some(builder.root()),
        (started_ms, ended_ms),
    );
    span.attributes
        .push(("reprise.replayed_commands", replayed.into()));
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_garbage() {
        let parsed =
            trace_from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .expect("valid");
        assert_eq!(parsed.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(parsed.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(trace_from_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn span_ids_are_derived_and_distinct() {
        let a = span_id("run", SpanKind::Attempt, 3, 1);
        assert_eq!(a, span_id("run", SpanKind::Attempt, 3, 1));
        assert_ne!(a, span_id("run", SpanKind::Attempt, 3, 2));
        assert_ne!(a, span_id("run", SpanKind::Activity, 3, 1));
        assert_ne!(a, span_id("other", SpanKind::Attempt, 3, 1));
    }
}
