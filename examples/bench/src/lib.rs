//! The benchmark workflow: `steps` sequential calls of the no-op activity
//! `add-one`, each feeding the next (chain10 uses steps = 10).

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    steps: u64,
}

struct Chain;

impl Workflow for Chain {
    type Input = Input;
    type Output = u64;

    fn run(ctx: &Context, input: Input) -> Result<u64, WorkflowError> {
        let mut value = 0u64;
        for _ in 0..input.steps {
            value = ctx.activity("add-one").input(&value).call()?;
        }
        Ok(value)
    }
}

reprise_sdk::export_workflow!(Chain);
