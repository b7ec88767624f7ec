//! `reprise:workflow/durable`: the journaled calls of a workflow.
//!
//! Every call follows one shape: claim the next `seq`, compare with the
//! history (replay) or record (live), and only then answer the guest.

use super::WorkflowHost;
use super::wit_types;
use super::workflow_bindings::reprise::workflow::durable::{
    Host, QueryKind, QueryRequest, UpdateRequest, WorkflowInfo,
};
use crate::clock;
use crate::execution::{Interrupt, QueryAsk, Wait, Woken, runtime_error};
use crate::journal::{
    ActivityFailure, ActivityOptions, Clock, Command, Event, FailureReason, RANDOM_BYTES_MAX,
    RetryPolicy, Seq, idempotency_key,
};
use crate::quota::ComputeTurn;
use std::pin::Pin;

/// The most update names one `await-update` may wait for.
const UPDATE_NAMES_MAX: usize = 32;

/// Longest log line a workflow may write; the rest is cut.
const LOG_MESSAGE_BYTES_MAX: usize = 4096;

/// Longest name a workflow may journal: an activity, a child's workflow
/// type or id, a signal. Names are stored, queued and logged on every
/// attempt, so they are short by contract.
pub const NAME_BYTES_MAX: usize = 256;

/// What is wrong with `name` as a `what` name — empty, over-long, or with
/// control characters — if anything (the API checks names sent to
/// workflows the same way).
pub fn name_problem(what: &str, name: &str) -> Option<String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
        let shown: String = name.chars().take(64).collect();
        return Some(format!(
            "{what} names are 1 to {NAME_BYTES_MAX} bytes without control characters; got {} bytes starting {shown:?}",
            name.len()
        ));
    }
    None
}

/// Refuses an empty or over-long `what` name, or one with control characters.
fn check_name(what: &str, name: &str) -> wasmtime::Result<()> {
    match name_problem(what, name) {
        Some(problem) => Err(fail("InvalidName", problem)),
        None => Ok(()),
    }
}

pub(super) fn interrupt(interrupt: Interrupt) -> wasmtime::Error {
    wasmtime::Error::new(interrupt)
}

fn fail(error_type: &str, message: String) -> wasmtime::Error {
    interrupt(Interrupt::FailWorkflow(runtime_error(error_type, message)))
}

/// When a new command's event is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Before the guest goes on.
    Now,
    /// With the next write, if every event before it is durable (else
    /// now): what the command starts may begin first, because a crash
    /// before the write only replays the same command again (the same
    /// seq, input and idempotency key, derived from durable events).
    Deferred,
}

impl WorkflowHost {
    /// Claims the next `seq` for `command` and, if the history does not
    /// have it yet, journals the event `new_event` makes for it.
    async fn command(
        &mut self,
        command: &Command,
        new_event: impl FnOnce(Seq, &crate::store::ExecutionRecord) -> Event,
    ) -> wasmtime::Result<Seq> {
        self.command_written(command, Write::Now, new_event).await
    }

    /// [`WorkflowHost::command`], with the event written as `write` says.
    async fn command_written(
        &mut self,
        command: &Command,
        write: Write,
        new_event: impl FnOnce(Seq, &crate::store::ExecutionRecord) -> Event,
    ) -> wasmtime::Result<Seq> {
        let (seq, was_recorded) = self.claim(command)?;
        if !was_recorded {
            let event = new_event(seq, &self.execution.record);
            if write == Write::Deferred && self.execution.all_durable() {
                self.execution.record_deferred(event).map_err(interrupt)?;
            } else {
                let turn = self.turn.clone();
                off_turn(&turn, self.execution.append(event))
                    .await
                    .map_err(interrupt)?;
            }
        }
        // The backstop restarts at every journaled command, recorded now or
        // replayed: so it counts the same stretches of guest code live and
        // in replay, and a history that completed live always replays.
        self.resume_guest();
        Ok(seq)
    }

    /// Claims the next `seq` for `command`, and says whether the history
    /// holds it already (replay) or it is new.
    fn claim(&self, command: &Command) -> wasmtime::Result<(Seq, bool)> {
        self.execution
            .recorder()
            .next_command(command)
            .map(|(seq, recorded)| (seq, recorded.is_some()))
            .map_err(|halt| interrupt(halt.into()))
    }

