//! Activity execution: attempts, retries, timeouts and heartbeats, for the
//! three kinds of activity — Wasm components (`wasm`), the built-in
//! `http` activity (`http`) and external workers ([`worker`]).
//!
//! `activity` never writes a history: each attempt's outcome is sent to the
//! execution as an [`ActivityUpdate`], and the next attempt waits until the
//! execution has journaled the failure of the previous one. So a retry is
//! durable (a crash during backoff resumes at the same attempt and time) and
//! the history shows every attempt.

mod http;
pub mod outbound;
mod wasm;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use rand::RngExt as _;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::clock;
use crate::engine::{Engine, LoadedComponent};
use crate::host::activity_context::ActivityCall;
use crate::journal::{ActivityError, ActivityFailure, ActivityOptions, Event, FailureReason, Seq};
pub use http::HTTP_ACTIVITY;
use outbound::{Allowlist, OutboundClient};
pub use wasm::ACTIVITY_DIR_GUEST_PATH;
pub use wasm::{
    CALLS_PER_INSTANCE_MAX, RESOURCES_KEPT_MAX, WARM_INSTANCES_MAX, WARM_INSTANCES_PER_KEY_MAX,
    WARM_MEMORY_BYTES_MAX,
};
use wasm::{Sandbox, SandboxLimits, WasmActivity};
use worker::{WorkerQueue, WorkerTask};

use crate::quota::TenantQuotas;
use crate::runtime::raw_json;
use crate::store::Store;
use crate::telemetry::LogSink;
use crate::telemetry::spans::attempt_traceparent;
use crate::tenant::TenantLimits;

/// Attempt timeout when a call sets neither start-to-close nor schedule-to-close.
pub const DEFAULT_START_TO_CLOSE_MS: u64 = 60_000;

/// One scheduled activity call, as a task to run (or resume).
#[derive(Clone, Debug)]
pub struct ActivityTask {
    /// The tenant of the execution that scheduled it, and its limits.
    pub tenant: String,
    pub limits: Arc<TenantLimits>,
    pub seq: Seq,
    pub name: String,
    pub input: String,
    pub options: ActivityOptions,
    pub idempotency_key: String,
    pub workflow_id: String,
    pub run_id: String,
    /// 1 for a fresh call; more when resuming after journaled failures.
    pub next_attempt: u32,
    /// Do not start the next attempt before this time (ms since the epoch).
    pub not_before_ms: u64,
    pub scheduled_at_ms: u64,
    /// Details of the last heartbeat of an earlier attempt.
    pub heartbeat_details: Option<String>,
    /// The execution's trace id (32 hex digits): each attempt passes on
    /// its own span as `traceparent`.
    pub trace_id: String,
    /// Where a Wasm activity's stdout/stderr lines are stored.
    pub logs: LogSink,
}

/// Events for the execution to journal, and a signal back once they are.
pub struct ActivityUpdate {
    pub seq: Seq,
    pub events: Vec<Event>,
    pub ack: oneshot::Sender<()>,
}

/// The liveness and progress an attempt reports.
pub struct Heartbeat {
    state: Mutex<(Instant, Option<String>)>,
}

impl Heartbeat {
    /// A heartbeat no watchdog looks at.
    pub fn detached() -> Arc<Heartbeat> {
        Heartbeat::new(None)
    }

    fn new(details: Option<String>) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            state: Mutex::new((Instant::now(), details)),
        })
    }

    /// Marks the attempt alive; keeps the previous details unless new ones come.
    pub fn beat(&self, details: Option<String>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 = Instant::now();
        if details.is_some() {
            state.1 = details;
        }
    }

    fn since_last(&self) -> Duration {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0
            .elapsed()
    }

    pub fn details(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .1
            .clone()
    }
}

/// What activities may touch, and where unknown names go.
#[derive(Clone, Default)]
pub struct ActivityConfig {
    /// Granted to Wasm activities as [`ACTIVITY_DIR_GUEST_PATH`].
    pub activity_dir: Option<PathBuf>,
    /// Hosts the `http` activity and Wasm activities may call.
    pub allowed_hosts: Allowlist,
    /// CA certificates (PEM) trusted for `https://` besides the system's.
    pub http_ca_file: Option<PathBuf>,
    /// Where names no component serves go; `None`: they fail as unknown.
    pub workers: Option<Arc<WorkerQueue>>,
}

