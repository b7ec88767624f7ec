// The SDK's unit tests, in Node against a scripted host (fake-host.ts):
// what the SDK asks the host, in which order, and what it makes of the
// answers. `npm test` runs them (tests/run-unit.mjs bundles this file with
// the host's interface mapped to the fake). The runtime tests
// (runtime/tests/integration/js_sdk.rs) run the real thing.

import type { WireQueryRequest } from "reprise:workflow/durable@0.1.0";
import { ActivityFailure, Cancelled, type Context, Saga, Update, WorkflowError, encodeJson, workflow } from "reprise-sdk";
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

// --- queries and updates ------------------------------------------------------

function callNames(): string[] {
  return host.calls.map(([name]) => name);
}

function messageOf(thrown: () => unknown): string {
  try {
    thrown();
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
  return "no error";
}

test("with nothing registered the host is never asked for a query", async () => {
  host.queries = [{ kind: "query", name: "balance", args: "null" }];
  host.updates = [{ updateId: "u-1", name: "deposit", args: "{}" }];
  const run = workflow(async (ctx) => {
    ctx.nowMs();
    await ctx.sleep(1);
    await ctx.activity("a").call();
    const update = await ctx.awaitUpdate("deposit");
    ctx.completeUpdate(update!, { ok: true });
    return "done";
  });
  assertEqual(await run("null"), '"done"', "output");
  assertEqual(callNames(), ["nowMs", "sleepMs", "startActivity", "awaitActivity", "awaitUpdate", "completeUpdate"], "calls");
  assertEqual(host.answers, [], "no answer");
});

test("once handlers are registered, one nextQuery before each durable call and one after the workflow settles", async () => {
  host.updates = [{ updateId: "u-1", name: "deposit", args: '{"amount":5}' }];
  const run = workflow(async (ctx) => {
    ctx.nowMs(); // Nothing registered yet: not asked.
    ctx.onQuery("state", () => "s");
    ctx.nowMs();
    ctx.randomBytes(2);
    await ctx.sleep(1);
    await ctx.awaitSignal("approve");
    const a = ctx.activity("a").start();
    const b = ctx.activity("b").start();
    await ctx.awaitAny([a, b]);
    await b.result();
    await rejection(ctx.child("booking").call());
    ctx.patched("p");
    ctx.deprecatePatch("p");
    ctx.upsertSearchAttributes({ k: 1 });
    const update = await ctx.awaitUpdate("deposit");
    ctx.completeUpdate(update!, null);
    ctx.info();
    ctx.log("info", "not a durable call");
    console.log("nor is this");
    return "done";
  });
  assertEqual(await run("null"), '"done"', "output");
  assertEqual(
    callNames(),
    [
      "nowMs",
      ...["nowMs", "randomBytes", "sleepMs", "awaitSignal", "startActivity", "startActivity", "awaitAny", "awaitActivity"].flatMap(
        (call) => ["nextQuery", call],
      ),
      ...["startChild", "awaitChild", "patched", "deprecatePatch", "upsertSearchAttributes", "awaitUpdate", "completeUpdate"].flatMap(
        (call) => ["nextQuery", call],
      ),
      "info",
      "log",
      "log",
      "nextQuery",
    ],
    "calls",
  );
});

test("a workflow that fails or continues as new is asked once more when it settles; a validator alone turns polling on", async () => {
  const failing = workflow(async (ctx) => {
    ctx.onUpdateValidator("deposit", () => {});
    throw new WorkflowError("Nope", "no");
  });
  const error = (await rejection(failing("null"))) as { payload: { errorType: string } };
  assertEqual(error.payload.errorType, "Nope", "the failure");
  assertEqual(callNames(), ["nextQuery"], "asked once, after it settled");
  host.reset();
  const continuing = workflow(async (ctx) => {
    ctx.onQuery("state", () => 1);
    ctx.continueAsNew({ cursor: 1 });
  });
  await rejection(continuing("null"));
  assertEqual(
    callNames().filter((name) => name !== "log"),
    ["nextQuery", "continueAsNew", "nextQuery"],
    "continue-as-new is a durable call",
  );
});

test("a waiting query is answered once, from the state at that point, args decoded", async () => {
  host.queries = [{ kind: "query", name: "balance", args: '{"currency":"EUR"}' }];
  const run = workflow(async (ctx) => {
    let balance = 10;
    ctx.onQuery("balance", (args: { currency: string }) => ({ balance, currency: args.currency, big: 2n ** 64n }));
    balance = 15;
    await ctx.sleep(1);
    balance = 20;
    await ctx.sleep(1);
    return balance;
  });
  assertEqual(await run("null"), "20", "output");
  assertEqual(host.answers, [{ tag: "ok", val: '{"balance":15,"currency":"EUR","big":18446744073709551616}' }], "answers");
  assertEqual(callNames(), ["nextQuery", "answerQuery", "sleepMs", "nextQuery", "sleepMs", "nextQuery"], "calls");
});

test("a query waiting at the end is answered from the state the workflow ended with", async () => {
  host.queries = [{ kind: "query", name: "status", args: "null" }];
  const run = workflow(async (ctx) => {
    let status = "running";
    ctx.onQuery("status", () => status);
    status = "done";
    return status;
  });
  await run("null");
  assertEqual(host.answers, [{ tag: "ok", val: '"done"' }], "answers");
});

/** The answers to `requests`, one answered before each of as many sleeps. */
async function answersTo(requests: WireQueryRequest[], register: (ctx: Context) => void): Promise<unknown[]> {
  host.queries = [...requests];
  const run = workflow(async (ctx) => {
    register(ctx);
    for (const _ of requests) await ctx.sleep(1);
    return null;
  });
  await run("null");
  assertEqual(host.queries, [], "every query answered");
  return host.answers;
}

test("queries: unknown names, bad args, thrown errors, promises and unencodable answers are answered as errors", async () => {
  const query = (name: string, args = "null"): WireQueryRequest => ({ kind: "query", name, args });
  const answers = await answersTo(
    [
      query("balanse"),
      query("balance", "{nope"),
      query("closed"),
      query("bug"),
      query("later"),
      query("nan"),
      query("nothing"),
      query("balance", '{"scale":2}'),
    ],
    (ctx) => {
      ctx.onQuery("balance", (args: { scale: number } | null) => 500 * (args?.scale ?? 1));
      ctx.onQuery("closed", () => {
        throw new WorkflowError("Closed", "account closed", { at: 3 });
      });
      ctx.onQuery("bug", () => {
        throw new TypeError("boom");
      });
      ctx.onQuery("later", async () => 1);
      ctx.onQuery("nan", () => Number.NaN);
      ctx.onQuery("nothing", () => undefined);
    },
  );
  const err = (errorType: string, message: string, details?: string) => ({ tag: "err", val: { errorType, message, details } });
  assertEqual(
    answers,
    [
      err("UnknownQuery", "this workflow has no handler for query `balanse`; it answers: balance, bug, closed, later, nan, nothing"),
      err("InvalidQueryArgs", "the args of query `balance` ({nope) do not fit: they are not JSON"),
      err("Closed", "account closed", '{"at":3}'),
      err("QueryFailed", "boom"),
      err("QueryFailed", "query handler `later` returned a promise: query handlers are synchronous, they only read state"),
      err("SerializationError", "the answer to query `nan` must be JSON-able: it is NaN (JSON has no NaN or infinity)"),
      { tag: "ok", val: "null" },
      { tag: "ok", val: "1000" },
    ],
    "answers",
  );
});

test("a durable call in a handler asks for no other query and goes to the host, which fails the query", async () => {
  host.queries = [{ kind: "query", name: "sneaky", args: "null" }];
  const run = workflow(async (ctx) => {
    ctx.onQuery("sneaky", () => ctx.nowMs());
    await ctx.sleep(1);
    return null;
  });
  await run("null");
  assertEqual(callNames(), ["nextQuery", "nowMs", "answerQuery", "sleepMs", "nextQuery"], "calls");
});

test("update validators: accept by returning, reject by throwing, unregistered names accepted", async () => {
  const validate = (name: string, args = "null"): WireQueryRequest => ({ kind: "validate-update", name, args });
  const answers = await answersTo(
    [
      validate("close"),
      validate("deposit", '{"amount":5}'),
      validate("deposit", '{"amount":-1}'),
      validate("deposit", "{x"),
      validate("buggy"),
      { kind: "query", name: "deposit", args: "null" },
    ],
    (ctx) => {
      ctx.onUpdateValidator("deposit", (args: { amount: number }) => {
        if (args.amount <= 0) throw new WorkflowError("InvalidAmount", `amounts are positive; got ${args.amount}`);
      });
      ctx.onUpdateValidator("buggy", () => {
        throw new RangeError("bad");
      });
    },
  );
  assertEqual(
    answers,
    [
      { tag: "ok", val: "null" },
      { tag: "ok", val: "null" },
      { tag: "err", val: { errorType: "InvalidAmount", message: "amounts are positive; got -1" } },
      { tag: "err", val: { errorType: "InvalidUpdateArgs", message: "the args of update `deposit` ({x) do not fit: they are not JSON" } },
      { tag: "err", val: { errorType: "QueryFailed", message: "bad" } },
      { tag: "err", val: { errorType: "UnknownQuery", message: "this workflow has no handler for query `deposit`; it answers: none" } },
    ],
    "answers",
  );
});

test("awaitUpdate delivers updates, times out, is cancelled; each update is answered once", async () => {
  host.updates = [
    { updateId: "u-1", name: "deposit", args: '{"amount":5}' },
    { updateId: "u-2", name: "withdraw", args: '{"amount":500}' },
    "timeout",
    { cancelled: "stop" },
    { updateId: "u-3", name: "deposit", args: "{}" },
  ];
  const run = workflow(async (ctx) => {
    const first = (await ctx.awaitUpdate<{ amount: number }>("deposit"))!;
    const amount = first.args.amount;
    ctx.completeUpdate(first, { balance: 5n });
    const twice = messageOf(() => ctx.completeUpdate(first, null));
    const second = (await ctx.awaitUpdate(["deposit", "withdraw"], { timeoutMs: 1000 }))!;
    const notAnError = messageOf(() => ctx.completeUpdate(second, new WorkflowError("X", "y")));
    const notAWorkflowError = messageOf(() => ctx.failUpdate(second, new Error("plain") as WorkflowError));
    ctx.failUpdate(second, new WorkflowError("InsufficientFunds", "cannot withdraw 500", { balance: 5 }));
    const timedOut = await ctx.awaitUpdate("deposit", { timeoutMs: 10 });
    const cancelled = await rejection(ctx.awaitUpdate("deposit"));
    const noNames = messageOf(() => ctx.awaitUpdate([]));
    ctx.completeUpdate((await ctx.awaitUpdate("deposit"))!, { amount: Number.NaN });
    return {
      first: [first instanceof Update, first.id, first.name, amount, first.argsJson, first.completed],
      twice,
      notAnError,
      notAWorkflowError,
      second: [second.name, second.completed],
      timedOut: timedOut === undefined,
      cancelled: cancelled instanceof Cancelled ? cancelled.message : String(cancelled),
      noNames,
    };
  });
  assertEqual(
    JSON.parse(await run("null")),
    {
      first: [true, "u-1", "deposit", 5, '{"amount":5}', true],
      twice: "Error: completeUpdate: update `deposit` (u-1) was answered before; each update is answered once",
      notAnError: "TypeError: completeUpdate got a WorkflowError for update `withdraw`: answer with an error by ctx.failUpdate(update, error)",
      notAWorkflowError: 'TypeError: failUpdate takes a WorkflowError, e.g. new WorkflowError("InvalidAmount", "..."); got {}',
      second: ["withdraw", true],
      timedOut: true,
      cancelled: "stop",
      noNames: 'TypeError: awaitUpdate takes an update name or a non-empty array of them, e.g. ["deposit", "withdraw"]; got []',
    },
    "output",
  );
  assertEqual(
    host.calls,
    [
      ["awaitUpdate", ["deposit"], undefined],
      ["completeUpdate", "u-1", { tag: "ok", val: '{"balance":5}' }],
      ["awaitUpdate", ["deposit", "withdraw"], 1000n],
      ["completeUpdate", "u-2", { tag: "err", val: { errorType: "InsufficientFunds", message: "cannot withdraw 500", details: '{"balance":5}' } }],
      ["awaitUpdate", ["deposit"], 10n],
      ["awaitUpdate", ["deposit"], undefined],
      ["awaitUpdate", ["deposit"], undefined],
      [
        "completeUpdate",
        "u-3",
        { tag: "err", val: { errorType: "SerializationError", message: "the answer to update `deposit` must be JSON-able: `amount` is NaN (JSON has no NaN or infinity)" } },
      ],
    ],
    "calls",
  );
});

test("an option's none given as null is none too", async () => {
  host.none = null;
  const run = workflow(async (ctx) => {
    ctx.onQuery("state", () => 1);
    const update = await ctx.awaitUpdate("deposit", { timeoutMs: 1 });
    const signal = await ctx.awaitSignal("approve", { timeoutMs: 1 });
    return [update === undefined, signal === undefined];
  });
  assertEqual(await run("null"), "[true,true]", "output");
  assertEqual(host.answers, [], "no query answered");
});

test("handleUpdate answers with the value, the WorkflowError, or UpdateFailed, and is false on timeout", async () => {
  host.updates = [
    { updateId: "u-1", name: "deposit", args: '{"amount":5}' },
    { updateId: "u-2", name: "deposit", args: '{"amount":-1}' },
    { updateId: "u-3", name: "deposit", args: '{"amount":0}' },
    { updateId: "u-4", name: "slow", args: "{}" },
    { updateId: "u-5", name: "deposit", args: "{bad" },
    "timeout",
  ];
  const run = workflow(async (ctx) => {
    let balance = 0;
    const deposit = (args: { amount: number }) => {
      if (args.amount < 0) throw new WorkflowError("InvalidAmount", `negative: ${args.amount}`);
      if (args.amount === 0) throw new TypeError("zero");
      balance += args.amount;
      return { balance };
    };
    const handled: boolean[] = [];
    let seen = "";
    for (let index = 0; index < 3; index += 1) handled.push(await ctx.handleUpdate("deposit", deposit));
    handled.push(
      await ctx.handleUpdate(["slow", "other"], async (_args, update) => {
        await ctx.activity("work").call();
        seen = update.id;
      }),
    );
    handled.push(await ctx.handleUpdate("deposit", deposit));
    handled.push(await ctx.handleUpdate("deposit", deposit, { timeoutMs: 5 }));
    return { handled, balance, seen };
  });
  assertEqual(JSON.parse(await run("null")), { handled: [true, true, true, true, true, false], balance: 5, seen: "u-4" }, "output");
  assertEqual(
    host.calls.filter(([name]) => name === "completeUpdate" || name === "startActivity").map(([name, id, result]) => [name, id, result]),
    [
      ["completeUpdate", "u-1", { tag: "ok", val: '{"balance":5}' }],
      ["completeUpdate", "u-2", { tag: "err", val: { errorType: "InvalidAmount", message: "negative: -1" } }],
      ["completeUpdate", "u-3", { tag: "err", val: { errorType: "UpdateFailed", message: "zero" } }],
      ["startActivity", "work", "null"],
      ["completeUpdate", "u-4", { tag: "ok", val: "null" }],
      [
        "completeUpdate",
        "u-5",
        { tag: "err", val: { errorType: "InvalidUpdateArgs", message: "the args of update `deposit` ({bad) do not fit: they are not JSON" } },
      ],
    ],
    "answers",
  );
});

test("handleUpdate: a cancelled wait rejects; a cancellation in the handler answers the update and is rethrown", async () => {
  host.updates = [{ cancelled: "stop" }, { updateId: "u-1", name: "ship", args: "null" }];
  host.cancelSleep = true;
  let handlerRan = false;
  const run = workflow(async (ctx) => {
    const waiting = await rejection(
      ctx.handleUpdate("ship", () => {
        handlerRan = true;
      }),
    );
    if (!(waiting instanceof Cancelled) || waiting.message !== "stop") throw waiting;
    await ctx.handleUpdate("ship", async () => {
      await ctx.sleep(1000);
      return "shipped";
    });
    return "not cancelled";
  });
  const error = (await rejection(run("null"))) as { payload: { errorType: string; message: string } };
  assertEqual(error.payload, { errorType: "Cancelled", message: "cancelled by test" }, "the workflow ends cancelled");
  assertEqual(handlerRan, false, "no handler ran for the cancelled wait");
  assertEqual(
    host.calls.filter(([name]) => name === "completeUpdate"),
    [["completeUpdate", "u-1", { tag: "err", val: { errorType: "Cancelled", message: "cancelled by test" } }]],
    "the update is answered with the cancellation",
  );
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
