//! The payment-and-provisioning flow: the order id fixes the idempotency
//! key of the charge (`charge-{order_id}`), so however often the charge is
//! retried or replayed, the provider bills once. Then the order is
//! provisioned.
//!
//! `charge_via` picks who talks to the provider: the built-in `http`
//! activity, an external worker serving `charge`, or the Wasm activity
//! `charge-direct` (outbound `wasi:http` under the host's allowlist).

use std::time::Duration;

use reprise_sdk::{Context, RetryPolicy, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Order {
    order_id: String,
    amount_cents: u64,
    #[serde(default = "default_card")]
    card: String,
    provider_url: String,
    #[serde(default = "default_charge_via")]
    charge_via: String,
    /// 0 = retry until it works.
    #[serde(default)]
    max_attempts: u32,
    #[serde(default = "default_initial_interval_ms")]
    initial_interval_ms: u64,
    #[serde(default)]
    schedule_to_close_ms: Option<u64>,
    #[serde(default = "default_start_to_close_ms")]
    start_to_close_ms: u64,
}

fn default_card() -> String {
    "4242".to_string()
}

fn default_charge_via() -> String {
    "http".to_string()
}

fn default_initial_interval_ms() -> u64 {
    200
}

fn default_start_to_close_ms() -> u64 {
    5_000
}

#[derive(Serialize)]
struct Receipt {
    order_id: String,
    charge_id: String,
    provisioned: bool,
}

struct OrderFlow;

impl OrderFlow {
    fn charge(ctx: &Context, order: &Order) -> Result<String, WorkflowError> {
        let payment = json!({
            "order_id": order.order_id,
            "amount_cents": order.amount_cents,
            "card": order.card,
        });
        let (activity, input) = match order.charge_via.as_str() {
            "http" => (
                "http",
                json!({
                    "method": "POST",
                    "url": format!("{}/charges", order.provider_url),
                    "body": payment,
                }),
            ),
            "worker" | "wasm" => {
                let mut input = payment;
                input["provider_url"] = json!(order.provider_url);
                let name = if order.charge_via == "worker" {
                    "charge"
                } else {
                    "charge-direct"
                };
                (name, input)
            }
            other => {
                return Err(WorkflowError::new(
                    "BadInput",
                    format!("charge_via must be http, worker or wasm, not {other}"),
                ));
            }
        };
        let mut call = ctx
            .activity(activity)
            .input(&input)
            .idempotency_key(format!("charge-{}", order.order_id))
            .retry(
                RetryPolicy::new()
                    .initial_interval(Duration::from_millis(order.initial_interval_ms))
                    .maximum_attempts(order.max_attempts)
                    .non_retryable("PaymentNotCompleted"),
            )
            .start_to_close(Duration::from_millis(order.start_to_close_ms));
        if let Some(limit) = order.schedule_to_close_ms {
            call = call.schedule_to_close(Duration::from_millis(limit));
        }
        let output: Value = call.call()?;
        // The http activity wraps the provider's answer in {status, body}.
        let charge = if activity == "http" {
            &output["body"]
        } else {
            &output
        };
        charge["charge_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                WorkflowError::new("BadChargeResponse", format!("no charge_id in {output}"))
            })
    }
}

impl Workflow for OrderFlow {
    type Input = Order;
    type Output = Receipt;

    fn run(ctx: &Context, order: Order) -> Result<Receipt, WorkflowError> {
        let charge_id = OrderFlow::charge(ctx, &order)?;
        let provisioned: Value = ctx
            .activity("provision")
            .input(&json!({ "order_id": order.order_id, "charge_id": charge_id }))
            .call()?;
        Ok(Receipt {
            order_id: order.order_id,
            charge_id,
            provisioned: provisioned["provisioned"] == json!(true),
        })
    }
}

reprise_sdk::export_workflow!(OrderFlow);
