// The payment-and-provisioning flow in TypeScript, on the TypeScript SDK:
// the same inputs, output and activity calls as examples/order (Rust). The
// order id fixes the idempotency key of the charge (`charge-{order_id}`),
// so however often the charge is retried or replayed, the provider bills
// once. Then the order is provisioned.
//
// `charge_via` picks who talks to the provider: the built-in `http`
// activity, an external worker serving `charge`, or the Wasm activity
// `charge-direct` (outbound `wasi:http` under the host's allowlist).
//
// Object keys are written in sorted order, as the Rust version's `json!`
// writes them, so both journal byte-identical activity inputs.

import { type Context, WorkflowError, workflow } from "reprise-sdk";

interface Order {
  order_id: string;
  amount_cents: number;
  card?: string;
  provider_url: string;
  charge_via?: "http" | "worker" | "wasm";
  /** 0 = retry until it works. */
  max_attempts?: number;
  initial_interval_ms?: number;
  schedule_to_close_ms?: number;
  start_to_close_ms?: number;
}

interface Receipt {
  order_id: string;
  charge_id: string;
  provisioned: boolean;
}

type Json = Record<string, unknown>;

async function charge(ctx: Context, order: Order): Promise<string> {
  const payment = { amount_cents: order.amount_cents, card: order.card ?? "4242", order_id: order.order_id };
  const chargeVia = order.charge_via ?? "http";
  let activity: string;
  let input: Json;
  switch (chargeVia) {
    case "http":
      activity = "http";
      input = { body: payment, method: "POST", url: `${order.provider_url}/charges` };
      break;
    case "worker":
    case "wasm":
      activity = chargeVia === "worker" ? "charge" : "charge-direct";
      input = { ...payment, provider_url: order.provider_url };
      break;
    default:
      throw new WorkflowError("BadInput", `charge_via must be http, worker or wasm, not ${String(chargeVia)}`);
  }
  let call = ctx
    .activity(activity)
    .input(input)
    .idempotencyKey(`charge-${order.order_id}`)
    .retry({
      initialIntervalMs: order.initial_interval_ms ?? 200,
      maximumAttempts: order.max_attempts ?? 0,
      nonRetryableErrorTypes: ["PaymentNotCompleted"],
    })
    .startToClose(order.start_to_close_ms ?? 5_000);
  if (order.schedule_to_close_ms !== undefined) call = call.scheduleToClose(order.schedule_to_close_ms);
  const output = await call.call<Json>();
  // The http activity wraps the provider's answer in {status, body}.
  const charged = (activity === "http" ? output["body"] : output) as Json | undefined;
  const chargeId = charged?.["charge_id"];
  if (typeof chargeId !== "string") {
    throw new WorkflowError("BadChargeResponse", `no charge_id in ${JSON.stringify(output)}`);
  }
  return chargeId;
}

export const run = workflow(async (ctx, order: Order): Promise<Receipt> => {
  const chargeId = await charge(ctx, order);
  const provisioned = await ctx
    .activity("provision")
    .input({ charge_id: chargeId, order_id: order.order_id })
    .call<{ provisioned?: unknown }>();
  return { order_id: order.order_id, charge_id: chargeId, provisioned: provisioned.provisioned === true };
});
