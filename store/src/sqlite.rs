//! The embedded SQLite backend: WAL, `synchronous=FULL`, group commit.
//!
//! Reads go through a small connection pool. Every write goes to one writer
//! task that owns its own connection: it takes all the write requests that
//! are waiting and commits them together — one fsync for many executions'
//! appends. If one fails, the batch is redone with a savepoint per request,
//! so one failed request does not undo the others.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
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
use reprise_journal::{HISTORY_EVENTS_MAX, RecordedEvent};

/// The columns [`execution_from_row`] reads, in one place for every query.
macro_rules! execution_columns {
    () => {
        "id, tenant, workflow_id, run_id, workflow_type, module_digest, status, result, created_at_ms, updated_at_ms, search_attributes, owner_node"
    };
}

/// The filter "search attribute at JSON path `$path` equals the JSON text
/// `$value`" (or no filter when the path is NULL), with PostgreSQL's
/// `jsonb` equality: numbers compare by value (`5` = `5.0`), and a value
/// matches only one of the same JSON type (`true` ≠ `1`, `"5"` ≠ `5`).
macro_rules! attribute_matches {
    ($path:literal, $value:literal) => {
        concat!(
            "(",
            $path,
            " IS NULL OR (",
            "json_extract(search_attributes, ",
            $path,
            ") = json_extract(",
            $value,
            ", '$') AND ",
            "replace(json_type(search_attributes, ",
            $path,
            "), 'real', 'integer') = ",
            "replace(json_type(",
            $value,
            "), 'real', 'integer')))"
        )
    };
}

/// Deletes module `?1`'s bytes if nothing names it any more.
const DELETE_UNUSED_MODULE: &str = "DELETE FROM modules WHERE digest = ?1
   AND NOT EXISTS (SELECT 1 FROM tenant_modules WHERE digest = ?1)
   AND NOT EXISTS (SELECT 1 FROM workflow_types WHERE digest = ?1)
   AND NOT EXISTS (SELECT 1 FROM executions WHERE module_digest = ?1)";

const READ_CONNECTIONS_MAX: u32 = 4;
/// Ends an execution (a finishing append, a termination): its status,
/// result and time.
const SET_ENDED: &str =
    "UPDATE executions SET status = ?, result = ?, updated_at_ms = ? WHERE id = ?";
/// Rows of one watermark upsert (two variables each, far below SQLite's limit).
const WATERMARKS_PER_STATEMENT_MAX: usize = 500;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteStore {
    reads: SqlitePool,
    writes: WriteQueue,
    stats: Arc<CommitCounters>,
    /// `<database>.node-lock`, locked while a node holds the database.
    node_lock_path: std::path::PathBuf,
    node_lock: std::sync::Mutex<Option<std::fs::File>>,
    node: NodeCell,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::database("parsing SQLite options"))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable against power loss: a commit returns after its fsync.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // A multi-row events INSERT keeps a statement journal (to undo
        // just that statement if a row fails), one page per leaf it
        // touches: past 64 KiB SQLite spills it to a temporary file, and
        // writing that file cost as much CPU as the commit's fsync. It is
        // never needed after a crash (the WAL is), so memory is enough.
        let writer_options = options.clone().pragma("temp_store", "memory");
        let mut writer = SqliteConnection::connect_with(&writer_options)
            .await
            .map_err(StoreError::database("opening the SQLite database"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut writer)
            .await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS_MAX)
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::database("opening SQLite read connections"))?;
        let (writes, queue) = WriteQueue::new();
        let stats = Arc::new(CommitCounters::default());
        let node = NodeCell::default();
        tokio::spawn(run_writer(writer, queue, stats.clone(), node.clone()));
        let mut node_lock_path = path.as_os_str().to_owned();
        node_lock_path.push(".node-lock");
        Ok(SqliteStore {
            reads,
            writes,
            stats,
            node_lock_path: node_lock_path.into(),
            node_lock: std::sync::Mutex::new(None),
            node,
        })
    }

    /// Takes the database's lock file for this process; `false` if
    /// another process holds it.
    fn lock_database(&self) -> StoreResult<bool> {
        let mut held = self
            .node_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.is_some() {
            return Ok(true);
        }
        let locking = |source: std::io::Error| StoreError::Database {
            doing: "locking the database for this node",
            source: sqlx::Error::Io(source),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.node_lock_path)
            .map_err(locking)?;
        // An OS lock: released when the process dies, however it dies.
        match file.try_lock() {
            Ok(()) => {
                *held = Some(file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(source)) => Err(locking(source)),
        }
    }

    /// Commits and write requests since the store was opened.
    pub fn commit_stats(&self) -> CommitStats {
        self.stats.snapshot()
    }
}

/// The group-commit loop: waits for one request, then takes every request
/// already queued, and commits them all in one transaction.
async fn run_writer(
    mut connection: SqliteConnection,
    mut queue: mpsc::Receiver<WriteRequest>,
    stats: Arc<CommitCounters>,
    node: NodeCell,
) {
    let mut batch = Vec::with_capacity(GROUP_COMMIT_REQUESTS_MAX);
    while queue.recv_many(&mut batch, GROUP_COMMIT_REQUESTS_MAX).await > 0 {
        let outcomes = commit_batch(&mut connection, &batch, node.get()).await;
        stats.record_commit(batch.len());
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            // The requester may have gone away (its task ended); nothing to do.
            let _ = request.reply.send(outcome);
        }
    }
}

