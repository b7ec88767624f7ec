//! [`Runtime`]: deploys workflow components, starts executions and drives
//! them to the end, live or by replay.

mod drive_locks;
mod query;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::watch;

use serde::Serialize;
use serde_json::value::RawValue;
use tracing::Instrument as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store as WasmStore, StoreLimitsBuilder, Trap, UpdateDeadline};

use crate::activity::ActivityRegistry;
use crate::clock;
use crate::engine::{ComponentKind, Engine, LoadError, LoadedComponent};
use crate::execution::{Execution, Interrupt, Surroundings, runtime_error};
use crate::host::wasi::workflow_wasi;
use crate::host::workflow_bindings::{Workflow, WorkflowPre};
use crate::host::{WorkflowHost, wit_types};
use crate::journal::{
    Event, HOST_BEHAVIOUR, Halt, History, Nondeterminism, RecordedEvent, Recorder, TraceContext,
    WorkflowError, WorkflowTimeouts,
};
use crate::mailbox::{Mailboxes, MissedRaises};
use crate::quota::{InstanceSlot, Instances};
use crate::recently_used::RecentlyUsed;
use crate::store::{
    ExecutionFilter, ExecutionRecord, ExecutionStatus, Finish, IdReusePolicy, MessageKind,
    NewExecution, NextRun, StartOutcome, Store, StoreError,
};
use crate::telemetry::Telemetry;
use crate::tenant::{LimitExceeded, TenantLimits};

/// How long an activation waits before it tries again for a slot of the
/// node's instance pool (full although the tenant's share has room). It
/// never gives up: an execution nobody drives must not look `running`.
const BUSY_RETRY_DELAY: Duration = Duration::from_millis(50);

/// How long a waiting instance stays in memory by default: long enough
/// for an activity of a few milliseconds to answer a warm instance, short
/// enough that sleeping executions hold no instance.
pub const DEFAULT_HOT_WINDOW: Duration = Duration::from_millis(100);

/// The longest workflow id.
const WORKFLOW_ID_CHARS_MAX: usize = 256;

/// The error type a workflow returns when it ends because it was cancelled.
pub const CANCELLED_ERROR_TYPE: &str = "Cancelled";

/// The tenant of everything started without a server (`reprise run`).
pub const DEFAULT_TENANT: &str = "default";

/// The most running executions one upgrade looks at.
pub const UPGRADE_EXECUTIONS_MAX: u32 = 10_000;

/// What an upgrade of running executions did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UpgradeReport {
    /// Replayed cleanly: they move at their next activation.
    pub upgraded: Vec<String>,
    /// Did not replay: they stay on their module.
    pub kept: Vec<KeptExecution>,
}

/// A running execution an upgrade left on its module, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeptExecution {
    pub workflow_id: String,
    pub reason: String,
}

/// How one run's drive ended.
enum RunEnd {
    Finished(DriveEnd),
    /// The run continued as new: the next run to drive.
    ContinuedAs(ExecutionRecord),
}

/// How a drive ended.
#[derive(Debug)]
pub struct DriveEnd {
    pub outcome: Outcome,
    /// The execution's row as the drive's last write left it; none if the
    /// drive wrote no end (the history had one already).
    pub record: Option<ExecutionRecord>,
}

/// How an execution ended.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The workflow's result exactly as it returned it: never parsed into
    /// numbers and written again (that moves floats and reorders keys).
    Completed {
        output: Box<RawValue>,
    },
    Failed {
        error: WorkflowError,
    },
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Completed { output: a }, Outcome::Completed { output: b }) => {
                a.get() == b.get()
            }
            (Outcome::Failed { error: a }, Outcome::Failed { error: b }) => a == b,
            _ => false,
        }
    }
}

/// Recorded JSON text as a raw value, byte for byte; text that is not JSON
/// (a corrupt row) as a JSON string of it.
pub fn raw_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string()).unwrap_or_else(|_| {
        serde_json::value::to_raw_value(text).expect("a string always serializes")
    })
}

/// What a verification replay found (see [`Runtime::verify_replay`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// The code reproduced the whole history, result included.
    Reproduced,
    /// The code reproduced every recorded command; the execution had not
    /// finished when the history was taken.
    ReproducedSoFar { commands: u64 },
}

/// Errors that stop the runtime from driving an execution. None of them
/// writes to the history: the execution stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("execution `{workflow_id}` (run {run_id}): {source}")]
    Nondeterminism {
        workflow_id: String,
        run_id: String,
        #[source]
        source: Nondeterminism,
    },
    #[error("the history of execution `{workflow_id}` is corrupt: {problem}")]
    CorruptHistory {
        workflow_id: String,
        problem: String,
    },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Payload(#[from] PayloadProblem),
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error(
        "workflow id `{workflow_id}` already ran to its end ({status}) and the reuse policy {policy:?} refuses a new run; start with another id or id_reuse_policy `allow`"
    )]
    IdReuseRefused {
        workflow_id: String,
        status: &'static str,
        policy: IdReusePolicy,
    },
    #[error("{0}")]
    WrongKind(String),
    #[error("module {digest} is not in the store; deploy it first")]
    UnknownModule { digest: String },
    #[error("no workflow type `{name}`; bind one with PUT /v1/workflow-types/{name}")]
    UnknownWorkflowType { name: String },
    #[error("execution `{workflow_id}`: {message}")]
    Host {
        workflow_id: String,
        message: String,
    },
    #[error("execution `{workflow_id}` stopped at a wait: the process is shutting down")]
    ShuttingDown { workflow_id: String },
    #[error(
        "execution `{workflow_id}` stopped: another node owns it now (this node's lease passed)"
    )]
    Disowned { workflow_id: String },
}

/// How [`Runtime::start_for`] starts an execution.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// What to do when the workflow id's last run has finished.
    pub reuse: IdReusePolicy,
    /// The caller's trace (from a `traceparent`); default: a new trace.
    pub trace: Option<TraceContext>,
    /// Limit on the whole execution, every continued run included.
    pub execution_timeout: Option<Duration>,
    /// Limit on each run.
    pub run_timeout: Option<Duration>,
    /// The search attributes the execution starts with (a JSON object).
    pub search_attributes: Option<String>,
    /// The execution that starts this one as its child workflow (kept
    /// past its retention while that one runs).
    pub parent_execution: Option<i64>,
}

/// The longest execution or run timeout a start may ask for (ten years):
/// a deadline is a number of milliseconds that must not overflow.
pub const WORKFLOW_TIMEOUT_MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A tokio runtime of its own for guest code. Guest code yields only every
/// epoch tick; on the threads that also serve the API and the store's
/// writer, a tenant's endless loops would delay every step of everyone
/// else. On threads of their own, the OS shares the cores instead.
struct GuestThreads {
    runtime: Option<tokio::runtime::Runtime>,
    threads: usize,
}

impl GuestThreads {
    fn start() -> std::io::Result<GuestThreads> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("reprise-guest")
            .enable_all()
            .build()?;
        Ok(GuestThreads {
            runtime: Some(runtime),
            threads,
        })
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the guest runtime lives until GuestThreads is dropped")
            .handle()
    }
}

