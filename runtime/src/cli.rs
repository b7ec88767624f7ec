//! The `reprise` command line.
//!
//! Exit codes: 0 success; 1 the workflow failed; 2 bad input or usage;
//! 3 nondeterminism (the code does not match the history); 4 host error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::activity::outbound::Allowlist;
use crate::activity::worker::WorkerQueue;
use crate::activity::{ActivityConfig, ActivityRegistry};
use crate::engine::{Engine, Limits, LoadedComponent};
use crate::journal::{Event, RecordedEvent};
use crate::runtime::{DEFAULT_TENANT, Outcome, ReplayVerdict, RunError, Runtime, RuntimeOptions};
use crate::store::{self, ExecutionRecord, ExecutionStatus, MessageKind, Store};

const EXIT_WORKFLOW_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_NONDETERMINISM: u8 = 3;
const EXIT_HOST_ERROR: u8 = 4;

#[derive(Parser)]
#[command(
    name = "reprise",
    version,
    about = "A durable workflow runtime for WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct DbArgs {
    /// The SQLite database file (created if missing).
    #[arg(long, env = "REPRISE_DB", default_value = "reprise-data/reprise.db")]
    db: PathBuf,
    /// Where compiled components are cached (default: `cache/` beside the database).
    #[arg(long, env = "REPRISE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its API key (shown only this once).
    Create {
        name: String,
        /// The server's data directory.
        #[arg(long, env = "REPRISE_DATA", default_value = "reprise-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run one workflow execution to the end, in this process, durably.
    ///
    /// Run it again with the same --id after a crash and it resumes from the
    /// journal; after it finished, it prints the recorded result.
    Run {
        /// The workflow component (.wasm).
        workflow: PathBuf,
        /// Activity components (.wasm); repeat for several.
        #[arg(long = "activities")]
        activities: Vec<PathBuf>,
        /// More workflow components the workflow may start as children,
        /// each registered under its file name (`trip.wasm` → `trip`).
        #[arg(long = "workflows")]
        child_workflows: Vec<PathBuf>,
        /// The workflow input, as JSON.
        #[arg(long, default_value = "null")]
        input: String,
        /// The workflow id (default: a new random id).
        #[arg(long)]
        id: Option<String>,
        /// A directory granted to activities, seen by them as /data.
        #[arg(long)]
        activity_dir: Option<PathBuf>,
        /// A host (or host:port) activities may call over HTTP; repeat for several.
        #[arg(long = "allow-host")]
        allowed_hosts: Vec<String>,
        /// Serve the external-worker task API on this address (e.g.
        /// 127.0.0.1:7979); activities no component serves go to workers.
        #[arg(long)]
        worker_api: Option<std::net::SocketAddr>,
        /// Drop the instance at every wait and rebuild it by replay.
        #[arg(long)]
        evict_on_wait: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Serve the HTTP API (and the worker task API) with the runtime, its
    /// workers and timers in one process; executions left running by an
    /// earlier process are resumed.
    Serve {
        /// Where the database and the compiled-component cache live.
        #[arg(long, env = "REPRISE_DATA", default_value = "reprise-data")]
        data: PathBuf,
        #[arg(long, env = "REPRISE_LISTEN", default_value = "127.0.0.1:7878")]
        listen: std::net::SocketAddr,
        /// Activity components (.wasm); repeat for several.
        #[arg(long = "activities")]
        activities: Vec<PathBuf>,
        /// A directory granted to activities, seen by them as /data.
        #[arg(long)]
        activity_dir: Option<PathBuf>,
        /// A host (or host:port) activities may call over HTTP; repeat.
        #[arg(long = "allow-host")]
        allowed_hosts: Vec<String>,
    },
    /// Manage tenants of a server's database.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Print an execution's history.
    History {
        /// The workflow id.
        id: String,
        /// Print the raw events as JSON (the format `replay --history` reads).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replay recorded histories against a (new) workflow build and report
    /// whether it reproduces them: the safe-upgrade check.
    Replay {
        /// The workflow component to check.
        #[arg(long)]
        module: PathBuf,
        /// Workflow ids in the database, or history files from `history --json`.
        #[arg(long = "history", required = true)]
        histories: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Send a signal (JSON payload) to an execution; it is kept until the
    /// workflow waits for it, and delivered once.
    Signal {
        /// The workflow id.
        id: String,
        /// The signal name.
        name: String,
        #[arg(long, default_value = "null")]
        payload: String,
        /// Deduplicates: a second signal with the same id is ignored.
        #[arg(long)]
        signal_id: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Ask an execution to cancel: its next blocking call returns
    /// "cancelled", and its compensations still run.
    Cancel {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// End an execution at once, running nothing more (no compensation).
    Terminate {
        id: String,
        #[arg(long, default_value = "terminated by an operator")]
        reason: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Upload a workflow component to a server and bind a type name to it.
    Deploy {
        file: PathBuf,
        /// The workflow type name (default: the file name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start an execution on a server; with --wait, print its result.
    Start {
        /// The workflow type.
        name: String,
        #[arg(long, default_value = "null")]
        input: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print an execution's status and result from a server.
    Result {
        id: String,
        /// Wait (up to 60 s) while it runs.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Measure throughput and latency (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// The server, e.g. http://127.0.0.1:7878.
    #[arg(long, env = "REPRISE_SERVER", default_value = "http://127.0.0.1:7878")]
    server: String,
    /// The tenant's API key (`reprise tenant create` prints it).
    #[arg(long, env = "REPRISE_API_KEY")]
    api_key: String,
}

/// Entry point of the `reprise` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A benchmark measures the engine, not the log formatter.
    let default_level = match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    };
    init_tracing(default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(EXIT_HOST_ERROR);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Run {
                workflow,
                activities,
                child_workflows,
                input,
                id,
                activity_dir,
                allowed_hosts,
                worker_api,
                evict_on_wait,
                db,
            } => {
                let activities = ActivitySetup {
                    files: activities,
                    activity_dir,
                    allowed_hosts,
                    worker_api,
                };
                let workflows = std::iter::once(workflow).chain(child_workflows).collect();
                run(workflows, activities, input, id, evict_on_wait, db).await
            }
            Command::History { id, json, db } => history(&id, json, &db).await,
            Command::Tenant {
                command: TenantCommand::Create { name, data },
            } => create_tenant(&name, &data).await,
            Command::Serve {
                data,
                listen,
                activities,
                activity_dir,
                allowed_hosts,
            } => {
                let activities = ActivitySetup {
                    files: activities,
                    activity_dir,
                    allowed_hosts,
                    worker_api: None,
                };
                report(serve(data, listen, activities).await)
            }
            Command::Replay {
                module,
                histories,
                db,
            } => replay(&module, &histories, &db).await,
            Command::Signal {
                id,
                name,
                payload,
                signal_id,
                db,
            } => {
                let message_id =
                    signal_id.unwrap_or_else(|| format!("signal-{}", crate::clock::now_ns()));
                post(&id, MessageKind::Signal, &name, &payload, &message_id, &db).await
            }
            Command::Cancel { id, db } => {
                post(&id, MessageKind::Cancel, "", "null", "cancel", &db).await
            }
            Command::Terminate { id, reason, db } => terminate(&id, &reason, &db).await,
            Command::Deploy { file, name, server } => deploy(&file, name, &server).await,
            Command::Start {
                name,
                input,
                id,
                wait,
                server,
            } => start_remote(&name, &input, id, wait, &server).await,
            Command::Result { id, wait, server } => result_remote(&id, wait, &server).await,
            Command::Bench(args) => report(crate::bench::run(args).await),
        }
    })
}

fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPRISE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_HOST_ERROR)
        }
    }
}

fn exit_for(error: &RunError) -> ExitCode {
    let code = match error {
        RunError::Nondeterminism { .. } => EXIT_NONDETERMINISM,
        RunError::Load(_)
        | RunError::InvalidInput(_)
        | RunError::WrongKind(_)
        | RunError::UnknownModule { .. } => EXIT_BAD_INPUT,
        RunError::Store(_) | RunError::CorruptHistory { .. } | RunError::Host { .. } => {
            EXIT_HOST_ERROR
        }
    };
    ExitCode::from(code)
}

fn fail_with(error: RunError) -> ExitCode {
    eprintln!("error: {error}");
    if matches!(error, RunError::Nondeterminism { .. }) {
        eprintln!(
            "the history was left untouched; run the build that recorded it, or check a new build with `reprise replay`"
        );
    }
    exit_for(&error)
}

async fn open_store(db: &DbArgs) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(parent) = db
        .db
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the data directory {}", parent.display()))?;
    }
    store::open(&db.db)
        .await
        .with_context(|| format!("opening the database {}", db.db.display()))
}

