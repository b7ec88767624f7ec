/**
 * Write Reprise workflows in TypeScript.
 *
 * A workflow is deterministic code that reaches the world only through its
 * `Context`: every call is journaled by the host and replayed after a
 * crash, so the workflow resumes where it was. Plain `Date.now()`,
 * `Math.random()`, `crypto.getRandomValues()` and `setTimeout` are
 * journaled too (the host virtualizes WASI); `fetch` is denied — do I/O in
 * activities.
 *
 * ```ts
 * import { workflow } from "reprise-sdk";
 *
 * export const run = workflow(async (ctx, order: { id: string; cents: number }) => {
 *   const charge = await ctx.activity("charge")
 *     .input({ order: order.id, cents: order.cents })
 *     .retry({ maximumAttempts: 3, nonRetryableErrorTypes: ["CardDeclined"] })
 *     .idempotencyKey(`charge-${order.id}`)
 *     .call();
 *   await ctx.sleep(1000);
 *   return charge;
 * });
 * ```
 *
 * Build it into a component with `npx reprise-build app.ts -o app.wasm`.
 *
 * @module
 */

export {
  ActivityCall,
  ActivityHandle,
  ChildCall,
  ChildHandle,
  Context,
  RANDOM_BYTES_MAX,
  Update,
  type SignalOptions,
  type UpdateOptions,
  type WorkflowInfo,
} from "./context.js";
export { ActivityError, ActivityFailure, Cancelled, WorkflowError, describeReason, type FailureReason } from "./errors.js";
export { encodeJson, type Json } from "./json.js";
export type { LogLevel } from "./logging.js";
export type { QueryHandler, UpdateValidator } from "./queries.js";
export type { RetryPolicy } from "./options.js";
export { COMPENSATION_RETRY, CompensationReport, Saga, type SagaOptions } from "./saga.js";
export { workflow, type WorkflowExport } from "./workflow.js";
