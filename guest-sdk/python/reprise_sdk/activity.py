"""Activities in Python: functions served by an activity component (the
WIT's `activity` world). Activities run with real clocks and randomness
and are executed at least once: use `ctx.idempotency_key` to make a side
effect happen once.

    from reprise_sdk.activity import ActivityContext, activity
    from reprise_sdk import ActivityError

    @activity("charge")
    def charge(ctx, order):
        if order["card"].startswith("4000"):
            raise ActivityError("CardDeclined", "declined", non_retryable=True)
        return {"charge_id": f"ch-{ctx.idempotency_key}"}

Build: `python3 -m reprise_sdk.build activities.py -o activities.wasm --world activity`.
"""

import inspect
import json
import sys
import traceback

from . import _json
from .errors import ActivityError

# name → function, in registration order (the component's `names`).
_served = {}


def activity(name=None):
    """Serves the decorated `function(ctx, input)` as activity `name`
    (default: the function's name with `_` as `-`). `input` is the call's
    JSON input, decoded; the return value (JSON-able) is its output. Raise
    `ActivityError` to fail the attempt; any other exception fails it
    retryably, with the exception's class name as the error type."""

    def register(function):
        served_name = name if name is not None else function.__name__.replace("_", "-")
        if not isinstance(served_name, str) or not served_name:
            raise TypeError(f"an activity name is a non-empty str; got {served_name!r}")
        try:
            inspect.signature(function).bind(None, None)
        except TypeError:
            raise TypeError(
                f"@activity decorates a function taking (ctx, input); "
                f"`{function.__qualname__}` has the signature {inspect.signature(function)}"
            ) from None
        if served_name in _served and _served[served_name] is not function:
            raise ValueError(f"activity `{served_name}` is served twice: by `{_served[served_name].__qualname__}` and `{function.__qualname__}`")
        _served[served_name] = function
        return function

    if callable(name):
        # Used bare: `@activity`.
        function, name = name, None
        return register(function)
    return register


def _host():
    try:
        from wit_world.imports import activity_context
    except ImportError as error:
        raise RuntimeError(
            "ActivityContext works only inside an activity component: build it with "
            "`python3 -m reprise_sdk.build activities.py -o activities.wasm --world activity`"
        ) from error
    return activity_context


class ActivityContext:
    """What an activity attempt knows about the call it serves."""

    __slots__ = ()

    @property
    def idempotency_key(self):
        """The same on every attempt and replay: pass it to providers."""
        return _host().idempotency_key()

    @property
    def attempt(self):
        """1 for the first attempt, 2 for the first retry, …"""
        return _host().attempt()

    @property
    def workflow_id(self):
        return _host().workflow_id()

    @property
    def run_id(self):
        return _host().run_id()

    @property
    def activity_name(self):
        return _host().activity_name()

    @property
    def traceparent(self):
        """This attempt's W3C trace context: send it as the `traceparent`
        header so what the activity calls joins the workflow's trace."""
        return _host().traceparent()

    def heartbeat(self, details=None):
        """Tells the host this attempt is alive, with JSON-able progress
        details a later attempt can read if this one fails."""
        encoded = None if details is None else _json.encode(details, "heartbeat details")
        _host().heartbeat(encoded)

    def last_heartbeat_details(self):
        """The details of the last heartbeat of an earlier attempt, decoded, or None."""
        details = _host().last_heartbeat_details()
        return None if details is None else _json.decode_details(details)


def served_names():
    return list(_served)


def run_served(name, input_json):
    """Runs activity `name`: its JSON output, or the `ActivityError` to return."""
    function = _served.get(name)
    if function is None:
        raise ActivityError(
            "UnknownActivity", f"this component does not serve activity `{name}`", non_retryable=True
        )
    try:
        activity_input = json.loads(input_json)
    except ValueError as error:
        raise ActivityError("InvalidInput", f"the activity input is not JSON: {error}", non_retryable=True) from None
    try:
        output = function(ActivityContext(), activity_input)
    except ActivityError:
        raise
    except Exception as error:
        # An unexpected exception is one failed attempt, worth retrying:
        # the traceback goes to stderr, which the host captures.
        traceback.print_exc(file=sys.stderr)
        raise ActivityError(type(error).__name__, str(error)) from None
    try:
        return _json.encode(output, f"the output of activity `{name}`")
    except (TypeError, ValueError) as error:
        raise ActivityError("SerializationError", str(error), non_retryable=True) from None


__all__ = ["ActivityContext", "activity"]
