//! The HTTP API: JSON under `/v1` (axum).
//!
//! - [`auth`]: API keys, the tenant of a request, its rate limit, the admin key.
//! - `modules`: uploading, listing and downloading modules; workflow types.
//! - `executions`: starting executions, status, history, signals,
//!   cancellation, termination.
//! - `admin`: tenants and their limits (admin key only).
//! - `retention`: the sweeper deleting finished executions past retention.
//! - `workers`: the task queue external activity workers poll.
//! - `connections`: the accept loop and its limits (connections, header
//!   and body read timeouts).
//! - `web/index.html`: the read-only web view served at `/`.
//!
//! Every answer that is not a success is `{"error": "..."}` with a status
//! that says whose fault it is — also for what axum itself refuses (bad
//! JSON, wrong content type, unknown routes, oversized bodies).

mod admin;
pub mod auth;
mod connections;
mod executions;
pub mod membership;
mod modules;
mod queries;
mod retention;
mod schedules;
mod updates;
mod workers;

pub use retention::{SWEEP_INTERVAL_DEFAULT, spawn_sweeper, sweep_tenant};
pub use schedules::spawn_scheduler;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::activity::worker::WorkerQueue;
use crate::quota::TenantQuotas;
use crate::runtime::{RunError, Runtime};
use crate::store::{ExecutionRecord, Store};
use crate::telemetry::metrics::SampledGauges;
use crate::tenant::RateLimiter;

pub use connections::{
    ConnectionLimits, LISTEN_BACKLOG, bind, kernel_backlog_cap, serve, serve_until,
};
pub use executions::{NEXT_PAGE_HEADER, RESULT_WAIT_MAX_MS};
pub use workers::worker_routes;

/// The most bytes of a non-JSON error body (axum's own rejections) quoted
/// in the JSON error that replaces it.
const REJECTION_TEXT_BYTES_MAX: usize = 4 * 1024;

/// How long a drive stopped by a host fault (the database unreachable)
/// waits before it replays again; doubling up to [`DRIVE_RETRY_MAX`].
const DRIVE_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const DRIVE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// What wakes the requests waiting for a drive of this process to stop,
/// and the row it left if it finished the execution (they answer from it
/// instead of reading it back).
#[derive(Default)]
pub struct DriveWaiters {
    pub stopped: Notify,
    pub finished: OnceLock<ExecutionRecord>,
}

/// What the routes share.
pub struct Server {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    /// Executions this process drives now (so none is driven twice): the
    /// drive's number and its task.
    driving: Mutex<HashMap<i64, (u64, AbortHandle)>>,
    /// Numbers drives, so an ending drive forgets only its own entry.
    drives_started: AtomicU64,
    /// Wakes status requests waiting for an execution this process drives
    /// (others poll).
    drive_waiters: Mutex<HashMap<i64, Arc<DriveWaiters>>>,
    rate_limiter: RateLimiter,
    tenant_cache: auth::TenantCache,
    /// Each tenant's uploads compiling now.
    compilations: TenantQuotas,
    /// Each tenant's execution deletions under way (one at a time).
    deletions: TenantQuotas,
    /// SHA-256 of the admin key, if the server has one.
    admin_key_sha256: Option<String>,
    queue: Arc<WorkerQueue>,
}

