//! Activities of the hello workflow.
//!
//! `record` applies a side effect — a line in `/data/ledger.jsonl` — at most
//! once per idempotency key: it reads the ledger first and returns the
//! existing entry for a key it has seen. Tests count the lines per key.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reprise_sdk::{ActivityContext, ActivityError};
use serde::{Deserialize, Serialize};

const LEDGER: &str = "/data/ledger.jsonl";

#[derive(Deserialize)]
struct GreetInput {
    name: String,
}

#[derive(Serialize)]
struct GreetOutput {
    greeting: String,
}

fn greet(_ctx: &ActivityContext, input: GreetInput) -> Result<GreetOutput, ActivityError> {
    // Captured by the host as a log line of the execution.
    println!("greeting {}", input.name);
    Ok(GreetOutput {
        greeting: format!("Hello, {}!", input.name),
    })
}

#[derive(Deserialize)]
struct RecordInput {
    step: u64,
    #[serde(default)]
    work_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct LedgerLine {
    key: String,
    step: u64,
    entry: u64,
    attempt: u32,
}

#[derive(Serialize)]
struct RecordOutput {
    entry: u64,
}

fn record(ctx: &ActivityContext, input: RecordInput) -> Result<RecordOutput, ActivityError> {
    let key = ctx.idempotency_key();
    if input.work_ms > 0 {
        std::thread::sleep(Duration::from_millis(input.work_ms));
    }
    let io_error = |error: std::io::Error| ActivityError::retryable("LedgerIo", error.to_string());
    let existing = match std::fs::read_to_string(LEDGER) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(io_error(error)),
    };
    let lines: Vec<LedgerLine> = existing
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    if let Some(line) = lines.iter().find(|line| line.key == key) {
        return Ok(RecordOutput { entry: line.entry });
    }
    let line = LedgerLine {
        key,
        step: input.step,
        entry: lines.len() as u64 + 1,
        attempt: ctx.attempt(),
    };
    let mut text = serde_json::to_string(&line)
        .map_err(|error| ActivityError::non_retryable("Encode", error.to_string()))?;
    // One write call per line: appends from concurrent activities must not interleave.
    text.push('\n');
    let mut ledger = OpenOptions::new()
        .create(true)
        .append(true)
        .open(LEDGER)
        .map_err(io_error)?;
    ledger.write_all(text.as_bytes()).map_err(io_error)?;
    ledger.sync_all().map_err(io_error)?;
    Ok(RecordOutput { entry: line.entry })
}

fn add_one(_ctx: &ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[derive(Deserialize)]
struct FlakyInput {
    /// Attempts that fail before one succeeds.
    fail_times: u32,
    #[serde(default = "default_error_type")]
    error_type: String,
    #[serde(default)]
    non_retryable: bool,
}

fn default_error_type() -> String {
    "Transient".to_string()
}

/// Fails its first `fail_times` attempts, then reports which attempt won.
fn flaky(ctx: &ActivityContext, input: FlakyInput) -> Result<u32, ActivityError> {
    let attempt = ctx.attempt();
    if attempt > input.fail_times {
        return Ok(attempt);
    }
    let message = format!("attempt {attempt} fails on purpose");
    Err(if input.non_retryable {
        ActivityError::non_retryable(input.error_type, message)
    } else {
        ActivityError::retryable(input.error_type, message)
    })
}

/// Sleeps `ms` milliseconds (real time: activities are not replayed) and
/// returns it.
fn pause(_ctx: &ActivityContext, ms: u64) -> Result<u64, ActivityError> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

/// Reads a file: only paths under the granted `/data` exist for an activity.
fn read_file(_ctx: &ActivityContext, path: String) -> Result<String, ActivityError> {
    std::fs::read_to_string(&path).map_err(|error| {
        ActivityError::non_retryable(format!("{:?}", error.kind()), format!("{path}: {error}"))
    })
}

#[derive(Deserialize)]
struct InstanceCallsInput {
    #[serde(default)]
    trap: bool,
    /// MiB to allocate and keep for the instance's lifetime.
    #[serde(default)]
    hold_mib: usize,
}

/// How many calls this instance has served, this one included (a warm
/// instance serves several calls of its tenant in turn and keeps its
/// globals, as a worker process would). Prints the count, holds on to
/// `hold_mib` MiB, then traps if asked: an instance that trapped, or grew
/// large, must never serve again.
fn instance_calls(_ctx: &ActivityContext, input: InstanceCallsInput) -> Result<u64, ActivityError> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    println!("call {calls} of this instance");
    if input.hold_mib > 0 {
        let held = vec![1u8; input.hold_mib * 1024 * 1024];
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(held);
    }
    if input.trap {
        panic!("asked to trap after call {calls}");
    }
    Ok(calls)
}

reprise_sdk::export_activities! {
    "read-file" => read_file,
    "greet" => greet,
    "record" => record,
    "add-one" => add_one,
    "flaky" => flaky,
    "pause" => pause,
    "instance-calls" => instance_calls,
}