fn open_engine(db: &DbArgs) -> anyhow::Result<Engine> {
    let cache_dir = db.cache_dir.clone().unwrap_or_else(|| {
        db.db
            .parent()
            .map(|parent| parent.join("cache"))
            .unwrap_or_else(|| PathBuf::from("cache"))
    });
    Engine::new(Some(cache_dir), Limits::default())
}

fn load_component(engine: &Engine, path: &Path) -> Result<LoadedComponent, RunError> {
    engine.load_file(path).map_err(RunError::Load)
}

/// How `reprise run` sets up activities.
struct ActivitySetup {
    files: Vec<PathBuf>,
    activity_dir: Option<PathBuf>,
    allowed_hosts: Vec<String>,
    worker_api: Option<std::net::SocketAddr>,
}

impl ActivitySetup {
    async fn registry(self, engine: &Engine) -> Result<ActivityRegistry, RunError> {
        self.registry_with_workers(engine, None).await
    }

    /// The registry; names no component serves go to `queue` when given
    /// (the server's own worker API), else to a worker API of `worker_api`.
    async fn registry_with_workers(
        self,
        engine: &Engine,
        queue: Option<Arc<WorkerQueue>>,
    ) -> Result<ActivityRegistry, RunError> {
        let mut components = Vec::new();
        for path in &self.files {
            components.push(load_component(engine, path).map_err(|error| with_file(path, error))?);
        }
        let workers = match self.worker_api {
            None => queue,
            Some(address) => {
                let queue = WorkerQueue::new();
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|error| {
                        RunError::InvalidInput(format!(
                            "cannot listen on {address} for workers: {error}"
                        ))
                    })?;
                tracing::info!(%address, "serving the external-worker task API");
                tokio::spawn(crate::api::serve(
                    listener,
                    crate::api::worker_routes(queue.clone(), None),
                ));
                Some(queue)
            }
        };
        let config = ActivityConfig {
            activity_dir: self.activity_dir,
            allowed_hosts: Allowlist::new(self.allowed_hosts),
            workers,
        };
        ActivityRegistry::load(engine.clone(), components, config)
            .await
            .map_err(|error| RunError::WrongKind(format!("{error:#}")))
    }
}

