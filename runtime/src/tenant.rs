//! Tenants' limits and the request-rate limiter.
//!
//! Every tenant has [`TenantLimits`]: stored with the tenant (as JSON),
//! defaulted field by field, and never above what the engine itself allows
//! (the pooling allocator's slot size bounds memory, for one). A limit that
//! is hit names itself and its value in the error, so a user knows which
//! knob to ask the operator for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::{ACTIVITY_FUEL_MAX, COMPILATIONS_MAX, Limits, MODULE_BYTES_MAX};
use crate::journal::{HISTORY_BYTES_MAX, HISTORY_EVENTS_MAX, PAYLOAD_BYTES_MAX};
use crate::store::{Store, StoreError};

/// The longest tenant name.
const TENANT_NAME_CHARS_MAX: usize = 64;

/// Why a tenant was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("a tenant name is 1 to {TENANT_NAME_CHARS_MAX} letters, digits, '-' or '_'; got `{0}`")]
    InvalidName(String),
    #[error("tenant `{0}` exists already; its key cannot be shown again")]
    Exists(String),
    #[error(transparent)]
    Limits(#[from] InvalidLimits),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates tenant `name` with a limits document (JSON naming what differs
/// from the defaults, stored as given) and returns its API key — the only
/// time the key exists (the store keeps its SHA-256) — and its limits.
pub async fn create_tenant(
    store: &dyn Store,
    name: &str,
    limits_document: &str,
) -> Result<(String, TenantLimits), CreateTenantError> {
    let valid = !name.is_empty()
        && name.len() <= TENANT_NAME_CHARS_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(CreateTenantError::InvalidName(name.to_string()));
    }
    let limits = TenantLimits::from_json(limits_document)?;
    let (key, hash) = crate::api::auth::new_api_key();
    if !store.create_tenant(name, &hash, limits_document).await? {
        return Err(CreateTenantError::Exists(name.to_string()));
    }
    Ok((key, limits))
}

/// How long finished executions are kept unless a tenant says: a week.
pub const FINISHED_RETENTION_SECONDS_DEFAULT: u64 = 7 * 24 * 3600;
/// The longest retention a tenant may ask for: ten years.
pub const FINISHED_RETENTION_SECONDS_MAX: u64 = 10 * 365 * 24 * 3600;

