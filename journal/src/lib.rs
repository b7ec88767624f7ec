//! The event model of an execution's history and the replay logic over it.
//!
//! `journal` knows nothing about SQL or Wasm: it holds the events of one
//! execution, decides for every guest command whether it is new or a replay,
//! and explains a mismatch as a [`Nondeterminism`] error.
//!
//! Two numberings run through a history:
//! - the **position** of an event (1, 2, 3, … with no gap) is its place in
//!   the append-only history; the store's primary key;
//! - the **sequence number** (`seq`) of a *command* — a call the guest makes
//!   (clock read, random draw, activity, timer) — counts the guest's calls in
//!   program order, so a deterministic guest makes the same command at the
//!   same `seq` on every run. Outcomes (activity completed, timer fired) name
//!   the `seq` of the command they answer.

pub mod clock;

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The ordinal of a guest command within an execution, starting at 1.
pub type Seq = u64;

/// The place of an event in an execution's history, starting at 1.
pub type Position = u64;

/// The largest JSON payload (input, output, error details) we journal.
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// The most random bytes one `random-bytes` call may draw.
pub const RANDOM_BYTES_MAX: u32 = 4096;

/// The most events one history may hold; past it the execution fails.
pub const HISTORY_EVENTS_MAX: usize = 100_000;
/// Default and ceiling of a history's payload bytes (`history_bytes_max`,
/// see [`Event::payload_bytes`]): a live instance keeps its history in
/// memory, and a replay reads all of it.
pub const HISTORY_BYTES_MAX: u64 = 50 * 1024 * 1024;

/// Which clock a `ClockRead` read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// Nanoseconds since the Unix epoch.
    Wall,
    /// Nanoseconds on a clock that never goes backwards.
    Monotonic,
}

/// A retry policy as journaled (the WIT record, with defaults applied).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub initial_interval_ms: u64,
    pub backoff_coefficient: f64,
    pub maximum_interval_ms: u64,
    /// Attempts in all; 0 means unlimited.
    pub maximum_attempts: u32,
    pub non_retryable_error_types: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_interval_ms: 1_000,
            backoff_coefficient: 2.0,
            maximum_interval_ms: 100_000,
            maximum_attempts: 0,
            non_retryable_error_types: Vec::new(),
        }
    }
}

impl RetryPolicy {
    fn is_default(&self) -> bool {
        *self == RetryPolicy::default()
    }

    /// Rejects a policy that cannot mean what its author wanted.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.backoff_coefficient >= 1.0 && self.backoff_coefficient.is_finite()) {
            return Err(format!(
                "backoff_coefficient must be a finite number >= 1, got {}",
                self.backoff_coefficient
            ));
        }
        if self.initial_interval_ms == 0 {
            return Err("initial_interval_ms must be > 0".to_string());
        }
        if self.maximum_interval_ms < self.initial_interval_ms {
            return Err(format!(
                "maximum_interval_ms ({}) must be >= initial_interval_ms ({})",
                self.maximum_interval_ms, self.initial_interval_ms
            ));
        }
        Ok(())
    }

    /// The delay before attempt `next_attempt` (2 = first retry), without jitter.
    pub fn backoff_ms(&self, next_attempt: u32) -> u64 {
        let retries_before = next_attempt.saturating_sub(2);
        let factor = self.backoff_coefficient.powi(retries_before.min(64) as i32);
        let delay = (self.initial_interval_ms as f64) * factor;
        delay.min(self.maximum_interval_ms as f64) as u64
    }
}

/// Activity options as journaled, with runtime defaults applied. Defaults
/// are left out of the stored JSON: most calls use them, and every byte is
/// read again on each replay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivityOptions {
    #[serde(default, skip_serializing_if = "RetryPolicy::is_default")]
    pub retry: RetryPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_to_close_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_to_close_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// The saga step this call compensates, if it is a compensation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensates: Option<String>,
}

/// An error raised by one activity attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityError {
    pub error_type: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default)]
    pub non_retryable: bool,
}

/// Why an activity call failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    NonRetryable,
    AttemptsExhausted,
    TimedOut,
    UnknownActivity,
    Cancelled,
}

/// The final failure of an activity call, as the workflow sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityFailure {
    pub reason: FailureReason,
    pub attempts: u32,
    pub last_error: ActivityError,
}

/// The error with which an execution failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowError {
    pub error_type: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

/// The W3C trace an execution belongs to (see `telemetry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span (16 hex digits) when the start request carried a
    /// `traceparent`: the workflow's span is its child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
}

/// The host behaviour new runs are recorded under. A run replays with the
/// behaviour its `WorkflowStarted` names, so a change in how the host turns
/// a plain-WASI call into journal entries never breaks an old history:
/// - 0: `get-random-bytes(n)` journals 4n bytes (wasmtime-wasi samples each
///   byte as a `u32`);
/// - 1: it journals n bytes;
/// - 2: a `poll` over timers reports, of the timers that fired, only those
///   due first, so a guest whose event loop ran late still runs its timer
///   callbacks in due order (it polls again for the rest).
pub const HOST_BEHAVIOUR: u32 = 2;

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// One entry of a history. Commands carry the `seq` the guest gave them;
/// outcomes carry the `seq` of the command they answer.
///
/// Stored as `{"type": "...", "data": {...}}`: with the tag first, serde
/// decodes without buffering (an internally tagged enum would buffer every
/// event, which dominated replay time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    WorkflowStarted {
        workflow_type: String,
        module_digest: String,
        input: String,
        /// The execution's trace: every span it emits, across crashes and
        /// restarts, belongs to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<TraceContext>,
        /// How the host served plain-WASI calls when the run started (see
        /// [`HOST_BEHAVIOUR`]); histories from before it was recorded are 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        host_behaviour: u32,
        /// The run this one continues (by `continue-as-new`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continued_from: Option<String>,
        /// When the execution (every run) and this run must have ended.
        #[serde(default, skip_serializing_if = "WorkflowTimeouts::is_unset")]
        timeouts: WorkflowTimeouts,
    },
    ClockRead {
        seq: Seq,
        clock: Clock,
        value_ns: u64,
    },
    RandomDrawn {
        seq: Seq,
        /// Hex-encoded.
        bytes: String,
    },
    ActivityScheduled {
        seq: Seq,
        name: String,
        input: String,
        options: ActivityOptions,
        idempotency_key: String,
    },
    ActivityAttemptFailed {
        seq: Seq,
        attempt: u32,
        error: ActivityError,
        /// When the next attempt starts (ms since the epoch); none if the
        /// policy gave up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at_ms: Option<u64>,
        /// Details of the attempt's last heartbeat, for the next attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_details: Option<String>,
    },
    ActivityCompleted {
        seq: Seq,
        attempt: u32,
        output: String,
    },
    ActivityFailed {
        seq: Seq,
        failure: ActivityFailure,
    },
    TimerStarted {
        seq: Seq,
        duration_ms: u64,
        fire_at_ms: u64,
    },
    TimerFired {
        seq: Seq,
    },
    /// Which of the WASI timers `timers` (their `TimerStarted` seqs) had
    /// fired when the guest looked (`pollable.ready`, `poll`): recorded so
    /// the answer is the same in replay.
    TimersPolled {
        seq: Seq,
        timers: Vec<Seq>,
        ready: Vec<Seq>,
    },
    /// The workflow waits for signal `name` (until `deadline_ms`, if set).
    SignalAwaited {
        seq: Seq,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<u64>,
    },
    SignalReceived {
        seq: Seq,
        name: String,
        /// JSON.
        payload: String,
        message_id: String,
    },
    SignalTimedOut {
        seq: Seq,
    },
    /// The workflow waits for an update named one of `names` (until
    /// `deadline_ms`, if set).
    UpdateAwaited {
        seq: Seq,
        names: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<u64>,
    },
    /// Update `update_id` reached the wait at `seq`.
    UpdateReceived {
        seq: Seq,
        update_id: String,
        name: String,
        /// JSON.
        args: String,
    },
    UpdateTimedOut {
        seq: Seq,
    },
    /// The workflow answered update `update_id` with `output` (JSON); its
    /// caller gets it from here.
    UpdateCompleted {
        seq: Seq,
        update_id: String,
        output: String,
    },
    /// The workflow answered update `update_id` with an error.
    UpdateFailed {
        seq: Seq,
        update_id: String,
        error: WorkflowError,
    },
    ChildStarted {
        seq: Seq,
        workflow_type: String,
        workflow_id: String,
        input: String,
    },
    ChildCompleted {
        seq: Seq,
        output: String,
    },
    ChildFailed {
        seq: Seq,
        error: WorkflowError,
    },
    /// A cancellation request reached the guest at its `wait`-th blocking
    /// call of the activation (counted from 1), which returned "cancelled".
    CancellationDelivered {
        wait: u64,
    },
    /// The workflow changed its search attributes: `attributes` is the
    /// upsert as the code sent it (`null` removes a name).
    SearchAttributesUpserted {
        seq: Seq,
        attributes: String,
    },
    /// The execution moved to module `module_digest` (an upgrade of
    /// running executions, after its history replayed cleanly against it):
    /// activations from here on, and every replay, run that module.
    ModuleUpgraded {
        from_digest: String,
        module_digest: String,
    },
    /// The code asked `patched(change_id)` (or `deprecate-patch`) while
    /// live: this execution takes the changed path. Not a command: it has
    /// no `seq`, so histories with or without it replay under the same code.
    PatchMarked {
        change_id: String,
    },
    WorkflowCompleted {
        output: String,
    },
    WorkflowFailed {
        error: WorkflowError,
    },
    /// The workflow ended with a `Cancelled` error after a cancellation.
    WorkflowCancelled {
        error: WorkflowError,
    },
    /// An operator ended the execution; nothing more runs.
    WorkflowTerminated {
        reason: String,
    },
    /// The workflow ended this run and started run `next_run_id` of the
    /// same workflow id, with `input`, on module `module_digest`, in the
    /// same transaction.
    WorkflowContinuedAsNew {
        input: String,
        next_run_id: String,
        module_digest: String,
    },
}

