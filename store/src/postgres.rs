//! The PostgreSQL backend: the same contract as SQLite's, for a database
//! several processes can share.
//!
//! Reads go through a bounded connection pool. Every write goes to one
//! writer task that owns its own connection: it takes all the write
//! requests that are waiting and commits them in one transaction, the
//! events of the whole batch in multi-row inserts (`UNNEST` of arrays: one
//! prepared statement whatever the row count). If a request fails, the
//! batch is redone with a savepoint per request, so only that request
//! fails. `synchronous_commit` is set on for every connection: a commit
//! returns once it is durable, whatever the server's default.
//!
//! Where SQLite relies on its single writer lock (`BEGIN IMMEDIATE`), this
//! backend takes row locks, so processes sharing the database stay
//! correct: a start locks its tenant's `running_executions` row before it
//! looks at the workflow id and the limit; `terminate` locks the execution
//! row; the events primary key refuses a second write at a position.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions, PgRow,
};
use sqlx::{Connection, Row};
use tokio::sync::mpsc;

use super::writes::{
    CommitCounters, Fence, GROUP_COMMIT_REQUESTS_MAX, NodeCell, SWEPT_TABLES, WriteOp, WriteQueue,
    WriteReply, WriteRequest, appended_executions, created_record, lease_ms, now_ms,
    page_positions, schedule_write, start_refused_by, terminated_event, terminated_result,
};
use super::{
    CommitStats, ExecutionFilter, ExecutionRecord, ExecutionStatus, Finish, GUEST_LOG_LINES_MAX,
    GuestLogLine, Joined, MAILBOX_UNDELIVERED_MAX, MailboxActivity, MailboxCursor, MailboxMessage,
    MessageKind, ModuleDeletion, NewExecution, SWEEP_EXECUTIONS_MAX, ScheduleWrite, StartOutcome,
    StatusCounts, Store, StoreError, StoreResult, StoredSchedule, Sweep, SweepCursor, TenantModule,
    TenantRecord,
};
use reprise_journal::RecordedEvent;

/// The columns [`execution_from_row`] reads, in one place for every query.
macro_rules! execution_columns {
    () => {
        "id, tenant, workflow_id, run_id, workflow_type, module_digest, status, result, created_at_ms, updated_at_ms, search_attributes, owner_node"
    };
}

/// Deletes module `$1`'s bytes if nothing names it any more.
const DELETE_UNUSED_MODULE: &str = "DELETE FROM modules WHERE digest = $1
   AND NOT EXISTS (SELECT 1 FROM tenant_modules WHERE digest = $1)
   AND NOT EXISTS (SELECT 1 FROM workflow_types WHERE digest = $1)
   AND NOT EXISTS (SELECT 1 FROM executions WHERE module_digest = $1)";

/// Read connections; the writer has one more of its own.
const READ_CONNECTIONS_MAX: u32 = 4;
/// Ends an execution (a finishing append, a termination): its status,
/// result and time.
const SET_ENDED: &str =
    "UPDATE executions SET status = $1, result = $2, updated_at_ms = $3 WHERE id = $4";
/// How long a read waits for a pooled connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the writer waits to (re)connect before failing its batch.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server cancels any one statement that runs longer (a stuck lock, a
/// runaway scan) rather than hold a connection forever.
const STATEMENT_TIMEOUT_MS: u64 = 60_000;
/// The server ends a session idle inside a transaction this long.
const IDLE_IN_TRANSACTION_MS: u64 = 5_000;
/// Rows of one multi-row insert or upsert (events, watermarks, log lines).
/// Arrays have no parameter limit; this bounds one statement's size.
const ROWS_PER_STATEMENT_MAX: usize = 5000;

pub struct PostgresStore {
    reads: PgPool,
    writes: WriteQueue,
    stats: Arc<CommitCounters>,
    options: PgConnectOptions,
    node: NodeCell,
    /// The session holding the node's advisory lock (keyed by its id)
    /// while it is a member: when the process dies its session ends, the
    /// lock goes with it, and other nodes claim its executions at once
    /// rather than when its lease passes.
    node_session: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
}

/// The database's clock in milliseconds: leases are compared on it, so
/// nodes' own clocks need not agree.
const DATABASE_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

impl PostgresStore {
    /// Connects to the database a `postgres://…` URL names and migrates it.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        let options = PgConnectOptions::from_str(url)
            .map_err(StoreError::database("parsing the PostgreSQL URL"))?;
        PostgresStore::connect_with(options).await
    }

    /// Connects with explicit options and migrates the database.
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<PostgresStore> {
        let options = options.application_name("reprise").options([
            // Durable commits are the journal's promise; a server whose
            // default is `off` must not weaken it silently.
            ("synchronous_commit", "on".to_string()),
            ("statement_timeout", STATEMENT_TIMEOUT_MS.to_string()),
            // A process stopped (SIGSTOP) inside a transaction would hold
            // its node row's lock and keep others from taking over.
            (
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_MS.to_string(),
            ),
        ]);
        let mut writer = connect_writer(&options).await?;
        // sqlx takes an advisory lock while migrating: processes starting
        // together on one database migrate it once.
        sqlx::migrate!("./migrations/postgres")
            .run(&mut writer)
            .await?;
        let reads = PgPoolOptions::new()
            .max_connections(READ_CONNECTIONS_MAX)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::database("opening PostgreSQL read connections"))?;
        let (writes, queue) = WriteQueue::new();
        let stats = Arc::new(CommitCounters::default());
        let node = NodeCell::default();
        tokio::spawn(run_writer(
            options.clone(),
            writer,
            queue,
            stats.clone(),
            node.clone(),
        ));
        Ok(PostgresStore {
            reads,
            writes,
            stats,
            options,
            node,
            node_session: tokio::sync::Mutex::new(None),
        })
    }

    /// Commits and write requests since the store was opened.
    pub fn commit_stats(&self) -> CommitStats {
        self.stats.snapshot()
    }

    /// Takes the node's advisory lock again on a new session if its
    /// session was cut (the database restarted).
    async fn hold_node_lock(&self, node_id: &str) -> StoreResult<()> {
        let mut held = self.node_session.lock().await;
        if let Some(session) = held.as_mut()
            && sqlx::query("SELECT 1").execute(&mut *session).await.is_ok()
        {
            return Ok(());
        }
        let mut session = connect_writer(&self.options).await?;
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(node_id)
            .execute(&mut session)
            .await
            .map_err(StoreError::database("locking this node's session again"))?;
        *held = Some(session);
        Ok(())
    }
}

async fn connect_writer(options: &PgConnectOptions) -> StoreResult<PgConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(connected) => connected.map_err(StoreError::database("connecting to PostgreSQL")),
        Err(_) => Err(StoreError::Database {
            doing: "connecting to PostgreSQL",
            source: sqlx::Error::PoolTimedOut,
        }),
    }
}

/// The group-commit loop: waits for one request, then takes every request
/// already queued, and commits them all in one transaction.
async fn run_writer(
    options: PgConnectOptions,
    connection: PgConnection,
    mut queue: mpsc::Receiver<WriteRequest>,
    stats: Arc<CommitCounters>,
    node: NodeCell,
) {
    let mut connection = Some(connection);
    let mut batch = Vec::with_capacity(GROUP_COMMIT_REQUESTS_MAX);
    while queue.recv_many(&mut batch, GROUP_COMMIT_REQUESTS_MAX).await > 0 {
        let outcomes = commit_reconnecting(&mut connection, &options, &batch, node.get()).await;
        stats.record_commit(batch.len());
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            // The requester may have gone away (its task ended); nothing to do.
            let _ = request.reply.send(outcome);
        }
    }
}

/// Commits a batch on the writer's connection. A connection that failed
/// is dropped and the next batch opens a new one (the server may have
/// restarted). When a transaction could not even begin, nothing of the
/// batch ran: it is tried once more on a fresh connection, so a
/// connection that died while idle costs no request.
async fn commit_reconnecting(
    connection: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    batch: &[WriteRequest],
    node: Option<Arc<str>>,
) -> Vec<StoreResult<WriteReply>> {
    let fail_all = |text: String| {
        batch
            .iter()
            .map(|_| Err(batch_failed(text.clone())))
            .collect()
    };
    let mut retried = false;
    loop {
        let mut open = match connection.take() {
            Some(open) => open,
            None => match connect_writer(options).await {
                Ok(open) => open,
                Err(error) => return fail_all(error.to_string()),
            },
        };
        match commit_batch(&mut open, batch, &node).await {
            Ok(outcomes) => {
                *connection = Some(open);
                return outcomes;
            }
            Err(failure) if !failure.began && !retried => retried = true,
            Err(failure) => return fail_all(failure.text),
        }
    }
}

