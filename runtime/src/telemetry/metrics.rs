//! Counters, gauges and histograms, rendered in the Prometheus text format
//! (version 0.0.4) at `/metrics`.
//!
//! Journal-derived counters (attempts, failures, retries, compensations,
//! finished executions) count events as they are appended, so a replay
//! counts nothing twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::spans::attempt_started_ms;
use crate::journal::{Event, History, RecordedEvent};
use crate::store::ExecutionRecord;

/// Upper bounds of the latency histograms, in seconds.
const BUCKETS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    300.0,
];

/// Every metric: name, type, help. Rendering follows this order.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "reprise_executions_started_total",
        "counter",
        "Executions started, by tenant and workflow type.",
    ),
    (
        "reprise_executions_finished_total",
        "counter",
        "Executions finished, by tenant, workflow type and status.",
    ),
    (
        "reprise_activity_attempts_total",
        "counter",
        "Activity attempts that ended, by tenant, activity and outcome.",
    ),
    (
        "reprise_activity_failures_total",
        "counter",
        "Failed activity attempts, by tenant, activity and error type.",
    ),
    (
        "reprise_activity_retries_total",
        "counter",
        "Failed attempts followed by a retry, by tenant and activity.",
    ),
    (
        "reprise_compensations_total",
        "counter",
        "Compensating activities scheduled by sagas, by tenant and workflow type.",
    ),
    (
        "reprise_queries_total",
        "counter",
        "Query replays (queries and update validations), by tenant, kind and outcome (answered, error).",
    ),
    (
        "reprise_updates_total",
        "counter",
        "Updates delivered to workflows and answered, by tenant, workflow type and outcome (received, completed, failed).",
    ),
    (
        "reprise_schedule_actions_total",
        "counter",
        "What schedules did with their due starts, by tenant and outcome (started, skipped, buffered, failed).",
    ),
    (
        "reprise_executions_swept_total",
        "counter",
        "Finished executions deleted past their tenant's finished_retention_seconds, by tenant.",
    ),
    (
        "reprise_activity_attempt_duration_seconds",
        "histogram",
        "Duration of activity attempts, by tenant and activity.",
    ),
    (
        "reprise_activation_duration_seconds",
        "histogram",
        "Instantiation and replay of a workflow up to its first wait, by tenant.",
    ),
    (
        "reprise_replays_total",
        "counter",
        "Activations that replayed recorded commands, by tenant.",
    ),
    (
        "reprise_replay_duration_seconds",
        "histogram",
        "Duration of activations that replayed recorded commands, by tenant.",
    ),
    (
        "reprise_journal_append_duration_seconds",
        "histogram",
        "Durable journal appends (commit included).",
    ),
    (
        "reprise_evictions_total",
        "counter",
        "Workflow instances dropped while waiting (the cold path), by tenant.",
    ),
    (
        "reprise_instances_in_memory",
        "gauge",
        "Workflow instances alive now.",
    ),
    (
        "reprise_worker_queue_depth",
        "gauge",
        "Activity tasks waiting for an external worker.",
    ),
    (
        "reprise_components_in_memory",
        "gauge",
        "Compiled components held in memory (at most components_in_memory_max; the least recently used is loaded again from disk when next needed).",
    ),
    (
        "reprise_outbound_connections_opened_total",
        "counter",
        "Outbound HTTP connections opened (pooled: far fewer than requests).",
    ),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Per bucket (non-cumulative), then the overflow.
    counts: [u64; BUCKETS_SECONDS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let index = BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS_SECONDS.len());
        self.counts[index] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

/// Gauges whose owners know their value: read when the metrics are
/// rendered.
#[derive(Clone, Copy, Debug, Default)]
pub struct SampledGauges {
    pub worker_queue_depth: usize,
    pub components_in_memory: usize,
}

/// The runtime's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
    instances_in_memory: AtomicI64,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(key, value)| (*key, value.to_string()))
        .collect()
}

/// The status label of a terminal event.
fn finished_status(event: &Event) -> &'static str {
    match event {
        Event::WorkflowCompleted { .. } => "completed",
        Event::WorkflowCancelled { .. } => "cancelled",
        Event::WorkflowTerminated { .. } => "terminated",
        Event::WorkflowContinuedAsNew { .. } => "continued_as_new",
        _ => "failed",
    }
}

impl Metrics {
    fn add(&self, name: &'static str, labels: Labels, amount: u64) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((name, labels))
            .or_default() += amount;
    }

