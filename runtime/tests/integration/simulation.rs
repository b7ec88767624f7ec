//! A seeded simulation: many executions through the real engine and store,
//! with the "process" crashing at random moments (the whole tokio runtime,
//! with every drive, activity and store task, is dropped mid-flight) and
//! activities failing on purpose. At the end it checks the invariants:
//! every execution finished with the right result, every history is
//! contiguous and replays, every side effect happened at most once per
//! idempotency key.
//!
//! Repeat a failing run with `REPRISE_SIM_SEED=<seed printed on failure>`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use reprise::journal::{Event, History, RecordedEvent};
use reprise::store::{self, ExecutionStatus};
use reprise::{
    ActivityConfig, ActivityRegistry, Engine, Limits, Outcome, ReplayVerdict, Runtime,
    RuntimeOptions,
};

use crate::support::{cache_dir, guest, read_ledger, scheduled_keys};

const EXECUTIONS: usize = 14;
const CRASHES: usize = 8;

#[derive(Clone, Debug)]
enum Job {
    Hello { sleep_ms: u64, work_ms: u64 },
    Retry { fail_times: u32 },
    FanOut { count: u64 },
}

impl Job {
    fn random(rng: &mut StdRng) -> Job {
        match rng.random_range(0..3) {
            0 => Job::Hello {
                sleep_ms: rng.random_range(5..60),
                work_ms: rng.random_range(0..25),
            },
            1 => Job::Retry {
                fail_times: rng.random_range(0..4),
            },
            _ => Job::FanOut {
                count: rng.random_range(1..9),
            },
        }
    }

