//! Guest log lines (SDK `log` calls, stdout, stderr of workflows and
//! activities): written to the server's log and stored per execution by a
//! background writer, within the tenant's `log_lines_per_second`. Lines of
//! a replay never get here: the host drops them first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock;
use crate::store::{ExecutionRecord, GuestLogLine, Store};
use crate::tenant::RateLimiter;

/// Lines waiting for the writer; beyond it, lines are dropped rather than
/// slowing a workflow down.
const QUEUE_LINES_MAX: usize = 65_536;
/// The most lines one store write carries.
const WRITE_LINES_MAX: usize = 1_024;
/// How long lines wait for company.
const WRITE_DELAY: Duration = Duration::from_millis(50);
/// Lines one execution may hold back while clock reads or random draws
/// before them are not yet durable; past it they are counted as dropped
/// (a guest printing in a loop after a clock read grows no buffer).
const HELD_LINES_MAX: usize = 1_024;

/// What the writer task receives.
enum Message {
    Line(GuestLogLine),
    /// Store what is queued now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The writer task's queue and each tenant's line budget.
pub struct LogWriter {
    queue: mpsc::Sender<Message>,
    budget: Arc<LineBudget>,
}

impl LogWriter {
    pub fn start(store: Arc<dyn Store>) -> LogWriter {
        let (queue, lines) = mpsc::channel(QUEUE_LINES_MAX);
        tokio::spawn(write_lines(store, lines));
        LogWriter {
            queue,
            budget: Arc::default(),
        }
    }

    /// Returns once every line queued before the call is stored (`reprise
    /// run` waits for this before it exits).
    pub async fn flush(&self) {
        let (done, stored) = tokio::sync::oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = stored.await;
        }
    }

    /// Where `record`'s lines go, `lines_per_second` at most for its tenant.
    pub fn sink(&self, record: &ExecutionRecord, lines_per_second: u32) -> LogSink {
        LogSink {
            execution_id: record.id,
            tenant: record.tenant.clone(),
            workflow_id: record.workflow_id.clone(),
            run_id: record.run_id.clone(),
            lines_per_second,
            queue: self.queue.clone(),
            budget: self.budget.clone(),
            dropped: self.budget.dropped(&record.tenant),
        }
    }
}

/// Per-tenant token buckets of lines, and the lines each tenant lost.
#[derive(Default)]
struct LineBudget {
    buckets: RateLimiter,
    dropped: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl LineBudget {
    fn dropped(&self, tenant: &str) -> Arc<AtomicU64> {
        self.dropped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(tenant.to_string())
            .or_default()
            .clone()
    }
}

/// Where one execution's lines go.
#[derive(Clone)]
pub struct LogSink {
    execution_id: i64,
    tenant: String,
    workflow_id: String,
    run_id: String,
    lines_per_second: u32,
    queue: mpsc::Sender<Message>,
    budget: Arc<LineBudget>,
    /// The tenant's lines dropped since the last one written.
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("execution_id", &self.execution_id)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl LogSink {
    /// Writes a guest line (tagged with the `seq` of the last command
    /// before it) to the server's log and the store — or, past the
    /// tenant's budget, only counts it; the next line that fits says how
    /// many were dropped.
    pub fn write(&self, seq: u64, level: &str, source: &str, message: &str) {
        if self
            .budget
            .buckets
            .try_acquire(&self.tenant, self.lines_per_second)
            .is_err()
        {
            self.count_dropped();
            return;
        }
        let lost = self.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let summary = format!(
                "{lost} guest log lines of tenant `{}` were dropped (log_lines_per_second = {})",
                self.tenant, self.lines_per_second
            );
            self.emit(seq, "warn", "reprise", &summary);
        }
        self.emit(seq, level, source, message);
    }

