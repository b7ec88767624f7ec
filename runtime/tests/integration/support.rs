//! Shared set-up: guest components, a runtime over a fresh database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reprise::activity::outbound::Allowlist;
use reprise::activity::worker::WorkerQueue;
use reprise::journal::{Event, RecordedEvent};
use reprise::store::{self, ExecutionRecord, GuestLogLine, Store};
use reprise::{ActivityConfig, ActivityRegistry, Engine, Limits, Outcome, Runtime, RuntimeOptions};
use tempfile::TempDir;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf()
}

/// The code block between `<!-- name -->` and `<!-- /name -->` in
/// README.md, without its fence, ending with a newline.
pub fn readme_snippet(name: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("README.md has no <!-- {name} --> block"));
    let end = readme[start..]
        .find(&format!("<!-- /{name} -->"))
        .expect("the block ends")
        + start;
    let mut code: String = readme[start..end]
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    code.push('\n');
    code
}

/// A guest component built by `scripts/build-guests`.
pub fn guest(name: &str) -> PathBuf {
    let path = repo_root()
        .join("build/guests")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-guests (scripts/test does)",
        path.display()
    );
    path
}

/// Compiled components survive across tests and runs (the Python guest
/// takes seconds to compile).
pub fn cache_dir() -> PathBuf {
    repo_root().join("build/cache")
}

pub struct Harness {
    pub runtime: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    /// Granted to activities as /data; the ledger lives here.
    pub activity_dir: PathBuf,
    _dir: TempDir,
}

/// The hot window of a harness: zero (every wait evicts: the cold path) or
/// longer than any test (instances stay unless under pressure: the hot path).
pub fn hot_window(evict_on_wait: bool) -> std::time::Duration {
    if evict_on_wait {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs(3_600)
    }
}

/// What tests' activities get unless a test says otherwise: HTTP allowed
/// to 127.0.0.1, names no component serves to `workers`.
pub fn activity_config(workers: Option<Arc<WorkerQueue>>) -> ActivityConfig {
    ActivityConfig {
        allowed_hosts: Allowlist::parse(["127.0.0.1"]).expect("a valid allowlist"),
        workers,
        ..ActivityConfig::default()
    }
}

/// A runtime on `store` with the hello and order activities, files in
/// `activity_dir`, the rest as `config` says.
async fn runtime_over(
    engine: &Engine,
    store: &Arc<dyn Store>,
    activity_dir: &Path,
    config: ActivityConfig,
    options: RuntimeOptions,
) -> Arc<Runtime> {
    let components = ["hello-activities", "order-activities"]
        .iter()
        .map(|name| engine.load_file(&guest(name)).expect("activities load"))
        .collect();
    let config = ActivityConfig {
        activity_dir: Some(activity_dir.to_path_buf()),
        ..config
    };
    let registry = ActivityRegistry::load(engine.clone(), components, config)
        .await
        .expect("activity registry");
    Runtime::new(engine.clone(), store.clone(), registry, options).expect("runtime")
}

impl Harness {
    pub async fn new(limits: Limits, evict_on_wait: bool) -> Harness {
        Harness::configured(limits, hot_window(evict_on_wait), None).await
    }

    /// With the runtime's default hot window: instances are evicted 100 ms
    /// into a wait, or at once under pressure — what a server does.
    pub async fn as_served(limits: Limits) -> Harness {
        Harness::configured(limits, reprise::runtime::DEFAULT_HOT_WINDOW, None).await
    }

    /// Activities from hello-activities and order-activities, HTTP allowed
    /// to 127.0.0.1, names no component serves go to `workers` if given.
    pub async fn configured(
        limits: Limits,
        hot_window: std::time::Duration,
        workers: Option<Arc<WorkerQueue>>,
    ) -> Harness {
        let options = RuntimeOptions {
            hot_window,
            ..RuntimeOptions::default()
        };
        Harness::with_options(limits, options, workers).await
    }

    pub async fn with_options(
        limits: Limits,
        options: RuntimeOptions,
        workers: Option<Arc<WorkerQueue>>,
    ) -> Harness {
        Harness::with_activity_config(limits, options, activity_config(workers)).await
    }

    pub async fn with_activity_config(
        limits: Limits,
        options: RuntimeOptions,
        config: ActivityConfig,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let activity_dir = dir.path().join("activity");
        std::fs::create_dir_all(&activity_dir).expect("activity dir");
        let engine = Engine::new(Some(cache_dir()), limits).expect("engine");
        let store = store::open(&dir.path().join("reprise.db"))
            .await
            .expect("store");
        let runtime = runtime_over(&engine, &store, &activity_dir, config, options).await;
        Harness {
            runtime,
            store,
            engine,
            activity_dir,
            _dir: dir,
        }
    }

    /// A new runtime on the same database, engine and activities: what
    /// a restarted process has (the harness's own runtime stays as it is).
    pub async fn restart(&self) -> Arc<Runtime> {
        runtime_over(
            &self.engine,
            &self.store,
            &self.activity_dir,
            activity_config(None),
            RuntimeOptions::default(),
        )
        .await
    }