    fn workflow(&self) -> &'static str {
        match self {
            Job::Hello { .. } => "hello",
            Job::Retry { .. } | Job::FanOut { .. } => "patterns",
        }
    }

    fn input(&self, index: usize) -> String {
        match self {
            Job::Hello { sleep_ms, work_ms } => {
                format!(r#"{{"name":"sim-{index}","sleep_ms":{sleep_ms},"work_ms":{work_ms}}}"#)
            }
            Job::Retry { fail_times } => {
                format!(r#"{{"mode":"retry","fail_times":{fail_times},"max_attempts":0}}"#)
            }
            Job::FanOut { count } => format!(r#"{{"mode":"fanout","count":{count}}}"#),
        }
    }

    fn check(&self, index: usize, output: &serde_json::Value) {
        match self {
            Job::Hello { .. } => {
                assert_eq!(output["greeting"], format!("Hello, sim-{index}!"));
            }
            Job::Retry { fail_times } => {
                assert_eq!(output["succeeded_on_attempt"], fail_times + 1, "{output}");
            }
            Job::FanOut { count } => {
                let expected: Vec<u64> = (1..=*count).collect();
                assert_eq!(output["results"], serde_json::json!(expected));
            }
        }
    }
}

/// One life of the "process": opens everything, drives every unfinished
/// execution, and is dropped whole after `crash_after` (or runs to the end).
fn live_once(dir: &Path, jobs: &[Job], crash_after: Option<Duration>) -> HashMap<usize, Outcome> {
    let process = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcomes = process.block_on(async {
        let engine = Engine::new(Some(cache_dir()), Limits::default()).expect("engine");
        let store = store::open(&dir.join("sim.db")).await.expect("store");
        let activities = engine
            .load_file(&guest("hello-activities"))
            .expect("activities");
        let config = ActivityConfig {
            activity_dir: Some(dir.join("activity")),
            ..ActivityConfig::default()
        };
        let registry = ActivityRegistry::load(engine.clone(), vec![activities], config)
            .await
            .expect("registry");
        let runtime =
            Runtime::new(engine, store, registry, RuntimeOptions::default()).expect("runtime");
        let mut drives = Vec::new();
        for (index, job) in jobs.iter().enumerate() {
            let bytes = std::fs::read(guest(job.workflow())).expect("read guest");
            let module = runtime.deploy_workflow(&bytes).await.expect("deploy");
            let (record, _) = runtime
                .start(
                    job.workflow(),
                    &module.digest,
                    Some(format!("sim-{index}")),
                    &job.input(index),
                )
                .await
                .expect("start");
            let runtime = runtime.clone();
            drives.push(tokio::spawn(
                async move { (index, runtime.drive(record).await) },
            ));
        }
        let all = async {
            let mut outcomes = HashMap::new();
            for drive in drives {
                let (index, outcome) = drive.await.expect("drive task");
                outcomes.insert(index, outcome.expect("drive"));
            }
            outcomes
        };
        match crash_after {
            Some(delay) => tokio::time::timeout(delay, all).await.unwrap_or_default(),
            None => tokio::time::timeout(Duration::from_secs(120), all)
                .await
                .expect("the final life finishes every execution"),
        }
    });
    // The crash: every task of this life is dropped wherever it is.
    process.shutdown_background();
    outcomes
}

#[test]
fn seeded_crashes_and_faults_keep_every_invariant() {
    let seed: u64 = std::env::var("REPRISE_SIM_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("simulation seed: {seed} (repeat with REPRISE_SIM_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let jobs: Vec<Job> = (0..EXECUTIONS).map(|_| Job::random(&mut rng)).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("activity")).expect("activity dir");

    for life in 0..CRASHES {
        let crash_after = Duration::from_millis(rng.random_range(2..60));
        let finished = live_once(dir.path(), &jobs, Some(crash_after)).len();
        eprintln!("life {life}: crashed after {crash_after:?}; {finished} executions had finished");
    }
    let outcomes = live_once(dir.path(), &jobs, None);

    // Every execution finished with the right result.
    assert_eq!(outcomes.len(), EXECUTIONS, "seed {seed}");
    for (index, job) in jobs.iter().enumerate() {
        match &outcomes[&index] {
            Outcome::Completed { output } => job.check(
                index,
                &serde_json::from_str(output.get()).expect("a recorded output is JSON"),
            ),
            Outcome::Failed { error } => {
                panic!("seed {seed}: sim-{index} ({job:?}) failed: {error}")
            }
        }
    }

    let check = tokio::runtime::Runtime::new().expect("tokio runtime");
    check.block_on(async {
        let engine = Engine::new(Some(cache_dir()), Limits::default()).expect("engine");
        let store = store::open(&dir.path().join("sim.db"))
            .await
            .expect("store");
        let runtime = Runtime::new(
            engine.clone(),
            store.clone(),
            ActivityRegistry::empty(engine.clone()).expect("registry"),
            RuntimeOptions::default(),
        )
        .expect("runtime");
        let mut record_keys = HashSet::new();
        for (index, job) in jobs.iter().enumerate() {
            let record = store
                .execution("default", &format!("sim-{index}"))
                .await
                .expect("read")
                .expect("exists");
            assert_eq!(record.status, ExecutionStatus::Completed, "seed {seed}");
            let events: Vec<RecordedEvent> = store.history(record.id).await.expect("history");
            // Contiguous, one terminal event at the end, one outcome per activity.
            let history = History::from_recorded(events.clone())
                .unwrap_or_else(|problem| panic!("seed {seed}: sim-{index}: {problem}"));
            let terminals = events
                .iter()
                .filter(|recorded| recorded.event.is_terminal())
                .count();
            assert_eq!(terminals, 1, "seed {seed}: sim-{index}");
            for recorded in &events {
                if let Event::ActivityScheduled { seq, .. } = recorded.event {
                    assert!(
                        history.outcome(seq).is_some(),
                        "seed {seed}: sim-{index} seq {seq} has no outcome"
                    );
                }
            }
            record_keys.extend(scheduled_keys(&events, "record"));
            // The module it ran reproduces the history.
            let component = engine.load_file(&guest(job.workflow())).expect("load");
            let verdict = runtime
                .verify_replay(&component, record, events)
                .await
                .unwrap_or_else(|error| panic!("seed {seed}: sim-{index}: {error}"));
            assert_eq!(verdict, ReplayVerdict::Reproduced);
        }
        // At most once per key, and only keys the journal fixed.
        let ledger = read_ledger(&dir.path().join("activity"));
        let mut seen = HashSet::new();
        for (key, _) in &ledger {
            assert!(
                seen.insert(key.clone()),
                "seed {seed}: key {key} applied twice"
            );
            assert!(
                record_keys.contains(key),
                "seed {seed}: key {key} is not in any history"
            );
        }
        let hello_runs = jobs
            .iter()
            .filter(|job| matches!(job, Job::Hello { .. }))
            .count();
        assert_eq!(
            ledger.len(),
            2 * hello_runs,
            "seed {seed}: each hello run records twice"
        );
    });
}
