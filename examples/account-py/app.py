"""The account of examples/account in Python, on the Python SDK: it lives
until it is closed; queries read its balance, updates change it and answer
the caller.

- query `balance` → `{"owner", "balance", "operations"}`
- update `deposit` `{"amount"}` → `{"balance"}`; the validator rejects
  amounts ≤ 0 (`InvalidAmount`) without touching the history.
- update `withdraw` `{"amount"}` → `{"balance"}`; the validator rejects
  more than the balance (`InsufficientFunds`); the handler checks again,
  since another withdrawal may be accepted between the two.
- update `close` → `{"balance"}`, and the workflow returns
  `{"owner", "balance", "operations"}`.

Input: `{"owner": str, "balance"?: int}` (balance 0 unless given).
"""

import json

from reprise_sdk import WorkflowError, workflow


def compact(value):
    return json.dumps(value, separators=(",", ":"))


def amount_of(name, args):
    """The `amount` of an update's args: an integer, as the Rust example's
    `Amount` reads it."""
    amount = args.get("amount") if isinstance(args, dict) else None
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise WorkflowError(
            "InvalidUpdateArgs",
            f"the args of update `{name}` ({compact(args)}) do not fit: `amount` is an integer",
        )
    return amount


def positive(amount):
    if amount <= 0:
        raise WorkflowError("InvalidAmount", f"amounts are positive; got {amount}")


def covered(state, amount):
    if amount > state["balance"]:
        raise WorkflowError(
            "InsufficientFunds", f"cannot withdraw {amount} from a balance of {state['balance']}"
        )


def apply(state, update):
    if update.name != "close":
        amount = amount_of(update.name, update.args)
        positive(amount)
        if update.name == "withdraw":
            covered(state, amount)
            state["balance"] -= amount
        else:
            state["balance"] += amount
        state["operations"] += 1
    return {"balance": state["balance"]}


@workflow
def run(ctx, args):
    owner = args.get("owner") if isinstance(args, dict) else None
    balance = args.get("balance", 0) if isinstance(args, dict) else None
    if not isinstance(owner, str) or isinstance(balance, bool) or not isinstance(balance, int):
        raise WorkflowError(
            "InvalidInput",
            f"the workflow input does not match the expected type "
            f'{{"owner": string, "balance"?: integer}}: {compact(args)}',
        )
    state = {"owner": owner, "balance": balance, "operations": 0}

    ctx.on_query("balance", lambda: dict(state))
    ctx.on_update_validator("deposit", lambda args: positive(amount_of("deposit", args)))

    def withdraw_allowed(args):
        amount = amount_of("withdraw", args)
        positive(amount)
        covered(state, amount)

    ctx.on_update_validator("withdraw", withdraw_allowed)

    while True:
        update = ctx.await_update(["deposit", "withdraw", "close"])
        if update is None:
            continue
        closing = update.name == "close"
        try:
            result = apply(state, update)
        except WorkflowError as error:
            ctx.complete_update(update, error=error)
        else:
            ctx.complete_update(update, result)
        if closing:
            return dict(state)
