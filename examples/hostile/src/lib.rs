//! A workflow that misbehaves on request, to prove the host contains it and
//! that denied interfaces answer the same way live and in replay.

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    mode: String,
}

struct Hostile;

/// Tries a plain `wasi:http` request and describes what came back.
fn http_get(authority: &str) -> String {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    match outgoing_handler::handle(request, None) {
        Err(code) => format!("{code:?}"),
        Ok(response) => {
            response.subscribe().block();
            match response.get() {
                Some(Ok(Ok(_))) => "response".to_string(),
                Some(Ok(Err(code))) => format!("{code:?}"),
                Some(Err(())) | None => "no response".to_string(),
            }
        }
    }
}

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
            "denied" => {
                // Each attempt's error text is part of the output, so replay
                // equality proves the denial is deterministic.
                let file = std::fs::read_to_string("/etc/passwd")
                    .map(|_| "read".to_string())
                    .unwrap_or_else(|error| format!("{:?}", error.kind()));
                let socket = std::net::TcpStream::connect("127.0.0.1:9")
                    .map(|_| "connected".to_string())
                    .unwrap_or_else(|error| format!("{:?}", error.kind()));
                let http = http_get("127.0.0.1:9");
                let random: u64 = ctx.random();
                Ok(
                    serde_json::json!({ "file": file, "socket": socket, "http": http, "random": random }),
                )
            }
            other => Err(WorkflowError::new(
                "BadMode",
                format!("unknown mode {other}"),
            )),
        }
    }
}

reprise_sdk::export_workflow!(Hostile);
