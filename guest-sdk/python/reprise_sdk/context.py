"""The workflow's handle on the durable host: `Context`, activity and child
workflow calls.

Every call here is journaled by the host: the first time it runs, its
outcome is written to the execution's history before the workflow sees it;
after a crash or an eviction the same call returns the recorded outcome.
Plain `time` and `random` are journaled too (the host virtualizes WASI);
files, sockets and HTTP are denied — do I/O in activities.
"""

import datetime
import json

from . import _host, _queries
from ._json import encode
from .errors import (
    CANCELLED_ERROR_TYPE,
    ActivityFailure,
    Cancelled,
    WorkflowError,
    activity_failure_from_wit,
    serialization_failure,
)
from .options import RetryPolicy, duration_ms

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# The host's limit on one `random-bytes` call (see wit/reprise.wit).
RANDOM_BYTES_MAX = 4096


def _require_name(value, what):
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} is a non-empty str; got {type(value).__name__} {value!r}")
    return value


def _decode_output(output, what):
    try:
        return json.loads(output)
    except ValueError as error:
        raise serialization_failure(f"could not decode {what} {output}: {error}") from None


class WorkflowInfo:
    """Identity of the execution: fixed for its whole life, the same in replay."""

    __slots__ = ("workflow_id", "run_id", "workflow_type", "tenant")

    def __init__(self, workflow_id, run_id, workflow_type, tenant):
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_type = workflow_type
        self.tenant = tenant

    def __repr__(self):
        return (
            f"WorkflowInfo(workflow_id={self.workflow_id!r}, run_id={self.run_id!r}, "
            f"workflow_type={self.workflow_type!r}, tenant={self.tenant!r})"
        )


class ActivityCall:
    """A call of one activity, being configured. Each setter returns a new
    call, so a configured call can be reused as a template.

        ctx.activity("charge").input({"cents": 500}) \\
           .retry(RetryPolicy(maximum_attempts=3)) \\
           .start_to_close(timedelta(seconds=10)).call()

    Unset options take the runtime's defaults.
    """

    __slots__ = ("_name", "_input_json", "_options")

    def __init__(self, name, input_json="null", options=None):
        self._name = _require_name(name, "an activity name")
        self._input_json = input_json
        self._options = dict(options or {})

    def _with(self, **changes):
        options = dict(self._options)
        input_json = changes.pop("input_json", self._input_json)
        options.update(changes)
        return ActivityCall(self._name, input_json, options)

    @property
    def name(self):
        return self._name

    def input(self, value):
        """The input: any JSON-able value."""
        return self._with(input_json=encode(value, f"the input of activity `{self._name}`"))

    def retry(self, policy):
        if not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"retry() takes a RetryPolicy, e.g. RetryPolicy(maximum_attempts=3); "
                f"got {type(policy).__name__} {policy!r}"
            )
        return self._with(retry=policy)

    def start_to_close(self, timeout):
        """Limit on one attempt."""
        return self._with(start_to_close_ms=duration_ms(timeout, "start_to_close"))

    def schedule_to_close(self, timeout):
        """Limit on all attempts together."""
        return self._with(schedule_to_close_ms=duration_ms(timeout, "schedule_to_close"))

    def heartbeat_timeout(self, timeout):
        """An attempt that does not heartbeat for this long fails (retryably)."""
        return self._with(heartbeat_timeout_ms=duration_ms(timeout, "heartbeat_timeout"))

    def idempotency_key(self, key):
        """A key from business ids (e.g. f"charge-{order_id}") instead of the
        one the runtime derives from workflow id, run id and sequence."""
        return self._with(idempotency_key=_require_name(key, "an idempotency key"))

    def compensates(self, step):
        """Marks this call as the compensation of saga step `step` (`Saga`
        sets it; histories show the chain)."""
        return self._with(compensates=_require_name(step, "a saga step name"))

    def _options_to_wit(self, types):
        options = self._options
        retry = options.get("retry")
        return types.ActivityOptions(
            retry=None if retry is None else retry._to_wit(types),
            start_to_close_timeout_ms=options.get("start_to_close_ms"),
            schedule_to_close_timeout_ms=options.get("schedule_to_close_ms"),
            heartbeat_timeout_ms=options.get("heartbeat_timeout_ms"),
            compensates=options.get("compensates"),
            idempotency_key=options.get("idempotency_key"),
        )

    def start(self):
        """Schedules the activity without waiting: returns its `ActivityHandle`."""
        durable, types, _, _ = _host.bindings()
        seq = durable.start_activity(self._name, self._input_json, self._options_to_wit(types))
        return ActivityHandle(self._name, seq)

    def call(self):
        """Calls the activity and returns its output; raises `ActivityFailure`
        when it fails for good."""
        return self.start().wait()


