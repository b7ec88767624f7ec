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

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::activity::worker::{TaskError, WorkerQueue};
use crate::journal::ActivityError;

/// The routes for external activity workers.
pub fn worker_routes(queue: Arc<WorkerQueue>) -> Router {
    Router::new()
        .route("/v1/activity-tasks/poll", post(poll))
        .route("/v1/activity-tasks/{token}/heartbeat", post(heartbeat))
        .route("/v1/activity-tasks/{token}/complete", post(complete))
        .route("/v1/activity-tasks/{token}/fail", post(fail))
        .with_state(queue)
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

async fn poll(State(queue): State<Arc<WorkerQueue>>, Json(request): Json<PollRequest>) -> Response {
    if request.activities.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "name at least one activity in `activities`".into(),
        );
    }
    match queue
        .poll(&request.activities, Duration::from_millis(request.wait_ms))
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
    details: Option<serde_json::Value>,
}

async fn heartbeat(
    State(queue): State<Arc<WorkerQueue>>,
    Path(token): Path<String>,
    Json(request): Json<HeartbeatRequest>,
) -> Response {
    outcome(queue.heartbeat(&token, request.details))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    output: serde_json::Value,
}

async fn complete(
    State(queue): State<Arc<WorkerQueue>>,
    Path(token): Path<String>,
    Json(request): Json<CompleteRequest>,
) -> Response {
    outcome(queue.complete(&token, request.output))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    error_type: String,
    message: String,
    #[serde(default)]
    details: Option<serde_json::Value>,
    #[serde(default)]
    non_retryable: bool,
}

async fn fail(
    State(queue): State<Arc<WorkerQueue>>,
    Path(token): Path<String>,
    Json(request): Json<FailRequest>,
) -> Response {
    let error = ActivityError {
        error_type: request.error_type,
        message: request.message,
        details: request.details.map(|details| details.to_string()),
        non_retryable: request.non_retryable,
    };
    outcome(queue.fail(&token, error))
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
