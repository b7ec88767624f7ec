//! The live state of one execution and the waits it can block on.
//!
//! An [`Execution`] is the single writer of its history: every event of the
//! execution — the guest's commands and the outcomes that activity tasks
//! and timers report — is appended by the task that owns it, in one order.
//! That order is the history, and replay follows it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::activity::{ActivityRegistry, ActivityTask, ActivityUpdate};
use crate::clock;
use crate::journal::{
    Event, Halt, History, RecordedEvent, Recorder, Seq, WORKFLOW_TIMED_OUT, WorkflowError,
};
use crate::mailbox::MailboxFlag;
use crate::quota::{ComputeTurn, Instances};
use crate::runtime::{DriveEnd, Outcome, RunError, Runtime, StartOptions};
use crate::store::{ExecutionRecord, ExecutionStatus, Finish, MessageKind, Store, StoreError};
use crate::telemetry::spans::trace_id_hex;
use crate::telemetry::{GuestLines, LogSink, Telemetry};
use crate::tenant::TenantLimits;

/// What a blocked guest waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    Timer(Seq),
    /// A WASI clock subscription (`std::thread::sleep`, `time.sleep`): a
    /// durable timer that a cancellation does not interrupt (plain WASI
    /// code has no way to see one).
    Sleep(Seq),
    Activity(Seq),
    AnyActivity(Vec<Seq>),
    Signal(Seq),
    Update(Seq),
    Child(Seq),
}

/// What a query replay asks the guest (see [`QueryState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryAsk {
    Query,
    ValidateUpdate,
}

/// The query a replay-only execution answers: the guest is asked (by
/// `next-query`) once the replay reaches its history's end
/// (`Recorder::reached_history_end`), and the last answer it gives before
/// the replay stops is the answer.
#[derive(Debug)]
pub struct QueryState {
    pub ask: QueryAsk,
    pub name: String,
    /// JSON.
    pub args: String,
    pub answer: Option<Result<String, WorkflowError>>,
}

/// How a blocking call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// What it waited for is in the history.
    Ready,
    /// A cancellation request was delivered to it.
    Cancelled,
}

/// Why a guest's activation stops before `run` returns. Raised as an error
/// from a host call so wasmtime unwinds the guest; the driver inspects it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Interrupt {
    /// The guest waits (at its `ordinal`-th blocking call); the instance is
    /// dropped and rebuilt by replay later.
    #[error("execution suspended while waiting for {wait:?}")]
    Suspend { wait: Wait, ordinal: u64 },
    /// Replay met something the history does not support.
    #[error("{0:?}")]
    Halt(Halt),
    /// The guest broke a limit or a rule: fail the execution with this error.
    #[error("{0}")]
    FailWorkflow(WorkflowError),
    /// Every instance slot is taken: try the activation again shortly.
    #[error("no free instance slot: {0}")]
    Busy(String),
    /// The host could not do its part (database down, …): the execution is
    /// left as it is, to be resumed.
    #[error("host fault: {0}")]
    HostFault(String),
    /// The process is shutting down: the execution stops at this wait (a
    /// journal boundary) and the next process resumes it.
    #[error("the process is shutting down")]
    Shutdown,
    /// Another node owns the execution now (this node's lease passed): the
    /// drive ends here and that node resumes it.
    #[error("another node owns the execution now")]
    Disowned,
    /// An operator terminated the execution: its drive ends at this wait.
    #[error("the execution was terminated")]
    Terminated,
    /// The workflow called `continue-as-new`: this run ends and the next
    /// one starts with `input`.
    #[error("the workflow continues as new")]
    ContinueAsNew { input: String },
}

impl From<StoreError> for Interrupt {
    fn from(error: StoreError) -> Interrupt {
        match error {
            StoreError::NotOwner { .. } => Interrupt::Disowned,
            other => Interrupt::HostFault(other.to_string()),
        }
    }
}

impl From<Halt> for Interrupt {
    fn from(halt: Halt) -> Interrupt {
        match halt {
            Halt::Limit(error) => Interrupt::FailWorkflow(error),
            other => Interrupt::Halt(other),
        }
    }
}

