//! The cases: each takes a fresh database and speaks only the `Store`
//! trait, so both backends answer the same questions (save one PostgreSQL
//! case, which writes a row as another node's open transaction would).

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;

use reprise_journal::{Clock, Event, RecordedEvent};
use reprise_store::{
    ExecutionFilter, ExecutionRecord, ExecutionStatus, Finish, GUEST_LOG_LINES_MAX, GuestLogLine,
    IdReusePolicy, Joined, ListCursor, MAILBOX_UNDELIVERED_MAX, MailboxCursor, MessageKind,
    ModuleDeletion, NewExecution, NextRun, ScheduleWrite, StartOutcome, StatusCounts, Store,
    StoreError, Sweep, SweepCursor,
};

use crate::harness::{Backend, TestDatabase};

const TENANT: &str = "acme";
const DIGEST: &str = "d";

fn started_with(input: &str) -> RecordedEvent {
    RecordedEvent {
        position: 1,
        recorded_at_ms: 1,
        event: Event::WorkflowStarted {
            workflow_type: "t".into(),
            module_digest: DIGEST.into(),
            input: input.into(),
            trace: None,
            host_behaviour: reprise_journal::HOST_BEHAVIOUR,
            continued_from: None,
            timeouts: reprise_journal::WorkflowTimeouts::default(),
        },
    }
}

fn started() -> RecordedEvent {
    started_with("{}")
}

pub fn fired(position: u64, seq: u64) -> RecordedEvent {
    RecordedEvent {
        position,
        recorded_at_ms: 0,
        event: Event::TimerFired { seq },
    }
}

fn signal_received(position: u64, message_id: &str) -> RecordedEvent {
    RecordedEvent {
        position,
        recorded_at_ms: 0,
        event: Event::SignalReceived {
            seq: 1,
            name: "go".into(),
            payload: "{}".into(),
            message_id: message_id.into(),
        },
    }
}

fn new_execution(tenant: &str, workflow_id: &str, run_id: &str) -> NewExecution {
    NewExecution {
        tenant: tenant.into(),
        workflow_id: workflow_id.into(),
        run_id: run_id.into(),
        workflow_type: "t".into(),
        module_digest: DIGEST.into(),
        started: started(),
        reuse: IdReusePolicy::ReturnExisting,
        running_max: u64::MAX,
        search_attributes: None,
        parent_id: None,
    }
}

/// A store on `database` with the module every execution names.
async fn store_on(database: &TestDatabase) -> Arc<dyn Store> {
    let store = database.open().await;
    store
        .put_module(DIGEST, "workflow", b"bytes")
        .await
        .expect("storing the module");
    store
}

async fn start(store: &dyn Store, new: NewExecution) -> ExecutionRecord {
    let workflow_id = new.workflow_id.clone();
    match store.start_execution(new).await.expect("start") {
        StartOutcome::Created(record) => record,
        outcome => panic!("{workflow_id} is new and starts, not {outcome:?}"),
    }
}

async fn start_many(store: &dyn Store, count: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(count);
    for index in 0..count {
        let new = new_execution(TENANT, &format!("w{index}"), &format!("r{index}"));
        ids.push(start(store, new).await.id);
    }
    ids
}

async fn finish(store: &dyn Store, id: i64, status: ExecutionStatus) {
    let next = store.history(id).await.expect("history").len() as u64 + 1;
    let end = RecordedEvent {
        position: next,
        recorded_at_ms: 2,
        event: Event::WorkflowCompleted {
            output: "null".into(),
        },
    };
    let finish = Finish::new(status, "null".into());
    store
        .append(id, vec![end], Some(finish))
        .await
        .expect("finish");
}

/// Ends run `id`, whose history holds `position - 1` events, by continuing
/// as new into run `next_run_id`; returns the next run's first event.
async fn continue_as_new(
    store: &dyn Store,
    id: i64,
    position: u64,
    next_run_id: &str,
) -> RecordedEvent {
    let next_started = started_with(r#"{"n":2}"#);
    let end = RecordedEvent {
        position,
        recorded_at_ms: 2,
        event: Event::WorkflowContinuedAsNew {
            input: r#"{"n":2}"#.into(),
            next_run_id: next_run_id.into(),
            module_digest: DIGEST.into(),
        },
    };
    let finish = Finish {
        next_run: Some(Box::new(NextRun {
            run_id: next_run_id.into(),
            module_digest: DIGEST.into(),
            started: next_started.clone(),
        })),
        ..Finish::new(
            ExecutionStatus::ContinuedAsNew,
            format!(r#"{{"next_run_id":"{next_run_id}"}}"#),
        )
    };
    store
        .append(id, vec![end], Some(finish))
        .await
        .expect("continue as new");
    next_started
}

/// A tenant's modules in the cases that do not test the limit.
const MODULES: u32 = 100;
/// The workflow types limit of the cases that do not test it.
const TYPES: u32 = 100;

/// Spawns every future (on the test's one thread they all queue their
/// requests before the writer task runs) and collects their outputs.
async fn spawn_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task"));
    }
    outputs
}

fn commits(store: &dyn Store) -> (u64, u64) {
    let stats = store
        .commit_stats()
        .expect("both backends count their group commits");
    (stats.commits, stats.requests)
}

/// Asserts that the `requests` write requests made since `before` (from
/// [`commits`]) shared one commit.
fn assert_one_commit(store: &dyn Store, before: (u64, u64), requests: u64) {
    let after = commits(store);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, requests),
        "the {requests} requests shared one commit"
    );
}

/// The length of each execution's history, in the order of `ids`.
async fn history_lengths(store: &dyn Store, ids: &[i64]) -> Vec<usize> {
    let mut lengths = Vec::with_capacity(ids.len());
    for &id in ids {
        lengths.push(store.history(id).await.expect("history").len());
    }
    lengths
}

pub async fn no_overwrite(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 1).await;
    let error = store
        .append(ids[0], vec![fired(1, 1)], None)
        .await
        .expect_err("position 1 is taken by WorkflowStarted");
    assert!(
        matches!(error, StoreError::PositionTaken { execution_id, position: 1 } if execution_id == ids[0]),
        "{error}"
    );
    // A batch reaching past the end, whose first event collides, is
    // refused whole.
    let error = store
        .append(ids[0], vec![fired(2, 1), fired(1, 2)], None)
        .await
        .expect_err("position 1 is taken");
    assert!(matches!(error, StoreError::PositionTaken { .. }), "{error}");
    let history = store.history(ids[0]).await.expect("history");
    assert_eq!(history, vec![started()], "the original event is intact");
}

/// Requests awaited together on one thread reach the writer together: one
/// commit carries them, and its failing requests fail alone.
pub async fn one_bad_request_does_not_sink_its_batch(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 3).await;
    let before = commits(store.as_ref());
    let (good, taken, good_too, undeliverable) = tokio::join!(
        store.append(ids[0], vec![fired(2, 1)], None),
        store.append(ids[1], vec![fired(1, 1)], None),
        store.append(ids[2], vec![fired(2, 1), fired(3, 2)], None),
        store.append_delivering(ids[1], vec![fired(2, 1)], 999_999),
    );
    assert_one_commit(store.as_ref(), before, 4);
    good.expect("the valid append commits");
    good_too.expect("the other valid append commits");
    assert!(
        matches!(taken, Err(StoreError::PositionTaken { position: 1, .. })),
        "{taken:?}"
    );
    assert!(
        matches!(
            undeliverable,
            Err(StoreError::AlreadyDelivered { id: 999_999, .. })
        ),
        "{undeliverable:?}"
    );
    assert_eq!(
        history_lengths(store.as_ref(), &ids).await,
        [2, 1, 3],
        "the failed requests wrote nothing"
    );
}

/// The fast path's last statement inserts the batch's events and commits;
/// when the insert fails, neither the batch's other changes (here a finish)
/// nor a transaction are left behind: the retry request by request writes
/// the valid ones once, and the store takes writes afterwards.
pub async fn a_failed_insert_takes_its_whole_first_try_back(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 2).await;
    let before = commits(store.as_ref());
    let (finished, taken) = tokio::join!(
        store.append(
            ids[0],
            vec![fired(2, 1)],
            Some(Finish::new(ExecutionStatus::Completed, "\"done\"".into()))
        ),
        store.append(ids[1], vec![fired(1, 1)], None),
    );
    assert_one_commit(store.as_ref(), before, 2);
    finished.expect("the valid finishing append commits");
    assert!(
        matches!(taken, Err(StoreError::PositionTaken { position: 1, .. })),
        "{taken:?}"
    );
    let record = store
        .execution(TENANT, "w0")
        .await
        .expect("reading the execution")
        .expect("w0 exists");
    assert_eq!(record.status, ExecutionStatus::Completed);
    assert_eq!(record.result.as_deref(), Some("\"done\""));
    store
        .append(ids[1], vec![fired(2, 1)], None)
        .await
        .expect("the store takes writes after the failed try");
    start(store.as_ref(), new_execution(TENANT, "w-after", "r-after")).await;
    assert_eq!(
        history_lengths(store.as_ref(), &ids).await,
        [2, 2],
        "each valid event is written once"
    );
}