impl Event {
    /// The bytes of what workflows and their callers choose to put in the
    /// event — inputs, outputs, payloads, errors, attributes — which is
    /// what a tenant's `history_bytes_max` counts. Names and ids have
    /// limits of their own and are not counted.
    pub fn payload_bytes(&self) -> u64 {
        let error = |message: &str, details: &Option<String>| {
            message.len() + details.as_ref().map_or(0, String::len)
        };
        let bytes = match self {
            Event::WorkflowStarted { input, .. }
            | Event::ActivityScheduled { input, .. }
            | Event::ChildStarted { input, .. }
            | Event::WorkflowContinuedAsNew { input, .. } => input.len(),
            Event::RandomDrawn { bytes, .. } => bytes.len(),
            Event::ActivityAttemptFailed {
                error: failure,
                heartbeat_details,
                ..
            } => {
                error(&failure.message, &failure.details)
                    + heartbeat_details.as_ref().map_or(0, String::len)
            }
            Event::ActivityFailed { failure, .. } => {
                error(&failure.last_error.message, &failure.last_error.details)
            }
            Event::ActivityCompleted { output, .. }
            | Event::UpdateCompleted { output, .. }
            | Event::ChildCompleted { output, .. }
            | Event::WorkflowCompleted { output } => output.len(),
            Event::SignalReceived { payload, .. } => payload.len(),
            Event::UpdateReceived { args, .. } => args.len(),
            Event::SearchAttributesUpserted { attributes, .. } => attributes.len(),
            Event::UpdateFailed { error: failure, .. }
            | Event::ChildFailed { error: failure, .. }
            | Event::WorkflowFailed { error: failure }
            | Event::WorkflowCancelled { error: failure } => {
                error(&failure.message, &failure.details)
            }
            Event::WorkflowTerminated { reason } => reason.len(),
            Event::ClockRead { .. }
            | Event::TimerStarted { .. }
            | Event::TimerFired { .. }
            | Event::TimersPolled { .. }
            | Event::SignalAwaited { .. }
            | Event::SignalTimedOut { .. }
            | Event::UpdateAwaited { .. }
            | Event::UpdateTimedOut { .. }
            | Event::CancellationDelivered { .. }
            | Event::ModuleUpgraded { .. }
            | Event::PatchMarked { .. } => 0,
        };
        bytes as u64
    }

