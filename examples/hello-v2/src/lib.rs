//! A changed build of `hello` that calls its activities in another order:
//! replaying a history recorded by `hello` must fail with a readable
//! nondeterminism error.

use std::time::{SystemTime, UNIX_EPOCH};

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    name: String,
}

struct HelloV2;

impl Workflow for HelloV2 {
    type Input = Input;
    type Output = serde_json::Value;

    fn run(ctx: &Context, input: Input) -> Result<serde_json::Value, WorkflowError> {
        // The same reads as `hello`, in the same order…
        let _ = ctx.now();
        let _ = SystemTime::now().duration_since(UNIX_EPOCH);
        let _: u64 = ctx.random();
        let _: u64 = rand::random();
        // …then `record` before `greet`: a different command at that seq.
        let recorded: serde_json::Value = ctx
            .activity("record")
            .input(&serde_json::json!({ "step": 1, "work_ms": 0 }))
            .call()?;
        let greeting: serde_json::Value = ctx
            .activity("greet")
            .input(&serde_json::json!({ "name": input.name }))
            .call()?;
        Ok(serde_json::json!({ "greeting": greeting, "recorded": recorded }))
    }
}

reprise_sdk::export_workflow!(HelloV2);
