//! Persistence: one [`Store`] trait, two backends behind it.
//!
//! `store` knows nothing about Wasm: it keeps modules, executions and their
//! append-only histories, mailboxes, tenants, guest logs and span export
//! watermarks. The engine talks only to the trait.
//!
//! # The contract every backend keeps
//!
//! - **A journaled event is never overwritten.** `(execution_id, position)`
//!   is unique; a second write there fails with
//!   [`StoreError::PositionTaken`] and leaves the first intact. This is also
//!   how `terminate` fences a process still driving the execution.
//! - **Group commit.** Every write goes to one writer task per store, which
//!   takes all queued requests and runs them in one transaction (the
//!   events of the whole batch in multi-row inserts), one durable commit.
//!   **One bad request does not sink its batch**: if one fails, the batch is
//!   redone with a savepoint per request and only that request fails.
//! - **A mailbox message is delivered once**: [`Store::append_delivering`]
//!   marks it delivered in the append's transaction, or fails with
//!   [`StoreError::AlreadyDelivered`] and appends nothing.
//! - **The running-executions limit is checked in the start's
//!   transaction** ([`NewExecution::running_max`]), so concurrent starts
//!   never exceed it.
//! - **Tenant scoping**: every lookup by workflow id, list, count and module
//!   listing takes the tenant; another tenant's executions do not exist for
//!   it. (Calls by execution row id trust the caller to have found that id
//!   through its tenant.)
//! - **Payloads are text, byte for byte**: events, inputs, results, mailbox
//!   payloads and limits documents come back exactly as written (key
//!   order, big integers and float digits untouched).
//! - **Only an execution's owner appends to it.** Once a store joined the
//!   database's nodes ([`Store::join_nodes`]), the executions it starts are
//!   owned by its node, and an append to one the node does not own — or
//!   after the node lost its lease — fails with [`StoreError::NotOwner`],
//!   checked in the append's transaction. A node whose lease passed loses
//!   its executions to whichever node claims them ([`Store::claim_orphans`]).
//! - Span export watermarks only rise; each execution keeps at most
//!   [`GUEST_LOG_LINES_MAX`] guest log lines.
//!
//! # Which backend when
//!
//! - [`SqliteStore`] (`open`, a file path): the embedded default, nothing to
//!   set up; one node. WAL with `synchronous=FULL`.
//! - [`PostgresStore`] (`open_url`, `postgres://…`): a database several
//!   processes can share, or one operators already run and back up.
//!   `synchronous_commit` is on for every connection it opens.
//!
//! The store suite (`store/tests/suite`) runs the same tests against both.

mod postgres;
mod sqlite;
mod writes;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use reprise_journal::RecordedEvent;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Errors from a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error while {doing}: {source}")]
    Database {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "stored event at position {position} of execution {execution_id} is unreadable: {source}"
    )]
    CorruptEvent {
        execution_id: i64,
        position: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "journal invariant violated: execution {execution_id} already has an event at position {position}; events are never overwritten"
    )]
    PositionTaken { execution_id: i64, position: u64 },
    #[error("mailbox message {id} of execution {execution_id} was already delivered")]
    AlreadyDelivered { execution_id: i64, id: i64 },
    #[error(
        "execution {execution_id} already holds {MAILBOX_UNDELIVERED_MAX} signals and updates it has not received, the most one execution may hold; send more once the workflow has received some"
    )]
    MailboxFull { execution_id: i64 },
    #[error(
        "execution {execution_id} is not this node's: its lease passed to another node (or this node left); the append was refused"
    )]
    NotOwner { execution_id: i64 },
    #[error("the store's writer has stopped; the process is shutting down")]
    WriterGone,
}

