// The SDK's test workflow (runtime/tests/integration/js_sdk.rs builds it
// into build/guests/js-probe.wasm): what plain JavaScript does with time,
// randomness, timers and promises, and the SDK calls the examples do not
// make (signals, children, awaitAny, info). Every value it sees is in its
// output, so a replay that returns the same output saw the same values.

import { Cancelled, type Context, WorkflowError, workflow } from "reprise-sdk";

type Probe =
  | { mode: "determinism"; timer_ms?: number }
  | { mode: "signal"; timeout_ms?: number }
  | { mode: "fan-out"; children?: number }
  | { mode: "child"; value: number }
  | { mode: "cancel" };

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Every way plain JavaScript reads time or randomness, and the order
 * timers and promises run in. */
async function determinism(ctx: Context, timerMs: number): Promise<unknown> {
  const wallBefore = Date.now();
  const dateIso = new Date().toISOString();
  const monotonicBefore = performance.now();
  const mathRandom = [Math.random(), Math.random(), Math.random()];
  const cryptoBytes = hex(crypto.getRandomValues(new Uint8Array(8)));
  const uuid = typeof crypto.randomUUID === "function" ? crypto.randomUUID() : "unavailable";
  const sdkRandom = ctx.random();
  const sdkNowMs = ctx.nowMs();

  const order: string[] = [];
  const timers = [3, 1, 2].map(
    (multiple) =>
      new Promise<void>((resolve) =>
        setTimeout(() => {
          order.push(`timer ${multiple * timerMs} ms`);
          resolve();
        }, multiple * timerMs),
      ),
  );
  void Promise.resolve().then(() => order.push("promise"));
  queueMicrotask(() => order.push("queueMicrotask"));
  order.push("synchronous");
  await Promise.all(timers);
  // A timer due while an activity runs fires after the activity's result:
  // the activity's wait blocks the (one) thread.
  const dueDuringActivity = new Promise<void>((resolve) =>
    setTimeout(() => {
      order.push("timer due during the activity");
      resolve();
    }, 1),
  );
  const paused = await ctx.activity("pause").input(timerMs).call<number>();
  order.push(`activity paused ${paused} ms`);
  await dueDuringActivity;
  const wallAfter = Date.now();
  const monotonicAfter = performance.now();
  console.log(`math_random=${mathRandom.join(",")}`);
  return {
    wall_before: wallBefore,
    wall_after: wallAfter,
    date_iso: dateIso,
    monotonic_elapsed_ms: Math.floor(monotonicAfter - monotonicBefore),
    math_random: mathRandom,
    crypto_bytes: cryptoBytes,
    uuid,
    sdk_random: sdkRandom,
    sdk_now_ms: sdkNowMs,
    order,
    // No environment, so no TZ: local time is UTC. There is no Intl (the
    // engine is built without ICU).
    timezone_offset_min: new Date(0).getTimezoneOffset(),
    local_time: new Date(0).toString(),
    intl: typeof (globalThis as { Intl?: unknown }).Intl,
  };
}

async function signal(ctx: Context, timeoutMs: number): Promise<unknown> {
  const approval = await ctx.awaitSignal<{ by: string }>("approve", { timeoutMs });
  return { approved_by: approval?.by ?? null, info: ctx.info() };
}

/** Children and activities in flight together; the first activity to
 * finish (in history order) is reported. */
async function fanOut(ctx: Context, children: number): Promise<unknown> {
  const started = Array.from({ length: children }, (_, index) => ctx.child("js-probe").input({ mode: "child", value: index }).start<number>());
  const slow = ctx.activity("pause").input(1000).start<number>();
  const fast = ctx.activity("add-one").input(41).start<number>();
  const first = await ctx.awaitAny([slow, fast]);
  const results = await Promise.all(started.map((child) => child.result()));
  const [slowResult, fastResult] = await ctx.awaitAll([slow, fast]);
  const named = await ctx.child("js-probe").input({ mode: "child", value: 100 }).id(`${ctx.info().workflowId}/named`).call<number>();
  return { first: first.name, results, slow: slowResult, fast: fastResult, named };
}

export const run = workflow(async (ctx, probe: Probe) => {
  switch (probe.mode) {
    case "determinism":
      return determinism(ctx, probe.timer_ms ?? 50);
    case "signal":
      return signal(ctx, probe.timeout_ms ?? 60_000);
    case "fan-out":
      return fanOut(ctx, probe.children ?? 2);
    case "child":
      return probe.value * 2;
    case "cancel":
      try {
        await ctx.sleep(60_000);
        return "not cancelled";
      } catch (error) {
        if (!(error instanceof Cancelled)) throw error;
        // Delivered once, to the sleep: this call runs normally.
        await ctx.activity("add-one").input(1).call();
        throw error;
      }
    default:
      throw new WorkflowError("BadInput", `unknown probe ${JSON.stringify(probe)}`);
  }
});