/// Applies a batch in one transaction. The fast path runs every request
/// straight; if one fails (rare: an invariant violation or a full disk),
/// the transaction is rolled back and redone with a savepoint per request,
/// so that only the failing requests fail.
async fn commit_batch(
    connection: &mut SqliteConnection,
    batch: &[WriteRequest],
    node: Option<Arc<str>>,
) -> Vec<StoreResult<WriteReply>> {
    match run_transaction(connection, batch, &node, false).await {
        Ok(outcomes) if outcomes.len() == batch.len() && outcomes.iter().all(Result::is_ok) => {
            outcomes
        }
        _ => match run_transaction(connection, batch, &node, true).await {
            Ok(outcomes) => outcomes,
            Err(text) => batch
                .iter()
                .map(|_| {
                    Err(StoreError::Database {
                        doing: "committing a group of writes",
                        source: sqlx::Error::Protocol(text.clone()),
                    })
                })
                .collect(),
        },
    }
}

/// The writer's connection inside one `BEGIN IMMEDIATE … COMMIT`.
///
/// Every statement is a round trip to sqlx's SQLite thread, so the `BEGIN`
/// rides with the transaction's first statement where it can
/// ([`Transaction::leading`]) and the `COMMIT` with the last batch of
/// events ([`insert_events`]): a step's append is one round trip, not three.
struct Transaction<'c> {
    connection: &'c mut SqliteConnection,
    begun: bool,
}

impl<'c> Transaction<'c> {
    fn new(connection: &'c mut SqliteConnection) -> Self {
        Transaction {
            connection,
            begun: false,
        }
    }

    /// The connection, inside the transaction: begins it if no statement
    /// has yet.
    async fn connection(&mut self) -> StoreResult<&mut SqliteConnection> {
        if !self.begun {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *self.connection)
                .await
                .map_err(StoreError::database("beginning a write transaction"))?;
            self.begun = true;
        }
        Ok(&mut *self.connection)
    }

    /// `statement`, behind the transaction's `BEGIN` if it is the first.
    /// Never for a statement whose `rows_affected` is read: SQLite reports
    /// the previous statement's count for a `BEGIN`, and sqlx adds it in.
    fn leading<'s>(&mut self, statement: &'s str) -> Cow<'s, str> {
        if self.begun {
            Cow::Borrowed(statement)
        } else {
            self.begun = true;
            Cow::Owned(format!("BEGIN IMMEDIATE; {statement}"))
        }
    }

    /// Commits what is left uncommitted: nothing if no statement ran, or
    /// if the events' INSERT carried the `COMMIT` ([`Then::Commit`]).
    async fn commit(&mut self) -> StoreResult<()> {
        if self.begun {
            sqlx::query("COMMIT")
                .execute(&mut *self.connection)
                .await
                .map_err(StoreError::database("committing a group of writes"))?;
            self.begun = false;
        }
        Ok(())
    }

    /// Rolls back whatever the transaction did. A failed `BEGIN` leaves
    /// nothing to roll back, and SQLite's refusal then is harmless.
    async fn roll_back(&mut self) {
        if self.begun {
            let _ = sqlx::query("ROLLBACK").execute(&mut *self.connection).await;
            self.begun = false;
        }
    }
}

