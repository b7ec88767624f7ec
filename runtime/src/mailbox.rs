//! Watching execution mailboxes for signals and cancellation requests sent
//! from outside (another process may write them to the database).
//!
//! One watcher task per runtime polls the store for new messages every
//! [`POLL_INTERVAL`] and flags the executions concerned; an execution looks
//! at its mailbox only when flagged (and once when it starts), so waiting
//! executions cost no queries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::Store;

/// How often the watcher looks for new messages.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// "Your mailbox may have something": set by the watcher, cleared by the
/// execution when it reads the mailbox.
pub struct MailboxFlag {
    pending: AtomicBool,
    /// Set when an operator terminated the execution in this process.
    terminated: AtomicBool,
    notify: Notify,
}

impl MailboxFlag {
    /// Takes the flag: `true` if the mailbox should be read now.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Resolves when the watcher flags the mailbox.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// Keeps the flag up after a read that delivered one message of
    /// several: the next blocking call reads the mailbox again.
    pub fn raise_again(&self) {
        self.pending.store(true, Ordering::Release);
    }

    /// Whether the execution was terminated (its drive should end).
    pub fn is_terminated(&self) -> bool {
        self.terminated.load(Ordering::Acquire)
    }

    fn raise(&self) {
        self.pending.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// The executions this runtime drives, by id, and their flags.
#[derive(Default)]
pub struct Mailboxes {
    flags: Mutex<HashMap<i64, Weak<MailboxFlag>>>,
    /// The map's size after its last sweep of dead entries.
    swept_len: AtomicUsize,
}

impl Mailboxes {
    /// Starts the watcher; it stops when the `Mailboxes` is dropped.
    pub fn watch(store: Arc<dyn Store>) -> Arc<Mailboxes> {
        let mailboxes = Arc::new(Mailboxes::default());
        let weak = Arc::downgrade(&mailboxes);
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let Some(mailboxes) = weak.upgrade() else {
                    return;
                };
                match store.mailbox_activity(seen).await {
                    Ok((executions, newest)) => {
                        seen = newest;
                        for execution in executions {
                            mailboxes.raise(execution);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not watch mailboxes"),
                }
            }
        });
        mailboxes
    }

    /// The flag of `execution_id`, raised once so that the first wait reads
    /// the mailbox (messages may have arrived before the run started).
    pub fn register(&self, execution_id: i64) -> Arc<MailboxFlag> {
        let flag = Arc::new(MailboxFlag {
            pending: AtomicBool::new(true),
            terminated: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let mut flags = self
            .flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Sweep dead entries only when the map has doubled since the last
        // sweep: one sweep per registration made starting 100,000
        // executions quadratic.
        if flags.len()
            >= self
                .swept_len
                .load(Ordering::Relaxed)
                .saturating_mul(2)
                .max(64)
        {
            flags.retain(|_, flag| flag.strong_count() > 0);
            self.swept_len.store(flags.len(), Ordering::Relaxed);
        }
        flags.insert(execution_id, Arc::downgrade(&flag));
        flag
    }

    /// Tells the drive of `execution_id` in this process, if any, that an
    /// operator terminated it: it stops at its wait and frees what it holds.
    pub fn terminated(&self, execution_id: i64) {
        let flags = self
            .flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(flag) = flags.get(&execution_id).and_then(Weak::upgrade) {
            flag.terminated.store(true, Ordering::Release);
            flag.notify.notify_one();
        }
    }

    /// Tells the drive of `execution_id` in this process, if any, that its
    /// mailbox may hold something new.
    pub fn raise(&self, execution_id: i64) {
        let flags = self
            .flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(flag) = flags.get(&execution_id).and_then(Weak::upgrade) {
            flag.raise();
        }
    }
}
