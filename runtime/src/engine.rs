//! The deterministic wasmtime engine, the component cache and the limits.
//!
//! `engine` knows nothing about histories: it turns component bytes into a
//! validated, compiled [`LoadedComponent`] (cached on disk by SHA-256) and
//! sets up stores with fuel, an epoch deadline and a memory limiter.

use crate::recently_used::RecentlyUsed;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The interface every workflow and activity import lives in.
pub const REPRISE_PACKAGE: &str = "reprise:workflow/";
/// The export an activity component provides.
pub const ACTIVITIES_EXPORT: &str = "reprise:workflow/activities@0.1.0";
/// The export a workflow component provides.
pub const WORKFLOW_EXPORT: &str = "run";

/// Interfaces a guest may import. Everything under `wasi:` that the host
/// links is listed; whether a call is journaled, fixed, captured or denied
/// is decided in `host`.
const KNOWN_IMPORT_PREFIXES: &[&str] = &[
    REPRISE_PACKAGE,
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
];

/// How often the epoch ticks: the wall-clock backstop's resolution, and how
/// long guest code runs before it yields to other tasks on its thread. At
/// 10 ms, two endless loops of one tenant made another tenant's
/// start-to-result p50 390 ms (`reprise bench --only api-latency1-noisy`);
/// at 1 ms, 111 ms.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The largest component we accept.
pub const MODULE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The most fuel one activity attempt may burn, whatever its tenant's limit.
pub const ACTIVITY_FUEL_MAX: u64 = 50_000_000_000;

/// Functions (all core modules of a component together) an upload may
/// have. componentize-py's interpreter has 13,374; a 12 MB component of
/// 400,000 functions compiled for 39 s in 2.3 GB.
pub const MODULE_FUNCTIONS_MAX: u64 = 200_000;

/// Uploads compiling at once on this node, all tenants together.
pub const COMPILATIONS_MAX: usize = 2;

/// Resource limits for one guest instance.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Linear memory of one instance, in bytes.
    pub memory_bytes_max: usize,
    /// Fuel (≈ Wasm instructions) one activation may burn. Deterministic: a
    /// replay of the same history burns the same fuel.
    pub activation_fuel_max: u64,
    /// Wall-clock time the guest may run without returning to the host.
    pub activation_wall_ms_max: u64,
    /// Instances (workflows in memory plus running activity attempts) the
    /// pooling allocator keeps slots for; 0 allocates on demand instead.
    pub pooled_instances_max: u32,
    /// Memory (heap) one compilation in a child process may use. A 3 MB
    /// component of 100,000 functions took 555 MB; componentize-py's 18 MB
    /// interpreter compiles well within the default.
    pub compile_memory_bytes_max: u64,
    /// CPU time (all its threads together) one compilation in a child
    /// process may use (componentize-py's interpreter: ~11 s here).
    /// Counted in CPU, not wall-clock time: compilations run below the
    /// workflows' priority, and a busy node must not fail an upload that
    /// an idle one accepts. Enforced in whole seconds (`RLIMIT_CPU`).
    pub compile_cpu_ms_max: u64,
    /// Wall-clock time one compilation in a child process may take: the
    /// backstop for a child that stops making progress.
    pub compile_wall_ms_max: u64,
    /// Compiled components kept in memory, and as many workflows linked
    /// ready to instantiate; past it the least recently used is forgotten
    /// and loaded again (from the disk cache, without compiling) when next
    /// needed. Every upload and every old execution's module would
    /// otherwise stay in memory until the process ends.
    pub components_in_memory_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes_max: 256 * 1024 * 1024,
            activation_fuel_max: 20_000_000_000,
            activation_wall_ms_max: 10_000,
            pooled_instances_max: 1_000,
            compile_memory_bytes_max: 2 * 1024 * 1024 * 1024,
            compile_cpu_ms_max: 90_000,
            compile_wall_ms_max: 600_000,
            components_in_memory_max: 512,
        }
    }
}

/// What a component is for, read from its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    Workflow,
    Activity,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Workflow => "workflow",
            ComponentKind::Activity => "activity",
        }
    }
}

/// Why component bytes were refused. Nothing is stored when this happens.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the file is empty or not WebAssembly (it does not start with the `\\0asm` magic)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build the guest for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the component is malformed: {0:#}")]
    Malformed(anyhow::Error),
    #[error(
        "compiling the component {0}; make it smaller (fewer functions) or split it into several components"
    )]
    CompileLimit(String),
    #[error(
        "the component imports interfaces this host does not provide: {}. A workflow may import only reprise:workflow and WASI (wasi:io, clocks, random, cli, filesystem, sockets, http)",
        .0.join(", ")
    )]
    UnknownImports(Vec<String>),
    #[error(
        "the component exports neither a workflow (`run`) nor activities (`{ACTIVITIES_EXPORT}`); it exports: {}",
        .0.join(", ")
    )]
    NoEntryPoint(Vec<String>),
}

