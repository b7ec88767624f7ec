//! Queries over HTTP: read a workflow's state without touching its history.
//!
//! ```text
//! POST /v1/executions/{id}/queries/{name}   {"args"?} → 200 {"result"} | 422 the workflow's error
//! ```
//!
//! The answer comes from a fresh instance that replays the durable history
//! (see `Runtime::query`): it reflects what is durable, never an event the
//! live execution has not committed yet.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::post};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::auth::Tenant;
use super::executions::{find, raw_text, run_error};
use super::{Server, error};
use crate::execution::QueryAsk;
use crate::journal::WorkflowError;
use crate::runtime::{check_json_payload, raw_json};

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/v1/executions/{id}/queries/{name}", post(query))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    /// JSON, passed to the handler as sent; `null` if absent.
    #[serde(default)]
    args: Option<Box<RawValue>>,
}

/// The refusal of a query or update whose name or JSON args break the
/// limits, if they do.
pub(super) fn refuse_call(
    what: &str,
    name: &str,
    args: &str,
    payload_bytes_max: usize,
) -> Option<Response> {
    if let Some(problem) = crate::host::durable::name_problem(what, name) {
        return Some(error(StatusCode::BAD_REQUEST, problem));
    }
    check_json_payload("args", args, payload_bytes_max)
        .err()
        .map(|problem| run_error(problem.into()))
}

/// A workflow's error as an answer's body: a summary and its parts.
pub(super) fn workflow_error(
    summary: String,
    failure: &WorkflowError,
) -> serde_json::Map<String, serde_json::Value> {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), format!("{summary}: {failure}").into());
    body.insert("error_type".into(), failure.error_type.clone().into());
    body.insert("message".into(), failure.message.clone().into());
    body.insert("details".into(), failure.details.clone().into());
    body
}

#[derive(serde::Serialize)]
struct QueryAnswer<'a> {
    workflow_id: &'a str,
    run_id: &'a str,
    result: Box<RawValue>,
}

async fn query(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path((id, name)): Path<(String, String)>,
    Json(request): Json<QueryRequest>,
) -> Response {
    let args = raw_text(request.args);
    if let Some(refusal) = refuse_call("query", &name, &args, tenant.limits.payload_bytes_max) {
        return refusal;
    }
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let run_id = record.run_id.clone();
    match server
        .runtime()
        .query(record, QueryAsk::Query, &name, &args)
        .await
    {
        // A struct, not `json!`: the result passes byte for byte.
        Ok(Ok(result)) => Json(QueryAnswer {
            workflow_id: &id,
            run_id: &run_id,
            result: raw_json(&result),
        })
        .into_response(),
        Ok(Err(failure)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(workflow_error(
                format!("query `{name}` of execution `{id}` failed"),
                &failure,
            )),
        )
            .into_response(),
        Err(problem) => run_error(problem),
    }
}
