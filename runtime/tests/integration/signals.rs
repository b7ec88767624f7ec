//! Signals (durable, delivered once, deduplicated by id, waits with durable
//! timeouts), cancellation (delivered at the next blocking call,
//! compensations still run) and termination (nothing more runs).

use std::time::Duration;

use reprise::Outcome;
use reprise::journal::{Event, WorkflowError};
use reprise::store::{ExecutionStatus, MessageKind};
use serde_json::json;

use crate::saga::{Providers, compensation_chain};
use crate::support::{Harness, completed_output, guest};

/// Fails the test instead of hanging it.
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("the scenario finished within 60 s")
}

async fn kinds(harness: &Harness, record: &reprise::store::ExecutionRecord) -> Vec<&'static str> {
    harness
        .history(record)
        .await
        .iter()
        .map(|recorded| recorded.event.kind())
        .collect()
}

#[tokio::test]
async fn signals_sent_before_the_wait_are_delivered_once_each() {
    let harness = Harness::default().await;
    let record = harness
        .start("patterns", "signals", r#"{"mode":"signals"}"#)
        .await;
    let store = &harness.store;
    let post = |name: &'static str, payload: &'static str, id: &'static str| {
        store.post_message(record.id, MessageKind::Signal, name, payload, id)
    };
    assert!(
        post("approve", r#"{"by":"ada"}"#, "approve-1")
            .await
            .expect("post")
    );
    assert!(post("extra", "1", "extra-1").await.expect("post"));
    assert!(
        !post("extra", "1", "extra-1").await.expect("post"),
        "a duplicate id is refused"
    );

    let outcome = harness.runtime.drive(record.clone()).await.expect("drive");
    let output = completed_output(&outcome);
    assert_eq!(output["approve"], json!({ "by": "ada" }));
    assert_eq!(output["first"], 1);
    assert_eq!(
        output["second"],
        serde_json::Value::Null,
        "the duplicate was not delivered"
    );
    let kinds = kinds(&harness, &record).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "SignalReceived")
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "SignalTimedOut")
            .count(),
        1
    );
    assert!(
        store
            .undelivered_messages(record.id)
            .await
            .expect("mailbox")
            .is_empty()
    );

    harness.assert_replays("patterns", &record).await;
}

/// A signal sent while the workflow waits reaches it through the mailbox
/// watcher.
#[tokio::test]
async fn a_signal_sent_during_the_wait_wakes_the_workflow() {
    let harness = Harness::default().await;
    let record = harness
        .start("patterns", "late", r#"{"mode":"signals"}"#)
        .await;
    let sender = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        harness
            .store
            .post_message(
                record.id,
                MessageKind::Signal,
                "approve",
                "true",
                "late-approve",
            )
            .await
            .expect("post")
    };
    let (outcome, _) = tokio::join!(harness.runtime.drive(record.clone()), sender);
    let outcome = outcome.expect("drive");
    assert_eq!(completed_output(&outcome)["approve"], true);
}