/// The type name a workflow file registers under: its stem.
fn type_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workflow".to_string())
}

/// Runs `workflows[0]`; the others are deployed for it to start as children.
async fn run(
    workflows: Vec<PathBuf>,
    activities: ActivitySetup,
    input: String,
    id: Option<String>,
    evict_on_wait: bool,
    db: DbArgs,
) -> ExitCode {
    let setup = async {
        let engine = open_engine(&db).map_err(host_setup_error)?;
        let store = open_store(&db).await.map_err(host_setup_error)?;
        let registry = activities.registry(&engine).await?;
        let runtime = Runtime::new(engine, store, registry, RuntimeOptions { evict_on_wait })
            .map_err(host_setup_error)?;
        let mut main_module = None;
        for path in &workflows {
            let bytes = std::fs::read(path).map_err(|source| {
                RunError::Load(crate::engine::LoadError::Read {
                    path: path.clone(),
                    source,
                })
            })?;
            let module = runtime
                .deploy_workflow(&bytes)
                .await
                .map_err(|error| with_file(path, error))?;
            runtime.register_type(&type_name(path), &module.digest);
            main_module.get_or_insert(module);
        }
        let module =
            main_module.ok_or_else(|| RunError::InvalidInput("no workflow given".into()))?;
        Ok::<_, RunError>((runtime, module))
    };
    let (runtime, module) = match setup.await {
        Ok(ready) => ready,
        Err(error) => return fail_with(error),
    };
    let workflow_type = workflows
        .first()
        .map(|path| type_name(path))
        .unwrap_or_default();
    let (record, created) = match runtime
        .start(&workflow_type, &module.digest, id, &input)
        .await
    {
        Ok(started) => started,
        Err(error) => return fail_with(error),
    };
    if !created {
        tracing::info!(
            workflow_id = %record.workflow_id,
            status = record.status.as_str(),
            "execution exists; resuming it from its history"
        );
        if record.module_digest != module.digest {
            tracing::warn!(
                pinned = %record.module_digest,
                given = %module.digest,
                "the execution is pinned to the module it started on, not the file given"
            );
        }
    }
    match runtime.drive(record).await {
        Ok(Outcome::Completed { output }) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Failed { error }) => {
            eprintln!("workflow failed: {error}");
            println!(
                "{}",
                serde_json::to_string(&error).unwrap_or_else(|_| error.to_string())
            );
            ExitCode::from(EXIT_WORKFLOW_FAILED)
        }
        Err(error) => fail_with(error),
    }
}

