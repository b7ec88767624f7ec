//! The hello workflow: reads time and randomness through the SDK and through
//! plain `std`/`rand` (both journaled by the host), calls two activities and
//! sleeps durably. Its output echoes every value it saw, so a test can check
//! that replay gave back exactly what the history recorded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reprise_sdk::{Context, LogLevel, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Input {
    pub name: String,
    /// Length of each of the two durable sleeps.
    #[serde(default = "default_sleep_ms")]
    pub sleep_ms: u64,
    /// How long the `record` activity works before it writes its effect.
    #[serde(default)]
    pub work_ms: u64,
}

fn default_sleep_ms() -> u64 {
    100
}

#[derive(Serialize, Deserialize)]
pub struct Output {
    pub greeting: String,
    pub sdk_now_ms: u64,
    pub std_now_ms: u64,
    pub sdk_random: u64,
    pub rand_random: u64,
    pub ledger_entries: Vec<u64>,
}

#[derive(Deserialize)]
struct Greeting {
    greeting: String,
}

#[derive(Deserialize)]
struct Recorded {
    entry: u64,
}

struct Hello;

impl Workflow for Hello {
    type Input = Input;
    type Output = Output;

    fn run(ctx: &Context, input: Input) -> Result<Output, WorkflowError> {
        let sdk_now_ms = ctx
            .now()
            .duration_since(UNIX_EPOCH)
            .map_err(|error| WorkflowError::new("Clock", error.to_string()))?
            .as_millis() as u64;
        let std_now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|error| WorkflowError::new("Clock", error.to_string()))?
            .as_millis() as u64;
        let sdk_random: u64 = ctx.random();
        let rand_random: u64 = rand::random();
        ctx.log(
            LogLevel::Info,
            &format!("hello workflow started for {}", input.name),
        );
        println!("stdout is captured as a log line too");

        let greeting: Greeting = ctx
            .activity("greet")
            .input(&serde_json::json!({ "name": input.name }))
            .call()?;
        let mut ledger_entries = Vec::new();
        for step in 1..=2u64 {
            ctx.sleep(Duration::from_millis(input.sleep_ms))?;
            let recorded: Recorded = ctx
                .activity("record")
                .input(&serde_json::json!({ "step": step, "work_ms": input.work_ms }))
                .start_to_close(Duration::from_secs(30))
                .call()?;
            ledger_entries.push(recorded.entry);
        }
        Ok(Output {
            greeting: greeting.greeting,
            sdk_now_ms,
            std_now_ms,
            sdk_random,
            rand_random,
            ledger_entries,
        })
    }
}

reprise_sdk::export_workflow!(Hello);
