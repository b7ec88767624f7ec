//! The web view (`runtime/src/api/web/index.html`) in a real Chromium
//! against a real `reprise serve`: exact values, the timeline chart, the
//! list's counts, filters and pages, the actions, the history download
//! (replayed by `reprise replay`) and a phone-sized window. The browser is
//! driven by `runtime/tests/web/drive.mjs` (playwright-core, installed by
//! `scripts/setup`), which prints what the page shows as JSON.

use std::collections::BTreeMap;
use std::process::Command;

use bytes::Bytes;
use reprise_providers::Provider;
use serde_json::{Value, json};

use crate::hosting::Hosted;
use crate::server::{call, call_with_headers, json_call};
use crate::support::{cache_dir, guest, repo_root};

/// 2^53: integers above it do not survive a trip through a JS number.
const JS_SAFE_INTEGER_LIMIT: u64 = 1 << 53;
const BIG: &str = "13979697887323312865";
/// What a JS number makes of [`BIG`].
const BIG_AS_JS_NUMBER: &str = "13979697887323312000";

/// Runs `drive.mjs` with `args` and returns the JSON it printed.
fn drive_blocking(args: &[String]) -> Value {
    let web = repo_root().join("runtime/tests/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/setup (npm ci --prefix runtime/tests/web)"
    );
    let output = Command::new("node")
        .arg(web.join("drive.mjs"))
        .args(args)
        .output()
        .expect("node runs (scripts/setup installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "drive.mjs {args:?} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("drive.mjs printed no JSON: {stdout}"));
    let report: Value = serde_json::from_str(last).expect("drive.mjs prints JSON");
    assert_eq!(
        report["pageErrors"],
        json!([]),
        "the page threw: {report:#}"
    );
    report
}

/// [`drive_blocking`] off the async threads: `base`, `key`, then the scenario.
async fn drive(hosted: &Hosted, key: &str, scenario: &[&str]) -> Value {
    let mut args = vec![format!("http://{}/", hosted.address()), key.to_string()];
    args.extend(scenario.iter().map(|arg| arg.to_string()));
    tokio::task::spawn_blocking(move || drive_blocking(&args))
        .await
        .expect("join")
}

/// A request whose body is sent as written (`json!` would round floats).
async fn start_raw(hosted: &Hosted, key: &str, body: &str) {
    let (status, answer) = call(
        hosted.address(),
        key,
        "POST",
        "/v1/executions",
        Bytes::from(body.to_string()),
    )
    .await;
    assert!(status == 201, "start {body}: {status} {answer}");
}

async fn get(hosted: &Hosted, key: &str, path: &str) -> Value {
    let (status, answer) = json_call(hosted.address(), key, "GET", path, Value::Null).await;
    assert_eq!(status, 200, "GET {path}: {answer}");
    answer
}

/// GET `path`: status, the next-page header, and the body as JSON.
async fn get_with_header(hosted: &Hosted, key: &str, path: &str) -> (u16, Option<String>, Value) {
    let (status, headers, body) =
        call_with_headers(hosted.address(), key, "GET", path, Bytes::new()).await;
    let next = headers
        .get("reprise-next-before")
        .map(|value| value.to_str().expect("an ASCII cursor").to_string());
    (status, next, body)
}

