// Retry policies and durations, with the runtime's defaults.

import type { WireRetryPolicy } from "reprise:workflow/durable@0.1.0";

const U32_MAX = 2 ** 32 - 1;

/**
 * How a failed activity attempt is retried. Every field is optional; the
 * defaults are the runtime's: 1000 ms before the first retry, the delay
 * multiplied by 2 after each, capped at 100 × the initial interval,
 * unlimited attempts (0). Error types in `nonRetryableErrorTypes` fail the
 * call at once.
 *
 * ```ts
 * ctx.activity("charge").retry({ initialIntervalMs: 200, maximumAttempts: 3, nonRetryableErrorTypes: ["CardDeclined"] })
 * ```
 */
export interface RetryPolicy {
  /** Delay before the first retry, in ms (default 1000). */
  readonly initialIntervalMs?: number;
  /** Multiplier applied to the delay after each retry (default 2, at least 1). */
  readonly backoffCoefficient?: number;
  /** Upper bound on the delay, in ms (default: 100 × the initial interval). */
  readonly maximumIntervalMs?: number;
  /** Attempts in all, the first included; 0 means unlimited (default 0). */
  readonly maximumAttempts?: number;
  /** Error types that fail the call at once, without retry. */
  readonly nonRetryableErrorTypes?: readonly string[];
}

/** Whole milliseconds as the WIT's u64, or a TypeError/RangeError saying what to pass. */
export function durationMs(value: unknown, what: string): bigint {
  if (typeof value === "bigint") {
    if (value < 0n || value >= 2n ** 64n) throw new RangeError(`${what} is between 0 and 2^64-1 ms; got ${value}`);
    return value;
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${what} is a number of milliseconds, e.g. 5000; got ${describe(value)}`);
  }
  if (value < 0) throw new RangeError(`${what} must not be negative; got ${value} ms`);
  // Rounded down, as the Rust SDK's `as_millis`.
  return BigInt(Math.floor(value));
}

function count(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new RangeError(`${what} is an integer between 0 and ${U32_MAX}; got ${describe(value)}`);
  }
  return value;
}

export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "object" && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/** @internal The policy as the host takes it, checked field by field. */
export function retryPolicyToWire(policy: RetryPolicy): WireRetryPolicy {
  if (typeof policy !== "object" || policy === null) {
    throw new TypeError(`retry() takes a RetryPolicy object, e.g. { maximumAttempts: 3 }; got ${describe(policy)}`);
  }
  const known = new Set(["initialIntervalMs", "backoffCoefficient", "maximumIntervalMs", "maximumAttempts", "nonRetryableErrorTypes"]);
  for (const key of Object.keys(policy)) {
    if (!known.has(key)) {
      throw new TypeError(`RetryPolicy has no field \`${key}\`; its fields are ${[...known].join(", ")}`);
    }
  }
  const backoffCoefficient = policy.backoffCoefficient ?? 2;
  if (typeof backoffCoefficient !== "number" || !(backoffCoefficient >= 1) || !Number.isFinite(backoffCoefficient)) {
    throw new RangeError(`RetryPolicy's backoffCoefficient is a number >= 1 (e.g. 2); got ${describe(backoffCoefficient)}`);
  }
  const nonRetryable = policy.nonRetryableErrorTypes ?? [];
  if (!Array.isArray(nonRetryable) || !nonRetryable.every((name) => typeof name === "string")) {
    throw new TypeError(
      `RetryPolicy's nonRetryableErrorTypes is a list of error type names, e.g. ["CardDeclined"]; got ${describe(nonRetryable)}`,
    );
  }
  return {
    initialIntervalMs: durationMs(policy.initialIntervalMs ?? 1000, "RetryPolicy's initialIntervalMs"),
    backoffCoefficient,
    // 0: the host uses 100 × the initial interval.
    maximumIntervalMs:
      policy.maximumIntervalMs === undefined ? 0n : durationMs(policy.maximumIntervalMs, "RetryPolicy's maximumIntervalMs"),
    maximumAttempts: count(policy.maximumAttempts ?? 0, "RetryPolicy's maximumAttempts (attempts in all, 0 for unlimited)"),
    nonRetryableErrorTypes: [...nonRetryable],
  };
}
