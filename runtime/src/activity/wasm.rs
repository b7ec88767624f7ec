//! Wasm activity components (the `activity` world): sandboxed, with real
//! clocks and randomness, files only in the granted directory (cap-std,
//! through WASI preopens) and outbound HTTP only to allowed hosts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::outbound::{Allowlist, OutboundClient};
use crate::engine::{ACTIVITY_FUEL_MAX, ComponentKind, Engine, LoadedComponent};
use crate::host::activity_bindings::{Activity, ActivityPre};
use crate::host::activity_context::ActivityCall;
use crate::host::wasi::{ActivityLines, GuestOutput};
use crate::host::{ActivityHost, wit_types};
use crate::journal::ActivityError;

/// Where an activity's granted directory appears inside the guest.
pub const ACTIVITY_DIR_GUEST_PATH: &str = "/data";

/// Warm activity instances kept between calls, across every component
/// and tenant: each holds a pooled slot (and its memory) while it waits.
pub const WARM_INSTANCES_MAX: usize = 16;
/// Warm instances kept for one component and tenant.
pub const WARM_INSTANCES_PER_KEY_MAX: usize = 4;
/// Calls one instance serves before it is dropped, so that what a guest
/// accumulates across calls (heap fragmentation, caches) stays bounded.
pub const CALLS_PER_INSTANCE_MAX: u32 = 1_000;
/// Resources a warm instance may hold between calls: what a guest's
/// runtime keeps for its lifetime (preopened directories, std streams).
pub const RESOURCES_KEPT_MAX: usize = 32;
/// The largest memory a warm instance may have grown to: its touched pages
/// stay resident while it waits, where a slot given back keeps at most
/// 1 MiB. Larger instances (a Python runtime's) are not kept.
pub const WARM_MEMORY_BYTES_MAX: usize = 16 * 1024 * 1024;

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
    warm: Arc<WarmInstances>,
}

/// Which calls a warm instance may serve: those of the same component for
/// the same tenant, with the same directory granted and the same memory
/// limit. Tenants never share an instance, even of a component the server
/// provides to all of them.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct WarmKey {
    digest: String,
    tenant: String,
    tenant_dir: Option<String>,
    memory_bytes_max: usize,
}

/// An instance whose last call returned normally and left no more
/// resources behind than its first, ready for the next call of its key.
struct WarmInstance {
    store: Store<ActivityHost>,
    instance: Activity,
    calls_served: u32,
    /// Resources held after the first call: a later call that ends
    /// holding more leaked some, and the instance is dropped.
    resources_after_first_call: Option<usize>,
}

/// Instantiating an activity and resetting its slot afterwards cost more
/// than a short activity's own work (BENCHMARKS.md), so an instance whose
/// call ended normally serves later calls of its tenant, as a worker
/// process would. One that trapped, ran out of fuel, timed out or leaked
/// resources is dropped.
#[derive(Default)]
struct WarmInstances {
    idle: Mutex<HashMap<WarmKey, Vec<WarmInstance>>>,
}

impl WarmInstances {
    fn idle(&self) -> MutexGuard<'_, HashMap<WarmKey, Vec<WarmInstance>>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, key: &WarmKey) -> Option<WarmInstance> {
        pop(&mut self.idle(), key)
    }

    /// Keeps `instance` for its key's next call unless the limits say no;
    /// what is not kept is dropped here, giving its slot back. When all
    /// [`WARM_INSTANCES_MAX`] are kept, the key with the most gives one
    /// up: one tenant's many components cannot keep the others' out.
    fn give_back(&self, key: WarmKey, mut instance: WarmInstance) {
        let held = instance.store.data_mut().resources_held();
        let kept_at_first = *instance.resources_after_first_call.get_or_insert(held);
        if instance.calls_served >= CALLS_PER_INSTANCE_MAX
            || held > kept_at_first
            || held > RESOURCES_KEPT_MAX
            || instance.store.data().limits.largest_memory_bytes() > WARM_MEMORY_BYTES_MAX
        {
            return;
        }
        let mut idle = self.idle();
        if idle.get(&key).map_or(0, Vec::len) >= WARM_INSTANCES_PER_KEY_MAX {
            return;
        }
        let mut evicted = None;
        if total(&idle) >= WARM_INSTANCES_MAX {
            let Some(fullest) = idle
                .iter()
                .filter(|(other, _)| **other != key)
                .max_by_key(|(_, instances)| instances.len())
                .map(|(other, _)| other.clone())
            else {
                return;
            };
            evicted = pop(&mut idle, &fullest);
        }
        idle.entry(key).or_default().push(instance);
        // Resetting the evicted instance's slot waits until the lock is free.
        drop(idle);
        drop(evicted);
    }

    fn count(&self) -> usize {
        total(&self.idle())
    }
}

