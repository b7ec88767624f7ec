//! What both backends' group-commit writers share: the write requests, the
//! queue they wait in, the commit counters, and the decisions that do not
//! depend on SQL (may an id start again, what a termination records).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};

use super::{
    CommitStats, ExecutionRecord, ExecutionStatus, Finish, GuestLogLine, IdReusePolicy,
    MessageKind, ModuleDeletion, NewExecution, ScheduleWrite, StartOutcome, StoreError,
    StoreResult, Sweep, SweepCursor,
};
use reprise_journal::{Event, RecordedEvent};

/// The most write requests one commit carries.
pub(crate) const GROUP_COMMIT_REQUESTS_MAX: usize = 1024;
/// Queued write requests before appenders wait (backpressure).
const WRITE_QUEUE_LENGTH_MAX: usize = 8192;

/// The tables holding an execution's rows besides its own, with the key
/// a sweep deletes them in order of (so a budget can cut a deletion short
/// and the next sweep goes on).
pub(crate) const SWEPT_TABLES: [(&str, &str); 4] = [
    ("guest_logs", "id"),
    ("mailbox", "id"),
    ("span_exports", "position"),
    ("events", "position"),
];

pub(crate) enum WriteOp {
    PutModule {
        digest: String,
        kind: String,
        bytes: Vec<u8>,
    },
    Start(Box<NewExecution>),
    Append {
        execution_id: i64,
        events: Vec<RecordedEvent>,
        finish: Option<Finish>,
        /// A mailbox message this append delivers.
        delivers: Option<i64>,
        /// The run's new search attributes (the whole JSON object).
        search_attributes: Option<String>,
    },
    PostMessage {
        execution_id: i64,
        kind: MessageKind,
        name: String,
        payload: String,
        message_id: String,
    },
    Terminate {
        execution_id: i64,
        reason: String,
    },
    PutWorkflowType {
        tenant: String,
        name: String,
        digest: String,
        workflow_types_max: u32,
    },
    DeleteWorkflowType {
        tenant: String,
        name: String,
    },
    CreateTenant {
        name: String,
        key_sha256: String,
        limits: String,
    },
    SetTenantLimits {
        name: String,
        limits: String,
    },
    PutTenantModule {
        tenant: String,
        digest: String,
        kind: String,
        modules_max: u32,
    },
    DeleteTenantModule {
        tenant: String,
        digest: String,
    },
    /// Creates (`version` none) or replaces (at `version`) a schedule.
    PutSchedule {
        tenant: String,
        schedule_id: String,
        document: String,
        version: Option<i64>,
        schedules_max: u32,
    },
    DeleteSchedule {
        tenant: String,
        schedule_id: String,
    },
    SetSpanWatermarks(Vec<(i64, u64)>),
    SweepFinished {
        tenant: String,
        finished_before_ms: i64,
        after: Option<SweepCursor>,
        rows_max: u32,
        workflow_id: Option<String>,
    },
    AppendGuestLogs(Vec<GuestLogLine>),
    /// Adds node `node_id` with a lease of `lease_ms`.
    JoinNodes {
        node_id: String,
        lease_ms: i64,
        api_url: Option<String>,
    },
    /// Extends a node's lease; `Changed(false)` if the node has no row.
    RenewLease {
        node_id: Arc<str>,
        lease_ms: i64,
    },
    /// Deletes dead nodes and gives their executions, and unowned ones, to
    /// `node_id`.
    ClaimOrphans {
        node_id: Arc<str>,
        limit: u32,
    },
    LeaveNodes {
        node_id: Arc<str>,
    },
    /// Makes `node_id` the leader of `role` unless a live node is;
    /// `Changed(true)` if `node_id` leads it now.
    Lead {
        role: &'static str,
        node_id: Arc<str>,
    },
}

pub(crate) enum WriteReply {
    Done,
    Started(Box<StartOutcome>),
    /// Whether the request changed anything (a new message, a termination).
    Changed(bool),
    /// A signal or update refused: the execution's mailbox holds
    /// [`MAILBOX_UNDELIVERED_MAX`](crate::MAILBOX_UNDELIVERED_MAX) already.
    MailboxFull {
        execution_id: i64,
    },
    Schedule(ScheduleWrite),
    Claimed(Vec<ExecutionRecord>),
    ModuleDeletion(ModuleDeletion),
    Swept(Sweep),
}

