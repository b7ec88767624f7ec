//! SDK patterns in one workflow, chosen by `mode`: fan-out with await-all,
//! a race with await-any, and retries with a policy.

use std::time::Duration;

use reprise_sdk::{ActivityFailure, Context, RetryPolicy, Workflow, WorkflowError};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    mode: String,
    /// For `call`: the activity and its input.
    #[serde(default)]
    activity: String,
    #[serde(default)]
    activity_input: Value,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    pauses_ms: Vec<u64>,
    #[serde(default)]
    fail_times: u32,
    #[serde(default)]
    max_attempts: u32,
    #[serde(default)]
    non_retryable: bool,
}

struct Patterns;

fn failure_json(failure: &ActivityFailure) -> Value {
    json!({
        "reason": format!("{:?}", failure.reason),
        "attempts": failure.attempts,
        "error_type": failure.last_error.error_type,
        "message": failure.last_error.message,
    })
}

impl Workflow for Patterns {
    type Input = Input;
    type Output = Value;

    fn run(ctx: &Context, input: Input) -> Result<Value, WorkflowError> {
        match input.mode.as_str() {
            // Start `count` activities at once, then wait for all of them.
            "fanout" => {
                let handles = (0..input.count)
                    .map(|n| ctx.activity("add-one").input(&n).start::<u64>())
                    .collect::<Result<Vec<_>, _>>()?;
                let results = ctx
                    .await_all(handles)
                    .into_iter()
                    .collect::<Result<Vec<u64>, _>>()?;
                Ok(json!({ "results": results }))
            }
            // Race activities; the first completion in history order wins,
            // then wait for the rest, recording the order they were seen in.
            "race" => {
                let mut handles = input
                    .pauses_ms
                    .iter()
                    .map(|ms| ctx.activity("pause").input(ms).start::<u64>())
                    .collect::<Result<Vec<_>, _>>()?;
                let mut order = Vec::new();
                while !handles.is_empty() {
                    let (index, outcome) = ctx.await_any(&handles);
                    handles.remove(index);
                    let ms: u64 = serde_json::from_str(&outcome?)
                        .map_err(|error| WorkflowError::new("Decode", error.to_string()))?;
                    order.push(ms);
                }
                Ok(json!({ "order": order }))
            }
            // Retry a flaky activity under a policy; report how it ended.
            "retry" => {
                let outcome = ctx
                    .activity("flaky")
                    .input(&json!({
                        "fail_times": input.fail_times,
                        "non_retryable": input.non_retryable,
                    }))
                    .retry(
                        RetryPolicy::new()
                            .initial_interval(Duration::from_millis(10))
                            .maximum_attempts(input.max_attempts),
                    )
                    .call::<u32>();
                Ok(match outcome {
                    Ok(attempt) => json!({ "succeeded_on_attempt": attempt }),
                    Err(failure) => json!({ "failed": failure_json(&failure) }),
                })
            }
            // A long activity that stalls once: the heartbeat timeout fails
            // the attempt, and the retry resumes from the last heartbeat.
            "heartbeat" => {
                let output: Value = ctx
                    .activity("slow-steps")
                    .input(&json!({ "steps": 6, "step_ms": 20, "stall_after": 3 }))
                    .heartbeat_timeout(Duration::from_millis(300))
                    .retry(RetryPolicy::new().initial_interval(Duration::from_millis(10)))
                    .call()?;
                Ok(output)
            }
            // One call of any activity, with at most 3 quick attempts;
            // reports the output or how it failed.
            "call" => {
                let outcome = ctx
                    .activity(&input.activity)
                    .input(&input.activity_input)
                    .retry(
                        RetryPolicy::new()
                            .initial_interval(Duration::from_millis(10))
                            .maximum_attempts(3),
                    )
                    .call::<Value>();
                Ok(match outcome {
                    Ok(output) => json!({ "output": output }),
                    Err(failure) => json!({ "failed": failure_json(&failure) }),
                })
            }
            // The first `count` of several racing activities, in the order
            // the history observed them.
            "first-n" => {
                let handles = input
                    .pauses_ms
                    .iter()
                    .map(|ms| ctx.activity("pause").input(ms).start::<u64>())
                    .collect::<Result<Vec<_>, _>>()?;
                let first = ctx
                    .await_first_n(handles, input.count as usize)
                    .into_iter()
                    .collect::<Result<Vec<u64>, _>>()?;
                Ok(json!({ "first": first }))
            }
            // A child workflow (this same type, fanning out) and its result.
            "child" => {
                let child: Value = ctx
                    .child_workflow("patterns")
                    .input(&json!({ "mode": "fanout", "count": input.count }))
                    .call()?;
                Ok(json!({ "child": child, "parent": ctx.info().workflow_id }))
            }
            // A child that waits for a signal forever: cancelling the parent
            // must cancel it too.
            "child-waits" => {
                let child: Value = ctx
                    .child_workflow("patterns")
                    .input(&json!({ "mode": "signals" }))
                    .call()?;
                Ok(child)
            }
            // Signals: one awaited without a timeout, then two waits for
            // `extra` with a timeout (a duplicate send must not satisfy both).
            "signals" => {
                let approve: Value = ctx.signal("approve")?;
                let first: Option<Value> =
                    ctx.signal_timeout("extra", Duration::from_millis(300))?;
                let second: Option<Value> =
                    ctx.signal_timeout("extra", Duration::from_millis(300))?;
                Ok(json!({ "approve": approve, "first": first, "second": second }))
            }
            "signal-timeout" => {
                let timeout = Duration::from_millis(input.count);
                let got: Option<Value> = ctx.signal_timeout("never", timeout)?;
                Ok(json!({ "got": got }))
            }
            // One `slow` update whose handler sleeps for an hour: cancelled
            // meanwhile, the update is answered with the cancellation and
            // the workflow ends cancelled rather than carrying on.
            "slow-update" => {
                let handled = ctx.handle_update("slow", None, |args: Value| {
                    ctx.sleep(Duration::from_secs(3_600))?;
                    Ok(args)
                })?;
                Ok(json!({ "handled": handled }))
            }
            // Misuse, each refused with a clear error.
            "bad-policy" => {
                let result = ctx
                    .activity("add-one")
                    .input(&1)
                    .retry(RetryPolicy::new().backoff_coefficient(0.5))
                    .call::<u64>()?;
                Ok(json!(result))
            }
            "unknown-activity" => {
                let outcome = ctx.activity("no-such-activity").input(&1).call::<u64>();
                Ok(match outcome {
                    Ok(value) => json!(value),
                    Err(failure) => json!({ "failed": failure_json(&failure) }),
                })
            }
            "big-input" => {
                let big = "x".repeat(2 * 1024 * 1024);
                let result = ctx.activity("add-one").input(&big).call::<u64>()?;
                Ok(json!(result))
            }
            other => Err(WorkflowError::new(
                "BadMode",
                format!("unknown mode {other}"),
            )),
        }
    }
}

reprise_sdk::export_workflow!(Patterns);
