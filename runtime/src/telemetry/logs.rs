//! Guest log lines (SDK `log` calls, stdout, stderr of workflows), stored
//! per execution by a background writer. Lines of a replay never get here:
//! the host drops them first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock;
use crate::store::{GuestLogLine, Store};

/// Lines waiting for the writer; beyond it, lines are dropped rather than
/// slowing a workflow down.
const QUEUE_LINES_MAX: usize = 65_536;
/// The most lines one store write carries.
const WRITE_LINES_MAX: usize = 1_024;
/// How long lines wait for company.
const WRITE_DELAY: Duration = Duration::from_millis(50);

/// The writer task's queue.
pub struct LogWriter {
    queue: mpsc::Sender<GuestLogLine>,
}

impl LogWriter {
    pub fn start(store: Arc<dyn Store>) -> LogWriter {
        let (queue, lines) = mpsc::channel(QUEUE_LINES_MAX);
        tokio::spawn(write_lines(store, lines));
        LogWriter { queue }
    }

    pub fn sink(&self, execution_id: i64) -> LogSink {
        LogSink {
            execution_id,
            queue: self.queue.clone(),
        }
    }
}

/// Where one execution's lines go.
#[derive(Clone, Debug)]
pub struct LogSink {
    execution_id: i64,
    queue: mpsc::Sender<GuestLogLine>,
}

impl LogSink {
    pub fn write(&self, seq: u64, level: &str, source: &str, message: &str) {
        let line = GuestLogLine {
            id: 0,
            execution_id: self.execution_id,
            seq,
            level: level.to_string(),
            source: source.to_string(),
            message: message.to_string(),
            logged_at_ms: clock::now_ms(),
        };
        if self.queue.try_send(line).is_err() {
            tracing::debug!("the guest log queue is full; a line was dropped");
        }
    }
}

async fn write_lines(store: Arc<dyn Store>, mut lines: mpsc::Receiver<GuestLogLine>) {
    while let Some(first) = lines.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + WRITE_DELAY;
        while batch.len() < WRITE_LINES_MAX {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => batch.push(line),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(error) = store.append_guest_logs(batch).await {
            tracing::warn!(%error, "storing guest log lines failed");
        }
    }
}
