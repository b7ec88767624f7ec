//! Modules and workflow types.
//!
//! ```text
//! POST /v1/modules                  component bytes → 201 {digest, kind, imports, exports, activities?}
//! GET  /v1/modules                  [{digest, kind, size_bytes, uploaded_at_ms}]
//! GET  /v1/modules/{digest}         the component bytes
//! DELETE /v1/modules/{digest}       → {digest, activities_unserved}; 409 while a type or a running execution uses it
//! PUT  /v1/workflow-types/{name}    {"digest"} → binds the type (new executions only)
//! GET  /v1/workflow-types           [{name, digest}]
//! ```
//!
//! Module bytes are stored once by digest, but a tenant sees, downloads and
//! binds only modules it uploaded itself: another tenant's digest is 404.
//! An activity module serves the activities it names to its tenant's
//! workflows only. A tenant keeps at most `modules_max` modules and binds
//! at most `workflow_types_max` types; deleting one makes room.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Tenant;
use super::executions::{run_error, store_error};
use super::{Server, error};
use crate::engine::{ComponentKind, MODULE_BYTES_MAX, module_digest};
use crate::store::{ModuleDeletion, TenantModule};

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route(
            "/v1/modules",
            post(upload_module)
                .get(list_modules)
                .layer(DefaultBodyLimit::max(MODULE_BYTES_MAX)),
        )
        .route(
            "/v1/modules/{digest}",
            get(download_module).delete(delete_module),
        )
        .route("/v1/workflow-types", get(list_types))
        .route(
            "/v1/workflow-types/{name}",
            put(bind_type).delete(delete_type),
        )
}

async fn upload_module(State(server): State<Arc<Server>>, tenant: Tenant, body: Bytes) -> Response {
    let limit = tenant.limits.module_bytes_max;
    if body.len() > limit {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the module is {} bytes; the limit is module_bytes_max = {limit}",
                body.len()
            ),
        );
    }
    // Refused before it is compiled; counted again when it is recorded.
    let digest = module_digest(&body);
    match server.store().tenant_modules(&tenant.name).await {
        Ok(modules) => {
            let modules_max = tenant.limits.modules_max;
            if modules.len() >= modules_max as usize
                && !modules.iter().any(|module| module.digest == digest)
            {
                return too_many_modules(&tenant.name, modules_max);
            }
        }
        Err(problem) => return store_error(problem),
    }
    // A tenant compiles `compilations_max` uploads at a time; the node
    // runs COMPILATIONS_MAX in all (the rest wait).
    let Some(_compiling) = server
        .compilations
        .try_acquire(&tenant.name, tenant.limits.compilations_max as usize)
    else {
        let limit = tenant.limits.compilations_max;
        let mut refused = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "tenant `{}` already compiles {limit} upload(s); the limit is compilations_max = {limit}; retry when it is done",
                tenant.name
            ),
        );
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return refused;
    };
    // Compiling a large component takes seconds of CPU: off the async threads.
    let engine = server.runtime().engine().clone();
    let bytes = body.clone();
    let loaded = match tokio::task::spawn_blocking(move || engine.load(&bytes)).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(problem)) => return error(StatusCode::BAD_REQUEST, problem.to_string()),
        Err(panicked) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("compiling the module failed: {panicked}"),
            );
        }
    };
    let mut answer = json!({
        "digest": loaded.digest,
        "kind": loaded.kind.as_str(),
    });
    match loaded.kind {
        ComponentKind::Workflow => {
            if let Err(problem) = server.runtime().deploy_workflow(&body).await {
                return run_error(problem);
            }
        }
        ComponentKind::Activity => {
            // Instantiating it asks for its names: a module that traps
            // there is refused before anything is stored.
            let registered = server
                .runtime()
                .activities()
                .register_for(&tenant.name, &loaded)
                .await;
            match registered {
                Ok(names) => answer["activities"] = json!(names),
                Err(problem) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("the activity module could not be loaded: {problem:#}"),
                    );
                }
            }
            if let Err(problem) = server
                .store()
                .put_module(&loaded.digest, loaded.kind.as_str(), &body)
                .await
            {
                return store_error(problem);
            }
        }
    }
    let recorded = server
        .store()
        .put_tenant_module(
            &tenant.name,
            &loaded.digest,
            loaded.kind.as_str(),
            tenant.limits.modules_max,
        )
        .await;
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            // Another upload took the last place first: an activity module
            // registered above is dropped by reloading what is stored.
            if let Err(problem) = server
                .runtime()
                .activities()
                .load_uploads(Some(&tenant.name))
                .await
            {
                tracing::warn!(tenant = %tenant.name, error = %format!("{problem:#}"), "could not reload a tenant's activity modules");
            }
            return too_many_modules(&tenant.name, tenant.limits.modules_max);
        }
        Err(problem) => return store_error(problem),
    }
    let (imports, exports) = server.runtime().engine().describe(&loaded);
    let mut by_treatment: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for import in &imports {
        by_treatment
            .entry(crate::host::import_treatment(loaded.kind, import))
            .or_default()
            .push(import);
    }
    answer["imports_by_treatment"] = json!(by_treatment);
    answer["imports"] = json!(imports);
    answer["exports"] = json!(exports);
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn too_many_modules(tenant: &str, modules_max: u32) -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "tenant `{tenant}` keeps {modules_max} modules already, its limit (modules_max = {modules_max}); delete one it no longer needs (DELETE /v1/modules/{{digest}}) first"
        ),
    )
}

