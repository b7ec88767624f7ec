// The workflow's handle on the durable host: `Context`, activity and child
// workflow calls.
//
// Every call here is journaled by the host: the first time it runs, its
// outcome is written to the execution's history before the workflow sees
// it; after a crash or an eviction the same call returns the recorded
// outcome.
//
// How the calls meet JavaScript's promises: a call that takes a sequence
// number in the history (starting an activity or a child, a sleep, a
// signal wait, a clock read, a random draw) is made when the code makes it,
// in code order. Waiting for an activity's or a child's result takes no
// sequence number and happens in a microtask, when the code first awaits
// it: `Promise.all([a.call(), b.call()])` starts both before waiting for
// either. The host call blocks the whole workflow while it waits (a
// workflow is one thread), so `Promise.race` waits in argument order; use
// `ctx.awaitAny` for "the first to finish".
//
// Queries and updates: query handlers and update validators are
// registered in memory (`onQuery`, `onUpdateValidator`) and answered
// before each durable call (see `pollQueries` in host.ts); an update is
// received with `awaitUpdate`, which takes a sequence number like a signal
// wait, and answered once with `completeUpdate` or `failUpdate`.

import type {
  WireActivityFailure,
  WireActivityOptions,
  WireResult,
  WireWorkflowError,
} from "reprise:workflow/durable@0.1.0";
import {
  ActivityFailure,
  Cancelled,
  WorkflowError,
  activityFailureFromWire,
  serializationFailure,
  workflowErrorToWire,
} from "./errors.js";
import { durable, errorPayload, hasStringFields } from "./host.js";
import { encodeJson, tryDecodeJson } from "./json.js";
import { describe, durationMs, retryPolicyToWire, type RetryPolicy } from "./options.js";
import { logLine, type LogLevel } from "./logging.js";
import { QueryHandlers, encodeAnswer, updateArgsMismatch, type QueryHandler, type UpdateValidator } from "./queries.js";

/** The host's limit on one `random-bytes` call (see wit/reprise.wit). */
export const RANDOM_BYTES_MAX = 4096;

