"""The SDK's Python side without a component: argument checks, error
conversions and the saga's order, against a fake `durable` interface that
records what the workflow asked for.

Run: PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s guest-sdk/python/tests
(the runtime's integration tests, runtime/tests/integration/python_sdk.rs,
run the same SDK inside real components).
"""

import enum
import logging
import sys
import types as module_types
import unittest
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# --- a fake of componentize-py's generated bindings ----------------------

@dataclass
class Ok:
    value: object


@dataclass(frozen=True)
class Err(Exception):
    value: object


def _record(name, *fields):
    return dataclass(type(name, (), {"__annotations__": {field: object for field in fields}}))


wit_types = module_types.ModuleType("wit_world.imports.types")
wit_types.RetryPolicy = _record(
    "RetryPolicy", "initial_interval_ms", "backoff_coefficient", "maximum_interval_ms",
    "maximum_attempts", "non_retryable_error_types",
)
wit_types.ActivityOptions = _record(
    "ActivityOptions", "retry", "start_to_close_timeout_ms", "schedule_to_close_timeout_ms",
    "heartbeat_timeout_ms", "compensates", "idempotency_key",
)
wit_types.ActivityError = _record("ActivityError", "error_type", "message", "details", "non_retryable")
wit_types.ActivityFailure = _record("ActivityFailure", "reason", "attempts", "last_error")
wit_types.WorkflowError = _record("WorkflowError", "error_type", "message", "details")
wit_types.Cancelled = _record("Cancelled", "message")
wit_types.FailureReason = enum.Enum(
    "FailureReason", "NON_RETRYABLE ATTEMPTS_EXHAUSTED TIMED_OUT UNKNOWN_ACTIVITY CANCELLED"
)
wit_types.LogLevel = enum.Enum("LogLevel", "TRACE DEBUG INFO WARN ERROR")


class FakeDurable(module_types.ModuleType):
    """Answers activity calls from `outcomes` (name → output JSON or a
    failure) and records every call."""

    def __init__(self):
        super().__init__("wit_world.imports.durable")
        self.reset()

    def reset(self):
        self.calls = []
        self.outcomes = {}
        self.logs = []
        self._next_seq = 1
        self._names = {}

    def start_activity(self, name, input, options):
        seq = self._next_seq
        self._next_seq += 1
        self._names[seq] = name
        self.calls.append((name, input, options))
        return seq

    def await_activity(self, seq):
        outcome = self.outcomes.get(self._names[seq], "null")
        if isinstance(outcome, str):
            return outcome
        raise Err(outcome)

    def await_any(self, seqs):
        seq = seqs[-1]
        try:
            return seq, Ok(self.await_activity(seq))
        except Err as error:
            return seq, error

    def sleep_ms(self, ms):
        self.calls.append(("sleep", ms, None))

    def now_ms(self):
        return 1_700_000_000_000

    def random_bytes(self, count):
        return bytes(range(count))

    def await_signal(self, name, timeout_ms):
        self.calls.append(("signal", name, timeout_ms))
        return None

    def log(self, level, message):
        self.logs.append((level.name, message))


durable = FakeDurable()
imports = module_types.ModuleType("wit_world.imports")
imports.durable = durable
imports.types = wit_types
wit_world = module_types.ModuleType("wit_world")
wit_world.imports = imports
componentize_py_types = module_types.ModuleType("componentize_py_types")
componentize_py_types.Ok = Ok
componentize_py_types.Err = Err
sys.modules.update(
    {
        "wit_world": wit_world,
        "wit_world.imports": imports,
        "wit_world.imports.durable": durable,
        "wit_world.imports.types": wit_types,
        "componentize_py_types": componentize_py_types,
    }
)

import reprise_sdk  # noqa: E402
from reprise_sdk import (  # noqa: E402
    ActivityFailure,
    Cancelled,
    Context,
    FailureReason,
    RetryPolicy,
    Saga,
    WorkflowError,
)
from reprise_sdk import logs  # noqa: E402


