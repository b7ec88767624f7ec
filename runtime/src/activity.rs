//! Activity execution: Wasm activity components, attempts and retries.
//!
//! `activity` never writes a history: each attempt's outcome is sent to the
//! execution as an [`ActivityUpdate`], and the next attempt waits until the
//! execution has journaled the failure of the previous one. So a retry is
//! durable (a crash during backoff resumes at the same attempt and time) and
//! the history shows every attempt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::RngExt as _;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use wasmtime::component::Linker;
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::clock;
use crate::engine::{ComponentKind, Engine, LoadedComponent};
use crate::host::activity_bindings::{Activity, ActivityPre};
use crate::host::activity_context::ActivityCall;
use crate::host::{ActivityHost, wit_types};
use crate::journal::{
    ActivityError, ActivityFailure, ActivityOptions, Event, FailureReason, PAYLOAD_BYTES_MAX, Seq,
};

/// Where an activity's granted directory appears inside the guest.
pub const ACTIVITY_DIR_GUEST_PATH: &str = "/data";
/// Attempt timeout when a call sets neither start-to-close nor schedule-to-close.
pub const DEFAULT_START_TO_CLOSE_MS: u64 = 60_000;
/// Fuel for one activity attempt.
const ACTIVITY_FUEL_MAX: u64 = 50_000_000_000;

/// One scheduled activity call, as a task to run (or resume).
#[derive(Clone, Debug)]
pub struct ActivityTask {
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
}

/// Events for the execution to journal, and a signal back once they are.
pub struct ActivityUpdate {
    pub seq: Seq,
    pub events: Vec<Event>,
    pub ack: oneshot::Sender<()>,
}

struct ActivityComponent {
    digest: String,
    pre: ActivityPre<ActivityHost>,
}

/// The activities this runtime can execute, by name.
pub struct ActivityRegistry {
    engine: Engine,
    by_name: HashMap<String, Arc<ActivityComponent>>,
    activity_dir: Option<PathBuf>,
}

impl ActivityRegistry {
    /// An empty registry: every call fails with `unknown-activity`.
    pub fn empty(engine: Engine) -> ActivityRegistry {
        ActivityRegistry {
            engine,
            by_name: HashMap::new(),
            activity_dir: None,
        }
    }

    /// Registers activity components, asking each which names it serves.
    /// `activity_dir` is granted to every activity as [`ACTIVITY_DIR_GUEST_PATH`].
    pub async fn load(
        engine: Engine,
        components: Vec<LoadedComponent>,
        activity_dir: Option<PathBuf>,
    ) -> anyhow::Result<ActivityRegistry> {
        let mut linker = Linker::<ActivityHost>::new(engine.wasmtime());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        Activity::add_to_linker::<_, wasmtime::component::HasSelf<ActivityHost>>(
            &mut linker,
            |host| host,
        )
        .map_err(anyhow::Error::from)?;
        let mut registry = ActivityRegistry {
            engine,
            by_name: HashMap::new(),
            activity_dir,
        };
        for loaded in components {
            if loaded.kind != ComponentKind::Activity {
                anyhow::bail!(
                    "component {} is a {} component, not an activity component (it must export `reprise:workflow/activities`)",
                    loaded.digest,
                    loaded.kind.as_str()
                );
            }
            let instance_pre = linker
                .instantiate_pre(&loaded.component)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("linking activity component {}", loaded.digest))?;
            let pre = ActivityPre::new(instance_pre).map_err(anyhow::Error::from)?;
            let component = Arc::new(ActivityComponent {
                digest: loaded.digest.clone(),
                pre,
            });
            let names = registry.served_names(&component).await.with_context(|| {
                format!("asking activity component {} for its names", loaded.digest)
            })?;
            for name in names {
                if let Some(previous) = registry.by_name.insert(name.clone(), component.clone()) {
                    anyhow::bail!(
                        "activity `{name}` is served by two components ({} and {}); give each activity one home",
                        previous.digest,
                        component.digest
                    );
                }
            }
        }
        Ok(registry)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    async fn served_names(&self, component: &ActivityComponent) -> anyhow::Result<Vec<String>> {
        let call = ActivityCall {
            idempotency_key: String::new(),
            attempt: 0,
            workflow_id: String::new(),
            run_id: String::new(),
            activity_name: String::new(),
        };
        let mut store = self.new_store(call)?;
        let instance = component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        instance
            .reprise_workflow_activities()
            .call_names(&mut store)
            .await
            .map_err(anyhow::Error::from)
    }

