//! Versioning inside the code. The first build adds one to `n`, waits for
//! a `go` signal and returns. The change adds one more after the signal:
//! built with `patched`, the extra step is guarded by `ctx.patched`, so
//! histories recorded by the first build still replay (on the old path);
//! built with `unguarded`, the same change breaks them.

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Input {
    pub n: u64,
}

#[derive(Serialize)]
pub struct Output {
    pub n: u64,
    /// Which path the change point took: "old" or "new".
    pub path: &'static str,
}

const CHANGE: &str = "add-one-more";

struct Versioned;

impl Workflow for Versioned {
    type Input = Input;
    type Output = Output;

    fn run(ctx: &Context, input: Input) -> Result<Output, WorkflowError> {
        let mut n: u64 = ctx.activity("add-one").input(&input.n).call()?;
        let _: serde_json::Value = ctx.signal("go")?;
        let new_path = if cfg!(feature = "patched") {
            ctx.patched(CHANGE)
        } else {
            cfg!(feature = "unguarded")
        };
        if new_path {
            n = ctx.activity("add-one").input(&n).call()?;
        }
        Ok(Output {
            n,
            path: if new_path { "new" } else { "old" },
        })
    }
}

reprise_sdk::export_workflow!(Versioned);
