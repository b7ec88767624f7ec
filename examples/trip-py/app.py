"""The trip saga in Python, on the Python SDK: the same inputs, output,
activity calls and compensations as examples/trip (Rust).

Reserve inventory for every leg → charge → provision → notify. When a step
fails, the steps that succeeded are undone in reverse — the charge
refunded, the reservations released — each once, even across crashes, and
the workflow fails with the original error and what was rolled back.

Dict literals list their keys in sorted order, as the Rust version's
`json!` writes them, so both journal byte-identical activity inputs.
"""

from datetime import timedelta

from reprise_sdk import RetryPolicy, Saga, WorkflowError, workflow

# Attempts a forward step gets.
STEP_ATTEMPTS = 5
# Compensations retry until they succeed.
UNTIL_SUCCESS = 0


def post(ctx, trip, url, body, key, maximum_attempts):
    """A POST through the built-in `http` activity with a business key."""
    interval = trip.get("initial_interval_ms", 50)
    return (
        ctx.activity("http")
        .input({"body": body, "method": "POST", "url": url})
        .idempotency_key(key)
        .retry(
            RetryPolicy(
                initial_interval=timedelta(milliseconds=interval),
                maximum_interval=timedelta(milliseconds=interval * 10),
                maximum_attempts=maximum_attempts,
            )
        )
    )


def reserve_all(ctx, trip, saga):
    for leg in trip["legs"]:
        reserve = post(
            ctx,
            trip,
            f"{trip['inventory_url']}/reservations",
            {"item": leg, "order_id": trip["trip_id"]},
            f"reserve-{trip['trip_id']}-{leg}",
            STEP_ATTEMPTS,
        )
        saga.step(
            f"reserve {leg}",
            reserve,
            lambda reservation, leg=leg: post(
                ctx,
                trip,
                f"{trip['inventory_url']}/releases",
                {"reservation_id": reservation["body"].get("reservation_id")},
                f"release-{trip['trip_id']}-{leg}",
                UNTIL_SUCCESS,
            ),
        )


def charge(ctx, trip, saga):
    charge_call = post(
        ctx,
        trip,
        f"{trip['payments_url']}/charges",
        {"amount_cents": trip["amount_cents"], "card": trip.get("card", "4242"), "order_id": trip["trip_id"]},
        f"charge-{trip['trip_id']}",
        STEP_ATTEMPTS,
    )
    saga.step(
        "charge",
        charge_call,
        lambda charged: post(
            ctx,
            trip,
            f"{trip['payments_url']}/refunds",
            {"charge_id": charged["body"].get("charge_id")},
            f"refund-{trip['trip_id']}",
            UNTIL_SUCCESS,
        ),
    )


def steps(ctx, trip, saga):
    reserve_all(ctx, trip, saga)
    charge(ctx, trip, saga)
    provisioned = ctx.call_activity(
        "provision-trip", {"fail": trip.get("fail_provision", False), "trip_id": trip["trip_id"]}
    )
    ctx.call_activity("notify", {"trip_id": trip["trip_id"]})
    return provisioned


@workflow
def run(ctx, trip):
    saga = Saga(
        continue_on_failure=trip.get("continue_on_failure", True),
        parallel=trip.get("parallel_compensation", False),
    )
    try:
        provisioned = steps(ctx, trip, saga)
    except WorkflowError as error:
        raise saga.compensate().into_error(error) from None
    return {"booked": provisioned, "trip_id": trip["trip_id"]}
