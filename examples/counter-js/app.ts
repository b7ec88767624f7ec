// The counter of examples/counter-py in TypeScript, on the TypeScript SDK:
// each run reads the clock, sets the search attribute `count`, and
// continues as new until it has counted to `until`. The `patched` branch
// is a change the first version of this workflow did not have: every
// execution started now takes it (and records its marker), one recorded
// before it would not.

import { workflow } from "reprise-sdk";

interface Input {
  count: number;
  until: number;
}

export const run = workflow(async (ctx, input: Input) => {
  ctx.nowMs();
  ctx.upsertSearchAttributes({ count: input.count });
  if (ctx.patched("report-language")) {
    ctx.upsertSearchAttributes({ language: "typescript" });
  }
  if (input.count >= input.until) {
    return { count: input.count, run_id: ctx.info().runId };
  }
  return ctx.continueAsNew({ ...input, count: input.count + 1 });
});