class ActivityHandle:
    """An activity started with `ActivityCall.start()`."""

    __slots__ = ("name", "_seq", "_settled_output", "_settled_failure")

    def __init__(self, name, seq):
        self.name = name
        self._seq = seq
        # The outcome once `Context.await_any` has seen it: waiting again
        # answers from here.
        self._settled_output = None
        self._settled_failure = None

    def __repr__(self):
        return f"ActivityHandle({self.name!r}, seq={self._seq})"

    def _settle_from(self, outcome, Ok):
        if isinstance(outcome, Ok):
            self._settled_output = (outcome.value,)
            return
        failure = activity_failure_from_wit(outcome.value)
        if failure.is_cancelled:
            # The workflow's cancellation, not this activity's outcome.
            raise failure
        self._settled_failure = failure

    @property
    def done(self):
        """True once `Context.await_any` returned this handle's outcome."""
        return self._settled_output is not None or self._settled_failure is not None

    def wait(self):
        """The activity's output; raises `ActivityFailure` if it failed for
        good. If the workflow is cancelled meanwhile, raises a failure with
        reason CANCELLED at once — the call itself may still be in flight
        (see `settle`)."""
        if self._settled_output is not None:
            return _decode_output(self._settled_output[0], f"the output of activity `{self.name}`")
        if self._settled_failure is not None:
            raise self._settled_failure
        durable, _, _, Err = _host.bindings()
        try:
            output = durable.await_activity(self._seq)
        except Err as error:
            raise activity_failure_from_wit(error.value) from None
        return _decode_output(output, f"the output of activity `{self.name}`")

    def settle(self):
        """The activity's own outcome, waiting for it past any cancellation
        of the workflow: after `wait` raised a CANCELLED failure, this tells
        whether the call took effect (to compensate it) or not."""
        while True:
            try:
                return self.wait()
            except ActivityFailure as failure:
                if not failure.is_cancelled:
                    raise


def _require_handles(handles, what):
    handles = list(handles)
    if not handles:
        raise ValueError(f"{what} needs at least one ActivityHandle")
    for handle in handles:
        if not isinstance(handle, ActivityHandle):
            raise TypeError(
                f"{what} takes ActivityHandles (from ctx.activity(...).start() or "
                f"ctx.start_activity(...)); got {type(handle).__name__} {handle!r}"
            )
    return handles


class ChildCall:
    """A child workflow of a registered type, being configured."""

    __slots__ = ("_workflow_type", "_input_json", "_workflow_id")

    def __init__(self, workflow_type, input_json="null", workflow_id=None):
        self._workflow_type = _require_name(workflow_type, "a workflow type")
        self._input_json = input_json
        self._workflow_id = workflow_id

    def input(self, value):
        """The child's input: any JSON-able value."""
        encoded = encode(value, f"the input of child workflow `{self._workflow_type}`")
        return ChildCall(self._workflow_type, encoded, self._workflow_id)

    def workflow_id(self, workflow_id):
        """The child's workflow id (default: "<parent id>/child-<seq>")."""
        _require_name(workflow_id, "a child workflow id")
        return ChildCall(self._workflow_type, self._input_json, workflow_id)

    def start(self):
        """Starts the child without waiting: returns its `ChildHandle`."""
        durable, _, _, _ = _host.bindings()
        seq = durable.start_child(self._workflow_type, self._input_json, self._workflow_id)
        return ChildHandle(self._workflow_type, seq)

    def call(self):
        """Runs the child and returns its result; raises its `WorkflowError`
        (`Cancelled` if the parent was cancelled meanwhile)."""
        return self.start().wait()


