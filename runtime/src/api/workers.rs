//! The task queue external activity workers poll and report to.
//!
//! ```text
//! POST /v1/activity-tasks/poll              {"activities": ["charge"], "wait_ms": 30000}
//!      200 {task_token, activity, input, idempotency_key, attempt, …} | 204 no task
//! POST /v1/activity-tasks/{token}/heartbeat {"details": <JSON>}
//! POST /v1/activity-tasks/{token}/complete  {"output": <JSON>}
//! POST /v1/activity-tasks/{token}/fail      {"error_type", "message", "details", "non_retryable"}
//! ```
//! Errors are `{"error": "..."}` with 400 (bad report), 404 (unknown
//! token) or 409 (the task is no longer open).
//!
//! On several nodes a task waits in the queue of the node whose execution
//! scheduled it, and a worker may ask any node: a poll that finds nothing
//! here looks in the other nodes' queues (a poll forwarded with no wait,
//! between short waits here), and a report for a token this node does not
//! know goes to the others until one knows it. Forwarded requests carry
//! the worker's own key and are never forwarded again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::auth::authenticate;
use crate::activity::outbound::{self, OutboundClient};
use crate::activity::worker::{POLL_WAIT_MAX, TaskError, WorkerQueue};
use crate::journal::ActivityError;
use crate::store::Store;

/// The queue and, on a multi-tenant server, the store that resolves API
/// keys: workers then authenticate and see only their tenant's tasks.
pub struct WorkerApi {
    queue: Arc<WorkerQueue>,
    tenants: Option<Arc<dyn Store>>,
}

/// Marks a request one node forwarded to another: answered from that
/// node's own queue, never forwarded again.
const FORWARDED_HEADER: &str = "x-reprise-forwarded";
/// How long a poll waits on this node's queue between looks at the others'.
const PEER_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a forwarded request may take before that node is passed over.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl WorkerApi {
    /// The other nodes to forward to: none for a forwarded request, an
    /// embedded runtime, or a node alone on its database.
    async fn peers(&self, headers: &HeaderMap) -> Vec<String> {
        match &self.tenants {
            Some(store) if !headers.contains_key(FORWARDED_HEADER) && store.node_id().is_some() => {
                store.peer_api_urls().await.unwrap_or_else(|problem| {
                    tracing::warn!(error = %problem, "could not list the other nodes");
                    Vec::new()
                })
            }
            _ => Vec::new(),
        }
    }
}

/// Sends a worker's request on to node `peer` with the worker's key: its
/// answer, or `None` if that node did not answer.
async fn forward(
    peer: &str,
    path: &str,
    headers: &HeaderMap,
    body: &impl Serialize,
) -> Option<Response> {
    let key = headers.get(header::AUTHORIZATION)?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("{peer}{path}"))
        .header(header::AUTHORIZATION, key)
        .header(header::CONTENT_TYPE, "application/json")
        .header(FORWARDED_HEADER, "1")
        .body(outbound::full_body(serde_json::to_vec(body).ok()?))
        .ok()?;
    let client = OutboundClient::for_this_process().ok()?;
    let answered = async {
        let response = client.send(request).await.ok()?;
        let status = response.status();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, bytes))
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, answered).await {
        Ok(Some((status, bytes))) => {
            Some((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
        }
        _ => {
            tracing::warn!(
                peer,
                path,
                "another node did not answer a forwarded worker request"
            );
            None
        }
    }
}

/// The tenant a worker polls for (`None` on an embedded runtime).
struct Caller(Option<String>);

impl FromRequestParts<Arc<WorkerApi>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Arc<WorkerApi>,
    ) -> Result<Caller, Response> {
        match &api.tenants {
            None => Ok(Caller(None)),
            Some(store) => authenticate(parts, store)
                .await
                .map(|tenant| Caller(Some(tenant.name))),
        }
    }
}

