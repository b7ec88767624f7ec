// The errors a workflow sees and throws. Mirrors the Rust and Python SDKs:
// `WorkflowError` fails the execution with a machine-readable `errorType`;
// an activity that fails for good throws `ActivityFailure` (a
// `WorkflowError` too, so letting it through fails the workflow with the
// activity's last error, as `?` does in Rust); a cancellation delivered to
// a blocking call throws `Cancelled`, which, let through, ends the
// execution as cancelled.

import type { WireActivityFailure, WireWorkflowError } from "reprise:workflow/durable@0.1.0";
import { decodeDetails, encodeJson } from "./json.js";

/** Why an activity call failed for good (the WIT's `failure-reason`). */
export type FailureReason =
  | "non-retryable"
  | "attempts-exhausted"
  | "timed-out"
  | "unknown-activity"
  | "cancelled";

const REASON_TEXT: Record<FailureReason, string> = {
  "non-retryable": "non-retryable error",
  "attempts-exhausted": "attempts exhausted",
  "timed-out": "timed out",
  "unknown-activity": "unknown activity",
  cancelled: "cancelled",
};

/** The reason in words ("attempts exhausted"), as error messages say it. */
export function describeReason(reason: FailureReason): string {
  return REASON_TEXT[reason];
}

/** The error type of a cancellation, as histories and the Rust SDK name it. */
export const CANCELLED_ERROR_TYPE = "Cancelled";

function requireErrorType(errorType: unknown, what: string): string {
  if (typeof errorType !== "string" || errorType === "") {
    throw new TypeError(
      `${what}'s errorType is a non-empty string naming the error (e.g. "OutOfStock"); got ${String(errorType)}`,
    );
  }
  return errorType;
}

/**
 * Throw it to fail the workflow: `throw new WorkflowError("OutOfStock", "no seats left")`.
 * `details` is any JSON-able value, recorded with the failure.
 */
export class WorkflowError extends Error {
  readonly errorType: string;
  readonly details: unknown;
  /** The details as the wire carried them, passed on byte for byte. */
  #detailsJson: string | undefined;

  constructor(errorType: string, message: string, details?: unknown) {
    super(message);
    this.name = "WorkflowError";
    this.errorType = requireErrorType(errorType, "WorkflowError");
    this.details = details;
    // Checked here, where the error is thrown, not when it is sent.
    this.#detailsJson = details === undefined ? undefined : encodeDetails(details, `the details of WorkflowError ${errorType}`);
  }

  /** The details as JSON text, or undefined. */
  detailsJson(): string | undefined {
    return this.#detailsJson;
  }

  /** As the host sent it (a child's error): kept byte for byte, unchecked. */
  static fromWire(errorType: string, message: string, detailsJson: string | undefined): WorkflowError {
    const error = errorType === CANCELLED_ERROR_TYPE ? new Cancelled(message) : new WorkflowError(errorType, message);
    error.setWireDetails(detailsJson);
    return error;
  }

  /** Details as the wire carried them: kept as text, parsed for `details`. */
  protected setWireDetails(detailsJson: string | undefined): void {
    (this as { details: unknown }).details = decodeDetails(detailsJson);
    this.#detailsJson = detailsJson;
  }
}

/**
 * The workflow was cancelled while it waited (sleep, signal, activity,
 * child). Delivered once, to the blocking call it interrupted: later calls
 * (a saga's compensations) run normally. Let it through to end as cancelled.
 */
export class Cancelled extends WorkflowError {
  constructor(message = "the workflow was cancelled") {
    super(CANCELLED_ERROR_TYPE, message);
    this.name = "Cancelled";
  }
}

/** The error of one activity attempt (the WIT's `activity-error`): an `ActivityFailure`'s `lastError`. */
export class ActivityError extends Error {
  readonly errorType: string;
  readonly details: unknown;
  readonly nonRetryable: boolean;
  readonly #detailsJson: string | undefined;

  constructor(errorType: string, message: string, options: { details?: unknown; nonRetryable?: boolean; detailsJson?: string } = {}) {
    super(message);
    this.name = "ActivityError";
    this.errorType = requireErrorType(errorType, "ActivityError");
    this.nonRetryable = options.nonRetryable ?? false;
    if (options.detailsJson !== undefined) {
      this.#detailsJson = options.detailsJson;
      this.details = decodeDetails(options.detailsJson);
    } else {
      this.details = options.details;
      this.#detailsJson =
        options.details === undefined ? undefined : encodeDetails(options.details, `the details of ActivityError ${errorType}`);
    }
  }

  detailsJson(): string | undefined {
    return this.#detailsJson;
  }
}

/**
 * An activity call failed for good: `reason`, `attempts` and `lastError`.
 * A `WorkflowError` whose type is the last error's: not caught, it fails
 * the workflow with that error, saying why the activity gave up.
 */
export class ActivityFailure extends WorkflowError {
  readonly reason: FailureReason;
  readonly attempts: number;
  readonly lastError: ActivityError;

  constructor(reason: FailureReason, attempts: number, lastError: ActivityError) {
    // A cancellation is not the activity giving up: say what it is.
    const message =
      reason === "cancelled"
        ? lastError.message
        : `${lastError.message} (activity gave up: ${describeReason(reason)} after ${attempts} attempt(s))`;
    super(lastError.errorType, message);
    this.name = "ActivityFailure";
    this.setWireDetails(lastError.detailsJson());
    this.reason = reason;
    this.attempts = attempts;
    this.lastError = lastError;
  }

  /** True when a cancellation of the workflow, not the activity, ended the wait. */
  get isCancelled(): boolean {
    return this.reason === "cancelled";
  }
}

/** @internal */
export function activityFailureFromWire(failure: WireActivityFailure): ActivityFailure {
  const error = failure.lastError;
  const lastError = new ActivityError(error.errorType, error.message, {
    nonRetryable: error.nonRetryable,
    ...(error.details === undefined ? {} : { detailsJson: error.details }),
  });
  return new ActivityFailure(failure.reason, failure.attempts, lastError);
}

/** @internal The error as the host takes it (the WIT's `workflow-error`). */
export function workflowErrorToWire(error: WorkflowError): WireWorkflowError {
  return { errorType: error.errorType, message: error.message, details: error.detailsJson() };
}

/** @internal Mirrors the Rust SDK: an output that does not decode fails the call for good, without retry. */
export function serializationFailure(message: string): ActivityFailure {
  return new ActivityFailure("non-retryable", 0, new ActivityError("SerializationError", message, { nonRetryable: true }));
}

function encodeDetails(details: unknown, what: string): string {
  // Text details are carried as a JSON string, so they always parse.
  return encodeJson(details, what);
}
