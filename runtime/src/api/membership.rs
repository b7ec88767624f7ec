//! This process as one node among those sharing the database.
//!
//! A node drives the running executions it owns. Every tick (a fifth of
//! its lease) it renews the lease, picks up what other nodes bound or
//! uploaded (workflow types, tenants' limits and activity modules), and
//! claims the executions no live node owns — a dead node's (its lease
//! passed or, on PostgreSQL, its database session is gone), those a node
//! left at shutdown, those never owned — and drives them by replay.
//!
//! A node that finds its lease lost stalled past it (paused, swapped out,
//! cut off from the database) while another node took its executions: its
//! appends are refused from then on, so it drops every drive at once and
//! joins again under a new id. At shutdown it leaves, and the others take
//! its executions at their next tick instead of after the lease.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::Server;
use crate::runtime::Runtime;
use crate::store::Joined;
use crate::tenant::TenantLimits;

/// How long a node's lease lasts without renewal: how long a stalled node's
/// executions wait before others take them.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(5);
/// The shortest lease `--lease-ms` accepts: renewals must fit in it.
pub const LEASE_MIN: Duration = Duration::from_millis(500);
/// Ticks per lease: a node renews five times before its lease could pass.
const TICKS_PER_LEASE: u32 = 5;
/// Executions one claim takes; a tick claims until fewer come back.
const CLAIM_BATCH: u32 = 100;

/// A fresh node id: host, process and 32 random bits, so a node that joins
/// again (or a restarted one) is never taken for its earlier self.
pub fn new_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default();
    let mut random = [0u8; 4];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut random);
    format!("{host}-{}-{}", std::process::id(), hex::encode(random))
}

/// Joins the database's nodes as a new node, and loads what the store
/// holds (workflow types, tenants' limits and activity modules). Fails
/// when the backend takes one node at a time and another process is it.
/// `api_url`: where this node's HTTP API answers the other nodes.
pub async fn join(runtime: &Runtime, lease: Duration, api_url: Option<&str>) -> anyhow::Result<()> {
    let node_id = new_node_id();
    match runtime.store().join_nodes(&node_id, lease, api_url).await? {
        Joined::Member => {}
        Joined::Refused => anyhow::bail!(
            "another `reprise serve` holds this SQLite database; run one server per SQLite \
             database, or several on one PostgreSQL database (--database postgres://…)"
        ),
    }
    tracing::info!(node = %node_id, lease_ms = lease.as_millis() as u64, "joined the nodes");
    sync_from_store(runtime).await
}

/// Renews the lease, keeps up with the store, and claims orphans until
/// the process shuts down; then leaves.
pub fn spawn(server: Arc<Server>, lease: Duration, api_url: Option<String>) {
    tokio::spawn(async move {
        let mut shutdown = server.runtime().shutdown_requested();
        let mut ticks = tokio::time::interval(lease / TICKS_PER_LEASE);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
            if let Err(problem) = tick(&server, lease, api_url.as_deref()).await {
                tracing::warn!(error = %format!("{problem:#}"), "node upkeep failed; trying again next tick");
            }
        }
    });
}

async fn tick(server: &Arc<Server>, lease: Duration, api_url: Option<&str>) -> anyhow::Result<()> {
    let store = server.store();
    if !store.renew_lease(lease).await? {
        let dropped = server.drop_all_drives();
        let node_id = new_node_id();
        tracing::warn!(
            dropped,
            node = %node_id,
            "this node's lease passed and other nodes took its executions; dropped its drives and joining again"
        );
        anyhow::ensure!(
            store.join_nodes(&node_id, lease, api_url).await? == Joined::Member,
            "could not join the nodes again"
        );
    }
    sync_from_store(server.runtime()).await?;
    loop {
        let claimed = store.claim_orphans(CLAIM_BATCH).await?;
        let count = claimed.len();
        if count > 0 {
            tracing::info!(count, "claimed executions no live node owns");
        }
        for record in claimed {
            server.spawn_drive(record);
        }
        if count < CLAIM_BATCH as usize {
            return Ok(());
        }
    }
}

/// Hands this node's executions to the others (at shutdown, once drives
/// stopped).
pub async fn leave(server: &Server) {
    if let Err(problem) = server.store().leave_nodes().await {
        tracing::warn!(error = %problem, "could not leave the nodes; others take over when the lease passes");
    }
}

/// What other nodes (or earlier processes) stored that this process runs
/// by: workflow type bindings, tenants' limits, tenants' activity modules,
/// upgrades of running executions.
async fn sync_from_store(runtime: &Runtime) -> anyhow::Result<()> {
    runtime
        .load_types()
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    for tenant in runtime.store().tenants().await? {
        let limits = TenantLimits::from_json(&tenant.limits)
            .with_context(|| format!("tenant `{}`", tenant.name))?;
        runtime.set_tenant_limits(&tenant.name, limits);
    }
    runtime.activities().load_uploads(None).await?;
    runtime
        .load_pending_upgrades()
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(())
}
