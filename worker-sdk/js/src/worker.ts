import { ActivityError, TaskClosedError, WorkerError } from "./errors.js";

/** The longest wait the runtime grants one poll (worker::POLL_WAIT_MAX). */
export const POLL_WAIT_MS_MAX = 60_000;
/** A stack in an error's details is cut to this many characters, so a deep
 * one does not push the report past the runtime's payload limit. */
const STACK_CHARS_MAX = 8_000;
/** Backoff between polls (and report retries) while the API is unreachable. */
const RECONNECT_DELAY_MS_MIN = 100;
const RECONNECT_DELAY_MS_MAX = 5_000;
/** How long past its start-to-close timeout an outcome is still worth
 * reporting (the runtime may be slow to retire the token). */
const REPORT_GRACE_MS = 5_000;
/** One report (heartbeat, complete, fail) waits at most this long. */
const REPORT_TIMEOUT_MS = 10_000;

/** A task as the runtime hands it out (`POST /v1/activity-tasks/poll`). */
interface Task {
  task_token: string;
  activity: string;
  input: unknown;
  idempotency_key: string;
  attempt: number;
  workflow_id: string;
  run_id: string;
  heartbeat_details?: unknown;
  start_to_close_timeout_ms?: number;
  traceparent?: string;
}

/** What a handler knows about its attempt, and its heartbeat. */
export interface ActivityContext {
  readonly activityName: string;
  /** The same for every attempt of one activity call (and across replays):
   * pass it to whatever must not happen twice. */
  readonly idempotencyKey: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly workflowId: string;
  readonly runId: string;
  readonly taskToken: string;
  /** The attempt's W3C trace context, to pass on to what it calls. */
  readonly traceparent: string;
  readonly startToCloseTimeoutMs: number;
  /** Details of the last heartbeat of an earlier attempt, to resume from;
   * `undefined` on a first attempt. */
  readonly lastHeartbeatDetails: unknown;
  /** Aborted when a heartbeat learns the runtime no longer waits for this
   * attempt: pass it to `fetch` and the like. */
  readonly signal: AbortSignal;
  /**
   * Tells the runtime the attempt is alive, with optional progress
   * `details` (JSON-able) that a retry gets as `lastHeartbeatDetails`.
   * Rejects with {@link TaskClosedError} when the runtime no longer waits
   * for this attempt; when the API cannot be reached it logs and resolves
   * (the runtime's heartbeat timeout decides).
   */
  heartbeat(details?: unknown): Promise<void>;
}

/** Serves one activity: gets the decoded JSON input, returns a JSON-able output. */
export type ActivityHandler = (input: any, ctx: ActivityContext) => unknown;

/** Where log lines go: `console` fits. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface WorkerOptions {
  /** The runtime's task API, e.g. `http://127.0.0.1:7979`. */
  apiUrl: string;
  /** The tenant's API key on a multi-tenant server (default: `REPRISE_API_KEY`). */
  apiKey?: string;
  /** Activity name → handler. */
  activities: Record<string, ActivityHandler>;
  /** Handlers running at once (default 10); the worker polls only with a free slot. */
  maxConcurrent?: number;
  /** How long one poll waits for a task (default 30 000, at most 60 000). */
  pollWaitMs?: number;
  /** Stop gracefully on SIGTERM and SIGINT while `run()` runs (default true). */
  handleSignals?: boolean;
  /** Default: lines with a timestamp on stderr. */
  logger?: Logger;
}

/**
 * Serves activities from the task API: polls, runs each task's handler (at
 * most `maxConcurrent` at once), reports the outcome.
 *
 * ```ts
 * const worker = new Worker({
 *   apiUrl: "http://127.0.0.1:7979",
 *   activities: { charge: async (order, ctx) => ({ chargeId: await charge(order, ctx.idempotencyKey) }) },
 * });
 * await worker.run(); // until SIGTERM/SIGINT or worker.stop()
 * ```
 *
 * To fail, a handler throws {@link ActivityError} / {@link NonRetryableError}
 * (typed) or anything else (retryable, typed by the error's name or class).
 * Stopping ends polling at once (the long poll is aborted), lets the tasks
 * in flight finish and report, then `run()` resolves. A second signal exits
 * at once (those attempts time out and are retried).
 */