/// Why a batch failed as a whole. `began` is false when its transaction
/// could not begin: nothing of it is in the database.
struct BatchFailure {
    began: bool,
    text: String,
}

fn batch_failed(text: String) -> StoreError {
    StoreError::Database {
        doing: "committing a group of writes",
        source: sqlx::Error::Io(std::io::Error::other(text)),
    }
}

/// Applies a batch in one transaction. The fast path runs every request
/// straight; if one fails (rare: an invariant violation, a lost race with
/// another process), the transaction is rolled back and redone with a
/// savepoint per request, so that only the failing requests fail. `Err`
/// means the connection or the transaction's outcome is in doubt: every
/// request fails and the connection is replaced.
async fn commit_batch(
    connection: &mut PgConnection,
    batch: &[WriteRequest],
    node: &Option<Arc<str>>,
) -> Result<Vec<StoreResult<WriteReply>>, BatchFailure> {
    let outcomes = run_transaction(connection, batch, node, false).await?;
    if outcomes.len() == batch.len() && outcomes.iter().all(Result::is_ok) {
        return Ok(outcomes);
    }
    run_transaction(connection, batch, node, true).await
}

/// Which of the batch's appended executions `node` owns, holding a share
/// lock on the node's row until the transaction ends: a claim that deletes
/// the row (the node's lease passed) waits for this batch, or this batch
/// finds the row gone and owns nothing.
async fn fence(
    connection: &mut PgConnection,
    batch: &[WriteRequest],
    node: &Option<Arc<str>>,
) -> StoreResult<Fence> {
    let appended = appended_executions(batch);
    let owned = match node {
        Some(node) if !appended.is_empty() => sqlx::query_scalar(
            "WITH me AS (SELECT node_id FROM nodes WHERE node_id = $2 FOR SHARE)
             SELECT e.id FROM executions e JOIN me ON e.owner_node = me.node_id
             WHERE e.id = ANY($1)",
        )
        .bind(&appended)
        .bind(node.as_ref())
        .fetch_all(&mut *connection)
        .await
        .map_err(StoreError::database(
            "checking which executions this node owns",
        ))?
        .into_iter()
        .collect(),
        _ => Default::default(),
    };
    Ok(Fence {
        node: node.clone(),
        owned,
    })
}