def failure(error_type, reason="NON_RETRYABLE", attempts=1, details=None):
    return wit_types.ActivityFailure(
        reason=wit_types.FailureReason[reason],
        attempts=attempts,
        last_error=wit_types.ActivityError(error_type, f"{error_type} happened", details, False),
    )


class ArgumentChecks(unittest.TestCase):
    def setUp(self):
        durable.reset()
        self.ctx = Context()

    def test_durations_must_be_timedeltas(self):
        with self.assertRaisesRegex(TypeError, r"datetime.timedelta, e.g. timedelta\(seconds=5\); got int 5"):
            self.ctx.sleep(5)
        with self.assertRaisesRegex(ValueError, "must not be negative"):
            self.ctx.activity("a").start_to_close(timedelta(seconds=-1))
        with self.assertRaisesRegex(TypeError, "initial_interval is a datetime.timedelta"):
            RetryPolicy(initial_interval=1000)

    def test_policy_and_input_errors_say_what_to_pass(self):
        with self.assertRaisesRegex(TypeError, r"list of error type names"):
            RetryPolicy(non_retryable="CardDeclined")
        with self.assertRaisesRegex(ValueError, "backoff_coefficient must be >= 1"):
            RetryPolicy(backoff_coefficient=0.5)
        with self.assertRaisesRegex(TypeError, "retry\\(\\) takes a RetryPolicy"):
            self.ctx.activity("a").retry({"maximum_attempts": 3})
        with self.assertRaisesRegex(TypeError, "the input of activity `a` must be JSON-able"):
            self.ctx.activity("a").input({"when": object()})
        with self.assertRaisesRegex(ValueError, "no NaN"):
            self.ctx.activity("a").input(float("nan"))
        with self.assertRaisesRegex(TypeError, "await_any takes ActivityHandles"):
            self.ctx.await_any(["charge"])

    def test_the_builder_and_the_keywords_send_the_same_options(self):
        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=200), maximum_attempts=3, non_retryable=["PaymentNotCompleted"]
        )
        self.ctx.activity("charge").input({"cents": 5}).retry(policy).idempotency_key("charge-1").start_to_close(
            timedelta(seconds=10)
        ).call()
        self.ctx.call_activity(
            "charge", {"cents": 5}, retry=policy, idempotency_key="charge-1", start_to_close=timedelta(seconds=10)
        )
        (_, input_a, options_a), (_, input_b, options_b) = durable.calls
        self.assertEqual(input_a, '{"cents":5}')
        self.assertEqual((input_a, options_a), (input_b, options_b))
        self.assertEqual(options_a.retry.initial_interval_ms, 200)
        self.assertEqual(options_a.retry.maximum_interval_ms, 0)
        self.assertEqual(options_a.retry.non_retryable_error_types, ["PaymentNotCompleted"])
        self.assertEqual(options_a.start_to_close_timeout_ms, 10_000)
        self.assertEqual(options_a.idempotency_key, "charge-1")


class Errors(unittest.TestCase):
    def setUp(self):
        durable.reset()
        self.ctx = Context()

    def test_an_activity_failure_is_typed_and_a_workflow_error(self):
        durable.outcomes["charge"] = failure("CardDeclined", details='{"code":51}')
        with self.assertRaises(ActivityFailure) as raised:
            self.ctx.call_activity("charge", {})
        error = raised.exception
        self.assertIsInstance(error, WorkflowError)
        self.assertEqual(error.reason, FailureReason.NON_RETRYABLE)
        self.assertEqual(error.attempts, 1)
        self.assertEqual(error.last_error.error_type, "CardDeclined")
        self.assertEqual(error.last_error.details, {"code": 51})
        self.assertEqual(error.error_type, "CardDeclined")
        self.assertEqual(error.message, "CardDeclined happened (activity gave up: non-retryable error after 1 attempt(s))")
        self.assertEqual(error.details_json(), '{"code":51}')

    def test_await_any_returns_the_handle_that_completed(self):
        durable.outcomes["b"] = '"B"'
        first, second = self.ctx.start_activity("a"), self.ctx.start_activity("b")
        done = self.ctx.await_any([first, second])
        self.assertIs(done, second)
        self.assertEqual(done.wait(), "B")
        with self.assertRaisesRegex(ValueError, "pass only the handles still pending"):
            self.ctx.await_any([done])

    def test_a_missing_signal_after_its_deadline_is_none(self):
        self.assertIsNone(self.ctx.signal_timeout("approve", timedelta(seconds=2)))
        self.assertEqual(durable.calls[-1], ("signal", "approve", 2000))
        with self.assertRaisesRegex(WorkflowError, "SignalMissing"):
            self.ctx.signal("approve")

    def test_cancelled_is_a_workflow_error_of_type_cancelled(self):
        self.assertEqual(Cancelled("stop").error_type, "Cancelled")
        self.assertIsInstance(Cancelled("stop"), WorkflowError)


