/** Options of an {@link ActivityError}. */
export interface ActivityErrorOptions {
  /** Any JSON-able value, journaled with the failure. */
  details?: unknown;
  /** Ends the activity at once, whatever the workflow's retry policy. */
  nonRetryable?: boolean;
}

/**
 * Fails the attempt with a typed error the workflow sees.
 *
 * `errorType` is what retry policies match (`nonRetryable("CardDeclined")`)
 * and what the history shows. A retryable error (the default) lets the
 * workflow's retry policy decide.
 *
 * Anything else a handler throws fails the attempt as retryable, typed by
 * the error's name or class (`TypeError`, `TimeoutError`, ...).
 */
export class ActivityError extends Error {
  readonly errorType: string;
  readonly details: unknown;
  readonly nonRetryable: boolean;

  constructor(errorType: string, message: string, options: ActivityErrorOptions = {}) {
    super(message);
    // Stack traces then read "CardDeclined: do not honour".
    this.name = errorType;
    this.errorType = errorType;
    this.details = options.details;
    this.nonRetryable = options.nonRetryable ?? false;
  }
}

/** An {@link ActivityError} no retry can fix (a declined card, bad input). */
export class NonRetryableError extends ActivityError {
  constructor(errorType: string, message: string, details?: unknown) {
    super(errorType, message, { details, nonRetryable: true });
  }
}

/**
 * The runtime no longer waits for this attempt: it timed out (its retry
 * runs under a new token), or the workflow stopped waiting for it. Thrown
 * by `ctx.heartbeat()`; whatever the handler returned would be refused.
 */
export class TaskClosedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TaskClosedError";
  }
}

/** A problem no retry fixes: a refused API key, a URL that is not a task API. */
export class WorkerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorkerError";
  }
}
