//! One drive per execution in a process. A child workflow is driven by its
//! parent's drive, and a node that claims orphaned executions finds the
//! child among them too: whichever drive comes second waits for the first
//! to stop, then replays to the end it recorded (or carries on from where
//! it stopped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub(super) struct DriveLocks {
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a drive runs one execution; the map forgets the execution
/// when the last holder or waiter goes.
pub(super) struct DriveGuard<'a> {
    locks: &'a DriveLocks,
    execution_id: i64,
    lock: Arc<tokio::sync::Mutex<()>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl DriveLocks {
    /// Waits until no other drive of `execution_id` runs in this process.
    pub(super) async fn acquire(&self, execution_id: i64) -> DriveGuard<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(execution_id)
            .or_default()
            .clone();
        let held = lock.clone().lock_owned().await;
        DriveGuard {
            locks: self,
            execution_id,
            lock,
            held: Some(held),
        }
    }
}

impl Drop for DriveGuard<'_> {
    fn drop(&mut self) {
        self.held.take();
        let mut locks = self
            .locks
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The map's reference and this guard's: no one else waits.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.execution_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_drive_waits_for_the_first_and_the_map_empties() {
        let locks = DriveLocks::default();
        let first = locks.acquire(7).await;
        let second = locks.acquire(7);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), second.as_mut())
                .await
                .is_err(),
            "the second drive must wait"
        );
        let other = locks.acquire(8).await;
        drop(first);
        let second = second.await;
        drop(second);
        drop(other);
        assert!(locks.locks.lock().expect("map").is_empty());
    }
}