impl Drop for GuestThreads {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which async code must not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A move to another module that an upgrade found safe, applied at the
/// execution's next activation.
#[derive(Clone, Debug)]
struct PendingUpgrade {
    digest: String,
    /// The mailbox row that keeps it across restarts.
    message: Option<i64>,
}

/// An execution handed back by an activation, and how the activation
/// ended: `run` returned (the guest's result), or a host call stopped it.
type Activation = (
    Execution,
    Result<Result<String, wit_types::WorkflowError>, Interrupt>,
);

/// Options of a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// How long an instance stays in memory at a blocking wait before it
    /// is dropped and rebuilt by replay when the wait ends (the cold
    /// path). Zero: at every wait. Under pressure (the tenant's
    /// `instances_max` in use, or the node's pool three quarters full)
    /// instances are dropped at once whatever this says.
    pub hot_window: Duration,
    /// Export spans to this OTLP/HTTP traces URL; `None`: where the
    /// standard `OTEL_*` variables say, if anywhere.
    pub otlp_endpoint: Option<String>,
    /// The host behaviour new runs are recorded under (at most
    /// [`HOST_BEHAVIOUR`]); an older one keeps new histories replayable
    /// by nodes not yet upgraded.
    pub host_behaviour: u32,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            hot_window: DEFAULT_HOT_WINDOW,
            otlp_endpoint: None,
            host_behaviour: HOST_BEHAVIOUR,
        }
    }
}

/// The host: one engine, one store, the registered activities.
pub struct Runtime {
    engine: Engine,
    store: Arc<dyn Store>,
    activities: Arc<ActivityRegistry>,
    linker: Linker<WorkflowHost>,
    prepared: Mutex<RecentlyUsed<WorkflowPre<WorkflowHost>>>,
    mailboxes: Arc<Mailboxes>,
    /// (tenant, workflow type) → module digest.
    types: Mutex<HashMap<(String, String), String>>,
    /// Execution id → the module it moves to at its next activation (an
    /// upgrade of running executions whose history replayed cleanly).
    /// Kept durable as an `Upgrade` mailbox message (its row id here),
    /// delivered by the `ModuleUpgraded` append; a restart reloads them
    /// ([`Runtime::load_pending_upgrades`]).
    pending_upgrades: Mutex<HashMap<i64, PendingUpgrade>>,
    /// Counts update answers journaled by this process: callers waiting
    /// for one look again when it moves.
    update_answers: watch::Sender<u64>,
    /// Limits of tenants that have their own; others get [`Runtime::default_limits`].
    tenant_limits: Mutex<HashMap<String, Arc<TenantLimits>>>,
    default_limits: Arc<TenantLimits>,
    /// This runtime, for the executions that start child workflows.
    me: Weak<Runtime>,
    telemetry: Arc<Telemetry>,
    /// Set once by [`Runtime::shut_down`]; every waiting drive sees it.
    shutdown: watch::Sender<bool>,
    /// Where guest code runs.
    guest: GuestThreads,
    /// Workflow instances in memory: each tenant's share of them.
    instances: Arc<Instances>,
    drive_locks: drive_locks::DriveLocks,
    /// Execution id → the first event of a run this process just started:
    /// its drive begins from it instead of reading the history back.
    fresh_starts: Mutex<HashMap<i64, FreshStart>>,
    options: RuntimeOptions,
}

/// A run this process just started, for its drive.
struct FreshStart {
    first_event: RecordedEvent,
    /// Read before the run was created: see [`Mailboxes::register`].
    mail_before: MissedRaises,
}

/// The most [`Runtime::fresh_starts`] kept; when full, it starts over (a
/// drive without one reads the history, as after a restart).
const FRESH_STARTS_MAX: usize = 1024;
/// The largest workflow input a fresh start keeps in memory: a larger one
/// is read back (with the rest, [`FRESH_STARTS_MAX`] bounds the memory to
/// 16 MiB even if no drive ever takes them).
const FRESH_START_INPUT_BYTES_MAX: usize = 16 * 1024;

impl Runtime {
    pub fn new(
        engine: Engine,
        store: Arc<dyn Store>,
        activities: ActivityRegistry,
        options: RuntimeOptions,
    ) -> anyhow::Result<Arc<Runtime>> {
        anyhow::ensure!(
            options.host_behaviour <= HOST_BEHAVIOUR,
            "host behaviour {} is newer than this build's {HOST_BEHAVIOUR}",
            options.host_behaviour
        );
        let mut linker = Linker::<WorkflowHost>::new(engine.wasmtime());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        Workflow::add_to_linker::<_, HasSelf<WorkflowHost>>(&mut linker, |host| host)
            .map_err(anyhow::Error::from)?;
        // WASI timers become durable: shadow wasmtime-wasi's clock
        // subscriptions and polls with the journaled ones.
        linker.allow_shadowing(true);
        crate::host::timers::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        linker.allow_shadowing(false);
        activities.attach_store(store.clone());
        let mailboxes = Mailboxes::watch(store.clone());
        let default_limits = Arc::new(TenantLimits::within(&engine.limits));
        let telemetry = Arc::new(Telemetry::new(
            store.clone(),
            options.otlp_endpoint.as_deref(),
        ));
        let guest = GuestThreads::start()?;
        let instances = Arc::new(Instances::new(
            engine.limits.pooled_instances_max,
            guest.threads(),
        ));
        let prepared = Mutex::new(RecentlyUsed::new(engine.limits.components_in_memory_max));
        Ok(Arc::new_cyclic(|me| Runtime {
            guest,
            instances,
            shutdown: watch::Sender::new(false),
            telemetry,
            tenant_limits: Mutex::new(HashMap::new()),
            default_limits,
            me: me.clone(),
            mailboxes,
            engine,
            store,
            activities: Arc::new(activities),
            linker,
            prepared,
            types: Mutex::new(HashMap::new()),
            pending_upgrades: Mutex::new(HashMap::new()),
            update_answers: watch::Sender::new(0),
            drive_locks: drive_locks::DriveLocks::default(),
            fresh_starts: Mutex::new(HashMap::new()),
            options,
        }))
    }

    /// A message was posted to `execution_id` by this process: its drive
    /// here, if any, reads the mailbox now instead of at the watcher's
    /// next poll (up to `mailbox::POLL_INTERVAL` later).
    pub fn mail_posted(&self, execution_id: i64) {
        self.mailboxes.raise(execution_id);
    }

    /// Wakes the callers waiting for update answers (see
    /// [`Runtime::update_answers`]).
    pub(crate) fn note_update_answered(&self) {
        self.update_answers.send_modify(|answers| *answers += 1);
    }

    /// Changes whenever an execution this process drives answers an
    /// update: a waiter looks in the history again.
    pub fn update_answers(&self) -> watch::Receiver<u64> {
        self.update_answers.subscribe()
    }