/// Runs the batch inside `BEGIN … COMMIT`. Without `isolate`, all
/// requests' events go in together and the first failure rolls everything
/// back (the outcomes then stop at it). With it, each request gets a
/// savepoint of its own.
async fn run_transaction(
    connection: &mut PgConnection,
    batch: &[WriteRequest],
    node: &Option<Arc<str>>,
    isolate: bool,
) -> Result<Vec<StoreResult<WriteReply>>, BatchFailure> {
    execute(connection, "BEGIN")
        .await
        .map_err(|text| BatchFailure { began: false, text })?;
    let began = |text| BatchFailure { began: true, text };
    let fence = match fence(connection, batch, node).await {
        Ok(fence) => fence,
        Err(error) => {
            execute(connection, "ROLLBACK").await.map_err(began)?;
            return Err(began(error.to_string()));
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    for request in batch {
        let outcome = if isolate {
            apply_in_savepoint(connection, &request.op, &fence)
                .await
                .map_err(began)?
        } else {
            apply(connection, &request.op, &fence, &mut events).await
        };
        let failed = outcome.is_err();
        outcomes.push(outcome);
        if failed && !isolate {
            execute(connection, "ROLLBACK").await.map_err(began)?;
            return Ok(outcomes);
        }
    }
    if let Err(error) = insert_events(connection, &events).await {
        execute(connection, "ROLLBACK").await.map_err(began)?;
        outcomes.push(Err(error));
        return Ok(outcomes);
    }
    // PostgreSQL answers COMMIT of an aborted transaction with a rollback,
    // not an error; every failure above was rolled back (to its savepoint),
    // so reaching here the transaction is healthy.
    execute(connection, "COMMIT").await.map_err(began)?;
    Ok(outcomes)
}

async fn execute(connection: &mut PgConnection, statement: &str) -> Result<(), String> {
    sqlx::query(statement)
        .execute(&mut *connection)
        .await
        .map(|_| ())
        .map_err(|error| format!("{statement} failed: {error}"))
}

/// One request inside its own savepoint. The outer `Err` means the
/// savepoint itself could not be closed: the transaction is unusable.
async fn apply_in_savepoint(
    connection: &mut PgConnection,
    op: &WriteOp,
    fence: &Fence,
) -> Result<StoreResult<WriteReply>, String> {
    execute(connection, "SAVEPOINT request").await?;
    let mut events = Vec::new();
    let outcome = match apply(connection, op, fence, &mut events).await {
        Ok(reply) => insert_events(connection, &events).await.map(|()| reply),
        Err(error) => Err(error),
    };
    if outcome.is_ok() {
        execute(connection, "RELEASE SAVEPOINT request").await?;
    } else {
        execute(connection, "ROLLBACK TO SAVEPOINT request").await?;
        execute(connection, "RELEASE SAVEPOINT request").await?;
    }
    Ok(outcome)
}

/// What a tenant keeps a bounded number of.
#[derive(Clone, Copy)]
enum TenantCount {
    Schedules = 1,
    Modules = 2,
    WorkflowTypes = 3,
}

/// Serializes, across every node, the writes that count a tenant's rows
/// against a limit before inserting one: under READ COMMITTED two nodes
/// would count the same rows and both insert. A two-key advisory lock,
/// held to the end of the transaction; the nodes' session locks use the
/// one-key space, which is distinct.
async fn lock_tenant_count(
    connection: &mut PgConnection,
    count: TenantCount,
    tenant: &str,
) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(count as i32)
        .bind(tenant)
        .execute(connection)
        .await
        .map_err(StoreError::database("locking a tenant's count"))?;
    Ok(())
}

/// Applies one request. Its events are not inserted here but pushed to
/// `events`, so the caller can insert a whole batch's events together.
async fn apply<'op>(
    connection: &mut PgConnection,
    op: &'op WriteOp,
    fence: &Fence,
    events: &mut Vec<(i64, &'op RecordedEvent)>,
) -> StoreResult<WriteReply> {
    match op {
        WriteOp::PutModule {
            digest,
            kind,
            bytes,
        } => {
            sqlx::query(
                "INSERT INTO modules (digest, kind, bytes, created_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(kind)
            .bind(bytes)
            .bind(now_ms())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("storing a module"))?;
            Ok(WriteReply::Done)
        }
        WriteOp::Start(new) => start(connection, new, fence.node.as_deref(), events).await,
        WriteOp::Append {
            execution_id,
            events: appended,
            finish,
            delivers,
            search_attributes,
        } => {
            fence.check(*execution_id)?;
            events.extend(appended.iter().map(|recorded| (*execution_id, recorded)));
            if let Some(attributes) = search_attributes {
                sqlx::query("UPDATE executions SET search_attributes = $1 WHERE id = $2")
                    .bind(attributes)
                    .bind(*execution_id)
                    .execute(&mut *connection)
                    .await
                    .map_err(StoreError::database("setting search attributes"))?;
            }
            if let Some(message) = delivers {
                let position = appended.last().map(|recorded| recorded.position as i64);
                // Under concurrency the second deliverer waits for the first
                // one's row lock, then finds the row delivered: 0 rows.
                let marked = sqlx::query(
                    "UPDATE mailbox SET delivered_position = $1
                     WHERE id = $2 AND execution_id = $3 AND delivered_position IS NULL",
                )
                .bind(position)
                .bind(*message)
                .bind(*execution_id)
                .execute(&mut *connection)
                .await
                .map_err(StoreError::database("delivering a message"))?;
                if marked.rows_affected() != 1 {
                    return Err(StoreError::AlreadyDelivered {
                        execution_id: *execution_id,
                        id: *message,
                    });
                }
            }
            // The row changes only when the execution finishes; the history
            // says everything else.
            if let Some(finish) = finish {
                sqlx::query(SET_ENDED)
                    .bind(finish.status.as_str())
                    .bind(&finish.result)
                    .bind(finish.finished_at_ms)
                    .bind(*execution_id)
                    .execute(&mut *connection)
                    .await
                    .map_err(StoreError::database("finishing an execution"))?;
                if let Some(next) = &finish.next_run {
                    let now = now_ms();
                    let next_id: i64 = sqlx::query_scalar(
                        "INSERT INTO executions
                       (tenant, workflow_id, run_id, workflow_type, module_digest, status, created_at_ms, updated_at_ms,
                        search_attributes, owner_node, parent_id)
                     SELECT tenant, workflow_id, $1, workflow_type, $2, 'running', $3, $4, search_attributes, owner_node,
                            parent_id
                     FROM executions WHERE id = $5
                     RETURNING id",
                    )
                    .bind(&next.run_id)
                    .bind(&next.module_digest)
                    .bind(now)
                    .bind(now)
                    .bind(*execution_id)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(StoreError::database("starting the next run"))?;
                    events.push((next_id, &next.started));
                    // An upgrade was checked against this run's history; the next
                    // run starts on the type's binding anyway.
                    // A moved row is stamped with this transaction, so that the
                    // watchers report it to the next run's owner.
                    sqlx::query("UPDATE mailbox SET execution_id = $1, written_by_xact = pg_current_xact_id()::text::bigint
                                 WHERE execution_id = $2 AND delivered_position IS NULL AND kind <> 'upgrade'")
                        .bind(next_id)
                        .bind(*execution_id)
                        .execute(&mut *connection)
                        .await
                        .map_err(StoreError::database("moving messages to the next run"))?;
                }
            }
            Ok(WriteReply::Done)
        }
        WriteOp::PostMessage {
            execution_id,
            kind,
            name,
            payload,
            message_id,
        } => {
            // A message that raced a continue-as-new (posted to the run
            // that just ended) goes to the run that replaced it. The run's
            // row is locked so that concurrent posts to it, from any node,
            // check its mailbox's bound one after another.
            let (target, undelivered): (i64, i64) = sqlx::query_as(
                "SELECT id, undelivered_messages FROM executions
                 WHERE id = COALESCE((SELECT newest.id FROM executions AS ended
                                      JOIN executions AS newest
                                        ON newest.tenant = ended.tenant AND newest.workflow_id = ended.workflow_id
                                      WHERE ended.id = $1 AND ended.status = 'continued_as_new'
                                      ORDER BY newest.id DESC LIMIT 1), $1)
                 FOR NO KEY UPDATE",
            )
            .bind(*execution_id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(StoreError::database("finding a message's run"))?
            .unwrap_or((*execution_id, 0));
            if kind.is_bounded() && undelivered as u64 >= MAILBOX_UNDELIVERED_MAX {
                // A resent message is a duplicate, full mailbox or not.
                let sent_before: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM mailbox WHERE execution_id = $1 AND message_id = $2)",
                )
                .bind(target)
                .bind(message_id.as_str())
                .fetch_one(&mut *connection)
                .await
                .map_err(StoreError::database("looking for a sent message"))?;
                return Ok(if sent_before {
                    WriteReply::Changed(false)
                } else {
                    WriteReply::MailboxFull {
                        execution_id: target,
                    }
                });
            }
            let inserted = sqlx::query(
                "INSERT INTO mailbox (execution_id, kind, name, payload, message_id, received_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (execution_id, message_id) DO NOTHING",
            )
            .bind(target)
            .bind(kind.as_str())
            .bind(name.as_str())
            .bind(payload.as_str())
            .bind(message_id.as_str())
            .bind(now_ms())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("posting a message"))?;
            Ok(WriteReply::Changed(inserted.rows_affected() == 1))
        }
        WriteOp::CreateTenant {
            name,
            key_sha256,
            limits,
        } => {
            let inserted = sqlx::query(
                "INSERT INTO tenants (name, key_sha256, limits, created_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name.as_str())
            .bind(key_sha256.as_str())
            .bind(limits.as_str())
            .bind(now_ms())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("creating a tenant"))?;
            Ok(WriteReply::Changed(inserted.rows_affected() == 1))
        }
        WriteOp::PutSchedule {
            tenant,
            schedule_id,
            document,
            version: None,
            schedules_max,
        } => {
            lock_tenant_count(connection, TenantCount::Schedules, tenant).await?;
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schedules WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_one(&mut *connection)
                .await
                .map_err(StoreError::database("counting schedules"))?;
            if count >= i64::from(*schedules_max) {
                return Ok(WriteReply::Schedule(ScheduleWrite::LimitReached));
            }
            let inserted = sqlx::query(
                "INSERT INTO schedules (tenant, schedule_id, document, version, updated_at_ms)
                 VALUES ($1, $2, $3, 1, $4) ON CONFLICT (tenant, schedule_id) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(schedule_id.as_str())
            .bind(document.as_str())
            .bind(now_ms())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("creating a schedule"))?;
            Ok(WriteReply::Schedule(schedule_write(
                inserted.rows_affected(),
            )))
        }
        WriteOp::PutSchedule {
            tenant,
            schedule_id,
            document,
            version: Some(version),
            ..
        } => {
            let replaced = sqlx::query(
                "UPDATE schedules SET document = $1, version = version + 1, updated_at_ms = $2
                 WHERE tenant = $3 AND schedule_id = $4 AND version = $5",
            )
            .bind(document.as_str())
            .bind(now_ms())
            .bind(tenant.as_str())
            .bind(schedule_id.as_str())
            .bind(*version)
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("replacing a schedule"))?;
            Ok(WriteReply::Schedule(schedule_write(
                replaced.rows_affected(),
            )))
        }
        WriteOp::DeleteSchedule {
            tenant,
            schedule_id,
        } => {
            let deleted =
                sqlx::query("DELETE FROM schedules WHERE tenant = $1 AND schedule_id = $2")
                    .bind(tenant.as_str())
                    .bind(schedule_id.as_str())
                    .execute(&mut *connection)
                    .await
                    .map_err(StoreError::database("deleting a schedule"))?;
            Ok(WriteReply::Schedule(schedule_write(
                deleted.rows_affected(),
            )))
        }
        WriteOp::SetTenantLimits { name, limits } => {
            let updated = sqlx::query("UPDATE tenants SET limits = $1 WHERE name = $2")
                .bind(limits.as_str())
                .bind(name.as_str())
                .execute(&mut *connection)
                .await
                .map_err(StoreError::database("setting a tenant's limits"))?;
            Ok(WriteReply::Changed(updated.rows_affected() == 1))
        }
        WriteOp::AppendGuestLogs(lines) => {
            insert_guest_logs(connection, lines).await?;
            Ok(WriteReply::Done)
        }
        WriteOp::SetSpanWatermarks(marks) => {
            raise_span_watermarks(connection, marks).await?;
            Ok(WriteReply::Done)
        }
        WriteOp::PutTenantModule {
            tenant,
            digest,
            kind,
            modules_max,
        } => {
            lock_tenant_count(connection, TenantCount::Modules, tenant).await?;
            let (held, has_it): (i64, bool) = sqlx::query_as("SELECT count(*), coalesce(bool_or(digest = $1), false) FROM tenant_modules WHERE tenant = $2")
                .bind(digest.as_str())
                .bind(tenant.as_str())
                .fetch_one(&mut *connection)
                .await
                .map_err(StoreError::database("counting a tenant's modules"))?;
            if !has_it && held >= i64::from(*modules_max) {
                return Ok(WriteReply::Changed(false));
            }
            sqlx::query(
                "INSERT INTO tenant_modules (tenant, digest, kind, uploaded_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, digest) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(digest.as_str())
            .bind(kind.as_str())
            .bind(now_ms())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("recording a tenant's module"))?;
            Ok(WriteReply::Changed(true))
        }
        WriteOp::DeleteTenantModule { tenant, digest } => {
            let held: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM tenant_modules WHERE tenant = $1 AND digest = $2)",
            )
            .bind(tenant.as_str())
            .bind(digest.as_str())
            .fetch_one(&mut *connection)
            .await
            .map_err(StoreError::database("finding a tenant's module"))?;
            if !held {
                return Ok(WriteReply::ModuleDeletion(ModuleDeletion::NotFound));
            }
            let bound: Option<String> = sqlx::query_scalar(
                "SELECT name FROM workflow_types WHERE tenant = $1 AND digest = $2 ORDER BY name LIMIT 1",
            )
            .bind(tenant.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *connection)
            .await
            .map_err(StoreError::database("finding a module's workflow types"))?;
            if let Some(name) = bound {
                return Ok(WriteReply::ModuleDeletion(ModuleDeletion::BoundToType(
                    name,
                )));
            }
            let running: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM executions WHERE module_digest = $1 AND tenant = $2 AND status = 'running'",
            )
            .bind(digest.as_str())
            .bind(tenant.as_str())
            .fetch_one(&mut *connection)
            .await
            .map_err(StoreError::database("counting a module's running executions"))?;
            if running > 0 {
                return Ok(WriteReply::ModuleDeletion(ModuleDeletion::Running(
                    running as u64,
                )));
            }
            sqlx::query("DELETE FROM tenant_modules WHERE tenant = $1 AND digest = $2")
                .bind(tenant.as_str())
                .bind(digest.as_str())
                .execute(&mut *connection)
                .await
                .map_err(StoreError::database("deleting a tenant's module"))?;
            // Every history names the module it ran on: those bytes stay.
            sqlx::query(DELETE_UNUSED_MODULE)
                .bind(digest.as_str())
                .execute(&mut *connection)
                .await
                .map_err(StoreError::database("deleting a module nothing uses"))?;
            Ok(WriteReply::ModuleDeletion(ModuleDeletion::Deleted))
        }
        WriteOp::SweepFinished {
            tenant,
            finished_before_ms,
            after,
            rows_max,
            workflow_id,
        } => {
            let (after_ms, after_id) = after.map_or((i64::MIN, i64::MIN), |cursor| {
                (cursor.finished_at_ms, cursor.id)
            });
            // One workflow id's runs are found by their own index, not
            // among all the tenant's finished executions.
            let only_workflow_id = if workflow_id.is_some() {
                "AND workflow_id = $6"
            } else {
                ""
            };
            let find_due = format!(
                "SELECT id, module_digest, updated_at_ms,
                        parent_id IS NOT NULL AND EXISTS
                          (SELECT 1 FROM executions p WHERE p.id = e.parent_id AND p.status = 'running')
                 FROM executions e
                 WHERE tenant = $1 AND status <> 'running' AND updated_at_ms < $2
                   AND (updated_at_ms, id) > ($3, $4) {only_workflow_id}
                 ORDER BY updated_at_ms, id LIMIT $5",
            );
            let mut due = sqlx::query_as::<_, (i64, String, i64, bool)>(&find_due)
                .bind(tenant.as_str())
                .bind(*finished_before_ms)
                .bind(after_ms)
                .bind(after_id)
                .bind(i64::from(SWEEP_EXECUTIONS_MAX));
            if let Some(workflow_id) = workflow_id {
                due = due.bind(workflow_id.as_str());
            }
            let due = due
                .fetch_all(&mut *connection)
                .await
                .map_err(StoreError::database(
                    "finding finished executions past retention",
                ))?;
            let mut sweep = Sweep {
                more: due.len() as u64 == u64::from(SWEEP_EXECUTIONS_MAX),
                cursor: *after,
                ..Sweep::default()
            };
            let mut budget = u64::from(*rows_max);
            for (execution_id, digest, finished_at_ms, parent_runs) in &due {
                if !*parent_runs {
                    for (table, key) in SWEPT_TABLES {
                        if budget == 0 {
                            sweep.more = true;
                            return Ok(WriteReply::Swept(sweep));
                        }
                        let deleted = sqlx::query(&format!(
                            "DELETE FROM {table} WHERE execution_id = $1 AND {key} IN
                               (SELECT {key} FROM {table} WHERE execution_id = $1 ORDER BY {key} LIMIT $2)"
                        ))
                        .bind(*execution_id)
                        .bind(budget as i64)
                        .execute(&mut *connection)
                        .await
                        .map_err(StoreError::database("deleting a finished execution's rows"))?
                        .rows_affected();
                        budget -= deleted.min(budget);
                        sweep.rows += deleted;
                    }
                    if budget == 0 {
                        sweep.more = true;
                        return Ok(WriteReply::Swept(sweep));
                    }
                    sqlx::query("DELETE FROM executions WHERE id = $1")
                        .bind(*execution_id)
                        .execute(&mut *connection)
                        .await
                        .map_err(StoreError::database("deleting a finished execution"))?;
                    budget -= 1;
                    sweep.rows += 1;
                    sweep.executions += 1;
                    sqlx::query(DELETE_UNUSED_MODULE)
                        .bind(digest.as_str())
                        .execute(&mut *connection)
                        .await
                        .map_err(StoreError::database("deleting a module nothing uses"))?;
                }
                sweep.cursor = Some(SweepCursor {
                    finished_at_ms: *finished_at_ms,
                    id: *execution_id,
                });
            }
            Ok(WriteReply::Swept(sweep))
        }
        WriteOp::PutWorkflowType {
            tenant,
            name,
            digest,
            workflow_types_max,
        } => {
            lock_tenant_count(connection, TenantCount::WorkflowTypes, tenant).await?;
            let (held, has_it): (i64, bool) = sqlx::query_as(
                "SELECT count(*), coalesce(bool_or(name = $1), false) FROM workflow_types WHERE tenant = $2",
            )
            .bind(name.as_str())
            .bind(tenant.as_str())
            .fetch_one(&mut *connection)
            .await
            .map_err(StoreError::database("counting a tenant's workflow types"))?;
            if !has_it && held >= i64::from(*workflow_types_max) {
                return Ok(WriteReply::Changed(false));
            }
            sqlx::query(
                "INSERT INTO workflow_types (tenant, name, digest, updated_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, name) DO UPDATE SET digest = excluded.digest, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(tenant.as_str())
            .bind(name.as_str())
            .bind(digest.as_str())
            .bind(now_ms())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("binding a workflow type"))?;
            Ok(WriteReply::Changed(true))
        }
        WriteOp::DeleteWorkflowType { tenant, name } => {
            let deleted = sqlx::query("DELETE FROM workflow_types WHERE tenant = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name.as_str())
                .execute(&mut *connection)
                .await
                .map_err(StoreError::database("unbinding a workflow type"))?
                .rows_affected();
            Ok(WriteReply::Changed(deleted > 0))
        }
        WriteOp::Terminate {
            execution_id,
            reason,
        } => terminate(connection, *execution_id, reason).await,
        WriteOp::JoinNodes {
            node_id,
            lease_ms,
            api_url,
        } => {
            sqlx::query(&format!(
                "INSERT INTO nodes (node_id, lease_ms, joined_at_ms, renewed_at_ms, expires_at_ms, api_url)
                 VALUES ($1, $2, {DATABASE_NOW_MS}, {DATABASE_NOW_MS}, {DATABASE_NOW_MS} + $2, $3)"
            ))
            .bind(node_id.as_str())
            .bind(*lease_ms)
            .bind(api_url.as_deref())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("joining the nodes"))?;
            Ok(WriteReply::Done)
        }
        WriteOp::RenewLease { node_id, lease_ms } => {
            let renewed = sqlx::query(&format!(
                "UPDATE nodes SET lease_ms = $2, renewed_at_ms = {DATABASE_NOW_MS},
                   expires_at_ms = {DATABASE_NOW_MS} + $2
                 WHERE node_id = $1"
            ))
            .bind(node_id.as_ref())
            .bind(*lease_ms)
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("renewing the node's lease"))?;
            Ok(WriteReply::Changed(renewed.rows_affected() == 1))
        }
        WriteOp::ClaimOrphans { node_id, limit } => {
            // A node is dead when its lease passed, or when it missed
            // renewals and its session's advisory lock can be taken (its
            // process is gone). The grace of half a lease spares live
            // nodes whose sessions a database restart cut: they take their
            // locks again at their next renewal. The lock taken here is
            // the transaction's and ends with it. Rows a live batch holds
            // (share lock) are skipped until it commits.
            sqlx::query(&format!(
                "DELETE FROM nodes WHERE node_id IN (
                   SELECT node_id FROM nodes
                   WHERE node_id <> $1
                     AND (expires_at_ms < {DATABASE_NOW_MS}
                          OR (renewed_at_ms + lease_ms / 2 < {DATABASE_NOW_MS}
                              AND pg_try_advisory_xact_lock(hashtextextended(node_id, 0))))
                   FOR UPDATE SKIP LOCKED)"
            ))
            .bind(node_id.as_ref())
            .execute(&mut *connection)
            .await
            .map_err(StoreError::database("removing dead nodes"))?;
            let rows = sqlx::query(concat!(
                "UPDATE executions SET owner_node = $1 WHERE id IN (
                   SELECT id FROM executions e
                   WHERE status = 'running'
                     AND (owner_node IS NULL
                          OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = e.owner_node))
                   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING ",
                execution_columns!()
            ))
            .bind(node_id.as_ref())
            .bind(i64::from(*limit))
            .fetch_all(&mut *connection)
            .await
            .map_err(StoreError::database("claiming orphaned executions"))?;
            let mut claimed = rows
                .iter()
                .map(execution_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            claimed.sort_by_key(|record| record.id);
            Ok(WriteReply::Claimed(claimed))
        }
        WriteOp::Lead { role, node_id } => {
            let led: Option<String> = sqlx::query_scalar(
                "INSERT INTO leaders (role, node_id)
                 SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM nodes WHERE node_id = $2)
                 ON CONFLICT (role) DO UPDATE SET node_id = excluded.node_id
                 WHERE leaders.node_id = excluded.node_id
                    OR NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.node_id = leaders.node_id)
                 RETURNING node_id",
            )
            .bind(*role)
            .bind(node_id.as_ref())
            .fetch_optional(&mut *connection)
            .await
            .map_err(StoreError::database("taking the lead"))?;
            Ok(WriteReply::Changed(led.is_some()))
        }
        WriteOp::LeaveNodes { node_id } => {
            sqlx::query("DELETE FROM nodes WHERE node_id = $1")
                .bind(node_id.as_ref())
                .execute(&mut *connection)
                .await
                .map_err(StoreError::database("leaving the nodes"))?;
            Ok(WriteReply::Done)
        }
    }
}