fn host_setup_error(error: anyhow::Error) -> RunError {
    RunError::Host {
        workflow_id: "-".into(),
        message: format!("{error:#}"),
    }
}

fn with_file(path: &Path, error: RunError) -> RunError {
    match error {
        RunError::Load(load) => RunError::WrongKind(format!("{}: {load}", path.display())),
        RunError::WrongKind(message) => {
            RunError::WrongKind(format!("{}: {message}", path.display()))
        }
        other => other,
    }
}

async fn find_execution(
    store: &Arc<dyn Store>,
    id: &str,
) -> anyhow::Result<(ExecutionRecord, Vec<RecordedEvent>)> {
    let record = store
        .execution(DEFAULT_TENANT, id)
        .await?
        .with_context(|| {
            format!("no execution with workflow id `{id}` in this database; check --db and the id")
        })?;
    let events = store.history(record.id).await?;
    Ok((record, events))
}

async fn history(id: &str, json: bool, db: &DbArgs) -> ExitCode {
    let result = async {
        let store = open_store(db).await?;
        let (record, events) = find_execution(&store, id).await?;
        if json {
            let export = HistoryExport {
                execution: record,
                events,
            };
            println!("{}", serde_json::to_string_pretty(&export)?);
        } else {
            print_timeline(&record, &events);
        }
        Ok(())
    };
    report(result.await)
}

/// The file format of `history --json` and `replay --history FILE`.
#[derive(serde::Serialize, serde::Deserialize)]
struct HistoryExport {
    execution: ExecutionRecord,
    events: Vec<RecordedEvent>,
}