class SagaOrder(unittest.TestCase):
    def setUp(self):
        durable.reset()
        self.ctx = Context()

    def test_compensations_run_in_reverse_with_the_steps_marked(self):
        saga = Saga()
        for step in ("reserve", "charge"):
            saga.step(step, self.ctx.activity(step), lambda _, step=step: self.ctx.activity(f"undo-{step}"))
        durable.outcomes["undo-reserve"] = failure("Broken", "ATTEMPTS_EXHAUSTED", 4)
        report = saga.compensate()
        undo = [(name, options.compensates, options.retry.maximum_attempts) for name, _, options in durable.calls[2:]]
        self.assertEqual(undo, [("undo-charge", "charge", 0), ("undo-reserve", "reserve", 0)])
        self.assertEqual(report.compensated, ["charge"])
        self.assertEqual(report.failed, [("reserve", "Broken happened")])
        error = report.into_error(WorkflowError("ShippingUnavailable", "no truck"))
        self.assertEqual(
            error.message, "no truck (compensated: charge; compensation failed: reserve; skipped: )"
        )

    def test_a_failed_step_registers_no_compensation(self):
        durable.outcomes["charge"] = failure("CardDeclined")
        saga = Saga()
        with self.assertRaises(ActivityFailure):
            saga.step("charge", self.ctx.activity("charge"), lambda _: self.ctx.activity("refund"))
        self.assertEqual(saga.steps, [])


class Logging(unittest.TestCase):
    def test_logging_goes_to_the_durable_log_without_reading_the_clock(self):
        durable.reset()
        logs.install()
        import time

        reads = []
        originals = time.time, time.time_ns
        time.time = lambda: reads.append("time") or originals[0]()
        time.time_ns = lambda: reads.append("time_ns") or originals[1]()
        try:
            logging.getLogger("shop").info("order %s", "o1")
        finally:
            time.time, time.time_ns = originals
        self.assertEqual(durable.logs, [("INFO", "shop: order o1")])
        self.assertEqual(reads, [])


class Activities(unittest.TestCase):
    def test_errors_become_activity_errors(self):
        from reprise_sdk.activity import activity, run_served

        @activity("py-test-fails")
        def fails(ctx, spec):
            if spec == "declined":
                raise reprise_sdk.ActivityError("CardDeclined", "no", non_retryable=True)
            raise KeyError("card")

        with self.assertRaises(reprise_sdk.ActivityError) as raised:
            run_served("py-test-fails", '"declined"')
        self.assertTrue(raised.exception.non_retryable)
        with self.assertRaises(reprise_sdk.ActivityError) as raised:
            run_served("py-test-fails", '"other"')
        self.assertEqual((raised.exception.error_type, raised.exception.non_retryable), ("KeyError", False))
        with self.assertRaises(reprise_sdk.ActivityError) as raised:
            run_served("no-such", "null")
        self.assertEqual(raised.exception.error_type, "UnknownActivity")


class WorkflowDecorator(unittest.TestCase):
    def test_the_signature_is_checked(self):
        with self.assertRaisesRegex(TypeError, r"taking \(ctx, input\)"):
            reprise_sdk.workflow(lambda ctx: None)


if __name__ == "__main__":
    unittest.main()