    /// Counts a line that was not kept; the next line written says so.
    fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn emit(&self, seq: u64, level: &str, source: &str, message: &str) {
        let (workflow_id, run_id) = (&self.workflow_id, &self.run_id);
        macro_rules! guest_event {
            ($level:expr) => {
                tracing::event!(target: "reprise::guest", $level, %workflow_id, %run_id, seq, source, "{message}")
            };
        }
        match level {
            "trace" => guest_event!(tracing::Level::TRACE),
            "debug" => guest_event!(tracing::Level::DEBUG),
            "warn" => guest_event!(tracing::Level::WARN),
            "error" => guest_event!(tracing::Level::ERROR),
            _ => guest_event!(tracing::Level::INFO),
        }
        let line = GuestLogLine {
            id: 0,
            execution_id: self.execution_id,
            seq,
            level: level.to_string(),
            source: source.to_string(),
            message: message.to_string(),
            logged_at_ms: clock::now_ms(),
        };
        if self.queue.try_send(Message::Line(line)).is_err() {
            tracing::debug!("the guest log queue is full; a line was dropped");
        }
    }
}

async fn write_lines(store: Arc<dyn Store>, mut messages: mpsc::Receiver<Message>) {
    while let Some(first) = messages.recv().await {
        let mut batch = Vec::new();
        let mut flushed = Vec::new();
        let mut next = Some(first);
        let deadline = tokio::time::Instant::now() + WRITE_DELAY;
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => batch.push(line),
                Message::Flush(done) => {
                    flushed.push(done);
                    break;
                }
            }
            if batch.len() >= WRITE_LINES_MAX {
                break;
            }
            next = tokio::time::timeout_at(deadline, messages.recv())
                .await
                .ok()
                .flatten();
        }
        if !batch.is_empty()
            && let Err(error) = store.append_guest_logs(batch).await
        {
            tracing::warn!(%error, "storing guest log lines failed");
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// A workflow's guest lines, behind its journal: a line is written only
/// once every clock read and random draw before it is durable — it may
/// show their values, and if the process died first, the values it shows
/// would not be the ones the execution keeps. Lines made while replaying,
/// or by a verification replay, are never written.
pub struct GuestLines {
    sink: LogSink,
    held: Mutex<Vec<HeldLine>>,
}

struct HeldLine {
    seq: u64,
    level: &'static str,
    source: &'static str,
    message: String,
}

impl GuestLines {
    pub fn new(sink: LogSink) -> GuestLines {
        GuestLines {
            sink,
            held: Mutex::default(),
        }
    }

    /// A line the guest wrote, with `recorder` as it is now.
    pub fn write(
        &self,
        recorder: &crate::journal::Recorder,
        level: &'static str,
        source: &'static str,
        message: String,
    ) {
        if recorder.is_replaying() || recorder.is_replay_only() {
            return;
        }
        let seq = recorder.last_seq_made();
        if recorder.history.unflushed().is_empty() {
            self.sink.write(seq, level, source, &message);
            return;
        }
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.len() >= HELD_LINES_MAX {
            self.sink.count_dropped();
            return;
        }
        held.push(HeldLine {
            seq,
            level,
            source,
            message,
        });
    }

    /// Writes the held lines: what they may depend on is durable now.
    pub fn release(&self) {
        let held = std::mem::take(
            &mut *self
                .held
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for line in held {
            self.sink
                .write(line.seq, line.level, line.source, &line.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Clock, History, Recorder};
    use crate::store::{ExecutionRecord, ExecutionStatus};

    /// Lines held behind a buffered clock read are bounded; the rest are
    /// counted as dropped.
    #[tokio::test]
    async fn held_lines_are_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::store::open(&dir.path().join("db"))
            .await
            .expect("store");
        let writer = LogWriter::start(store);
        let record = ExecutionRecord {
            id: 1,
            tenant: "t".into(),
            workflow_id: "w".into(),
            run_id: "r".into(),
            workflow_type: "x".into(),
            module_digest: "d".into(),
            status: ExecutionStatus::Running,
            result: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            search_attributes: None,
            owner_node: None,
        };
        let lines = GuestLines::new(writer.sink(&record, 1_000_000));
        let mut recorder = Recorder::new(History::default(), false);
        recorder.read_clock(Clock::Wall, 1, 1);
        assert!(!recorder.history.unflushed().is_empty());
        for index in 0..HELD_LINES_MAX + 10 {
            lines.write(&recorder, "info", "stdout", format!("line {index}"));
        }
        let held = lines.held.lock().expect("held").len();
        assert_eq!(held, HELD_LINES_MAX);
        assert_eq!(lines.sink.dropped.load(Ordering::Relaxed), 10);
    }
}
