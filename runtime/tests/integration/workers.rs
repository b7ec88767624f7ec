//! External workers built on the worker libraries — `worker-sdk/python`
//! (`reprise_worker`) and `worker-sdk/js` (`reprise-worker`) — as real
//! processes against the real runtime's task API: the order example's
//! `charge` worker (`examples/workers`) through a lost response and a
//! SIGKILL, and the fixture workers in `runtime/tests/workers` for typed
//! errors, retries, heartbeat details, graceful shutdown, the concurrency
//! limit and tenant keys; the README's worker snippets as written; and
//! each library's own unit tests. Every behaviour is checked for both
//! libraries.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reprise::activity::worker::WorkerQueue;
use reprise::journal::Event;
use reprise::store::ExecutionRecord;
use reprise::{Limits, Outcome};
use reprise_providers::PaymentProvider;
use serde_json::{Value, json};

use crate::support::{Harness, completed_output, hot_window, readme_snippet, repo_root};

#[derive(Clone, Copy, Debug)]
enum Library {
    Python,
    TypeScript,
}

impl Library {
    /// The order example's `charge` worker, keeping its own record in `records`.
    fn charge_worker(self, api: &str, records: &Path) -> Command {
        let mut command = match self {
            Library::Python => {
                let mut command = Command::new("python3");
                command
                    .arg(repo_root().join("examples/workers/charge_worker.py"))
                    .arg("--db");
                command
            }
            Library::TypeScript => {
                built_typescript();
                let mut command = Command::new("node");
                command
                    .arg(repo_root().join("examples/workers/dist/charge_worker.js"))
                    .arg("--records");
                command
            }
        };
        command
            .arg(records)
            .args(["--api", api, "--wait-ms", "500"]);
        command
    }

    /// The fixture worker serving `fail-typed`, `fail-until`, `resume`, `hold`.
    fn behaviours_worker(self, api: &str, dir: &Path, max_concurrent: u32) -> Command {
        let mut command = match self {
            Library::Python => {
                let mut command = Command::new("python3");
                command.arg(repo_root().join("runtime/tests/workers/behaviours.py"));
                command
            }
            Library::TypeScript => {
                built_typescript();
                let mut command = Command::new("node");
                command.arg(repo_root().join("runtime/tests/workers/behaviours.mjs"));
                command
            }
        };
        command
            .args([
                "--api",
                api,
                "--max-concurrent",
                &max_concurrent.to_string(),
            ])
            .arg("--trace")
            .arg(dir.join("trace.txt"))
            .arg("--release")
            .arg(dir.join("release"));
        command
    }
}

