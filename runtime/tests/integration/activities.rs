//! Activities for real: the payment flow against the fake provider (a real
//! HTTP server on 127.0.0.1) through the built-in `http` activity, a Wasm
//! activity with outbound HTTP; retry triage, timeouts, heartbeats, and
//! bad input. External workers are in `workers.rs`.

use reprise::journal::{Event, FailureReason};
use reprise::{Limits, Outcome};
use reprise_providers::PaymentProvider;
use serde_json::{Value, json};

use crate::support::{Harness, completed_output, guest_logs_once};

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

fn attempt_failures(events: &[Event]) -> Vec<(u32, String, Option<u64>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityAttemptFailed {
                attempt,
                error,
                retry_at_ms,
                ..
            } => Some((*attempt, error.error_type.clone(), *retry_at_ms)),
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

/// The story this runtime must make impossible: the charge succeeds, the
/// response is lost, the call is retried — and the customer pays twice.
#[tokio::test]
async fn a_lost_response_is_retried_and_charged_once() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    provider.drop_responses(1);
    let harness = Harness::default().await;
    let (record, outcome) = harness
        .run("order", "order-lost", &order(&provider, "42", json!({})))
        .await;
    let output = completed_output(&outcome);
    let ledger = provider.ledger();
    assert_eq!(ledger.len(), 1, "exactly one charge: {ledger:?}");
    assert_eq!(output["charge_id"], ledger[0].charge_id.as_str());
    assert_eq!(ledger[0].idempotency_key, "charge-42");
    assert_eq!(
        provider.requests(),
        2,
        "the first response was lost, the retry got the same charge"
    );
    let failures = attempt_failures(&harness.events(&record).await);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1, "HttpConnectionError");
    assert_eq!(output["provisioned"], true);
}

/// The order's first activity, the charge (an `http` call), has nothing
/// unwritten before it, so it starts before its schedule is written (a
/// deferred schedule).
/// While the provider holds the response, the schedule is still written,
/// after the grace: the history shows what the workflow waits for.
#[tokio::test]
async fn a_deferred_schedule_is_written_while_its_activity_runs() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    provider.delay_responses(60_000);
    let harness = Harness::default().await;
    let record = harness
        .start("order", "order-held", &order(&provider, "45", json!({})))
        .await;
    let runtime = harness.runtime.clone();
    let drive = tokio::spawn({
        let record = record.clone();
        async move { runtime.drive(record).await }
    });
    let scheduled = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let events = harness.events(&record).await;
            if provider.requests() == 1
                && let Some(Event::ActivityScheduled { name, input, .. }) = events.get(1)
            {
                return (name.clone(), input.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the schedule is written while the charge is in flight");
    assert_eq!(scheduled.0, "http");
    assert!(scheduled.1.contains("/charges"), "{}", scheduled.1);
    assert!(!drive.is_finished(), "the response is still held");
    drive.abort();
}

#[tokio::test]
async fn transient_failures_retry_with_growing_intervals() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    provider.fail_with_503(3);
    let harness = Harness::default().await;
    let (record, outcome) = harness
        .run("order", "order-503", &order(&provider, "43", json!({})))
        .await;
    assert_eq!(completed_output(&outcome)["charge_id"], "ch_1");
    let history = harness.history(&record).await;
    // The journaled backoff: retry_at minus the time the failure was recorded.
    let delays: Vec<i64> = history
        .iter()
        .filter_map(|recorded| match &recorded.event {
            Event::ActivityAttemptFailed {
                retry_at_ms: Some(retry_at),
                error,
                ..
            } => {
                assert_eq!(error.error_type, "Unavailable");
                Some(*retry_at as i64 - recorded.recorded_at_ms as i64)
            }
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 3, "three 503s, three retries");
    // 50, 100, 200 ms ±10% jitter (minus the few ms between computing and
    // journaling).
    for (delay, base) in delays.iter().zip([50i64, 100, 200]) {
        assert!(
            *delay >= base * 9 / 10 - 10 && *delay <= base * 11 / 10,
            "delay {delay} ms for base {base} ms (all: {delays:?})"
        );
    }
    assert_eq!(provider.ledger().len(), 1);
}

#[tokio::test]
async fn a_declined_card_fails_at_once() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    let harness = Harness::default().await;
    let input = order(&provider, "44", json!({ "card": "declined" }));
    let (record, outcome) = harness.run("order", "order-declined", &input).await;
    let Outcome::Failed { error } = outcome else {
        panic!("a declined card must fail the order: {outcome:?}");
    };
    assert_eq!(error.error_type, "PaymentNotCompleted");
    let events = harness.events(&record).await;
    assert_eq!(attempt_failures(&events).len(), 1, "exactly one attempt");
    assert_eq!(failed_activity(&events).reason, FailureReason::NonRetryable);
    assert_eq!(provider.requests(), 1);
    assert!(provider.ledger().is_empty());
}