    /// Binds workflow type `name` of the default tenant to a deployed module.
    pub fn register_type(&self, name: &str, digest: &str) {
        self.register_type_for(DEFAULT_TENANT, name, digest);
    }

    /// Binds `tenant`'s workflow type `name` to a deployed module (what
    /// starts by type and child workflows resolve).
    pub fn register_type_for(&self, tenant: &str, name: &str, digest: &str) {
        self.types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((tenant.to_string(), name.to_string()), digest.to_string());
    }

    /// The module digest `tenant`'s workflow type `name` is bound to, as
    /// this process knows it.
    pub fn type_digest_for(&self, tenant: &str, name: &str) -> Option<String> {
        self.types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(tenant.to_string(), name.to_string()))
            .cloned()
    }

    /// Forgets `tenant`'s workflow type `name` (its binding was deleted).
    pub fn unregister_type_for(&self, tenant: &str, name: &str) {
        self.types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(tenant.to_string(), name.to_string()));
    }

    /// The module digest `tenant`'s workflow type `name` is bound to,
    /// looking in the store when this process does not know the type
    /// (another node bound it). A miss reads that one binding, not every
    /// tenant's: starts of unknown types must not cost what all the
    /// tenants' types together do.
    pub async fn resolve_type(&self, tenant: &str, name: &str) -> Result<Option<String>, RunError> {
        if let Some(digest) = self.type_digest_for(tenant, name) {
            return Ok(Some(digest));
        }
        let stored = self.store.workflow_type(tenant, name).await?;
        if let Some(digest) = &stored {
            self.register_type_for(tenant, name, digest);
        }
        Ok(stored)
    }

    /// Takes every workflow type binding as the store has it, instead of
    /// this process's (other nodes bind and delete types too).
    pub async fn load_types(&self) -> Result<(), RunError> {
        let stored: HashMap<(String, String), String> = self
            .store
            .workflow_types(None)
            .await?
            .into_iter()
            .map(|(tenant, name, digest)| ((tenant, name), digest))
            .collect();
        *self
            .types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = stored;
        Ok(())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Sets the limits `tenant`'s requests and executions run under (from
    /// then on: a drive in progress keeps the limits it started with), and
    /// returns them.
    pub fn set_tenant_limits(&self, tenant: &str, limits: TenantLimits) -> Arc<TenantLimits> {
        let mut all = self
            .tenant_limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match all.get(tenant) {
            Some(current) if **current == limits => current.clone(),
            _ => {
                let limits = Arc::new(limits);
                all.insert(tenant.to_string(), limits.clone());
                limits
            }
        }
    }

    /// The limits of `tenant`: its own, or the defaults within the engine's.
    pub fn limits_for(&self, tenant: &str) -> Arc<TenantLimits> {
        self.tenant_limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.default_limits.clone())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn activities(&self) -> &Arc<ActivityRegistry> {
        &self.activities
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Stops every drive at its next wait — a journal boundary — with
    /// [`RunError::ShuttingDown`]; nothing is lost, the next process
    /// resumes them. Drives started afterwards stop at their first wait.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Turns true when [`Runtime::shut_down`] is called: background tasks
    /// (the scheduler) stop with the drives.
    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Ends this process's drive of execution `execution_id` (terminated
    /// in the store by an operator) at its wait: its instance, activity
    /// tasks and timers are released now, not when it next wakes.
    pub fn terminated(&self, execution_id: i64) {
        self.mailboxes.terminated(execution_id);
    }

    /// Workflow instances in memory now (in activations and hot waits).
    pub fn live_instances(&self) -> usize {
        self.instances.live()
    }

    /// Validates, compiles and stores a workflow component.
    pub async fn deploy_workflow(&self, bytes: &[u8]) -> Result<LoadedComponent, RunError> {
        let loaded = self.engine.load(bytes)?;
        if loaded.kind != ComponentKind::Workflow {
            return Err(RunError::WrongKind(format!(
                "this is an {} component; a workflow must export `run` (the `workflow` world of wit/reprise.wit)",
                loaded.kind.as_str()
            )));
        }
        self.prepare(&loaded)?;
        self.store
            .put_module(&loaded.digest, loaded.kind.as_str(), bytes)
            .await?;
        Ok(loaded)
    }

    /// Drops module `digest` from memory (a deleted upload); an execution
    /// that needs it later loads it from the store again.
    pub fn forget_module(&self, digest: &str) {
        self.prepared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(digest);
        self.engine.forget(digest);
    }

    fn prepare(&self, loaded: &LoadedComponent) -> Result<WorkflowPre<WorkflowHost>, RunError> {
        let mut prepared = self
            .prepared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pre) = prepared.get(&loaded.digest) {
            return Ok(pre);
        }
        let link_error = |error: wasmtime::Error| {
            LoadError::Malformed(
                anyhow::Error::from(error).context("linking the workflow's imports"),
            )
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&loaded.component)
            .map_err(link_error)?;
        let pre = WorkflowPre::new(instance_pre).map_err(link_error)?;
        prepared.insert(loaded.digest.clone(), pre.clone());
        Ok(pre)
    }

    async fn prepared_by_digest(
        &self,
        digest: &str,
    ) -> Result<WorkflowPre<WorkflowHost>, RunError> {
        if let Some(pre) = self
            .prepared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(digest)
        {
            return Ok(pre);
        }
        let loaded = self.load_stored_module(digest).await?;
        self.prepare(&loaded)
    }

    /// The stored module `digest`, compiled (or from the engine's cache).
    async fn load_stored_module(&self, digest: &str) -> Result<LoadedComponent, RunError> {
        let bytes = self
            .store
            .module(digest)
            .await?
            .ok_or_else(|| RunError::UnknownModule {
                digest: digest.to_string(),
            })?;
        Ok(self.engine.load(&bytes)?)
    }

    /// Starts `workflow_id` on a deployed module, or returns its existing
    /// execution (`false`) if the id was started before: starting is
    /// idempotent.
    pub async fn start(
        &self,
        workflow_type: &str,
        module_digest: &str,
        workflow_id: Option<String>,
        input: &str,
    ) -> Result<(ExecutionRecord, bool), RunError> {
        self.start_for(
            DEFAULT_TENANT,
            workflow_type,
            module_digest,
            workflow_id,
            input,
            StartOptions::default(),
        )
        .await
    }

    /// [`Runtime::start`] for `tenant` (its ids, types and limits only).
    pub async fn start_for(
        &self,
        tenant: &str,
        workflow_type: &str,
        module_digest: &str,
        workflow_id: Option<String>,
        input: &str,
        options: StartOptions,
    ) -> Result<(ExecutionRecord, bool), RunError> {
        let StartOptions {
            reuse,
            trace,
            execution_timeout,
            run_timeout,
            search_attributes,
            parent_execution,
        } = options;
        let limits = self.limits_for(tenant);
        check_json_payload("workflow input", input, limits.payload_bytes_max)?;
        for (name, timeout) in [
            ("execution timeout", execution_timeout),
            ("run timeout", run_timeout),
        ] {
            if let Some(timeout) = timeout
                && (timeout.is_zero() || timeout > WORKFLOW_TIMEOUT_MAX)
            {
                return Err(RunError::InvalidInput(format!(
                    "the {name} is {} ms; it must be at least 1 ms and at most {} ms (ten years)",
                    timeout.as_millis(),
                    WORKFLOW_TIMEOUT_MAX.as_millis()
                )));
            }
        }
        let search_attributes = search_attributes
            .map(|text| {
                crate::attributes::parse(&text)
                    .and_then(|attributes| crate::attributes::merge(None, attributes))
            })
            .transpose()
            .map_err(|problem| RunError::InvalidInput(problem.to_string()))?;
        let now_ms = clock::now_ms();
        let timeouts = WorkflowTimeouts::starting_at(
            now_ms,
            execution_timeout.map(|timeout| now_ms + timeout.as_millis() as u64),
            run_timeout.map(|timeout| timeout.as_millis() as u64),
        );
        if let Some(id) = &workflow_id
            && (id.is_empty()
                || id.chars().count() > WORKFLOW_ID_CHARS_MAX
                || id.chars().any(char::is_control))
        {
            return Err(RunError::InvalidInput(format!(
                "a workflow id is 1 to {WORKFLOW_ID_CHARS_MAX} characters without control characters; got {id:?}"
            )));
        }
        let run_id = new_run_id();
        let workflow_id = workflow_id.unwrap_or_else(|| run_id.clone());
        let started = RecordedEvent {
            position: 1,
            recorded_at_ms: clock::now_ms(),
            event: Event::WorkflowStarted {
                workflow_type: workflow_type.to_string(),
                module_digest: module_digest.to_string(),
                input: input.to_string(),
                trace: Some(trace.unwrap_or_else(crate::telemetry::spans::new_root_trace)),
                host_behaviour: self.options.host_behaviour,
                continued_from: None,
                timeouts,
            },
        };
        let first_event = (input.len() <= FRESH_START_INPUT_BYTES_MAX).then(|| started.clone());
        let mail_before = self.mailboxes.missed_raises();
        let outcome = self
            .store
            .start_execution(NewExecution {
                tenant: tenant.to_string(),
                workflow_id,
                run_id,
                workflow_type: workflow_type.to_string(),
                module_digest: module_digest.to_string(),
                started,
                reuse,
                running_max: limits.running_executions_max,
                search_attributes,
                parent_id: parent_execution,
            })
            .await?;
        match outcome {
            StartOutcome::Created(record) => {
                self.telemetry
                    .metrics
                    .execution_started(tenant, workflow_type);
                if let Some(first_event) = first_event {
                    let mut fresh = self.lock_fresh_starts();
                    if fresh.len() >= FRESH_STARTS_MAX {
                        fresh.clear();
                    }
                    fresh.insert(
                        record.id,
                        FreshStart {
                            first_event,
                            mail_before,
                        },
                    );
                }
                Ok((record, true))
            }
            StartOutcome::Existing(record) => Ok((record, false)),
            StartOutcome::ReuseRefused(record) => Err(RunError::IdReuseRefused {
                workflow_id: record.workflow_id,
                status: record.status.as_str(),
                policy: reuse,
            }),
            StartOutcome::AtCapacity { running } => Err(RunError::Limit(LimitExceeded {
                limit: "running_executions_max",
                value: limits.running_executions_max,
                what: format!("tenant `{tenant}` already runs {running} executions"),
            })),
        }
    }

    fn lock_fresh_starts(&self) -> MutexGuard<'_, HashMap<i64, FreshStart>> {
        self.fresh_starts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The history of `record`'s run: read from the store, unless this
    /// process just started the run and so knows it holds only its first
    /// event. (Another writer, a termination, could have appended since;
    /// the drive's first append then fails on the taken position, a store
    /// error, and the server's next drive of it reads the history.)
    async fn load_history(&self, record: &ExecutionRecord) -> Result<History, RunError> {
        self.load_history_fresh(record)
            .await
            .map(|(history, _)| history)
    }

    /// [`Runtime::load_history`], and for a run this process just started,
    /// the missed raises read before it was created.
    async fn load_history_fresh(
        &self,
        record: &ExecutionRecord,
    ) -> Result<(History, Option<MissedRaises>), RunError> {
        let fresh = self.lock_fresh_starts().remove(&record.id);
        let (events, mail_before) = match fresh {
            Some(fresh) => (vec![fresh.first_event], Some(fresh.mail_before)),
            None => (self.store.history(record.id).await?, None),
        };
        let history =
            History::from_recorded(events).map_err(|problem| RunError::CorruptHistory {
                workflow_id: record.workflow_id.clone(),
                problem,
            })?;
        Ok((history, mail_before))
    }

    /// Runs an execution until it finishes, replaying what its history
    /// holds first, and then every run it continues as. A finished
    /// execution returns its recorded outcome and runs nothing.
    pub async fn drive(&self, record: ExecutionRecord) -> Result<Outcome, RunError> {
        self.drive_to_end(record).await.map(|end| end.outcome)
    }

    /// [`Runtime::drive`], returning the execution's row as it ends too.
    pub async fn drive_to_end(&self, mut record: ExecutionRecord) -> Result<DriveEnd, RunError> {
        loop {
            let span = tracing::info_span!(
                "execution",
                tenant = %record.tenant,
                workflow_id = %record.workflow_id,
                run_id = %record.run_id,
                workflow_type = %record.workflow_type,
            );
            match self.drive_run(record).instrument(span).await? {
                RunEnd::Finished(end) => return Ok(end),
                RunEnd::ContinuedAs(next) => record = next,
            }
        }
    }

    /// Drives one run of an execution.
    ///
    /// Its future lives in the drive task for as long as the execution is
    /// in memory, parked ones included, and is as large as its largest
    /// await: so each step awaited here that is kilobytes in size
    /// (activation, ending, upgrade, eviction wait) is boxed, and the
    /// task holds only the locals (~2 KiB instead of ~6).
    async fn drive_run(&self, record: ExecutionRecord) -> Result<RunEnd, RunError> {
        let _only_drive = self.drive_locks.acquire(record.id).await;
        let (history, mail_before) = self.load_history_fresh(&record).await?;
        match history.terminal() {
            Some(Event::WorkflowContinuedAsNew { .. }) => {
                return self.next_run_of(&record).await.map(RunEnd::ContinuedAs);
            }
            Some(terminal) => {
                return Ok(RunEnd::Finished(DriveEnd {
                    outcome: outcome_of(terminal),
                    record: None,
                }));
            }
            None => {}
        }
        let (_, started_digest, input) = started_parts(&history, &record)?;
        let digest = history
            .module_digest()
            .unwrap_or(&started_digest)
            .to_string();
        let mut pre = self.prepared_by_digest(&digest).await?;
        self.telemetry.resume(&record, &history).await;
        let record_id = record.id;
        let limits = self.limits_for(&record.tenant);
        let instances_max = limits.instances_max;
        let mut execution = Execution::new(
            record,
            limits,
            Recorder::new(history, false),
            self.surroundings(record_id, mail_before),
        );
        // A run resumed past its deadline (the process was down) runs no
        // more code: waits fail it too, but only once the code reaches one.
        let timeouts = execution.recorder().history.timeouts();
        if let Some((at, which)) = timeouts.first_deadline()
            && clock::now_ms() >= at
        {
            let timed_out = Interrupt::FailWorkflow(runtime_error(
                crate::journal::WORKFLOW_TIMED_OUT,
                format!("the workflow passed its {which} before it resumed"),
            ));
            let outcome = Box::pin(self.settle(&mut execution, timed_out)).await?;
            return Ok(RunEnd::Finished(execution.end(outcome)));
        }
        loop {
            let upgrade = self
                .pending_upgrades
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&record_id);
            if let Some(to) = upgrade
                && let Some(upgraded) = Box::pin(self.apply_upgrade(&mut execution, to)).await?
            {
                pre = upgraded;
            }
            let (returned, result) =
                Box::pin(self.activate_in_slot(&pre, execution, &input, instances_max)).await?;
            execution = returned;
            let mut interrupt = match result {
                Ok(guest_result) => {
                    match Box::pin(self.complete(&mut execution, guest_result)).await {
                        Ok(outcome) => return Ok(RunEnd::Finished(execution.end(outcome))),
                        Err(interrupt) => interrupt,
                    }
                }
                Err(Interrupt::ContinueAsNew { input }) => {
                    match Box::pin(self.continue_as_new(&mut execution, input)).await {
                        Ok(()) => {
                            return self
                                .next_run_of(&execution.record)
                                .await
                                .map(RunEnd::ContinuedAs);
                        }
                        Err(interrupt) => interrupt,
                    }
                }
                Err(interrupt) => interrupt,
            };
            if let Interrupt::Suspend { wait, ordinal } = &interrupt {
                // Cold path: no instance while we wait; the next activation
                // rebuilds it by replay.
                self.telemetry.metrics.eviction(&execution.record.tenant);
                match Box::pin(execution.wait(wait, *ordinal, false)).await {
                    Ok(_) => continue,
                    Err(failed) => interrupt = failed,
                }
            }
            let outcome = Box::pin(self.settle(&mut execution, interrupt)).await?;
            return Ok(RunEnd::Finished(execution.end(outcome)));
        }
    }

    /// Moves the running executions of `tenant`'s `workflow_type` to module
    /// `digest` where their histories replay cleanly against it (checked
    /// now, and again at each one's next activation, where the move is
    /// journaled as `ModuleUpgraded`); the others stay on their module and
    /// are listed with the reason. At most [`UPGRADE_EXECUTIONS_MAX`].
    pub async fn upgrade_running(
        &self,
        tenant: &str,
        workflow_type: &str,
        digest: &str,
    ) -> Result<UpgradeReport, RunError> {
        let component = self.load_stored_module(digest).await?;
        let filter = ExecutionFilter {
            status: Some(ExecutionStatus::Running),
            workflow_type: Some(workflow_type.to_string()),
            limit: UPGRADE_EXECUTIONS_MAX,
            ..ExecutionFilter::default()
        };
        let mut report = UpgradeReport::default();
        for record in self.store.list_executions(tenant, &filter).await? {
            let events = self.store.history(record.id).await?;
            let on = History::from_recorded(events.clone())
                .ok()
                .and_then(|history| history.module_digest().map(str::to_string));
            if on.as_deref() == Some(digest) {
                continue;
            }
            let workflow_id = record.workflow_id.clone();
            match self.verify_replay(&component, record.clone(), events).await {
                Ok(_) => {
                    let message_id = format!("upgrade:{digest}");
                    self.store
                        .post_message(record.id, MessageKind::Upgrade, digest, "null", &message_id)
                        .await?;
                    let message = self
                        .store
                        .undelivered_messages(record.id)
                        .await?
                        .into_iter()
                        .find(|message| message.message_id == message_id)
                        .map(|message| message.id);
                    self.pending_upgrades
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(
                            record.id,
                            PendingUpgrade {
                                digest: digest.to_string(),
                                message,
                            },
                        );
                    report.upgraded.push(workflow_id);
                }
                Err(error) => report.kept.push(KeptExecution {
                    workflow_id,
                    reason: error.to_string(),
                }),
            }
        }
        Ok(report)
    }

    /// Moves `execution` to module `to` if its history (as it is now)
    /// replays cleanly against it: journals `ModuleUpgraded` and returns
    /// the module to activate; `None` keeps it where it is.
    async fn apply_upgrade(
        &self,
        execution: &mut Execution,
        upgrade: PendingUpgrade,
    ) -> Result<Option<WorkflowPre<WorkflowHost>>, RunError> {
        let to = upgrade.digest.as_str();
        let (from, events) = {
            let recorder = execution.recorder();
            let from = recorder
                .history
                .module_digest()
                .unwrap_or_default()
                .to_string();
            (from, recorder.history.events().to_vec())
        };
        if from == to {
            return Ok(None);
        }
        let component = self.load_stored_module(to).await?;
        if let Err(error) = self
            .verify_replay(&component, execution.record.clone(), events)
            .await
        {
            tracing::warn!(workflow_id = %execution.record.workflow_id, %error, "the upgrade no longer replays; the execution stays on its module");
            return Ok(None);
        }
        let upgraded = Event::ModuleUpgraded {
            from_digest: from,
            module_digest: to.to_string(),
        };
        match upgrade.message {
            Some(message) => execution.append_delivering(upgraded, message).await,
            None => execution.append(upgraded).await,
        }
        .map_err(|interrupt| host_error(&execution.record, interrupt))?;
        tracing::info!(workflow_id = %execution.record.workflow_id, module = %to, "upgraded to a new module");
        Ok(Some(self.prepare(&component)?))
    }

    /// Loads the upgrades found safe and not applied yet (their `Upgrade`
    /// messages: from before a restart, or posted through another node),
    /// so each happens at its execution's next activation.
    pub async fn load_pending_upgrades(&self) -> Result<usize, RunError> {
        let upgrades = self.store.undelivered_upgrades().await?;
        let mut pending = self
            .pending_upgrades
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The store is the truth: an upgrade another node applied since
        // must not linger here (it would move its execution back).
        pending.retain(|_, upgrade| upgrade.message.is_none());
        let mut loaded = 0;
        for (execution_id, message) in upgrades {
            // The newest upgrade of an execution wins, as it would have here.
            let upgrade = PendingUpgrade {
                digest: message.name,
                message: Some(message.id),
            };
            pending.insert(execution_id, upgrade);
            loaded += 1;
        }
        Ok(loaded)
    }

    /// The run that followed `ended` (a run that continued as new).
    async fn next_run_of(&self, ended: &ExecutionRecord) -> Result<ExecutionRecord, RunError> {
        match self
            .store
            .execution(&ended.tenant, &ended.workflow_id)
            .await?
        {
            Some(next) if next.id != ended.id => Ok(next),
            _ => Err(RunError::CorruptHistory {
                workflow_id: ended.workflow_id.clone(),
                problem: format!(
                    "run {} continued as new, but no later run of the id exists",
                    ended.run_id
                ),
            }),
        }
    }

    /// Ends the run with `WorkflowContinuedAsNew` and starts the next run
    /// with `input` in the same transaction, on the module the workflow
    /// type is bound to now (the run's own module if the type is unbound).
    async fn continue_as_new(
        &self,
        execution: &mut Execution,
        input: String,
    ) -> Result<(), Interrupt> {
        // Continuing where the history recorded more commands is code that
        // changed under the execution.
        check_run_ended_cleanly(execution)?;
        let now_ms = clock::now_ms();
        let ending = execution.recorder().history.timeouts();
        let timeouts = WorkflowTimeouts::starting_at(
            now_ms,
            ending.execution_deadline_ms,
            ending.run_timeout_ms,
        );
        let record = &execution.record;
        let module_digest = self
            .type_digest_for(&record.tenant, &record.workflow_type)
            .unwrap_or_else(|| record.module_digest.clone());
        let next_run_id = new_run_id();
        let started = RecordedEvent {
            position: 1,
            recorded_at_ms: now_ms,
            event: Event::WorkflowStarted {
                workflow_type: record.workflow_type.clone(),
                module_digest: module_digest.clone(),
                input: input.clone(),
                trace: Some(crate::telemetry::spans::new_root_trace()),
                host_behaviour: self.options.host_behaviour,
                continued_from: Some(record.run_id.clone()),
                timeouts,
            },
        };
        let result = serde_json::json!({ "continued_as_new": { "next_run_id": next_run_id } });
        let (tenant, workflow_type) = (record.tenant.clone(), record.workflow_type.clone());
        execution
            .finish(
                Event::WorkflowContinuedAsNew {
                    input,
                    next_run_id: next_run_id.clone(),
                    module_digest: module_digest.clone(),
                },
                Finish {
                    next_run: Some(Box::new(NextRun {
                        run_id: next_run_id,
                        module_digest,
                        started,
                    })),
                    ..Finish::new(ExecutionStatus::ContinuedAsNew, result.to_string())
                },
            )
            .await?;
        self.telemetry
            .metrics
            .execution_started(&tenant, &workflow_type);
        Ok(())
    }

    /// Waits for an instance of the execution's tenant (its own queue), or
    /// for the shutdown.
    async fn enter_instance(
        &self,
        record: &ExecutionRecord,
        instances_max: u32,
    ) -> Result<InstanceSlot, RunError> {
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            slot = self.instances.enter(&record.tenant, instances_max) => Ok(slot),
            _ = shutdown.wait_for(|stopping| *stopping) => Err(RunError::ShuttingDown {
                workflow_id: record.workflow_id.clone(),
            }),
        }
    }

    /// What an execution with store id `record_id` talks to (0: a replay
    /// that receives no messages); `mail_before` as for
    /// [`Mailboxes::register`].
    fn surroundings(&self, record_id: i64, mail_before: Option<MissedRaises>) -> Surroundings {
        Surroundings {
            hot_window: self.options.hot_window,
            instances: self.instances.clone(),
            store: self.store.clone(),
            activities: self.activities.clone(),
            telemetry: self.telemetry.clone(),
            shutdown: self.shutdown.subscribe(),
            mailbox: self.mailboxes.register(record_id, mail_before),
            runtime: self.me.clone(),
        }
    }

    /// Ends a drive that stopped for a reason other than `run` returning.
    async fn settle(
        &self,
        execution: &mut Execution,
        interrupt: Interrupt,
    ) -> Result<Outcome, RunError> {
        let record = &execution.record;
        match interrupt {
            Interrupt::FailWorkflow(error) => {
                tracing::warn!(workflow_id = %record.workflow_id, %error, "execution failed");
                let result = serde_json::to_string(&error).unwrap_or_default();
                execution
                    .finish(
                        Event::WorkflowFailed {
                            error: error.clone(),
                        },
                        Finish::new(ExecutionStatus::Failed, result),
                    )
                    .await
                    .map_err(|interrupt| host_error(&execution.record, interrupt))?;
                Ok(Outcome::Failed { error })
            }
            Interrupt::Halt(Halt::Nondeterminism(source)) => Err(RunError::Nondeterminism {
                workflow_id: record.workflow_id.clone(),
                run_id: record.run_id.clone(),
                source,
            }),
            Interrupt::Shutdown => {
                // Outcomes the guest read but had not written yet: a
                // graceful stop keeps them (a failed write only costs
                // running those activities again after the restart).
                if let Err(interrupt) = execution.flush().await {
                    tracing::debug!(?interrupt, "buffered events not written at shutdown");
                }
                Err(RunError::ShuttingDown {
                    workflow_id: execution.record.workflow_id.clone(),
                })
            }
            Interrupt::Disowned => Err(RunError::Disowned {
                workflow_id: record.workflow_id.clone(),
            }),
            other => {
                // Another writer (an operator's terminate) may have ended the
                // execution: then its end is the outcome.
                if let Ok(history) = self.load_history(record).await
                    && let Some(terminal) = history.terminal()
                {
                    return Ok(outcome_of(terminal));
                }
                Err(host_error(record, other))
            }
        }
    }

    /// Records the end of `run`, after checking that the code made every
    /// command the history holds.
    async fn complete(
        &self,
        execution: &mut Execution,
        guest_result: Result<String, wit_types::WorkflowError>,
    ) -> Result<Outcome, Interrupt> {
        check_run_ended_cleanly(execution)?;
        let (event, finish, outcome) = match guest_result {
            Ok(output) => {
                let value = parse_output(&output, execution.limits.payload_bytes_max)?;
                (
                    Event::WorkflowCompleted {
                        output: output.clone(),
                    },
                    Finish::new(ExecutionStatus::Completed, output),
                    Outcome::Completed { output: value },
                )
            }
            Err(error) => {
                let error = WorkflowError {
                    error_type: error.error_type,
                    message: error.message,
                    details: error.details,
                };
                let result = serde_json::to_string(&error).unwrap_or_default();
                let was_cancelled = execution.recorder().history.was_cancelled();
                let (event, status) = ending_of(error.clone(), was_cancelled);
                (
                    event,
                    Finish::new(status, result),
                    Outcome::Failed { error },
                )
            }
        };
        execution.finish(event, finish).await?;
        Ok(outcome)
    }

    /// Runs [`activate`] on the guest threads: however long guest code
    /// computes, this runtime's threads (the API, the store's writer, the
    /// timers) stay free.
    /// Activates `execution` in an instance slot of its tenant's, trying
    /// again while the pool is full (slots free up as other activations
    /// end).
    async fn activate_in_slot(
        &self,
        pre: &WorkflowPre<WorkflowHost>,
        mut execution: Execution,
        input: &str,
        instances_max: u32,
    ) -> Result<Activation, RunError> {
        loop {
            let slot = self
                .enter_instance(&execution.record, instances_max)
                .await?;
            let (returned, result) = self
                .activate_on_guest_threads(pre, execution, input)
                .await?;
            drop(slot);
            execution = returned;
            if let Err(Interrupt::Busy(reason)) = &result {
                tracing::debug!(workflow_id = %execution.record.workflow_id, %reason, "instance pool full; trying again");
                tokio::time::sleep(BUSY_RETRY_DELAY).await;
                continue;
            }
            return Ok((execution, result));
        }
    }

    async fn activate_on_guest_threads(
        &self,
        pre: &WorkflowPre<WorkflowHost>,
        execution: Execution,
        input: &str,
    ) -> Result<Activation, RunError> {
        let workflow_id = execution.record.workflow_id.clone();
        let activation = activate(
            self.engine.clone(),
            pre.clone(),
            execution,
            input.to_string(),
        );
        self.guest
            .handle()
            .spawn(activation)
            .await
            .map_err(|failure| RunError::Host {
                workflow_id,
                message: format!("the activation task failed: {failure}"),
            })
    }

    /// Times one instantiation of a precompiled workflow component,
    /// including its store and virtual WASI set-up (for `reprise bench`).
    pub(crate) async fn measure_instantiation(
        &self,
        component: &LoadedComponent,
    ) -> anyhow::Result<Duration> {
        let pre = self.prepare(component)?;
        let record = ExecutionRecord {
            id: 0,
            tenant: DEFAULT_TENANT.into(),
            workflow_id: "bench-instantiate".into(),
            run_id: "bench-instantiate".into(),
            workflow_type: "bench".into(),
            module_digest: component.digest.clone(),
            status: ExecutionStatus::Running,
            result: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            search_attributes: None,
            owner_node: None,
        };
        let execution = Execution::new(
            record,
            self.default_limits.clone(),
            Recorder::new(History::default(), true),
            self.surroundings(0, None),
        );
        let started = std::time::Instant::now();
        let turn = execution.compute_turn();
        let wasi = workflow_wasi(
            &execution.recorder,
            &execution.record.run_id,
            None,
            "bench",
            &execution.stderr_tail,
        );
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.engine.limits.memory_bytes_max)
            .build();
        let mut store = WasmStore::new(
            self.engine.wasmtime(),
            WorkflowHost::new(execution, wasi, limits, turn),
        );
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(self.engine.limits.activation_fuel_max)
            .map_err(anyhow::Error::from)?;
        store.set_epoch_deadline(u64::MAX / 2);
        pre.instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(started.elapsed())
    }

    /// Replays `events` against `component` without writing anything and
    /// reports whether the code reproduces the history: the safe-upgrade
    /// check, and the test of replay equality.
    pub async fn verify_replay(
        &self,
        component: &LoadedComponent,
        record: ExecutionRecord,
        events: Vec<RecordedEvent>,
    ) -> Result<ReplayVerdict, RunError> {
        let history =
            History::from_recorded(events).map_err(|problem| RunError::CorruptHistory {
                workflow_id: record.workflow_id.clone(),
                problem,
            })?;
        let (_, _, input) = started_parts(&history, &record)?;
        let recorded_terminal = history.terminal().cloned();
        let pre = self.prepare(component)?;
        let execution = Execution::new(
            record,
            self.default_limits.clone(),
            Recorder::new(history, true),
            self.surroundings(0, None),
        );
        let (execution, result) = activate(self.engine.clone(), pre, execution, input).await;
        let nondeterminism = |source| RunError::Nondeterminism {
            workflow_id: execution.record.workflow_id.clone(),
            run_id: execution.record.run_id.clone(),
            source,
        };
        // The code ended its run: it must have made every recorded command.
        let check_all_made = || {
            if let Err(Interrupt::Halt(Halt::Nondeterminism(source))) = execution.check_halted() {
                return Err(nondeterminism(source));
            }
            let recorder = execution.recorder();
            recorder
                .history
                .check_finished(recorder.last_seq_made())
                .map_err(nondeterminism)
        };
        let replayed = match result {
            Ok(guest_result) => {
                check_all_made()?;
                let recorder = execution.recorder();
                match guest_result {
                    Ok(output) => Event::WorkflowCompleted { output },
                    Err(error) => {
                        let error = WorkflowError {
                            error_type: error.error_type,
                            message: error.message,
                            details: error.details,
                        };
                        ending_of(error, recorder.history.was_cancelled()).0
                    }
                }
            }
            Err(Interrupt::Halt(Halt::HistoryEnd)) => {
                let commands = execution.recorder().history.last_seq();
                return Ok(ReplayVerdict::ReproducedSoFar { commands });
            }
            Err(Interrupt::Halt(Halt::Nondeterminism(source))) => {
                return Err(nondeterminism(source));
            }
            Err(Interrupt::FailWorkflow(error)) => Event::WorkflowFailed { error },
            Err(Interrupt::ContinueAsNew { input }) => {
                check_all_made()?;
                // The input is the code's; the next run's id and module
                // were the host's choice, so they are taken as recorded.
                let (next_run_id, module_digest) = match &recorded_terminal {
                    Some(Event::WorkflowContinuedAsNew {
                        next_run_id,
                        module_digest,
                        ..
                    }) => (next_run_id.clone(), module_digest.clone()),
                    _ => (String::new(), String::new()),
                };
                Event::WorkflowContinuedAsNew {
                    input,
                    next_run_id,
                    module_digest,
                }
            }
            Err(other) => return Err(host_error(&execution.record, other)),
        };
        match recorded_terminal {
            Some(recorded) if recorded != replayed => {
                Err(nondeterminism(Nondeterminism::DifferentResult {
                    recorded: describe_terminal(&recorded),
                    returned: describe_terminal(&replayed),
                }))
            }
            Some(_) => Ok(ReplayVerdict::Reproduced),
            None => Ok(ReplayVerdict::ReproducedSoFar {
                commands: execution.recorder().history.last_seq(),
            }),
        }
    }
}