fn text_of(report: &Value, field: &str) -> String {
    report[field].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_shows_exact_values_sends_signals_and_downloads_a_replayable_history() {
    let activities = guest("hello-activities");
    let hosted = Hosted::start(&["--activities", activities.to_str().expect("path")]).await;
    let key = hosted.tenant("acme", json!({})).await;
    hosted.deploy(&key, "hello", Some("hello")).await;
    hosted.deploy(&key, "patterns", Some("patterns")).await;

    // Hello echoes the random u64s it drew; its input carries a float
    // that a JS number would round.
    start_raw(
        &hosted,
        &key,
        r#"{"workflow_type":"hello","workflow_id":"web-hello","input":{"name":"web","sleep_ms":10,"note":0.10000000000000001}}"#,
    )
    .await;
    let finished = hosted.finished(&key, "web-hello").await;
    assert_eq!(finished["status"], "completed", "{finished}");
    let drawn: Vec<u64> = ["sdk_random", "rand_random"]
        .iter()
        .map(|field| finished["result"][field].as_u64().expect("a u64"))
        .collect();
    let history = get(&hosted, &key, "/v1/executions/web-hello/history").await;
    let wall_clock_ns = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|event| event["type"] == "ClockRead" && event["data"]["clock"] == "wall")
        .and_then(|event| event["data"]["value_ns"].as_u64())
        .expect("hello reads the wall clock");
    assert!(wall_clock_ns > JS_SAFE_INTEGER_LIMIT);

    let page = drive(&hosted, &key, &["execution", "web-hello", "completed"]).await;
    let result = text_of(&page, "result");
    let table = text_of(&page, "table");
    for value in &drawn {
        assert!(
            result.contains(&value.to_string()),
            "result shows {value} exactly: {result}"
        );
        assert!(table.contains(&value.to_string()), "history shows {value}");
    }
    assert!(
        drawn.iter().any(|value| *value > JS_SAFE_INTEGER_LIMIT),
        "a random u64 above 2^53 (odds of none: 2^-22): {drawn:?}"
    );
    assert!(
        table.contains(&format!("wall clock = {wall_clock_ns} ns")),
        "the clock read, to the nanosecond: {table}"
    );
    assert!(table.contains("RandomDrawn"), "{table}");
    assert!(
        text_of(&page, "input").contains("0.10000000000000001"),
        "input verbatim: {page:#}"
    );
    assert!(
        result.contains("\n  \"greeting\": "),
        "the result is indented: {result}"
    );

    // A signal sent from the page reaches the waiting workflow; its payload
    // (and the workflow's result, which echoes it) shows exactly.
    start_raw(
        &hosted,
        &key,
        &format!(
            r#"{{"workflow_type":"patterns","workflow_id":"web-signals","input":{{"mode":"signals","big":{BIG},"tiny":0.10000000000000001}}}}"#
        ),
    )
    .await;
    hosted
        .wait_for_event(&key, "web-signals", "SignalAwaited")
        .await;
    let payload =
        format!(r#"{{"big": {BIG}, "float": 1.2345678901234567, "tiny": 0.10000000000000001}}"#);
    let signalled = drive(
        &hosted,
        &key,
        &["signal", "web-signals", "approve", &payload],
    )
    .await;
    let before = &signalled["before"];
    assert!(
        text_of(before, "waiting").contains("signal `approve`"),
        "what it waits for: {before:#}"
    );
    assert!(
        text_of(&signalled, "refusal").contains("a signal's name is 1 to 256 bytes"),
        "the server's reason for a refusal: {signalled:#}"
    );
    let after = &signalled["after"];
    assert_eq!(
        after["status"], "completed",
        "refreshed by itself: {after:#}"
    );
    let api_view = get(&hosted, &key, "/v1/executions/web-signals").await;
    assert_eq!(api_view["status"], "completed");
    assert_eq!(
        api_view["result"]["approve"]["big"].as_u64(),
        Some(BIG.parse::<u64>().expect("a u64")),
        "the signal reached the workflow: {api_view}"
    );
    let result = text_of(after, "result");
    assert!(result.contains(BIG), "result: {result}");
    assert!(result.contains("1.2345678901234567"), "result: {result}");
    assert!(
        !result.contains(BIG_AS_JS_NUMBER),
        "no JS rounding: {result}"
    );
    let table = text_of(after, "table");
    assert!(table.contains("SignalReceived"), "{table}");
    assert!(
        table.contains(BIG) && !table.contains(BIG_AS_JS_NUMBER),
        "{table}"
    );
    assert!(
        table.contains("0.10000000000000001"),
        "the signal's payload verbatim: {table}"
    );
    assert!(
        text_of(after, "input").contains(BIG),
        "input verbatim: {after:#}"
    );
    let signal_rows: Vec<&Value> = after["rows"]
        .as_array()
        .expect("chart rows")
        .iter()
        .filter(|row| row["signalMarkers"].as_u64() == Some(1))
        .collect();
    assert_eq!(signal_rows.len(), 1, "one signal received: {after:#}");

    // The downloaded history is what `reprise replay --history` reads.
    let downloads = tempfile::tempdir().expect("temp dir");
    let downloads_path = downloads.path().to_str().expect("path").to_string();
    let saved = drive(&hosted, &key, &["download", "web-hello", &downloads_path]).await;
    let file = text_of(&saved, "path");
    let text = std::fs::read_to_string(&file).expect("the download was saved");
    for value in drawn.iter().chain([&wall_clock_ns]) {
        assert!(
            text.contains(&value.to_string()),
            "{value} exact in the file"
        );
    }
    assert!(
        text.contains("0.10000000000000001"),
        "input exact in the file"
    );
    let replay = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["replay", "--module"])
        .arg(guest("hello"))
        .arg("--history")
        .arg(&file)
        .env("REPRISE_LOG", "warn")
        .env("REPRISE_CACHE_DIR", cache_dir())
        .output()
        .expect("run reprise replay");
    let replay_output = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success()
            && replay_output.contains("ok — the build reproduces the whole history"),
        "replay of the download: {replay_output}{}",
        String::from_utf8_lossy(&replay.stderr)
    );

    // Screenshots, and no sideways scrolling of the page on a phone.
    // REPRISE_WEB_SCREENSHOTS_DIR keeps them for a person to look at.
    let shots = tempfile::tempdir().expect("temp dir");
    let shots_dir = std::env::var_os("REPRISE_WEB_SCREENSHOTS_DIR")
        .map_or_else(|| shots.path().to_path_buf(), std::path::PathBuf::from);
    std::fs::create_dir_all(&shots_dir).expect("screenshot dir");
    let shots_path = shots_dir.to_str().expect("path").to_string();
    let screens = drive(&hosted, &key, &["screens", "web-hello", &shots_path]).await;
    for name in screens["files"].as_array().expect("files") {
        let bytes = std::fs::read(shots_dir.join(name.as_str().expect("name")))
            .expect("the screenshot exists");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
    }
    for view in ["list", "execution"] {
        let phone = &screens["shots"]["phone"][view];
        assert_eq!(phone["innerWidth"], 390, "{screens:#}");
        assert!(
            phone["scrollWidth"].as_u64() <= phone["innerWidth"].as_u64(),
            "the {view} page scrolls sideways at 390 px: {screens:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_charts_attempts_lists_with_counts_and_pages_and_acts() {
    let payments = Provider::start(0).await.expect("payments");
    let inventory = Provider::start(0).await.expect("inventory");
    let activities = guest("hello-activities");
    let hosted = Hosted::start(&[
        "--allow-host",
        "127.0.0.1",
        "--activities",
        activities.to_str().expect("path"),
    ])
    .await;
    let key = hosted.tenant("acme", json!({})).await;
    let other = hosted.tenant("globex", json!({})).await;
    for tenant in [&key, &other] {
        hosted.deploy(tenant, "patterns", Some("patterns")).await;
    }
    hosted.deploy(&key, "trip", Some("trip")).await;
    hosted.deploy(&key, "order-activities", None).await;

    // A charge that fails once, then the saga compensates.
    payments.fail_kind_with_503(reprise_providers::CHARGE, 1);
    let (status, answer) = hosted
        .start_execution(
            &key,
            "trip",
            "web-trip",
            json!({
                "trip_id": "web-trip",
                "legs": ["flight"],
                "amount_cents": 5_000,
                "inventory_url": inventory.url(),
                "payments_url": payments.url(),
                "fail_provision": true,
                "initial_interval_ms": 20,
            }),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(hosted.finished(&key, "web-trip").await["status"], "failed");
    let page = drive(&hosted, &key, &["execution", "web-trip"]).await;
    let rows = page["rows"].as_array().expect("chart rows");
    let refund = rows
        .iter()
        .find(|row| row["compensates"] == "charge")
        .unwrap_or_else(|| panic!("the charge's compensation: {page:#}"));
    assert!(text_of(refund, "label").starts_with('↺'), "{refund:#}");
    assert!(text_of(refund, "title").contains("undoes step `charge`"));
    // The step it links to is the charge: the one call that failed once.
    let charge = rows
        .iter()
        .find(|row| row["seq"] == refund["undoes"])
        .unwrap_or_else(|| panic!("the compensation links to a step: {page:#}"));
    let attempts = charge["attempts"].as_array().expect("attempt bars");
    assert_eq!(attempts.len(), 2, "one bar per attempt: {charge:#}");
    assert_eq!(attempts[0]["attempt"], "1");
    assert!(
        text_of(&attempts[0], "classes").contains("failed"),
        "the failed attempt is marked: {charge:#}"
    );
    assert_eq!(attempts[1]["attempt"], "2");
    assert!(text_of(&attempts[1], "classes").contains("completed"));
    assert!(charge["backoffs"].as_u64() >= Some(1), "the backoff shows");
    assert!(
        attempts[1]["x"].as_f64() >= attempts[0]["x"].as_f64(),
        "the retry comes after the failure: {charge:#}"
    );
    let release = rows
        .iter()
        .find(|row| row["compensates"] == "reserve flight")
        .unwrap_or_else(|| panic!("the reservation's compensation: {page:#}"));
    let reservation = rows
        .iter()
        .find(|row| row["seq"] == release["undoes"])
        .unwrap_or_else(|| panic!("the release links to a step: {page:#}"));
    assert_ne!(reservation["seq"], charge["seq"], "{page:#}");
    assert_eq!(reservation["attempts"].as_array().map(Vec::len), Some(1));
    assert!(
        text_of(&page, "lastError").contains("Last error"),
        "the last error: {page:#}"
    );
    let table = text_of(&page, "table");
    assert!(table.contains("attempt 1 failed: Unavailable"), "{table}");
    assert!(table.contains("↺ compensates `charge`"), "{table}");

    // Cancel: a workflow waiting on a child that waits for a signal.
    start_raw(
        &hosted,
        &key,
        r#"{"workflow_type":"patterns","workflow_id":"act-cancel","input":{"mode":"child-waits"}}"#,
    )
    .await;
    hosted
        .wait_for_event(&key, "act-cancel", "ChildStarted")
        .await;
    let cancelled = drive(&hosted, &key, &["cancel", "act-cancel"]).await;
    assert_eq!(
        hosted.finished(&key, "act-cancel").await["status"],
        "cancelled"
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    assert!(
        cancelled["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|row| text_of(row, "classes").contains("child")),
        "the child shows as a bar: {cancelled:#}"
    );

    // Terminate: only once confirmed.
    start_raw(
        &hosted,
        &key,
        r#"{"workflow_type":"patterns","workflow_id":"act-terminate","input":{"mode":"signals"}}"#,
    )
    .await;
    hosted
        .wait_for_event(&key, "act-terminate", "SignalAwaited")
        .await;
    let terminated = drive(&hosted, &key, &["terminate", "act-terminate"]).await;
    assert_eq!(terminated["confirmationShown"], true, "{terminated:#}");
    assert_eq!(
        terminated["statusBeforeConfirming"], "running",
        "nothing happens before the confirmation: {terminated:#}"
    );
    assert_eq!(
        get(&hosted, &key, "/v1/executions/act-terminate").await["status"],
        "terminated"
    );

    // The list: three executions under one prefix (two finished, one
    // running), and another tenant's under the same prefix.
    for (id, input) in [
        ("list-a", r#"{"mode":"fanout","count":1}"#),
        ("list-b", r#"{"mode":"fanout","count":2}"#),
        ("list-c", r#"{"mode":"signals"}"#),
    ] {
        start_raw(
            &hosted,
            &key,
            &format!(r#"{{"workflow_type":"patterns","workflow_id":"{id}","input":{input}}}"#),
        )
        .await;
    }
    start_raw(
        &hosted,
        &other,
        r#"{"workflow_type":"patterns","workflow_id":"list-globex-secret","input":{"mode":"signals"}}"#,
    )
    .await;
    for id in ["list-a", "list-b"] {
        assert_eq!(hosted.finished(&key, id).await["status"], "completed");
    }
    let everything = get(&hosted, &key, "/v1/executions?limit=1000").await;
    let mut expected_counts: BTreeMap<String, u64> = BTreeMap::new();
    for execution in everything.as_array().expect("a list") {
        *expected_counts
            .entry(text_of(execution, "status"))
            .or_default() += 1;
    }
    for status in ["running", "completed", "failed", "cancelled", "terminated"] {
        assert!(
            expected_counts.get(status).copied().unwrap_or_default() >= 1,
            "the fixture has a {status} execution: {expected_counts:?}"
        );
    }
    let nightly = json!({
        "schedule_id": "web-nightly",
        "workflow_type": "patterns",
        "spec": { "cron": "30 2 * * *", "time_zone": "Europe/Berlin" },
        "paused": true,
    });
    let (status, created) =
        crate::server::json_call(hosted.address(), &key, "POST", "/v1/schedules", nightly).await;
    assert_eq!(status, 201, "{created}");
    let api_counts = get(&hosted, &key, "/v1/execution-counts").await;
    let listed = drive(&hosted, &key, &["list", "2", "list-", "-"]).await;
    assert_eq!(
        listed["unfiltered"]["schedules"],
        json!([[
            "web-nightly",
            "patterns",
            "cron 30 2 * * * (Europe/Berlin)",
            "skip",
            "paused",
            "0",
            "0",
            ""
        ]]),
        "the schedule list: {listed:#}"
    );
    for (status, count) in &expected_counts {
        assert_eq!(api_counts[status].as_u64(), Some(*count), "{api_counts}");
        assert_eq!(
            listed["unfiltered"]["counts"][status].as_u64(),
            Some(*count),
            "the page counts {status}: {listed:#}"
        );
    }
    let pages: Vec<Vec<String>> = listed["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|page| {
            page["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_str().expect("an id").to_string())
                .collect()
        })
        .collect();
    assert_eq!(pages.len(), 2, "2 + 1 at two a page: {pages:?}");
    assert_eq!(pages[0].len(), 2, "{pages:?}");
    let mut seen: Vec<&str> = pages.iter().flatten().map(String::as_str).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        ["list-a", "list-b", "list-c"],
        "each of the prefix's executions once, none of another tenant: {pages:?}"
    );
    assert_eq!(
        listed["back"]["ids"],
        json!(pages[0]),
        "previous goes back: {listed:#}"
    );
    assert_eq!(
        listed["pages"][0]["counts"]["completed"], 2,
        "counts follow the prefix: {listed:#}"
    );
    let running = drive(&hosted, &key, &["list", "2", "list-", "running"]).await;
    assert_eq!(running["pages"].as_array().map(Vec::len), Some(1));
    assert_eq!(running["pages"][0]["ids"], json!(["list-c"]), "{running:#}");
    assert_eq!(
        running["pages"][0]["statuses"],
        json!(["running"]),
        "{running:#}"
    );

    // The API under the page: pages by cursor, counts per tenant, 400s.
    let (status, next, first) =
        get_with_header(&hosted, &key, "/v1/executions?id_prefix=list-&limit=2").await;
    assert_eq!(status, 200);
    let next = next.expect("a next page");
    let (_, last, second) = get_with_header(
        &hosted,
        &key,
        &format!(
            "/v1/executions?id_prefix=list-&limit=2&before={}",
            encode(&next)
        ),
    )
    .await;
    assert_eq!(last, None, "the last page has no next");
    assert_eq!(first.as_array().map(Vec::len), Some(2));
    assert_eq!(second[0]["workflow_id"], "list-a", "{second}");
    let globex_counts = get(&hosted, &other, "/v1/execution-counts?id_prefix=list-").await;
    assert_eq!(
        globex_counts,
        json!({"running": 1, "completed": 0, "failed": 0, "cancelled": 0, "terminated": 0, "continued_as_new": 0})
    );
    for (path, complaint) in [
        ("/v1/executions?before=nonsense", "is not a list cursor"),
        ("/v1/executions?before=12.zz.x", "is not a list cursor"),
        ("/v1/executions?status=asleep", "unknown status"),
    ] {
        let (status, answer) = json_call(hosted.address(), &key, "GET", path, Value::Null).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(text_of(&answer, "error").contains(complaint), "{answer}");
    }
    let long_prefix = "x".repeat(257);
    let (status, answer) = json_call(
        hosted.address(),
        &key,
        "GET",
        &format!("/v1/execution-counts?id_prefix={long_prefix}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        text_of(&answer, "error").contains("the limit is 256"),
        "{answer}"
    );
}

/// `text` as a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