fn print_timeline(record: &ExecutionRecord, events: &[RecordedEvent]) {
    println!(
        "execution {} (run {}) type {} — {}",
        record.workflow_id,
        record.run_id,
        record.workflow_type,
        record.status.as_str()
    );
    // seq → the saga step its compensation undoes, to mark every line of
    // the compensation chain (schedule, attempts, outcome).
    let compensations: std::collections::HashMap<u64, &str> = events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            Event::ActivityScheduled { seq, options, .. } => {
                options.compensates.as_deref().map(|step| (*seq, step))
            }
            _ => None,
        })
        .collect();
    for recorded in events {
        let compensation = match &recorded.event {
            Event::ActivityAttemptFailed { seq, .. }
            | Event::ActivityCompleted { seq, .. }
            | Event::ActivityFailed { seq, .. } => compensations.get(seq).copied(),
            _ => None,
        };
        let detail = match &recorded.event {
            Event::WorkflowStarted { input, .. } => format!("input {input}"),
            Event::ClockRead {
                clock, value_ns, ..
            } => format!("{clock:?} clock = {value_ns} ns"),
            Event::RandomDrawn { bytes, .. } => format!("{} bytes", bytes.len() / 2),
            Event::ActivityScheduled {
                name,
                input,
                idempotency_key,
                options,
                ..
            } => match &options.compensates {
                Some(step) => {
                    format!("↺ compensates `{step}`: {name}({input}) key {idempotency_key}")
                }
                None => format!("{name}({input}) key {idempotency_key}"),
            },
            Event::ActivityAttemptFailed {
                attempt,
                error,
                retry_at_ms,
                ..
            } => format!(
                "attempt {attempt} failed: {}: {}{}",
                error.error_type,
                error.message,
                retry_at_ms
                    .map(|at| format!(" — retry at {at} ms"))
                    .unwrap_or_default()
            ),
            Event::ActivityCompleted {
                attempt, output, ..
            } => format!("attempt {attempt} → {output}"),
            Event::ActivityFailed { failure, .. } => format!(
                "{:?} after {} attempts: {}",
                failure.reason, failure.attempts, failure.last_error.message
            ),
            Event::TimerStarted {
                duration_ms,
                fire_at_ms,
                ..
            } => format!("{duration_ms} ms, fires at {fire_at_ms}"),
            Event::TimerFired { .. } => String::new(),
            Event::SignalAwaited {
                name, deadline_ms, ..
            } => match deadline_ms {
                Some(deadline) => format!("waits for `{name}` until {deadline}"),
                None => format!("waits for `{name}`"),
            },
            Event::SignalReceived {
                name,
                payload,
                message_id,
                ..
            } => format!("`{name}` {payload} (id {message_id})"),
            Event::SignalTimedOut { .. } => String::new(),
            Event::CancellationDelivered { wait } => format!("delivered to blocking call #{wait}"),
            Event::ChildStarted {
                workflow_type,
                workflow_id,
                input,
                ..
            } => format!("{workflow_type}({input}) as {workflow_id}"),
            Event::ChildCompleted { output, .. } => format!("→ {output}"),
            Event::ChildFailed { error, .. } => error.to_string(),
            Event::WorkflowCompleted { output } => format!("output {output}"),
            Event::WorkflowFailed { error } | Event::WorkflowCancelled { error } => {
                error.to_string()
            }
            Event::WorkflowTerminated { reason } => reason.clone(),
        };
        let detail = match compensation {
            Some(step) => format!("↺ `{step}`: {detail}"),
            None => detail,
        };
        let seq = recorded
            .event
            .command_seq()
            .map(|seq| format!("seq {seq:>3}"))
            .unwrap_or_else(|| "       ".to_string());
        println!(
            "{:>5}  {}  {seq}  {:<22} {detail}",
            recorded.position,
            recorded.recorded_at_ms,
            recorded.event.kind()
        );
    }
}

