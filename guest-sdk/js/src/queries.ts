// Query handlers and update validators: what the workflow registers with
// `ctx.onQuery` / `ctx.onUpdateValidator`, and how a request from the host
// (`next-query`) is answered. Registration is in-memory state of the
// running workflow, not journaled: a query replay registers the handlers
// again as it re-runs the code.

import type { WireQueryRequest, WireResult, WireWorkflowError } from "reprise:workflow/durable@0.1.0";
import { WorkflowError, workflowErrorToWire } from "./errors.js";
import type { QueryAnswerer } from "./host.js";
import { encodeJson, tryDecodeJson } from "./json.js";

/** Reads the workflow's state and returns any JSON-able value. */
export type QueryHandler<A = unknown> = (args: A) => unknown;
/** Returns to accept an update, throws a `WorkflowError` to reject it. */
export type UpdateValidator<A = unknown> = (args: A) => void;

function failure(errorType: string, message: string): WireResult<string, WireWorkflowError> {
  return { tag: "err", val: { errorType, message, details: undefined } };
}

function isThenable(value: unknown): boolean {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

/** @internal The message of an update's args that do not decode, as the Rust SDK words it. */
export function updateArgsMismatch(name: string, args: string, problem: string): string {
  return `the args of update \`${name}\` (${args}) do not fit: ${problem}`;
}

/** @internal `value` as an `ok` answer, or a `SerializationError` naming
 * `what` when JSON cannot carry it (undefined is `null`). */
export function encodeAnswer(value: unknown, what: string): WireResult<string, WireWorkflowError> {
  try {
    return { tag: "ok", val: value === undefined ? "null" : encodeJson(value, what) };
  } catch (error) {
    // The message names `what` and the value that JSON cannot carry.
    return failure("SerializationError", (error as Error).message);
  }
}

function messageOf(thrown: unknown): string {
  return thrown instanceof Error ? thrown.message : String(thrown);
}

/** @internal The registered handlers of one workflow run. */
export class QueryHandlers implements QueryAnswerer {
  readonly #queries = new Map<string, QueryHandler<never>>();
  readonly #validators = new Map<string, UpdateValidator<never>>();

  get active(): boolean {
    return this.#queries.size > 0 || this.#validators.size > 0;
  }

  onQuery(name: string, handler: QueryHandler<never>): void {
    this.#queries.set(name, handler);
  }

  onUpdateValidator(name: string, validator: UpdateValidator<never>): void {
    this.#validators.set(name, validator);
  }

  answer(request: WireQueryRequest): WireResult<string, WireWorkflowError> {
    return request.kind === "validate-update" ? this.#validate(request) : this.#query(request);
  }

  #query({ name, args }: WireQueryRequest): WireResult<string, WireWorkflowError> {
    const handler = this.#queries.get(name) as QueryHandler | undefined;
    if (handler === undefined) {
      // Sorted, as the Rust SDK lists them.
      const known = [...this.#queries.keys()].sort();
      return failure(
        "UnknownQuery",
        `this workflow has no handler for query \`${name}\`; it answers: ${known.length === 0 ? "none" : known.join(", ")}`,
      );
    }
    const decoded = tryDecodeJson(args);
    if (decoded === undefined) return failure("InvalidQueryArgs", `the args of query \`${name}\` (${args}) do not fit: they are not JSON`);
    let result: unknown;
    try {
      result = handler(decoded.value);
    } catch (thrown) {
      return this.#thrown(thrown);
    }
    if (isThenable(result)) {
      return failure("QueryFailed", `query handler \`${name}\` returned a promise: query handlers are synchronous, they only read state`);
    }
    return encodeAnswer(result, `the answer to query \`${name}\``);
  }

  #validate({ name, args }: WireQueryRequest): WireResult<string, WireWorkflowError> {
    const validator = this.#validators.get(name) as UpdateValidator | undefined;
    if (validator === undefined) return { tag: "ok", val: "null" };
    const decoded = tryDecodeJson(args);
    if (decoded === undefined) return failure("InvalidUpdateArgs", updateArgsMismatch(name, args, "they are not JSON"));
    try {
      const returned: unknown = validator(decoded.value);
      if (isThenable(returned)) {
        return failure("QueryFailed", `update validator \`${name}\` returned a promise: validators are synchronous, they only read state`);
      }
    } catch (thrown) {
      return this.#thrown(thrown);
    }
    return { tag: "ok", val: "null" };
  }

  #thrown(thrown: unknown): WireResult<string, WireWorkflowError> {
    if (thrown instanceof WorkflowError) return { tag: "err", val: workflowErrorToWire(thrown) };
    return failure("QueryFailed", messageOf(thrown));
  }
}
