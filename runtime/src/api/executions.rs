//! Executions over HTTP.
//!
//! ```text
//! POST /v1/executions                     {"workflow_type", "workflow_id"?, "input", "id_reuse_policy"?, "wait_ms"?} → 201 new | 200 existing
//! GET  /v1/executions?status=&workflow_type=&created_from_ms=&created_until_ms=&id_prefix=&before=&limit=
//!                                         newest first; `Reprise-Next-Before` names the next page's `before`
//! GET  /v1/execution-counts?workflow_type=&created_from_ms=&created_until_ms=&id_prefix=   {"running", …} by status
//! GET  /v1/executions/{id}?wait_ms=       status and result (long-polls while running)
//! GET  /v1/executions/{id}/history?after=&limit=   the events, a page at a time
//! GET  /v1/executions/{id}/logs?after=&limit=      what the workflow logged
//! GET  /v1/executions/{id}/export         the whole history as `reprise replay --history FILE` reads it
//! POST /v1/executions/{id}/signals        {"name", "payload", "signal_id"?} → 202
//! POST /v1/executions/{id}/cancel         → 202
//! POST /v1/executions/{id}/terminate      {"reason"?} → 200
//! DELETE /v1/executions/{id}              a finished execution, every run → 200
//! ```
//!
//! Queries and updates of an execution are in `api/queries` and `api/updates`.
//!
//! Every route needs an API key and acts for its tenant only: another
//! tenant's executions do not exist (404).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::auth::Tenant;
use super::{Server, error};
use crate::journal::{History, RecordedEvent};
use crate::runtime::{PayloadProblem, RunError, StartOptions, check_json_payload, raw_json};
use crate::store::{
    ExecutionFilter, ExecutionRecord, ExecutionStatus, HistoryExport, IdReusePolicy, ListCursor,
    MessageKind, StoreError,
};

/// The longest a start or status request may wait for the execution to
/// finish, in ms (clients ask for this much).
pub const RESULT_WAIT_MAX_MS: u64 = 60_000;
const RESULT_WAIT_MAX: Duration = Duration::from_millis(RESULT_WAIT_MAX_MS);
/// How often a waiting status request looks again when nothing wakes it
/// (the execution is driven by another process).
const RESULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The most executions one list returns.
const LIST_LIMIT_MAX: u32 = 1_000;
/// The longest workflow-id prefix a list filters by, in bytes.
const ID_PREFIX_BYTES_MAX: usize = 256;
/// The longest paging cursor a list accepts, in bytes (a time, a run id
/// and a workflow id).
const CURSOR_BYTES_MAX: usize = 4096;
/// The response header of a list that names the next page's `before`
/// (absent on the last page). A header keeps the answer a plain array.
pub const NEXT_PAGE_HEADER: &str = "reprise-next-before";
/// The most events one history page holds.
const HISTORY_PAGE_MAX: usize = 10_000;
/// The most log lines one page holds.
const LOG_PAGE_MAX: u32 = 1_000;

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/v1/executions", post(start).get(list))
        .route("/v1/execution-counts", get(counts))
        .route("/v1/executions/{id}", get(status).delete(delete))
        .route("/v1/executions/{id}/history", get(history))
        .route("/v1/executions/{id}/logs", get(logs))
        .route("/v1/executions/{id}/export", get(export))
        .route("/v1/executions/{id}/signals", post(signal))
        .route("/v1/executions/{id}/cancel", post(cancel))
        .route("/v1/executions/{id}/terminate", post(terminate))
}