function requireName(value: unknown, what: string): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${what} is a non-empty string; got ${describe(value)}`);
  }
  return value;
}

function isActivityFailure(value: unknown): value is WireActivityFailure {
  return typeof value === "object" && value !== null && "reason" in value && "lastError" in value;
}

function isWorkflowError(value: unknown): value is WireWorkflowError {
  return hasStringFields(value, "errorType", "message");
}

function isCancelled(value: unknown): value is { message: string } {
  return hasStringFields(value, "message") && !("errorType" in (value as object));
}

function decodeOutput<T>(output: string, what: string): T {
  const decoded = tryDecodeJson(output);
  if (decoded === undefined) throw serializationFailure(`could not decode ${what} ${output}: it is not JSON`);
  return decoded.value as T;
}

/** Identity of the execution: fixed for its whole life, the same in replay. */
export interface WorkflowInfo {
  readonly workflowId: string;
  readonly runId: string;
  readonly workflowType: string;
  readonly tenant: string;
}

interface ActivityOptions {
  readonly retry?: RetryPolicy;
  readonly startToCloseMs?: bigint;
  readonly scheduleToCloseMs?: bigint;
  readonly heartbeatTimeoutMs?: bigint;
  readonly compensates?: string;
  readonly idempotencyKey?: string;
}

/**
 * A call of one activity, being configured. Each setter returns a new
 * call, so a configured call can be reused as a template. Unset options
 * take the runtime's defaults.
 *
 * ```ts
 * const charge = await ctx.activity("charge").input({ cents: 500 })
 *   .retry({ maximumAttempts: 3 }).startToClose(10_000).call<Charge>();
 * ```
 */
export class ActivityCall {
  readonly name: string;
  readonly #inputJson: string;
  readonly #options: ActivityOptions;

  constructor(name: string, inputJson = "null", options: ActivityOptions = {}) {
    this.name = requireName(name, "an activity name");
    this.#inputJson = inputJson;
    this.#options = options;
  }

  #with(changes: ActivityOptions, inputJson = this.#inputJson): ActivityCall {
    return new ActivityCall(this.name, inputJson, { ...this.#options, ...changes });
  }

  /** The input: any JSON-able value. */
  input(value: unknown): ActivityCall {
    return this.#with({}, encodeJson(value, `the input of activity \`${this.name}\``));
  }

  /** How failed attempts are retried (see `RetryPolicy` for the defaults). */
  retry(policy: RetryPolicy): ActivityCall {
    retryPolicyToWire(policy); // Checked here, where the mistake is.
    return this.#with({ retry: policy });
  }

  /** Limit on one attempt, in ms. */
  startToClose(ms: number): ActivityCall {
    return this.#with({ startToCloseMs: durationMs(ms, "startToClose") });
  }

  /** Limit on all attempts together, in ms. */
  scheduleToClose(ms: number): ActivityCall {
    return this.#with({ scheduleToCloseMs: durationMs(ms, "scheduleToClose") });
  }

  /** An attempt that does not heartbeat for this long fails (retryably). */
  heartbeatTimeout(ms: number): ActivityCall {
    return this.#with({ heartbeatTimeoutMs: durationMs(ms, "heartbeatTimeout") });
  }

  /** A key from business ids (e.g. `charge-${orderId}`) instead of the one
   * the runtime derives from workflow id, run id and sequence number. */
  idempotencyKey(key: string): ActivityCall {
    return this.#with({ idempotencyKey: requireName(key, "an idempotency key") });
  }

  /** Marks this call as the compensation of saga step `step` (`Saga` sets
   * it; histories show the chain). */
  compensates(step: string): ActivityCall {
    return this.#with({ compensates: requireName(step, "a saga step name") });
  }

  /** Whether a retry policy was set (a saga gives compensations its own otherwise). */
  get hasRetryPolicy(): boolean {
    return this.#options.retry !== undefined;
  }

  #optionsToWire(): WireActivityOptions {
    const options = this.#options;
    return {
      retry: options.retry === undefined ? undefined : retryPolicyToWire(options.retry),
      startToCloseTimeoutMs: options.startToCloseMs,
      scheduleToCloseTimeoutMs: options.scheduleToCloseMs,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs,
      compensates: options.compensates,
      idempotencyKey: options.idempotencyKey,
    };
  }

  /** Schedules the activity now, without waiting: its handle. */
  start<T = unknown>(): ActivityHandle<T> {
    const seq = durable.startActivity(this.name, this.#inputJson, this.#optionsToWire());
    return new ActivityHandle<T>(this.name, seq);
  }

  /** Schedules the activity now and resolves to its output; rejects with
   * `ActivityFailure` when it fails for good. */
  call<T = unknown>(): Promise<T> {
    return this.start<T>().result();
  }
}

type Settled<T> = { ok: true; output: T } | { ok: false; failure: ActivityFailure };

/** An activity started with `ActivityCall.start()`. */
export class ActivityHandle<T = unknown> {
  readonly name: string;
  /** The handle the host gave (the call's sequence number). */
  readonly seq: bigint;
  #settled: Settled<T> | undefined;

  constructor(name: string, seq: bigint) {
    this.name = name;
    this.seq = seq;
  }

  /** True once the activity's outcome has been seen (by `result` or `ctx.awaitAny`). */
  get done(): boolean {
    return this.#settled !== undefined;
  }

  /** @internal Records the outcome `ctx.awaitAny` got for this handle. */
  settleFrom(outcome: { tag: "ok"; val: string } | { tag: "err"; val: WireActivityFailure }): void {
    this.#settled = this.#outcomeOf(outcome);
  }

