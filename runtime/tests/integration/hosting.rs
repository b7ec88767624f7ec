//! Multi-tenant hosting over real HTTP: tenants made with the admin key,
//! their own modules and activities, the order example for two tenants
//! through a SIGKILL, per-tenant limits, hostile modules, safe upgrades,
//! and bad input.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reprise_providers::PaymentProvider;
use serde_json::{Value, json};

use crate::server::{ServerProcess, call, free_port, json_call};
use crate::support::guest;

pub const ADMIN_KEY: &str = "admin-0123456789abcdef0123456789abcdef";

/// A server with an admin key and `extra` arguments, in its own data dir.
pub struct Hosted {
    pub server: ServerProcess,
    pub data: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Hosted {
    pub async fn start(extra: &[&str]) -> Hosted {
        Hosted::start_with_env(extra, &[]).await
    }

    /// A server whose tenants all get the hello activities.
    pub async fn with_hello_activities() -> Hosted {
        let activities = guest("hello-activities");
        Hosted::start(&["--activities", activities.to_str().expect("path")]).await
    }

    /// With environment variables for the server process.
    pub async fn start_with_env(extra: &[&str], envs: &[(&str, String)]) -> Hosted {
        let data = tempfile::tempdir().expect("temp dir");
        std::fs::write(data.path().join("admin.key"), ADMIN_KEY).expect("admin key file");
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        let server = Hosted::spawn(data.path(), port, &extra, &envs).await;
        Hosted {
            server,
            data,
            port,
            extra,
            envs,
        }
    }

    async fn spawn(
        data: &std::path::Path,
        port: u16,
        extra: &[String],
        envs: &[(String, String)],
    ) -> ServerProcess {
        std::fs::create_dir_all(data.join("activity")).expect("activity dir");
        let key_file = data.join("admin.key");
        let mut args: Vec<&OsStr> = vec!["--admin-key-file".as_ref(), key_file.as_os_str()];
        args.extend(extra.iter().map(|arg| OsStr::new(arg.as_str())));
        ServerProcess::start_with(data, port, &args, envs).await
    }

    /// SIGKILL, then a new process on the same data and port.
    pub async fn restart(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        self.server = Hosted::spawn(self.data.path(), self.port, &self.extra, &self.envs).await;
    }

    /// SIGTERM: the server stops its drives, hands its executions over
    /// and exits.
    pub async fn stop_gracefully(&mut self) {
        let pid = self.server.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the child process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let exited = tokio::task::block_in_place(|| self.server.child.wait()).expect("wait");
        assert!(
            exited.success(),
            "a SIGTERM ends the server cleanly: {exited}"
        );
    }

    /// A new process on the same data and port.
    pub async fn start_again(&mut self) {
        self.server = Hosted::spawn(self.data.path(), self.port, &self.extra, &self.envs).await;
    }

    pub fn address(&self) -> &str {
        &self.server.address
    }

    /// A tenant with `limits`, made over the admin API: its key.
    pub async fn tenant(&self, name: &str, limits: Value) -> String {
        let (status, created) = json_call(
            self.address(),
            ADMIN_KEY,
            "POST",
            "/v1/admin/tenants",
            json!({ "name": name, "limits": limits }),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        created["api_key"].as_str().expect("a key").to_string()
    }

    /// Uploads a guest; binds it as workflow type `bind_as` if given.
    pub async fn deploy(&self, key: &str, guest_name: &str, bind_as: Option<&str>) -> Value {
        let bytes = std::fs::read(guest(guest_name)).expect("read guest");
        let (status, module) = call(
            self.address(),
            key,
            "POST",
            "/v1/modules",
            Bytes::from(bytes),
        )
        .await;
        assert_eq!(status, 201, "{module}");
        if let Some(name) = bind_as {
            let (status, bound) = json_call(
                self.address(),
                key,
                "PUT",
                &format!("/v1/workflow-types/{name}"),
                json!({ "digest": module["digest"] }),
            )
            .await;
            assert_eq!(status, 200, "{bound}");
        }
        module
    }

    pub async fn start_execution(
        &self,
        key: &str,
        workflow_type: &str,
        id: &str,
        input: Value,
    ) -> (u16, Value) {
        json_call(
            self.address(),
            key,
            "POST",
            "/v1/executions",
            json!({ "workflow_type": workflow_type, "workflow_id": id, "input": input }),
        )
        .await
    }

    /// The execution once it has finished (long-polls up to 60 s).
    pub async fn finished(&self, key: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, execution) = json_call(
                self.address(),
                key,
                "GET",
                &format!("/v1/executions/{id}?wait_ms=20000"),
                Value::Null,
            )
            .await;
            assert_eq!(status, 200, "{execution}");
            if execution["status"] != "running" {
                return execution;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never finished: {execution}"
            );
        }
    }