pub fn store_error(problem: StoreError) -> Response {
    let status = match problem {
        StoreError::MailboxFull { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, problem.to_string())
}

pub fn run_error(problem: RunError) -> Response {
    let status = match &problem {
        RunError::Load(_)
        | RunError::InvalidInput(_)
        | RunError::WrongKind(_)
        | RunError::Payload(PayloadProblem::NotJson { .. }) => StatusCode::BAD_REQUEST,
        RunError::Payload(PayloadProblem::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        RunError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
        RunError::IdReuseRefused { .. } => StatusCode::CONFLICT,
        RunError::UnknownModule { .. } | RunError::UnknownWorkflowType { .. } => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, problem.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    workflow_type: String,
    #[serde(default)]
    workflow_id: Option<String>,
    /// Taken as sent, byte for byte; `null` if absent.
    #[serde(default)]
    input: Option<Box<RawValue>>,
    #[serde(default)]
    id_reuse_policy: IdReusePolicy,
    /// Answer once the execution has finished, or after this long
    /// (start-and-wait in one request).
    #[serde(default)]
    wait_ms: u64,
    /// Limit on the whole execution, continued runs included.
    #[serde(default)]
    execution_timeout_ms: Option<u64>,
    /// Limit on each run.
    #[serde(default)]
    run_timeout_ms: Option<u64>,
    /// The search attributes the execution starts with (a JSON object).
    #[serde(default)]
    search_attributes: Option<Box<RawValue>>,
}

async fn start(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(request): Json<StartRequest>,
) -> Response {
    // A caller's W3C trace context makes the workflow's trace its child; a
    // malformed one is ignored, as the W3C spec asks.
    let trace = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(crate::telemetry::spans::trace_from_traceparent);
    // Header values share the connection's 8 KiB read buffer; a
    // start-and-wait would keep it for the whole execution.
    drop(headers);
    let input = raw_text(request.input);
    let options = StartOptions {
        reuse: request.id_reuse_policy,
        trace,
        execution_timeout: request.execution_timeout_ms.map(Duration::from_millis),
        run_timeout: request.run_timeout_ms.map(Duration::from_millis),
        search_attributes: request
            .search_attributes
            .map(|attributes| attributes.get().to_string()),
        parent_execution: None,
    };
    let started = server
        .start_and_drive(
            &tenant.name,
            &request.workflow_type,
            request.workflow_id,
            &input,
            options,
        )
        .await;
    match started {
        Ok((record, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let wait = Duration::from_millis(request.wait_ms);
            with_status(
                status,
                view_when_finished(&server, &tenant, record, wait).await,
            )
        }
        Err(problem) => run_error(problem),
    }
}

/// A JSON value from a request as its text, byte for byte (`null` if absent).
pub(super) fn raw_text(value: Option<Box<RawValue>>) -> String {
    value.map_or_else(|| "null".to_string(), |raw| raw.get().to_string())
}

/// An execution as the API shows it. The result is the recorded JSON text,
/// passed on byte for byte.
#[derive(Serialize)]
struct ExecutionView<'a> {
    workflow_id: &'a str,
    run_id: &'a str,
    workflow_type: &'a str,
    module_digest: &'a str,
    status: &'static str,
    result: Option<Box<RawValue>>,
    created_at_ms: i64,
    updated_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    search_attributes: Option<Box<RawValue>>,
}

fn describe(record: &ExecutionRecord) -> ExecutionView<'_> {
    ExecutionView {
        workflow_id: &record.workflow_id,
        run_id: &record.run_id,
        workflow_type: &record.workflow_type,
        module_digest: &record.module_digest,
        status: record.status.as_str(),
        result: record.result.as_deref().map(raw_json),
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
        search_attributes: record.search_attributes.as_deref().map(raw_json),
    }
}

/// A page of history with the execution it belongs to.
#[derive(Serialize)]
struct HistoryPage<'a> {
    execution: ExecutionView<'a>,
    events: Vec<RecordedEvent>,
    next_after: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    workflow_type: Option<String>,
    created_from_ms: Option<i64>,
    created_until_ms: Option<i64>,
    id_prefix: Option<String>,
    /// `name=value`: only runs whose search attribute `name` is `value`.
    search_attribute: Option<String>,
    /// The `Reprise-Next-Before` header of the previous page.
    before: Option<String>,
    limit: Option<u32>,
}

/// The filters a list and the counts share, checked; what is wrong, for a 400.
fn filter_from(query: ListQuery) -> Result<ExecutionFilter, String> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(
            text @ ("running" | "completed" | "failed" | "cancelled" | "terminated"
            | "continued_as_new"),
        ) => Some(ExecutionStatus::parse(text)),
        Some(other) => {
            return Err(format!(
                "unknown status `{other}`; use running, completed, failed, cancelled, terminated or continued_as_new"
            ));
        }
    };
    let id_prefix = query.id_prefix.filter(|prefix| !prefix.is_empty());
    if let Some(prefix) = &id_prefix
        && prefix.len() > ID_PREFIX_BYTES_MAX
    {
        return Err(format!(
            "id_prefix is {} bytes; the limit is {ID_PREFIX_BYTES_MAX}",
            prefix.len()
        ));
    }
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_cursor(text).map_err(|problem| {
            format!("before: {problem}; pass the {NEXT_PAGE_HEADER} header of the previous page unchanged")
        })?),
    };
    Ok(ExecutionFilter {
        status,
        workflow_type: query.workflow_type.filter(|name| !name.is_empty()),
        created_from_ms: query.created_from_ms,
        created_until_ms: query.created_until_ms,
        id_prefix,
        search_attribute: match query.search_attribute.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                crate::attributes::filter(text)
                    .map_err(|problem| format!("search_attribute: {problem}"))?,
            ),
        },
        before,
        limit: query.limit.unwrap_or(100).min(LIST_LIMIT_MAX),
    })
}

