"""The SDK's Python side without a component: argument checks, error
conversions and the saga's order, against a fake `durable` interface that
records what the workflow asked for.

Run: PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s guest-sdk/python/tests
(the runtime's integration tests, runtime/tests/integration/python_sdk.rs,
run the same SDK inside real components).
"""

import contextlib
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
    failure) and records every call: `calls` the commands, `trace` the
    name of every function the SDK called, in order."""

    QueryKind = enum.Enum("QueryKind", "QUERY VALIDATE_UPDATE")
    QueryRequest = _record("QueryRequest", "kind", "name", "args")
    UpdateRequest = _record("UpdateRequest", "update_id", "name", "args")
    WorkflowInfo = _record("WorkflowInfo", "workflow_id", "run_id", "workflow_type", "tenant")

    def __init__(self):
        super().__init__("wit_world.imports.durable")
        self.reset()

    def reset(self):
        self.calls = []
        self.outcomes = {}
        self.logs = []
        self.trace = []
        # The query waiting at the frontier: returned each time it is asked,
        # as the host does.
        self.query = None
        self.answers = []
        # What await_update returns, in turn: an UpdateRequest, None (the
        # timeout passed) or an Err (cancelled).
        self.updates = []
        self.completed = []
        self._next_seq = 1
        self._names = {}

    def start_activity(self, name, input, options):
        self.trace.append("start_activity")
        seq = self._next_seq
        self._next_seq += 1
        self._names[seq] = name
        self.calls.append((name, input, options))
        return seq

    def await_activity(self, seq):
        self.trace.append("await_activity")
        outcome = self.outcomes.get(self._names[seq], "null")
        if isinstance(outcome, str):
            return outcome
        raise Err(outcome)

    def await_any(self, seqs):
        self.trace.append("await_any")
        seq = seqs[-1]
        outcome = self.outcomes.get(self._names[seq], "null")
        return seq, Ok(outcome) if isinstance(outcome, str) else Err(outcome)

    def start_child(self, workflow_type, input, workflow_id):
        self.trace.append("start_child")
        return 100

    def await_child(self, seq):
        self.trace.append("await_child")
        return '"child done"'

    def sleep_ms(self, ms):
        self.trace.append("sleep_ms")
        self.calls.append(("sleep", ms, None))

    def now_ms(self):
        self.trace.append("now_ms")
        return 1_700_000_000_000

    def random_bytes(self, count):
        self.trace.append("random_bytes")
        return bytes(range(count))

    def await_signal(self, name, timeout_ms):
        self.trace.append("await_signal")
        self.calls.append(("signal", name, timeout_ms))
        return None

    def patched(self, change_id):
        self.trace.append("patched")
        return True

    def deprecate_patch(self, change_id):
        self.trace.append("deprecate_patch")

    def upsert_search_attributes(self, attributes):
        self.trace.append("upsert_search_attributes")

    def continue_as_new(self, input):
        self.trace.append("continue_as_new")
        raise ContinuedAsNew(input)

    def next_query(self):
        self.trace.append("next_query")
        return self.query

    def answer_query(self, answer):
        self.trace.append("answer_query")
        self.answers.append(answer)

    def await_update(self, names, timeout_ms):
        self.trace.append("await_update")
        self.calls.append(("await_update", names, timeout_ms))
        outcome = self.updates.pop(0) if self.updates else None
        if isinstance(outcome, Err):
            raise outcome
        return outcome

    def complete_update(self, update_id, outcome):
        self.trace.append("complete_update")
        self.completed.append((update_id, outcome))

    def info(self):
        self.trace.append("info")
        return self.WorkflowInfo("wf-1", "run-1", "account", "default")

    def log(self, level, message):
        self.trace.append("log")
        self.logs.append((level.name, message))


class ContinuedAsNew(Exception):
    """The fake host's way of stopping the guest at continue-as-new."""


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

# --- queries and updates -------------------------------------------------

from reprise_sdk import Update, _host, _queries  # noqa: E402

workflow_module = sys.modules["reprise_sdk.workflow"]


def query(name, args="null"):
    return durable.QueryRequest(durable.QueryKind.QUERY, name, args)


def validate(name, args="null"):
    return durable.QueryRequest(durable.QueryKind.VALIDATE_UPDATE, name, args)


def update(update_id, name, args="null"):
    return durable.UpdateRequest(update_id, name, args)