async fn replay(module: &Path, histories: &[String], db: &DbArgs) -> ExitCode {
    let setup = async {
        let engine = open_engine(db).map_err(host_setup_error)?;
        let component =
            load_component(&engine, module).map_err(|error| with_file(module, error))?;
        let store = open_store(db).await.map_err(host_setup_error)?;
        let registry = ActivityRegistry::empty(engine.clone()).map_err(host_setup_error)?;
        let runtime = Runtime::new(engine, store.clone(), registry, RuntimeOptions::default())
            .map_err(host_setup_error)?;
        Ok::<_, RunError>((runtime, component, store))
    };
    let (runtime, component, store) = match setup.await {
        Ok(ready) => ready,
        Err(error) => return fail_with(error),
    };
    let mut worst = ExitCode::SUCCESS;
    for source in histories {
        let loaded = if Path::new(source).is_file() {
            std::fs::read_to_string(source)
                .context("reading the history file")
                .and_then(|text| {
                    serde_json::from_str::<HistoryExport>(&text)
                        .context("the file is not a history exported by `reprise history --json`")
                })
                .map(|export| (export.execution, export.events))
        } else {
            find_execution(&store, source).await
        };
        let (record, events) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("{source}: error: {error:#}");
                worst = ExitCode::from(EXIT_BAD_INPUT);
                continue;
            }
        };
        match runtime.verify_replay(&component, record, events).await {
            Ok(ReplayVerdict::Reproduced) => {
                println!("{source}: ok — the build reproduces the whole history")
            }
            Ok(ReplayVerdict::ReproducedSoFar { commands }) => println!(
                "{source}: ok — the build reproduces all {commands} recorded commands (the execution had not finished)"
            ),
            Err(error) => {
                println!("{source}: INCOMPATIBLE — {error}");
                worst = exit_for(&error);
            }
        }
    }
    worst
}

