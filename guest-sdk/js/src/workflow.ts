// `workflow()`: the function a workflow component exports as `run`.

import type { WireWorkflowError } from "reprise:workflow/durable@0.1.0";
import { Context } from "./context.js";
import { WorkflowError, workflowErrorToWire } from "./errors.js";
import { answerQueriesWith, pollQueries } from "./host.js";
import { encodeJson, tryDecodeJson } from "./json.js";
import { logLine, routeConsole, writeStderr } from "./logging.js";
import { QueryHandlers } from "./queries.js";

/** The export a workflow component must have: `export const run = workflow(...)`. */
export type WorkflowExport = (input: string) => Promise<string>;

/** How componentize-js returns the `err` of an exported function's
 * `result`: the thrown value's `payload`. */
class ExportError extends Error {
  readonly payload: WireWorkflowError;

  constructor(payload: WireWorkflowError) {
    super(`${payload.errorType}: ${payload.message}`);
    this.payload = payload;
  }
}

/**
 * Makes `body(ctx, input)` the workflow this component runs; export the
 * result as `run`:
 *
 * ```ts
 * export const run = workflow(async (ctx, order: Order) => {
 *   return await ctx.activity("charge").input(order).call();
 * });
 * ```
 *
 * `input` is the execution's JSON input, decoded; the resolved value (any
 * JSON-able value; a bigint is written as its digits) is its result. Throw
 * `WorkflowError` to fail it; an `ActivityFailure` or `Cancelled` let
 * through fails (or cancels) it the same way. Any other error is a bug: it
 * is logged and traps, like a panic in Rust.
 *
 * While the workflow has query handlers or update validators registered
 * (`ctx.onQuery`, `ctx.onUpdateValidator`), a query the host is waiting
 * to have answered is answered before every durable call and once more
 * when `body` has settled.
 */
export function workflow<Input = unknown, Output = unknown>(
  body: (ctx: Context, input: Input) => Output | Promise<Output>,
): WorkflowExport {
  if (typeof body !== "function") {
    throw new TypeError(`workflow() takes the workflow function, (ctx, input) => result; got ${String(body)}`);
  }
  return async (inputJson: string): Promise<string> => {
    routeConsole();
    const queries = new QueryHandlers();
    answerQueriesWith(queries);
    try {
      const decoded = tryDecodeJson(inputJson);
      if (decoded === undefined) throw new WorkflowError("InvalidInput", `the workflow input is not JSON: ${inputJson}`);
      let output: Output;
      try {
        output = await body(new Context(queries), decoded.value as Input);
      } finally {
        // A query waiting at the end of the history is answered from the
        // state the workflow ended with (returned or thrown alike).
        pollQueries();
      }
      try {
        return output === undefined ? "null" : encodeJson(output, "the workflow's result");
      } catch (error) {
        throw new WorkflowError("SerializationError", `could not encode the workflow output: ${(error as Error).message}`);
      }
    } catch (error) {
      if (error instanceof WorkflowError) throw new ExportError(workflowErrorToWire(error));
      // A bug, not a workflow failure: said in the durable log and on
      // stderr, which the host quotes when it reports the trap that follows.
      const description = describeBug(error);
      logLine("error", description);
      writeStderr(description);
      throw error;
    }
  };
}

function describeBug(error: unknown): string {
  if (!(error instanceof Error)) return `the workflow threw ${String(error)} (throw a WorkflowError to fail it)`;
  const stack = error.stack === undefined || error.stack === "" ? "" : `\n${error.stack}`;
  return `the workflow threw ${error.name}: ${error.message} (throw a WorkflowError to fail it)${stack}`;
}