/// A validated, compiled component.
#[derive(Clone)]
pub struct LoadedComponent {
    /// Lowercase hex SHA-256 of the component bytes.
    pub digest: String,
    pub kind: ComponentKind,
    pub component: Component,
}

/// The wasmtime engine shared by every workflow and activity, plus the
/// compiled-component cache.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    cache_dir: Option<PathBuf>,
    loaded: Arc<Mutex<RecentlyUsed<LoadedComponent>>>,
    /// Compile in a child process of this program (see
    /// [`Engine::compile_in_child_processes`]); `None`: in this process.
    compiler_program: Option<PathBuf>,
    /// Compilations running now, for [`COMPILATIONS_MAX`].
    compilations: Arc<(Mutex<usize>, std::sync::Condvar)>,
    pub limits: Limits,
}

impl Engine {
    /// Builds the engine. `cache_dir` keeps compiled components across
    /// processes (compiling a large guest takes seconds).
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> anyhow::Result<Engine> {
        let mut config = base_config();
        if limits.pooled_instances_max > 0 {
            config.allocation_strategy(pooling_config(&limits));
        }
        let inner = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .map_err(|error| error.context("configuring wasmtime"))?;
        spawn_epoch_ticker(&inner);
        Ok(Engine {
            inner,
            cache_dir,
            loaded: Arc::new(Mutex::new(RecentlyUsed::new(
                limits.components_in_memory_max,
            ))),
            compiler_program: None,
            compilations: Arc::default(),
            limits,
        })
    }

    /// Compiles from now on in child processes of `program` (the `reprise`
    /// binary: its hidden `compile-component` command), each bounded by
    /// `compile_memory_bytes_max` and `compile_wall_ms_max`: a compile
    /// bomb fails its upload, and the memory a compilation takes goes back
    /// to the system when the child exits. Needs a cache directory (the
    /// child writes the artifact there); without one this does nothing.
    pub fn compile_in_child_processes(mut self, program: PathBuf) -> Engine {
        if self.cache_dir.is_some() {
            self.compiler_program = Some(program);
        }
        self
    }

    /// Compiles `input` (component bytes) into the artifact `output` with
    /// an engine compatible with [`Engine::new`]'s, checking that its
    /// compatibility tag is `expected_tag`: the body of the child process.
    pub fn compile_artifact(input: &Path, output: &Path, expected_tag: &str) -> anyhow::Result<()> {
        // The same configuration minus the pooling allocator, which only
        // decides how instances are allocated (it is not part of the tag).
        let inner = wasmtime::Engine::new(&base_config())
            .map_err(anyhow::Error::from)
            .map_err(|error| error.context("configuring wasmtime"))?;
        let tag = compatibility_tag(&inner);
        anyhow::ensure!(
            tag == expected_tag,
            "this compiler's engine tag is {tag}, the server's {expected_tag}: not the same build"
        );
        let bytes = std::fs::read(input)
            .map_err(|error| anyhow::anyhow!("reading {}: {error}", input.display()))?;
        let compiled = inner
            .precompile_component(&bytes)
            .map_err(anyhow::Error::from)?;
        let dir = output
            .parent()
            .ok_or_else(|| anyhow::anyhow!("{} has no directory", output.display()))?;
        write_atomically(dir, output, &compiled)
            .map_err(|error| anyhow::anyhow!("writing {}: {error}", output.display()))
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// Reads, validates and compiles the component in `path`.
    pub fn load_file(&self, path: &Path) -> Result<LoadedComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load(&bytes)
    }

