//! The trip saga: reserve inventory for every leg → charge → provision →
//! notify. When a step fails, the steps that succeeded are undone in
//! reverse — the charge refunded, the reservations released — each once,
//! even across crashes, and the workflow fails with the original error and
//! what was rolled back.

use std::time::Duration;

use reprise_sdk::{ActivityCall, Context, RetryPolicy, Saga, Workflow, WorkflowError};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Trip {
    trip_id: String,
    legs: Vec<String>,
    amount_cents: u64,
    #[serde(default = "default_card")]
    card: String,
    inventory_url: String,
    payments_url: String,
    #[serde(default)]
    fail_provision: bool,
    #[serde(default = "yes")]
    continue_on_failure: bool,
    #[serde(default)]
    parallel_compensation: bool,
    #[serde(default = "default_interval_ms")]
    initial_interval_ms: u64,
}

fn default_card() -> String {
    "4242".to_string()
}

fn yes() -> bool {
    true
}

fn default_interval_ms() -> u64 {
    50
}

struct TripSaga;

/// Attempts a forward step gets.
const STEP_ATTEMPTS: u32 = 5;
/// Compensations retry until they succeed.
const UNTIL_SUCCESS: u32 = 0;

impl TripSaga {
    /// A POST through the built-in `http` activity with a business key.
    /// Steps give up after `maximum_attempts`; compensations pass 0 and
    /// retry until they succeed (the saga's rule), quickly here.
    fn post(
        ctx: &Context,
        trip: &Trip,
        url: String,
        body: Value,
        key: String,
        maximum_attempts: u32,
    ) -> ActivityCall {
        ctx.activity("http")
            .input(&json!({ "method": "POST", "url": url, "body": body }))
            .idempotency_key(key)
            .retry(
                RetryPolicy::new()
                    .initial_interval(Duration::from_millis(trip.initial_interval_ms))
                    .maximum_interval(Duration::from_millis(trip.initial_interval_ms * 10))
                    .maximum_attempts(maximum_attempts),
            )
    }

    fn reserve_all(ctx: &Context, trip: &Trip, saga: &mut Saga) -> Result<(), WorkflowError> {
        for leg in &trip.legs {
            let reserve = Self::post(
                ctx,
                trip,
                format!("{}/reservations", trip.inventory_url),
                json!({ "order_id": trip.trip_id, "item": leg }),
                format!("reserve-{}-{leg}", trip.trip_id),
                STEP_ATTEMPTS,
            );
            saga.step(&format!("reserve {leg}"), reserve, |reservation: &Value| {
                Self::post(
                    ctx,
                    trip,
                    format!("{}/releases", trip.inventory_url),
                    json!({ "reservation_id": reservation["body"]["reservation_id"] }),
                    format!("release-{}-{leg}", trip.trip_id),
                    UNTIL_SUCCESS,
                )
            })?;
        }
        Ok(())
    }

    fn charge(ctx: &Context, trip: &Trip, saga: &mut Saga) -> Result<(), WorkflowError> {
        let charge = Self::post(
            ctx,
            trip,
            format!("{}/charges", trip.payments_url),
            json!({ "order_id": trip.trip_id, "amount_cents": trip.amount_cents, "card": trip.card }),
            format!("charge-{}", trip.trip_id),
            STEP_ATTEMPTS,
        );
        saga.step("charge", charge, |charged: &Value| {
            Self::post(
                ctx,
                trip,
                format!("{}/refunds", trip.payments_url),
                json!({ "charge_id": charged["body"]["charge_id"] }),
                format!("refund-{}", trip.trip_id),
                UNTIL_SUCCESS,
            )
        })?;
        Ok(())
    }

    fn steps(ctx: &Context, trip: &Trip, saga: &mut Saga) -> Result<Value, WorkflowError> {
        if cfg!(feature = "reordered") {
            Self::charge(ctx, trip, saga)?;
            Self::reserve_all(ctx, trip, saga)?;
        } else {
            Self::reserve_all(ctx, trip, saga)?;
            Self::charge(ctx, trip, saga)?;
        }
        let stage = json!({ "trip_id": trip.trip_id, "fail": trip.fail_provision });
        let provisioned: Value = ctx.activity("provision-trip").input(&stage).call()?;
        ctx.activity("notify")
            .input(&json!({ "trip_id": trip.trip_id }))
            .call::<Value>()?;
        Ok(provisioned)
    }
}

impl Workflow for TripSaga {
    type Input = Trip;
    type Output = Value;

    fn run(ctx: &Context, trip: Trip) -> Result<Value, WorkflowError> {
        let mut saga = Saga::new()
            .continue_on_failure(trip.continue_on_failure)
            .parallel(trip.parallel_compensation);
        match Self::steps(ctx, &trip, &mut saga) {
            Ok(provisioned) => Ok(json!({ "trip_id": trip.trip_id, "booked": provisioned })),
            Err(error) => Err(saga.compensate().into_error(error)),
        }
    }
}

reprise_sdk::export_workflow!(TripSaga);