/// Starts (or finds) a child execution and drives it to its end: its
/// outcome, or `None` if a shutdown stopped it (nothing to journal: the
/// next process resumes the child with its parent).
async fn run_child(
    runtime: &Runtime,
    parent_id: i64,
    tenant: &str,
    workflow_type: &str,
    workflow_id: &str,
    input: &str,
) -> Option<Result<String, WorkflowError>> {
    let child_error = |error: RunError| runtime_error("ChildError", error.to_string());
    let digest = match runtime.resolve_type(tenant, workflow_type).await {
        Ok(Some(digest)) => digest,
        Ok(None) => {
            return Some(Err(runtime_error(
                "UnknownWorkflowType",
                format!("no workflow type `{workflow_type}` is registered; deploy it first"),
            )));
        }
        Err(error) => return Some(Err(child_error(error))),
    };
    let started = runtime
        .start_for(
            tenant,
            workflow_type,
            &digest,
            Some(workflow_id.to_string()),
            input,
            StartOptions {
                parent_execution: Some(parent_id),
                ..StartOptions::default()
            },
        )
        .await;
    let record = match started {
        Ok((record, _)) => record,
        Err(error) => return Some(Err(child_error(error))),
    };
    match Box::pin(runtime.drive(record)).await {
        Ok(Outcome::Completed { output }) => Some(Ok(output.get().to_string())),
        Ok(Outcome::Failed { error }) => Some(Err(error)),
        Err(RunError::ShuttingDown { .. } | RunError::Disowned { .. }) => None,
        Err(error) => Some(Err(child_error(error))),
    }
}

/// What else an append does.
enum Write {
    Plain,
    Finishing(Finish),
    Delivering(i64),
    /// Sets the row's search attributes (the whole object).
    SettingAttributes(String),
}

/// A workflow failure with a runtime-chosen type.
pub fn runtime_error(error_type: &str, message: impl Into<String>) -> WorkflowError {
    WorkflowError {
        error_type: error_type.to_string(),
        message: message.into(),
        details: None,
    }
}

/// Buffered events (clock reads, random draws, outcomes the guest read)
/// are written once this many pile up: a flood of them then costs many
/// small commits instead of one giant one that holds up every other
/// execution's appends.
const BUFFERED_EVENTS_MAX: usize = 1024;

/// How long a wait for an activity whose schedule is not written yet
/// waits for its outcome before it writes the schedule: about an fsync, so
/// a quick activity costs one commit instead of two.
const DEFERRED_SCHEDULE_GRACE: Duration = Duration::from_millis(2);

/// Where an execution's activity tasks and children report. The channel is
/// made when the first of them starts: an execution that never starts one
/// (a sleeper, a workflow waiting for signals) holds no channel block
/// (~1.7 KiB) while it is parked.
#[derive(Default)]
struct ActivityUpdates(
    Option<(
        mpsc::UnboundedSender<ActivityUpdate>,
        mpsc::UnboundedReceiver<ActivityUpdate>,
    )>,
);

impl ActivityUpdates {
    fn sender(&mut self) -> mpsc::UnboundedSender<ActivityUpdate> {
        self.0.get_or_insert_with(mpsc::unbounded_channel).0.clone()
    }

    /// The next update. Never resolves before a task has started; after,
    /// the channel never closes, since this holds a sender itself.
    async fn recv(&mut self) -> ActivityUpdate {
        match &mut self.0 {
            Some((_, receiver)) => match receiver.recv().await {
                Some(update) => update,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

/// The per-execution state the driver owns and lends to each activation.
pub struct Execution {
    pub record: ExecutionRecord,
    /// The tenant's limits, fixed for the life of this drive.
    pub limits: Arc<TenantLimits>,
    pub recorder: Arc<Mutex<Recorder>>,
    store: Arc<dyn Store>,
    activities: Arc<ActivityRegistry>,
    updates: ActivityUpdates,
    /// Activities with a task in this process (so replay does not start them twice).
    running: HashSet<Seq>,
    /// The activity tasks this drive started and that still run: stopped
    /// when it ends.
    activity_tasks: Vec<AbortHandle>,
    /// How long an instance stays in memory at a blocking wait before it is
    /// dropped and later rebuilt by replay (zero: at once).
    hot_window: Duration,
    /// The node's instances: under pressure, waits evict at once.
    instances: Arc<Instances>,
    /// The end of the guest's stderr, to explain a trap.
    pub stderr_tail: Arc<Mutex<Vec<u8>>>,
    /// The guest's log and output lines, written once what precedes them
    /// in the history is durable.
    pub lines: Arc<GuestLines>,
    /// Raised when signals or a cancellation may have arrived.
    mailbox: Arc<MailboxFlag>,
    /// A wait read the mailbox and left messages that were not for it (a
    /// signal a later wait names, a cancellation during a plain sleep): the
    /// next wait looks again, though nothing new arrived to raise the flag.
    mail_left_for_later: bool,
    /// The runtime, to start and drive child workflows.
    runtime: Weak<Runtime>,
    telemetry: Arc<Telemetry>,
    /// The activation in progress, until its first wait: when it began
    /// (ms) and how many recorded commands it had to replay.
    activation: Option<(u64, u64)>,
    shutdown: watch::Receiver<bool>,
    /// Set on the replay-only executions that answer a query.
    pub query: Option<QueryState>,
}

/// What an execution talks to besides its history.
pub struct Surroundings {
    pub store: Arc<dyn Store>,
    pub activities: Arc<ActivityRegistry>,
    pub telemetry: Arc<Telemetry>,
    /// Raised when signals or a cancellation may have arrived.
    pub mailbox: Arc<MailboxFlag>,
    /// The runtime, to start and drive child workflows.
    pub runtime: Weak<Runtime>,
    /// Turns true when the process shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// How long an instance stays in memory at a blocking wait.
    pub hot_window: Duration,
    /// The node's instances, to see pressure.
    pub instances: Arc<Instances>,
}

impl Execution {
    pub fn new(
        record: ExecutionRecord,
        limits: Arc<TenantLimits>,
        mut recorder: Recorder,
        surroundings: Surroundings,
    ) -> Execution {
        recorder.limit_history(limits.history_events_max, limits.history_bytes_max);
        let lines = Arc::new(GuestLines::new(
            surroundings
                .telemetry
                .log_sink(&record, limits.log_lines_per_second),
        ));
        Execution {
            lines,
            record,
            limits,
            recorder: Arc::new(Mutex::new(recorder)),
            store: surroundings.store,
            activities: surroundings.activities,
            telemetry: surroundings.telemetry,
            activation: None,
            updates: ActivityUpdates::default(),
            running: HashSet::new(),
            activity_tasks: Vec::new(),
            hot_window: surroundings.hot_window,
            instances: surroundings.instances,
            stderr_tail: Arc::new(Mutex::new(Vec::new())),
            mailbox: surroundings.mailbox,
            mail_left_for_later: false,
            runtime: surroundings.runtime,
            shutdown: surroundings.shutdown,
            query: None,
        }
    }

    /// A turn on the guest threads for an activation, within the tenant's
    /// `guest_threads_max`.
    pub fn compute_turn(&self) -> ComputeTurn {
        self.instances
            .compute_turn(&self.record.tenant, self.limits.guest_threads_max)
    }

    /// Where this execution's guest log lines go.
    pub fn log_sink(&self) -> LogSink {
        self.telemetry
            .log_sink(&self.record, self.limits.log_lines_per_second)
    }

    /// An activation begins: instantiation and replay are timed until its
    /// first wait (or its end).
    pub fn begin_activation_span(&mut self) {
        self.telemetry.metrics.instances_changed(1);
        let replayed = self.recorder().history.last_seq();
        self.activation = Some((clock::now_ms(), replayed));
    }

    /// The activation's instance is gone.
    pub fn end_activation_span(&mut self) {
        self.telemetry.metrics.instances_changed(-1);
        self.report_activation();
    }

    fn report_activation(&mut self) {
        let Some((started_ms, replayed)) = self.activation.take() else {
            return;
        };
        let recorder = self
            .recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recorder.is_replay_only() {
            return;
        }
        self.telemetry.activation(
            &self.record,
            &recorder.history,
            started_ms,
            clock::now_ms(),
            replayed,
        );
    }

    pub fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails if a WASI callback parked a halt since the last host call.
    pub fn check_halted(&self) -> Result<(), Interrupt> {
        match self.recorder().halted() {
            Some(halt) => Err(halt.clone().into()),
            None => Ok(()),
        }
    }

    /// Appends `event` and every buffered event before it, durably, in one
    /// commit. Nothing is visible to the guest or the world before this
    /// returns.
    pub async fn append(&mut self, event: Event) -> Result<(), Interrupt> {
        self.append_all(vec![event], None).await
    }

    /// Whether every event recorded so far is durable.
    pub fn all_durable(&self) -> bool {
        self.recorder().history.unflushed().is_empty()
    }

    /// Records a command's `event` for the next write to carry, without
    /// writing it now. Only for a command derived from durable events
    /// alone ([`Execution::all_durable`]), whose effect may start before
    /// the write.
    pub fn record_deferred(&self, event: Event) -> Result<(), Interrupt> {
        debug_assert!(self.all_durable());
        self.record(vec![event])
    }

    /// Makes the buffered events (clock reads, random draws, WASI timers)
    /// durable, if there are any.
    pub async fn flush(&mut self) -> Result<(), Interrupt> {
        if self.recorder().history.unflushed().is_empty() {
            return Ok(());
        }
        self.append_all(Vec::new(), None).await
    }

    /// Appends the terminal event and finishes the execution row, and
    /// [`Execution::record`] with it.
    pub async fn finish(&mut self, event: Event, finish: Finish) -> Result<(), Interrupt> {
        debug_assert!(event.is_terminal());
        let (status, result, finished_at_ms) =
            (finish.status, finish.result.clone(), finish.finished_at_ms);
        self.append_all(vec![event], Some(finish)).await?;
        self.record.status = status;
        self.record.result = Some(result);
        self.record.updated_at_ms = finished_at_ms;
        Ok(())
    }

    /// How the drive of this run ends with `outcome`: with the row, if
    /// this drive finished it.
    pub fn end(&self, outcome: Outcome) -> DriveEnd {
        let finished = self.record.status != ExecutionStatus::Running;
        DriveEnd {
            outcome,
            record: finished.then(|| self.record.clone()),
        }
    }

    /// Appends `event` and sets the run's search attributes to
    /// `attributes` (the whole object) in the same commit.
    pub async fn append_setting_attributes(
        &mut self,
        event: Event,
        attributes: String,
    ) -> Result<(), Interrupt> {
        self.write(vec![event], Write::SettingAttributes(attributes))
            .await
    }

    /// Appends `event`, marking mailbox message `message` delivered with it
    /// in the same commit: a message is acted on once.
    pub async fn append_delivering(&mut self, event: Event, message: i64) -> Result<(), Interrupt> {
        self.write(vec![event], Write::Delivering(message)).await
    }

    async fn append_all(
        &mut self,
        events: Vec<Event>,
        finish: Option<Finish>,
    ) -> Result<(), Interrupt> {
        let write = match finish {
            Some(finish) => Write::Finishing(finish),
            None => Write::Plain,
        };
        self.write(events, write).await
    }

    /// Whether [`BUFFERED_EVENTS_MAX`] buffered events piled up: then they
    /// are written before the guest goes on.
    pub fn buffered_piled_up(&self) -> bool {
        self.recorder().history.unflushed().len() >= BUFFERED_EVENTS_MAX
    }

    /// Records `events` in the in-memory history, behind the buffered ones,
    /// without writing them: the next write carries them.
    fn record(&self, events: Vec<Event>) -> Result<(), Interrupt> {
        let mut recorder = self.recorder();
        if recorder.is_replay_only() {
            return Err(Interrupt::HostFault(
                "a verification replay tried to write to the history".into(),
            ));
        }
        let is_terminal = events.iter().any(Event::is_terminal);
        if !is_terminal {
            let payload_bytes = events.iter().map(Event::payload_bytes).sum();
            recorder
                .check_room(events.len(), payload_bytes)
                .map_err(Interrupt::FailWorkflow)?;
        }
        let now = clock::now_ms();
        for event in events {
            recorder.history.record(event, now);
        }
        Ok(())
    }

    async fn write(&mut self, events: Vec<Event>, write: Write) -> Result<(), Interrupt> {
        self.record(events)?;
        let (unflushed, flushed_len) = {
            let recorder = self.recorder();
            let unflushed: Vec<RecordedEvent> = recorder.history.unflushed().to_vec();
            (unflushed, recorder.history.len())
        };
        let appending = std::time::Instant::now();
        let appended = unflushed.len();
        match write {
            Write::Plain => self.store.append(self.record.id, unflushed, None).await?,
            Write::Finishing(finish) => {
                self.store
                    .append(self.record.id, unflushed, Some(finish))
                    .await?
            }
            Write::Delivering(message) => {
                self.store
                    .append_delivering(self.record.id, unflushed, message)
                    .await?
            }
            Write::SettingAttributes(attributes) => {
                self.store
                    .append_setting_attributes(self.record.id, unflushed, attributes.clone())
                    .await?;
                self.record.search_attributes = Some(attributes);
            }
        }
        self.telemetry.metrics.observe_append(appending.elapsed());
        {
            let mut recorder = self
                .recorder
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Only this task appends, and it awaited the store: nothing was
            // added meanwhile.
            assert_eq!(
                recorder.history.len(),
                flushed_len,
                "history grew during an append"
            );
            let events = recorder.history.events();
            self.telemetry.appended(
                &self.record,
                &recorder.history,
                &events[events.len() - appended..],
            );
            recorder.history.mark_durable();
        }
        self.lines.release();
        if fault_injection::kill_due(flushed_len) {
            if fault_injection::flush_first() {
                self.telemetry.flush().await;
            }
            fault_injection::kill();
        }
        Ok(())
    }

    /// Starts a task for the activity at `seq` unless one runs already or
    /// the history has its outcome. Resumes at the attempt the history says.
    pub fn ensure_activity_running(&mut self, seq: Seq) {
        if self.running.contains(&seq) {
            return;
        }
        let task = {
            let recorder = self.recorder();
            if recorder.is_replay_only() {
                return;
            }
            let history = &recorder.history;
            if history.outcome(seq).is_some() {
                return;
            }
            let Some(scheduled) = history.command(seq) else {
                return;
            };
            let Event::ActivityScheduled {
                name,
                input,
                options,
                idempotency_key,
                ..
            } = &scheduled.event
            else {
                return;
            };
            let (next_attempt, not_before_ms, heartbeat_details) = match history
                .last_attempt_failure(seq)
            {
                Some((attempt, retry_at, details)) => (attempt + 1, retry_at.unwrap_or(0), details),
                None => (1, 0, None),
            };
            ActivityTask {
                tenant: self.record.tenant.clone(),
                limits: self.limits.clone(),
                seq,
                name: name.clone(),
                input: input.clone(),
                options: options.clone(),
                idempotency_key: idempotency_key.clone(),
                workflow_id: self.record.workflow_id.clone(),
                run_id: self.record.run_id.clone(),
                next_attempt,
                not_before_ms,
                scheduled_at_ms: scheduled.recorded_at_ms,
                heartbeat_details,
                trace_id: trace_id_hex(&self.record, history),
                logs: self.log_sink(),
            }
        };
        self.running.insert(seq);
        // A handle keeps its task's allocation, the future's slot included
        // (~6.5 KiB in a release build), after the task has finished: keep
        // only running ones, so a drive holds memory for its activities in
        // flight, not for every activity it ever ran.
        self.activity_tasks.retain(|task| !task.is_finished());
        let task = self.activities.spawn(task, self.updates.sender());
        self.activity_tasks.push(task);
    }

    /// Runs the child workflow started at `seq` unless it runs already or
    /// the history has its result. Starting is idempotent by the child's
    /// id, so after a crash this resumes the same child.
    pub fn ensure_child_running(&mut self, seq: Seq) {
        if self.running.contains(&seq) || self.recorder().is_replay_only() {
            return;
        }
        let (workflow_type, workflow_id, input) = {
            let recorder = self.recorder();
            if recorder.history.outcome(seq).is_some() {
                return;
            }
            match recorder
                .history
                .command(seq)
                .map(|recorded| &recorded.event)
            {
                Some(Event::ChildStarted {
                    workflow_type,
                    workflow_id,
                    input,
                    ..
                }) => (workflow_type.clone(), workflow_id.clone(), input.clone()),
                _ => return,
            }
        };
        let Some(runtime) = self.runtime.upgrade() else {
            return;
        };
        self.running.insert(seq);
        let updates = self.updates.sender();
        let tenant = self.record.tenant.clone();
        let parent_id = self.record.id;
        tokio::spawn(async move {
            let child = run_child(
                &runtime,
                parent_id,
                &tenant,
                &workflow_type,
                &workflow_id,
                &input,
            );
            let event = match child.await {
                Some(Ok(output)) => Event::ChildCompleted { seq, output },
                Some(Err(error)) => Event::ChildFailed { seq, error },
                None => return,
            };
            let (ack, _journaled) = tokio::sync::oneshot::channel();
            // The parent may be gone (it finished); then nobody waits.
            let _ = updates.send(ActivityUpdate {
                seq,
                events: vec![event],
                ack,
            });
        });
    }

    /// Asks the child workflow started at `seq` to cancel.
    pub async fn cancel_child(&self, seq: Seq) -> Result<(), Interrupt> {
        let workflow_id = match self
            .recorder()
            .history
            .command(seq)
            .map(|recorded| &recorded.event)
        {
            Some(Event::ChildStarted { workflow_id, .. }) => workflow_id.clone(),
            _ => return Ok(()),
        };
        if let Some(child) = self
            .store
            .execution(&self.record.tenant, &workflow_id)
            .await?
        {
            self.store
                .post_message(child.id, MessageKind::Cancel, "", "null", "cancel")
                .await?;
        }
        Ok(())
    }

    fn is_satisfied(&self, wait: &Wait) -> bool {
        is_satisfied_by(&self.recorder().history, wait)
    }

    /// Whether the history answers the `ordinal`-th blocking call `wait`
    /// already — in replay, or an outcome that arrived while the guest
    /// ran — with no cancellation delivered there: what [`Execution::wait`]
    /// would return at once, without giving up the guest's turn.
    pub fn answered_at_once(&self, wait: &Wait, ordinal: u64) -> bool {
        let recorder = self.recorder();
        !recorder.history.cancelled_at(ordinal) && is_satisfied_by(&recorder.history, wait)
    }

    /// Blocks until `wait` is satisfied or a cancellation is delivered to
    /// this blocking call (the `ordinal`-th of the activation), journaling
    /// every outcome that arrives meanwhile in arrival order. When
    /// `may_evict` is set (an instance waits), it returns
    /// [`Interrupt::Suspend`] once the hot window has passed — or at once
    /// when the tenant's instances or the pool are needed elsewhere — so
    /// the driver can drop the instance.
    pub async fn wait(
        &mut self,
        wait: &Wait,
        ordinal: u64,
        may_evict: bool,
    ) -> Result<Woken, Interrupt> {
        self.report_activation();
        if std::mem::take(&mut self.mail_left_for_later) {
            self.mailbox.raise_again();
        }
        let evict_at = tokio::time::Instant::now() + self.hot_window;
        let workflow_deadline = self.recorder().history.timeouts().first_deadline();
        let contention = self
            .instances
            .contention(&self.record.tenant)
            .filter(|_| may_evict);
        let mut graced = false;
        loop {
            // Armed before the pressure check below, so a waiter that
            // arrives between the check and the select still wakes this one.
            let mut contended = contention
                .as_ref()
                .map(|contention| Box::pin(contention.notified()));
            if let Some(contended) = contended.as_mut() {
                contended.as_mut().enable();
            }
            if *self.shutdown.borrow() {
                return Err(Interrupt::Shutdown);
            }
            if self.mailbox.is_terminated() {
                return Err(Interrupt::Terminated);
            }
            if self.recorder().history.cancelled_at(ordinal) {
                return Ok(Woken::Cancelled);
            }
            if self.is_satisfied(wait) {
                return Ok(Woken::Ready);
            }
            if self.recorder().is_replay_only() {
                return Err(Interrupt::Halt(Halt::HistoryEnd));
            }
            if let Some((at, which)) = workflow_deadline
                && clock::now_ms() >= at
            {
                return Err(Interrupt::FailWorkflow(runtime_error(
                    WORKFLOW_TIMED_OUT,
                    format!("the workflow passed its {which} while it waited"),
                )));
            }
            if self.mailbox.take() && self.read_mailbox(wait, ordinal).await? {
                continue;
            }
            // The awaited activity was started before its schedule was
            // written (a deferred command): a quick outcome is written with
            // the schedule, one commit instead of two. A slow one is visible
            // in the history after the grace.
            if !graced && self.schedule_unwritten(wait) {
                graced = true;
                if let Ok(update) =
                    tokio::time::timeout(DEFERRED_SCHEDULE_GRACE, self.updates.recv()).await
                {
                    self.record_update(update).await?;
                    continue;
                }
            }
            // The guest blocks here: what it buffered (outcomes it read,
            // clock and random draws) becomes durable before it sleeps.
            self.flush().await?;
            let evict_now = tokio::time::Instant::now() >= evict_at
                || self.instances.should_evict(&self.record.tenant);
            if may_evict && evict_now {
                return Err(Interrupt::Suspend {
                    wait: wait.clone(),
                    ordinal,
                });
            }
            let hot_window_ends = async {
                if may_evict {
                    tokio::time::sleep_until(evict_at).await
                } else {
                    std::future::pending().await
                }
            };
            let deadline = match wait {
                Wait::Timer(seq) | Wait::Sleep(seq) => self
                    .recorder()
                    .timer_fire_at(*seq)
                    .map(|at| (Event::TimerFired { seq: *seq }, at)),
                Wait::Signal(seq) => self
                    .message_deadline(*seq)
                    .map(|at| (Event::SignalTimedOut { seq: *seq }, at)),
                Wait::Update(seq) => self
                    .message_deadline(*seq)
                    .map(|at| (Event::UpdateTimedOut { seq: *seq }, at)),
                _ => None,
            };
            // Woken by the earlier of the wait's own deadline and the
            // workflow's; the loop then decides which passed.
            let fire_at = deadline
                .as_ref()
                .map(|(_, at)| *at)
                .into_iter()
                .chain(workflow_deadline.map(|(at, _)| at))
                .min();
            let sleep = async {
                match fire_at {
                    Some(fire_at_ms) => {
                        let delay = fire_at_ms.saturating_sub(clock::now_ms());
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await
                    }
                    None => std::future::pending().await,
                }
            };
            let mailbox = self.mailbox.clone();
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                update = self.updates.recv() => self.record_update(update).await?,
                () = sleep => {
                    if let Some((event, at)) = deadline
                        && clock::now_ms() >= at
                    {
                        self.append(event).await?;
                    }
                }
                () = mailbox.changed() => {}
                _ = shutdown.changed() => {}
                () = hot_window_ends => {}
                () = async {
                    match contended {
                        Some(contended) => contended.await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Whether `wait` is for an activity running here whose schedule is
    /// not written yet.
    fn schedule_unwritten(&self, wait: &Wait) -> bool {
        let Wait::Activity(seq) = wait else {
            return false;
        };
        self.running.contains(seq)
            && self.recorder().history.unflushed().iter().any(|recorded| {
                matches!(&recorded.event, Event::ActivityScheduled { seq: scheduled, .. } if scheduled == seq)
            })
    }

    /// Delivers what the mailbox holds for this wait: a cancellation (to any
    /// blocking call) or the oldest signal it waits for. Returns whether it
    /// delivered anything.
    async fn read_mailbox(&mut self, wait: &Wait, ordinal: u64) -> Result<bool, Interrupt> {
        let messages = self.store.undelivered_messages(self.record.id).await?;
        let awaited_names = match wait {
            Wait::Signal(seq) | Wait::Update(seq) => self.awaited_names(*seq),
            _ => Vec::new(),
        };
        let any_mail = !messages.is_empty();
        let chosen = messages
            .into_iter()
            .find(|message| match (message.kind, wait) {
                (MessageKind::Cancel, _) => !matches!(wait, Wait::Sleep(_)),
                (MessageKind::Signal, Wait::Signal(_)) | (MessageKind::Update, Wait::Update(_)) => {
                    awaited_names.contains(&message.name)
                }
                _ => false,
            });
        let Some(message) = chosen else {
            // Not raised now (this wait would spin on it), but at the next.
            self.mail_left_for_later = any_mail;
            return Ok(false);
        };
        let event = match (message.kind, wait) {
            (MessageKind::Cancel, _) => Event::CancellationDelivered { wait: ordinal },
            (MessageKind::Signal, Wait::Signal(seq)) => Event::SignalReceived {
                seq: *seq,
                name: message.name,
                payload: message.payload,
                message_id: message.message_id,
            },
            (MessageKind::Update, Wait::Update(seq)) => Event::UpdateReceived {
                seq: *seq,
                update_id: message.update_id().to_string(),
                name: message.name,
                args: message.payload,
            },
            (MessageKind::Signal | MessageKind::Update | MessageKind::Upgrade, _) => {
                return Ok(false);
            }
        };
        // Other messages may wait for a later call: look again next time.
        self.mailbox.raise_again();
        self.append_delivering(event, message.id).await?;
        Ok(true)
    }

    /// The names the signal or update wait at `seq` takes.
    fn awaited_names(&self, seq: Seq) -> Vec<String> {
        match self
            .recorder()
            .history
            .command(seq)
            .map(|recorded| &recorded.event)
        {
            Some(Event::SignalAwaited { name, .. }) => vec![name.clone()],
            Some(Event::UpdateAwaited { names, .. }) => names.clone(),
            _ => Vec::new(),
        }
    }

    /// When the signal or update wait at `seq` gives up, if it does.
    fn message_deadline(&self, seq: Seq) -> Option<u64> {
        match self
            .recorder()
            .history
            .command(seq)
            .map(|recorded| &recorded.event)
        {
            Some(
                Event::SignalAwaited { deadline_ms, .. } | Event::UpdateAwaited { deadline_ms, .. },
            ) => *deadline_ms,
            _ => None,
        }
    }

    /// Wakes the callers waiting for update answers (they look again).
    pub fn note_update_answered(&self) {
        if let Some(runtime) = self.runtime.upgrade() {
            runtime.note_update_answered();
        }
    }

    async fn record_update(&mut self, update: ActivityUpdate) -> Result<(), Interrupt> {
        let finished = update.events.iter().any(|event| {
            matches!(
                event,
                Event::ActivityCompleted { .. }
                    | Event::ActivityFailed { .. }
                    | Event::ChildCompleted { .. }
                    | Event::ChildFailed { .. }
            )
        });
        if finished {
            // An outcome is only buffered: the guest may go on at once,
            // and the write it makes next (its next command, or the flush
            // before it blocks) carries the outcome in the same commit.
            // Nothing the guest does after reading it leaves the process
            // before that write: commands append, waits flush first, and
            // a crash before it only runs the activity again (at least
            // once, under the same idempotency key).
            self.record(update.events)?;
            self.running.remove(&update.seq);
            if self.buffered_piled_up() {
                self.flush().await?;
            }
        } else {
            // A failed attempt is written before the next one starts (the
            // task waits for the ack), so the history counts every attempt.
            self.append_all(update.events, None).await?;
        }
        // The task may have been abandoned meanwhile; nothing waits then.
        let _ = update.ack.send(());
        Ok(())
    }
}

impl Drop for Execution {
    /// The drive is over (finished, terminated, shut down, or failed):
    /// its activity attempts stop with it. A later drive resumes any
    /// activity the history leaves open, at the attempt it records.
    fn drop(&mut self) {
        for task in &self.activity_tasks {
            task.abort();
        }
    }
}

/// Whether `history` holds what `wait` waits for.
fn is_satisfied_by(history: &History, wait: &Wait) -> bool {
    match wait {
        Wait::Timer(seq)
        | Wait::Sleep(seq)
        | Wait::Activity(seq)
        | Wait::Signal(seq)
        | Wait::Update(seq)
        | Wait::Child(seq) => history.outcome(*seq).is_some(),
        Wait::AnyActivity(seqs) => history.first_completed(seqs).is_some(),
    }
}

/// Crash injection for tests: with `REPRISE_FAULT_KILL_AT_POSITION=N` set,
/// the process SIGKILLs itself right after the append that makes an
/// execution's history reach N events — a crash at an exact journal
/// position, which polling from outside cannot hit when the next event
/// follows within microseconds.
mod fault_injection {
    use std::sync::OnceLock;

    /// Whether the history length reached `REPRISE_FAULT_KILL_AT_POSITION`.
    pub fn kill_due(history_len: usize) -> bool {
        static KILL_AT: OnceLock<Option<usize>> = OnceLock::new();
        let kill_at = KILL_AT.get_or_init(|| {
            std::env::var("REPRISE_FAULT_KILL_AT_POSITION")
                .ok()
                .and_then(|value| value.parse().ok())
        });
        kill_at.is_some_and(|position| history_len >= position)
    }

    /// With `REPRISE_FAULT_FLUSH_TELEMETRY=1`, spans are exported before
    /// the kill: a crash right after an export.
    pub fn flush_first() -> bool {
        std::env::var("REPRISE_FAULT_FLUSH_TELEMETRY").is_ok_and(|value| value == "1")
    }

    pub fn kill() {
        // SAFETY: kill(2) on our own pid with a constant signal has no
        // memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