/// Runs the batch in one transaction. Without `isolate`, all requests'
/// events go in together and the first failure rolls everything back.
/// With it, each request gets a savepoint of its own.
async fn run_transaction(
    connection: &mut SqliteConnection,
    batch: &[WriteRequest],
    node: &Option<Arc<str>>,
    isolate: bool,
) -> Result<Vec<StoreResult<WriteReply>>, String> {
    let mut tx = Transaction::new(connection);
    let fence = match fence(&mut tx, batch, node).await {
        Ok(fence) => fence,
        Err(error) => {
            tx.roll_back().await;
            return Err(error.to_string());
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    for request in batch {
        let outcome = if isolate {
            apply_in_savepoint(&mut tx, &request.op, &fence).await
        } else {
            apply(&mut tx, &request.op, &fence, &mut events).await
        };
        let failed = outcome.is_err();
        outcomes.push(outcome);
        if failed && !isolate {
            tx.roll_back().await;
            return Ok(outcomes);
        }
    }
    // The failure may be the insert's or the commit's that rides with it;
    // either way nothing of the batch is written, and the caller retries
    // it request by request.
    let committed = match insert_events(&mut tx, &events, Then::Commit).await {
        Ok(()) => tx.commit().await,
        Err(error) => Err(error),
    };
    if let Err(error) = committed {
        tx.roll_back().await;
        return Err(error.to_string());
    }
    Ok(outcomes)
}

/// Which of the batch's appended executions `node` owns, while its row
/// exists (SQLite's write lock orders this against claims).
async fn fence(
    tx: &mut Transaction<'_>,
    batch: &[WriteRequest],
    node: &Option<Arc<str>>,
) -> StoreResult<Fence> {
    let appended = appended_executions(batch);
    let owned = match node {
        Some(node) if !appended.is_empty() => {
            let ids = serde_json::to_string(&appended).unwrap_or_else(|_| "[]".to_string());
            let statement = tx.leading(
                "SELECT id FROM executions
                 WHERE id IN (SELECT value FROM json_each(?1)) AND owner_node = ?2
                   AND EXISTS (SELECT 1 FROM nodes WHERE node_id = ?2)",
            );
            sqlx::query_scalar(&statement)
                .bind(ids)
                .bind(node.as_ref())
                .fetch_all(tx.connection().await?)
                .await
                .map_err(StoreError::database(
                    "checking which executions this node owns",
                ))?
                .into_iter()
                .collect()
        }
        _ => Default::default(),
    };
    Ok(Fence {
        node: node.clone(),
        owned,
    })
}

async fn apply_in_savepoint(
    tx: &mut Transaction<'_>,
    op: &WriteOp,
    fence: &Fence,
) -> StoreResult<WriteReply> {
    let statement = tx.leading("SAVEPOINT request");
    sqlx::query(&statement)
        .execute(tx.connection().await?)
        .await
        .map_err(StoreError::database("opening a savepoint"))?;
    let mut events = Vec::new();
    let outcome = match apply(tx, op, fence, &mut events).await {
        Ok(reply) => insert_events(tx, &events, Then::Continue)
            .await
            .map(|()| reply),
        Err(error) => Err(error),
    };
    let closing: &[&str] = if outcome.is_ok() {
        &["RELEASE request"]
    } else {
        &["ROLLBACK TO request", "RELEASE request"]
    };
    for statement in closing {
        sqlx::query(statement)
            .execute(tx.connection().await?)
            .await
            .map_err(StoreError::database("closing a savepoint"))?;
    }
    outcome
}

/// Applies one request. Its events are not inserted here but pushed to
/// `events`, so the caller can insert a whole batch's events together.
async fn apply<'op>(
    tx: &mut Transaction<'_>,
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
                "INSERT INTO modules (digest, kind, bytes, created_at_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(kind)
            .bind(bytes)
            .bind(now_ms())
            .execute(tx.connection().await?)
            .await
            .map_err(StoreError::database("storing a module"))?;
            Ok(WriteReply::Done)
        }
        WriteOp::Start(new) => {
            // One statement for what every start needs to know: each is a
            // round trip to sqlx's SQLite thread inside the write lock.
            let statement = tx.leading(
                "SELECT EXISTS (SELECT 1 FROM executions WHERE tenant = ?1 AND workflow_id = ?2),
                        (SELECT running FROM running_executions WHERE tenant = ?1)",
            );
            let (taken, running): (bool, Option<i64>) = sqlx::query_as(&statement)
                .bind(&new.tenant)
                .bind(&new.workflow_id)
                .fetch_one(tx.connection().await?)
                .await
                .map_err(StoreError::database(
                    "looking up a workflow id and counting running executions",
                ))?;
            if taken
                && let Some(existing) =
                    select_execution(tx.connection().await?, &new.tenant, &new.workflow_id).await?
                && let Some(outcome) = start_refused_by(existing, new.reuse)
            {
                return Ok(WriteReply::Started(Box::new(outcome)));
            }
            let running = running.unwrap_or(0).max(0) as u64;
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
                 VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&new.tenant)
            .bind(&new.workflow_id)
            .bind(&new.run_id)
            .bind(&new.workflow_type)
            .bind(&new.module_digest)
            .bind(now)
            .bind(now)
            .bind(new.search_attributes.as_deref())
            .bind(fence.node.as_deref())
            .bind(new.parent_id)
            .fetch_one(tx.connection().await?)
            .await
            .map_err(StoreError::database("creating an execution"))?;
            events.push((id, &new.started));
            let record = created_record(new, id, now, fence.node.as_deref());
            Ok(WriteReply::Started(Box::new(StartOutcome::Created(record))))
        }
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
                sqlx::query("UPDATE executions SET search_attributes = ? WHERE id = ?")
                    .bind(attributes)
                    .bind(*execution_id)
                    .execute(tx.connection().await?)
                    .await
                    .map_err(StoreError::database("setting search attributes"))?;
            }
            if let Some(message) = delivers {
                let position = appended.last().map(|recorded| recorded.position as i64);
                let marked = sqlx::query(
                    "UPDATE mailbox SET delivered_position = ?
                     WHERE id = ? AND execution_id = ? AND delivered_position IS NULL",
                )
                .bind(position)
                .bind(*message)
                .bind(*execution_id)
                .execute(tx.connection().await?)
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
                let statement = tx.leading(SET_ENDED);
                sqlx::query(&statement)
                    .bind(finish.status.as_str())
                    .bind(&finish.result)
                    .bind(finish.finished_at_ms)
                    .bind(*execution_id)
                    .execute(tx.connection().await?)
                    .await
                    .map_err(StoreError::database("finishing an execution"))?;
                if let Some(next) = &finish.next_run {
                    let now = now_ms();
                    let next_id: i64 = sqlx::query_scalar(
                        "INSERT INTO executions
                       (tenant, workflow_id, run_id, workflow_type, module_digest, status, created_at_ms, updated_at_ms,
                        search_attributes, owner_node, parent_id)
                     SELECT tenant, workflow_id, ?, workflow_type, ?, 'running', ?, ?, search_attributes, owner_node,
                            parent_id
                     FROM executions WHERE id = ?
                     RETURNING id",
                    )
                    .bind(&next.run_id)
                    .bind(&next.module_digest)
                    .bind(now)
                    .bind(now)
                    .bind(*execution_id)
                    .fetch_one(tx.connection().await?)
                    .await
                    .map_err(StoreError::database("starting the next run"))?;
                    events.push((next_id, &next.started));
                    // An upgrade was checked against this run's history; the next
                    // run starts on the type's binding anyway.
                    sqlx::query("UPDATE mailbox SET execution_id = ? WHERE execution_id = ? AND delivered_position IS NULL AND kind <> 'upgrade'")
                        .bind(next_id)
                        .bind(*execution_id)
                        .execute(tx.connection().await?)
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
            // that just ended) goes to the run that replaced it.
            let (target, undelivered): (i64, i64) = sqlx::query_as(
                "SELECT id, undelivered_messages FROM executions
                 WHERE id = COALESCE((SELECT newest.id FROM executions AS ended
                                      JOIN executions AS newest
                                        ON newest.tenant = ended.tenant AND newest.workflow_id = ended.workflow_id
                                      WHERE ended.id = ?1 AND ended.status = 'continued_as_new'
                                      ORDER BY newest.id DESC LIMIT 1), ?1)",
            )
            .bind(*execution_id)
            .fetch_optional(tx.connection().await?)
            .await
            .map_err(StoreError::database("finding a message's run"))?
            .unwrap_or((*execution_id, 0));
            if kind.is_bounded() && undelivered as u64 >= MAILBOX_UNDELIVERED_MAX {
                // A resent message is a duplicate, full mailbox or not.
                let sent_before: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM mailbox WHERE execution_id = ? AND message_id = ?)",
                )
                .bind(target)
                .bind(message_id.as_str())
                .fetch_one(tx.connection().await?)
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
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (execution_id, message_id) DO NOTHING",
            )
            .bind(target)
            .bind(kind.as_str())
            .bind(name.as_str())
            .bind(payload.as_str())
            .bind(message_id.as_str())
            .bind(now_ms())
            .execute(tx.connection().await?)
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
                "INSERT INTO tenants (name, key_sha256, limits, created_at_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name.as_str())
            .bind(key_sha256.as_str())
            .bind(limits.as_str())
            .bind(now_ms())
            .execute(tx.connection().await?)
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
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schedules WHERE tenant = ?")
                .bind(tenant.as_str())
                .fetch_one(tx.connection().await?)
                .await
                .map_err(StoreError::database("counting schedules"))?;
            if count >= i64::from(*schedules_max) {
                return Ok(WriteReply::Schedule(ScheduleWrite::LimitReached));
            }
            let inserted = sqlx::query(
                "INSERT INTO schedules (tenant, schedule_id, document, version, updated_at_ms)
                 VALUES (?, ?, ?, 1, ?) ON CONFLICT (tenant, schedule_id) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(schedule_id.as_str())
            .bind(document.as_str())
            .bind(now_ms())
            .execute(tx.connection().await?)
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
                "UPDATE schedules SET document = ?, version = version + 1, updated_at_ms = ?
                 WHERE tenant = ? AND schedule_id = ? AND version = ?",
            )
            .bind(document.as_str())
            .bind(now_ms())
            .bind(tenant.as_str())
            .bind(schedule_id.as_str())
            .bind(*version)
            .execute(tx.connection().await?)
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
            let deleted = sqlx::query("DELETE FROM schedules WHERE tenant = ? AND schedule_id = ?")
                .bind(tenant.as_str())
                .bind(schedule_id.as_str())
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("deleting a schedule"))?;
            Ok(WriteReply::Schedule(schedule_write(
                deleted.rows_affected(),
            )))
        }
        WriteOp::SetTenantLimits { name, limits } => {
            let updated = sqlx::query("UPDATE tenants SET limits = ? WHERE name = ?")
                .bind(limits.as_str())
                .bind(name.as_str())
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("setting a tenant's limits"))?;
            Ok(WriteReply::Changed(updated.rows_affected() == 1))
        }
        WriteOp::AppendGuestLogs(lines) => {
            for line in lines {
                sqlx::query(
                    "INSERT INTO guest_logs (execution_id, seq, level, source, message, logged_at_ms)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6
                     WHERE (SELECT count(*) FROM guest_logs WHERE execution_id = ?1) < ?7
                       -- Late lines of an execution swept meanwhile have no home.
                       AND EXISTS (SELECT 1 FROM executions WHERE id = ?1)",
                )
                .bind(line.execution_id)
                .bind(line.seq as i64)
                .bind(&line.level)
                .bind(&line.source)
                .bind(&line.message)
                .bind(line.logged_at_ms as i64)
                .bind(GUEST_LOG_LINES_MAX)
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("storing guest log lines"))?;
            }
            Ok(WriteReply::Done)
        }
        WriteOp::SetSpanWatermarks(marks) => {
            // One statement per chunk: sqlx-sqlite pays a thread round trip
            // per statement.
            for chunk in marks.chunks(WATERMARKS_PER_STATEMENT_MAX) {
                let rows = vec!["(?, ?)"; chunk.len()].join(", ");
                // An execution swept meanwhile has nothing left to export.
                let sql = format!(
                    "INSERT INTO span_exports (execution_id, position)
                     SELECT column1, column2 FROM (VALUES {rows})
                     WHERE column1 IN (SELECT id FROM executions)
                     ON CONFLICT (execution_id) DO UPDATE SET position = max(position, excluded.position)"
                );
                let mut query = sqlx::query(&sql);
                for (execution_id, position) in chunk {
                    query = query.bind(*execution_id).bind(*position as i64);
                }
                query
                    .execute(tx.connection().await?)
                    .await
                    .map_err(StoreError::database("recording exported spans"))?;
            }
            Ok(WriteReply::Done)
        }
        WriteOp::PutTenantModule {
            tenant,
            digest,
            kind,
            modules_max,
        } => {
            let (held, has_it): (i64, bool) = sqlx::query_as("SELECT count(*), coalesce(max(digest = ?), 0) FROM tenant_modules WHERE tenant = ?")
                .bind(digest.as_str())
                .bind(tenant.as_str())
                .fetch_one(tx.connection().await?)
                .await
                .map_err(StoreError::database("counting a tenant's modules"))?;
            if !has_it && held >= i64::from(*modules_max) {
                return Ok(WriteReply::Changed(false));
            }
            sqlx::query(
                "INSERT INTO tenant_modules (tenant, digest, kind, uploaded_at_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT (tenant, digest) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(digest.as_str())
            .bind(kind.as_str())
            .bind(now_ms())
            .execute(tx.connection().await?)
            .await
            .map_err(StoreError::database("recording a tenant's module"))?;
            Ok(WriteReply::Changed(true))
        }
        WriteOp::DeleteTenantModule { tenant, digest } => {
            let held: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM tenant_modules WHERE tenant = ? AND digest = ?)",
            )
            .bind(tenant.as_str())
            .bind(digest.as_str())
            .fetch_one(tx.connection().await?)
            .await
            .map_err(StoreError::database("finding a tenant's module"))?;
            if !held {
                return Ok(WriteReply::ModuleDeletion(ModuleDeletion::NotFound));
            }
            let bound: Option<String> = sqlx::query_scalar(
                "SELECT name FROM workflow_types WHERE tenant = ? AND digest = ? ORDER BY name LIMIT 1",
            )
            .bind(tenant.as_str())
            .bind(digest.as_str())
            .fetch_optional(tx.connection().await?)
            .await
            .map_err(StoreError::database("finding a module's workflow types"))?;
            if let Some(name) = bound {
                return Ok(WriteReply::ModuleDeletion(ModuleDeletion::BoundToType(
                    name,
                )));
            }
            let running: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM executions WHERE module_digest = ? AND tenant = ? AND status = 'running'",
            )
            .bind(digest.as_str())
            .bind(tenant.as_str())
            .fetch_one(tx.connection().await?)
            .await
            .map_err(StoreError::database("counting a module's running executions"))?;
            if running > 0 {
                return Ok(WriteReply::ModuleDeletion(ModuleDeletion::Running(
                    running as u64,
                )));
            }
            sqlx::query("DELETE FROM tenant_modules WHERE tenant = ? AND digest = ?")
                .bind(tenant.as_str())
                .bind(digest.as_str())
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("deleting a tenant's module"))?;
            // Every history names the module it ran on: those bytes stay.
            sqlx::query(DELETE_UNUSED_MODULE)
                .bind(digest.as_str())
                .execute(tx.connection().await?)
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
                "AND workflow_id = ?6"
            } else {
                ""
            };
            let find_due = format!(
                "SELECT id, module_digest, updated_at_ms,
                        parent_id IS NOT NULL AND EXISTS
                          (SELECT 1 FROM executions p WHERE p.id = e.parent_id AND p.status = 'running')
                 FROM executions e
                 WHERE tenant = ?1 AND status <> 'running' AND updated_at_ms < ?2
                   AND (updated_at_ms, id) > (?3, ?4) {only_workflow_id}
                 ORDER BY updated_at_ms, id LIMIT ?5",
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
                .fetch_all(tx.connection().await?)
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
                            "DELETE FROM {table} WHERE execution_id = ?1 AND {key} IN
                               (SELECT {key} FROM {table} WHERE execution_id = ?1 ORDER BY {key} LIMIT ?2)"
                        ))
                        .bind(*execution_id)
                        .bind(budget as i64)
                        .execute(tx.connection().await?)
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
                    sqlx::query("DELETE FROM executions WHERE id = ?1")
                        .bind(*execution_id)
                        .execute(tx.connection().await?)
                        .await
                        .map_err(StoreError::database("deleting a finished execution"))?;
                    budget -= 1;
                    sweep.rows += 1;
                    sweep.executions += 1;
                    sqlx::query(DELETE_UNUSED_MODULE)
                        .bind(digest.as_str())
                        .execute(tx.connection().await?)
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
            let (held, has_it): (i64, bool) = sqlx::query_as(
                "SELECT count(*), coalesce(max(name = ?), 0) FROM workflow_types WHERE tenant = ?",
            )
            .bind(name.as_str())
            .bind(tenant.as_str())
            .fetch_one(tx.connection().await?)
            .await
            .map_err(StoreError::database("counting a tenant's workflow types"))?;
            if !has_it && held >= i64::from(*workflow_types_max) {
                return Ok(WriteReply::Changed(false));
            }
            sqlx::query(
                "INSERT INTO workflow_types (tenant, name, digest, updated_at_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT (tenant, name) DO UPDATE SET digest = excluded.digest, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(tenant.as_str())
            .bind(name.as_str())
            .bind(digest.as_str())
            .bind(now_ms())
            .execute(tx.connection().await?)
            .await
            .map_err(StoreError::database("binding a workflow type"))?;
            Ok(WriteReply::Changed(true))
        }
        WriteOp::DeleteWorkflowType { tenant, name } => {
            let deleted = sqlx::query("DELETE FROM workflow_types WHERE tenant = ? AND name = ?")
                .bind(tenant.as_str())
                .bind(name.as_str())
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("unbinding a workflow type"))?
                .rows_affected();
            Ok(WriteReply::Changed(deleted > 0))
        }
        WriteOp::Terminate {
            execution_id,
            reason,
        } => {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM executions WHERE id = ?")
                    .bind(*execution_id)
                    .fetch_optional(tx.connection().await?)
                    .await
                    .map_err(StoreError::database("reading an execution"))?;
            if status.as_deref() != Some(ExecutionStatus::Running.as_str()) {
                return Ok(WriteReply::Changed(false));
            }
            let next: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(position), 0) + 1 FROM events WHERE execution_id = ?",
            )
            .bind(*execution_id)
            .fetch_one(tx.connection().await?)
            .await
            .map_err(StoreError::database("reading a history's length"))?;
            let terminated = terminated_event(next as u64, reason);
            insert_events(tx, &[(*execution_id, &terminated)], Then::Continue).await?;
            sqlx::query(SET_ENDED)
                .bind(ExecutionStatus::Terminated.as_str())
                .bind(terminated_result(reason))
                .bind(now_ms())
                .bind(*execution_id)
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("terminating an execution"))?;
            Ok(WriteReply::Changed(true))
        }
        WriteOp::JoinNodes {
            node_id,
            lease_ms,
            api_url,
        } => {
            // The lock file says this process is the only node: whatever
            // other rows are left are dead nodes'.
            let now = now_ms();
            sqlx::query("DELETE FROM nodes")
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("clearing dead nodes"))?;
            sqlx::query(
                "INSERT INTO nodes (node_id, lease_ms, joined_at_ms, renewed_at_ms, expires_at_ms, api_url)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
            )
            .bind(node_id.as_str())
            .bind(*lease_ms)
            .bind(now)
            .bind(now.saturating_add(*lease_ms))
            .bind(api_url.as_deref())
            .execute(tx.connection().await?)
            .await
            .map_err(StoreError::database("joining the nodes"))?;
            Ok(WriteReply::Done)
        }
        WriteOp::RenewLease { node_id, lease_ms } => {
            let now = now_ms();
            let renewed = sqlx::query(
                "UPDATE nodes SET lease_ms = ?1, renewed_at_ms = ?2, expires_at_ms = ?3
                 WHERE node_id = ?4",
            )
            .bind(*lease_ms)
            .bind(now)
            .bind(now.saturating_add(*lease_ms))
            .bind(node_id.as_ref())
            .execute(tx.connection().await?)
            .await
            .map_err(StoreError::database("renewing the node's lease"))?;
            Ok(WriteReply::Changed(renewed.rows_affected() == 1))
        }
        WriteOp::ClaimOrphans { node_id, limit } => {
            sqlx::query("DELETE FROM nodes WHERE node_id <> ? AND expires_at_ms < ?")
                .bind(node_id.as_ref())
                .bind(now_ms())
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("removing dead nodes"))?;
            let rows = sqlx::query(concat!(
                "UPDATE executions SET owner_node = ?1 WHERE id IN (
                   SELECT id FROM executions e
                   WHERE status = 'running'
                     AND (owner_node IS NULL
                          OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = e.owner_node))
                   ORDER BY id LIMIT ?2)
                 RETURNING ",
                execution_columns!()
            ))
            .bind(node_id.as_ref())
            .bind(i64::from(*limit))
            .fetch_all(tx.connection().await?)
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
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM nodes WHERE node_id = ?2)
                 ON CONFLICT (role) DO UPDATE SET node_id = excluded.node_id
                 WHERE leaders.node_id = excluded.node_id
                    OR NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.node_id = leaders.node_id)
                 RETURNING node_id",
            )
            .bind(*role)
            .bind(node_id.as_ref())
            .fetch_optional(tx.connection().await?)
            .await
            .map_err(StoreError::database("taking the lead"))?;
            Ok(WriteReply::Changed(led.is_some()))
        }
        WriteOp::LeaveNodes { node_id } => {
            sqlx::query("DELETE FROM nodes WHERE node_id = ?")
                .bind(node_id.as_ref())
                .execute(tx.connection().await?)
                .await
                .map_err(StoreError::database("leaving the nodes"))?;
            Ok(WriteReply::Done)
        }
    }
}

