//! Wasm activity components (the `activity` world): sandboxed, with real
//! clocks and randomness, files only in the granted directory (cap-std,
//! through WASI preopens) and outbound HTTP only to allowed hosts.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::outbound::{Allowlist, OutboundClient};
use crate::engine::{ACTIVITY_FUEL_MAX, ComponentKind, Engine, LoadedComponent};
use crate::host::activity_bindings::{Activity, ActivityPre};
use crate::host::activity_context::ActivityCall;
use crate::host::wasi::GuestOutput;
use crate::host::{ActivityHost, wit_types};
use crate::journal::ActivityError;

/// Where an activity's granted directory appears inside the guest.
pub const ACTIVITY_DIR_GUEST_PATH: &str = "/data";

/// One loaded activity component.
pub struct WasmActivity {
    pub digest: String,
    pre: ActivityPre<ActivityHost>,
}

/// What every Wasm activity instance gets from the host.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Linker<ActivityHost>,
    activity_dir: Option<PathBuf>,
    outbound: OutboundClient,
}

/// What one attempt may use: its tenant's.
pub struct SandboxLimits {
    pub memory_bytes_max: usize,
    /// Fuel of one attempt (the tenant's `activity_fuel_max`).
    pub fuel_max: u64,
    pub allowlist: Arc<Allowlist>,
    /// For a component a tenant uploaded: that tenant, whose own
    /// `tenants/<tenant>/` under the activity directory it gets as /data
    /// (tenants never share files). `None`: the whole directory.
    pub tenant_dir: Option<String>,
}

impl Sandbox {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn new(
        engine: Engine,
        activity_dir: Option<PathBuf>,
        outbound: OutboundClient,
    ) -> anyhow::Result<Sandbox> {
        let mut linker = Linker::<ActivityHost>::new(engine.wasmtime());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        Activity::add_to_linker::<_, HasSelf<ActivityHost>>(&mut linker, |host| host)
            .map_err(anyhow::Error::from)?;
        Ok(Sandbox {
            engine,
            linker,
            activity_dir,
            outbound,
        })
    }

    /// Links a component and asks it which activity names it serves.
    pub async fn load(
        &self,
        loaded: &LoadedComponent,
    ) -> anyhow::Result<(Arc<WasmActivity>, Vec<String>)> {
        if loaded.kind != ComponentKind::Activity {
            anyhow::bail!(
                "component {} is a {} component, not an activity component (it must export `reprise:workflow/activities`)",
                loaded.digest,
                loaded.kind.as_str()
            );
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&loaded.component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("linking activity component {}", loaded.digest))?;
        let activity = Arc::new(WasmActivity {
            digest: loaded.digest.clone(),
            pre: ActivityPre::new(instance_pre).map_err(anyhow::Error::from)?,
        });
        let call = ActivityCall::for_discovery();
        // Asking for names calls nothing outside.
        let discovery = SandboxLimits {
            memory_bytes_max: self.engine.limits.memory_bytes_max,
            fuel_max: ACTIVITY_FUEL_MAX,
            allowlist: Arc::new(Allowlist::default()),
            tenant_dir: None,
        };
        let mut store = self.new_store(call, discovery)?;
        let instance = activity
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        let names = instance
            .reprise_workflow_activities()
            .call_names(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("asking activity component {} for its names", loaded.digest)
            })?;
        Ok((activity, names))
    }

    fn new_store(
        &self,
        call: ActivityCall,
        limits: SandboxLimits,
    ) -> anyhow::Result<Store<ActivityHost>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(GuestOutput::for_activity(&call, "stdout"))
            .stderr(GuestOutput::for_activity(&call, "stderr"));
        if let Some(root) = &self.activity_dir {
            let dir = match &limits.tenant_dir {
                // Tenant names are letters, digits, '-' and '_': a plain
                // path component.
                Some(tenant) => {
                    let dir = root.join("tenants").join(tenant);
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    dir
                }
                None => root.clone(),
            };
            wasi.preopened_dir(&dir, ACTIVITY_DIR_GUEST_PATH, FsPerms::ReadWrite)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("granting {} to activities", dir.display()))?;
        }
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(
                limits
                    .memory_bytes_max
                    .min(self.engine.limits.memory_bytes_max),
            )
            .trap_on_grow_failure(true)
            .build();
        let http = crate::host::wasi::AllowlistedHttp {
            client: self.outbound.clone(),
            allowlist: limits.allowlist,
        };
        let host = ActivityHost::new(call, wasi.build(), store_limits, http);
        let mut store = Store::new(self.engine.wasmtime(), host);
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(limits.fuel_max.min(ACTIVITY_FUEL_MAX))
            .map_err(anyhow::Error::from)?;
        // Activities may run long (their timeouts bound them); the epoch
        // only makes them yield so that other work on this thread proceeds.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        Ok(store)
    }

    /// Runs one attempt in a fresh instance.
    pub async fn run(
        &self,
        activity: &WasmActivity,
        call: ActivityCall,
        input: &str,
        limits: SandboxLimits,
    ) -> Result<String, ActivityError> {
        let fuel_max = limits.fuel_max.min(ACTIVITY_FUEL_MAX);
        let trap = |error: wasmtime::Error| match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => ActivityError {
                error_type: "ActivityFuelExhausted".into(),
                message: format!(
                    "the attempt used up its fuel budget of activity_fuel_max = {fuel_max} units (an endless loop?)"
                ),
                details: None,
                non_retryable: false,
            },
            _ => ActivityError {
                error_type: "ActivityTrap".into(),
                message: format!("{:#}", anyhow::Error::from(error)),
                details: None,
                non_retryable: false,
            },
        };
        let name = call.activity_name.clone();
        let mut store = self
            .new_store(call, limits)
            .map_err(|error| ActivityError {
                error_type: "ActivityHostError".into(),
                message: format!("{error:#}"),
                details: None,
                non_retryable: false,
            })?;
        let instance = activity
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(trap)?;
        let result = instance
            .reprise_workflow_activities()
            .call_run(&mut store, &name, input)
            .await
            .map_err(trap)?;
        result.map_err(ActivityError::from)
    }
}

impl From<wit_types::ActivityError> for ActivityError {
    fn from(error: wit_types::ActivityError) -> ActivityError {
        ActivityError {
            error_type: error.error_type,
            message: error.message,
            details: error.details,
            non_retryable: error.non_retryable,
        }
    }
}
