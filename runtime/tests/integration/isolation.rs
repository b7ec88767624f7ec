//! One tenant must never stall another: sleeping executions hold no
//! instance, termination frees everything, each tenant waits in its own
//! queue, every journaled call counts toward the limits, and compilation is
//! bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise::journal::Event;
use reprise::runtime::StartOptions;
use reprise::store::ExecutionRecord;
use reprise::tenant::TenantLimits;
use reprise::{Engine, Limits, Outcome, Runtime};

use crate::support::{Harness, completed_output, guest};

/// Deploys `workflow` once and returns its digest.
async fn deploy(runtime: &Runtime, workflow: &str) -> String {
    let bytes = std::fs::read(guest(workflow)).expect("read guest");
    runtime
        .deploy_workflow(&bytes)
        .await
        .expect("deploy")
        .digest
}

async fn start_for(
    runtime: &Runtime,
    tenant: &str,
    digest: &str,
    id: &str,
    input: &str,
) -> ExecutionRecord {
    let (record, created) = runtime
        .start_for(
            tenant,
            "hostile",
            digest,
            Some(id.to_string()),
            input,
            StartOptions::default(),
        )
        .await
        .expect("start");
    assert!(created, "{id} was started before");
    record
}

/// Waits (at most `max`) until `condition` holds.
async fn eventually(what: &str, max: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + max;
    while !condition().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn failure(outcome: &Outcome) -> &reprise::journal::WorkflowError {
    match outcome {
        Outcome::Failed { error } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

type Drive = tokio::task::JoinHandle<Result<Outcome, reprise::RunError>>;

/// Starts `count` hostile sleepers (`sleeper-N`, a durable sleep of `ms`)
/// of the default tenant and drives each in the background.
async fn start_sleepers(
    runtime: &Arc<Runtime>,
    count: usize,
    ms: u64,
) -> (Vec<ExecutionRecord>, Vec<Drive>) {
    let digest = deploy(runtime, "hostile").await;
    let input = format!(r#"{{"mode": "sleep", "ms": {ms}}}"#);
    let mut records = Vec::with_capacity(count);
    let mut drives = Vec::with_capacity(count);
    for index in 0..count {
        let record = start_for(
            runtime,
            "default",
            &digest,
            &format!("sleeper-{index}"),
            &input,
        )
        .await;
        records.push(record.clone());
        let runtime = runtime.clone();
        drives.push(tokio::spawn(async move { runtime.drive(record).await }));
    }
    (records, drives)
}

/// The attack of issue 10: park more executions than the pool has slots,
/// then terminate them all. Sleepers hold no instance (the pool of 1,000 is
/// never drained), the good workflow runs throughout, and termination ends
/// every drive at once.
#[tokio::test]
async fn sleeping_executions_hold_no_instance_and_termination_frees_everything() {
    const SLEEPERS: usize = 2_000;
    let harness = Harness::as_served(Limits::default()).await;
    let runtime = harness.runtime.clone();
    let (records, drives) = start_sleepers(&runtime, SLEEPERS, 3_600_000).await;
    let store = harness.store.clone();
    let last = records.last().expect("sleepers").clone();
    eventually(
        "every sleeper started its timer",
        Duration::from_secs(120),
        async || store.history(last.id).await.expect("history").len() >= 2,
    )
    .await;
    eventually(
        "no sleeper keeps an instance",
        Duration::from_secs(60),
        async || runtime.live_instances() == 0,
    )
    .await;
    let (_, outcome) = harness
        .run("hello", "good-while-parked", r#"{"name": "Ada"}"#)
        .await;
    completed_output(&outcome);

    for record in &records {
        assert!(
            harness
                .store
                .terminate(record.id, "the attack is over")
                .await
                .expect("terminate")
        );
        runtime.terminated(record.id);
    }
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        for drive in drives {
            let outcome = drive.await.expect("join").expect("drive");
            assert_eq!(failure(&outcome).error_type, "Terminated");
        }
    })
    .await;
    assert!(ended.is_ok(), "every terminated drive ends at once");
    assert_eq!(runtime.live_instances(), 0);
    let (_, outcome) = harness
        .run("hello", "good-after-terminations", r#"{"name": "Ada"}"#)
        .await;
    completed_output(&outcome);
}

/// A tenant with `instances_max = 1` runs its CPU-bound workflows one at a
/// time, in its own queue; another tenant's workflow completes meanwhile.
#[tokio::test]
async fn a_tenant_at_its_instance_quota_waits_while_another_proceeds() {
    let harness = Harness::as_served(Limits::default()).await;
    let runtime = harness.runtime.clone();
    runtime.set_tenant_limits(
        "attacker",
        TenantLimits {
            instances_max: 1,
            ..TenantLimits::within(&runtime.engine().limits)
        },
    );
    let digest = deploy(&runtime, "hostile").await;
    let mut drives = Vec::new();
    for index in 0..3 {
        let record = start_for(
            &runtime,
            "attacker",
            &digest,
            &format!("spin-{index}"),
            r#"{"mode": "spin", "count": 400000000}"#,
        )
        .await;
        let runtime = runtime.clone();
        drives.push(tokio::spawn(async move { runtime.drive(record).await }));
    }
    let watch = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..20 {
                most = most.max(runtime.live_instances());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    assert_eq!(
        watch.await.expect("join"),
        1,
        "the attacker has one instance at a time"
    );
    let (_, outcome) = harness
        .run("hello", "good-beside-spinners", r#"{"name": "Ada"}"#)
        .await;
    completed_output(&outcome);
    assert!(
        drives.iter().any(|drive| !drive.is_finished()),
        "the good tenant finished while the attacker's queue was still busy"
    );
    for drive in drives {
        let outcome = drive.await.expect("join").expect("drive");
        assert_eq!(completed_output(&outcome), serde_json::json!(400000000));
    }
}

/// Clock reads and random draws are journaled events too: a flood of them,
/// through the Reprise interface or plain WASI, stops at the history limit.
#[tokio::test]
async fn every_journaled_call_counts_toward_the_history_limit() {
    let harness = Harness::as_served(Limits::default()).await;
    let runtime = harness.runtime.clone();
    runtime.set_tenant_limits(
        "flooder",
        TenantLimits {
            history_events_max: 1_000,
            ..TenantLimits::within(&runtime.engine().limits)
        },
    );
    let digest = deploy(&runtime, "hostile").await;
    for mode in ["clock-flood", "wasi-clock-flood"] {
        let input = format!(r#"{{"mode": "{mode}", "count": 100000}}"#);
        let record = start_for(&runtime, "flooder", &digest, mode, &input).await;
        let outcome = runtime.drive(record.clone()).await.expect("drive");
        let error = failure(&outcome);
        assert_eq!(error.error_type, "HistoryLimitExceeded", "{mode}: {error}");
        assert!(
            error.message.contains("history_events_max = 1000"),
            "{error}"
        );
        let history = harness.history(&record).await;
        assert!(history.len() <= 1_000, "{mode}: {} events", history.len());
    }
}

/// Names are bounded; attempts are bounded by the tenant's limit even when
/// the policy says "unlimited".
#[tokio::test]
async fn names_and_default_attempts_are_bounded() {
    let harness = Harness::as_served(Limits::default()).await;
    let runtime = harness.runtime.clone();
    let limits = TenantLimits {
        activity_attempts_max: 3,
        ..TenantLimits::within(&runtime.engine().limits)
    };
    runtime.set_tenant_limits("default", limits);

    let (_, outcome) = harness
        .run(
            "hostile",
            "long-name",
            r#"{"mode": "long-name", "count": 10000000}"#,
        )
        .await;
    let error = failure(&outcome);
    assert_eq!(error.error_type, "InvalidName", "{error}");
    assert!(error.message.contains("256 bytes"), "{error}");

    let (record, outcome) = harness
        .run(
            "patterns",
            "unbounded-retries",
            r#"{"mode": "retry", "fail_times": 100, "max_attempts": 0}"#,
        )
        .await;
    let output = completed_output(&outcome);
    assert_eq!(
        output["failed"]["reason"], "FailureReason::AttemptsExhausted",
        "{output}"
    );
    assert_eq!(output["failed"]["attempts"], 3, "{output}");
    let attempts = harness
        .events(&record)
        .await
        .iter()
        .filter(|event| matches!(event, Event::ActivityAttemptFailed { .. }))
        .count();
    assert_eq!(attempts, 3);
}

/// The compiled components a node keeps in memory are bounded: two
/// workflows on two modules, with room for one, take turns evicting each
/// other at every wait and both finish with their own module's result.
#[tokio::test]
async fn compiled_components_in_memory_are_bounded_and_reloaded_when_needed() {
    let limits = Limits {
        components_in_memory_max: 1,
        ..Limits::default()
    };
    let harness = Harness::new(limits, true).await;
    let input = r#"{"name":"Ada","sleep_ms":20}"#;
    let first = harness.start("hello", "bounded-v1", input).await;
    let second = harness.start("hello-v2", "bounded-v2", input).await;
    assert_ne!(first.module_digest, second.module_digest);
    assert_eq!(harness.engine.components_in_memory(), 1);
    let (first_outcome, second_outcome) = tokio::join!(
        harness.runtime.drive(first.clone()),
        harness.runtime.drive(second.clone()),
    );
    let (first_output, second_output) = (
        completed_output(&first_outcome.expect("drive v1")),
        completed_output(&second_outcome.expect("drive v2")),
    );
    assert_eq!(first_output["greeting"], "Hello, Ada!");
    assert_ne!(
        first_output, second_output,
        "each execution ran its own module, not the one left in memory"
    );
    assert_eq!(harness.engine.components_in_memory(), 1);
    harness.assert_replays("hello", &first).await;
    harness.assert_replays("hello-v2", &second).await;
}

/// A component of many functions compiles in a child process under a
/// memory, a CPU and a wall-clock limit: over any, the load fails naming it,
/// and nothing stays behind in this process.
#[tokio::test]
async fn a_compile_bomb_fails_in_its_child_process_naming_the_limit() {
    let functions = "(func)".repeat(150_000);
    let bomb = wat::parse_str(format!("(component (core module {functions}))")).expect("wat");
    let compiler = std::path::PathBuf::from(env!("CARGO_BIN_EXE_reprise"));
    let scratch = tempfile::tempdir().expect("temp dir");
    for (limits, names) in [
        (
            Limits {
                compile_memory_bytes_max: 48 * 1024 * 1024,
                ..Limits::default()
            },
            "compile_memory_bytes_max",
        ),
        (
            Limits {
                compile_wall_ms_max: 50,
                ..Limits::default()
            },
            "compile_wall_ms_max",
        ),
        (
            Limits {
                compile_cpu_ms_max: 1,
                ..Limits::default()
            },
            "compile_cpu_ms_max",
        ),
    ] {
        let cache = scratch.path().join(names);
        let engine = Engine::new(Some(cache.clone()), limits)
            .expect("engine")
            .compile_in_child_processes(compiler.clone());
        let refused = engine.load(&bomb).err().expect("the bomb is refused");
        let message = refused.to_string();
        assert!(message.contains(names), "{message}");
        assert!(
            std::fs::read_dir(&cache)
                .map(|entries| entries.count())
                .unwrap_or(0)
                == 0,
            "no artifact or staged input is left behind"
        );
    }
    // Past the function count nothing compiles at all.
    let huge = wat::parse_str(format!(
        "(component (core module {}))",
        "(func)".repeat(250_000)
    ))
    .expect("wat");
    let engine = Engine::new(Some(scratch.path().join("huge")), Limits::default())
        .expect("engine")
        .compile_in_child_processes(compiler.clone());
    let refused = engine.load(&huge).err().expect("refused").to_string();
    assert!(
        refused.contains("module_functions_max = 200000"),
        "{refused}"
    );
    // Within the limits the same path compiles a real guest, and the
    // artifact lands in the cache for the next process.
    let cache = scratch.path().join("ok");
    let engine = Engine::new(Some(cache.clone()), Limits::default())
        .expect("engine")
        .compile_in_child_processes(compiler);
    engine.load_file(&guest("hello")).expect("hello compiles");
    let artifacts = std::fs::read_dir(&cache).expect("cache").count();
    assert_eq!(artifacts, 1, "one compiled artifact");
}

/// 10,000 executions asleep on one node hold no instance; the node stops
/// (a shutdown at their waits), a new runtime on the same database resumes
/// them, and every timer fires exactly once.
#[tokio::test]
async fn ten_thousand_sleepers_survive_a_restart_and_each_timer_fires_once() {
    const SLEEPERS: usize = 10_000;
    let harness = Harness::as_served(Limits::default()).await;
    let runtime = harness.runtime.clone();
    // Long enough that most are still asleep at the shutdown even when
    // starting them all takes a loaded machine many seconds.
    let (_, drives) = start_sleepers(&runtime, SLEEPERS, 25_000).await;
    eventually(
        "no sleeper keeps an instance",
        Duration::from_secs(120),
        async || runtime.live_instances() == 0,
    )
    .await;
    runtime.shut_down();
    let mut stopped = 0;
    for drive in drives {
        match drive.await.expect("join") {
            Err(reprise::RunError::ShuttingDown { .. }) => stopped += 1,
            // The first ones may have woken already (starting all takes seconds).
            Ok(outcome) => assert_eq!(completed_output(&outcome), serde_json::json!(true)),
            Err(other) => panic!("a sleeper's drive failed: {other}"),
        }
    }
    assert!(
        stopped > SLEEPERS / 2,
        "only {stopped} were asleep at the shutdown"
    );
    drop(runtime);

    let restarted = harness.restart().await;
    let unfinished = harness.store.unfinished_executions().await.expect("list");
    assert_eq!(unfinished.len(), stopped);
    let mut drives = Vec::new();
    for record in unfinished {
        let runtime = restarted.clone();
        drives.push(tokio::spawn(async move {
            runtime
                .drive(record.clone())
                .await
                .map(|outcome| (record, outcome))
        }));
    }
    for drive in drives {
        let (_, outcome) = drive.await.expect("join").expect("drive");
        assert_eq!(completed_output(&outcome), serde_json::json!(true));
    }
    for index in 0..SLEEPERS {
        let record = harness
            .store
            .execution("default", &format!("sleeper-{index}"))
            .await
            .expect("read")
            .expect("exists");
        let fired = harness
            .events(&record)
            .await
            .iter()
            .filter(|event| matches!(event, Event::TimerFired { .. }))
            .count();
        assert_eq!(fired, 1, "{}", record.workflow_id);
    }
}
