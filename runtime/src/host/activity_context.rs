//! `reprise:workflow/activity-context`: what an activity attempt knows
//! about the call it serves.

use super::ActivityHost;
use super::activity_bindings::reprise::workflow::activity_context::Host;

/// The identity of one activity attempt.
#[derive(Clone, Debug)]
pub struct ActivityCall {
    pub idempotency_key: String,
    pub attempt: u32,
    pub workflow_id: String,
    pub run_id: String,
    pub activity_name: String,
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
}
