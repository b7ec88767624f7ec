//! `reprise bench`: throughput and latency on the durable SQLite store
//! (WAL, `synchronous=FULL`). Prints one line per measurement; the figures
//! and the machine go into BENCHMARKS.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::activity::outbound::{self, Allowlist, OutboundClient};
use crate::activity::worker::WorkerQueue;
use crate::activity::{ActivityConfig, ActivityRegistry};
use crate::api::RESULT_WAIT_MAX_MS;
use crate::clock;
use crate::engine::{Engine, Limits};
use crate::journal::{ActivityOptions, Event, RecordedEvent, idempotency_key};
use crate::runtime::{Outcome, ReplayVerdict, Runtime, RuntimeOptions};
use crate::store::{SqliteStore, Store};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Directory with bench.wasm and hello-activities.wasm (scripts/build-guests).
    #[arg(long, default_value = "build/guests")]
    guests: PathBuf,
    /// Where the databases go (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Which measurements to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "chain10,chain10-otel,chain10-http,chain10-worker,latency1,replay,instantiate,api-latency1,api-latency1-noisy,api-chain10,sleepers,sweep"
    )]
    only: Vec<String>,
    /// sleepers: workflows parked in a 1 h durable sleep at once.
    #[arg(long, default_value_t = 100_000)]
    sleepers: usize,
    /// chain10: concurrent workflows.
    #[arg(long, default_value_t = 500)]
    workflows: usize,
    /// chain10: sequential activities per workflow.
    #[arg(long, default_value_t = 10)]
    steps: u64,
    /// latency1: sequential runs.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// replay: journaled activity results in the replayed history.
    #[arg(long, default_value_t = 10_000)]
    replay_steps: u64,
    /// sweep: finished executions of 100 activities each to delete.
    #[arg(long, default_value_t = 1_000)]
    swept: usize,
    /// How many times each measurement repeats (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

struct Bench {
    args: BenchArgs,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    engine: Engine,
    workflow_bytes: Vec<u8>,
    activities_path: PathBuf,
}

/// Who serves the chain's "add one" step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StepKind {
    /// The Wasm activity `add-one`.
    Wasm,
    /// The same, with every span exported over OTLP/HTTP to a local sink.
    WasmTraced,
    /// The built-in `http` activity against a local HTTP server.
    Http,
    /// External workers polling the task API over HTTP.
    Worker,
}

