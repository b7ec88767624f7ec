//! The determinism conformance probes in Rust: every way plain Rust code
//! reaches time, randomness, sleeps, polls, output, the environment, files,
//! sockets and HTTP, through std and raw WASI rather than the SDK.
//!
//! The Python (`examples/conformance-py`) and JavaScript
//! (`examples/conformance-js`) guests answer the same probes under the same
//! keys; `runtime/tests/integration/conformance.rs` runs each live, evicted,
//! replayed and killed-and-resumed and compares the answers.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reprise_sdk::{Context, Workflow, WorkflowError};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    /// How long the plain sleep lasts.
    sleep_ms: u64,
}

struct Conformance;

/// An attempt's outcome as the probes report it: `{"ok": …}` or
/// `{"error": …}`, so replay equality covers the error text too.
fn attempt<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>) -> Value {
    match result {
        Ok(value) => json!({ "ok": format!("{value:?}") }),
        Err(error) => json!({ "error": format!("{error:?}") }),
    }
}

/// A plain `wasi:http` request to `authority`.
fn http_get(authority: &str) -> Value {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    // A denial may come from `handle` or, later, as the response.
    let outcome = match outgoing_handler::handle(request, None) {
        Err(code) => Err(code),
        Ok(response) => {
            response.subscribe().block();
            match response.get() {
                Some(Ok(Ok(response))) => Ok(response.status()),
                Some(Ok(Err(code))) => Err(code),
                Some(Err(())) | None => Err(outgoing_handler::ErrorCode::InternalError(None)),
            }
        }
    };
    attempt(outcome)
}

impl Workflow for Conformance {
    type Input = Input;
    type Output = Value;

    fn run(ctx: &Context, input: Input) -> Result<Value, WorkflowError> {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let durable_ms = ctx
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        // std seeds its hash maps from `wasi:random`: the language's own
        // randomness.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let secure_random: String = wasip2::random::random::get_random_bytes(8)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let printed = format!("random={random}");
        println!("{printed}");

        let slept_from = Instant::now();
        std::thread::sleep(Duration::from_millis(input.sleep_ms));
        let slept_ms = slept_from.elapsed().as_millis() as u64;

        let pollable = wasip2::clocks::monotonic_clock::subscribe_duration(50_000_000);
        let before = pollable.ready();
        std::thread::sleep(Duration::from_millis(100));
        let poll = json!([before, pollable.ready()]);

        let env = json!({
            "vars": std::env::vars().collect::<Vec<_>>(),
            "args": std::env::args().collect::<Vec<_>>(),
            "cwd": attempt(std::env::current_dir()),
        });
        Ok(json!({
            "language": "rust",
            "wall_ms": wall_ms,
            "durable_ms": durable_ms,
            "random": random.to_string(),
            "secure_random": secure_random,
            "printed": printed,
            "slept_ms": slept_ms,
            "poll": poll,
            "env": env,
            "files": attempt(std::fs::read_to_string("/etc/hostname")),
            "sockets": attempt(std::net::TcpStream::connect("127.0.0.1:9")),
            "http": http_get("127.0.0.1:9"),
        }))
    }
}

reprise_sdk::export_workflow!(Conformance);
