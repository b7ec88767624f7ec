"""What a handler raises to fail an attempt, and what the worker raises."""

from __future__ import annotations

from typing import Any


class ActivityError(Exception):
    """Fails the attempt with a typed error the workflow sees.

    `error_type` is what retry policies match (`non_retryable("CardDeclined")`)
    and what the history shows; `details` is any JSON-able value. A
    retryable error (the default) lets the workflow's retry policy decide;
    `non_retryable=True` ends the activity at once, whatever the policy.

    Any other exception a handler raises fails the attempt as retryable,
    typed by its class name (`ValueError`, `TimeoutError`, ...).
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        details: Any = None,
        non_retryable: bool = False,
    ):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.details = details
        self.non_retryable = non_retryable


class NonRetryableError(ActivityError):
    """An `ActivityError` no retry can fix (a declined card, bad input)."""

    def __init__(self, error_type: str, message: str, details: Any = None):
        super().__init__(error_type, message, details, non_retryable=True)


class TaskClosedError(Exception):
    """The runtime no longer waits for this attempt: it timed out (its
    retry runs under a new token), or the workflow stopped waiting for it.
    Raised by `ActivityContext.heartbeat`, so a long handler can stop
    working for nothing; whatever it returned would be refused."""


class WorkerError(Exception):
    """A problem no retry fixes: the task API refused the worker's key,
    or the URL is not a Reprise task API."""
