"""Activities in Python, on the SDK (the `activity` world): a charge that a
declined card fails for good, and a step that fails its first attempts.

Built by scripts/build-guests into build/guests/activities-py.wasm with
`python3 -m reprise_sdk.build activities.py -o activities-py.wasm --world activity`.
"""

from reprise_sdk import ActivityError
from reprise_sdk.activity import activity

DECLINED_CARD_PREFIX = "4000"


@activity("py-charge")
def charge(ctx, order):
    if order["card"].startswith(DECLINED_CARD_PREFIX):
        # A business failure: retrying cannot help.
        raise ActivityError("CardDeclined", f"card {order['card']} was declined", non_retryable=True)
    return {"charge_id": f"ch-{ctx.idempotency_key}", "cents": order["cents"], "attempt": ctx.attempt}


@activity("py-flaky")
def flaky(ctx, spec):
    """Fails its first `fail_times` attempts with a plain exception, which
    the SDK reports as a retryable `RuntimeError`."""
    if ctx.attempt <= spec["fail_times"]:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt
