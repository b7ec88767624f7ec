//! `reprise serve --database postgres://…`: executions live in PostgreSQL
//! (the store suite's server: `REPRISE_TEST_DATABASE_URL`, or a throwaway
//! cluster it starts), and several servers share one database as nodes:
//! a dead or stalled node's executions finish on the others, a node that
//! lost its lease appends nothing more, and any node answers for any
//! execution.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use reprise_providers::{REFUND, RELEASE, RESERVATION};
use reprise_store::PostgresStore;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::hosting::Hosted;
use crate::saga::Providers;
use crate::store_harness::{Backend, TestDatabase};
use crate::support::guest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeps_its_executions_in_postgres() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url();
    let hello_activities = guest("hello-activities");
    let hosted = Hosted::start(&[
        "--database",
        &url,
        "--activities",
        hello_activities.to_str().expect("path"),
    ])
    .await;
    let key = hosted.tenant("acme", json!({})).await;
    hosted.deploy(&key, "hello", Some("hello")).await;
    hosted
        .start_execution(
            &key,
            "hello",
            "pg-1",
            json!({ "name": "Pg", "sleep_ms": 1 }),
        )
        .await;
    let done = hosted.finished(&key, "pg-1").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["greeting"], "Hello, Pg!");

    // The history is in PostgreSQL, whole.
    let store = PostgresStore::connect(&url).await.expect("open PostgreSQL");
    let record = reprise::store::Store::execution(&store, "acme", "pg-1")
        .await
        .expect("read")
        .expect("the execution is in PostgreSQL");
    let history = reprise::store::Store::history(&store, record.id)
        .await
        .expect("history");
    assert_eq!(
        history.last().map(|recorded| recorded.event.kind()),
        Some("WorkflowCompleted")
    );

    drop(hosted);
    database.remove().await;
}

/// The lease the nodes of these tests hold: short, so a stalled node's
/// executions move within seconds.
const TEST_LEASE_MS: u64 = 2_000;

/// `count` servers on one PostgreSQL database, each a node.
async fn nodes(url: &str, count: usize) -> Vec<Hosted> {
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        nodes.push(
            Hosted::start(&["--database", url, "--lease-ms", &TEST_LEASE_MS.to_string()]).await,
        );
    }
    nodes
}

async fn connect(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the test database")
}

/// The node id of the server process `pid` (ids name the process).
async fn node_of(url: &str, pid: u32) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids: Vec<String> = sqlx::query_scalar("SELECT node_id FROM nodes")
            .fetch_all(&mut connect(url).await)
            .await
            .expect("list nodes");
        if let Some(id) = ids.into_iter().find(|id| id.contains(&format!("-{pid}-"))) {
            return id;
        }
        assert!(Instant::now() < deadline, "process {pid} never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The running executions `node` owns.
async fn owned_by(url: &str, node: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT id FROM executions WHERE owner_node = $1 AND status = 'running' ORDER BY id",
    )
    .bind(node)
    .fetch_all(&mut connect(url).await)
    .await
    .expect("owned executions")
}

/// A tenant every node knows (tenants live in the database), allowed to
/// reach `providers`, with the order example and the trip saga deployed.
async fn tenant_with_examples(node: &Hosted, providers: &Providers) -> String {
    let hosts: Vec<String> = [&providers.inventory, &providers.payments]
        .iter()
        .map(|provider| provider.url().trim_start_matches("http://").to_string())
        .collect();
    let key = node
        .tenant(
            "acme",
            json!({ "allowed_hosts": hosts, "requests_per_second": 10_000 }),
        )
        .await;
    node.deploy(&key, "order", Some("order")).await;
    node.deploy(&key, "trip", Some("trip")).await;
    node.deploy(&key, "order-activities", None).await;
    key
}

fn order_input(providers: &Providers, index: usize) -> Value {
    json!({
        "order_id": format!("o{index}"),
        "amount_cents": 1000 + index,
        "provider_url": providers.payments.url(),
        "charge_via": "wasm",
    })
}

fn trip_input(providers: &Providers, index: usize) -> Value {
    let text = providers.trip(&format!("t{index}"), &["flight", "hotel"], json!({}));
    serde_json::from_str(&text).expect("trip input")
}

