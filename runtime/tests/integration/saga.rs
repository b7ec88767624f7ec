//! The trip saga against two real providers (inventory and payments, HTTP
//! servers on 127.0.0.1 with ledgers): compensations run in reverse, once
//! each, only for steps that succeeded; transient compensation failures are
//! retried, permanent ones reported; reordering the saga is caught.

use reprise::journal::Event;
use reprise::{Outcome, RunError};
use reprise_providers::{Provider, REFUND, RELEASE, RESERVATION};
use serde_json::{Value, json};

use crate::support::{Harness, guest};

pub struct Providers {
    pub inventory: Provider,
    pub payments: Provider,
}

impl Providers {
    pub async fn start() -> Providers {
        Providers {
            inventory: Provider::start(0).await.expect("inventory"),
            payments: Provider::start(0).await.expect("payments"),
        }
    }

    pub fn trip(&self, trip_id: &str, legs: &[&str], extra: Value) -> String {
        let mut input = json!({
            "trip_id": trip_id,
            "legs": legs,
            "amount_cents": 12_000,
            "inventory_url": self.inventory.url(),
            "payments_url": self.payments.url(),
            "fail_provision": true,
            "initial_interval_ms": 20,
        });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        input.to_string()
    }

    /// (kind, subject) of every effect, inventory first then payments.
    pub fn effects(&self, kind: &str) -> Vec<String> {
        self.inventory
            .operations()
            .into_iter()
            .chain(self.payments.operations())
            .filter(|operation| operation.kind == kind)
            .map(|operation| operation.subject)
            .collect()
    }
}

/// The steps compensated, in the order their compensations were scheduled.
pub fn compensation_chain(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityScheduled { options, .. } => options.compensates.clone(),
            _ => None,
        })
        .collect()
}

fn failure(outcome: Outcome) -> reprise::journal::WorkflowError {
    match outcome {
        Outcome::Failed { error } => error,
        other => panic!("the trip must fail: {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_step_is_compensated_in_reverse_once_each() {
    let providers = Providers::start().await;
    let harness = Harness::default().await;
    let input = providers.trip("t1", &["flight", "hotel"], json!({}));
    let (record, outcome) = harness.run("trip", "trip-1", &input).await;
    let error = failure(outcome);
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
        report["compensated"],
        json!(["charge", "reserve hotel", "reserve flight"])
    );
    // Once each, in reverse: the refund, then hotel's release, then flight's.
    assert_eq!(providers.effects(REFUND), vec!["ch_1"]);
    assert_eq!(
        providers.effects(RESERVATION),
        vec!["t1/flight", "t1/hotel"]
    );
    assert_eq!(providers.effects(RELEASE), vec!["rs_2", "rs_1"]);
    assert_eq!(
        compensation_chain(&harness.events(&record).await),
        vec!["charge", "reserve hotel", "reserve flight"]
    );
}

#[tokio::test]
async fn a_step_that_never_succeeded_is_not_compensated() {
    let providers = Providers::start().await;
    let harness = Harness::default().await;
    let input = providers.trip("t2", &["flight", "hotel"], json!({ "card": "declined" }));
    let (_, outcome) = harness.run("trip", "trip-2", &input).await;
    assert_eq!(failure(outcome).error_type, "PaymentNotCompleted");
    assert!(providers.effects(REFUND).is_empty(), "no charge, no refund");
    assert_eq!(providers.effects(RELEASE), vec!["rs_2", "rs_1"]);
}

#[tokio::test]
async fn a_transient_compensation_failure_is_retried() {
    let providers = Providers::start().await;
    providers.payments.fail_kind_with_503(REFUND, 2);
    let harness = Harness::default().await;
    let input = providers.trip("t3", &["flight"], json!({}));
    let (record, outcome) = harness.run("trip", "trip-3", &input).await;
    assert!(
        failure(outcome)
            .message
            .contains("compensated: charge, reserve flight")
    );
    assert_eq!(providers.effects(REFUND), vec!["ch_1"]);
    let refund_retries = harness.events(&record)
        .await
        .iter()
        .filter(|event| matches!(event, Event::ActivityAttemptFailed { error, .. } if error.error_type == "Unavailable"))
        .count();
    assert_eq!(refund_retries, 2);
}

#[tokio::test]
async fn a_permanent_compensation_failure_is_reported_and_the_rest_run_if_asked() {
    for continue_on_failure in [true, false] {
        let providers = Providers::start().await;
        providers.payments.reject("ch_1");
        let harness = Harness::default().await;
        let input = providers.trip(
            "t4",
            &["flight", "hotel"],
            json!({ "continue_on_failure": continue_on_failure }),
        );
        let (_, outcome) = harness.run("trip", "trip-4", &input).await;
        let error = failure(outcome);
        assert_eq!(error.error_type, "ProvisioningFailed");
        let report: Value =
            serde_json::from_str(error.details.as_deref().unwrap_or("null")).expect("report");
        assert_eq!(report["failed"][0][0], "charge", "{report}");
        assert!(providers.effects(REFUND).is_empty());
        if continue_on_failure {
            assert_eq!(providers.effects(RELEASE), vec!["rs_2", "rs_1"]);
            assert_eq!(
                report["compensated"],
                json!(["reserve hotel", "reserve flight"])
            );
        } else {
            assert!(
                providers.effects(RELEASE).is_empty(),
                "stopped at the failure"
            );
            assert_eq!(
                report["skipped"],
                json!(["reserve hotel", "reserve flight"])
            );
        }
    }
}

#[tokio::test]
async fn independent_compensations_can_run_in_parallel() {
    let providers = Providers::start().await;
    let harness = Harness::default().await;
    let input = providers.trip(
        "t5",
        &["flight", "hotel"],
        json!({ "parallel_compensation": true }),
    );
    let (record, outcome) = harness.run("trip", "trip-5", &input).await;
    assert!(failure(outcome).message.contains("compensated:"));
    let history = harness.events(&record).await;
    let first_compensation = history
        .iter()
        .position(|event| matches!(event, Event::ActivityScheduled { options, .. } if options.compensates.is_some()))
        .expect("compensations");
    let started_together = history[first_compensation..first_compensation + 3]
        .iter()
        .all(|event| matches!(event, Event::ActivityScheduled { .. }));
    assert!(
        started_together,
        "all three compensations start before any completes"
    );
    assert_eq!(providers.effects(RELEASE).len(), 2);
    assert_eq!(providers.effects(REFUND).len(), 1);
}

#[tokio::test]
async fn reordering_the_saga_is_a_readable_nondeterminism_error() {
    let providers = Providers::start().await;
    let harness = Harness::default().await;
    let input = providers.trip("t6", &["flight"], json!({}));
    let (record, _) = harness.run("trip", "trip-6", &input).await;
    let history = harness.history(&record).await;
    let reordered = harness
        .engine
        .load_file(&guest("trip-reordered"))
        .expect("load");
    let error = harness
        .runtime
        .verify_replay(&reordered, record, history)
        .await
        .expect_err("a reordered saga must not replay the old history");
    assert!(matches!(error, RunError::Nondeterminism { .. }));
    let message = error.to_string();
    assert!(message.contains("nondeterminism at seq 1"), "{message}");
    assert!(
        message.contains("/reservations"),
        "names what was recorded: {message}"
    );
    assert!(
        message.contains("/charges"),
        "names what the code asked for: {message}"
    );
}