  /** Waits (blocking the workflow) and returns the output or throws. */
  waitNow(): T {
    this.#settled ??= this.#waitForOutcome();
    if (this.#settled.ok) return this.#settled.output;
    throw this.#settled.failure;
  }

  #waitForOutcome(): Settled<T> {
    let output: string;
    try {
      output = durable.awaitActivity(this.seq);
    } catch (thrown) {
      const failure = errorPayload(thrown, isActivityFailure);
      if (failure === undefined) throw thrown;
      return this.#outcomeOf({ tag: "err", val: failure });
    }
    return this.#outcomeOf({ tag: "ok", val: output });
  }

  /** The outcome the host gave; throws a cancellation of the workflow,
   * which is not the activity's outcome. */
  #outcomeOf(outcome: { tag: "ok"; val: string } | { tag: "err"; val: WireActivityFailure }): Settled<T> {
    if (outcome.tag === "ok") {
      return { ok: true, output: decodeOutput<T>(outcome.val, `the output of activity \`${this.name}\``) };
    }
    const failure = activityFailureFromWire(outcome.val);
    if (failure.isCancelled) throw failure;
    return { ok: false, failure };
  }

  /** The activity's output, waited for when first awaited; rejects with
   * `ActivityFailure` if it failed for good, or with a `cancelled` one if
   * the workflow is cancelled meanwhile (the call may still be in flight:
   * see `settle`). */
  result(): Promise<T> {
    if (this.#settled !== undefined) {
      return this.#settled.ok ? Promise.resolve(this.#settled.output) : Promise.reject(this.#settled.failure);
    }
    return Promise.resolve().then(() => this.waitNow());
  }

  /** The activity's own outcome, waiting past any cancellation of the
   * workflow: after `result` rejected with a cancelled failure, this tells
   * whether the call took effect (to compensate it) or not. */
  async settle(): Promise<T> {
    for (;;) {
      try {
        return await this.result();
      } catch (error) {
        if (!(error instanceof ActivityFailure) || !error.isCancelled) throw error;
      }
    }
  }
}

function requireHandles(handles: readonly ActivityHandle<unknown>[], what: string): ActivityHandle<unknown>[] {
  if (!Array.isArray(handles) || handles.length === 0) {
    throw new TypeError(`${what} needs a non-empty array of ActivityHandles (from ctx.activity(...).start())`);
  }
  for (const handle of handles) {
    if (!(handle instanceof ActivityHandle)) {
      throw new TypeError(`${what} takes ActivityHandles (from ctx.activity(...).start()); got ${describe(handle)}`);
    }
  }
  return [...handles];
}

/** A child workflow of a registered type, being configured. */
export class ChildCall {
  readonly workflowType: string;
  readonly #inputJson: string;
  readonly #workflowId: string | undefined;

  constructor(workflowType: string, inputJson = "null", workflowId?: string) {
    this.workflowType = requireName(workflowType, "a workflow type");
    this.#inputJson = inputJson;
    this.#workflowId = workflowId;
  }

