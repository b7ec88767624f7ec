// The TypeScript library's twin of behaviours.py: the same activities,
// each showing one behaviour runtime/tests/integration/workers.rs checks.
//
//   node behaviours.mjs --api URL --trace FILE --release FILE [--max-concurrent N]

import { appendFileSync, existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import { ActivityError, NonRetryableError, Worker } from "../../../worker-sdk/js/dist/index.js";

const { values: args } = parseArgs({
  options: {
    api: { type: "string" },
    trace: { type: "string" },
    release: { type: "string" },
    "max-concurrent": { type: "string", default: "4" },
  },
});

// One append per line: lines from concurrent handlers never interleave.
const trace = (line) => appendFileSync(args.trace, `${line}\n`);

class TimeoutError extends Error {}

const activities = {
  "fail-typed": (spec, ctx) => {
    if (spec.non_retryable) throw new NonRetryableError(spec.error_type, spec.message, { attempt: ctx.attempt });
    throw new ActivityError(spec.error_type, spec.message, { details: { attempt: ctx.attempt } });
  },
  "fail-until": (spec, ctx) => {
    if (ctx.attempt < spec.succeed_on) throw new TimeoutError(`attempt ${ctx.attempt} is too early`);
    return { succeeded_on: ctx.attempt };
  },
  resume: async (_input, ctx) => {
    if (ctx.attempt === 1) {
      await ctx.heartbeat({ done: 3 });
      throw new ActivityError("Interrupted", "stopped after step 3");
    }
    return { attempt: ctx.attempt, resumed_from: ctx.lastHeartbeatDetails };
  },
  hold: async (spec, ctx) => {
    trace(`start ${spec.id}`);
    // The handler's own wait for the test's go-ahead.
    while (!existsSync(args.release)) await sleep(20);
    trace(`end ${spec.id}`);
    return { held: spec.id, attempt: ctx.attempt };
  },
};

await new Worker({
  apiUrl: args.api,
  activities,
  maxConcurrent: Number(args["max-concurrent"]),
  pollWaitMs: 1_000,
}).run();