/// The routes for external activity workers. With `tenants`, every
/// request needs a tenant's API key and polls only that tenant's tasks.
pub fn worker_routes(queue: Arc<WorkerQueue>, tenants: Option<Arc<dyn Store>>) -> Router {
    Router::new()
        .route("/v1/activity-tasks/poll", post(poll))
        .route("/v1/activity-tasks/{token}/heartbeat", post(heartbeat))
        .route("/v1/activity-tasks/{token}/complete", post(complete))
        .route("/v1/activity-tasks/{token}/fail", post(fail))
        .with_state(Arc::new(WorkerApi { queue, tenants }))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PollRequest {
    activities: Vec<String>,
    #[serde(default = "default_wait_ms")]
    wait_ms: u64,
}

fn default_wait_ms() -> u64 {
    30_000
}

async fn poll(
    State(api): State<Arc<WorkerApi>>,
    Caller(tenant): Caller,
    headers: HeaderMap,
    Json(request): Json<PollRequest>,
) -> Response {
    if request.activities.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "name at least one activity in `activities`".into(),
        );
    }
    let tenant = tenant.as_deref();
    let wait = Duration::from_millis(request.wait_ms).min(POLL_WAIT_MAX);
    let handed_out = |task| (StatusCode::OK, Json(task)).into_response();
    let peers = api.peers(&headers).await;
    if peers.is_empty() {
        return match api.queue.poll(tenant, &request.activities, wait).await {
            Some(task) => handed_out(task),
            None => StatusCode::NO_CONTENT.into_response(),
        };
    }
    let deadline = tokio::time::Instant::now() + wait;
    let elsewhere = PollRequest {
        activities: request.activities.clone(),
        wait_ms: 0,
    };
    loop {
        if let Some(task) = api
            .queue
            .poll(tenant, &request.activities, Duration::ZERO)
            .await
        {
            return handed_out(task);
        }
        for peer in &peers {
            if let Some(answer) =
                forward(peer, "/v1/activity-tasks/poll", &headers, &elsewhere).await
                && answer.status() == StatusCode::OK
            {
                return answer;
            }
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return StatusCode::NO_CONTENT.into_response();
        }
        let here = remaining.min(PEER_POLL_INTERVAL);
        if let Some(task) = api.queue.poll(tenant, &request.activities, here).await {
            return handed_out(task);
        }
    }
}

/// Answers a report from this node's queue, or, for a token it does not
/// know, from the first other node that knows it.
async fn report(
    api: &WorkerApi,
    headers: &HeaderMap,
    path: String,
    body: &impl Serialize,
    here: Result<(), TaskError>,
) -> Response {
    // Tokens are hex; anything else is nobody's (and never goes into
    // another node's URL).
    let forwardable = |token: &str| token.bytes().all(|byte| byte.is_ascii_alphanumeric());
    if let Err(TaskError::Unknown(token)) = &here
        && forwardable(token)
    {
        for peer in api.peers(headers).await {
            if let Some(answer) = forward(&peer, &path, headers, body).await
                && answer.status() != StatusCode::NOT_FOUND
            {
                return answer;
            }
        }
    }
    outcome(here)
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatRequest {
    #[serde(default)]
    details: Option<Box<RawValue>>,
}

async fn heartbeat(
    State(api): State<Arc<WorkerApi>>,
    Caller(tenant): Caller,
    Path(token): Path<String>,
    headers: HeaderMap,
    Json(request): Json<HeartbeatRequest>,
) -> Response {
    let here = api
        .queue
        .heartbeat(tenant.as_deref(), &token, request.details.clone());
    let path = format!("/v1/activity-tasks/{token}/heartbeat");
    report(&api, &headers, path, &request, here).await
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    output: Box<RawValue>,
}

async fn complete(
    State(api): State<Arc<WorkerApi>>,
    Caller(tenant): Caller,
    Path(token): Path<String>,
    headers: HeaderMap,
    Json(request): Json<CompleteRequest>,
) -> Response {
    let here = api
        .queue
        .complete(tenant.as_deref(), &token, &request.output);
    let path = format!("/v1/activity-tasks/{token}/complete");
    report(&api, &headers, path, &request, here).await
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    error_type: String,
    message: String,
    #[serde(default)]
    details: Option<Box<RawValue>>,
    #[serde(default)]
    non_retryable: bool,
}

async fn fail(
    State(api): State<Arc<WorkerApi>>,
    Caller(tenant): Caller,
    Path(token): Path<String>,
    headers: HeaderMap,
    Json(request): Json<FailRequest>,
) -> Response {
    let error = ActivityError {
        error_type: request.error_type.clone(),
        message: request.message.clone(),
        details: request
            .details
            .as_ref()
            .map(|details| details.get().to_string()),
        non_retryable: request.non_retryable,
    };
    let here = api.queue.fail(tenant.as_deref(), &token, error);
    let path = format!("/v1/activity-tasks/{token}/fail");
    report(&api, &headers, path, &request, here).await
}

fn outcome(result: Result<(), TaskError>) -> Response {
    match result {
        Ok(()) => (StatusCode::OK, Json(json!({ "ok": true }))).into_response(),
        Err(problem @ TaskError::Unknown(_)) => error(StatusCode::NOT_FOUND, problem.to_string()),
        Err(problem @ TaskError::Finished { .. }) => {
            error(StatusCode::CONFLICT, problem.to_string())
        }
        Err(problem @ TaskError::InvalidReport(_)) => {
            error(StatusCode::BAD_REQUEST, problem.to_string())
        }
    }
}

use super::error;