impl StoreError {
    fn database(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Database { doing, source }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How well group commit is working: requests per commit (and fsync).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitStats {
    pub commits: u64,
    pub requests: u64,
}

/// The most log lines one execution keeps.
pub const GUEST_LOG_LINES_MAX: u32 = 10_000;

/// Lifecycle of an execution as the `executions.status` column records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Running,
    Completed,
    Failed,
    /// The workflow ended after a cancellation request.
    Cancelled,
    /// An operator stopped it; no compensation ran.
    Terminated,
    /// The workflow ended this run and started the next run of its id.
    ContinuedAsNew,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::Terminated => "terminated",
            ExecutionStatus::ContinuedAsNew => "continued_as_new",
        }
    }

    pub fn parse(text: &str) -> ExecutionStatus {
        match text {
            "completed" => ExecutionStatus::Completed,
            "failed" => ExecutionStatus::Failed,
            "cancelled" => ExecutionStatus::Cancelled,
            "terminated" => ExecutionStatus::Terminated,
            "continued_as_new" => ExecutionStatus::ContinuedAsNew,
            _ => ExecutionStatus::Running,
        }
    }
}

/// An execution and its whole history: the file `reprise history --json`
/// and the API's `/export` write and `reprise replay --history FILE`
/// reads. Payloads are the recorded text.
#[derive(Serialize, Deserialize)]
pub struct HistoryExport {
    pub execution: ExecutionRecord,
    pub events: Vec<RecordedEvent>,
}

/// An execution row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub id: i64,
    pub tenant: String,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub module_digest: String,
    pub status: ExecutionStatus,
    /// Output JSON (completed) or error JSON (failed).
    pub result: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The run's search attributes: a JSON object, as the last write left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_attributes: Option<String>,
    /// The node that drives it while it runs (none: any node may claim
    /// it). Operational state, not part of an exported history.
    #[serde(skip)]
    pub owner_node: Option<String>,
}

/// What `start_execution` needs; the first event (`WorkflowStarted`) is
/// written in the same transaction as the row.
#[derive(Clone, Debug)]
pub struct NewExecution {
    pub tenant: String,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub module_digest: String,
    pub started: RecordedEvent,
    /// What to do when `workflow_id` already ran to its end.
    pub reuse: IdReusePolicy,
    /// Refuse the start when the tenant already runs this many executions.
    pub running_max: u64,
    /// The search attributes the run starts with (a JSON object).
    pub search_attributes: Option<String>,
    /// The execution that started this one as its child: while that one
    /// runs, this one is kept past its retention (the parent may not have
    /// journaled its outcome yet).
    pub parent_id: Option<i64>,
}

/// Whether a workflow id whose newest run has finished may start again. A
/// running id is never started twice: its run is the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdReusePolicy {
    /// The finished run is the answer (an idempotent start).
    #[default]
    ReturnExisting,
    /// A new run starts.
    Allow,
    /// A new run starts if the last one failed, was cancelled or
    /// terminated; after a completion the start is refused.
    AllowIfFailed,
    /// The start is refused.
    Reject,
}

impl IdReusePolicy {
    /// Whether a new run may follow one that ended with `status`.
    pub fn allows_after(self, status: ExecutionStatus) -> Option<bool> {
        match self {
            IdReusePolicy::ReturnExisting => None,
            IdReusePolicy::Allow => Some(true),
            IdReusePolicy::AllowIfFailed => Some(status != ExecutionStatus::Completed),
            IdReusePolicy::Reject => Some(false),
        }
    }
}

/// What `start_execution` did.
#[derive(Clone, Debug, PartialEq)]
pub enum StartOutcome {
    /// A new run, with its first event.
    Created(ExecutionRecord),
    /// The id's newest run (running, or finished under `ReturnExisting`).
    Existing(ExecutionRecord),
    /// The id's newest run finished and the policy refused a new one.
    ReuseRefused(ExecutionRecord),
    /// The tenant already runs `running` executions, its limit.
    AtCapacity { running: u64 },
}

/// A schedule as stored: the runtime's document (JSON), and the version a
/// write must name to replace it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSchedule {
    pub tenant: String,
    pub schedule_id: String,
    pub document: String,
    pub version: i64,
}

/// What a schedule write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleWrite {
    Written,
    /// Created: the id exists already. Replaced or deleted: the schedule
    /// is gone, or another write changed it first (read it again).
    Conflict,
    /// Created: the tenant has `schedules_max` schedules already.
    LimitReached,
}

/// What [`Store::delete_tenant_module`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleDeletion {
    Deleted,
    /// The tenant has no module with that digest.
    NotFound,
    /// Kept: the tenant's workflow type of this name is bound to it.
    BoundToType(String),
    /// Kept: this many of the tenant's executions run on it.
    Running(u64),
}