/// Checks, when the code ends its run (returns, or continues as new), that
/// nothing was left halted and it made every command the history holds.
fn check_run_ended_cleanly(execution: &Execution) -> Result<(), Interrupt> {
    execution.check_halted()?;
    let recorder = execution.recorder();
    recorder
        .history
        .check_finished(recorder.last_seq_made())
        .map_err(|mismatch| Interrupt::Halt(Halt::Nondeterminism(mismatch)))
}

/// The terminal event and status for a workflow that returned `error`:
/// cancelled if it gives up with `Cancelled` after a cancellation reached
/// it, failed otherwise.
fn ending_of(error: WorkflowError, was_cancelled: bool) -> (Event, ExecutionStatus) {
    if was_cancelled && error.error_type == CANCELLED_ERROR_TYPE {
        (
            Event::WorkflowCancelled { error },
            ExecutionStatus::Cancelled,
        )
    } else {
        (Event::WorkflowFailed { error }, ExecutionStatus::Failed)
    }
}

fn describe_terminal(event: &Event) -> String {
    match event {
        Event::WorkflowCompleted { output } => format!("output {output}"),
        Event::WorkflowFailed { error } | Event::WorkflowCancelled { error } => {
            format!("failure {error}")
        }
        Event::WorkflowContinuedAsNew { input, .. } => {
            format!("a continue-as-new with input {input}")
        }
        other => other.kind().to_string(),
    }
}