    /// The event's kind as written in the `kind` column and in histories.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::WorkflowStarted { .. } => "WorkflowStarted",
            Event::ClockRead { .. } => "ClockRead",
            Event::RandomDrawn { .. } => "RandomDrawn",
            Event::ActivityScheduled { .. } => "ActivityScheduled",
            Event::ActivityAttemptFailed { .. } => "ActivityAttemptFailed",
            Event::ActivityCompleted { .. } => "ActivityCompleted",
            Event::ActivityFailed { .. } => "ActivityFailed",
            Event::TimerStarted { .. } => "TimerStarted",
            Event::TimerFired { .. } => "TimerFired",
            Event::TimersPolled { .. } => "TimersPolled",
            Event::SignalAwaited { .. } => "SignalAwaited",
            Event::SignalReceived { .. } => "SignalReceived",
            Event::SignalTimedOut { .. } => "SignalTimedOut",
            Event::UpdateAwaited { .. } => "UpdateAwaited",
            Event::UpdateReceived { .. } => "UpdateReceived",
            Event::UpdateTimedOut { .. } => "UpdateTimedOut",
            Event::UpdateCompleted { .. } => "UpdateCompleted",
            Event::UpdateFailed { .. } => "UpdateFailed",
            Event::CancellationDelivered { .. } => "CancellationDelivered",
            Event::PatchMarked { .. } => "PatchMarked",
            Event::ModuleUpgraded { .. } => "ModuleUpgraded",
            Event::SearchAttributesUpserted { .. } => "SearchAttributesUpserted",
            Event::ChildStarted { .. } => "ChildStarted",
            Event::ChildCompleted { .. } => "ChildCompleted",
            Event::ChildFailed { .. } => "ChildFailed",
            Event::WorkflowCompleted { .. } => "WorkflowCompleted",
            Event::WorkflowFailed { .. } => "WorkflowFailed",
            Event::WorkflowCancelled { .. } => "WorkflowCancelled",
            Event::WorkflowTerminated { .. } => "WorkflowTerminated",
            Event::WorkflowContinuedAsNew { .. } => "WorkflowContinuedAsNew",
        }
    }

    /// The `seq` of a command event, `None` for anything else.
    pub fn command_seq(&self) -> Option<Seq> {
        match self {
            Event::ClockRead { seq, .. }
            | Event::RandomDrawn { seq, .. }
            | Event::ActivityScheduled { seq, .. }
            | Event::TimerStarted { seq, .. }
            | Event::TimersPolled { seq, .. }
            | Event::SignalAwaited { seq, .. }
            | Event::UpdateAwaited { seq, .. }
            | Event::UpdateCompleted { seq, .. }
            | Event::UpdateFailed { seq, .. }
            | Event::ChildStarted { seq, .. }
            | Event::SearchAttributesUpserted { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// The `seq` an outcome answers, `None` for anything else.
    fn outcome_seq(&self) -> Option<Seq> {
        match self {
            Event::ActivityCompleted { seq, .. }
            | Event::ActivityFailed { seq, .. }
            | Event::TimerFired { seq }
            | Event::SignalReceived { seq, .. }
            | Event::SignalTimedOut { seq }
            | Event::UpdateReceived { seq, .. }
            | Event::UpdateTimedOut { seq }
            | Event::ChildCompleted { seq, .. }
            | Event::ChildFailed { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::WorkflowCompleted { .. }
                | Event::WorkflowFailed { .. }
                | Event::WorkflowCancelled { .. }
                | Event::WorkflowTerminated { .. }
                | Event::WorkflowContinuedAsNew { .. }
        )
    }
}

/// The deadlines of a workflow, fixed when a run starts: past the earlier
/// one the host fails the run with [`WORKFLOW_TIMED_OUT`] at its next wait
/// (the wall-clock backstop bounds computing between waits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowTimeouts {
    /// The end of the whole execution, every continued run included (ms
    /// since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_deadline_ms: Option<u64>,
    /// The limit on one run; each run continued as new gets it afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout_ms: Option<u64>,
    /// The end of this run (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_deadline_ms: Option<u64>,
}

/// The error type of a run that passed its execution or run deadline.
pub const WORKFLOW_TIMED_OUT: &str = "WorkflowTimedOut";

impl WorkflowTimeouts {
    /// Timeouts for a run starting at `now_ms`: the execution's deadline
    /// as given, a run deadline `run_timeout_ms` from now.
    pub fn starting_at(
        now_ms: u64,
        execution_deadline_ms: Option<u64>,
        run_timeout_ms: Option<u64>,
    ) -> WorkflowTimeouts {
        WorkflowTimeouts {
            execution_deadline_ms,
            run_timeout_ms,
            run_deadline_ms: run_timeout_ms.map(|timeout| now_ms.saturating_add(timeout)),
        }
    }

    fn is_unset(&self) -> bool {
        *self == WorkflowTimeouts::default()
    }

    /// The earlier deadline, and which one it is.
    pub fn first_deadline(&self) -> Option<(u64, &'static str)> {
        let execution = self
            .execution_deadline_ms
            .map(|at| (at, "execution timeout"));
        let run = self.run_deadline_ms.map(|at| (at, "run timeout"));
        match (execution, run) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (one, None) | (None, one) => one,
        }
    }
}

/// An event with its place in the history and the time it was recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: Position,
    pub recorded_at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// What the guest asked for at one `seq`: compared with the history on replay.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    ReadClock(Clock),
    DrawRandom {
        len: usize,
    },
    ScheduleActivity {
        name: String,
        input: String,
    },
    StartTimer {
        duration_ms: u64,
    },
    PollTimers {
        timers: Vec<Seq>,
    },
    AwaitSignal {
        name: String,
    },
    AwaitUpdate {
        names: Vec<String>,
    },
    /// The answer to an update: its output, or its error.
    CompleteUpdate {
        update_id: String,
        outcome: Result<String, WorkflowError>,
    },
    StartChild {
        workflow_type: String,
        input: String,
    },
    UpsertSearchAttributes {
        attributes: String,
    },
}

impl Command {
    fn describe(&self) -> String {
        match self {
            Command::ReadClock(clock) => format!("a {} clock read", clock_name(*clock)),
            Command::DrawRandom { len } => format!("a draw of {len} random bytes"),
            Command::ScheduleActivity { name, input } => describe_activity(name, input),
            Command::StartTimer { duration_ms } => format!("a timer of {duration_ms} ms"),
            Command::PollTimers { timers } => format!("a look at timers {timers:?}"),
            Command::AwaitSignal { name } => format!("a wait for signal `{name}`"),
            Command::AwaitUpdate { names } => describe_update_wait(names),
            Command::CompleteUpdate { update_id, outcome } => {
                describe_update_answer(update_id, outcome.as_ref())
            }
            Command::StartChild {
                workflow_type,
                input,
            } => describe_child(workflow_type, input),
            Command::UpsertSearchAttributes { attributes } => {
                format!("a search attribute upsert {attributes}")
            }
        }
    }

    /// Whether a recorded command event answers this command.
    fn matches(&self, recorded: &Event) -> bool {
        match (self, recorded) {
            (Command::ReadClock(a), Event::ClockRead { clock: b, .. }) => a == b,
            (Command::DrawRandom { len }, Event::RandomDrawn { bytes, .. }) => {
                bytes.len() == len * 2
            }
            (
                Command::ScheduleActivity { name, input },
                Event::ActivityScheduled {
                    name: recorded_name,
                    input: recorded_input,
                    ..
                },
            ) => name == recorded_name && input == recorded_input,
            (
                Command::StartTimer { duration_ms },
                Event::TimerStarted {
                    duration_ms: recorded,
                    ..
                },
            ) => duration_ms == recorded,
            (
                Command::PollTimers { timers },
                Event::TimersPolled {
                    timers: recorded, ..
                },
            ) => timers == recorded,
            (Command::AwaitSignal { name }, Event::SignalAwaited { name: recorded, .. }) => {
                name == recorded
            }
            (
                Command::AwaitUpdate { names },
                Event::UpdateAwaited {
                    names: recorded, ..
                },
            ) => names == recorded,
            (
                Command::CompleteUpdate {
                    update_id,
                    outcome: Ok(output),
                },
                Event::UpdateCompleted {
                    update_id: recorded_id,
                    output: recorded,
                    ..
                },
            ) => update_id == recorded_id && output == recorded,
            (
                Command::CompleteUpdate {
                    update_id,
                    outcome: Err(error),
                },
                Event::UpdateFailed {
                    update_id: recorded_id,
                    error: recorded,
                    ..
                },
            ) => update_id == recorded_id && error == recorded,
            (
                Command::StartChild {
                    workflow_type,
                    input,
                },
                Event::ChildStarted {
                    workflow_type: recorded_type,
                    input: recorded_input,
                    ..
                },
            ) => workflow_type == recorded_type && input == recorded_input,
            (
                Command::UpsertSearchAttributes { attributes },
                Event::SearchAttributesUpserted {
                    attributes: recorded,
                    ..
                },
            ) => attributes == recorded,
            _ => false,
        }
    }
}

fn clock_name(clock: Clock) -> &'static str {
    match clock {
        Clock::Wall => "wall",
        Clock::Monotonic => "monotonic",
    }
}

fn describe_recorded(event: &Event) -> String {
    match event {
        Event::ClockRead { clock, .. } => format!("a {} clock read", clock_name(*clock)),
        Event::RandomDrawn { bytes, .. } => format!("a draw of {} random bytes", bytes.len() / 2),
        Event::ActivityScheduled { name, input, .. } => describe_activity(name, input),
        Event::TimerStarted { duration_ms, .. } => format!("a timer of {duration_ms} ms"),
        Event::TimersPolled { timers, .. } => format!("a look at timers {timers:?}"),
        Event::SignalAwaited { name, .. } => format!("a wait for signal `{name}`"),
        Event::UpdateAwaited { names, .. } => describe_update_wait(names),
        Event::UpdateCompleted {
            update_id, output, ..
        } => describe_update_answer(update_id, Ok(output)),
        Event::UpdateFailed {
            update_id, error, ..
        } => describe_update_answer(update_id, Err(error)),
        Event::ChildStarted {
            workflow_type,
            input,
            ..
        } => describe_child(workflow_type, input),
        Event::SearchAttributesUpserted { attributes, .. } => {
            format!("a search attribute upsert {attributes}")
        }
        other => other.kind().to_string(),
    }
}

/// How much of an activity input a nondeterminism error quotes.
const QUOTED_INPUT_CHARS_MAX: usize = 200;

