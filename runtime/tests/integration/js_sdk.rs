//! The TypeScript SDK (`guest-sdk/js`) on the real runtime: the hello,
//! order and trip workflows rewritten onto it (`examples/*-js`), each run
//! next to its Rust version against the same activities and providers and
//! held to the same result and the same history; retries and
//! non-retryable errors; compensations once each; a signal that arrives or
//! times out; children and `awaitAny`; what plain JavaScript's clocks,
//! randomness, timers and promises do across executions and replays (the
//! SDK's probe workflow, `guest-sdk/js/tests/probe.ts`); a SIGKILLed
//! `reprise run` of the JavaScript hello resumed; and the README's first
//! TypeScript workflow, built by the SDK's build command as the README says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reprise::Outcome;
use reprise::journal::{Clock, Event, FailureReason, History, RecordedEvent, WorkflowError};
use reprise::store::{self, ExecutionRecord, MessageKind};
use reprise_providers::{PaymentProvider, REFUND, RELEASE, RESERVATION};
use serde_json::{Value, json};

use crate::crash::until_count;
use crate::saga::{Providers, compensation_chain};
use crate::support::{
    Harness, cache_dir, completed_output, guest, guest_logs_once, read_ledger, readme_snippet,
    repo_root,
};

const PROBE: &str = "js-probe";

/// Fails the test instead of hanging it.
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("the scenario finished within 120 s")
}

fn failure(outcome: Outcome) -> WorkflowError {
    match outcome {
        Outcome::Failed { error } => error,
        Outcome::Completed { output } => {
            panic!("the workflow must fail; it completed with {output}")
        }
    }
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

/// What the workflow asked the host for, in order, without the clock reads
/// and random draws (compared by `assert_same_history`).
pub(crate) fn commands_and_outcomes(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .filter(|event| !matches!(event, Event::ClockRead { .. } | Event::RandomDrawn { .. }))
        .map(Event::kind)
        .collect()
}

fn monotonic_reads(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|event| {
            matches!(
                event,
                Event::ClockRead {
                    clock: Clock::Monotonic,
                    ..
                }
            )
        })
        .count()
}

/// The TypeScript version's history is the Rust version's, event kind by
/// event kind, but for the monotonic clock reads the JavaScript engine
/// makes on its own (SpiderMonkey's event loop reads the clock around its
/// jobs; they are journaled like any read): the same commands and outcomes
/// in the same order, the same wall-clock reads and random draws.
fn assert_same_history(js: &[Event], rust: &[Event]) {
    assert_eq!(
        commands_and_outcomes(js),
        commands_and_outcomes(rust),
        "the same commands and outcomes, in the same order"
    );
    assert_eq!(
        wall_clock_reads_ms(js).len(),
        wall_clock_reads_ms(rust).len()
    );
    assert_eq!(random_draws(js).len(), random_draws(rust).len());
    assert_eq!(monotonic_reads(rust), 0, "{:?}", kinds(rust));
    let js_without_engine_reads: Vec<&str> = js
        .iter()
        .filter(|event| {
            !matches!(
                event,
                Event::ClockRead {
                    clock: Clock::Monotonic,
                    ..
                }
            )
        })
        .map(Event::kind)
        .collect();
    assert_eq!(js_without_engine_reads, kinds(rust));
}

/// (name, input, idempotency key, options) of every activity call: equal
/// between two languages when they call the same activities with the same
/// JSON bytes, keys and options.
fn scheduled_calls(events: &[Event]) -> Vec<(String, String, String, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityScheduled {
                name,
                input,
                options,
                idempotency_key,
                ..
            } => Some((
                name.clone(),
                input.clone(),
                idempotency_key.clone(),
                format!("{options:?}"),
            )),
            _ => None,
        })
        .collect()
}

/// `scheduled_calls` comparable across two executions: a key the runtime
/// derived (from workflow id, run id and sequence number) reads
/// `<derived>`, and each of `urls` (a provider's address) its placeholder.
pub(crate) fn comparable_calls(
    events: &[Event],
    urls: &[(String, &str)],
) -> Vec<(String, String, String, String)> {
    scheduled_calls(events)
        .into_iter()
        .map(|(name, mut input, key, options)| {
            for (url, placeholder) in urls {
                input = input.replace(url.as_str(), placeholder);
            }
            let key = if key.starts_with("rk_") {
                "<derived>".to_string()
            } else {
                key
            };
            (name, input, key, options)
        })
        .collect()
}