/// Concurrent pollers in the worker variant.
const BENCH_WORKERS: usize = 16;
/// Where the bench's own servers listen.
const LOOPBACK_ANY_PORT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Bench {
    /// A runtime over a fresh database, and the database (for its commit stats).
    async fn runtime(&self, name: &str) -> anyhow::Result<(Arc<Runtime>, Arc<SqliteStore>)> {
        let activities = self.engine.load_file(&self.activities_path)?;
        self.runtime_with(
            name,
            vec![activities],
            ActivityConfig::default(),
            RuntimeOptions::default(),
        )
        .await
    }

    async fn runtime_with(
        &self,
        name: &str,
        components: Vec<crate::engine::LoadedComponent>,
        config: ActivityConfig,
        options: RuntimeOptions,
    ) -> anyhow::Result<(Arc<Runtime>, Arc<SqliteStore>)> {
        let db = self.dir.join(format!("{name}-{}.db", clock::now_ns()));
        self.runtime_at(&db, components, config, options).await
    }

    /// A runtime over the database `db` (a new one, or a restart's).
    async fn runtime_at(
        &self,
        db: &std::path::Path,
        components: Vec<crate::engine::LoadedComponent>,
        config: ActivityConfig,
        options: RuntimeOptions,
    ) -> anyhow::Result<(Arc<Runtime>, Arc<SqliteStore>)> {
        let sqlite = Arc::new(SqliteStore::open(db).await?);
        let store: Arc<dyn Store> = sqlite.clone();
        let registry = ActivityRegistry::load(self.engine.clone(), components, config).await?;
        let runtime = Runtime::new(self.engine.clone(), store, registry, options)?;
        Ok((runtime, sqlite))
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (dir, temp) = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let limits = Limits {
        // Every chain workflow stays in memory while it waits, plus one
        // activity attempt each.
        pooled_instances_max: (args.workflows as u32)
            .saturating_mul(2)
            .max(Limits::default().pooled_instances_max),
        ..Limits::default()
    };
    // As `reprise serve` does: uploads compile in bounded child processes.
    let engine = Engine::new(Some(dir.join("cache")), limits)?
        .compile_in_child_processes(std::env::current_exe()?);
    let workflow_path = args.guests.join("bench.wasm");
    let workflow_bytes = std::fs::read(&workflow_path).with_context(|| {
        format!(
            "reading {} (build it with scripts/build-guests)",
            workflow_path.display()
        )
    })?;
    let activities_path = args.guests.join("hello-activities.wasm");
    let bench = Bench {
        args,
        dir,
        _temp: temp,
        engine,
        workflow_bytes,
        activities_path,
    };
    println!(
        "machine: {} cores; store: SQLite WAL synchronous=FULL in {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        bench.dir.display()
    );
    for name in bench.args.only.clone() {
        match name.as_str() {
            "chain10" => chain(&bench, StepKind::Wasm).await?,
            "chain10-otel" => chain(&bench, StepKind::WasmTraced).await?,
            "chain10-http" => chain(&bench, StepKind::Http).await?,
            "chain10-worker" => chain(&bench, StepKind::Worker).await?,
            "latency1" => latency(&bench).await?,
            "replay" => replay(&bench).await?,
            "instantiate" => instantiate(&bench).await?,
            "api-latency1" => api_latency(&bench, false).await?,
            "api-latency1-noisy" => api_latency(&bench, true).await?,
            "api-chain10" => api_chain(&bench).await?,
            "sleepers" => sleepers(&bench).await?,
            "sweep" => sweep(&bench).await?,
            other => anyhow::bail!(
                "unknown measurement `{other}`; choose chain10, chain10-otel, chain10-http, chain10-worker, latency1, replay, instantiate, api-latency1, api-latency1-noisy, api-chain10, sleepers, sweep"
            ),
        }
    }
    Ok(())
}

/// The CPU time this process has used, all threads: a steadier reading
/// than wall time on a machine whose neighbours take its cores.
fn process_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        usage.assume_init()
    };
    let seconds = |time: libc::timeval| {
        Duration::from_secs(time.tv_sec.max(0) as u64)
            + Duration::from_micros(time.tv_usec.max(0) as u64)
    };
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