fn describe_activity(name: &str, input: &str) -> String {
    let quoted: String = input.chars().take(QUOTED_INPUT_CHARS_MAX).collect();
    let ellipsis = if quoted.len() < input.len() {
        "…"
    } else {
        ""
    };
    format!(
        "activity `{name}` with input {quoted}{ellipsis} (sha256 {})",
        short_hash(input)
    )
}

fn describe_update_wait(names: &[String]) -> String {
    format!("a wait for an update ({})", names.join(", "))
}

fn describe_update_answer(update_id: &str, outcome: Result<&String, &WorkflowError>) -> String {
    match outcome {
        Ok(output) => format!(
            "the answer to update `{update_id}` (output sha256 {})",
            short_hash(output)
        ),
        Err(error) => format!("the answer to update `{update_id}` (error {error})"),
    }
}

fn describe_child(workflow_type: &str, input: &str) -> String {
    let quoted: String = input.chars().take(QUOTED_INPUT_CHARS_MAX).collect();
    format!(
        "child workflow `{workflow_type}` with input {quoted} (sha256 {})",
        short_hash(input)
    )
}

/// The first 12 hex digits of the SHA-256 of `text`: enough to tell inputs apart.
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..6])
}

/// The code asked for something other than what the history recorded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Nondeterminism {
    #[error(
        "nondeterminism at seq {seq}: the history recorded {recorded}, but the workflow code asked for {requested}"
    )]
    Mismatch {
        seq: Seq,
        recorded: String,
        requested: String,
    },
    #[error(
        "nondeterminism: the workflow code finished after seq {last_seq}, but the history recorded more commands, starting with {next_recorded} at seq {next_seq}"
    )]
    FinishedEarly {
        last_seq: Seq,
        next_seq: Seq,
        next_recorded: String,
    },
    #[error(
        "nondeterminism: the history recorded the workflow's result as {recorded}, but the workflow code returned {returned}"
    )]
    DifferentResult { recorded: String, returned: String },
}

/// The whole history of one execution, in memory, plus the events the guest
/// produced that are not yet durable.
///
/// Invariant: `events[i].position == i + 1`; `events[..durable_len]` are in
/// the store; the rest are buffered clock reads and random draws that the
/// next durable append writes together with its own event.
#[derive(Debug, Default)]
pub struct History {
    events: Vec<RecordedEvent>,
    durable_len: usize,
    /// Index of the command event of `seq`, at `seq - 1` (commands are
    /// numbered 1, 2, 3, … without gaps).
    commands: Vec<usize>,
    /// Index of the outcome answering `seq`, at `seq - 1`; [`NO_OUTCOME`]
    /// where none has arrived.
    outcomes: Vec<usize>,
    /// The highest command `seq` in the history.
    last_seq: Seq,
    /// Blocking-call ordinal → index of the `CancellationDelivered` there.
    cancellations: HashMap<u64, usize>,
    /// Change ids of the `PatchMarked` events.
    patches: HashSet<String>,
    /// The events' [`Event::payload_bytes`], summed.
    payload_bytes: u64,
}

/// The mark in [`History`]'s outcome index for a command not yet answered.
const NO_OUTCOME: usize = usize::MAX;

/// Where `seq` is kept in a seq-indexed vector (seq 0 never exists).
fn seq_slot(seq: Seq) -> Option<usize> {
    usize::try_from(seq).ok()?.checked_sub(1)
}

impl History {
    /// Rebuilds a history from the store's rows.
    ///
    /// Fails if the positions are not 1, 2, 3, … or commands skip a `seq`:
    /// a history that breaks these is corrupt and must not be replayed.
    pub fn from_recorded(events: Vec<RecordedEvent>) -> Result<History, String> {
        let mut history = History::default();
        // Indexed where they lie, then moved in whole: a long history is
        // megabytes, and pushing the events one by one copied them again.
        for (index, recorded) in events.iter().enumerate() {
            history.index(index, recorded)?;
        }
        history.events = events;
        history.durable_len = history.events.len();
        Ok(history)
    }

    fn push(&mut self, recorded: RecordedEvent) -> Result<(), String> {
        self.index(self.events.len(), &recorded)?;
        self.events.push(recorded);
        Ok(())
    }

    /// Checks that `recorded` may follow the history's first `index`
    /// events, and indexes it as the event at `index`.
    fn index(&mut self, index: usize, recorded: &RecordedEvent) -> Result<(), String> {
        let expected = index as Position + 1;
        self.payload_bytes += recorded.event.payload_bytes();
        if recorded.position != expected {
            return Err(format!(
                "history is not contiguous: expected position {expected}, found {}",
                recorded.position
            ));
        }
        if let Some(seq) = recorded.event.command_seq() {
            if seq != self.last_seq + 1 {
                return Err(format!(
                    "history commands are not contiguous: expected seq {}, found {seq} at position {}",
                    self.last_seq + 1,
                    recorded.position
                ));
            }
            self.last_seq = seq;
            self.commands.push(index);
            self.outcomes.push(NO_OUTCOME);
        }
        if let Some(seq) = recorded.event.outcome_seq() {
            let Some(slot) = seq_slot(seq).filter(|&slot| slot < self.commands.len()) else {
                return Err(format!(
                    "history has an outcome for seq {seq} at position {} before its command",
                    recorded.position
                ));
            };
            if self.outcomes[slot] != NO_OUTCOME {
                return Err(format!(
                    "history has two outcomes for seq {seq} (second at position {})",
                    recorded.position
                ));
            }
            self.outcomes[slot] = index;
        }
        if let Event::CancellationDelivered { wait } = recorded.event
            && self.cancellations.insert(wait, index).is_some()
        {
            return Err(format!(
                "history delivers a cancellation twice (second at position {})",
                recorded.position
            ));
        }
        if let Event::PatchMarked { change_id } = &recorded.event
            && !self.patches.insert(change_id.clone())
        {
            return Err(format!(
                "history marks patch `{change_id}` twice (second at position {})",
                recorded.position
            ));
        }
        Ok(())
    }

    /// What workflows and callers put in the history, in bytes (see
    /// [`Event::payload_bytes`]).
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Whether a cancellation was delivered at blocking call `wait`.
    pub fn cancelled_at(&self, wait: u64) -> bool {
        self.cancellations.contains_key(&wait)
    }

    /// Whether a cancellation was delivered anywhere in the history.
    pub fn was_cancelled(&self) -> bool {
        !self.cancellations.is_empty()
    }

    /// Adds an event produced now; it stays buffered (see
    /// [`History::unflushed`]) until [`History::mark_durable`].
    pub fn record(&mut self, event: Event, now_ms: u64) -> &RecordedEvent {
        let position = self.events.len() as Position + 1;
        let recorded = RecordedEvent {
            position,
            recorded_at_ms: now_ms,
            event,
        };
        // A violation here is a bug in the host (it numbered a command out of
        // order), not bad input: fail loudly.
        if let Err(problem) = self.push(recorded) {
            panic!("host broke a history invariant: {problem}");
        }
        &self.events[self.events.len() - 1]
    }

    /// The buffered events, to be written by the next durable append.
    pub fn unflushed(&self) -> &[RecordedEvent] {
        &self.events[self.durable_len..]
    }

    /// Marks every event as durable (after the store committed them).
    pub fn mark_durable(&mut self) {
        self.durable_len = self.events.len();
    }

    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    pub fn command(&self, seq: Seq) -> Option<&RecordedEvent> {
        let index = *self.commands.get(seq_slot(seq)?)?;
        Some(&self.events[index])
    }

    pub fn outcome(&self, seq: Seq) -> Option<&RecordedEvent> {
        self.outcome_index(seq).map(|index| &self.events[index])
    }

