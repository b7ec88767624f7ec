//! Tenant management, for the holder of the server's admin key.
//!
//! ```text
//! POST /v1/admin/tenants                {"name", "limits"?} → 201 {name, api_key, limits}
//! GET  /v1/admin/tenants                [{name, limits, created_at_ms}]
//! PUT  /v1/admin/tenants/{name}/limits  a limits document → 200 {name, limits}
//! ```
//!
//! The API key is in the creation answer only; the store keeps its hash.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Admin;
use super::executions::store_error;
use super::{Server, error};
use crate::tenant::{CreateTenantError, TenantLimits, create_tenant};

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/v1/admin/tenants", get(list_tenants).post(create))
        .route("/v1/admin/tenants/{name}/limits", put(set_limits))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    #[serde(default)]
    limits: Option<Value>,
}

async fn create(
    State(server): State<Arc<Server>>,
    _admin: Admin,
    Json(request): Json<CreateRequest>,
) -> Response {
    let document = request
        .limits
        .map_or_else(|| "{}".to_string(), |value| value.to_string());
    match create_tenant(server.store().as_ref(), &request.name, &document).await {
        Ok((api_key, limits)) => {
            server
                .runtime()
                .set_tenant_limits(&request.name, limits.clone());
            let answer = json!({ "name": request.name, "api_key": api_key, "limits": limits });
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err(CreateTenantError::Store(problem)) => store_error(problem),
        Err(problem @ CreateTenantError::Exists(_)) => {
            error(StatusCode::CONFLICT, problem.to_string())
        }
        Err(problem) => error(StatusCode::BAD_REQUEST, problem.to_string()),
    }
}

async fn list_tenants(State(server): State<Arc<Server>>, _admin: Admin) -> Response {
    match server.store().tenants().await {
        Ok(tenants) => {
            let tenants: Vec<Value> = tenants
                .into_iter()
                .map(|tenant| {
                    let limits: Value = serde_json::from_str(&tenant.limits).unwrap_or(Value::Null);
                    json!({
                        "name": tenant.name,
                        "limits": limits,
                        "created_at_ms": tenant.created_at_ms,
                    })
                })
                .collect();
            Json(json!(tenants)).into_response()
        }
        Err(problem) => store_error(problem),
    }
}

async fn set_limits(
    State(server): State<Arc<Server>>,
    _admin: Admin,
    Path(name): Path<String>,
    Json(document): Json<Value>,
) -> Response {
    let document = document.to_string();
    let limits = match TenantLimits::from_json(&document) {
        Ok(limits) => limits,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem.to_string()),
    };
    match server.store().set_tenant_limits(&name, &document).await {
        Ok(true) => {
            server.runtime().set_tenant_limits(&name, limits.clone());
            server.tenant_cache().clear();
            Json(json!({ "name": name, "limits": limits })).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no tenant `{name}`")),
        Err(problem) => store_error(problem),
    }
}
