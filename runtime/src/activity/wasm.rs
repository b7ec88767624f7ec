//! Wasm activity components (the `activity` world): sandboxed, with real
//! clocks and randomness, files only in the granted directory (cap-std,
//! through WASI preopens) and outbound HTTP only to allowed hosts.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::outbound::Allowlist;
use crate::engine::{ComponentKind, Engine, LoadedComponent};
use crate::host::activity_bindings::{Activity, ActivityPre};
use crate::host::activity_context::ActivityCall;
use crate::host::wasi::GuestOutput;
use crate::host::{ActivityHost, wit_types};
use crate::journal::ActivityError;

/// Where an activity's granted directory appears inside the guest.
pub const ACTIVITY_DIR_GUEST_PATH: &str = "/data";
/// Fuel for one activity attempt.
const ACTIVITY_FUEL_MAX: u64 = 50_000_000_000;

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
    allowlist: Arc<Allowlist>,
}

impl Sandbox {
    pub fn new(
        engine: Engine,
        activity_dir: Option<PathBuf>,
        allowlist: Arc<Allowlist>,
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
            allowlist,
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
        let mut store = self.new_store(call)?;
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

    fn new_store(&self, call: ActivityCall) -> anyhow::Result<Store<ActivityHost>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(GuestOutput::for_activity(&call, "stdout"))
            .stderr(GuestOutput::for_activity(&call, "stderr"));
        if let Some(dir) = &self.activity_dir {
            wasi.preopened_dir(dir, ACTIVITY_DIR_GUEST_PATH, FsPerms::ReadWrite)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("granting {} to activities", dir.display()))?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.engine.limits.memory_bytes_max)
            .trap_on_grow_failure(true)
            .build();
        let host = ActivityHost::new(call, wasi.build(), limits, self.allowlist.clone());
        let mut store = Store::new(self.engine.wasmtime(), host);
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(ACTIVITY_FUEL_MAX)
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
    ) -> Result<String, ActivityError> {
        let trap = |error: wasmtime::Error| ActivityError {
            error_type: "ActivityTrap".into(),
            message: format!("{:#}", anyhow::Error::from(error)),
            details: None,
            non_retryable: false,
        };
        let name = call.activity_name.clone();
        let mut store = self.new_store(call).map_err(|error| ActivityError {
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