    fn outcome_index(&self, seq: Seq) -> Option<usize> {
        let index = *self.outcomes.get(seq_slot(seq)?)?;
        (index != NO_OUTCOME).then_some(index)
    }

    /// The last failed attempt of the activity at `seq`: its number, when
    /// the next attempt is due, and its last heartbeat details.
    pub fn last_attempt_failure(&self, seq: Seq) -> Option<(u32, Option<u64>, Option<String>)> {
        self.events
            .iter()
            .rev()
            .find_map(|recorded| match &recorded.event {
                Event::ActivityAttemptFailed {
                    seq: failed_seq,
                    attempt,
                    retry_at_ms,
                    heartbeat_details,
                    ..
                } if *failed_seq == seq => {
                    Some((*attempt, *retry_at_ms, heartbeat_details.clone()))
                }
                _ => None,
            })
    }

    /// The module the execution runs now: the last upgrade's, else the
    /// one it started on.
    pub fn module_digest(&self) -> Option<&str> {
        self.events
            .iter()
            .rev()
            .find_map(|recorded| match &recorded.event {
                Event::ModuleUpgraded { module_digest, .. }
                | Event::WorkflowStarted { module_digest, .. } => Some(module_digest.as_str()),
                _ => None,
            })
    }

    /// The input the execution started with.
    pub fn started(&self) -> Option<(&str, &str, &str)> {
        match self.events.first().map(|recorded| &recorded.event) {
            Some(Event::WorkflowStarted {
                workflow_type,
                module_digest,
                input,
                ..
            }) => Some((workflow_type, module_digest, input)),
            _ => None,
        }
    }

    /// The host behaviour the run was recorded under ([`HOST_BEHAVIOUR`]).
    pub fn host_behaviour(&self) -> u32 {
        match self.events.first().map(|recorded| &recorded.event) {
            Some(Event::WorkflowStarted { host_behaviour, .. }) => *host_behaviour,
            _ => HOST_BEHAVIOUR,
        }
    }

    /// The deadlines recorded when the run started.
    pub fn timeouts(&self) -> WorkflowTimeouts {
        match self.events.first().map(|recorded| &recorded.event) {
            Some(Event::WorkflowStarted { timeouts, .. }) => *timeouts,
            _ => WorkflowTimeouts::default(),
        }
    }

    /// The trace recorded when the execution started.
    pub fn trace(&self) -> Option<&TraceContext> {
        match self.events.first().map(|recorded| &recorded.event) {
            Some(Event::WorkflowStarted { trace, .. }) => trace.as_ref(),
            _ => None,
        }
    }

    /// The terminal event, if the execution finished.
    pub fn terminal(&self) -> Option<&Event> {
        self.events
            .last()
            .map(|recorded| &recorded.event)
            .filter(|event| event.is_terminal())
    }

    /// The workflow's answer to update `update_id` (`UpdateCompleted` or
    /// `UpdateFailed`), if it gave one.
    pub fn update_answer(&self, update_id: &str) -> Option<&Event> {
        update_answer_in(&self.events, update_id)
    }

    /// Whether update `update_id` reached the workflow.
    pub fn update_delivered(&self, update_id: &str) -> bool {
        update_delivered_in(&self.events, update_id)
    }

    /// Of the activities in `seqs`, the one whose outcome comes first in the history.
    pub fn first_completed(&self, seqs: &[Seq]) -> Option<Seq> {
        seqs.iter()
            .filter_map(|&seq| self.outcome_index(seq).map(|index| (index, seq)))
            .min()
            .map(|(_, seq)| seq)
    }

    /// Compares a command the guest makes at `seq` with the history.
    /// `Ok(Some(event))`: recorded, replay it. `Ok(None)`: new, record it.
    pub fn check_command(
        &self,
        seq: Seq,
        command: &Command,
    ) -> Result<Option<&RecordedEvent>, Nondeterminism> {
        match self.command(seq) {
            None => Ok(None),
            Some(recorded) if command.matches(&recorded.event) => Ok(Some(recorded)),
            Some(recorded) => Err(Nondeterminism::Mismatch {
                seq,
                recorded: describe_recorded(&recorded.event),
                requested: command.describe(),
            }),
        }
    }

    /// Checks, when the code has returned, that it made every recorded command.
    pub fn check_finished(&self, last_seq_made: Seq) -> Result<(), Nondeterminism> {
        match self.command(last_seq_made + 1) {
            None => Ok(()),
            Some(next) => Err(Nondeterminism::FinishedEarly {
                last_seq: last_seq_made,
                next_seq: last_seq_made + 1,
                next_recorded: describe_recorded(&next.event),
            }),
        }
    }
}

/// The answer to update `update_id` among `events` (`UpdateCompleted` or
/// `UpdateFailed`): for readers of stored events, as for a [`History`].
pub fn update_answer_in<'a>(events: &'a [RecordedEvent], update_id: &str) -> Option<&'a Event> {
    events.iter().map(|recorded| &recorded.event).find(|event| {
        matches!(event,
            Event::UpdateCompleted { update_id: answered, .. }
            | Event::UpdateFailed { update_id: answered, .. } if answered == update_id)
    })
}

/// Whether `events` deliver update `update_id` (`UpdateReceived`).
pub fn update_delivered_in(events: &[RecordedEvent], update_id: &str) -> bool {
    events.iter().any(|recorded| {
        matches!(&recorded.event,
            Event::UpdateReceived { update_id: delivered, .. } if delivered == update_id)
    })
}

/// Why an activation must stop even though the guest did nothing wrong by
/// its own lights. Raised from WASI callbacks that cannot return errors, so it
/// is parked in the [`Recorder`] until the next host call.
#[derive(Clone, Debug, PartialEq)]
pub enum Halt {
    Nondeterminism(Nondeterminism),
    /// Verification replay reached the end of an unfinished history.
    HistoryEnd,
    /// Recording the command would break a limit: the execution fails.
    Limit(WorkflowError),
}

/// A history plus the cursor of the activation replaying it: the object that
/// decides, for each guest command, "replay this" or "record this".
#[derive(Debug)]
pub struct Recorder {
    pub history: History,
    next_seq: Seq,
    /// Blocking calls made in this activation (for cancellation delivery).
    waits: u64,
    halted: Option<Halt>,
    /// Verification mode: never record, stop at the end of the history.
    replay_only: bool,
    /// The most events the history may hold (the tenant's
    /// `history_events_max`); one place is always kept for the end.
    history_events_max: usize,
    /// The most payload bytes the history may hold (the tenant's
    /// `history_bytes_max`); the end's own payload is not counted.
    history_bytes_max: u64,
    /// What `patched` answered for each change id in this activation: the
    /// first answer holds, even where a later call would decide otherwise.
    patch_answers: HashMap<String, bool>,
    /// A query handler runs: clock reads and random draws (a language
    /// runtime's own) get live values, neither recorded nor replayed.
    answering_query: bool,
}

impl Recorder {
    pub fn new(history: History, replay_only: bool) -> Recorder {
        Recorder {
            history,
            next_seq: 1,
            waits: 0,
            halted: None,
            replay_only,
            history_events_max: HISTORY_EVENTS_MAX,
            history_bytes_max: HISTORY_BYTES_MAX,
            patch_answers: HashMap::new(),
            answering_query: false,
        }
    }

    /// Marks the stretch in which a query handler runs (see
    /// `answering_query`); only replay-only recorders answer queries.
    pub fn set_answering_query(&mut self, answering: bool) {
        debug_assert!(self.replay_only || !answering);
        self.answering_query = answering;
    }