pub async fn concurrent_appends_share_commits(database: Arc<TestDatabase>) {
    const EXECUTIONS: usize = 200;
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), EXECUTIONS).await;
    let before = commits(store.as_ref());
    let appends = ids.iter().map(|&id| {
        let store = store.clone();
        async move { store.append(id, vec![fired(2, 1)], None).await }
    });
    for outcome in spawn_all(appends).await {
        outcome.expect("append");
    }
    let after = commits(store.as_ref());
    let requests = after.1 - before.1;
    let commits = after.0 - before.0;
    assert_eq!(requests, EXECUTIONS as u64);
    assert!(
        commits < requests / 4,
        "{commits} commits for {requests} appends"
    );
    for id in ids {
        assert_eq!(store.history(id).await.expect("history").len(), 2);
    }
}

pub async fn mailbox_delivers_once(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 2).await;
    let execution = ids[0];
    let payload = r#"{"z":1,"a":[2.50,18446744073709551615]}"#;
    let sent = |kind, name: &'static str, message_id: &'static str| {
        let store = store.clone();
        async move {
            store
                .post_message(execution, kind, name, payload, message_id)
                .await
                .expect("post")
        }
    };
    assert!(sent(MessageKind::Signal, "go", "m1").await, "a new message");
    assert!(
        !sent(MessageKind::Signal, "go", "m1").await,
        "a message id is stored once"
    );
    assert!(sent(MessageKind::Cancel, "", "m2").await);
    let waiting = store
        .undelivered_messages(execution)
        .await
        .expect("mailbox");
    let described: Vec<_> = waiting
        .iter()
        .map(|message| {
            (
                message.kind,
                message.name.as_str(),
                message.message_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (MessageKind::Signal, "go", "m1"),
            (MessageKind::Cancel, "", "m2")
        ],
        "oldest first"
    );
    assert_eq!(waiting[0].payload, payload, "the payload text as sent");
    assert!(
        store
            .undelivered_messages(ids[1])
            .await
            .expect("mailbox")
            .is_empty(),
        "another execution's mailbox is its own"
    );
    let first = store
        .mailbox_activity(MailboxCursor::default())
        .await
        .expect("activity");
    assert_eq!(
        first.rows,
        [(waiting[0].id, execution), (waiting[1].id, execution)]
    );
    let again = store
        .mailbox_activity(first.cursor)
        .await
        .expect("activity");
    // PostgreSQL may report a row again while a transaction older than its
    // writer's runs; nothing else.
    assert!(
        again.rows.iter().all(|row| first.rows.contains(row)),
        "nothing new was sent: {again:?}"
    );

    // Two deliveries of one message in one batch: one wins, the other
    // appends nothing.
    let signal = waiting[0].id;
    let (first, second) = tokio::join!(
        store.append_delivering(execution, vec![signal_received(2, "m1")], signal),
        store.append_delivering(execution, vec![fired(2, 9), fired(3, 9)], signal),
    );
    assert!(first.is_ok(), "{first:?}");
    assert!(
        matches!(second, Err(StoreError::AlreadyDelivered { id, .. }) if id == signal),
        "{second:?}"
    );
    // Two stores on one database (two processes): the same holds.
    let other = database.open().await;
    let cancel = waiting[1].id;
    let deliveries = [store.clone(), other.clone()]
        .into_iter()
        .map(|store| async move {
            store
                .append_delivering(
                    execution,
                    vec![RecordedEvent {
                        position: 3,
                        recorded_at_ms: 0,
                        event: Event::CancellationDelivered { wait: 1 },
                    }],
                    cancel,
                )
                .await
        });
    let outcomes = spawn_all(deliveries).await;
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "exactly one delivery: {outcomes:?}"
    );
    let history = store.history(execution).await.expect("history");
    assert_eq!(history.len(), 3, "each message journaled once: {history:?}");
    assert!(
        store
            .undelivered_messages(execution)
            .await
            .expect("mailbox")
            .is_empty()
    );
    let delivered = store
        .mailbox_activity(MailboxCursor::default())
        .await
        .expect("activity");
    assert!(
        delivered.rows.is_empty(),
        "delivered messages flag nothing: {delivered:?}"
    );
}

/// Signals and updates an execution has not received are bounded; a
/// cancellation request, a resent message and the next message after a
/// delivery still get through.
pub async fn a_full_mailbox_refuses_signals_and_updates(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 2).await;
    let (execution, other) = (ids[0], ids[1]);
    assert!(
        store
            .post_message(execution, MessageKind::Signal, "go", "{}", "s0")
            .await
            .expect("the first signal")
    );
    // s0 again is a duplicate, which must not count toward the bound.
    let posts = (0..MAILBOX_UNDELIVERED_MAX).map(|index| {
        let store = store.clone();
        async move {
            store
                .post_message(
                    execution,
                    MessageKind::Signal,
                    "go",
                    "{}",
                    &format!("s{index}"),
                )
                .await
        }
    });
    let posted = spawn_all(posts).await;
    assert!(
        matches!(posted[0], Ok(false)),
        "a resent signal is a duplicate: {:?}",
        posted[0]
    );
    assert!(
        posted[1..]
            .iter()
            .all(|outcome| matches!(outcome, Ok(true))),
        "up to the bound, every signal is taken: {:?}",
        posted[1..]
            .iter()
            .find(|outcome| !matches!(outcome, Ok(true)))
    );

    for kind in [MessageKind::Signal, MessageKind::Update] {
        let refused = store
            .post_message(execution, kind, "go", "{}", "one-too-many")
            .await;
        assert!(
            matches!(refused, Err(StoreError::MailboxFull { execution_id }) if execution_id == execution),
            "{kind:?} past the bound: {refused:?}"
        );
        let message = refused.expect_err("refused").to_string();
        assert!(
            message.contains(&MAILBOX_UNDELIVERED_MAX.to_string()) && message.contains("received"),
            "the error names the bound and what to do: {message}"
        );
    }
    assert!(
        !store
            .post_message(execution, MessageKind::Signal, "go", "{}", "s7")
            .await
            .expect("a resent signal"),
        "a resent signal is a duplicate, not a refusal"
    );
    assert!(
        store
            .post_message(execution, MessageKind::Cancel, "", "null", "cancel")
            .await
            .expect("a cancellation request"),
        "cancellation is not bounded"
    );
    assert!(
        store
            .post_message(other, MessageKind::Signal, "go", "{}", "s0")
            .await
            .expect("another execution's mailbox"),
        "the bound is per execution"
    );

    let oldest = store
        .undelivered_messages(execution)
        .await
        .expect("mailbox")
        .first()
        .map(|message| (message.id, message.message_id.clone()))
        .expect("a message");
    store
        .append_delivering(execution, vec![signal_received(2, &oldest.1)], oldest.0)
        .await
        .expect("delivering one");
    assert!(
        store
            .post_message(execution, MessageKind::Signal, "go", "{}", "after-delivery")
            .await
            .expect("room again"),
        "a delivery makes room for one more"
    );
    let undelivered = store
        .undelivered_messages(execution)
        .await
        .expect("mailbox");
    let bounded = undelivered
        .iter()
        .filter(|message| matches!(message.kind, MessageKind::Signal | MessageKind::Update))
        .count() as u64;
    assert_eq!(
        bounded, MAILBOX_UNDELIVERED_MAX,
        "never more than the bound"
    );

    // The next run of a continue-as-new takes the undelivered messages
    // and so is full too; a post to the ended run is refused in its name.
    continue_as_new(store.as_ref(), execution, 3, "r0-next").await;
    let refused = store
        .post_message(
            execution,
            MessageKind::Signal,
            "go",
            "{}",
            "to-the-ended-run",
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::MailboxFull { execution_id }) if execution_id != execution),
        "the next run holds the moved messages: {refused:?}"
    );
}

/// PostgreSQL draws a row's id before its transaction commits, so a
/// message with a lower id can commit after a watcher read a higher one:
/// the next reading still reports it.
pub async fn a_message_committed_after_a_higher_id_is_reported(database: Arc<TestDatabase>) {
    assert!(
        matches!(database.backend(), Backend::Postgres),
        "SQLite's one writer commits rows in id order"
    );
    let store = store_on(&database).await;
    // Two executions, because a message counts toward its execution's row,
    // which the uncommitted insert keeps locked until it commits.
    let executions = start_many(store.as_ref(), 2).await;
    let (late_execution, execution) = (executions[0], executions[1]);
    let mut other_node = sqlx::PgConnection::connect(&database.url())
        .await
        .expect("a second connection");
    let mut late = other_node.begin().await.expect("begin");
    let (late_id,): (i64,) = sqlx::query_as(
        "INSERT INTO mailbox (execution_id, kind, name, payload, message_id, received_at_ms)
         VALUES ($1, 'signal', 'late', '{}', 'late', 0) RETURNING id",
    )
    .bind(late_execution)
    .fetch_one(&mut *late)
    .await
    .expect("an uncommitted message");
    assert!(
        store
            .post_message(execution, MessageKind::Signal, "early", "{}", "early")
            .await
            .expect("post")
    );
    let early = store
        .mailbox_activity(MailboxCursor::default())
        .await
        .expect("activity");
    let early_id = early
        .rows
        .iter()
        .map(|(id, _)| *id)
        .max()
        .expect("the committed message");
    assert!(
        early_id > late_id,
        "the uncommitted message holds the lower id"
    );
    assert_eq!(
        early.rows,
        [(early_id, execution)],
        "only what is committed"
    );

    late.commit().await.expect("commit");
    let after = store
        .mailbox_activity(early.cursor)
        .await
        .expect("activity");
    assert!(
        after.rows.contains(&(late_id, late_execution)),
        "the late commit is reported: {after:?}"
    );
}

