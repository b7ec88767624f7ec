//! Observability end to end: a real OTLP/HTTP receiver on 127.0.0.1
//! decoding the protocol, the saga's span tree through a SIGKILL, W3C trace
//! context into activities and from a start request, and `/metrics` in the
//! Prometheus text format matching a known workload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use reprise::journal::{Event, RecordedEvent};
use reprise::store;
use reprise_providers::Provider;
use serde_json::{Value, json};

use crate::hosting::{ADMIN_KEY, Hosted};
use crate::server::json_call;
use crate::support::{cache_dir, guest};

/// A span as the receiver decoded it.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    failed: bool,
}

/// An OTLP/HTTP trace receiver: `POST /v1/traces` with protobuf bodies.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let stored = spans.clone();
        let router = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let stored = stored.clone();
                async move {
                    let request =
                        ExportTraceServiceRequest::decode(body).expect("an OTLP trace request");
                    let mut stored = stored.lock().expect("spans");
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                let attributes = span
                                    .attributes
                                    .iter()
                                    .map(|pair| {
                                        let value = match pair
                                            .value
                                            .as_ref()
                                            .and_then(|value| value.value.as_ref())
                                        {
                                            Some(AnyValue::StringValue(text)) => text.clone(),
                                            Some(AnyValue::IntValue(number)) => number.to_string(),
                                            other => format!("{other:?}"),
                                        };
                                        (pair.key.clone(), value)
                                    })
                                    .collect();
                                stored.push(ReceivedSpan {
                                    name: span.name,
                                    trace_id: hex::encode(span.trace_id),
                                    span_id: hex::encode(span.span_id),
                                    parent_span_id: hex::encode(span.parent_span_id),
                                    attributes,
                                    // STATUS_CODE_ERROR = 2.
                                    failed: span.status.is_some_and(|status| status.code == 2),
                                });
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { endpoint, spans }
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").clone()
    }

    /// Waits until `done` holds for the spans received (at most 30 s).
    async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "never received {what}: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn trace_id_of(history: &[RecordedEvent]) -> String {
    match &history[0].event {
        Event::WorkflowStarted {
            trace: Some(trace), ..
        } => trace.trace_id.clone(),
        other => panic!("no trace recorded: {other:?}"),
    }
}