  /** The child's input: any JSON-able value. */
  input(value: unknown): ChildCall {
    const encoded = encodeJson(value, `the input of child workflow \`${this.workflowType}\``);
    return new ChildCall(this.workflowType, encoded, this.#workflowId);
  }

  /** The child's workflow id (default: "<parent id>/child-<seq>"). */
  id(workflowId: string): ChildCall {
    return new ChildCall(this.workflowType, this.#inputJson, requireName(workflowId, "a child workflow id"));
  }

  /** Starts the child now, without waiting: its handle. */
  start<T = unknown>(): ChildHandle<T> {
    const seq = durable.startChild(this.workflowType, this.#inputJson, this.#workflowId);
    return new ChildHandle<T>(this.workflowType, seq);
  }

  /** Starts the child now and resolves to its result; rejects with its
   * `WorkflowError` (`Cancelled` if the parent was cancelled meanwhile). */
  call<T = unknown>(): Promise<T> {
    return this.start<T>().result();
  }
}

/** A child workflow started with `ChildCall.start()`. Cancelling the parent
 * while it waits cancels the child. */
export class ChildHandle<T = unknown> {
  readonly workflowType: string;
  readonly seq: bigint;

  constructor(workflowType: string, seq: bigint) {
    this.workflowType = workflowType;
    this.seq = seq;
  }

  /** Waits (blocking the workflow) for the child's result. */
  waitNow(): T {
    let output: string;
    try {
      output = durable.awaitChild(this.seq);
    } catch (thrown) {
      const error = errorPayload(thrown, isWorkflowError);
      if (error === undefined) throw thrown;
      throw WorkflowError.fromWire(error.errorType, error.message, error.details);
    }
    const decoded = tryDecodeJson(output);
    if (decoded === undefined) {
      throw new WorkflowError("SerializationError", `could not decode the output of child \`${this.workflowType}\` ${output}`);
    }
    return decoded.value as T;
  }

  /** The child's result, waited for when first awaited. */
  result(): Promise<T> {
    return Promise.resolve().then(() => this.waitNow());
  }
}

/** Options of `ctx.awaitSignal`. */
export interface SignalOptions {
  /** Give up after this many ms (a durable deadline): resolves to undefined. */
  readonly timeoutMs?: number;
}

/** Options of `ctx.awaitUpdate` and `ctx.handleUpdate`. */
export interface UpdateOptions {
  /** Give up after this many ms (a durable deadline): `awaitUpdate`
   * resolves to undefined, `handleUpdate` to false. */
  readonly timeoutMs?: number;
}

function requireFunction(value: unknown, what: string): void {
  if (typeof value !== "function") throw new TypeError(`${what} is a function; got ${describe(value)}`);
}

function requireUpdateNames(names: unknown, what: string): string[] {
  const list = typeof names === "string" ? [names] : names;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TypeError(`${what} takes an update name or a non-empty array of them, e.g. ["deposit", "withdraw"]; got ${describe(names)}`);
  }
  return list.map((name) => requireName(name, `an update name (${what})`));
}

function isCancellation(error: unknown): boolean {
  return error instanceof Cancelled || (error instanceof ActivityFailure && error.isCancelled);
}

/**
 * An update received by `ctx.awaitUpdate`. Its caller waits until the
 * workflow answers it, once: `ctx.completeUpdate(update, value)` or
 * `ctx.failUpdate(update, error)`.
 */
export class Update<A = unknown> {
  /** Unique per execution: the caller's update id, or one the server chose. */
  readonly id: string;
  readonly name: string;
  /** The arguments as the caller sent them: JSON text, byte for byte. */
  readonly argsJson: string;
  #args: { value: A } | undefined;
  #completed = false;

  /** @internal Made by `ctx.awaitUpdate`. */
  constructor(id: string, name: string, argsJson: string) {
    this.id = id;
    this.name = name;
    this.argsJson = argsJson;
  }

  /** The arguments, decoded. Throws a `WorkflowError` ("InvalidUpdateArgs")
   * if they are not JSON: answer the update with it. */
  get args(): A {
    if (this.#args === undefined) {
      const decoded = tryDecodeJson(this.argsJson);
      if (decoded === undefined) {
        throw new WorkflowError("InvalidUpdateArgs", updateArgsMismatch(this.name, this.argsJson, "they are not JSON"));
      }
      this.#args = { value: decoded.value as A };
    }
    return this.#args.value;
  }

  /** True once the update has been answered. */
  get completed(): boolean {
    return this.#completed;
  }

  /** @internal Marks it answered; throws if it was answered before. */
  markCompleted(what: string): void {
    if (this.#completed) {
      throw new Error(`${what}: update \`${this.name}\` (${this.id}) was answered before; each update is answered once`);
    }
    this.#completed = true;
  }
}

function requireUpdate(update: unknown, what: string): Update<unknown> {
  if (!(update instanceof Update)) {
    throw new TypeError(`${what} takes the Update that ctx.awaitUpdate resolved to; got ${describe(update)}`);
  }
  return update;
}

/**
 * The workflow's handle on the durable host; `workflow()` passes it as the
 * first argument. Every method is journaled.
 *
 * ```ts
 * export const run = workflow(async (ctx, order: Order) => {
 *   const charge = await ctx.activity("charge").input(order).retry({ maximumAttempts: 3 }).call();
 *   await ctx.sleep(1000);
 *   return charge;
 * });
 * ```
 */
export class Context {
  #info: WorkflowInfo | undefined;
  readonly #queries: QueryHandlers;

  /** @internal `workflow()` makes the context, with the handlers it answers queries from. */
  constructor(queries: QueryHandlers = new QueryHandlers()) {
    this.#queries = queries;
  }

  // --- time and randomness ------------------------------------------------

  /** Wall-clock time, recorded the first time and replayed after. */
  now(): Date {
    return new Date(this.nowMs());
  }

  /** `now()` as milliseconds since the Unix epoch. */
  nowMs(): number {
    return Number(durable.nowMs());
  }

  /** `count` random bytes (at most 4096), recorded and replayed. */
  randomBytes(count: number): Uint8Array {
    if (!Number.isInteger(count) || count < 0 || count > RANDOM_BYTES_MAX) {
      throw new RangeError(`randomBytes takes 0 to ${RANDOM_BYTES_MAX} bytes (RANDOM_BYTES_MAX); got ${describe(count)}`);
    }
    return Uint8Array.from(durable.randomBytes(count));
  }

  /** A random bigint in [0, 2^bits), recorded and replayed (bits = 64: a u64, as the Rust SDK's `ctx.random::<u64>()`). */
  randomBigInt(bits = 64): bigint {
    if (!Number.isInteger(bits) || bits < 1 || bits > 8 * RANDOM_BYTES_MAX) {
      throw new RangeError(`randomBigInt takes bits between 1 and ${8 * RANDOM_BYTES_MAX}; got ${describe(bits)}`);
    }
    const bytes = this.randomBytes(Math.ceil(bits / 8));
    let drawn = 0n;
    // Little-endian, as the Rust and Python SDKs read their bytes.
    for (let index = bytes.length - 1; index >= 0; index -= 1) drawn = (drawn << 8n) | BigInt(bytes[index]!);
    return drawn >> BigInt(bytes.length * 8 - bits);
  }

  /** A random number in [0, 1), like `Math.random()`, recorded and replayed. */
  random(): number {
    return Number(this.randomBigInt(53)) / 2 ** 53;
  }

  // --- timers and signals -------------------------------------------------

  /** A durable timer: survives crashes and restarts. Rejects with
   * `Cancelled` if the workflow is cancelled meanwhile. The workflow waits
   * here (the timer starts and ends before the next line runs). */
  sleep(ms: number): Promise<void> {
    const duration = durationMs(ms, "sleep's duration");
    try {
      durable.sleepMs(duration);
    } catch (thrown) {
      const cancelled = errorPayload(thrown, isCancelled);
      if (cancelled === undefined) throw thrown;
      return Promise.reject(new Cancelled(cancelled.message));
    }
    return Promise.resolve();
  }

  /**
   * Waits for the next signal `name` and resolves to its JSON payload,
   * decoded. Signals sent earlier are kept, each delivered once. With
   * `timeoutMs`, gives up after that long (a durable deadline) and
   * resolves to undefined. Rejects with `Cancelled` if the workflow is
   * cancelled meanwhile.
   */
  awaitSignal<T = unknown>(name: string, options: SignalOptions = {}): Promise<T | undefined> {
    requireName(name, "a signal name");
    const timeout = options.timeoutMs === undefined ? undefined : durationMs(options.timeoutMs, "awaitSignal's timeoutMs");
    let payload: string | undefined;
    try {
      payload = durable.awaitSignal(name, timeout);
    } catch (thrown) {
      const cancelled = errorPayload(thrown, isCancelled);
      if (cancelled === undefined) throw thrown;
      return Promise.reject(new Cancelled(cancelled.message));
    }
    if (payload === undefined) return Promise.resolve(undefined);
    const decoded = tryDecodeJson(payload);
    if (decoded === undefined) {
      return Promise.reject(new WorkflowError("SerializationError", `could not decode signal \`${name}\` (${payload}): it is not JSON`));
    }
    return Promise.resolve(decoded.value as T);
  }

  // --- queries and updates ---------------------------------------------------

  /**
   * Answers query `name` with `handler(args)`: args are the query's JSON
   * arguments, decoded; the returned value (any JSON-able value) is the
   * answer. A handler only reads the workflow's state: it is synchronous
   * and makes no durable call, not even `now` (the host fails the query
   * if it does). Throw a `WorkflowError` to
   * answer with that error; anything else thrown is answered as
   * `QueryFailed`. Registering `name` again replaces its handler. Not
   * journaled: register handlers on every run of the code, before the
   * first durable call they should answer at.
   *
   * ```ts
   * ctx.onQuery("balance", () => ({ owner: state.owner, balance: state.balance }));
   * ```
   */
  onQuery<A = unknown>(name: string, handler: QueryHandler<A>): void {
    requireName(name, "a query name");
    requireFunction(handler, `the handler of query \`${name}\``);
    this.#queries.onQuery(name, handler as QueryHandler<never>);
  }

  /**
   * Checks update `name` before it is accepted: `validator(args)` returns
   * to accept it and throws a `WorkflowError` to reject it (the caller
   * gets the error; the history is not touched). Like a query handler it
   * is synchronous and makes no durable call. An update with no validator
   * is accepted. Registering `name` again replaces its validator.
   *
   * ```ts
   * ctx.onUpdateValidator("deposit", (args: { amount: number }) => {
   *   if (args.amount <= 0) throw new WorkflowError("InvalidAmount", `amounts are positive; got ${args.amount}`);
   * });
   * ```
   */
  onUpdateValidator<A = unknown>(name: string, validator: UpdateValidator<A>): void {
    requireName(name, "an update name");
    requireFunction(validator, `the validator of update \`${name}\``);
    this.#queries.onUpdateValidator(name, validator as UpdateValidator<never>);
  }

  /**
   * Waits for the next update named `names` (one name or several), oldest
   * first, each delivered once. With `timeoutMs`, gives up after that long
   * (a durable deadline) and resolves to undefined. Rejects with
   * `Cancelled` if the workflow is cancelled meanwhile. The caller of the
   * update waits until the workflow answers it with `completeUpdate` or
   * `failUpdate`.
   *
   * ```ts
   * const update = await ctx.awaitUpdate<{ amount: number }>(["deposit", "withdraw"]);
   * ```
   */
  awaitUpdate<A = unknown>(names: string | readonly string[], options: UpdateOptions = {}): Promise<Update<A> | undefined> {
    const wanted = requireUpdateNames(names, "awaitUpdate");
    const timeout = options.timeoutMs === undefined ? undefined : durationMs(options.timeoutMs, "awaitUpdate's timeoutMs");
    let request: { updateId: string; name: string; args: string } | undefined;
    try {
      request = durable.awaitUpdate(wanted, timeout);
    } catch (thrown) {
      const cancelled = errorPayload(thrown, isCancelled);
      if (cancelled === undefined) throw thrown;
      return Promise.reject(new Cancelled(cancelled.message));
    }
    if (request === undefined) return Promise.resolve(undefined);
    return Promise.resolve(new Update<A>(request.updateId, request.name, request.args));
  }

  /** Answers `update` with `value` (any JSON-able value; undefined is
   * `null`): its caller gets it once it is durable. A value JSON cannot
   * carry (NaN, …) answers a `SerializationError` instead. Each update is
   * answered once. */
  completeUpdate(update: Update<unknown>, value: unknown): void {
    const target = requireUpdate(update, "completeUpdate");
    if (value instanceof WorkflowError) {
      throw new TypeError(`completeUpdate got a WorkflowError for update \`${target.name}\`: answer with an error by ctx.failUpdate(update, error)`);
    }
    this.#complete(target, encodeAnswer(value, `the answer to update \`${target.name}\``), "completeUpdate");
  }

  /** Answers `update` with `error`: its caller gets the error (type,
   * message, details). Each update is answered once. */
  failUpdate(update: Update<unknown>, error: WorkflowError): void {
    const target = requireUpdate(update, "failUpdate");
    if (!(error instanceof WorkflowError)) {
      throw new TypeError(`failUpdate takes a WorkflowError, e.g. new WorkflowError("InvalidAmount", "..."); got ${describe(error)}`);
    }
    this.#complete(target, { tag: "err", val: workflowErrorToWire(error) }, "failUpdate");
  }

  #complete(update: Update<unknown>, result: WireResult<string, WireWorkflowError>, what: string): void {
    update.markCompleted(what);
    durable.completeUpdate(update.id, result);
  }

  /**
   * Receives one update named `names` (as `awaitUpdate`), runs
   * `handler(args, update)` (synchronous or async; it may make durable
   * calls) and answers the update with what it returns, or with the
   * `WorkflowError` it throws; anything else thrown is answered as
   * `UpdateFailed`, and the workflow goes on. Resolves to true once the
   * update is answered, false on timeout. A cancellation the handler lets
   * through (`Cancelled`, a cancelled `ActivityFailure`) answers the
   * update with it and is then rethrown, so the workflow sees it. If the
   * handler answered the update itself, it is left as it is.
   *
   * ```ts
   * while (await ctx.handleUpdate("rename", (args: { name: string }) => { state.name = args.name; return state; })) {}
   * ```
   */
  async handleUpdate<A = unknown, R = unknown>(
    names: string | readonly string[],
    handler: (args: A, update: Update<A>) => R | Promise<R>,
    options: UpdateOptions = {},
  ): Promise<boolean> {
    requireFunction(handler, "handleUpdate's handler");
    const update = await this.awaitUpdate<A>(names, options);
    if (update === undefined) return false;
    let value: unknown;
    try {
      value = await handler(update.args, update);
      if (value instanceof WorkflowError) throw value;
    } catch (error) {
      if (update.completed) throw error;
      const answer = error instanceof WorkflowError ? error : new WorkflowError("UpdateFailed", error instanceof Error ? error.message : String(error));
      this.failUpdate(update, answer);
      if (isCancellation(error)) throw error;
      return true;
    }
    if (!update.completed) this.#complete(update, encodeAnswer(value, `the answer to update \`${update.name}\``), "handleUpdate");
    return true;
  }

  // --- activities ---------------------------------------------------------

  /** Starts building a call of activity `name` (see `ActivityCall`). */
  activity(name: string): ActivityCall {
    return new ActivityCall(name);
  }

  /**
   * Waits for the first of `handles` to complete — first in the history,
   * so live and replay agree — and resolves to that handle; its `result()`
   * then answers at once (output, or its `ActivityFailure`). Rejects with a
   * cancelled `ActivityFailure` if the workflow is cancelled.
   */
  awaitAny<T>(handles: readonly ActivityHandle<T>[]): Promise<ActivityHandle<T>> {
    const pending = requireHandles(handles, "awaitAny") as ActivityHandle<T>[];
    for (const handle of pending) {
      if (handle.done) {
        throw new TypeError(`awaitAny got the handle of \`${handle.name}\` (seq ${handle.seq}), which completed before: pass only pending handles`);
      }
    }
    return Promise.resolve().then(() => {
      const [seq, outcome] = durable.awaitAny(BigUint64Array.from(pending.map((handle) => handle.seq)));
      const first = pending.find((handle) => handle.seq === seq);
      if (first === undefined) throw new Error(`the host answered awaitAny with seq ${seq}, which was not asked for`);
      first.settleFrom(outcome);
      return first;
    });
  }

  /** Waits until `n` of `handles` completed; resolves to those handles in
   * the order the history observed them (all, if fewer than `n`). */
  async awaitFirstN<T>(handles: readonly ActivityHandle<T>[], n: number): Promise<ActivityHandle<T>[]> {
    const pending = requireHandles(handles, "awaitFirstN") as ActivityHandle<T>[];
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`awaitFirstN's n is an integer >= 0; got ${describe(n)}`);
    const finished: ActivityHandle<T>[] = [];
    while (finished.length < n && pending.length > 0) {
      const first = await this.awaitAny(pending);
      pending.splice(pending.indexOf(first), 1);
      finished.push(first);
    }
    return finished;
  }

