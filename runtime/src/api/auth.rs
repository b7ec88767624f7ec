//! API keys: a tenant's key is a random 256-bit token shown once; the
//! store keeps only its SHA-256. A request names its tenant by key
//! (`Authorization: Bearer <key>`); without a valid key it gets 401 and no
//! data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{Server, error};
use crate::store::{Store, TenantRecord};
use crate::tenant::TenantLimits;

/// The prefix of every API key, so a leaked one is easy to recognise.
const KEY_PREFIX: &str = "rpk_";

/// How long a tenant found by its key is believed without asking the
/// store again. A limits change through this node's admin API applies at
/// the tenant's next request; one through another node, within this.
pub const TENANT_CACHE_TTL: Duration = Duration::from_secs(1);
/// The most keys [`TenantCache`] remembers; when full, it starts over.
const TENANT_CACHE_KEYS_MAX: usize = 4096;

/// A new API key and the hash to store for it.
pub fn new_api_key() -> (String, String) {
    let mut secret = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
    let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
    let hash = key_sha256(&key);
    (key, hash)
}

/// The hex SHA-256 of an API key: what the store keeps and looks up.
pub fn key_sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Equality that takes the same time wherever the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The tenant a request acts for, and its limits. Extracting it also
/// spends one token of the tenant's request rate.
#[derive(Clone)]
pub struct Tenant {
    pub name: String,
    pub limits: Arc<TenantLimits>,
}

/// Tenants recently found by key hash, so a request does not wait for a
/// store read to learn who sent it (see [`TENANT_CACHE_TTL`]). Unknown keys
/// are not remembered: a tenant created a moment ago is found at once.
#[derive(Default)]
pub struct TenantCache {
    by_key_sha256: Mutex<HashMap<String, (Tenant, Instant)>>,
}

impl TenantCache {
    fn get(&self, key_sha256: &str) -> Option<Tenant> {
        let by_key = self.lock();
        let (tenant, fetched) = by_key.get(key_sha256)?;
        (fetched.elapsed() < TENANT_CACHE_TTL).then(|| tenant.clone())
    }

    fn insert(&self, key_sha256: String, tenant: Tenant) {
        let mut by_key = self.lock();
        if by_key.len() >= TENANT_CACHE_KEYS_MAX {
            by_key.clear();
        }
        by_key.insert(key_sha256, (tenant, Instant::now()));
    }

    /// Forgets every tenant: an admin changed one.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Tenant, Instant)>> {
        self.by_key_sha256
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FromRequestParts<Arc<Server>> for Tenant {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        server: &Arc<Server>,
    ) -> Result<Tenant, Response> {
        let hash = presented_key_sha256(parts).ok_or_else(unauthorized)?;
        let tenant = match server.tenant_cache().get(&hash) {
            Some(tenant) => tenant,
            None => {
                let tenant = tenant_from_store(&hash, server).await?;
                server.tenant_cache().insert(hash, tenant.clone());
                tenant
            }
        };
        if let Err(retry_after) = server
            .rate_limiter()
            .try_acquire(&tenant.name, tenant.limits.requests_per_second)
        {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many requests: the limit is requests_per_second = {}; retry in {} ms",
                    tenant.limits.requests_per_second,
                    retry_after.as_millis().max(1)
                ),
            );
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Err(response);
        }
        Ok(tenant)
    }
}

/// The tenant whose key has SHA-256 `hash`, with its limits as the store
/// has them (the source of truth: limits an admin changed apply from here).
async fn tenant_from_store(hash: &str, server: &Server) -> Result<Tenant, Response> {
    let record = tenant_by_key_sha256(hash, server.store()).await?;
    let limits = match TenantLimits::from_json(&record.limits) {
        Ok(limits) => limits,
        Err(problem) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "tenant `{}`: {problem}; an admin must set valid limits",
                    record.name
                ),
            ));
        }
    };
    let limits = server.runtime().set_tenant_limits(&record.name, limits);
    Ok(Tenant {
        name: record.name,
        limits,
    })
}

fn bearer_key(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "missing or unknown API key: send `Authorization: Bearer <key>` with the key `reprise tenant create` printed".to_string(),
    )
}

/// The SHA-256 of the API key the request carries, if any.
fn presented_key_sha256(parts: &Parts) -> Option<String> {
    bearer_key(parts).map(key_sha256)
}

/// The tenant whose API key the request carries, or the 401 to answer.
pub async fn authenticate(parts: &Parts, store: &Arc<dyn Store>) -> Result<TenantRecord, Response> {
    let hash = presented_key_sha256(parts).ok_or_else(unauthorized)?;
    tenant_by_key_sha256(&hash, store).await
}

async fn tenant_by_key_sha256(
    hash: &str,
    store: &Arc<dyn Store>,
) -> Result<TenantRecord, Response> {
    match store.tenant_by_key(hash).await {
        // The index lookup matched on the hash; compare with the stored
        // hash in constant time too, so the check itself leaks nothing.
        Ok(Some(tenant)) if constant_time_eq(hash.as_bytes(), tenant.key_sha256.as_bytes()) => {
            Ok(tenant)
        }
        Ok(_) => Err(unauthorized()),
        Err(problem) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            problem.to_string(),
        )),
    }
}

/// A request made with the server's admin key (`reprise serve
/// --admin-key-file`): tenant management. Without an admin key configured,
/// every admin request gets 401.
pub struct Admin;

impl FromRequestParts<Arc<Server>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        server: &Arc<Server>,
    ) -> Result<Admin, Response> {
        let presented = presented_key_sha256(parts);
        match (presented, server.admin_key_sha256()) {
            (Some(presented), Some(expected))
                if constant_time_eq(presented.as_bytes(), expected.as_bytes()) =>
            {
                Ok(Admin)
            }
            _ => Err(error(
                StatusCode::UNAUTHORIZED,
                "this route needs the server's admin key: send `Authorization: Bearer <admin key>` (the key in the file `reprise serve --admin-key-file` names)".to_string(),
            )),
        }
    }
}
