//! The C hello (examples/hello-c): a workflow built from the raw WIT with
//! wit-bindgen's C generator and clang, no SDK. On the real runtime it runs
//! the hello flow, records the history the Rust hello records, replays it,
//! and completes the same when evicted at every wait.

use reprise::Limits;
use reprise::journal::{Event, RecordedEvent};

use crate::support::{Harness, completed_output};

const INPUT: &str = r#"{"name":"Ada","sleep_ms":20}"#;

/// The activities and timers of the history, in order, with
/// the name of each scheduled activity and the length of each timer.
fn steps(events: &[RecordedEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            Event::ActivityScheduled { name, .. } => Some(format!("scheduled {name}")),
            Event::ActivityCompleted { .. } => Some("completed".to_string()),
            Event::TimerStarted { duration_ms, .. } => Some(format!("timer {duration_ms} ms")),
            Event::TimerFired { .. } => Some("fired".to_string()),
            Event::WorkflowCompleted { .. } => Some("workflow completed".to_string()),
            _ => None,
        })
        .collect()
}

/// Every wall-clock read of the history, in ms.
fn clock_reads_ms(events: &[RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            Event::ClockRead { value_ns, .. } => Some(value_ns / 1_000_000),
            _ => None,
        })
        .collect()
}

/// What every run of the C hello on INPUT returns and records, whichever
/// path (hot or cold) it took.
fn assert_hello_shape(output: &serde_json::Value, events: &[RecordedEvent]) {
    assert_eq!(output["greeting"], "Hello, Ada!", "{output}");
    assert_eq!(
        output["ledger_entries"],
        serde_json::json!([1, 2]),
        "{output}"
    );
    for field in ["sdk_random", "rand_random"] {
        assert!(output[field].is_u64(), "{field} in {output}");
    }
    // The clock values the code saw are the journaled ones: through
    // `durable.now-ms` and through libc's clock_gettime (plain WASI).
    let reads = clock_reads_ms(events);
    for field in ["sdk_now_ms", "std_now_ms"] {
        let seen = output[field].as_u64().expect("a number");
        assert!(reads.contains(&seen), "{field} {seen} not in {reads:?}");
    }
    assert_eq!(
        steps(events),
        [
            "scheduled greet",
            "completed",
            "timer 20 ms",
            "fired",
            "scheduled record",
            "completed",
            "timer 20 ms",
            "fired",
            "scheduled record",
            "completed",
            "workflow completed",
        ]
    );
}

#[tokio::test]
async fn c_hello_completes_with_the_greeting_and_replays() {
    let harness = Harness::default().await;
    let (record, outcome) = harness.run("hello-c", "c-hello", INPUT).await;
    let output = completed_output(&outcome);
    let events = harness.history(&record).await;
    assert_hello_shape(&output, &events);
    harness.assert_replays("hello-c", &record).await;
    assert_eq!(
        harness.history(&record).await,
        events,
        "replay wrote nothing"
    );
}

/// Cold path: the instance is dropped at every wait and rebuilt by replay,
/// so the C code re-runs from the top against its history each time.
#[tokio::test]
async fn c_hello_evicted_at_every_wait_completes_alike() {
    let harness = Harness::new(Limits::default(), true).await;
    let (record, outcome) = harness.run("hello-c", "c-hello-cold", INPUT).await;
    let output = completed_output(&outcome);
    let events = harness.history(&record).await;
    assert_hello_shape(&output, &events);
    harness.assert_replays("hello-c", &record).await;
}

#[tokio::test]
async fn c_hello_fails_with_a_workflow_error_on_bad_input() {
    let harness = Harness::default().await;
    let (_, outcome) = harness.run("hello-c", "c-hello-bad", "{}").await;
    let reprise::Outcome::Failed { error } = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(error.error_type, "BadInput");
    assert!(error.message.contains("`name`"), "{}", error.message);
}