    /// Called after every journaled command and blocking wait: the
    /// wall-clock backstop measures guest time only.
    fn resume_guest(&mut self) {
        self.turn.reset_clock();
    }

    /// Called first by every durable call: fails if a WASI callback
    /// parked a halt, and refuses the call inside a query handler (a query
    /// reads state; it journals nothing).
    fn check_halted(&self) -> wasmtime::Result<()> {
        if self.execution.recorder().is_answering_query() {
            return Err(fail(
                "DurableCallInQuery",
                "a query handler or update validator made a durable call; handlers only read the workflow's state (do durable work in the workflow itself)".to_string(),
            ));
        }
        self.execution.check_halted().map_err(interrupt)
    }

    /// Writes the buffered events if too many piled up
    /// ([`Execution::buffered_piled_up`]).
    async fn flush_if_piled_up(&mut self) -> wasmtime::Result<()> {
        if !self.execution.buffered_piled_up() {
            return Ok(());
        }
        let turn = self.turn.clone();
        off_turn(&turn, self.execution.flush())
            .await
            .map_err(interrupt)
    }

    async fn start_activity_inner(
        &mut self,
        name: String,
        input: String,
        options: wit_types::ActivityOptions,
    ) -> wasmtime::Result<Seq> {
        self.check_halted()?;
        check_name("activity", &name)?;
        let payload_bytes_max = self.execution.limits.payload_bytes_max;
        if name.len() + input.len() > payload_bytes_max {
            return Err(fail(
                "PayloadTooLarge",
                format!(
                    "the input of activity `{name}` is {} bytes; the limit is payload_bytes_max = {payload_bytes_max}",
                    input.len()
                ),
            ));
        }
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&input) {
            return Err(fail(
                "InvalidActivityInput",
                format!("the input of activity `{name}` is not JSON: {error}"),
            ));
        }
        let custom_key = options.idempotency_key.clone();
        let attempts_max = self.execution.limits.activity_attempts_max;
        let options = journal_options(options, attempts_max).map_err(|problem| {
            fail(
                "InvalidActivityOptions",
                format!("activity `{name}`: {problem}"),
            )
        })?;
        let command = Command::ScheduleActivity {
            name: name.clone(),
            input: input.clone(),
        };
        // The activity may start before its schedule is durable when all
        // it derives from is: replay derives the same command again.
        let seq = self
            .command_written(&command, Write::Deferred, |seq, record| {
                let idempotency_key = custom_key
                    .unwrap_or_else(|| idempotency_key(&record.workflow_id, &record.run_id, seq));
                Event::ActivityScheduled {
                    seq,
                    name,
                    input,
                    options,
                    idempotency_key,
                }
            })
            .await?;
        self.execution.ensure_activity_running(seq);
        Ok(seq)
    }

    fn check_handles(&self, handles: &[Seq]) -> wasmtime::Result<()> {
        let recorder = self.execution.recorder();
        let made = recorder.last_seq_made();
        for &handle in handles {
            let is_activity = handle <= made
                && matches!(
                    recorder
                        .history
                        .command(handle)
                        .map(|recorded| &recorded.event),
                    Some(Event::ActivityScheduled { .. })
                );
            if !is_activity {
                return Err(fail(
                    "InvalidHandle",
                    format!("{handle} is not the handle of an activity this workflow started"),
                ));
            }
        }
        Ok(())
    }

    fn activity_outcome(
        &self,
        seq: Seq,
    ) -> wasmtime::Result<Result<String, wit_types::ActivityFailure>> {
        let recorder = self.execution.recorder();
        match recorder
            .history
            .outcome(seq)
            .map(|recorded| &recorded.event)
        {
            Some(Event::ActivityCompleted { output, .. }) => Ok(Ok(output.clone())),
            Some(Event::ActivityFailed { failure, .. }) => Ok(Err(wit_failure(failure))),
            other => Err(interrupt(Interrupt::HostFault(format!(
                "the history answers activity seq {seq} with {other:?}, not an activity outcome"
            )))),
        }
    }

    async fn await_activity_inner(
        &mut self,
        handle: Seq,
    ) -> wasmtime::Result<Result<String, wit_types::ActivityFailure>> {
        self.check_halted()?;
        self.check_handles(&[handle])?;
        match self.block(Wait::Activity(handle)).await? {
            Woken::Ready => self.activity_outcome(handle),
            Woken::Cancelled => Ok(Err(cancelled_failure())),
        }
    }

    /// A blocking call: counts it (for cancellation delivery), waits, and
    /// restarts the wall-clock backstop.
    pub(super) async fn block(&mut self, wait: Wait) -> wasmtime::Result<Woken> {
        let ordinal = self.execution.recorder().next_wait();
        // Replay answers here, as does an outcome that arrived while the
        // guest ran: the guest keeps its turn, nothing waits.
        if self.execution.answered_at_once(&wait, ordinal) {
            self.resume_guest();
            return Ok(Woken::Ready);
        }
        let turn = self.turn.clone();
        let woken = off_turn(&turn, self.execution.wait(&wait, ordinal, true))
            .await
            .map_err(interrupt)?;
        self.resume_guest();
        Ok(woken)
    }
}