async fn history_of(db: &std::path::Path, id: &str) -> Vec<RecordedEvent> {
    let store = store::open(db).await.expect("open store");
    let record = store
        .execution("default", id)
        .await
        .expect("read")
        .expect("execution exists");
    store.history(record.id).await.expect("history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_exports_one_span_tree_without_duplicates_through_a_sigkill() {
    let receiver = Receiver::start().await;
    let providers = crate::saga::Providers::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("activity")).expect("activity dir");
    let run = |db: &std::path::Path, input: &str, kill_at: Option<u64>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
        command
            .arg("run")
            .arg(guest("trip"))
            .arg("--activities")
            .arg(guest("order-activities"))
            .args([
                "--input",
                input,
                "--id",
                "t-otel",
                "--allow-host",
                "127.0.0.1",
            ])
            .arg("--db")
            .arg(db)
            .arg("--cache-dir")
            .arg(cache_dir())
            .arg("--activity-dir")
            .arg(dir.path().join("activity"))
            .env("REPRISE_LOG", "warn")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "20")
            .stdout(Stdio::null());
        if let Some(position) = kill_at {
            // Spans go out right before the kill: a restart must not send
            // them again.
            command
                .env("REPRISE_FAULT_KILL_AT_POSITION", position.to_string())
                .env("REPRISE_FAULT_FLUSH_TELEMETRY", "1");
        }
        command
    };
    let status_of = |mut command: Command| async move {
        tokio::task::spawn_blocking(move || command.status())
            .await
            .expect("join")
            .expect("run reprise")
    };
    // Where the compensations start, from a run without a crash (its spans
    // go to another trace; they are set aside below).
    let reference_db = dir.path().join("reference.db");
    let reference_providers = crate::saga::Providers::start().await;
    reference_providers
        .payments
        .fail_kind_with_503(reprise_providers::CHARGE, 1);
    let reference_input = reference_providers.trip("t-otel", &["flight", "hotel"], json!({}));
    status_of(run(&reference_db, &reference_input, None)).await;
    let reference = history_of(&reference_db, "t-otel").await;
    let first_compensation = reference
        .iter()
        .find(|recorded| {
            matches!(&recorded.event, Event::ActivityScheduled { options, .. } if options.compensates.is_some())
        })
        .expect("a compensation")
        .position;
    let reference_trace = trace_id_of(&reference);

    // The charge fails once (a retry), then the provisioning fails for
    // good: the saga refunds and releases. Killed right after the first
    // compensation is scheduled (its spans exported), then run again.
    providers
        .payments
        .fail_kind_with_503(reprise_providers::CHARGE, 1);
    let input = providers.trip("t-otel", &["flight", "hotel"], json!({}));
    let db = dir.path().join("reprise.db");
    let status = status_of(run(&db, &input, Some(first_compensation))).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status:?}"
    );
    let killed = history_of(&db, "t-otel").await;
    assert!(
        matches!(&killed.last().expect("events").event, Event::ActivityScheduled { options, .. } if options.compensates.is_some()),
        "killed right after the first compensation was scheduled"
    );
    let status = status_of(run(&db, &input, None)).await;
    assert_eq!(status.code(), Some(1), "the trip fails on purpose");

    let history = history_of(&db, "t-otel").await;
    let events: Vec<&Event> = history.iter().map(|recorded| &recorded.event).collect();
    let trace_id = trace_id_of(&history);
    assert_ne!(
        trace_id, reference_trace,
        "each execution has its own trace"
    );
    let spans: Vec<ReceivedSpan> = receiver
        .wait_for("the workflow span", |spans| {
            spans
                .iter()
                .any(|span| span.name == "workflow trip" && span.trace_id == trace_id)
        })
        .await
        .into_iter()
        .filter(|span| span.trace_id != reference_trace)
        .collect();

    // One trace, the one the journal recorded, across both processes.
    assert!(
        spans.iter().all(|span| span.trace_id == trace_id),
        "{spans:#?}"
    );
    // No span twice (the first process exported some, the second the rest).
    let mut seen = HashSet::new();
    for span in &spans {
        assert!(
            seen.insert(span.span_id.clone()),
            "duplicate span {span:#?}"
        );
    }
    // The tree: one root; an activity span per scheduled activity under it;
    // one attempt span per journaled attempt under its activity.
    let roots: Vec<_> = spans
        .iter()
        .filter(|span| span.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = roots[0];
    assert_eq!(root.name, "workflow trip");
    assert!(root.failed, "the trip failed");
    let scheduled = events
        .iter()
        .filter(|event| matches!(event, Event::ActivityScheduled { .. }))
        .count();
    let calls: Vec<_> = spans
        .iter()
        .filter(|span| span.name.starts_with("activity ") || span.name.starts_with("compensation "))
        .collect();
    assert_eq!(calls.len(), scheduled, "{calls:#?}");
    assert!(calls.iter().all(|span| span.parent_span_id == root.span_id));
    let attempts_journaled = events
        .iter()
        .filter(|event| {
            matches!(
                event,
                Event::ActivityAttemptFailed { .. } | Event::ActivityCompleted { .. }
            )
        })
        .count();
    let attempts: Vec<_> = spans
        .iter()
        .filter(|span| span.name.starts_with("attempt "))
        .collect();
    assert_eq!(
        attempts.len(),
        attempts_journaled,
        "one span per real attempt"
    );
    let call_ids: HashMap<&str, &str> = calls
        .iter()
        .map(|span| {
            (
                span.attributes["reprise.seq"].as_str(),
                span.span_id.as_str(),
            )
        })
        .collect();
    for attempt in &attempts {
        assert_eq!(
            call_ids
                .get(attempt.attributes["reprise.seq"].as_str())
                .copied(),
            Some(attempt.parent_span_id.as_str()),
            "{attempt:#?}"
        );
    }
    // The charge's failed attempt, with its error type and retry delay.
    let failed_charge = attempts
        .iter()
        .find(|span| {
            span.failed
                && span
                    .attributes
                    .get("error.type")
                    .is_some_and(|kind| kind.contains("503") || kind.contains("Unavailable"))
        })
        .expect("the failed charge attempt");
    assert_eq!(failed_charge.attributes["reprise.attempt"], "1");
    assert!(
        failed_charge
            .attributes
            .contains_key("reprise.retry.delay_ms"),
        "{failed_charge:#?}"
    );
    assert!(!failed_charge.attributes["reprise.idempotency_key"].is_empty());
    // Compensations are marked, once each.
    let compensations: Vec<_> = calls
        .iter()
        .filter(|span| span.name.starts_with("compensation "))
        .collect();
    let compensated: Vec<&str> = compensations
        .iter()
        .map(|span| span.attributes["reprise.compensates"].as_str())
        .collect();
    assert_eq!(compensated.len(), 3, "{compensated:?}");
    for step in ["charge", "reserve hotel", "reserve flight"] {
        assert!(compensated.contains(&step), "{step} in {compensated:?}");
    }
    // Each process's activation: the second replayed what the first did.
    let activations: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "activation")
        .collect();
    assert!(activations.len() >= 2, "{activations:#?}");
    assert!(
        activations
            .iter()
            .any(|span| span.attributes["reprise.replayed_commands"] != "0"),
        "{activations:#?}"
    );
}

