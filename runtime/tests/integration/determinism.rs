//! Deterministic by construction, for a module that was not changed: plain
//! WASI sleeps and clock pollables are durable timers, results pass byte
//! for byte, the wall-clock backstop counts the same live and in replay,
//! and journaled randomness is compact. (Output behind the journal, in
//! three languages, is in `conformance`.)

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reprise::journal::Event;
use reprise::{Limits, Outcome, RuntimeOptions, store};
use serde_json::json;

use crate::crash::count_of_kind;
use crate::support::{Harness, cache_dir, completed_output, guest, hot_window};

fn timer_events(events: &[Event]) -> (usize, usize, usize) {
    let count = |wanted: fn(&Event) -> bool| events.iter().filter(|event| wanted(event)).count();
    (
        count(|event| matches!(event, Event::TimerStarted { .. })),
        count(|event| matches!(event, Event::TimerFired { .. })),
        count(|event| matches!(event, Event::TimersPolled { .. })),
    )
}

/// `std::thread::sleep` journals a timer, waits for it durably (hot or
/// evicted), and a replay answers it from the history without waiting.
#[tokio::test]
async fn a_plain_wasi_sleep_is_a_durable_timer_that_replay_does_not_wait_for() {
    for evict_on_wait in [false, true] {
        let harness = Harness::new(Limits::default(), evict_on_wait).await;
        let id = format!("wasi-sleep-{evict_on_wait}");
        let (record, outcome) = harness
            .run("hostile", &id, r#"{"mode": "wasi-sleep", "ms": 1200}"#)
            .await;
        let slept = completed_output(&outcome)["slept_ms"]
            .as_u64()
            .expect("slept_ms");
        assert!(slept >= 1_200, "slept {slept} ms");
        let events = harness.events(&record).await;
        assert!(
            events.iter().any(|event| matches!(
                event,
                Event::TimerStarted {
                    duration_ms: 1_200,
                    ..
                }
            )),
            "{events:?}"
        );
        // One durable timer; `block` needs no look at it (`TimersPolled`).
        assert_eq!(timer_events(&events), (1, 1, 0), "{events:?}");
        let replaying = Instant::now();
        harness.assert_replays("hostile", &record).await;
        assert!(
            replaying.elapsed() < Duration::from_millis(1_200),
            "a replay must not wait: {:?}",
            replaying.elapsed()
        );
    }
}

/// `pollable.ready()` on a clock subscription says what the journal says:
/// the same live, evicted and in replay.
#[tokio::test]
async fn a_clock_pollable_is_answered_from_the_journal() {
    for evict_on_wait in [false, true] {
        let harness = Harness::new(Limits::default(), evict_on_wait).await;
        let id = format!("poll-ready-{evict_on_wait}");
        let (record, outcome) = harness
            .run("hostile", &id, r#"{"mode": "poll-ready", "ms": 100}"#)
            .await;
        assert_eq!(
            completed_output(&outcome),
            json!({ "before": false, "after": true }),
            "evict_on_wait = {evict_on_wait}"
        );
        harness.assert_replays("hostile", &record).await;
    }
}

/// The backstop restarts at every journaled command, replayed or not: a
/// workflow whose CPU stretches each fit the limit, but not together,
/// completes live and replays.
#[tokio::test]
async fn the_wall_clock_backstop_counts_the_same_live_and_in_replay() {
    let limits = Limits {
        activation_fuel_max: u64::MAX / 2,
        activation_wall_ms_max: 500,
        ..Limits::default()
    };
    let harness = Harness::new(limits, false).await;
    // About 0.1 s of CPU per stretch here (5× under the limit, for a
    // loaded machine); 12 stretches are well over it.
    let (record, outcome) = harness
        .run(
            "hostile",
            "spin-steps",
            r#"{"mode": "spin-steps", "count": 75000000, "rounds": 12}"#,
        )
        .await;
    completed_output(&outcome);
    harness.assert_replays("hostile", &record).await;
}

/// `reprise run` of workflows in a fresh database.
pub struct Run {
    _dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl Run {
    pub fn new() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        Run {
            db: dir.path().join("reprise.db"),
            _dir: dir,
        }
    }

    /// Starts (or resumes) execution `id` of guest `workflow`.
    pub fn spawn(&self, workflow: &str, input: &str, id: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_reprise"))
            .arg("run")
            .arg(guest(workflow))
            // What scripts get: the result compact, byte for byte.
            .args(["--input", input, "--id", id, "--json"])
            .arg("--db")
            .arg(&self.db)
            .arg("--cache-dir")
            .arg(cache_dir())
            .env("REPRISE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn reprise run")
    }

    pub async fn events(&self, id: &str) -> Vec<Event> {
        let store = store::open(&self.db).await.expect("open store");
        let Some(record) = store.execution("default", id).await.expect("read") else {
            return Vec::new();
        };
        let history = store.history(record.id).await.expect("history");
        history.into_iter().map(|recorded| recorded.event).collect()
    }
}

pub fn stdout_of(child: Child) -> String {
    let output = child.wait_with_output().expect("wait for reprise");
    assert!(output.status.success(), "reprise run: {:?}", output.status);
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A SIGKILL in the middle of a plain WASI sleep: the timer was durable
/// before the wait, so the next run waits only for the time left (one
/// timer, fired once).
#[tokio::test]
async fn a_killed_wasi_sleep_resumes_with_the_time_that_is_left() {
    let run = Run::new();
    let input = r#"{"mode": "wasi-sleep", "ms": 2000}"#;
    let mut child = run.spawn("hostile", input, "sleepy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_of_kind(&run.db, "sleepy", "TimerStarted").await == 0 {
        assert!(Instant::now() < deadline, "the timer never became durable");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let fire_at = |events: &[Event]| {
        events.iter().find_map(|event| match event {
            Event::TimerStarted { fire_at_ms, .. } => Some(*fire_at_ms),
            _ => None,
        })
    };
    let before = fire_at(&run.events("sleepy").await);
    let output: serde_json::Value =
        serde_json::from_str(stdout_of(run.spawn("hostile", input, "sleepy")).trim())
            .expect("JSON output");
    assert!(output["slept_ms"].as_u64().expect("slept_ms") >= 2_000);
    let events = run.events("sleepy").await;
    assert_eq!(fire_at(&events), before, "the same timer, not a new one");
    let (started, fired, _) = timer_events(&events);
    assert_eq!((started, fired), (1, 1), "{events:?}");
}

/// What the workflow returned is what the user gets, byte for byte: no
/// float rounding, no reordered keys, no u64 through a double.
#[tokio::test]
async fn results_are_passed_on_byte_for_byte() {
    let run = Run::new();
    let printed = stdout_of(run.spawn("hostile", r#"{"mode": "exact"}"#, "exact"));
    let recorded = run
        .events("exact")
        .await
        .into_iter()
        .find_map(|event| match event {
            Event::WorkflowCompleted { output } => Some(output),
            _ => None,
        })
        .expect("completed");
    assert_eq!(printed.trim_end(), recorded);
    assert!(recorded.contains("13979697887323312865"), "{recorded}");

    let harness = Harness::default().await;
    let (_, outcome) = harness
        .run("hostile", "exact-in-process", r#"{"mode": "exact"}"#)
        .await;
    let Outcome::Completed { output } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(output.get(), recorded);
}

/// `reprise run` stores every guest line before it exits.
#[tokio::test]
async fn reprise_run_stores_every_line_before_it_exits() {
    let run = Run::new();
    let printed = stdout_of(run.spawn("hostile", r#"{"mode": "log-flood", "count": 50}"#, "lines"));
    assert_eq!(printed.trim(), "50");
    let store = store::open(&run.db).await.expect("open store");
    let record = store
        .execution("default", "lines")
        .await
        .expect("read")
        .expect("exists");
    let stored = store.guest_logs(record.id, 0, 1_000).await.expect("logs");
    assert_eq!(
        stored.iter().filter(|line| line.source == "stdout").count(),
        50
    );
}

/// Host behaviour 1 journals one byte per random byte a guest asks for
/// (behaviour 0, which older histories name, journaled four): a Python
/// execution's startup draws shrink fourfold, and a history recorded under
/// either behaviour replays.
#[tokio::test]
async fn random_bytes_cost_one_journaled_byte_and_older_histories_replay() {
    let mut journaled = Vec::new();
    for host_behaviour in [0, reprise::journal::HOST_BEHAVIOUR] {
        let options = RuntimeOptions {
            hot_window: hot_window(false),
            host_behaviour,
            ..RuntimeOptions::default()
        };
        let harness = Harness::with_options(Limits::default(), options, None).await;
        let id = format!("behaviour-{host_behaviour}");
        let (record, outcome) = harness
            .run("conformance-py", &id, r#"{"sleep_ms": 1}"#)
            .await;
        completed_output(&outcome);
        let bytes: usize = harness
            .events(&record)
            .await
            .iter()
            .map(|event| match event {
                Event::RandomDrawn { bytes, .. } => bytes.len() / 2,
                _ => 0,
            })
            .sum();
        journaled.push(bytes);
        harness.assert_replays("conformance-py", &record).await;
    }
    assert!(
        journaled[1] * 3 < journaled[0],
        "journaled random bytes, behaviour 0 vs 1: {journaled:?}"
    );
}