impl Server {
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.rate_limiter
    }

    pub fn tenant_cache(&self) -> &auth::TenantCache {
        &self.tenant_cache
    }

    pub fn admin_key_sha256(&self) -> Option<&str> {
        self.admin_key_sha256.as_deref()
    }

    /// Drives `record` in the background unless this process already
    /// does, or another node owns it.
    pub fn spawn_drive(self: &Arc<Self>, record: ExecutionRecord) {
        if record.owner_node.as_deref() != self.store.node_id().as_deref() {
            return;
        }
        let id = record.id;
        let mut driving = self
            .driving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if driving.contains_key(&id) {
            return;
        }
        let number = self.drives_started.fetch_add(1, Ordering::Relaxed);
        let server = self.clone();
        // The task cannot forget its entry before it is made: forgetting
        // takes the lock held here.
        let task = tokio::spawn(async move {
            let workflow_id = record.workflow_id.clone();
            let mut backoff = DRIVE_RETRY_FIRST;
            let mut finished = None;
            loop {
                match server.runtime.drive_to_end(record.clone()).await {
                    Ok(end) => finished = end.record,
                    Err(RunError::ShuttingDown { .. }) => {
                        tracing::debug!(%workflow_id, "stopped for the shutdown");
                    }
                    Err(error @ RunError::Disowned { .. }) => tracing::info!(%error),
                    // The database went away (restarted, unreachable): the
                    // execution is still this node's, so nobody else will
                    // resume it. Replay it again once the store may be back.
                    Err(error @ (RunError::Store(_) | RunError::Host { .. }))
                        if !*server.runtime.shutdown_requested().borrow() =>
                    {
                        tracing::warn!(%workflow_id, %error, retry_in_ms = backoff.as_millis() as u64, "driving an execution stopped; resuming it later");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(DRIVE_RETRY_MAX);
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%workflow_id, %error, "driving an execution stopped")
                    }
                }
                break;
            }
            let mut driving = server
                .driving
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if driving.get(&id).is_some_and(|(own, _)| *own == number) {
                driving.remove(&id);
            }
            drop(driving);
            server.wake_waiters(id, finished);
        });
        driving.insert(id, (number, task.abort_handle()));
    }

    /// Stops every drive of this process at once: the node lost its lease,
    /// so other nodes own its executions now (and its appends would be
    /// refused anyway).
    pub fn drop_all_drives(&self) -> usize {
        let dropped: Vec<(i64, (u64, AbortHandle))> = self
            .driving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain()
            .collect();
        for (id, (_, task)) in &dropped {
            task.abort();
            self.wake_waiters(*id, None);
        }
        dropped.len()
    }

    /// Status requests waiting on `id` answer from `finished`, the row the
    /// drive left, or look at the store again.
    fn wake_waiters(&self, id: i64, finished: Option<ExecutionRecord>) {
        let waiting = self
            .drive_waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id);
        if let Some(waiters) = waiting {
            if let Some(record) = finished {
                let _ = waiters.finished.set(record);
            }
            waiters.stopped.notify_waiters();
        }
    }

    /// Waits until no drive runs (after [`Runtime::shut_down`]), at most
    /// `max`; returns how many still run.
    pub async fn drain(&self, max: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let running = self
                .driving
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .len();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Starts an execution of `tenant`'s workflow type (idempotent by id,
    /// as `options.reuse` says) and drives it in this process if it runs:
    /// the run, and whether it is new.
    pub async fn start_and_drive(
        self: &Arc<Self>,
        tenant: &str,
        workflow_type: &str,
        workflow_id: Option<String>,
        input: &str,
        options: crate::runtime::StartOptions,
    ) -> Result<(ExecutionRecord, bool), RunError> {
        let digest = self
            .runtime
            .resolve_type(tenant, workflow_type)
            .await?
            .ok_or_else(|| RunError::UnknownWorkflowType {
                name: workflow_type.to_string(),
            })?;
        let (record, created) = self
            .runtime
            .start_for(tenant, workflow_type, &digest, workflow_id, input, options)
            .await?;
        if record.status == crate::store::ExecutionStatus::Running {
            self.spawn_drive(record.clone());
        }
        Ok((record, created))
    }

    /// Whether this process drives execution `id` now: its end will wake
    /// the [`Server::drive_waiters`].
    pub fn drives(&self, id: i64) -> bool {
        self.driving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(&id)
    }

    /// What wakes a waiter when this process stops driving execution `id`.
    pub fn drive_waiters(&self, id: i64) -> Arc<DriveWaiters> {
        self.drive_waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }
}