/// A cancellation that reaches an update handler mid-way answers the
/// update with it and ends the workflow cancelled: the handler's error is
/// not taken for the update's own failure, after which the workflow would
/// carry on.
#[tokio::test]
async fn a_cancellation_inside_an_update_handler_answers_the_update_and_cancels() {
    let harness = Harness::default().await;
    let record = harness
        .start("patterns", "slow-update", r#"{"mode":"slow-update"}"#)
        .await;
    let caller = async {
        harness
            .store
            .post_message(
                record.id,
                MessageKind::Update,
                "slow",
                r#"{"n":1}"#,
                &reprise::store::update_message_id("u-1"),
            )
            .await
            .expect("post the update");
        harness.runtime.mail_posted(record.id);
        // The handler is asleep once its timer is scheduled.
        while !kinds(&harness, &record).await.contains(&"TimerStarted") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        harness
            .store
            .post_message(record.id, MessageKind::Cancel, "", "null", "cancel")
            .await
            .expect("cancel");
        harness.runtime.mail_posted(record.id);
    };
    let (outcome, ()) =
        bounded(async { tokio::join!(harness.runtime.drive(record.clone()), caller) }).await;
    let Outcome::Failed { error } = outcome.expect("drive") else {
        panic!("the cancelled workflow completed");
    };
    assert_eq!(error.error_type, "Cancelled");
    let answer = harness
        .events(&record)
        .await
        .into_iter()
        .find_map(|event| match event {
            Event::UpdateFailed {
                update_id, error, ..
            } if update_id == "u-1" => Some(error),
            _ => None,
        })
        .expect("the update was answered");
    assert_eq!(answer.error_type, "Cancelled");
}

/// Runs trip `id` for a flight and a hotel, cancels it once `completed`
/// activities are done, and returns the cancelled outcome's error.
async fn cancel_trip(
    providers: &Providers,
    id: &str,
    completed: usize,
) -> (Harness, reprise::store::ExecutionRecord, WorkflowError) {
    let harness = Harness::default().await;
    let input = providers.trip(id, &["flight", "hotel"], json!({ "fail_provision": false }));
    let record = harness.start("trip", id, &input).await;
    let canceller = async {
        harness.completed_activities(&record, completed).await;
        harness
            .store
            .post_message(record.id, MessageKind::Cancel, "", "null", "cancel")
            .await
            .expect("cancel")
    };
    let (outcome, _) =
        bounded(async { tokio::join!(harness.runtime.drive(record.clone()), canceller) }).await;
    let Outcome::Failed { error } = outcome.expect("drive") else {
        panic!("a cancelled trip does not complete");
    };
    assert_eq!(error.error_type, "Cancelled");
    (harness, record, error)
}

/// Cancellation during step 2 of the trip: the reservation of step 1 is
/// released, nothing else; the execution ends cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_runs_the_compensations_of_finished_steps() {
    let providers = Providers::start().await;
    providers.inventory.delay_responses(700);
    // The first reservation done: step 2 is in flight.
    let (harness, record, error) = cancel_trip(&providers, "t-cancel", 1).await;
    // The hotel reservation was in flight when the cancellation came: the
    // saga learned that it took effect, so it is released too.
    assert!(
        error
            .message
            .contains("while step `reserve hotel` was in flight; it took effect"),
        "{error}"
    );
    assert!(
        error
            .message
            .contains("compensated: reserve hotel, reserve flight"),
        "{error}"
    );
    let history: Vec<Event> = harness.events(&record).await;
    assert!(
        history
            .iter()
            .any(|event| matches!(event, Event::CancellationDelivered { .. }))
    );
    assert_eq!(
        compensation_chain(&history),
        vec!["reserve hotel", "reserve flight"]
    );
    assert_eq!(
        providers.effects(reprise_providers::RELEASE),
        vec!["rs_2", "rs_1"]
    );
    assert!(
        providers.effects(reprise_providers::CHARGE).is_empty(),
        "never charged"
    );
    let stored = harness
        .store
        .execution(&record.tenant, "t-cancel")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.status, ExecutionStatus::Cancelled);
    harness.assert_replays("trip", &record).await;
}