async fn start<'op>(
    connection: &mut PgConnection,
    new: &'op NewExecution,
    owner_node: Option<&str>,
    events: &mut Vec<(i64, &'op RecordedEvent)>,
) -> StoreResult<WriteReply> {
    // Lock the tenant's counter row first (creating it at 0 if needed) and
    // read it: a concurrent start of the same tenant, from this process or
    // another, waits here until this transaction ends, so the id check and
    // the limit check below see every start before them.
    let running: i64 = sqlx::query_scalar(
        "INSERT INTO running_executions (tenant, running) VALUES ($1, 0)
         ON CONFLICT (tenant) DO UPDATE SET running = running_executions.running
         RETURNING running",
    )
    .bind(&new.tenant)
    .fetch_one(&mut *connection)
    .await
    .map_err(StoreError::database("counting running executions"))?;
    if let Some(existing) =
        select_execution(&mut *connection, &new.tenant, &new.workflow_id).await?
        && let Some(outcome) = start_refused_by(existing, new.reuse)
    {
        return Ok(WriteReply::Started(Box::new(outcome)));
    }
    let running = running.max(0) as u64;
    if running >= new.running_max {
        return Ok(WriteReply::Started(Box::new(StartOutcome::AtCapacity {
            running,
        })));
    }
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO executions
           (tenant, workflow_id, run_id, workflow_type, module_digest, status, created_at_ms, updated_at_ms,
            search_attributes, owner_node, parent_id)
         VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(&new.tenant)
    .bind(&new.workflow_id)
    .bind(&new.run_id)
    .bind(&new.workflow_type)
    .bind(&new.module_digest)
    .bind(now)
    .bind(now)
    .bind(new.search_attributes.as_deref())
    .bind(owner_node)
    .bind(new.parent_id)
    .fetch_one(&mut *connection)
    .await
    .map_err(StoreError::database("creating an execution"))?;
    events.push((id, &new.started));
    Ok(WriteReply::Started(Box::new(StartOutcome::Created(
        created_record(new, id, now, owner_node),
    ))))
}

