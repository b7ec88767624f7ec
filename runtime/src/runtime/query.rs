//! Queries and update validation: a fresh instance replays the durable
//! history without writing anything, and the guest answers at the point
//! where that history ends (see `next-query` in the WIT). The live
//! instance, if any, is never entered: a query sees only what is durable.

use super::{RunError, Runtime, host_error, started_parts};
use crate::execution::{Execution, Interrupt, QueryAsk, QueryState, runtime_error};
use crate::journal::{Halt, Recorder, WorkflowError};
use crate::store::ExecutionRecord;

/// The error type of a query the workflow did not answer.
pub const QUERY_NOT_ANSWERED: &str = "QueryNotAnswered";

impl Runtime {
    /// Asks `record`'s run, replayed from its durable history in a fresh
    /// instance of the module it runs, to answer query `name` — or, for
    /// [`QueryAsk::ValidateUpdate`], whether it accepts update `name` —
    /// with JSON `args`. The replay counts against the tenant like an
    /// activation (an instance of its quota, turns on the guest threads,
    /// its fuel and memory limits) and writes nothing.
    ///
    /// `Ok(Err(error))` is the workflow's answer when it is an error, or
    /// why it could not answer (its handler made a durable call, it
    /// registered no handlers, …). A workflow that validates no updates
    /// accepts them all.
    pub async fn query(
        &self,
        record: ExecutionRecord,
        ask: QueryAsk,
        name: &str,
        args: &str,
    ) -> Result<Result<String, WorkflowError>, RunError> {
        let history = self.load_history(&record).await?;
        let (_, started_digest, input) = started_parts(&history, &record)?;
        let digest = history
            .module_digest()
            .unwrap_or(&started_digest)
            .to_string();
        let pre = self.prepared_by_digest(&digest).await?;
        let limits = self.limits_for(&record.tenant);
        let instances_max = limits.instances_max;
        let mut execution = Execution::new(
            record,
            limits,
            Recorder::new(history, true),
            self.surroundings(0, None),
        );
        execution.query = Some(QueryState {
            ask,
            name: name.to_string(),
            args: args.to_string(),
            answer: None,
        });
        let (execution, result) = self
            .activate_in_slot(&pre, execution, &input, instances_max)
            .await?;
        let handler_running = execution.recorder().is_answering_query();
        let answer = execution
            .query
            .as_ref()
            .and_then(|query| query.answer.clone());
        self.telemetry.metrics.query_answered(
            &execution.record.tenant,
            ask,
            answer.as_ref().is_some_and(Result::is_ok),
        );
        if handler_running {
            // The replay stopped inside the handler.
            return Ok(Err(match result {
                Err(Interrupt::FailWorkflow(error)) => error,
                Err(other) => runtime_error("QueryFailed", other.to_string()),
                Ok(_) => runtime_error("QueryFailed", "the handler did not answer"),
            }));
        }
        if let Some(answer) = answer {
            return Ok(answer);
        }
        match result {
            Err(Interrupt::Halt(Halt::Nondeterminism(source))) => Err(RunError::Nondeterminism {
                workflow_id: execution.record.workflow_id.clone(),
                run_id: execution.record.run_id.clone(),
                source,
            }),
            Err(Interrupt::FailWorkflow(error)) => Ok(Err(runtime_error(
                "QueryFailed",
                format!("the replay failed before the workflow could answer: {error}"),
            ))),
            Ok(_) | Err(Interrupt::Halt(Halt::HistoryEnd) | Interrupt::ContinueAsNew { .. })
                if ask == QueryAsk::ValidateUpdate =>
            {
                Ok(Ok("null".to_string()))
            }
            Ok(_) | Err(Interrupt::Halt(Halt::HistoryEnd) | Interrupt::ContinueAsNew { .. }) => {
                Ok(Err(runtime_error(
                    QUERY_NOT_ANSWERED,
                    format!(
                        "the workflow did not answer query `{name}`: where its history ends it has no query handler registered (or its module was built with an SDK without queries)"
                    ),
                )))
            }
            Err(other) => Err(host_error(&execution.record, other)),
        }
    }
}
