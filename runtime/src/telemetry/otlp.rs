//! The OTLP/HTTP (protobuf) span exporter: `opentelemetry-otlp`'s, fed
//! finished spans by one background task.
//!
//! Spans are built from the journal with their own ids and times, so they
//! go straight to the exporter (no tracer, sampler or id generator in
//! between). A full queue drops spans rather than slowing a workflow down.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::{mpsc, oneshot};

use super::spans::{Attribute, SpanRecord};
use crate::activity::outbound::{self, OutboundClient};
use crate::store::Store;

/// Batches of spans waiting for the exporter task.
const QUEUE_BATCHES_MAX: usize = 4_096;
/// The most spans one export request carries.
const EXPORT_SPANS_MAX: usize = 512;
/// How long spans wait for company before they are sent, unless
/// `OTEL_BSP_SCHEDULE_DELAY` (ms) says otherwise.
const EXPORT_DELAY_DEFAULT: Duration = Duration::from_millis(200);
/// How long one export may take (the exporter retries within it).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

enum Command {
    /// Spans of execution `execution_id`, derived from its events through
    /// `through_position` (0: not journal-derived).
    Spans {
        execution_id: i64,
        through_position: u64,
        spans: Vec<SpanRecord>,
    },
    Flush(oneshot::Sender<()>),
}

/// Where finished spans go.
pub struct SpanSink {
    queue: mpsc::Sender<Command>,
}

/// The standard variables that turn span export on.
fn endpoint_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|value| value.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER")
            .is_ok_and(|value| value.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

impl SpanSink {
    /// The exporter the `OTEL_*` variables describe, running; `None` when
    /// no endpoint is set (or it cannot be built: then a warning says why).
    pub fn from_env(store: Arc<dyn Store>) -> Option<SpanSink> {
        if !endpoint_configured() {
            return None;
        }
        SpanSink::start(store, None)
    }

    /// An exporter to `endpoint` (the full traces URL, e.g.
    /// `http://127.0.0.1:4318/v1/traces`), or to where the `OTEL_*`
    /// variables say if `None`.
    pub fn start(store: Arc<dyn Store>, endpoint: Option<&str>) -> Option<SpanSink> {
        // The standard variable naming a collector's CA, for `https://`.
        let ca_file = std::env::var_os("OTEL_EXPORTER_OTLP_CERTIFICATE").map(PathBuf::from);
        let client = match OutboundClient::new(ca_file.as_deref()) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "OpenTelemetry export is configured but its TLS set-up failed; no spans will be sent");
                return None;
            }
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(ExportHttpClient(client))
            .with_timeout(EXPORT_TIMEOUT);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let built = builder.build();
        let mut exporter = match built {
            Ok(exporter) => exporter,
            Err(error) => {
                tracing::warn!(%error, "OpenTelemetry export is configured but the exporter could not be built; no spans will be sent");
                return None;
            }
        };
        // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; the default
        // service name is ours rather than "unknown_service".
        let resource = if std::env::var("OTEL_SERVICE_NAME").is_ok() {
            Resource::builder().build()
        } else {
            Resource::builder().with_service_name("reprise").build()
        };
        exporter.set_resource(&resource);
        let delay = std::env::var("OTEL_BSP_SCHEDULE_DELAY")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map_or(EXPORT_DELAY_DEFAULT, Duration::from_millis);
        let (queue, commands) = mpsc::channel(QUEUE_BATCHES_MAX);
        tokio::spawn(run_exporter(exporter, commands, store, delay));
        Some(SpanSink { queue })
    }

    /// Queues spans of `execution_id` that events through
    /// `through_position` ended (0 for spans not derived from the journal).
    pub fn send(&self, execution_id: i64, through_position: u64, spans: Vec<SpanRecord>) {
        if spans.is_empty() {
            return;
        }
        let command = Command::Spans {
            execution_id,
            through_position,
            spans,
        };
        if self.queue.try_send(command).is_err() {
            tracing::debug!("the span export queue is full; spans dropped");
        }
    }

    /// Waits until what was sent before is exported (at most the export timeout).
    pub async fn flush(&self) {
        let (done, exported) = oneshot::channel();
        if self.queue.send(Command::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(EXPORT_TIMEOUT * 2, exported).await;
        }
    }
}

async fn run_exporter(
    exporter: opentelemetry_otlp::SpanExporter,
    mut commands: mpsc::Receiver<Command>,
    store: Arc<dyn Store>,
    delay: Duration,
) {
    let scope = InstrumentationScope::builder("reprise").build();
    let mut pending: Vec<SpanData> = Vec::new();
    // execution → the position its pending spans reach.
    let mut watermarks: HashMap<i64, u64> = HashMap::new();
    let mut flushed: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let command = if pending.is_empty() {
            match commands.recv().await {
                Some(command) => Some(command),
                None => return,
            }
        } else {
            tokio::time::timeout(delay, commands.recv())
                .await
                .unwrap_or_default()
        };
        let mut send_now = command.is_none();
        match command {
            Some(Command::Spans {
                execution_id,
                through_position,
                spans,
            }) => {
                pending.extend(spans.into_iter().map(|span| span_data(span, &scope)));
                if through_position > 0 {
                    let mark = watermarks.entry(execution_id).or_default();
                    *mark = (*mark).max(through_position);
                }
                send_now |= pending.len() >= EXPORT_SPANS_MAX;
            }
            Some(Command::Flush(done)) => {
                flushed.push(done);
                send_now = true;
            }
            None => {}
        }
        if !send_now {
            continue;
        }
        let mut exported = true;
        while !pending.is_empty() {
            let batch: Vec<SpanData> = pending
                .drain(..pending.len().min(EXPORT_SPANS_MAX))
                .collect();
            let count = batch.len();
            if let Err(error) = exporter.export(batch).await {
                exported = false;
                tracing::warn!(%error, spans = count, "exporting spans failed; they are dropped");
            }
        }
        // Only what a collector accepted moves the watermark: after a crash,
        // the rest is derived and sent again.
        let marks: Vec<(i64, u64)> = watermarks.drain().collect();
        if exported && let Err(error) = store.set_span_watermarks(marks).await {
            tracing::warn!(%error, "recording exported spans failed");
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn span_data(span: SpanRecord, scope: &InstrumentationScope) -> SpanData {
    let attributes = span
        .attributes
        .into_iter()
        .map(|(key, value)| match value {
            Attribute::Text(text) => KeyValue::new(key, text),
            Attribute::Int(number) => KeyValue::new(key, number),
        })
        .collect();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(span.trace_id),
            SpanId::from_bytes(span.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: span
            .parent_span_id
            .map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(span.name),
        start_time: at_ms(span.start_ms),
        end_time: at_ms(span.end_ms),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match span.error {
            Some(description) => Status::error(description),
            None => Status::Unset,
        },
        instrumentation_scope: scope.clone(),
    }
}

/// The exporter's HTTP client: the runtime's own pooled client (keep-alive
/// to the collector, `https://` with the system's roots).
#[derive(Debug)]
struct ExportHttpClient(OutboundClient);

#[async_trait::async_trait]
impl HttpClient for ExportHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        use http_body_util::BodyExt as _;
        let request = request.map(outbound::full_body);
        let response = self.0.send(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, bytes))
    }
}