fn attempt_failures(events: &[Event]) -> Vec<(u32, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityAttemptFailed { attempt, error, .. } => {
                Some((*attempt, error.error_type.clone()))
            }
            _ => None,
        })
        .collect()
}

fn failed_activity(events: &[Event]) -> reprise::journal::ActivityFailure {
    events
        .iter()
        .find_map(|event| match event {
            Event::ActivityFailed { failure, .. } => Some(failure.clone()),
            _ => None,
        })
        .expect("an activity failed for good")
}

/// The values of the wall-clock reads, in ms, in history order.
fn wall_clock_reads_ms(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ClockRead {
                clock: Clock::Wall,
                value_ns,
                ..
            } => Some(value_ns / 1_000_000),
            _ => None,
        })
        .collect()
}

/// The random draws, as hex, in history order.
fn random_draws(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::RandomDrawn { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

/// A u64 as the SDKs and the engine read the first 8 bytes of a draw:
/// little-endian. (`crypto.getRandomValues` draws 256 bytes into a pool
/// and serves its calls from it.)
fn u64_of_hex(bytes: &str) -> u64 {
    assert!(bytes.len() >= 16, "at least 8 bytes: {bytes}");
    let mut value = 0u64;
    for index in (0..8).rev() {
        let byte = u64::from_str_radix(&bytes[index * 2..index * 2 + 2], 16).expect("hex");
        value = (value << 8) | byte;
    }
    value
}

/// The JSON text of a completed outcome, as recorded (u64s exact).
fn completed_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed { output } => output.get().to_string(),
        Outcome::Failed { error } => panic!("expected completion, the workflow failed: {error}"),
    }
}

/// The top-level keys of a JSON object, in the order written.
fn keys_in_order(text: &str) -> Vec<String> {
    let value: serde_json::Map<String, Value> = serde_json::from_str(text).expect("an object");
    let mut keys: Vec<(usize, String)> = value
        .keys()
        .map(|key| (text.find(&format!("\"{key}\":")).expect("key"), key.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, key)| key).collect()
}

/// A u64 field of recorded JSON text, read without passing through a float.
fn u64_field(text: &str, field: &str) -> u64 {
    let value: Value = serde_json::from_str(text).expect("JSON");
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is a u64 in {text}"))
}

