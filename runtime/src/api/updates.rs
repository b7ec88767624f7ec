//! Updates over HTTP: a message that the workflow answers.
//!
//! ```text
//! POST /v1/executions/{id}/updates/{name}   {"args"?, "update_id"?, "wait_ms"?}
//!      → 200 {"status": "completed", "result"} | 200 {"status": "failed", "error"}
//!      | 202 {"status": "accepted"} (not answered within wait_ms; ask again with the same update_id)
//!      | 422 {"status": "rejected", …} (the workflow's validator said no; the history is untouched)
//! ```
//!
//! An update is validated first (a query replay asks the workflow's
//! validator), then posted to the execution's mailbox, delivered to the
//! workflow's `await-update` and answered by its `complete-update`; the
//! caller gets the answer once it is durable. The update id makes it
//! idempotent: sending it again returns the answer, or waits for it,
//! without delivering it twice.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::post};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::auth::Tenant;
use super::executions::{RESULT_WAIT_MAX_MS, find, raw_text, run_error, store_error};
use super::queries::{refuse_call, workflow_error};
use super::{Server, error};
use crate::execution::QueryAsk;
use crate::journal::{Event, Position, update_answer_in, update_delivered_in};
use crate::runtime::raw_json;
use crate::store::{ExecutionRecord, ExecutionStatus, MessageKind, update_message_id};

/// How long an update request waits for the answer unless it says.
const UPDATE_WAIT_DEFAULT_MS: u64 = 30_000;
/// How often a waiting request looks at the history when nothing wakes
/// it (another process drives the execution).
const ANSWER_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// History events read per look.
const HISTORY_READ_MAX: u64 = 1_000;

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/v1/executions/{id}/updates/{name}", post(update))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    /// JSON, passed to the workflow as sent; `null` if absent.
    #[serde(default)]
    args: Option<Box<RawValue>>,
    /// Makes the update idempotent; the server picks one if absent.
    #[serde(default)]
    update_id: Option<String>,
    /// How long to wait for the answer (default 30 s, at most 60 s).
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn update(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path((id, name)): Path<(String, String)>,
    Json(request): Json<UpdateRequest>,
) -> Response {
    let args = raw_text(request.args);
    if let Some(refusal) = refuse_call("update", &name, &args, tenant.limits.payload_bytes_max) {
        return refusal;
    }
    let update_id = request
        .update_id
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let id_bytes_max = crate::host::durable::NAME_BYTES_MAX;
    if update_id.is_empty() || update_id.len() > id_bytes_max {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "an update_id is 1 to {id_bytes_max} bytes; got {}",
                update_id.len()
            ),
        );
    }
    let wait = Duration::from_millis(
        request
            .wait_ms
            .unwrap_or(UPDATE_WAIT_DEFAULT_MS)
            .min(RESULT_WAIT_MAX_MS),
    );
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let store = server.store();
    let history = match store.history(record.id).await {
        Ok(history) => history,
        Err(problem) => return store_error(problem),
    };
    if let Some(answer) = answer_in(&history, &update_id) {
        return answer;
    }
    let known = update_delivered_in(&history, &update_id);
    if record.status != ExecutionStatus::Running {
        return finished_unanswered(&record, &update_id);
    }
    let message_id = update_message_id(&update_id);
    let posted = known
        || match store.undelivered_messages(record.id).await {
            Ok(messages) => messages
                .iter()
                .any(|message| message.message_id == message_id),
            Err(problem) => return store_error(problem),
        };
    if !posted {
        let validation = server
            .runtime()
            .query(record.clone(), QueryAsk::ValidateUpdate, &name, &args)
            .await;
        match validation {
            Ok(Ok(_)) => {}
            Ok(Err(rejection)) => {
                let body = workflow_error(
                    format!("update `{name}` of execution `{id}` was rejected"),
                    &rejection,
                );
                return reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &update_id,
                    "rejected",
                    body,
                );
            }
            Err(problem) => return run_error(problem),
        }
        if let Err(problem) = store
            .post_message(record.id, MessageKind::Update, &name, &args, &message_id)
            .await
        {
            return store_error(problem);
        }
        server.runtime().mail_posted(record.id);
    }
    // The events read above hold no answer: the wait reads only what follows.
    let read = history.last().map_or(0, |recorded| recorded.position);
    wait_for_answer(&server, &tenant.name, record, read, &update_id, wait).await
}

