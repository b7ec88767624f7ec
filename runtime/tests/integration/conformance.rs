//! The determinism conformance suite: the same probes (clocks, random,
//! sleeps, polls, output, rebuild, environment, files, sockets, HTTP) as
//! workflows in Rust, Python and JavaScript (`examples/conformance*`), each
//! run live with its instance kept, live with every wait evicting, replayed
//! (with the same build and with a second build of the same source), and
//! SIGKILLed in the middle of its plain sleep and resumed.
//!
//! Every run must give an answer that holds on its own (values inside the
//! run's time, the sleep slept, the printed line equal to the returned
//! value and stored once), and the fixed part of the answers (denials,
//! environment, polls) must be equal across all runs of a language.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reprise::Limits;
use reprise::store::{self, ExecutionRecord};
use serde_json::{Value, json};

use crate::crash::{count_of_kind, until_count};
use crate::determinism::{Run, stdout_of};
use crate::support::{Harness, completed_output, guest_logs_once};

/// Long enough to kill a run in the middle of it, and to tell a replay that
/// waits from one that does not.
const SLEEP_MS: u64 = 1_000;

fn input() -> String {
    json!({ "sleep_ms": SLEEP_MS }).to_string()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// What every answer must satisfy, however it was run: `window` is the real
/// time (ms) the execution spanned.
fn check_answer(language: &str, answer: &Value, window: (u64, u64)) {
    assert_eq!(answer["language"], language, "{answer}");
    for clock in ["wall_ms", "durable_ms"] {
        let read = answer[clock].as_u64().expect(clock);
        assert!(
            (window.0..=window.1).contains(&read),
            "{language} {clock} {read} outside the run {window:?}"
        );
    }
    let slept = answer["slept_ms"].as_u64().expect("slept_ms");
    assert!(slept >= SLEEP_MS, "{language} slept {slept} ms");
    assert_eq!(
        answer["poll"],
        json!([false, true]),
        "{language}: a clock is not due before its time and is after it"
    );
    let random = answer["random"].as_str().expect("random");
    assert_eq!(answer["printed"], format!("random={random}"));
    assert_eq!(answer["secure_random"].as_str().map(str::len), Some(16));
    assert!(answer["http"]["error"].is_string(), "{language}: {answer}");
    if answer["env"] != "unavailable" {
        assert_eq!(answer["env"]["vars"], json!([]), "{language}: no variables");
        assert!(answer["files"]["error"].is_string(), "{answer}");
        assert!(answer["sockets"]["error"].is_string(), "{answer}");
    }
}

/// The part of an answer that no run may change: what is denied, fixed or
/// decided by the build.
fn fixed_part(answer: &Value) -> Value {
    let mut fixed = answer.clone();
    if let Some(fields) = fixed.as_object_mut() {
        for varying in [
            "wall_ms",
            "durable_ms",
            "random",
            "secure_random",
            "printed",
            "slept_ms",
        ] {
            fields.remove(varying);
        }
    }
    fixed
}

/// The lines the execution wrote to stdout, as stored.
async fn stdout_lines(store: &dyn store::Store, record: &ExecutionRecord) -> Vec<String> {
    store
        .guest_logs(record.id, 0, 100)
        .await
        .expect("logs")
        .into_iter()
        .filter(|line| line.source == "stdout")
        .map(|line| line.message)
        .collect()
}

/// Waits (bounded) until the execution's stdout holds `count` lines.
async fn until_stdout_lines(store: &dyn store::Store, record: &ExecutionRecord, count: usize) {
    let stdout =
        |lines: &[store::GuestLogLine]| lines.iter().filter(|line| line.source == "stdout").count();
    let lines = guest_logs_once(store, record.id, |lines| stdout(lines) >= count).await;
    assert!(stdout(&lines) >= count, "the printed line was never stored");
}

/// Runs `workflow` in-process, hot then evicting; checks each answer, its
/// one stored line, and that both builds replay its history without
/// waiting. Returns the answers.
async fn live_and_replayed(workflow: &str, rebuilt: Option<&str>, language: &str) -> Vec<Value> {
    let mut answers = Vec::new();
    for evict_on_wait in [false, true] {
        let harness = Harness::new(Limits::default(), evict_on_wait).await;
        let id = format!("{language}-evict-{evict_on_wait}");
        let started = now_ms();
        let (record, outcome) = harness.run(workflow, &id, &input()).await;
        let answer = completed_output(&outcome);
        check_answer(language, &answer, (started, now_ms()));
        until_stdout_lines(harness.store.as_ref(), &record, 1).await;

        let replaying = Instant::now();
        harness.assert_replays(workflow, &record).await;
        assert!(
            replaying.elapsed() < Duration::from_millis(SLEEP_MS),
            "{language}: a replay must not sleep ({:?})",
            replaying.elapsed()
        );
        if let Some(rebuilt) = rebuilt {
            harness.assert_replays(rebuilt, &record).await;
        }
        assert_eq!(
            stdout_lines(harness.store.as_ref(), &record).await,
            vec![answer["printed"].as_str().expect("printed").to_string()],
            "{language}: the line is stored once, replays write none"
        );
        answers.push(answer);
    }
    answers
}

/// `reprise run` SIGKILLed in the middle of the plain sleep (the timer and
/// the printed line durable), then resumed: the answer keeps the values
/// drawn before the kill and the line is stored once.
async fn killed_and_resumed(workflow: &str, language: &str) -> Value {
    let run = Run::new();
    let id = format!("{language}-killed");
    let started = now_ms();
    let mut child = run.spawn(workflow, &input(), &id);
    until_count(&mut child, &run.db, &id, "TimerStarted", 1).await;
    let store = store::open(&run.db).await.expect("open store");
    let record = store
        .execution("default", &id)
        .await
        .expect("read")
        .expect("the execution exists");
    until_stdout_lines(store.as_ref(), &record, 1).await;
    let printed_before = stdout_lines(store.as_ref(), &record).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(
        count_of_kind(&run.db, &id, "TimerFired").await,
        0,
        "killed mid-sleep"
    );

    let answer: Value = serde_json::from_str(stdout_of(run.spawn(workflow, &input(), &id)).trim())
        .expect("the answer is JSON");
    check_answer(language, &answer, (started, now_ms()));
    assert_eq!(
        vec![answer["printed"].as_str().expect("printed").to_string()],
        printed_before,
        "{language}: the resumed run keeps the value it printed before the kill"
    );
    assert_eq!(stdout_lines(store.as_ref(), &record).await, printed_before);

    let replayed = std::process::Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["replay", "--history", &id, "--module"])
        .arg(crate::support::guest(workflow))
        .arg("--db")
        .arg(&run.db)
        .arg("--cache-dir")
        .arg(crate::support::cache_dir())
        .env("REPRISE_LOG", "warn")
        .output()
        .expect("run reprise replay");
    assert!(
        replayed.status.success(),
        "{language}: reprise replay: {}",
        String::from_utf8_lossy(&replayed.stdout)
    );
    answer
}

