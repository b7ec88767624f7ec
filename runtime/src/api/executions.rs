//! Modules, workflow types and executions over HTTP.
//!
//! ```text
//! POST /v1/modules                        component bytes → 201 {digest, kind, imports, exports}
//! PUT  /v1/workflow-types/{name}          {"digest"} → binds the type (new executions only)
//! GET  /v1/workflow-types                 [{name, digest}]
//! POST /v1/executions                     {"workflow_type", "workflow_id"?, "input"} → 201 new | 200 existing
//! GET  /v1/executions?status=&limit=      newest first
//! GET  /v1/executions/{id}?wait_ms=       status and result (long-polls while running)
//! GET  /v1/executions/{id}/history        the events
//! POST /v1/executions/{id}/signals        {"name", "payload", "signal_id"?} → 202
//! POST /v1/executions/{id}/cancel         → 202
//! POST /v1/executions/{id}/terminate      {"reason"?} → 200
//! GET  /healthz
//! ```
//!
//! Every route but `/healthz` needs an API key and acts for its tenant
//! only: another tenant's modules and executions do not exist (404).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Tenant;
use super::error;
use crate::engine::{ComponentKind, MODULE_BYTES_MAX};
use crate::runtime::{RunError, Runtime, check_json_payload};
use crate::store::{ExecutionRecord, ExecutionStatus, MessageKind, Store, StoreError};

/// The longest a status request may wait for the execution to finish.
const RESULT_WAIT_MAX: Duration = Duration::from_secs(60);
/// How often a waiting status request looks again.
const RESULT_POLL_INTERVAL: Duration = Duration::from_millis(25);
/// The most executions one list returns.
const LIST_LIMIT_MAX: u32 = 1_000;

/// What the routes share.
pub struct Server {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    /// Executions this process drives now (so none is driven twice).
    driving: Mutex<HashSet<i64>>,
}

impl Server {
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Drives `record` in the background unless this process already does.
    pub fn spawn_drive(self: &Arc<Self>, record: ExecutionRecord) {
        let id = record.id;
        if !self
            .driving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id)
        {
            return;
        }
        let server = self.clone();
        tokio::spawn(async move {
            let workflow_id = record.workflow_id.clone();
            if let Err(error) = server.runtime.drive(record).await {
                tracing::error!(%workflow_id, %error, "driving an execution stopped");
            }
            server
                .driving
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&id);
        });
    }
}

/// The routes, and the server state they share (to resume executions).
pub fn execution_routes(runtime: Arc<Runtime>) -> (Router, Arc<Server>) {
    let server = Arc::new(Server {
        store: runtime.store().clone(),
        runtime,
        driving: Mutex::new(HashSet::new()),
    });
    let router = Router::new()
        .route(
            "/v1/modules",
            post(upload_module).layer(DefaultBodyLimit::max(MODULE_BYTES_MAX)),
        )
        .route("/v1/workflow-types", get(list_types))
        .route("/v1/workflow-types/{name}", put(bind_type))
        .route("/v1/executions", post(start).get(list))
        .route("/v1/executions/{id}", get(status))
        .route("/v1/executions/{id}/history", get(history))
        .route("/v1/executions/{id}/signals", post(signal))
        .route("/v1/executions/{id}/cancel", post(cancel))
        .route("/v1/executions/{id}/terminate", post(terminate))
        .route("/healthz", get(|| async { Json(json!({ "ok": true })) }))
        .with_state(server.clone());
    (router, server)
}

fn store_error(problem: StoreError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, problem.to_string())
}

fn run_error(problem: RunError) -> Response {
    let status = match problem {
        RunError::Load(_) | RunError::InvalidInput(_) | RunError::WrongKind(_) => {
            StatusCode::BAD_REQUEST
        }
        RunError::UnknownModule { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, problem.to_string())
}

// Modules are content-addressed and shared; what a tenant can run is what
// its workflow types bind.
async fn upload_module(
    State(server): State<Arc<Server>>,
    _tenant: Tenant,
    body: Bytes,
) -> Response {
    let loaded = match server.runtime.engine().load(&body) {
        Ok(loaded) => loaded,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem.to_string()),
    };
    let stored = match loaded.kind {
        ComponentKind::Workflow => server
            .runtime
            .deploy_workflow(&body)
            .await
            .map(|_| ())
            .map_err(run_error),
        ComponentKind::Activity => server
            .store
            .put_module(&loaded.digest, loaded.kind.as_str(), &body)
            .await
            .map_err(store_error),
    };
    if let Err(response) = stored {
        return response;
    }
    let (imports, exports) = server.runtime.engine().describe(&loaded);
    let answer = json!({
        "digest": loaded.digest,
        "kind": loaded.kind.as_str(),
        "imports": imports,
        "exports": exports,
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindType {
    digest: String,
}

async fn bind_type(
    State(server): State<Arc<Server>>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Json(request): Json<BindType>,
) -> Response {
    match server.store.module(&request.digest).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no module {}; upload it with POST /v1/modules first",
                    request.digest
                ),
            );
        }
        Err(problem) => return store_error(problem),
    }
    if let Err(problem) = server
        .store
        .put_workflow_type(&tenant, &name, &request.digest)
        .await
    {
        return store_error(problem);
    }
    server
        .runtime
        .register_type_for(&tenant, &name, &request.digest);
    Json(json!({ "name": name, "digest": request.digest })).into_response()
}