pub(crate) struct WriteRequest {
    pub(crate) op: WriteOp,
    pub(crate) reply: oneshot::Sender<StoreResult<WriteReply>>,
}

/// Commits and requests since the store was opened.
#[derive(Default)]
pub(crate) struct CommitCounters {
    commits: AtomicU64,
    requests: AtomicU64,
}

impl CommitCounters {
    pub(crate) fn record_commit(&self, requests: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// The sending side of a writer task's queue.
pub(crate) struct WriteQueue {
    sender: mpsc::Sender<WriteRequest>,
}

impl WriteQueue {
    /// A queue and the receiver its writer task takes batches from.
    pub(crate) fn new() -> (WriteQueue, mpsc::Receiver<WriteRequest>) {
        let (sender, receiver) = mpsc::channel(WRITE_QUEUE_LENGTH_MAX);
        (WriteQueue { sender }, receiver)
    }

    async fn write(&self, op: WriteOp) -> StoreResult<WriteReply> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Writes, and only success matters.
    pub(crate) async fn done(&self, op: WriteOp) -> StoreResult<()> {
        self.write(op).await.map(|_| ())
    }

    /// Writes, and says whether anything changed.
    pub(crate) async fn changed(&self, op: WriteOp) -> StoreResult<bool> {
        match self.write(op).await? {
            WriteReply::MailboxFull { execution_id } => {
                Err(StoreError::MailboxFull { execution_id })
            }
            reply => Ok(matches!(reply, WriteReply::Changed(true))),
        }
    }

    pub(crate) async fn start(&self, new: NewExecution) -> StoreResult<StartOutcome> {
        match self.write(WriteOp::Start(Box::new(new))).await? {
            WriteReply::Started(outcome) => Ok(*outcome),
            _ => unreachable!("a start request always answers Started"),
        }
    }

    /// Extends `node`'s lease (`false`: it had lost it, or never joined).
    pub(crate) async fn renew_lease(
        &self,
        node: &NodeCell,
        lease: std::time::Duration,
    ) -> StoreResult<bool> {
        let Some(node_id) = node.get() else {
            return Ok(false);
        };
        let lease_ms = lease_ms(lease);
        self.changed(WriteOp::RenewLease { node_id, lease_ms })
            .await
    }

    /// Claims orphans for `node` (none for a store that never joined).
    pub(crate) async fn claim_orphans(
        &self,
        node: &NodeCell,
        limit: u32,
    ) -> StoreResult<Vec<ExecutionRecord>> {
        let Some(node_id) = node.get() else {
            return Ok(Vec::new());
        };
        match self.write(WriteOp::ClaimOrphans { node_id, limit }).await? {
            WriteReply::Claimed(records) => Ok(records),
            _ => unreachable!("a claim request always answers Claimed"),
        }
    }

    /// Whether `node` leads `role` (a store that never joined leads all).
    pub(crate) async fn lead(&self, node: &NodeCell, role: &'static str) -> StoreResult<bool> {
        let Some(node_id) = node.get() else {
            return Ok(true);
        };
        self.changed(WriteOp::Lead { role, node_id }).await
    }

    /// Removes `node`'s row. Its id stays in the cell: appends still
    /// check it, and find no row.
    pub(crate) async fn leave_nodes(&self, node: &NodeCell) -> StoreResult<()> {
        let Some(node_id) = node.get() else {
            return Ok(());
        };
        self.done(WriteOp::LeaveNodes { node_id }).await
    }

    pub(crate) async fn delete_tenant_module(
        &self,
        tenant: &str,
        digest: &str,
    ) -> StoreResult<ModuleDeletion> {
        let op = WriteOp::DeleteTenantModule {
            tenant: tenant.to_string(),
            digest: digest.to_string(),
        };
        match self.write(op).await? {
            WriteReply::ModuleDeletion(outcome) => Ok(outcome),
            _ => unreachable!("a module deletion always answers ModuleDeletion"),
        }
    }

    pub(crate) async fn sweep_finished(
        &self,
        tenant: &str,
        finished_before_ms: i64,
        after: Option<SweepCursor>,
        rows_max: u32,
        workflow_id: Option<&str>,
    ) -> StoreResult<Sweep> {
        let op = WriteOp::SweepFinished {
            tenant: tenant.to_string(),
            finished_before_ms,
            after,
            rows_max,
            workflow_id: workflow_id.map(str::to_string),
        };
        match self.write(op).await? {
            WriteReply::Swept(sweep) => Ok(sweep),
            _ => unreachable!("a sweep always answers Swept"),
        }
    }

    /// Writes a schedule request and says what it did.
    pub(crate) async fn schedule(&self, op: WriteOp) -> StoreResult<ScheduleWrite> {
        match self.write(op).await? {
            WriteReply::Schedule(outcome) => Ok(outcome),
            _ => unreachable!("a schedule request always answers Schedule"),
        }
    }
}

/// The node a store joined as: shared by the store (which sets it) and
/// its writer (which reads it once per batch).
#[derive(Clone, Default)]
pub(crate) struct NodeCell(Arc<RwLock<Option<Arc<str>>>>);

impl NodeCell {
    pub(crate) fn get(&self) -> Option<Arc<str>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, node: &str) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::from(node));
    }
}