export class Worker {
  readonly activities: Record<string, ActivityHandler>;
  readonly maxConcurrent: number;
  readonly pollWaitMs: number;
  private readonly api: TaskApi;
  private readonly handleSignals: boolean;
  private readonly log: Logger;
  private stopping = false;
  private readonly stopped = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private slotFreed: (() => void) | undefined;

  constructor(options: WorkerOptions) {
    const names = Object.keys(options.activities ?? {});
    if (names.length === 0) {
      throw new TypeError("activities must name at least one handler: { charge: async (input, ctx) => ... }");
    }
    for (const name of names) {
      if (typeof options.activities[name] !== "function") {
        throw new TypeError(`the handler for activity "${name}" is not a function`);
      }
    }
    const maxConcurrent = options.maxConcurrent ?? 10;
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
      throw new RangeError(`maxConcurrent must be an integer of at least 1, got ${maxConcurrent}`);
    }
    const pollWaitMs = options.pollWaitMs ?? 30_000;
    if (!Number.isInteger(pollWaitMs) || pollWaitMs < 0 || pollWaitMs > POLL_WAIT_MS_MAX) {
      throw new RangeError(`pollWaitMs must be between 0 and ${POLL_WAIT_MS_MAX}, got ${pollWaitMs}`);
    }
    this.activities = { ...options.activities };
    this.maxConcurrent = maxConcurrent;
    this.pollWaitMs = pollWaitMs;
    this.handleSignals = options.handleSignals ?? true;
    this.log = options.logger ?? stderrLogger;
    this.api = new TaskApi(options.apiUrl, options.apiKey ?? process.env.REPRISE_API_KEY);
  }

  /**
   * Polls and runs tasks until stopped, then waits for the tasks in flight
   * to finish and report. Rejects with {@link WorkerError} if the task API
   * refuses the worker for good (bad key, not a task API).
   */
  async run(): Promise<void> {
    const onSignal = (signal: NodeJS.Signals) => this.onSignal(signal);
    if (this.handleSignals) {
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    }
    this.log.info(
      `polling ${this.api.url} for ${Object.keys(this.activities).sort().join(", ")} (up to ${this.maxConcurrent} at once)`,
    );
    try {
      await this.pollLoop();
    } finally {
      this.stopping = true;
      await Promise.all(this.inFlight);
      if (this.handleSignals) {
        process.off("SIGTERM", onSignal);
        process.off("SIGINT", onSignal);
      }
    }
    this.log.info("stopped");
  }

  /** Stops polling (aborting the poll in flight); `run()` resolves once the
   * tasks in flight have finished and reported. Safe to call more than once. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stopped.abort();
    this.slotFreed?.();
    const count = this.inFlight.size;
    this.log.info(`stopping: no more polls; waiting for ${count} task${count === 1 ? "" : "s"} in flight`);
  }

  private onSignal(signal: NodeJS.Signals): void {
    if (this.stopping) {
      const count = this.inFlight.size;
      this.log.warn(
        `second ${signal}: exiting now without waiting for ${count} task${count === 1 ? "" : "s"} in flight ` +
          "(their attempts time out and are retried)",
      );
      process.exit(signal === "SIGINT" ? 130 : 143);
    }
    this.log.info(`${signal} received`);
    this.stop();
  }

  private async pollLoop(): Promise<void> {
    const names = Object.keys(this.activities).sort();
    let delayMs = RECONNECT_DELAY_MS_MIN;
    let failedPolls = 0;
    while (!this.stopping) {
      // Poll only with a free slot: a task taken without one would wait
      // here while its start-to-close timeout runs.
      while (this.inFlight.size >= this.maxConcurrent && !this.stopping) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
      }
      if (this.stopping) return;
      let answer: Answer;
      try {
        answer = await this.api.post(
          "/v1/activity-tasks/poll",
          { activities: names, wait_ms: this.pollWaitMs },
          // The server answers within wait_ms; the margin covers a busy server.
          AbortSignal.any([this.stopped.signal, AbortSignal.timeout(this.pollWaitMs + 10_000)]),
        );
      } catch (error) {
        if (this.stopping) return;
        failedPolls += 1;
        if (failedPolls === 1) {
          this.log.warn(`task API ${this.api.url} unreachable (${describe(error)}); retrying with backoff`);
        }
        await this.pause(jittered(delayMs));
        delayMs = Math.min(delayMs * 2, RECONNECT_DELAY_MS_MAX);
        continue;
      }
      if (failedPolls > 0) {
        this.log.info(
          `task API ${this.api.url} reachable again after ${failedPolls} failed poll${failedPolls === 1 ? "" : "s"}`,
        );
        failedPolls = 0;
      }
      delayMs = RECONNECT_DELAY_MS_MIN;
      if (answer.status === 204) continue;
      if (answer.status === 200 && isTask(answer.body)) {
        // A task that arrives as the worker stops is run all the same: it
        // is leased to this worker now.
        this.start(answer.body);
        continue;
      }
      this.onPollRefused(answer);
      await this.pause(jittered(delayMs));
    }
  }

  private onPollRefused(answer: Answer): void {
    const problem = errorText(answer);
    if (answer.status === 401 || answer.status === 403) {
      throw new WorkerError(`the task API ${this.api.url} refused the API key: ${problem}`);
    }
    if ([400, 404, 405].includes(answer.status)) {
      throw new WorkerError(
        `the task API ${this.api.url} refused the poll (${answer.status}: ${problem}); ` +
          "is this a Reprise worker API (reprise serve --worker-api)?",
      );
    }
    // 429, 5xx: the server is busy or unwell; try again after a pause.
    this.log.warn(`poll refused with ${answer.status}: ${problem}; retrying`);
  }

  /** Waits `ms`, or less if the worker stops. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.stopped.signal;
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done);
    });
  }

  private start(task: Task): void {
    const running: Promise<void> = this.execute(task)
      .catch((error) => this.log.error(`task ${task.task_token}: unexpected error in the worker: ${describe(error)}`))
      .finally(() => {
        this.inFlight.delete(running);
        const freed = this.slotFreed;
        this.slotFreed = undefined;
        freed?.();
      });
    this.inFlight.add(running);
  }

  private async execute(task: Task): Promise<void> {
    const closed = new AbortController();
    const ctx = new Context(task, this.api, this.log, closed);
    const what = ctx.describe();
    const deadline = Date.now() + ctx.startToCloseTimeoutMs + REPORT_GRACE_MS;
    const handler = Object.hasOwn(this.activities, ctx.activityName) ? this.activities[ctx.activityName] : undefined;
    if (handler === undefined) {
      // Only names it polled for reach it; the runtime sent another.
      await this.reportFailure(ctx, deadline, new ActivityError(
        "UnknownActivity", `this worker serves no activity named "${ctx.activityName}"`,
      ));
      return;
    }
    this.log.info(`${what} (key ${ctx.idempotencyKey}): started`);
    const started = Date.now();
    let output: unknown;
    try {
      output = await handler(task.input, ctx);
    } catch (error) {
      if (error instanceof TaskClosedError || (closed.signal.aborted && isAbort(error))) {
        this.log.warn(`${what}: stopped, the runtime no longer waits for it (${describe(error)})`);
        return;
      }
      if (error instanceof ActivityError) {
        await this.reportFailure(ctx, deadline, error, started);
        return;
      }
      // Any other failure: retryable, named by its class.
      const stack = error instanceof Error && error.stack ? error.stack : String(error);
      const failure = new ActivityError(errorTypeOf(error), error instanceof Error ? error.message : String(error), {
        details: { stack: stack.slice(0, STACK_CHARS_MAX) },
      });
      await this.reportFailure(ctx, deadline, failure, started, stack);
      return;
    }
    let body: string;
    try {
      // A handler that returns nothing completes with null.
      body = JSON.stringify({ output: output === undefined ? null : output });
    } catch (error) {
      await this.reportFailure(ctx, deadline, new ActivityError(
        "InvalidActivityOutput",
        `the handler returned a value that is not JSON: ${describe(error)}`,
        { nonRetryable: true },
      ), started);
      return;
    }
    const answer = await this.report(ctx, deadline, "complete", body);
    if (answer?.status === 400) {
      // Over the payload limit, say: the attempt fails instead.
      await this.reportFailure(ctx, deadline, new ActivityError("InvalidActivityOutput", errorText(answer), {
        nonRetryable: true,
      }), started);
      return;
    }
    if (answer?.status === 200) {
      this.log.info(`${what}: completed in ${Date.now() - started} ms`);
    }
  }

  private async reportFailure(
    ctx: Context,
    deadline: number,
    error: ActivityError,
    started?: number,
    uncaughtStack?: string,
  ): Promise<void> {
    const failure: Record<string, unknown> = {
      error_type: error.errorType,
      message: error.message,
      non_retryable: error.nonRetryable,
    };
    if (error.details !== undefined) failure.details = error.details;
    let body: string;
    try {
      body = JSON.stringify(failure);
    } catch {
      failure.details = { repr: String(error.details).slice(0, STACK_CHARS_MAX) };
      body = JSON.stringify(failure);
    }
    const answer = await this.report(ctx, deadline, "fail", body);
    if (answer?.status === 200) {
      const after = started === undefined ? "" : ` after ${Date.now() - started} ms`;
      // An exception nobody typed is often a bug: show where.
      const where = uncaughtStack ? `\n${uncaughtStack}` : "";
      this.log.info(
        `${ctx.describe()}: failed with ${error.errorType} (${error.nonRetryable ? "non-retryable" : "retryable"})${after}: ${error.message}${where}`,
      );
    } else if (answer?.status === 400) {
      this.log.error(`${ctx.describe()}: failure report refused: ${errorText(answer)}`);
    }
  }

  /** Sends an outcome, retrying while the API is unreachable and the
   * runtime may still wait for it. `undefined` when it never got through. */
  private async report(ctx: Context, deadline: number, route: string, body: string): Promise<Answer | undefined> {
    let delayMs = RECONNECT_DELAY_MS_MIN;
    for (;;) {
      let answer: Answer | undefined;
      let problem: string;
      try {
        answer = await this.api.report(ctx.taskToken, route, body);
        problem = errorText(answer);
      } catch (error) {
        problem = describe(error);
      }
      if (answer && (answer.status === 404 || answer.status === 409)) {
        this.log.warn(`${ctx.describe()}: the runtime refused the outcome: ${problem}`);
        return answer;
      }
      if (answer && answer.status !== 429 && answer.status < 500) return answer;
      if (Date.now() + delayMs >= deadline) {
        this.log.error(`${ctx.describe()}: outcome not reported (${problem}); the attempt times out and is retried`);
        return undefined;
      }
      this.log.warn(`${ctx.describe()}: reporting failed (${problem}); retrying in ${delayMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, jittered(delayMs)));
      delayMs = Math.min(delayMs * 2, RECONNECT_DELAY_MS_MAX);
    }
  }
}

class Context implements ActivityContext {
  readonly activityName: string;
  readonly idempotencyKey: string;
  readonly attempt: number;
  readonly workflowId: string;
  readonly runId: string;
  readonly taskToken: string;
  readonly traceparent: string;
  readonly startToCloseTimeoutMs: number;
  readonly lastHeartbeatDetails: unknown;
  readonly signal: AbortSignal;

  constructor(
    task: Task,
    private readonly api: TaskApi,
    private readonly log: Logger,
    private readonly closed: AbortController,
  ) {
    this.activityName = task.activity;
    this.idempotencyKey = task.idempotency_key;
    this.attempt = task.attempt;
    this.workflowId = task.workflow_id;
    this.runId = task.run_id;
    this.taskToken = task.task_token;
    this.traceparent = task.traceparent ?? "";
    this.startToCloseTimeoutMs = task.start_to_close_timeout_ms ?? 0;
    this.lastHeartbeatDetails = task.heartbeat_details ?? undefined;
    this.signal = closed.signal;
  }

  async heartbeat(details?: unknown): Promise<void> {
    const body = JSON.stringify(details === undefined ? {} : { details });
    let answer: Answer;
    try {
      answer = await this.api.report(this.taskToken, "heartbeat", body);
    } catch (error) {
      this.log.warn(`${this.describe()}: heartbeat not delivered (${describe(error)})`);
      return;
    }
    if (answer.status === 404 || answer.status === 409) {
      const error = new TaskClosedError(`${this.describe()}: ${errorText(answer)}`);
      this.closed.abort(error);
      throw error;
    }
    if (answer.status !== 200) {
      this.log.warn(`${this.describe()}: heartbeat refused: ${errorText(answer)}`);
    }
  }

  describe(): string {
    return `${this.activityName} attempt ${this.attempt} of workflow ${this.workflowId}`;
  }
}

interface Answer {
  status: number;
  body: unknown;
}

/** The runtime's task API over Node's built-in fetch. */
class TaskApi {
  readonly url: string;
  private readonly headers: Record<string, string>;

  constructor(apiUrl: string, apiKey: string | undefined) {
    let parsed: URL;
    try {
      parsed = new URL(apiUrl);
    } catch {
      throw new TypeError(`apiUrl must be http(s)://host[:port], got "${apiUrl}"`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(`apiUrl must be http(s)://host[:port], got "${apiUrl}"`);
    }
    this.url = apiUrl.replace(/\/+$/, "");
    this.headers = { "content-type": "application/json", accept: "application/json" };
    if (apiKey) this.headers.authorization = `Bearer ${apiKey}`;
  }

  async post(path: string, body: unknown, signal: AbortSignal): Promise<Answer> {
    return this.send(path, JSON.stringify(body), signal);
  }

  report(token: string, route: string, body: string): Promise<Answer> {
    const path = `/v1/activity-tasks/${encodeURIComponent(token)}/${route}`;
    return this.send(path, body, AbortSignal.timeout(REPORT_TIMEOUT_MS));
  }

  private async send(path: string, body: string, signal: AbortSignal): Promise<Answer> {
    const response = await fetch(this.url + path, { method: "POST", headers: this.headers, body, signal });
    const text = await response.text();
    if (text === "") return { status: response.status, body: undefined };
    try {
      return { status: response.status, body: JSON.parse(text) };
    } catch {
      return { status: response.status, body: { error: text.slice(0, 500) } };
    }
  }
}

function isTask(body: unknown): body is Task {
  return typeof body === "object" && body !== null && typeof (body as Task).task_token === "string";
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

/** The error's own name when it has one (`TimeoutError`, a DOMException's
 * name), else its class (`class CardDeclined extends Error {}`). */
function errorTypeOf(error: unknown): string {
  if (!(error instanceof Error)) return "Error";
  if (error.name && error.name !== "Error") return error.name;
  return error.constructor?.name || "Error";
}

function errorText(answer: Answer): string {
  const body = answer.body as { error?: unknown } | undefined;
  return typeof body?.error === "string" ? body.error : `HTTP ${answer.status}`;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    // fetch's "fetch failed" hides the reason in `cause`.
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message}: ${cause.message}` : `${error.name}: ${error.message}`;
  }
  return String(error);
}

/** ±20%, so many workers that lost the server do not return in step. */
function jittered(ms: number): number {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

const stderrLogger: Logger = {
  info: (message) => line("INFO", message),
  warn: (message) => line("WARNING", message),
  error: (message) => line("ERROR", message),
};

function line(level: string, message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${level} reprise-worker: ${message}\n`);
}
