//! End-to-end tests of the durable core: real components (built by
//! `scripts/build-guests`), the real SQLite store, real processes.

mod activities;
mod attacks;
mod cli;
mod conformance;
mod crash;
mod determinism;
mod hosting;
mod imports;
mod isolation;
mod limits;
mod observability;
mod openapi;
mod outbound;
mod patterns;
mod readme;
mod replay;
mod saga;
mod server;
mod signals;
mod simulation;
mod support;
mod web_view;
