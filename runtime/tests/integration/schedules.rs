//! Schedules through a real server: every nominal time started once —
//! across a SIGKILL too —, pause, backfill, overlap policies and limits.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{ServerProcess, call, free_port, json_call};
use crate::support::guest;

/// A server with `hello` bound, for a tenant with `limits`.
struct Scheduled {
    server: ServerProcess,
    key: String,
    data: tempfile::TempDir,
}

impl Scheduled {
    async fn open(limits: &str) -> Scheduled {
        let data = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(data.path().join("activity")).expect("activity dir");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args(["tenant", "create", "acme", "--limits", limits, "--data"])
            .arg(data.path())
            .env("REPRISE_LOG", "warn")
            .output()
            .expect("create a tenant");
        assert!(output.status.success(), "{output:?}");
        let key = String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_string();
        let server = ServerProcess::start(data.path(), free_port()).await;
        let scheduled = Scheduled { server, key, data };
        let bytes = std::fs::read(guest("hello")).expect("read hello");
        let (status, module) = scheduled.call("POST", "/v1/modules", bytes.into()).await;
        assert_eq!(status, 201, "{module}");
        let bind = json!({ "digest": module["digest"] });
        let (status, _) = scheduled
            .json("PUT", "/v1/workflow-types/hello", bind)
            .await;
        assert_eq!(status, 200);
        scheduled
    }

    async fn call(&self, method: &str, path: &str, body: bytes::Bytes) -> (u16, Value) {
        call(&self.server.address, &self.key, method, path, body).await
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        json_call(&self.server.address, &self.key, method, path, body).await
    }

    /// The nominal times (ms) of the executions schedule `id` started.
    async fn started(&self, id: &str) -> Vec<i64> {
        let path = format!("/v1/executions?id_prefix={id}%40&limit=1000");
        let (status, list) = self.call("GET", &path, Default::default()).await;
        assert_eq!(status, 200, "{list}");
        let mut times: Vec<i64> = list
            .as_array()
            .expect("a list")
            .iter()
            .map(|execution| {
                let workflow_id = execution["workflow_id"].as_str().expect("an id");
                let at = workflow_id.rsplit('@').next().expect("@time");
                at.parse::<jiff::Timestamp>()
                    .unwrap_or_else(|error| panic!("{workflow_id}: {error}"))
                    .as_millisecond()
            })
            .collect();
        times.sort_unstable();
        times
    }

