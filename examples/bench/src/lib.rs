//! The benchmark workflow: `steps` sequential no-op "add one" activities,
//! each feeding the next (chain10 uses steps = 10), through a Wasm
//! activity, the built-in HTTP activity or an external worker.

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    steps: u64,
    /// Who adds one: the Wasm activity (default), the built-in `http`
    /// activity posting to `url`, or whatever serves `add-one` (workers).
    #[serde(default)]
    via_http: Option<String>,
}

struct Chain;

impl Workflow for Chain {
    type Input = Input;
    type Output = u64;

    fn run(ctx: &Context, input: Input) -> Result<u64, WorkflowError> {
        let mut value = 0u64;
        for _ in 0..input.steps {
            value = match &input.via_http {
                None => ctx.activity("add-one").input(&value).call()?,
                Some(url) => {
                    let request =
                        serde_json::json!({ "method": "POST", "url": url, "body": value });
                    let response: serde_json::Value =
                        ctx.activity("http").input(&request).call()?;
                    response["body"].as_u64().ok_or_else(|| {
                        WorkflowError::new("BadResponse", format!("no number in {response}"))
                    })?
                }
            };
        }
        Ok(value)
    }
}

reprise_sdk::export_workflow!(Chain);