/// What a batch's requests are applied under: the node the store joined
/// as (the owner of what it starts), and which of the executions the
/// batch appends to that node owns, read once in the batch's transaction.
pub(crate) struct Fence {
    pub(crate) node: Option<Arc<str>>,
    pub(crate) owned: HashSet<i64>,
}

impl Fence {
    /// Appends go through only to executions the node owns (or anywhere,
    /// for a store that never joined: a single-process tool).
    pub(crate) fn check(&self, execution_id: i64) -> StoreResult<()> {
        if self.node.is_none() || self.owned.contains(&execution_id) {
            Ok(())
        } else {
            Err(StoreError::NotOwner { execution_id })
        }
    }
}

/// The executions a batch appends to.
pub(crate) fn appended_executions(batch: &[WriteRequest]) -> Vec<i64> {
    let mut ids: Vec<i64> = batch
        .iter()
        .filter_map(|request| match &request.op {
            WriteOp::Append { execution_id, .. } => Some(*execution_id),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A lease as the database stores it.
pub(crate) fn lease_ms(lease: std::time::Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// The positions of a history page of at most `limit` events after
/// `after`, as the database compares them: the page is `(after, until]`,
/// since positions are 1, 2, 3, …
pub(crate) fn page_positions(after: u64, limit: u64) -> (i64, i64) {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let until = after.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX));
    (after, until)
}

/// What a start finds when `workflow_id` already has a run: that run is the
/// answer (running, or kept by the policy), or `None` when a new run may
/// follow it.
pub(crate) fn start_refused_by(
    existing: ExecutionRecord,
    reuse: IdReusePolicy,
) -> Option<StartOutcome> {
    match existing.status {
        ExecutionStatus::Running => Some(StartOutcome::Existing(existing)),
        finished => match reuse.allows_after(finished) {
            None => Some(StartOutcome::Existing(existing)),
            Some(false) => Some(StartOutcome::ReuseRefused(existing)),
            Some(true) => None,
        },
    }
}

/// The event `terminate` appends at `position`.
pub(crate) fn terminated_event(position: u64, reason: &str) -> RecordedEvent {
    RecordedEvent {
        position,
        recorded_at_ms: reprise_journal::clock::now_ms(),
        event: Event::WorkflowTerminated {
            reason: reason.to_string(),
        },
    }
}

/// The `result` a terminated execution's row records.
pub(crate) fn terminated_result(reason: &str) -> String {
    serde_json::json!({ "terminated": reason }).to_string()
}

/// The execution row of a run just created.
pub(crate) fn created_record(
    new: &NewExecution,
    id: i64,
    now_ms: i64,
    owner_node: Option<&str>,
) -> ExecutionRecord {
    ExecutionRecord {
        owner_node: owner_node.map(str::to_string),
        id,
        tenant: new.tenant.clone(),
        workflow_id: new.workflow_id.clone(),
        run_id: new.run_id.clone(),
        workflow_type: new.workflow_type.clone(),
        module_digest: new.module_digest.clone(),
        status: ExecutionStatus::Running,
        result: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        search_attributes: new.search_attributes.clone(),
    }
}

/// What a schedule write that touched `rows` rows did.
pub(crate) fn schedule_write(rows: u64) -> ScheduleWrite {
    if rows == 1 {
        ScheduleWrite::Written
    } else {
        ScheduleWrite::Conflict
    }
}

pub(crate) fn now_ms() -> i64 {
    reprise_journal::clock::now_ms() as i64
}