    fn new_store(&self, call: ActivityCall) -> anyhow::Result<Store<ActivityHost>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(crate::host::wasi::GuestOutput::for_activity(
                &call, "stdout",
            ))
            .stderr(crate::host::wasi::GuestOutput::for_activity(
                &call, "stderr",
            ));
        if let Some(dir) = &self.activity_dir {
            wasi.preopened_dir(dir, ACTIVITY_DIR_GUEST_PATH, FsPerms::ReadWrite)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("granting {} to activities", dir.display()))?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.engine.limits.memory_bytes_max)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            self.engine.wasmtime(),
            ActivityHost::new(call, wasi.build(), limits),
        );
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(ACTIVITY_FUEL_MAX)
            .map_err(anyhow::Error::from)?;
        // Activities may run long (their timeouts bound them); the epoch
        // only makes them yield so that other work on this thread proceeds.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        Ok(store)
    }

    /// Runs the activity's attempts on a task of its own, reporting to `updates`.
    pub fn spawn(
        self: &Arc<Self>,
        task: ActivityTask,
        updates: mpsc::UnboundedSender<ActivityUpdate>,
    ) {
        let registry = self.clone();
        tokio::spawn(async move { registry.run_attempts(task, updates).await });
    }

    async fn run_attempts(
        &self,
        task: ActivityTask,
        updates: mpsc::UnboundedSender<ActivityUpdate>,
    ) {
        let Some(component) = self.by_name.get(&task.name).cloned() else {
            let failure = ActivityFailure {
                reason: FailureReason::UnknownActivity,
                attempts: 0,
                last_error: ActivityError {
                    error_type: "UnknownActivity".into(),
                    message: format!(
                        "no activity named `{}` is registered; registered: {}",
                        task.name,
                        self.names().join(", ")
                    ),
                    details: None,
                    non_retryable: true,
                },
            };
            let _ = report(
                &updates,
                task.seq,
                vec![Event::ActivityFailed {
                    seq: task.seq,
                    failure,
                }],
            )
            .await;
            return;
        };
        let policy = &task.options.retry;
        let mut attempt = task.next_attempt;
        sleep_until_ms(task.not_before_ms).await;
        loop {
            let schedule_deadline = task
                .options
                .schedule_to_close_timeout_ms
                .map(|timeout| task.scheduled_at_ms + timeout);
            let attempt_timeout = attempt_timeout_ms(&task.options, schedule_deadline);
            let outcome = tokio::time::timeout(
                Duration::from_millis(attempt_timeout),
                self.run_attempt(&component, &task, attempt),
            )
            .await;
            let error = match outcome {
                Ok(Ok(output)) => {
                    let completed = Event::ActivityCompleted {
                        seq: task.seq,
                        attempt,
                        output,
                    };
                    let _ = report(&updates, task.seq, vec![completed]).await;
                    return;
                }
                Ok(Err(error)) => error,
                Err(_) => ActivityError {
                    error_type: "StartToCloseTimeout".into(),
                    message: format!(
                        "attempt {attempt} did not finish within {attempt_timeout} ms"
                    ),
                    details: None,
                    non_retryable: false,
                },
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

    async fn run_attempt(
        &self,
        component: &ActivityComponent,
        task: &ActivityTask,
        attempt: u32,
    ) -> Result<String, ActivityError> {
        let call = ActivityCall {
            idempotency_key: task.idempotency_key.clone(),
            attempt,
            workflow_id: task.workflow_id.clone(),
            run_id: task.run_id.clone(),
            activity_name: task.name.clone(),
        };
        let span = tracing::info_span!(
            "activity_attempt",
            workflow_id = %task.workflow_id,
            run_id = %task.run_id,
            seq = task.seq,
            activity = %task.name,
            attempt,
            idempotency_key = %task.idempotency_key,
        );
        self.run_attempt_in_span(component, task, call)
            .instrument(span)
            .await
    }

    async fn run_attempt_in_span(
        &self,
        component: &ActivityComponent,
        task: &ActivityTask,
        call: ActivityCall,
    ) -> Result<String, ActivityError> {
        let trap = |error: wasmtime::Error| ActivityError {
            error_type: "ActivityTrap".into(),
            message: format!("{:#}", anyhow::Error::from(error)),
            details: None,
            non_retryable: false,
        };
        let mut store = self.new_store(call).map_err(|error| ActivityError {
            error_type: "ActivityHostError".into(),
            message: format!("{error:#}"),
            details: None,
            non_retryable: false,
        })?;
        let instance = component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(trap)?;
        let result = instance
            .reprise_workflow_activities()
            .call_run(&mut store, &task.name, &task.input)
            .await
            .map_err(trap)?;
        let output = result.map_err(ActivityError::from)?;
        check_json_output(&output)?;
        Ok(output)
    }
}

fn check_json_output(output: &str) -> Result<(), ActivityError> {
    let invalid = |message: String| ActivityError {
        error_type: "InvalidActivityOutput".into(),
        message,
        details: None,
        non_retryable: true,
    };
    if output.len() > PAYLOAD_BYTES_MAX {
        return Err(invalid(format!(
            "the activity returned {} bytes; the payload limit is {PAYLOAD_BYTES_MAX} bytes",
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

impl From<wit_types::ActivityError> for ActivityError {
    fn from(error: wit_types::ActivityError) -> ActivityError {
        ActivityError {
            error_type: error.error_type,
            message: error.message,
            details: error.details,
            non_retryable: error.non_retryable,
        }
    }
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
