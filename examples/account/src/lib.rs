//! An account that lives until it is closed: queries read its balance,
//! updates change it and answer the caller.
//!
//! - query `balance` → `{"owner", "balance", "operations"}`
//! - update `deposit` `{"amount"}` → `{"balance"}`; the validator rejects
//!   amounts ≤ 0 (`InvalidAmount`) without touching the history.
//! - update `withdraw` `{"amount"}` → `{"balance"}`; the validator rejects
//!   more than the balance (`InsufficientFunds`); the handler checks again,
//!   since another withdrawal may be accepted between the two.
//! - update `close` → `{"balance"}`, and the workflow returns
//!   `{"owner", "balance", "operations"}`.

use std::cell::RefCell;
use std::rc::Rc;

use reprise_sdk::{Context, Update, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Input {
    pub owner: String,
    #[serde(default)]
    pub balance: i64,
}

#[derive(Clone, Serialize)]
pub struct State {
    pub owner: String,
    pub balance: i64,
    pub operations: u64,
}

#[derive(Deserialize)]
struct Amount {
    amount: i64,
}

#[derive(Serialize)]
struct Balance {
    balance: i64,
}

fn positive(amount: &Amount) -> Result<(), WorkflowError> {
    if amount.amount <= 0 {
        return Err(WorkflowError::new(
            "InvalidAmount",
            format!("amounts are positive; got {}", amount.amount),
        ));
    }
    Ok(())
}

fn covered(state: &State, amount: &Amount) -> Result<(), WorkflowError> {
    if amount.amount > state.balance {
        return Err(WorkflowError::new(
            "InsufficientFunds",
            format!(
                "cannot withdraw {} from a balance of {}",
                amount.amount, state.balance
            ),
        ));
    }
    Ok(())
}

struct Account;

impl Workflow for Account {
    type Input = Input;
    type Output = State;

    fn run(ctx: &Context, input: Input) -> Result<State, WorkflowError> {
        let state = Rc::new(RefCell::new(State {
            owner: input.owner,
            balance: input.balance,
            operations: 0,
        }));
        let read = state.clone();
        ctx.on_query("balance", move |(): ()| Ok(read.borrow().clone()));
        ctx.on_update_validator("deposit", |amount: Amount| positive(&amount));
        let read = state.clone();
        ctx.on_update_validator("withdraw", move |amount: Amount| {
            positive(&amount)?;
            covered(&read.borrow(), &amount)
        });
        loop {
            let Some(update) = ctx.await_update(&["deposit", "withdraw", "close"], None)? else {
                continue;
            };
            let closing = update.name() == "close";
            let result = apply(&mut state.borrow_mut(), &update);
            ctx.complete_update(&update, result);
            if closing {
                return Ok(state.borrow().clone());
            }
        }
    }
}

fn apply(state: &mut State, update: &Update) -> Result<Balance, WorkflowError> {
    if update.name() != "close" {
        let amount: Amount = update.args()?;
        positive(&amount)?;
        if update.name() == "withdraw" {
            covered(state, &amount)?;
            state.balance -= amount.amount;
        } else {
            state.balance += amount.amount;
        }
        state.operations += 1;
    }
    Ok(Balance {
        balance: state.balance,
    })
}

reprise_sdk::export_workflow!(Account);