#[tokio::test]
async fn exhausted_attempts_and_schedule_to_close_give_typed_failures() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    provider.fail_with_503(1_000);
    let harness = Harness::default().await;
    let input = order(&provider, "45", json!({ "max_attempts": 3 }));
    let (record, outcome) = harness.run("order", "order-exhausted", &input).await;
    assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
    let failure = failed_activity(&harness.events(&record).await);
    assert_eq!(failure.reason, FailureReason::AttemptsExhausted);
    assert_eq!(failure.attempts, 3);
    assert_eq!(failure.last_error.error_type, "Unavailable");

    let input = order(
        &provider,
        "46",
        json!({ "initial_interval_ms": 100, "schedule_to_close_ms": 450 }),
    );
    let (record, outcome) = harness.run("order", "order-deadline", &input).await;
    let Outcome::Failed { error } = outcome else {
        panic!("the deadline must fail the order: {outcome:?}");
    };
    assert!(error.message.contains("timed out"), "{error}");
    let failure = failed_activity(&harness.events(&record).await);
    assert_eq!(failure.reason, FailureReason::TimedOut);
    assert_eq!(failure.last_error.error_type, "Unavailable");
    assert!((2..=4).contains(&failure.attempts), "{failure:?}");
}

#[tokio::test]
async fn a_silent_attempt_is_retried_and_resumes_from_its_last_heartbeat() {
    let harness = Harness::default().await;
    let (record, outcome) = harness
        .run("patterns", "heartbeat", r#"{"mode":"heartbeat"}"#)
        .await;
    let output = completed_output(&outcome);
    assert_eq!(output["attempt"], 2);
    assert_eq!(
        output["resumed_from"], 3,
        "the retry read the last heartbeat"
    );
    let history = harness.events(&record).await;
    let details = history.iter().find_map(|event| match event {
        Event::ActivityAttemptFailed {
            error,
            heartbeat_details,
            ..
        } => Some((error.error_type.clone(), heartbeat_details.clone())),
        _ => None,
    });
    assert_eq!(
        details,
        Some((
            "HeartbeatTimeout".to_string(),
            Some(r#"{"done":3}"#.to_string())
        ))
    );
}

/// A Wasm activity reaches the provider over `wasi:http` when the host is
/// allowed, and is denied (without a request going out) when it is not.
#[tokio::test]
async fn wasm_activities_reach_only_allowed_hosts() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    let harness = Harness::default().await;
    let input = order(&provider, "47", json!({ "charge_via": "wasm" }));
    let (_, outcome) = harness.run("order", "order-wasm", &input).await;
    assert_eq!(completed_output(&outcome)["charge_id"], "ch_1");
    assert_eq!(provider.ledger()[0].idempotency_key, "charge-47");

    // `localhost` is not in the allowlist (only 127.0.0.1 is).
    let url = provider.url().replace("127.0.0.1", "localhost");
    let mut denied: Value =
        serde_json::from_str(&order(&provider, "48", json!({ "charge_via": "wasm" })))
            .expect("json");
    denied["provider_url"] = json!(url);
    let (_, outcome) = harness
        .run("order", "order-denied", &denied.to_string())
        .await;
    let Outcome::Failed { error } = outcome else {
        panic!("a call to a host not allowed must fail: {outcome:?}");
    };
    assert_eq!(error.error_type, "HttpRequestDenied", "{error}");
    assert_eq!(provider.requests(), 1, "the denied request never left");
}

#[tokio::test]
async fn misuse_is_refused_with_clear_errors() {
    let harness = Harness::new(Limits::default(), false).await;
    let (record, outcome) = harness
        .run("patterns", "bad-policy", r#"{"mode":"bad-policy"}"#)
        .await;
    let Outcome::Failed { error } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(error.error_type, "InvalidActivityOptions");
    assert!(
        error
            .message
            .contains("backoff_coefficient must be a finite number >= 1, got 0.5"),
        "{error}"
    );
    let kinds: Vec<&str> = harness
        .history(&record)
        .await
        .iter()
        .map(|r| r.event.kind())
        .collect();
    assert!(
        !kinds.contains(&"ActivityScheduled"),
        "nothing was scheduled: {kinds:?}"
    );

    let (_, outcome) = harness
        .run("patterns", "unknown", r#"{"mode":"unknown-activity"}"#)
        .await;
    let output = completed_output(&outcome);
    assert_eq!(output["failed"]["reason"], "FailureReason::UnknownActivity");
    assert_eq!(output["failed"]["error_type"], "UnknownActivity");

    let (_, outcome) = harness
        .run("patterns", "big", r#"{"mode":"big-input"}"#)
        .await;
    let Outcome::Failed { error } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(error.error_type, "PayloadTooLarge");
    assert!(
        error
            .message
            .contains("the limit is payload_bytes_max = 1048576"),
        "{error}"
    );
}

pub async fn call(harness: &Harness, id: &str, activity: &str, input: Value) -> Value {
    let workflow_input = json!({ "mode": "call", "activity": activity, "activity_input": input });
    let (_, outcome) = harness
        .run("patterns", id, &workflow_input.to_string())
        .await;
    completed_output(&outcome).clone()
}

/// The `http` activity's triage by status class, and its per-call override.
#[tokio::test]
async fn http_statuses_are_triaged_by_rule_and_override() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    let harness = Harness::default().await;
    let url = format!("{}/no-such-route", provider.url());

    let not_found = call(&harness, "http-404", "http", json!({ "url": url })).await;
    assert_eq!(not_found["failed"]["reason"], "FailureReason::NonRetryable");
    assert_eq!(not_found["failed"]["attempts"], 1);
    assert_eq!(
        not_found["failed"]["error_type"], "NotFound",
        "the body's error_type"
    );

    let retried = call(
        &harness,
        "http-404-retryable",
        "http",
        json!({ "url": url, "retryable_statuses": [404] }),
    )
    .await;
    assert_eq!(
        retried["failed"]["reason"],
        "FailureReason::AttemptsExhausted"
    );
    assert_eq!(retried["failed"]["attempts"], 3);

    provider.fail_with_503(10);
    let charge = json!({
        "method": "POST",
        "url": format!("{}/charges", provider.url()),
        "body": { "order_id": "60", "amount_cents": 1 },
        "non_retryable_statuses": [503],
    });
    let stopped = call(&harness, "http-503-final", "http", charge).await;
    assert_eq!(stopped["failed"]["reason"], "FailureReason::NonRetryable");
    assert_eq!(stopped["failed"]["error_type"], "Unavailable");

    let refused = call(
        &harness,
        "http-ftp",
        "http",
        json!({ "url": "ftp://127.0.0.1:1/" }),
    )
    .await;
    assert_eq!(refused["failed"]["error_type"], "InvalidHttpRequest");
    assert_eq!(refused["failed"]["attempts"], 1);
}

/// A Wasm activity sees the granted directory as /data and nothing else.
#[tokio::test]
async fn wasm_activities_see_only_their_granted_directory() {
    let harness = Harness::default().await;
    std::fs::write(harness.activity_dir.join("note.txt"), "granted").expect("write");
    let inside = call(
        &harness,
        "file-inside",
        "read-file",
        json!("/data/note.txt"),
    )
    .await;
    assert_eq!(inside["output"], "granted");
    let outside = call(
        &harness,
        "file-outside",
        "read-file",
        json!("/etc/hostname"),
    )
    .await;
    assert_eq!(outside["failed"]["error_type"], "NotFound", "{outside}");
    let escape = call(
        &harness,
        "file-escape",
        "read-file",
        json!("/data/../../etc/hostname"),
    )
    .await;
    assert!(
        escape["failed"].is_object(),
        "no way out of /data: {escape}"
    );
}

/// An activity's outcome is not written on its own: it goes to the store
/// with the command the workflow makes next, so driving a chain of N
/// activities costs N + 1 writes (each command with the outcome before it,
/// the end with the last outcome), not 2N + 1 — or N, when the first
/// activity (its schedule deferred: nothing before it was unwritten)
/// answers within the grace and its schedule, outcome and the next
/// command share one write.
#[tokio::test]
async fn an_outcome_is_written_with_the_next_command() {
    const STEPS: u64 = 20;
    let harness = Harness::default().await;
    let record = harness
        .start("bench", "chain", &format!(r#"{{"steps":{STEPS}}}"#))
        .await;
    let before = harness
        .store
        .commit_stats()
        .expect("SQLite counts its writes");
    let outcome = harness.runtime.drive(record.clone()).await.expect("drive");
    let after = harness
        .store
        .commit_stats()
        .expect("SQLite counts its writes");
    assert_eq!(completed_output(&outcome), json!(STEPS));
    let writes = after.requests - before.requests;
    assert!(
        writes == STEPS || writes == STEPS + 1,
        "{writes} writes to drive {STEPS} steps: an outcome was written on its own"
    );
    let events = harness.events(&record).await;
    let completed = events
        .iter()
        .filter(|event| matches!(event, Event::ActivityCompleted { .. }))
        .count();
    assert_eq!(completed, STEPS as usize, "every outcome is in the history");
    assert!(matches!(
        events.last(),
        Some(Event::WorkflowCompleted { .. })
    ));
    harness.assert_replays("bench", &record).await;
}

/// A warm activity instance serves its tenant's later calls (its globals
/// carry over, as in a worker process) and writes each call's output to
/// that call's execution; another tenant gets an instance of its own, and
/// an instance that trapped never serves again.
#[tokio::test]
async fn warm_activity_instances_serve_one_tenant_and_never_after_a_trap() {
    use reprise::runtime::StartOptions;

    let harness = Harness::default().await;
    let bytes = std::fs::read(crate::support::guest("patterns")).expect("read guest");
    let digest = harness
        .runtime
        .deploy_workflow(&bytes)
        .await
        .expect("deploy")
        .digest;
    let calls = async |tenant: &str, id: &str, activity_input: Value| {
        let input = json!({
            "mode": "call",
            "activity": "instance-calls",
            "activity_input": activity_input,
        });
        let (record, _) = harness
            .runtime
            .start_for(
                tenant,
                "patterns",
                &digest,
                Some(id.to_string()),
                &input.to_string(),
                StartOptions::default(),
            )
            .await
            .expect("start");
        let outcome = harness.runtime.drive(record.clone()).await.expect("drive");
        (record, completed_output(&outcome))
    };
    let plain = json!({});
    let (first, output) = calls("acme", "first", plain.clone()).await;
    assert_eq!(output, json!({ "output": 1 }));
    let (second, output) = calls("acme", "second", plain.clone()).await;
    assert_eq!(
        output,
        json!({ "output": 2 }),
        "the warm instance served again"
    );
    // The server's component, another tenant: a fresh instance.
    let (_, output) = calls("globex", "other-tenant", plain.clone()).await;
    assert_eq!(output, json!({ "output": 1 }));
    // Traps on its 3rd call; the retries get fresh instances (1, trap).
    let (_, output) = calls("acme", "trapping", json!({ "trap": true })).await;
    assert_eq!(output["failed"]["error_type"], "ActivityTrap", "{output}");
    let (_, output) = calls("acme", "after-the-trap", plain.clone()).await;
    assert_eq!(output, json!({ "output": 1 }), "a trapped instance is gone");
    // Past WARM_MEMORY_BYTES_MAX an instance is not kept either.
    let big = json!({ "hold_mib": reprise::activity::WARM_MEMORY_BYTES_MAX >> 20 });
    let (_, output) = calls("acme", "growing", big).await;
    assert_eq!(output, json!({ "output": 2 }));
    let (_, output) = calls("acme", "after-growing", plain.clone()).await;
    assert_eq!(output, json!({ "output": 1 }), "a large instance is gone");
    assert_eq!(
        harness.runtime.activities().warm_instances(),
        2,
        "acme's and globex's"
    );
    // With every warm place taken, a newcomer's instance is still kept.
    let newcomers = reprise::activity::WARM_INSTANCES_MAX;
    for n in 0..newcomers {
        let (_, output) = calls(&format!("t{n}"), &format!("t{n}-first"), plain.clone()).await;
        assert_eq!(output, json!({ "output": 1 }));
    }
    let warm = harness.runtime.activities().warm_instances();
    assert_eq!(warm, reprise::activity::WARM_INSTANCES_MAX);
    let last = newcomers - 1;
    let (_, output) = calls(&format!("t{last}"), "last-again", plain.clone()).await;
    assert_eq!(
        output,
        json!({ "output": 2 }),
        "the newest instance was kept"
    );

    // Each call's stdout is logged with its own execution.
    for (record, line) in [
        (&first, "call 1 of this instance"),
        (&second, "call 2 of this instance"),
    ] {
        let logged: Vec<(String, String)> =
            guest_logs_once(harness.store.as_ref(), record.id, |lines| !lines.is_empty())
                .await
                .into_iter()
                .map(|log| (log.source, log.message))
                .collect();
        assert_eq!(
            logged,
            vec![("activity-stdout".to_string(), line.to_string())],
            "{}",
            record.workflow_id
        );
    }
}
