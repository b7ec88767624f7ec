//! Crash recovery with a real process: `reprise run` is SIGKILLed at
//! several points (before, during and after activities, during a sleep),
//! rerun with the same id, and must finish exactly as an uninterrupted run.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reprise::journal::{History, RecordedEvent};
use reprise::store;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::support::{cache_dir, clock_ms_at, guest, read_ledger, scheduled_keys};

const INPUT: &str = r#"{"name":"Crash","sleep_ms":250,"work_ms":250}"#;
/// Give up on one run after this long: a hung child fails the test.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

struct Workspace {
    _dir: tempfile::TempDir,
    db: PathBuf,
    activity_dir: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let activity_dir = dir.path().join("activity");
        std::fs::create_dir_all(&activity_dir).expect("activity dir");
        Workspace {
            db: dir.path().join("reprise.db"),
            activity_dir,
            _dir: dir,
        }
    }

    fn spawn(&self, workflow: &str, id: &str) -> Child {
        self.spawn_with(workflow, "hello-activities", INPUT, id)
    }

    fn spawn_with(&self, workflow: &str, activities: &str, input: &str, id: &str) -> Child {
        self.command(workflow, activities, input, id)
            .spawn()
            .expect("spawn reprise")
    }

    fn command(&self, workflow: &str, activities: &str, input: &str, id: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
        command
            .arg("run")
            .arg(guest(workflow))
            .arg("--activities")
            .arg(guest(activities))
            .args([
                "--input",
                input,
                "--id",
                id,
                "--allow-host",
                "127.0.0.1",
                "--json",
            ])
            .arg("--db")
            .arg(&self.db)
            .arg("--cache-dir")
            .arg(cache_dir())
            .arg("--activity-dir")
            .arg(&self.activity_dir)
            .env("REPRISE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }

    async fn history(&self, id: &str) -> Vec<RecordedEvent> {
        let store = store::open(&self.db).await.expect("open store");
        let record = store
            .execution("default", id)
            .await
            .expect("read execution")
            .expect("execution exists");
        store.history(record.id).await.expect("history")
    }
}

/// How many events of `kind` the execution's history holds now (0 while the
/// child has not created the database yet).
pub(crate) async fn count_of_kind(db: &Path, id: &str, kind: &str) -> i64 {
    if !db.exists() {
        return 0;
    }
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    let Ok(pool) = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
    else {
        return 0;
    };
    let count = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE kind = ?
           AND execution_id = (SELECT id FROM executions WHERE workflow_id = ?)",
    )
    .bind(kind)
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap_or(0);
    pool.close().await;
    count
}

