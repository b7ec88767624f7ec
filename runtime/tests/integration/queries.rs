//! Queries and updates (`examples/account` and its Python and TypeScript
//! twins, `examples/hostile`): a query reads state without touching the
//! history; an update is validated without touching it, delivered once,
//! answered durably, and idempotent by id — across SIGKILLs too.

use std::time::Duration;

use reprise::journal::Event;
use reprise::telemetry::metrics::SampledGauges;
use reprise::{QueryAsk, ReplayVerdict};
use serde_json::{Value, json};

use crate::server::{ServerProcess, call, create_tenant, free_port, json_call};
use crate::support::{Harness, guest};

/// A server with the account workflow of `module` bound as type `account`.
struct Bank {
    server: ServerProcess,
    key: String,
    data: tempfile::TempDir,
}

impl Bank {
    async fn open(module: &str, envs: &[(String, String)]) -> Bank {
        let data = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(data.path().join("activity")).expect("activity dir");
        let key = create_tenant(data.path(), "acme");
        let server = ServerProcess::start_with(data.path(), free_port(), &[], envs).await;
        let bank = Bank { server, key, data };
        let bytes = std::fs::read(guest(module)).expect("read the module");
        let (status, uploaded) = bank.call("POST", "/v1/modules", bytes.into()).await;
        assert_eq!(status, 201, "{uploaded}");
        let bind = json!({ "digest": uploaded["digest"] });
        let (status, bound) = bank.json("PUT", "/v1/workflow-types/account", bind).await;
        assert_eq!(status, 200, "{bound}");
        bank
    }

    /// The same data directory, served again (after a crash).
    async fn reopen(self, envs: &[(String, String)]) -> Bank {
        let Bank { server, key, data } = self;
        drop(server);
        let server = ServerProcess::start_with(data.path(), free_port(), &[], envs).await;
        Bank { server, key, data }
    }

    async fn call(&self, method: &str, path: &str, body: bytes::Bytes) -> (u16, Value) {
        call(&self.server.address, &self.key, method, path, body).await
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        json_call(&self.server.address, &self.key, method, path, body).await
    }

    async fn open_account(&self, id: &str, balance: i64) {
        let start = json!({
            "workflow_type": "account",
            "workflow_id": id,
            "input": { "owner": "ada", "balance": balance },
        });
        let (status, started) = self.json("POST", "/v1/executions", start).await;
        assert_eq!(status, 201, "{started}");
    }

    async fn query(&self, id: &str, name: &str, args: Value) -> (u16, Value) {
        let path = format!("/v1/executions/{id}/queries/{name}");
        self.json("POST", &path, json!({ "args": args })).await
    }

    async fn update(&self, id: &str, name: &str, body: Value) -> (u16, Value) {
        let path = format!("/v1/executions/{id}/updates/{name}");
        self.json("POST", &path, body).await
    }

    /// Sends an update to a server that dies on the way: no answer comes.
    async fn update_into_a_crash(&self, id: &str, name: &str, body: Value) {
        let request = http::Request::post(format!("/v1/executions/{id}/updates/{name}"))
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .expect("request");
        let answer = crate::support::send(&self.server.address, request).await;
        assert!(answer.is_err(), "the server answered: {answer:?}");
    }

