// An external Reprise activity worker serving `charge`, on reprise-worker
// (the TypeScript twin of charge_worker.py).
//
// It charges through the payment provider and returns the charge id. Two
// layers keep a charge from happening twice: its own record of charges by
// order id (a JSON-lines file, fsynced: a retry after a recorded success
// makes no provider call at all), and the provider's Idempotency-Key, set
// to the task's idempotency key (a retry after a lost response gets the
// same charge back).
//
//   npm ci && npm run build     # in examples/workers
//   node dist/charge_worker.js --api http://127.0.0.1:7979 --records charges.jsonl
//
// SIGTERM or Ctrl-C stops it gracefully: no new tasks, the charge in flight
// finishes and is reported, then it exits 0. REPRISE_API_KEY is sent as the
// tenant's key when set.

import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { parseArgs } from "node:util";

import { ActivityError, type ActivityContext, NonRetryableError, Worker } from "reprise-worker";

interface Order {
  order_id: string;
  amount_cents: number;
  card: string;
  provider_url: string;
}

interface Charge {
  charge_id: string;
  from: "worker-record" | "provider";
}

/** The worker's own record of the charges it made, by order id. */
class ChargeRecords {
  constructor(private readonly path: string) {}

  find(orderId: string): string | undefined {
    if (!existsSync(this.path)) return undefined;
    for (const line of readFileSync(this.path, "utf8").split("\n")) {
      if (line === "") continue;
      const entry = JSON.parse(line) as { order_id: string; charge_id: string };
      if (entry.order_id === orderId) return entry.charge_id;
    }
    return undefined;
  }

  record(orderId: string, chargeId: string): void {
    const file = openSync(this.path, "a");
    try {
      writeSync(file, JSON.stringify({ order_id: orderId, charge_id: chargeId }) + "\n");
      fsyncSync(file);
    } finally {
      closeSync(file);
    }
  }
}

function chargeHandler(records: ChargeRecords) {
  return async (order: Order, ctx: ActivityContext): Promise<Charge> => {
    const recorded = records.find(order.order_id);
    if (recorded !== undefined) return { charge_id: recorded, from: "worker-record" };
    await ctx.heartbeat({ step: "charging", order_id: order.order_id });
    let response: Response;
    let body: { charge_id?: string; error_type?: string; message?: string } = {};
    try {
      response = await fetch(`${order.provider_url}/charges`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "idempotency-key": ctx.idempotencyKey,
          traceparent: ctx.traceparent,
        },
        body: JSON.stringify({ order_id: order.order_id, amount_cents: order.amount_cents, card: order.card }),
        signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(10_000)]),
      });
      const text = await response.text();
      if (text !== "") body = JSON.parse(text);
    } catch (error) {
      // The charge may have gone through: the retry's Idempotency-Key finds it.
      const cause = (error as { cause?: Error }).cause;
      throw new ActivityError("ProviderUnreachable", cause ? `${error}: ${cause.message}` : String(error));
    }
    if (response.ok && body.charge_id) {
      records.record(order.order_id, body.charge_id);
      return { charge_id: body.charge_id, from: "provider" };
    }
    const errorType = body.error_type ?? `Http${response.status}`;
    const message = body.message ?? `the provider answered ${response.status}`;
    if (response.status >= 500 || response.status === 429) throw new ActivityError(errorType, message);
    throw new NonRetryableError(errorType, message);
  };
}

const { values: args } = parseArgs({
  options: {
    api: { type: "string" },
    records: { type: "string" },
    "max-concurrent": { type: "string", default: "4" },
    "wait-ms": { type: "string", default: "30000" },
  },
});
if (!args.api || !args.records) {
  console.error("usage: charge_worker.js --api http://127.0.0.1:7979 --records charges.jsonl");
  process.exit(2);
}

await new Worker({
  apiUrl: args.api,
  activities: { charge: chargeHandler(new ChargeRecords(args.records)) },
  maxConcurrent: Number(args["max-concurrent"]),
  pollWaitMs: Number(args["wait-ms"]),
}).run();