/// Looks for uploaded modules this many times while the store fails…
const UPLOAD_LOAD_TRIES: u32 = 10;
/// …this long apart.
const UPLOAD_LOAD_RETRY: Duration = Duration::from_millis(500);

/// The activities this runtime can execute, by name.
pub struct ActivityRegistry {
    sandbox: Sandbox,
    /// Components given to the whole process (`--activities`): every
    /// tenant may call them.
    wasm: HashMap<String, Arc<WasmActivity>>,
    /// Components a tenant uploaded: (tenant, name) → component. They serve
    /// only that tenant's workflows, and come before the shared ones.
    tenant_wasm: RwLock<HashMap<(String, String), Arc<WasmActivity>>>,
    /// The process's allowed hosts; a tenant's own list replaces it.
    allowlist: Arc<Allowlist>,
    /// The pooled client every outbound request goes through.
    outbound: OutboundClient,
    workers: Option<Arc<WorkerQueue>>,
    /// Each tenant's share of attempts in flight.
    in_flight: TenantQuotas,
    /// Where tenants' uploads are stored (set once by the runtime): an
    /// upload through another node serves this node's workflows too.
    stored: OnceLock<Arc<dyn Store>>,
    /// Uploads this process has loaded (tenant, digest).
    loaded_uploads: Mutex<HashSet<(String, String)>>,
}

enum Executor {
    /// A component; `Some(tenant)` if that tenant uploaded it.
    Wasm(Arc<WasmActivity>, Option<String>),
    Http,
    Worker(Arc<WorkerQueue>),
}

impl ActivityRegistry {
    /// No components, no hosts, no workers: only `http` exists, and it may
    /// call nothing.
    pub fn empty(engine: Engine) -> anyhow::Result<ActivityRegistry> {
        let outbound = OutboundClient::new(None)?;
        Ok(ActivityRegistry {
            sandbox: Sandbox::new(engine, None, outbound.clone())?,
            wasm: HashMap::new(),
            tenant_wasm: RwLock::default(),
            allowlist: Arc::new(Allowlist::default()),
            outbound,
            workers: None,
            in_flight: TenantQuotas::default(),
            stored: OnceLock::new(),
            loaded_uploads: Mutex::default(),
        })
    }

    /// Registers activity components, asking each which names it serves.
    pub async fn load(
        engine: Engine,
        components: Vec<LoadedComponent>,
        config: ActivityConfig,
    ) -> anyhow::Result<ActivityRegistry> {
        let allowlist = Arc::new(config.allowed_hosts);
        let outbound = OutboundClient::new(config.http_ca_file.as_deref())?;
        let sandbox = Sandbox::new(engine, config.activity_dir, outbound.clone())?;
        let mut wasm: HashMap<String, Arc<WasmActivity>> = HashMap::new();
        for loaded in components {
            let (activity, names) = sandbox.load(&loaded).await?;
            for name in names {
                if name == HTTP_ACTIVITY {
                    anyhow::bail!(
                        "component {} serves `{HTTP_ACTIVITY}`, the name of the built-in HTTP activity; rename it",
                        activity.digest
                    );
                }
                if let Some(previous) = wasm.insert(name.clone(), activity.clone()) {
                    anyhow::bail!(
                        "activity `{name}` is served by two components ({} and {}); give each activity one home",
                        previous.digest,
                        activity.digest
                    );
                }
            }
        }
        Ok(ActivityRegistry {
            sandbox,
            wasm,
            tenant_wasm: RwLock::default(),
            allowlist,
            outbound,
            workers: config.workers,
            in_flight: TenantQuotas::default(),
            stored: OnceLock::new(),
            loaded_uploads: Mutex::default(),
        })
    }

    /// Wasm activity instances kept warm for their tenants' next calls.
    pub fn warm_instances(&self) -> usize {
        self.sandbox.warm_instances()
    }