/// Starts `orders` orders and `trips` trips (ids `order-N`, `trip-N`),
/// round-robin over `nodes`.
async fn start_examples(
    nodes: &[Hosted],
    key: &str,
    providers: &Providers,
    orders: usize,
    trips: usize,
) {
    for index in 0..orders.max(trips) {
        let node = &nodes[index % nodes.len()];
        let mut starts = Vec::new();
        if index < orders {
            starts.push(("order", order_input(providers, index)));
        }
        if index < trips {
            starts.push(("trip", trip_input(providers, index)));
        }
        for (workflow, input) in starts {
            let (status, body) = node
                .start_execution(key, workflow, &format!("{workflow}-{index}"), input)
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }
}

/// Waits (at most a minute) until the payment provider has seen `count`
/// requests: activities are in flight.
async fn until_charges_reach_provider(providers: &Providers, count: u64) {
    let waited = Instant::now();
    while providers.payments.requests() < count {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no charges reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every order finished with one charge; every trip failed at provisioning
/// and undid each of its steps once.
async fn assert_examples_finished(
    node: &Hosted,
    key: &str,
    providers: &Providers,
    orders: usize,
    trips: usize,
) {
    for index in 0..orders {
        let done = node.finished(key, &format!("order-{index}")).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["result"]["provisioned"], json!(true), "{done}");
    }
    for index in 0..trips {
        let done = node.finished(key, &format!("trip-{index}")).await;
        assert_eq!(done["status"], "failed", "{done}");
        let message = done["result"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("compensated: charge, reserve hotel, reserve flight"),
            "{done}"
        );
    }
    let mut charges_by_key: HashMap<String, usize> = HashMap::new();
    for charge in providers.payments.ledger() {
        *charges_by_key.entry(charge.idempotency_key).or_default() += 1;
    }
    for index in 0..orders {
        assert_eq!(
            charges_by_key.get(&format!("charge-o{index}")),
            Some(&1),
            "one charge for order {index}"
        );
    }
    let once = |kind: &str| -> BTreeSet<String> {
        let effects = providers.effects(kind);
        let unique: BTreeSet<String> = effects.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            effects.len(),
            "a {kind} repeated: {effects:?}"
        );
        unique
    };
    assert_eq!(once(RESERVATION).len(), 2 * trips);
    assert_eq!(
        once(RELEASE).len(),
        2 * trips,
        "each reservation released once"
    );
    assert_eq!(
        once(REFUND).len(),
        trips,
        "each trip's charge refunded once"
    );
}

/// Three nodes share the work; one is SIGKILLed while 300 orders and trips
/// run. The other two claim its executions and finish them all: nothing
/// lost, one charge per order, each compensation once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_finish_everything_when_one_is_killed() {
    const ORDERS: usize = 150;
    const TRIPS: usize = 150;
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url();
    let providers = Providers::start().await;
    // Slow answers, so the kill lands while many activities are in flight.
    providers.payments.delay_responses(300);
    providers.inventory.delay_responses(100);
    let mut nodes = nodes(&url, 3).await;
    let key = tenant_with_examples(&nodes[0], &providers).await;
    start_examples(&nodes, &key, &providers, ORDERS, TRIPS).await;
    let victim_pid = nodes[1].server.child.id();
    let victim = node_of(&url, victim_pid).await;
    until_charges_reach_provider(&providers, 10).await;
    let orphaned = owned_by(&url, &victim).await;
    assert!(!orphaned.is_empty(), "the victim owned running executions");
    let killed_at_ms = reprise::clock::now_ms() as i64;
    nodes[1].server.child.kill().expect("SIGKILL");
    nodes[1].server.child.wait().expect("reap");

    // The first append to one of its executions after the kill, by another node.
    let resumed_after_ms = loop {
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(recorded_at_ms) FROM events WHERE execution_id = ANY($1) AND recorded_at_ms > $2",
        )
        .bind(&orphaned)
        .bind(killed_at_ms)
        .fetch_one(&mut connect(&url).await)
        .await
        .expect("first resumed append");
        if let Some(first) = first {
            break first - killed_at_ms;
        }
        assert!(
            reprise::clock::now_ms() as i64 - killed_at_ms < 30_000,
            "no execution of the killed node resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "kill -> first resumed append: {resumed_after_ms} ms ({} executions orphaned, lease {TEST_LEASE_MS} ms)",
        orphaned.len()
    );
    assert!(
        resumed_after_ms < 5_000,
        "took {resumed_after_ms} ms to resume a dead node's execution"
    );
    assert_examples_finished(&nodes[2], &key, &providers, ORDERS, TRIPS).await;
    assert!(
        owned_by(&url, &victim).await.is_empty(),
        "nothing is left with the dead node"
    );
    drop(nodes);
    database.remove().await;
}