    pub async fn default() -> Harness {
        Harness::new(Limits::default(), false).await
    }

    /// Deploys `workflow` (registered under its name) and starts it
    /// under `id`, without driving it.
    pub async fn start(&self, workflow: &str, id: &str, input: &str) -> ExecutionRecord {
        let bytes = std::fs::read(guest(workflow)).expect("read guest");
        let module = self.runtime.deploy_workflow(&bytes).await.expect("deploy");
        self.runtime.register_type(workflow, &module.digest);
        let (record, created) = self
            .runtime
            .start(workflow, &module.digest, Some(id.to_string()), input)
            .await
            .expect("start");
        assert!(created, "workflow id {id} was used before in this test");
        record
    }

    /// Deploys `workflow`, starts it under `id` and drives it to the end.
    pub async fn run(&self, workflow: &str, id: &str, input: &str) -> (ExecutionRecord, Outcome) {
        let record = self.start(workflow, id, input).await;
        let outcome = self.runtime.drive(record.clone()).await.expect("drive");
        (record, outcome)
    }

    /// Replays the execution's history against `workflow` in a fresh
    /// instance, writing nothing, and asserts the code reproduces it.
    pub async fn assert_replays(&self, workflow: &str, record: &ExecutionRecord) {
        let component = self.engine.load_file(&guest(workflow)).expect("load");
        let verdict = self
            .runtime
            .verify_replay(&component, record.clone(), self.history(record).await)
            .await
            .expect("the code reproduces its history");
        assert_eq!(verdict, reprise::ReplayVerdict::Reproduced);
    }

    /// Waits until the history holds `count` completed activities.
    pub async fn completed_activities(&self, record: &ExecutionRecord, count: usize) {
        loop {
            let completed = self
                .history(record)
                .await
                .iter()
                .filter(|recorded| {
                    matches!(
                        recorded.event,
                        reprise::journal::Event::ActivityCompleted { .. }
                    )
                })
                .count();
            if completed >= count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn history(&self, record: &ExecutionRecord) -> Vec<RecordedEvent> {
        self.store.history(record.id).await.expect("history")
    }

    /// The events of the execution's history, without their positions.
    pub async fn events(&self, record: &ExecutionRecord) -> Vec<reprise::journal::Event> {
        self.history(record)
            .await
            .into_iter()
            .map(|recorded| recorded.event)
            .collect()
    }

    /// The ledger lines the `record` activity wrote, as (key, step).
    pub fn ledger(&self) -> Vec<(String, u64)> {
        read_ledger(&self.activity_dir)
    }
}

pub fn read_ledger(activity_dir: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(activity_dir.join("ledger.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("ledger line is JSON");
            (
                value["key"].as_str().expect("key").to_string(),
                value["step"].as_u64().expect("step"),
            )
        })
        .collect()
}

/// The result of a completed execution, parsed.
pub fn completed_output(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Completed { output } => {
            serde_json::from_str(output.get()).expect("a recorded output is JSON")
        }
        Outcome::Failed { error } => panic!("expected completion, the workflow failed: {error}"),
    }
}

/// The value of the wall-clock read at `seq`, in ms.
pub fn clock_ms_at(events: &[RecordedEvent], seq: u64) -> u64 {
    events
        .iter()
        .find_map(|recorded| match &recorded.event {
            Event::ClockRead {
                seq: at, value_ns, ..
            } if *at == seq => Some(value_ns / 1_000_000),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no clock read at seq {seq}"))
}

/// Idempotency keys of every scheduled activity, in history order.
pub fn scheduled_keys(events: &[RecordedEvent], name: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            Event::ActivityScheduled {
                name: scheduled,
                idempotency_key,
                ..
            } if scheduled == name => Some(idempotency_key.clone()),
            _ => None,
        })
        .collect()
}

/// Sends `request` (origin-form: a path) to the server at `address` over a
/// new client, as a command-line client would.
pub async fn send(
    address: &str,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, reprise::activity::outbound::OutboundError> {
    use reprise::activity::outbound::{OutboundClient, full_body};
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_string();
    parts.uri = format!("http://{address}{path}")
        .parse()
        .expect("an absolute URI");
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_else(|never| match never {});
    let client = OutboundClient::new(None).expect("an outbound client");
    client
        .send(http::Request::from_parts(parts, full_body(body)))
        .await
}

/// The execution's stored guest log lines once `enough` holds for them,
/// or what is stored after 30 s: lines are stored by their own task after
/// they are written, so a test waits for them, and its assertions then
/// say what is missing.
pub async fn guest_logs_once(
    store: &dyn Store,
    execution_id: i64,
    enough: impl Fn(&[GuestLogLine]) -> bool,
) -> Vec<GuestLogLine> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let lines = store.guest_logs(execution_id, 0, 100).await.expect("logs");
        if enough(&lines) || std::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