def cancelled(message="stop"):
    return Err(wit_types.Cancelled(message))


def ok(value):
    return Ok(value)


def error(error_type, message, details=None):
    return Err(wit_types.WorkflowError(error_type, message, details))


def run_workflow(function, input_json="null"):
    """`run_registered` with `function` as the registered workflow."""
    saved = workflow_module._registered
    workflow_module._registered = function
    try:
        return workflow_module.run_registered(input_json)
    finally:
        workflow_module._registered = saved


def durable_calls(ctx):
    """One call of each durable function the SDK makes, as a workflow would."""
    ctx.now()
    ctx.random_int(8)
    ctx.sleep(timedelta(seconds=1))
    ctx.signal_timeout("approve", timedelta(seconds=1))
    first = ctx.start_activity("a")
    ctx.await_any([first])
    ctx.start_activity("b").wait()
    ctx.call_child("child")
    ctx.patched("change")
    ctx.deprecate_patch("old-change")
    ctx.upsert_search_attributes({"status": "open"})
    durable.updates = [update("u1", "deposit")]
    ctx.complete_update(ctx.await_update("deposit"), {"ok": True})
    with contextlib.suppress(ContinuedAsNew):
        ctx.continue_as_new({"again": True})


DURABLE_COMMANDS = [
    "now_ms", "random_bytes", "sleep_ms", "await_signal", "start_activity", "await_any",
    "start_activity", "await_activity", "start_child", "await_child", "patched", "deprecate_patch",
    "upsert_search_attributes", "await_update", "complete_update", "continue_as_new",
]


class QueryPolling(unittest.TestCase):
    def setUp(self):
        durable.reset()
        _queries.reset()
        self.ctx = Context()

    def test_without_handlers_the_host_is_never_asked(self):
        durable.query = query("balance")
        durable_calls(self.ctx)
        self.ctx.info
        self.ctx.log(logging.INFO, "hello")
        self.assertEqual([name for name in durable.trace if name not in ("info", "log")], DURABLE_COMMANDS)
        self.assertNotIn("next_query", durable.trace)
        self.assertEqual(run_workflow(lambda ctx, _: ctx.now_ms()), "1700000000000")
        self.assertNotIn("next_query", durable.trace)

    def test_with_a_handler_each_durable_call_asks_once_first(self):
        self.ctx.on_query("balance", lambda: 5)
        durable_calls(self.ctx)
        expected = [step for command in DURABLE_COMMANDS for step in ("next_query", command)]
        self.assertEqual(durable.trace, expected)

    def test_a_validator_alone_turns_polling_on(self):
        self.ctx.on_update_validator("deposit", lambda args: None)
        self.ctx.now()
        self.assertEqual(durable.trace, ["next_query", "now_ms"])

    def test_info_and_log_do_not_ask(self):
        self.ctx.on_query("balance", lambda: 5)
        self.assertEqual(self.ctx.info.workflow_id, "wf-1")
        self.ctx.log(logging.WARNING, "careful")
        self.assertEqual(durable.trace, ["info", "log"])

    def test_a_waiting_query_is_answered_once_per_call_then_the_call_runs(self):
        state = {"balance": 5}
        self.ctx.on_query("balance", lambda: dict(state))
        durable.query = query("balance")
        self.ctx.now()
        state["balance"] = 7
        self.ctx.sleep(timedelta(seconds=1))
        self.assertEqual(
            durable.trace, ["next_query", "answer_query", "now_ms", "next_query", "answer_query", "sleep_ms"]
        )
        self.assertEqual(durable.answers, [ok('{"balance":5}'), ok('{"balance":7}')])

    def test_every_journaled_function_of_the_wit_asks_first(self):
        # Against the WIT the SDK is built with: a function added there is
        # journaled unless listed, so it cannot be forgotten.
        wit = (Path(_host.__file__).parent / "wit" / "reprise.wit").read_text()
        interface = wit[wit.index("interface durable {"):]
        interface = interface[: interface.index("\n}\n")]
        functions = [line.split(":")[0].strip().replace("-", "_")
                     for line in interface.splitlines() if ": func(" in line]
        self.assertIn("await_update", functions)
        self.ctx.on_query("balance", lambda: 5)
        proxy = _host.bindings()[0]
        for name in functions:
            durable.trace = []
            original = getattr(durable, name, None)
            setattr(durable, name, lambda *args, name=name: durable.trace.append(name))
            try:
                getattr(proxy, name)()
            finally:
                if original is None:
                    delattr(durable, name)
                else:
                    setattr(durable, name, original)
            asked = name not in ("info", "log", "next_query", "answer_query")
            self.assertEqual(durable.trace, ["next_query", name] if asked else [name], name)
        self.assertIs(proxy.QueryKind, durable.QueryKind)

    def test_run_asks_once_more_after_the_workflow_returns(self):
        def account(ctx, args):
            state = {"balance": args["balance"]}
            ctx.on_query("balance", lambda: state)
            ctx.now_ms()
            state["balance"] += 1
            return state

        self.assertEqual(run_workflow(account, '{"balance":1}'), '{"balance":2}')
        self.assertEqual(durable.trace, ["next_query", "now_ms", "next_query"])
        durable.reset()
        durable.query = query("balance")
        run_workflow(account, '{"balance":1}')
        # The last answer is the final state.
        self.assertEqual(durable.answers, [ok('{"balance":1}'), ok('{"balance":2}')])

    def test_run_asks_after_the_workflow_raises_too(self):
        def failing(ctx, _):
            ctx.on_query("status", lambda: "failing")
            raise WorkflowError("Broken", "no")

        durable.query = query("status")
        with self.assertRaisesRegex(WorkflowError, "Broken: no"):
            run_workflow(failing)
        self.assertEqual(durable.trace, ["next_query", "answer_query"])
        self.assertEqual(durable.answers, [ok('"failing"')])

    def test_a_new_run_starts_without_handlers(self):
        run_workflow(lambda ctx, _: ctx.on_query("balance", lambda: 1) and None)
        self.assertEqual(durable.trace, ["next_query"])
        durable.reset()
        run_workflow(lambda ctx, _: ctx.now_ms())
        self.assertEqual(durable.trace, ["now_ms"])