async fn post(
    id: &str,
    kind: MessageKind,
    name: &str,
    payload: &str,
    message_id: &str,
    db: &DbArgs,
) -> ExitCode {
    if let Err(problem) = crate::runtime::check_json_payload("payload", payload) {
        eprintln!("error: {problem}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let result = async {
        let store = open_store(db).await?;
        let (record, _) = find_execution(&store, id).await?;
        if record.status != ExecutionStatus::Running {
            anyhow::bail!(
                "execution `{id}` has already finished ({})",
                record.status.as_str()
            );
        }
        let posted = store
            .post_message(record.id, kind, name, payload, message_id)
            .await?;
        match (posted, kind) {
            (true, MessageKind::Signal) => {
                println!("signal `{name}` sent to {id} (id {message_id})")
            }
            (false, MessageKind::Signal) => {
                println!("signal id {message_id} was sent to {id} before; not sent again")
            }
            (true, MessageKind::Cancel) => println!("cancellation requested for {id}"),
            (false, MessageKind::Cancel) => println!("cancellation was already requested for {id}"),
        }
        Ok(())
    };
    report_bad_input(result.await)
}

async fn terminate(id: &str, reason: &str, db: &DbArgs) -> ExitCode {
    let result = async {
        let store = open_store(db).await?;
        let (record, _) = find_execution(&store, id).await?;
        if store.terminate(record.id, reason).await? {
            println!("{id} terminated");
            Ok(())
        } else {
            anyhow::bail!(
                "execution `{id}` has already finished ({})",
                record.status.as_str()
            )
        }
    };
    report_bad_input(result.await)
}

/// Errors here are about what the user asked for (unknown id, finished
/// execution): exit code 2.
fn report_bad_input(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

async fn serve(
    data: PathBuf,
    listen: std::net::SocketAddr,
    activities: ActivitySetup,
) -> anyhow::Result<()> {
    let db = DbArgs {
        db: data.join("reprise.db"),
        cache_dir: Some(data.join("cache")),
    };
    let engine = open_engine(&db)?;
    let store = open_store(&db).await?;
    let queue = WorkerQueue::new();
    let registry = activities
        .registry_with_workers(&engine, Some(queue.clone()))
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let runtime = Runtime::new(engine, store.clone(), registry, RuntimeOptions::default())?;
    for (tenant, name, digest) in store.workflow_types().await? {
        runtime.register_type_for(&tenant, &name, &digest);
    }
    let (routes, server) = crate::api::execution_routes(runtime);
    let resumed = store.unfinished_executions().await?;
    tracing::info!(count = resumed.len(), "resuming unfinished executions");
    for record in resumed {
        server.spawn_drive(record);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving the Reprise API");
    axum::serve(
        listener,
        routes.merge(crate::api::worker_routes(queue, Some(store))),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving the API")
}

/// SIGTERM or Ctrl-C: stop taking requests. Running executions stop where
/// they are; their histories let the next process resume them.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

async fn create_tenant(name: &str, data: &Path) -> ExitCode {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        eprintln!("error: a tenant name is 1 to 64 letters, digits, '-' or '_'; got `{name}`");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let result = async {
        let db = DbArgs {
            db: data.join("reprise.db"),
            cache_dir: None,
        };
        let store = open_store(&db).await?;
        let (key, hash) = crate::api::auth::new_api_key();
        if !store.create_tenant(name, &hash).await? {
            anyhow::bail!("tenant `{name}` exists already; its key cannot be shown again");
        }
        println!("{key}");
        eprintln!(
            "tenant `{name}` created; keep this API key, it is not stored and cannot be shown again"
        );
        Ok(())
    };
    report_bad_input(result.await)
}

/// One request to a server; the answer's status and JSON body.
async fn request(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use http_body_util::BodyExt as _;
    let uri: http::Uri = server
        .server
        .parse()
        .with_context(|| format!("--server {} is not a URL", server.server))?;
    let authority = uri
        .authority()
        .with_context(|| format!("--server {} has no host", server.server))?
        .to_string();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", server.api_key),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
    let (response, _connection) = crate::activity::outbound::send(&authority, request)
        .await
        .with_context(|| format!("is `reprise serve` running at {}?", server.server))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// Prints a server's answer: the body on success, its error otherwise,
/// with the exit code that says whose fault it was.
fn answer(status: u16, body: &serde_json::Value) -> ExitCode {
    if (200..300).contains(&status) {
        println!("{body}");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "error ({status}): {}",
        body["error"].as_str().unwrap_or("unexpected answer")
    );
    ExitCode::from(if status >= 500 {
        EXIT_HOST_ERROR
    } else {
        EXIT_BAD_INPUT
    })
}

async fn deploy(file: &Path, name: Option<String>, server: &ServerArgs) -> ExitCode {
    let result = async {
        let bytes =
            std::fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
        let (status, module) = request(server, "POST", "/v1/modules", bytes).await?;
        if status != 201 {
            return Ok((status, module));
        }
        let name = name.unwrap_or_else(|| type_name(file));
        let bind = serde_json::json!({ "digest": module["digest"] })
            .to_string()
            .into_bytes();
        let (status, bound) =
            request(server, "PUT", &format!("/v1/workflow-types/{name}"), bind).await?;
        Ok::<_, anyhow::Error>((status, if status == 200 { module } else { bound }))
    };
    match result.await {
        Ok((status, body)) => answer(status, &body),
        Err(error) => report(Err(error)),
    }
}

async fn start_remote(
    name: &str,
    input: &str,
    id: Option<String>,
    wait: bool,
    server: &ServerArgs,
) -> ExitCode {
    let input: serde_json::Value = match serde_json::from_str(input) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("error: --input is not valid JSON ({error})");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let body = serde_json::json!({ "workflow_type": name, "workflow_id": id, "input": input });
    let started = request(
        server,
        "POST",
        "/v1/executions",
        body.to_string().into_bytes(),
    )
    .await;
    match started {
        Ok((status, execution)) if wait && (200..300).contains(&status) => {
            let id = execution["workflow_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            result_remote(&id, true, server).await
        }
        Ok((status, body)) => answer(status, &body),
        Err(error) => report(Err(error)),
    }
}

async fn result_remote(id: &str, wait: bool, server: &ServerArgs) -> ExitCode {
    let path = format!(
        "/v1/executions/{id}{}",
        if wait { "?wait_ms=60000" } else { "" }
    );
    match request(server, "GET", &path, Vec::new()).await {
        Ok((200, execution)) if execution["status"] == "failed" => {
            println!("{execution}");
            ExitCode::from(EXIT_WORKFLOW_FAILED)
        }
        Ok((status, body)) => answer(status, &body),
        Err(error) => report(Err(error)),
    }
}
