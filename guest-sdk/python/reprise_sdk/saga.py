"""Compensations, registered as steps succeed, run in reverse when the
workflow has to undo its work — the Rust SDK's `Saga`, step for step."""

import datetime

from ._json import encode
from .context import ActivityCall
from .errors import ActivityError, ActivityFailure, FailureReason, WorkflowError
from .options import RetryPolicy

# A compensation without a retry policy of its own retries until it
# succeeds: from 1 s, capped at 60 s.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=datetime.timedelta(seconds=1),
    maximum_interval=datetime.timedelta(seconds=60),
)


class CompensationReport:
    """How compensating went: `compensated` (steps undone, in the order
    their compensations finished), `failed` (`(step, message)` pairs whose
    compensation failed for good), `skipped` (not compensated because an
    earlier one failed and the saga stops on failure)."""

    __slots__ = ("compensated", "failed", "skipped")

    def __init__(self):
        self.compensated = []
        self.failed = []
        self.skipped = []

    def __repr__(self):
        return f"CompensationReport(compensated={self.compensated!r}, failed={self.failed!r}, skipped={self.skipped!r})"

    @property
    def is_complete(self):
        return not self.failed and not self.skipped

    def to_json(self):
        """The report as JSON-able data (the Rust SDK's serialization)."""
        return {
            "compensated": list(self.compensated),
            "failed": [[step, message] for step, message in self.failed],
            "skipped": list(self.skipped),
        }

    def into_error(self, original):
        """`original` (a `WorkflowError`, e.g. the `ActivityFailure` that
        made the saga undo) with this report in its message and details:
        raise it to fail the workflow."""
        if not isinstance(original, WorkflowError):
            raise TypeError(
                f"into_error takes the WorkflowError (or ActivityFailure) that made the saga "
                f"compensate; got {type(original).__name__} {original!r}"
            )
        if self.is_complete:
            summary = f"compensated: {', '.join(self.compensated)}"
        else:
            summary = (
                f"compensated: {', '.join(self.compensated)}; "
                f"compensation failed: {', '.join(step for step, _ in self.failed)}; "
                f"skipped: {', '.join(self.skipped)}"
            )
        # The original error type as it is, even one the host made.
        return WorkflowError._from_wire(
            original.error_type,
            f"{original.message} ({summary})",
            encode(self.to_json(), "the compensation report"),
        )


class Saga:
    """Compensations, registered as steps succeed, run in reverse when the
    workflow has to undo its work.

    Each compensation is an activity call, journaled like any other, with
    a stable idempotency key: after a crash in the middle of compensating,
    replay skips the ones that finished and re-runs an interrupted one with
    the same key — none runs twice to completion.

        saga = Saga()
        try:
            hold = saga.step("reserve", ctx.activity("reserve").input(trip),
                             lambda hold: ctx.activity("release").input(hold))
            ctx.activity("charge").input(trip).call()
        except ActivityFailure as failure:
            raise saga.compensate().into_error(failure)

    `continue_on_failure` (default True): go on with the remaining
    compensations after one fails for good, reporting every failure.
    `parallel` (default False): start them all at once (when independent).
    """

    def __init__(self, continue_on_failure=True, parallel=False):
        if not isinstance(continue_on_failure, bool) or not isinstance(parallel, bool):
            raise TypeError(
                f"Saga's continue_on_failure and parallel are bools; "
                f"got {continue_on_failure!r} and {parallel!r}"
            )
        self._compensations = []
        self.continue_on_failure = continue_on_failure
        self.parallel = parallel

    @property
    def steps(self):
        """The steps with a registered compensation, in registration order."""
        return [step for step, _ in self._compensations]

    def step(self, step, call, compensation):
        """Runs forward step `step` (an `ActivityCall`) and, once it has taken
        effect, registers the compensation `compensation(output)` builds
        (an `ActivityCall`). Returns the step's output.

        If the workflow is cancelled while the step is in flight, the saga
        first learns the step's own outcome: a step that took effect is
        compensated like the others (once), one that did not is not. The
        step then raises the cancellation, saying which it was.
        """
        if not isinstance(call, ActivityCall):
            raise TypeError(f"Saga.step's call is an ActivityCall (ctx.activity(...)); got {call!r}")
        if not callable(compensation):
            raise TypeError(
                f"Saga.step's compensation is a function from the step's output to an "
                f"ActivityCall, e.g. lambda hold: ctx.activity(\"release\").input(hold); got {compensation!r}"
            )
        handle = call.start()
        try:
            output = handle.wait()
        except ActivityFailure as failure:
            if not failure.is_cancelled:
                raise
            cancelled = failure
        else:
            self.add_compensation(step, compensation(output))
            return output
        try:
            output = handle.settle()
        except ActivityFailure as failure:
            attempts = failure.attempts
            what = (
                f"it did not take effect ({failure.reason.describe()} after "
                f"{failure.attempts} attempt(s))"
            )
        else:
            self.add_compensation(step, compensation(output))
            attempts = 0
            what = "it took effect and is compensated"
        last = cancelled.last_error
        raise ActivityFailure(
            FailureReason.CANCELLED,
            attempts,
            ActivityError(
                last.error_type,
                f"{last.message} while step `{step}` was in flight; {what}",
                last.details,
                last.non_retryable,
            ),
        ) from None

    def add_compensation(self, step, call):
        """Registers the compensation of `step`, to run if the saga has to
        undo. Without a retry policy of its own, it retries until it
        succeeds (`COMPENSATION_RETRY`)."""
        if not isinstance(step, str) or not step:
            raise TypeError(f"a saga step name is a non-empty str; got {step!r}")
        if not isinstance(call, ActivityCall):
            raise TypeError(
                f"the compensation of `{step}` is an ActivityCall (ctx.activity(...)); "
                f"got {type(call).__name__} {call!r}"
            )
        call = call.compensates(step)
        if call._options.get("retry") is None:
            call = call.retry(COMPENSATION_RETRY)
        self._compensations.append((step, call))

    def compensate(self):
        """Runs the registered compensations, most recent first, and returns
        a `CompensationReport`."""
        report = CompensationReport()
        reversed_compensations = list(reversed(self._compensations))
        self._compensations = []
        if self.parallel:
            started = [(step, call.start()) for step, call in reversed_compensations]
            for step, handle in started:
                try:
                    handle.wait()
                    report.compensated.append(step)
                except ActivityFailure as failure:
                    report.failed.append((step, failure.last_error.message))
            return report
        stopped = False
        for step, call in reversed_compensations:
            if stopped:
                report.skipped.append(step)
                continue
            try:
                call.call()
                report.compensated.append(step)
            except ActivityFailure as failure:
                report.failed.append((step, failure.last_error.message))
                stopped = not self.continue_on_failure
        return report