class QueryDispatch(unittest.TestCase):
    def setUp(self):
        durable.reset()
        _queries.reset()
        self.ctx = Context()

    def answer(self, request):
        durable.query = request
        durable.answers = []
        self.ctx.now_ms()
        self.assertEqual(len(durable.answers), 1)
        return durable.answers[0]

    def test_a_query_gets_its_decoded_args_and_answers_json(self):
        self.ctx.on_query("item", lambda args: {"item": ["a", "b"][args["index"]], "n": None})
        self.assertEqual(self.answer(query("item", '{"index":1}')), ok('{"item":"b","n":null}'))

    def test_the_decorator_form_registers_too(self):
        @self.ctx.on_query("double")
        def double(args):
            return args * 2

        self.assertEqual(double(2), 4)
        self.assertEqual(self.answer(query("double", "21")), ok("42"))

    def test_an_unknown_query_names_the_ones_there_are(self):
        self.ctx.on_query("owner", lambda: "ann")
        self.ctx.on_query("balance", lambda: 5)
        self.assertEqual(
            self.answer(query("missing")),
            error("UnknownQuery", "this workflow has no handler for query `missing`; it answers: balance, owner"),
        )

    def test_args_that_do_not_fit_are_invalid_query_args(self):
        self.ctx.on_query("balance", lambda: 5)
        self.ctx.on_query("item", lambda args: args)
        answer = self.answer(query("item", "{not json"))
        self.assertEqual(answer.value.error_type, "InvalidQueryArgs")
        self.assertIn("the args of query `item` ({not json) do not fit: Expecting", answer.value.message)
        answer = self.answer(query("balance", '{"x":1}'))
        self.assertEqual(
            answer,
            error("InvalidQueryArgs", 'the args of query `balance` ({"x":1}) do not fit: it takes no args'),
        )

    def test_a_handler_error_is_the_answer(self):
        def raising(args):
            raise WorkflowError("Closed", "the account is closed", {"since": 3})

        self.ctx.on_query("balance", raising)
        self.assertEqual(self.answer(query("balance")), error("Closed", "the account is closed", '{"since":3}'))

    def test_other_exceptions_and_unencodable_answers_fail_the_query(self):
        self.ctx.on_query("item", lambda args: {}["missing"])
        self.ctx.on_query("set", lambda: {1, 2})
        self.assertEqual(self.answer(query("item")), error("QueryFailed", "query `item` failed: KeyError: 'missing'"))
        answer = self.answer(query("set"))
        self.assertEqual(answer.value.error_type, "SerializationError")
        self.assertIn("could not encode the answer to query `set`", answer.value.message)

    def test_a_durable_call_in_a_handler_does_not_ask_again(self):
        self.ctx.on_query("now", lambda: self.ctx.now_ms())
        self.assertEqual(self.answer(query("now")), ok("1700000000000"))
        # The handler's call went to the host (which fails the query) without
        # asking for the same query again.
        self.assertEqual(durable.trace, ["next_query", "now_ms", "answer_query", "now_ms"])

    def test_handlers_are_checked_when_registered(self):
        with self.assertRaisesRegex(TypeError, "the handler of query `balance` is a function"):
            self.ctx.on_query("balance", 5)
        with self.assertRaisesRegex(TypeError, r"takes the decoded args \(one parameter\) or nothing"):
            self.ctx.on_query("balance", lambda a, b: a)
        with self.assertRaisesRegex(TypeError, "a query name is a non-empty str"):
            self.ctx.on_query("", lambda: 1)
        self.assertTrue(_queries.nothing_registered())

    def test_an_update_without_a_validator_is_accepted(self):
        self.ctx.on_query("balance", lambda: 5)
        self.assertEqual(self.answer(validate("deposit", '{"amount":1}')), ok("null"))

    def test_a_validator_accepts_by_returning_and_rejects_with_an_error(self):
        def positive(args):
            if args["amount"] <= 0:
                raise WorkflowError("InvalidAmount", f"amounts are positive; got {args['amount']}")

        self.ctx.on_update_validator("deposit", positive)
        self.ctx.on_update_validator("withdraw", lambda args: WorkflowError("Frozen", "no withdrawals"))
        self.assertEqual(self.answer(validate("deposit", '{"amount":5}')), ok("null"))
        self.assertEqual(
            self.answer(validate("deposit", '{"amount":0}')), error("InvalidAmount", "amounts are positive; got 0")
        )
        self.assertEqual(self.answer(validate("withdraw", '{"amount":5}')), error("Frozen", "no withdrawals"))

    def test_only_an_error_rejects_an_update(self):
        self.ctx.on_update_validator("deposit", lambda args: False)
        self.assertEqual(self.answer(validate("deposit", '{"amount":5}')), ok("null"))

    def test_a_validator_that_breaks_fails_the_check(self):
        self.ctx.on_update_validator("withdraw", lambda args: args["amount"])
        self.assertEqual(
            self.answer(validate("withdraw", "{}")),
            error("QueryFailed", "the validator of update `withdraw` failed: KeyError: 'amount'"),
        )
        answer = self.answer(validate("withdraw", "nope"))
        self.assertEqual(answer.value.error_type, "InvalidUpdateArgs")


