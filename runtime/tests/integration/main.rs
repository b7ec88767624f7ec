//! End-to-end tests of the durable core: real components (built by
//! `scripts/build-guests`), the real SQLite store, real processes.

mod activities;
mod attacks;
mod c_guest;
mod cli;
mod conformance;
mod crash;
mod determinism;
mod hosting;
mod imports;
mod isolation;
mod js_sdk;
mod limits;
mod long_lived;
mod observability;
mod openapi;
mod outbound;
mod patterns;
mod postgres;
mod python_sdk;
mod queries;
mod readme;
mod replay;
mod saga;
mod schedules;
mod server;
mod signals;
mod simulation;
mod support;
mod web_view;
mod workers;

// The store suite's PostgreSQL harness (a throwaway cluster, or the server
// REPRISE_TEST_DATABASE_URL names), shared rather than copied.
#[allow(dead_code)]
#[path = "../../../store/tests/suite/harness.rs"]
mod store_harness;