    /// Waits (at most 30 s) until execution `id`'s history holds `kind`.
    pub async fn wait_for_event(&self, key: &str, id: &str, kind: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .event_kinds(key, id)
            .await
            .iter()
            .any(|seen| seen == kind)
        {
            assert!(Instant::now() < deadline, "{id} never recorded {kind}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn event_kinds(&self, key: &str, id: &str) -> Vec<String> {
        let (status, history) = json_call(
            self.address(),
            key,
            "GET",
            &format!("/v1/executions/{id}/history"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{history}");
        history["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn error_text(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_run_the_order_example_through_a_sigkill() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    // Slow answers, so the kill lands while charges are in flight.
    provider.delay_responses(300);
    let mut hosted = Hosted::start(&[]).await;
    let provider_host = provider.url().trim_start_matches("http://").to_string();
    let mut keys = HashMap::new();
    for tenant in ["acme", "globex"] {
        let key = hosted
            .tenant(tenant, json!({ "allowed_hosts": [provider_host] }))
            .await;
        hosted.deploy(&key, "order", Some("order")).await;
        let activities = hosted.deploy(&key, "order-activities", None).await;
        assert_eq!(activities["kind"], "activity");
        assert!(
            activities["activities"]
                .as_array()
                .is_some_and(|names| names.contains(&json!("charge-direct"))),
            "{activities}"
        );
        keys.insert(tenant, key);
    }
    let order = |tenant: &str, index: u32| {
        json!({
            "order_id": format!("{tenant}-{index}"),
            "amount_cents": 1000 + index,
            "provider_url": provider.url(),
            "charge_via": "wasm",
        })
    };
    for (tenant, key) in &keys {
        for index in 0..3 {
            let id = format!("{tenant}-order-{index}");
            let (status, started) = hosted
                .start_execution(key, "order", &id, order(tenant, index))
                .await;
            assert_eq!(status, 201, "{started}");
        }
    }
    let waited = Instant::now();
    while provider.requests() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no charge ever reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hosted.restart().await;

    // An uninterrupted run per tenant, after the restart, for comparison.
    for (tenant, key) in &keys {
        let (status, _) = hosted
            .start_execution(key, "order", &format!("{tenant}-order-3"), order(tenant, 3))
            .await;
        assert_eq!(status, 201);
    }
    let ledger_by_key = |key: &str| {
        let ledger = provider.ledger();
        let charges: Vec<_> = ledger
            .iter()
            .filter(|charge| charge.idempotency_key == key)
            .collect();
        assert_eq!(charges.len(), 1, "exactly one charge for {key}");
        charges[0].charge_id.clone()
    };
    for (tenant, key) in &keys {
        let reference = format!("{tenant}-order-3");
        hosted.finished(key, &reference).await;
        let uninterrupted = hosted.event_kinds(key, &reference).await;
        for index in 0..4 {
            let id = format!("{tenant}-order-{index}");
            let done = hosted.finished(key, &id).await;
            assert_eq!(done["status"], "completed", "{done}");
            let order_id = format!("{tenant}-{index}");
            assert_eq!(done["result"]["order_id"], json!(order_id));
            assert_eq!(done["result"]["provisioned"], json!(true));
            let charge_id = ledger_by_key(&format!("charge-{order_id}"));
            assert_eq!(done["result"]["charge_id"], json!(charge_id));
            assert_eq!(
                hosted.event_kinds(key, &id).await,
                uninterrupted,
                "{id} has the history of an uninterrupted run"
            );
        }
        // Each tenant's activities wrote into its own directory, once per order.
        let provisioned = std::fs::read_to_string(
            hosted
                .data
                .path()
                .join(format!("activity/tenants/{tenant}/provisioned.jsonl")),
        )
        .expect("the tenant's provisioned file");
        let mut orders: Vec<String> = provisioned
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).expect("JSON line")["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        orders.sort();
        let expected: Vec<String> = (0..4).map(|index| format!("{tenant}-{index}")).collect();
        assert_eq!(
            orders, expected,
            "{tenant}: one provisioning per order, none of the other tenant's"
        );
    }
    assert_eq!(
        provider.ledger().len(),
        8,
        "one charge per order, two tenants × four orders"
    );

    // For globex, acme's executions and modules do not exist.
    let (acme, globex) = (&keys["acme"], &keys["globex"]);
    let (status, _) = json_call(
        hosted.address(),
        globex,
        "GET",
        "/v1/executions/acme-order-0",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
    let hello = hosted.deploy(acme, "hello", Some("hello")).await;
    let digest = hello["digest"].as_str().expect("digest");
    let (status, listed) =
        json_call(hosted.address(), globex, "GET", "/v1/modules", Value::Null).await;
    assert_eq!(status, 200);
    assert!(
        !listed.to_string().contains(digest),
        "globex's module list shows nothing of acme's: {listed}"
    );
    let (status, refused) = json_call(
        hosted.address(),
        globex,
        "GET",
        &format!("/v1/modules/{digest}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 404, "{refused}");
    let (status, refused) = json_call(
        hosted.address(),
        globex,
        "PUT",
        "/v1/workflow-types/stolen",
        json!({ "digest": digest }),
    )
    .await;
    assert_eq!(status, 404, "binding another tenant's module: {refused}");
    let (status, listed) =
        json_call(hosted.address(), acme, "GET", "/v1/modules", Value::Null).await;
    assert_eq!(status, 200);
    assert!(listed.to_string().contains(digest), "{listed}");
    let (status, _) = call(
        hosted.address(),
        acme,
        "GET",
        &format!("/v1/modules/{digest}"),
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 200, "the owner downloads its module");

    // Admin routes need the admin key; tenant routes do not take it.
    for key in [acme.as_str(), "", "admin-wrong"] {
        let (status, answer) = json_call(
            hosted.address(),
            key,
            "GET",
            "/v1/admin/tenants",
            Value::Null,
        )
        .await;
        assert_eq!(status, 401, "{answer}");
        assert!(answer.get("name").is_none());
    }
    let (status, tenants) = json_call(
        hosted.address(),
        ADMIN_KEY,
        "GET",
        "/v1/admin/tenants",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(tenants.as_array().map(Vec::len), Some(2), "{tenants}");
    assert!(
        !tenants.to_string().contains("rpk_"),
        "no key is ever shown again"
    );
    let (status, _) = json_call(
        hosted.address(),
        ADMIN_KEY,
        "GET",
        "/v1/executions",
        Value::Null,
    )
    .await;
    assert_eq!(status, 401, "the admin key is not a tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_limit_names_itself_when_hit() {
    let provider = PaymentProvider::start(0).await.expect("provider");
    let hosted = Hosted::start(&["--allow-host", "127.0.0.1"]).await;
    let address = hosted.address().to_string();

    // module_bytes_max: the upload is refused before it is compiled.
    let key = hosted
        .tenant("small-modules", json!({ "module_bytes_max": 1000 }))
        .await;
    let bytes = std::fs::read(guest("hello")).expect("read");
    let (status, refused) = call(&address, &key, "POST", "/v1/modules", Bytes::from(bytes)).await;
    assert_eq!(status, 413, "{refused}");
    assert!(
        error_text(&refused).contains("module_bytes_max = 1000"),
        "{refused}"
    );

    // payload_bytes_max: inputs and signal payloads.
    let key = hosted
        .tenant("small-payloads", json!({ "payload_bytes_max": 100 }))
        .await;
    hosted.deploy(&key, "hello", Some("hello")).await;
    let big = json!({ "name": "x".repeat(200), "sleep_ms": 5000 });
    let (status, refused) = hosted.start_execution(&key, "hello", "too-big", big).await;
    assert_eq!(status, 413, "{refused}");
    assert!(
        error_text(&refused).contains("payload_bytes_max = 100"),
        "{refused}"
    );
    let (status, _) = hosted
        .start_execution(
            &key,
            "hello",
            "small",
            json!({ "name": "s", "sleep_ms": 5000 }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, refused) = json_call(
        &address,
        &key,
        "POST",
        "/v1/executions/small/signals",
        json!({ "name": "big", "payload": "y".repeat(200) }),
    )
    .await;
    assert_eq!(status, 413, "{refused}");
    assert!(
        error_text(&refused).contains("payload_bytes_max"),
        "{refused}"
    );

    // running_executions_max: the second concurrent start waits its turn.
    let one_key = hosted
        .tenant("one-at-a-time", json!({ "running_executions_max": 1 }))
        .await;
    hosted.deploy(&one_key, "hello", Some("hello")).await;
    let sleepy = json!({ "name": "a", "sleep_ms": 60000 });
    let (status, _) = hosted
        .start_execution(&one_key, "hello", "first", sleepy.clone())
        .await;
    assert_eq!(status, 201);
    let (status, refused) = hosted
        .start_execution(&one_key, "hello", "second", sleepy.clone())
        .await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        error_text(&refused).contains("running_executions_max = 1"),
        "{refused}"
    );
    let (status, _) = json_call(
        &address,
        &one_key,
        "POST",
        "/v1/executions/first/terminate",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, started) = hosted
        .start_execution(&one_key, "hello", "second", sleepy.clone())
        .await;
    assert_eq!(status, 201, "a slot is free again: {started}");

    // requests_per_second: a burst past the bucket gets 429 naming the limit.
    let key = hosted
        .tenant("chatty", json!({ "requests_per_second": 2 }))
        .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, answer) =
            json_call(&address, &key, "GET", "/v1/executions", Value::Null).await;
        if status == 429 {
            assert!(
                error_text(&answer).contains("requests_per_second = 2"),
                "{answer}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");

    // history_events_max: the execution fails cleanly, naming the limit.
    let key = hosted
        .tenant("short-histories", json!({ "history_events_max": 6 }))
        .await;
    hosted.deploy(&key, "hello", Some("hello")).await;
    hosted
        .start_execution(&key, "hello", "long", json!({ "name": "h", "sleep_ms": 1 }))
        .await;
    let failed = hosted.finished(&key, "long").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["result"]["error_type"], "HistoryLimitExceeded");
    assert!(
        failed["result"]["message"]
            .to_string()
            .contains("history_events_max = 6"),
        "{failed}"
    );

    // history_bytes_max: likewise, counting what the history holds
    // (here the input alone is past it, so the first recorded call fails).
    let key = hosted
        .tenant("small-histories", json!({ "history_bytes_max": 4000 }))
        .await;
    hosted.deploy(&key, "hello", Some("hello")).await;
    hosted
        .start_execution(&key, "hello", "heavy", json!({ "name": "h".repeat(5000) }))
        .await;
    let failed = hosted.finished(&key, "heavy").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["result"]["error_type"], "HistorySizeLimitExceeded");
    assert!(
        failed["result"]["message"]
            .to_string()
            .contains("history_bytes_max = 4000"),
        "{failed}"
    );

    // activation_fuel_max, memory_bytes_max, activation_wall_ms_max: the
    // hostile workflow, each time failing only its own execution.
    let cases = [
        (
            "fuel",
            json!({ "activation_fuel_max": 50_000_000 }),
            "loop",
            "FuelExhausted",
            "activation_fuel_max = 50000000",
        ),
        (
            "memory",
            json!({ "memory_bytes_max": 33_554_432 }),
            "memory",
            "MemoryLimitExceeded",
            "memory_bytes_max = 33554432",
        ),
        (
            "wall",
            json!({ "activation_wall_ms_max": 300 }),
            "loop",
            "WallClockLimitExceeded",
            "activation_wall_ms_max = 300",
        ),
    ];
    for (tenant, limits, mode, error_type, named) in cases {
        let key = hosted.tenant(tenant, limits).await;
        hosted.deploy(&key, "hostile", Some("hostile")).await;
        hosted
            .start_execution(&key, "hostile", mode, json!({ "mode": mode }))
            .await;
        let failed = hosted.finished(&key, mode).await;
        assert_eq!(failed["status"], "failed", "{tenant}: {failed}");
        assert_eq!(
            failed["result"]["error_type"], error_type,
            "{tenant}: {failed}"
        );
        assert!(
            failed["result"]["message"].to_string().contains(named),
            "{tenant}: {failed}"
        );
    }

    // allowed_hosts: the tenant's own list replaces the server's.
    let key = hosted
        .tenant(
            "no-outbound",
            json!({ "allowed_hosts": ["payments.example"] }),
        )
        .await;
    hosted.deploy(&key, "order", Some("order")).await;
    let input = json!({ "order_id": "n-1", "amount_cents": 5, "provider_url": provider.url(), "max_attempts": 1 });
    hosted.start_execution(&key, "order", "denied", input).await;
    let failed = hosted.finished(&key, "denied").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["result"].to_string().contains("allowed_hosts"),
        "{failed}"
    );
    assert_eq!(provider.requests(), 0, "nothing left the host");

    // An admin raises a limit; it applies from the tenant's next request.
    let (status, _) = json_call(
        &address,
        ADMIN_KEY,
        "PUT",
        "/v1/admin/tenants/one-at-a-time/limits",
        json!({ "running_executions_max": 2 }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, started) = hosted
        .start_execution(&one_key, "hello", "third", sleepy)
        .await;
    assert_eq!(status, 201, "two may run now: {started}");
    let (status, refused) = json_call(
        &address,
        ADMIN_KEY,
        "PUT",
        "/v1/admin/tenants/one-at-a-time/limits",
        json!({ "fuel": 1 }),
    )
    .await;
    assert_eq!(status, 400, "an unknown limit is refused: {refused}");
    assert!(error_text(&refused).contains("fuel"), "{refused}");
}

/// A workflow component (it exports `run` with the right type) whose core
/// module's start function is `unreachable`.
const TRAPS_AT_START: &str = r#"
(component
  (core module $m
    (memory (export "memory") 1)
    (func $trap unreachable)
    (start $trap)
    (func (export "run") (param i32 i32) (result i32) unreachable)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 8))
  (core instance $i (instantiate $m))
  (type $error-record (record (field "error-type" string) (field "message" string) (field "details" (option string))))
  (export $error "workflow-error" (type $error-record))
  (func (export "run") (param "input" string) (result (result string (error $error)))
    (canon lift (core func $i "run") (memory (core memory $i "memory")) (realloc (core func $i "realloc")))))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_modules_fail_alone_while_a_good_tenant_completes() {
    let hosted = Hosted::with_hello_activities().await;
    let address = hosted.address().to_string();
    let good = hosted.tenant("good", json!({})).await;
    hosted.deploy(&good, "hello", Some("hello")).await;
    let mallory = hosted
        .tenant(
            "mallory",
            json!({
                "activation_wall_ms_max": 300,
                "memory_bytes_max": 67_108_864,
                "history_events_max": 2_000,
                "payload_bytes_max": 65_536,
            }),
        )
        .await;
    hosted.deploy(&mallory, "hostile", Some("hostile")).await;

    // Bytes that are not a component never get stored.
    let hello = std::fs::read(guest("hello")).expect("read");
    let truncated = Bytes::copy_from_slice(&hello[..hello.len() / 2]);
    let bodies: [(&str, Bytes, u16, &str); 4] = [
        (
            "garbage",
            Bytes::from_static(b"\x7fELF not wasm"),
            400,
            "not WebAssembly",
        ),
        ("truncated", truncated, 400, "malformed"),
        (
            "core module",
            Bytes::from(wat::parse_str("(module)").expect("wat")),
            400,
            "not a component",
        ),
        ("empty", Bytes::new(), 400, "not WebAssembly"),
    ];
    for (what, body, expected, says) in bodies {
        let (status, refused) = call(&address, &mallory, "POST", "/v1/modules", body).await;
        assert_eq!(status, expected, "{what}: {refused}");
        assert!(error_text(&refused).contains(says), "{what}: {refused}");
    }
    let (status, modules) = json_call(&address, &mallory, "GET", "/v1/modules", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(
        modules.as_array().map(Vec::len),
        Some(1),
        "only the hostile module: {modules}"
    );

    // A compressed body is refused, not inflated.
    let gzip = {
        let request = http::Request::post("/v1/modules")
            .header("authorization", format!("Bearer {mallory}"))
            .header("content-encoding", "gzip")
            .body(http_body_util::Full::new(Bytes::from_static(&[
                0x1f, 0x8b, 8, 0,
            ])))
            .expect("request");
        let response = crate::support::send(&address, request).await.expect("send");
        response.status().as_u16()
    };
    assert_eq!(gzip, 415);

    // A component whose core module traps in its start function: every
    // instantiation traps. It fails its own execution, with the trap named.
    let traps_at_start = wat::parse_str(TRAPS_AT_START).expect("component text");
    let (status, module) = call(
        &address,
        &mallory,
        "POST",
        "/v1/modules",
        Bytes::from(traps_at_start),
    )
    .await;
    assert_eq!(status, 201, "it links: {module}");
    let (status, _) = json_call(
        &address,
        &mallory,
        "PUT",
        "/v1/workflow-types/trapper",
        json!({ "digest": module["digest"] }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = hosted
        .start_execution(&mallory, "trapper", "trapper", json!({}))
        .await;
    assert_eq!(status, 201);

    let modes = [
        ("loop", "WallClockLimitExceeded"),
        ("memory", "MemoryLimitExceeded"),
        ("recursion", "StackOverflow"),
        ("panic", "GuestPanic"),
        ("output", "InvalidWorkflowOutput"),
        ("fanout", "HistoryLimitExceeded"),
    ];
    for (mode, _) in modes {
        let (status, started) = hosted
            .start_execution(&mallory, "hostile", mode, json!({ "mode": mode }))
            .await;
        assert_eq!(status, 201, "{started}");
    }
    // Meanwhile the good tenant's workflow runs as usual.
    let (status, _) = hosted
        .start_execution(
            &good,
            "hello",
            "fine",
            json!({ "name": "Good", "sleep_ms": 10 }),
        )
        .await;
    assert_eq!(status, 201);
    let fine = hosted.finished(&good, "fine").await;
    assert_eq!(fine["status"], "completed", "{fine}");
    assert_eq!(fine["result"]["greeting"], "Hello, Good!");
    for (mode, error_type) in modes {
        let failed = hosted.finished(&mallory, mode).await;
        assert_eq!(failed["status"], "failed", "{mode}: {failed}");
        assert_eq!(
            failed["result"]["error_type"], error_type,
            "{mode}: {failed}"
        );
    }
    let (status, ready) = json_call(&address, "", "GET", "/readyz", Value::Null).await;
    assert_eq!((status, ready), (200, json!({ "ready": true })));
    let trapped = hosted.finished(&mallory, "trapper").await;
    assert_eq!(trapped["status"], "failed", "{trapped}");
    assert_eq!(trapped["result"]["error_type"], "GuestPanic", "{trapped}");
    let (status, health) = json_call(&address, "", "GET", "/healthz", Value::Null).await;
    assert_eq!(
        (status, health),
        (200, json!({ "ok": true })),
        "the server is still up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_pins_running_executions_and_replay_names_the_incompatible() {
    let mut hosted = Hosted::with_hello_activities().await;
    let address = format!("http://{}", hosted.address());
    let key = hosted.tenant("acme", json!({})).await;
    let v1 = hosted.deploy(&key, "hello", Some("hello")).await;
    for id in ["old-1", "old-2"] {
        let (status, _) = hosted
            .start_execution(&key, "hello", id, json!({ "name": id, "sleep_ms": 1500 }))
            .await;
        assert_eq!(status, 201);
    }
    for id in ["old-1", "old-2"] {
        hosted.wait_for_event(&key, id, "TimerStarted").await;
    }
    let v2 = hosted.deploy(&key, "hello-v2", Some("hello")).await;
    assert_ne!(v1["digest"], v2["digest"]);

    let replay = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["replay", "--module"])
        .arg(guest("hello-v2"))
        .args(["--history", "old-1", "--history", "old-2"])
        .args(["--server", &address, "--api-key", &key])
        .env("REPRISE_CACHE_DIR", crate::support::cache_dir())
        .env("REPRISE_LOG", "warn")
        .output()
        .expect("run reprise replay");
    let report = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(
        replay.status.code(),
        Some(3),
        "{report}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    for id in ["old-1", "old-2"] {
        let line = report
            .lines()
            .find(|line| line.starts_with(id))
            .expect("a line per history");
        assert!(
            line.contains("INCOMPATIBLE") && line.contains("nondeterminism"),
            "{line}"
        );
        assert!(
            line.contains("`greet`") && line.contains("`record`"),
            "the diff names both calls: {line}"
        );
    }

    let (status, new) = hosted
        .start_execution(&key, "hello", "new-1", json!({ "name": "new" }))
        .await;
    assert_eq!(status, 201);
    assert_eq!(new["module_digest"], v2["digest"], "new executions run v2");
    for id in ["old-1", "old-2"] {
        let done = hosted.finished(&key, id).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["module_digest"], v1["digest"], "{id} finished on v1");
        assert_eq!(done["result"]["greeting"], format!("Hello, {id}!"));
    }
    let done = hosted.finished(&key, "new-1").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done["result"].get("recorded").is_some(),
        "v2's output: {done}"
    );

    // A finished id starts again only as its reuse policy allows.
    let restart = |policy: &str| json!({ "workflow_type": "hello", "workflow_id": "old-1", "input": { "name": "again" }, "id_reuse_policy": policy });
    let (status, refused) = json_call(
        hosted.address(),
        &key,
        "POST",
        "/v1/executions",
        restart("reject"),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(error_text(&refused).contains("old-1"), "{refused}");
    let (status, same) = json_call(
        hosted.address(),
        &key,
        "POST",
        "/v1/executions",
        restart("return_existing"),
    )
    .await;
    assert_eq!(
        (status, &same["module_digest"]),
        (200, &v1["digest"]),
        "{same}"
    );
    let (status, refused) = json_call(
        hosted.address(),
        &key,
        "POST",
        "/v1/executions",
        restart("allow_if_failed"),
    )
    .await;
    assert_eq!(status, 409, "it completed: {refused}");
    let (status, again) = json_call(
        hosted.address(),
        &key,
        "POST",
        "/v1/executions",
        restart("allow"),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["run_id"], same["run_id"], "a new run of the same id");

    // History pages: a range of positions, with where the next one starts.
    let all = hosted.event_kinds(&key, "old-2").await;
    let (status, first) = json_call(
        hosted.address(),
        &key,
        "GET",
        "/v1/executions/old-2/history?limit=3",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first["events"].as_array().map(Vec::len), Some(3));
    assert_eq!(first["next_after"], 3);
    let last_page = format!(
        "/v1/executions/old-2/history?after={}&limit=3",
        all.len() - 2
    );
    let (_, last) = json_call(hosted.address(), &key, "GET", &last_page, Value::Null).await;
    assert_eq!(last["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(last["next_after"], Value::Null, "the last page: {last}");

    // The CLI client reads the same server: a summary, a table, a timeline.
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args(args)
            .args(["--server", &address, "--api-key", &key])
            .env("REPRISE_LOG", "warn")
            .output()
            .expect("run the reprise client");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, status) = cli(&["status", "old-2"]);
    assert_eq!(code, Some(0), "{status}");
    assert!(status.contains("status        completed"), "{status}");
    assert!(
        status.contains("attempts      3 (0 failed)"),
        "greet and two records: {status}"
    );
    let (code, table) = cli(&["list", "--status", "completed"]);
    assert_eq!(code, Some(0));
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("WORKFLOW ID") && header.contains("STATUS"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("old-2 ") && line.contains("completed")),
        "{table}"
    );
    // Paging: one row a page, following the printed cursor, gives the
    // same rows as one page of all.
    let rows = |table: &str| -> Vec<String> {
        table
            .lines()
            .skip(1)
            .filter(|line| !line.starts_with("more: "))
            .map(str::to_string)
            .collect()
    };
    let (code, everything) = cli(&["list", "--id-prefix", "old-"]);
    assert_eq!(code, Some(0));
    let all_rows = rows(&everything);
    assert!(all_rows.len() >= 2, "{everything}");
    assert!(
        all_rows.iter().all(|row| row.starts_with("old-")),
        "{everything}"
    );
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec!["list", "--id-prefix", "old-", "--limit", "1"];
        if let Some(cursor) = &before {
            args.extend(["--before", cursor.as_str()]);
        }
        let (code, page) = cli(&args);
        assert_eq!(code, Some(0), "{page}");
        assert_eq!(rows(&page).len(), 1, "{page}");
        paged.extend(rows(&page));
        before = page
            .lines()
            .find_map(|line| line.strip_prefix("more: the same command with --before "))
            .map(str::to_string);
        if before.is_none() {
            break;
        }
        assert!(
            paged.len() <= all_rows.len(),
            "paging does not end: {paged:?}"
        );
    }
    assert_eq!(paged, all_rows);
    let (code, timeline) = cli(&["history", "old-2"]);
    assert_eq!(code, Some(0));
    assert!(
        timeline.contains("ActivityCompleted") && timeline.contains("TimerFired"),
        "{timeline}"
    );
    let (code, json_history) = cli(&["history", "old-2", "--json"]);
    assert_eq!(code, Some(0));
    let exported: Value = serde_json::from_str(&json_history).expect("history --json is JSON");
    assert_eq!(exported["execution"]["workflow_id"], "old-2");
    let (code, _) = cli(&["status", "nobody"]);
    assert_eq!(code, Some(2), "an unknown id is the caller's mistake");
    let (code, _) = cli(&["signal", "old-2", "late", "--payload", "1"]);
    assert_eq!(code, Some(2), "a finished execution takes no signal");

    // SIGTERM: the server stops by itself, cleanly.
    let pid = hosted.server.child.id() as libc::pid_t;
    // SAFETY: kill(2) on the child this test spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = hosted.server.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

/// A small deterministic generator, so a failing case can be repeated.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, bound: usize) -> usize {
        self.next() as usize % bound
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_and_never_a_crash() {
    let hosted = Hosted::start(&[]).await;
    let address = hosted.address().to_string();
    let key = hosted
        .tenant("acme", json!({ "requests_per_second": 100000 }))
        .await;
    hosted.deploy(&key, "hello", Some("hello")).await;

    let send =
        |method: &'static str, path: String, content_type: Option<&'static str>, body: Bytes| {
            let address = address.clone();
            let key = key.clone();
            async move {
                let mut request = http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("authorization", format!("Bearer {key}"));
                if let Some(content_type) = content_type {
                    request = request.header("content-type", content_type);
                }
                let request = request
                    .body(http_body_util::Full::new(body))
                    .expect("request");
                let response = crate::support::send(&address, request).await.expect("send");
                let status = response.status().as_u16();
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .expect("body")
                    .to_bytes();
                (
                    status,
                    serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                )
            }
        };
    let json_type = Some("application/json");
    let cases = [
        (
            "POST",
            "/v1/executions",
            json_type,
            Bytes::from_static(b"{not json"),
            400,
        ),
        (
            "POST",
            "/v1/executions",
            Some("text/plain"),
            Bytes::from_static(b"{}"),
            415,
        ),
        (
            "POST",
            "/v1/executions",
            json_type,
            Bytes::from_static(b"{\"workflow_type\": 5}"),
            422,
        ),
        (
            "POST",
            "/v1/executions",
            json_type,
            Bytes::from(vec![b' '; 3 * 1024 * 1024]),
            413,
        ),
        ("GET", "/v1/nowhere", None, Bytes::new(), 404),
        ("DELETE", "/v1/executions", None, Bytes::new(), 405),
        (
            "GET",
            "/v1/executions?status=sleeping",
            None,
            Bytes::new(),
            400,
        ),
        ("GET", "/v1/executions?limit=-1", None, Bytes::new(), 400),
        (
            "PUT",
            "/v1/workflow-types/x",
            json_type,
            Bytes::from_static(b"{\"digest\": \"nope\"}"),
            404,
        ),
    ];
    for (method, path, content_type, body, expected) in cases {
        let (status, answer) = send(method, path.to_string(), content_type, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{method} {path}: a JSON error body, got {answer}"
        );
    }
    // A JSON body sent without its content type: the error says which
    // header to add.
    let (status, answer) = send(
        "POST",
        "/v1/executions".to_string(),
        None,
        Bytes::from_static(b"{}"),
    )
    .await;
    assert_eq!(status, 415);
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("Content-Type: application/json"),
        "{message}"
    );

    // A seeded fuzz over methods, paths and bodies: every answer is a
    // success or a 4xx with a JSON error; never a 5xx, never a dropped
    // connection.
    let seed = std::env::var("REPRISE_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed_u64);
    println!("API fuzz seed {seed} (REPRISE_FUZZ_SEED to repeat)");
    let mut random = Lcg(seed);
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let paths = [
        "/v1/executions",
        "/v1/executions/x",
        "/v1/executions/x/history",
        "/v1/executions/%ff/signals",
        "/v1/executions/x/cancel",
        "/v1/executions/x/terminate",
        "/v1/modules",
        "/v1/modules/abc",
        "/v1/workflow-types",
        "/v1/workflow-types/%00",
        "/v1/admin/tenants",
        "/v1/activity-tasks/poll",
        "/v1/activity-tasks/zz/complete",
        "/healthz",
        "/v1/executions?wait_ms=abc",
        "/v1/executions/x?wait_ms=1",
        "/v1/executions/x/history?after=zz",
    ];
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"[]",
        b"{}",
        b"{\"workflow_type\":\"hello\",\"input\":{\"name\":1}}",
        b"{\"name\":\"s\",\"payload\":{\"deep\":[[[[[[]]]]]]}}",
        b"\xff\xfe\x00",
        b"{\"workflow_type\":\"hello\",\"workflow_id\":\"\"}",
    ];
    for _ in 0..300 {
        let method = *random.pick(&methods);
        let path = random.pick(&paths).to_string();
        let body = Bytes::from_static(bodies[random.below(bodies.len())]);
        let content_type = *random.pick(&[json_type, None, Some("application/octet-stream")]);
        let (status, answer) = send(method, path.clone(), content_type, body.clone()).await;
        assert!(status < 500, "{method} {path} {body:?}: {status} {answer}");
        if status >= 400 {
            assert!(
                answer["error"].is_string(),
                "{method} {path}: {status} without a JSON error: {answer}"
            );
        }
    }
    let (status, _) = json_call(&address, "", "GET", "/healthz", Value::Null).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_drives_at_a_wait_and_a_restart_resumes_them() {
    let mut hosted = Hosted::with_hello_activities().await;
    let key = hosted.tenant("acme", json!({})).await;
    hosted.deploy(&key, "hello", Some("hello")).await;
    hosted
        .start_execution(
            &key,
            "hello",
            "draining",
            json!({ "name": "Drain", "sleep_ms": 3000 }),
        )
        .await;
    hosted
        .wait_for_event(&key, "draining", "TimerStarted")
        .await;
    let before = hosted.event_kinds(&key, "draining").await;

    let pid = hosted.server.child.id() as libc::pid_t;
    // SAFETY: kill(2) on the child this test spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(exit) = hosted.server.child.try_wait().expect("wait") {
                return (exit, hosted);
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("join");
    let (exit, mut hosted) = exit;
    assert!(exit.success(), "a clean exit: {exit:?}");

    // It stopped at the wait, before the timer was due: the journal ends
    // with the timer started, nothing after it, nothing half-written.
    let stopped = {
        let store = reprise::store::open(&hosted.data.path().join("reprise.db"))
            .await
            .expect("open the server's store");
        let record = store
            .execution("acme", "draining")
            .await
            .expect("read")
            .expect("the execution");
        assert_eq!(record.status, reprise::store::ExecutionStatus::Running);
        store.history(record.id).await.expect("history")
    };
    let stopped_kinds: Vec<&str> = stopped
        .iter()
        .map(|recorded| recorded.event.kind())
        .collect();
    assert_eq!(
        stopped_kinds.last(),
        Some(&"TimerStarted"),
        "{stopped_kinds:?}"
    );
    hosted.restart().await;
    let after_restart = hosted.event_kinds(&key, "draining").await;
    assert_eq!(&after_restart[..before.len()], before.as_slice());
    let done = hosted.finished(&key, "draining").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["greeting"], "Hello, Drain!");
    let kinds = hosted.event_kinds(&key, "draining").await;
    assert_eq!(
        kinds.iter().filter(|kind| *kind == "TimerFired").count(),
        2,
        "each timer fired once: {kinds:?}"
    );
}

/// A tenant keeps at most `modules_max` modules; a module a type is bound
/// to or an execution runs on is kept; deleting one makes room, and the
/// activities a deleted activity module served are no longer served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_keeps_modules_up_to_its_limit_and_deletes_them() {
    let hosted = Hosted::start(&[]).await;
    let address = hosted.address().to_string();
    let key = hosted
        .tenant("few-modules", json!({ "modules_max": 2 }))
        .await;
    let workflow = hosted.deploy(&key, "hello", Some("hello")).await;
    let workflow_path = format!(
        "/v1/modules/{}",
        workflow["digest"].as_str().expect("digest")
    );
    let activities = hosted.deploy(&key, "hello-activities", None).await;
    let activities_path = format!(
        "/v1/modules/{}",
        activities["digest"].as_str().expect("digest")
    );

    let counter = Bytes::from(std::fs::read(guest("counter")).expect("read"));
    let (status, refused) = call(&address, &key, "POST", "/v1/modules", counter.clone()).await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        error_text(&refused).contains("modules_max = 2")
            && error_text(&refused).contains("DELETE /v1/modules"),
        "the refusal names the limit and the way out: {refused}"
    );
    let hello = Bytes::from(std::fs::read(guest("hello")).expect("read"));
    let (status, again) = call(&address, &key, "POST", "/v1/modules", hello).await;
    assert_eq!(
        status, 201,
        "a module the tenant keeps is no new module: {again}"
    );

    // The execution runs on the uploaded activities, then sleeps a minute.
    let (status, started) = hosted
        .start_execution(
            &key,
            "hello",
            "sleepy",
            json!({ "name": "s", "sleep_ms": 60_000 }),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    hosted.wait_for_event(&key, "sleepy", "TimerStarted").await;
    let (status, kept) = call(&address, &key, "DELETE", &workflow_path, Bytes::new()).await;
    assert_eq!(status, 409, "{kept}");
    assert!(
        error_text(&kept).contains("workflow type `hello`"),
        "{kept}"
    );

    let (status, deleted) = call(&address, &key, "DELETE", &activities_path, Bytes::new()).await;
    assert_eq!(status, 200, "{deleted}");
    let unserved = deleted["activities_unserved"].as_array().expect("a list");
    assert!(
        unserved.contains(&json!("greet")) && unserved.contains(&json!("record")),
        "{deleted}"
    );
    let (status, answer) = call(&address, &key, "POST", "/v1/modules", counter).await;
    assert_eq!(status, 201, "a deletion makes room: {answer}");
    let (status, bound) = json_call(
        &address,
        &key,
        "PUT",
        "/v1/workflow-types/hello",
        json!({ "digest": answer["digest"] }),
    )
    .await;
    assert_eq!(status, 200, "{bound}");
    let (status, kept) = call(&address, &key, "DELETE", &workflow_path, Bytes::new()).await;
    assert_eq!(status, 409, "{kept}");
    assert!(error_text(&kept).contains("1 running execution"), "{kept}");

    let (status, _) = json_call(
        &address,
        &key,
        "POST",
        "/v1/executions/sleepy/terminate",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, deleted) = call(&address, &key, "DELETE", &workflow_path, Bytes::new()).await;
    assert_eq!(status, 200, "{deleted}");
    let (status, gone) = call(&address, &key, "DELETE", &workflow_path, Bytes::new()).await;
    assert_eq!(status, 404, "{gone}");
    assert!(error_text(&gone).contains("GET /v1/modules"), "{gone}");
    let (status, listed) = call(&address, &key, "GET", "/v1/modules", Bytes::new()).await;
    assert_eq!(status, 200);
    let digests: Vec<&Value> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|module| &module["digest"])
        .collect();
    assert_eq!(digests, [&answer["digest"]]);
    let (status, history) = call(
        &address,
        &key,
        "GET",
        "/v1/executions/sleepy/history",
        Bytes::new(),
    )
    .await;
    assert_eq!(
        status, 200,
        "the terminated execution's history outlives its module's upload: {history}"
    );
}

/// A tenant binds at most `workflow_types_max` types (each is in every
/// node's memory); unbinding one makes room, stops starts by its name and
/// leaves the executions it started on their module.
#[tokio::test]
async fn a_tenant_binds_workflow_types_up_to_its_limit_and_unbinds_them() {
    let hosted = Hosted::start(&[]).await;
    let address = hosted.address().to_string();
    let key = hosted
        .tenant("few-types", json!({ "workflow_types_max": 2 }))
        .await;
    let module = hosted.deploy(&key, "hello", Some("hello")).await;
    hosted.deploy(&key, "hello-activities", None).await;
    let digest = json!({ "digest": module["digest"] });
    let bind = async |name: &str| {
        json_call(
            &address,
            &key,
            "PUT",
            &format!("/v1/workflow-types/{name}"),
            digest.clone(),
        )
        .await
    };

    let (status, bound) = bind("greeter").await;
    assert_eq!(status, 200, "{bound}");
    let (status, refused) = bind("third").await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        error_text(&refused).contains("workflow_types_max = 2")
            && error_text(&refused).contains("DELETE /v1/workflow-types"),
        "the refusal names the limit and the way out: {refused}"
    );
    let (status, again) = bind("hello").await;
    assert_eq!(
        status, 200,
        "a type the tenant binds is no new type: {again}"
    );
    let (status, refused) = bind(&"x".repeat(300)).await;
    assert_eq!(status, 400, "{refused}");
    assert!(error_text(&refused).contains("1 to 256 bytes"), "{refused}");

    let (status, started) = hosted
        .start_execution(
            &key,
            "greeter",
            "by-greeter",
            json!({ "name": "g", "sleep_ms": 500 }),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let (status, unbound) = call(
        &address,
        &key,
        "DELETE",
        "/v1/workflow-types/greeter",
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 200, "{unbound}");
    let (status, refused) = hosted
        .start_execution(&key, "greeter", "too-late", json!({ "name": "g" }))
        .await;
    assert_eq!(status, 404, "{refused}");
    assert!(error_text(&refused).contains("`greeter`"), "{refused}");
    let finished = hosted.finished(&key, "by-greeter").await;
    assert_eq!(
        finished["status"], "completed",
        "an unbound type's execution keeps its module: {finished}"
    );

    let (status, gone) = call(
        &address,
        &key,
        "DELETE",
        "/v1/workflow-types/greeter",
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 404, "{gone}");
    let (status, bound) = bind("third").await;
    assert_eq!(status, 200, "the unbinding made room: {bound}");
    let (status, listed) = call(&address, &key, "GET", "/v1/workflow-types", Bytes::new()).await;
    assert_eq!(status, 200);
    let names: Vec<&Value> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|bound| &bound["name"])
        .collect();
    assert_eq!(names, [&json!("hello"), &json!("third")]);
}

/// Finished executions go once their tenant's `finished_retention_seconds`
/// has passed — status and history, so the id may start afresh — or once
/// more than `finished_executions_max` newer ones have finished, while a
/// running execution and another tenant's finished one stay.
#[tokio::test]
async fn finished_executions_are_deleted_after_their_tenants_retention() {
    let hosted = Hosted::start(&["--retention-sweep-ms", "100"]).await;
    let address = hosted.address().to_string();
    let brief = hosted
        .tenant("brief", json!({ "finished_retention_seconds": 1 }))
        .await;
    let keeper = hosted.tenant("keeper", json!({})).await;
    let few = hosted
        .tenant("few", json!({ "finished_executions_max": 2 }))
        .await;
    for key in [&brief, &keeper, &few] {
        hosted.deploy(key, "hello-activities", None).await;
        hosted.deploy(key, "hello", Some("hello")).await;
        let (status, started) = hosted
            .start_execution(key, "hello", "done", json!({ "name": "r" }))
            .await;
        assert_eq!(status, 201, "{started}");
        assert_eq!(hosted.finished(key, "done").await["status"], "completed");
    }
    for id in ["second", "third"] {
        let (status, started) = hosted
            .start_execution(&few, "hello", id, json!({ "name": id }))
            .await;
        assert_eq!(status, 201, "{started}");
        hosted.finished(&few, id).await;
    }
    let (status, started) = hosted
        .start_execution(
            &brief,
            "hello",
            "sleeping",
            json!({ "name": "s", "sleep_ms": 60_000 }),
        )
        .await;
    assert_eq!(status, 201, "{started}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, execution) =
            call(&address, &brief, "GET", "/v1/executions/done", Bytes::new()).await;
        if status == 404 {
            assert!(
                error_text(&execution).contains("done"),
                "the answer names the id: {execution}"
            );
            break;
        }
        assert_eq!(status, 200, "{execution}");
        assert!(
            Instant::now() < deadline,
            "the finished execution outlived its retention: {execution}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, history) = call(
        &address,
        &brief,
        "GET",
        "/v1/executions/done/history",
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 404, "{history}");
    let (status, sleeping) = call(
        &address,
        &brief,
        "GET",
        "/v1/executions/sleeping",
        Bytes::new(),
    )
    .await;
    assert_eq!(
        (status, &sleeping["status"]),
        (200, &json!("running")),
        "{sleeping}"
    );
    // `few` keeps its two newest finished executions, whatever their age.
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(&address, &few, "GET", "/v1/executions/done", Bytes::new())
        .await
        .0
        != 404
    {
        assert!(
            Instant::now() < deadline,
            "the oldest of three outlived finished_executions_max = 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in ["second", "third"] {
        assert_eq!(hosted.finished(&few, id).await["status"], "completed");
    }
    let kept = hosted.finished(&keeper, "done").await;
    assert_eq!(
        kept["status"], "completed",
        "a week's retention keeps it: {kept}"
    );

    let request = http::Request::get("/metrics")
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("request");
    let response = crate::support::send(&address, request)
        .await
        .expect("metrics");
    let metrics = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("reprise_executions_swept_total{tenant=\"brief\"} 1\n")
            && !metrics.contains("reprise_executions_swept_total{tenant=\"keeper\"}"),
        "{metrics}"
    );

    let (status, again) = hosted
        .start_execution(&brief, "hello", "done", json!({ "name": "again" }))
        .await;
    assert_eq!(status, 201, "a swept id starts afresh: {again}");
    let finished = hosted.finished(&brief, "done").await;
    assert!(
        finished["result"]["greeting"]
            .as_str()
            .is_some_and(|greeting| greeting.contains("again")),
        "the new run ran on its own input: {finished}"
    );
}

/// `DELETE /v1/executions/{id}` deletes a finished execution at once,
/// every run continue-as-new made of it, and nothing of another tenant's
/// or of a running execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_execution_is_deleted_on_request_with_every_run() {
    let hosted = Hosted::start(&[]).await;
    let address = hosted.address().to_string();
    let acme = hosted.tenant("acme", json!({})).await;
    let globex = hosted.tenant("globex", json!({})).await;
    for key in [&acme, &globex] {
        hosted.deploy(key, "counter", Some("counter")).await;
        let (status, started) = hosted
            .start_execution(key, "counter", "chain", json!({ "count": 0, "until": 3 }))
            .await;
        assert_eq!(status, 201, "{started}");
        assert_eq!(hosted.finished(key, "chain").await["result"]["count"], 3);
    }
    let (status, started) = hosted
        .start_execution(
            &acme,
            "counter",
            "paused",
            json!({ "count": 0, "until": 1, "pause": true }),
        )
        .await;
    assert_eq!(status, 201, "{started}");

    let delete = |key: &str, id: &str| {
        let (address, key, path) = (
            address.clone(),
            key.to_string(),
            format!("/v1/executions/{id}"),
        );
        async move { call(&address, &key, "DELETE", &path, Bytes::new()).await }
    };
    let (status, refused) = delete(&acme, "paused").await;
    assert_eq!(status, 409, "{refused}");
    assert!(error_text(&refused).contains("running"), "{refused}");
    let (status, refused) = delete(&acme, "nowhere").await;
    assert_eq!(status, 404, "{refused}");

    let (status, deleted) = delete(&acme, "chain").await;
    assert_eq!(
        (status, &deleted["deleted"], &deleted["runs_deleted"]),
        (200, &json!(true), &json!(4)),
        "the first run and the three it continued into: {deleted}"
    );
    for path in ["/v1/executions/chain", "/v1/executions/chain/history"] {
        let (status, gone) = call(&address, &acme, "GET", path, Bytes::new()).await;
        assert_eq!(status, 404, "{path}: {gone}");
    }
    let (status, again) = delete(&acme, "chain").await;
    assert_eq!(status, 404, "a second deletion finds nothing: {again}");
    assert_eq!(
        hosted.finished(&globex, "chain").await["result"]["count"],
        3,
        "another tenant's execution of the same id stays"
    );
    let (status, paused) = call(
        &address,
        &acme,
        "GET",
        "/v1/executions/paused",
        Bytes::new(),
    )
    .await;
    assert_eq!(
        (status, &paused["status"]),
        (200, &json!("running")),
        "{paused}"
    );

    let (status, restarted) = hosted
        .start_execution(&acme, "counter", "chain", json!({ "count": 5, "until": 5 }))
        .await;
    assert_eq!(status, 201, "a deleted id starts afresh: {restarted}");
    assert_eq!(hosted.finished(&acme, "chain").await["result"]["count"], 5);
}