    pub fn is_answering_query(&self) -> bool {
        self.answering_query
    }

    /// Sets the history limits every recorded event counts against.
    pub fn limit_history(&mut self, history_events_max: usize, history_bytes_max: u64) {
        self.history_events_max = history_events_max;
        self.history_bytes_max = history_bytes_max;
    }

    /// Whether `events` more non-terminal events, holding `payload_bytes`,
    /// fit in the history, with one place left for the terminal event.
    /// Every recorded event passes here — buffered clock reads and random
    /// draws, activity outcomes and signals as much as commands.
    pub fn check_room(&self, events: usize, payload_bytes: u64) -> Result<(), WorkflowError> {
        let limit = self.history_events_max;
        if self.history.len() + events >= limit {
            return Err(WorkflowError {
                error_type: "HistoryLimitExceeded".to_string(),
                message: format!(
                    "the execution's history reached its limit of {limit} events (history_events_max = {limit}); split the work into smaller workflows or child workflows"
                ),
                details: None,
            });
        }
        let bytes_limit = self.history_bytes_max;
        let held = self.history.payload_bytes();
        if held.saturating_add(payload_bytes) > bytes_limit {
            return Err(WorkflowError {
                error_type: "HistorySizeLimitExceeded".to_string(),
                message: format!(
                    "the execution's history would hold {} bytes of inputs, outputs and payloads, past its limit (history_bytes_max = {bytes_limit}); pass references to large data instead of the data, or split the work into child workflows",
                    held.saturating_add(payload_bytes)
                ),
                details: None,
            });
        }
        Ok(())
    }

    /// Rewinds the cursor for a fresh instance, which replays from seq 1.
    pub fn begin_activation(&mut self) {
        self.next_seq = 1;
        self.waits = 0;
        self.halted = None;
        self.patch_answers.clear();
        self.answering_query = false;
    }

    /// True while the guest re-makes commands the history already holds.
    pub fn is_replaying(&self) -> bool {
        self.next_seq <= self.history.last_seq()
    }

    /// Whether the guest's state is the one its whole history leads to:
    /// every recorded command left is a clock read or a random draw (a
    /// language runtime makes those between its own steps, where the
    /// workflow's state does not change), but for a last wait the history
    /// holds no outcome for (making it again only starts the wait). Where
    /// a query is answered; an answer given early is given again at the
    /// next call, so the last one reflects the end.
    pub fn reached_history_end(&self) -> bool {
        let last = self.history.last_seq();
        (self.next_seq..=last).all(|seq| {
            match self.history.command(seq).map(|recorded| &recorded.event) {
                Some(Event::ClockRead { .. } | Event::RandomDrawn { .. }) => true,
                Some(
                    Event::TimerStarted { .. }
                    | Event::SignalAwaited { .. }
                    | Event::UpdateAwaited { .. },
                ) => seq == last && self.history.outcome(seq).is_none(),
                _ => false,
            }
        })
    }

    pub fn is_replay_only(&self) -> bool {
        self.replay_only
    }

    /// Counts a blocking call and returns its ordinal (1, 2, …).
    pub fn next_wait(&mut self) -> u64 {
        self.waits += 1;
        self.waits
    }

    /// The `seq` of the last command made in this activation.
    pub fn last_seq_made(&self) -> Seq {
        self.next_seq - 1
    }

    pub fn halted(&self) -> Option<&Halt> {
        self.halted.as_ref()
    }

