//! `reprise serve` over real HTTP: upload, bind a type, start, kill the
//! server with SIGKILL mid-run, restart, and the execution completes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::support::{cache_dir, guest};

pub async fn call(address: &str, key: &str, method: &str, path: &str, body: Bytes) -> (u16, Value) {
    let (status, _, body) = call_with_headers(address, key, method, path, body).await;
    (status, body)
}

/// [`call`], with the answer's headers.
pub async fn call_with_headers(
    address: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Bytes,
) -> (u16, http::HeaderMap, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if !key.is_empty() {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request.body(Full::new(body)).expect("request");
    let response = crate::support::send(address, request).await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

pub async fn json_call(
    address: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    call(address, key, method, path, Bytes::from(body.to_string())).await
}

/// `reprise tenant create NAME` on the server's data directory: its key.
pub fn create_tenant(data: &std::path::Path, name: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["tenant", "create", name])
        .arg("--data")
        .arg(data)
        .env("REPRISE_LOG", "warn")
        .output()
        .expect("run reprise tenant create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(
        key.starts_with("rpk_") && key.len() == 4 + 64,
        "a 256-bit key: {key}"
    );
    key
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

pub struct ServerProcess {
    pub child: Child,
    pub address: String,
}

impl ServerProcess {
    /// `reprise serve` with the hello activities for every tenant.
    pub async fn start(data: &std::path::Path, port: u16) -> ServerProcess {
        let activities = guest("hello-activities");
        ServerProcess::start_with(
            data,
            port,
            &["--activities".as_ref(), activities.as_ref()],
            &[],
        )
        .await
    }

    /// `reprise serve` on `data` with an activity dir, `args` and `envs`.
    pub async fn start_with(
        data: &std::path::Path,
        port: u16,
        args: &[&std::ffi::OsStr],
        envs: &[(String, String)],
    ) -> ServerProcess {
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", &address])
            .args(args)
            .arg("--activity-dir")
            .arg(data.join("activity"))
            .envs(envs.iter().map(|(name, value)| (name, value)))
            .env("REPRISE_CACHE_DIR", cache_dir())
            .env("REPRISE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn reprise serve");
        let started = Instant::now();
        loop {
            let request = http::Request::get("/healthz")
                .body(Full::new(Bytes::new()))
                .expect("request");
            if crate::support::send(&address, request).await.is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server never came up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServerProcess { child, address }
    }
}

impl Drop for ServerProcess {
    /// SIGKILL, also when a failed assertion unwinds the test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_its_executions_on_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(data.path().join("activity")).expect("activity dir");
    let key = create_tenant(data.path(), "acme");
    let other = create_tenant(data.path(), "globex");
    let port = free_port();
    let server = ServerProcess::start(data.path(), port).await;
    let address = server.address.clone();

    let bytes = std::fs::read(guest("hello")).expect("read");
    let (status, module) = call(&address, &key, "POST", "/v1/modules", Bytes::from(bytes)).await;
    assert_eq!(status, 201, "{module}");
    assert_eq!(module["kind"], "workflow");
    assert!(
        module["imports"]
            .as_array()
            .is_some_and(|imports| !imports.is_empty())
    );
    // REPRISE_CACHE_DIR moves the compiled-component cache out of --data:
    // the suite's servers share one, and compile each guest once.
    let digest = module["digest"].as_str().expect("a digest");
    let shared = std::fs::read_dir(cache_dir()).expect("the shared cache");
    assert!(
        shared
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().starts_with(digest)),
        "the artifact of {digest} is in the shared cache"
    );
    assert!(
        !data.path().join("cache").exists(),
        "nothing is cached under --data"
    );
    let (status, refused) = call(
        &address,
        &key,
        "POST",
        "/v1/modules",
        Bytes::from_static(b"not wasm"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("not WebAssembly"),
        "{refused}"
    );

    let (status, unknown) = json_call(
        &address,
        &key,
        "POST",
        "/v1/executions",
        json!({ "workflow_type": "hello", "input": {} }),
    )
    .await;
    assert_eq!(status, 404, "no type bound yet: {unknown}");
    assert!(
        unknown["error"]
            .as_str()
            .unwrap_or("")
            .contains("PUT /v1/workflow-types/hello")
    );
    let (status, _) = json_call(
        &address,
        &key,
        "PUT",
        "/v1/workflow-types/hello",
        json!({ "digest": module["digest"] }),
    )
    .await;
    assert_eq!(status, 200);

    let start = json!({
        "workflow_type": "hello",
        "workflow_id": "srv-1",
        "input": { "name": "Server", "sleep_ms": 600 },
    });
    let (status, started) =
        json_call(&address, &key, "POST", "/v1/executions", start.clone()).await;
    assert_eq!(status, 201, "{started}");

    // Kill the server while the workflow sleeps.
    let started_at = Instant::now();
    loop {
        let (_, history) = json_call(
            &address,
            &key,
            "GET",
            "/v1/executions/srv-1/history",
            Value::Null,
        )
        .await;
        let sleeping = history["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|event| event["type"] == "TimerStarted"));
        if sleeping {
            break;
        }
        assert!(
            started_at.elapsed() < Duration::from_secs(60),
            "never slept: {history}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server); // SIGKILL

    let server = ServerProcess::start(data.path(), port).await;
    let (status, done) = json_call(
        &address,
        &key,
        "GET",
        "/v1/executions/srv-1?wait_ms=30000",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["greeting"], "Hello, Server!");
    assert_eq!(done["result"]["ledger_entries"], json!([1, 2]));

    let (status, again) = json_call(&address, &key, "POST", "/v1/executions", start).await;
    assert_eq!(status, 200, "starting a known id returns the existing run");
    assert_eq!(again["run_id"], started["run_id"]);
    let (status, _) = json_call(&address, &key, "GET", "/v1/executions/nobody", Value::Null).await;
    assert_eq!(status, 404);
    let (status, finished) = json_call(
        &address,
        &key,
        "POST",
        "/v1/executions/srv-1/signals",
        json!({ "name": "late", "payload": 1 }),
    )
    .await;
    assert_eq!(status, 409, "{finished}");
    let (status, listed) = json_call(
        &address,
        &key,
        "GET",
        "/v1/executions?status=completed",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["workflow_id"], "srv-1");
    // Start-and-wait: one request answers with the result.
    let start_and_wait = json!({
        "workflow_type": "hello",
        "workflow_id": "srv-2",
        "input": { "name": "Waiter", "sleep_ms": 300 },
        "wait_ms": 30_000,
    });
    let (status, finished) =
        json_call(&address, &key, "POST", "/v1/executions", start_and_wait).await;
    assert_eq!(status, 201, "{finished}");
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["result"]["greeting"], "Hello, Waiter!");

    // Another tenant cannot see, signal, cancel or list acme's execution:
    // for globex it does not exist.
    for (method, path, body) in [
        ("GET", "/v1/executions/srv-1", Value::Null),
        ("GET", "/v1/executions/srv-1/history", Value::Null),
        (
            "POST",
            "/v1/executions/srv-1/signals",
            json!({ "name": "x" }),
        ),
        ("POST", "/v1/executions/srv-1/cancel", Value::Null),
        ("POST", "/v1/executions/srv-1/terminate", json!({})),
    ] {
        let (status, answer) = json_call(&address, &other, method, path, body).await;
        assert_eq!(status, 404, "{method} {path} as another tenant: {answer}");
    }
    let (_, listed) = json_call(&address, &other, "GET", "/v1/executions", Value::Null).await;
    assert_eq!(listed, json!([]));
    let (status, _) = json_call(
        &address,
        &other,
        "POST",
        "/v1/executions",
        json!({ "workflow_type": "hello" }),
    )
    .await;
    assert_eq!(status, 404, "types are per tenant too");
    // The CLI client, against the same server.
    let cli = |args: &[&str], api_key: &str| {
        Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args(args)
            .args([
                "--server",
                &format!("http://{address}"),
                "--api-key",
                api_key,
            ])
            .env("REPRISE_LOG", "warn")
            .output()
            .expect("run the reprise client")
    };
    let hello = guest("hello");
    let deployed = cli(
        &["deploy", hello.to_str().expect("path"), "--name", "greeter"],
        &key,
    );
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    // For people: what was deployed, and what the host does with each
    // import.
    let summary = String::from_utf8_lossy(&deployed.stdout);
    assert!(summary.contains("as type `greeter`"), "{summary}");
    let line_of = |label: &str| {
        summary
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line_of("imports journaled").contains("reprise:workflow/durable"),
        "{summary}"
    );
    assert!(
        line_of("imports captured").contains("wasi:cli/stdout"),
        "{summary}"
    );
    assert!(
        line_of("imports fixed").contains("wasi:cli/environment"),
        "{summary}"
    );
    // A result read by a person keeps every digit the workflow returned.
    let hostile = guest("hostile");
    let deployed = cli(&["deploy", hostile.to_str().expect("path")], &key);
    assert!(deployed.status.success());
    let exact = cli(
        &[
            "start",
            "hostile",
            "--input",
            r#"{"mode":"exact"}"#,
            "--id",
            "cli-exact",
            "--wait",
        ],
        &key,
    );
    let shown = String::from_utf8_lossy(&exact.stdout);
    assert!(shown.contains("cli-exact (hostile, run "), "{shown}");
    assert!(shown.contains("completed"), "{shown}");
    // (The guest's own serde_json shortened the float to the digits that
    // name the same double; those are what it returned.)
    assert!(
        shown.contains(r#""rand_random": 13979697887323312865"#)
            && shown.contains(r#""float": 0.2255334472989816"#),
        "{shown}"
    );
    let started = cli(
        &[
            "start",
            "greeter",
            "--input",
            r#"{"name":"Cli","sleep_ms":1}"#,
            "--id",
            "cli-1",
            "--wait",
            "--json",
        ],
        &key,
    );
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let finished: Value = serde_json::from_slice(&started.stdout).expect("JSON");
    assert_eq!(finished["status"], "completed");
    assert_eq!(finished["result"]["greeting"], "Hello, Cli!");
    let refused = cli(&["result", "cli-1"], &other);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "another tenant's id is not found"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no execution with workflow id `cli-1`")
    );
    let deleted = cli(&["delete", "cli-1"], &key);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(String::from_utf8_lossy(&deleted.stdout).contains("deleted execution cli-1"));
    let gone = cli(&["result", "cli-1"], &key);
    assert_eq!(
        gone.status.code(),
        Some(2),
        "a deleted execution is not found"
    );
    // Undeploying: the types first (the API bound `hello` to the same
    // bytes), since a bound module is kept.
    let digest = deployed_digest(&cli(
        &[
            "deploy",
            hello.to_str().expect("path"),
            "--name",
            "spare",
            "--json",
        ],
        &key,
    ));
    let kept = cli(&["undeploy", &digest, "--module"], &key);
    assert_eq!(kept.status.code(), Some(2), "a bound module is kept");
    assert!(
        String::from_utf8_lossy(&kept.stderr).contains("`greeter`")
            || String::from_utf8_lossy(&kept.stderr).contains("`spare`"),
        "the refusal names a type bound to it: {}",
        String::from_utf8_lossy(&kept.stderr)
    );
    for name in ["spare", "greeter", "hello"] {
        let unbound = cli(&["undeploy", name], &key);
        assert!(
            unbound.status.success(),
            "{}",
            String::from_utf8_lossy(&unbound.stderr)
        );
        assert!(
            String::from_utf8_lossy(&unbound.stdout)
                .contains(&format!("unbound workflow type `{name}`"))
        );
    }
    let gone = cli(&["undeploy", "greeter"], &key);
    assert_eq!(gone.status.code(), Some(2), "no such type any more");
    let deleted = cli(&["undeploy", &digest, "--module"], &key);
    assert!(
        deleted.status.success(),
        "no type is bound and nothing runs on it; what finished keeps its history: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );

    // Workers authenticate too, and see only their tenant's tasks.
    let poll = json!({ "activities": ["charge"], "wait_ms": 100 });
    let (status, _) = json_call(
        &address,
        "",
        "POST",
        "/v1/activity-tasks/poll",
        poll.clone(),
    )
    .await;
    assert_eq!(status, 401, "a worker without a key");
    let (status, _) = json_call(&address, &other, "POST", "/v1/activity-tasks/poll", poll).await;
    assert_eq!(status, 204, "no task for globex");

    // No key or a wrong key: 401 and no data.
    for bad in ["", "rpk_0000"] {
        let (status, answer) =
            json_call(&address, bad, "GET", "/v1/executions/srv-1", Value::Null).await;
        assert_eq!(status, 401);
        assert!(
            answer.get("workflow_id").is_none() && answer["error"].is_string(),
            "{answer}"
        );
    }
    drop(server); // SIGKILL
}

/// A burst of clients is queued by the kernel, not dropped: 600 connect
/// at once to a listener that accepts nothing yet, and every handshake
/// completes (fewer where the kernel caps backlogs lower). With the
/// standard library's backlog of 128 the rest would wait for SYN
/// retransmits (1 s, then 3 s, …), which stalled whole benchmark runs of
/// 500 concurrent start-and-wait requests.
#[tokio::test]
async fn a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped() {
    // Past std's 128 by far, within what the kernel allows (it caps every
    // backlog at net.core.somaxconn; 4,096 on current kernels).
    let cap = reprise::api::kernel_backlog_cap().unwrap_or(reprise::api::LISTEN_BACKLOG);
    let clients = 600.min(cap.min(reprise::api::LISTEN_BACKLOG) as usize);
    assert!(
        clients > 256,
        "net.core.somaxconn is {cap}: too low to tell a deep backlog from std's 128"
    );
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = reprise::api::bind(any_port).expect("bind");
    let address = listener.local_addr().expect("address");
    let connects: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(tokio::net::TcpStream::connect(address)))
        .collect();
    let mut connected = Vec::with_capacity(clients);
    for connect in connects {
        let stream = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .expect("a handshake waited for a SYN retransmit: the backlog overflowed")
            .expect("join")
            .expect("connect");
        connected.push(stream);
    }
    // Queued connections are served once the loop accepts them.
    let (accepted, _) = listener.accept().await.expect("accept");
    assert_eq!(accepted.local_addr().expect("local"), address);
    assert_eq!(connected.len(), clients);
}

/// The digest `reprise deploy --json` printed.
fn deployed_digest(deployed: &std::process::Output) -> String {
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let module: Value = serde_json::from_slice(&deployed.stdout).expect("JSON");
    module["digest"].as_str().expect("a digest").to_string()
}