/// Builds the TypeScript library and example once per test run (their
/// npm dependencies come from `scripts/setup`).
fn built_typescript() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        for package in ["worker-sdk/js", "examples/workers"] {
            let output = Command::new("npm")
                .args(["run", "build", "--silent", "--prefix"])
                .arg(repo_root().join(package))
                .output()
                .map_err(|error| format!("cannot run npm: {error}"))?;
            if !output.status.success() {
                return Err(format!(
                    "`npm run build` in {package} failed (run scripts/setup first):\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        Ok(())
    });
    if let Err(problem) = built {
        panic!("{problem}");
    }
}

/// A worker process, SIGKILLed (by its PID) when the test ends.
struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts `command` with its stdout and stderr in `log`.
    fn start(mut command: Command, log: PathBuf) -> WorkerProcess {
        let file = File::create(&log).expect("create the worker's log");
        let child = command
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the worker");
        WorkerProcess { child, log }
    }

    /// Starts `command` and waits until it says it polls: tasks queued
    /// after that are taken at once, so start-to-close timeouts in tests
    /// never count a worker's start-up (slow on a loaded machine).
    async fn polling(command: Command, log: PathBuf) -> WorkerProcess {
        let mut worker = WorkerProcess::start(command, log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !worker.log().contains("polling ") {
            if let Some(status) = worker.child.try_wait().expect("wait") {
                panic!(
                    "the worker exited ({status}) before polling:\n{}",
                    worker.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not start polling; its log:\n{}",
                worker.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "signal {signal} to {pid}"
        );
    }

    /// Waits for the process to exit by itself.
    async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit within {within:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms until it holds; fails the test with
/// `what` (and the worker's log) at the deadline.
async fn eventually(
    what: &str,
    within: Duration,
    worker: &WorkerProcess,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; the worker's log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The worker API on a free port, served in the background.
async fn worker_api() -> (Arc<WorkerQueue>, String) {
    let queue = WorkerQueue::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(reprise::api::serve(
        listener,
        reprise::api::worker_routes(queue.clone(), None),
    ));
    (queue, url)
}

/// A runtime whose unknown activity names go to a fresh worker API.
async fn harness_with_workers() -> (Harness, Arc<WorkerQueue>, String) {
    let (queue, api) = worker_api().await;
    let harness =
        Harness::configured(Limits::default(), hot_window(false), Some(queue.clone())).await;
    (harness, queue, api)
}

/// Drives a started execution in the background.
fn start_driving(harness: &Harness, record: ExecutionRecord) -> tokio::task::JoinHandle<Outcome> {
    let runtime = harness.runtime.clone();
    tokio::spawn(async move { runtime.drive(record).await.expect("drive") })
}

fn order(provider: &PaymentProvider, order_id: &str, extra: Value) -> String {
    let mut input = json!({
        "order_id": order_id,
        "amount_cents": 1999,
        "provider_url": provider.url(),
        "initial_interval_ms": 50,
        "charge_via": "worker",
    });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    input.to_string()
}

/// The `patterns` workflow calling one activity (at most 3 attempts, 10 ms apart).
fn call(activity: &str, input: Value) -> String {
    json!({ "mode": "call", "activity": activity, "activity_input": input }).to_string()
}

/// (attempt, error type, details, heartbeat details) of each failed attempt.
fn attempt_failures(events: &[Event]) -> Vec<(u32, String, Option<Value>, Option<String>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ActivityAttemptFailed {
                attempt,
                error,
                heartbeat_details,
                ..
            } => Some((
                *attempt,
                error.error_type.clone(),
                error
                    .details
                    .as_deref()
                    .map(|details| serde_json::from_str(details).expect("details are JSON")),
                heartbeat_details.clone(),
            )),
            _ => None,
        })
        .collect()
}

// --- The order example's charge worker -------------------------------

/// The charge succeeds at the provider, the response is lost, the attempt
/// fails and is retried with the same idempotency key: one charge.
async fn charges_once_through_a_lost_response(library: Library) {
    let provider = PaymentProvider::start(0).await.expect("provider");
    provider.drop_responses(1);
    let (harness, _queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let _worker = WorkerProcess::polling(
        library.charge_worker(&api, &dir.join("records")),
        dir.join("worker.log"),
    )
    .await;
    let id = format!("order-lost-{library:?}");
    let (record, outcome) = harness
        .run("order", &id, &order(&provider, "70", json!({})))
        .await;
    assert_eq!(
        completed_output(&outcome)["charge_id"],
        "ch_1",
        "{outcome:?}"
    );
    let ledger = provider.ledger();
    assert_eq!(
        ledger.len(),
        1,
        "the lost response did not double-charge: {ledger:?}"
    );
    assert_eq!(ledger[0].idempotency_key, "charge-70");
    assert_eq!(provider.requests(), 2, "one lost response, one retry");
    let failures = attempt_failures(&harness.events(&record).await);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].1, "ProviderUnreachable");
}

#[tokio::test]
async fn python_charge_worker_charges_once_through_a_lost_response() {
    charges_once_through_a_lost_response(Library::Python).await;
}

#[tokio::test]
async fn typescript_charge_worker_charges_once_through_a_lost_response() {
    charges_once_through_a_lost_response(Library::TypeScript).await;
}

/// The worker is SIGKILLed while its charge is at the provider (charged,
/// the answer held back): the attempt times out, a second worker gets the
/// retry with the same key, and the provider answers with the same charge.
async fn a_killed_worker_has_its_task_retried_and_charges_once(library: Library) {
    let provider = PaymentProvider::start(0).await.expect("provider");
    provider.delay_responses(60_000);
    let (harness, _queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let records = dir.join("records");
    let mut first =
        WorkerProcess::polling(library.charge_worker(&api, &records), dir.join("first.log")).await;
    let input = order(&provider, "71", json!({ "start_to_close_ms": 3_000 }));
    let id = format!("order-killed-{library:?}");
    let record = harness.start("order", &id, &input).await;
    let drive = start_driving(&harness, record.clone());
    eventually(
        "the first worker charged",
        Duration::from_secs(30),
        &first,
        || provider.requests() == 1,
    )
    .await;
    first.signal(libc::SIGKILL);
    let status = first.exit_status(Duration::from_secs(10)).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    provider.delay_responses(0);
    let _second = WorkerProcess::polling(
        library.charge_worker(&api, &records),
        dir.join("second.log"),
    )
    .await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), drive)
        .await
        .expect("the order finished")
        .expect("join");
    assert_eq!(
        completed_output(&outcome)["charge_id"],
        "ch_1",
        "{outcome:?}"
    );
    assert_eq!(
        provider.ledger().len(),
        1,
        "one charge: {:?}",
        provider.ledger()
    );
    assert_eq!(provider.requests(), 2, "the retry asked the provider again");
    let failures = attempt_failures(&harness.events(&record).await);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].1, "StartToCloseTimeout");
}

