//! Long-lived workflows: versioning inside the code (`patched`) and
//! continue-as-new (`examples/versioned`, `examples/counter`).

use std::time::Duration;

use reprise::journal::Event;
use reprise::store::{ExecutionFilter, ExecutionRecord, ExecutionStatus, MessageKind};
use reprise::{Limits, ReplayVerdict, RunError};
use serde_json::{Value, json};

use crate::support::{Harness, completed_output, guest};

/// Fails the test instead of hanging it.
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("the scenario finished within 120 s")
}

/// Replays `record`'s history with build `workflow` of the code.
async fn replay_with(
    harness: &Harness,
    workflow: &str,
    record: &ExecutionRecord,
) -> Result<ReplayVerdict, RunError> {
    let component = harness.engine.load_file(&guest(workflow)).expect("load");
    harness
        .runtime
        .verify_replay(&component, record.clone(), harness.history(record).await)
        .await
}

/// Waits until the history of `record` holds an event `kind`.
async fn wait_for_event(harness: &Harness, record: &ExecutionRecord, kind: &str) {
    bounded(async {
        loop {
            let events = harness.events(record).await;
            if events.iter().any(|event| event.kind() == kind) {
                return;
            }
            if let Some(end) = events.iter().find(|event| event.is_terminal()) {
                panic!("the execution ended ({end:?}) before {kind}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn signal(harness: &Harness, record: &ExecutionRecord, name: &str, payload: &str, id: &str) {
    assert!(
        harness
            .store
            .post_message(record.id, MessageKind::Signal, name, payload, id)
            .await
            .expect("post a signal")
    );
}

/// Runs `versioned` build `workflow` under `id` to its end, the `go`
/// signal sent once it waits.
async fn run_versioned(
    harness: &Harness,
    workflow: &str,
    id: &str,
) -> (ExecutionRecord, serde_json::Value) {
    let record = harness.start(workflow, id, r#"{"n":1}"#).await;
    let drive = tokio::spawn({
        let runtime = harness.runtime.clone();
        let record = record.clone();
        async move { runtime.drive(record).await }
    });
    wait_for_event(harness, &record, "SignalAwaited").await;
    signal(harness, &record, "go", "{}", "go-1").await;
    let outcome = bounded(drive).await.expect("join").expect("drive");
    (record, completed_output(&outcome))
}

#[tokio::test]
async fn patched_keeps_old_histories_replaying_on_the_old_path() {
    let harness = Harness::default().await;
    // Recorded by the first build: one add_one, the signal, the old end.
    let (old, output) = run_versioned(&harness, "versioned", "recorded-before").await;
    assert_eq!(output, json!({ "n": 2, "path": "old" }));

    // The changed build guarded by `patched` replays it on the old path…
    assert_eq!(
        replay_with(&harness, "versioned-patched", &old)
            .await
            .expect("replays"),
        ReplayVerdict::Reproduced
    );
    // …the same change unguarded does not.
    let unguarded = replay_with(&harness, "versioned-unguarded", &old).await;
    assert!(
        matches!(unguarded, Err(RunError::Nondeterminism { .. })),
        "{unguarded:?}"
    );

    // A new execution of the changed build takes the new path and records
    // the marker once; it replays under the same build, not the old one.
    let (new, output) = run_versioned(&harness, "versioned-patched", "recorded-after").await;
    assert_eq!(output, json!({ "n": 3, "path": "new" }));
    let markers: Vec<Event> = harness
        .events(&new)
        .await
        .into_iter()
        .filter(|event| event.kind() == "PatchMarked")
        .collect();
    assert_eq!(
        markers,
        [Event::PatchMarked {
            change_id: "add-one-more".into()
        }]
    );
    assert_eq!(
        replay_with(&harness, "versioned-patched", &new)
            .await
            .expect("replays"),
        ReplayVerdict::Reproduced
    );
    let old_code = replay_with(&harness, "versioned", &new).await;
    assert!(
        matches!(old_code, Err(RunError::Nondeterminism { .. })),
        "{old_code:?}"
    );
}

/// Every run of `workflow_id`, oldest first.
async fn runs_of(harness: &Harness, workflow_id: &str) -> Vec<ExecutionRecord> {
    let mut runs = harness
        .store
        .list_executions(
            reprise::runtime::DEFAULT_TENANT,
            &ExecutionFilter {
                id_prefix: Some(workflow_id.to_string()),
                limit: 10_000,
                ..ExecutionFilter::default()
            },
        )
        .await
        .expect("list");
    runs.retain(|run| run.workflow_id == workflow_id);
    runs.sort_by_key(|run| run.id);
    runs
}

/// Checks the chain of runs: each ended run names the next, each next run
/// names the one it continues, every history stays `events_max` long.
async fn assert_linked_chain(harness: &Harness, runs: &[ExecutionRecord], events_max: usize) {
    for (index, run) in runs.iter().enumerate() {
        let events = harness.events(run).await;
        assert!(
            events.len() <= events_max,
            "run {index} holds {} events: {events:?}",
            events.len()
        );
        let continued_from = match &events[0] {
            Event::WorkflowStarted { continued_from, .. } => continued_from.clone(),
            other => panic!("run {index} starts with {other:?}"),
        };
        let previous = index
            .checked_sub(1)
            .map(|previous| runs[previous].run_id.clone());
        assert_eq!(
            continued_from, previous,
            "run {index} names the run it continues"
        );
        if let Some(next) = runs.get(index + 1) {
            assert_eq!(run.status, ExecutionStatus::ContinuedAsNew);
            match events.last() {
                Some(Event::WorkflowContinuedAsNew { next_run_id, .. }) => {
                    assert_eq!(next_run_id, &next.run_id, "run {index} names its successor")
                }
                other => panic!("run {index} ends with {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn an_eternal_counter_runs_a_thousand_runs_with_bounded_histories() {
    let harness = Harness::new(Limits::default(), true).await;
    let (first, outcome) =
        bounded(harness.run("counter", "eternal", r#"{"count":0,"until":1000}"#)).await;
    let output = completed_output(&outcome);
    assert_eq!(output["count"], 1000);
    let runs = runs_of(&harness, "eternal").await;
    assert_eq!(runs.len(), 1001, "one run per count");
    assert_eq!(runs[0].id, first.id);
    let last = runs.last().expect("runs");
    assert_eq!(last.status, ExecutionStatus::Completed);
    assert_eq!(
        output["run_id"],
        last.run_id.as_str(),
        "the last run returned"
    );
    // Started, a clock read, the attribute upsert, the end: four events
    // per run, whatever the count.
    assert_linked_chain(&harness, &runs, 4).await;
    let newest = harness
        .store
        .execution(reprise::runtime::DEFAULT_TENANT, "eternal")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(newest.run_id, last.run_id, "the id names its newest run");
    // A finished run's continue-as-new replays: the input is the code's.
    let component = harness.engine.load_file(&guest("counter")).expect("load");
    let verdict = harness
        .runtime
        .verify_replay(
            &component,
            runs[500].clone(),
            harness.history(&runs[500]).await,
        )
        .await
        .expect("a continued run replays");
    assert_eq!(verdict, ReplayVerdict::Reproduced);
}

#[tokio::test]
async fn the_next_run_takes_the_newest_binding_and_the_pending_signals() {
    let harness = Harness::default().await;
    let first = harness
        .start("counter", "paused", r#"{"count":0,"until":3,"pause":true}"#)
        .await;
    let drive = tokio::spawn({
        let runtime = harness.runtime.clone();
        let record = first.clone();
        async move { runtime.drive(record).await }
    });
    wait_for_event(&harness, &first, "SignalAwaited").await;
    // A newer build is bound to the type while run 0 waits.
    let v2 = std::fs::read(guest("counter-v2")).expect("read");
    let v2 = harness.runtime.deploy_workflow(&v2).await.expect("deploy");
    harness.runtime.register_type("counter", &v2.digest);
    signal(&harness, &first, "next", "1", "n1").await;

    let second = bounded(async {
        loop {
            let runs = runs_of(&harness, "paused").await;
            if runs.len() == 2 {
                return runs[1].clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        second.module_digest, v2.digest,
        "run 1 runs the newest build"
    );
    assert_ne!(first.module_digest, v2.digest);
    // Two signals at once: run 1 takes the first; the second moves to run 2.
    signal(&harness, &second, "next", "2", "n2").await;
    signal(&harness, &second, "next", "3", "n3").await;
    let outcome = bounded(drive).await.expect("join").expect("drive");
    let output = completed_output(&outcome);
    assert_eq!(
        output["received"],
        json!([1, 2, 3]),
        "each signal once, in order"
    );
    assert_eq!(output["version"], 2);
    let runs = runs_of(&harness, "paused").await;
    assert_eq!(runs.len(), 4);
    assert_linked_chain(&harness, &runs, 7).await;
}

/// Runs of `workflow_id` in the SQLite database `db`, read by another
/// process (0 before the database exists).
async fn run_count(db: &std::path::Path, workflow_id: &str) -> i64 {
    if !db.exists() {
        return 0;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let Ok(pool) = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
    else {
        return 0;
    };
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE workflow_id = ?")
        .bind(workflow_id)
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
    pool.close().await;
    count
}

#[tokio::test]
async fn sigkill_between_and_inside_runs_loses_and_repeats_no_run() {
    const UNTIL: u64 = 400;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("reprise.db");
    let input = format!(r#"{{"count":0,"until":{UNTIL}}}"#);
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_reprise"))
            .arg("run")
            .arg(guest("counter"))
            .args(["--input", &input, "--id", "crashy", "--json"])
            .arg("--db")
            .arg(&db)
            .arg("--cache-dir")
            .arg(crate::support::cache_dir())
            .env("REPRISE_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn reprise")
    };
    for kill_after_runs in [1, 60, 150, 290] {
        let mut child = spawn();
        bounded(async {
            while run_count(&db, "crashy").await < kill_after_runs {
                if let Some(status) = child.try_wait().expect("poll child") {
                    panic!("reprise exited ({status}) before run {kill_after_runs}");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let output = spawn().wait_with_output().expect("wait for reprise");
    assert!(output.status.success(), "{:?}", output.status);
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    assert_eq!(printed["count"], UNTIL, "{printed}");

    let store = reprise::store::open(&db).await.expect("open store");
    let mut runs = store
        .list_executions(
            reprise::runtime::DEFAULT_TENANT,
            &ExecutionFilter {
                limit: 10_000,
                ..ExecutionFilter::default()
            },
        )
        .await
        .expect("list");
    runs.sort_by_key(|run| run.id);
    assert_eq!(
        runs.len() as u64,
        UNTIL + 1,
        "one run per count, none twice"
    );
    for (index, run) in runs.iter().enumerate() {
        let history = store.history(run.id).await.expect("history");
        let (input, continued_from) = match &history[0].event {
            Event::WorkflowStarted {
                input,
                continued_from,
                ..
            } => (input.clone(), continued_from.clone()),
            other => panic!("run {index} starts with {other:?}"),
        };
        let input: serde_json::Value = serde_json::from_str(&input).expect("input");
        assert_eq!(input["count"], index as u64, "run {index} counts on");
        let previous = index
            .checked_sub(1)
            .map(|previous| runs[previous].run_id.clone());
        assert_eq!(continued_from, previous);
        assert!(history.len() <= 4, "run {index}: {history:?}");
    }
}

/// Starts `workflow` under `id` with timeouts, without driving it.
async fn start_with_timeouts(
    harness: &Harness,
    workflow: &str,
    id: &str,
    input: &str,
    execution_timeout: Option<Duration>,
    run_timeout: Option<Duration>,
) -> Result<ExecutionRecord, RunError> {
    let bytes = std::fs::read(guest(workflow)).expect("read guest");
    let module = harness
        .runtime
        .deploy_workflow(&bytes)
        .await
        .expect("deploy");
    harness.runtime.register_type(workflow, &module.digest);
    harness
        .runtime
        .start_for(
            reprise::runtime::DEFAULT_TENANT,
            workflow,
            &module.digest,
            Some(id.to_string()),
            input,
            reprise::runtime::StartOptions {
                execution_timeout,
                run_timeout,
                ..reprise::runtime::StartOptions::default()
            },
        )
        .await
        .map(|(record, _)| record)
}

fn timed_out(outcome: reprise::Outcome) -> reprise::journal::WorkflowError {
    match outcome {
        reprise::Outcome::Failed { error } => {
            assert_eq!(
                error.error_type,
                reprise::journal::WORKFLOW_TIMED_OUT,
                "{error}"
            );
            error
        }
        reprise::Outcome::Completed { output } => {
            panic!("it must time out; it completed: {output}")
        }
    }
}

#[tokio::test]
async fn an_execution_timeout_fails_a_waiting_workflow_and_one_resumed_too_late() {
    let harness = Harness::new(Limits::default(), true).await;
    let sleeper = r#"{"name":"Ada","sleep_ms":60000}"#;
    let record = start_with_timeouts(
        &harness,
        "hello",
        "slow",
        sleeper,
        Some(Duration::from_millis(300)),
        None,
    )
    .await
    .expect("start");
    let outcome = bounded(harness.runtime.drive(record.clone()))
        .await
        .expect("drive");
    let error = timed_out(outcome);
    assert!(error.message.contains("execution timeout"), "{error}");
    let events = harness.events(&record).await;
    assert!(
        events.iter().any(|event| event.kind() == "TimerStarted")
            && !events.iter().any(|event| event.kind() == "TimerFired"),
        "it failed during the sleep: {events:?}"
    );
    let row = harness
        .store
        .execution(reprise::runtime::DEFAULT_TENANT, "slow")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(row.status, ExecutionStatus::Failed);

    // Not driven until after its deadline (a node that was down): it runs
    // no code at all and fails at once.
    let late = start_with_timeouts(
        &harness,
        "hello",
        "late",
        sleeper,
        Some(Duration::from_millis(50)),
        None,
    )
    .await
    .expect("start");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let error = timed_out(
        bounded(harness.runtime.drive(late.clone()))
            .await
            .expect("drive"),
    );
    assert!(error.message.contains("before it resumed"), "{error}");
    let kinds: Vec<&str> = harness
        .history(&late)
        .await
        .iter()
        .map(|recorded| recorded.event.kind())
        .collect();
    assert_eq!(kinds, ["WorkflowStarted", "WorkflowFailed"]);

    for bad in [
        Duration::ZERO,
        reprise::runtime::WORKFLOW_TIMEOUT_MAX + Duration::from_secs(1),
    ] {
        let refused = start_with_timeouts(&harness, "hello", "bad", sleeper, None, Some(bad)).await;
        assert!(
            matches!(&refused, Err(RunError::InvalidInput(message)) if message.contains("run timeout")),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn a_run_timeout_starts_afresh_in_each_continued_run() {
    let harness = Harness::default().await;
    let run_timeout = Duration::from_millis(400);
    let first = start_with_timeouts(
        &harness,
        "counter",
        "patient",
        r#"{"count":0,"until":5,"pause":true}"#,
        None,
        Some(run_timeout),
    )
    .await
    .expect("start");
    let drive = tokio::spawn({
        let runtime = harness.runtime.clone();
        let record = first.clone();
        async move { runtime.drive(record).await }
    });
    // Run 0 gets its signal in time; run 1 never does.
    wait_for_event(&harness, &first, "SignalAwaited").await;
    signal(&harness, &first, "next", "1", "n1").await;
    let error = timed_out(bounded(drive).await.expect("join").expect("drive"));
    assert!(error.message.contains("run timeout"), "{error}");
    let runs = runs_of(&harness, "patient").await;
    assert_eq!(
        runs.iter().map(|run| run.status).collect::<Vec<_>>(),
        [ExecutionStatus::ContinuedAsNew, ExecutionStatus::Failed]
    );
    let deadline_of = |events: &[Event]| match &events[0] {
        Event::WorkflowStarted { timeouts, .. } => {
            assert_eq!(timeouts.run_timeout_ms, Some(400));
            timeouts.run_deadline_ms.expect("a run deadline")
        }
        other => panic!("{other:?}"),
    };
    let first_deadline = deadline_of(&harness.events(&runs[0]).await);
    let second_deadline = deadline_of(&harness.events(&runs[1]).await);
    assert!(
        second_deadline > first_deadline,
        "run 1 got its own deadline"
    );
}

#[tokio::test]
async fn search_attributes_set_at_start_and_by_the_workflow_filter_lists() {
    let harness = Harness::default().await;
    let bytes = std::fs::read(guest("counter")).expect("read guest");
    let module = harness
        .runtime
        .deploy_workflow(&bytes)
        .await
        .expect("deploy");
    harness.runtime.register_type("counter", &module.digest);
    let start = |id: &'static str, tier: &'static str| {
        let runtime = harness.runtime.clone();
        let digest = module.digest.clone();
        async move {
            runtime
                .start_for(
                    reprise::runtime::DEFAULT_TENANT,
                    "counter",
                    &digest,
                    Some(id.to_string()),
                    r#"{"count":0,"until":3}"#,
                    reprise::runtime::StartOptions {
                        search_attributes: Some(format!(r#"{{"tier":"{tier}"}}"#)),
                        ..reprise::runtime::StartOptions::default()
                    },
                )
                .await
                .map(|(record, _)| record)
        }
    };
    for (id, tier) in [("gold-1", "gold"), ("silver-1", "silver")] {
        let record = start(id, tier).await.expect("start");
        bounded(harness.runtime.drive(record)).await.expect("drive");
    }
    let listed = |filter: &str| {
        let filter = ExecutionFilter {
            search_attribute: Some(reprise::attributes::filter(filter).expect("filter")),
            limit: 100,
            ..ExecutionFilter::default()
        };
        let store = harness.store.clone();
        async move {
            let mut runs: Vec<(String, String)> = store
                .list_executions(reprise::runtime::DEFAULT_TENANT, &filter)
                .await
                .expect("list")
                .into_iter()
                .map(|run| (run.workflow_id, run.search_attributes.unwrap_or_default()))
                .collect();
            runs.sort();
            runs
        }
    };
    // The start's attribute stays on every run of the chain; the
    // workflow's `count` changes per run.
    assert_eq!(listed("tier=gold").await.len(), 4, "every run of gold-1");
    assert_eq!(
        listed("count=3").await,
        [
            (
                "gold-1".to_string(),
                r#"{"count":3,"tier":"gold"}"#.to_string()
            ),
            (
                "silver-1".to_string(),
                r#"{"count":3,"tier":"silver"}"#.to_string()
            ),
        ]
    );
    // Replay checks the upsert like any command.
    let runs = runs_of(&harness, "gold-1").await;
    assert_eq!(
        replay_with(&harness, "counter", &runs[1])
            .await
            .expect("replays"),
        ReplayVerdict::Reproduced
    );

    let refused = start("bad", "x\"y").await;
    assert!(
        matches!(refused, Err(RunError::InvalidInput(_))),
        "{refused:?}"
    );
    let too_deep = harness
        .runtime
        .start_for(
            reprise::runtime::DEFAULT_TENANT,
            "counter",
            &module.digest,
            Some("nested".into()),
            r#"{"count":0,"until":0}"#,
            reprise::runtime::StartOptions {
                search_attributes: Some(r#"{"tier":{"nested":1}}"#.into()),
                ..reprise::runtime::StartOptions::default()
            },
        )
        .await;
    assert!(
        matches!(&too_deep, Err(RunError::InvalidInput(message)) if message.contains("a list or an object")),
        "{too_deep:?}"
    );
}

/// `examples/counter-py` or `counter-js` (`module`, writing `language`)
/// through 21 runs: each run at most `events_max` events, one patch
/// marker, both attributes on the last row, and a run that replays.
async fn sdk_counter_chain(module: &str, language: &str, events_max: usize) {
    let harness = Harness::new(Limits::default(), true).await;
    let id = format!("{module}-chain");
    let (_, outcome) = bounded(harness.run(module, &id, r#"{"count":0,"until":20}"#)).await;
    let output = completed_output(&outcome);
    assert_eq!(output["count"], 20);
    let runs = runs_of(&harness, &id).await;
    assert_eq!(runs.len(), 21);
    assert_linked_chain(&harness, &runs, events_max).await;
    let last = runs.last().expect("runs");
    assert_eq!(output["run_id"], last.run_id.as_str());
    assert_eq!(
        last.search_attributes.as_deref(),
        Some(format!(r#"{{"count":20,"language":"{language}"}}"#).as_str())
    );
    for run in &runs {
        let markers: Vec<Event> = harness
            .events(run)
            .await
            .into_iter()
            .filter(|event| event.kind() == "PatchMarked")
            .collect();
        assert_eq!(
            markers,
            [Event::PatchMarked {
                change_id: "report-language".into()
            }],
            "every new run takes the patched path once"
        );
    }
    assert_eq!(
        replay_with(&harness, module, &runs[7])
            .await
            .expect("replays"),
        ReplayVerdict::Reproduced
    );
}

#[tokio::test]
async fn the_python_sdk_continues_as_new_patches_and_sets_attributes() {
    // CPython's start-up draws (10 journaled random reads: hash secret,
    // `random`'s seed…), then the clock, two upserts, the marker, the end:
    // 16 events in every run, however long the chain.
    sdk_counter_chain("counter-py", "python", 16).await;
}

#[tokio::test]
async fn the_typescript_sdk_continues_as_new_patches_and_sets_attributes() {
    // The JavaScript engine's own clock reads come on top of the same
    // steps; still a bounded number per run, however long the chain.
    sdk_counter_chain("counter-js", "typescript", 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_api_a_chain_is_one_id_with_filterable_runs() {
    use crate::server::{ServerProcess, call, create_tenant, free_port, json_call};

    let data = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(data.path().join("activity")).expect("activity dir");
    let key = create_tenant(data.path(), "acme");
    let server = ServerProcess::start(data.path(), free_port()).await;
    let address = server.address.clone();
    let bytes = std::fs::read(guest("counter")).expect("read");
    let (status, module) = call(&address, &key, "POST", "/v1/modules", bytes.into()).await;
    assert_eq!(status, 201, "{module}");
    let bind = json!({ "digest": module["digest"] });
    let (status, _) = json_call(&address, &key, "PUT", "/v1/workflow-types/counter", bind).await;
    assert_eq!(status, 200);

    // Start-and-wait follows the chain to its last run.
    let start = json!({
        "workflow_type": "counter",
        "workflow_id": "api-chain",
        "input": { "count": 0, "until": 3 },
        "search_attributes": { "tier": "gold" },
        "execution_timeout_ms": 600_000,
        "wait_ms": 30_000,
    });
    let (status, finished) = json_call(&address, &key, "POST", "/v1/executions", start).await;
    assert_eq!(status, 201, "{finished}");
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["result"]["count"], 3);
    assert_eq!(
        finished["search_attributes"],
        json!({ "count": 3, "tier": "gold" })
    );

    let list = |query: &'static str| {
        let (address, key) = (address.clone(), key.clone());
        async move {
            call(
                &address,
                &key,
                "GET",
                &format!("/v1/executions?{query}"),
                Default::default(),
            )
            .await
        }
    };
    let (status, gold) = list("search_attribute=tier%3Dgold").await;
    assert_eq!(status, 200, "{gold}");
    assert_eq!(gold.as_array().map(Vec::len), Some(4), "every run: {gold}");
    let (_, last) = list("search_attribute=count%3D3").await;
    assert_eq!(last.as_array().map(Vec::len), Some(1), "{last}");
    assert_eq!(last[0]["status"], "completed");
    let (_, continued) = list("status=continued_as_new&search_attribute=tier%3Dgold").await;
    assert_eq!(continued.as_array().map(Vec::len), Some(3), "{continued}");
    let (status, counts) = call(
        &address,
        &key,
        "GET",
        "/v1/execution-counts?search_attribute=tier%3Dgold",
        Default::default(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            counts["completed"].as_u64(),
            counts["continued_as_new"].as_u64()
        ),
        (Some(1), Some(3))
    );

    let (status, refused) = list("search_attribute=no-equals-sign").await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("NAME=VALUE"),
        "{refused}"
    );
    let nested = json!({
        "workflow_type": "counter",
        "input": { "count": 0, "until": 0 },
        "search_attributes": { "tier": ["gold"] },
    });
    let (status, refused) = json_call(&address, &key, "POST", "/v1/executions", nested).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("a list or an object"),
        "{refused}"
    );
}

/// Starts `workflow` under `id` and drives it in the background.
async fn start_in_background(
    harness: &Harness,
    workflow: &str,
    id: &str,
    input: &str,
) -> (
    ExecutionRecord,
    tokio::task::JoinHandle<Result<reprise::Outcome, RunError>>,
) {
    let record = harness.start(workflow, id, input).await;
    let drive = tokio::spawn({
        let runtime = harness.runtime.clone();
        let record = record.clone();
        async move { runtime.drive(record).await }
    });
    (record, drive)
}

#[tokio::test]
async fn upgrading_running_executions_moves_those_that_replay_and_keeps_the_others() {
    let harness = Harness::new(Limits::default(), true).await;
    // Waiting for its signal, before the change point: it can move.
    let (waiting, drive) =
        start_in_background(&harness, "versioned", "upgradable", r#"{"n":1}"#).await;
    wait_for_event(&harness, &waiting, "SignalAwaited").await;
    let deploy = |workflow: &'static str| {
        let runtime = harness.runtime.clone();
        async move {
            let bytes = std::fs::read(guest(workflow)).expect("read guest");
            runtime
                .deploy_workflow(&bytes)
                .await
                .expect("deploy")
                .digest
        }
    };
    let patched = deploy("versioned-patched").await;
    let report = harness
        .runtime
        .upgrade_running(reprise::runtime::DEFAULT_TENANT, "versioned", &patched)
        .await
        .expect("upgrade");
    assert_eq!(report.upgraded, ["upgradable"]);
    assert!(report.kept.is_empty(), "{report:?}");

    // Past its first activity under `hello`: `hello-v2` calls another one
    // first, so it stays where it is, with the reason.
    let (sleeping, _sleeper) = start_in_background(
        &harness,
        "hello",
        "pinned",
        r#"{"name":"Ada","sleep_ms":60000}"#,
    )
    .await;
    wait_for_event(&harness, &sleeping, "TimerStarted").await;
    let v2 = deploy("hello-v2").await;
    let report = harness
        .runtime
        .upgrade_running(reprise::runtime::DEFAULT_TENANT, "hello", &v2)
        .await
        .expect("upgrade");
    assert!(report.upgraded.is_empty(), "{report:?}");
    assert_eq!(report.kept.len(), 1);
    assert_eq!(report.kept[0].workflow_id, "pinned");
    assert!(
        report.kept[0].reason.contains("nondeterminism"),
        "{report:?}"
    );

    // The moved execution resumes on the new module: past the history,
    // `patched` is live, so it takes the new path.
    signal(&harness, &waiting, "go", "{}", "go-1").await;
    let outcome = bounded(drive).await.expect("join").expect("drive");
    assert_eq!(completed_output(&outcome), json!({ "n": 3, "path": "new" }));
    let events = harness.events(&waiting).await;
    let upgrades: Vec<&Event> = events
        .iter()
        .filter(|event| event.kind() == "ModuleUpgraded")
        .collect();
    assert_eq!(
        upgrades,
        [&Event::ModuleUpgraded {
            from_digest: waiting.module_digest.clone(),
            module_digest: patched.clone(),
        }]
    );
    assert!(events.iter().any(|event| event.kind() == "PatchMarked"));
    assert_eq!(
        replay_with(&harness, "versioned-patched", &waiting)
            .await
            .expect("replays"),
        ReplayVerdict::Reproduced
    );
}

/// SIGKILL right after each durable append of a Python counter run — the
/// first upsert (with the buffered start-up draws and clock read), the
/// second (with the patch marker) and the continue-as-new commit: the
/// chain resumes with one marker and both attributes per run, rows
/// matching histories.
#[tokio::test]
async fn patches_and_attributes_survive_sigkill_at_their_journal_boundaries() {
    for kill_at in [13, 15, 16] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("reprise.db");
        let run = |kill: Option<u32>| {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reprise"));
            command
                .arg("run")
                .arg(guest("counter-py"))
                .args([
                    "--input",
                    r#"{"count":0,"until":2}"#,
                    "--id",
                    "py-crash",
                    "--json",
                ])
                .arg("--db")
                .arg(&db)
                .arg("--cache-dir")
                .arg(crate::support::cache_dir())
                .env("REPRISE_LOG", "warn");
            if let Some(position) = kill {
                command.env("REPRISE_FAULT_KILL_AT_POSITION", position.to_string());
            }
            command.output().expect("run reprise")
        };
        let crashed = run(Some(kill_at));
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(crashed.status.signal(), Some(9), "killed at {kill_at}");
        let finished = run(None);
        assert!(finished.status.success(), "after {kill_at}: {finished:?}");
        let output: serde_json::Value = serde_json::from_slice(&finished.stdout).expect("JSON");
        assert_eq!(output["count"], 2, "after {kill_at}: {output}");

        let store = reprise::store::open(&db).await.expect("store");
        let mut runs = store
            .list_executions(
                reprise::runtime::DEFAULT_TENANT,
                &ExecutionFilter {
                    limit: 100,
                    ..ExecutionFilter::default()
                },
            )
            .await
            .expect("list");
        runs.sort_by_key(|run| run.id);
        assert_eq!(runs.len(), 3, "after {kill_at}: one run per count");
        for (count, run) in runs.iter().enumerate() {
            let history = store.history(run.id).await.expect("history");
            let kinds: Vec<&str> = history
                .iter()
                .map(|recorded| recorded.event.kind())
                .collect();
            let count_of = |kind: &str| kinds.iter().filter(|seen| **seen == kind).count();
            assert_eq!(
                count_of("PatchMarked"),
                1,
                "after {kill_at}, run {count}: {kinds:?}"
            );
            assert_eq!(
                count_of("SearchAttributesUpserted"),
                2,
                "after {kill_at}, run {count}: {kinds:?}"
            );
            assert_eq!(
                run.search_attributes.as_deref(),
                Some(format!(r#"{{"count":{count},"language":"python"}}"#).as_str()),
                "after {kill_at}: the row matches the history"
            );
        }
    }
}

/// An upgrade found safe is durable before it is applied: a server killed
/// between the deploy and the execution's next activation still moves the
/// execution after its restart (the `Upgrade` mailbox message), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_found_safe_survives_a_sigkill_before_it_is_applied() {
    use crate::server::{ServerProcess, call, create_tenant, free_port, json_call};

    let data = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(data.path().join("activity")).expect("activity dir");
    let key = create_tenant(data.path(), "acme");
    let server = ServerProcess::start(data.path(), free_port()).await;
    let upload = |address: String, module: &'static str| {
        let key = key.clone();
        async move {
            let bytes = std::fs::read(guest(module)).expect("read");
            let (status, uploaded) =
                call(&address, &key, "POST", "/v1/modules", bytes.into()).await;
            assert_eq!(status, 201, "{uploaded}");
            uploaded["digest"].as_str().expect("digest").to_string()
        }
    };
    let v1 = upload(server.address.clone(), "counter").await;
    let bind = json!({ "digest": v1 });
    let (status, _) = json_call(
        &server.address,
        &key,
        "PUT",
        "/v1/workflow-types/counter",
        bind,
    )
    .await;
    assert_eq!(status, 200);
    let start = json!({
        "workflow_type": "counter",
        "workflow_id": "up-1",
        "input": { "count": 0, "until": 1, "pause": true },
    });
    let (status, started) = json_call(&server.address, &key, "POST", "/v1/executions", start).await;
    assert_eq!(status, 201, "{started}");
    let history = |address: String| {
        let key = key.clone();
        async move {
            let (status, page) = call(
                &address,
                &key,
                "GET",
                "/v1/executions/up-1/history",
                Default::default(),
            )
            .await;
            assert_eq!(status, 200, "{page}");
            page["events"].as_array().cloned().unwrap_or_default()
        }
    };
    bounded(async {
        while !history(server.address.clone())
            .await
            .iter()
            .any(|event| event["type"] == "SignalAwaited")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let v2 = upload(server.address.clone(), "counter-v2").await;
    let rebind = json!({ "digest": v2, "upgrade_running": true });
    let (status, report) = json_call(
        &server.address,
        &key,
        "PUT",
        "/v1/workflow-types/counter",
        rebind,
    )
    .await;
    assert_eq!((status, &report["upgraded"]), (200, &json!(1)), "{report}");
    // Killed before the execution wakes up again: nothing journaled yet.
    drop(server);
    let server = ServerProcess::start(data.path(), free_port()).await;
    let upgraded = bounded(async {
        loop {
            let events = history(server.address.clone()).await;
            if events.iter().any(|event| event["type"] == "ModuleUpgraded") {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let moves: Vec<&Value> = upgraded
        .iter()
        .filter(|event| event["type"] == "ModuleUpgraded")
        .collect();
    assert_eq!(moves.len(), 1, "{upgraded:?}");
    assert_eq!(moves[0]["data"]["module_digest"], v2.as_str());
    let signal = json!({ "name": "next", "payload": 1 });
    let (status, _) = json_call(
        &server.address,
        &key,
        "POST",
        "/v1/executions/up-1/signals",
        signal,
    )
    .await;
    assert_eq!(status, 202);
    let (status, finished) = call(
        &server.address,
        &key,
        "GET",
        "/v1/executions/up-1?wait_ms=30000",
        Default::default(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(finished["result"]["version"], 2, "{finished}");
}