class ChildHandle:
    """A child workflow started with `ChildCall.start()`. Cancelling the
    parent while it waits cancels the child."""

    __slots__ = ("workflow_type", "_seq")

    def __init__(self, workflow_type, seq):
        self.workflow_type = workflow_type
        self._seq = seq

    def wait(self):
        durable, _, _, Err = _host.bindings()
        try:
            output = durable.await_child(self._seq)
        except Err as error:
            wire = error.value
            if wire.error_type == CANCELLED_ERROR_TYPE:
                raise Cancelled(wire.message) from None
            raise WorkflowError._from_wire(wire.error_type, wire.message, wire.details) from None
        try:
            return json.loads(output)
        except ValueError as error:
            raise WorkflowError(
                "SerializationError",
                f"could not decode the output of child `{self.workflow_type}` {output}: {error}",
            ) from None


class Update:
    """An update received by `Context.await_update`: `id`, `name`, `args`
    (decoded from JSON) and `args_json` (as the caller sent it). Its caller
    waits until the workflow answers it, once, with `Context.complete_update`."""

    __slots__ = ("id", "name", "args_json", "_completed")

    def __init__(self, id, name, args_json):
        self.id = id
        self.name = name
        self.args_json = args_json
        self._completed = False

    def __repr__(self):
        return f"Update(id={self.id!r}, name={self.name!r}, args_json={self.args_json!r})"

    @property
    def args(self):
        """The args, decoded from JSON; a `WorkflowError` of type
        `InvalidUpdateArgs` if they are not JSON."""
        return _queries.decode_args(self.args_json, f"update `{self.name}`", "InvalidUpdateArgs")

    @property
    def completed(self):
        """True once `Context.complete_update` answered it."""
        return self._completed


def _update_names(names):
    listed = [names] if isinstance(names, str) else list(names)
    if not listed:
        raise ValueError("await_update needs at least one update name")
    for name in listed:
        _require_name(name, "an update name")
    return listed


def _is_cancellation(error):
    return isinstance(error, Cancelled) or (isinstance(error, ActivityFailure) and error.is_cancelled)


def _activity_call(name, input, retry, start_to_close, schedule_to_close, heartbeat_timeout, idempotency_key):
    call = ActivityCall(name).input(input)
    if retry is not None:
        call = call.retry(retry)
    if start_to_close is not None:
        call = call.start_to_close(start_to_close)
    if schedule_to_close is not None:
        call = call.schedule_to_close(schedule_to_close)
    if heartbeat_timeout is not None:
        call = call.heartbeat_timeout(heartbeat_timeout)
    if idempotency_key is not None:
        call = call.idempotency_key(idempotency_key)
    return call