/// The whole API of `reprise serve`, and the state its routes share (to
/// resume executions). `admin_key` enables the tenant-management routes.
pub fn router(
    runtime: Arc<Runtime>,
    queue: Arc<WorkerQueue>,
    admin_key: Option<&str>,
) -> (Router, Arc<Server>) {
    let server = Arc::new(Server {
        store: runtime.store().clone(),
        runtime,
        driving: Mutex::new(HashMap::new()),
        drives_started: AtomicU64::new(0),
        drive_waiters: Mutex::new(HashMap::new()),
        rate_limiter: RateLimiter::default(),
        tenant_cache: auth::TenantCache::default(),
        admin_key_sha256: admin_key.map(auth::key_sha256),
        compilations: TenantQuotas::default(),
        deletions: TenantQuotas::default(),
        queue: queue.clone(),
    });
    let router = Router::new()
        .merge(modules::routes())
        .merge(executions::routes())
        .merge(queries::routes())
        .merge(updates::routes())
        .merge(schedules::routes())
        .merge(admin::routes())
        .route("/healthz", get(|| async { Json(json!({ "ok": true })) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(web_page))
        .with_state(server.clone())
        .merge(worker_routes(queue, Some(server.store.clone())))
        .fallback(unknown_route)
        .layer(middleware::from_fn(refuse_encoded_bodies))
        .layer(middleware::map_response(json_errors));
    (router, server)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The read-only web view: a static page over the JSON API. It holds no
/// data itself; the API key the user enters decides what it shows.
async fn web_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        include_str!("web/index.html"),
    )
        .into_response()
}

/// Prometheus metrics, for the admin key's holder (they name tenants).
async fn metrics(
    axum::extract::State(server): axum::extract::State<Arc<Server>>,
    _admin: auth::Admin,
) -> Response {
    let text = server.runtime.telemetry().metrics.render(SampledGauges {
        worker_queue_depth: server.queue.depth(),
        components_in_memory: server.runtime.engine().components_in_memory(),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// How long readiness waits for the store: a database that is down must
/// turn readiness red at once, not after a connection timeout.
const READY_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the store answers: the process is up *and* can serve.
async fn ready(axum::extract::State(server): axum::extract::State<Arc<Server>>) -> Response {
    match tokio::time::timeout(READY_STORE_WAIT, server.store.tenants()).await {
        Ok(Ok(_)) => Json(json!({ "ready": true })).into_response(),
        Ok(Err(problem)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {problem}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the store did not answer within {} ms",
                READY_STORE_WAIT.as_millis()
            ),
        ),
    }
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; the API is described in runtime/openapi.json",
            uri.path()
        ),
    )
}

/// Compressed request bodies are refused rather than inflated: a small
/// gzip body can expand without bound (a zip bomb), and nothing here
/// needs them.
async fn refuse_encoded_bodies(request: Request, next: Next) -> Response {
    let encoded = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|encoding| !encoding.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed request bodies (Content-Encoding) are not accepted; send the body uncompressed".to_string(),
        );
    }
    next.run(request).await
}

/// Rewrites axum's plain-text rejections (invalid JSON, a missing content
/// type, a body over the limit, a wrong method) as JSON errors.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REJECTION_TEXT_BYTES_MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match (text.is_empty(), status) {
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            "this route does not take that method; see runtime/openapi.json".to_string()
        }
        (true, _) => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
        (false, StatusCode::PAYLOAD_TOO_LARGE) => {
            format!("{text}: the request body is over this route's size limit")
        }
        (false, StatusCode::UNSUPPORTED_MEDIA_TYPE) if text.contains("application/json") => {
            format!(
                "{text}: send the header `Content-Type: application/json` (curl: -H 'content-type: application/json')"
            )
        }
        (false, _) => text,
    };
    let mut rewritten = error(status, message);
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}
