"""Write Reprise workflows in Python.

A workflow is deterministic code that reaches the world only through its
`Context`: every call is journaled by the host and replayed after a crash,
so the workflow resumes where it was. Plain `time` and `random` are
journaled too (the host virtualizes WASI); files, sockets and HTTP are
denied — do I/O in activities.

    from datetime import timedelta
    from reprise_sdk import RetryPolicy, workflow

    @workflow
    def run(ctx, order):
        charge = (ctx.activity("charge")
                  .input({"order": order["id"], "cents": order["cents"]})
                  .retry(RetryPolicy(maximum_attempts=3, non_retryable=["CardDeclined"]))
                  .idempotency_key(f"charge-{order['id']}")
                  .call())
        ctx.sleep(timedelta(seconds=1))
        return charge

Build it into a component with `python3 -m reprise_sdk.build app.py -o app.wasm`.
"""

from .context import ActivityCall, ActivityHandle, ChildCall, ChildHandle, Context, Update, WorkflowInfo
from .errors import ActivityError, ActivityFailure, Cancelled, FailureReason, WorkflowError
from .options import RetryPolicy
from .saga import CompensationReport, Saga
from .workflow import workflow

__all__ = [
    "ActivityCall",
    "ActivityError",
    "ActivityFailure",
    "ActivityHandle",
    "Cancelled",
    "ChildCall",
    "ChildHandle",
    "CompensationReport",
    "Context",
    "FailureReason",
    "RetryPolicy",
    "Saga",
    "Update",
    "WorkflowError",
    "WorkflowInfo",
    "workflow",
]