    async fn events(&self, id: &str) -> Vec<Value> {
        let (status, page) = self
            .call(
                "GET",
                &format!("/v1/executions/{id}/history"),
                Default::default(),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// The history once the account has journaled its wait for updates.
    async fn events_once_waiting(&self, id: &str) -> Vec<Value> {
        for _ in 0..600 {
            let events = self.events(id).await;
            if events.iter().any(|event| event["type"] == "UpdateAwaited") {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the account never waited for an update");
    }

    /// The balance a query reads, once the account has reached its first
    /// wait (a query of a history that has not got there yet has no
    /// handler to answer it).
    async fn balance(&self, id: &str) -> Value {
        for _ in 0..600 {
            let (status, answer) = self.query(id, "balance", Value::Null).await;
            if status == 200 {
                return answer["result"].clone();
            }
            assert_eq!(answer["error_type"], "QueryNotAnswered", "{answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the account never answered its balance query");
    }
}

fn count_kind(events: &[Value], kind: &str, update_id: &str) -> usize {
    events
        .iter()
        .filter(|event| event["type"] == kind && event["data"]["update_id"] == update_id)
        .count()
}

/// The whole account scenario through the API, for one language's build.
async fn account_scenario(module: &str) {
    let bank = Bank::open(module, &[]).await;
    bank.open_account("acct-1", 10).await;
    let balance = bank.balance("acct-1").await;
    assert_eq!(
        balance,
        json!({ "owner": "ada", "balance": 10, "operations": 0 })
    );

    // Validators reject without touching the history. (A query can be
    // answered from the history before the live instance has journaled
    // its first wait; count from there.)
    let before = bank.events_once_waiting("acct-1").await.len();
    let (status, rejected) = bank
        .update("acct-1", "deposit", json!({ "args": { "amount": -5 } }))
        .await;
    assert_eq!(status, 422, "{rejected}");
    assert_eq!(
        (&rejected["status"], &rejected["error_type"]),
        (&json!("rejected"), &json!("InvalidAmount")),
        "{rejected}"
    );
    let (status, rejected) = bank
        .update("acct-1", "withdraw", json!({ "args": { "amount": 100 } }))
        .await;
    assert_eq!(status, 422, "{rejected}");
    assert_eq!(rejected["error_type"], "InsufficientFunds", "{rejected}");
    let (status, unknown) = bank.query("acct-1", "no-such-query", Value::Null).await;
    assert_eq!(status, 422, "{unknown}");
    assert_eq!(unknown["error_type"], "UnknownQuery", "{unknown}");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap_or("")
            .contains("balance"),
        "names the queries it has: {unknown}"
    );
    assert_eq!(
        bank.events("acct-1").await.len(),
        before,
        "queries and rejected updates journal nothing"
    );

    // An accepted update is answered once, however often it is sent.
    let deposit = json!({ "args": { "amount": 5 }, "update_id": "d-1" });
    let (status, answered) = bank.update("acct-1", "deposit", deposit.clone()).await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["status"], "completed", "{answered}");
    assert_eq!(answered["result"], json!({ "balance": 15 }));
    let (status, again) = bank.update("acct-1", "deposit", deposit).await;
    assert_eq!((status, &again), (200, &answered), "the same answer again");
    let events = bank.events("acct-1").await;
    assert_eq!(count_kind(&events, "UpdateReceived", "d-1"), 1);
    assert_eq!(count_kind(&events, "UpdateCompleted", "d-1"), 1);
    assert_eq!(bank.balance("acct-1").await["balance"], 15);

    // Args the validator cannot read are rejected too, and never delivered.
    let (status, rejected) = bank
        .update(
            "acct-1",
            "deposit",
            json!({ "args": { "wrong": true }, "update_id": "bad-args" }),
        )
        .await;
    assert_eq!(
        (status, &rejected["status"]),
        (422, &json!("rejected")),
        "{rejected}"
    );
    assert_eq!(
        count_kind(&bank.events("acct-1").await, "UpdateReceived", "bad-args"),
        0
    );

    let (status, closed) = bank
        .update("acct-1", "close", json!({ "update_id": "close-1" }))
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["result"], json!({ "balance": 15 }));
    let (status, finished) = bank
        .call(
            "GET",
            "/v1/executions/acct-1?wait_ms=30000",
            Default::default(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(
        finished["result"],
        json!({ "owner": "ada", "balance": 15, "operations": 1 })
    );

    // A finished execution still answers queries, and refuses updates.
    assert_eq!(bank.balance("acct-1").await["operations"], 1);
    let (status, late) = bank
        .update("acct-1", "deposit", json!({ "args": { "amount": 1 } }))
        .await;
    assert_eq!(status, 409, "{late}");
    let (status, missing) = bank.query("nobody", "balance", Value::Null).await;
    assert_eq!(status, 404, "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_account_answers_queries_and_updates() {
    account_scenario("account").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_account_answers_queries_and_updates() {
    account_scenario("account-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_account_answers_queries_and_updates() {
    account_scenario("account-js").await;
}

#[tokio::test]
async fn queries_replay_the_durable_history_and_leave_it_as_it_was() {
    let harness = Harness::default().await;
    let record = harness
        .start("account", "acct-q", r#"{"owner":"bo","balance":3}"#)
        .await;
    let drive = tokio::spawn({
        let runtime = harness.runtime.clone();
        let record = record.clone();
        async move { runtime.drive(record).await }
    });
    let ask = |ask, name: &'static str, args: &'static str| {
        let runtime = harness.runtime.clone();
        let record = record.clone();
        async move { runtime.query(record, ask, name, args).await.expect("query") }
    };
    // Until the workflow reaches its wait, nothing registered a handler.
    let answer = loop {
        match ask(QueryAsk::Query, "balance", "null").await {
            Ok(answer) => break answer,
            Err(error) => assert_eq!(error.error_type, "QueryNotAnswered", "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        serde_json::from_str::<Value>(&answer).expect("JSON"),
        json!({ "owner": "bo", "balance": 3, "operations": 0 })
    );
    // Compared once the execution waits, so its own appends are done.
    while !harness
        .events(&record)
        .await
        .iter()
        .any(|event| event.kind() == "UpdateAwaited")
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let history = harness.history(&record).await;
    let rejected = ask(QueryAsk::ValidateUpdate, "withdraw", r#"{"amount":4}"#)
        .await
        .expect_err("more than the balance");
    assert_eq!(rejected.error_type, "InsufficientFunds");
    let accepted = ask(QueryAsk::ValidateUpdate, "withdraw", r#"{"amount":3}"#).await;
    assert_eq!(accepted, Ok("null".to_string()));
    let no_validator = ask(QueryAsk::ValidateUpdate, "close", "null").await;
    assert_eq!(
        no_validator,
        Ok("null".to_string()),
        "no validator: accepted"
    );
    assert_eq!(harness.history(&record).await, history, "nothing journaled");

    // Posted past the validator (as a race between two accepted
    // withdrawals would): the handler's own check fails the first.
    let posted = [
        ("too-much", "withdraw", r#"{"amount":100}"#),
        ("w", "withdraw", r#"{"amount":2}"#),
        ("c", "close", "null"),
    ];
    for (update_id, name, args) in posted {
        harness
            .store
            .post_message(
                record.id,
                reprise::store::MessageKind::Update,
                name,
                args,
                &reprise::store::update_message_id(update_id),
            )
            .await
            .expect("post an update");
    }
    let outcome = tokio::time::timeout(Duration::from_secs(60), drive)
        .await
        .expect("the account closes")
        .expect("join")
        .expect("drive");
    assert_eq!(
        crate::support::completed_output(&outcome),
        json!({ "owner": "bo", "balance": 1, "operations": 1 })
    );
    let events = harness.events(&record).await;
    let answers: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|event| match event {
            Event::UpdateCompleted {
                update_id, output, ..
            } => Some((update_id.as_str(), output.as_str())),
            Event::UpdateFailed {
                update_id, error, ..
            } => Some((update_id.as_str(), error.error_type.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("too-much", "InsufficientFunds"),
            ("w", r#"{"balance":1}"#),
            ("c", r#"{"balance":1}"#)
        ]
    );
    let metrics = harness
        .runtime
        .telemetry()
        .metrics
        .render(SampledGauges::default());
    assert!(
        metrics.contains(r#"reprise_updates_total{tenant="default",workflow_type="account",outcome="completed"} 2"#),
        "{metrics}"
    );
    for line in [
        r#"reprise_updates_total{tenant="default",workflow_type="account",outcome="failed"} 1"#,
        r#"reprise_queries_total{tenant="default",kind="validate_update",outcome="error"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // The history with its updates replays under the same code.
    let component = harness.engine.load_file(&guest("account")).expect("load");
    let verdict = harness
        .runtime
        .verify_replay(&component, record.clone(), harness.history(&record).await)
        .await
        .expect("replay");
    assert_eq!(verdict, ReplayVerdict::Reproduced);
    // And a query of the finished execution sees its final state.
    let answer = ask(QueryAsk::Query, "balance", "null")
        .await
        .expect("answer");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).expect("JSON")["balance"],
        1
    );
}

#[tokio::test]
async fn a_query_handler_that_breaks_the_rules_fails_the_query_not_the_execution() {
    let harness = Harness::default().await;
    let record = harness
        .start("hostile", "rude-queries", r#"{"mode":"queries"}"#)
        .await;
    let drive = tokio::spawn({
        let runtime = harness.runtime.clone();
        let record = record.clone();
        async move { runtime.drive(record).await }
    });
    let ask = |name: &'static str| {
        let runtime = harness.runtime.clone();
        let record = record.clone();
        async move {
            runtime
                .query(record, QueryAsk::Query, name, "null")
                .await
                .expect("query")
        }
    };
    loop {
        if ask("fine").await == Ok(r#""still here""#.to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let durable = ask("clock").await.expect_err("a durable call in a query");
    assert_eq!(durable.error_type, "DurableCallInQuery", "{durable}");
    let spin = ask("spin").await.expect_err("an endless query");
    assert!(
        ["FuelExhausted", "WallClockLimitExceeded"].contains(&spin.error_type.as_str()),
        "{spin}"
    );
    assert!(!drive.is_finished(), "the execution goes on");
    harness
        .store
        .post_message(
            record.id,
            reprise::store::MessageKind::Signal,
            "end",
            "null",
            "end-1",
        )
        .await
        .expect("signal");
    let outcome = tokio::time::timeout(Duration::from_secs(60), drive)
        .await
        .expect("ends")
        .expect("join")
        .expect("drive");
    assert_eq!(crate::support::completed_output(&outcome), json!("ended"));
}

/// SIGKILL right after an update is journaled as received (before its
/// answer), and right after its answer (before the caller heard it): the
/// caller sends the same update id again and gets one answer, journaled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_survives_sigkill_at_its_journal_boundaries() {
    // History of acct-k: 1 WorkflowStarted, 2 UpdateAwaited, 3 UpdateReceived
    // d-1, 4 UpdateCompleted d-1, 5 UpdateAwaited, 6 UpdateReceived d-2,
    // 7 UpdateCompleted d-2.
    let kill_at = |position: u32| {
        vec![(
            "REPRISE_FAULT_KILL_AT_POSITION".to_string(),
            position.to_string(),
        )]
    };
    let mut bank = Bank::open("account", &kill_at(3)).await;
    bank.open_account("acct-k", 0).await;
    let _ = bank.balance("acct-k").await;
    let first = json!({ "args": { "amount": 5 }, "update_id": "d-1" });
    let second = json!({ "args": { "amount": 2 }, "update_id": "d-2" });
    bank.update_into_a_crash("acct-k", "deposit", first.clone())
        .await;
    assert!(
        bank.server.child.wait().expect("reap").code().is_none(),
        "killed"
    );

    bank = bank.reopen(&kill_at(7)).await;
    let (status, answered) = bank.update("acct-k", "deposit", first.clone()).await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["result"], json!({ "balance": 5 }));
    bank.update_into_a_crash("acct-k", "deposit", second.clone())
        .await;
    assert!(
        bank.server.child.wait().expect("reap").code().is_none(),
        "killed"
    );

    bank = bank.reopen(&[]).await;
    let (status, answered) = bank.update("acct-k", "deposit", second).await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["result"], json!({ "balance": 7 }));
    let (status, again) = bank.update("acct-k", "deposit", first).await;
    assert_eq!((status, &again["result"]), (200, &json!({ "balance": 5 })));
    let events = bank.events("acct-k").await;
    for update_id in ["d-1", "d-2"] {
        assert_eq!(
            count_kind(&events, "UpdateReceived", update_id),
            1,
            "{update_id}"
        );
        assert_eq!(
            count_kind(&events, "UpdateCompleted", update_id),
            1,
            "{update_id}"
        );
    }
    assert_eq!(bank.balance("acct-k").await["balance"], 7);
}