/// What one tenant may use. Every field has a default; a stored limits
/// document names only what differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Largest component a tenant may upload, in bytes.
    pub module_bytes_max: usize,
    /// Linear memory of one workflow or activity instance, in bytes.
    pub memory_bytes_max: usize,
    /// Fuel (≈ Wasm instructions) one workflow activation may burn.
    pub activation_fuel_max: u64,
    /// Wall-clock time a workflow may run without returning to the host.
    pub activation_wall_ms_max: u64,
    /// Executions of the tenant running at once; starts beyond it get 429.
    pub running_executions_max: u64,
    /// Events one execution's history may hold.
    pub history_events_max: usize,
    /// Bytes of inputs, outputs, payloads and errors one execution's
    /// history may hold: a live instance keeps its history in memory.
    pub history_bytes_max: u64,
    /// Largest workflow input, signal payload, activity input or output.
    pub payload_bytes_max: usize,
    /// Sustained API requests per second (a token bucket of this size).
    pub requests_per_second: u32,
    /// Hosts (`host`, `host:port`, `https://host[:port]`) the tenant's
    /// activities may call;
    /// `None`: the server's `--allow-host` list.
    pub allowed_hosts: Option<Vec<String>>,
    /// Fuel one Wasm activity attempt may burn.
    pub activity_fuel_max: u64,
    /// Attempts of one activity call: the bound of the default retry
    /// policy (and of a policy that says 0, "unlimited"); a call asking for
    /// more is refused.
    pub activity_attempts_max: u32,
    /// Workflow instances of the tenant in memory at once; activations
    /// beyond it wait in the tenant's own queue.
    pub instances_max: u32,
    /// Activity attempts of the tenant running at once; more wait in the
    /// tenant's own queue.
    pub activity_attempts_in_flight_max: u32,
    /// Guest threads the tenant's workflow code may compute on at once
    /// when several of its activations want to (the rest take turns);
    /// capped at the node's guest threads.
    pub guest_threads_max: u32,
    /// Uploads of the tenant compiling at once; more get 429.
    pub compilations_max: u32,
    /// Guest log lines (workflow logs, stdout, stderr, activity output)
    /// stored and written to the server's log per second; past it lines
    /// are counted and summarised, not kept.
    pub log_lines_per_second: u32,
    /// Schedules the tenant may have; creating one more gets 429.
    pub schedules_max: u32,
    /// Modules (workflow and activity) the tenant may keep; uploading one
    /// more gets 429 until it deletes one.
    pub modules_max: u32,
    /// Workflow types the tenant may bind; binding one more gets 429
    /// until it deletes one. Every node keeps every binding in memory.
    pub workflow_types_max: u32,
    /// How long a finished execution (its history, messages and log
    /// lines) is kept before it is deleted; its workflow id may then start
    /// afresh. Every execution the tenant ever ran would otherwise stay on
    /// the disk every tenant shares.
    pub finished_retention_seconds: u64,
    /// Finished executions kept at most; past it the oldest are deleted
    /// before their retention (a tenant starting executions fast would
    /// otherwise fill the disk within its retention).
    pub finished_executions_max: u64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        let engine = Limits::default();
        TenantLimits {
            module_bytes_max: MODULE_BYTES_MAX,
            memory_bytes_max: engine.memory_bytes_max,
            activation_fuel_max: engine.activation_fuel_max,
            activation_wall_ms_max: engine.activation_wall_ms_max,
            running_executions_max: 10_000,
            history_events_max: HISTORY_EVENTS_MAX,
            history_bytes_max: HISTORY_BYTES_MAX,
            payload_bytes_max: PAYLOAD_BYTES_MAX,
            requests_per_second: 1_000,
            allowed_hosts: None,
            activity_fuel_max: ACTIVITY_FUEL_MAX,
            activity_attempts_max: 100,
            instances_max: 500,
            activity_attempts_in_flight_max: 200,
            guest_threads_max: 1,
            compilations_max: 1,
            log_lines_per_second: 1_000,
            schedules_max: 100,
            modules_max: 100,
            workflow_types_max: 1_000,
            finished_retention_seconds: FINISHED_RETENTION_SECONDS_DEFAULT,
            finished_executions_max: 1_000_000,
        }
    }
}

/// Why a limits document was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid tenant limits: {0}")]
pub struct InvalidLimits(String);

impl TenantLimits {
    /// Parses a stored or submitted limits document.
    pub fn from_json(text: &str) -> Result<TenantLimits, InvalidLimits> {
        let limits: TenantLimits =
            serde_json::from_str(text).map_err(|error| InvalidLimits(format!("{error}")))?;
        limits.validate()?;
        Ok(limits)
    }