    /// Validates and compiles component bytes, using the cache when it can.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedComponent, LoadError> {
        check_header(bytes)?;
        let digest = module_digest(bytes);
        if let Some(loaded) = self.cached(&digest) {
            return Ok(loaded);
        }
        check_function_count(bytes)?;
        let component = self.compile(&digest, bytes)?;
        let kind = validate(&self.inner, &component)?;
        let loaded = LoadedComponent {
            digest: digest.clone(),
            kind,
            component,
        };
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(digest, loaded.clone());
        Ok(loaded)
    }

    /// Drops `digest` from the in-memory cache (the disk cache keeps it):
    /// a later load compiles it again, or reads it from disk.
    pub fn forget(&self, digest: &str) {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(digest);
    }

    /// How many compiled components the in-memory cache holds now.
    pub fn components_in_memory(&self) -> usize {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// The names a component imports and exports.
    pub fn describe(&self, loaded: &LoadedComponent) -> (Vec<String>, Vec<String>) {
        let ty = loaded.component.component_type();
        let imports = ty
            .imports(&self.inner)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports = ty
            .exports(&self.inner)
            .map(|(name, _)| name.to_string())
            .collect();
        (imports, exports)
    }

    fn cached(&self, digest: &str) -> Option<LoadedComponent> {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(digest)
    }

    fn compile(&self, digest: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let Some(cache_dir) = &self.cache_dir else {
            let _slot = self.compilation_slot();
            return Component::new(&self.inner, bytes)
                .map_err(|error| LoadError::Malformed(error.into()));
        };
        let path = cache_dir.join(format!("{digest}-{}.cwasm", self.compatibility_tag()));
        if !path.exists()
            && let Some(program) = &self.compiler_program
        {
            let _slot = self.compilation_slot();
            self.compile_in_child(program, cache_dir, &path, bytes)?;
        }
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash (it is in the name),
            // into a directory only this runtime writes.
            if let Ok(component) = unsafe { Component::deserialize_file(&self.inner, &path) } {
                return Ok(component);
            }
            // A stale or truncated cache entry: recompile below.
        }
        let _slot = self.compilation_slot();
        let compiled = self
            .inner
            .precompile_component(bytes)
            .map_err(|error| LoadError::Malformed(error.into()))?;
        // The disk cache is an optimization: failing to write it only costs
        // a recompile next time.
        if let Err(error) = write_atomically(cache_dir, &path, &compiled) {
            tracing::warn!(path = %path.display(), %error, "could not cache a compiled component");
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.inner, &compiled) }
            .map_err(|error| LoadError::Malformed(error.into()))
    }

    fn compatibility_tag(&self) -> String {
        compatibility_tag(&self.inner)
    }

    /// Waits for one of the node's [`COMPILATIONS_MAX`] compilation slots.
    fn compilation_slot(&self) -> CompilationSlot {
        let (running, freed) = &*self.compilations;
        let mut count = running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *count >= COMPILATIONS_MAX {
            count = freed
                .wait(count)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *count += 1;
        CompilationSlot(self.compilations.clone())
    }

    /// Compiles `bytes` into the artifact `path` in a child process with
    /// bounded memory and time.
    fn compile_in_child(
        &self,
        program: &Path,
        cache_dir: &Path,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(), LoadError> {
        use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
        let io_error = |what: &str, error: std::io::Error| {
            LoadError::Malformed(anyhow::anyhow!("{what}: {error}"))
        };
        std::fs::create_dir_all(cache_dir)
            .map_err(|error| io_error("creating the cache directory", error))?;
        let input = tempfile::NamedTempFile::new_in(cache_dir)
            .map_err(|error| io_error("staging the component", error))?;
        std::fs::write(input.path(), bytes)
            .map_err(|error| io_error("staging the component", error))?;
        let mut command = std::process::Command::new(program);
        command
            .arg("compile-component")
            .arg(input.path())
            .arg(path)
            .arg(self.compatibility_tag())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let memory_max = self.limits.compile_memory_bytes_max;
        let cpu_seconds_max = self.limits.compile_cpu_ms_max.div_ceil(1000).max(1);
        // SAFETY: between fork and exec the closure only calls setrlimit(2)
        // and setpriority(2), which are async-signal-safe, and allocates
        // nothing.
        unsafe {
            command.pre_exec(move || {
                let limit = |resource, soft, hard| {
                    let value = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    match libc::setrlimit(resource, &value) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                };
                limit(libc::RLIMIT_DATA, memory_max, memory_max)?;
                // SIGXCPU at the soft limit ends the child; SIGKILL a
                // second later if it ever catches that. No core dump of a
                // compiler that may hold gigabytes.
                limit(libc::RLIMIT_CPU, cpu_seconds_max, cpu_seconds_max + 1)?;
                limit(libc::RLIMIT_CORE, 0, 0)?;
                // Below the server's own threads: a compile bomb takes what
                // the workflows leave of the CPU.
                libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|error| io_error("starting the compiler process", error))?;
        let wall_max = Duration::from_millis(self.limits.compile_wall_ms_max);
        let deadline = std::time::Instant::now() + wall_max;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LoadError::CompileLimit(format!(
                        "took longer than compile_wall_ms_max = {} ms",
                        wall_max.as_millis()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(error) => return Err(io_error("waiting for the compiler process", error)),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(pipe) = child.stderr.take() {
            use std::io::Read as _;
            let _ = pipe.take(4096).read_to_string(&mut stderr);
        }
        let stderr = stderr.trim();
        if status.signal() == Some(libc::SIGXCPU) {
            return Err(LoadError::CompileLimit(format!(
                "used more than compile_cpu_ms_max = {} ms of CPU",
                self.limits.compile_cpu_ms_max
            )));
        }
        let out_of_memory = status.signal() == Some(libc::SIGABRT)
            || stderr.contains("memory allocation")
            || stderr.contains("out of memory");
        if out_of_memory {
            return Err(LoadError::CompileLimit(format!(
                "needed more memory than compile_memory_bytes_max = {memory_max} bytes"
            )));
        }
        Err(LoadError::Malformed(anyhow::anyhow!(
            "the compiler process failed ({status}): {stderr}"
        )))
    }
}

/// One of the node's compilation slots; dropping it frees the slot.
struct CompilationSlot(Arc<(Mutex<usize>, std::sync::Condvar)>);

impl Drop for CompilationSlot {
    fn drop(&mut self) {
        let (running, freed) = &*self.0;
        *running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// Everything of the engine's configuration but the instance allocator.
fn base_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        // Determinism: the same inputs give the same bits on any host.
        // (Threads are compiled out: wasmtime's `threads` feature is off.)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        // CPU budget (deterministic) and wall-clock backstop.
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(1024 * 1024)
        .async_stack_size(4 * 1024 * 1024);
    config
}

/// A module's digest: the lowercase hex SHA-256 of its bytes.
pub fn module_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The name part that ties a compiled artifact to the engine that can load it.
fn compatibility_tag(engine: &wasmtime::Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Bytes of a pooled linear memory, and of a pooled table, reset in place
/// rather than returned to the kernel when their slot is given back.
const SLOT_MEMORY_KEPT_RESIDENT_BYTES: usize = 1024 * 1024;
const SLOT_TABLE_KEPT_RESIDENT_BYTES: usize = 128 * 1024;

/// Slots for `pooled_instances_max` component instances, sized for guests
/// as large as componentize-py's (a dozen core instances, several tables).
fn pooling_config(limits: &Limits) -> wasmtime::InstanceAllocationStrategy {
    let instances = limits.pooled_instances_max;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(64)
        .max_memory_size(limits.memory_bytes_max)
        // A slot given back is reset by writing zeros over the pages the
        // instance touched (found by PAGEMAP_SCAN on Linux 6.7+), up to
        // these sizes, instead of `madvise`: no TLB shootdown on every
        // activity attempt and no page faults on the slot's next use.
        // In-process chain10 gained 30-40% (BENCHMARKS.md); what stays
        // resident is bounded by these sizes per warm slot.
        .linear_memory_keep_resident(SLOT_MEMORY_KEPT_RESIDENT_BYTES)
        .table_keep_resident(SLOT_TABLE_KEPT_RESIDENT_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto);
    wasmtime::InstanceAllocationStrategy::Pooling(pool)
}

/// Writes `bytes` to `path` through a uniquely named temporary file, so a
/// concurrent reader (or writer) never sees half a file.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WRITES: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let unique = WRITES.fetch_add(1, Ordering::Relaxed);
    let partial = path.with_extension(format!("partial-{}-{unique}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

/// Counts the functions of every core module in `bytes` (a component or
/// a module), refusing more than [`MODULE_FUNCTIONS_MAX`] before anything
/// is compiled.
fn check_function_count(bytes: &[u8]) -> Result<(), LoadError> {
    let mut functions: u64 = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|error| LoadError::Malformed(error.into()))?;
        if let wasmparser::Payload::CodeSectionStart { count, .. } = payload {
            functions += u64::from(count);
            if functions > MODULE_FUNCTIONS_MAX {
                return Err(LoadError::CompileLimit(format!(
                    "would take too long: it has more than {MODULE_FUNCTIONS_MAX} functions (module_functions_max = {MODULE_FUNCTIONS_MAX})"
                )));
            }
        }
    }
    Ok(())
}

fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() > MODULE_BYTES_MAX {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            limit: MODULE_BYTES_MAX,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Core modules have version 1; components have layer 1 (bytes 6..8).
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// Refuses unknown imports (listing all of them) and finds the entry point.
fn validate(engine: &wasmtime::Engine, component: &Component) -> Result<ComponentKind, LoadError> {
    let ty = component.component_type();
    let unknown: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| {
            !KNOWN_IMPORT_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .map(str::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(LoadError::UnknownImports(unknown));
    }
    let mut exports = Vec::new();
    for (name, item) in ty.exports(engine) {
        match (name, item.ty) {
            (WORKFLOW_EXPORT, ComponentItem::ComponentFunc(_)) => {
                return Ok(ComponentKind::Workflow);
            }
            (ACTIVITIES_EXPORT, ComponentItem::ComponentInstance(_)) => {
                return Ok(ComponentKind::Activity);
            }
            _ => exports.push(name.to_string()),
        }
    }
    Err(LoadError::NoEntryPoint(exports))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &wasmtime::Engine) {
    let engine = engine.weak();
    let started = std::thread::Builder::new()
        .name("reprise-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(error) = started {
        tracing::error!(%error, "could not start the epoch thread; wall-clock limits are off");
    }
}
