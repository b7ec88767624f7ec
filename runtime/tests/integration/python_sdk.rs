//! The Python SDK (`guest-sdk/python`) on the real runtime: the hello
//! workflow rewritten onto it, retries and non-retryable errors, a saga
//! that compensates in reverse, a signal that arrives or times out — the
//! `examples/order-py` workflow over the `flaky` and `record` activities
//! of `examples/hello-activities` — and the README's first Python workflow,
//! built by the SDK's build command as the README says.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reprise::Outcome;
use reprise::journal::{Event, FailureReason, WorkflowError};
use reprise::store::{ExecutionRecord, MessageKind};
use serde_json::{Value, json};

use crate::saga::compensation_chain;
use crate::support::{
    Harness, activity_config, cache_dir, completed_output, guest, guest_logs_once, readme_snippet,
    repo_root,
};

const ORDER: &str = "order-py";

/// Fails the test instead of hanging it.
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("the scenario finished within 120 s")
}

fn failure(outcome: Outcome) -> WorkflowError {
    match outcome {
        Outcome::Failed { error } => error,
        Outcome::Completed { output } => panic!("the order must fail; it completed with {output}"),
    }
}

/// What happened to the first call of activity `name`: the attempts that
/// failed (number and error type), then how it ended.
#[derive(Debug, PartialEq)]
struct CallStory {
    failed_attempts: Vec<(u32, String)>,
    completed_on_attempt: Option<u32>,
    failed_for_good: Option<(FailureReason, u32)>,
}