/// The issue's case: a cancellation while the charge request is in flight.
/// The charge goes through at the provider, so the saga refunds it — once —
/// and releases both reservations; a replay decides the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_the_charge_is_in_flight_refunds_it_once() {
    let providers = Providers::start().await;
    providers.payments.delay_responses(700);
    // Both reservations done: the charge is in flight.
    let (harness, record, error) = cancel_trip(&providers, "t-charge", 2).await;
    assert!(
        error
            .message
            .contains("compensated: charge, reserve hotel, reserve flight"),
        "{error}"
    );
    let charges = providers.effects(reprise_providers::CHARGE);
    assert_eq!(charges.len(), 1, "charged once: {charges:?}");
    assert_eq!(
        providers.effects(reprise_providers::REFUND).len(),
        1,
        "refunded once"
    );
    assert_eq!(
        providers.effects(reprise_providers::RELEASE),
        vec!["rs_2", "rs_1"]
    );
    let history: Vec<Event> = harness.events(&record).await;
    assert_eq!(
        compensation_chain(&history),
        vec!["charge", "reserve hotel", "reserve flight"]
    );
    harness.assert_replays("trip", &record).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_runs_no_compensation() {
    let providers = Providers::start().await;
    providers.inventory.delay_responses(500);
    let harness = Harness::default().await;
    let input = providers.trip(
        "t-term",
        &["flight", "hotel"],
        json!({ "fail_provision": false }),
    );
    let record = harness.start("trip", "t-term", &input).await;
    let terminator = async {
        harness.completed_activities(&record, 1).await;
        harness
            .store
            .terminate(record.id, "operator said so")
            .await
            .expect("terminate")
    };
    let (outcome, terminated) =
        bounded(async { tokio::join!(harness.runtime.drive(record.clone()), terminator) }).await;
    assert!(terminated);
    let Outcome::Failed { error } = outcome.expect("drive stops at the fence") else {
        panic!("a terminated trip does not complete");
    };
    assert_eq!(error.error_type, "Terminated");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        providers.effects(reprise_providers::RELEASE).is_empty(),
        "no compensation"
    );
    let history = harness.history(&record).await;
    assert!(matches!(
        history.last().map(|r| &r.event),
        Some(Event::WorkflowTerminated { .. })
    ));
    let stored = harness
        .store
        .execution(&record.tenant, "t-term")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.status, ExecutionStatus::Terminated);
}