async fn list_modules(State(server): State<Arc<Server>>, tenant: Tenant) -> Response {
    match server.store().tenant_modules(&tenant.name).await {
        Ok(modules) => Json(json!(modules)).into_response(),
        Err(problem) => store_error(problem),
    }
}

/// The module `digest` if `tenant` uploaded it; else the 404 to answer.
async fn owned(server: &Server, tenant: &str, digest: &str) -> Result<TenantModule, Response> {
    match server.store().tenant_modules(tenant).await {
        Ok(modules) => modules
            .into_iter()
            .find(|module| module.digest == digest)
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    format!("no module {digest}; upload it with POST /v1/modules first"),
                )
            }),
        Err(problem) => Err(store_error(problem)),
    }
}

async fn download_module(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(digest): Path<String>,
) -> Response {
    if let Err(response) = owned(&server, &tenant.name, &digest).await {
        return response;
    }
    match server.store().module(&digest).await {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no module {digest}")),
        Err(problem) => store_error(problem),
    }
}

/// Deletes the tenant's upload `digest`. Kept while a workflow type is
/// bound to it or an execution runs on it; the activities it served fall
/// back to the tenant's newest other upload serving them, or to none.
async fn delete_module(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(digest): Path<String>,
) -> Response {
    let activities = server.runtime().activities();
    let served = activities.serving(&tenant.name, &digest);
    match server
        .store()
        .delete_tenant_module(&tenant.name, &digest)
        .await
    {
        Ok(ModuleDeletion::Deleted) => {}
        Ok(ModuleDeletion::NotFound) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no module {digest} among this tenant's uploads (GET /v1/modules lists them)"
                ),
            );
        }
        Ok(ModuleDeletion::BoundToType(name)) => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "workflow type `{name}` is bound to module {digest}; bind it to another module (PUT /v1/workflow-types/{name}) first"
                ),
            );
        }
        Ok(ModuleDeletion::Running(running)) => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "{running} running execution(s) run on module {digest}; delete it once they have finished or been upgraded to another module"
                ),
            );
        }
        Err(problem) => return store_error(problem),
    }
    if let Err(problem) = activities.load_uploads(Some(&tenant.name)).await {
        // The next membership tick (or the next call) loads them again.
        tracing::warn!(tenant = %tenant.name, error = %format!("{problem:#}"), "could not reload a tenant's activity modules");
    }
    server.runtime().forget_module(&digest);
    let unserved: Vec<String> = served
        .into_iter()
        .filter(|name| !activities.serves(&tenant.name, name))
        .collect();
    Json(json!({ "digest": digest, "activities_unserved": unserved })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindType {
    digest: String,
    /// Also move the type's running executions to the module, those whose
    /// histories replay cleanly against it.
    #[serde(default)]
    upgrade_running: bool,
}

async fn bind_type(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(name): Path<String>,
    Json(request): Json<BindType>,
) -> Response {
    if let Some(problem) = crate::host::durable::name_problem("workflow type", &name) {
        return error(StatusCode::BAD_REQUEST, problem);
    }
    match owned(&server, &tenant.name, &request.digest).await {
        Ok(module) if module.kind == ComponentKind::Workflow.as_str() => {}
        Ok(module) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "module {} is an {} module; a workflow type binds a workflow module",
                    request.digest, module.kind
                ),
            );
        }
        Err(response) => return response,
    }
    let types_max = tenant.limits.workflow_types_max;
    match server
        .store()
        .put_workflow_type(&tenant.name, &name, &request.digest, types_max)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant `{}` binds {types_max} workflow types already, its limit (workflow_types_max = {types_max}); delete one it no longer needs (DELETE /v1/workflow-types/{{name}}) first",
                    tenant.name
                ),
            );
        }
        Err(problem) => return store_error(problem),
    }
    server
        .runtime()
        .register_type_for(&tenant.name, &name, &request.digest);
    if !request.upgrade_running {
        return Json(json!({ "name": name, "digest": request.digest })).into_response();
    }
    match server
        .runtime()
        .upgrade_running(&tenant.name, &name, &request.digest)
        .await
    {
        Ok(report) => Json(json!({
            "name": name,
            "digest": request.digest,
            "upgraded": report.upgraded.len(),
            "kept": report.kept.len(),
            "upgrade": report,
        }))
        .into_response(),
        Err(problem) => crate::api::executions::run_error(problem),
    }
}

/// Unbinds a workflow type: starts by its name fail from then on, and
/// executions it started keep running on their module.
async fn delete_type(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(name): Path<String>,
) -> Response {
    match server
        .store()
        .delete_workflow_type(&tenant.name, &name)
        .await
    {
        Ok(true) => {
            server.runtime().unregister_type_for(&tenant.name, &name);
            Json(json!({ "name": name })).into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no workflow type `{name}`; GET /v1/workflow-types lists the tenant's types"),
        ),
        Err(problem) => store_error(problem),
    }
}

async fn list_types(State(server): State<Arc<Server>>, tenant: Tenant) -> Response {
    match server.store().workflow_types(Some(&tenant.name)).await {
        Ok(types) => {
            let types: Vec<Value> = types
                .into_iter()
                .map(|(_, name, digest)| json!({ "name": name, "digest": digest }))
                .collect();
            Json(json!(types)).into_response()
        }
        Err(problem) => store_error(problem),
    }
}
