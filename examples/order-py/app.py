"""An order in Python on the SDK: a retried charge, a saga, an approval
signal with a durable deadline.

reserve stock → charge (retried; a declined card is not) → wait for the
`approve` signal (up to `approval_timeout_ms`) → ship. When a step fails or
the approval does not come, the steps that took effect are undone in
reverse — the charge refunded, then the stock released — each once, and the
order fails with the original error and what was rolled back.

It runs on the example activities of examples/hello-activities: `record`
(a ledger line per idempotency key: the side effects, `step` saying which)
and `flaky` (fails its first `fail_times` attempts with `error_type`).
"""

from datetime import timedelta

from reprise_sdk import ActivityFailure, RetryPolicy, Saga, WorkflowError, workflow

# Ledger steps: forward steps, and 100 + the step for their compensation.
RESERVE, CHARGE, SHIP = 1, 2, 3
COMPENSATION = 100


def ledger_entry(ctx, step, key):
    return ctx.activity("record").input({"step": step}).idempotency_key(key)


@workflow
def run(ctx, order):
    order_id = order["order_id"]
    retry_interval = timedelta(milliseconds=order.get("retry_interval_ms", 20))
    saga = Saga()
    try:
        saga.step(
            "reserve",
            ledger_entry(ctx, RESERVE, f"reserve-{order_id}"),
            lambda reserved: ledger_entry(ctx, COMPENSATION + RESERVE, f"release-{order_id}"),
        )
        charged_on_attempt = saga.step(
            "charge",
            ctx.activity("flaky")
            .input({"fail_times": order.get("charge_failures", 0), "error_type": order.get("charge_error", "Transient")})
            .retry(RetryPolicy(initial_interval=retry_interval, maximum_attempts=3, non_retryable=["PaymentDeclined"]))
            .idempotency_key(f"charge-{order_id}")
            .start_to_close(timedelta(seconds=10)),
            lambda attempt: ledger_entry(ctx, COMPENSATION + CHARGE, f"refund-{order_id}"),
        )
        approval = ctx.signal_timeout("approve", timedelta(milliseconds=order.get("approval_timeout_ms", 60_000)))
        if approval is None:
            raise WorkflowError("ApprovalTimedOut", f"order {order_id} was not approved in time")
        if order.get("fail_shipping", False):
            ctx.activity("flaky").input(
                {"fail_times": 1, "error_type": "ShippingUnavailable", "non_retryable": True}
            ).idempotency_key(f"ship-{order_id}").call()
        shipment = ledger_entry(ctx, SHIP, f"ship-{order_id}").call()
    except (ActivityFailure, WorkflowError) as failure:
        raise saga.compensate().into_error(failure)
    return {
        "order_id": order_id,
        "charged_on_attempt": charged_on_attempt,
        "approved_by": approval.get("by"),
        "shipment_entry": shipment["entry"],
    }
