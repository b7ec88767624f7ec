//! Fan-out, races and retries through the SDK, and their replay.

use reprise::journal::Event;
use reprise::{Limits, ReplayVerdict};

use crate::support::{Harness, completed_output, guest};

async fn run_and_replay(
    harness: &Harness,
    id: &str,
    input: &str,
) -> (serde_json::Value, Vec<Event>) {
    let (record, outcome) = harness.run("patterns", id, input).await;
    let output = completed_output(&outcome).clone();
    let history = harness.history(&record).await;
    let component = harness.engine.load_file(&guest("patterns")).expect("load");
    let verdict = harness
        .runtime
        .verify_replay(&component, record, history.clone())
        .await
        .expect("replay");
    assert_eq!(verdict, ReplayVerdict::Reproduced);
    (
        output,
        history.into_iter().map(|recorded| recorded.event).collect(),
    )
}

#[tokio::test]
async fn fan_out_of_50_activities_awaits_all() {
    let harness = Harness::default().await;
    let (output, events) =
        run_and_replay(&harness, "fanout", r#"{"mode":"fanout","count":50}"#).await;
    let expected: Vec<u64> = (1..=50).collect();
    assert_eq!(output["results"], serde_json::json!(expected));
    let scheduled = events
        .iter()
        .take_while(|event| !matches!(event, Event::ActivityCompleted { .. }))
        .filter(|event| matches!(event, Event::ActivityScheduled { .. }))
        .count();
    assert_eq!(
        scheduled, 50,
        "all 50 were started before the first completion was observed"
    );
}

/// await-any returns the first completion in history order, live and in
/// replay; the race's observed order is the history's completion order.
#[tokio::test]
async fn await_any_follows_the_history_order() {
    let harness = Harness::default().await;
    let (output, events) = run_and_replay(
        &harness,
        "race",
        r#"{"mode":"race","pauses_ms":[400,20,200]}"#,
    )
    .await;
    assert_eq!(output["order"], serde_json::json!([20, 200, 400]));
    let completion_order: Vec<u64> = events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityCompleted { output, .. } => output.parse().ok(),
            _ => None,
        })
        .collect();
    assert_eq!(output["order"], serde_json::json!(completion_order));
}

#[tokio::test]
async fn retries_follow_the_policy_and_every_attempt_is_journaled() {
    let harness = Harness::new(Limits::default(), false).await;
    let (output, events) = run_and_replay(
        &harness,
        "retry-ok",
        r#"{"mode":"retry","fail_times":2,"max_attempts":5}"#,
    )
    .await;
    assert_eq!(output["succeeded_on_attempt"], 3);
    let failed: Vec<(u32, bool)> = events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityAttemptFailed {
                attempt,
                retry_at_ms,
                ..
            } => Some((*attempt, retry_at_ms.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(1, true), (2, true)]);

    let (output, _) = run_and_replay(
        &harness,
        "retry-exhausted",
        r#"{"mode":"retry","fail_times":9,"max_attempts":3}"#,
    )
    .await;
    assert_eq!(
        output["failed"]["reason"],
        "FailureReason::AttemptsExhausted"
    );
    assert_eq!(output["failed"]["attempts"], 3);

    let (output, events) = run_and_replay(
        &harness,
        "retry-business-failure",
        r#"{"mode":"retry","fail_times":9,"max_attempts":0,"non_retryable":true}"#,
    )
    .await;
    assert_eq!(output["failed"]["reason"], "FailureReason::NonRetryable");
    assert_eq!(output["failed"]["attempts"], 1);
    let attempts = events
        .iter()
        .filter(|event| matches!(event, Event::ActivityAttemptFailed { .. }))
        .count();
    assert_eq!(attempts, 1, "a business failure is not retried");
}

#[tokio::test]
async fn await_first_n_returns_the_earliest_completions() {
    let harness = Harness::default().await;
    let (output, _) = run_and_replay(
        &harness,
        "first-n",
        r#"{"mode":"first-n","count":2,"pauses_ms":[600,20,300,60]}"#,
    )
    .await;
    assert_eq!(output["first"], serde_json::json!([20, 60]));
}