/// A metric family's samples: labels (sorted) → value.
type Samples = BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>>;

/// Parses the Prometheus text format strictly enough to catch malformed
/// output: every sample's family has a `# TYPE` first, names and labels are
/// well formed, values are numbers.
fn parse_prometheus(text: &str) -> Samples {
    let name_ok = |name: &str| {
        !name.is_empty()
            && name.chars().enumerate().all(|(index, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (index > 0 && c.is_ascii_digit())
            })
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Samples::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            assert!(name_ok(name), "bad metric name in {line:?}");
            match keyword {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest),
                        "{line:?}"
                    );
                    types.insert(name.to_string(), rest.to_string());
                }
                "HELP" => {}
                other => panic!("unknown comment {other:?} in {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        assert!(name_ok(name), "bad sample name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|kind| kind == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line:?}"
        );
        let mut parsed = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(name_ok(key), "bad label name in {line:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("an unterminated label value") {
                    (_, '\\') => value.push(chars.next().expect("escape").1),
                    (index, '"') => break index,
                    (_, c) => value.push(c),
                }
            };
            parsed.insert(key.to_string(), value);
            rest = after[end + 1..].trim_start_matches(',');
        }
        samples
            .entry(name.to_string())
            .or_default()
            .insert(parsed, value);
    }
    samples
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    samples
        .get(name)
        .and_then(|series| series.get(&wanted))
        .copied()
        .unwrap_or_else(|| panic!("no sample {name}{wanted:?} in {:#?}", samples.get(name)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_trace_context_match_a_known_workload() {
    let receiver = Receiver::start().await;
    let payments = Provider::start(0).await.expect("payments");
    let inventory = Provider::start(0).await.expect("inventory");
    let hosted = Hosted::start_with_env(
        &["--allow-host", "127.0.0.1"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "20".to_string()),
        ],
    )
    .await;
    let address = hosted.address().to_string();
    let key = hosted.tenant("acme", json!({})).await;
    hosted.deploy(&key, "trip", Some("trip")).await;
    hosted.deploy(&key, "order", Some("order")).await;
    hosted.deploy(&key, "order-activities", None).await;

    // A known workload: the charge fails twice then succeeds (3 attempts),
    // the provisioning fails, one leg: 2 compensations.
    payments.fail_kind_with_503(reprise_providers::CHARGE, 2);
    let trip = json!({
        "trip_id": "m-1",
        "legs": ["flight"],
        "amount_cents": 5_000,
        "inventory_url": inventory.url(),
        "payments_url": payments.url(),
        "fail_provision": true,
        "initial_interval_ms": 20,
    });
    hosted.start_execution(&key, "trip", "m-1", trip).await;
    let failed = hosted.finished(&key, "m-1").await;
    assert_eq!(failed["status"], "failed", "{failed}");

    let metrics = {
        let request = http::Request::get("/metrics")
            .header("authorization", format!("Bearer {ADMIN_KEY}"))
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request");
        let response = crate::support::send(&address, request).await.expect("send");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(body.to_vec()).expect("UTF-8")
    };
    let samples = parse_prometheus(&metrics);
    let acme = ("tenant", "acme");
    assert_eq!(
        sample(
            &samples,
            "reprise_executions_started_total",
            &[acme, ("workflow_type", "trip")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "reprise_executions_finished_total",
            &[acme, ("workflow_type", "trip"), ("status", "failed")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "reprise_compensations_total",
            &[acme, ("workflow_type", "trip")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            "reprise_activity_failures_total",
            &[acme, ("activity", "http"), ("error_type", "Unavailable")]
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &samples,
            "reprise_activity_retries_total",
            &[acme, ("activity", "http")]
        ),
        2.0
    );
    // http: reserve, charge ×3, refund, release = 6 attempts, 2 failed.
    assert_eq!(
        sample(
            &samples,
            "reprise_activity_attempts_total",
            &[acme, ("activity", "http"), ("outcome", "completed")]
        ),
        4.0
    );
    assert_eq!(
        sample(
            &samples,
            "reprise_activity_attempts_total",
            &[acme, ("activity", "http"), ("outcome", "failed")]
        ),
        2.0
    );
    let attempt_count = sample(
        &samples,
        "reprise_activity_attempt_duration_seconds_count",
        &[acme, ("activity", "http")],
    );
    assert_eq!(attempt_count, 6.0);
    assert_eq!(
        sample(
            &samples,
            "reprise_activity_attempt_duration_seconds_bucket",
            &[acme, ("activity", "http"), ("le", "+Inf")]
        ),
        attempt_count
    );
    assert!(
        sample(
            &samples,
            "reprise_journal_append_duration_seconds_count",
            &[]
        ) > 0.0
    );
    assert_eq!(
        sample(&samples, "reprise_instances_in_memory", &[]),
        0.0,
        "nothing runs now"
    );
    let (status, _) = json_call(&address, &key, "GET", "/metrics", Value::Null).await;
    assert_eq!(status, 401, "metrics name tenants: admin key only");

    // Trace context: a caller's traceparent parents the workflow's trace;
    // each attempt passes its own span on — the http activity as a header,
    // the Wasm activity from its context.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    for (id, charge_via) in [("o-http", "http"), ("o-wasm", "wasm")] {
        let request = http::Request::post("/v1/executions")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
            .body(http_body_util::Full::new(Bytes::from(
                json!({
                    "workflow_type": "order",
                    "workflow_id": id,
                    "input": { "order_id": id, "amount_cents": 10, "provider_url": payments.url(), "charge_via": charge_via },
                })
                .to_string(),
            )))
            .expect("request");
        let response = crate::support::send(&address, request).await.expect("send");
        assert_eq!(response.status(), 201);
        let done = hosted.finished(&key, id).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    let spans = receiver
        .wait_for("both order workflows", |spans| {
            spans
                .iter()
                .filter(|span| span.name == "workflow order")
                .count()
                == 2
        })
        .await;
    let order_roots: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "workflow order")
        .collect();
    for root in &order_roots {
        assert_eq!(root.trace_id, caller_trace);
        assert_eq!(
            root.parent_span_id, caller_span,
            "the caller's span is the parent"
        );
    }
    let traceparents = payments.traceparents();
    let charge_attempts: Vec<_> = spans
        .iter()
        .filter(|span| span.trace_id == caller_trace && span.name.starts_with("attempt 1 "))
        .filter(|span| {
            span.attributes
                .get("reprise.activity.name")
                .is_some_and(|name| name == "http" || name == "charge-direct")
        })
        .collect();
    assert_eq!(charge_attempts.len(), 2, "{charge_attempts:#?}");
    for attempt in charge_attempts {
        let expected = format!("00-{caller_trace}-{}-01", attempt.span_id);
        assert!(
            traceparents.contains(&expected),
            "the provider saw {expected} ({}): {traceparents:?}",
            attempt.attributes["reprise.activity.name"]
        );
    }
}

/// The page at `url` after its scripts ran, from headless Chromium.
fn rendered_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs (the Debian package `chromium`; .ci/run installs it)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// [`rendered_dom`] off the async threads.
async fn rendered(url: String) -> String {
    tokio::task::spawn_blocking(move || rendered_dom(&url))
        .await
        .expect("join")
}

/// What the page rendered: the message and content elements, without the
/// script (whose source names every event type).
fn rendered_part(dom: &str) -> &str {
    let start = dom
        .find("<div id=\"message\"")
        .expect("the message element");
    let end = dom[start..]
        .find("<script>")
        .map_or(dom.len(), |offset| start + offset);
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_shows_an_execution_its_failed_attempt_and_compensations() {
    let payments = Provider::start(0).await.expect("payments");
    let inventory = Provider::start(0).await.expect("inventory");
    let hosted = Hosted::start(&["--allow-host", "127.0.0.1"]).await;
    let key = hosted.tenant("acme", json!({})).await;
    let other = hosted.tenant("globex", json!({})).await;
    for tenant in [&key, &other] {
        hosted.deploy(tenant, "trip", Some("trip")).await;
        hosted.deploy(tenant, "order-activities", None).await;
    }
    payments.fail_kind_with_503(reprise_providers::CHARGE, 1);
    let trip = |id: &str| {
        json!({
            "trip_id": id,
            "legs": ["flight"],
            "amount_cents": 5_000,
            "inventory_url": inventory.url(),
            "payments_url": payments.url(),
            "fail_provision": true,
            "initial_interval_ms": 20,
        })
    };
    // One after the other: the provider's single 503 must hit acme's charge.
    hosted
        .start_execution(&key, "trip", "web-trip", trip("web-trip"))
        .await;
    assert_eq!(hosted.finished(&key, "web-trip").await["status"], "failed");
    hosted
        .start_execution(&other, "trip", "globex-secret", trip("globex-secret"))
        .await;
    assert_eq!(
        hosted.finished(&other, "globex-secret").await["status"],
        "failed"
    );

    let base = format!("http://{}/", hosted.address());
    let url = |fragment: String| format!("{base}#{fragment}");
    let list = rendered(url(format!("key={key}"))).await;
    let list = rendered_part(&list);
    assert!(
        list.contains("id=\"executions\""),
        "the list rendered: {list}"
    );
    assert!(
        list.contains("web-trip"),
        "acme's execution is listed: {list}"
    );
    assert!(!list.contains("globex-secret"), "nothing of another tenant");

    let page = rendered(url(format!("key={key}&id=web-trip"))).await;
    let page = rendered_part(&page);
    assert!(
        page.contains("id=\"timeline\""),
        "the timeline rendered: {page}"
    );
    assert!(page.contains("ActivityAttemptFailed"), "{page}");
    assert!(
        page.contains("attempt 1 failed: Unavailable"),
        "the failed attempt and its error: {page}"
    );
    assert!(
        page.contains("↺ compensates `charge`"),
        "the compensation is marked: {page}"
    );
    assert!(page.contains("WorkflowFailed"), "{page}");
    assert!(page.contains("id=\"input\""), "input shown: {page}");

    for bad in ["", "rpk_0000000000"] {
        let page = rendered(url(format!("key={bad}&id=web-trip"))).await;
        let page = rendered_part(&page);
        assert!(
            !page.contains("web-trip"),
            "nothing shown to key {bad:?}: {page}"
        );
        assert!(!page.contains("ActivityAttemptFailed"), "{page}");
        assert!(
            page.contains("Refused") || page.contains("Enter an API key"),
            "{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_log_lines_are_stored_once_per_execution_across_a_restart() {
    let mut hosted = Hosted::with_hello_activities().await;
    let key = hosted.tenant("acme", json!({})).await;
    hosted.deploy(&key, "hello", Some("hello")).await;
    hosted
        .start_execution(
            &key,
            "hello",
            "logged",
            json!({ "name": "Logs", "sleep_ms": 800 }),
        )
        .await;
    hosted.wait_for_event(&key, "logged", "TimerStarted").await;
    // The lines were logged before the sleep; the restart replays past them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    hosted.restart().await;
    assert_eq!(hosted.finished(&key, "logged").await["status"], "completed");
    let (status, logs) = json_call(
        hosted.address(),
        &key,
        "GET",
        "/v1/executions/logged/logs",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{logs}");
    let lines = logs["lines"].as_array().expect("lines");
    let messages: Vec<(&str, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["source"].as_str().unwrap_or(""),
                line["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        messages,
        vec![
            ("log", "hello workflow started for Logs"),
            ("stdout", "stdout is captured as a log line too"),
            ("activity-stdout", "greeting Logs"),
        ],
        "each line once, though the workflow ran twice: {logs}"
    );
    assert_eq!(lines[0]["level"], "info");
    let greet_seq = lines[2]["seq"].as_u64().expect("seq");
    assert!(
        greet_seq > 0,
        "the activity's line carries its call's seq: {logs}"
    );
    let other = hosted.tenant("globex", json!({})).await;
    let (status, _) = json_call(
        hosted.address(),
        &other,
        "GET",
        "/v1/executions/logged/logs",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
}
