/**
 * Serve Reprise activities from Node.js: an external worker over the
 * runtime's task API (poll, heartbeat, complete, fail), with typed errors,
 * a concurrency limit and graceful shutdown. No runtime dependencies:
 * Node 20's built-in fetch.
 *
 * ```ts
 * import { Worker, NonRetryableError } from "reprise-worker";
 *
 * await new Worker({
 *   apiUrl: "http://127.0.0.1:7979",
 *   activities: {
 *     charge: async (order, ctx) => {
 *       await ctx.heartbeat({ step: "charging" });
 *       return { chargeId: await provider.charge(order, ctx.idempotencyKey) };
 *     },
 *   },
 *   maxConcurrent: 4,
 * }).run();
 * ```
 */
export { ActivityError, NonRetryableError, TaskClosedError, WorkerError } from "./errors.js";
export type { ActivityErrorOptions } from "./errors.js";
export { Worker, POLL_WAIT_MS_MAX } from "./worker.js";
export type { ActivityContext, ActivityHandler, Logger, WorkerOptions } from "./worker.js";
