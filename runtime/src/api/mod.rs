//! The HTTP API: JSON under `/v1` (axum).
//!
//! - [`workers`]: the task queue external activity workers poll.
//! - [`executions`]: modules, workflow types, executions, histories,
//!   signals, cancellation — what `reprise serve` offers clients.
//!
//! Errors are `{"error": "..."}` with a status that says whose fault it is.

pub mod auth;
mod executions;
mod workers;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use executions::execution_routes;
pub use workers::worker_routes;

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
