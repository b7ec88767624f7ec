// The SDK's unit tests, in Node against a scripted host (fake-host.ts):
// what the SDK asks the host, in which order, and what it makes of the
// answers. `npm test` runs them (tests/run-unit.mjs bundles this file with
// the host's interface mapped to the fake). The runtime tests
// (runtime/tests/integration/js_sdk.rs) run the real thing.

import { ActivityFailure, Cancelled, Saga, WorkflowError, encodeJson, workflow } from "reprise-sdk";
import { host } from "./fake-host.js";

// Kept before the first workflow runs: `workflow()` routes console.* to the host.
const print = console.log.bind(console);
const failures: string[] = [];
const tests: [string, () => Promise<void>][] = [];

function test(name: string, body: () => Promise<void>): void {
  tests.push([name, body]);
}

function show(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? `${item}n` : item));
}

function assertEqual(actual: unknown, expected: unknown, what: string): void {
  if (show(actual) !== show(expected)) throw new Error(`${what}: expected ${show(expected)}, got ${show(actual)}`);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

function failure(reason: "non-retryable" | "attempts-exhausted", errorType: string, message: string) {
  return {
    tag: "err" as const,
    val: { reason, attempts: 3, lastError: { errorType, message, details: undefined, nonRetryable: reason === "non-retryable" } },
  };
}

function startedNames(): unknown[] {
  return host.calls.filter(([name]) => name === "startActivity").map(([, activity]) => activity);
}

test("Promise.all over calls starts every activity before waiting for any", async () => {
  const run = workflow(async (ctx) => Promise.all([ctx.activity("a").call(), ctx.activity("b").call()]));
  assertEqual(await run("null"), "[null,null]", "output");
  assertEqual(
    host.calls.map(([name, activity]) => `${name} ${String(activity)}`),
    ["startActivity a", "startActivity b", "awaitActivity a", "awaitActivity b"],
    "calls",
  );
});

test("options reach the host as the WIT has them, defaults filled in", async () => {
  const run = workflow(async (ctx) =>
    ctx
      .activity("charge")
      .input({ cents: 500n })
      .retry({ initialIntervalMs: 200, maximumAttempts: 3, nonRetryableErrorTypes: ["CardDeclined"] })
      .idempotencyKey("charge-1")
      .startToClose(10_000.9)
      .call(),
  );
  await run("null");
  const [, , input, options] = host.calls[0]!;
  assertEqual(input, '{"cents":500}', "a bigint is written as its digits");
  assertEqual(
    options,
    {
      retry: { initialIntervalMs: 200n, backoffCoefficient: 2, maximumIntervalMs: 0n, maximumAttempts: 3, nonRetryableErrorTypes: ["CardDeclined"] },
      startToCloseTimeoutMs: 10_000n,
      idempotencyKey: "charge-1",
    },
    "options",
  );
});

test("a bad retry policy is refused where it is written, naming the field", async () => {
  const run = workflow(async (ctx) => ctx.activity("a").retry({ maximumAttemps: 3 } as never).call());
  const error = await rejection(run("null"));
  if (!(error instanceof TypeError) || !error.message.includes("no field `maximumAttemps`")) throw error;
  assertEqual(
    host.calls.filter(([name]) => name !== "log"),
    [],
    "nothing but the bug's log line reached the host",
  );
});

test("an activity that fails for good rejects with a typed ActivityFailure", async () => {
  host.activityOutcomes.set("charge", [failure("attempts-exhausted", "Unavailable", "503")]);
  const run = workflow(async (ctx) => {
    const error = await rejection(ctx.activity("charge").call());
    if (!(error instanceof ActivityFailure)) throw error;
    return { reason: error.reason, attempts: error.attempts, type: error.errorType, message: error.message };
  });
  assertEqual(
    JSON.parse(await run("null")),
    { reason: "attempts-exhausted", attempts: 3, type: "Unavailable", message: "503 (activity gave up: attempts exhausted after 3 attempt(s))" },
    "failure",
  );
});

test("the saga compensates in reverse, marks each compensation and reports", async () => {
  host.activityOutcomes.set("ship", [failure("non-retryable", "ShippingUnavailable", "no trucks")]);
  const run = workflow(async (ctx) => {
    const saga = new Saga();
    try {
      await saga.step("reserve", ctx.activity("reserve"), () => ctx.activity("release"));
      await saga.step("charge", ctx.activity("charge"), () => ctx.activity("refund").retry({ maximumAttempts: 9 }));
      await ctx.activity("ship").call();
      return "shipped";
    } catch (error) {
      throw (await saga.compensate()).intoError(error);
    }
  });
  const error = (await rejection(run("null"))) as { payload: { errorType: string; message: string; details: string } };
  assertEqual(error.payload.errorType, "ShippingUnavailable", "the original error type");
  assertEqual(
    error.payload.message,
    "no trucks (activity gave up: non-retryable error after 3 attempt(s)) (compensated: charge, reserve)",
    "message",
  );
  assertEqual(JSON.parse(error.payload.details), { compensated: ["charge", "reserve"], failed: [], skipped: [] }, "report");
  assertEqual(startedNames(), ["reserve", "charge", "ship", "refund", "release"], "order");
  const compensations = host.calls
    .filter(([name]) => name === "startActivity")
    .slice(3)
    .map(([, , , options]) => options as { compensates: string; retry: { maximumIntervalMs: bigint; maximumAttempts: number } });
  assertEqual(compensations.map((options) => options.compensates), ["charge", "reserve"], "compensates");
  assertEqual(compensations[0]!.retry.maximumAttempts, 9, "a compensation's own policy is kept");
  assertEqual(compensations[1]!.retry.maximumIntervalMs, 60_000n, "the saga's default policy otherwise");
});

test("a saga that stops on failure skips the rest; a parallel one starts all first", async () => {
  host.activityOutcomes.set("refund", [failure("non-retryable", "Rejected", "refused")]);
  const stopping = workflow(async (ctx) => {
    const saga = new Saga({ continueOnFailure: false });
    await saga.step("reserve", ctx.activity("reserve"), () => ctx.activity("release"));
    await saga.step("charge", ctx.activity("charge"), () => ctx.activity("refund"));
    return (await saga.compensate()).toJSON();
  });
  assertEqual(JSON.parse(await stopping("null")), { compensated: [], failed: [["charge", "refused"]], skipped: ["reserve"] }, "report");
  host.reset();
  const parallel = workflow(async (ctx) => {
    const saga = new Saga({ parallel: true });
    await saga.step("reserve", ctx.activity("reserve"), () => ctx.activity("release"));
    await saga.step("charge", ctx.activity("charge"), () => ctx.activity("refund"));
    return (await saga.compensate()).toJSON();
  });
  assertEqual(JSON.parse(await parallel("null")).compensated, ["charge", "reserve"], "compensated");
  const after = host.calls.slice(4).map(([name, activity]) => `${name} ${String(activity)}`);
  assertEqual(after, ["startActivity refund", "startActivity release", "awaitActivity refund", "awaitActivity release"], "parallel");
});

test("awaitAny answers with the handle the host names, and its result at once", async () => {
  host.awaitAnyPicks = [2n];
  host.activityOutcomes.set("fast", [{ tag: "ok", val: "42" }]);
  const run = workflow(async (ctx) => {
    const slow = ctx.activity("slow").start();
    const fast = ctx.activity("fast").start();
    const first = await ctx.awaitAny([slow, fast]);
    return { first: first.name, value: await first.result(), done: [slow.done, fast.done] };
  });
  assertEqual(JSON.parse(await run("null")), { first: "fast", value: 42, done: [false, true] }, "output");
  assertEqual(host.calls.filter(([name]) => name === "awaitActivity"), [], "no second wait");
});

test("a cancelled sleep rejects with Cancelled; signals decode or time out", async () => {
  host.cancelSleep = true;
  const run = workflow(async (ctx) => {
    const error = await rejection(ctx.sleep(1000));
    const approved = await ctx.awaitSignal<{ by: string }>("approve");
    const timedOut = await ctx.awaitSignal("approve", { timeoutMs: 5 });
    return { cancelled: error instanceof Cancelled, approved, timedOut: timedOut === undefined };
  });
  assertEqual(JSON.parse(await run("null")), { cancelled: true, approved: { by: "ada" }, timedOut: true }, "output");
});

test("a child's error comes back as a WorkflowError with its details", async () => {
  const run = workflow(async (ctx) => {
    const error = await rejection(ctx.child("booking").input({ seats: 2 }).id("b-1").call());
    if (!(error instanceof WorkflowError)) throw error;
    return { type: error.errorType, details: error.details, json: error.detailsJson() };
  });
  assertEqual(JSON.parse(await run("null")), { type: "OutOfStock", details: { left: 0 }, json: '{"left":0}' }, "output");
  assertEqual(host.calls[0], ["startChild", "booking", '{"seats":2}', "b-1"], "start");
});

test("randomness, time, info, patches and logs go to the host", async () => {
  const run = workflow(async (ctx) => {
    console.warn("careful", { n: 1n });
    return {
      u64: ctx.randomBigInt(64),
      bits: ctx.randomBigInt(12),
      now: ctx.now().toISOString(),
      info: ctx.info(),
      patched: ctx.patched("fix-1"),
      attributes: ctx.upsertSearchAttributes({ customer: "acme", stale: null }),
    };
  });
  const output = await run("null");
  // Bytes 1..8 little-endian; 12 bits: the top 12 of bytes 1, 2.
  assertEqual(
    output,
    '{"u64":578437695752307201,"bits":32,"now":"2023-11-14T22:13:20.000Z","info":{"workflowId":"w-1","runId":"r-1","workflowType":"test","tenant":"default"},"patched":true}',
    "output",
  );
  assertEqual(host.calls[0], ["log", "warn", 'careful {"n":"1n"}'], "console.warn is a warn line");
  assertEqual(host.calls.at(-1), ["upsertSearchAttributes", '{"customer":"acme","stale":null}'], "attributes");
});

test("continueAsNew never returns; JSON refuses what it cannot carry", async () => {
  const run = workflow(async (ctx) => ctx.continueAsNew({ cursor: 7 }));
  const error = await rejection(run("null"));
  if (!(error instanceof Error) || !error.message.includes("continueAsNew returned")) throw error;
  assertEqual(host.calls.find(([name]) => name === "continueAsNew"), ["continueAsNew", '{"cursor":7}'], "input");
  let refused = "";
  try {
    encodeJson({ a: [1, Number.NaN] }, "the output");
  } catch (caught) {
    refused = (caught as Error).message;
  }
  assertEqual(refused, "the output must be JSON-able: `a[1]` is NaN (JSON has no NaN or infinity)", "message");
});

for (const [name, body] of tests) {
  host.reset();
  try {
    await body();
    print(`ok   ${name}`);
  } catch (error) {
    failures.push(name);
    print(`FAIL ${name}\n     ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
}
print(`${tests.length - failures.length} passed, ${failures.length} failed`);
(globalThis as unknown as { process: { exitCode: number } }).process.exitCode = failures.length === 0 ? 0 : 1;