class Updates(unittest.TestCase):
    def setUp(self):
        durable.reset()
        _queries.reset()
        self.ctx = Context()

    def test_await_update_returns_the_update(self):
        durable.updates = [update("u1", "deposit", '{"amount":5}')]
        received = self.ctx.await_update(["deposit", "withdraw"], timeout=timedelta(seconds=2))
        self.assertIsInstance(received, Update)
        self.assertEqual((received.id, received.name), ("u1", "deposit"))
        self.assertEqual((received.args, received.args_json), ({"amount": 5}, '{"amount":5}'))
        self.assertEqual(durable.calls, [("await_update", ["deposit", "withdraw"], 2000)])
        self.ctx.await_update("close")
        self.assertEqual(durable.calls[-1], ("await_update", ["close"], None))

    def test_await_update_is_none_after_its_timeout_and_raises_when_cancelled(self):
        durable.updates = [None, cancelled("shut down")]
        self.assertIsNone(self.ctx.await_update("deposit", timedelta(milliseconds=10)))
        with self.assertRaises(Cancelled) as raised:
            self.ctx.await_update("deposit")
        self.assertEqual(raised.exception.message, "shut down")

    def test_await_update_checks_its_arguments(self):
        with self.assertRaisesRegex(ValueError, "at least one update name"):
            self.ctx.await_update([])
        with self.assertRaisesRegex(TypeError, "an update name is a non-empty str"):
            self.ctx.await_update(["deposit", ""])
        with self.assertRaisesRegex(TypeError, "await_update's timeout is a datetime.timedelta"):
            self.ctx.await_update("deposit", 5)
        self.assertEqual(durable.calls, [])

    def test_args_that_are_not_json_are_invalid_update_args(self):
        with self.assertRaises(WorkflowError) as raised:
            Update("u1", "deposit", "{oops").args
        self.assertEqual(raised.exception.error_type, "InvalidUpdateArgs")

    def test_complete_update_answers_once_with_json_or_an_error(self):
        durable.updates = [update("u1", "deposit"), update("u2", "withdraw"), update("u3", "odd")]
        first, second, third = (self.ctx.await_update(["deposit", "withdraw", "odd"]) for _ in range(3))
        self.ctx.complete_update(first, {"balance": 3})
        self.ctx.complete_update(second, error=WorkflowError("InsufficientFunds", "no", {"balance": 3}))
        self.ctx.complete_update(third, {1})
        self.assertEqual(durable.completed[:2], [
            ("u1", ok('{"balance":3}')),
            ("u2", error("InsufficientFunds", "no", '{"balance":3}')),
        ])
        self.assertEqual(durable.completed[2][1].value.error_type, "SerializationError")
        self.assertTrue(first.completed)
        with self.assertRaisesRegex(ValueError, r"update `deposit` \(u1\) was completed already"):
            self.ctx.complete_update(first, {"balance": 3})
        self.assertEqual(len(durable.completed), 3)

    def test_complete_update_checks_its_arguments(self):
        pending = Update("u1", "deposit", "null")
        with self.assertRaisesRegex(TypeError, "takes the Update that ctx.await_update returned"):
            self.ctx.complete_update("u1", 1)
        with self.assertRaisesRegex(TypeError, "complete_update's error is a WorkflowError"):
            self.ctx.complete_update(pending, error=ValueError("no"))
        with self.assertRaisesRegex(ValueError, "a result or an error, not both"):
            self.ctx.complete_update(pending, 1, WorkflowError("No", "no"))
        self.assertEqual(durable.completed, [])
        self.assertFalse(pending.completed)

    def test_handle_update_answers_with_what_the_handler_returns(self):
        durable.updates = [update("u1", "deposit", '{"amount":5}')]
        balance = {"value": 10}

        def deposit(args):
            balance["value"] += args["amount"]
            return {"balance": balance["value"]}

        self.assertTrue(self.ctx.handle_update("deposit", deposit, timeout=timedelta(seconds=1)))
        self.assertEqual(durable.calls, [("await_update", ["deposit"], 1000)])
        self.assertEqual(durable.completed, [("u1", ok('{"balance":15}'))])

    def test_handle_update_answers_with_the_handlers_errors(self):
        def withdraw(args):
            if args["amount"] > 10:
                raise WorkflowError("InsufficientFunds", "too much")
            return 1 / 0

        durable.updates = [
            update("u1", "withdraw", '{"amount":50}'),
            update("u2", "withdraw", '{"amount":5}'),
            update("u3", "withdraw", "{bad"),
        ]
        for _ in range(3):
            self.assertTrue(self.ctx.handle_update("withdraw", withdraw))
        (_, first), (_, second), (_, third) = durable.completed
        self.assertEqual(first, error("InsufficientFunds", "too much"))
        self.assertEqual(second, error("UpdateFailed", "update `withdraw` failed: ZeroDivisionError: division by zero"))
        self.assertEqual(third.value.error_type, "InvalidUpdateArgs")

    def test_handle_update_is_false_after_its_timeout(self):
        durable.updates = [None]
        self.assertFalse(self.ctx.handle_update("close", lambda: {}, timeout=timedelta(seconds=1)))
        self.assertEqual(durable.completed, [])

    def test_handle_update_lets_a_cancellation_through(self):
        durable.updates = [cancelled("stop waiting")]
        with self.assertRaisesRegex(Cancelled, "stop waiting"):
            self.ctx.handle_update("close", lambda: {})
        self.assertEqual(durable.completed, [])

        def slow(args):
            raise Cancelled("stop sleeping")

        durable.updates = [update("u1", "close")]
        with self.assertRaisesRegex(Cancelled, "stop sleeping"):
            self.ctx.handle_update("close", slow)
        # Answered before the cancellation goes on.
        self.assertEqual(durable.completed, [("u1", error("Cancelled", "stop sleeping"))])

    def test_handle_update_checks_the_handler_before_waiting(self):
        with self.assertRaisesRegex(TypeError, "the handler of update `close` takes the decoded args"):
            self.ctx.handle_update("close", lambda a, b: None)
        self.assertEqual(durable.calls, [])


if __name__ == "__main__":
    unittest.main()