    /// Names served here (external workers' names are open-ended).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.wasm.keys().map(String::as_str).collect();
        names.push(HTTP_ACTIVITY);
        names.sort_unstable();
        names
    }

    /// Registers an activity component `tenant` uploaded: its names serve
    /// that tenant's workflows only. Returns the names.
    pub async fn register_for(
        &self,
        tenant: &str,
        loaded: &LoadedComponent,
    ) -> anyhow::Result<Vec<String>> {
        let (activity, names) = self.sandbox.load(loaded).await?;
        if names.iter().any(|name| name == HTTP_ACTIVITY) {
            anyhow::bail!(
                "the component serves `{HTTP_ACTIVITY}`, the name of the built-in HTTP activity; rename it"
            );
        }
        let mut tenant_wasm = self
            .tenant_wasm
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for name in &names {
            tenant_wasm.insert((tenant.to_string(), name.clone()), activity.clone());
        }
        self.loaded_uploads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((tenant.to_string(), loaded.digest.clone()));
        Ok(names)
    }

    /// The names `tenant`'s upload `digest` serves now (a later upload
    /// serving a name takes it over).
    pub fn serving(&self, tenant: &str, digest: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .tenant_wasm
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|((owner, _), activity)| owner == tenant && activity.digest == digest)
            .map(|((_, name), _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Whether `name` is served for `tenant` by one of its uploads.
    pub fn serves(&self, tenant: &str, name: &str) -> bool {
        self.tenant_wasm
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(&(tenant.to_string(), name.to_string()))
    }

    /// Drops everything loaded from `tenant`'s uploads.
    fn forget_uploads_of(&self, tenant: &str) {
        self.tenant_wasm
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|(owner, _), _| owner != tenant);
        self.loaded_uploads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|(owner, _)| owner != tenant);
    }

    /// [`ActivityRegistry::load_uploads`], tried again while the store
    /// fails (for a few seconds): a store that is briefly unreachable must
    /// not send a tenant's own activity to the external workers' queue.
    async fn load_uploads_patiently(&self, tenant: &str) -> usize {
        for _ in 0..UPLOAD_LOAD_TRIES {
            match self.load_uploads(Some(tenant)).await {
                Ok(loaded) => return loaded,
                Err(problem) => {
                    tracing::warn!(tenant, error = %format!("{problem:#}"), "could not look for uploaded activity modules; trying again");
                    tokio::time::sleep(UPLOAD_LOAD_RETRY).await;
                }
            }
        }
        0
    }

    /// Where tenants' uploaded activity modules are stored.
    pub fn attach_store(&self, store: Arc<dyn Store>) {
        let _ = self.stored.set(store);
    }

    /// Loads the activity modules `tenant` (`None`: every tenant) uploaded
    /// through any node that this process has not loaded yet, oldest
    /// first, so the newest upload of a name serves it; returns how many.
    /// A module that does not load (it fails to compile or to say what it
    /// serves) is reported and not tried again; the store failing is an
    /// error, and the next call tries again.
    pub async fn load_uploads(&self, tenant: Option<&str>) -> anyhow::Result<usize> {
        let Some(store) = self.stored.get() else {
            return Ok(0);
        };
        let uploads = store.activity_uploads(tenant).await?;
        // A tenant with an upload deleted (through any node) since it was
        // loaded is loaded again from what it has left, oldest first, as
        // a new node would: a name the deleted module served falls back to
        // the newest other upload serving it, or to none. An upload this
        // node is registering but has not stored yet is dropped too, and
        // loaded again when it is stored or first called.
        let with_deletions: std::collections::BTreeSet<String> = self
            .loaded_uploads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|key| tenant.is_none_or(|tenant| key.0 == tenant) && !uploads.contains(key))
            .map(|(owner, _)| owner.clone())
            .collect();
        for owner in &with_deletions {
            self.forget_uploads_of(owner);
        }
        let mut loaded = 0;
        for key in uploads {
            if self
                .loaded_uploads
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(&key)
            {
                continue;
            }
            let (tenant, digest) = &key;
            let bytes = store
                .module(digest)
                .await?
                .ok_or_else(|| anyhow::anyhow!("module {digest} is missing from the store"))?;
            let registered = match self.sandbox.engine().load(&bytes) {
                Ok(component) => self.register_for(tenant, &component).await,
                Err(problem) => Err(problem.into()),
            };
            match registered {
                Ok(_) => loaded += 1,
                Err(problem) => {
                    // Its activities stay unknown until it is replaced.
                    tracing::warn!(
                        tenant,
                        digest,
                        error = %format!("{problem:#}"),
                        "could not load an uploaded activity module"
                    );
                    self.loaded_uploads
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(key);
                }
            }
        }
        Ok(loaded)
    }

    fn executor(&self, tenant: &str, name: &str) -> Option<Executor> {
        if name == HTTP_ACTIVITY {
            return Some(Executor::Http);
        }
        let own = self
            .tenant_wasm
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(tenant.to_string(), name.to_string()))
            .cloned();
        if let Some(activity) = own {
            return Some(Executor::Wasm(activity, Some(tenant.to_string())));
        }
        if let Some(activity) = self.wasm.get(name) {
            return Some(Executor::Wasm(activity.clone(), None));
        }
        self.workers.clone().map(Executor::Worker)
    }

    /// Runs the activity's attempts on a task of its own, reporting to
    /// `updates`; the handle stops them.
    ///
    /// The attempts' future (kilobytes: every executor's state) is built on
    /// the task's first poll, in a box of its own. Spawned as it is, it would
    /// be built and moved through tokio's spawn path on the caller's stack,
    /// which is a workflow's fiber stack: each of them would keep those
    /// pages resident.
    pub fn spawn(
        self: &Arc<Self>,
        task: ActivityTask,
        updates: mpsc::UnboundedSender<ActivityUpdate>,
    ) -> tokio::task::AbortHandle {
        let registry = self.clone();
        tokio::spawn(async move { Box::pin(registry.run_attempts(task, updates)).await })
            .abort_handle()
    }

    async fn run_attempts(
        &self,
        mut task: ActivityTask,
        updates: mpsc::UnboundedSender<ActivityUpdate>,
    ) {
        let mut executor = self.executor(&task.tenant, &task.name);
        // Not served here yet: perhaps uploaded through another node.
        if !matches!(executor, Some(Executor::Wasm(..) | Executor::Http))
            && self.load_uploads_patiently(&task.tenant).await > 0
        {
            executor = self.executor(&task.tenant, &task.name);
        }
        let Some(executor) = executor else {
            let failure = ActivityFailure {
                reason: FailureReason::UnknownActivity,
                attempts: 0,
                last_error: ActivityError {
                    error_type: "UnknownActivity".into(),
                    message: format!(
                        "no activity named `{}` is registered; registered: {} (external workers are off)",
                        task.name,
                        self.names().join(", ")
                    ),
                    details: None,
                    non_retryable: true,
                },
            };
            let failed = Event::ActivityFailed {
                seq: task.seq,
                failure,
            };
            let _ = report(&updates, task.seq, vec![failed]).await;
            return;
        };
        let mut attempt = task.next_attempt;
        sleep_until_ms(task.not_before_ms).await;
        loop {
            let policy = &task.options.retry;
            let schedule_deadline = task
                .options
                .schedule_to_close_timeout_ms
                .map(|timeout| task.scheduled_at_ms + timeout);
            let attempt_timeout = attempt_timeout_ms(&task.options, schedule_deadline);
            let heartbeat = Heartbeat::new(task.heartbeat_details.clone());
            // A tenant past its attempts in flight waits in its own queue.
            let in_flight = self
                .in_flight
                .acquire(
                    &task.tenant,
                    task.limits.activity_attempts_in_flight_max as usize,
                )
                .await;
            let outcome = self
                .run_attempt(
                    &executor,
                    &task,
                    attempt,
                    attempt_timeout,
                    heartbeat.clone(),
                )
                .await;
            drop(in_flight);
            task.heartbeat_details = heartbeat.details();
            let payload_bytes_max = task.limits.payload_bytes_max;
            let error = match outcome
                .and_then(|output| check_json_output(&output, payload_bytes_max).map(|()| output))
            {
                Ok(output) => {
                    let completed = Event::ActivityCompleted {
                        seq: task.seq,
                        attempt,
                        output,
                    };
                    let _ = report(&updates, task.seq, vec![completed]).await;
                    return;
                }
                Err(error) => error,
            };
            let give_up = if error.non_retryable
                || policy.non_retryable_error_types.contains(&error.error_type)
            {
                Some(FailureReason::NonRetryable)
            } else if policy.maximum_attempts != 0 && attempt >= policy.maximum_attempts {
                Some(FailureReason::AttemptsExhausted)
            } else {
                None
            };
            let retry_at_ms = clock::now_ms() + jittered(policy.backoff_ms(attempt + 1));
            let give_up = give_up.or_else(|| {
                schedule_deadline
                    .filter(|deadline| retry_at_ms >= *deadline)
                    .map(|_| FailureReason::TimedOut)
            });
            let mut events = vec![Event::ActivityAttemptFailed {
                seq: task.seq,
                attempt,
                error: error.clone(),
                retry_at_ms: give_up.is_none().then_some(retry_at_ms),
                heartbeat_details: task.heartbeat_details.clone(),
            }];
            if let Some(reason) = give_up {
                events.push(Event::ActivityFailed {
                    seq: task.seq,
                    failure: ActivityFailure {
                        reason,
                        attempts: attempt,
                        last_error: error,
                    },
                });
                let _ = report(&updates, task.seq, events).await;
                return;
            }
            tracing::info!(
                workflow_id = %task.workflow_id,
                seq = task.seq,
                activity = %task.name,
                attempt,
                error_type = %error.error_type,
                retry_at_ms,
                "activity attempt failed; will retry"
            );
            if report(&updates, task.seq, events).await.is_err() {
                // The execution is gone (finished or shut down): stop retrying.
                return;
            }
            sleep_until_ms(retry_at_ms).await;
            attempt += 1;
        }
    }

    /// One attempt, bounded by its timeout and (if set) its heartbeat timeout.
    async fn run_attempt(
        &self,
        executor: &Executor,
        task: &ActivityTask,
        attempt: u32,
        timeout_ms: u64,
        heartbeat: Arc<Heartbeat>,
    ) -> Result<String, ActivityError> {
        let span = tracing::info_span!(
            "activity_attempt",
            workflow_id = %task.workflow_id,
            run_id = %task.run_id,
            seq = task.seq,
            activity = %task.name,
            attempt,
            idempotency_key = %task.idempotency_key,
        );
        let work = self
            .execute(executor, task, attempt, timeout_ms, heartbeat.clone())
            .instrument(span);
        let timed = tokio::time::timeout(Duration::from_millis(timeout_ms), work);
        let heartbeat_timeout = task.options.heartbeat_timeout_ms.map(Duration::from_millis);
        let watchdog = async {
            match heartbeat_timeout {
                Some(limit) => loop {
                    let quiet = heartbeat.since_last();
                    if quiet >= limit {
                        return limit;
                    }
                    tokio::time::sleep(limit - quiet).await;
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = timed => outcome.unwrap_or_else(|_| Err(ActivityError {
                error_type: "StartToCloseTimeout".into(),
                message: format!("attempt {attempt} did not finish within {timeout_ms} ms"),
                details: None,
                non_retryable: false,
            })),
            limit = watchdog => Err(ActivityError {
                error_type: "HeartbeatTimeout".into(),
                message: format!("attempt {attempt} sent no heartbeat for {} ms", limit.as_millis()),
                details: None,
                non_retryable: false,
            }),
        }
    }

    async fn execute(
        &self,
        executor: &Executor,
        task: &ActivityTask,
        attempt: u32,
        timeout_ms: u64,
        heartbeat: Arc<Heartbeat>,
    ) -> Result<String, ActivityError> {
        let traceparent = attempt_traceparent(&task.trace_id, &task.run_id, task.seq, attempt);
        // Tenant lists are checked when they are set; one that no longer
        // parses fails the attempt instead of widening to the server's.
        let tenant_allowlist = match &task.limits.allowed_hosts {
            None => None,
            Some(entries) => Some(Allowlist::parse(entries).map_err(|error| ActivityError {
                error_type: "HttpRequestDenied".into(),
                message: format!("the tenant's `allowed_hosts` limit is invalid: {error}"),
                details: None,
                non_retryable: true,
            })?),
        };
        let allowlist = tenant_allowlist.as_ref().unwrap_or(&self.allowlist);
        match executor {
            Executor::Http => {
                http::run(
                    &self.outbound,
                    allowlist,
                    &task.input,
                    &task.idempotency_key,
                    &traceparent,
                )
                .await
            }
            Executor::Wasm(activity, owner) => {
                let call = ActivityCall {
                    idempotency_key: task.idempotency_key.clone(),
                    attempt,
                    workflow_id: task.workflow_id.clone(),
                    run_id: task.run_id.clone(),
                    activity_name: task.name.clone(),
                    previous_heartbeat_details: task.heartbeat_details.clone(),
                    heartbeat,
                    traceparent,
                    seq: task.seq,
                    logs: Some(task.logs.clone()),
                };
                let sandbox_limits = SandboxLimits {
                    tenant: task.tenant.clone(),
                    memory_bytes_max: task.limits.memory_bytes_max,
                    fuel_max: task.limits.activity_fuel_max,
                    allowlist: Arc::new(allowlist.clone()),
                    tenant_dir: owner.clone(),
                };
                self.sandbox
                    .run(activity, call, &task.input, sandbox_limits)
                    .await
            }
            Executor::Worker(queue) => {
                let worker_task = WorkerTask {
                    tenant: task.tenant.clone(),
                    task_token: new_task_token(),
                    activity: task.name.clone(),
                    input: raw_json(&task.input),
                    idempotency_key: task.idempotency_key.clone(),
                    attempt,
                    workflow_id: task.workflow_id.clone(),
                    run_id: task.run_id.clone(),
                    heartbeat_details: task.heartbeat_details.as_deref().map(raw_json),
                    start_to_close_timeout_ms: timeout_ms,
                    traceparent,
                };
                queue.execute(worker_task, heartbeat).await
            }
        }
    }
}

/// A random 128-bit task token, hex-encoded.
fn new_task_token() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

fn check_json_output(output: &str, payload_bytes_max: usize) -> Result<(), ActivityError> {
    let invalid = |message: String| ActivityError {
        error_type: "InvalidActivityOutput".into(),
        message,
        details: None,
        non_retryable: true,
    };
    if output.len() > payload_bytes_max {
        return Err(invalid(format!(
            "the activity returned {} bytes; the limit is payload_bytes_max = {payload_bytes_max}",
            output.len()
        )));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(output)
        .map(|_| ())
        .map_err(|error| {
            invalid(format!(
                "the activity returned output that is not JSON: {error}"
            ))
        })
}

fn attempt_timeout_ms(options: &ActivityOptions, schedule_deadline: Option<u64>) -> u64 {
    let remaining = schedule_deadline.map(|deadline| deadline.saturating_sub(clock::now_ms()));
    match (options.start_to_close_timeout_ms, remaining) {
        (Some(attempt), Some(remaining)) => attempt.min(remaining),
        (Some(attempt), None) => attempt,
        (None, Some(remaining)) => remaining,
        (None, None) => DEFAULT_START_TO_CLOSE_MS,
    }
}

/// ±10% so that many failing calls do not retry in lockstep.
fn jittered(delay_ms: u64) -> u64 {
    let spread = delay_ms / 10;
    if spread == 0 {
        return delay_ms;
    }
    delay_ms - spread + rand::rng().random_range(0..=2 * spread)
}

async fn sleep_until_ms(at_ms: u64) {
    let delay = at_ms.saturating_sub(clock::now_ms());
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// Sends events to the execution and waits until they are journaled.
async fn report(
    updates: &mpsc::UnboundedSender<ActivityUpdate>,
    seq: Seq,
    events: Vec<Event>,
) -> Result<(), ()> {
    let (ack, journaled) = oneshot::channel();
    updates
        .send(ActivityUpdate { seq, events, ack })
        .map_err(|_| ())?;
    journaled.await.map_err(|_| ())
}