  /** Waits for every handle in order and resolves to their outputs; rejects
   * with the first `ActivityFailure` in handle order. */
  awaitAll<T>(handles: readonly ActivityHandle<T>[]): Promise<T[]> {
    return Promise.all(requireHandles(handles, "awaitAll").map((handle) => handle.result() as Promise<T>));
  }

  // --- child workflows ------------------------------------------------------

  /** Starts building a child workflow of a registered type (see `ChildCall`). */
  child(workflowType: string): ChildCall {
    return new ChildCall(workflowType);
  }

  // --- versioning and long life ---------------------------------------------

  /**
   * Whether this execution takes the path introduced by change `changeId`:
   * true live (a marker is recorded), false when replaying a history
   * recorded by code from before the change.
   *
   * ```ts
   * if (ctx.patched("send-receipt")) await ctx.activity("email-receipt").input(order).call();
   * ```
   */
  patched(changeId: string): boolean {
    return durable.patched(requireName(changeId, "a change id"));
  }

  /** The step after `patched` once no execution can take the old path:
   * records the marker without branching. */
  deprecatePatch(changeId: string): void {
    durable.deprecatePatch(requireName(changeId, "a change id"));
  }

  /** Ends this run and starts a fresh run of the same workflow id with
   * `input` and an empty history. Does not return. */
  continueAsNew(input: unknown): never {
    durable.continueAsNew(encodeJson(input, "the input of continueAsNew"));
    throw new Error("continueAsNew returned: the host did not stop the run (a host without continue-as-new?)");
  }

