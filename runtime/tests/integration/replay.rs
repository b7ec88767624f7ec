//! Replay equality (hot and cold paths, Rust and Python guests) and
//! nondeterminism detection.

use reprise::journal::{Event, Nondeterminism};
use reprise::store::{ExecutionStatus, IdReusePolicy, NewExecution, StartOutcome};
use reprise::{Limits, ReplayVerdict, RunError};

use crate::support::{Harness, clock_ms_at, completed_output, guest, scheduled_keys};

const INPUT: &str = r#"{"name":"Ada","sleep_ms":20}"#;

/// Runs `workflow`, then replays its history in a fresh instance: every
/// value the guest saw — SDK and plain-WASI clock and randomness, activity
/// results — comes back identical (the output echoes them all, and replay
/// compares outputs byte for byte).
async fn assert_replay_reproduces(workflow: &str, evict_on_wait: bool) {
    let harness = Harness::new(Limits::default(), evict_on_wait).await;
    let (record, outcome) = harness.run(workflow, "replay-equality", INPUT).await;
    let output = completed_output(&outcome).clone();
    let events = harness.history(&record).await;

    assert_eq!(output["greeting"], "Hello, Ada!");
    // The values in the output are the journaled ones.
    let first_clock_seq = events
        .iter()
        .find_map(|recorded| match recorded.event {
            Event::ClockRead { seq, .. } => Some(seq),
            _ => None,
        })
        .expect("the workflow read the clock");
    assert_eq!(
        output["sdk_now_ms"].as_u64(),
        Some(clock_ms_at(&events, first_clock_seq))
    );
    assert_eq!(scheduled_keys(&events, "record").len(), 2);

    let component = harness.engine.load_file(&guest(workflow)).expect("load");
    let verdict = harness
        .runtime
        .verify_replay(&component, record.clone(), events.clone())
        .await
        .expect("replay reproduces the history");
    assert_eq!(verdict, ReplayVerdict::Reproduced);
    // Replay wrote nothing.
    assert_eq!(harness.history(&record).await, events);
}

#[tokio::test]
async fn rust_guest_replays_identically_on_the_hot_path() {
    assert_replay_reproduces("hello", false).await;
}

/// Cold path: the instance is dropped at every wait and rebuilt by replay;
/// the final activation's replayed values must equal the first recording.
#[tokio::test]
async fn rust_guest_replays_identically_on_the_cold_path() {
    assert_replay_reproduces("hello", true).await;
}

#[tokio::test]
async fn python_guest_replays_identically_on_hot_and_cold_paths() {
    assert_replay_reproduces("hello-py", false).await;
    assert_replay_reproduces("hello-py", true).await;
}

#[tokio::test]
async fn hot_and_cold_paths_record_the_same_commands() {
    let hot = Harness::new(Limits::default(), false).await;
    let cold = Harness::new(Limits::default(), true).await;
    let (hot_record, hot_outcome) = hot.run("hello", "same", INPUT).await;
    let (cold_record, cold_outcome) = cold.run("hello", "same", INPUT).await;
    let kinds = |events: Vec<reprise::journal::RecordedEvent>| -> Vec<String> {
        events
            .iter()
            .map(|recorded| recorded.event.kind().to_string())
            .collect()
    };
    assert_eq!(
        kinds(hot.history(&hot_record).await),
        kinds(cold.history(&cold_record).await)
    );
    assert_eq!(
        completed_output(&hot_outcome)["ledger_entries"],
        completed_output(&cold_outcome)["ledger_entries"]
    );
}

#[tokio::test]
async fn changed_module_gives_a_readable_nondeterminism_error() {
    let harness = Harness::default().await;
    let (record, _) = harness.run("hello", "upgrade-check", INPUT).await;
    let events = harness.history(&record).await;
    let changed = harness.engine.load_file(&guest("hello-v2")).expect("load");
    let error = harness
        .runtime
        .verify_replay(&changed, record.clone(), events.clone())
        .await
        .expect_err("a reordered build must not replay the old history");
    let RunError::Nondeterminism { source, .. } = &error else {
        panic!("expected nondeterminism, got {error}");
    };
    let Nondeterminism::Mismatch {
        seq,
        recorded,
        requested,
    } = source
    else {
        panic!("expected a mismatch, got {source}");
    };
    // hello-v2 makes the same four reads, then asks for `record` where
    // `greet` was recorded.
    assert_eq!(*seq, 5);
    assert!(recorded.contains("activity `greet`"), "{recorded}");
    assert!(requested.contains("activity `record`"), "{requested}");
    let message = error.to_string();
    assert!(message.contains("nondeterminism at seq 5"), "{message}");
    assert_eq!(
        harness.history(&record).await,
        events,
        "the history was not touched"
    );
}

/// An execution whose code no longer matches its history stops with the
/// error and keeps its history and status as they were.
#[tokio::test]
async fn nondeterminism_while_driving_leaves_the_execution_intact() {
    let harness = Harness::default().await;
    let (recorded, _) = harness.run("hello", "source", INPUT).await;
    let events = harness.history(&recorded).await;
    // Pin a new execution to the changed build, with the old build's
    // first steps as its history (as if it had crashed there).
    let changed = std::fs::read(guest("hello-v2")).expect("read");
    let changed = harness
        .runtime
        .deploy_workflow(&changed)
        .await
        .expect("deploy");
    let mut started = events[0].clone();
    if let Event::WorkflowStarted { module_digest, .. } = &mut started.event {
        *module_digest = changed.digest.clone();
    }
    let outcome = harness
        .store
        .start_execution(NewExecution {
            tenant: recorded.tenant.clone(),
            workflow_id: "pinned-to-v2".into(),
            run_id: recorded.run_id.clone(),
            workflow_type: "hello".into(),
            module_digest: changed.digest.clone(),
            started,
            reuse: IdReusePolicy::ReturnExisting,
            running_max: u64::MAX,
            search_attributes: None,
            parent_id: None,
        })
        .await
        .expect("start");
    let StartOutcome::Created(record) = outcome else {
        panic!("a new id starts: {outcome:?}");
    };
    let prefix: Vec<_> = events[1..7].to_vec();
    harness
        .store
        .append(record.id, prefix, None)
        .await
        .expect("append prefix");
    let before = harness.history(&record).await;

    let error = harness
        .runtime
        .drive(record.clone())
        .await
        .expect_err("replay must stop at the mismatch");
    assert!(matches!(error, RunError::Nondeterminism { .. }), "{error}");
    assert_eq!(harness.history(&record).await, before);
    let stored = harness
        .store
        .execution(&record.tenant, "pinned-to-v2")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.status, ExecutionStatus::Running);
}

#[tokio::test]
async fn a_finished_execution_is_not_run_again() {
    let harness = Harness::default().await;
    let (record, first) = harness.run("hello", "once", INPUT).await;
    let ledger = harness.ledger();
    let events = harness.history(&record).await;
    let again = harness.runtime.drive(record.clone()).await.expect("drive");
    assert_eq!(again, first);
    assert_eq!(harness.ledger(), ledger, "no activity ran again");
    assert_eq!(harness.history(&record).await, events);
}

#[tokio::test]
async fn starting_a_known_id_returns_the_existing_execution() {
    let harness = Harness::default().await;
    let (record, _) = harness.run("hello", "idempotent-start", INPUT).await;
    let (again, created) = harness
        .runtime
        .start(
            "hello",
            &record.module_digest,
            Some("idempotent-start".into()),
            INPUT,
        )
        .await
        .expect("start");
    assert!(!created);
    assert_eq!(again.run_id, record.run_id);
}