fn host_error(record: &ExecutionRecord, interrupt: Interrupt) -> RunError {
    let workflow_id = record.workflow_id.clone();
    match interrupt {
        Interrupt::Disowned => RunError::Disowned { workflow_id },
        other => RunError::Host {
            workflow_id,
            message: other.to_string(),
        },
    }
}

fn started_parts(
    history: &History,
    record: &ExecutionRecord,
) -> Result<(String, String, String), RunError> {
    history
        .started()
        .map(|(workflow_type, digest, input)| {
            (
                workflow_type.to_string(),
                digest.to_string(),
                input.to_string(),
            )
        })
        .ok_or_else(|| RunError::CorruptHistory {
            workflow_id: record.workflow_id.clone(),
            problem: "the first event is not WorkflowStarted".to_string(),
        })
}

/// The outcome a terminal event records.
pub fn outcome_of(terminal: &Event) -> Outcome {
    match terminal {
        Event::WorkflowCompleted { output } => Outcome::Completed {
            output: raw_json(output),
        },
        Event::WorkflowFailed { error } | Event::WorkflowCancelled { error } => Outcome::Failed {
            error: error.clone(),
        },
        Event::WorkflowTerminated { reason } => Outcome::Failed {
            error: runtime_error("Terminated", format!("terminated by an operator: {reason}")),
        },
        other => Outcome::Failed {
            error: runtime_error(
                "CorruptHistory",
                format!("{} is not a terminal event", other.kind()),
            ),
        },
    }
}

