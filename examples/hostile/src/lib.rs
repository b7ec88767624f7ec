//! A workflow that misbehaves on request, to prove the host contains it and
//! that denied interfaces answer the same way live and in replay.

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    mode: String,
    /// For the sleeps: how long, in ms.
    #[serde(default)]
    ms: u64,
    /// For the loops and floods: how many times.
    #[serde(default)]
    count: u64,
    /// For `spin-steps`: how many stretches of `count` iterations.
    #[serde(default)]
    rounds: u64,
}

struct Hostile;

// Recursion without a base case is the point: it must overflow the stack.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the compiler from turning this into a loop.
    std::hint::black_box(depth) + recurse(depth + 1)
}

impl Workflow for Hostile {
    type Input = Input;
    type Output = serde_json::Value;

    fn run(ctx: &Context, input: Input) -> Result<serde_json::Value, WorkflowError> {
        match input.mode.as_str() {
            "loop" => {
                let mut counter = 0u64;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 * 1024 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => Ok(serde_json::json!(recurse(0))),
            // Query handlers that break the rules: one makes a durable
            // call, one never returns. Queries fail; the execution lives.
            "queries" => {
                ctx.on_query("clock", |(): ()| {
                    Ok(Context::new()
                        .now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_millis() as u64))
                });
                ctx.on_query("spin", |(): ()| -> Result<u64, WorkflowError> {
                    let mut counter = 0u64;
                    loop {
                        counter = std::hint::black_box(counter.wrapping_add(1));
                    }
                });
                ctx.on_query("fine", |(): ()| Ok("still here"));
                let _: serde_json::Value = ctx.signal("end")?;
                Ok(serde_json::json!("ended"))
            }
            "panic" => panic!("the hostile workflow panicked on purpose"),
            // 8 MiB of output: over any payload limit.
            "output" => Ok(serde_json::json!("x".repeat(8 * 1024 * 1024))),
            // Thousands of activity calls at once: bounded by the history
            // limit, not by the host's memory.
            "fanout" => {
                let mut calls = Vec::new();
                for index in 0..5_000 {
                    let url = format!("http://127.0.0.1:9/{index}");
                    let call = ctx
                        .activity("http")
                        .input(&serde_json::json!({ "url": url }))
                        .start::<serde_json::Value>()
                        .map_err(WorkflowError::from)?;
                    calls.push(call);
                }
                let results = ctx.await_all(calls);
                Ok(serde_json::json!(results.len()))
            }
            // A durable sleep (the attacker's "park forever").
            "sleep" => {
                let slept = ctx.sleep(std::time::Duration::from_millis(input.ms));
                Ok(serde_json::json!(slept.is_ok()))
            }
            // Burns `count` iterations of CPU, then returns.
            "spin" => {
                let mut counter = 0u64;
                for _ in 0..input.count {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
                Ok(serde_json::json!(counter))
            }
            // Rounds of CPU, each ended by starting an activity (a
            // journaled command that does not block): the wall-clock
            // backstop restarts at each, live and in replay.
            "spin-steps" => {
                let mut counter = 0u64;
                let mut calls = Vec::new();
                for round in 0..input.rounds {
                    for _ in 0..input.count {
                        counter = std::hint::black_box(counter.wrapping_add(1));
                    }
                    let call = ctx
                        .activity("add-one")
                        .input(&round)
                        .start::<u64>()
                        .map_err(WorkflowError::from)?;
                    calls.push(call);
                }
                let finished = ctx.await_all(calls).into_iter().filter(Result::is_ok).count();
                Ok(serde_json::json!({ "counter": counter, "finished": finished }))
            }
            // Journaled clock reads, through the Reprise interface and
            // through plain WASI: each counts toward the history limit.
            "clock-flood" => {
                for _ in 0..input.count {
                    std::hint::black_box(ctx.now());
                }
                Ok(serde_json::json!(input.count))
            }
            "wasi-clock-flood" => {
                for _ in 0..input.count {
                    std::hint::black_box(std::time::SystemTime::now());
                }
                Ok(serde_json::json!(input.count))
            }
            // `count` lines of 1 KB on stdout.
            "log-flood" => {
                let line = "x".repeat(1024);
                for _ in 0..input.count {
                    println!("{line}");
                }
                Ok(serde_json::json!(input.count))
            }
            // An activity whose name is `count` bytes long.
            "long-name" => {
                let name = "x".repeat(input.count as usize);
                let called = ctx.activity(&name).input(&1).call::<serde_json::Value>();
                Ok(serde_json::json!(called.is_ok()))
            }
            // A plain-WASI sleep: a durable timer, with the time it took
            // as the journaled monotonic clock saw it.
            "wasi-sleep" => {
                let started = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_millis(input.ms));
                Ok(serde_json::json!({ "slept_ms": started.elapsed().as_millis() as u64 }))
            }
            // A WASI clock subscription looked at after a longer durable
            // sleep: `ready()` must say the same live and in replay.
            "poll-ready" => {
                use wasip2::clocks::monotonic_clock;
                let pollable = monotonic_clock::subscribe_duration(input.ms * 1_000_000);
                let before = pollable.ready();
                ctx.sleep(std::time::Duration::from_millis(input.ms * 4))
                    .map_err(|_| WorkflowError::new("Cancelled", "cancelled"))?;
                Ok(serde_json::json!({ "before": before, "after": pollable.ready() }))
            }
            // Numbers that a round trip through floats or a re-encoding
            // would change.
            "exact" => serde_json::from_str(
                r#"{"rand_random": 13979697887323312865, "float": 0.22553344729898162, "b": 1, "a": 2}"#,
            )
            .map_err(|error| WorkflowError::new("BadJson", error.to_string())),
            other => Err(WorkflowError::new(
                "BadMode",
                format!("unknown mode {other}"),
            )),
        }
    }
}

reprise_sdk::export_workflow!(Hostile);