async fn terminate(
    connection: &mut PgConnection,
    execution_id: i64,
    reason: &str,
) -> StoreResult<WriteReply> {
    // The row lock orders this against a concurrent finish or terminate.
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM executions WHERE id = $1 FOR UPDATE")
            .bind(execution_id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(StoreError::database("reading an execution"))?;
    if status.as_deref() != Some(ExecutionStatus::Running.as_str()) {
        return Ok(WriteReply::Changed(false));
    }
    let next: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(position), 0) + 1 FROM events WHERE execution_id = $1",
    )
    .bind(execution_id)
    .fetch_one(&mut *connection)
    .await
    .map_err(StoreError::database("reading a history's length"))?;
    let terminated = terminated_event(next as u64, reason);
    insert_events(connection, &[(execution_id, &terminated)]).await?;
    sqlx::query(SET_ENDED)
        .bind(ExecutionStatus::Terminated.as_str())
        .bind(terminated_result(reason))
        .bind(now_ms())
        .bind(execution_id)
        .execute(&mut *connection)
        .await
        .map_err(StoreError::database("terminating an execution"))?;
    Ok(WriteReply::Changed(true))
}

/// Inserts events, [`ROWS_PER_STATEMENT_MAX`] per statement, each
/// statement one `INSERT … SELECT FROM UNNEST(arrays)`.
async fn insert_events(
    connection: &mut PgConnection,
    rows: &[(i64, &RecordedEvent)],
) -> StoreResult<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT_MAX) {
        let mut execution_ids = Vec::with_capacity(chunk.len());
        let mut positions = Vec::with_capacity(chunk.len());
        let mut kinds = Vec::with_capacity(chunk.len());
        let mut payloads = Vec::with_capacity(chunk.len());
        let mut recorded_at = Vec::with_capacity(chunk.len());
        for (execution_id, recorded) in chunk {
            let payload = serde_json::to_string(&recorded.event).map_err(|source| {
                StoreError::CorruptEvent {
                    execution_id: *execution_id,
                    position: recorded.position as i64,
                    source,
                }
            })?;
            execution_ids.push(*execution_id);
            positions.push(recorded.position as i64);
            kinds.push(recorded.event.kind());
            payloads.push(payload);
            recorded_at.push(recorded.recorded_at_ms as i64);
        }
        let inserted = sqlx::query(
            "INSERT INTO events (execution_id, position, kind, payload, recorded_at_ms)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[])",
        )
        .bind(&execution_ids)
        .bind(&positions)
        .bind(&kinds)
        .bind(&payloads)
        .bind(&recorded_at)
        .execute(&mut *connection)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                let (first_execution, first) = chunk[0];
                let (execution_id, position) =
                    taken_position(error.as_ref()).unwrap_or((first_execution, first.position));
                return Err(StoreError::PositionTaken {
                    execution_id,
                    position,
                });
            }
            Err(error) => {
                return Err(StoreError::Database {
                    doing: "appending events",
                    source: error,
                });
            }
        }
    }
    Ok(())
}

/// The key PostgreSQL names in a primary key violation of `events`:
/// "Key (execution_id, position)=(12, 3) already exists."
fn taken_position(error: &dyn sqlx::error::DatabaseError) -> Option<(i64, u64)> {
    let error = error.try_downcast_ref::<PgDatabaseError>()?;
    if error.constraint() != Some("events_pkey") {
        return None;
    }
    let values = error.detail()?.split_once(")=(")?.1.split_once(')')?.0;
    let (execution_id, position) = values.split_once(", ")?;
    Some((execution_id.parse().ok()?, position.parse().ok()?))
}

