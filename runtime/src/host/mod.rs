//! The host side of the WIT contract: one module per imported interface.
//!
//! - [`durable`]: `reprise:workflow/durable`, the journaled calls.
//! - [`wasi`]: WASI as a workflow sees it — clocks and randomness journaled,
//!   stdout/stderr captured as logs, files, sockets and HTTP denied.
//! - [`timers`]: WASI clock subscriptions and `wasi:io/poll` over them,
//!   as durable timers.
//! - [`activity_context`]: `reprise:workflow/activity-context` for activities.

pub mod activity_context;
pub mod durable;
pub mod timers;
pub mod wasi;

/// What the host does with calls to an imported interface, in one word
/// (`reprise deploy` and the module upload's answer list imports by it).
/// The table mirrors the one in [`wasi`] and the activity sandbox.
pub fn import_treatment(kind: crate::engine::ComponentKind, interface: &str) -> &'static str {
    use crate::engine::ComponentKind;
    let captured =
        interface.starts_with("wasi:cli/stdout") || interface.starts_with("wasi:cli/stderr");
    match kind {
        ComponentKind::Workflow => {
            if captured {
                "captured"
            } else if interface.starts_with("wasi:random/insecure-seed") {
                "fixed"
            } else if interface.starts_with(crate::engine::REPRISE_PACKAGE)
                || interface.starts_with("wasi:clocks/")
                || interface.starts_with("wasi:random/")
                || interface.starts_with("wasi:io/poll")
            {
                "journaled"
            } else if interface.starts_with("wasi:cli/") {
                "fixed"
            } else if interface.starts_with("wasi:io/") {
                // Streams and errors: plumbing for the interfaces above.
                "plumbing"
            } else {
                "denied"
            }
        }
        ComponentKind::Activity => {
            if captured {
                "captured"
            } else if interface.starts_with("wasi:filesystem/") {
                "granted-directory"
            } else if interface.starts_with("wasi:http/") {
                "allowed-hosts"
            } else if interface.starts_with("wasi:sockets/") {
                "denied"
            } else {
                "live"
            }
        }
    }
}

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::execution::Execution;
use crate::journal::Seq;
use crate::quota::ComputeTurn;

/// Bindings of the `workflow` world: the single source of truth for the
/// types that cross the workflow boundary.
pub mod workflow_bindings {
    wasmtime::component::bindgen!({
        world: "workflow",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// Bindings of the `activity` world (sharing the `types` interface).
pub mod activity_bindings {
    wasmtime::component::bindgen!({
        world: "activity",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "reprise:workflow/types": super::workflow_bindings::reprise::workflow::types,
        },
    });
}

pub use workflow_bindings::reprise::workflow::types as wit_types;

/// The data of a workflow instance's store.
pub struct WorkflowHost {
    pub(crate) execution: Execution,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: wasi::DenyHttp,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// The activation's turn on the guest threads, and the guest time the
    /// wall-clock backstop measures.
    pub(crate) turn: ComputeTurn,
    /// Pollables (by resource rep) that are durable timers, and their seq.
    timers: HashMap<u32, Seq>,
}

impl WorkflowHost {
    pub(crate) fn new(
        execution: Execution,
        wasi: WasiCtx,
        limits: StoreLimits,
        turn: ComputeTurn,
    ) -> WorkflowHost {
        WorkflowHost {
            execution,
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks: wasi::DenyHttp,
            table: ResourceTable::new(),
            limits,
            turn,
            timers: HashMap::new(),
        }
    }
}

impl WasiView for WorkflowHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for WorkflowHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// The data of an activity instance's store: the call it serves now (a
/// warm instance serves several calls of one tenant in turn).
pub struct ActivityHost {
    pub(crate) context: activity_context::ActivityCall,
    lines: Arc<wasi::ActivityLines>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: wasi::AllowlistedHttp,
    table: ResourceTable,
    pub(crate) limits: MeasuredLimits,
}

/// A store's limits, remembering how large its memories grew.
pub struct MeasuredLimits {
    limits: StoreLimits,
    largest_memory_bytes: usize,
}

impl MeasuredLimits {
    /// The size the largest memory of the store reached.
    pub fn largest_memory_bytes(&self) -> usize {
        self.largest_memory_bytes
    }
}

impl wasmtime::ResourceLimiter for MeasuredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.largest_memory_bytes = self.largest_memory_bytes.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl ActivityHost {
    /// `wasi`'s stdout and stderr must write to `lines`.
    pub(crate) fn new(
        context: activity_context::ActivityCall,
        lines: Arc<wasi::ActivityLines>,
        wasi: WasiCtx,
        limits: StoreLimits,
        http_hooks: wasi::AllowlistedHttp,
    ) -> ActivityHost {
        lines.serve(&context);
        ActivityHost {
            context,
            lines,
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks,
            table: ResourceTable::new(),
            limits: MeasuredLimits {
                limits,
                largest_memory_bytes: 0,
            },
        }
    }

    /// From now on the instance serves `call`, under `allowlist`.
    pub(crate) fn serve(
        &mut self,
        call: activity_context::ActivityCall,
        allowlist: Arc<crate::activity::outbound::Allowlist>,
    ) {
        self.lines.serve(&call);
        self.context = call;
        self.http_hooks.allowlist = allowlist;
    }

    /// Resources (descriptors, streams, requests) the guest holds now.
    pub(crate) fn resources_held(&mut self) -> usize {
        self.table.iter_mut().count()
    }
}

impl WasiView for ActivityHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ActivityHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}