class Context:
    """The workflow's handle on the durable host; `@workflow` passes it as
    the first argument. Every method is journaled.

        @workflow
        def run(ctx, order):
            charge = ctx.call_activity("charge", order, retry=RetryPolicy(maximum_attempts=3))
            ctx.sleep(timedelta(seconds=1))
            return charge
    """

    __slots__ = ()

    # --- time and randomness -------------------------------------------

    def now(self):
        """Wall-clock time (an aware UTC datetime), recorded the first time
        and replayed after."""
        durable, _, _, _ = _host.bindings()
        return _EPOCH + datetime.timedelta(milliseconds=durable.now_ms())

    def now_ms(self):
        """`now()` as milliseconds since the Unix epoch."""
        durable, _, _, _ = _host.bindings()
        return durable.now_ms()

    def random_bytes(self, count):
        """`count` random bytes (at most 4096), recorded and replayed."""
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"random_bytes takes an int count; got {type(count).__name__} {count!r}")
        if not 0 <= count <= RANDOM_BYTES_MAX:
            raise ValueError(f"random_bytes takes 0 to {RANDOM_BYTES_MAX} bytes (RANDOM_BYTES_MAX); got {count}")
        durable, _, _, _ = _host.bindings()
        return bytes(durable.random_bytes(count))

    def random_int(self, bits=64):
        """A random non-negative int below 2**bits, recorded and replayed."""
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8 * RANDOM_BYTES_MAX:
            raise ValueError(f"random_int takes bits between 1 and {8 * RANDOM_BYTES_MAX}; got {bits!r}")
        drawn = int.from_bytes(self.random_bytes((bits + 7) // 8), "little")
        return drawn >> (-bits % 8)

    def random(self):
        """A random float in [0, 1), like `random.random()`, recorded and replayed."""
        return self.random_int(53) / (1 << 53)

    # --- timers and signals ---------------------------------------------

    def sleep(self, duration):
        """A durable timer: survives crashes and restarts. Raises `Cancelled`
        if the workflow is cancelled meanwhile."""
        duration = duration_ms(duration, "sleep's duration")
        durable, _, _, Err = _host.bindings()
        try:
            durable.sleep_ms(duration)
        except Err as error:
            raise Cancelled(error.value.message) from None

    def signal(self, name):
        """Waits for the next signal `name` and returns its JSON payload,
        decoded. Signals sent earlier are kept, each delivered once."""
        return self._await_signal(name, None, missing_is_error=True)

    def signal_timeout(self, name, timeout):
        """Like `signal`, giving up after `timeout` (a durable deadline):
        returns None when it passes. (A payload of JSON `null` reads as
        None too: send an object to tell them apart.)"""
        return self._await_signal(name, duration_ms(timeout, "signal_timeout's timeout"), missing_is_error=False)

    def _await_signal(self, name, timeout_ms, missing_is_error):
        _require_name(name, "a signal name")
        durable, _, _, Err = _host.bindings()
        try:
            payload = durable.await_signal(name, timeout_ms)
        except Err as error:
            raise Cancelled(error.value.message) from None
        if payload is None:
            if missing_is_error:
                raise WorkflowError("SignalMissing", f"no signal `{name}`")
            return None
        try:
            return json.loads(payload)
        except ValueError as error:
            raise WorkflowError(
                "SerializationError", f"could not decode signal `{name}` ({payload}): {error}"
            ) from None

    # --- queries and updates --------------------------------------------

    def on_query(self, name, handler=None):
        """Answers query `name` with `handler` from now on: a reader calls
        `POST /v1/executions/{id}/queries/{name}` (`reprise query`) and gets
        what `handler(args)` returns (JSON-able) for the decoded JSON args,
        computed from the state the durable history leads to. A handler
        without parameters takes `null` args. Nothing is journaled; the
        handler only reads state and must not make durable calls (the query
        fails if it does). Raise a `WorkflowError` to answer with an error.
        Registering a name again replaces its handler. Returns `handler`,
        or, without one, a decorator::

            ctx.on_query("balance", lambda: {"balance": state["balance"]})

            @ctx.on_query("item")
            def item(args):
                return state["items"][args["index"]]
        """
        _require_name(name, "a query name")
        if handler is None:
            return lambda handler: self.on_query(name, handler)
        _queries.add_query(name, handler)
        return handler

    def on_update_validator(self, name, validator=None):
        """Checks updates named `name` before they are accepted:
        `validator(args)` raising (or returning) a `WorkflowError` rejects
        the update — its caller gets the error — without touching the
        history; returning anything else accepts it. It sees the state the
        durable history leads to, like a query, and must not make durable
        calls. Updates without a validator are accepted. Returns
        `validator`, or, without one, a decorator."""
        _require_name(name, "an update name")
        if validator is None:
            return lambda validator: self.on_update_validator(name, validator)
        _queries.add_validator(name, validator)
        return validator

    def await_update(self, names, timeout=None):
        """Waits for the next update named `names` (a str, or a list of
        them; oldest first, each delivered once) and returns it as an
        `Update`, or None when `timeout` (a durable deadline) passes first.
        Answer it with `complete_update`: its caller waits for that answer.
        Raises `Cancelled` if the workflow is cancelled meanwhile."""
        names = _update_names(names)
        timeout_ms = None if timeout is None else duration_ms(timeout, "await_update's timeout")
        durable, _, _, Err = _host.bindings()
        try:
            request = durable.await_update(names, timeout_ms)
        except Err as error:
            raise Cancelled(error.value.message) from None
        if request is None:
            return None
        return Update(request.update_id, request.name, request.args)

    def complete_update(self, update, result=None, error=None):
        """Answers `update`, once: its caller gets `result` as JSON, or
        `error` (a `WorkflowError`), once the answer is durable. A result
        that is not JSON-able answers with a `SerializationError`."""
        if not isinstance(update, Update):
            raise TypeError(
                f"complete_update takes the Update that ctx.await_update returned; "
                f"got {type(update).__name__} {update!r}"
            )
        if update._completed:
            raise ValueError(f"update `{update.name}` ({update.id}) was completed already: each update is answered once")
        durable, types, Ok, Err = _host.bindings()
        if error is not None:
            if not isinstance(error, WorkflowError):
                raise TypeError(
                    f"complete_update's error is a WorkflowError, e.g. WorkflowError(\"Rejected\", \"…\"); "
                    f"got {type(error).__name__} {error!r}"
                )
            if result is not None:
                raise ValueError("complete_update takes a result or an error, not both")
            outcome = Err(error._to_wit(types))
        else:
            try:
                outcome = Ok(encode(result, f"the answer to update `{update.name}`"))
            except (TypeError, ValueError) as failure:
                serialization = WorkflowError(
                    "SerializationError", f"could not encode the answer to update `{update.name}`: {failure}"
                )
                outcome = Err(serialization._to_wit(types))
        durable.complete_update(update.id, outcome)
        update._completed = True

    def handle_update(self, name, handler, timeout=None):
        """Waits for one update named `name`, runs `handler(args)` on its
        decoded args and answers it with what the handler returns, or with
        the `WorkflowError` it raises (any other exception answers with an
        `UpdateFailed` error). Unlike a validator, the handler is workflow
        code: it may call activities, sleep, wait for signals. Returns True,
        or False if `timeout` passed first; raises `Cancelled` if the
        workflow is cancelled while it waits — or while the handler runs,
        after answering the update with that error::

            while ctx.handle_update("deposit", deposit):
                pass
        """
        _require_name(name, "an update name")
        handler = _queries.Handler(handler, f"the handler of update `{name}`")
        update = self.await_update(name, timeout)
        if update is None:
            return False
        what = f"update `{name}`"
        try:
            result = handler(update.args, update.args_json, what, "InvalidUpdateArgs")
        except WorkflowError as error:
            self.complete_update(update, error=error)
            if _is_cancellation(error):
                # Answered, and still the workflow's cancellation.
                raise
            return True
        except Exception as error:
            self.complete_update(update, error=_queries.failure("UpdateFailed", what, error))
            return True
        self.complete_update(update, result)
        return True

    # --- activities -----------------------------------------------------

    def activity(self, name):
        """Starts building a call of activity `name` (see `ActivityCall`)."""
        return ActivityCall(name)

    def call_activity(
        self,
        name,
        input=None,
        *,
        retry=None,
        start_to_close=None,
        schedule_to_close=None,
        heartbeat_timeout=None,
        idempotency_key=None,
    ):
        """`ctx.activity(name).input(input)…call()` with the options as keywords."""
        return _activity_call(
            name, input, retry, start_to_close, schedule_to_close, heartbeat_timeout, idempotency_key
        ).call()

    def start_activity(
        self,
        name,
        input=None,
        *,
        retry=None,
        start_to_close=None,
        schedule_to_close=None,
        heartbeat_timeout=None,
        idempotency_key=None,
    ):
        """Like `call_activity`, without waiting: returns an `ActivityHandle`."""
        return _activity_call(
            name, input, retry, start_to_close, schedule_to_close, heartbeat_timeout, idempotency_key
        ).start()

    def await_any(self, handles):
        """Waits for the first of `handles` to complete — first in the
        history, so live and replay agree — and returns that handle; its
        `wait()` then answers at once (output, or its `ActivityFailure`).
        Raises a CANCELLED `ActivityFailure` if the workflow is cancelled."""
        handles = _require_handles(handles, "await_any")
        for handle in handles:
            if handle.done:
                raise ValueError(
                    f"await_any got {handle!r}, which completed before: "
                    f"pass only the handles still pending"
                )
        durable, _, Ok, _ = _host.bindings()
        seq, outcome = durable.await_any([handle._seq for handle in handles])
        first = next((handle for handle in handles if handle._seq == seq), None)
        if first is None:
            raise AssertionError(f"the host answered await_any with seq {seq}, which was not asked for")
        first._settle_from(outcome, Ok)
        return first

    def await_first_n(self, handles, n):
        """Waits until `n` of `handles` completed; returns those handles in
        the order the history observed them (all, if fewer than `n`)."""
        pending = _require_handles(handles, "await_first_n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"await_first_n's n is an int >= 0; got {n!r}")
        finished = []
        while len(finished) < n and pending:
            first = self.await_any(pending)
            pending.remove(first)
            finished.append(first)
        return finished

    def await_all(self, handles):
        """Waits for every handle in order and returns their outputs; raises
        the first `ActivityFailure` (in handle order), like `asyncio.gather`."""
        return [handle.wait() for handle in _require_handles(handles, "await_all")]

    # --- child workflows --------------------------------------------------

    def child_workflow(self, workflow_type):
        """Starts building a child workflow of a registered type (see `ChildCall`)."""
        return ChildCall(workflow_type)

    def call_child(self, workflow_type, input=None, *, workflow_id=None):
        """Runs a child workflow and returns its result."""
        call = ChildCall(workflow_type).input(input)
        if workflow_id is not None:
            call = call.workflow_id(workflow_id)
        return call.call()

    # --- versioning and long life -------------------------------------------

    def patched(self, change_id):
        """Versioning: whether this execution takes the code path added by
        change `change_id`. New executions (and old ones that reach this
        point only now) get True; an execution recorded by the code before
        the change replays with False. The first answer holds for the run::

            if ctx.patched("send-receipt"):
                ctx.call_activity("receipt", order)

        Once no execution that could take the old path is left, replace the
        call with `deprecate_patch`; later, remove that too."""
        _require_name(change_id, "a change id")
        durable, _, _, _ = _host.bindings()
        return durable.patched(change_id)

    def deprecate_patch(self, change_id):
        """The step after `patched` once every execution that could take the
        old path has finished: only the new path is left in the code."""
        _require_name(change_id, "a change id")
        durable, _, _, _ = _host.bindings()
        durable.deprecate_patch(change_id)

    def continue_as_new(self, input):
        """Ends this run and starts a fresh one of the same workflow id with
        `input` (JSON-able) and an empty history: how a workflow that runs
        for months keeps its history small. Never returns. Signals not yet
        received move to the next run."""
        durable, _, _, _ = _host.bindings()
        durable.continue_as_new(encode(input, "the continue-as-new input"))
        raise AssertionError("the host stops the workflow at continue_as_new")

    def upsert_search_attributes(self, attributes):
        """Sets search attributes of this run — a dict of names to str, int,
        float or bool, None to remove one — that lists filter on
        (`reprise list --search-attribute status=shipped`). Journaled."""
        if not isinstance(attributes, dict):
            raise TypeError(f"search attributes are a dict; got {type(attributes).__name__}")
        durable, _, _, _ = _host.bindings()
        durable.upsert_search_attributes(encode(attributes, "the search attributes"))

    # --- identity and logs --------------------------------------------------

    @property
    def info(self):
        """The execution's `WorkflowInfo`."""
        durable, _, _, _ = _host.bindings()
        info = durable.info()
        return WorkflowInfo(info.workflow_id, info.run_id, info.workflow_type, info.tenant)

    def log(self, level, message):
        """A log line tied to this execution; silent while replaying.
        `level` is a `logging` level (`logging.INFO`…). Plain `logging`
        calls arrive here too."""
        from .logs import emit

        emit(level, message)


__all__ = ["ActivityCall", "ActivityHandle", "ChildCall", "ChildHandle", "Context", "Update", "WorkflowInfo"]