#[tokio::test]
async fn python_a_killed_worker_has_its_task_retried_and_charges_once() {
    a_killed_worker_has_its_task_retried_and_charges_once(Library::Python).await;
}

#[tokio::test]
async fn typescript_a_killed_worker_has_its_task_retried_and_charges_once() {
    a_killed_worker_has_its_task_retried_and_charges_once(Library::TypeScript).await;
}

// --- Errors, retries, heartbeats -------------------------------------

async fn typed_errors_reach_the_workflow(library: Library) {
    let (harness, _queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let _worker = WorkerProcess::polling(
        library.behaviours_worker(&api, &dir, 4),
        dir.join("worker.log"),
    )
    .await;

    let declined =
        json!({ "error_type": "CardDeclined", "message": "do not honour", "non_retryable": true });
    let (record, outcome) = harness
        .run(
            "patterns",
            &format!("typed-final-{library:?}"),
            &call("fail-typed", declined),
        )
        .await;
    let failed = &completed_output(&outcome)["failed"];
    assert_eq!(failed["reason"], "FailureReason::NonRetryable", "{failed}");
    assert_eq!(failed["error_type"], "CardDeclined");
    assert_eq!(failed["message"], "do not honour");
    assert_eq!(failed["attempts"], 1);
    let failures = attempt_failures(&harness.events(&record).await);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        failures[0].2,
        Some(json!({ "attempt": 1 })),
        "the error's details"
    );

    let busy =
        json!({ "error_type": "ProviderBusy", "message": "try later", "non_retryable": false });
    let (record, outcome) = harness
        .run(
            "patterns",
            &format!("typed-retryable-{library:?}"),
            &call("fail-typed", busy),
        )
        .await;
    let failed = &completed_output(&outcome)["failed"];
    assert_eq!(
        failed["reason"], "FailureReason::AttemptsExhausted",
        "{failed}"
    );
    assert_eq!(failed["error_type"], "ProviderBusy");
    assert_eq!(failed["attempts"], 3);
    let failures = attempt_failures(&harness.events(&record).await);
    let attempts: Vec<(u32, &str)> = failures.iter().map(|f| (f.0, f.1.as_str())).collect();
    assert_eq!(
        attempts,
        vec![
            (1, "ProviderBusy"),
            (2, "ProviderBusy"),
            (3, "ProviderBusy")
        ]
    );
}

#[tokio::test]
async fn python_typed_errors_reach_the_workflow() {
    typed_errors_reach_the_workflow(Library::Python).await;
}

#[tokio::test]
async fn typescript_typed_errors_reach_the_workflow() {
    typed_errors_reach_the_workflow(Library::TypeScript).await;
}

