// The hello workflow in TypeScript, on the TypeScript SDK (guest-sdk/js).
//
// Same steps, inputs and output as examples/hello (Rust): time and
// randomness through the SDK's `Context` and through plain JavaScript
// (`Date.now()`, `crypto.getRandomValues`, both journaled by the host's
// virtual WASI), one `greet` call, then two rounds of a durable sleep and a
// `record` call. The output echoes every value the code saw, so a test can
// check that replay gave back exactly what the history recorded.

import { workflow } from "reprise-sdk";

interface Input {
  name: string;
  /** Length of each of the two durable sleeps. */
  sleep_ms?: number;
  /** How long the `record` activity works before it writes its effect. */
  work_ms?: number;
}

export const run = workflow(async (ctx, input: Input) => {
  const sleepMs = input.sleep_ms ?? 100;
  const workMs = input.work_ms ?? 0;
  const sdkNowMs = ctx.nowMs();
  const stdNowMs = Date.now();
  // u64s, as the Rust version draws them: bigints, written as exact digits.
  const sdkRandom = ctx.randomBigInt(64);
  const randRandom = crypto.getRandomValues(new BigUint64Array(1))[0]!;
  ctx.log("info", `hello workflow started for ${input.name}`);
  console.log("console.log is a log line too");

  const greeting = await ctx.activity("greet").input({ name: input.name }).call<{ greeting: string }>();
  const ledgerEntries: number[] = [];
  for (const step of [1, 2]) {
    await ctx.sleep(sleepMs);
    const recorded = await ctx
      .activity("record")
      .input({ step, work_ms: workMs })
      .startToClose(30_000)
      .call<{ entry: number }>();
    ledgerEntries.push(recorded.entry);
  }
  return {
    greeting: greeting.greeting,
    sdk_now_ms: sdkNowMs,
    std_now_ms: stdNowMs,
    sdk_random: sdkRandom,
    rand_random: randRandom,
    ledger_entries: ledgerEntries,
  };
});
