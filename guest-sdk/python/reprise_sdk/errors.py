"""The exceptions a workflow sees and raises.

Mirrors the Rust SDK: `WorkflowError` fails the execution with a
machine-readable `error_type`; an activity that fails for good raises
`ActivityFailure` (a `WorkflowError` too, so letting it through fails the
workflow with the activity's last error, as `?` does in Rust); a
cancellation delivered to a blocking call raises `Cancelled`, which, let
through, ends the execution as cancelled.
"""

import enum

from ._json import decode_details, encode_details


class FailureReason(enum.Enum):
    """Why an activity call failed for good (the WIT's `failure-reason`)."""

    NON_RETRYABLE = "non-retryable"
    ATTEMPTS_EXHAUSTED = "attempts-exhausted"
    TIMED_OUT = "timed-out"
    UNKNOWN_ACTIVITY = "unknown-activity"
    CANCELLED = "cancelled"

    def describe(self):
        return _REASON_TEXT[self]


_REASON_TEXT = {
    FailureReason.NON_RETRYABLE: "non-retryable error",
    FailureReason.ATTEMPTS_EXHAUSTED: "attempts exhausted",
    FailureReason.TIMED_OUT: "timed out",
    FailureReason.UNKNOWN_ACTIVITY: "unknown activity",
    FailureReason.CANCELLED: "cancelled",
}

CANCELLED_ERROR_TYPE = "Cancelled"


class WorkflowError(Exception):
    """Raise it to fail the workflow: `raise WorkflowError("OutOfStock", "no seats left")`.

    `details` is any JSON-able value, recorded with the failure.
    """

    def __init__(self, error_type, message, details=None):
        if not isinstance(error_type, str) or not error_type:
            raise TypeError(
                f"WorkflowError's error_type is a non-empty str naming the error "
                f"(e.g. \"OutOfStock\"); got {error_type!r}"
            )
        if not isinstance(message, str):
            raise TypeError(f"WorkflowError's message is a str; got {type(message).__name__} {message!r}")
        if details is not None:
            # Checked here, where the error is raised, not when it is sent.
            encode_details(details, f"the details of WorkflowError {error_type}")
        self._set(error_type, message, details, None)

    def _set(self, error_type, message, details, details_json):
        Exception.__init__(self, f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.details = details
        # The details as the wire carried them, when they came from the host:
        # passed on byte for byte instead of re-encoded.
        self._details_json = details_json

    def details_json(self):
        """The details as JSON text, or None."""
        if self._details_json is not None:
            return self._details_json
        if self.details is None:
            return None
        return encode_details(self.details, f"the details of WorkflowError {self.error_type}")

    def _to_wit(self, types):
        """The WIT's `workflow-error` record, for the host."""
        return types.WorkflowError(
            error_type=self.error_type,
            message=self.message,
            details=self.details_json(),
        )

    @classmethod
    def _from_wire(cls, error_type, message, details_json):
        """As the host sent it, unchecked (a child's error is valid by
        construction, and refusing one here would hide it)."""
        error = cls.__new__(cls)
        error._set(error_type, message, decode_details(details_json), details_json)
        return error


class Cancelled(WorkflowError):
    """The workflow was cancelled while it waited (sleep, signal, child).

    Delivered once, to the blocking call it interrupted: later calls (a
    saga's compensations) run normally. Let it through to end as cancelled.
    """

    def __init__(self, message="the workflow was cancelled"):
        super().__init__(CANCELLED_ERROR_TYPE, message)


class ActivityError(Exception):
    """The error of one activity attempt (the WIT's `activity-error`).

    In an activity, raise it: `raise ActivityError("CardDeclined", "card
    4000… declined", non_retryable=True)` fails the call at once, a plain
    one (`non_retryable=False`, the default) lets the retry policy retry.
    In a workflow, it is an `ActivityFailure`'s `last_error`.
    """

    def __init__(self, error_type, message, details=None, non_retryable=False):
        if not isinstance(error_type, str) or not error_type:
            raise TypeError(
                f"ActivityError's error_type is a non-empty str naming the error "
                f"(e.g. \"CardDeclined\"); got {error_type!r}"
            )
        if not isinstance(message, str):
            raise TypeError(f"ActivityError's message is a str; got {type(message).__name__} {message!r}")
        if not isinstance(non_retryable, bool):
            raise TypeError(f"ActivityError's non_retryable is a bool; got {non_retryable!r}")
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.details = details
        self.non_retryable = non_retryable
        self._details_json = None

    def details_json(self):
        """The details as JSON text, or None."""
        if self._details_json is not None:
            return self._details_json
        if self.details is None:
            return None
        return encode_details(self.details, f"the details of ActivityError {self.error_type}")

    def __repr__(self):
        return (
            f"ActivityError(error_type={self.error_type!r}, message={self.message!r}, "
            f"details={self.details!r}, non_retryable={self.non_retryable!r})"
        )

    def __eq__(self, other):
        return isinstance(other, ActivityError) and (
            self.error_type,
            self.message,
            self.details,
            self.non_retryable,
        ) == (other.error_type, other.message, other.details, other.non_retryable)

    __hash__ = Exception.__hash__

    @classmethod
    def _from_wire(cls, error_type, message, details_json, non_retryable):
        """As the host sent it: kept as is, unchecked (the host's own errors
        are valid by construction, and refusing one here would hide it)."""
        error = cls.__new__(cls)
        Exception.__init__(error, f"{error_type}: {message}")
        error.error_type = error_type
        error.message = message
        error.details = decode_details(details_json)
        error.non_retryable = non_retryable
        error._details_json = details_json
        return error


class ActivityFailure(WorkflowError):
    """An activity call failed for good: `reason`, `attempts` and `last_error`.

    A `WorkflowError` whose type is the last error's: not caught, it fails
    the workflow with that error, saying why the activity gave up.
    """

    def __init__(self, reason, attempts, last_error):
        if not isinstance(reason, FailureReason):
            raise TypeError(f"ActivityFailure's reason is a FailureReason; got {reason!r}")
        if reason is FailureReason.CANCELLED:
            # A cancellation is not the activity giving up: say what it is.
            message = last_error.message
        else:
            message = (
                f"{last_error.message} (activity gave up: {reason.describe()} "
                f"after {attempts} attempt(s))"
            )
        # The last error is the host's, unchecked: see ActivityError._from_wire.
        self._set(last_error.error_type, message, last_error.details, last_error._details_json)
        self.reason = reason
        self.attempts = attempts
        self.last_error = last_error

    @property
    def is_cancelled(self):
        """True when a cancellation of the workflow, not the activity, ended the wait."""
        return self.reason is FailureReason.CANCELLED


def activity_failure_from_wit(failure):
    """The SDK's `ActivityFailure` from the WIT record."""
    error = failure.last_error
    last_error = ActivityError._from_wire(error.error_type, error.message, error.details, error.non_retryable)
    return ActivityFailure(FailureReason[failure.reason.name], failure.attempts, last_error)


def serialization_failure(message):
    """Mirrors the Rust SDK: an output that does not decode fails the call
    for good, without retry."""
    return ActivityFailure(
        FailureReason.NON_RETRYABLE,
        0,
        ActivityError("SerializationError", message, None, True),
    )


__all__ = [
    "ActivityError",
    "ActivityFailure",
    "Cancelled",
    "FailureReason",
    "WorkflowError",
]
