//! A misbehaving workflow fails its own execution with a clear error, in
//! bounded time, and the runtime goes on serving others.

use reprise::journal::Event;
use reprise::{Limits, Outcome};

use crate::support::{Harness, completed_output};

fn tight_limits() -> Limits {
    Limits {
        memory_bytes_max: 64 * 1024 * 1024,
        activation_fuel_max: 500_000_000,
        activation_wall_ms_max: 5_000,
        ..Limits::default()
    }
}

async fn expect_failure(harness: &Harness, mode: &str, error_type: &str, mentions: &str) {
    let input = format!(r#"{{"mode":"{mode}"}}"#);
    let (record, outcome) = harness
        .run("hostile", &format!("hostile-{mode}"), &input)
        .await;
    let Outcome::Failed { error } = outcome else {
        panic!("mode {mode} should fail the execution, got {outcome:?}");
    };
    assert_eq!(error.error_type, error_type, "{error}");
    assert!(error.message.contains(mentions), "{error}");
    let events = harness.history(&record).await;
    assert!(
        matches!(
            events.last().map(|recorded| &recorded.event),
            Some(Event::WorkflowFailed { .. })
        ),
        "the failure is journaled"
    );
}

#[tokio::test]
async fn hostile_workflows_fail_alone() {
    let harness = Harness::new(tight_limits(), false).await;
    expect_failure(
        &harness,
        "loop",
        "FuelExhausted",
        "activation_fuel_max = 500000000",
    )
    .await;
    expect_failure(
        &harness,
        "memory",
        "MemoryLimitExceeded",
        "memory_bytes_max = 67108864",
    )
    .await;
    expect_failure(&harness, "recursion", "StackOverflow", "call stack").await;
    expect_failure(&harness, "panic", "GuestPanic", "panicked on purpose").await;
    // The same runtime still runs a well-behaved workflow.
    let (_, outcome) = harness
        .run(
            "hello",
            "after-hostile",
            r#"{"name":"still here","sleep_ms":1}"#,
        )
        .await;
    assert_eq!(completed_output(&outcome)["greeting"], "Hello, still here!");
}

/// Fuel large, wall clock small: the epoch backstop stops the loop.
#[tokio::test]
async fn the_wall_clock_backstop_stops_a_loop() {
    let limits = Limits {
        activation_fuel_max: u64::MAX / 2,
        activation_wall_ms_max: 300,
        ..tight_limits()
    };
    let harness = Harness::new(limits, false).await;
    expect_failure(
        &harness,
        "loop",
        "WallClockLimitExceeded",
        "activation_wall_ms_max = 300 ms",
    )
    .await;
}
