//! Reprise: a durable workflow runtime whose workflows are WebAssembly
//! components.
//!
//! A workflow's every nondeterministic act — reading a clock, drawing
//! randomness, calling an activity, sleeping — is a host call that the
//! runtime journals before the guest sees its result; on recovery the
//! runtime re-runs the component and answers each call from the journal.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use reprise::{ActivityRegistry, Engine, Limits, Runtime, RuntimeOptions};
//!
//! let engine = Engine::new(None, Limits::default())?;
//! let store = reprise::store::open("reprise.db".as_ref()).await?;
//! let activities = ActivityRegistry::load(engine.clone(), vec![], Default::default()).await?;
//! let runtime = Runtime::new(engine, store, activities, RuntimeOptions::default())?;
//! let module = runtime.deploy_workflow(&std::fs::read("hello.wasm")?).await?;
//! let (execution, _) = runtime.start("hello", &module.digest, Some("order-42".into()), "{}").await?;
//! println!("{:?}", runtime.drive(execution).await?);
//! # Ok(()) }
//! ```
//!
//! See ARCHITECTURE.md for the module map and the invariants.

pub mod activity;
pub mod api;
pub mod attributes;
pub mod bench;
pub mod cli;
pub mod engine;
pub mod execution;
pub mod host;
pub mod mailbox;
pub mod quota;
mod recently_used;
pub mod runtime;
pub mod schedule;
pub mod telemetry;
pub mod tenant;

// The journal and the store are crates of their own (neither links Wasm);
// their old paths stay: `reprise::journal`, `reprise::store`, `reprise::clock`.
pub use reprise_journal::{self as journal, clock};
pub use reprise_store as store;

pub use activity::{ActivityConfig, ActivityRegistry};
pub use engine::{Engine, Limits};
pub use execution::QueryAsk;
pub use runtime::{Outcome, ReplayVerdict, RunError, Runtime, RuntimeOptions};