/// The cursor naming `record`: `{created_at_ms}.{run_id}.{workflow_id}`
/// (a run id is hex, so the first two dots split it).
fn cursor_text(record: &ExecutionRecord) -> String {
    format!(
        "{}.{}.{}",
        record.created_at_ms, record.run_id, record.workflow_id
    )
}

fn parse_cursor(text: &str) -> Result<ListCursor, String> {
    if text.len() > CURSOR_BYTES_MAX {
        return Err(format!(
            "the cursor is {} bytes; the limit is {CURSOR_BYTES_MAX}",
            text.len()
        ));
    }
    let malformed = || format!("`{text}` is not a list cursor");
    let mut parts = text.splitn(3, '.');
    let created_at_ms = parts
        .next()
        .and_then(|time| time.parse::<i64>().ok())
        .ok_or_else(malformed)?;
    let run_id = parts
        .next()
        .filter(|run| !run.is_empty() && run.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .ok_or_else(malformed)?;
    let workflow_id = parts
        .next()
        .filter(|id| !id.is_empty())
        .ok_or_else(malformed)?;
    Ok(ListCursor {
        created_at_ms,
        workflow_id: workflow_id.to_string(),
        run_id: run_id.to_string(),
    })
}

async fn list(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut filter = match filter_from(query) {
        Ok(filter) => filter,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    // One more than asked, to tell whether a next page exists.
    let limit = filter.limit;
    filter.limit = limit.saturating_add(1);
    let mut records = match server.store().list_executions(&tenant.name, &filter).await {
        Ok(records) => records,
        Err(problem) => return store_error(problem),
    };
    let has_next_page = records.len() > limit as usize;
    records.truncate(limit as usize);
    let mut response =
        Json(json!(records.iter().map(describe).collect::<Vec<_>>())).into_response();
    if let Some(last) = records.last().filter(|_| has_next_page)
        && let Ok(value) = HeaderValue::from_str(&cursor_text(last))
    {
        response.headers_mut().insert(NEXT_PAGE_HEADER, value);
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsQuery {
    workflow_type: Option<String>,
    created_from_ms: Option<i64>,
    created_until_ms: Option<i64>,
    id_prefix: Option<String>,
    search_attribute: Option<String>,
}

async fn counts(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Query(query): Query<CountsQuery>,
) -> Response {
    let filter = match filter_from(ListQuery {
        status: None,
        workflow_type: query.workflow_type,
        created_from_ms: query.created_from_ms,
        created_until_ms: query.created_until_ms,
        id_prefix: query.id_prefix,
        search_attribute: query.search_attribute,
        before: None,
        limit: None,
    }) {
        Ok(filter) => filter,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    match server.store().count_executions(&tenant.name, &filter).await {
        Ok(counts) => Json(counts).into_response(),
        Err(problem) => store_error(problem),
    }
}

pub(super) async fn find(
    server: &Server,
    tenant: &str,
    id: &str,
) -> Result<ExecutionRecord, Response> {
    match server.store().execution(tenant, id).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "no execution with workflow id `{id}` (a finished one is deleted \
                 finished_retention_seconds after it ended)"
            ),
        )),
        Err(problem) => Err(store_error(problem)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    wait_ms: Option<u64>,
}

async fn status(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Response {
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0));
    view_when_finished(&server, &tenant, record, wait).await
}

/// The execution as it is once it has finished, or when `wait` (at most
/// [`RESULT_WAIT_MAX`]) is over.
async fn view_when_finished(
    server: &Server,
    tenant: &Tenant,
    record: ExecutionRecord,
    wait: Duration,
) -> Response {
    let deadline = tokio::time::Instant::now() + wait.min(RESULT_WAIT_MAX);
    let finished_or_due = |record: &ExecutionRecord| {
        record.status != ExecutionStatus::Running || tokio::time::Instant::now() >= deadline
    };
    if finished_or_due(&record) {
        return Json(describe(&record)).into_response();
    }
    let waiters = server.drive_waiters(record.id);
    let mut woken_or_polled = false;
    loop {
        // Listen before looking, so an end between the two is not missed.
        let notified = waiters.stopped.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The drive that finished it left the row it wrote.
        if let Some(finished) = waiters.finished.get() {
            return Json(describe(finished)).into_response();
        }
        // A drive of this process wakes us when it stops: until then there
        // is nothing new in the store to read.
        if woken_or_polled || !server.drives(record.id) {
            let record = match find(server, &tenant.name, &record.workflow_id).await {
                Ok(record) => record,
                Err(response) => return response,
            };
            if finished_or_due(&record) {
                return Json(describe(&record)).into_response();
            }
        }
        woken_or_polled = true;
        // Woken at the end of a drive in this process; polled too, in case
        // another process drives it.
        let _ = tokio::time::timeout(RESULT_POLL_INTERVAL, notified).await;
    }
}

/// `response` with `status`, unless it is an error.
fn with_status(status: StatusCode, mut response: Response) -> Response {
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Only events after this position.
    after: Option<u64>,
    limit: Option<usize>,
}

async fn history(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let after = query.after.unwrap_or(0);
    let limit = query
        .limit
        .unwrap_or(HISTORY_PAGE_MAX)
        .min(HISTORY_PAGE_MAX);
    // One event more than the page, to tell whether another page follows.
    match server
        .store()
        .history_page(record.id, after, limit as u64 + 1)
        .await
    {
        Ok(mut page) => {
            let more = page.len() > limit;
            page.truncate(limit);
            let next_after = page.last().filter(|_| more).map(|last| last.position);
            Json(HistoryPage {
                execution: describe(&record),
                events: page,
                next_after,
            })
            .into_response()
        }
        Err(problem) => store_error(problem),
    }
}

/// The whole history in the file format of `reprise history --json`,
/// which `reprise replay --history FILE` reads. Payloads are the recorded
/// text, byte for byte. The row id and tenant are left out, as the CLI
/// does for a history it fetches from a server. Its size is bounded by the
/// tenant's `history_events_max`.
async fn export(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Response {
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let events = match server.store().history(record.id).await {
        Ok(events) => events,
        Err(problem) => return store_error(problem),
    };
    let export = HistoryExport {
        execution: ExecutionRecord {
            id: 0,
            tenant: String::new(),
            ..record
        },
        events,
    };
    match serde_json::to_string_pretty(&export) {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response(),
        Err(problem) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not write the history of `{id}` as JSON: {problem}"),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    /// Only lines after this id.
    after: Option<i64>,
    limit: Option<u32>,
}

async fn logs(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let limit = query.limit.unwrap_or(LOG_PAGE_MAX).min(LOG_PAGE_MAX);
    match server
        .store()
        .guest_logs(record.id, query.after.unwrap_or(0), limit)
        .await
    {
        Ok(lines) => Json(json!({ "lines": lines })).into_response(),
        Err(problem) => store_error(problem),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalRequest {
    name: String,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    signal_id: Option<String>,
}

async fn post_message(
    server: &Server,
    tenant: &str,
    id: &str,
    kind: MessageKind,
    name: &str,
    payload: &str,
    message_id: &str,
) -> Response {
    let record = match find(server, tenant, id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    if record.status != ExecutionStatus::Running {
        return error(
            StatusCode::CONFLICT,
            format!(
                "execution `{id}` has already finished ({})",
                record.status.as_str()
            ),
        );
    }
    match server
        .store()
        .post_message(record.id, kind, name, payload, message_id)
        .await
    {
        Ok(new) => {
            server.runtime().mail_posted(record.id);
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": new, "duplicate": !new })),
            )
                .into_response()
        }
        Err(problem) => store_error(problem),
    }
}

async fn signal(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
    Json(request): Json<SignalRequest>,
) -> Response {
    let payload = raw_text(request.payload);
    if let Err(problem) =
        check_json_payload("signal payload", &payload, tenant.limits.payload_bytes_max)
    {
        return run_error(problem.into());
    }
    let name_bytes_max = crate::host::durable::NAME_BYTES_MAX;
    let id_bytes = request.signal_id.as_ref().map_or(0, String::len);
    if request.name.is_empty() || request.name.len() > name_bytes_max || id_bytes > name_bytes_max {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "a signal's name is 1 to {name_bytes_max} bytes and its signal_id at most {name_bytes_max}; got {} and {id_bytes}",
                request.name.len()
            ),
        );
    }
    let message_id = request
        .signal_id
        .unwrap_or_else(|| format!("signal-{}", crate::clock::now_ns()));
    post_message(
        &server,
        &tenant.name,
        &id,
        MessageKind::Signal,
        &request.name,
        &payload,
        &message_id,
    )
    .await
}

async fn cancel(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Response {
    post_message(
        &server,
        &tenant.name,
        &id,
        MessageKind::Cancel,
        "",
        "null",
        "cancel",
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TerminateRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// The longest reason a termination records.
const TERMINATE_REASON_BYTES_MAX: usize = 1024;

async fn terminate(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
    request: Option<Json<TerminateRequest>>,
) -> Response {
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let reason = request
        .and_then(|Json(request)| request.reason)
        .unwrap_or_else(|| "terminated by an operator".to_string());
    if reason.len() > TERMINATE_REASON_BYTES_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the reason is {} bytes; the limit is {TERMINATE_REASON_BYTES_MAX}",
                reason.len()
            ),
        );
    }
    match server.store().terminate(record.id, &reason).await {
        Ok(true) => {
            // Its drive in this process, if any, ends now and frees what
            // it holds.
            server.runtime().terminated(record.id);
            // The terminal event was written here, not by a drive: report
            // it to metrics and traces like any other.
            if let Ok(events) = server.store().history(record.id).await
                && let Ok(history) = History::from_recorded(events)
                && let Some(last) = history.events().last()
            {
                server.runtime().telemetry().appended(
                    &record,
                    &history,
                    std::slice::from_ref(last),
                );
            }
            Json(json!({ "terminated": true })).into_response()
        }
        Ok(false) => error(
            StatusCode::CONFLICT,
            format!(
                "execution `{id}` has already finished ({})",
                record.status.as_str()
            ),
        ),
        Err(problem) => store_error(problem),
    }
}

/// Deletes a finished execution now, as retention would later: every run
/// of its workflow id, each one's history, messages and log lines, then
/// its row. The workflow id can then start afresh. Deleted in the
/// sweeper's paced writes, one deletion per tenant at a time, so a tenant
/// deleting large histories does not hold the writer every tenant shares.
async fn delete(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Response {
    let record = match find(&server, &tenant.name, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    if record.status == ExecutionStatus::Running {
        return error(
            StatusCode::CONFLICT,
            format!("execution `{id}` is running; cancel or terminate it, then delete it"),
        );
    }
    let Some(_deleting) = server.deletions.try_acquire(&tenant.name, 1) else {
        let mut refused = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "tenant `{}` already deletes an execution; one deletion at a time, retry when it is done",
                tenant.name
            ),
        );
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return refused;
    };
    let shutdown = server.runtime().shutdown_requested();
    let swept = super::sweep_tenant(
        server.store().as_ref(),
        &tenant.name,
        i64::MAX,
        Some(&id),
        || *shutdown.borrow(),
    )
    .await;
    match swept {
        Ok(swept) if swept.more => (
            StatusCode::ACCEPTED,
            Json(json!({
                "deleted": false,
                "runs_deleted": swept.executions,
                "message": "the execution is partly deleted; send the same DELETE again to go on",
            })),
        )
            .into_response(),
        Ok(swept) if swept.executions == 0 => error(
            StatusCode::CONFLICT,
            format!(
                "execution `{id}` is the child of a workflow that still runs; it is kept until its parent ends"
            ),
        ),
        Ok(swept) => {
            tracing::info!(tenant = %tenant.name, workflow_id = %id, runs = swept.executions, rows = swept.rows, "deleted an execution on request");
            Json(json!({ "deleted": true, "runs_deleted": swept.executions })).into_response()
        }
        Err(problem) => store_error(problem),
    }
}