/// Waits until the workflow answers `update_id`, the execution ends, or
/// `wait` passes. Follows the execution into its next run if it continues
/// as new (its undelivered updates move there). Events of `record` up to
/// position `after` were read already.
async fn wait_for_answer(
    server: &Server,
    tenant: &str,
    mut record: ExecutionRecord,
    mut after: Position,
    update_id: &str,
    wait: Duration,
) -> Response {
    let deadline = tokio::time::Instant::now() + wait;
    let mut answers = server.runtime().update_answers();
    loop {
        // Listen before looking, so an answer between the two is not missed.
        answers.mark_unchanged();
        let waiters = server.drive_waiters(record.id);
        let finished = waiters.stopped.notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        let events = match server
            .store()
            .history_page(record.id, after, HISTORY_READ_MAX)
            .await
        {
            Ok(events) => events,
            Err(problem) => return store_error(problem),
        };
        if let Some(last) = events.last() {
            after = last.position;
        }
        if let Some(answer) = answer_in(&events, update_id) {
            return answer;
        }
        if events.len() as u64 == HISTORY_READ_MAX {
            continue;
        }
        if events
            .last()
            .is_some_and(|recorded| recorded.event.is_terminal())
        {
            match find(server, tenant, &record.workflow_id).await {
                Ok(next) if next.id != record.id && next.status == ExecutionStatus::Running => {
                    record = next;
                    after = 0;
                    continue;
                }
                Ok(ended) => return finished_unanswered(&ended, update_id),
                Err(response) => return response,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let mut body = serde_json::Map::new();
            body.insert(
                "message".into(),
                "the workflow has not answered yet; send the same update_id again to wait for the answer".into(),
            );
            return reply(StatusCode::ACCEPTED, update_id, "accepted", body);
        }
        let _ = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + ANSWER_POLL_INTERVAL),
            async {
                tokio::select! {
                    _ = answers.changed() => {}
                    () = &mut finished => {}
                }
            },
        )
        .await;
    }
}

/// The answer to `update_id` among `events`, as the response.
fn answer_in(events: &[crate::journal::RecordedEvent], update_id: &str) -> Option<Response> {
    let mut body = serde_json::Map::new();
    let mut result = None;
    let status = match update_answer_in(events, update_id)? {
        Event::UpdateCompleted { output, .. } => {
            result = Some(raw_json(output));
            "completed"
        }
        Event::UpdateFailed { error, .. } => {
            body.insert("error".into(), serde_json::to_value(error).ok()?);
            "failed"
        }
        _ => return None,
    };
    Some(reply_with_result(
        StatusCode::OK,
        update_id,
        status,
        body,
        result,
    ))
}

/// An update's answer: `body` with the update id and where it stands.
fn reply(
    code: StatusCode,
    update_id: &str,
    status: &str,
    body: serde_json::Map<String, serde_json::Value>,
) -> Response {
    reply_with_result(code, update_id, status, body, None)
}

/// [`reply`] with the workflow's JSON result, passed on byte for byte.
fn reply_with_result(
    code: StatusCode,
    update_id: &str,
    status: &str,
    mut body: serde_json::Map<String, serde_json::Value>,
    result: Option<Box<RawValue>>,
) -> Response {
    #[derive(serde::Serialize)]
    struct Answer {
        #[serde(flatten)]
        body: serde_json::Map<String, serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Box<RawValue>>,
    }
    body.insert("update_id".into(), update_id.into());
    body.insert("status".into(), status.into());
    (code, Json(Answer { body, result })).into_response()
}

fn finished_unanswered(record: &ExecutionRecord, update_id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        format!(
            "execution `{}` ended ({}) without answering update `{update_id}`",
            record.workflow_id,
            record.status.as_str()
        ),
    )
}
