//! API keys: a tenant's key is a random 256-bit token shown once; the
//! store keeps only its SHA-256. A request names its tenant by key
//! (`Authorization: Bearer <key>`); without a valid key it gets 401 and no
//! data.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::error;
use super::executions::Server;
use crate::store::Store;

/// The prefix of every API key, so a leaked one is easy to recognise.
const KEY_PREFIX: &str = "rpk_";

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

/// The tenant a request acts for.
pub struct Tenant(pub String);

impl FromRequestParts<Arc<Server>> for Tenant {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        server: &Arc<Server>,
    ) -> Result<Tenant, Response> {
        authenticate(parts, server.store()).await.map(Tenant)
    }
}

/// The tenant whose API key the request carries, or the 401 to answer.
pub async fn authenticate(parts: &Parts, store: &Arc<dyn Store>) -> Result<String, Response> {
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or unknown API key: send `Authorization: Bearer <key>` with the key `reprise tenant create` printed".to_string(),
        )
    };
    let key = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?
        .trim();
    let hash = key_sha256(key);
    match store.tenant_by_key(&hash).await {
        // The lookup matched on the hash; compare once more in constant
        // time so the check itself leaks nothing.
        Ok(Some(tenant)) if constant_time_eq(hash.as_bytes(), key_sha256(key).as_bytes()) => {
            Ok(tenant)
        }
        Ok(_) => Err(unauthorized()),
        Err(problem) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            problem.to_string(),
        )),
    }
}
