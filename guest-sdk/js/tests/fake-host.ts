// A scripted stand-in for the host's `reprise:workflow/durable` interface,
// for the SDK's unit tests in Node (tests/unit.test.ts): records every call
// and answers from a script, throwing `err`s the way componentize-js does
// (an Error whose `payload` is the WIT error).

import type {
  WireActivityFailure,
  WireActivityOptions,
  WireLogLevel,
  WireResult,
  WireWorkflowInfo,
} from "reprise:workflow/durable@0.1.0";

export type Call = [string, ...unknown[]];

export const host = {
  calls: [] as Call[],
  /** Activity outcomes by name, in call order; default: `null` output. */
  activityOutcomes: new Map<string, WireResult<string, WireActivityFailure>[]>(),
  /** Which handle `awaitAny` answers (default: the first asked for). */
  awaitAnyPicks: [] as bigint[],
  cancelSleep: false,
  nextSeq: 1n,
  reset(): void {
    this.calls = [];
    this.activityOutcomes = new Map();
    this.awaitAnyPicks = [];
    this.cancelSleep = false;
    this.nextSeq = 1n;
    this.names = new Map();
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
export function info(): WireWorkflowInfo {
  host.calls.push(["info"]);
  return { workflowId: "w-1", runId: "r-1", workflowType: "test", tenant: "default" };
}
export function log(level: WireLogLevel, message: string): void {
  host.calls.push(["log", level, message]);
}