/// The newest instance kept for `key`; a key left with none is removed.
fn pop(idle: &mut HashMap<WarmKey, Vec<WarmInstance>>, key: &WarmKey) -> Option<WarmInstance> {
    let instances = idle.get_mut(key)?;
    let instance = instances.pop();
    if instances.is_empty() {
        idle.remove(key);
    }
    instance
}

/// Warm instances kept, over every key.
fn total(idle: &HashMap<WarmKey, Vec<WarmInstance>>) -> usize {
    idle.values().map(Vec::len).sum()
}

/// What one attempt may use: its tenant's.
pub struct SandboxLimits {
    /// Whose call it is: warm instances serve only their own tenant.
    pub tenant: String,
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
            warm: Arc::default(),
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
            tenant: String::new(),
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
        let lines = Arc::new(ActivityLines::default());
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(GuestOutput::for_activity(&lines, "stdout"))
            .stderr(GuestOutput::for_activity(&lines, "stderr"));
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
        let host = ActivityHost::new(call, lines, wasi.build(), store_limits, http);
        let mut store = Store::new(self.engine.wasmtime(), host);
        store.limiter(|host| &mut host.limits);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        arm_for_call(&mut store, limits.fuel_max)?;
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
        let host_error = |error: anyhow::Error| ActivityError {
            error_type: "ActivityHostError".into(),
            message: format!("{error:#}"),
            details: None,
            non_retryable: false,
        };
        let name = call.activity_name.clone();
        let key = WarmKey {
            digest: activity.digest.clone(),
            tenant: limits.tenant.clone(),
            tenant_dir: limits.tenant_dir.clone(),
            memory_bytes_max: limits.memory_bytes_max,
        };
        let mut warm = match self.warm.take(&key) {
            Some(mut warm) => {
                warm.store.data_mut().serve(call, limits.allowlist);
                arm_for_call(&mut warm.store, limits.fuel_max).map_err(host_error)?;
                warm
            }
            None => {
                let mut store = self.new_store(call, limits).map_err(host_error)?;
                let instance = activity
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(trap)?;
                WarmInstance {
                    store,
                    instance,
                    calls_served: 0,
                    resources_after_first_call: None,
                }
            }
        };
        // A trap drops the instance with the store: it serves no more calls.
        let result = warm
            .instance
            .reprise_workflow_activities()
            .call_run(&mut warm.store, &name, input)
            .await
            .map_err(trap)?;
        warm.calls_served += 1;
        self.warm.give_back(key, warm);
        result.map_err(ActivityError::from)
    }

    /// Instances kept warm for later calls.
    pub fn warm_instances(&self) -> usize {
        self.warm.count()
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

/// Gives a store the budget of one call: its tenant's fuel, and an epoch
/// deadline one tick away. Activities may run long (their timeouts bound
/// them); the epoch only makes them yield so that other work on the
/// thread proceeds.
fn arm_for_call(store: &mut Store<ActivityHost>, fuel_max: u64) -> anyhow::Result<()> {
    store
        .set_fuel(fuel_max.min(ACTIVITY_FUEL_MAX))
        .map_err(anyhow::Error::from)?;
    store.set_epoch_deadline(1);
    Ok(())
}