#[tokio::test]
async fn a_child_workflow_runs_and_returns_its_result() {
    let harness = Harness::default().await;
    let (record, outcome) = harness
        .run("patterns", "parent", r#"{"mode":"child","count":4}"#)
        .await;
    let output = completed_output(&outcome);
    assert_eq!(output["child"]["results"], json!([1, 2, 3, 4]));
    let child = harness
        .store
        .execution(&record.tenant, "parent/child-1")
        .await
        .expect("read")
        .expect("the child is an execution of its own");
    assert_eq!(child.status, ExecutionStatus::Completed);
    let history: Vec<&str> = kinds(&harness, &record).await;
    assert!(
        history.contains(&"ChildStarted") && history.contains(&"ChildCompleted"),
        "{history:?}"
    );
    harness.assert_replays("patterns", &record).await;
}

#[tokio::test]
async fn cancelling_the_parent_cancels_the_child() {
    let harness = Harness::default().await;
    let record = harness
        .start("patterns", "p", r#"{"mode":"child-waits"}"#)
        .await;
    let canceller = async {
        // Once the child waits for its signal, cancel the parent.
        loop {
            if let Some(child) = harness
                .store
                .execution(&record.tenant, "p/child-1")
                .await
                .expect("read")
            {
                let waiting = harness
                    .store
                    .history(child.id)
                    .await
                    .expect("history")
                    .iter()
                    .any(|recorded| matches!(recorded.event, Event::SignalAwaited { .. }));
                if waiting {
                    break;
                }
            }
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
    let Outcome::Failed { error } = outcome.expect("drive") else {
        panic!("the parent was cancelled");
    };
    assert_eq!(error.error_type, "Cancelled");
    // The child got the cancellation and ended cancelled too.
    let child = bounded(async {
        loop {
            let child = harness
                .store
                .execution(&record.tenant, "p/child-1")
                .await
                .expect("read")
                .expect("child");
            if child.status != ExecutionStatus::Running {
                break child;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(child.status, ExecutionStatus::Cancelled);
}

/// A child records the execution that started it: while that parent runs,
/// the retention sweep keeps the finished child (the parent may not have
/// journaled its outcome yet); once the parent has ended, both go.
#[tokio::test]
async fn a_finished_child_outlives_its_retention_while_its_parent_runs() {
    let harness = Harness::default().await;
    let record = harness
        .start("patterns", "kept", r#"{"mode":"child-waits"}"#)
        .await;
    let stopper = async {
        let child = loop {
            if let Some(child) = harness
                .store
                .execution(&record.tenant, "kept/child-1")
                .await
                .expect("read")
                && harness
                    .store
                    .history(child.id)
                    .await
                    .expect("history")
                    .iter()
                    .any(|recorded| matches!(recorded.event, Event::SignalAwaited { .. }))
            {
                break child;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Both stop at their waits with nothing journaled: the parent
        // never learns how its child ends.
        harness.runtime.shut_down();
        child
    };
    let (stopped, child) =
        bounded(async { tokio::join!(harness.runtime.drive(record.clone()), stopper) }).await;
    assert!(
        stopped.is_err(),
        "the shutdown stops the parent: {stopped:?}"
    );
    assert!(
        harness
            .store
            .terminate(child.id, "ended")
            .await
            .expect("terminate")
    );

    let swept = harness
        .store
        .sweep_finished(&record.tenant, i64::MAX, None, 1_000, None)
        .await
        .expect("sweep");
    assert_eq!(swept.executions, 0, "the parent still runs: {swept:?}");
    assert!(
        harness
            .store
            .execution(&record.tenant, "kept/child-1")
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        harness
            .store
            .terminate(record.id, "ended")
            .await
            .expect("terminate")
    );
    let swept = harness
        .store
        .sweep_finished(&record.tenant, i64::MAX, None, 1_000, None)
        .await
        .expect("sweep");
    assert_eq!(swept.executions, 2, "{swept:?}");
}

/// The same cancellation, with the process stopped right after it was
/// journaled (its drive and activity tasks gone, the charge in flight): a
/// new runtime on the same database finishes the saga, and the charge is
/// still made once and refunded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_cancellation_still_refunds_the_charge_once() {
    let providers = Providers::start().await;
    providers.payments.delay_responses(700);
    let harness = Harness::default().await;
    let input = providers.trip(
        "t-crash",
        &["flight", "hotel"],
        json!({ "fail_provision": false }),
    );
    let record = harness.start("trip", "t-crash", &input).await;
    let drive = {
        let runtime = harness.runtime.clone();
        let record = record.clone();
        tokio::spawn(async move { runtime.drive(record).await })
    };
    harness.completed_activities(&record, 2).await;
    harness
        .store
        .post_message(record.id, MessageKind::Cancel, "", "null", "cancel")
        .await
        .expect("cancel");
    bounded(async {
        while !harness
            .events(&record)
            .await
            .iter()
            .any(|event| matches!(event, Event::CancellationDelivered { .. }))
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    // In one process a "kill" must stop the guest task too: the shutdown
    // stops the drive at its next wait, appending nothing more.
    harness.runtime.shut_down();
    assert!(matches!(
        drive.await.expect("join"),
        Err(reprise::RunError::ShuttingDown { .. })
    ));

    let restarted = harness.restart().await;
    let outcome = bounded(restarted.drive(record.clone()))
        .await
        .expect("drive");
    let Outcome::Failed { error } = outcome else {
        panic!("a cancelled trip does not complete");
    };
    assert_eq!(error.error_type, "Cancelled");
    assert_eq!(
        providers.effects(reprise_providers::CHARGE).len(),
        1,
        "charged once"
    );
    assert_eq!(
        providers.effects(reprise_providers::REFUND).len(),
        1,
        "refunded once"
    );
    let history = harness.events(&record).await;
    assert_eq!(
        compensation_chain(&history),
        vec!["charge", "reserve hotel", "reserve flight"]
    );
    // The first runtime is shut down: verify with the restarted one.
    let component = harness.engine.load_file(&guest("trip")).expect("load");
    let verdict = restarted
        .verify_replay(&component, record.clone(), harness.history(&record).await)
        .await
        .expect("the code reproduces its history");
    assert_eq!(verdict, reprise::ReplayVerdict::Reproduced);
}