    /// Waits until schedule `id` has started at least `count` executions.
    async fn wait_for_starts(&self, id: &str, count: usize) -> Vec<i64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let times = self.started(id).await;
            if times.len() >= count {
                return times;
            }
            assert!(
                Instant::now() < deadline,
                "only {} starts: {times:?}",
                times.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn assert_every_second(times: &[i64]) {
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1_000,
            "a start skipped or doubled: {times:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nominal_time_starts_once_across_a_sigkill_and_backfills_are_idempotent() {
    let mut scheduled = Scheduled::open("{}").await;
    let create = json!({
        "schedule_id": "tick",
        "workflow_type": "hello",
        "input": { "name": "Sched", "sleep_ms": 1 },
        "spec": { "every_ms": 1000 },
        "overlap": "allow_all",
    });
    let (status, created) = scheduled
        .json("POST", "/v1/schedules", create.clone())
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["description"], "every 1s", "{created}");
    let (status, again) = scheduled.json("POST", "/v1/schedules", create).await;
    assert_eq!(status, 409, "{again}");
    let before_kill = scheduled.wait_for_starts("tick", 2).await;

    // Down for ~2.5 nominal times: the restart catches up on them.
    let Scheduled { server, key, data } = scheduled;
    drop(server);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let server = ServerProcess::start(data.path(), free_port()).await;
    scheduled = Scheduled { server, key, data };
    let times = scheduled
        .wait_for_starts("tick", before_kill.len() + 4)
        .await;
    assert_eq!(times[..before_kill.len()], before_kill[..]);
    assert_every_second(&times);

    let (status, paused) = scheduled
        .json("POST", "/v1/schedules/tick/pause", Value::Null)
        .await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_pause = scheduled.started("tick").await;
    assert_every_second(&at_pause);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        scheduled.started("tick").await,
        at_pause,
        "nothing starts while paused"
    );
    let (status, shown) = scheduled
        .call("GET", "/v1/schedules/tick", Default::default())
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["started"], at_pause.len(), "{shown}");
    assert_eq!(shown["next_run_ms"], Value::Null, "paused: {shown}");

    // A backfill of the 4 seconds before the first start, twice.
    let first = at_pause[0];
    let range = json!({ "from_ms": first - 5_000, "until_ms": first - 1_000 });
    let (status, filled) = scheduled
        .json("POST", "/v1/schedules/tick/backfill", range.clone())
        .await;
    assert_eq!(status, 200, "{filled}");
    assert_eq!(
        filled["started"].as_array().map(Vec::len),
        Some(4),
        "{filled}"
    );
    let (_, refilled) = scheduled
        .json("POST", "/v1/schedules/tick/backfill", range)
        .await;
    assert_eq!(refilled["existing"], filled["started"], "{refilled}");
    assert_eq!(refilled["started"], json!([]));
    assert_every_second(&scheduled.started("tick").await);

    // Resumed, it starts again, but not what fell in the pause.
    let (status, resumed) = scheduled
        .json("POST", "/v1/schedules/tick/resume", Value::Null)
        .await;
    assert_eq!(status, 200, "{resumed}");
    let resumed_at = resumed["next_run_ms"].as_i64().expect("a next run");
    let times = scheduled
        .wait_for_starts("tick", 4 + at_pause.len() + 1)
        .await;
    let after_pause: Vec<i64> = times
        .iter()
        .copied()
        .filter(|at| *at > at_pause[at_pause.len() - 1])
        .collect();
    assert!(
        after_pause[0] >= resumed_at,
        "{after_pause:?} vs {resumed_at}"
    );
    let (status, _) = scheduled
        .call("DELETE", "/v1/schedules/tick", Default::default())
        .await;
    assert_eq!(status, 200);
    let (status, _) = scheduled
        .call("GET", "/v1/schedules/tick", Default::default())
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_starts_follow_the_policy_and_limits_hold() {
    let scheduled = Scheduled::open(r#"{"schedules_max": 2}"#).await;
    // Each run sleeps 2 × 1.5 s: three nominal times fall in one run.
    let long_run = json!({ "name": "Slow", "sleep_ms": 1500 });
    for (id, overlap) in [("skipper", "skip"), ("canceller", "cancel_previous")] {
        let create = json!({
            "schedule_id": id,
            "workflow_type": "hello",
            "input": long_run,
            "spec": { "every_ms": 1000 },
            "overlap": overlap,
        });
        let (status, created) = scheduled.json("POST", "/v1/schedules", create).await;
        assert_eq!(status, 201, "{created}");
    }
    let third = json!({
        "schedule_id": "third",
        "workflow_type": "hello",
        "spec": { "every_ms": 1000 },
    });
    let (status, refused) = scheduled.json("POST", "/v1/schedules", third).await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("schedules_max"),
        "{refused}"
    );

    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let (status, skipper) = scheduled
        .call("GET", "/v1/schedules/skipper", Default::default())
        .await;
    assert_eq!(status, 200);
    let skipped_starts = scheduled.started("skipper").await;
    assert!(
        skipped_starts.len() <= 2,
        "one run at a time: {skipped_starts:?}"
    );
    assert!(skipper["skipped"].as_u64().unwrap_or(0) >= 2, "{skipper}");
    // Cancel-previous: every start but the newest was asked to cancel.
    let cancelled = scheduled.started("canceller").await;
    assert!(cancelled.len() >= 3, "{cancelled:?}");
    let (status, list) = scheduled
        .call(
            "GET",
            "/v1/executions?id_prefix=canceller%40&status=cancelled",
            Default::default(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        list.as_array().map_or(0, Vec::len) >= 1,
        "the previous runs were cancelled: {list}"
    );

    for (spec, problem) in [
        (json!({ "every_ms": 10 }), "every_ms"),
        (json!({ "cron": "61 * * * *" }), "minute"),
        (
            json!({ "cron": "0 9 * * *", "time_zone": "Mars/Olympus" }),
            "Mars/Olympus",
        ),
    ] {
        let create = json!({ "schedule_id": "bad", "workflow_type": "hello", "spec": spec });
        let (status, refused) = scheduled.json("POST", "/v1/schedules", create).await;
        assert_eq!(status, 400, "{refused}");
        assert!(
            refused["error"].as_str().unwrap_or("").contains(problem),
            "{problem}: {refused}"
        );
    }
}
