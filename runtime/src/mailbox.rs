//! Watching execution mailboxes for signals and cancellation requests sent
//! from outside (another process may write them to the database).
//!
//! One watcher task per runtime polls the store for new messages every
//! [`POLL_INTERVAL`] and flags the executions concerned; an execution looks
//! at its mailbox only when flagged (and once when it starts, unless this
//! process created it and no message can have come in unflagged), so
//! waiting executions cost no queries.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::{MailboxCursor, Store};

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
    /// Raises that found no flag: the execution was not in this process's
    /// memory (yet). Changed only under `flags`' lock.
    missed_raises: AtomicU64,
}

/// A reading of the raises that found no flag, taken before an execution
/// existed: if none was missed by the time its flag is registered, no
/// message can have reached it unflagged ([`Mailboxes::register`]).
#[derive(Clone, Copy, Debug)]
pub struct MissedRaises(u64);

impl Mailboxes {
    /// Starts the watcher; it stops when the `Mailboxes` is dropped.
    pub fn watch(store: Arc<dyn Store>) -> Arc<Mailboxes> {
        let mailboxes = Arc::new(Mailboxes::default());
        let weak = Arc::downgrade(&mailboxes);
        tokio::spawn(async move {
            let mut cursor = MailboxCursor::default();
            // A reading can report a row the previous one did (see
            // `MailboxActivity::rows`): each message raises its flag once.
            let mut reported: HashSet<i64> = HashSet::new();
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let Some(mailboxes) = weak.upgrade() else {
                    return;
                };
                match store.mailbox_activity(cursor).await {
                    Ok(activity) => {
                        cursor = activity.cursor;
                        let mut now_reported = HashSet::with_capacity(activity.rows.len());
                        for (row, execution) in activity.rows {
                            if !reported.contains(&row) {
                                mailboxes.raise(execution);
                            }
                            now_reported.insert(row);
                        }
                        reported = now_reported;
                    }
                    Err(error) => tracing::warn!(%error, "could not watch mailboxes"),
                }
            }
        });
        mailboxes
    }

    /// How many raises have found no flag so far: read before creating an
    /// execution, and given to its [`Mailboxes::register`].
    pub fn missed_raises(&self) -> MissedRaises {
        let _flags = self
            .flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        MissedRaises(self.missed_raises.load(Ordering::Relaxed))
    }

    /// The flag of `execution_id`, raised so that the first wait reads the
    /// mailbox: messages may have arrived before the run started. Not
    /// raised when `created_at` was read before the execution existed and
    /// no raise has missed a flag since: every message sent to it since its
    /// creation raised some flag, so none was sent (the execution's
    /// creation saves its first wait a store read).
    pub fn register(
        &self,
        execution_id: i64,
        created_at: Option<MissedRaises>,
    ) -> Arc<MailboxFlag> {
        let mut flags = self
            .flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let missed_none = created_at
            .is_some_and(|MissedRaises(then)| self.missed_raises.load(Ordering::Relaxed) == then);
        let flag = Arc::new(MailboxFlag {
            pending: AtomicBool::new(!missed_none),
            terminated: AtomicBool::new(false),
            notify: Notify::new(),
        });
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
        match flags.get(&execution_id).and_then(Weak::upgrade) {
            Some(flag) => flag.raise(),
            None => {
                self.missed_raises.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_run_starts_unflagged_unless_a_raise_missed_a_flag_since() {
        let mailboxes = Mailboxes::default();
        let before = mailboxes.missed_raises();
        let quiet = mailboxes.register(1, Some(before));
        assert!(!quiet.take(), "nothing was sent since before its creation");

        let before = mailboxes.missed_raises();
        // A message for execution 2 raised while its flag was not there yet.
        mailboxes.raise(2);
        let missed = mailboxes.register(2, Some(before));
        assert!(
            missed.take(),
            "a raise found no flag since: read the mailbox"
        );

        let resumed = mailboxes.register(3, None);
        assert!(
            resumed.take(),
            "a run not just created reads its mailbox once"
        );
        assert!(!resumed.take(), "and then only when flagged");
        mailboxes.raise(3);
        assert!(resumed.take(), "a raise finds the registered flag");
    }
}
