//! The `reprise` command line.
//!
//! Exit codes: 0 success; 1 the workflow failed; 2 bad input or usage;
//! 3 nondeterminism (the code does not match the history); 4 host error.

mod client;
mod output;
mod schedule;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::activity::outbound::Allowlist;
use crate::activity::worker::WorkerQueue;
use crate::activity::{ActivityConfig, ActivityRegistry};
use crate::engine::{Engine, Limits, LoadedComponent};
use crate::journal::RecordedEvent;
use crate::runtime::{DEFAULT_TENANT, Outcome, ReplayVerdict, RunError, Runtime, RuntimeOptions};
use crate::store::{self, ExecutionRecord, ExecutionStatus, HistoryExport, MessageKind, Store};
use client::{RemoteArgs, ServerArgs};
use output::{Format, pretty_json};
use timeline::print_history;

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
    /// Print JSON for scripts instead of text for people (payloads exactly
    /// as recorded either way).
    #[arg(long, global = true)]
    json: bool,
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
        /// The tenant's limits as JSON, naming only what differs from the
        /// defaults, e.g. '{"running_executions_max": 10}'.
        #[arg(long, default_value = "{}")]
        limits: String,
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
        #[command(flatten)]
        activities: ActivityArgs,
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
        /// Serve the external-worker task API on this address (e.g.
        /// 127.0.0.1:7979); activities no component serves go to workers.
        #[arg(long)]
        worker_api: Option<std::net::SocketAddr>,
        /// Drop the instance at every wait and rebuild it by replay
        /// (default: after a short hot window, or at once under pressure).
        #[arg(long)]
        evict_on_wait: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Serve the HTTP API (and the worker task API) with the runtime, its
    /// workers and timers in one process; executions left running by an
    /// earlier process are resumed.
    Serve {
        /// Where the database lives, and the compiled-component cache
        /// unless --cache-dir names another.
        #[arg(long, env = "REPRISE_DATA", default_value = "reprise-data")]
        data: PathBuf,
        /// Where compiled components are cached (default: `cache/` under
        /// --data); servers of one build may share it.
        #[arg(long, env = "REPRISE_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        #[arg(long, env = "REPRISE_LISTEN", default_value = "127.0.0.1:7878")]
        listen: std::net::SocketAddr,
        /// Keep executions in this PostgreSQL database
        /// (`postgres://user@host/db`) instead of SQLite under --data
        /// (which still holds the compiled-component cache). Any number of
        /// servers may share one PostgreSQL database; SQLite takes one.
        #[arg(long, env = "REPRISE_DATABASE_URL")]
        database: Option<String>,
        /// This node's lease on its executions: if the process dies or
        /// stalls this long, other nodes on the database take them over
        /// (on PostgreSQL a dead process's are taken within a second).
        #[arg(long, env = "REPRISE_LEASE_MS", default_value_t = crate::api::membership::LEASE_DEFAULT.as_millis() as u64)]
        lease_ms: u64,
        /// Where the other nodes reach this one's API (they forward
        /// external workers' polls and reports to it); default
        /// `http://<--listen>` unless that listens on every address.
        #[arg(long, env = "REPRISE_ADVERTISE_URL")]
        advertise_url: Option<String>,
        /// How often finished executions past their tenant's
        /// `finished_retention_seconds` are looked for and deleted.
        #[arg(long, env = "REPRISE_RETENTION_SWEEP_MS", default_value_t = crate::api::SWEEP_INTERVAL_DEFAULT.as_millis() as u64)]
        retention_sweep_ms: u64,
        #[command(flatten)]
        activities: ActivityArgs,
        /// A file holding the admin key, which manages tenants over HTTP
        /// (`/v1/admin/...`); without it those routes answer 401.
        #[arg(long, env = "REPRISE_ADMIN_KEY_FILE")]
        admin_key_file: Option<PathBuf>,
        /// How long a client may take to send a request's head; also how
        /// long a kept-alive connection may sit idle.
        #[arg(long, default_value_t = 10_000)]
        header_read_timeout_ms: u64,
        /// How long a client may take to send a request's body.
        #[arg(long, default_value_t = 60_000)]
        body_read_timeout_ms: u64,
        /// Open connections in all (more are closed at once).
        #[arg(long, default_value_t = crate::api::ConnectionLimits::default().connections_max)]
        connections_max: usize,
        /// Open connections from one address (a start-and-wait request holds
        /// one for the whole execution).
        #[arg(long, default_value_t = crate::api::ConnectionLimits::default().connections_per_peer_max)]
        connections_per_peer_max: usize,
    },
    /// Manage tenants of a server's database.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Print an execution's history: a timeline (time, sequence, event,
    /// attempt, error, retry time, compensations marked ↺); with --json,
    /// the events in the format `replay --history FILE` reads.
    History {
        /// The workflow id.
        id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Summarise an execution: state, what it waits for, attempts so far,
    /// the last error.
    Status {
        id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List a server's executions, newest first.
    List {
        #[command(flatten)]
        filters: client::ListFilters,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Replay recorded histories against a (new) workflow build and report
    /// whether it reproduces them: the safe-upgrade check.
    Replay {
        /// The workflow component to check.
        #[arg(long)]
        module: PathBuf,
        /// Workflow ids (in the database, or on --server), or history
        /// files from `history --json`.
        #[arg(long = "history", required = true)]
        histories: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        remote: RemoteArgs,
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
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Manage a server's schedules: start a workflow type every interval
    /// or by cron (`reprise schedule create nightly --type report --cron
    /// "0 2 * * *" --time-zone Europe/Berlin`).
    Schedule {
        #[command(subcommand)]
        action: schedule::ScheduleAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask a server's execution a query: its handler answers from the
    /// state the durable history leads to; nothing is recorded.
    Query {
        /// The workflow id.
        id: String,
        /// The query name.
        name: String,
        /// The query's args (JSON).
        #[arg(long, default_value = "null")]
        args: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send an update to a server's execution and print the workflow's
    /// answer. The workflow's validator may reject it first (exit 2; the
    /// history is untouched); a failed answer exits 1.
    Update {
        /// The workflow id.
        id: String,
        /// The update name.
        name: String,
        /// The update's args (JSON).
        #[arg(long, default_value = "null")]
        args: String,
        /// Makes the update idempotent: sent again, it is not delivered
        /// twice, and the answer comes back.
        #[arg(long)]
        update_id: Option<String>,
        /// How long to wait for the answer (at most 60000).
        #[arg(long, value_name = "MS")]
        wait_ms: Option<u64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask an execution to cancel: its next blocking call returns
    /// "cancelled", and its compensations still run.
    Cancel {
        id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// End an execution at once, running nothing more (no compensation).
    Terminate {
        id: String,
        #[arg(long, default_value = "terminated by an operator")]
        reason: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Delete a finished execution on a server now, every run of its
    /// workflow id, instead of when the tenant's retention ends.
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Upload a component to a server; a workflow gets a type name bound to
    /// it, an activity component serves its activities to your workflows.
    Deploy {
        file: PathBuf,
        /// The workflow type name (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Also move the type's running executions to this module, those
        /// whose histories replay cleanly against it.
        #[arg(long)]
        upgrade_running: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Unbind a workflow type on a server: starts by its name fail from
    /// then on, and its running executions keep their module. With
    /// --module, delete a module instead (refused while a type is bound to
    /// it or an execution runs on it).
    Undeploy {
        /// The workflow type, or with --module the module's digest.
        name: String,
        /// NAME is a module digest: delete that module.
        #[arg(long)]
        module: bool,
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
        /// Fail the execution (every continued run included) if it has not
        /// ended after this many milliseconds.
        #[arg(long, value_name = "MS")]
        execution_timeout_ms: Option<u64>,
        /// Fail a run that has not ended after this many milliseconds.
        #[arg(long, value_name = "MS")]
        run_timeout_ms: Option<u64>,
        /// Search attributes to start with: a JSON object, like
        /// '{"customer": "acme", "priority": 2}'.
        #[arg(long, value_name = "JSON")]
        search_attributes: Option<String>,
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
    /// Compile one component into a cached artifact: what `serve` runs in
    /// a child process with bounded memory and time for every upload.
    #[command(hide = true)]
    CompileComponent {
        input: PathBuf,
        output: PathBuf,
        /// The server engine's compatibility tag, which this one must match.
        tag: String,
    },
}

/// Entry point of the `reprise` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CompileComponent { input, output, tag } = &cli.command {
        // No async runtime, no logging: only the compiler runs here.
        return match Engine::compile_artifact(input, output, tag) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(EXIT_HOST_ERROR)
            }
        };
    }
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
    let format = Format::from_flag(cli.json);
    runtime.block_on(async {
        match cli.command {
            Command::Run {
                workflow,
                activities,
                child_workflows,
                input,
                id,
                worker_api,
                evict_on_wait,
                db,
            } => {
                let activities = ActivitySetup {
                    args: activities,
                    worker_api,
                };
                let workflows = std::iter::once(workflow).chain(child_workflows).collect();
                run(workflows, activities, input, id, evict_on_wait, format, db).await
            }
            Command::History { id, db, remote } => match remote.server() {
                Ok(Some(server)) => client::history(&id, format, &server).await,
                Ok(None) => history(&id, format, &db).await,
                Err(error) => usage_error(error),
            },
            Command::Status { id, db, remote } => match remote.server() {
                Ok(Some(server)) => client::status(&id, format, &server).await,
                Ok(None) => status(&id, format, &db).await,
                Err(error) => usage_error(error),
            },
            Command::List { filters, server } => client::list(&filters, format, &server).await,
            Command::Tenant {
                command: TenantCommand::Create { name, data, limits },
            } => create_tenant(&name, &data, &limits, format).await,
            Command::Serve {
                data,
                cache_dir,
                listen,
                database,
                lease_ms,
                advertise_url,
                retention_sweep_ms,
                activities,
                admin_key_file,
                header_read_timeout_ms,
                body_read_timeout_ms,
                connections_max,
                connections_per_peer_max,
            } => {
                let activities = ActivitySetup {
                    args: activities,
                    worker_api: None,
                };
                let connections = crate::api::ConnectionLimits {
                    connections_max,
                    connections_per_peer_max,
                    header_read_timeout: std::time::Duration::from_millis(header_read_timeout_ms),
                    body_read_timeout: std::time::Duration::from_millis(body_read_timeout_ms),
                };
                let place = ServePlace {
                    cache_dir: cache_dir.unwrap_or_else(|| data.join("cache")),
                    data,
                    database,
                    listen,
                    lease: std::time::Duration::from_millis(lease_ms),
                    advertise_url,
                    retention_sweep: std::time::Duration::from_millis(retention_sweep_ms),
                };
                report(serve(place, activities, admin_key_file, connections).await)
            }
            Command::Replay {
                module,
                histories,
                db,
                remote,
            } => match remote.server() {
                Ok(server) => replay(&module, &histories, &db, server.as_ref(), format).await,
                Err(error) => usage_error(error),
            },
            Command::Signal {
                id,
                name,
                payload,
                signal_id,
                db,
                remote,
            } => match remote.server() {
                Ok(Some(server)) => {
                    let message = client::Message::Signal {
                        name: &name,
                        payload: &payload,
                        signal_id: signal_id.as_deref(),
                    };
                    client::send(&id, message, format, &server).await
                }
                Ok(None) => {
                    let message_id =
                        signal_id.unwrap_or_else(|| format!("signal-{}", crate::clock::now_ns()));
                    post(
                        &id,
                        MessageKind::Signal,
                        &name,
                        &payload,
                        &message_id,
                        format,
                        &db,
                    )
                    .await
                }
                Err(error) => usage_error(error),
            },
            Command::Schedule { action, server } => schedule::run(action, format, &server).await,
            Command::Query {
                id,
                name,
                args,
                server,
            } => client::query(&id, &name, &args, format, &server).await,
            Command::Update {
                id,
                name,
                args,
                update_id,
                wait_ms,
                server,
            } => {
                let options = client::UpdateOptions {
                    update_id: update_id.as_deref(),
                    wait_ms,
                };
                client::update(&id, &name, &args, options, format, &server).await
            }
            Command::Cancel { id, db, remote } => match remote.server() {
                Ok(Some(server)) => {
                    client::send(&id, client::Message::Cancel, format, &server).await
                }
                Ok(None) => post(&id, MessageKind::Cancel, "", "null", "cancel", format, &db).await,
                Err(error) => usage_error(error),
            },
            Command::Terminate {
                id,
                reason,
                db,
                remote,
            } => match remote.server() {
                Ok(Some(server)) => {
                    let message = client::Message::Terminate { reason: &reason };
                    client::send(&id, message, format, &server).await
                }
                Ok(None) => terminate(&id, &reason, format, &db).await,
                Err(error) => usage_error(error),
            },
            Command::Delete { id, server } => client::delete_execution(&id, format, &server).await,
            Command::Deploy {
                file,
                name,
                upgrade_running,
                server,
            } => client::deploy(&file, name, upgrade_running, format, &server).await,
            Command::Undeploy {
                name,
                module,
                server,
            } => client::undeploy(&name, module, format, &server).await,
            Command::Start {
                name,
                input,
                id,
                wait,
                execution_timeout_ms,
                run_timeout_ms,
                search_attributes,
                server,
            } => {
                let search_attributes = match search_attributes
                    .map(serde_json::value::RawValue::from_string)
                    .transpose()
                {
                    Ok(attributes) => attributes,
                    Err(error) => {
                        eprintln!(
                            "error: --search-attributes is not valid JSON ({error}); pass an object like '{{\"customer\": \"acme\"}}'"
                        );
                        return ExitCode::from(EXIT_BAD_INPUT);
                    }
                };
                let extras = client::StartExtras {
                    timeouts: client::StartTimeouts {
                        execution_ms: execution_timeout_ms,
                        run_ms: run_timeout_ms,
                    },
                    search_attributes,
                };
                client::start(&name, &input, id, wait, extras, format, &server).await
            }
            Command::Result { id, wait, server } => {
                client::result(&id, wait, format, &server).await
            }
            Command::Bench(args) => report(crate::bench::run(args).await),
            Command::CompileComponent { .. } => {
                unreachable!("compile-component returns before the async runtime starts")
            }
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

fn usage_error(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn exit_for(error: &RunError) -> ExitCode {
    let code = match error {
        RunError::Nondeterminism { .. } => EXIT_NONDETERMINISM,
        RunError::Load(_)
        | RunError::InvalidInput(_)
        | RunError::WrongKind(_)
        | RunError::Payload(_)
        | RunError::Limit(_)
        | RunError::IdReuseRefused { .. }
        | RunError::UnknownModule { .. }
        | RunError::UnknownWorkflowType { .. } => EXIT_BAD_INPUT,
        RunError::Store(_)
        | RunError::CorruptHistory { .. }
        | RunError::Host { .. }
        | RunError::ShuttingDown { .. }
        | RunError::Disowned { .. } => EXIT_HOST_ERROR,
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

/// What activities get, as `run` and `serve` take it.
#[derive(clap::Args)]
struct ActivityArgs {
    /// Activity components (.wasm); repeat for several.
    #[arg(long = "activities")]
    files: Vec<PathBuf>,
    /// A directory granted to activities, seen by them as /data (created if
    /// missing).
    #[arg(long)]
    activity_dir: Option<PathBuf>,
    /// A host activities may call over HTTP: `host`, `host:port`, or
    /// `https://host[:port]` for TLS only; repeat for several. On a server,
    /// a tenant's own `allowed_hosts` limit replaces this list.
    #[arg(long = "allow-host")]
    allowed_hosts: Vec<String>,
    /// CA certificates (PEM) trusted for `https://` besides the system's,
    /// e.g. a private CA of internal services.
    #[arg(long, env = "REPRISE_HTTP_CA_FILE")]
    http_ca_file: Option<PathBuf>,
}

/// How `run` and `serve` set up activities.
struct ActivitySetup {
    args: ActivityArgs,
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
        let ActivityArgs {
            files,
            activity_dir,
            allowed_hosts,
            http_ca_file,
        } = self.args;
        let allowed_hosts = Allowlist::parse(&allowed_hosts)
            .map_err(|error| RunError::InvalidInput(format!("--allow-host: {error}")))?;
        if let Some(dir) = &activity_dir {
            // The directory a user names is made, as `mkdir -p` would.
            std::fs::create_dir_all(dir).map_err(|error| {
                RunError::InvalidInput(format!(
                    "cannot create the activity directory {}: {error}",
                    dir.display()
                ))
            })?;
        }
        let mut components = Vec::new();
        for path in &files {
            components.push(load_component(engine, path).map_err(|error| with_file(path, error))?);
        }
        let workers = match self.worker_api {
            None => queue,
            Some(address) => {
                let queue = WorkerQueue::new();
                let listener = crate::api::bind(address).map_err(|error| {
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
            activity_dir,
            allowed_hosts,
            http_ca_file,
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
    format: Format,
    db: DbArgs,
) -> ExitCode {
    let setup = async {
        let engine = open_engine(&db).map_err(host_setup_error)?;
        let store = open_store(&db).await.map_err(host_setup_error)?;
        let registry = activities.registry(&engine).await?;
        let mut options = RuntimeOptions::default();
        if evict_on_wait {
            options.hot_window = std::time::Duration::ZERO;
        }
        let runtime = Runtime::new(engine, store, registry, options).map_err(host_setup_error)?;
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
    let outcome = runtime.drive(record).await;
    // Guest lines and spans still queued are stored and sent before the
    // process ends.
    runtime.telemetry().flush().await;
    match outcome {
        // The output as the workflow returned it: compact for scripts,
        // indented for people, the same tokens either way.
        Ok(Outcome::Completed { output }) => {
            match format {
                Format::Json => println!("{}", output.get()),
                Format::Human => println!("{}", pretty_json(output.get())),
            }
            ExitCode::SUCCESS
        }
        Ok(Outcome::Failed { error }) => {
            eprintln!("workflow failed: {error}");
            let text = serde_json::to_string(&error).unwrap_or_else(|_| error.to_string());
            match format {
                Format::Json => println!("{text}"),
                Format::Human => println!("{}", pretty_json(&text)),
            }
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

async fn status(id: &str, format: Format, db: &DbArgs) -> ExitCode {
    let result = async {
        let store = open_store(db).await?;
        let (record, events) = find_execution(&store, id).await?;
        timeline::print_status(&record, &events, format);
        Ok(record.status)
    };
    match result.await {
        Ok(status) => exit_for_status(status),
        Err(error) => report_bad_input(Err(error)),
    }
}

/// 1 for an execution that ended without success, else 0.
fn exit_for_status(status: ExecutionStatus) -> ExitCode {
    match status {
        ExecutionStatus::Running | ExecutionStatus::Completed | ExecutionStatus::ContinuedAsNew => {
            ExitCode::SUCCESS
        }
        ExecutionStatus::Failed | ExecutionStatus::Cancelled | ExecutionStatus::Terminated => {
            ExitCode::from(EXIT_WORKFLOW_FAILED)
        }
    }
}

async fn history(id: &str, format: Format, db: &DbArgs) -> ExitCode {
    let result = async {
        let store = open_store(db).await?;
        let (execution, events) = find_execution(&store, id).await?;
        print_history(&HistoryExport { execution, events }, format)
    };
    report(result.await)
}

async fn replay(
    module: &Path,
    histories: &[String],
    db: &DbArgs,
    server: Option<&ServerArgs>,
    format: Format,
) -> ExitCode {
    // With --json, one line per history: {"history", "verdict", …}.
    let verdict_line = |source: &str, verdict: &str, detail: serde_json::Value| {
        let mut line = serde_json::json!({ "history": source, "verdict": verdict });
        if let (Some(line), Some(detail)) = (line.as_object_mut(), detail.as_object()) {
            line.extend(detail.clone());
        }
        println!("{line}");
    };
    // A verification replay writes nothing; against a server or history
    // files it needs no local database either, so it gets a scratch one.
    let reads_database =
        server.is_none() && histories.iter().any(|source| !Path::new(source).is_file());
    let scratch = if reads_database {
        None
    } else {
        match tempfile::tempdir() {
            Ok(dir) => Some(dir),
            Err(error) => return report(Err(error.into())),
        }
    };
    let setup = async {
        let engine = open_engine(db).map_err(host_setup_error)?;
        let component =
            load_component(&engine, module).map_err(|error| with_file(module, error))?;
        let store = match &scratch {
            Some(dir) => store::open(&dir.path().join("scratch.db"))
                .await
                .map_err(|error| host_setup_error(error.into()))?,
            None => open_store(db).await.map_err(host_setup_error)?,
        };
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
        } else if let Some(server) = server {
            client::fetch_history(server, source)
                .await
                .and_then(|fetched| fetched.map_err(|refusal| anyhow::anyhow!("{refusal}")))
                .map(|export| (export.execution, export.events))
        } else {
            find_execution(&store, source).await
        };
        let (record, events) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("{source}: error: {error:#}");
                if format == Format::Json {
                    let detail = serde_json::json!({ "error": format!("{error:#}") });
                    verdict_line(source, "unreadable", detail);
                }
                worst = ExitCode::from(EXIT_BAD_INPUT);
                continue;
            }
        };
        let verdict = runtime.verify_replay(&component, record, events).await;
        match (format, verdict) {
            (Format::Human, Ok(ReplayVerdict::Reproduced)) => {
                println!("{source}: ok — the build reproduces the whole history")
            }
            (Format::Human, Ok(ReplayVerdict::ReproducedSoFar { commands })) => println!(
                "{source}: ok — the build reproduces all {commands} recorded commands (the execution had not finished)"
            ),
            (Format::Json, Ok(ReplayVerdict::Reproduced)) => {
                verdict_line(source, "reproduced", serde_json::json!({}))
            }
            (Format::Json, Ok(ReplayVerdict::ReproducedSoFar { commands })) => verdict_line(
                source,
                "reproduced_so_far",
                serde_json::json!({ "commands": commands }),
            ),
            (format, Err(error)) => {
                match format {
                    Format::Human => println!("{source}: INCOMPATIBLE — {error}"),
                    Format::Json => verdict_line(
                        source,
                        "incompatible",
                        serde_json::json!({ "error": error.to_string() }),
                    ),
                }
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
    format: Format,
    db: &DbArgs,
) -> ExitCode {
    if let Err(problem) =
        crate::runtime::check_json_payload("payload", payload, crate::journal::PAYLOAD_BYTES_MAX)
    {
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
        let accepted = store
            .post_message(record.id, kind, name, payload, message_id)
            .await?;
        let delivered = match kind {
            MessageKind::Signal => Delivered::Signal {
                name,
                signal_id: Some(message_id),
                accepted,
            },
            MessageKind::Cancel => Delivered::Cancel { accepted },
            // Validation and the answer need a server; nothing here posts one.
            MessageKind::Update | MessageKind::Upgrade => {
                anyhow::bail!("updates and upgrades go through a server: pass --server")
            }
        };
        delivered.print(id, format);
        Ok(())
    };
    report_bad_input(result.await)
}

async fn terminate(id: &str, reason: &str, format: Format, db: &DbArgs) -> ExitCode {
    let result = async {
        let store = open_store(db).await?;
        let (record, _) = find_execution(&store, id).await?;
        if store.terminate(record.id, reason).await? {
            Delivered::Terminated.print(id, format);
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

/// What a signal, cancel or terminate did, printed the same way for a
/// local database and a server (whose answers the JSON mirrors).
pub(crate) enum Delivered<'a> {
    Signal {
        name: &'a str,
        signal_id: Option<&'a str>,
        /// False: a signal with this id was delivered before.
        accepted: bool,
    },
    Cancel {
        /// False: a cancellation was requested before.
        accepted: bool,
    },
    Terminated,
}

impl Delivered<'_> {
    fn print(&self, id: &str, format: Format) {
        match (format, self) {
            (Format::Json, Delivered::Signal { accepted, .. } | Delivered::Cancel { accepted }) => {
                println!(
                    "{}",
                    serde_json::json!({ "accepted": accepted, "duplicate": !accepted })
                )
            }
            (Format::Json, Delivered::Terminated) => {
                println!("{}", serde_json::json!({ "terminated": true }))
            }
            (
                Format::Human,
                Delivered::Signal {
                    name,
                    signal_id,
                    accepted,
                },
            ) => {
                let with_id = signal_id
                    .map(|signal_id| format!(" (id {signal_id})"))
                    .unwrap_or_default();
                if *accepted {
                    println!("signal `{name}` sent to {id}{with_id}")
                } else {
                    println!("signal `{name}`{with_id} was sent to {id} before; not sent again")
                }
            }
            (Format::Human, Delivered::Cancel { accepted: true }) => {
                println!("cancellation requested for {id}")
            }
            (Format::Human, Delivered::Cancel { accepted: false }) => {
                println!("cancellation was already requested for {id}")
            }
            (Format::Human, Delivered::Terminated) => println!("{id} terminated"),
        }
    }
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

/// File descriptors `serve` keeps for itself beyond its connections.
const FILES_RESERVED: u64 = 256;

/// Lifts the soft limit on open files toward `wanted` (the hard limit caps
/// it) and returns the limit now in force.
fn raise_open_files_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) and setrlimit(2) only read or write the struct
    // passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Where a server keeps its data and listens.
struct ServePlace {
    /// The SQLite database, unless `database` names another.
    data: PathBuf,
    /// The compiled-component cache.
    cache_dir: PathBuf,
    database: Option<String>,
    listen: std::net::SocketAddr,
    /// The node's lease on its executions.
    lease: std::time::Duration,
    /// Where other nodes reach this one's API.
    advertise_url: Option<String>,
    /// How often finished executions past retention are deleted.
    retention_sweep: std::time::Duration,
}

async fn serve(
    ServePlace {
        data,
        cache_dir,
        database,
        listen,
        lease,
        advertise_url,
        retention_sweep,
    }: ServePlace,
    activities: ActivitySetup,
    admin_key_file: Option<PathBuf>,
    mut connections: crate::api::ConnectionLimits,
) -> anyhow::Result<()> {
    // Each connection is a file descriptor; the store, compilations and
    // activities need some too.
    let descriptors = raise_open_files_limit(connections.connections_max as u64 + FILES_RESERVED);
    let affordable = descriptors.saturating_sub(FILES_RESERVED) as usize;
    if affordable < connections.connections_max {
        tracing::warn!(
            connections_max = connections.connections_max,
            open_files_limit = descriptors,
            "the open-file limit allows only {affordable} connections; raise it (ulimit -n) for more"
        );
        connections.connections_max = affordable;
    }
    let admin_key = match &admin_key_file {
        Some(path) => {
            let key = std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin key from {}", path.display()))?;
            let key = key.trim().to_string();
            anyhow::ensure!(
                key.len() >= 32,
                "the admin key in {} is {} characters; use at least 32 random ones (e.g. `openssl rand -hex 32`)",
                path.display(),
                key.len()
            );
            Some(key)
        }
        None => None,
    };
    let db = DbArgs {
        db: data.join("reprise.db"),
        cache_dir: Some(cache_dir),
    };
    // Uploads compile in child processes with bounded memory and time.
    let program = std::env::current_exe().context("finding this program to compile uploads")?;
    let engine = open_engine(&db)?.compile_in_child_processes(program);
    let store = match &database {
        Some(url) => store::open_url(url)
            .await
            .context("opening the database --database names")?,
        None => open_store(&db).await?,
    };
    anyhow::ensure!(
        lease >= crate::api::membership::LEASE_MIN,
        "--lease-ms {} is too short: at least {} ms",
        lease.as_millis(),
        crate::api::membership::LEASE_MIN.as_millis()
    );
    let queue = WorkerQueue::new();
    let registry = activities
        .registry_with_workers(&engine, Some(queue.clone()))
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let runtime = Runtime::new(engine, store.clone(), registry, RuntimeOptions::default())?;
    // Bound before joining, so the node can say where it answers.
    let listener = crate::api::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    let advertise_url =
        advertise_url.or_else(|| (!bound.ip().is_unspecified()).then(|| format!("http://{bound}")));
    crate::api::membership::join(&runtime, lease, advertise_url.as_deref()).await?;
    let (routes, server) = crate::api::router(runtime.clone(), queue, admin_key.as_deref());
    // The first tick claims what no live node owns: on a restart, this
    // node's own executions from before.
    crate::api::membership::spawn(server.clone(), lease, advertise_url);
    crate::api::spawn_scheduler(server.clone());
    crate::api::spawn_sweeper(server.clone(), retention_sweep);
    tracing::info!(address = %listener.local_addr()?, "serving the Reprise API");
    crate::api::serve_until(listener, routes, connections, shutdown_signal())
        .await
        .context("serving the API")?;
    // No new requests; now every drive stops at its next wait, a journal
    // boundary, and what they exported goes out before the process ends.
    runtime.shut_down();
    let unfinished = server.drain(SHUTDOWN_DRAIN_MAX).await;
    if unfinished > 0 {
        tracing::warn!(
            unfinished,
            "drives still busy at exit; whichever node claims them resumes them from their journals"
        );
    }
    crate::api::membership::leave(&server).await;
    runtime.telemetry().flush().await;
    Ok(())
}

/// How long a shutdown waits for drives to reach a wait.
const SHUTDOWN_DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGTERM or Ctrl-C: stop taking requests (then `serve` drains the drives).
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

async fn create_tenant(name: &str, data: &Path, limits: &str, format: Format) -> ExitCode {
    let result = async {
        let db = DbArgs {
            db: data.join("reprise.db"),
            cache_dir: None,
        };
        let store = open_store(&db).await?;
        let (key, _) = crate::tenant::create_tenant(store.as_ref(), name, limits).await?;
        match format {
            Format::Json => println!("{}", serde_json::json!({ "tenant": name, "api_key": key })),
            Format::Human => println!("{key}"),
        }
        eprintln!(
            "tenant `{name}` created; keep this API key, it is not stored and cannot be shown again"
        );
        Ok(())
    };
    report_bad_input(result.await)
}