async fn list_types(State(server): State<Arc<Server>>, Tenant(tenant): Tenant) -> Response {
    match server.store.workflow_types().await {
        Ok(types) => {
            let types: Vec<Value> = types
                .into_iter()
                .filter(|(owner, _, _)| *owner == tenant)
                .map(|(_, name, digest)| json!({ "name": name, "digest": digest }))
                .collect();
            Json(json!(types)).into_response()
        }
        Err(problem) => store_error(problem),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    workflow_type: String,
    #[serde(default)]
    workflow_id: Option<String>,
    #[serde(default)]
    input: Value,
}

async fn start(
    State(server): State<Arc<Server>>,
    Tenant(tenant): Tenant,
    Json(request): Json<StartRequest>,
) -> Response {
    let Some(digest) = server
        .runtime
        .type_digest_for(&tenant, &request.workflow_type)
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no workflow type `{}`; bind one with PUT /v1/workflow-types/{}",
                request.workflow_type, request.workflow_type
            ),
        );
    };
    let input = request.input.to_string();
    let started = server
        .runtime
        .start_for(
            &tenant,
            &request.workflow_type,
            &digest,
            request.workflow_id,
            &input,
        )
        .await;
    match started {
        Ok((record, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            if record.status == ExecutionStatus::Running {
                server.spawn_drive(record.clone());
            }
            (status, Json(describe(&record))).into_response()
        }
        Err(problem) => run_error(problem),
    }
}

fn describe(record: &ExecutionRecord) -> Value {
    let result = record
        .result
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or(Value::String(text.to_string())));
    json!({
        "workflow_id": record.workflow_id,
        "run_id": record.run_id,
        "workflow_type": record.workflow_type,
        "module_digest": record.module_digest,
        "status": record.status.as_str(),
        "result": result,
        "created_at_ms": record.created_at_ms,
        "updated_at_ms": record.updated_at_ms,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(server): State<Arc<Server>>,
    Tenant(tenant): Tenant,
    Query(query): Query<ListQuery>,
) -> Response {
    let status = match query.status.as_deref() {
        None => None,
        Some(text @ ("running" | "completed" | "failed" | "cancelled" | "terminated")) => {
            Some(ExecutionStatus::parse(text))
        }
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown status `{other}`; use running, completed, failed, cancelled or terminated"
                ),
            );
        }
    };
    let limit = query.limit.unwrap_or(100).min(LIST_LIMIT_MAX);
    match server.store.list_executions(&tenant, status, limit).await {
        Ok(records) => {
            Json(json!(records.iter().map(describe).collect::<Vec<_>>())).into_response()
        }
        Err(problem) => store_error(problem),
    }
}

async fn find(server: &Server, tenant: &str, id: &str) -> Result<ExecutionRecord, Response> {
    match server.store.execution(tenant, id).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no execution with workflow id `{id}`"),
        )),
        Err(problem) => Err(store_error(problem)),
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    wait_ms: Option<u64>,
}

async fn status(
    State(server): State<Arc<Server>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Response {
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(RESULT_WAIT_MAX);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let record = match find(&server, &tenant, &id).await {
            Ok(record) => record,
            Err(response) => return response,
        };
        if record.status != ExecutionStatus::Running || tokio::time::Instant::now() >= deadline {
            return Json(describe(&record)).into_response();
        }
        tokio::time::sleep(RESULT_POLL_INTERVAL).await;
    }
}

async fn history(
    State(server): State<Arc<Server>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Response {
    let record = match find(&server, &tenant, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    match server.store.history(record.id).await {
        Ok(events) => {
            Json(json!({ "execution": describe(&record), "events": events })).into_response()
        }
        Err(problem) => store_error(problem),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalRequest {
    name: String,
    #[serde(default)]
    payload: Value,
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
        .store
        .post_message(record.id, kind, name, payload, message_id)
        .await
    {
        Ok(new) => (
            StatusCode::ACCEPTED,
            Json(json!({ "accepted": new, "duplicate": !new })),
        )
            .into_response(),
        Err(problem) => store_error(problem),
    }
}

async fn signal(
    State(server): State<Arc<Server>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    Json(request): Json<SignalRequest>,
) -> Response {
    let payload = request.payload.to_string();
    if let Err(problem) = check_json_payload("signal payload", &payload) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, problem);
    }
    let message_id = request
        .signal_id
        .unwrap_or_else(|| format!("signal-{}", crate::clock::now_ns()));
    post_message(
        &server,
        &tenant,
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
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Response {
    post_message(
        &server,
        &tenant,
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

async fn terminate(
    State(server): State<Arc<Server>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    request: Option<Json<TerminateRequest>>,
) -> Response {
    let record = match find(&server, &tenant, &id).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let reason = request
        .and_then(|Json(request)| request.reason)
        .unwrap_or_else(|| "terminated by an operator".to_string());
    match server.store.terminate(record.id, &reason).await {
        Ok(true) => Json(json!({ "terminated": true })).into_response(),
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
