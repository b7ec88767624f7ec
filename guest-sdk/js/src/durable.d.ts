// The host's `reprise:workflow/durable` interface (wit/reprise.wit) as
// componentize-js presents it to JavaScript: u64 as bigint, `option<T>` as
// `T | undefined`, records with camelCase fields, enums as their WIT names,
// a `result` return as the value (its `err` thrown: see `errorPayload` in
// host.ts), a `result` anywhere else (inside a tuple, or a parameter) as
// `{ tag: "ok", val } | { tag: "err", val }`.
// Only src/host.ts imports it; the public types are the SDK's own.
declare module "reprise:workflow/durable@0.1.0" {
  export type WireFailureReason =
    | "non-retryable"
    | "attempts-exhausted"
    | "timed-out"
    | "unknown-activity"
    | "cancelled";
  export type WireLogLevel = "trace" | "debug" | "info" | "warn" | "error";
  export interface WireRetryPolicy {
    initialIntervalMs: bigint;
    backoffCoefficient: number;
    maximumIntervalMs: bigint;
    maximumAttempts: number;
    nonRetryableErrorTypes: string[];
  }
  export interface WireActivityOptions {
    retry: WireRetryPolicy | undefined;
    startToCloseTimeoutMs: bigint | undefined;
    scheduleToCloseTimeoutMs: bigint | undefined;
    heartbeatTimeoutMs: bigint | undefined;
    compensates: string | undefined;
    idempotencyKey: string | undefined;
  }
  export interface WireActivityError {
    errorType: string;
    message: string;
    details: string | undefined;
    nonRetryable: boolean;
  }
  export interface WireActivityFailure {
    reason: WireFailureReason;
    attempts: number;
    lastError: WireActivityError;
  }
  export interface WireWorkflowError {
    errorType: string;
    message: string;
    details: string | undefined;
  }
  export interface WireCancelled {
    message: string;
  }
  export interface WireWorkflowInfo {
    workflowId: string;
    runId: string;
    workflowType: string;
    tenant: string;
  }
  export type WireResult<T, E> = { tag: "ok"; val: T } | { tag: "err"; val: E };
  export type WireQueryKind = "query" | "validate-update";
  export interface WireQueryRequest {
    kind: WireQueryKind;
    name: string;
    args: string;
  }
  export interface WireUpdateRequest {
    updateId: string;
    name: string;
    args: string;
  }

  export function nowMs(): bigint;
  export function randomBytes(len: number): Uint8Array;
  export function sleepMs(durationMs: bigint): void;
  export function awaitSignal(name: string, timeoutMs: bigint | undefined): string | undefined;
  export function startActivity(name: string, input: string, options: WireActivityOptions): bigint;
  export function awaitActivity(handle: bigint): string;
  export function awaitAny(
    handles: BigUint64Array,
  ): [bigint, WireResult<string, WireActivityFailure>];
  export function callActivity(name: string, input: string, options: WireActivityOptions): string;
  export function startChild(
    workflowType: string,
    input: string,
    workflowId: string | undefined,
  ): bigint;
  export function awaitChild(handle: bigint): string;
  export function patched(changeId: string): boolean;
  export function deprecatePatch(changeId: string): void;
  export function continueAsNew(input: string): void;
  export function upsertSearchAttributes(attributes: string): void;
  export function nextQuery(): WireQueryRequest | undefined;
  export function answerQuery(answer: WireResult<string, WireWorkflowError>): void;
  export function awaitUpdate(names: string[], timeoutMs: bigint | undefined): WireUpdateRequest | undefined;
  export function completeUpdate(updateId: string, result: WireResult<string, WireWorkflowError>): void;
  export function info(): WireWorkflowInfo;
  export function log(level: WireLogLevel, message: string): void;
}