#[tokio::test]
async fn hello_js_gives_the_rust_hello_result_and_history() {
    // A harness each: the `record` activity numbers its ledger lines.
    let rust_harness = Harness::default().await;
    let harness = Harness::default().await;
    let input = r#"{"name":"Ada","sleep_ms":20}"#;
    let (rust_record, rust) = rust_harness.run("hello", "hello-rust", input).await;
    let (js_record, js) = harness.run("hello-js", "hello-js", input).await;
    let (rust_text, js_text) = (completed_text(&rust), completed_text(&js));
    let (rust_output, js_output) = (completed_output(&rust), completed_output(&js));
    assert_eq!(js_output["greeting"], "Hello, Ada!");
    assert_eq!(js_output["greeting"], rust_output["greeting"]);
    assert_eq!(js_output["ledger_entries"], json!([1, 2]));
    assert_eq!(rust_output["ledger_entries"], json!([1, 2]));
    assert_eq!(keys_in_order(&js_text), keys_in_order(&rust_text));

    let rust_events = rust_harness.events(&rust_record).await;
    let js_events = harness.events(&js_record).await;
    assert_same_history(&js_events, &rust_events);
    assert_eq!(
        comparable_calls(&js_events, &[]),
        comparable_calls(&rust_events, &[]),
        "the same activity calls, byte for byte"
    );
    // The values the code returned are the journaled ones: the SDK's clock
    // and Date.now() are the last two wall-clock reads before the first
    // activity, the SDK's u64 and crypto's are the last two draws.
    let before_greet = js_events
        .iter()
        .position(|event| matches!(event, Event::ActivityScheduled { .. }))
        .expect("greet scheduled");
    let clocks = wall_clock_reads_ms(&js_events[..before_greet]);
    assert!(clocks.len() >= 2, "{:?}", kinds(&js_events));
    assert_eq!(
        [
            u64_field(&js_text, "sdk_now_ms"),
            u64_field(&js_text, "std_now_ms")
        ],
        clocks[clocks.len() - 2..]
    );
    let draws = random_draws(&js_events[..before_greet]);
    assert!(draws.len() >= 2, "{:?}", kinds(&js_events));
    assert_eq!(
        [
            u64_field(&js_text, "sdk_random"),
            u64_field(&js_text, "rand_random")
        ],
        [
            u64_of_hex(&draws[draws.len() - 2]),
            u64_of_hex(&draws[draws.len() - 1])
        ],
        "u64s written exactly, not through a float"
    );
    assert_eq!(draws[draws.len() - 1].len(), 2 * 256, "crypto's pool");
    // The log line went to the durable log (source `log`), at info.
    let lines = guest_logs_once(harness.store.as_ref(), js_record.id, |lines| {
        lines.iter().filter(|line| line.source == "log").count() >= 2
    })
    .await;
    let logged: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter(|line| line.source == "log")
        .map(|line| {
            (
                line.source.as_str(),
                line.level.as_str(),
                line.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        logged,
        vec![
            ("log", "info", "hello workflow started for Ada"),
            ("log", "info", "console.log is a log line too"),
        ]
    );
    harness.assert_replays("hello-js", &js_record).await;
}

fn order(provider: &PaymentProvider, order_id: &str, extra: Value) -> String {
    let mut input = json!({
        "order_id": order_id,
        "amount_cents": 1999,
        "provider_url": provider.url(),
        "initial_interval_ms": 50,
    });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    input.to_string()
}

/// Runs the order in Rust and in TypeScript, each against a provider of
/// its own set up by `prepare`; returns (Rust, TypeScript) as (outcome,
/// events, provider).
async fn both_orders(
    harness: &Harness,
    order_id: &str,
    extra: Value,
    prepare: impl Fn(&PaymentProvider),
) -> [(Outcome, Vec<Event>, PaymentProvider); 2] {
    let mut runs = Vec::new();
    for workflow in ["order", "order-js"] {
        let provider = PaymentProvider::start(0).await.expect("provider");
        prepare(&provider);
        let input = order(&provider, order_id, extra.clone());
        let (record, outcome) =
            bounded(harness.run(workflow, &format!("{workflow}-{order_id}"), &input)).await;
        let events = harness.events(&record).await;
        harness.assert_replays(workflow, &record).await;
        runs.push((outcome, events, provider));
    }
    runs.try_into().unwrap_or_else(|_| unreachable!())
}

#[tokio::test]
async fn order_js_charges_once_through_a_lost_response_like_the_rust_order() {
    let harness = Harness::default().await;
    let [
        (rust, rust_events, rust_provider),
        (js, js_events, provider),
    ] = both_orders(&harness, "42", json!({}), |provider| {
        provider.drop_responses(1)
    })
    .await;
    let output = completed_output(&js);
    let ledger = provider.ledger();
    assert_eq!(ledger.len(), 1, "exactly one charge: {ledger:?}");
    assert_eq!(output["charge_id"], ledger[0].charge_id.as_str());
    assert_eq!(ledger[0].idempotency_key, "charge-42");
    assert_eq!(provider.requests(), 2, "the retry got the same charge");
    assert_eq!(
        attempt_failures(&js_events),
        vec![(1, "HttpConnectionError".to_string())]
    );
    assert_eq!(output["provisioned"], true);
    // The same receipt, byte for byte, and the same history.
    assert_eq!(completed_text(&js), completed_text(&rust));
    assert_same_history(&js_events, &rust_events);
    assert_eq!(
        comparable_calls(&js_events, &[(provider.url(), "<payments>")]),
        comparable_calls(&rust_events, &[(rust_provider.url(), "<payments>")])
    );
}

#[tokio::test]
async fn order_js_retries_transient_failures_and_stops_at_a_declined_card() {
    let harness = Harness::default().await;
    let [(rust, rust_events, _), (js, js_events, provider)] =
        both_orders(&harness, "43", json!({}), |provider| {
            provider.fail_with_503(2)
        })
        .await;
    assert_eq!(completed_output(&js)["charge_id"], "ch_1");
    assert_eq!(provider.ledger().len(), 1);
    assert_eq!(
        attempt_failures(&js_events),
        vec![
            (1, "Unavailable".to_string()),
            (2, "Unavailable".to_string())
        ]
    );
    assert_eq!(completed_text(&js), completed_text(&rust));
    assert_same_history(&js_events, &rust_events);

    // A declined card is non-retryable: one attempt, a typed failure.
    let [(rust, rust_events, _), (js, js_events, provider)] =
        both_orders(&harness, "44", json!({ "card": "declined" }), |_| {}).await;
    let (rust_error, js_error) = (failure(rust), failure(js));
    assert_eq!(js_error.error_type, "PaymentNotCompleted");
    assert_eq!(js_error, rust_error, "the same error, word for word");
    assert_eq!(attempt_failures(&js_events).len(), 1, "exactly one attempt");
    assert_eq!(
        failed_activity(&js_events).reason,
        FailureReason::NonRetryable
    );
    assert_eq!(provider.requests(), 1);
    assert!(provider.ledger().is_empty());
    assert_same_history(&js_events, &rust_events);

    // Exhausted attempts: the typed failure the Rust SDK gives.
    let [(rust, _, _), (js, js_events, _)] =
        both_orders(&harness, "45", json!({ "max_attempts": 3 }), |provider| {
            provider.fail_with_503(1_000)
        })
        .await;
    let failed = failed_activity(&js_events);
    assert_eq!(failed.reason, FailureReason::AttemptsExhausted);
    assert_eq!(failed.attempts, 3);
    let js_error = failure(js);
    assert!(
        js_error
            .message
            .contains("activity gave up: attempts exhausted after 3 attempt(s)"),
        "{js_error:?}"
    );
    assert_eq!(js_error, failure(rust));
}

/// Runs the trip in Rust and as `workflow` (another language's build),
/// each against providers of its own; returns (error, events, providers)
/// for each.
pub(crate) async fn both_trips(
    harness: &Harness,
    workflow: &str,
    trip_id: &str,
    legs: &[&str],
    extra: Value,
) -> [(WorkflowError, Vec<Event>, Providers); 2] {
    let mut runs = Vec::new();
    for workflow in ["trip", workflow] {
        let providers = Providers::start().await;
        let input = providers.trip(trip_id, legs, extra.clone());
        let (record, outcome) =
            bounded(harness.run(workflow, &format!("{workflow}-{trip_id}"), &input)).await;
        let events = harness.events(&record).await;
        harness.assert_replays(workflow, &record).await;
        runs.push((failure(outcome), events, providers));
    }
    runs.try_into().unwrap_or_else(|_| unreachable!())
}

#[tokio::test]
async fn trip_js_compensates_in_reverse_once_each_like_the_rust_saga() {
    let harness = Harness::default().await;
    let [
        (rust_error, rust_events, rust_providers),
        (error, events, providers),
    ] = both_trips(&harness, "trip-js", "t1", &["flight", "hotel"], json!({})).await;
    assert_eq!(error.error_type, "ProvisioningFailed", "the original error");
    assert!(
        error
            .message
            .contains("compensated: charge, reserve hotel, reserve flight"),
        "{error}"
    );
    let report: Value =
        serde_json::from_str(error.details.as_deref().unwrap_or("null")).expect("report");
    assert_eq!(
        report,
        json!({ "compensated": ["charge", "reserve hotel", "reserve flight"], "failed": [], "skipped": [] })
    );
    assert_eq!(
        error, rust_error,
        "the same error, message and report as the Rust saga"
    );
    // Once each, in reverse: the refund, then hotel's release, then flight's.
    assert_eq!(providers.effects(REFUND), vec!["ch_1"]);
    assert_eq!(
        providers.effects(RESERVATION),
        vec!["t1/flight", "t1/hotel"]
    );
    assert_eq!(providers.effects(RELEASE), vec!["rs_2", "rs_1"]);
    assert_eq!(
        compensation_chain(&events),
        vec!["charge", "reserve hotel", "reserve flight"]
    );
    assert_same_history(&events, &rust_events);
    let placeholders = |providers: &Providers| {
        vec![
            (providers.inventory.url(), "<inventory>"),
            (providers.payments.url(), "<payments>"),
        ]
    };
    assert_eq!(
        comparable_calls(&events, &placeholders(&providers)),
        comparable_calls(&rust_events, &placeholders(&rust_providers))
    );
}

#[tokio::test]
async fn trip_js_does_not_compensate_a_step_that_never_succeeded() {
    let harness = Harness::default().await;
    let [(rust_error, rust_events, _), (error, events, providers)] = both_trips(
        &harness,
        "trip-js",
        "t2",
        &["flight", "hotel"],
        json!({ "card": "declined" }),
    )
    .await;
    assert!(providers.effects(REFUND).is_empty(), "no charge, no refund");
    assert_eq!(providers.effects(RELEASE), vec!["rs_2", "rs_1"]);
    assert_eq!(
        compensation_chain(&events),
        vec!["reserve hotel", "reserve flight"]
    );
    assert_eq!(error, rust_error);
    assert_same_history(&events, &rust_events);
}

/// Starts the probe in `mode`, drives it, and sends the `approve` signal
/// once it waits if `approved_by` is given.
async fn run_signal_probe(
    harness: &Harness,
    id: &str,
    timeout_ms: u64,
    approved_by: Option<&str>,
) -> (ExecutionRecord, Outcome) {
    let input = json!({ "mode": "signal", "timeout_ms": timeout_ms }).to_string();
    let record = harness.start(PROBE, id, &input).await;
    let approver =
        async {
            let Some(by) = approved_by else { return };
            while !harness.events(&record).await.iter().any(
                |event| matches!(event, Event::SignalAwaited { name, .. } if name == "approve"),
            ) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let payload = json!({ "by": by }).to_string();
            let posted = harness
                .store
                .post_message(
                    record.id,
                    MessageKind::Signal,
                    "approve",
                    &payload,
                    "approve-1",
                )
                .await
                .expect("post the signal");
            assert!(posted);
        };
    let (outcome, ()) =
        bounded(async { tokio::join!(harness.runtime.drive(record.clone()), approver) }).await;
    (record, outcome.expect("drive"))
}

#[tokio::test]
async fn a_signal_arrives_or_times_out_durably() {
    let harness = Harness::default().await;
    let (record, outcome) =
        run_signal_probe(&harness, "js-signal-arrives", 60_000, Some("ada")).await;
    let output = completed_output(&outcome);
    assert_eq!(output["approved_by"], "ada");
    assert_eq!(
        output["info"],
        json!({ "workflowId": "js-signal-arrives", "runId": record.run_id, "workflowType": PROBE, "tenant": "default" })
    );
    let events = harness.events(&record).await;
    assert!(kinds(&events).contains(&"SignalReceived"));
    harness.assert_replays(PROBE, &record).await;

    let started = Instant::now();
    let (record, outcome) = run_signal_probe(&harness, "js-signal-times-out", 200, None).await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the deadline was waited for"
    );
    assert_eq!(completed_output(&outcome)["approved_by"], Value::Null);
    let events = harness.events(&record).await;
    let deadline = events.iter().find_map(|event| match event {
        Event::SignalAwaited {
            name, deadline_ms, ..
        } if name == "approve" => Some(*deadline_ms),
        _ => None,
    });
    assert!(
        matches!(deadline, Some(Some(_))),
        "a durable deadline: {deadline:?}"
    );
    assert!(kinds(&events).contains(&"SignalTimedOut"));
    assert!(!kinds(&events).contains(&"SignalReceived"));
    harness.assert_replays(PROBE, &record).await;
}

#[tokio::test]
async fn children_and_await_any_answer_in_history_order() {
    let harness = Harness::default().await;
    let input = json!({ "mode": "fan-out", "children": 2 }).to_string();
    let (record, outcome) = bounded(harness.run(PROBE, "js-fan-out", &input)).await;
    let output = completed_output(&outcome);
    assert_eq!(
        output,
        json!({ "first": "add-one", "results": [0, 2], "slow": 1000, "fast": 42, "named": 200 })
    );
    let events = harness.events(&record).await;
    let children: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|event| match event {
            Event::ChildStarted {
                workflow_type,
                workflow_id,
                ..
            } => Some((workflow_type.as_str(), workflow_id.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(children.len(), 3, "{children:?}");
    assert!(children.iter().all(|(kind, _)| *kind == PROBE));
    assert_eq!(children[2].1, "js-fan-out/named", "the id the code chose");
    assert_eq!(
        kinds(&events)
            .iter()
            .filter(|kind| **kind == "ChildCompleted")
            .count(),
        3
    );
    harness.assert_replays(PROBE, &record).await;
}

#[tokio::test]
async fn a_cancellation_rejects_the_sleep_once_and_the_workflow_ends_cancelled() {
    let harness = Harness::default().await;
    let record = harness
        .start(PROBE, "js-cancelled", r#"{"mode":"cancel"}"#)
        .await;
    let canceller = async {
        while !kinds(&harness.events(&record).await).contains(&"TimerStarted") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        harness
            .store
            .post_message(record.id, MessageKind::Cancel, "", "null", "cancel")
            .await
            .expect("cancel")
    };
    let (outcome, _) =
        bounded(async { tokio::join!(harness.runtime.drive(record.clone()), canceller) }).await;
    let error = failure(outcome.expect("drive"));
    assert_eq!(error.error_type, "Cancelled", "{error:?}");
    let events = harness.events(&record).await;
    let kinds = commands_and_outcomes(&events);
    let delivered = kinds
        .iter()
        .position(|kind| *kind == "CancellationDelivered")
        .expect("the cancellation was delivered");
    // The call after the rejected sleep ran normally, then the workflow
    // let the cancellation through.
    assert_eq!(
        kinds[delivered..],
        [
            "CancellationDelivered",
            "ActivityScheduled",
            "ActivityCompleted",
            "WorkflowCancelled"
        ],
        "{kinds:?}"
    );
    harness.assert_replays(PROBE, &record).await;
}

/// What the determinism probe returns that must differ between two
/// executions: each is drawn or read per execution, not fixed by the build.
const PER_EXECUTION: [&str; 6] = [
    "wall_before",
    "date_iso",
    "math_random",
    "crypto_bytes",
    "uuid",
    "sdk_random",
];

#[tokio::test]
async fn plain_javascript_time_randomness_and_timers_are_journaled() {
    // Long enough that loading and replaying in a fresh instance takes less
    // than the longest timer: a replay that waited would show.
    let timer_ms = 300u64;
    let input = json!({ "mode": "determinism", "timer_ms": timer_ms }).to_string();
    let mut answers = Vec::new();
    for evict_on_wait in [false, true] {
        let harness = Harness::new(reprise::Limits::default(), evict_on_wait).await;
        let id = format!("js-determinism-evict-{evict_on_wait}");
        let (record, outcome) = bounded(harness.run(PROBE, &id, &input)).await;
        let answer = completed_output(&outcome);
        // Timers fire in due order after the microtasks; a timer due while
        // an activity blocks fires after the activity's result.
        assert_eq!(
            answer["order"],
            json!([
                "synchronous",
                "promise",
                "queueMicrotask",
                format!("timer {} ms", timer_ms),
                format!("timer {} ms", 2 * timer_ms),
                format!("timer {} ms", 3 * timer_ms),
                format!("activity paused {timer_ms} ms"),
                "timer due during the activity",
            ]),
            "{answer}"
        );
        let elapsed = answer["wall_after"].as_u64().expect("wall_after")
            - answer["wall_before"].as_u64().expect("wall_before");
        assert!(
            elapsed >= 4 * timer_ms,
            "the timers were waited for: {answer}"
        );
        assert!(
            answer["monotonic_elapsed_ms"].as_u64().expect("monotonic") >= 4 * timer_ms,
            "{answer}"
        );
        // No TZ in the (empty) environment: local time is UTC; no Intl.
        assert_eq!(answer["timezone_offset_min"], 0);
        assert_eq!(
            answer["local_time"],
            "Thu Jan 01 1970 00:00:00 GMT+0000 (UTC)"
        );
        assert_eq!(answer["intl"], "undefined");
        let events = harness.events(&record).await;
        let clock_reads = |clock: Clock| {
            events
                .iter()
                .filter(
                    |event| matches!(event, Event::ClockRead { clock: read, .. } if *read == clock),
                )
                .count()
        };
        assert!(clock_reads(Clock::Wall) >= 3, "{:?}", kinds(&events));
        assert!(clock_reads(Clock::Monotonic) >= 2, "{:?}", kinds(&events));
        // setTimeout is a durable timer: started and fired in the history.
        let timers_fired = kinds(&events)
            .iter()
            .filter(|kind| **kind == "TimerFired")
            .count();
        assert!(timers_fired >= 3, "{:?}", kinds(&events));
        // The replay (a fresh instance, every value from the journal) returns
        // the same answer: Date, Math.random, crypto, performance.now and
        // the timer order are all reproduced.
        let replaying = Instant::now();
        harness.assert_replays(PROBE, &record).await;
        assert!(
            replaying.elapsed() < Duration::from_millis(3 * timer_ms),
            "a replay does not wait for timers that fired ({:?})",
            replaying.elapsed()
        );
        answers.push(answer);
    }
    for field in PER_EXECUTION {
        assert_ne!(
            answers[0][field], answers[1][field],
            "`{field}` differs between two executions"
        );
    }
    let randoms = answers[0]["math_random"].as_array().expect("math_random");
    assert_eq!(randoms.len(), 3);
    assert_ne!(
        randoms[0], randoms[1],
        "Math.random() draws a new value each call"
    );
}

/// `reprise run` of the JavaScript hello, SIGKILLed at several points and
/// rerun with the same id, finishes exactly as an uninterrupted run: the
/// same commands, the values drawn before the kill, each effect once.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("activity")).expect("activity dir");
        Workspace { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("reprise.db")
    }

    fn activity_dir(&self) -> PathBuf {
        self.dir.path().join("activity")
    }

    fn spawn(&self, id: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_reprise"))
            .arg("run")
            .arg(guest("hello-js"))
            .arg("--activities")
            .arg(guest("hello-activities"))
            .args([
                "--input",
                r#"{"name":"Crash","sleep_ms":250,"work_ms":250}"#,
                "--id",
                id,
                "--json",
            ])
            .arg("--db")
            .arg(self.db())
            .arg("--cache-dir")
            .arg(cache_dir())
            .arg("--activity-dir")
            .arg(self.activity_dir())
            .env("REPRISE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn reprise")
    }

    async fn history(&self, id: &str) -> Vec<RecordedEvent> {
        let store = store::open(&self.db()).await.expect("open store");
        let record = store
            .execution("default", id)
            .await
            .expect("read execution")
            .expect("execution exists");
        store.history(record.id).await.expect("history")
    }
}

/// The JSON `reprise run --json` printed, once it exits successfully.
fn finish(child: Child) -> String {
    let output = child.wait_with_output().expect("wait for reprise");
    assert!(
        output.status.success(),
        "reprise run failed: {:?}",
        output.status
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn recorded_kinds(history: &[RecordedEvent]) -> Vec<&'static str> {
    history
        .iter()
        .map(|recorded| recorded.event.kind())
        .collect()
}

#[tokio::test]
async fn hello_js_survives_sigkill_and_resumes_with_the_journaled_values() {
    let reference = Workspace::new();
    let reference_text = tokio::task::spawn_blocking({
        let child = reference.spawn("js-crash");
        move || finish(child)
    })
    .await
    .expect("the uninterrupted run");
    let reference_history = reference.history("js-crash").await;

    let crashed = Workspace::new();
    let mut snapshots = Vec::new();
    // During greet, the first sleep, record #1 (it works 250 ms), the second sleep.
    for (kind, count) in [
        ("ActivityScheduled", 1),
        ("TimerStarted", 1),
        ("ActivityScheduled", 2),
        ("TimerStarted", 2),
    ] {
        let mut child = crashed.spawn("js-crash");
        until_count(&mut child, &crashed.db(), "js-crash", kind, count).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        snapshots.push(crashed.history("js-crash").await);
    }
    let text = tokio::task::spawn_blocking({
        let child = crashed.spawn("js-crash");
        move || finish(child)
    })
    .await
    .expect("the resumed run");
    let history = crashed.history("js-crash").await;
    let output: Value = serde_json::from_str(&text).expect("JSON output");
    let reference_output: Value = serde_json::from_str(&reference_text).expect("JSON output");
    assert_eq!(output["greeting"], reference_output["greeting"]);
    assert_eq!(output["ledger_entries"], json!([1, 2]));
    assert_eq!(recorded_kinds(&history), recorded_kinds(&reference_history));
    // No journal entry was lost or changed: every snapshot is a prefix.
    History::from_recorded(history.clone()).expect("contiguous history");
    for snapshot in &snapshots {
        assert_eq!(snapshot.as_slice(), &history[..snapshot.len()]);
    }
    // The values read before the first kill came back from the journal.
    let events: Vec<Event> = history
        .iter()
        .map(|recorded| recorded.event.clone())
        .collect();
    let before_greet = events
        .iter()
        .position(|event| matches!(event, Event::ActivityScheduled { .. }))
        .expect("greet scheduled");
    let clocks = wall_clock_reads_ms(&events[..before_greet]);
    assert_eq!(
        [
            u64_field(&text, "sdk_now_ms"),
            u64_field(&text, "std_now_ms")
        ],
        clocks[clocks.len() - 2..]
    );
    let draws = random_draws(&events[..before_greet]);
    assert_eq!(
        u64_field(&text, "rand_random"),
        u64_of_hex(&draws[draws.len() - 1])
    );
    // Each effect once per idempotency key.
    let ledger = read_ledger(&crashed.activity_dir());
    let mut keys: Vec<&str> = ledger.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        ledger.len(),
        "a key was applied twice: {ledger:?}"
    );
    assert_eq!(ledger.len(), 2);

    let replayed = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["replay", "--history", "js-crash", "--module"])
        .arg(guest("hello-js"))
        .arg("--db")
        .arg(crashed.db())
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("REPRISE_LOG", "warn")
        .output()
        .expect("run reprise replay");
    assert!(
        replayed.status.success(),
        "reprise replay: {}",
        String::from_utf8_lossy(&replayed.stdout)
    );
}

/// What `npm install --save-dev ./guest-sdk/js` gives a project in `dir`,
/// without copying ~390 MB: the package linked into node_modules and its
/// bin linked into node_modules/.bin.
fn install_the_sdk_into(dir: &Path) {
    let sdk = repo_root().join("guest-sdk/js");
    let modules = dir.join("node_modules");
    std::fs::create_dir_all(modules.join(".bin")).expect("node_modules/.bin");
    std::os::unix::fs::symlink(&sdk, modules.join("reprise-sdk")).expect("link the package");
    std::os::unix::fs::symlink(
        sdk.join("bin/reprise-build.mjs"),
        modules.join(".bin/reprise-build"),
    )
    .expect("link the bin");
}

#[tokio::test]
async fn the_readme_typescript_workflow_builds_and_runs_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("app.ts"),
        readme_snippet("typescript-first-workflow"),
    )
    .expect("write app.ts");
    install_the_sdk_into(dir.path());
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let command = "npx reprise-build app.ts -o app.wasm";
    assert!(
        readme.contains(command),
        "README.md gives the build command `{command}`"
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir.path())
        // Never fetch: the linked package's bin must be found.
        .env("npm_config_offline", "true")
        .output()
        .expect("run the build command");
    assert!(
        output.status.success(),
        "the README's build command failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    crate::readme::the_first_workflow_runs(&dir.path().join("app.wasm"), "readme-typescript").await;
}