/// The whole suite for one language.
async fn conforms(workflow: &str, rebuilt: Option<&str>, language: &str) -> Vec<Value> {
    let mut answers = live_and_replayed(workflow, rebuilt, language).await;
    answers.push(killed_and_resumed(workflow, language).await);
    let fixed = fixed_part(&answers[0]);
    for answer in &answers[1..] {
        assert_eq!(
            fixed_part(answer),
            fixed,
            "{language}: a fixed answer changed"
        );
    }
    // Draws are journaled per execution, not fixed: separate executions
    // draw differently.
    assert_ne!(answers[0]["random"], answers[1]["random"], "{language}");
    assert_ne!(answers[0]["secure_random"], answers[1]["secure_random"]);
    answers
}

#[tokio::test]
async fn rust_probes_conform() {
    // Cargo builds are byte-identical: a rebuild is the same module.
    let answers = conforms("conformance", None, "rust").await;
    assert_denials(
        &answers[0],
        [
            "kind: NotFound",
            "kind: PermissionDenied",
            "HttpRequestDenied",
        ],
    );
    assert_eq!(answers[0]["env"]["args"], json!(["conformance"]));
}

/// The file, socket and HTTP probes failed, each with the expected error.
fn assert_denials(answer: &Value, [file, socket, http]: [&str; 3]) {
    for (probe, expected) in [("files", file), ("sockets", socket), ("http", http)] {
        let error = answer[probe]["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{probe}: {}", answer[probe]);
    }
}

#[tokio::test]
async fn python_probes_conform() {
    let answers = conforms("conformance-py", Some("conformance-py-again"), "python").await;
    // componentize-py's standard library has no `socket` (so no `urllib`):
    // those probes fail at import, the same way every time.
    assert_denials(
        &answers[0],
        [
            "FileNotFoundError",
            "No module named 'socket'",
            "No module named 'urllib'",
        ],
    );
    assert_eq!(answers[0]["env"]["args"], json!(["conformance-py"]));
}

#[tokio::test]
async fn javascript_probes_conform() {
    let answers = conforms("conformance-js", Some("conformance-js-again"), "javascript").await;
    let fetched = answers[0]["http"]["error"].as_str().unwrap_or_default();
    assert!(fetched.contains("NetworkError"), "{fetched}");
}