/// A node stopped (SIGSTOP) past its lease loses its executions to the
/// others, which finish them; resumed (SIGCONT), it appends nothing more,
/// notices, and joins again under a new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_is_fenced_when_it_wakes() {
    const ORDERS: usize = 40;
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url();
    let providers = Providers::start().await;
    providers.payments.delay_responses(300);
    let nodes = nodes(&url, 3).await;
    let key = tenant_with_examples(&nodes[0], &providers).await;
    let stalled_pid = nodes[1].server.child.id();
    let stalled = node_of(&url, stalled_pid).await;
    start_examples(&nodes[1..2], &key, &providers, ORDERS, 0).await;
    until_charges_reach_provider(&providers, 5).await;
    let pid = stalled_pid as libc::pid_t;
    // SAFETY: kill(2) on a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    // The others take over once the lease passes, and finish everything.
    assert_examples_finished(&nodes[0], &key, &providers, ORDERS, 0).await;
    assert!(owned_by(&url, &stalled).await.is_empty());
    let histories_before = histories(&url).await;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    // It notices at its next renewal and joins again under a new id.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rejoined = node_of(&url, stalled_pid).await;
        if rejoined != stalled {
            break;
        }
        assert!(Instant::now() < deadline, "the stalled node never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Whatever it still had in flight was refused: the histories are as
    // the other nodes finished them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(histories(&url).await, histories_before);
    assert_examples_finished(&nodes[2], &key, &providers, ORDERS, 0).await;
    drop(nodes);
    database.remove().await;
}

/// Every execution's events, as (execution, position, kind).
async fn histories(url: &str) -> Vec<(i64, i64, String)> {
    sqlx::query_as(
        "SELECT execution_id, position, kind FROM events ORDER BY execution_id, position",
    )
    .fetch_all(&mut connect(url).await)
    .await
    .expect("events")
}

