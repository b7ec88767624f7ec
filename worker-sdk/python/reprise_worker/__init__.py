"""Serve Reprise activities from a Python process.

    from reprise_worker import Worker, NonRetryableError

    def charge(order, ctx):
        ctx.heartbeat({"step": "charging"})
        return {"charge_id": provider.charge(order, idempotency_key=ctx.idempotency_key)}

    Worker("http://127.0.0.1:7979", activities={"charge": charge}).run()

See `Worker`, `ActivityContext` and the errors in `reprise_worker.errors`.
"""

from .errors import ActivityError, NonRetryableError, TaskClosedError, WorkerError
from .worker import ActivityContext, Worker

__all__ = [
    "ActivityContext",
    "ActivityError",
    "NonRetryableError",
    "TaskClosedError",
    "Worker",
    "WorkerError",
]