/// Stores log lines, keeping each execution at its first
/// [`GUEST_LOG_LINES_MAX`]: a line goes in only while its rank among the
/// execution's new lines plus the lines already stored is within the cap.
async fn insert_guest_logs(
    connection: &mut PgConnection,
    lines: &[GuestLogLine],
) -> StoreResult<()> {
    for chunk in lines.chunks(ROWS_PER_STATEMENT_MAX) {
        let execution_ids: Vec<i64> = chunk.iter().map(|line| line.execution_id).collect();
        let seqs: Vec<i64> = chunk.iter().map(|line| line.seq as i64).collect();
        let levels: Vec<String> = chunk.iter().map(|line| line.level.clone()).collect();
        let sources: Vec<String> = chunk.iter().map(|line| line.source.clone()).collect();
        // PostgreSQL text cannot hold NUL; guest output can. The line is
        // kept, the NUL shown as U+FFFD.
        let messages: Vec<String> = chunk
            .iter()
            .map(|line| line.message.replace('\0', "\u{FFFD}"))
            .collect();
        let logged_at: Vec<i64> = chunk.iter().map(|line| line.logged_at_ms as i64).collect();
        sqlx::query(
            "INSERT INTO guest_logs (execution_id, seq, level, source, message, logged_at_ms)
             SELECT execution_id, seq, level, source, message, logged_at_ms FROM (
               SELECT line.*, row_number() OVER (PARTITION BY line.execution_id ORDER BY line.n) AS rank
               FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[])
                    WITH ORDINALITY AS line(execution_id, seq, level, source, message, logged_at_ms, n)
             ) line
             WHERE line.rank + (SELECT count(*) FROM guest_logs stored
                                WHERE stored.execution_id = line.execution_id) <= $7
               -- Late lines of an execution swept meanwhile have no home.
               AND EXISTS (SELECT 1 FROM executions WHERE id = line.execution_id)
             ORDER BY line.n",
        )
        .bind(&execution_ids)
        .bind(&seqs)
        .bind(&levels)
        .bind(&sources)
        .bind(&messages)
        .bind(&logged_at)
        .bind(i64::from(GUEST_LOG_LINES_MAX))
        .execute(&mut *connection)
        .await
        .map_err(StoreError::database("storing guest log lines"))?;
    }
    Ok(())
}

/// Raises watermarks, never lowering one. One upsert may not touch a row
/// twice, so each execution's highest mark is taken first.
async fn raise_span_watermarks(
    connection: &mut PgConnection,
    marks: &[(i64, u64)],
) -> StoreResult<()> {
    let mut highest: BTreeMap<i64, i64> = BTreeMap::new();
    for (execution_id, position) in marks {
        let position = i64::try_from(*position).unwrap_or(i64::MAX);
        let entry = highest.entry(*execution_id).or_insert(position);
        *entry = (*entry).max(position);
    }
    let highest: Vec<(i64, i64)> = highest.into_iter().collect();
    for chunk in highest.chunks(ROWS_PER_STATEMENT_MAX) {
        let execution_ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        let positions: Vec<i64> = chunk.iter().map(|(_, position)| *position).collect();
        sqlx::query(
            "INSERT INTO span_exports (execution_id, position)
             SELECT marks.* FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS marks (execution_id, position)
             -- An execution swept meanwhile has nothing left to export.
             WHERE EXISTS (SELECT 1 FROM executions WHERE id = marks.execution_id)
             ON CONFLICT (execution_id)
             DO UPDATE SET position = GREATEST(span_exports.position, excluded.position)",
        )
        .bind(&execution_ids)
        .bind(&positions)
        .execute(&mut *connection)
        .await
        .map_err(StoreError::database("recording exported spans"))?;
    }
    Ok(())
}

async fn select_execution(
    connection: &mut PgConnection,
    tenant: &str,
    workflow_id: &str,
) -> StoreResult<Option<ExecutionRecord>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE tenant = $1 AND workflow_id = $2
         ORDER BY created_at_ms DESC, id DESC LIMIT 1"
    ))
    .bind(tenant)
    .bind(workflow_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(StoreError::database("reading an execution"))?;
    row.map(|row| execution_from_row(&row)).transpose()
}

fn tenant_from_row(row: &PgRow) -> StoreResult<TenantRecord> {
    let read = || -> Result<TenantRecord, sqlx::Error> {
        Ok(TenantRecord {
            name: row.try_get("name")?,
            key_sha256: row.try_get("key_sha256")?,
            limits: row.try_get("limits")?,
            created_at_ms: row.try_get("created_at_ms")?,
        })
    };
    read().map_err(StoreError::database("decoding a tenant row"))
}

fn execution_from_row(row: &PgRow) -> StoreResult<ExecutionRecord> {
    let read = || -> Result<ExecutionRecord, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(ExecutionRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            workflow_id: row.try_get("workflow_id")?,
            run_id: row.try_get("run_id")?,
            workflow_type: row.try_get("workflow_type")?,
            module_digest: row.try_get("module_digest")?,
            status: ExecutionStatus::parse(&status),
            result: row.try_get("result")?,
            created_at_ms: row.try_get("created_at_ms")?,
            updated_at_ms: row.try_get("updated_at_ms")?,
            search_attributes: row.try_get("search_attributes")?,
            owner_node: row.try_get("owner_node")?,
        })
    };
    read().map_err(StoreError::database("decoding an execution row"))
}

fn message_from_row(row: &PgRow) -> StoreResult<MailboxMessage> {
    let read = || -> Result<MailboxMessage, sqlx::Error> {
        let kind: String = row.try_get("kind")?;
        Ok(MailboxMessage {
            id: row.try_get("id")?,
            kind: MessageKind::parse(&kind),
            name: row.try_get("name")?,
            payload: row.try_get("payload")?,
            message_id: row.try_get("message_id")?,
        })
    };
    read().map_err(StoreError::database("decoding a mailbox row"))
}

