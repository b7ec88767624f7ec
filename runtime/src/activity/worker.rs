//! External workers: activities executed by processes in any language that
//! poll a task queue over HTTP and report back (see `api`).
//!
//! Each attempt is one task with a fresh token. The attempt waits for the
//! worker's report; if the attempt times out (start-to-close, heartbeat),
//! its token is retired, and a late report is refused as expired — the
//! retry runs under a new token with the same idempotency key.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{Notify, oneshot};

use super::Heartbeat;
use crate::journal::{ActivityError, PAYLOAD_BYTES_MAX};

/// Retired tokens remembered to tell "already finished" from "unknown".
const RETIRED_TOKENS_MAX: usize = 10_000;
/// The longest a poll may wait for a task.
pub const POLL_WAIT_MAX: Duration = Duration::from_secs(60);
/// Tasks waiting for a worker, in all.
const PENDING_TASKS_MAX: usize = 100_000;

/// What a worker receives.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerTask {
    /// Whose task it is: only that tenant's workers see it.
    #[serde(skip)]
    pub tenant: String,
    pub task_token: String,
    pub activity: String,
    /// The input, as JSON.
    pub input: Box<RawValue>,
    pub idempotency_key: String,
    pub attempt: u32,
    pub workflow_id: String,
    pub run_id: String,
    /// Details from the last heartbeat of an earlier attempt, if any.
    pub heartbeat_details: Option<Box<RawValue>>,
    pub start_to_close_timeout_ms: u64,
    /// The attempt's W3C trace context, to pass on.
    pub traceparent: String,
}

struct Waiting {
    task: WorkerTask,
    reply: oneshot::Sender<Result<String, ActivityError>>,
    heartbeat: Arc<Heartbeat>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Waiting>,
    leased: HashMap<String, Waiting>,
    retired: HashMap<String, &'static str>,
    retired_order: VecDeque<String>,
}

impl QueueState {
    fn retire(&mut self, token: &str, why: &'static str) {
        if self.retired.insert(token.to_string(), why).is_none() {
            self.retired_order.push_back(token.to_string());
        }
        while self.retired_order.len() > RETIRED_TOKENS_MAX {
            if let Some(oldest) = self.retired_order.pop_front() {
                self.retired.remove(&oldest);
            }
        }
    }
}

/// Why a worker's report was refused.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no task has token `{0}`; use the task_token from a poll response")]
    Unknown(String),
    #[error("task `{token}` is no longer open: it was {why}")]
    Finished { token: String, why: &'static str },
    #[error("{0}")]
    InvalidReport(String),
}

/// The queue between activity attempts and external workers.
#[derive(Default)]
pub struct WorkerQueue {
    state: Mutex<QueueState>,
    arrived: Notify,
}

impl WorkerQueue {
    pub fn new() -> Arc<WorkerQueue> {
        Arc::new(WorkerQueue::default())
    }

    /// Tasks waiting for a worker to poll them.
    pub fn depth(&self) -> usize {
        self.state().pending.len()
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `task` and waits for a worker's report. Dropping the future
    /// (the attempt timed out) retires the token.
    pub async fn execute(
        &self,
        task: WorkerTask,
        heartbeat: Arc<Heartbeat>,
    ) -> Result<String, ActivityError> {
        let token = task.task_token.clone();
        let (reply, report) = oneshot::channel();
        {
            let mut state = self.state();
            if state.pending.len() >= PENDING_TASKS_MAX {
                return Err(ActivityError {
                    error_type: "WorkerQueueFull".into(),
                    message: format!("{PENDING_TASKS_MAX} tasks already wait for workers"),
                    details: None,
                    non_retryable: false,
                });
            }
            state.pending.push_back(Waiting {
                task,
                reply,
                heartbeat,
            });
        }
        self.arrived.notify_waiters();
        let mut retire_on_drop = RetireOnDrop {
            queue: self,
            token: &token,
            armed: true,
        };
        let outcome = report.await.unwrap_or_else(|_| {
            Err(ActivityError {
                error_type: "WorkerLost".into(),
                message: "the task was dropped before a worker reported".into(),
                details: None,
                non_retryable: false,
            })
        });
        // The report retired the token already.
        retire_on_drop.armed = false;
        outcome
    }

    /// Hands out the oldest task for one of `activities`, waiting up to
    /// `wait` for one to arrive.
    /// `tenant`: the caller's scope (`None`: an embedded runtime without
    /// tenants, which sees every task).
    pub async fn poll(
        &self,
        tenant: Option<&str>,
        activities: &[String],
        wait: Duration,
    ) -> Option<WorkerTask> {
        let deadline = tokio::time::Instant::now() + wait.min(POLL_WAIT_MAX);
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(task) = self.take(tenant, activities) {
                return Some(task);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }

    fn take(&self, tenant: Option<&str>, activities: &[String]) -> Option<WorkerTask> {
        let mut state = self.state();
        let index = state.pending.iter().position(|waiting| {
            tenant.is_none_or(|tenant| tenant == waiting.task.tenant)
                && activities.contains(&waiting.task.activity)
        })?;
        let waiting = state.pending.remove(index)?;
        let task = waiting.task.clone();
        waiting.heartbeat.beat(None);
        state.leased.insert(task.task_token.clone(), waiting);
        Some(task)
    }

    fn closed(state: &QueueState, token: &str) -> TaskError {
        match state.retired.get(token) {
            Some(why) => TaskError::Finished {
                token: token.to_string(),
                why,
            },
            None => TaskError::Unknown(token.to_string()),
        }
    }

    /// The leased task `token` names, if `tenant` (the caller's scope;
    /// `None`: an embedded runtime) may see it. Another tenant's token is
    /// as unknown as a made-up one.
    fn leased<'s>(
        state: &'s QueueState,
        tenant: Option<&str>,
        token: &str,
    ) -> Result<&'s Waiting, TaskError> {
        match state.leased.get(token) {
            Some(waiting) if tenant.is_none_or(|tenant| tenant == waiting.task.tenant) => {
                Ok(waiting)
            }
            Some(_) => Err(TaskError::Unknown(token.to_string())),
            None => Err(Self::closed(state, token)),
        }
    }

