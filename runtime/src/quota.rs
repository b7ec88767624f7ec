//! Per-tenant shares of a node's shared resources.
//!
//! Every resource one tenant could drain for all — workflow instances in
//! memory, activity attempts in flight, compilations — is handed out through
//! a [`TenantQuotas`]: one semaphore per tenant, sized by that tenant's
//! limit. A tenant at its quota waits in its own queue; other tenants'
//! queues are not behind it. `quota` knows nothing about Wasm or the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One tenant's share of one resource.
struct Share {
    size: usize,
    permits: Arc<Semaphore>,
    /// Holders waiting for a permit now.
    waiting: Arc<AtomicUsize>,
    /// Woken when someone starts to wait: holders that can give their
    /// unit back early (an instance keeping warm) should.
    contended: Arc<Notify>,
}

impl Share {
    fn new(size: usize) -> Share {
        Share {
            size,
            permits: Arc::new(Semaphore::new(size)),
            waiting: Arc::default(),
            contended: Arc::default(),
        }
    }
}

/// A permit of a tenant's share; dropping it gives the unit back.
pub struct QuotaPermit {
    _permit: OwnedSemaphorePermit,
}

/// Per-tenant semaphores for one kind of resource.
#[derive(Default)]
pub struct TenantQuotas {
    shares: Mutex<HashMap<String, Share>>,
}

impl TenantQuotas {
    /// The tenant's semaphore, (re)sized to `size` units. A resized share
    /// starts afresh; permits of the old one are simply returned to it.
    fn share(&self, tenant: &str, size: usize) -> (Arc<Semaphore>, Arc<AtomicUsize>, Arc<Notify>) {
        let size = size.max(1);
        let mut shares = self
            .shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let share = shares
            .entry(tenant.to_string())
            .or_insert_with(|| Share::new(size));
        if share.size != size {
            *share = Share::new(size);
        }
        (
            share.permits.clone(),
            share.waiting.clone(),
            share.contended.clone(),
        )
    }

    /// Waits for one unit of `tenant`'s share of `size` units.
    pub async fn acquire(&self, tenant: &str, size: usize) -> QuotaPermit {
        let (permits, waiting, contended) = self.share(tenant, size);
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return QuotaPermit { _permit: permit };
        }
        waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = WaitingGuard(waiting);
        contended.notify_waiters();
        let permit = permits
            .acquire_owned()
            .await
            .expect("quota semaphores are never closed");
        QuotaPermit { _permit: permit }
    }

    /// One unit of `tenant`'s share now, or `None` if all are in use.
    pub fn try_acquire(&self, tenant: &str, size: usize) -> Option<QuotaPermit> {
        let (permits, _, _) = self.share(tenant, size);
        permits
            .try_acquire_owned()
            .ok()
            .map(|permit| QuotaPermit { _permit: permit })
    }

    /// What wakes when someone of `tenant` starts to wait for a unit.
    pub fn contention(&self, tenant: &str) -> Option<Arc<Notify>> {
        self.shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant)
            .map(|share| share.contended.clone())
    }

    /// Whether someone of `tenant` waits for a unit: then holders should
    /// give theirs back as soon as they can.
    pub fn is_contended(&self, tenant: &str) -> bool {
        self.shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant)
            .is_some_and(|share| {
                share.waiting.load(Ordering::Acquire) > 0 || share.permits.available_permits() == 0
            })
    }
}

/// Workflow instances in memory: each tenant's share, and the node's pool.
pub struct Instances {
    per_tenant: TenantQuotas,
    live: Arc<AtomicUsize>,
    /// Past this many live instances the pool is under pressure: waiting
    /// instances are evicted at once instead of after their hot window.
    pressure_at: usize,
}

/// An activation's hold on an instance: the tenant's unit and the pool's.
pub struct InstanceSlot {
    _permit: QuotaPermit,
    live: Arc<AtomicUsize>,
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Instances {
    /// For a pool of `pool_size` instance slots (0: no pool, unbounded).
    pub fn new(pool_size: u32) -> Instances {
        let pool_size = if pool_size == 0 {
            usize::MAX
        } else {
            pool_size as usize
        };
        Instances {
            per_tenant: TenantQuotas::default(),
            live: Arc::default(),
            pressure_at: pool_size / 4 * 3,
        }
    }

    /// Waits for an instance of `tenant`'s share of `size`.
    pub async fn enter(&self, tenant: &str, size: u32) -> InstanceSlot {
        let permit = self.per_tenant.acquire(tenant, size as usize).await;
        self.live.fetch_add(1, Ordering::AcqRel);
        InstanceSlot {
            _permit: permit,
            live: self.live.clone(),
        }
    }

    /// Whether an instance of `tenant` that starts waiting should be
    /// dropped now rather than kept warm: its tenant's share or the pool
    /// is needed by others.
    pub fn should_evict(&self, tenant: &str) -> bool {
        self.live.load(Ordering::Acquire) >= self.pressure_at
            || self.per_tenant.is_contended(tenant)
    }

    /// What wakes when an activation of `tenant` starts to wait for an
    /// instance (`None` until the tenant has used one).
    pub fn contention(&self, tenant: &str) -> Option<Arc<Notify>> {
        self.per_tenant.contention(tenant)
    }

    /// Instances in memory now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

/// Counts a waiter for as long as it waits (also if its future is dropped).
struct WaitingGuard(Arc<AtomicUsize>);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_tenant_at_its_quota_waits_while_another_proceeds() {
        let quotas = Arc::new(TenantQuotas::default());
        let held: Vec<QuotaPermit> = acquire_all(&quotas, "attacker", 2).await;
        assert!(quotas.try_acquire("attacker", 2).is_none());
        assert!(quotas.is_contended("attacker"));
        // The other tenant's share is untouched.
        assert!(quotas.try_acquire("good", 2).is_some());
        assert!(!quotas.is_contended("good"));
        let waiter = {
            let quotas = quotas.clone();
            tokio::spawn(async move { quotas.acquire("attacker", 2).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the third unit must wait");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a returned unit wakes the waiter")
            .expect("join");
    }

    async fn acquire_all(quotas: &TenantQuotas, tenant: &str, count: usize) -> Vec<QuotaPermit> {
        let mut permits = Vec::new();
        for _ in 0..count {
            permits.push(quotas.acquire(tenant, count).await);
        }
        permits
    }
}