fn parse_output(output: &str, payload_bytes_max: usize) -> Result<Box<RawValue>, Interrupt> {
    check_json_payload("workflow output", output, payload_bytes_max).map_err(|problem| {
        Interrupt::FailWorkflow(runtime_error("InvalidWorkflowOutput", problem.to_string()))
    })?;
    Ok(raw_json(output))
}

/// Why a payload (an input, an output, a signal) was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadProblem {
    #[error("the {what} is {size} bytes; the limit is payload_bytes_max = {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("the {what} is not valid JSON ({error}); pass e.g. '{{\"name\": \"x\"}}' or '42'")]
    NotJson {
        what: &'static str,
        error: serde_json::Error,
    },
}

/// Checks that `text` is JSON of at most `limit` bytes.
pub fn check_json_payload(
    what: &'static str,
    text: &str,
    limit: usize,
) -> Result<(), PayloadProblem> {
    if text.len() > limit {
        return Err(PayloadProblem::TooLarge {
            what,
            size: text.len(),
            limit,
        });
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|error| PayloadProblem::NotJson { what, error })
}

/// A random 128-bit run id, hex-encoded.
fn new_run_id() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// Turns a wasmtime error out of `run` into the reason the activation stopped.
fn classify(
    error: wasmtime::Error,
    limits: &crate::engine::Limits,
    stderr_tail: &Arc<Mutex<Vec<u8>>>,
) -> Interrupt {
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return interrupt.clone();
    }
    if let Some(exhausted) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return Interrupt::Busy(exhausted.to_string());
    }
    let tail = {
        let tail = stderr_tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&tail).trim().to_string()
    };
    let with_tail = |message: String| {
        if tail.is_empty() {
            message
        } else {
            format!("{message}; the guest's last stderr output: {tail}")
        }
    };
    let trap = error.downcast_ref::<Trap>().copied();
    let full = format!("{:#}", anyhow::Error::from(error));
    let (error_type, message) = match trap {
        Some(Trap::OutOfFuel) => (
            "FuelExhausted",
            format!(
                "the workflow used up its fuel budget of activation_fuel_max = {} units (an endless loop?)",
                limits.activation_fuel_max
            ),
        ),
        Some(Trap::StackOverflow) => (
            "StackOverflow",
            "the workflow overflowed its call stack (unbounded recursion?)".to_string(),
        ),
        Some(Trap::UnreachableCodeReached) => (
            "GuestPanic",
            with_tail("the workflow trapped on `unreachable` (a panic or abort)".to_string()),
        ),
        Some(other) => (
            "GuestTrap",
            with_tail(format!("the workflow trapped: {other}")),
        ),
        None if full.contains("forcing trap when growing memory") => (
            "MemoryLimitExceeded",
            format!(
                "the workflow tried to grow its memory past memory_bytes_max = {} bytes",
                limits.memory_bytes_max
            ),
        ),
        None => (
            "GuestTrap",
            with_tail(format!("the workflow trapped: {full}")),
        ),
    };
    Interrupt::FailWorkflow(runtime_error(error_type, message))
}