    fn observe(&self, name: &'static str, labels: Labels, elapsed: Duration) {
        self.histograms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((name, labels))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    pub fn execution_started(&self, tenant: &str, workflow_type: &str) {
        self.add(
            "reprise_executions_started_total",
            labels(&[("tenant", tenant), ("workflow_type", workflow_type)]),
            1,
        );
    }

    pub fn observe_append(&self, elapsed: Duration) {
        self.observe(
            "reprise_journal_append_duration_seconds",
            Vec::new(),
            elapsed,
        );
    }

    pub fn query_answered(&self, tenant: &str, ask: crate::execution::QueryAsk, answered: bool) {
        let kind = match ask {
            crate::execution::QueryAsk::Query => "query",
            crate::execution::QueryAsk::ValidateUpdate => "validate_update",
        };
        let outcome = if answered { "answered" } else { "error" };
        self.add(
            "reprise_queries_total",
            labels(&[("tenant", tenant), ("kind", kind), ("outcome", outcome)]),
            1,
        );
    }

    pub fn schedule_action(&self, tenant: &str, outcome: &str) {
        self.add(
            "reprise_schedule_actions_total",
            labels(&[("tenant", tenant), ("outcome", outcome)]),
            1,
        );
    }

    pub fn executions_swept(&self, tenant: &str, count: u32) {
        self.add(
            "reprise_executions_swept_total",
            labels(&[("tenant", tenant)]),
            u64::from(count),
        );
    }

    pub fn eviction(&self, tenant: &str) {
        self.add("reprise_evictions_total", labels(&[("tenant", tenant)]), 1);
    }

    /// An instance came to life (`+1`) or went away (`-1`).
    pub fn instances_changed(&self, delta: i64) {
        self.instances_in_memory.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn observe_activation(&self, tenant: &str, elapsed_ms: u64, replayed: u64) {
        let elapsed = Duration::from_millis(elapsed_ms);
        let tenant = labels(&[("tenant", tenant)]);
        self.observe(
            "reprise_activation_duration_seconds",
            tenant.clone(),
            elapsed,
        );
        if replayed > 0 {
            self.add("reprise_replays_total", tenant.clone(), 1);
            self.observe("reprise_replay_duration_seconds", tenant, elapsed);
        }
    }

    /// Activations of `tenant`'s executions so far (fresh starts and
    /// replays alike).
    pub fn activations(&self, tenant: &str) -> u64 {
        self.histograms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(
                "reprise_activation_duration_seconds",
                labels(&[("tenant", tenant)]),
            ))
            .map_or(0, |histogram| histogram.count)
    }

    /// Counts what `new_events` (just appended to `history`) record.
    pub fn count_events(
        &self,
        record: &ExecutionRecord,
        history: &History,
        new_events: &[RecordedEvent],
    ) {
        let tenant = record.tenant.as_str();
        for recorded in new_events {
            let activity_of = |seq| match history.command(seq).map(|command| &command.event) {
                Some(Event::ActivityScheduled { name, .. }) => name.as_str(),
                _ => "",
            };
            let attempt_took = |seq, attempt| {
                let scheduled_ms = history
                    .command(seq)
                    .map_or(0, |command| command.recorded_at_ms);
                let started = attempt_started_ms(history, seq, attempt, scheduled_ms);
                Duration::from_millis(recorded.recorded_at_ms.saturating_sub(started))
            };
            match &recorded.event {
                Event::ActivityScheduled { options, .. } if options.compensates.is_some() => {
                    self.add(
                        "reprise_compensations_total",
                        labels(&[("tenant", tenant), ("workflow_type", &record.workflow_type)]),
                        1,
                    );
                }
                Event::ActivityAttemptFailed {
                    seq,
                    attempt,
                    error,
                    retry_at_ms,
                    ..
                } => {
                    let activity = activity_of(*seq);
                    let pair = [("tenant", tenant), ("activity", activity)];
                    self.add(
                        "reprise_activity_attempts_total",
                        labels(&[pair[0], pair[1], ("outcome", "failed")]),
                        1,
                    );
                    self.add(
                        "reprise_activity_failures_total",
                        labels(&[pair[0], pair[1], ("error_type", &error.error_type)]),
                        1,
                    );
                    if retry_at_ms.is_some() {
                        self.add("reprise_activity_retries_total", labels(&pair), 1);
                    }
                    self.observe(
                        "reprise_activity_attempt_duration_seconds",
                        labels(&pair),
                        attempt_took(*seq, *attempt),
                    );
                }
                Event::ActivityCompleted { seq, attempt, .. } => {
                    let activity = activity_of(*seq);
                    let pair = [("tenant", tenant), ("activity", activity)];
                    self.add(
                        "reprise_activity_attempts_total",
                        labels(&[pair[0], pair[1], ("outcome", "completed")]),
                        1,
                    );
                    self.observe(
                        "reprise_activity_attempt_duration_seconds",
                        labels(&pair),
                        attempt_took(*seq, *attempt),
                    );
                }
                Event::UpdateReceived { .. }
                | Event::UpdateCompleted { .. }
                | Event::UpdateFailed { .. } => {
                    let outcome = match &recorded.event {
                        Event::UpdateReceived { .. } => "received",
                        Event::UpdateCompleted { .. } => "completed",
                        _ => "failed",
                    };
                    self.add(
                        "reprise_updates_total",
                        labels(&[
                            ("tenant", tenant),
                            ("workflow_type", &record.workflow_type),
                            ("outcome", outcome),
                        ]),
                        1,
                    );
                }
                event if event.is_terminal() => {
                    self.add(
                        "reprise_executions_finished_total",
                        labels(&[
                            ("tenant", tenant),
                            ("workflow_type", &record.workflow_type),
                            ("status", finished_status(event)),
                        ]),
                        1,
                    );
                }
                _ => {}
            }
        }
    }

    /// The Prometheus text exposition, with the gauges read from their
    /// owners.
    pub fn render(&self, sampled: SampledGauges) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let histograms = self
            .histograms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut text = String::new();
        for (name, kind, help) in METRICS {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            match *name {
                "reprise_instances_in_memory" => {
                    let _ = writeln!(
                        text,
                        "{name} {}",
                        self.instances_in_memory.load(Ordering::Relaxed)
                    );
                }
                "reprise_worker_queue_depth" => {
                    let _ = writeln!(text, "{name} {}", sampled.worker_queue_depth);
                }
                "reprise_components_in_memory" => {
                    let _ = writeln!(text, "{name} {}", sampled.components_in_memory);
                }
                "reprise_outbound_connections_opened_total" => {
                    let _ = writeln!(
                        text,
                        "{name} {}",
                        crate::activity::outbound::connections_opened()
                    );
                }
                _ if *kind == "counter" => {
                    for ((_, series), value) in
                        counters.iter().filter(|((metric, _), _)| metric == name)
                    {
                        let _ = writeln!(text, "{name}{} {value}", render_labels(series, None));
                    }
                }
                _ => {
                    for ((_, series), histogram) in
                        histograms.iter().filter(|((metric, _), _)| metric == name)
                    {
                        let mut cumulative = 0;
                        for (bound, count) in BUCKETS_SECONDS.iter().zip(histogram.counts) {
                            cumulative += count;
                            let le = bound.to_string();
                            let _ = writeln!(
                                text,
                                "{name}_bucket{} {cumulative}",
                                render_labels(series, Some(&le))
                            );
                        }
                        let _ = writeln!(
                            text,
                            "{name}_bucket{} {}",
                            render_labels(series, Some("+Inf")),
                            histogram.count
                        );
                        let _ = writeln!(
                            text,
                            "{name}_sum{} {}",
                            render_labels(series, None),
                            histogram.sum_seconds
                        );
                        let _ = writeln!(
                            text,
                            "{name}_count{} {}",
                            render_labels(series, None),
                            histogram.count
                        );
                    }
                }
            }
        }
        text
    }
}

/// `{key="value",…}` with the format's escapes, or nothing for no labels.
fn render_labels(series: &Labels, le: Option<&str>) -> String {
    let mut pairs: Vec<String> = series
        .iter()
        .map(|(key, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{key}=\"{escaped}\"")
        })
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = Metrics::default();
        metrics.observe_append(Duration::from_micros(300));
        metrics.observe_append(Duration::from_millis(3));
        metrics.eviction("a\"b");
        let text = metrics.render(SampledGauges {
            worker_queue_depth: 7,
            components_in_memory: 3,
        });
        assert!(
            text.contains("reprise_journal_append_duration_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("reprise_journal_append_duration_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("reprise_journal_append_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("reprise_evictions_total{tenant=\"a\\\"b\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("reprise_worker_queue_depth 7\n"), "{text}");
        assert!(text.contains("reprise_components_in_memory 3\n"), "{text}");
    }
}
