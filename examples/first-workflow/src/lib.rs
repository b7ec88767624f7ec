use reprise_sdk::{Context, RetryPolicy, Workflow, WorkflowError};
use serde_json::{Value, json};
use std::time::Duration;

struct Greeter;
impl Workflow for Greeter {
    type Input = Value;
    type Output = Value;
    fn run(ctx: &Context, args: Value) -> Result<Value, WorkflowError> {
        let greeting: Value = ctx
            .activity("greet")
            .input(&json!({ "name": args["name"] }))
            .retry(
                RetryPolicy::new()
                    .initial_interval(Duration::from_millis(200))
                    .maximum_attempts(3),
            )
            .start_to_close(Duration::from_secs(10))
            .call()?;
        ctx.sleep(Duration::from_millis(50))?; // a durable timer
        Ok(greeting)
    }
}
reprise_sdk::export_workflow!(Greeter);