    /// Records a heartbeat, with optional progress details (JSON).
    pub fn heartbeat(
        &self,
        tenant: Option<&str>,
        token: &str,
        details: Option<Box<RawValue>>,
    ) -> Result<(), TaskError> {
        let state = self.state();
        let waiting = Self::leased(&state, tenant, token)?;
        waiting
            .heartbeat
            .beat(details.map(|details| details.get().to_string()));
        Ok(())
    }

    /// A worker's success: `output` must be JSON within the payload limit.
    pub fn complete(
        &self,
        tenant: Option<&str>,
        token: &str,
        output: &RawValue,
    ) -> Result<(), TaskError> {
        let output = output.get().to_string();
        if output.len() > PAYLOAD_BYTES_MAX {
            return Err(TaskError::InvalidReport(format!(
                "the output is {} bytes; the payload limit is {PAYLOAD_BYTES_MAX} bytes",
                output.len()
            )));
        }
        self.report(tenant, token, Ok(output), "completed")
    }

    /// A worker's failure, with the same error model as Wasm activities.
    pub fn fail(
        &self,
        tenant: Option<&str>,
        token: &str,
        error: ActivityError,
    ) -> Result<(), TaskError> {
        self.report(tenant, token, Err(error), "failed")
    }

    fn report(
        &self,
        tenant: Option<&str>,
        token: &str,
        outcome: Result<String, ActivityError>,
        why: &'static str,
    ) -> Result<(), TaskError> {
        let mut state = self.state();
        Self::leased(&state, tenant, token)?;
        let Some(waiting) = state.leased.remove(token) else {
            return Err(Self::closed(&state, token));
        };
        state.retire(token, why);
        // The attempt may have just timed out; then the report is moot.
        let _ = waiting.reply.send(outcome);
        Ok(())
    }
}

/// Retires a task whose attempt stopped waiting (timeout, shutdown).
struct RetireOnDrop<'a> {
    queue: &'a WorkerQueue,
    token: &'a str,
    armed: bool,
}

impl Drop for RetireOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.queue.state();
        state
            .pending
            .retain(|waiting| waiting.task.task_token != self.token);
        state.leased.remove(self.token);
        state.retire(self.token, "timed out and retried under a new token");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(tenant: &str, token: &str) -> WorkerTask {
        WorkerTask {
            tenant: tenant.to_string(),
            task_token: token.to_string(),
            activity: "charge".to_string(),
            input: crate::runtime::raw_json("null"),
            idempotency_key: "key".to_string(),
            attempt: 1,
            workflow_id: "w".to_string(),
            run_id: "r".to_string(),
            heartbeat_details: None,
            start_to_close_timeout_ms: 1_000,
            traceparent: String::new(),
        }
    }

    #[tokio::test]
    async fn a_tenant_polls_only_its_own_tasks() {
        let queue = WorkerQueue::new();
        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move {
                queue
                    .execute(task("acme", "t1"), Heartbeat::detached())
                    .await
            })
        };
        let activities = vec!["charge".to_string()];
        let short = Duration::from_millis(200);
        assert!(
            queue
                .poll(Some("globex"), &activities, short)
                .await
                .is_none()
        );
        let polled = queue
            .poll(Some("acme"), &activities, short)
            .await
            .expect("acme's task");
        assert_eq!(polled.task_token, "t1");
        // A stolen token is unknown to another tenant, and stays usable.
        for forged in [
            queue.heartbeat(Some("globex"), "t1", None),
            queue.complete(
                Some("globex"),
                "t1",
                &crate::runtime::raw_json("\"forged\""),
            ),
            queue.fail(
                Some("globex"),
                "t1",
                ActivityError {
                    error_type: "Forged".into(),
                    message: "by globex".into(),
                    details: None,
                    non_retryable: true,
                },
            ),
        ] {
            assert!(matches!(forged, Err(TaskError::Unknown(_))), "{forged:?}");
        }
        queue
            .complete(Some("acme"), "t1", &crate::runtime::raw_json("1"))
            .expect("complete");
        assert_eq!(waiting.await.expect("join").expect("outcome"), "1");
        assert!(matches!(
            queue.complete(Some("acme"), "t1", &crate::runtime::raw_json("2")),
            Err(TaskError::Finished { .. })
        ));
    }
}