/// Runs the guest from a fresh instance until `run` returns or a host call
/// interrupts it. The execution is lent to the instance and always handed
/// back.
async fn activate(
    engine: Engine,
    pre: WorkflowPre<WorkflowHost>,
    mut execution: Execution,
    input: String,
) -> Activation {
    execution.recorder().begin_activation();
    execution.begin_activation_span();
    let limits = execution.limits.instance_limits(&engine.limits);
    let wasi = workflow_wasi(
        &execution.recorder,
        &execution.record.run_id,
        Some(execution.lines.clone()),
        &execution.record.workflow_type,
        &execution.stderr_tail,
    );
    let store_limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes_max)
        .trap_on_grow_failure(true)
        .build();
    let stderr_tail = execution.stderr_tail.clone();
    let turn = execution.compute_turn();
    let mut store = WasmStore::new(
        engine.wasmtime(),
        WorkflowHost::new(execution, wasi, store_limits, turn.clone()),
    );
    store.limiter(|host| &mut host.limits);
    let result = async {
        store.set_fuel(limits.activation_fuel_max)?;
        let wall_max = Duration::from_millis(limits.activation_wall_ms_max);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |context| {
            let turn = &context.data().turn;
            if turn.ran() > wall_max {
                return Err(wasmtime::Error::new(Interrupt::FailWorkflow(runtime_error(
                    "WallClockLimitExceeded",
                    format!(
                        "the workflow ran for more than {} ms without waiting on the host; the limit is activation_wall_ms_max = {} ms",
                        wall_max.as_millis(),
                        wall_max.as_millis()
                    ),
                ))));
            }
            if turn.should_pass() {
                // Others of this tenant wait for a turn: pass it on, and
                // queue for the next one behind them.
                turn.give_back();
                let turn = turn.clone();
                return Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move { turn.take().await }),
                ));
            }
            // Let other executions on this thread run.
            Ok(UpdateDeadline::Yield(1))
        });
        turn.take().await;
        let instance = pre.instantiate_async(&mut store).await?;
        instance.call_run(&mut store, &input).await
    }
    .await;
    turn.give_back();
    let result = result.map_err(|error| classify(error, &limits, &stderr_tail));
    let mut execution = store.into_data().execution;
    execution.end_activation_span();
    (execution, result)
}