/// A local HTTP server answering `POST /add-one` with the number plus one.
async fn add_one_server() -> anyhow::Result<String> {
    use axum::routing::post;
    let router = axum::Router::new().route(
        "/add-one",
        post(|axum::Json(n): axum::Json<u64>| async move { axum::Json(n + 1) }),
    );
    let listener = crate::api::bind(LOOPBACK_ANY_PORT)?;
    let url = format!("http://{}/add-one", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// A local OTLP/HTTP collector that accepts every trace request (and
/// reads its body): the traces URL.
async fn otlp_sink() -> anyhow::Result<String> {
    use axum::routing::post;
    let router = axum::Router::new().route(
        "/v1/traces",
        post(|body: bytes::Bytes| async move {
            std::hint::black_box(body.len());
            axum::http::StatusCode::OK
        }),
    );
    let listener = crate::api::bind(LOOPBACK_ANY_PORT)?;
    let url = format!("http://{}/v1/traces", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// Starts [`BENCH_WORKERS`] pollers serving `add-one` through the task API.
async fn add_one_workers(queue: Arc<WorkerQueue>) -> anyhow::Result<()> {
    let listener = crate::api::bind(LOOPBACK_ANY_PORT)?;
    let authority = listener.local_addr()?.to_string();
    tokio::spawn(crate::api::serve(
        listener,
        crate::api::worker_routes(queue, None),
    ));
    for _ in 0..BENCH_WORKERS {
        let authority = authority.clone();
        tokio::spawn(async move {
            loop {
                let poll = r#"{"activities":["add-one"],"wait_ms":1000}"#.to_string();
                let Ok(task) = post_json(&authority, "/v1/activity-tasks/poll", poll).await else {
                    continue;
                };
                let (Some(token), Some(n)) = (task["task_token"].as_str(), task["input"].as_u64())
                else {
                    continue;
                };
                let path = format!("/v1/activity-tasks/{token}/complete");
                let _ = post_json(
                    &authority,
                    &path,
                    serde_json::json!({ "output": n + 1 }).to_string(),
                )
                .await;
            }
        });
    }
    Ok(())
}

async fn post_json(authority: &str, path: &str, body: String) -> anyhow::Result<serde_json::Value> {
    api_call(authority, "", "POST", path, body.into_bytes())
        .await
        .map(|(_, answer)| answer)
}

/// One request to the API over real HTTP, on a pooled keep-alive
/// connection as the peers' benchmark clients have: the status and the JSON
/// answer.
async fn api_call(
    authority: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use http_body_util::BodyExt as _;
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"))
        .header(http::header::CONTENT_TYPE, "application/json");
    if !key.is_empty() {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request.body(outbound::full_body(body))?;
    let response = OutboundClient::for_this_process()?.send(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// `reprise serve`'s router on 127.0.0.1, with `tenants` that each have
/// the bench workflow deployed as type `bench`: the address and their keys.
async fn api_server(bench: &Bench, tenants: usize) -> anyhow::Result<(String, Vec<String>)> {
    let (runtime, _) = bench.runtime("api").await?;
    let (router, _server) = crate::api::router(runtime.clone(), WorkerQueue::new(), None);
    let listener = crate::api::bind(LOOPBACK_ANY_PORT)?;
    let authority = listener.local_addr()?.to_string();
    tokio::spawn(crate::api::serve(listener, router));
    let mut keys = Vec::new();
    for index in 0..tenants {
        // The bench measures the server, not the rate limiter.
        let limits = r#"{"requests_per_second": 1000000}"#;
        let (key, _) = crate::tenant::create_tenant(
            runtime.store().as_ref(),
            &format!("bench-{index}"),
            limits,
        )
        .await?;
        api_deploy(&authority, &key, "bench", bench.workflow_bytes.clone()).await?;
        keys.push(key);
    }
    Ok((authority, keys))
}

/// Uploads a workflow module for tenant `key` and binds it as `workflow_type`.
async fn api_deploy(
    authority: &str,
    key: &str,
    workflow_type: &str,
    module_bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let (status, module) = api_call(authority, key, "POST", "/v1/modules", module_bytes).await?;
    anyhow::ensure!(
        status == 201,
        "uploading the {workflow_type} workflow: {module}"
    );
    let bind = serde_json::json!({ "digest": module["digest"] }).to_string();
    let path = format!("/v1/workflow-types/{workflow_type}");
    let (status, bound) = api_call(authority, key, "PUT", &path, bind.into_bytes()).await?;
    anyhow::ensure!(status == 200, "binding the {workflow_type} type: {bound}");
    Ok(())
}

/// `POST /v1/executions`: starts `id` of `workflow_type` with `input`.
async fn api_start(
    authority: &str,
    key: &str,
    workflow_type: &str,
    id: &str,
    input: serde_json::Value,
    wait_ms: u64,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let start = serde_json::json!({
        "workflow_type": workflow_type,
        "workflow_id": id,
        "input": input,
        "wait_ms": wait_ms,
    });
    api_call(
        authority,
        key,
        "POST",
        "/v1/executions",
        start.to_string().into_bytes(),
    )
    .await
}

/// Starts `id` over the API and waits for its result in the same request;
/// checks the output.
async fn api_run(authority: &str, key: &str, id: &str, steps: u64) -> anyhow::Result<()> {
    let input = serde_json::json!({ "steps": steps });
    let (status, done) = api_start(authority, key, "bench", id, input, RESULT_WAIT_MAX_MS).await?;
    anyhow::ensure!(
        status == 201
            && done["status"] == "completed"
            && done["result"] == serde_json::json!(steps),
        "{id} ended wrongly: {done}"
    );
    Ok(())
}

/// What the attacking tenant of `api-latency1-noisy` keeps running, each
/// lane restarting its workflow as soon as it ends: (hostile mode, input,
/// lanes). The mix of issue 10: spin loops, memory bombs, a million clock
/// reads, log floods, thousands of activities retried against a dead port.
const NOISY_MIX: &[(&str, &str, usize)] = &[
    ("loop", "{}", 2),
    ("memory", "{}", 1),
    ("clock-flood", r#"{"count": 1000000}"#, 1),
    ("log-flood", r#"{"count": 100000}"#, 1),
    ("fanout", "{}", 1),
];
/// Executions the attacker parks in a 1 h sleep (more than the pool's slots).
const NOISY_SLEEPERS: usize = 1_100;

/// The attacking tenant `key`: uploads the hostile workflow, parks
/// [`NOISY_SLEEPERS`], then keeps the [`NOISY_MIX`] lanes and a lane of
/// compile bombs (a fresh 40,000-function component each time) running.
async fn noisy_neighbour(
    bench: &Bench,
    authority: &str,
    key: &str,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let hostile = std::fs::read(bench.args.guests.join("hostile.wasm"))?;
    api_deploy(authority, key, "hostile", hostile).await?;
    for index in 0..NOISY_SLEEPERS {
        let input = serde_json::json!({ "mode": "sleep", "ms": 3_600_000 });
        api_start(
            authority,
            key,
            "hostile",
            &format!("parked-{index}"),
            input,
            0,
        )
        .await?;
    }
    let mut tasks = Vec::new();
    for &(mode, extra, lanes) in NOISY_MIX {
        for lane in 0..lanes {
            let (authority, key) = (authority.to_string(), key.to_string());
            let mut input: serde_json::Value = serde_json::from_str(extra)?;
            input["mode"] = serde_json::json!(mode);
            tasks.push(tokio::spawn(async move {
                for round in 0.. {
                    let id = format!("noisy-{mode}-{lane}-{round}");
                    let run = api_start(
                        &authority,
                        &key,
                        "hostile",
                        &id,
                        input.clone(),
                        RESULT_WAIT_MAX_MS,
                    );
                    if run.await.is_err() {
                        return;
                    }
                }
            }));
        }
    }
    let (authority, key) = (authority.to_string(), key.to_string());
    tasks.push(tokio::spawn(async move {
        for salt in 0u64.. {
            let body = format!("(func (result i64) i64.const {salt})").repeat(40_000);
            let Ok(bomb) = wat::parse_str(format!("(component (core module {body}))")) else {
                return;
            };
            if api_call(&authority, &key, "POST", "/v1/modules", bomb)
                .await
                .is_err()
            {
                return;
            }
        }
    }));
    Ok(tasks)
}

/// Start-to-result latencies of `runs` one-activity workflows through the
/// HTTP API (a start request, then a long-polling status request), sorted,
/// and how many failed.
async fn api_latencies(
    authority: &str,
    key: &str,
    runs: usize,
    label: &str,
) -> (Vec<Duration>, usize) {
    let mut samples = Vec::with_capacity(runs);
    let mut failed = 0;
    for index in 0..runs {
        let started = Instant::now();
        match api_run(authority, key, &format!("api-latency-{label}-{index}"), 1).await {
            Ok(()) => samples.push(started.elapsed()),
            Err(_) => failed += 1,
        }
    }
    samples.sort();
    (samples, failed)
}

fn p50_p99(samples: &[Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (
        percentile(samples, 0.5).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
    )
}

/// `api-latency1`: start-to-result latency through the HTTP API.
/// `api-latency1-noisy`: the same while another tenant runs the whole
/// attack of issue 10 — quiet first, then under attack, then the
/// process's memory once the attack has stopped.
async fn api_latency(bench: &Bench, noisy: bool) -> anyhow::Result<()> {
    let (authority, keys) = api_server(bench, 2).await?;
    let runs = bench.args.runs;
    if !noisy {
        let (samples, failed) = api_latencies(&authority, &keys[0], runs, "quiet").await;
        let (p50, p99) = p50_p99(&samples);
        println!(
            "api-latency1: {runs} sequential one-activity workflows over HTTP (start + long-poll), p50 {p50:.2} ms, p99 {p99:.2} ms, {failed} failed"
        );
        return Ok(());
    }
    let (quiet, _) = api_latencies(&authority, &keys[0], runs, "quiet").await;
    let baseline = resident_bytes();
    let attack = noisy_neighbour(bench, &authority, &keys[1]).await?;
    // Let the attack get going.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(resident_bytes()));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(resident_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (noisy_samples, failed) = api_latencies(&authority, &keys[0], runs, "noisy").await;
    for task in attack {
        task.abort();
    }
    sampler.abort();
    // The lanes' executions run out (loops hit their limits); give them time.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = resident_bytes();
    let (quiet_p50, quiet_p99) = p50_p99(&quiet);
    let (p50, p99) = p50_p99(&noisy_samples);
    println!(
        "api-latency1-noisy: good tenant quiet p50 {quiet_p50:.2} ms, p99 {quiet_p99:.2} ms; under attack p50 {p50:.2} ms, p99 {p99:.2} ms (p99 ratio {:.2}), {failed} of {runs} failed; RSS {:.0} MiB before the attack, {:.0} MiB peak, {:.0} MiB 15 s after it",
        p99 / quiet_p99,
        baseline as f64 / MIB,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / MIB,
        after as f64 / MIB,
    );
    Ok(())
}

/// Clients per tenant in `api-chain10`.
const API_CLIENTS_PER_TENANT: usize = 16;

/// Sustained chain workflows through the API for two tenants: clients
/// start one workflow after another and wait for each result.
async fn api_chain(bench: &Bench) -> anyhow::Result<()> {
    let (workflows, steps) = (bench.args.workflows, bench.args.steps);
    let mut rates = Vec::new();
    for round in 0..bench.args.repeat {
        let (authority, keys) = api_server(bench, 2).await?;
        let clients = API_CLIENTS_PER_TENANT * keys.len();
        let per_client = workflows.div_ceil(clients);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..clients {
            let key = keys[client % keys.len()].clone();
            let authority = authority.clone();
            tasks.push(tokio::spawn(async move {
                for index in 0..per_client {
                    api_run(
                        &authority,
                        &key,
                        &format!("api-chain-{client}-{index}"),
                        steps,
                    )
                    .await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let done = (per_client * clients) as f64;
        println!(
            "api-chain{steps} round {round}: {done} workflows from {clients} clients of 2 tenants in {elapsed:.2} s = {:.0} started-and-finished workflows/s, {:.0} durable steps/s",
            done / elapsed,
            done * steps as f64 / elapsed
        );
        rates.push(done / elapsed);
    }
    println!(
        "api-chain{steps} median: {:.0} workflows/s through the API (2 tenants)",
        median(rates)
    );
    Ok(())
}

async fn chain(bench: &Bench, kind: StepKind) -> anyhow::Result<()> {
    let (workflows, steps) = (bench.args.workflows, bench.args.steps);
    let label = match kind {
        StepKind::Wasm => format!("chain{steps}"),
        StepKind::WasmTraced => format!("chain{steps}-otel"),
        StepKind::Http => format!("chain{steps}-http"),
        StepKind::Worker => format!("chain{steps}-worker"),
    };
    let mut steps_per_second = Vec::new();
    let mut workflows_per_second = Vec::new();
    let mut cpu_per_step_micros = Vec::new();
    for round in 0..bench.args.repeat {
        let (runtime, sqlite, input) = match kind {
            StepKind::Wasm => {
                let (runtime, sqlite) = bench.runtime("chain").await?;
                (runtime, sqlite, format!(r#"{{"steps":{steps}}}"#))
            }
            StepKind::WasmTraced => {
                let endpoint = otlp_sink().await?;
                let activities = bench.engine.load_file(&bench.activities_path)?;
                let options = RuntimeOptions {
                    otlp_endpoint: Some(endpoint),
                    ..RuntimeOptions::default()
                };
                let (runtime, sqlite) = bench
                    .runtime_with(
                        "chain-otel",
                        vec![activities],
                        ActivityConfig::default(),
                        options,
                    )
                    .await?;
                (runtime, sqlite, format!(r#"{{"steps":{steps}}}"#))
            }
            StepKind::Http => {
                let url = add_one_server().await?;
                let config = ActivityConfig {
                    allowed_hosts: Allowlist::parse(["127.0.0.1"])?,
                    ..ActivityConfig::default()
                };
                let (runtime, sqlite) = bench
                    .runtime_with("chain-http", Vec::new(), config, RuntimeOptions::default())
                    .await?;
                let input = serde_json::json!({ "steps": steps, "via_http": url }).to_string();
                (runtime, sqlite, input)
            }
            StepKind::Worker => {
                let queue = WorkerQueue::new();
                add_one_workers(queue.clone()).await?;
                let config = ActivityConfig {
                    workers: Some(queue),
                    ..ActivityConfig::default()
                };
                let (runtime, sqlite) = bench
                    .runtime_with(
                        "chain-worker",
                        Vec::new(),
                        config,
                        RuntimeOptions::default(),
                    )
                    .await?;
                (runtime, sqlite, format!(r#"{{"steps":{steps}}}"#))
            }
        };
        let module = runtime.deploy_workflow(&bench.workflow_bytes).await?;
        let started = Instant::now();
        let cpu_before = process_cpu_time();
        let mut tasks = Vec::with_capacity(workflows);
        for index in 0..workflows {
            let runtime = runtime.clone();
            let (digest, input) = (module.digest.clone(), input.clone());
            tasks.push(tokio::spawn(async move {
                let (record, _) = runtime
                    .start("bench", &digest, Some(format!("chain-{index}")), &input)
                    .await?;
                runtime.drive(record).await
            }));
        }
        for task in tasks {
            match task.await?? {
                Outcome::Completed { output } if output.get() == steps.to_string() => {}
                other => anyhow::bail!("a chain workflow ended wrongly: {other:?}"),
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let total_steps = (workflows as u64 * steps) as f64;
        let cpu_per_step = (process_cpu_time() - cpu_before).as_secs_f64() * 1e6 / total_steps;
        let commits = sqlite.commit_stats();
        println!(
            "{label} round {round}: {workflows} workflows in {elapsed:.2} s = {:.0} workflows/s, {:.0} durable steps/s, {cpu_per_step:.0} µs of CPU per step ({} appends in {} commits)",
            workflows as f64 / elapsed,
            total_steps / elapsed,
            commits.requests,
            commits.commits
        );
        steps_per_second.push(total_steps / elapsed);
        cpu_per_step_micros.push(cpu_per_step);
        workflows_per_second.push(workflows as f64 / elapsed);
    }
    println!(
        "{label} median: {:.0} workflows/s, {:.0} durable steps/s, {:.0} µs of CPU per step (the process's, bench driver included)",
        median(workflows_per_second),
        median(steps_per_second),
        median(cpu_per_step_micros)
    );
    Ok(())
}

async fn latency(bench: &Bench) -> anyhow::Result<()> {
    let (runtime, _) = bench.runtime("latency").await?;
    let module = runtime.deploy_workflow(&bench.workflow_bytes).await?;
    let mut samples = Vec::with_capacity(bench.args.runs);
    for index in 0..bench.args.runs {
        let started = Instant::now();
        let (record, _) = runtime
            .start(
                "bench",
                &module.digest,
                Some(format!("latency-{index}")),
                r#"{"steps":1}"#,
            )
            .await?;
        let outcome = runtime.drive(record).await?;
        samples.push(started.elapsed());
        anyhow::ensure!(
            matches!(&outcome, Outcome::Completed { output } if output.get() == "1"),
            "latency workflow ended wrongly: {outcome:?}"
        );
    }
    samples.sort();
    println!(
        "latency1: {} sequential one-activity workflows, start-to-result p50 {:.2} ms, p99 {:.2} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

/// This process's resident memory, in bytes (Linux).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Drives `records` (all of one tenant) in the background and waits until
/// all of them are parked: each has finished an activation (a fresh start
/// or a replay up to its timer) and no instance is left in memory.
async fn park(
    runtime: &Arc<Runtime>,
    records: Vec<crate::store::ExecutionRecord>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Result<Outcome, crate::runtime::RunError>>>> {
    let Some(tenant) = records.first().map(|record| record.tenant.clone()) else {
        return Ok(Vec::new());
    };
    let metrics = &runtime.telemetry().metrics;
    let activations_expected = metrics.activations(&tenant) + records.len() as u64;
    let drives = records
        .into_iter()
        .map(|record| {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.drive(record).await })
        })
        .collect();
    while metrics.activations(&tenant) < activations_expected || runtime.live_instances() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(drives)
}

/// `sleepers`: many workflows in a 1 h durable sleep on one node — how fast
/// they start and park, what each costs in memory, and how fast a
/// restarted node resumes them all.
async fn sleepers(bench: &Bench) -> anyhow::Result<()> {
    let count = bench.args.sleepers;
    let hostile = std::fs::read(bench.args.guests.join("hostile.wasm"))?;
    let activities = bench.engine.load_file(&bench.activities_path)?;
    let db = bench.dir.join(format!("sleepers-{}.db", clock::now_ns()));
    let (runtime, _) = bench
        .runtime_at(
            &db,
            vec![activities.clone()],
            ActivityConfig::default(),
            RuntimeOptions::default(),
        )
        .await?;
    let module = runtime.deploy_workflow(&hostile).await?;
    let limits = crate::tenant::TenantLimits {
        running_executions_max: count as u64,
        ..crate::tenant::TenantLimits::within(&bench.engine.limits)
    };
    runtime.set_tenant_limits(crate::runtime::DEFAULT_TENANT, limits.clone());
    let input = r#"{"mode": "sleep", "ms": 3600000}"#;
    let rss_before = resident_bytes();
    let started = Instant::now();
    let mut records = Vec::with_capacity(count);
    // Starts go through the group commit in batches of concurrent requests.
    for batch in (0..count).collect::<Vec<_>>().chunks(128) {
        let mut starting = Vec::new();
        for index in batch {
            let runtime = runtime.clone();
            let digest = module.digest.clone();
            let id = format!("sleeper-{index}");
            starting.push(tokio::spawn(async move {
                runtime.start("hostile", &digest, Some(id), input).await
            }));
        }
        for start in starting {
            records.push(start.await??.0);
        }
    }
    let drives = park(&runtime, records).await?;
    let parked_after = started.elapsed().as_secs_f64();
    let rss_parked = resident_bytes();
    println!(
        "sleepers: {count} workflows started and parked in a 1 h durable sleep in {parked_after:.1} s = {:.0} per s; RSS {:.0} MiB before, {:.0} MiB parked = {:.1} KiB per sleeping execution; instances in memory: {}",
        count as f64 / parked_after,
        rss_before as f64 / MIB,
        rss_parked as f64 / MIB,
        rss_parked.saturating_sub(rss_before) as f64 / 1024.0 / count as f64,
        runtime.live_instances()
    );
    runtime.shut_down();
    for drive in drives {
        let _ = drive.await?;
    }
    drop(runtime);
    let restarted_at = Instant::now();
    let (restarted, _) = bench
        .runtime_at(
            &db,
            vec![activities],
            ActivityConfig::default(),
            RuntimeOptions::default(),
        )
        .await?;
    restarted.set_tenant_limits(crate::runtime::DEFAULT_TENANT, limits);
    let unfinished = restarted.store().unfinished_executions().await?;
    anyhow::ensure!(
        unfinished.len() == count,
        "{} of {count} sleepers are unfinished after the restart",
        unfinished.len()
    );
    let drives = park(&restarted, unfinished).await?;
    let resumed_after = restarted_at.elapsed().as_secs_f64();
    println!(
        "sleepers restart: {count} resumed by replay and parked again in {resumed_after:.1} s = {:.0} per s; RSS {:.0} MiB (the first runtime's memory included)",
        count as f64 / resumed_after,
        resident_bytes() as f64 / MIB,
    );
    restarted.shut_down();
    for drive in drives {
        let _ = drive.await?;
    }
    Ok(())
}

/// A completed history of `steps` add-one calls, written straight to the store.
fn synthetic_chain_history(
    workflow_id: &str,
    run_id: &str,
    digest: &str,
    steps: u64,
) -> Vec<RecordedEvent> {
    let now = clock::now_ms();
    let mut events = vec![Event::WorkflowStarted {
        workflow_type: "bench".into(),
        module_digest: digest.into(),
        input: format!(r#"{{"steps":{steps}}}"#),
        trace: None,
        host_behaviour: crate::journal::HOST_BEHAVIOUR,
        continued_from: None,
        timeouts: crate::journal::WorkflowTimeouts::default(),
    }];
    let options = ActivityOptions::default();
    for seq in 1..=steps {
        events.push(Event::ActivityScheduled {
            seq,
            name: "add-one".into(),
            input: (seq - 1).to_string(),
            options: options.clone(),
            idempotency_key: idempotency_key(workflow_id, run_id, seq),
        });
        events.push(Event::ActivityCompleted {
            seq,
            attempt: 1,
            output: seq.to_string(),
        });
    }
    events.push(Event::WorkflowCompleted {
        output: steps.to_string(),
    });
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| RecordedEvent {
            position: index as u64 + 1,
            recorded_at_ms: now,
            event,
        })
        .collect()
}

async fn replay(bench: &Bench) -> anyhow::Result<()> {
    let steps = bench.args.replay_steps;
    let (runtime, _) = bench.runtime("replay").await?;
    let module = runtime.deploy_workflow(&bench.workflow_bytes).await?;
    let (record, _) = runtime
        .start(
            "bench",
            &module.digest,
            Some("replay".into()),
            &format!(r#"{{"steps":{steps}}}"#),
        )
        .await?;
    let events =
        synthetic_chain_history(&record.workflow_id, &record.run_id, &module.digest, steps);
    runtime
        .store()
        .append(record.id, events[1..].to_vec(), None)
        .await?;
    let mut millis = Vec::new();
    let mut cpu_millis = Vec::new();
    for round in 0..bench.args.repeat.max(3) {
        let started = Instant::now();
        let cpu_before = process_cpu_time();
        let history = runtime.store().history(record.id).await?;
        let loaded = started.elapsed();
        let cpu_loaded = process_cpu_time();
        let verdict = runtime
            .verify_replay(&module, record.clone(), history)
            .await?;
        let elapsed = started.elapsed();
        let cpu_millis_round = (process_cpu_time() - cpu_before).as_secs_f64() * 1e3;
        anyhow::ensure!(
            verdict == ReplayVerdict::Reproduced,
            "replay verdict {verdict:?}"
        );
        println!(
            "replay round {round}: {steps} activity results in {:.1} ms (reading the history: {:.1} ms); CPU {:.1} ms (reading: {:.1} ms)",
            elapsed.as_secs_f64() * 1e3,
            loaded.as_secs_f64() * 1e3,
            cpu_millis_round,
            (cpu_loaded - cpu_before).as_secs_f64() * 1e3,
        );
        millis.push(elapsed.as_secs_f64() * 1e3);
        cpu_millis.push(cpu_millis_round);
    }
    println!(
        "replay median: {steps} journaled activity results replayed from the store in {:.1} ms ({:.1} ms of CPU)",
        median(millis),
        median(cpu_millis)
    );
    Ok(())
}

/// `sweep`: deletes `--swept` finished executions of 100 activities each
/// (203 events) as the retention sweeper does (`api::sweep_tenant`), while
/// another execution appends one event at a time: rows deleted per second,
/// and the appender's latency during the sweep against before it (what
/// other tenants pay for a sweep).
async fn sweep(bench: &Bench) -> anyhow::Result<()> {
    const STEPS: u64 = 100;
    const TENANT: &str = crate::runtime::DEFAULT_TENANT;
    let (runtime, _) = bench.runtime("sweep").await?;
    let module = runtime.deploy_workflow(&bench.workflow_bytes).await?;
    let store = runtime.store().clone();
    let input = format!(r#"{{"steps":{STEPS}}}"#);
    for index in 0..bench.args.swept {
        let (record, _) = runtime
            .start(
                "bench",
                &module.digest,
                Some(format!("swept-{index}")),
                &input,
            )
            .await?;
        let events =
            synthetic_chain_history(&record.workflow_id, &record.run_id, &module.digest, STEPS);
        let finish =
            crate::store::Finish::new(crate::store::ExecutionStatus::Completed, STEPS.to_string());
        store
            .append(record.id, events[1..].to_vec(), Some(finish))
            .await?;
    }
    let (probe, _) = runtime
        .start("bench", &module.digest, Some("probe".into()), &input)
        .await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            for position in 2u64.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let event = RecordedEvent {
                    position,
                    recorded_at_ms: clock::now_ms(),
                    event: Event::TimerFired { seq: position },
                };
                let started = Instant::now();
                store.append(probe.id, vec![event], None).await?;
                latencies.push((Instant::now(), started.elapsed()));
            }
            anyhow::Ok(latencies)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sweep_started = Instant::now();
    let swept = crate::api::sweep_tenant(store.as_ref(), TENANT, i64::MAX, None, || false).await?;
    let sweep_ended = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let latencies = appender.await??;
    anyhow::ensure!(
        swept.executions as usize == bench.args.swept,
        "swept {} executions of {}",
        swept.executions,
        bench.args.swept
    );
    let (mut before, mut during): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (at, latency) in latencies {
        if at < sweep_started {
            before.push(latency);
        } else if at <= sweep_ended {
            during.push(latency);
        }
    }
    before.sort();
    during.sort();
    let seconds = (sweep_ended - sweep_started).as_secs_f64();
    let (before_p50, before_p99) = p50_p99(&before);
    let (during_p50, during_p99) = p50_p99(&during);
    println!(
        "sweep: {} executions, {} rows in {seconds:.2} s = {:.0} rows/s (paced as the sweeper paces); another execution's append p50 / p99 {before_p50:.2} / {before_p99:.2} ms before, {during_p50:.2} / {during_p99:.2} ms during ({} appends)",
        swept.executions,
        swept.rows,
        swept.rows as f64 / seconds,
        during.len(),
    );
    Ok(())
}

async fn instantiate(bench: &Bench) -> anyhow::Result<()> {
    let (runtime, _) = bench.runtime("instantiate").await?;
    let module = runtime.deploy_workflow(&bench.workflow_bytes).await?;
    let runs = 1_000;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(runtime.measure_instantiation(&module).await?);
    }
    samples.sort();
    println!(
        "instantiate: precompiled workflow component, {runs} instantiations, p50 {:.1} µs, p99 {:.1} µs",
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
    Ok(())
}
