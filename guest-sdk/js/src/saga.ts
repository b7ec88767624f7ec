// Compensations, registered as steps succeed, run in reverse when the
// workflow has to undo its work — the Rust SDK's `Saga`, step for step.

import { ActivityCall } from "./context.js";
import { ActivityError, ActivityFailure, WorkflowError, describeReason } from "./errors.js";
import { encodeJson } from "./json.js";
import type { RetryPolicy } from "./options.js";

/** A compensation without a retry policy of its own retries until it
 * succeeds: from 1 s, capped at 60 s. */
export const COMPENSATION_RETRY: RetryPolicy = Object.freeze({ initialIntervalMs: 1000, maximumIntervalMs: 60_000 });

/**
 * How compensating went: `compensated` (steps undone, in the order their
 * compensations finished), `failed` (`[step, message]` pairs whose
 * compensation failed for good), `skipped` (not compensated because an
 * earlier one failed and the saga stops on failure).
 */
export class CompensationReport {
  readonly compensated: string[] = [];
  readonly failed: [string, string][] = [];
  readonly skipped: string[] = [];

  get isComplete(): boolean {
    return this.failed.length === 0 && this.skipped.length === 0;
  }

  /** The report as JSON-able data (the Rust SDK's serialization). */
  toJSON(): { compensated: string[]; failed: [string, string][]; skipped: string[] } {
    return {
      compensated: [...this.compensated],
      failed: this.failed.map(([step, message]) => [step, message] as [string, string]),
      skipped: [...this.skipped],
    };
  }

  /** `original` (the error that made the saga undo) with this report in its
   * message and details: throw it to fail the workflow. */
  intoError(original: unknown): WorkflowError {
    if (!(original instanceof WorkflowError)) {
      throw new TypeError(
        `intoError takes the WorkflowError (or ActivityFailure) that made the saga compensate; got ${String(original)}`,
      );
    }
    const summary = this.isComplete
      ? `compensated: ${this.compensated.join(", ")}`
      : `compensated: ${this.compensated.join(", ")}; compensation failed: ${this.failed.map(([step]) => step).join(", ")}; skipped: ${this.skipped.join(", ")}`;
    // The original error type as it is, even one the host made.
    return WorkflowError.fromWire(original.errorType, `${original.message} (${summary})`, encodeJson(this.toJSON(), "the compensation report"));
  }
}

/** Options of a `Saga`. */
export interface SagaOptions {
  /** Go on with the remaining compensations after one fails for good, reporting every failure (default true). */
  readonly continueOnFailure?: boolean;
  /** Start every compensation at once (when they are independent; default false). */
  readonly parallel?: boolean;
}

/**
 * Compensations, registered as steps succeed, run in reverse when the
 * workflow has to undo its work. Each compensation is an activity call,
 * journaled like any other, marked with `compensates`: after a crash in
 * the middle of compensating, replay skips the ones that finished and
 * re-runs an interrupted one with the same idempotency key.
 *
 * ```ts
 * const saga = new Saga();
 * try {
 *   await saga.step("reserve", ctx.activity("reserve").input(trip),
 *     (hold) => ctx.activity("release").input(hold));
 *   await ctx.activity("charge").input(trip).call();
 * } catch (error) {
 *   throw (await saga.compensate()).intoError(error);
 * }
 * ```
 */
export class Saga {
  readonly continueOnFailure: boolean;
  readonly parallel: boolean;
  #compensations: [string, ActivityCall][] = [];

  constructor(options: SagaOptions = {}) {
    const { continueOnFailure = true, parallel = false } = options;
    if (typeof continueOnFailure !== "boolean" || typeof parallel !== "boolean") {
      throw new TypeError(`Saga's continueOnFailure and parallel are booleans; got ${String(continueOnFailure)} and ${String(parallel)}`);
    }
    this.continueOnFailure = continueOnFailure;
    this.parallel = parallel;
  }

  /** The steps with a registered compensation, in registration order. */
  get steps(): string[] {
    return this.#compensations.map(([step]) => step);
  }

  /**
   * Runs forward step `step` (an `ActivityCall`) and, once it has taken
   * effect, registers the compensation `compensation(output)` builds.
   * Resolves to the step's output.
   *
   * If the workflow is cancelled while the step is in flight, the saga
   * first learns the step's own outcome: a step that took effect is
   * compensated like the others (once), one that did not is not. The step
   * then rejects with the cancellation, saying which it was.
   */
  async step<T = unknown>(step: string, call: ActivityCall, compensation: (output: T) => ActivityCall): Promise<T> {
    if (!(call instanceof ActivityCall)) {
      throw new TypeError(`Saga.step's call is an ActivityCall (ctx.activity(...)); got ${String(call)}`);
    }
    if (typeof compensation !== "function") {
      throw new TypeError(
        `Saga.step's compensation is a function from the step's output to an ActivityCall, e.g. (hold) => ctx.activity("release").input(hold)`,
      );
    }
    const handle = call.start<T>();
    let cancelled: ActivityFailure;
    try {
      const output = await handle.result();
      this.addCompensation(step, compensation(output));
      return output;
    } catch (error) {
      if (!(error instanceof ActivityFailure) || !error.isCancelled) throw error;
      cancelled = error;
    }
    let attempts: number;
    let what: string;
    try {
      const output = await handle.settle();
      this.addCompensation(step, compensation(output));
      attempts = 0;
      what = "it took effect and is compensated";
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      attempts = error.attempts;
      what = `it did not take effect (${describeReason(error.reason)} after ${error.attempts} attempt(s))`;
    }
    const last = cancelled.lastError;
    throw new ActivityFailure(
      "cancelled",
      attempts,
      new ActivityError(last.errorType, `${last.message} while step \`${step}\` was in flight; ${what}`, {
        nonRetryable: last.nonRetryable,
        ...(last.detailsJson() === undefined ? {} : { detailsJson: last.detailsJson()! }),
      }),
    );
  }

  /** Registers the compensation of `step`, to run if the saga has to undo.
   * Without a retry policy of its own, it retries until it succeeds
   * (`COMPENSATION_RETRY`). */
  addCompensation(step: string, call: ActivityCall): void {
    if (typeof step !== "string" || step === "") throw new TypeError(`a saga step name is a non-empty string; got ${String(step)}`);
    if (!(call instanceof ActivityCall)) {
      throw new TypeError(`the compensation of \`${step}\` is an ActivityCall (ctx.activity(...)); got ${String(call)}`);
    }
    let compensation = call.compensates(step);
    if (!compensation.hasRetryPolicy) compensation = compensation.retry(COMPENSATION_RETRY);
    this.#compensations.push([step, compensation]);
  }

  /** Runs the registered compensations, most recent first. */
  async compensate(): Promise<CompensationReport> {
    const report = new CompensationReport();
    const reversed = [...this.#compensations].reverse();
    this.#compensations = [];
    if (this.parallel) {
      const started = reversed.map(([step, call]) => [step, call.start()] as const);
      for (const [step, handle] of started) {
        try {
          await handle.result();
          report.compensated.push(step);
        } catch (error) {
          if (!(error instanceof ActivityFailure)) throw error;
          report.failed.push([step, error.lastError.message]);
        }
      }
      return report;
    }
    let stopped = false;
    for (const [step, call] of reversed) {
      if (stopped) {
        report.skipped.push(step);
        continue;
      }
      try {
        await call.call();
        report.compensated.push(step);
      } catch (error) {
        if (!(error instanceof ActivityFailure)) throw error;
        report.failed.push([step, error.lastError.message]);
        stopped = !this.continueOnFailure;
      }
    }
    return report;
  }
}
