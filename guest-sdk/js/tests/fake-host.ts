// A scripted stand-in for the host's `reprise:workflow/durable` interface,
// for the SDK's unit tests in Node (tests/unit.test.ts): records every call
// and answers from a script, throwing `err`s the way componentize-js does
// (an Error whose `payload` is the WIT error).

import type {
  WireActivityFailure,
  WireActivityOptions,
  WireLogLevel,
  WireQueryRequest,
  WireResult,
  WireUpdateRequest,
  WireWorkflowError,
  WireWorkflowInfo,
} from "reprise:workflow/durable@0.1.0";

/** What `awaitUpdate` answers, in order: an update, a timeout, or a cancellation. */
export type UpdateOutcome = WireUpdateRequest | "timeout" | { cancelled: string };

export type Call = [string, ...unknown[]];

export const host = {
  calls: [] as Call[],
  /** Activity outcomes by name, in call order; default: `null` output. */
  activityOutcomes: new Map<string, WireResult<string, WireActivityFailure>[]>(),
  /** Which handle `awaitAny` answers (default: the first asked for). */
  awaitAnyPicks: [] as bigint[],
  cancelSleep: false,
  nextSeq: 1n,
  /** Queries waiting: `nextQuery` hands out the first until it is answered. */
  queries: [] as WireQueryRequest[],
  /** Answers `answerQuery` got, in order. */
  answers: [] as WireResult<string, WireWorkflowError>[],
  /** What `awaitUpdate` answers, in order; a timeout once they are used up. */
  updates: [] as UpdateOutcome[],
  /** How `option::none` arrives: undefined (componentize-js), or null. */
  none: undefined as undefined | null,
  reset(): void {
    this.calls = [];
    this.activityOutcomes = new Map();
    this.awaitAnyPicks = [];
    this.cancelSleep = false;
    this.nextSeq = 1n;
    this.names = new Map();
    this.queries = [];
    this.answers = [];
    this.updates = [];
    this.none = undefined;
  },
  names: new Map<bigint, string>(),
};

function componentError(payload: unknown): Error {
  return Object.assign(new Error("component error"), { payload });
}

function outcomeOf(handle: bigint): WireResult<string, WireActivityFailure> {
  const name = host.names.get(handle) ?? "?";
  const queue = host.activityOutcomes.get(name);
  return queue?.shift() ?? { tag: "ok", val: "null" };
}

export function nowMs(): bigint {
  host.calls.push(["nowMs"]);
  return 1_700_000_000_000n;
}
export function randomBytes(len: number): Uint8Array {
  host.calls.push(["randomBytes", len]);
  return Uint8Array.from({ length: len }, (_, index) => index + 1);
}
export function sleepMs(durationMs: bigint): void {
  host.calls.push(["sleepMs", durationMs]);
  if (host.cancelSleep) throw componentError({ message: "cancelled by test" });
}
export function awaitSignal(name: string, timeoutMs: bigint | undefined): string | undefined {
  host.calls.push(["awaitSignal", name, timeoutMs]);
  return timeoutMs === undefined ? '{"by":"ada"}' : undefined;
}
export function startActivity(name: string, input: string, options: WireActivityOptions): bigint {
  host.calls.push(["startActivity", name, input, options]);
  const seq = host.nextSeq++;
  host.names.set(seq, name);
  return seq;
}
export function awaitActivity(handle: bigint): string {
  host.calls.push(["awaitActivity", host.names.get(handle)]);
  const outcome = outcomeOf(handle);
  if (outcome.tag === "err") throw componentError(outcome.val);
  return outcome.val;
}
export function awaitAny(handles: BigUint64Array): [bigint, WireResult<string, WireActivityFailure>] {
  const picked = host.awaitAnyPicks.shift() ?? handles[0]!;
  host.calls.push(["awaitAny", [...handles].map((handle) => host.names.get(handle))]);
  return [picked, outcomeOf(picked)];
}
export function callActivity(): string {
  throw new Error("the SDK does not use call-activity");
}
export function startChild(workflowType: string, input: string, workflowId: string | undefined): bigint {
  host.calls.push(["startChild", workflowType, input, workflowId]);
  return host.nextSeq++;
}
export function awaitChild(handle: bigint): string {
  host.calls.push(["awaitChild", handle]);
  throw componentError({ errorType: "OutOfStock", message: "no seats", details: '{"left":0}' });
}
export function patched(changeId: string): boolean {
  host.calls.push(["patched", changeId]);
  return true;
}
export function deprecatePatch(changeId: string): void {
  host.calls.push(["deprecatePatch", changeId]);
}
export function continueAsNew(input: string): void {
  host.calls.push(["continueAsNew", input]);
}
export function upsertSearchAttributes(attributes: string): void {
  host.calls.push(["upsertSearchAttributes", attributes]);
}
export function nextQuery(): WireQueryRequest | undefined {
  host.calls.push(["nextQuery"]);
  return host.queries[0] ?? (host.none as undefined);
}
export function answerQuery(answer: WireResult<string, WireWorkflowError>): void {
  host.calls.push(["answerQuery", answer]);
  if (host.queries.shift() === undefined) throw new Error("answerQuery without a query waiting");
  host.answers.push(answer);
}
export function awaitUpdate(names: string[], timeoutMs: bigint | undefined): WireUpdateRequest | undefined {
  host.calls.push(["awaitUpdate", names, timeoutMs]);
  const outcome = host.updates.shift() ?? "timeout";
  if (outcome === "timeout") return host.none as undefined;
  if ("cancelled" in outcome) throw componentError({ message: outcome.cancelled });
  return outcome;
}
export function completeUpdate(updateId: string, result: WireResult<string, WireWorkflowError>): void {
  host.calls.push(["completeUpdate", updateId, result]);
}
export function info(): WireWorkflowInfo {
  host.calls.push(["info"]);
  return { workflowId: "w-1", runId: "r-1", workflowType: "test", tenant: "default" };
}
export function log(level: WireLogLevel, message: string): void {
  host.calls.push(["log", level, message]);
}