/// A signal and an upgrade sent through one node reach an execution
/// another node owns, and a long-poll on a third returns its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_answers_for_any_execution() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url();
    let nodes = nodes(&url, 3).await;
    let key = nodes[0].tenant("acme", json!({})).await;
    // Bound on node A; started on node B, which learns the type from the database.
    nodes[0].deploy(&key, "counter", Some("counter")).await;
    let (status, body) = nodes[1]
        .start_execution(
            &key,
            "counter",
            "c1",
            json!({ "count": 0, "until": 1, "pause": true }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let owner = node_of(&url, nodes[1].server.child.id()).await;
    assert_eq!(owned_by(&url, &owner).await.len(), 1, "node B owns it");
    nodes[1].wait_for_event(&key, "c1", "SignalAwaited").await;

    // An upgrade found safe through node A is applied by B, its owner,
    // at the execution's next activation.
    let v2 = nodes[0].deploy(&key, "counter-v2", None).await;
    let (status, upgraded) = crate::server::json_call(
        nodes[0].address(),
        &key,
        "PUT",
        "/v1/workflow-types/counter",
        json!({ "digest": v2["digest"], "upgrade_running": true }),
    )
    .await;
    assert_eq!(status, 200, "{upgraded}");
    assert_eq!(upgraded["upgraded"], 1, "{upgraded}");
    // B picks the upgrade up at its next tick.
    tokio::time::sleep(Duration::from_millis(TEST_LEASE_MS)).await;

    let waiter = {
        let address = nodes[2].address().to_string();
        let key = key.clone();
        tokio::spawn(async move {
            crate::server::json_call(
                &address,
                &key,
                "GET",
                "/v1/executions/c1?wait_ms=30000",
                Value::Null,
            )
            .await
        })
    };
    let (status, sent) = crate::server::json_call(
        nodes[0].address(),
        &key,
        "POST",
        "/v1/executions/c1/signals",
        json!({ "name": "next", "payload": "from A" }),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let (status, done) = waiter.await.expect("long-poll");
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["received"], json!(["from A"]), "{done}");
    let upgrades: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE kind = 'ModuleUpgraded'")
            .fetch_one(&mut connect(&url).await)
            .await
            .expect("count upgrades");
    assert_eq!(upgrades, 1, "the first run moved to v2 once, on its owner");

    // A limit an admin changes through node A applies on node C too, once
    // C's tenant cache (a second) has expired.
    let (status, changed) = crate::server::json_call(
        nodes[0].address(),
        crate::hosting::ADMIN_KEY,
        "PUT",
        "/v1/admin/tenants/acme/limits",
        json!({ "requests_per_second": 1 }),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let changed_at = std::time::Instant::now();
    loop {
        let (status, _) = crate::server::json_call(
            nodes[2].address(),
            &key,
            "GET",
            "/v1/executions/c1",
            Value::Null,
        )
        .await;
        if status == 429 {
            break;
        }
        assert!(
            changed_at.elapsed() < reprise::api::auth::TENANT_CACHE_TTL + Duration::from_secs(3),
            "node C did not apply the new rate limit within its tenant cache's lifetime"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(nodes);
    database.remove().await;
}

/// All three nodes restarted one after another (SIGTERM, a new process)
/// while orders and trips run: each hands its executions over as it
/// stops, and nothing is lost or done twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing() {
    const ORDERS: usize = 60;
    const TRIPS: usize = 60;
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url();
    let providers = Providers::start().await;
    providers.payments.delay_responses(200);
    providers.inventory.delay_responses(100);
    let mut nodes = nodes(&url, 3).await;
    let key = tenant_with_examples(&nodes[0], &providers).await;
    start_examples(&nodes, &key, &providers, ORDERS, TRIPS).await;
    for node in nodes.iter_mut() {
        let before = node_of(&url, node.server.child.id()).await;
        node.stop_gracefully().await;
        let nodes_left: Vec<String> = sqlx::query_scalar("SELECT node_id FROM nodes")
            .fetch_all(&mut connect(&url).await)
            .await
            .expect("nodes");
        assert!(
            !nodes_left.contains(&before),
            "a stopped node gave its lease up as it left: {nodes_left:?}"
        );
        node.start_again().await;
    }
    assert_examples_finished(&nodes[1], &key, &providers, ORDERS, TRIPS).await;
    drop(nodes);
    database.remove().await;
}

/// The status `/readyz` answers on `node`.
async fn readiness(node: &Hosted) -> u16 {
    crate::server::json_call(node.address(), "", "GET", "/readyz", Value::Null)
        .await
        .0
}

/// PostgreSQL itself restarted while two nodes run orders: readiness goes
/// red while it is down and green again after, the nodes retry, and every
/// order finishes with one charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_a_database_restart() {
    const ORDERS: usize = 40;
    let cluster = crate::store_harness::PrivateCluster::start();
    let url = cluster.url();
    let providers = Providers::start().await;
    providers.payments.delay_responses(300);
    let nodes = nodes(&url, 2).await;
    let key = tenant_with_examples(&nodes[0], &providers).await;
    start_examples(&nodes, &key, &providers, ORDERS, 0).await;
    until_charges_reach_provider(&providers, 5).await;
    tokio::task::block_in_place(|| cluster.stop());
    for node in &nodes {
        assert_eq!(readiness(node).await, 503, "not ready without the database");
    }
    tokio::time::sleep(Duration::from_millis(TEST_LEASE_MS)).await;
    tokio::task::block_in_place(|| cluster.start_again());
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        while readiness(node).await != 200 {
            assert!(Instant::now() < deadline, "never ready again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_examples_finished(&nodes[1], &key, &providers, ORDERS, 0).await;
    drop(nodes);
}

/// An external worker asks a node that does not hold the task: the poll
/// finds it in another node's queue, and its reports reach that node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_polls_and_reports_through_any_node() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url();
    let providers = Providers::start().await;
    let nodes = nodes(&url, 2).await;
    let key = tenant_with_examples(&nodes[0], &providers).await;
    let mut input = order_input(&providers, 1);
    input["charge_via"] = json!("worker");
    let (status, body) = nodes[1]
        .start_execution(&key, "order", "by-worker", input)
        .await;
    assert_eq!(status, 201, "{body}");

    let worker = |method: &'static str, path: String, body: Value| {
        let address = nodes[0].address().to_string();
        let key = key.clone();
        async move { crate::server::json_call(&address, &key, method, &path, body).await }
    };
    let (status, task) = worker(
        "POST",
        "/v1/activity-tasks/poll".into(),
        json!({ "activities": ["charge"], "wait_ms": 20_000 }),
    )
    .await;
    assert_eq!(status, 200, "node A hands out node B's task: {task}");
    assert_eq!(task["workflow_id"], "by-worker");
    let token = task["task_token"].as_str().expect("a token").to_string();
    let (status, answer) = worker(
        "POST",
        format!("/v1/activity-tasks/{token}/heartbeat"),
        json!({ "details": { "step": 1 } }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let complete = format!("/v1/activity-tasks/{token}/complete");
    let output = json!({ "output": { "charge_id": "ch_elsewhere" } });
    let (status, answer) = worker("POST", complete.clone(), output.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = worker("POST", complete, output).await;
    assert_eq!(status, 409, "node B says it is no longer open: {answer}");
    let (status, answer) = worker(
        "POST",
        "/v1/activity-tasks/0123abcd/complete".into(),
        json!({ "output": 1 }),
    )
    .await;
    assert_eq!(status, 404, "no node knows the token: {answer}");

    let done = nodes[0].finished(&key, "by-worker").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["charge_id"], "ch_elsewhere");
    drop(nodes);
    database.remove().await;
}

/// (workflow id, owner node) of each start of schedule `tick`, in order.
async fn schedule_starts(url: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT workflow_id, COALESCE(owner_node, '') FROM executions
         WHERE workflow_id LIKE 'tick@%' ORDER BY workflow_id",
    )
    .fetch_all(&mut connect(url).await)
    .await
    .expect("schedule starts")
}

/// One node carries out the schedules for all; when it leaves, another
/// takes over, and no nominal time starts twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_schedules_for_all() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url();
    let mut nodes = nodes(&url, 3).await;
    let key = nodes[0].tenant("acme", json!({})).await;
    nodes[0].deploy(&key, "counter", Some("counter")).await;
    let (status, created) = crate::server::json_call(
        nodes[2].address(),
        &key,
        "POST",
        "/v1/schedules",
        json!({
            "schedule_id": "tick",
            "workflow_type": "counter",
            "input": { "count": 0, "until": 0 },
            "spec": { "every_ms": 1000 },
            "overlap": "allow_all",
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let until = |count: usize| {
        let url = url.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let starts = schedule_starts(&url).await;
                if starts.len() >= count {
                    return starts;
                }
                assert!(Instant::now() < deadline, "only {} starts", starts.len());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let starts = until(3).await;
    let leader = starts[0].1.clone();
    assert!(
        starts.iter().all(|(_, owner)| *owner == leader),
        "one node starts them all: {starts:?}"
    );
    let index = (0..3)
        .find(|index| leader.contains(&format!("-{}-", nodes[*index].server.child.id())))
        .expect("the leader is one of the nodes");
    nodes[index].stop_gracefully().await;
    let before = starts.len();
    let starts = until(before + 3).await;
    let later: Vec<&String> = starts[before..].iter().map(|(_, owner)| owner).collect();
    assert!(
        later.iter().any(|owner| **owner != leader),
        "another node took over: {starts:?}"
    );
    assert!(
        starts.windows(2).all(|pair| pair[0].0 != pair[1].0),
        "no nominal time started twice: {starts:?}"
    );
    drop(nodes);
    database.remove().await;
}
