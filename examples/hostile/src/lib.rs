//! A workflow that misbehaves on request, to prove the host contains it and
//! that denied interfaces answer the same way live and in replay.

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    mode: String,
}

struct Hostile;

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
            "panic" => panic!("the hostile workflow panicked on purpose"),
            "denied" => {
                // Each attempt's error text is part of the output, so replay
                // equality proves the denial is deterministic.
                let file = std::fs::read_to_string("/etc/passwd")
                    .map(|_| "read".to_string())
                    .unwrap_or_else(|error| format!("{:?}", error.kind()));
                let socket = std::net::TcpStream::connect("127.0.0.1:9")
                    .map(|_| "connected".to_string())
                    .unwrap_or_else(|error| format!("{:?}", error.kind()));
                let now: u64 = ctx.random();
                Ok(serde_json::json!({ "file": file, "socket": socket, "random": now }))
            }
            other => Err(WorkflowError::new("BadMode", format!("unknown mode {other}"))),
        }
    }
}

reprise_sdk::export_workflow!(Hostile);
