//! Observability derived from the journal: OpenTelemetry spans, Prometheus
//! metrics, W3C trace context.
//!
//! Spans and counters come from events *as they are appended*, never from
//! running code: a replay appends nothing, so it emits no span and counts
//! nothing twice, and a span is emitted whole when the event that ends it is
//! durable (a workflow waiting for days has no span open). Span ids are
//! derived from the run id and the event's seq and attempt, and the trace
//! id is recorded in `WorkflowStarted`: after a crash, the spans of the same
//! execution continue the same trace.
//!
//! - [`spans`]: journal events → finished spans (pure).
//! - `otlp`: the OTLP/HTTP exporter task (on only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//!   is set, or an endpoint is given).
//! - [`metrics`]: counters, gauges and histograms in Prometheus text format.
//! - `logs`: guest log lines, written to the store in the background.

mod logs;
pub mod metrics;
mod otlp;
pub mod spans;

use std::sync::Arc;

use crate::journal::{History, RecordedEvent};
use crate::store::{ExecutionRecord, Store};

pub use logs::{GuestLines, LogSink};
pub use metrics::Metrics;

/// What the runtime reports to: metrics and guest logs always, spans when
/// an exporter is configured.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    exporter: Option<otlp::SpanSink>,
    logs: logs::LogWriter,
    store: Arc<dyn Store>,
}

impl Telemetry {
    /// Exports spans over OTLP/HTTP to `otlp_endpoint` (the full traces
    /// URL) or, without one, where the standard `OTEL_*` variables say (if
    /// anywhere); metrics and guest logs either way. `store` keeps guest
    /// logs and how far each execution's spans were exported. Needs a tokio
    /// runtime.
    pub fn new(store: Arc<dyn Store>, otlp_endpoint: Option<&str>) -> Telemetry {
        let exporter = match otlp_endpoint {
            Some(endpoint) => otlp::SpanSink::start(store.clone(), Some(endpoint)),
            None => otlp::SpanSink::from_env(store.clone()),
        };
        Telemetry {
            metrics: Arc::new(Metrics::default()),
            exporter,
            logs: logs::LogWriter::start(store.clone()),
            store,
        }
    }

    /// Where `record`'s guest log lines go: within its tenant's
    /// `log_lines_per_second`.
    pub fn log_sink(&self, record: &ExecutionRecord, lines_per_second: u32) -> LogSink {
        self.logs.sink(record, lines_per_second)
    }

    /// Called once `new_events` are durable in `history` (which ends with
    /// them): counts them and, if exporting, emits the spans they end.
    pub fn appended(
        &self,
        record: &ExecutionRecord,
        history: &History,
        new_events: &[RecordedEvent],
    ) {
        self.metrics.count_events(record, history, new_events);
        if let Some(exporter) = &self.exporter {
            let through = new_events.last().map_or(0, |last| last.position);
            exporter.send(
                record.id,
                through,
                spans::ended_by(record, history, new_events),
            );
        }
    }

    /// Before a drive: sends the spans of events a previous process
    /// journaled but died before exporting (past the stored watermark).
    pub async fn resume(&self, record: &ExecutionRecord, history: &History) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let exported = match self.store.span_watermark(record.id).await {
            Ok(position) => position as usize,
            Err(error) => {
                tracing::warn!(%error, "reading the span watermark failed; not resending spans");
                return;
            }
        };
        let events = history.events();
        if exported < events.len() {
            let missed = &events[exported..];
            let through = missed.last().map_or(0, |last| last.position);
            exporter.send(record.id, through, spans::ended_by(record, history, missed));
        }
    }

    /// An activation (instantiation and replay up to its first wait or its
    /// end) took `elapsed`, after replaying `replayed` recorded commands.
    pub fn activation(
        &self,
        record: &ExecutionRecord,
        history: &History,
        started_ms: u64,
        ended_ms: u64,
        replayed: u64,
    ) {
        self.metrics.observe_activation(
            &record.tenant,
            ended_ms.saturating_sub(started_ms),
            replayed,
        );
        if let Some(exporter) = &self.exporter {
            let span = spans::activation(record, history, started_ms, ended_ms, replayed);
            exporter.send(record.id, 0, vec![span]);
        }
    }

    /// Stores the queued guest lines and sends the buffered spans; waits
    /// at most a few seconds for the collector.
    pub async fn flush(&self) {
        self.logs.flush().await;
        if let Some(exporter) = &self.exporter {
            exporter.flush().await;
        }
    }
}
