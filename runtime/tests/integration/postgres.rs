//! `reprise serve --database postgres://…`: executions live in PostgreSQL
//! (the store suite's server: `REPRISE_TEST_DATABASE_URL`, or a throwaway
//! cluster it starts), and a second server on the same database is refused
//! until execution leases exist.

use std::process::Command;

use reprise_store::PostgresStore;
use serde_json::json;

use crate::hosting::Hosted;
use crate::server::free_port;
use crate::store_harness::{Backend, TestDatabase};
use crate::support::{cache_dir, guest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeps_its_executions_in_postgres_and_owns_the_database() {
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

    // A second server on the same database stops at once, saying why.
    let data = tempfile::tempdir().expect("temp dir");
    let second = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(data.path())
        .args(["--database", &url])
        .env("REPRISE_CACHE_DIR", cache_dir())
        .env("REPRISE_LOG", "warn")
        .output()
        .expect("run a second reprise serve");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("another `reprise serve` holds this database"),
        "{stderr}"
    );
    drop(hosted);
    database.remove().await;
}