/// Gives the guest's turn on the guest threads back while the host awaits
/// `work` (a commit, a wait), then waits for a turn again.
///
/// The work is boxed: a host call's future is built on the guest's fiber
/// stack and copied on every call, and a wait or a commit is most of its
/// size, though replay and answered waits never reach it.
pub(super) fn off_turn<'a, T: Send + 'a>(
    turn: &'a ComputeTurn,
    work: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(async move {
        turn.give_back();
        let output = work.await;
        turn.take().await;
        output
    })
}

/// The message of the cancellation a blocking call returns.
const CANCELLED_MESSAGE: &str = "the workflow was cancelled";

fn cancelled() -> wit_types::Cancelled {
    wit_types::Cancelled {
        message: CANCELLED_MESSAGE.to_string(),
    }
}

fn cancelled_failure() -> wit_types::ActivityFailure {
    wit_types::ActivityFailure {
        reason: wit_types::FailureReason::Cancelled,
        attempts: 0,
        last_error: wit_types::ActivityError {
            error_type: "Cancelled".to_string(),
            message: CANCELLED_MESSAGE.to_string(),
            details: None,
            non_retryable: true,
        },
    }
}

impl Host for WorkflowHost {
    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.check_halted()?;
        let value_ns =
            self.execution
                .recorder()
                .read_clock(Clock::Wall, clock::now_ns(), clock::now_ms());
        self.check_halted()?;
        self.flush_if_piled_up().await?;
        Ok(value_ns / 1_000_000)
    }

    async fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        self.check_halted()?;
        if len > RANDOM_BYTES_MAX {
            return Err(fail(
                "RandomLimitExceeded",
                format!(
                    "random-bytes asked for {len} bytes; the limit is {RANDOM_BYTES_MAX} per call"
                ),
            ));
        }
        let mut live = vec![0u8; len as usize];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut live);
        let bytes = self.execution.recorder().draw_random(live, clock::now_ms());
        self.check_halted()?;
        self.flush_if_piled_up().await?;
        Ok(bytes)
    }

    async fn sleep_ms(
        &mut self,
        duration_ms: u64,
    ) -> wasmtime::Result<Result<(), wit_types::Cancelled>> {
        self.check_halted()?;
        let seq = self
            .command(&Command::StartTimer { duration_ms }, |seq, _| {
                let fire_at_ms = clock::now_ms().saturating_add(duration_ms);
                Event::TimerStarted {
                    seq,
                    duration_ms,
                    fire_at_ms,
                }
            })
            .await?;
        Ok(match self.block(Wait::Timer(seq)).await? {
            Woken::Ready => Ok(()),
            Woken::Cancelled => Err(cancelled()),
        })
    }

    async fn await_signal(
        &mut self,
        name: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<Option<String>, wit_types::Cancelled>> {
        self.check_halted()?;
        check_name("signal", &name)?;
        let seq = self
            .command(&Command::AwaitSignal { name: name.clone() }, |seq, _| {
                let deadline_ms = timeout_ms.map(|timeout| clock::now_ms().saturating_add(timeout));
                Event::SignalAwaited {
                    seq,
                    name,
                    deadline_ms,
                }
            })
            .await?;
        if self.block(Wait::Signal(seq)).await? == Woken::Cancelled {
            return Ok(Err(cancelled()));
        }
        let recorder = self.execution.recorder();
        Ok(Ok(
            match recorder
                .history
                .outcome(seq)
                .map(|recorded| &recorded.event)
            {
                Some(Event::SignalReceived { payload, .. }) => Some(payload.clone()),
                _ => None,
            },
        ))
    }

    async fn start_activity(
        &mut self,
        name: String,
        input: String,
        options: wit_types::ActivityOptions,
    ) -> wasmtime::Result<u64> {
        self.start_activity_inner(name, input, options).await
    }

    async fn await_activity(
        &mut self,
        handle: u64,
    ) -> wasmtime::Result<Result<String, wit_types::ActivityFailure>> {
        self.await_activity_inner(handle).await
    }

    async fn await_any(
        &mut self,
        handles: Vec<u64>,
    ) -> wasmtime::Result<(u64, Result<String, wit_types::ActivityFailure>)> {
        self.check_halted()?;
        if handles.is_empty() {
            return Err(fail(
                "InvalidHandle",
                "await-any needs at least one handle".to_string(),
            ));
        }
        self.check_handles(&handles)?;
        if self.block(Wait::AnyActivity(handles.clone())).await? == Woken::Cancelled {
            return Ok((handles[0], Err(cancelled_failure())));
        }
        let first = self
            .execution
            .recorder()
            .history
            .first_completed(&handles)
            .ok_or_else(|| fail("InvalidHandle", "no completed handle".to_string()))?;
        Ok((first, self.activity_outcome(first)?))
    }

    async fn call_activity(
        &mut self,
        name: String,
        input: String,
        options: wit_types::ActivityOptions,
    ) -> wasmtime::Result<Result<String, wit_types::ActivityFailure>> {
        let handle = self.start_activity_inner(name, input, options).await?;
        self.await_activity_inner(handle).await
    }

    async fn start_child(
        &mut self,
        workflow_type: String,
        input: String,
        workflow_id: Option<String>,
    ) -> wasmtime::Result<u64> {
        self.check_halted()?;
        check_name("workflow type", &workflow_type)?;
        if let Some(id) = &workflow_id {
            check_name("child workflow id", id)?;
        }
        let payload_bytes_max = self.execution.limits.payload_bytes_max;
        let names_bytes = workflow_type.len() + workflow_id.as_ref().map_or(0, String::len);
        if let Err(problem) = crate::runtime::check_json_payload(
            "child workflow input",
            &input,
            payload_bytes_max.saturating_sub(names_bytes),
        ) {
            return Err(fail("InvalidChildInput", problem.to_string()));
        }
        let command = Command::StartChild {
            workflow_type: workflow_type.clone(),
            input: input.clone(),
        };
        let seq = self
            .command(&command, |seq, record| {
                let workflow_id =
                    workflow_id.unwrap_or_else(|| format!("{}/child-{seq}", record.workflow_id));
                Event::ChildStarted {
                    seq,
                    workflow_type,
                    workflow_id,
                    input,
                }
            })
            .await?;
        self.execution.ensure_child_running(seq);
        Ok(seq)
    }

    async fn await_child(
        &mut self,
        handle: u64,
    ) -> wasmtime::Result<Result<String, wit_types::WorkflowError>> {
        self.check_halted()?;
        let is_child = handle <= self.execution.recorder().last_seq_made()
            && matches!(
                self.execution
                    .recorder()
                    .history
                    .command(handle)
                    .map(|recorded| &recorded.event),
                Some(Event::ChildStarted { .. })
            );
        if !is_child {
            return Err(fail(
                "InvalidHandle",
                format!("{handle} is not the handle of a child workflow this workflow started"),
            ));
        }
        if self.block(Wait::Child(handle)).await? == Woken::Cancelled {
            // Cancelling the parent cancels the child it waits for.
            if !self.execution.recorder().is_replay_only() {
                self.execution
                    .cancel_child(handle)
                    .await
                    .map_err(interrupt)?;
            }
            return Ok(Err(wit_types::WorkflowError {
                error_type: "Cancelled".to_string(),
                message: CANCELLED_MESSAGE.to_string(),
                details: None,
            }));
        }
        let recorder = self.execution.recorder();
        Ok(
            match recorder
                .history
                .outcome(handle)
                .map(|recorded| &recorded.event)
            {
                Some(Event::ChildCompleted { output, .. }) => Ok(output.clone()),
                Some(Event::ChildFailed { error, .. }) => Err(wit_types::WorkflowError {
                    error_type: error.error_type.clone(),
                    message: error.message.clone(),
                    details: error.details.clone(),
                }),
                other => {
                    return Err(interrupt(Interrupt::HostFault(format!(
                        "the history answers child seq {handle} with {other:?}"
                    ))));
                }
            },
        )
    }

    async fn patched(&mut self, change_id: String) -> wasmtime::Result<bool> {
        self.check_halted()?;
        check_name("change id", &change_id)?;
        let answer = self
            .execution
            .recorder()
            .patched(&change_id, clock::now_ms())
            .map_err(|halt| interrupt(halt.into()))?;
        self.flush_if_piled_up().await?;
        Ok(answer)
    }

    async fn deprecate_patch(&mut self, change_id: String) -> wasmtime::Result<()> {
        self.check_halted()?;
        check_name("change id", &change_id)?;
        self.execution
            .recorder()
            .deprecate_patch(&change_id, clock::now_ms())
            .map_err(|halt| interrupt(halt.into()))?;
        self.flush_if_piled_up().await
    }

    async fn continue_as_new(&mut self, input: String) -> wasmtime::Result<()> {
        self.check_halted()?;
        let payload_bytes_max = self.execution.limits.payload_bytes_max;
        if let Err(problem) =
            crate::runtime::check_json_payload("continue-as-new input", &input, payload_bytes_max)
        {
            return Err(fail("InvalidContinueAsNewInput", problem.to_string()));
        }
        // Unwinds the guest: the driver ends the run and starts the next.
        Err(interrupt(Interrupt::ContinueAsNew { input }))
    }

    async fn upsert_search_attributes(&mut self, attributes: String) -> wasmtime::Result<()> {
        self.check_halted()?;
        let invalid = |problem: crate::attributes::AttributeProblem| {
            fail("InvalidSearchAttributes", problem.to_string())
        };
        let changes = crate::attributes::parse(&attributes).map_err(invalid)?;
        let command = Command::UpsertSearchAttributes {
            attributes: attributes.clone(),
        };
        let (seq, was_recorded) = self.claim(&command)?;
        if !was_recorded {
            let merged = crate::attributes::merge(
                self.execution.record.search_attributes.as_deref(),
                changes,
            )
            .map_err(invalid)?;
            let event = Event::SearchAttributesUpserted { seq, attributes };
            let turn = self.turn.clone();
            off_turn(
                &turn,
                self.execution.append_setting_attributes(event, merged),
            )
            .await
            .map_err(interrupt)?;
        }
        self.resume_guest();
        Ok(())
    }

    async fn next_query(&mut self) -> wasmtime::Result<Option<QueryRequest>> {
        let Some(query) = &self.execution.query else {
            return Ok(None);
        };
        let mut recorder = self.execution.recorder();
        // Asked before each durable call: the answer given last before the
        // replay stops (at the history's end) is the one that counts.
        if !recorder.reached_history_end() || recorder.is_answering_query() {
            return Ok(None);
        }
        recorder.set_answering_query(true);
        Ok(Some(QueryRequest {
            kind: match query.ask {
                QueryAsk::Query => QueryKind::Query,
                QueryAsk::ValidateUpdate => QueryKind::ValidateUpdate,
            },
            name: query.name.clone(),
            args: query.args.clone(),
        }))
    }

    async fn answer_query(
        &mut self,
        answer: Result<String, wit_types::WorkflowError>,
    ) -> wasmtime::Result<()> {
        if !self.execution.recorder().is_answering_query() {
            return Err(fail(
                "UnexpectedQueryAnswer",
                "answer-query was called without a request from next-query".to_string(),
            ));
        }
        self.execution.recorder().set_answering_query(false);
        let payload_bytes_max = self.execution.limits.payload_bytes_max;
        let answer = match answer {
            Ok(output) => {
                crate::runtime::check_json_payload("a query answer", &output, payload_bytes_max)
                    .map(|()| output)
                    .map_err(|problem| runtime_error("InvalidQueryAnswer", problem.to_string()))
            }
            Err(error) => Err(journal_error(error)),
        };
        if let Some(query) = &mut self.execution.query {
            // The last answer before the replay stops is the one given.
            query.answer = Some(answer);
        }
        Ok(())
    }

    async fn await_update(
        &mut self,
        names: Vec<String>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<Option<UpdateRequest>, wit_types::Cancelled>> {
        self.check_halted()?;
        if names.is_empty() || names.len() > UPDATE_NAMES_MAX {
            return Err(fail(
                "InvalidName",
                format!(
                    "await-update waits for 1 to {UPDATE_NAMES_MAX} update names; got {}",
                    names.len()
                ),
            ));
        }
        for name in &names {
            check_name("update", name)?;
        }
        let command = Command::AwaitUpdate {
            names: names.clone(),
        };
        let seq = self
            .command(&command, |seq, _| {
                let deadline_ms = timeout_ms.map(|timeout| clock::now_ms().saturating_add(timeout));
                Event::UpdateAwaited {
                    seq,
                    names,
                    deadline_ms,
                }
            })
            .await?;
        if self.block(Wait::Update(seq)).await? == Woken::Cancelled {
            return Ok(Err(cancelled()));
        }
        let recorder = self.execution.recorder();
        Ok(Ok(
            match recorder
                .history
                .outcome(seq)
                .map(|recorded| &recorded.event)
            {
                Some(Event::UpdateReceived {
                    update_id,
                    name,
                    args,
                    ..
                }) => Some(UpdateRequest {
                    update_id: update_id.clone(),
                    name: name.clone(),
                    args: args.clone(),
                }),
                _ => None,
            },
        ))
    }

    async fn complete_update(
        &mut self,
        update_id: String,
        outcome: Result<String, wit_types::WorkflowError>,
    ) -> wasmtime::Result<()> {
        self.check_halted()?;
        let outcome = outcome.map_err(journal_error);
        if !self.execution.recorder().is_replaying() {
            self.check_update_answer(&update_id, &outcome)?;
        }
        let command = Command::CompleteUpdate {
            update_id: update_id.clone(),
            outcome: outcome.clone(),
        };
        self.command(&command, |seq, _| match outcome {
            Ok(output) => Event::UpdateCompleted {
                seq,
                update_id,
                output,
            },
            Err(error) => Event::UpdateFailed {
                seq,
                update_id,
                error,
            },
        })
        .await?;
        self.execution.note_update_answered();
        Ok(())
    }

    async fn info(&mut self) -> wasmtime::Result<WorkflowInfo> {
        let record = &self.execution.record;
        Ok(WorkflowInfo {
            workflow_id: record.workflow_id.clone(),
            run_id: record.run_id.clone(),
            workflow_type: record.workflow_type.clone(),
            tenant: record.tenant.clone(),
        })
    }

    async fn log(
        &mut self,
        level: wit_types::LogLevel,
        mut message: String,
    ) -> wasmtime::Result<()> {
        if message.len() > LOG_MESSAGE_BYTES_MAX {
            let mut cut = LOG_MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let level_name = match level {
            wit_types::LogLevel::Trace => "trace",
            wit_types::LogLevel::Debug => "debug",
            wit_types::LogLevel::Info => "info",
            wit_types::LogLevel::Warn => "warn",
            wit_types::LogLevel::Error => "error",
        };
        let recorder = self.execution.recorder();
        self.execution
            .lines
            .write(&recorder, level_name, "log", message);
        Ok(())
    }
}

impl WorkflowHost {
    /// A new answer must be to an update this execution received and has
    /// not answered yet, and be JSON within the payload limit.
    fn check_update_answer(
        &self,
        update_id: &str,
        outcome: &Result<String, crate::journal::WorkflowError>,
    ) -> wasmtime::Result<()> {
        let recorder = self.execution.recorder();
        if !recorder.history.update_delivered(update_id) {
            return Err(fail(
                "InvalidUpdateId",
                format!(
                    "complete-update names update `{update_id}`, which this execution never received"
                ),
            ));
        }
        if recorder.history.update_answer(update_id).is_some() {
            return Err(fail(
                "InvalidUpdateId",
                format!("update `{update_id}` was answered already; each update is answered once"),
            ));
        }
        let payload_bytes_max = self.execution.limits.payload_bytes_max;
        match outcome {
            Ok(output) => {
                crate::runtime::check_json_payload("an update's answer", output, payload_bytes_max)
                    .map_err(|problem| fail("InvalidUpdateAnswer", problem.to_string()))
            }
            Err(error) => {
                let size = error.error_type.len()
                    + error.message.len()
                    + error.details.as_ref().map_or(0, String::len);
                if size > payload_bytes_max {
                    return Err(fail(
                        "InvalidUpdateAnswer",
                        format!(
                            "an update's error is {size} bytes; the limit is payload_bytes_max = {payload_bytes_max}"
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

fn journal_error(error: wit_types::WorkflowError) -> crate::journal::WorkflowError {
    crate::journal::WorkflowError {
        error_type: error.error_type,
        message: error.message,
        details: error.details,
    }
}

impl wit_types::Host for WorkflowHost {}
impl wit_types::Host for super::ActivityHost {}

/// Applies the runtime defaults to the guest's options and validates them.
/// Attempts are bounded by the tenant's `activity_attempts_max`: the
/// default policy and "0 = unlimited" get that bound; more is refused.
fn journal_options(
    options: wit_types::ActivityOptions,
    attempts_max: u32,
) -> Result<ActivityOptions, String> {
    let mut retry = match options.retry {
        Some(policy) => RetryPolicy {
            initial_interval_ms: policy.initial_interval_ms,
            backoff_coefficient: policy.backoff_coefficient,
            maximum_interval_ms: match policy.maximum_interval_ms {
                0 => policy.initial_interval_ms.saturating_mul(100),
                set => set,
            },
            maximum_attempts: policy.maximum_attempts,
            non_retryable_error_types: policy.non_retryable_error_types,
        },
        None => RetryPolicy::default(),
    };
    if retry.maximum_attempts == 0 {
        retry.maximum_attempts = attempts_max;
    }
    if retry.maximum_attempts > attempts_max {
        return Err(format!(
            "the retry policy asks for {} attempts; the limit is activity_attempts_max = {attempts_max}",
            retry.maximum_attempts
        ));
    }
    retry.validate()?;
    for (name, timeout) in [
        (
            "start_to_close_timeout_ms",
            options.start_to_close_timeout_ms,
        ),
        (
            "schedule_to_close_timeout_ms",
            options.schedule_to_close_timeout_ms,
        ),
    ] {
        if timeout == Some(0) {
            return Err(format!("{name} must be > 0 when set"));
        }
    }
    Ok(ActivityOptions {
        retry,
        start_to_close_timeout_ms: options.start_to_close_timeout_ms,
        schedule_to_close_timeout_ms: options.schedule_to_close_timeout_ms,
        heartbeat_timeout_ms: options.heartbeat_timeout_ms,
        compensates: options.compensates,
    })
}

fn wit_failure(failure: &ActivityFailure) -> wit_types::ActivityFailure {
    wit_types::ActivityFailure {
        reason: match failure.reason {
            FailureReason::NonRetryable => wit_types::FailureReason::NonRetryable,
            FailureReason::AttemptsExhausted => wit_types::FailureReason::AttemptsExhausted,
            FailureReason::TimedOut => wit_types::FailureReason::TimedOut,
            FailureReason::UnknownActivity => wit_types::FailureReason::UnknownActivity,
            FailureReason::Cancelled => wit_types::FailureReason::Cancelled,
        },
        attempts: failure.attempts,
        last_error: wit_types::ActivityError {
            error_type: failure.last_error.error_type.clone(),
            message: failure.last_error.message.clone(),
            details: failure.last_error.details.clone(),
            non_retryable: failure.last_error.non_retryable,
        },
    }
}