/// An uncaught exception is a retryable failure named by its class; each
/// attempt is in the history until one succeeds.
async fn uncaught_errors_are_retried_attempt_by_attempt(library: Library) {
    let (harness, _queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let _worker = WorkerProcess::polling(
        library.behaviours_worker(&api, &dir, 4),
        dir.join("worker.log"),
    )
    .await;
    let (record, outcome) = harness
        .run(
            "patterns",
            &format!("uncaught-{library:?}"),
            &call("fail-until", json!({ "succeed_on": 3 })),
        )
        .await;
    assert_eq!(
        completed_output(&outcome)["output"],
        json!({ "succeeded_on": 3 }),
        "{outcome:?}"
    );
    let failures = attempt_failures(&harness.events(&record).await);
    // Python raises its built-in TimeoutError; the TypeScript fixture a
    // `class TimeoutError extends Error {}`, named by its class.
    let attempts: Vec<(u32, &str)> = failures.iter().map(|f| (f.0, f.1.as_str())).collect();
    assert_eq!(attempts, vec![(1, "TimeoutError"), (2, "TimeoutError")]);
    // Where it was raised travels along for whoever reads the history.
    let stack = failures[0].2.as_ref().expect("details")["stack"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stack.contains("attempt 1 is too early"), "{stack}");
}

#[tokio::test]
async fn python_uncaught_errors_are_retried_attempt_by_attempt() {
    uncaught_errors_are_retried_attempt_by_attempt(Library::Python).await;
}

#[tokio::test]
async fn typescript_uncaught_errors_are_retried_attempt_by_attempt() {
    uncaught_errors_are_retried_attempt_by_attempt(Library::TypeScript).await;
}

async fn heartbeat_details_reach_the_next_attempt(library: Library) {
    let (harness, _queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let _worker = WorkerProcess::polling(
        library.behaviours_worker(&api, &dir, 4),
        dir.join("worker.log"),
    )
    .await;
    let (record, outcome) = harness
        .run(
            "patterns",
            &format!("resume-{library:?}"),
            &call("resume", json!(null)),
        )
        .await;
    assert_eq!(
        completed_output(&outcome)["output"],
        json!({ "attempt": 2, "resumed_from": { "done": 3 } }),
        "{outcome:?}"
    );
    let failures = attempt_failures(&harness.events(&record).await);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].1, "Interrupted");
    let journaled: Option<Value> = failures[0]
        .3
        .as_deref()
        .map(|details| serde_json::from_str(details).expect("heartbeat details are JSON"));
    assert_eq!(
        journaled,
        Some(json!({ "done": 3 })),
        "journaled with the failure"
    );
}

#[tokio::test]
async fn python_heartbeat_details_reach_the_next_attempt() {
    heartbeat_details_reach_the_next_attempt(Library::Python).await;
}

#[tokio::test]
async fn typescript_heartbeat_details_reach_the_next_attempt() {
    heartbeat_details_reach_the_next_attempt(Library::TypeScript).await;
}

// --- Shutdown and concurrency ----------------------------------------