    /// Claims the next `seq` for `command` and compares it with the history.
    /// `Ok(Some(event))` if recorded; `Ok(None)` if new and recording is allowed.
    pub fn next_command(
        &mut self,
        command: &Command,
    ) -> Result<(Seq, Option<&RecordedEvent>), Halt> {
        if let Some(halt) = &self.halted {
            return Err(halt.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.history.check_command(seq, command) {
            // Looked up again: returning the borrow from this match would
            // keep `self` borrowed in the arms below.
            Ok(Some(_)) => Ok((seq, self.history.command(seq))),
            Ok(None) if self.replay_only => Err(self.halt_at_history_end(seq, command)),
            Ok(None) => match self.check_room(1, 0) {
                Ok(()) => Ok((seq, None)),
                Err(full) => Err(self.halt(Halt::Limit(full))),
            },
            Err(mismatch) => Err(self.halt(Halt::Nondeterminism(mismatch))),
        }
    }

    fn halt_at_history_end(&mut self, seq: Seq, command: &Command) -> Halt {
        let halt = match self.history.terminal() {
            Some(_) => Halt::Nondeterminism(Nondeterminism::Mismatch {
                seq,
                recorded: "the end of the history (the execution had finished)".to_string(),
                requested: command.describe(),
            }),
            None => Halt::HistoryEnd,
        };
        self.halt(halt)
    }

    fn halt(&mut self, halt: Halt) -> Halt {
        self.halted.get_or_insert(halt).clone()
    }

    /// A clock read: the recorded value, or `live` recorded (buffered) now.
    /// On a halt it returns 0 and parks the halt for the next host call.
    pub fn read_clock(&mut self, clock: Clock, live: u64, now_ms: u64) -> u64 {
        if self.answering_query {
            return live;
        }
        match self.next_command(&Command::ReadClock(clock)) {
            Ok((_, Some(recorded))) => match recorded.event {
                Event::ClockRead { value_ns, .. } => value_ns,
                _ => 0,
            },
            Ok((seq, None)) => {
                self.history.record(
                    Event::ClockRead {
                        seq,
                        clock,
                        value_ns: live,
                    },
                    now_ms,
                );
                live
            }
            Err(_) => 0,
        }
    }

    /// A WASI clock subscription: a timer of `duration_ms`, recorded
    /// (buffered) now or replayed. Returns its seq.
    pub fn start_timer(&mut self, duration_ms: u64, now_ms: u64) -> Result<Seq, Halt> {
        let (seq, recorded) = self.next_command(&Command::StartTimer { duration_ms })?;
        if recorded.is_none() {
            self.history.record(
                Event::TimerStarted {
                    seq,
                    duration_ms,
                    fire_at_ms: now_ms.saturating_add(duration_ms),
                },
                now_ms,
            );
        }
        Ok(seq)
    }

    /// Which of `timers` have fired: the recorded answer, or the answer at
    /// `now_ms` recorded (buffered) now.
    pub fn poll_timers(&mut self, timers: &[Seq], now_ms: u64) -> Result<Vec<Seq>, Halt> {
        let command = Command::PollTimers {
            timers: timers.to_vec(),
        };
        let (seq, recorded) = self.next_command(&command)?;
        if let Some(recorded) = recorded {
            return match &recorded.event {
                Event::TimersPolled { ready, .. } => Ok(ready.clone()),
                _ => Ok(Vec::new()),
            };
        }
        let ready: Vec<Seq> = timers
            .iter()
            .copied()
            .filter(|&timer| {
                self.history.outcome(timer).is_some()
                    || self.timer_fire_at(timer).is_some_and(|at| at <= now_ms)
            })
            .collect();
        self.history.record(
            Event::TimersPolled {
                seq,
                timers: timers.to_vec(),
                ready: ready.clone(),
            },
            now_ms,
        );
        Ok(ready)
    }

    /// When the timer started at `seq` fires.
    pub fn timer_fire_at(&self, seq: Seq) -> Option<u64> {
        match self.history.command(seq).map(|recorded| &recorded.event) {
            Some(Event::TimerStarted { fire_at_ms, .. }) => Some(*fire_at_ms),
            _ => None,
        }
    }

    /// Whether the code takes the path of change `change_id` (see the WIT's
    /// `patched`). Live (past the last recorded command, or recording with
    /// no history left to match), the answer is yes and a marker is
    /// recorded (buffered): a replay then finds it. Replaying a history
    /// that goes on past this point, the marker decides: a history
    /// recorded before the change has none, so the old path replays. A
    /// finished history is all replay.
    pub fn patched(&mut self, change_id: &str, now_ms: u64) -> Result<bool, Halt> {
        if let Some(halt) = &self.halted {
            return Err(halt.clone());
        }
        if let Some(&answer) = self.patch_answers.get(change_id) {
            return Ok(answer);
        }
        let marked = self.history.patches.contains(change_id);
        let replaying = self.is_replaying() || self.history.terminal().is_some();
        let answer = marked || !replaying;
        if answer && !marked && !self.replay_only {
            self.check_room(1, 0)
                .map_err(|full| self.halt(Halt::Limit(full)))?;
            self.history.record(
                Event::PatchMarked {
                    change_id: change_id.to_string(),
                },
                now_ms,
            );
        }
        self.patch_answers.insert(change_id.to_string(), answer);
        Ok(answer)
    }

    /// `deprecate-patch`: the changed path is the only one left, but the
    /// marker is still recorded live so that code which still asks
    /// `patched(change_id)` replays this execution on the changed path.
    pub fn deprecate_patch(&mut self, change_id: &str, now_ms: u64) -> Result<(), Halt> {
        if self.is_replaying() || self.history.terminal().is_some() {
            return Ok(());
        }
        self.patched(change_id, now_ms).map(|_| ())
    }

    /// A random draw: the recorded bytes, or `live` recorded (buffered) now.
    /// On a halt it returns zeros and parks the halt for the next host call.
    pub fn draw_random(&mut self, live: Vec<u8>, now_ms: u64) -> Vec<u8> {
        if self.answering_query {
            return live;
        }
        let len = live.len();
        match self.next_command(&Command::DrawRandom { len }) {
            Ok((_, Some(recorded))) => match &recorded.event {
                Event::RandomDrawn { bytes, .. } => {
                    hex::decode(bytes).unwrap_or_else(|_| vec![0; len])
                }
                _ => vec![0; len],
            },
            Ok((seq, None)) => {
                self.history.record(
                    Event::RandomDrawn {
                        seq,
                        bytes: hex::encode(&live),
                    },
                    now_ms,
                );
                live
            }
            Err(_) => vec![0; len],
        }
    }
}

/// The idempotency key of the activity call at `seq`: the same on every
/// attempt and every replay, distinct across calls, runs and workflows.
pub fn idempotency_key(workflow_id: &str, run_id: &str, seq: Seq) -> String {
    let mut hasher = Sha256::new();
    for part in [workflow_id.as_bytes(), run_id.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.update(seq.to_be_bytes());
    format!("rk_{}", hex::encode(&hasher.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Event {
        Event::WorkflowStarted {
            workflow_type: "t".into(),
            module_digest: "d".into(),
            input: "{}".into(),
            trace: None,
            host_behaviour: HOST_BEHAVIOUR,
            continued_from: None,
            timeouts: WorkflowTimeouts::default(),
        }
    }

    fn scheduled(seq: Seq, name: &str, input: &str) -> Event {
        Event::ActivityScheduled {
            seq,
            name: name.into(),
            input: input.into(),
            options: ActivityOptions {
                start_to_close_timeout_ms: Some(1000),
                ..ActivityOptions::default()
            },
            idempotency_key: idempotency_key("w", "r", seq),
        }
    }

    /// Payload bytes are counted as events are recorded and as a stored
    /// history is rebuilt, and a recorder refuses what would pass the
    /// limit, naming it, before the event count does.
    #[test]
    fn the_history_counts_payload_bytes_against_its_limit() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "charge", &"x".repeat(100)), 0);
        history.record(
            Event::ActivityCompleted {
                seq: 1,
                attempt: 1,
                output: "y".repeat(50),
            },
            0,
        );
        assert_eq!(history.payload_bytes(), 2 + 100 + 50);
        let rebuilt = History::from_recorded(history.events().to_vec()).expect("valid");
        assert_eq!(rebuilt.payload_bytes(), 152);

        let mut recorder = Recorder::new(rebuilt, false);
        recorder.limit_history(100, 200);
        assert!(
            recorder.check_room(1, 48).is_ok(),
            "exactly at the limit fits"
        );
        let full = recorder.check_room(1, 49).expect_err("past the limit");
        assert_eq!(full.error_type, "HistorySizeLimitExceeded");
        assert!(
            full.message.contains("history_bytes_max = 200") && full.message.contains(" 201 "),
            "{}",
            full.message
        );
    }

    #[test]
    fn mismatch_names_seq_recorded_and_requested() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "charge", "{\"amount\":5}"), 0);
        let error = history
            .check_command(
                1,
                &Command::ScheduleActivity {
                    name: "ship".into(),
                    input: "{}".into(),
                },
            )
            .expect_err("different activity must be refused");
        let text = error.to_string();
        assert!(text.contains("seq 1"), "{text}");
        assert!(text.contains("activity `charge`"), "{text}");
        assert!(text.contains("activity `ship`"), "{text}");
    }

    #[test]
    fn same_name_different_input_is_a_mismatch() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "charge", "{\"amount\":5}"), 0);
        let same = Command::ScheduleActivity {
            name: "charge".into(),
            input: "{\"amount\":5}".into(),
        };
        assert!(matches!(history.check_command(1, &same), Ok(Some(_))));
        let other = Command::ScheduleActivity {
            name: "charge".into(),
            input: "{\"amount\":6}".into(),
        };
        assert!(history.check_command(1, &other).is_err());
        assert!(matches!(history.check_command(2, &other), Ok(None)));
    }

    #[test]
    fn corrupt_histories_are_refused() {
        let gap = vec![
            RecordedEvent {
                position: 1,
                recorded_at_ms: 0,
                event: started(),
            },
            RecordedEvent {
                position: 3,
                recorded_at_ms: 0,
                event: scheduled(1, "a", "{}"),
            },
        ];
        assert!(History::from_recorded(gap).is_err());
        let seq_gap = vec![
            RecordedEvent {
                position: 1,
                recorded_at_ms: 0,
                event: started(),
            },
            RecordedEvent {
                position: 2,
                recorded_at_ms: 0,
                event: scheduled(2, "a", "{}"),
            },
        ];
        assert!(History::from_recorded(seq_gap).is_err());
    }

    #[test]
    fn first_completed_follows_history_order_not_seq_order() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "a", "{}"), 0);
        history.record(scheduled(2, "b", "{}"), 0);
        history.record(
            Event::ActivityCompleted {
                seq: 2,
                attempt: 1,
                output: "2".into(),
            },
            0,
        );
        history.record(
            Event::ActivityCompleted {
                seq: 1,
                attempt: 1,
                output: "1".into(),
            },
            0,
        );
        assert_eq!(history.first_completed(&[1, 2]), Some(2));
        assert_eq!(history.first_completed(&[1]), Some(1));
        assert_eq!(history.first_completed(&[3]), None);
    }

    /// Replays `history` as a fresh activation that asks `patched("fix")`
    /// after its first command, and returns the answer.
    fn patched_after_first_command(history: History) -> (bool, Recorder) {
        let mut recorder = Recorder::new(history, false);
        recorder.begin_activation();
        let command = Command::ScheduleActivity {
            name: "a".into(),
            input: "{}".into(),
        };
        recorder.next_command(&command).expect("seq 1 matches");
        let answer = recorder.patched("fix", 0).expect("no halt");
        (answer, recorder)
    }

    #[test]
    fn patched_is_false_for_histories_recorded_before_the_change() {
        let mut old_code = History::default();
        old_code.record(started(), 0);
        old_code.record(scheduled(1, "a", "{}"), 0);
        old_code.record(scheduled(2, "old-path", "{}"), 0);
        old_code.mark_durable();
        let (answer, recorder) = patched_after_first_command(old_code);
        assert!(
            !answer,
            "the history went on past this point without the marker"
        );
        assert!(recorder.history.unflushed().is_empty(), "nothing recorded");
    }

    #[test]
    fn patched_is_true_live_records_one_marker_and_replays_true() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "a", "{}"), 0);
        history.mark_durable();
        let (answer, mut recorder) = patched_after_first_command(history);
        assert!(answer, "past the history's last command the new path runs");
        // Asked again later in the same activation: the same answer, no
        // second marker.
        assert_eq!(recorder.patched("fix", 0), Ok(true));
        let markers: Vec<&Event> = recorder
            .history
            .unflushed()
            .iter()
            .map(|recorded| &recorded.event)
            .collect();
        assert_eq!(
            markers,
            vec![&Event::PatchMarked {
                change_id: "fix".into()
            }]
        );
        // The next activation replays the marker: still the new path, even
        // with more commands recorded after it.
        recorder.history.record(scheduled(2, "new-path", "{}"), 0);
        recorder.history.mark_durable();
        let history = History::from_recorded(recorder.history.events().to_vec())
            .expect("a marked history loads");
        let (answer, recorder) = patched_after_first_command(history);
        assert!(answer);
        assert!(recorder.history.unflushed().is_empty());
    }

    #[test]
    fn the_first_patched_answer_holds_for_the_activation() {
        // Replaying: false. Later in the same activation the code is live,
        // but the answer must stay false, or a replay of what it records
        // would take the other branch at the first call.
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "a", "{}"), 0);
        history.record(scheduled(2, "old-path", "{}"), 0);
        history.mark_durable();
        let (answer, mut recorder) = patched_after_first_command(history);
        assert!(!answer);
        let old_path = Command::ScheduleActivity {
            name: "old-path".into(),
            input: "{}".into(),
        };
        recorder.next_command(&old_path).expect("seq 2 matches");
        assert!(!recorder.is_replaying());
        assert_eq!(recorder.patched("fix", 0), Ok(false));
        assert!(recorder.history.unflushed().is_empty());
    }

    #[test]
    fn deprecate_patch_marks_live_only_and_unasked_markers_are_ignored() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "a", "{}"), 0);
        history.mark_durable();
        let mut recorder = Recorder::new(history, false);
        recorder.begin_activation();
        let first = Command::ScheduleActivity {
            name: "a".into(),
            input: "{}".into(),
        };
        recorder.next_command(&first).expect("seq 1 matches");
        recorder.deprecate_patch("fix", 0).expect("no halt");
        assert_eq!(recorder.history.unflushed().len(), 1);
        // Code that no longer asks about the change replays the marked
        // history and finishes cleanly: the marker is not a command.
        recorder.history.mark_durable();
        let history = History::from_recorded(recorder.history.events().to_vec())
            .expect("a marked history loads");
        assert_eq!(history.check_finished(1), Ok(()));
    }

    #[test]
    fn a_query_is_answered_where_the_history_ends_not_before() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "a", "1"), 0);
        history.record(
            Event::ActivityCompleted {
                seq: 1,
                attempt: 1,
                output: "2".into(),
            },
            0,
        );
        history.record(
            Event::UpdateAwaited {
                seq: 2,
                names: vec!["deposit".into()],
                deadline_ms: None,
            },
            0,
        );
        let mut recorder = Recorder::new(history, true);
        assert!(!recorder.reached_history_end(), "seq 1 is still to replay");
        recorder
            .next_command(&Command::ScheduleActivity {
                name: "a".into(),
                input: "1".into(),
            })
            .expect("replays");
        assert!(
            recorder.reached_history_end(),
            "what is left is a wait with no outcome"
        );
        // With the update delivered, the state is past the wait.
        let mut history = recorder.history;
        history.record(
            Event::UpdateReceived {
                seq: 2,
                update_id: "u".into(),
                name: "deposit".into(),
                args: "{}".into(),
            },
            0,
        );
        let mut recorder = Recorder::new(history, true);
        recorder
            .next_command(&Command::ScheduleActivity {
                name: "a".into(),
                input: "1".into(),
            })
            .expect("replays");
        assert!(!recorder.reached_history_end());
        recorder
            .next_command(&Command::AwaitUpdate {
                names: vec!["deposit".into()],
            })
            .expect("replays");
        assert!(recorder.reached_history_end());
        // Clock reads in a handler neither record nor move the cursor.
        recorder.set_answering_query(true);
        assert_eq!(recorder.read_clock(Clock::Wall, 42, 0), 42);
        recorder.set_answering_query(false);
        assert_eq!(recorder.history.len(), 5);

        // Clock reads left before the last wait do not hold the answer back.
        let mut history = History::default();
        history.record(started(), 0);
        history.record(scheduled(1, "a", "1"), 0);
        history.record(
            Event::ClockRead {
                seq: 2,
                clock: Clock::Monotonic,
                value_ns: 7,
            },
            0,
        );
        history.record(
            Event::SignalAwaited {
                seq: 3,
                name: "go".into(),
                deadline_ms: None,
            },
            0,
        );
        let mut recorder = Recorder::new(history, true);
        assert!(!recorder.reached_history_end());
        recorder
            .next_command(&Command::ScheduleActivity {
                name: "a".into(),
                input: "1".into(),
            })
            .expect("replays");
        assert!(recorder.reached_history_end());
    }

    #[test]
    fn an_update_answer_replays_only_as_recorded() {
        let mut history = History::default();
        history.record(started(), 0);
        history.record(
            Event::UpdateCompleted {
                seq: 1,
                update_id: "u".into(),
                output: "1".into(),
            },
            0,
        );
        let answer = |output: Result<&str, &str>| Command::CompleteUpdate {
            update_id: "u".into(),
            outcome: output
                .map(str::to_string)
                .map_err(|error_type| WorkflowError {
                    error_type: error_type.into(),
                    message: String::new(),
                    details: None,
                }),
        };
        assert!(history.check_command(1, &answer(Ok("1"))).is_ok());
        for different in [answer(Ok("2")), answer(Err("Failed"))] {
            let mismatch = history.check_command(1, &different).unwrap_err();
            assert!(
                mismatch.to_string().contains("the answer to update `u`"),
                "{mismatch}"
            );
        }
        assert_eq!(
            history.update_answer("u").map(Event::kind),
            Some("UpdateCompleted")
        );
        assert!(history.update_answer("v").is_none());
    }

    #[test]
    fn idempotency_key_is_stable_and_distinct() {
        assert_eq!(idempotency_key("w", "r", 1), idempotency_key("w", "r", 1));
        assert_ne!(idempotency_key("w", "r", 1), idempotency_key("w", "r", 2));
        assert_ne!(idempotency_key("w", "r", 1), idempotency_key("w", "r2", 1));
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(idempotency_key("ab", "c", 1), idempotency_key("a", "bc", 1));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy {
            initial_interval_ms: 100,
            backoff_coefficient: 2.0,
            maximum_interval_ms: 500,
            maximum_attempts: 0,
            non_retryable_error_types: vec![],
        };
        assert_eq!(policy.backoff_ms(2), 100);
        assert_eq!(policy.backoff_ms(3), 200);
        assert_eq!(policy.backoff_ms(4), 400);
        assert_eq!(policy.backoff_ms(5), 500);
        let bad = RetryPolicy {
            backoff_coefficient: 0.5,
            ..policy
        };
        assert!(bad.validate().unwrap_err().contains("backoff_coefficient"));
    }
}