    /// Refuses zero limits (a tenant that can do nothing is a typo) and
    /// limits above what the host itself enforces (they would be lies).
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        let engine = Limits::default();
        let checks: [(&str, u64, u64); 21] = [
            (
                "module_bytes_max",
                self.module_bytes_max as u64,
                MODULE_BYTES_MAX as u64,
            ),
            (
                "memory_bytes_max",
                self.memory_bytes_max as u64,
                engine.memory_bytes_max as u64,
            ),
            ("activation_fuel_max", self.activation_fuel_max, u64::MAX),
            (
                "activation_wall_ms_max",
                self.activation_wall_ms_max,
                3_600_000,
            ),
            (
                "running_executions_max",
                self.running_executions_max,
                u64::MAX,
            ),
            (
                "history_events_max",
                self.history_events_max as u64,
                HISTORY_EVENTS_MAX as u64,
            ),
            (
                "history_bytes_max",
                self.history_bytes_max,
                HISTORY_BYTES_MAX,
            ),
            (
                "payload_bytes_max",
                self.payload_bytes_max as u64,
                PAYLOAD_BYTES_MAX as u64,
            ),
            (
                "requests_per_second",
                u64::from(self.requests_per_second),
                1_000_000,
            ),
            (
                "activity_fuel_max",
                self.activity_fuel_max,
                ACTIVITY_FUEL_MAX,
            ),
            (
                "activity_attempts_max",
                u64::from(self.activity_attempts_max),
                1_000_000,
            ),
            (
                "instances_max",
                u64::from(self.instances_max),
                u64::from(engine.pooled_instances_max.max(1)),
            ),
            (
                "activity_attempts_in_flight_max",
                u64::from(self.activity_attempts_in_flight_max),
                u64::from(engine.pooled_instances_max.max(1)),
            ),
            (
                "guest_threads_max",
                u64::from(self.guest_threads_max),
                1_024,
            ),
            (
                "compilations_max",
                u64::from(self.compilations_max),
                COMPILATIONS_MAX as u64,
            ),
            (
                "log_lines_per_second",
                u64::from(self.log_lines_per_second),
                1_000_000,
            ),
            ("schedules_max", u64::from(self.schedules_max), 10_000),
            ("modules_max", u64::from(self.modules_max), 10_000),
            (
                "workflow_types_max",
                u64::from(self.workflow_types_max),
                100_000,
            ),
            (
                "finished_retention_seconds",
                self.finished_retention_seconds,
                FINISHED_RETENTION_SECONDS_MAX,
            ),
            (
                "finished_executions_max",
                self.finished_executions_max,
                1_000_000_000,
            ),
        ];
        for (name, value, ceiling) in checks {
            if value == 0 {
                return Err(InvalidLimits(format!("{name} must be at least 1")));
            }
            if value > ceiling {
                return Err(InvalidLimits(format!(
                    "{name} = {value} is above what this server allows ({ceiling})"
                )));
            }
        }
        if let Some(hosts) = &self.allowed_hosts {
            crate::activity::outbound::Allowlist::parse(hosts)
                .map_err(|error| InvalidLimits(format!("allowed_hosts: {error}")))?;
        }
        Ok(())
    }

    /// The defaults, with instance limits as the engine has them (what
    /// tenants without limits of their own, and `reprise run`, get).
    pub fn within(engine: &Limits) -> TenantLimits {
        TenantLimits {
            memory_bytes_max: engine.memory_bytes_max,
            activation_fuel_max: engine.activation_fuel_max,
            activation_wall_ms_max: engine.activation_wall_ms_max,
            ..TenantLimits::default()
        }
    }

    /// The engine limits a workflow instance of this tenant runs under.
    pub fn instance_limits(&self, engine: &Limits) -> Limits {
        Limits {
            memory_bytes_max: self.memory_bytes_max.min(engine.memory_bytes_max),
            activation_fuel_max: self.activation_fuel_max.min(engine.activation_fuel_max),
            activation_wall_ms_max: self
                .activation_wall_ms_max
                .min(engine.activation_wall_ms_max),
            ..engine.clone()
        }
    }
}

/// A limit a request or an execution ran into, named as in
/// [`TenantLimits`] so the message says which knob it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}; the limit is {limit} = {value}")]
pub struct LimitExceeded {
    pub limit: &'static str,
    pub value: u64,
    pub what: String,
}

/// Token buckets, one per tenant: `requests_per_second` tokens refill per
/// second, up to that many saved.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// Takes a token for `tenant`, or says how long until one is free.
    pub fn try_acquire(&self, tenant: &str, per_second: u32) -> Result<(), std::time::Duration> {
        let rate = f64::from(per_second.max(1));
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: rate,
            refilled: now,
        });
        let earned = now.duration_since(bucket.refilled).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + earned).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limits_document_names_only_what_differs() {
        let limits =
            TenantLimits::from_json(r#"{"running_executions_max": 2}"#).expect("valid document");
        assert_eq!(limits.running_executions_max, 2);
        assert_eq!(limits.payload_bytes_max, PAYLOAD_BYTES_MAX);
    }

    #[test]
    fn bad_limits_name_the_field() {
        let zero = TenantLimits::from_json(r#"{"history_events_max": 0}"#).unwrap_err();
        assert!(zero.to_string().contains("history_events_max"), "{zero}");
        let unknown = TenantLimits::from_json(r#"{"fuel": 5}"#).unwrap_err();
        assert!(unknown.to_string().contains("fuel"), "{unknown}");
        let above = TenantLimits::from_json(r#"{"payload_bytes_max": 99999999999}"#).unwrap_err();
        assert!(above.to_string().contains("above"), "{above}");
    }

    #[test]
    fn the_bucket_refuses_past_its_rate_and_says_when_to_retry() {
        let limiter = RateLimiter::default();
        for _ in 0..5 {
            assert!(limiter.try_acquire("a", 5).is_ok());
        }
        let wait = limiter.try_acquire("a", 5).unwrap_err();
        assert!(wait.as_millis() <= 200, "{wait:?}");
        // Another tenant has its own bucket.
        assert!(limiter.try_acquire("b", 5).is_ok());
    }
}