fn trace_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("trace.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// SIGTERM while a task runs: the worker polls no more, the task finishes
/// and is reported, the process exits 0. A task queued after the signal
/// stays queued.
async fn sigterm_finishes_the_task_in_flight_and_exits_0(library: Library) {
    let (harness, queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let mut worker = WorkerProcess::polling(
        library.behaviours_worker(&api, &dir, 4),
        dir.join("worker.log"),
    )
    .await;
    let hold = |held: &str| call("hold", json!({ "id": held }));
    let record = harness
        .start("patterns", &format!("held-{library:?}"), &hold("running"))
        .await;
    let running = start_driving(&harness, record);
    eventually("the task started", Duration::from_secs(30), &worker, || {
        trace_lines(&dir) == ["start running"]
    })
    .await;
    worker.signal(libc::SIGTERM);
    eventually(
        "the worker said it stops",
        Duration::from_secs(10),
        &worker,
        || worker.log().contains("stopping"),
    )
    .await;
    let record = harness
        .start("patterns", &format!("late-{library:?}"), &hold("late"))
        .await;
    let late = start_driving(&harness, record);
    eventually(
        "the late task is queued",
        Duration::from_secs(10),
        &worker,
        || queue.depth() == 1,
    )
    .await;
    std::fs::write(dir.join("release"), "").expect("release the task");
    let outcome = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the held task was reported")
        .expect("join");
    assert_eq!(
        completed_output(&outcome)["output"],
        json!({ "held": "running", "attempt": 1 }),
        "{outcome:?}"
    );
    let status = worker.exit_status(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        worker.log()
    );
    assert_eq!(trace_lines(&dir), ["start running", "end running"]);
    assert_eq!(queue.depth(), 1, "the stopping worker took no new task");
    late.abort();
}

#[tokio::test]
async fn python_sigterm_finishes_the_task_in_flight_and_exits_0() {
    sigterm_finishes_the_task_in_flight_and_exits_0(Library::Python).await;
}

#[tokio::test]
async fn typescript_sigterm_finishes_the_task_in_flight_and_exits_0() {
    sigterm_finishes_the_task_in_flight_and_exits_0(Library::TypeScript).await;
}

/// Five held tasks, a worker allowed two at once: two run, three stay
/// queued; once released, all complete and no more than two ever overlapped.
async fn the_concurrency_limit_holds(library: Library) {
    let (harness, queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let worker = WorkerProcess::polling(
        library.behaviours_worker(&api, &dir, 2),
        dir.join("worker.log"),
    )
    .await;
    let mut drives = Vec::new();
    for n in 0..5 {
        let input = call("hold", json!({ "id": n.to_string() }));
        let record = harness
            .start("patterns", &format!("limit-{library:?}-{n}"), &input)
            .await;
        drives.push(start_driving(&harness, record));
    }
    eventually(
        "two tasks run, three wait",
        Duration::from_secs(30),
        &worker,
        || trace_lines(&dir).len() == 2 && queue.depth() == 3,
    )
    .await;
    // A worker over its limit would take a third task now; give it the
    // chance (waiting longer can only make a broken limit more visible).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queue.depth(), 3, "trace: {:?}", trace_lines(&dir));
    std::fs::write(dir.join("release"), "").expect("release the tasks");
    for drive in drives {
        let outcome = tokio::time::timeout(Duration::from_secs(30), drive)
            .await
            .expect("every held task finished")
            .expect("join");
        assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    }
    let mut running = 0;
    let mut most = 0;
    let lines = trace_lines(&dir);
    for line in &lines {
        running += if line.starts_with("start") { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert_eq!(
        most, 2,
        "at most two at once, and two did run together: {lines:?}"
    );
}

#[tokio::test]
async fn python_the_concurrency_limit_holds() {
    the_concurrency_limit_holds(Library::Python).await;
}

#[tokio::test]
async fn typescript_the_concurrency_limit_holds() {
    the_concurrency_limit_holds(Library::TypeScript).await;
}

// --- Tenants ---------------------------------------------------------

/// On a multi-tenant task API the worker sends REPRISE_API_KEY as its
/// tenant's key and gets that tenant's tasks; a wrong key stops it with
/// an error that says so.
async fn a_worker_polls_with_its_tenants_key(library: Library) {
    let queue = WorkerQueue::new();
    let harness =
        Harness::configured(Limits::default(), hot_window(false), Some(queue.clone())).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(reprise::api::serve(
        listener,
        reprise::api::worker_routes(queue, Some(harness.store.clone())),
    ));
    // The harness runs its executions as the default tenant.
    let (key, _) =
        reprise::tenant::create_tenant(&*harness.store, reprise::runtime::DEFAULT_TENANT, "{}")
            .await
            .expect("create the tenant");
    let dir = harness.activity_dir.clone();

    let mut refused = library.behaviours_worker(&api, &dir, 1);
    refused.env("REPRISE_API_KEY", "rpk_not-a-key");
    let mut refused = WorkerProcess::start(refused, dir.join("refused.log"));
    let status = refused.exit_status(Duration::from_secs(30)).await;
    assert!(!status.success(), "{status:?}");
    assert!(
        refused.log().contains("refused the API key"),
        "{}",
        refused.log()
    );

    let mut worker = library.behaviours_worker(&api, &dir, 1);
    worker.env("REPRISE_API_KEY", &key);
    let _worker = WorkerProcess::polling(worker, dir.join("worker.log")).await;
    let (_, outcome) = harness
        .run(
            "patterns",
            &format!("tenant-{library:?}"),
            &call("fail-until", json!({ "succeed_on": 1 })),
        )
        .await;
    assert_eq!(
        completed_output(&outcome)["output"],
        json!({ "succeeded_on": 1 }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn python_a_worker_polls_with_its_tenants_key() {
    a_worker_polls_with_its_tenants_key(Library::Python).await;
}

#[tokio::test]
async fn typescript_a_worker_polls_with_its_tenants_key() {
    a_worker_polls_with_its_tenants_key(Library::TypeScript).await;
}

// --- The README's snippets -------------------------------------------

/// Runs the README's worker snippet in `library` (pointed at this test's
/// task API) and the `patterns` workflow calling `reserve-seats` through it.
async fn the_readme_worker_works_as_written(library: Library) {
    let (harness, _queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let printed_url = "http://127.0.0.1:7979";
    let command = match library {
        Library::Python => {
            let snippet = readme_snippet("python-worker");
            assert!(snippet.contains(printed_url), "{snippet}");
            std::fs::write(dir.join("worker.py"), snippet.replace(printed_url, &api))
                .expect("write");
            let mut command = Command::new("python3");
            // What `pip install ./worker-sdk/python` gives.
            command
                .arg(dir.join("worker.py"))
                .env("PYTHONPATH", repo_root().join("worker-sdk/python"));
            command
        }
        Library::TypeScript => {
            built_typescript();
            let snippet = readme_snippet("typescript-worker");
            assert!(snippet.contains(printed_url), "{snippet}");
            let package = dir.join("snippet");
            std::fs::create_dir_all(package.join("node_modules")).expect("mkdir");
            std::fs::write(
                package.join("worker.ts"),
                snippet.replace(printed_url, &api),
            )
            .expect("write");
            std::fs::write(package.join("package.json"), r#"{"type": "module"}"#).expect("write");
            std::fs::write(
                package.join("tsconfig.json"),
                std::fs::read_to_string(repo_root().join("examples/workers/tsconfig.json"))
                    .expect("the example's tsconfig")
                    .replace("charge_worker.ts", "worker.ts"),
            )
            .expect("write");
            // What `npm install ./worker-sdk/js` gives.
            let library_dir = repo_root().join("worker-sdk/js");
            std::os::unix::fs::symlink(&library_dir, package.join("node_modules/reprise-worker"))
                .expect("link the library");
            std::os::unix::fs::symlink(
                library_dir.join("node_modules/@types"),
                package.join("node_modules/@types"),
            )
            .expect("link @types");
            let compiled = Command::new(library_dir.join("node_modules/.bin/tsc"))
                .arg("-p")
                .arg(&package)
                .output()
                .expect("run tsc");
            assert!(
                compiled.status.success(),
                "the README's snippet does not compile:\n{}",
                String::from_utf8_lossy(&compiled.stdout)
            );
            let mut command = Command::new("node");
            command.arg(package.join("dist/worker.js"));
            command
        }
    };
    let _worker = WorkerProcess::polling(command, dir.join("worker.log")).await;
    let (_, outcome) = harness
        .run(
            "patterns",
            &format!("seats-{library:?}"),
            &call("reserve-seats", json!({ "seats": 2 })),
        )
        .await;
    let output = &completed_output(&outcome)["output"];
    assert_eq!(output["seats"], 2, "{outcome:?}");
    assert!(
        output["booking"]
            .as_str()
            .unwrap_or_default()
            .starts_with("bk-"),
        "{output}"
    );
    let (_, outcome) = harness
        .run(
            "patterns",
            &format!("too-many-seats-{library:?}"),
            &call("reserve-seats", json!({ "seats": 9 })),
        )
        .await;
    let failed = &completed_output(&outcome)["failed"];
    assert_eq!(failed["reason"], "FailureReason::NonRetryable", "{failed}");
    assert_eq!(failed["error_type"], "TooManySeats");
    assert_eq!(failed["message"], "9 seats; at most 8");
    assert_eq!(failed["attempts"], 1);
}

#[tokio::test]
async fn the_python_readme_worker_works_as_written() {
    the_readme_worker_works_as_written(Library::Python).await;
}

#[tokio::test]
async fn the_typescript_readme_worker_works_as_written() {
    the_readme_worker_works_as_written(Library::TypeScript).await;
}

// --- The libraries' own tests ----------------------------------------

/// `worker-sdk/python/tests`: what is easier to check against a fake task
/// API (reconnecting with backoff, refused reports, bad output).
#[test]
fn the_python_library_unit_tests_pass() {
    let output = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(repo_root().join("worker-sdk/python"))
        .output()
        .expect("run python3");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
}

/// `worker-sdk/js/test`: the same, for the TypeScript library.
#[test]
fn the_typescript_library_unit_tests_pass() {
    built_typescript();
    let output = Command::new("npm")
        .args(["test", "--silent", "--prefix"])
        .arg(repo_root().join("worker-sdk/js"))
        .output()
        .expect("run npm");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(report.contains("# fail 0"), "{report}");
}

// --- The task API itself ---------------------------------------------

/// Layer one of the Python charge worker: its own record. A retry after
/// the record was written makes no provider call at all.
#[tokio::test]
async fn a_recorded_charge_is_not_sent_to_the_provider_again() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    let (harness, _queue, api) = harness_with_workers().await;
    let dir = harness.activity_dir.clone();
    let records = dir.join("records");
    let script = format!(
        "import sqlite3; db = sqlite3.connect({db:?}); \
         db.execute('CREATE TABLE IF NOT EXISTS charges (order_id TEXT PRIMARY KEY, charge_id TEXT NOT NULL)'); \
         db.execute('INSERT INTO charges VALUES (?, ?)', ('51', 'ch_recorded')); db.commit()",
        db = records.display().to_string()
    );
    let seeded = Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3");
    assert!(seeded.success(), "seeded the worker's record");
    let _worker = WorkerProcess::polling(
        Library::Python.charge_worker(&api, &records),
        dir.join("worker.log"),
    )
    .await;
    let (_, outcome) = harness
        .run(
            "order",
            "order-recorded",
            &order(&provider, "51", json!({})),
        )
        .await;
    assert_eq!(completed_output(&outcome)["charge_id"], "ch_recorded");
    assert_eq!(provider.requests(), 0, "no provider call");
}

async fn post(url: &str, body: &str) -> (u16, Value) {
    let uri: http::Uri = url.parse().expect("url");
    let authority = uri.authority().expect("authority").to_string();
    let request = http::Request::post(uri)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .expect("request");
    let response = crate::support::send(&authority, request)
        .await
        .expect("send");
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn reports_with_a_wrong_or_spent_token_are_refused() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    let (harness, _queue, api) = harness_with_workers().await;
    let input = order(&provider, "53", json!({}));
    let worker = async {
        let (status, task) = post(
            &format!("{api}/v1/activity-tasks/poll"),
            r#"{"activities":["charge"],"wait_ms":5000}"#,
        )
        .await;
        assert_eq!(status, 200, "{task}");
        assert_eq!(task["idempotency_key"], "charge-53");
        assert_eq!(task["input"]["order_id"], "53");
        // The attempt's W3C trace context: 00-<trace id>-<span id>-01.
        let traceparent = task["traceparent"].as_str().expect("a traceparent");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(
            parts.iter().map(|part| part.len()).collect::<Vec<_>>(),
            vec![2, 32, 16, 2],
            "{traceparent}"
        );
        let token = task["task_token"].as_str().expect("token").to_string();
        let complete = format!("{api}/v1/activity-tasks/{token}/complete");
        let (status, answer) = post(&complete, r#"{"output": {"charge_id": "#).await;
        assert!(
            status == 400 || status == 422,
            "malformed JSON: {status} {answer}"
        );
        let (status, _) = post(&complete, r#"{"output":{"charge_id":"ch_worker"}}"#).await;
        assert_eq!(status, 200);
        let (status, answer) = post(&complete, r#"{"output":{"charge_id":"ch_again"}}"#).await;
        assert_eq!(status, 409);
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or("")
                .contains("no longer open"),
            "{answer}"
        );
        let (status, answer) = post(
            &format!("{api}/v1/activity-tasks/not-a-token/complete"),
            r#"{"output":1}"#,
        )
        .await;
        assert_eq!(status, 404);
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or("")
                .contains("no task has token"),
            "{answer}"
        );
    };
    let ((_, outcome), ()) = tokio::join!(harness.run("order", "order-tokens", &input), worker);
    assert_eq!(completed_output(&outcome)["charge_id"], "ch_worker");
}