pub async fn tenants_see_only_their_own(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    assert!(
        store
            .create_tenant("acme", "key-a", "{}")
            .await
            .expect("tenant")
    );
    assert!(
        store
            .create_tenant("globex", "key-g", r#"{"b":1,"a":2}"#)
            .await
            .expect("tenant")
    );
    assert!(
        !store
            .create_tenant("acme", "key-other", "{}")
            .await
            .expect("tenant"),
        "a name is taken once"
    );
    let acme = start(store.as_ref(), new_execution("acme", "order-1", "r1")).await;
    store
        .put_tenant_module("acme", DIGEST, "workflow", MODULES)
        .await
        .expect("tenant module");

    assert_eq!(
        store.execution("globex", "order-1").await.expect("lookup"),
        None,
        "another tenant's id does not exist"
    );
    let everything = ExecutionFilter {
        limit: 100,
        ..ExecutionFilter::default()
    };
    assert!(
        store
            .list_executions("globex", &everything)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store
            .count_executions("globex", &everything)
            .await
            .expect("count"),
        StatusCounts::default()
    );
    assert!(
        store
            .tenant_modules("globex")
            .await
            .expect("modules")
            .is_empty()
    );
    assert_eq!(
        store.tenant_modules("acme").await.expect("modules").len(),
        1
    );

    // The same workflow id in another tenant is another execution.
    let globex = start(store.as_ref(), new_execution("globex", "order-1", "r1")).await;
    assert_ne!(globex.id, acme.id);
    assert_eq!(
        store.execution("acme", "order-1").await.expect("lookup"),
        Some(acme)
    );

    let found = store
        .tenant_by_key("key-g")
        .await
        .expect("key")
        .expect("globex's key");
    assert_eq!(
        (found.name.as_str(), found.limits.as_str()),
        ("globex", r#"{"b":1,"a":2}"#)
    );
    assert_eq!(store.tenant_by_key("key-nobody").await.expect("key"), None);
    assert!(
        store
            .set_tenant_limits("acme", r#"{"x":1}"#)
            .await
            .expect("limits")
    );
    assert!(
        !store
            .set_tenant_limits("nobody", "{}")
            .await
            .expect("limits")
    );
    let names: Vec<_> = store
        .tenants()
        .await
        .expect("tenants")
        .into_iter()
        .map(|tenant| (tenant.name, tenant.limits))
        .collect();
    assert_eq!(
        names,
        [
            ("acme".to_string(), r#"{"x":1}"#.to_string()),
            ("globex".to_string(), r#"{"b":1,"a":2}"#.to_string())
        ]
    );
}

/// Starts from two stores on one database (two processes) race for the
/// last slots: exactly the limit gets in.
pub async fn running_limit_holds_for_concurrent_starts(database: Arc<TestDatabase>) {
    const RUNNING_MAX: u64 = 5;
    const STARTS: usize = 12;
    let stores = [store_on(&database).await, database.open().await];
    let starts = (0..STARTS).map(|index| {
        let store = stores[index % 2].clone();
        let mut new = new_execution(TENANT, &format!("w{index}"), &format!("r{index}"));
        new.running_max = RUNNING_MAX;
        async move { store.start_execution(new).await.expect("start") }
    });
    let outcomes = spawn_all(starts).await;
    let created: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            StartOutcome::Created(record) => Some(record.id),
            _ => None,
        })
        .collect();
    assert_eq!(created.len() as u64, RUNNING_MAX, "{outcomes:?}");
    for outcome in &outcomes {
        assert!(
            matches!(
                outcome,
                StartOutcome::Created(_)
                    | StartOutcome::AtCapacity {
                        running: RUNNING_MAX
                    }
            ),
            "{outcome:?}"
        );
    }
    // Another tenant has its own count.
    let mut elsewhere = new_execution("globex", "w0", "r0");
    elsewhere.running_max = 1;
    start(stores[1].as_ref(), elsewhere).await;
    // A finish frees a slot.
    finish(stores[0].as_ref(), created[0], ExecutionStatus::Completed).await;
    let mut next = new_execution(TENANT, "w-next", "r-next");
    next.running_max = RUNNING_MAX;
    start(stores[1].as_ref(), next.clone()).await;
    next.workflow_id = "w-after".into();
    let outcome = stores[0].start_execution(next).await.expect("start");
    assert_eq!(
        outcome,
        StartOutcome::AtCapacity {
            running: RUNNING_MAX
        }
    );
}

pub async fn reuse_policy_decides_what_a_finished_id_may_do(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 2).await;
    finish(store.as_ref(), ids[0], ExecutionStatus::Completed).await;
    finish(store.as_ref(), ids[1], ExecutionStatus::Failed).await;
    let kind = |outcome: StartOutcome| match outcome {
        StartOutcome::Created(_) => "created",
        StartOutcome::Existing(_) => "existing",
        StartOutcome::ReuseRefused(_) => "refused",
        StartOutcome::AtCapacity { .. } => "at capacity",
    };
    use IdReusePolicy::*;
    let cases = [
        ("w0", ReturnExisting, "existing"),
        ("w0", Reject, "refused"),
        ("w0", AllowIfFailed, "refused"),
        ("w1", AllowIfFailed, "created"),
        ("w0", Allow, "created"),
        // The new run of w0 is running: it is the answer, whatever the policy.
        ("w0", Allow, "existing"),
    ];
    for (index, (id, reuse, expected)) in cases.into_iter().enumerate() {
        let mut new = new_execution(TENANT, id, &format!("{id}-again-{index}"));
        new.reuse = reuse;
        let outcome = store.start_execution(new).await.expect("start");
        assert_eq!(kind(outcome), expected, "{id} with {reuse:?}");
    }
    let newest = store
        .execution(TENANT, "w0")
        .await
        .expect("lookup")
        .expect("w0");
    assert_eq!(newest.run_id, "w0-again-4", "the newest run answers");
    assert_eq!(newest.status, ExecutionStatus::Running);
}

pub async fn list_filters_cursor_pages_and_counts(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let mut records = Vec::new();
    for (workflow_id, workflow_type) in [
        ("order-1", "order"),
        ("order-2", "order"),
        ("order-3", "order"),
        ("trip-1", "trip"),
        ("order-4", "order"),
        ("100%_x", "order"),
        ("trip-2", "trip"),
        ("order-5", "order"),
    ] {
        let mut new = new_execution(TENANT, workflow_id, "r");
        new.workflow_type = workflow_type.into();
        records.push(start(store.as_ref(), new).await);
    }
    start(store.as_ref(), new_execution("globex", "order-9", "r")).await;
    finish(store.as_ref(), records[0].id, ExecutionStatus::Completed).await;
    finish(store.as_ref(), records[1].id, ExecutionStatus::Failed).await;
    finish(store.as_ref(), records[3].id, ExecutionStatus::Cancelled).await;
    assert!(
        store
            .terminate(records[6].id, "stop")
            .await
            .expect("terminate")
    );

    let list = |filter: ExecutionFilter| {
        let store = store.clone();
        async move {
            store
                .list_executions(TENANT, &filter)
                .await
                .expect("list")
                .into_iter()
                .map(|record| record.workflow_id)
                .collect::<Vec<_>>()
        }
    };
    let all = ExecutionFilter {
        limit: 100,
        ..ExecutionFilter::default()
    };
    // Newest first: creation time, then row id, descending.
    let mut expected = records.clone();
    expected.sort_by_key(|record| std::cmp::Reverse((record.created_at_ms, record.id)));
    let expected: Vec<_> = expected
        .iter()
        .map(|record| record.workflow_id.clone())
        .collect();
    assert_eq!(list(all.clone()).await, expected);

    let running = list(ExecutionFilter {
        status: Some(ExecutionStatus::Running),
        ..all.clone()
    })
    .await;
    assert_eq!(running.len(), 4, "{running:?}");
    assert!(
        running
            .iter()
            .all(|id| ["order-3", "order-4", "100%_x", "order-5"].contains(&id.as_str()))
    );
    let trips = list(ExecutionFilter {
        workflow_type: Some("trip".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(trips.len(), 2);
    let orders = list(ExecutionFilter {
        id_prefix: Some("order-".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(orders.len(), 5);
    // The prefix is text, not a pattern: `%` and `_` match themselves.
    let literal = list(ExecutionFilter {
        id_prefix: Some("100%_".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(literal, ["100%_x"]);
    assert!(
        list(ExecutionFilter {
            id_prefix: Some("%".into()),
            ..all.clone()
        })
        .await
        .is_empty()
    );
    let newest_ms = records
        .iter()
        .map(|record| record.created_at_ms)
        .max()
        .unwrap_or_default();
    let from_newest = list(ExecutionFilter {
        created_from_ms: Some(newest_ms),
        ..all.clone()
    })
    .await;
    let until_newest = list(ExecutionFilter {
        created_until_ms: Some(newest_ms),
        ..all.clone()
    })
    .await;
    assert!(!from_newest.is_empty());
    assert_eq!(from_newest.len() + until_newest.len(), records.len());

    // Pages of three, each after the last of the previous one.
    let mut paged = Vec::new();
    let mut before = None;
    for _ in 0..records.len() {
        let page = store
            .list_executions(
                TENANT,
                &ExecutionFilter {
                    limit: 3,
                    before: before.clone(),
                    ..ExecutionFilter::default()
                },
            )
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        before = Some(ListCursor {
            created_at_ms: last.created_at_ms,
            workflow_id: last.workflow_id.clone(),
            run_id: last.run_id.clone(),
        });
        paged.extend(page.into_iter().map(|record| record.workflow_id));
    }
    assert_eq!(paged, expected, "pages neither skip nor repeat");

    let counts = store.count_executions(TENANT, &all).await.expect("count");
    assert_eq!(
        counts,
        StatusCounts {
            running: 4,
            completed: 1,
            failed: 1,
            cancelled: 1,
            terminated: 1,
            continued_as_new: 0,
        }
    );
    let order_counts = store
        .count_executions(
            TENANT,
            &ExecutionFilter {
                id_prefix: Some("order-".into()),
                // Ignored by counts: every state is counted.
                status: Some(ExecutionStatus::Failed),
                ..all.clone()
            },
        )
        .await
        .expect("count");
    assert_eq!(
        order_counts,
        StatusCounts {
            running: 3,
            completed: 1,
            failed: 1,
            ..StatusCounts::default()
        }
    );
    let unfinished = store.unfinished_executions().await.expect("unfinished");
    assert_eq!(unfinished.len(), 5, "four of acme's and globex's one");
    assert!(
        unfinished
            .iter()
            .all(|record| record.status == ExecutionStatus::Running)
    );
}

pub async fn terminate_fences_the_driver_and_only_once(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 2).await;
    store
        .append(ids[0], vec![fired(2, 1)], None)
        .await
        .expect("append");
    assert!(
        store
            .terminate(ids[0], "operator said so")
            .await
            .expect("terminate")
    );
    let history = store.history(ids[0]).await.expect("history");
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].position, 3);
    assert_eq!(
        history[2].event,
        Event::WorkflowTerminated {
            reason: "operator said so".into()
        }
    );
    let record = store
        .execution(TENANT, "w0")
        .await
        .expect("lookup")
        .expect("w0");
    assert_eq!(record.status, ExecutionStatus::Terminated);
    assert_eq!(
        record.result.as_deref(),
        Some(r#"{"terminated":"operator said so"}"#)
    );
    // The driver's next append finds its position taken.
    let error = store
        .append(ids[0], vec![fired(3, 2)], None)
        .await
        .expect_err("fenced");
    assert!(
        matches!(error, StoreError::PositionTaken { position: 3, .. }),
        "{error}"
    );
    assert!(
        !store.terminate(ids[0], "again").await.expect("terminate"),
        "already over"
    );
    finish(store.as_ref(), ids[1], ExecutionStatus::Completed).await;
    assert!(
        !store.terminate(ids[1], "late").await.expect("terminate"),
        "finished"
    );
    assert_eq!(store.history(ids[1]).await.expect("history").len(), 2);
    assert!(
        !store.terminate(999_999, "nobody").await.expect("terminate"),
        "no such execution"
    );
    assert!(
        store
            .unfinished_executions()
            .await
            .expect("unfinished")
            .is_empty()
    );
}

/// What JSONB (or a JSON number type) would change: key order, integers
/// above 2^53, the digits of a float. Every text comes back as written.
pub async fn payload_text_round_trips_byte_for_byte(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let document = r#"{"zeta":1, "alpha":18446744073709551615,"float":0.30000000000000004,"big":1.0E+400,"nested":{"b":[1,2.50],"a":"\u00e9\u0000"}}"#;
    let mut new = new_execution(TENANT, "w", "r");
    new.started = started_with(document);
    let id = start(store.as_ref(), new).await.id;
    let clock = RecordedEvent {
        position: 2,
        recorded_at_ms: u64::MAX / 2,
        event: Event::ClockRead {
            seq: 1,
            clock: Clock::Wall,
            value_ns: u64::MAX,
        },
    };
    let completed = RecordedEvent {
        position: 3,
        recorded_at_ms: 3,
        event: Event::WorkflowCompleted {
            output: document.into(),
        },
    };
    assert!(
        store
            .post_message(id, MessageKind::Signal, "s", document, "m")
            .await
            .expect("post")
    );
    store
        .append(
            id,
            vec![clock.clone(), completed.clone()],
            Some(Finish::new(ExecutionStatus::Completed, document.into())),
        )
        .await
        .expect("append");
    assert!(
        store
            .create_tenant("t", "k", document)
            .await
            .expect("tenant")
    );

    let history = store.history(id).await.expect("history");
    assert_eq!(history, vec![started_with(document), clock, completed]);
    let record = store
        .execution(TENANT, "w")
        .await
        .expect("lookup")
        .expect("w");
    assert_eq!(record.result.as_deref(), Some(document));
    let message = &store.undelivered_messages(id).await.expect("mailbox")[0];
    assert_eq!(message.payload, document);
    let tenant = store.tenant_by_key("k").await.expect("key").expect("t");
    assert_eq!(tenant.limits, document);
}

pub async fn history_pages(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let id = start_many(store.as_ref(), 1).await[0];
    let events: Vec<_> = (2..=10).map(|position| fired(position, position)).collect();
    store.append(id, events, None).await.expect("append");
    let positions = |page: Vec<RecordedEvent>| -> Vec<u64> {
        page.iter().map(|recorded| recorded.position).collect()
    };
    assert_eq!(
        positions(store.history_page(id, 0, 3).await.expect("page")),
        [1, 2, 3]
    );
    assert_eq!(
        positions(store.history_page(id, 8, 5).await.expect("page")),
        [9, 10]
    );
    assert!(
        store
            .history_page(id, 10, 5)
            .await
            .expect("page")
            .is_empty()
    );
    assert_eq!(store.history(id).await.expect("history").len(), 10);
    assert!(store.history(999_999).await.expect("history").is_empty());
}

/// A whole history is read in pages of a few thousand events (SQLite reads
/// the next while the last decodes): lengths on, just past and between
/// page boundaries all come back whole and in order.
pub async fn long_histories_read_whole_across_pages(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let id = start_many(store.as_ref(), 1).await[0];
    let mut length = 1;
    for target in [2_048, 4_096, 4_097, 6_000] {
        let events: Vec<_> = (length + 1..=target)
            .map(|position| fired(position, position))
            .collect();
        store.append(id, events, None).await.expect("append");
        length = target;
        let history = store.history(id).await.expect("history");
        let positions: Vec<u64> = history.iter().map(|recorded| recorded.position).collect();
        assert_eq!(
            positions,
            (1..=length).collect::<Vec<u64>>(),
            "{length} events"
        );
        assert_eq!(
            history.last().map(|recorded| &recorded.event),
            Some(&Event::TimerFired { seq: length }),
        );
    }
}

pub async fn span_watermarks_only_rise(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 2).await;
    assert_eq!(store.span_watermark(ids[0]).await.expect("mark"), 0);
    store
        .set_span_watermarks(vec![(ids[0], 5), (ids[1], 2)])
        .await
        .expect("marks");
    // Lower, and the same execution twice in one write: the highest stays.
    store
        .set_span_watermarks(vec![(ids[0], 3), (ids[1], 7), (ids[1], 6)])
        .await
        .expect("marks");
    assert_eq!(store.span_watermark(ids[0]).await.expect("mark"), 5);
    assert_eq!(store.span_watermark(ids[1]).await.expect("mark"), 7);
    store
        .set_span_watermarks(Vec::new())
        .await
        .expect("nothing to do");
}

pub async fn guest_log_lines_are_capped_per_execution(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let ids = start_many(store.as_ref(), 2).await;
    let line = |execution_id: i64, seq: u64| GuestLogLine {
        id: 0,
        execution_id,
        seq,
        level: "info".into(),
        source: "log".into(),
        message: format!("line {seq}"),
        logged_at_ms: seq,
    };
    let cap = u64::from(GUEST_LOG_LINES_MAX);
    // Nearly full, with the other execution's lines in between.
    let mut first: Vec<_> = (0..cap - 2).map(|seq| line(ids[0], seq)).collect();
    first.insert(10, line(ids[1], 0));
    first.insert(20, line(ids[1], 1));
    store.append_guest_logs(first).await.expect("lines");
    // Five more: two fit.
    store
        .append_guest_logs((cap - 2..cap + 3).map(|seq| line(ids[0], seq)).collect())
        .await
        .expect("lines");
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = store.guest_logs(ids[0], after, 4000).await.expect("page");
        let Some(last) = page.last() else { break };
        after = last.id;
        read.extend(page);
    }
    assert_eq!(read.len() as u64, cap, "capped at {cap}");
    assert!(
        read.iter()
            .enumerate()
            .all(|(index, line)| line.seq == index as u64),
        "the first lines, in order"
    );
    assert_eq!(read[5].message, "line 5");
    let other = store.guest_logs(ids[1], 0, 10).await.expect("lines");
    assert_eq!(
        other.iter().map(|line| line.seq).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(
        store
            .guest_logs(ids[1], other[0].id, 10)
            .await
            .expect("lines")
            .len(),
        1
    );
}

pub async fn modules_and_workflow_types(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    // Content-addressed: a second put of a digest keeps the first bytes.
    store
        .put_module(DIGEST, "workflow", b"other")
        .await
        .expect("module");
    assert_eq!(
        store.module(DIGEST).await.expect("module").as_deref(),
        Some(&b"bytes"[..])
    );
    assert_eq!(store.module("missing").await.expect("module"), None);
    store
        .put_module("d2", "activity", &[0, 255, 1])
        .await
        .expect("module");
    store
        .put_workflow_type("acme", "order", DIGEST, TYPES)
        .await
        .expect("type");
    store
        .put_workflow_type("acme", "order", "d2", TYPES)
        .await
        .expect("rebind");
    store
        .put_workflow_type("globex", "order", DIGEST, TYPES)
        .await
        .expect("type");
    assert_eq!(
        store.workflow_types(None).await.expect("types"),
        [
            ("acme".to_string(), "order".to_string(), "d2".to_string()),
            (
                "globex".to_string(),
                "order".to_string(),
                DIGEST.to_string()
            )
        ]
    );
    store
        .put_tenant_module("acme", "d2", "activity", MODULES)
        .await
        .expect("upload");
    store
        .put_tenant_module("acme", "d2", "activity", MODULES)
        .await
        .expect("upload again");
    let modules = store.tenant_modules("acme").await.expect("modules");
    assert_eq!(modules.len(), 1);
    assert_eq!(
        (modules[0].digest.as_str(), modules[0].size_bytes),
        ("d2", 3)
    );
    store
        .put_tenant_module("globex", DIGEST, "workflow", MODULES)
        .await
        .expect("upload a workflow");
    let acme_d2 = ("acme".to_string(), "d2".to_string());
    assert_eq!(
        store.activity_uploads(None).await.expect("uploads"),
        vec![acme_d2.clone()],
        "activity modules only"
    );
    assert_eq!(
        store.activity_uploads(Some("acme")).await.expect("uploads"),
        vec![acme_d2]
    );
    assert!(
        store
            .activity_uploads(Some("globex"))
            .await
            .expect("uploads")
            .is_empty()
    );
}

/// A server restart cuts every connection: the writer's next batch finds
/// its connection dead before anything ran and retries on a fresh one; the
/// read pool replaces its connections. No request fails.
pub async fn writes_and_reads_survive_lost_connections(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let id = start_many(store.as_ref(), 1).await[0];
    assert_eq!(store.history(id).await.expect("history").len(), 1);
    database.cut_connections().await;
    store
        .append(id, vec![fired(2, 1)], None)
        .await
        .expect("the append after the cut");
    assert_eq!(
        store
            .history(id)
            .await
            .expect("history after the cut")
            .len(),
        2
    );
}

/// `open_url` opens PostgreSQL by URL and refuses anything else, saying
/// what it accepts and echoing no more of the URL than its scheme.
pub async fn open_url_accepts_only_postgres(database: Arc<TestDatabase>) {
    let url = database.url();
    let opened = reprise_store::open_url(&url).await;
    if url.starts_with("postgres://") {
        let store = opened.expect("a postgres:// URL opens");
        assert!(store.tenants().await.expect("tenants").is_empty());
        let other_scheme = url.replacen("postgres://", "postgresql://", 1);
        reprise_store::open_url(&other_scheme)
            .await
            .expect("a postgresql:// URL opens");
    } else {
        let error = opened.err().expect("a file path is not a database URL");
        let text = error.to_string();
        assert!(text.contains("postgres://"), "{text}");
        assert!(!text.contains(&url), "{text}");
    }
    let error = reprise_store::open_url("mysql://user:secret@host/db")
        .await
        .err()
        .expect("mysql is refused");
    let text = error.to_string();
    assert!(
        text.contains("`mysql`") && text.contains("postgresql://"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}

/// Starts one execution of the suite's tenant: its row id.
pub async fn started_execution(store: &dyn Store) -> i64 {
    start(store, new_execution(TENANT, "w", "r")).await.id
}

/// A lease long enough that it never passes during a test.
const LONG_LEASE: Duration = Duration::from_secs(600);

async fn join(store: &dyn Store, node: &str, lease: Duration) {
    assert_eq!(
        store.join_nodes(node, lease, None).await.expect("join"),
        Joined::Member,
        "{node} joins"
    );
}

fn is_not_owner(result: Result<(), StoreError>, execution_id: i64) -> bool {
    matches!(result, Err(StoreError::NotOwner { execution_id: id }) if id == execution_id)
}

/// A node owns what it starts and what it claims; an append to anything
/// else, or after the node left, is refused and writes nothing.
pub async fn appends_go_only_to_executions_the_node_owns(database: Arc<TestDatabase>) {
    // Started by a store that never joined (a one-process tool): no owner.
    let tool = store_on(&database).await;
    let unowned = start(tool.as_ref(), new_execution(TENANT, "unowned", "r0")).await;
    assert_eq!(unowned.owner_node, None);
    drop(tool);

    let a = store_on(&database).await;
    join(a.as_ref(), "node-a", LONG_LEASE).await;
    let started = start(a.as_ref(), new_execution(TENANT, "mine", "r1")).await;
    assert_eq!(started.owner_node.as_deref(), Some("node-a"));
    assert!(
        is_not_owner(
            a.append(unowned.id, vec![fired(2, 1)], None).await,
            unowned.id
        ),
        "an unowned execution must be claimed before a node appends to it"
    );
    let claimed = a.claim_orphans(10).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|record| record.id).collect::<Vec<_>>(),
        vec![unowned.id]
    );
    assert_eq!(claimed[0].owner_node.as_deref(), Some("node-a"));
    a.append(unowned.id, vec![fired(2, 1)], None)
        .await
        .expect("append to a claimed execution");
    a.append(started.id, vec![fired(2, 1)], None)
        .await
        .expect("append to a started execution");
    assert!(a.claim_orphans(10).await.expect("claim").is_empty());

    let b = store_on(&database).await;
    match database.backend() {
        // One node at a time: the second process is refused.
        Backend::Sqlite => assert_eq!(
            b.join_nodes("node-b", LONG_LEASE, None)
                .await
                .expect("join"),
            Joined::Refused
        ),
        Backend::Postgres => {
            assert_eq!(
                b.join_nodes("node-b", LONG_LEASE, Some("http://127.0.0.1:9"))
                    .await
                    .expect("join"),
                Joined::Member
            );
            assert_eq!(
                a.peer_api_urls().await.expect("peers"),
                vec!["http://127.0.0.1:9".to_string()],
                "a node sees the others that said where they answer"
            );
            assert!(b.peer_api_urls().await.expect("peers").is_empty());
            assert!(
                b.claim_orphans(10).await.expect("claim").is_empty(),
                "a live node's executions are not orphans"
            );
            assert!(is_not_owner(
                b.append(started.id, vec![fired(3, 2)], None).await,
                started.id
            ));
        }
    }

    // Leaving: the node's executions are orphans at once, and its own
    // appends are refused from then on.
    a.leave_nodes().await.expect("leave");
    assert!(is_not_owner(
        a.append(started.id, vec![fired(3, 2)], None).await,
        started.id
    ));
    assert!(!a.renew_lease(LONG_LEASE).await.expect("renew"));
    let heir = match database.backend() {
        Backend::Sqlite => {
            join(a.as_ref(), "node-a2", LONG_LEASE).await;
            a
        }
        Backend::Postgres => b,
    };
    let claimed = heir.claim_orphans(10).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|record| record.id).collect::<Vec<_>>(),
        vec![unowned.id, started.id],
        "oldest first"
    );
    heir.append(started.id, vec![fired(3, 2)], None)
        .await
        .expect("the heir appends");
    let history = heir.history(started.id).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|recorded| recorded.position)
            .collect::<Vec<_>>(),
        vec![1, 2, 3],
        "the refused appends wrote nothing"
    );
}

/// One node leads a role (the scheduler) at a time; when it leaves, the
/// next node that asks leads it.
pub async fn one_node_leads_each_role(database: Arc<TestDatabase>) {
    let tool = store_on(&database).await;
    assert!(
        tool.lead("scheduler").await.expect("lead"),
        "a store that never joined leads"
    );
    drop(tool);
    let a = store_on(&database).await;
    join(a.as_ref(), "node-a", LONG_LEASE).await;
    assert!(a.lead("scheduler").await.expect("lead"));
    assert!(
        a.lead("scheduler").await.expect("lead"),
        "and keeps leading"
    );
    let heir = match database.backend() {
        Backend::Sqlite => {
            a.leave_nodes().await.expect("leave");
            join(a.as_ref(), "node-a2", LONG_LEASE).await;
            a
        }
        Backend::Postgres => {
            let b = store_on(&database).await;
            join(b.as_ref(), "node-b", LONG_LEASE).await;
            assert!(
                !b.lead("scheduler").await.expect("lead"),
                "a live node leads it"
            );
            assert!(
                b.lead("other-role").await.expect("lead"),
                "roles are separate"
            );
            a.leave_nodes().await.expect("leave");
            assert!(
                !a.lead("scheduler").await.expect("lead"),
                "a node that left leads nothing"
            );
            b
        }
    };
    assert!(
        heir.lead("scheduler").await.expect("lead"),
        "the lead passes on"
    );
}

/// A node that stops renewing loses its executions to one that claims
/// them, and can append nothing more; on PostgreSQL a node whose process
/// (database session) is gone loses them without waiting for its lease.
pub async fn a_dead_nodes_executions_are_claimed(database: Arc<TestDatabase>) {
    let short = Duration::from_millis(300);
    let stalled = store_on(&database).await;
    join(stalled.as_ref(), "stalled", short).await;
    let execution = start(stalled.as_ref(), new_execution(TENANT, "w", "r")).await;
    if database.backend() == Backend::Sqlite {
        // The next process on the file knows every earlier node is dead.
        drop(stalled);
        let next = store_on(&database).await;
        let started = std::time::Instant::now();
        while next
            .join_nodes("next", LONG_LEASE, None)
            .await
            .expect("join")
            != Joined::Member
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the lock outlived its holder"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let claimed = next.claim_orphans(10).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].owner_node.as_deref(), Some("next"));
        return;
    }
    let heir = store_on(&database).await;
    join(heir.as_ref(), "heir", LONG_LEASE).await;
    assert!(heir.claim_orphans(10).await.expect("claim").is_empty());
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let claimed = heir.claim_orphans(10).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|record| record.id).collect::<Vec<_>>(),
        vec![execution.id],
        "the stalled node's lease passed"
    );
    assert!(
        heir.claim_orphans(10).await.expect("claim").is_empty(),
        "claimed once"
    );
    assert!(
        !stalled.renew_lease(short).await.expect("renew"),
        "the stalled node learns it lost its lease"
    );
    assert!(is_not_owner(
        stalled.append(execution.id, vec![fired(2, 1)], None).await,
        execution.id
    ));

    // A process that dies (its session closes) is dead once it misses
    // renewals for half its lease, before the lease passes.
    let lease = Duration::from_secs(4);
    let dying = store_on(&database).await;
    join(dying.as_ref(), "dying", lease).await;
    let orphan = start(dying.as_ref(), new_execution(TENANT, "w2", "r2")).await;
    drop(dying);
    let started = std::time::Instant::now();
    loop {
        let claimed = heir.claim_orphans(10).await.expect("claim");
        if !claimed.is_empty() {
            assert_eq!(claimed[0].id, orphan.id);
            break;
        }
        assert!(
            started.elapsed() < lease,
            "a dead session's executions waited for its lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn continue_as_new_swaps_runs_in_one_transaction(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let first = start(store.as_ref(), new_execution(TENANT, "eternal", "r1")).await;
    assert!(
        store
            .post_message(first.id, MessageKind::Signal, "go", "1", "m1")
            .await
            .expect("post")
    );
    let next_started = continue_as_new(store.as_ref(), first.id, 2, "r2").await;

    let next = store
        .execution(TENANT, "eternal")
        .await
        .expect("read")
        .expect("the id has a newest run");
    assert_eq!(
        (
            next.run_id.as_str(),
            next.status,
            next.workflow_type.as_str()
        ),
        ("r2", ExecutionStatus::Running, "t")
    );
    assert_ne!(next.id, first.id);
    assert_eq!(
        store.history(next.id).await.expect("history"),
        [next_started],
        "the next run starts with an empty history but its start"
    );
    let unfinished: Vec<String> = store
        .unfinished_executions()
        .await
        .expect("unfinished")
        .into_iter()
        .map(|record| record.run_id)
        .collect();
    assert_eq!(unfinished, ["r2"], "only the next run is left to drive");
    let counts = store
        .count_executions(TENANT, &ExecutionFilter::default())
        .await
        .expect("counts");
    assert_eq!((counts.running, counts.continued_as_new), (1, 1));

    // The undelivered signal moved; one posted to the ended run (a race
    // with the continue) lands on the next run too.
    assert!(
        store
            .post_message(first.id, MessageKind::Signal, "go", "2", "m2")
            .await
            .expect("post")
    );
    let moved: Vec<String> = store
        .undelivered_messages(next.id)
        .await
        .expect("mailbox")
        .into_iter()
        .map(|message| message.message_id)
        .collect();
    assert_eq!(moved, ["m1", "m2"]);
    assert!(
        store
            .undelivered_messages(first.id)
            .await
            .expect("mailbox")
            .is_empty()
    );

    // The next run took the ended run's place in the running count: with
    // a limit of 2, one more start fits and the one after is refused.
    let limited = |workflow_id: &str| NewExecution {
        running_max: 2,
        ..new_execution(TENANT, workflow_id, workflow_id)
    };
    start(store.as_ref(), limited("other")).await;
    assert_eq!(
        store
            .start_execution(limited("third"))
            .await
            .expect("start"),
        StartOutcome::AtCapacity { running: 2 }
    );
}

pub async fn search_attributes_are_stored_filtered_and_carried_on(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let with = |workflow_id: &str, attributes: Option<&str>| NewExecution {
        search_attributes: attributes.map(str::to_string),
        ..new_execution(TENANT, workflow_id, workflow_id)
    };
    let gold = start(
        store.as_ref(),
        with("gold", Some(r#"{"tier":"gold","n":5}"#)),
    )
    .await;
    assert_eq!(
        gold.search_attributes.as_deref(),
        Some(r#"{"tier":"gold","n":5}"#)
    );
    start(store.as_ref(), with("silver", Some(r#"{"tier":"silver"}"#))).await;
    start(store.as_ref(), with("plain", None)).await;
    let clock = RecordedEvent {
        position: 2,
        recorded_at_ms: 2,
        event: Event::ClockRead {
            seq: 1,
            clock: Clock::Wall,
            value_ns: 1,
        },
    };
    store
        .append_setting_attributes(gold.id, vec![clock], r#"{"tier":"gold","n":6}"#.into())
        .await
        .expect("upsert");

    let matching = |key: &str, value: &str| {
        let store = store.clone();
        let filter = ExecutionFilter {
            search_attribute: Some((key.to_string(), value.to_string())),
            limit: 100,
            ..ExecutionFilter::default()
        };
        async move {
            let listed: Vec<String> = store
                .list_executions(TENANT, &filter)
                .await
                .expect("list")
                .into_iter()
                .map(|record| record.workflow_id)
                .collect();
            let counts = store
                .count_executions(TENANT, &filter)
                .await
                .expect("count");
            assert_eq!(listed.len() as u64, counts.running, "list and count agree");
            listed
        }
    };
    assert_eq!(matching("tier", r#""gold""#).await, ["gold"]);
    assert_eq!(matching("tier", r#""silver""#).await, ["silver"]);
    assert_eq!(matching("n", "6").await, ["gold"], "the upserted value");
    assert_eq!(
        matching("n", "6.0").await,
        ["gold"],
        "numbers compare by value"
    );
    assert!(
        matching("n", r#""6""#).await.is_empty(),
        "a string is not a number"
    );
    assert!(matching("n", "5").await.is_empty(), "the old value is gone");
    assert!(matching("tier", r#""bronze""#).await.is_empty());
    assert!(matching("absent", r#""gold""#).await.is_empty());
    let history = store.history(gold.id).await.expect("history");
    assert_eq!(history.len(), 2, "the upsert's event was appended with it");

    // A continue-as-new carries them to the next run.
    let end = RecordedEvent {
        position: 3,
        recorded_at_ms: 3,
        event: Event::WorkflowContinuedAsNew {
            input: "{}".into(),
            next_run_id: "gold-2".into(),
            module_digest: DIGEST.into(),
        },
    };
    let finish = Finish {
        next_run: Some(Box::new(NextRun {
            run_id: "gold-2".into(),
            module_digest: DIGEST.into(),
            started: started(),
        })),
        ..Finish::new(ExecutionStatus::ContinuedAsNew, "null".into())
    };
    store
        .append(gold.id, vec![end], Some(finish))
        .await
        .expect("continue as new");
    let next = store
        .execution(TENANT, "gold")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(next.run_id, "gold-2");
    assert_eq!(
        next.search_attributes.as_deref(),
        Some(r#"{"tier":"gold","n":6}"#)
    );
}

/// Schedules: created within the tenant's limit, replaced only at the
/// version read (the scheduler and the API both write them), scoped to
/// their tenant, deleted once.
pub async fn schedules_are_limited_versioned_and_scoped(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let created = store
        .create_schedule(TENANT, "nightly", r#"{"n":1}"#, 2)
        .await
        .expect("create");
    assert_eq!(created, ScheduleWrite::Written);
    let again = store
        .create_schedule(TENANT, "nightly", r#"{"n":9}"#, 2)
        .await
        .expect("create again");
    assert_eq!(again, ScheduleWrite::Conflict, "the id exists");
    store
        .create_schedule(TENANT, "hourly", "{}", 2)
        .await
        .expect("create");
    let over = store
        .create_schedule(TENANT, "third", "{}", 2)
        .await
        .expect("create");
    assert_eq!(over, ScheduleWrite::LimitReached);
    store
        .create_schedule("globex", "nightly", "{}", 2)
        .await
        .expect("another tenant's");

    let ours = store.schedules(Some(TENANT)).await.expect("list");
    let ids: Vec<&str> = ours.iter().map(|s| s.schedule_id.as_str()).collect();
    assert_eq!(ids, ["hourly", "nightly"], "by id, this tenant's only");
    assert_eq!(store.schedules(None).await.expect("all").len(), 3);

    let nightly = ours
        .into_iter()
        .find(|s| s.schedule_id == "nightly")
        .expect("nightly");
    assert_eq!(
        (nightly.document.as_str(), nightly.version),
        (r#"{"n":1}"#, 1)
    );
    let replaced = store
        .replace_schedule(&nightly, r#"{"n":2}"#)
        .await
        .expect("replace");
    assert_eq!(replaced, ScheduleWrite::Written);
    let stale = store
        .replace_schedule(&nightly, r#"{"n":3}"#)
        .await
        .expect("replace a stale read");
    assert_eq!(stale, ScheduleWrite::Conflict, "version 1 is gone");
    let now = store.schedules(Some(TENANT)).await.expect("list");
    let nightly = now
        .iter()
        .find(|s| s.schedule_id == "nightly")
        .expect("nightly");
    assert_eq!(
        (nightly.document.as_str(), nightly.version),
        (r#"{"n":2}"#, 2)
    );

    assert_eq!(
        store
            .delete_schedule(TENANT, "nightly")
            .await
            .expect("delete"),
        ScheduleWrite::Written
    );
    assert_eq!(
        store
            .delete_schedule(TENANT, "nightly")
            .await
            .expect("delete"),
        ScheduleWrite::Conflict
    );
    assert_eq!(
        store.schedules(Some("globex")).await.expect("list").len(),
        1
    );
}

/// A tenant keeps at most `modules_max` modules; deleting one makes room,
/// and a module in use (bound to a type, or running) is kept.
pub async fn modules_are_limited_and_deleted(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    for digest in ["m1", "m2", "m3"] {
        store
            .put_module(digest, "workflow", digest.as_bytes())
            .await
            .expect("module");
    }
    assert!(
        store
            .put_tenant_module("acme", "m1", "workflow", 2)
            .await
            .expect("m1")
    );
    assert!(
        store
            .put_tenant_module("acme", "m2", "workflow", 2)
            .await
            .expect("m2")
    );
    assert!(
        !store
            .put_tenant_module("acme", "m3", "workflow", 2)
            .await
            .expect("m3"),
        "a third module is past the limit"
    );
    assert!(
        store
            .put_tenant_module("acme", "m1", "workflow", 2)
            .await
            .expect("m1 again"),
        "uploading a module the tenant has again does not count"
    );
    assert!(
        store
            .put_tenant_module("globex", "m3", "workflow", 2)
            .await
            .expect("globex"),
        "the limit is per tenant"
    );
    assert_eq!(
        store.tenant_modules("acme").await.expect("modules").len(),
        2
    );

    store
        .put_workflow_type("acme", "order", "m1", TYPES)
        .await
        .expect("bind");
    assert_eq!(
        store
            .delete_tenant_module("acme", "m1")
            .await
            .expect("delete"),
        ModuleDeletion::BoundToType("order".into())
    );
    let running = NewExecution {
        module_digest: "m2".into(),
        ..new_execution("acme", "on-m2", "r1")
    };
    let execution = start(store.as_ref(), running).await;
    assert_eq!(
        store
            .delete_tenant_module("acme", "m2")
            .await
            .expect("delete"),
        ModuleDeletion::Running(1)
    );
    assert_eq!(
        store
            .delete_tenant_module("acme", "m3")
            .await
            .expect("delete"),
        ModuleDeletion::NotFound,
        "another tenant's module is not found"
    );
    assert_eq!(
        store
            .delete_tenant_module("acme", "nothing")
            .await
            .expect("delete"),
        ModuleDeletion::NotFound
    );

    finish(store.as_ref(), execution.id, ExecutionStatus::Completed).await;
    assert_eq!(
        store
            .delete_tenant_module("acme", "m2")
            .await
            .expect("delete"),
        ModuleDeletion::Deleted
    );
    assert_eq!(
        store.module("m2").await.expect("module").as_deref(),
        Some(&b"m2"[..]),
        "a history names m2: its bytes stay"
    );
    assert!(
        store
            .put_tenant_module("acme", "m3", "workflow", 2)
            .await
            .expect("m3"),
        "the deletion made room"
    );
    store
        .put_workflow_type("acme", "order", "m3", TYPES)
        .await
        .expect("rebind");
    assert_eq!(
        store
            .delete_tenant_module("acme", "m1")
            .await
            .expect("delete"),
        ModuleDeletion::Deleted
    );
    assert_eq!(
        store.module("m1").await.expect("module"),
        None,
        "no tenant, type or execution uses m1: its bytes are gone"
    );
    let left: Vec<String> = store
        .tenant_modules("acme")
        .await
        .expect("modules")
        .into_iter()
        .map(|module| module.digest)
        .collect();
    assert_eq!(left, ["m3"]);

    // Two stores (on PostgreSQL, two nodes) recording at once keep the
    // limit too.
    let stores = [store.clone(), database.open().await];
    let digests: Vec<String> = (0..8).map(|index| format!("c{index}")).collect();
    for digest in &digests {
        store
            .put_module(digest, "workflow", digest.as_bytes())
            .await
            .expect("module");
    }
    let puts = digests.into_iter().enumerate().map(|(index, digest)| {
        let store = stores[index % 2].clone();
        async move {
            store
                .put_tenant_module("initech", &digest, "workflow", 3)
                .await
                .expect("put")
        }
    });
    let recorded = spawn_all(puts).await;
    assert_eq!(
        recorded.iter().filter(|recorded| **recorded).count(),
        3,
        "{recorded:?}"
    );
    assert_eq!(
        store
            .tenant_modules("initech")
            .await
            .expect("modules")
            .len(),
        3
    );
}

pub async fn workflow_types_are_limited_and_deleted(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    store
        .put_module("other", "workflow", b"other")
        .await
        .expect("module");
    for name in ["a", "b"] {
        assert!(
            store
                .put_workflow_type("acme", name, DIGEST, 2)
                .await
                .expect("bind")
        );
    }
    assert!(
        !store
            .put_workflow_type("acme", "c", DIGEST, 2)
            .await
            .expect("bind"),
        "a third type is past the limit"
    );
    assert!(
        store
            .put_workflow_type("acme", "a", "other", 2)
            .await
            .expect("rebind"),
        "binding a held type again does not count"
    );
    assert!(
        store
            .put_workflow_type("globex", "c", DIGEST, 2)
            .await
            .expect("bind"),
        "another tenant's types do not count"
    );
    assert_eq!(
        store.workflow_type("acme", "a").await.expect("type"),
        Some("other".to_string())
    );
    assert_eq!(store.workflow_type("acme", "c").await.expect("type"), None);
    assert_eq!(
        store.workflow_types(Some("acme")).await.expect("types"),
        [
            ("acme".to_string(), "a".to_string(), "other".to_string()),
            ("acme".to_string(), "b".to_string(), DIGEST.to_string()),
        ]
    );

    assert!(
        store
            .delete_workflow_type("acme", "b")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_workflow_type("acme", "b")
            .await
            .expect("delete"),
        "deleted once"
    );
    assert!(
        !store
            .delete_workflow_type("globex", "a")
            .await
            .expect("delete"),
        "another tenant's type of that name does not exist"
    );
    assert!(
        store
            .put_workflow_type("acme", "c", DIGEST, 2)
            .await
            .expect("bind"),
        "the deletion made room"
    );

    // Two stores (on PostgreSQL, two nodes) binding at once keep the limit.
    let stores = [store.clone(), database.open().await];
    let binds = (0..8).map(|index| {
        let store = stores[index % 2].clone();
        async move {
            store
                .put_workflow_type("initech", &format!("t{index}"), DIGEST, 3)
                .await
                .expect("bind")
        }
    });
    let bound = spawn_all(binds).await;
    assert_eq!(bound.iter().filter(|bound| **bound).count(), 3, "{bound:?}");
    assert_eq!(
        store
            .workflow_types(Some("initech"))
            .await
            .expect("types")
            .len(),
        3
    );
}

/// Appends `count` timer events after the history's end.
async fn append_fired(store: &dyn Store, id: i64, count: u64) {
    let next = store.history(id).await.expect("history").len() as u64 + 1;
    let events = (0..count).map(|offset| fired(next + offset, offset + 1));
    store
        .append(id, events.collect(), None)
        .await
        .expect("append");
}

/// Sweeps `tenant` until nothing is due, never more than `rows_max` rows
/// a call; the executions deleted in all.
async fn sweep_all(store: &dyn Store, tenant: &str, before_ms: i64, rows_max: u32) -> u32 {
    let (mut executions, mut cursor) = (0, None);
    for _ in 0..1_000 {
        let sweep = store
            .sweep_finished(tenant, before_ms, cursor, rows_max, None)
            .await
            .expect("sweep");
        cursor = sweep.cursor;
        assert!(
            sweep.rows <= u64::from(rows_max),
            "one sweep deleted {} rows, over its budget of {rows_max}",
            sweep.rows
        );
        executions += sweep.executions;
        if !sweep.more {
            return executions;
        }
    }
    panic!("the sweep never ended");
}

/// Finished executions past retention go with every row they own (and
/// module bytes nothing names any more), a bounded number of rows at a
/// time; running executions, children of running parents, younger
/// executions and other tenants' stay.
pub async fn finished_executions_are_swept_after_retention(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let store = store.as_ref();
    store
        .put_module("retired", "workflow", b"retired")
        .await
        .expect("module");
    // The oldest finished execution is a child whose parent runs: each
    // sweep call steps over it.
    let parent = start(store, new_execution(TENANT, "parent", "parent")).await;
    let child = start(
        store,
        NewExecution {
            parent_id: Some(parent.id),
            ..new_execution(TENANT, "parent/child-1", "child")
        },
    )
    .await;
    finish(store, child.id, ExecutionStatus::Completed).await;
    let done = start(
        store,
        NewExecution {
            module_digest: "retired".into(),
            ..new_execution(TENANT, "done", "done")
        },
    )
    .await;
    assert!(
        store
            .post_message(done.id, MessageKind::Signal, "go", "{}", "m1")
            .await
            .expect("post")
    );
    let line = GuestLogLine {
        id: 0,
        execution_id: done.id,
        seq: 1,
        level: "info".into(),
        source: "log".into(),
        message: "hello".into(),
        logged_at_ms: 1,
    };
    store
        .append_guest_logs(vec![line.clone(), line])
        .await
        .expect("log");
    append_fired(store, done.id, 40).await;
    store
        .set_span_watermarks(vec![(done.id, 41)])
        .await
        .expect("watermark");
    finish(store, done.id, ExecutionStatus::Completed).await;
    let failed = start(store, new_execution(TENANT, "failed", "failed")).await;
    finish(store, failed.id, ExecutionStatus::Failed).await;
    let running = start(store, new_execution(TENANT, "running", "running")).await;
    let elsewhere = start(store, new_execution("globex", "done", "g")).await;
    finish(store, elsewhere.id, ExecutionStatus::Completed).await;

    assert_eq!(
        store
            .sweep_finished(TENANT, 0, None, 100, None)
            .await
            .expect("sweep"),
        Sweep::default(),
        "nothing finished before the epoch"
    );
    let after_all = i64::MAX;
    // A deletion on request: one workflow id's runs, and only those.
    let one_id = store
        .sweep_finished(TENANT, after_all, None, 100, Some("failed"))
        .await
        .expect("sweep one workflow id");
    assert_eq!((one_id.executions, one_id.more), (1, false), "{one_id:?}");
    let kept_child = store
        .sweep_finished(TENANT, after_all, None, 100, Some("parent/child-1"))
        .await
        .expect("sweep a kept child");
    assert_eq!(
        kept_child.executions, 0,
        "a child whose parent runs is kept on request too"
    );
    assert!(
        store
            .execution(TENANT, "done")
            .await
            .expect("read")
            .is_some(),
        "another workflow id stays"
    );
    assert_eq!(sweep_all(store, TENANT, after_all, 7).await, 1);
    for (workflow_id, id) in [("done", done.id), ("failed", failed.id)] {
        assert!(
            store
                .execution(TENANT, workflow_id)
                .await
                .expect("read")
                .is_none()
        );
        assert!(store.history(id).await.expect("history").is_empty());
    }
    assert!(
        store
            .guest_logs(done.id, 0, 10)
            .await
            .expect("logs")
            .is_empty()
    );
    assert_eq!(store.span_watermark(done.id).await.expect("watermark"), 0);
    // What arrives late for a swept execution is dropped, not an error
    // that would sink the exporter's or the logger's writes.
    store
        .set_span_watermarks(vec![(done.id, 50), (running.id, 1)])
        .await
        .expect("a swept execution's mark is dropped");
    assert_eq!(store.span_watermark(done.id).await.expect("watermark"), 0);
    assert_eq!(
        store.span_watermark(running.id).await.expect("watermark"),
        1
    );
    store
        .append_guest_logs(vec![GuestLogLine {
            id: 0,
            execution_id: done.id,
            seq: 2,
            level: "info".into(),
            source: "log".into(),
            message: "late".into(),
            logged_at_ms: 2,
        }])
        .await
        .expect("a swept execution's line is dropped");
    assert!(
        store
            .guest_logs(done.id, 0, 10)
            .await
            .expect("logs")
            .is_empty()
    );
    assert!(
        store
            .undelivered_messages(done.id)
            .await
            .expect("mailbox")
            .is_empty()
    );
    assert_eq!(
        store.module("retired").await.expect("module"),
        None,
        "no history names the retired module any more"
    );
    assert!(store.module(DIGEST).await.expect("module").is_some());
    for (tenant, workflow_id) in [
        (TENANT, "running"),
        (TENANT, "parent"),
        (TENANT, "parent/child-1"),
        ("globex", "done"),
    ] {
        assert!(
            store
                .execution(tenant, workflow_id)
                .await
                .expect("read")
                .is_some(),
            "{tenant}/{workflow_id} is kept"
        );
    }
    assert_eq!(store.history(child.id).await.expect("history").len(), 2);
    let kept = store
        .execution(TENANT, "parent/child-1")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        store
            .sweep_finished(TENANT, after_all, None, 100, None)
            .await
            .expect("sweep"),
        Sweep {
            cursor: Some(SweepCursor {
                finished_at_ms: kept.updated_at_ms,
                id: kept.id,
            }),
            ..Sweep::default()
        },
        "the call steps over the kept child and says where it got to"
    );

    // Once the parent has finished, it and its child go.
    finish(store, parent.id, ExecutionStatus::Completed).await;
    assert_eq!(sweep_all(store, TENANT, after_all, 1).await, 2);
    assert!(
        store
            .execution(TENANT, "parent/child-1")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .execution(TENANT, "running")
            .await
            .expect("read")
            .is_some()
    );
    // A swept id starts afresh.
    start(store, new_execution(TENANT, "done", "done-again")).await;
}

/// The count cutoff: when the `keep`-th newest finished execution of a
/// tenant finished; sweeping before it leaves `keep`.
pub async fn the_count_cutoff_keeps_the_newest_finished_executions(database: Arc<TestDatabase>) {
    let store = store_on(&database).await;
    let store = store.as_ref();
    for (index, finished_at_ms) in [300, 100, 500, 200, 400].into_iter().enumerate() {
        let record = start(store, new_execution(TENANT, &format!("w{index}"), "r")).await;
        let end = RecordedEvent {
            position: 2,
            recorded_at_ms: 2,
            event: Event::WorkflowCompleted {
                output: "null".into(),
            },
        };
        let finish = Finish {
            finished_at_ms,
            ..Finish::new(ExecutionStatus::Completed, "null".into())
        };
        store
            .append(record.id, vec![end], Some(finish))
            .await
            .expect("finish");
    }
    start(store, new_execution(TENANT, "running", "r")).await;
    let other = start(store, new_execution("globex", "w", "r")).await;
    finish(store, other.id, ExecutionStatus::Completed).await;

    let cutoff = |keep| store.finished_count_cutoff_ms(TENANT, keep);
    assert_eq!(cutoff(2).await.expect("cutoff"), Some(400));
    assert_eq!(cutoff(5).await.expect("cutoff"), Some(100));
    assert_eq!(
        cutoff(6).await.expect("cutoff"),
        None,
        "running ones do not count"
    );
    assert_eq!(sweep_all(store, TENANT, 400, 100).await, 3);
    assert_eq!(cutoff(2).await.expect("cutoff"), Some(400));
    assert_eq!(cutoff(3).await.expect("cutoff"), None);
    for (workflow_id, kept) in [("w0", false), ("w2", true), ("w4", true), ("running", true)] {
        assert_eq!(
            store
                .execution(TENANT, workflow_id)
                .await
                .expect("read")
                .is_some(),
            kept,
            "{workflow_id}"
        );
    }
}
