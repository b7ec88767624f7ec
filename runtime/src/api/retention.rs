//! The retention sweeper: deletes each tenant's executions that finished
//! more than its `finished_retention_seconds` ago, and its oldest finished
//! ones past `finished_executions_max`, so what a tenant ran does not
//! fill the disk every tenant shares.
//!
//! One node sweeps for all (the `retention` role). A pass goes tenant by
//! tenant; each write deletes at most [`SWEEP_ROWS_PER_WRITE_MAX`] rows and
//! is followed by a pause of [`SWEEP_PAUSE_PER_WRITE`] times as long, so
//! the shared writer spends at most a quarter of its time sweeping and
//! other tenants' appends rarely queue behind a sweep write. A tenant with
//! a long backlog is swept at most [`SWEEP_ROWS_PER_PASS_MAX`] rows a pass
//! before the next tenant's turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Server;
use crate::store::{Store, StoreError, Sweep};

/// How often the sweeper looks for executions past retention, unless the
/// operator says (`reprise serve --retention-sweep-ms`).
pub const SWEEP_INTERVAL_DEFAULT: Duration = Duration::from_secs(60);
/// Rows (events, messages, log lines, execution rows) one write deletes:
/// ~2 ms of the writer's time on SQLite (`reprise bench --only sweep`).
const SWEEP_ROWS_PER_WRITE_MAX: u32 = 500;
/// The pause after each sweep write, in multiples of the write's own time.
const SWEEP_PAUSE_PER_WRITE: u32 = 3;
/// Rows one tenant's sweep deletes in one pass; the rest waits for the
/// next pass, after the other tenants'.
const SWEEP_ROWS_PER_PASS_MAX: u64 = 1_000_000;
/// The role ([`crate::store::Store::lead`]) of the node that sweeps.
const SWEEPER_ROLE: &str = "retention";

/// Runs the sweeper until the runtime shuts down: a pass every `interval`.
pub fn spawn_sweeper(server: Arc<Server>, interval: Duration) {
    tokio::spawn(async move {
        let mut shutdown = server.runtime().shutdown_requested();
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
            let leads = server.store().lead(SWEEPER_ROLE).await;
            let outcome = match leads {
                Ok(true) => sweep_pass(&server, &shutdown).await,
                Ok(false) => Ok(()),
                Err(problem) => Err(problem),
            };
            if let Err(problem) = outcome {
                tracing::warn!(%problem, "a retention sweep failed; the next pass tries again");
            }
        }
    });
}

async fn sweep_pass(
    server: &Arc<Server>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let store = server.store();
    let runtime = server.runtime();
    for tenant in store.tenants().await? {
        let limits = runtime.limits_for(&tenant.name);
        let retention_ms = limits.finished_retention_seconds.saturating_mul(1_000);
        let past_retention_ms =
            (crate::clock::now_ms().saturating_sub(retention_ms)).min(i64::MAX as u64) as i64;
        let swept = async {
            let past_count_ms = store
                .finished_count_cutoff_ms(&tenant.name, limits.finished_executions_max)
                .await?;
            let finished_before_ms = past_retention_ms.max(past_count_ms.unwrap_or(i64::MIN));
            sweep_tenant(
                store.as_ref(),
                &tenant.name,
                finished_before_ms,
                None,
                || *shutdown.borrow(),
            )
            .await
        };
        // One tenant's failure must not keep the others from their sweep.
        let swept = match swept.await {
            Ok(swept) => swept,
            Err(problem) => {
                tracing::warn!(tenant = %tenant.name, %problem, "a tenant's retention sweep failed; the next pass tries again");
                continue;
            }
        };
        if swept.executions > 0 {
            runtime
                .telemetry()
                .metrics
                .executions_swept(&tenant.name, swept.executions);
            tracing::debug!(tenant = %tenant.name, executions = swept.executions, rows = swept.rows, "swept finished executions");
        }
    }
    Ok(())
}

/// Deletes `tenant`'s executions finished before `finished_before_ms`
/// (only `workflow_id`'s runs, if given), write by write with a pause
/// after each, until none is left, the pass's row budget is spent, or
/// `stopping` says so; what it deleted in all.
pub async fn sweep_tenant(
    store: &dyn Store,
    tenant: &str,
    finished_before_ms: i64,
    workflow_id: Option<&str>,
    stopping: impl Fn() -> bool,
) -> Result<Sweep, StoreError> {
    let mut total = Sweep::default();
    while total.rows < SWEEP_ROWS_PER_PASS_MAX && !stopping() {
        let started = Instant::now();
        let sweep = store
            .sweep_finished(
                tenant,
                finished_before_ms,
                total.cursor,
                SWEEP_ROWS_PER_WRITE_MAX,
                workflow_id,
            )
            .await?;
        total.executions += sweep.executions;
        total.rows += sweep.rows;
        total.more = sweep.more;
        total.cursor = sweep.cursor;
        if !sweep.more {
            break;
        }
        tokio::time::sleep(started.elapsed() * SWEEP_PAUSE_PER_WRITE).await;
    }
    Ok(total)
}
