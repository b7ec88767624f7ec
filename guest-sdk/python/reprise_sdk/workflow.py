"""`@workflow`: the function a workflow component runs."""

import inspect
import json

from . import _host, _queries, logs
from ._json import encode
from .context import Context
from .errors import WorkflowError

# A workflow component exports one `run` (the WIT's `workflow` world).
_registered = None


def workflow(function):
    """Makes `function(ctx, input)` the workflow this component runs.

    `input` is the execution's JSON input, decoded; the return value (any
    JSON-able value) is its result. Raise `WorkflowError` to fail it; an
    `ActivityFailure` or `Cancelled` let through fails (or cancels) it the
    same way. Any other exception is a bug: it traps, like a panic in Rust.

        @workflow
        def run(ctx, order):
            return ctx.call_activity("charge", order)
    """
    global _registered
    if not callable(function):
        raise TypeError(f"@workflow decorates a function `def run(ctx, input)`; got {function!r}")
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        raise TypeError(
            f"@workflow decorates a function taking (ctx, input); "
            f"`{function.__qualname__}` has the signature {inspect.signature(function)}"
        ) from None
    if _registered is not None and _registered is not function:
        raise ValueError(
            f"a component runs one workflow: `{_registered.__qualname__}` is already "
            f"decorated with @workflow, so `{function.__qualname__}` cannot be too "
            f"(build each workflow into its own component)"
        )
    _registered = function
    return function


def registered_workflow():
    return _registered


def run_registered(input_json):
    """Runs the registered workflow on `input_json`: its JSON result, or
    a `WorkflowError` raised for the component's export to return."""
    if _registered is None:
        raise WorkflowError(
            "NoWorkflow",
            "this component's module defines no @workflow function (decorate `def run(ctx, input)`)",
        )
    logs.install()
    _queries.reset()
    try:
        workflow_input = json.loads(input_json)
    except ValueError as error:
        raise WorkflowError("InvalidInput", f"the workflow input is not JSON: {error}") from None
    try:
        output = _registered(Context(), workflow_input)
    finally:
        # A query of a finished execution is answered from its final state.
        _host.answer_waiting_query()
    try:
        return encode(output, "the workflow's result")
    except (TypeError, ValueError) as error:
        raise WorkflowError("SerializationError", f"could not encode the workflow output: {error}") from None
