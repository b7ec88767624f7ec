//! `reprise:workflow/activity-context`: what an activity attempt knows
//! about the call it serves.

use std::sync::Arc;

use super::ActivityHost;
use super::activity_bindings::reprise::workflow::activity_context::Host;
use crate::activity::Heartbeat;
use crate::telemetry::LogSink;

/// The identity of one activity attempt.
#[derive(Clone)]
pub struct ActivityCall {
    pub idempotency_key: String,
    pub attempt: u32,
    pub workflow_id: String,
    pub run_id: String,
    pub activity_name: String,
    /// Details of the last heartbeat of an earlier attempt.
    pub previous_heartbeat_details: Option<String>,
    pub heartbeat: Arc<Heartbeat>,
    /// The attempt's W3C trace context.
    pub traceparent: String,
    /// The seq of the call in its workflow's history.
    pub seq: u64,
    /// Where the attempt's stdout/stderr lines are stored.
    pub logs: Option<LogSink>,
}

impl ActivityCall {
    /// The context of the one call made at load time (`names`).
    pub fn for_discovery() -> ActivityCall {
        ActivityCall {
            idempotency_key: String::new(),
            attempt: 0,
            workflow_id: String::new(),
            run_id: String::new(),
            activity_name: String::new(),
            previous_heartbeat_details: None,
            heartbeat: Heartbeat::detached(),
            traceparent: String::new(),
            seq: 0,
            logs: None,
        }
    }
}

impl Host for ActivityHost {
    async fn idempotency_key(&mut self) -> wasmtime::Result<String> {
        Ok(self.context.idempotency_key.clone())
    }

    async fn attempt(&mut self) -> wasmtime::Result<u32> {
        Ok(self.context.attempt)
    }

    async fn workflow_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.context.workflow_id.clone())
    }

    async fn run_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.context.run_id.clone())
    }

    async fn activity_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.context.activity_name.clone())
    }

    async fn heartbeat(&mut self, details: Option<String>) -> wasmtime::Result<()> {
        self.context.heartbeat.beat(details);
        Ok(())
    }

    async fn last_heartbeat_details(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.context.previous_heartbeat_details.clone())
    }

    async fn traceparent(&mut self) -> wasmtime::Result<String> {
        Ok(self.context.traceparent.clone())
    }
}
