// The benchmark workflow of examples/bench in TypeScript (the Wasm-activity
// chain only): `steps` sequential "add one" activities, each feeding the
// next. `reprise bench --guests DIR --only latency1,instantiate` with this
// component as DIR/bench.wasm gives the start-up figures in BENCHMARKS.md.

import { workflow } from "reprise-sdk";

export const run = workflow(async (ctx, input: { steps: number }) => {
  let value = 0;
  for (let step = 0; step < input.steps; step += 1) {
    value = await ctx.activity("add-one").input(value).call<number>();
  }
  return value;
});