  /**
   * Sets search attributes of this run, which execution lists filter on
   * (`GET /v1/executions?search_attribute=name=value`): names of letters,
   * digits, `_` and `-` to strings, numbers or booleans; `null` removes a
   * name. A continued run starts with them.
   *
   * ```ts
   * ctx.upsertSearchAttributes({ customer: order.customer, priority: 2 });
   * ```
   */
  upsertSearchAttributes(attributes: Readonly<Record<string, string | number | boolean | null>>): void {
    if (typeof attributes !== "object" || attributes === null || Array.isArray(attributes)) {
      throw new TypeError(`upsertSearchAttributes takes an object of names to values, e.g. { customer: "acme" }; got ${describe(attributes)}`);
    }
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
        throw new TypeError(`search attribute \`${name}\` is a string, number, boolean or null (to remove it); got ${describe(value)}`);
      }
    }
    durable.upsertSearchAttributes(encodeJson(attributes, "the search attributes"));
  }

  // --- identity and logs ----------------------------------------------------

  /** The execution's identity. */
  info(): WorkflowInfo {
    if (this.#info === undefined) {
      const { workflowId, runId, workflowType, tenant } = durable.info();
      this.#info = Object.freeze({ workflowId, runId, workflowType, tenant });
    }
    return this.#info;
  }

  /** A log line tied to this execution; silent while replaying. `console.*`
   * calls arrive here too. */
  log(level: LogLevel, message: string): void {
    logLine(level, message);
  }
}