/// What follows a batch of events in the statement that inserts them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// More statements of the transaction.
    Continue,
    /// The transaction's `COMMIT`: one round trip fewer.
    Commit,
}

/// Rows per multi-row INSERT (5 parameters each, under SQLite's limit).
const INSERT_ROWS_MAX: usize = 1000;

/// Inserts events with one multi-row statement per [`INSERT_ROWS_MAX`]
/// rows: every statement is a round trip to sqlx's SQLite thread, so one
/// per event would dominate a group commit.
async fn insert_events(
    tx: &mut Transaction<'_>,
    rows: &[(i64, &RecordedEvent)],
    then: Then,
) -> StoreResult<()> {
    let chunks = rows.chunks(INSERT_ROWS_MAX);
    let last = chunks.len().saturating_sub(1);
    for (index, chunk) in chunks.enumerate() {
        let mut payloads = Vec::with_capacity(chunk.len());
        for (execution_id, recorded) in chunk {
            let payload = serde_json::to_string(&recorded.event).map_err(|source| {
                StoreError::CorruptEvent {
                    execution_id: *execution_id,
                    position: recorded.position as i64,
                    source,
                }
            })?;
            payloads.push(payload);
        }
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(tx.leading(
            "INSERT INTO events (execution_id, position, kind, payload, recorded_at_ms) ",
        ));
        insert.push_values(
            chunk.iter().zip(payloads),
            |mut row, ((execution_id, recorded), payload)| {
                row.push_bind(*execution_id)
                    .push_bind(recorded.position as i64)
                    .push_bind(recorded.event.kind())
                    .push_bind(payload)
                    .push_bind(recorded.recorded_at_ms as i64);
            },
        );
        let commits = then == Then::Commit && index == last;
        if commits {
            insert.push("; COMMIT");
        }
        match insert.build().execute(tx.connection().await?).await {
            Ok(_) if commits => tx.begun = false,
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                let (execution_id, first) = chunk[0];
                return Err(StoreError::PositionTaken {
                    execution_id,
                    position: first.position,
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

async fn select_execution(
    connection: &mut SqliteConnection,
    tenant: &str,
    workflow_id: &str,
) -> StoreResult<Option<ExecutionRecord>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE tenant = ? AND workflow_id = ?
         ORDER BY created_at_ms DESC, id DESC LIMIT 1"
    ))
    .bind(tenant)
    .bind(workflow_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(StoreError::database("reading an execution"))?;
    row.map(|row| execution_from_row(&row)).transpose()
}

fn tenant_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<TenantRecord> {
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

/// The JSON path of the filter's search attribute (`$."key"`; keys hold
/// no quotes).
fn attribute_path(filter: &ExecutionFilter) -> Option<String> {
    filter
        .search_attribute
        .as_ref()
        .map(|(key, _)| format!("$.\"{key}\""))
}

fn attribute_value(filter: &ExecutionFilter) -> Option<&str> {
    filter
        .search_attribute
        .as_ref()
        .map(|(_, value)| value.as_str())
}

fn execution_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<ExecutionRecord> {
    let decode = |error| StoreError::Database {
        doing: "decoding an execution row",
        source: error,
    };
    let status: String = row.try_get("status").map_err(decode)?;
    Ok(ExecutionRecord {
        id: row.try_get("id").map_err(decode)?,
        tenant: row.try_get("tenant").map_err(decode)?,
        workflow_id: row.try_get("workflow_id").map_err(decode)?,
        run_id: row.try_get("run_id").map_err(decode)?,
        workflow_type: row.try_get("workflow_type").map_err(decode)?,
        module_digest: row.try_get("module_digest").map_err(decode)?,
        status: ExecutionStatus::parse(&status),
        result: row.try_get("result").map_err(decode)?,
        created_at_ms: row.try_get("created_at_ms").map_err(decode)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(decode)?,
        search_attributes: row.try_get("search_attributes").map_err(decode)?,
        owner_node: row.try_get("owner_node").map_err(decode)?,
    })
}

fn message_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<MailboxMessage> {
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

/// Events per query when a whole history is read (see `history`).
const HISTORY_READ_PAGE_EVENTS: u64 = 2_048;

/// The events of a history page, as SQLite hands them over: one row,
/// whatever the page's length (sqlx-sqlite hands every row from its worker
/// thread to the async side separately, which cost more than decoding).
struct PageLines {
    /// "position recorded_at_ms" of each event, comma-separated.
    stamps: String,
    /// Each event's JSON payload, newline-separated: JSON strings never
    /// hold a raw newline.
    payloads: String,
}

/// The page of execution `?1`'s events after position `?2`, up to `?3`,
/// and the history's length (its last position: one seek).
///
/// Both aggregates take the same rows in the same pass, so the `n`th stamp
/// and the `n`th payload are one event's, and the stamps' positions show
/// the order the rows came in (`History::from_recorded` refuses any out
/// of order). Building a line per event instead (`position || ' ' || …
/// || payload`) copied every payload once more inside SQLite. The rows
/// are ordered in a subquery, which walks the primary key in order: an
/// `ORDER BY` inside `group_concat` sorted them again in a temporary
/// B-tree, 1.6x the time for a long history.
const HISTORY_PAGE_QUERY: &str = "SELECT
       (SELECT max(position) FROM events WHERE execution_id = ?1),
       group_concat(position || ' ' || recorded_at_ms),
       group_concat(payload, char(10))
     FROM (SELECT position, recorded_at_ms, payload FROM events
           WHERE execution_id = ?1 AND position > ?2 AND position <= ?3
           ORDER BY position)";

/// The history's length, and at most `limit` of its events after position
/// `after` (`None` if there are none).
async fn history_lines(
    reads: &SqlitePool,
    execution_id: i64,
    after: u64,
    limit: u64,
) -> StoreResult<(u64, Option<PageLines>)> {
    let (after, until) = page_positions(after, limit);
    let (length, stamps, payloads): (Option<i64>, Option<String>, Option<String>) =
        sqlx::query_as(HISTORY_PAGE_QUERY)
            .bind(execution_id)
            .bind(after)
            .bind(until)
            .fetch_one(reads)
            .await
            .map_err(StoreError::database("reading a history"))?;
    let length = length
        .and_then(|last| u64::try_from(last).ok())
        .unwrap_or(0);
    let page = stamps
        .zip(payloads)
        .map(|(stamps, payloads)| PageLines { stamps, payloads });
    Ok((length, page))
}

/// Reads the pages of a history after its first one into `pages`, one
/// ahead of the reader, until a page is empty, a read fails or the reader
/// is gone. (Events are never changed once written, so pages read in
/// separate queries join up.)
async fn read_pages_ahead(
    reads: SqlitePool,
    execution_id: i64,
    length: u64,
    page_events: u64,
    pages: mpsc::Sender<StoreResult<PageLines>>,
) {
    let mut after = page_events;
    while after < length {
        let page = match history_lines(&reads, execution_id, after, page_events).await {
            Ok((_, Some(lines))) => Ok(lines),
            Ok((_, None)) => return,
            Err(error) => Err(error),
        };
        let failed = page.is_err();
        if pages.send(page).await.is_err() || failed {
            return;
        }
        after += page_events;
    }
}

/// Decodes a page's events onto the end of `events`.
fn decode_history_lines(
    execution_id: i64,
    page: &PageLines,
    events: &mut Vec<RecordedEvent>,
) -> StoreResult<()> {
    let mut payloads = page.payloads.split('\n');
    for stamp in page.stamps.split(',') {
        let mut numbers = stamp.split(' ').map(|number| number.parse::<u64>().ok());
        let (Some(Some(position)), Some(Some(recorded_at_ms)), Some(payload)) =
            (numbers.next(), numbers.next(), payloads.next())
        else {
            return Err(malformed_page(execution_id, stamp));
        };
        let event = serde_json::from_str(payload).map_err(|source| StoreError::CorruptEvent {
            execution_id,
            position: position as i64,
            source,
        })?;
        events.push(RecordedEvent {
            position,
            recorded_at_ms,
            event,
        });
    }
    match payloads.next() {
        None => Ok(()),
        Some(_) => Err(malformed_page(execution_id, "more payloads than positions")),
    }
}

fn malformed_page(execution_id: i64, what: &str) -> StoreError {
    StoreError::CorruptEvent {
        execution_id,
        position: -1,
        source: serde::de::Error::custom(format!("malformed history page at `{what:.80}`")),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn join_nodes(
        &self,
        node_id: &str,
        lease: Duration,
        api_url: Option<&str>,
    ) -> StoreResult<Joined> {
        if !self.lock_database()? {
            return Ok(Joined::Refused);
        }
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
        // One node at a time: there are no others.
        Ok(Vec::new())
    }

    async fn renew_lease(&self, lease: Duration) -> StoreResult<bool> {
        self.writes.renew_lease(&self.node, lease).await
    }

    async fn claim_orphans(&self, limit: u32) -> StoreResult<Vec<ExecutionRecord>> {
        self.writes.claim_orphans(&self.node, limit).await
    }

    async fn lead(&self, role: &'static str) -> StoreResult<bool> {
        self.writes.lead(&self.node, role).await
    }

    async fn leave_nodes(&self) -> StoreResult<()> {
        self.writes.leave_nodes(&self.node).await
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
        sqlx::query_scalar("SELECT bytes FROM modules WHERE digest = ?")
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

    async fn history(&self, execution_id: i64) -> StoreResult<Vec<RecordedEvent>> {
        let page_events = HISTORY_READ_PAGE_EVENTS;
        let (length, first) = history_lines(&self.reads, execution_id, 0, page_events).await?;
        let Some(first) = first else {
            return Ok(Vec::new());
        };
        // A long history is read in pages, and the next page's query runs
        // on SQLite's thread while this task decodes the one before: on a
        // long history the two take about as long as each other.
        let mut pages = None;
        if length > page_events {
            let (pages_tx, pages_rx) = mpsc::channel(1);
            tokio::spawn(read_pages_ahead(
                self.reads.clone(),
                execution_id,
                length,
                page_events,
                pages_tx,
            ));
            pages = Some(pages_rx);
        }
        // Reserved once: growing a vector of a long history's events copied
        // them again at every doubling. (Capped: the length is the stored
        // last position, which only a corrupt history makes huge.)
        let mut events = Vec::with_capacity(length.min(HISTORY_EVENTS_MAX as u64) as usize);
        decode_history_lines(execution_id, &first, &mut events)?;
        if let Some(mut pages) = pages {
            while let Some(page) = pages.recv().await {
                decode_history_lines(execution_id, &page?, &mut events)?;
            }
        }
        Ok(events)
    }

    async fn history_page(
        &self,
        execution_id: i64,
        after: u64,
        limit: u64,
    ) -> StoreResult<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        if let (_, Some(lines)) = history_lines(&self.reads, execution_id, after, limit).await? {
            decode_history_lines(execution_id, &lines, &mut events)?;
        }
        Ok(events)
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
             WHERE execution_id = ? AND delivered_position IS NULL ORDER BY id",
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
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, execution_id FROM mailbox
             WHERE id > ? AND delivered_position IS NULL ORDER BY id",
        )
        .bind(after.0)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("watching mailboxes"))?;
        let newest_row = rows.last().map_or(after.0, |(id, _)| *id);
        Ok(MailboxActivity {
            rows,
            cursor: MailboxCursor(newest_row),
        })
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
             WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, schedule_id",
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
             WHERE tenant = ?1 AND status <> 'running'
             ORDER BY updated_at_ms DESC, id DESC LIMIT 1 OFFSET ?2",
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
        sqlx::query_scalar("SELECT digest FROM workflow_types WHERE tenant = ? AND name = ?")
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
        sqlx::query_as("SELECT tenant, name, digest FROM workflow_types WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, name")
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
        // id (found within the tenant, by the unique (tenant, workflow_id,
        // run_id) index) breaks ties between executions created in the same
        // millisecond. A cursor naming nothing compares as NULL: no rows.
        let rows = sqlx::query(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions WHERE tenant = ?1
               AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR workflow_type = ?3)
               AND (?4 IS NULL OR created_at_ms >= ?4)
               AND (?5 IS NULL OR created_at_ms < ?5)
               AND (?6 IS NULL OR substr(workflow_id, 1, length(?6)) = ?6)
               AND (?7 IS NULL OR (created_at_ms, id) < (?7,
                    (SELECT id FROM executions WHERE tenant = ?1 AND workflow_id = ?8 AND run_id = ?9)))
             AND ",
            attribute_matches!("?11", "?12"),
            " ORDER BY created_at_ms DESC, id DESC LIMIT ?10"
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
        .bind(filter.limit)
        .bind(attribute_path(filter))
        .bind(attribute_value(filter))
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
        let rows: Vec<(String, i64)> = sqlx::query_as(concat!(
            "SELECT status, count(*) FROM executions WHERE tenant = ?1
               AND (?2 IS NULL OR workflow_type = ?2)
               AND (?3 IS NULL OR created_at_ms >= ?3)
               AND (?4 IS NULL OR created_at_ms < ?4)
               AND (?5 IS NULL OR substr(workflow_id, 1, length(?5)) = ?5)
               AND ",
            attribute_matches!("?6", "?7"),
            " GROUP BY status"
        ))
        .bind(tenant)
        .bind(filter.workflow_type.as_deref())
        .bind(filter.created_from_ms)
        .bind(filter.created_until_ms)
        .bind(filter.id_prefix.as_deref())
        .bind(attribute_path(filter))
        .bind(attribute_value(filter))
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
            "SELECT name, key_sha256, limits, created_at_ms FROM tenants WHERE key_sha256 = ?",
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
            "SELECT t.digest, t.kind, length(m.bytes) AS size_bytes, t.uploaded_at_ms
             FROM tenant_modules t JOIN modules m ON m.digest = t.digest
             WHERE t.tenant = ? ORDER BY t.uploaded_at_ms DESC, t.digest",
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
             WHERE kind = 'activity' AND (?1 IS NULL OR tenant = ?1)
             ORDER BY uploaded_at_ms, digest",
        )
        .bind(tenant)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::database("listing uploaded activity modules"))
    }

    async fn append_guest_logs(&self, lines: Vec<GuestLogLine>) -> StoreResult<()> {
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
             WHERE execution_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(execution_id)
        .bind(after)
        .bind(limit)
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
            sqlx::query_scalar("SELECT position FROM span_exports WHERE execution_id = ?")
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
