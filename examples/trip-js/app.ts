// The trip saga in TypeScript, on the TypeScript SDK: the same inputs,
// output, activity calls and compensations as examples/trip (Rust).
//
// reserve inventory for every leg → charge → provision → notify. When a
// step fails, the steps that succeeded are undone in reverse — the charge
// refunded, the reservations released — each once, even across crashes,
// and the workflow fails with the original error and what was rolled back.
//
// Object keys are written in sorted order, as the Rust version's `json!`
// writes them, so both journal byte-identical activity inputs.

import { type ActivityCall, type Context, Saga, workflow } from "reprise-sdk";

interface Trip {
  trip_id: string;
  legs: string[];
  amount_cents: number;
  card?: string;
  inventory_url: string;
  payments_url: string;
  fail_provision?: boolean;
  continue_on_failure?: boolean;
  parallel_compensation?: boolean;
  initial_interval_ms?: number;
}

/** Attempts a forward step gets. */
const STEP_ATTEMPTS = 5;
/** Compensations retry until they succeed. */
const UNTIL_SUCCESS = 0;

/** What the built-in `http` activity answers. */
interface HttpResponse {
  status: number;
  body: Record<string, unknown>;
}

/** A POST through the built-in `http` activity with a business key. Steps
 * give up after `maximumAttempts`; compensations pass 0 and retry until
 * they succeed (the saga's rule), quickly here. */
function post(ctx: Context, trip: Trip, url: string, body: unknown, key: string, maximumAttempts: number): ActivityCall {
  const interval = trip.initial_interval_ms ?? 50;
  return ctx
    .activity("http")
    .input({ body, method: "POST", url })
    .idempotencyKey(key)
    .retry({ initialIntervalMs: interval, maximumIntervalMs: interval * 10, maximumAttempts });
}

async function reserveAll(ctx: Context, trip: Trip, saga: Saga): Promise<void> {
  for (const leg of trip.legs) {
    const reserve = post(
      ctx,
      trip,
      `${trip.inventory_url}/reservations`,
      { item: leg, order_id: trip.trip_id },
      `reserve-${trip.trip_id}-${leg}`,
      STEP_ATTEMPTS,
    );
    await saga.step<HttpResponse>(`reserve ${leg}`, reserve, (reservation) =>
      post(
        ctx,
        trip,
        `${trip.inventory_url}/releases`,
        { reservation_id: reservation.body["reservation_id"] ?? null },
        `release-${trip.trip_id}-${leg}`,
        UNTIL_SUCCESS,
      ),
    );
  }
}

async function charge(ctx: Context, trip: Trip, saga: Saga): Promise<void> {
  const charge = post(
    ctx,
    trip,
    `${trip.payments_url}/charges`,
    { amount_cents: trip.amount_cents, card: trip.card ?? "4242", order_id: trip.trip_id },
    `charge-${trip.trip_id}`,
    STEP_ATTEMPTS,
  );
  await saga.step<HttpResponse>("charge", charge, (charged) =>
    post(
      ctx,
      trip,
      `${trip.payments_url}/refunds`,
      { charge_id: charged.body["charge_id"] ?? null },
      `refund-${trip.trip_id}`,
      UNTIL_SUCCESS,
    ),
  );
}

async function steps(ctx: Context, trip: Trip, saga: Saga): Promise<unknown> {
  await reserveAll(ctx, trip, saga);
  await charge(ctx, trip, saga);
  const provisioned = await ctx
    .activity("provision-trip")
    .input({ fail: trip.fail_provision ?? false, trip_id: trip.trip_id })
    .call();
  await ctx.activity("notify").input({ trip_id: trip.trip_id }).call();
  return provisioned;
}

export const run = workflow(async (ctx, trip: Trip) => {
  const saga = new Saga({
    continueOnFailure: trip.continue_on_failure ?? true,
    parallel: trip.parallel_compensation ?? false,
  });
  let provisioned: unknown;
  try {
    provisioned = await steps(ctx, trip, saga);
  } catch (error) {
    throw (await saga.compensate()).intoError(error);
  }
  return { booked: provisioned, trip_id: trip.trip_id };
});
