// The one place the SDK calls the host's `reprise:workflow/durable`
// interface, and meets componentize-js's conventions for WIT results: an
// import returning `result<T, E>` returns T or throws E (wrapped in an
// Error whose `payload` is E).
//
// Every durable call goes through `durable` below, which first answers a
// waiting query (`pollQueries`) while the workflow has query handlers or
// update validators registered: the host hands a query to a replaying
// instance once it has made every command the history holds, and the
// guest only learns of it by asking at its next call. `info` and `log` are
// not durable calls and do not ask.

import * as wire from "reprise:workflow/durable@0.1.0";
import type { WireQueryRequest, WireResult, WireWorkflowError } from "reprise:workflow/durable@0.1.0";

/** The `err` value of a result-returning import that threw, or undefined
 * when what was thrown is not one (a trap, a bug: let it through). */
export function errorPayload<E>(thrown: unknown, isPayload: (value: unknown) => value is E): E | undefined {
  if (typeof thrown === "object" && thrown !== null && "payload" in thrown) {
    const payload = (thrown as { payload: unknown }).payload;
    if (isPayload(payload)) return payload;
  }
  return isPayload(thrown) ? thrown : undefined;
}

export function hasStringFields<K extends string>(value: unknown, ...keys: K[]): value is Record<K, string> {
  return typeof value === "object" && value !== null && keys.every((key) => typeof (value as Record<string, unknown>)[key] === "string");
}

// --- queries ---------------------------------------------------------------

/** What answers the host's queries: the registered handlers of the running
 * workflow (see queries.ts). */
export interface QueryAnswerer {
  /** Whether anything is registered: only then is the host asked. */
  readonly active: boolean;
  /** The answer to one request. Never throws: every failure is an `err`. */
  answer(request: WireQueryRequest): WireResult<string, WireWorkflowError>;
}

let answerer: QueryAnswerer | undefined;
/** True while a query handler or update validator runs. */
let answering = false;

/** @internal Makes `queries` answer from now on (`workflow()` sets the running workflow's). */
export function answerQueriesWith(queries: QueryAnswerer | undefined): void {
  answerer = queries;
}

/**
 * Asks the host once for a waiting query and answers it, if the workflow
 * has handlers registered; else does nothing. Called before every durable
 * call and once after the workflow function settles. Once, not in a loop:
 * the host hands out the same request until it is answered, and takes the
 * next one at a later call.
 */
export function pollQueries(): void {
  if (answerer === undefined || !answerer.active || answering) return;
  const request = wire.nextQuery();
  // An option's `none` is undefined (null accepted too).
  if (request === undefined || request === null) return;
  answering = true;
  let answer: WireResult<string, WireWorkflowError>;
  try {
    answer = answerer.answer(request);
  } finally {
    answering = false;
  }
  wire.answerQuery(answer);
}

/** Before a durable call: answers a waiting query. A durable call made by
 * a query handler or an update validator (while `answering`) asks for no
 * other query and goes to the host, which fails the query
 * (`DurableCallInQuery`): handlers only read state. */
function beforeDurableCall(): void {
  pollQueries();
}

// --- the calls ---------------------------------------------------------------

/** The host's interface as the SDK calls it: each durable call answers a
 * waiting query first (see `pollQueries`). */
export const durable = {
  nowMs(): bigint {
    beforeDurableCall();
    return wire.nowMs();
  },
  randomBytes(len: number): Uint8Array {
    beforeDurableCall();
    return wire.randomBytes(len);
  },
  sleepMs(durationMs: bigint): void {
    beforeDurableCall();
    wire.sleepMs(durationMs);
  },
  awaitSignal(name: string, timeoutMs: bigint | undefined): string | undefined {
    beforeDurableCall();
    const payload = wire.awaitSignal(name, timeoutMs);
    return payload === null ? undefined : payload;
  },
  startActivity(name: string, input: string, options: wire.WireActivityOptions): bigint {
    beforeDurableCall();
    return wire.startActivity(name, input, options);
  },
  awaitActivity(handle: bigint): string {
    beforeDurableCall();
    return wire.awaitActivity(handle);
  },
  awaitAny(handles: BigUint64Array): [bigint, WireResult<string, wire.WireActivityFailure>] {
    beforeDurableCall();
    return wire.awaitAny(handles);
  },
  startChild(workflowType: string, input: string, workflowId: string | undefined): bigint {
    beforeDurableCall();
    return wire.startChild(workflowType, input, workflowId);
  },
  awaitChild(handle: bigint): string {
    beforeDurableCall();
    return wire.awaitChild(handle);
  },
  patched(changeId: string): boolean {
    beforeDurableCall();
    return wire.patched(changeId);
  },
  deprecatePatch(changeId: string): void {
    beforeDurableCall();
    wire.deprecatePatch(changeId);
  },
  continueAsNew(input: string): void {
    beforeDurableCall();
    wire.continueAsNew(input);
  },
  upsertSearchAttributes(attributes: string): void {
    beforeDurableCall();
    wire.upsertSearchAttributes(attributes);
  },
  awaitUpdate(names: string[], timeoutMs: bigint | undefined): wire.WireUpdateRequest | undefined {
    beforeDurableCall();
    const update = wire.awaitUpdate(names, timeoutMs);
    return update === null ? undefined : update;
  },
  completeUpdate(updateId: string, result: WireResult<string, WireWorkflowError>): void {
    beforeDurableCall();
    wire.completeUpdate(updateId, result);
  },
  /** Not a durable call: asks for no query. */
  info(): wire.WireWorkflowInfo {
    return wire.info();
  },
  /** Not a durable call: asks for no query. */
  log(level: wire.WireLogLevel, message: string): void {
    wire.log(level, message);
  },
};
