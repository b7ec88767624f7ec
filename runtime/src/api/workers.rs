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

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::auth::authenticate;
use crate::activity::worker::{TaskError, WorkerQueue};
use crate::journal::ActivityError;
use crate::store::Store;

/// The queue and, on a multi-tenant server, the store that resolves API
/// keys: workers then authenticate and see only their tenant's tasks.
pub struct WorkerApi {
    queue: Arc<WorkerQueue>,
    tenants: Option<Arc<dyn Store>>,
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

#[derive(Deserialize)]
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
    Json(request): Json<PollRequest>,
) -> Response {
    if request.activities.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "name at least one activity in `activities`".into(),
        );
    }
    match api
        .queue
        .poll(
            tenant.as_deref(),
            &request.activities,
            Duration::from_millis(request.wait_ms),
        )
        .await
    {
        Some(task) => (StatusCode::OK, Json(task)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatRequest {
    #[serde(default)]
    details: Option<Box<RawValue>>,
}

async fn heartbeat(
    State(api): State<Arc<WorkerApi>>,
    Caller(tenant): Caller,
    Path(token): Path<String>,
    Json(request): Json<HeartbeatRequest>,
) -> Response {
    outcome(
        api.queue
            .heartbeat(tenant.as_deref(), &token, request.details),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    output: Box<RawValue>,
}

async fn complete(
    State(api): State<Arc<WorkerApi>>,
    Caller(tenant): Caller,
    Path(token): Path<String>,
    Json(request): Json<CompleteRequest>,
) -> Response {
    outcome(
        api.queue
            .complete(tenant.as_deref(), &token, &request.output),
    )
}

#[derive(Deserialize)]
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
    Json(request): Json<FailRequest>,
) -> Response {
    let error = ActivityError {
        error_type: request.error_type,
        message: request.message,
        details: request.details.map(|details| details.get().to_string()),
        non_retryable: request.non_retryable,
    };
    outcome(api.queue.fail(tenant.as_deref(), &token, error))
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