/// What one [`Store::sweep_finished`] call deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Executions deleted whole (their rows gone).
    pub executions: u32,
    /// Rows deleted in all: events, messages, log lines, execution rows.
    pub rows: u64,
    /// Whether the call stopped at its row budget or its batch, so more
    /// may be due.
    pub more: bool,
    /// Where the next call of the same pass goes on.
    pub cursor: Option<SweepCursor>,
}

/// A place in a tenant's finished executions, in the order sweeps go:
/// by finish time, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepCursor {
    pub finished_at_ms: i64,
    pub id: i64,
}

/// Finished executions one [`Store::sweep_finished`] call looks at.
pub const SWEEP_EXECUTIONS_MAX: u32 = 64;

/// What [`Store::join_nodes`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined {
    /// The node is a member with a lease.
    Member,
    /// The backend takes one node at a time and another process is it.
    Refused,
}

/// A tenant row.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantRecord {
    pub name: String,
    pub key_sha256: String,
    /// The limits document (JSON; see `TenantLimits`).
    pub limits: String,
    pub created_at_ms: i64,
}

/// A module a tenant uploaded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantModule {
    pub digest: String,
    pub kind: String,
    pub size_bytes: i64,
    pub uploaded_at_ms: i64,
}

/// How an append changes the execution row, if at all.
#[derive(Clone, Debug)]
pub struct Finish {
    pub status: ExecutionStatus,
    pub result: String,
    /// The row's `updated_at_ms`: fixed when the finish is made (the writer
    /// stores it as is), so the drive that finishes the run knows the row
    /// it leaves without reading it back.
    pub finished_at_ms: i64,
    /// The run a continue-as-new starts in the same transaction.
    pub next_run: Option<Box<NextRun>>,
}

impl Finish {
    /// The end of a run that starts no other, now.
    pub fn new(status: ExecutionStatus, result: String) -> Finish {
        Finish {
            status,
            result,
            finished_at_ms: writes::now_ms(),
            next_run: None,
        }
    }
}

/// The next run of a workflow id, started by a continue-as-new: the same
/// tenant, workflow id and type as the run that ends, a new run id, a
/// fresh history beginning with `started`. The ending run's undelivered
/// messages move to it, and it takes the ending run's place in the
/// tenant's running count (no capacity check: nothing new runs).
#[derive(Clone, Debug)]
pub struct NextRun {
    pub run_id: String,
    pub module_digest: String,
    pub started: RecordedEvent,
}

/// A line a workflow logged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuestLogLine {
    /// Its row id (0 before it is stored): pages go `after` it.
    pub id: i64,
    #[serde(skip)]
    pub execution_id: i64,
    /// The last command the workflow made before the line.
    pub seq: u64,
    pub level: String,
    /// `log` (the SDK), `stdout` or `stderr`.
    pub source: String,
    pub message: String,
    pub logged_at_ms: u64,
}

/// Which executions a list returns; `None` fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct ExecutionFilter {
    pub status: Option<ExecutionStatus>,
    pub workflow_type: Option<String>,
    /// Created at or after this time (ms since the epoch).
    pub created_from_ms: Option<i64>,
    /// Created before this time (ms since the epoch).
    pub created_until_ms: Option<i64>,
    /// Only workflow ids that start with this text.
    pub id_prefix: Option<String>,
    /// Only runs whose search attribute `.0` equals the JSON value `.1`
    /// (a key of letters, digits, `_` and `-`; see the runtime's check).
    pub search_attribute: Option<(String, String)>,
    /// Only executions listed after this one (the next page).
    pub before: Option<ListCursor>,
    /// At most this many (the newest).
    pub limit: u32,
}

/// Where a page of a list ended: its last execution. The next page holds
/// what is older in list order (`created_at_ms`, then row id, descending),
/// so executions started meanwhile never shift it or repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at_ms: i64,
    pub workflow_id: String,
    pub run_id: String,
}

/// How many of a tenant's executions are in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub terminated: u64,
    pub continued_as_new: u64,
}