fn decode_event(
    execution_id: i64,
    (position, recorded_at_ms, payload): (i64, i64, String),
) -> StoreResult<RecordedEvent> {
    let event = serde_json::from_str(&payload).map_err(|source| StoreError::CorruptEvent {
        execution_id,
        position,
        source,
    })?;
    Ok(RecordedEvent {
        position: position.max(0) as u64,
        recorded_at_ms: recorded_at_ms.max(0) as u64,
        event,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn join_nodes(
        &self,
        node_id: &str,
        lease: Duration,
        api_url: Option<&str>,
    ) -> StoreResult<Joined> {
        // The lock first, then the row: a node whose row exists holds its
        // lock while it lives (a cut session takes it again at renewal).
        let mut held = self.node_session.lock().await;
        let mut session = match held.take() {
            Some(session) => session,
            None => connect_writer(&self.options).await?,
        };
        sqlx::query("SELECT pg_advisory_unlock_all(), pg_advisory_lock(hashtextextended($1, 0))")
            .bind(node_id)
            .execute(&mut session)
            .await
            .map_err(StoreError::database("locking this node's session"))?;
        *held = Some(session);
        drop(held);
        self.writes
            .done(WriteOp::JoinNodes {
                node_id: node_id.to_string(),
                lease_ms: lease_ms(lease),
                api_url: api_url.map(str::to_string),
            })
            .await?;
        self.node.set(node_id);
        Ok(Joined::Member)
    }

    fn node_id(&self) -> Option<Arc<str>> {
        self.node.get()
    }

    async fn peer_api_urls(&self) -> StoreResult<Vec<String>> {
        let me = self.node.get();
        sqlx::query_scalar(&format!(
            "SELECT api_url FROM nodes
             WHERE api_url IS NOT NULL AND node_id IS DISTINCT FROM $1
               AND expires_at_ms >= {DATABASE_NOW_MS}
             ORDER BY node_id"
        ))
        .bind(me.as_deref())
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("listing the other nodes"))
    }

    async fn renew_lease(&self, lease: Duration) -> StoreResult<bool> {
        if let Some(node_id) = self.node.get() {
            self.hold_node_lock(&node_id).await?;
        }
        self.writes.renew_lease(&self.node, lease).await
    }

    async fn claim_orphans(&self, limit: u32) -> StoreResult<Vec<ExecutionRecord>> {
        self.writes.claim_orphans(&self.node, limit).await
    }

    async fn lead(&self, role: &'static str) -> StoreResult<bool> {
        self.writes.lead(&self.node, role).await
    }

    async fn leave_nodes(&self) -> StoreResult<()> {
        self.writes.leave_nodes(&self.node).await?;
        // The session's lock goes with it.
        self.node_session.lock().await.take();
        Ok(())
    }

    fn commit_stats(&self) -> Option<CommitStats> {
        Some(self.stats.snapshot())
    }

    async fn put_module(&self, digest: &str, kind: &str, bytes: &[u8]) -> StoreResult<()> {
        self.writes
            .done(WriteOp::PutModule {
                digest: digest.to_string(),
                kind: kind.to_string(),
                bytes: bytes.to_vec(),
            })
            .await
    }

    async fn module(&self, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT bytes FROM modules WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.reads)
            .await
            .map_err(StoreError::database("reading a module"))
    }

    async fn start_execution(&self, new: NewExecution) -> StoreResult<StartOutcome> {
        self.writes.start(new).await
    }

    async fn execution(
        &self,
        tenant: &str,
        workflow_id: &str,
    ) -> StoreResult<Option<ExecutionRecord>> {
        let mut connection = self
            .reads
            .acquire()
            .await
            .map_err(StoreError::database("acquiring a read connection"))?;
        select_execution(&mut connection, tenant, workflow_id).await
    }

    async fn history_page(
        &self,
        execution_id: i64,
        after: u64,
        limit: u64,
    ) -> StoreResult<Vec<RecordedEvent>> {
        let (after, until) = page_positions(after, limit);
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT position, recorded_at_ms, payload FROM events
             WHERE execution_id = $1 AND position > $2 AND position <= $3 ORDER BY position",
        )
        .bind(execution_id)
        .bind(after)
        .bind(until)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("reading a history"))?;
        rows.into_iter()
            .map(|row| decode_event(execution_id, row))
            .collect()
    }

    async fn append(
        &self,
        execution_id: i64,
        events: Vec<RecordedEvent>,
        finish: Option<Finish>,
    ) -> StoreResult<()> {
        self.writes
            .done(WriteOp::Append {
                execution_id,
                events,
                finish,
                delivers: None,
                search_attributes: None,
            })
            .await
    }

    async fn append_delivering(
        &self,
        execution_id: i64,
        events: Vec<RecordedEvent>,
        delivered: i64,
    ) -> StoreResult<()> {
        self.writes
            .done(WriteOp::Append {
                execution_id,
                events,
                finish: None,
                delivers: Some(delivered),
                search_attributes: None,
            })
            .await
    }

    async fn append_setting_attributes(
        &self,
        execution_id: i64,
        events: Vec<RecordedEvent>,
        search_attributes: String,
    ) -> StoreResult<()> {
        self.writes
            .done(WriteOp::Append {
                execution_id,
                events,
                finish: None,
                delivers: None,
                search_attributes: Some(search_attributes),
            })
            .await
    }

    async fn post_message(
        &self,
        execution_id: i64,
        kind: MessageKind,
        name: &str,
        payload: &str,
        message_id: &str,
    ) -> StoreResult<bool> {
        self.writes
            .changed(WriteOp::PostMessage {
                execution_id,
                kind,
                name: name.to_string(),
                payload: payload.to_string(),
                message_id: message_id.to_string(),
            })
            .await
    }

    async fn undelivered_messages(&self, execution_id: i64) -> StoreResult<Vec<MailboxMessage>> {
        let rows = sqlx::query(
            "SELECT id, kind, name, payload, message_id FROM mailbox
             WHERE execution_id = $1 AND delivered_position IS NULL ORDER BY id",
        )
        .bind(execution_id)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("reading a mailbox"))?;
        rows.iter().map(message_from_row).collect()
    }

    async fn undelivered_upgrades(&self) -> StoreResult<Vec<(i64, MailboxMessage)>> {
        let rows = sqlx::query(
            "SELECT id, execution_id, kind, name, payload, message_id FROM mailbox
             WHERE delivered_position IS NULL AND kind = 'upgrade' ORDER BY id",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("reading pending upgrades"))?;
        rows.iter()
            .map(|row| {
                let execution_id = row
                    .try_get("execution_id")
                    .map_err(StoreError::database("decoding a mailbox row"))?;
                Ok((execution_id, message_from_row(row)?))
            })
            .collect()
    }

    async fn mailbox_activity(&self, after: MailboxCursor) -> StoreResult<MailboxActivity> {
        // A row id is drawn before its transaction commits, so a lower id
        // can become visible after a higher one was read. A transaction
        // that was not visible to the last reading was running then or
        // began later, so its rows are at or past that reading's horizon.
        // Each horizon comes from its own statement's snapshot.
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "WITH horizon AS (
                 SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS oldest_running)
             SELECT horizon.oldest_running, mailbox.id, mailbox.execution_id
             FROM horizon LEFT JOIN mailbox
               ON mailbox.delivered_position IS NULL AND mailbox.written_by_xact >= $1
             ORDER BY mailbox.id",
        )
        .bind(after.0)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("watching mailboxes"))?;
        let cursor = MailboxCursor(rows.first().map_or(after.0, |(horizon, _, _)| *horizon));
        let rows = rows
            .into_iter()
            .filter_map(|(_, id, execution_id)| Some((id?, execution_id?)))
            .collect();
        Ok(MailboxActivity { rows, cursor })
    }

    async fn create_schedule(
        &self,
        tenant: &str,
        schedule_id: &str,
        document: &str,
        schedules_max: u32,
    ) -> StoreResult<ScheduleWrite> {
        self.writes
            .schedule(WriteOp::PutSchedule {
                tenant: tenant.to_string(),
                schedule_id: schedule_id.to_string(),
                document: document.to_string(),
                version: None,
                schedules_max,
            })
            .await
    }

    async fn replace_schedule(
        &self,
        schedule: &StoredSchedule,
        document: &str,
    ) -> StoreResult<ScheduleWrite> {
        self.writes
            .schedule(WriteOp::PutSchedule {
                tenant: schedule.tenant.clone(),
                schedule_id: schedule.schedule_id.clone(),
                document: document.to_string(),
                version: Some(schedule.version),
                schedules_max: 0,
            })
            .await
    }

    async fn delete_schedule(&self, tenant: &str, schedule_id: &str) -> StoreResult<ScheduleWrite> {
        self.writes
            .schedule(WriteOp::DeleteSchedule {
                tenant: tenant.to_string(),
                schedule_id: schedule_id.to_string(),
            })
            .await
    }

    async fn schedules(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredSchedule>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT tenant, schedule_id, document, version FROM schedules
             WHERE $1::TEXT IS NULL OR tenant = $1 ORDER BY tenant, schedule_id",
        )
        .bind(tenant)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("reading schedules"))?;
        Ok(rows
            .into_iter()
            .map(|(tenant, schedule_id, document, version)| StoredSchedule {
                tenant,
                schedule_id,
                document,
                version,
            })
            .collect())
    }

    async fn put_workflow_type(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
        workflow_types_max: u32,
    ) -> StoreResult<bool> {
        self.writes
            .changed(WriteOp::PutWorkflowType {
                tenant: tenant.to_string(),
                name: name.to_string(),
                digest: digest.to_string(),
                workflow_types_max,
            })
            .await
    }

    async fn delete_workflow_type(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        self.writes
            .changed(WriteOp::DeleteWorkflowType {
                tenant: tenant.to_string(),
                name: name.to_string(),
            })
            .await
    }

    async fn finished_count_cutoff_ms(&self, tenant: &str, keep: u64) -> StoreResult<Option<i64>> {
        let Some(offset) = keep.checked_sub(1) else {
            return Ok(Some(i64::MAX));
        };
        sqlx::query_scalar(
            "SELECT updated_at_ms FROM executions
             WHERE tenant = $1 AND status <> 'running'
             ORDER BY updated_at_ms DESC, id DESC LIMIT 1 OFFSET $2",
        )
        .bind(tenant)
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_optional(&self.reads)
        .await
        .map_err(StoreError::database(
            "finding a tenant's oldest finished executions to keep",
        ))
    }

    async fn workflow_type(&self, tenant: &str, name: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT digest FROM workflow_types WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.reads)
            .await
            .map_err(StoreError::database("reading a workflow type"))
    }

    async fn workflow_types(
        &self,
        tenant: Option<&str>,
    ) -> StoreResult<Vec<(String, String, String)>> {
        sqlx::query_as("SELECT tenant, name, digest FROM workflow_types WHERE $1::TEXT IS NULL OR tenant = $1 ORDER BY tenant, name")
            .bind(tenant)
            .fetch_all(&self.reads)
            .await
            .map_err(StoreError::database("reading workflow types"))
    }

    async fn list_executions(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
    ) -> StoreResult<Vec<ExecutionRecord>> {
        let status = filter.status.map(ExecutionStatus::as_str);
        let before = filter.before.as_ref();
        // The cursor names the last execution of the previous page; its row
        // id (found within the tenant) breaks ties between executions
        // created in the same millisecond. A cursor naming nothing compares
        // as NULL on ties, as on SQLite.
        let rows = sqlx::query(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions WHERE tenant = $1
               AND ($2::TEXT IS NULL OR status = $2)
               AND ($3::TEXT IS NULL OR workflow_type = $3)
               AND ($4::BIGINT IS NULL OR created_at_ms >= $4)
               AND ($5::BIGINT IS NULL OR created_at_ms < $5)
               AND ($6::TEXT IS NULL OR starts_with(workflow_id, $6))
               AND ($7::BIGINT IS NULL OR (created_at_ms, id) < ($7,
                    (SELECT id FROM executions WHERE tenant = $1 AND workflow_id = $8 AND run_id = $9)))
               AND ($11::TEXT IS NULL OR search_attributes::jsonb -> $11 = $12::jsonb)
             ORDER BY created_at_ms DESC, id DESC LIMIT $10"
        ))
        .bind(tenant)
        .bind(status)
        .bind(filter.workflow_type.as_deref())
        .bind(filter.created_from_ms)
        .bind(filter.created_until_ms)
        .bind(filter.id_prefix.as_deref())
        .bind(before.map(|cursor| cursor.created_at_ms))
        .bind(before.map(|cursor| cursor.workflow_id.as_str()))
        .bind(before.map(|cursor| cursor.run_id.as_str()))
        .bind(i64::from(filter.limit))
        .bind(filter.search_attribute.as_ref().map(|(key, _)| key.as_str()))
        .bind(filter.search_attribute.as_ref().map(|(_, value)| value.as_str()))
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("listing executions"))?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn count_executions(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
    ) -> StoreResult<StatusCounts> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM executions WHERE tenant = $1
               AND ($2::TEXT IS NULL OR workflow_type = $2)
               AND ($3::BIGINT IS NULL OR created_at_ms >= $3)
               AND ($4::BIGINT IS NULL OR created_at_ms < $4)
               AND ($5::TEXT IS NULL OR starts_with(workflow_id, $5))
               AND ($6::TEXT IS NULL OR search_attributes::jsonb -> $6 = $7::jsonb)
             GROUP BY status",
        )
        .bind(tenant)
        .bind(filter.workflow_type.as_deref())
        .bind(filter.created_from_ms)
        .bind(filter.created_until_ms)
        .bind(filter.id_prefix.as_deref())
        .bind(
            filter
                .search_attribute
                .as_ref()
                .map(|(key, _)| key.as_str()),
        )
        .bind(
            filter
                .search_attribute
                .as_ref()
                .map(|(_, value)| value.as_str()),
        )
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("counting executions"))?;
        Ok(StatusCounts::from_rows(rows))
    }

    async fn unfinished_executions(&self) -> StoreResult<Vec<ExecutionRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions WHERE status = 'running' ORDER BY id"
        ))
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("listing unfinished executions"))?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn create_tenant(&self, name: &str, key_sha256: &str, limits: &str) -> StoreResult<bool> {
        self.writes
            .changed(WriteOp::CreateTenant {
                name: name.to_string(),
                key_sha256: key_sha256.to_string(),
                limits: limits.to_string(),
            })
            .await
    }

    async fn tenant_by_key(&self, key_sha256: &str) -> StoreResult<Option<TenantRecord>> {
        let row = sqlx::query(
            "SELECT name, key_sha256, limits, created_at_ms FROM tenants WHERE key_sha256 = $1",
        )
        .bind(key_sha256)
        .fetch_optional(&self.reads)
        .await
        .map_err(StoreError::database("looking up an API key"))?;
        row.map(|row| tenant_from_row(&row)).transpose()
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let rows = sqlx::query(
            "SELECT name, key_sha256, limits, created_at_ms FROM tenants ORDER BY name",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("listing tenants"))?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn set_tenant_limits(&self, name: &str, limits: &str) -> StoreResult<bool> {
        self.writes
            .changed(WriteOp::SetTenantLimits {
                name: name.to_string(),
                limits: limits.to_string(),
            })
            .await
    }

    async fn put_tenant_module(
        &self,
        tenant: &str,
        digest: &str,
        kind: &str,
        modules_max: u32,
    ) -> StoreResult<bool> {
        self.writes
            .changed(WriteOp::PutTenantModule {
                tenant: tenant.to_string(),
                digest: digest.to_string(),
                kind: kind.to_string(),
                modules_max,
            })
            .await
    }

    async fn delete_tenant_module(
        &self,
        tenant: &str,
        digest: &str,
    ) -> StoreResult<ModuleDeletion> {
        self.writes.delete_tenant_module(tenant, digest).await
    }

    async fn sweep_finished(
        &self,
        tenant: &str,
        finished_before_ms: i64,
        after: Option<SweepCursor>,
        rows_max: u32,
        workflow_id: Option<&str>,
    ) -> StoreResult<Sweep> {
        self.writes
            .sweep_finished(tenant, finished_before_ms, after, rows_max, workflow_id)
            .await
    }

    async fn tenant_modules(&self, tenant: &str) -> StoreResult<Vec<TenantModule>> {
        let rows = sqlx::query(
            "SELECT t.digest, t.kind, octet_length(m.bytes)::BIGINT AS size_bytes, t.uploaded_at_ms
             FROM tenant_modules t JOIN modules m ON m.digest = t.digest
             WHERE t.tenant = $1 ORDER BY t.uploaded_at_ms DESC, t.digest",
        )
        .bind(tenant)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("listing a tenant's modules"))?;
        rows.iter()
            .map(|row| {
                Ok(TenantModule {
                    digest: row.try_get("digest")?,
                    kind: row.try_get("kind")?,
                    size_bytes: row.try_get("size_bytes")?,
                    uploaded_at_ms: row.try_get("uploaded_at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::database("decoding a module row"))
    }

    async fn activity_uploads(&self, tenant: Option<&str>) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as(
            "SELECT tenant, digest FROM tenant_modules
             WHERE kind = 'activity' AND ($1::TEXT IS NULL OR tenant = $1)
             ORDER BY uploaded_at_ms, digest",
        )
        .bind(tenant)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("listing uploaded activity modules"))
    }

    async fn append_guest_logs(&self, lines: Vec<GuestLogLine>) -> StoreResult<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.writes.done(WriteOp::AppendGuestLogs(lines)).await
    }

    async fn guest_logs(
        &self,
        execution_id: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<GuestLogLine>> {
        let rows = sqlx::query(
            "SELECT id, seq, level, source, message, logged_at_ms FROM guest_logs
             WHERE execution_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(execution_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("reading guest log lines"))?;
        rows.iter()
            .map(|row| {
                Ok(GuestLogLine {
                    id: row.try_get("id")?,
                    execution_id,
                    seq: row.try_get::<i64, _>("seq")?.max(0) as u64,
                    level: row.try_get("level")?,
                    source: row.try_get("source")?,
                    message: row.try_get("message")?,
                    logged_at_ms: row.try_get::<i64, _>("logged_at_ms")?.max(0) as u64,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::database("decoding a guest log line"))
    }

    async fn span_watermark(&self, execution_id: i64) -> StoreResult<u64> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM span_exports WHERE execution_id = $1")
                .bind(execution_id)
                .fetch_optional(&self.reads)
                .await
                .map_err(StoreError::database("reading exported spans"))?;
        Ok(position.unwrap_or(0).max(0) as u64)
    }

    async fn set_span_watermarks(&self, marks: Vec<(i64, u64)>) -> StoreResult<()> {
        if marks.is_empty() {
            return Ok(());
        }
        self.writes.done(WriteOp::SetSpanWatermarks(marks)).await
    }

    async fn terminate(&self, execution_id: i64, reason: &str) -> StoreResult<bool> {
        self.writes
            .changed(WriteOp::Terminate {
                execution_id,
                reason: reason.to_string(),
            })
            .await
    }
}