fn call_story(events: &[Event], name: &str) -> CallStory {
    let seq = events
        .iter()
        .find_map(|event| match event {
            Event::ActivityScheduled {
                seq, name: called, ..
            } if called == name => Some(*seq),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no call of `{name}` in the history"));
    let mut story = CallStory {
        failed_attempts: Vec::new(),
        completed_on_attempt: None,
        failed_for_good: None,
    };
    for event in events {
        match event {
            Event::ActivityAttemptFailed {
                seq: at,
                attempt,
                error,
                ..
            } if *at == seq => story
                .failed_attempts
                .push((*attempt, error.error_type.clone())),
            Event::ActivityCompleted {
                seq: at, attempt, ..
            } if *at == seq => story.completed_on_attempt = Some(*attempt),
            Event::ActivityFailed { seq: at, failure } if *at == seq => {
                story.failed_for_good = Some((failure.reason, failure.attempts))
            }
            _ => {}
        }
    }
    story
}

/// The ledger's steps in the order they were applied (forward steps 1–3,
/// compensations 100 + the step).
fn ledger_steps(harness: &Harness) -> Vec<u64> {
    harness.ledger().into_iter().map(|(_, step)| step).collect()
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

/// Starts an order and drives it to the end; if `approved_by` is given,
/// sends the `approve` signal once the workflow waits for it (a signal sent
/// earlier is kept: `a_signal_sent_before_the_activities_waits_for_the_wait`).
async fn run_order(
    harness: &Harness,
    id: &str,
    order: Value,
    approved_by: Option<&str>,
) -> (ExecutionRecord, Outcome) {
    let record = harness.start(ORDER, id, &order.to_string()).await;
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

/// A signal posted before the workflow's activities (whose waits read the
/// mailbox and find nothing for themselves) is still there for the later
/// `signal_timeout`: kept until waited for, delivered once.
#[tokio::test]
async fn a_signal_sent_before_the_activities_waits_for_the_wait() {
    let harness = Harness::default().await;
    // Without the signal, the wait would time out after 5 s.
    let order =
        json!({ "order_id": "o-early", "charge_failures": 1, "approval_timeout_ms": 5_000 });
    let record = harness
        .start(ORDER, "order-py-early-signal", &order.to_string())
        .await;
    let posted = harness
        .store
        .post_message(
            record.id,
            MessageKind::Signal,
            "approve",
            r#"{"by": "early"}"#,
            "approve-early",
        )
        .await
        .expect("post the signal");
    assert!(posted);
    // Long enough for the mailbox watcher to see the message before the
    // drive starts: it will not flag it again, so only the drive itself
    // can keep it for the signal wait.
    tokio::time::sleep(reprise::mailbox::POLL_INTERVAL * 3).await;
    let outcome = bounded(harness.runtime.drive(record.clone()))
        .await
        .expect("drive");
    assert_eq!(completed_output(&outcome)["approved_by"], "early");
    let events = harness.events(&record).await;
    let awaited = events
        .iter()
        .position(|event| matches!(event, Event::SignalAwaited { .. }))
        .expect("the workflow waited for the signal");
    let failed_attempt = events
        .iter()
        .position(|event| matches!(event, Event::ActivityAttemptFailed { .. }))
        .expect("the charge failed once first");
    assert!(
        failed_attempt < awaited,
        "activity waits came between the signal and its wait: {:?}",
        kinds(&events)
    );
}

#[tokio::test]
async fn the_python_hello_on_the_sdk_runs_logs_and_replays() {
    let harness = Harness::default().await;
    let (record, outcome) = harness
        .run(
            "hello-py",
            "hello-py-sdk",
            r#"{"name":"Ada","sleep_ms":20}"#,
        )
        .await;
    let output = completed_output(&outcome);
    assert_eq!(output["greeting"], "Hello, Ada!");
    assert_eq!(output["ledger_entries"], json!([1, 2]));
    let events = harness.events(&record).await;
    // The SDK's options reached the host: `record` has its start-to-close.
    let record_timeouts: Vec<Option<u64>> = events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityScheduled { name, options, .. } if name == "record" => {
                Some(options.start_to_close_timeout_ms)
            }
            _ => None,
        })
        .collect();
    assert_eq!(record_timeouts, vec![Some(30_000), Some(30_000)]);
    // Python `logging` goes to the durable log (source `log`), and costs
    // no clock read: the only wall-clock reads are the two the code makes.
    // Log lines are stored after the run, by their own task: wait for them.
    let lines = guest_logs_once(harness.store.as_ref(), record.id, |lines| {
        lines.iter().any(|line| line.source == "log")
    })
    .await;
    assert!(
        lines.iter().any(|line| line.source == "log"
            && line.level == "info"
            && line.message == "hello-py: workflow started for Ada"),
        "{lines:?}"
    );
    let wall_clock_reads = events
        .iter()
        .filter(|event| {
            matches!(
                event,
                Event::ClockRead {
                    clock: reprise::journal::Clock::Wall,
                    ..
                }
            )
        })
        .count();
    assert_eq!(wall_clock_reads, 2, "{:?}", kinds(&events));
    harness.assert_replays("hello-py", &record).await;
}

#[tokio::test]
async fn a_retried_charge_shows_each_attempt_and_the_signal_arrives() {
    let harness = Harness::default().await;
    let order = json!({ "order_id": "o1", "charge_failures": 2 });
    let (record, outcome) = run_order(&harness, "order-py-retried", order, Some("ada")).await;
    let output = completed_output(&outcome);
    assert_eq!(output["charged_on_attempt"], 3);
    assert_eq!(output["approved_by"], "ada");
    let events = harness.events(&record).await;
    assert_eq!(
        call_story(&events, "flaky"),
        CallStory {
            failed_attempts: vec![(1, "Transient".into()), (2, "Transient".into())],
            completed_on_attempt: Some(3),
            failed_for_good: None,
        }
    );
    // The policy the SDK built is the one journaled.
    let policy = events
        .iter()
        .find_map(|event| match event {
            Event::ActivityScheduled { name, options, .. } if name == "flaky" => {
                Some(options.retry.clone())
            }
            _ => None,
        })
        .expect("flaky scheduled");
    assert_eq!(policy.maximum_attempts, 3);
    assert_eq!(policy.initial_interval_ms, 20);
    assert_eq!(policy.non_retryable_error_types, vec!["PaymentDeclined"]);
    assert!(kinds(&events).contains(&"SignalReceived"));
    assert!(compensation_chain(&events).is_empty());
    assert_eq!(ledger_steps(&harness), vec![1, 3]);
    harness.assert_replays(ORDER, &record).await;
}

#[tokio::test]
async fn a_non_retryable_error_stops_at_once_and_the_saga_undoes_the_reservation() {
    let harness = Harness::default().await;
    let order =
        json!({ "order_id": "o2", "charge_failures": 5, "charge_error": "PaymentDeclined" });
    let (record, outcome) = run_order(&harness, "order-py-declined", order, None).await;
    let error = failure(outcome);
    assert_eq!(error.error_type, "PaymentDeclined");
    assert!(
        error
            .message
            .contains("non-retryable error after 1 attempt(s)")
            && error.message.contains("(compensated: reserve)"),
        "{error:?}"
    );
    let events = harness.events(&record).await;
    let story = call_story(&events, "flaky");
    assert_eq!(
        story.failed_for_good,
        Some((FailureReason::NonRetryable, 1)),
        "{story:?}"
    );
    assert!(story.completed_on_attempt.is_none());
    assert!(
        story.failed_attempts.len() <= 1,
        "no retry after a non-retryable error: {story:?}"
    );
    assert_eq!(compensation_chain(&events), vec!["reserve"]);
    assert_eq!(ledger_steps(&harness), vec![1, 101]);
    harness.assert_replays(ORDER, &record).await;
}

#[tokio::test]
async fn the_saga_compensates_in_reverse_once_each_and_replays() {
    let harness = Harness::default().await;
    let order = json!({ "order_id": "o3", "fail_shipping": true });
    let (record, outcome) = run_order(&harness, "order-py-saga", order, Some("ada")).await;
    let error = failure(outcome);
    assert_eq!(
        error.error_type, "ShippingUnavailable",
        "the original error"
    );
    assert!(
        error.message.contains("(compensated: charge, reserve)"),
        "{error:?}"
    );
    let report: Value =
        serde_json::from_str(error.details.as_deref().unwrap_or("null")).expect("report");
    assert_eq!(
        report,
        json!({ "compensated": ["charge", "reserve"], "failed": [], "skipped": [] })
    );
    let events = harness.events(&record).await;
    assert_eq!(compensation_chain(&events), vec!["charge", "reserve"]);
    // Reserve, then the refund, then the release: once each, in reverse,
    // under the workflow's own keys.
    let ledger = harness.ledger();
    assert_eq!(
        ledger,
        vec![
            ("reserve-o3".to_string(), 1),
            ("refund-o3".to_string(), 102),
            ("release-o3".to_string(), 101),
        ]
    );
    // The compensations got the saga's default policy (the Rust SDK's):
    // from 1 s, capped at 60 s (unlimited attempts, which the runtime
    // journals as its own cap).
    let compensation_intervals: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityScheduled { options, .. } if options.compensates.is_some() => Some((
                options.retry.initial_interval_ms,
                options.retry.maximum_interval_ms,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        compensation_intervals,
        vec![(1_000, 60_000), (1_000, 60_000)]
    );
    // Replaying the history in a fresh instance reproduces it, writing nothing.
    harness.assert_replays(ORDER, &record).await;
    assert_eq!(harness.events(&record).await, events);
}

#[tokio::test]
async fn a_signal_that_does_not_come_times_out_durably_and_the_saga_undoes_everything() {
    let harness = Harness::default().await;
    let order = json!({ "order_id": "o4", "approval_timeout_ms": 200 });
    let started = Instant::now();
    let (record, outcome) = run_order(&harness, "order-py-unapproved", order, None).await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the deadline was waited for"
    );
    let error = failure(outcome);
    assert_eq!(error.error_type, "ApprovalTimedOut");
    assert!(
        error.message.contains("(compensated: charge, reserve)"),
        "{error:?}"
    );
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
    assert_eq!(ledger_steps(&harness), vec![1, 102, 101]);
    harness.assert_replays(ORDER, &record).await;
}

/// A runtime whose activities are the Python ones of
/// `examples/activities-py` (built with `--world activity`), running the
/// Rust `patterns` workflow: one call of `activity` with `input`, at most
/// 3 quick attempts.
async fn call_python_activity(id: &str, activity: &str, input: Value) -> (Value, Vec<Event>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine =
        reprise::Engine::new(Some(cache_dir()), reprise::Limits::default()).expect("engine");
    let store = reprise::store::open(&dir.path().join("reprise.db"))
        .await
        .expect("store");
    let component = engine
        .load_file(&guest("activities-py"))
        .expect("the Python activities load");
    let registry =
        reprise::ActivityRegistry::load(engine.clone(), vec![component], activity_config(None))
            .await
            .expect("the registry takes the Python activities");
    let runtime = reprise::Runtime::new(engine, store.clone(), registry, Default::default())
        .expect("runtime");
    let bytes = std::fs::read(guest("patterns")).expect("read patterns");
    let module = runtime.deploy_workflow(&bytes).await.expect("deploy");
    let input = json!({ "mode": "call", "activity": activity, "activity_input": input });
    let (record, _) = runtime
        .start(
            "patterns",
            &module.digest,
            Some(id.to_string()),
            &input.to_string(),
        )
        .await
        .expect("start");
    let outcome = bounded(runtime.drive(record.clone())).await.expect("drive");
    let events = store
        .history(record.id)
        .await
        .expect("history")
        .into_iter()
        .map(|recorded| recorded.event)
        .collect();
    (completed_output(&outcome), events)
}

#[tokio::test]
async fn python_activities_serve_calls_and_fail_as_they_say() {
    // A plain exception is a retryable failure named by its class.
    let (output, events) =
        call_python_activity("py-flaky", "py-flaky", json!({ "fail_times": 2 })).await;
    assert_eq!(output, json!({ "output": 3 }));
    assert_eq!(
        call_story(&events, "py-flaky").failed_attempts,
        vec![
            (1, "RuntimeError".to_string()),
            (2, "RuntimeError".to_string())
        ]
    );
    // `ActivityError(..., non_retryable=True)` stops at once.
    let (output, _) = call_python_activity(
        "py-declined",
        "py-charge",
        json!({ "cents": 500, "card": "4000 0000 0000 0002" }),
    )
    .await;
    assert_eq!(output["failed"]["reason"], "FailureReason::NonRetryable");
    assert_eq!(output["failed"]["attempts"], 1);
    assert_eq!(output["failed"]["error_type"], "CardDeclined");
    // The context answers from the host: the key the journal fixed.
    let (output, events) = call_python_activity(
        "py-charged",
        "py-charge",
        json!({ "cents": 500, "card": "4242" }),
    )
    .await;
    let key = events
        .iter()
        .find_map(|event| match event {
            Event::ActivityScheduled {
                idempotency_key, ..
            } => Some(idempotency_key.clone()),
            _ => None,
        })
        .expect("scheduled");
    assert_eq!(
        output["output"],
        json!({ "charge_id": format!("ch-{key}"), "cents": 500, "attempt": 1 })
    );
}

/// Runs the README's build command, as printed there, in `dir`.
fn build_as_the_readme_says(dir: &Path) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let command = "python3 -m reprise_sdk.build app.py -o app.wasm";
    assert!(
        readme.contains(command),
        "README.md gives the build command `{command}`"
    );
    let started = Instant::now();
    let output = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        // What `pip install guest-sdk/python` gives, without installing.
        .env("PYTHONPATH", repo_root().join("guest-sdk/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run the build command");
    assert!(
        output.status.success(),
        "the README's build command failed after {:?}:\n{}{}",
        started.elapsed(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_readme_python_workflow_builds_and_runs_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("app.py"),
        readme_snippet("python-first-workflow"),
    )
    .expect("write app.py");
    build_as_the_readme_says(dir.path());

    crate::readme::the_first_workflow_runs(&dir.path().join("app.wasm"), "readme-python").await;
}

/// The WIT bundled with the SDK (what an installed `reprise_sdk.build` uses
/// by default) is the contract's, byte for byte.
#[test]
fn the_sdk_bundles_the_contract_wit() {
    let contract = std::fs::read(repo_root().join("wit/reprise.wit")).expect("wit");
    let bundled = std::fs::read(repo_root().join("guest-sdk/python/reprise_sdk/wit/reprise.wit"))
        .expect("the SDK's bundled WIT");
    assert!(
        contract == bundled,
        "guest-sdk/python/reprise_sdk/wit/reprise.wit differs from wit/reprise.wit: copy it over"
    );
}

/// The Python trip next to the Rust one: the same calls (bytes, keys,
/// options), the same outcomes and compensations, the same error. Only
/// CPython's start-up random draws are extra in its history.
#[tokio::test]
async fn trip_py_compensates_in_reverse_once_each_like_the_rust_saga() {
    use crate::js_sdk::{both_trips, commands_and_outcomes, comparable_calls};
    use reprise_providers::{REFUND, RELEASE, RESERVATION};

    let harness = Harness::default().await;
    let [
        (rust_error, rust_events, rust_providers),
        (error, events, providers),
    ] = both_trips(&harness, "trip-py", "t1", &["flight", "hotel"], json!({})).await;
    assert_eq!(error.error_type, "ProvisioningFailed", "the original error");
    assert_eq!(error, rust_error, "the same error, message and report");
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
    assert_eq!(
        commands_and_outcomes(&events),
        commands_and_outcomes(&rust_events)
    );
    let placeholders = |providers: &crate::saga::Providers| {
        vec![
            (providers.inventory.url(), "<inventory>"),
            (providers.payments.url(), "<payments>"),
        ]
    };
    assert_eq!(
        comparable_calls(&events, &placeholders(&providers)),
        comparable_calls(&rust_events, &placeholders(&rust_providers))
    );

    // A declined card: the charge never took effect and is not refunded.
    let [(rust_error, _, _), (error, events, providers)] = both_trips(
        &harness,
        "trip-py",
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
}