impl StatusCounts {
    /// From `(status, count)` rows, as a `GROUP BY status` gives them.
    fn from_rows(rows: Vec<(String, i64)>) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for (status, count) in rows {
            let count = u64::try_from(count).unwrap_or_default();
            match ExecutionStatus::parse(&status) {
                ExecutionStatus::Running => counts.running += count,
                ExecutionStatus::Completed => counts.completed += count,
                ExecutionStatus::Failed => counts.failed += count,
                ExecutionStatus::Cancelled => counts.cancelled += count,
                ExecutionStatus::Terminated => counts.terminated += count,
                ExecutionStatus::ContinuedAsNew => counts.continued_as_new += count,
            }
        }
        counts
    }
}

/// What kind of message an execution's mailbox holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Signal,
    Cancel,
    /// An update: `message_id` is its update id, `payload` its args.
    Update,
    /// A move to module `name` (a digest) that an upgrade of running
    /// executions found safe, applied at the execution's next activation.
    Upgrade,
}

impl MessageKind {
    fn as_str(self) -> &'static str {
        match self {
            MessageKind::Signal => "signal",
            MessageKind::Cancel => "cancel",
            MessageKind::Update => "update",
            MessageKind::Upgrade => "upgrade",
        }
    }

    /// Whether messages of this kind count toward
    /// [`MAILBOX_UNDELIVERED_MAX`]: what outside callers send as often as
    /// they like. The migrations' mailbox triggers keep each execution's
    /// `undelivered_messages` count of these same kinds.
    fn is_bounded(self) -> bool {
        matches!(self, MessageKind::Signal | MessageKind::Update)
    }

    /// The kind stored as `text` (rows written before updates existed
    /// hold only `signal` and `cancel`).
    fn parse(text: &str) -> MessageKind {
        match text {
            "cancel" => MessageKind::Cancel,
            "update" => MessageKind::Update,
            "upgrade" => MessageKind::Upgrade,
            _ => MessageKind::Signal,
        }
    }
}

/// The mailbox id of update `update_id`. Updates and signals share the
/// mailbox's ids (one `UNIQUE` per execution), so update ids carry a
/// prefix that signal ids from callers cannot collide with.
pub fn update_message_id(update_id: &str) -> String {
    format!("{UPDATE_MESSAGE_PREFIX}{update_id}")
}

const UPDATE_MESSAGE_PREFIX: &str = "update:";

/// The most signals and updates one execution may hold undelivered. Every
/// wait that finds its mailbox flagged reads all of them, and a workflow
/// need not ever receive a signal it was sent: without a bound, a sender
/// could make each of its waits read without end. Cancellation requests
/// (one per execution) and upgrades are not counted.
pub const MAILBOX_UNDELIVERED_MAX: u64 = 10_000;

/// A message sent to an execution, not yet delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct MailboxMessage {
    /// The row id: what an append names to mark it delivered.
    pub id: i64,
    pub kind: MessageKind,
    pub name: String,
    /// JSON.
    pub payload: String,
    pub message_id: String,
}

impl MailboxMessage {
    /// The update id of an update message (see [`update_message_id`]).
    pub fn update_id(&self) -> &str {
        self.message_id
            .strip_prefix(UPDATE_MESSAGE_PREFIX)
            .unwrap_or(&self.message_id)
    }
}

/// Where a mailbox watcher has read to: the first reading starts from
/// [`MailboxCursor::default`], each later one from the cursor the previous
/// [`Store::mailbox_activity`] returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxCursor(
    /// SQLite: the newest row id read (its one writer commits rows in id
    /// order). PostgreSQL: the oldest transaction still running at the
    /// last reading; rows written by it or by later ones may have become
    /// visible since, whatever their ids.
    i64,
);

