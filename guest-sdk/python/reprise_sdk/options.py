"""Retry policies and durations, with the runtime's defaults."""

import datetime

# The WIT carries durations as u64 milliseconds.
_MS_MAX = 2**64 - 1
_U32_MAX = 2**32 - 1


def duration_ms(value, what):
    """Whole milliseconds of a `timedelta` (rounded down, as the Rust SDK's
    `as_millis`), or a TypeError/ValueError that says what to pass."""
    if not isinstance(value, datetime.timedelta):
        raise TypeError(
            f"{what} is a datetime.timedelta, e.g. timedelta(seconds=5); "
            f"got {type(value).__name__} {value!r}"
        )
    if value < datetime.timedelta(0):
        raise ValueError(f"{what} must not be negative; got {value!r}")
    ms = value // datetime.timedelta(milliseconds=1)
    if ms > _MS_MAX:
        raise ValueError(f"{what} is at most {_MS_MAX} ms; got {ms} ms")
    return ms


def _count(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} is an int; got {type(value).__name__} {value!r}")
    if not 0 <= value <= _U32_MAX:
        raise ValueError(f"{what} is between 0 and {_U32_MAX}; got {value}")
    return value


class RetryPolicy:
    """How a failed activity attempt is retried.

    Defaults are the runtime's: 1 s before the first retry, the delay
    multiplied by 2 after each, capped at 100 × the initial interval
    (`maximum_interval=None`), unlimited attempts (`maximum_attempts=0`).
    Error types in `non_retryable` fail the call at once.

        RetryPolicy(initial_interval=timedelta(milliseconds=200),
                    maximum_attempts=3, non_retryable=["CardDeclined"])
    """

    __slots__ = (
        "initial_interval",
        "backoff_coefficient",
        "maximum_interval",
        "maximum_attempts",
        "non_retryable",
    )

    def __init__(
        self,
        initial_interval=datetime.timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=None,
        maximum_attempts=0,
        non_retryable=(),
    ):
        duration_ms(initial_interval, "RetryPolicy's initial_interval")
        if maximum_interval is not None:
            duration_ms(maximum_interval, "RetryPolicy's maximum_interval")
        if isinstance(backoff_coefficient, bool) or not isinstance(backoff_coefficient, (int, float)):
            raise TypeError(
                f"RetryPolicy's backoff_coefficient is a number >= 1 (e.g. 2.0); "
                f"got {type(backoff_coefficient).__name__} {backoff_coefficient!r}"
            )
        if not backoff_coefficient >= 1:
            raise ValueError(f"RetryPolicy's backoff_coefficient must be >= 1; got {backoff_coefficient}")
        _count(maximum_attempts, "RetryPolicy's maximum_attempts (attempts in all, 0 for unlimited)")
        if isinstance(non_retryable, str) or not all(isinstance(name, str) for name in non_retryable):
            raise TypeError(
                f"RetryPolicy's non_retryable is a list of error type names, e.g. "
                f"[\"CardDeclined\"]; got {non_retryable!r}"
            )
        self.initial_interval = initial_interval
        self.backoff_coefficient = float(backoff_coefficient)
        self.maximum_interval = maximum_interval
        self.maximum_attempts = maximum_attempts
        self.non_retryable = list(non_retryable)

    def __repr__(self):
        return (
            f"RetryPolicy(initial_interval={self.initial_interval!r}, "
            f"backoff_coefficient={self.backoff_coefficient!r}, "
            f"maximum_interval={self.maximum_interval!r}, "
            f"maximum_attempts={self.maximum_attempts!r}, non_retryable={self.non_retryable!r})"
        )

    def _to_wit(self, types):
        return types.RetryPolicy(
            initial_interval_ms=duration_ms(self.initial_interval, "initial_interval"),
            backoff_coefficient=self.backoff_coefficient,
            # 0: the host uses 100 × the initial interval.
            maximum_interval_ms=0
            if self.maximum_interval is None
            else duration_ms(self.maximum_interval, "maximum_interval"),
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=list(self.non_retryable),
        )
