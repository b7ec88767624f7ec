// The account workflow in TypeScript, on the TypeScript SDK (guest-sdk/js):
// the same input, query, updates, errors and output as examples/account
// (Rust). An account that lives until it is closed: queries read its
// balance, updates change it and answer the caller.
//
// - query `balance` → `{"owner", "balance", "operations"}`
// - update `deposit` `{"amount"}` → `{"balance"}`; the validator rejects
//   amounts ≤ 0 (`InvalidAmount`) without touching the history.
// - update `withdraw` `{"amount"}` → `{"balance"}`; the validator rejects
//   more than the balance (`InsufficientFunds`); the handler checks again,
//   since another withdrawal may be accepted between the two.
// - update `close` → `{"balance"}`, and the workflow returns
//   `{"owner", "balance", "operations"}`.

import { type Update, WorkflowError, workflow } from "reprise-sdk";

interface Input {
  owner: string;
  balance?: number;
}

interface State {
  owner: string;
  balance: number;
  operations: number;
}

interface Amount {
  amount: number;
}

interface Balance {
  balance: number;
}

/** The args of update `name` (`deposit`, `withdraw`), checked as the Rust
 * version's `Amount { amount: i64 }` decodes them, with its error type. */
function amountOf(name: string, args: unknown): Amount {
  const amount = (args as { amount?: unknown } | null)?.amount;
  if (typeof amount !== "number" || !Number.isSafeInteger(amount)) {
    throw new WorkflowError(
      "InvalidUpdateArgs",
      `the args of update \`${name}\` (${JSON.stringify(args)}) do not fit: \`amount\` is an integer`,
    );
  }
  return { amount };
}

function positive(amount: Amount): void {
  if (amount.amount <= 0) {
    throw new WorkflowError("InvalidAmount", `amounts are positive; got ${amount.amount}`);
  }
}

function covered(state: State, amount: Amount): void {
  if (amount.amount > state.balance) {
    throw new WorkflowError("InsufficientFunds", `cannot withdraw ${amount.amount} from a balance of ${state.balance}`);
  }
}

export const run = workflow(async (ctx, input: Input): Promise<State> => {
  const state: State = { owner: input.owner, balance: input.balance ?? 0, operations: 0 };
  ctx.onQuery("balance", () => ({ ...state }));
  ctx.onUpdateValidator("deposit", (args) => positive(amountOf("deposit", args)));
  ctx.onUpdateValidator("withdraw", (args) => {
    const amount = amountOf("withdraw", args);
    positive(amount);
    covered(state, amount);
  });
  for (;;) {
    const update = await ctx.awaitUpdate(["deposit", "withdraw", "close"]);
    if (update === undefined) continue;
    const closing = update.name === "close";
    let result: Balance;
    try {
      result = apply(state, update);
    } catch (error) {
      if (!(error instanceof WorkflowError)) throw error;
      ctx.failUpdate(update, error);
      continue;
    }
    ctx.completeUpdate(update, result);
    if (closing) return { ...state };
  }
});

function apply(state: State, update: Update): Balance {
  if (update.name !== "close") {
    const amount = amountOf(update.name, update.args);
    positive(amount);
    if (update.name === "withdraw") {
      covered(state, amount);
      state.balance -= amount.amount;
    } else {
      state.balance += amount.amount;
    }
    state.operations += 1;
  }
  return { balance: state.balance };
}