/// What [`Store::mailbox_activity`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct MailboxActivity {
    /// `(row id, execution id)` of each undelivered message that may be
    /// new since the cursor, by row id. A row can be reported again by the
    /// next reading (while its writer's transaction is not yet older than
    /// every running one); a watcher that remembers the previous reading's
    /// rows raises each message once.
    pub rows: Vec<(i64, i64)>,
    /// Where the next reading starts.
    pub cursor: MailboxCursor,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Commits and write requests since the store was opened, if the
    /// backend counts them.
    fn commit_stats(&self) -> Option<CommitStats> {
        None
    }

    /// Joins the nodes sharing this database as `node_id`, with a lease
    /// of `lease`. From then on the executions this store starts are owned
    /// by the node, and appends to executions it does not own fail with
    /// [`StoreError::NotOwner`]. Joining again (after a lost lease) takes
    /// a new id. SQLite takes one node at a time: while another process
    /// is it, the answer is [`Joined::Refused`]; a process that joins
    /// knows every earlier node is dead and clears their leases.
    /// `api_url` is where the node's HTTP API answers the other nodes.
    async fn join_nodes(
        &self,
        node_id: &str,
        lease: Duration,
        api_url: Option<&str>,
    ) -> StoreResult<Joined>;

    /// Where the other live nodes' HTTP APIs answer (those that said).
    async fn peer_api_urls(&self) -> StoreResult<Vec<String>>;

    /// The node this store joined as, if it did.
    fn node_id(&self) -> Option<Arc<str>>;

    /// Extends the node's lease by `lease` from now (the database's
    /// clock); `false` when the node had lost it — another node claimed
    /// its executions, or it left — and must stop driving every one of
    /// them and join again under a new id.
    async fn renew_lease(&self, lease: Duration) -> StoreResult<bool>;

    /// Claims for this node at most `limit` running executions that no
    /// live node owns: never owned, owned by a node that left, or by one
    /// whose lease passed (its row is deleted in the same transaction, so
    /// it can append nothing more) or, on PostgreSQL, whose database
    /// session is gone. Oldest first.
    async fn claim_orphans(&self, limit: u32) -> StoreResult<Vec<ExecutionRecord>>;

    /// Leaves the nodes: this node's executions are orphans at once.
    async fn leave_nodes(&self) -> StoreResult<()>;

    /// Whether this node leads `role` (work one node does for all, like
    /// the scheduler): it does if it did, or if the node that did is no
    /// longer a member. A store that never joined leads everything.
    async fn lead(&self, role: &'static str) -> StoreResult<bool>;

    /// Stores component bytes under their digest (a no-op if present).
    async fn put_module(&self, digest: &str, kind: &str, bytes: &[u8]) -> StoreResult<()>;

    async fn module(&self, digest: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Creates an execution and its first event, unless `workflow_id`
    /// already has a run the reuse policy keeps, or the tenant is at its
    /// running-executions limit (checked in the same transaction).
    async fn start_execution(&self, new: NewExecution) -> StoreResult<StartOutcome>;

    /// The newest execution of `workflow_id`.
    async fn execution(
        &self,
        tenant: &str,
        workflow_id: &str,
    ) -> StoreResult<Option<ExecutionRecord>>;

    /// The whole history, in position order.
    async fn history(&self, execution_id: i64) -> StoreResult<Vec<RecordedEvent>> {
        self.history_page(execution_id, 0, u64::MAX).await
    }

    /// At most `limit` events after position `after`, in position order.
    async fn history_page(
        &self,
        execution_id: i64,
        after: u64,
        limit: u64,
    ) -> StoreResult<Vec<RecordedEvent>>;

    /// Appends events durably (one commit, shared with concurrent appends)
    /// and optionally finishes the execution in the same transaction. Fails
    /// with [`StoreError::PositionTaken`] rather than overwrite an event.
    async fn append(
        &self,
        execution_id: i64,
        events: Vec<RecordedEvent>,
        finish: Option<Finish>,
    ) -> StoreResult<()>;

    /// Appends events and sets the run's search attributes (the whole JSON
    /// object) in one transaction.
    async fn append_setting_attributes(
        &self,
        execution_id: i64,
        events: Vec<RecordedEvent>,
        search_attributes: String,
    ) -> StoreResult<()>;

    /// Appends events and marks mailbox message `delivered` as delivered at
    /// the last of them, in one transaction: a message is delivered once.
    async fn append_delivering(
        &self,
        execution_id: i64,
        events: Vec<RecordedEvent>,
        delivered: i64,
    ) -> StoreResult<()>;

    /// Puts a message in an execution's mailbox; `false` if a message with
    /// the same `message_id` was sent before (it is not sent again).
    /// A signal or update that would make more than
    /// [`MAILBOX_UNDELIVERED_MAX`] undelivered is refused
    /// ([`StoreError::MailboxFull`]).
    async fn post_message(
        &self,
        execution_id: i64,
        kind: MessageKind,
        name: &str,
        payload: &str,
        message_id: &str,
    ) -> StoreResult<bool>;

    /// The execution's undelivered messages, oldest first.
    async fn undelivered_messages(&self, execution_id: i64) -> StoreResult<Vec<MailboxMessage>>;

    /// Every undelivered `Upgrade` message, with its execution, oldest
    /// first (what nodes apply at each execution's next activation).
    async fn undelivered_upgrades(&self) -> StoreResult<Vec<(i64, MailboxMessage)>>;

    /// The undelivered messages that became visible since `after` (for
    /// watchers): every message committed since is reported, whatever
    /// order the rows' ids were drawn in.
    async fn mailbox_activity(&self, after: MailboxCursor) -> StoreResult<MailboxActivity>;

    /// Creates schedule `schedule_id` of `tenant` with `document`
    /// (version 1), unless it exists or the tenant has `schedules_max`
    /// schedules already (counted in the same transaction).
    async fn create_schedule(
        &self,
        tenant: &str,
        schedule_id: &str,
        document: &str,
        schedules_max: u32,
    ) -> StoreResult<ScheduleWrite>;

    /// Replaces the document of a schedule still at `version` (compare and
    /// swap: the scheduler and the API both write schedules); the version
    /// moves on by one.
    async fn replace_schedule(
        &self,
        schedule: &StoredSchedule,
        document: &str,
    ) -> StoreResult<ScheduleWrite>;

    /// Deletes a schedule; `Conflict` if there is none.
    async fn delete_schedule(&self, tenant: &str, schedule_id: &str) -> StoreResult<ScheduleWrite>;

    /// The schedules of `tenant`, or of every tenant, by tenant and id.
    async fn schedules(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredSchedule>>;

    /// Binds workflow type `name` to module `digest` for `tenant`; `false`,
    /// binding nothing, if that would make more than `workflow_types_max`
    /// types of the tenant. Binding a type again does not count.
    async fn put_workflow_type(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
        workflow_types_max: u32,
    ) -> StoreResult<bool>;

    /// Unbinds `tenant`'s workflow type `name`; `false` if it had none.
    /// Executions started by the type keep their module.
    async fn delete_workflow_type(&self, tenant: &str, name: &str) -> StoreResult<bool>;

    /// The module `tenant`'s workflow type `name` is bound to.
    async fn workflow_type(&self, tenant: &str, name: &str) -> StoreResult<Option<String>>;

    /// The workflow types of `tenant`, or of every tenant, as (tenant,
    /// name, digest) by tenant and name.
    async fn workflow_types(
        &self,
        tenant: Option<&str>,
    ) -> StoreResult<Vec<(String, String, String)>>;

    /// The tenant's executions that pass `filter`, newest first.
    async fn list_executions(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
    ) -> StoreResult<Vec<ExecutionRecord>>;

    /// How many of the tenant's executions pass `filter`, by status (its
    /// `status`, `before` and `limit` are ignored: every state is counted).
    async fn count_executions(
        &self,
        tenant: &str,
        filter: &ExecutionFilter,
    ) -> StoreResult<StatusCounts>;

    /// Every execution still running, for a restarted node to resume.
    async fn unfinished_executions(&self) -> StoreResult<Vec<ExecutionRecord>>;

    /// Creates tenant `name` with the SHA-256 of its API key and its limits
    /// document; `false` if the name is taken.
    async fn create_tenant(&self, name: &str, key_sha256: &str, limits: &str) -> StoreResult<bool>;

    /// The tenant whose key has this SHA-256.
    async fn tenant_by_key(&self, key_sha256: &str) -> StoreResult<Option<TenantRecord>>;

    /// Every tenant, by name.
    async fn tenants(&self) -> StoreResult<Vec<TenantRecord>>;

    /// Replaces a tenant's limits document; `false` if there is no such tenant.
    async fn set_tenant_limits(&self, name: &str, limits: &str) -> StoreResult<bool>;

    /// Records that `tenant` uploaded module `digest` (stored before);
    /// `false`, recording nothing, if that would make more than
    /// `modules_max` modules of the tenant. A module the tenant has
    /// already is recorded again without counting.
    async fn put_tenant_module(
        &self,
        tenant: &str,
        digest: &str,
        kind: &str,
        modules_max: u32,
    ) -> StoreResult<bool>;

    /// Forgets that `tenant` uploaded `digest`, unless a workflow type or
    /// a running execution of the tenant uses it. The bytes are deleted
    /// too when no tenant has the module and no execution ran on it.
    async fn delete_tenant_module(&self, tenant: &str, digest: &str)
    -> StoreResult<ModuleDeletion>;

    /// The modules `tenant` uploaded, newest first.
    async fn tenant_modules(&self, tenant: &str) -> StoreResult<Vec<TenantModule>>;

    /// The activity modules tenants uploaded, as (tenant, digest), oldest
    /// first: of `tenant`, or of every tenant.
    async fn activity_uploads(&self, tenant: Option<&str>) -> StoreResult<Vec<(String, String)>>;

    /// Stores guest log lines (each execution keeps at most its first
    /// `GUEST_LOG_LINES_MAX`).
    async fn append_guest_logs(&self, lines: Vec<GuestLogLine>) -> StoreResult<()>;

    /// An execution's log lines after row `after`, oldest first, at most `limit`.
    async fn guest_logs(
        &self,
        execution_id: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<GuestLogLine>>;

    /// The position through which the execution's spans were exported (0: none).
    async fn span_watermark(&self, execution_id: i64) -> StoreResult<u64>;

    /// Raises the span export watermarks of executions, (execution id,
    /// position) each, in one write (never lowers one).
    async fn set_span_watermarks(&self, marks: Vec<(i64, u64)>) -> StoreResult<()>;

    /// When `tenant`'s `keep`-th newest finished execution finished: the
    /// ones that finished before are past a count of `keep` (those that
    /// finished in the same millisecond are not). `None` if the tenant has
    /// at most `keep` finished executions.
    async fn finished_count_cutoff_ms(&self, tenant: &str, keep: u64) -> StoreResult<Option<i64>>;

    /// Deletes `tenant`'s executions that finished before
    /// `finished_before_ms`, oldest first: each one's events, messages,
    /// log lines and span mark, then its row, and the module bytes nothing
    /// names any more. At most `rows_max` rows in one transaction, so a
    /// sweep never holds the writer long; an execution whose deletion the
    /// budget cuts short is finished by the next call (meanwhile its history
    /// reads short). An execution whose parent still runs is kept, and
    /// stepped over: a call starts `after` the cursor the previous call of
    /// the same pass returned, so kept executions are read once a pass, not
    /// once a call. With `workflow_id`, only that workflow id's finished
    /// runs (a deletion on request).
    async fn sweep_finished(
        &self,
        tenant: &str,
        finished_before_ms: i64,
        after: Option<SweepCursor>,
        rows_max: u32,
        workflow_id: Option<&str>,
    ) -> StoreResult<Sweep>;

    /// Ends a running execution at once with `WorkflowTerminated`; `false`
    /// if it had already finished. A process still driving it finds the
    /// next position taken and stops.
    async fn terminate(&self, execution_id: i64, reason: &str) -> StoreResult<bool>;
}

/// Opens the store a `--db` argument names: a SQLite file path (created if
/// missing).
pub async fn open(path: &Path) -> StoreResult<Arc<dyn Store>> {
    Ok(Arc::new(SqliteStore::open(path).await?))
}

/// Opens the store a database URL names: `postgres://…` or
/// `postgresql://…` (PostgreSQL, migrated on open). Anything else is
/// refused with an error naming what is accepted; SQLite is opened by path
/// with [`open`].
pub async fn open_url(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(url).await?));
    }
    // Only the scheme is echoed: the rest of a URL may hold a password.
    let seen = match url.split_once("://") {
        Some((scheme, _)) => format!("unsupported database URL scheme `{scheme}`"),
        None => "not a database URL (no scheme)".to_string(),
    };
    Err(StoreError::Database {
        doing: "choosing a database backend",
        source: sqlx::Error::Configuration(
            format!(
                "{seen}: expected postgres://… or postgresql://… (SQLite is opened by file \
                 path, not URL)"
            )
            .into(),
        ),
    })
}