fn finish(child: Child) -> String {
    let output = child.wait_with_output().expect("wait for reprise");
    assert!(
        output.status.success(),
        "reprise run failed: {:?}",
        output.status
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Waits until the history holds `count` events of `kind`, while `child`
/// (the process writing it) still runs.
pub(crate) async fn until_count(child: &mut Child, db: &Path, id: &str, kind: &str, count: i64) {
    let started = Instant::now();
    while count_of_kind(db, id, kind).await < count {
        if let Some(status) = child.try_wait().expect("poll child") {
            panic!("reprise exited ({status}) before reaching {kind} #{count}");
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "never reached {kind} #{count}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the history holds `count` events of `kind`, then SIGKILLs.
async fn kill_at(child: &mut Child, db: &Path, id: &str, kind: &str, count: i64) {
    until_count(child, db, id, kind, count).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// Where to pull the plug: once the history holds `count` events of `kind`.
const KILL_POINTS: &[(&str, i64)] = &[
    ("WorkflowStarted", 1),   // right after start, before any activity
    ("ActivityScheduled", 1), // greet scheduled: before/while it runs
    ("TimerStarted", 1),      // during the first durable sleep
    ("ActivityScheduled", 2), // during record #1 (it works 250 ms)
    ("ActivityCompleted", 2), // right after record #1
    ("TimerStarted", 2),      // during the second sleep
    ("ActivityScheduled", 3), // during record #2
];

async fn crash_and_recover(workflow: &str) {
    // The reference: one uninterrupted run.
    let reference = Workspace::new();
    let reference_output: serde_json::Value =
        serde_json::from_str(&finish(reference.spawn(workflow, "order-1"))).expect("JSON output");
    let reference_history = reference.history("order-1").await;

    let crashed = Workspace::new();
    let mut snapshots: Vec<Vec<RecordedEvent>> = Vec::new();
    for &(kind, count) in KILL_POINTS {
        let mut child = crashed.spawn(workflow, "order-1");
        kill_at(&mut child, &crashed.db, "order-1", kind, count).await;
        snapshots.push(crashed.history("order-1").await);
    }
    let output: serde_json::Value =
        serde_json::from_str(&finish(crashed.spawn(workflow, "order-1"))).expect("JSON output");
    let history = crashed.history("order-1").await;

    // The same result as the uninterrupted run.
    assert_eq!(output["greeting"], reference_output["greeting"]);
    assert_eq!(output["ledger_entries"], reference_output["ledger_entries"]);
    assert_eq!(output["ledger_entries"], serde_json::json!([1, 2]));
    // The same commands and outcomes, in the same order.
    let kinds = |events: &[RecordedEvent]| -> Vec<&'static str> {
        events
            .iter()
            .map(|recorded| recorded.event.kind())
            .collect()
    };
    assert_eq!(kinds(&history), kinds(&reference_history));
    // The values the code returned are the journaled ones.
    assert_eq!(
        output["sdk_now_ms"].as_u64(),
        Some(clock_ms_at(&history, sdk_clock_seq(&history)))
    );
    // No journal entry was lost: every snapshot is a prefix of the end state.
    History::from_recorded(history.clone()).expect("contiguous history");
    for snapshot in &snapshots {
        assert_eq!(
            snapshot.as_slice(),
            &history[..snapshot.len()],
            "a journaled event changed or vanished"
        );
    }
    // Each side effect applied at most once per idempotency key, and the
    // keys are the ones the journal fixed.
    let ledger = read_ledger(&crashed.activity_dir);
    let mut keys: Vec<&str> = ledger.iter().map(|(key, _)| key.as_str()).collect();
    keys.dedup();
    assert_eq!(
        keys.len(),
        ledger.len(),
        "a key was applied twice: {ledger:?}"
    );
    assert_eq!(
        ledger
            .iter()
            .map(|(key, _)| key.clone())
            .collect::<Vec<_>>(),
        scheduled_keys(&history, "record")
    );
}

/// The SDK's clock read is the first wall-clock read the code makes after
/// the runtime starts it (Python reads nothing before; Rust neither).
fn sdk_clock_seq(history: &[RecordedEvent]) -> u64 {
    history
        .iter()
        .find_map(|recorded| match recorded.event {
            reprise::journal::Event::ClockRead {
                seq,
                clock: reprise::journal::Clock::Wall,
                ..
            } => Some(seq),
            _ => None,
        })
        .expect("a wall clock read")
}

#[tokio::test]
async fn rust_workflow_survives_sigkill_at_every_stage() {
    crash_and_recover("hello").await;
}

#[tokio::test]
async fn python_workflow_survives_sigkill_at_every_stage() {
    crash_and_recover("hello-py").await;
}

/// The payment flow killed during the retry backoff (twice) and during the
/// charge itself: after restarts there is one charge, and the attempts are
/// exactly 1, 2 (failed, journaled) and 3 — no retry lost, none doubled.
// Multi-threaded: the provider serves from this process while the test
// waits for the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_survives_sigkill_during_backoff_and_during_the_charge() {
    let provider = reprise_providers::PaymentProvider::start(0)
        .await
        .expect("provider");
    provider.fail_with_503(2);
    let workspace = Workspace::new();
    let input = serde_json::json!({
        "order_id": "77",
        "amount_cents": 500,
        "provider_url": provider.url(),
        "initial_interval_ms": 700,
    })
    .to_string();
    let spawn = || workspace.spawn_with("order", "order-activities", &input, "order-77");

    // Killed in the backoff after attempt 1, then after attempt 2.
    let mut child = spawn();
    kill_at(
        &mut child,
        &workspace.db,
        "order-77",
        "ActivityAttemptFailed",
        1,
    )
    .await;
    let mut child = spawn();
    kill_at(
        &mut child,
        &workspace.db,
        "order-77",
        "ActivityAttemptFailed",
        2,
    )
    .await;
    assert_eq!(provider.requests(), 2, "no attempt ran during the backoff");
    // Killed while attempt 3 waits for the (slow) provider: charged, no answer seen.
    provider.delay_responses(3_000);
    let mut child = spawn();
    let started = Instant::now();
    while provider.requests() < 3 {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "attempt 3 never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    provider.delay_responses(0);

    let last = spawn();
    let text = tokio::task::spawn_blocking(move || finish(last))
        .await
        .expect("wait for the last run");
    let output: serde_json::Value = serde_json::from_str(&text).expect("JSON output");
    let ledger = provider.ledger();
    assert_eq!(ledger.len(), 1, "one charge: {ledger:?}");
    assert_eq!(output["charge_id"], ledger[0].charge_id.as_str());
    let history = workspace.history("order-77").await;
    let attempts: Vec<(&str, u32)> = history
        .iter()
        .filter_map(|recorded| match &recorded.event {
            reprise::journal::Event::ActivityAttemptFailed { attempt, .. } => {
                Some(("failed", *attempt))
            }
            reprise::journal::Event::ActivityCompleted {
                attempt, seq: 1, ..
            } => Some(("completed", *attempt)),
            _ => None,
        })
        .collect();
    // Attempt 3 was interrupted by the crash (not journaled) and ran again
    // as attempt 3 after the restart, with the same idempotency key.
    assert_eq!(
        attempts,
        vec![("failed", 1), ("failed", 2), ("completed", 3)]
    );
    assert_eq!(
        provider.requests(),
        4,
        "attempts 1, 2, 3 and the re-run of 3"
    );
}

/// Runs the child to its end; the trip fails on purpose (exit code 1).
async fn finish_failed(child: Child) -> serde_json::Value {
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait for reprise");
    assert_eq!(
        output.status.code(),
        Some(1),
        "the trip fails: {:?}",
        output.status
    );
    serde_json::from_slice(&output.stdout).expect("the error as JSON")
}

const TRIP_LEGS: usize = 10;

/// The crash-injection sweep: the trip saga (10 reservations and a charge,
/// then a failing step) is SIGKILLed at every journal position of its
/// compensation phase, once per run (the runtime's fault-injection hook
/// kills itself right after that append), and restarted. Every run ends with
/// each compensation applied exactly once per ledger, in reverse, and no
/// compensation for a step that never succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trip_compensations_survive_sigkill_at_every_journal_position() {
    let legs: Vec<String> = (1..=TRIP_LEGS).map(|leg| format!("leg{leg}")).collect();
    let leg_names: Vec<&str> = legs.iter().map(String::as_str).collect();
    let expected_chain: Vec<String> = std::iter::once("charge".to_string())
        .chain(legs.iter().rev().map(|leg| format!("reserve {leg}")))
        .collect();

    // Where the compensation phase lies, from an uninterrupted run.
    let providers = crate::saga::Providers::start().await;
    let reference = Workspace::new();
    let input = providers.trip("trip", &leg_names, serde_json::json!({}));
    finish_failed(reference.spawn_with("trip", "order-activities", &input, "trip")).await;
    let history = reference.history("trip").await;
    let first = history
        .iter()
        .find(|recorded| {
            matches!(&recorded.event, reprise::journal::Event::ActivityScheduled { options, .. } if options.compensates.is_some())
        })
        .expect("a compensation")
        .position as i64;
    let last = history.len() as i64 - 1; // everything before WorkflowFailed
    assert_eq!(
        crate::saga::compensation_chain(&events_of(&history)),
        expected_chain
    );

    let mut killed_at = std::collections::BTreeSet::new();
    for target in first..=last {
        let providers = crate::saga::Providers::start().await;
        let workspace = Workspace::new();
        let input = providers.trip("trip", &leg_names, serde_json::json!({}));
        let mut crashing = workspace.command("trip", "order-activities", &input, "trip");
        crashing
            .env("REPRISE_FAULT_KILL_AT_POSITION", target.to_string())
            .stdout(Stdio::null());
        let status = tokio::task::spawn_blocking(move || crashing.status())
            .await
            .expect("join")
            .expect("run reprise");
        assert_eq!(
            status.signal(),
            Some(9),
            "killed by SIGKILL at position {target}: {status:?}"
        );
        let before = workspace.history("trip").await;
        killed_at.insert(before.len());

        let error =
            finish_failed(workspace.spawn_with("trip", "order-activities", &input, "trip")).await;
        assert_eq!(
            error["error_type"],
            "ProvisioningFailed",
            "killed at {}: {error}",
            before.len()
        );
        let after = workspace.history("trip").await;
        assert_eq!(
            before.as_slice(),
            &after[..before.len()],
            "the journal kept every event"
        );
        assert_eq!(
            crate::saga::compensation_chain(&events_of(&after)),
            expected_chain
        );
        let releases = providers.effects(reprise_providers::RELEASE);
        let expected_releases: Vec<String> =
            (1..=TRIP_LEGS).rev().map(|n| format!("rs_{n}")).collect();
        assert_eq!(
            releases,
            expected_releases,
            "killed at {}: each release once, in reverse",
            before.len()
        );
        assert_eq!(
            providers.effects(reprise_providers::REFUND),
            vec!["ch_1"],
            "killed at {}",
            before.len()
        );
        assert_eq!(
            providers.effects(reprise_providers::RESERVATION).len(),
            TRIP_LEGS
        );
    }
    let in_compensation = killed_at
        .iter()
        .filter(|&&len| len as i64 >= first && len as i64 <= last)
        .count();
    // An outcome is written with the command after it, so the phase has a
    // durable state at every second position: each must have been a kill.
    let durable_states = (last - first + 1) / 2;
    assert!(
        in_compensation as i64 >= durable_states && durable_states >= 10,
        "killed at only {in_compensation} of {durable_states} durable states of the compensation phase: {killed_at:?}"
    );
}

fn events_of(history: &[RecordedEvent]) -> Vec<reprise::journal::Event> {
    history
        .iter()
        .map(|recorded| recorded.event.clone())
        .collect()
}

/// A signal wait with a timeout, killed mid-wait and restarted after the
/// deadline: the journaled deadline holds (no fresh timeout), and the wait
/// ends timed out.
#[tokio::test]
async fn a_signal_timeout_is_durable_across_a_crash() {
    let workspace = Workspace::new();
    let input = r#"{"mode":"signal-timeout","count":1500}"#;
    let mut child = workspace.spawn_with("patterns", "hello-activities", input, "wait-1");
    kill_at(&mut child, &workspace.db, "wait-1", "SignalAwaited", 1).await;
    let deadline = |history: &[RecordedEvent]| {
        history.iter().find_map(|recorded| match &recorded.event {
            reprise::journal::Event::SignalAwaited { deadline_ms, .. } => *deadline_ms,
            _ => None,
        })
    };
    let before = deadline(&workspace.history("wait-1").await).expect("a deadline");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let output = finish(workspace.spawn_with("patterns", "hello-activities", input, "wait-1"));
    assert_eq!(output.trim(), r#"{"got":null}"#);
    let history = workspace.history("wait-1").await;
    assert_eq!(
        deadline(&history),
        Some(before),
        "the deadline was not restarted"
    );
    let timed_out = history
        .iter()
        .find(|recorded| {
            matches!(
                recorded.event,
                reprise::journal::Event::SignalTimedOut { .. }
            )
        })
        .expect("timed out");
    assert!(timed_out.recorded_at_ms >= before);
}

/// A trip cancelled while its charge is in flight, and the process
/// SIGKILLed right after the cancellation is journaled (the charge still at
/// the provider): the next run learns the charge's outcome, so it is made
/// once and refunded once, and both reservations are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_right_after_a_cancel_still_refunds_the_charge_once() {
    let providers = crate::saga::Providers::start().await;
    providers.payments.delay_responses(700);
    let workspace = Workspace::new();
    let input = providers.trip(
        "t-kill",
        &["flight", "hotel"],
        serde_json::json!({ "fail_provision": false }),
    );
    let mut child = workspace.spawn_with("trip", "order-activities", &input, "t-kill");
    kill_after_cancel(&mut child, &workspace.db, "t-kill").await;
    let before = workspace.history("t-kill").await;
    let completed = events_of(&before)
        .iter()
        .filter(|event| matches!(event, reprise::journal::Event::ActivityCompleted { .. }))
        .count();
    assert_eq!(completed, 2, "killed while the charge was in flight");

    let error =
        finish_failed(workspace.spawn_with("trip", "order-activities", &input, "t-kill")).await;
    assert_eq!(error["error_type"], "Cancelled", "{error}");
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("compensated: charge, reserve hotel, reserve flight"),
        "{message}"
    );
    assert_eq!(providers.effects(reprise_providers::CHARGE).len(), 1);
    assert_eq!(providers.effects(reprise_providers::REFUND).len(), 1);
    assert_eq!(
        providers.effects(reprise_providers::RELEASE),
        vec!["rs_2", "rs_1"]
    );
    let after = workspace.history("t-kill").await;
    assert_eq!(before.as_slice(), &after[..before.len()]);
    assert_eq!(
        crate::saga::compensation_chain(&events_of(&after)),
        vec!["charge", "reserve hotel", "reserve flight"]
    );
}

/// Cancels `id` through the CLI once both reservations are done (the
/// charge in flight), and SIGKILLs `child` as soon as the cancellation is
/// journaled.
async fn kill_after_cancel(child: &mut Child, db: &Path, id: &str) {
    until_count(child, db, id, "ActivityCompleted", 2).await;
    let cancelled = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["cancel", id, "--db"])
        .arg(db)
        .env("REPRISE_LOG", "warn")
        .output()
        .expect("run reprise cancel");
    assert!(cancelled.status.success(), "reprise cancel: {cancelled:?}");
    kill_at(child, db, id, "CancellationDelivered", 1).await;
}
