//! An "eternal" counter: each run counts one and continues as new, so the
//! history of any run stays a few events long however long the count.
//! With `pause`, every run first waits for a `next` signal, so a test can
//! act between runs (rebind the type, send several signals at once). Each
//! run sets the search attribute `count`.

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Input {
    pub count: u64,
    pub until: u64,
    #[serde(default)]
    pub pause: bool,
    /// The payloads of the `next` signals the runs so far received.
    #[serde(default)]
    pub received: Vec<serde_json::Value>,
}

#[derive(Serialize)]
pub struct Output {
    pub count: u64,
    pub received: Vec<serde_json::Value>,
    /// Which build ran the last run.
    pub version: u32,
    pub run_id: String,
}

const VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

struct Counter;

impl Workflow for Counter {
    type Input = Input;
    type Output = Output;

    fn run(ctx: &Context, mut input: Input) -> Result<Output, WorkflowError> {
        // One journaled read per run: a run's history is never just its start.
        let _ = ctx.now();
        // Lists find the chain by how far it counted.
        ctx.upsert_search_attributes(&serde_json::json!({ "count": input.count }))?;
        if input.count >= input.until {
            return Ok(Output {
                count: input.count,
                received: input.received,
                version: VERSION,
                run_id: ctx.info().run_id,
            });
        }
        if input.pause {
            input.received.push(ctx.signal("next")?);
        }
        input.count += 1;
        ctx.continue_as_new(&input)
    }
}

reprise_sdk::export_workflow!(Counter);
