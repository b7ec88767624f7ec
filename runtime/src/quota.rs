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
        contended.notify_one();
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

    /// `look` at `tenant`'s share, if the tenant has used one.
    fn inspect<T>(&self, tenant: &str, look: impl FnOnce(&Share) -> T) -> Option<T> {
        self.shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant)
            .map(look)
    }

    /// What wakes when someone of `tenant` starts to wait for a unit.
    pub fn contention(&self, tenant: &str) -> Option<Arc<Notify>> {
        self.inspect(tenant, |share| share.contended.clone())
    }

    /// Whether someone of `tenant` waits for a unit now: then holders
    /// should give theirs back as soon as they can. Every unit in use with
    /// nobody waiting is not contention: a share exactly as large as the
    /// tenant's work would otherwise drop (and later rebuild by replay) an
    /// instance at every wait. A waiter that arrives later wakes a holder.
    pub fn is_waited_for(&self, tenant: &str) -> bool {
        self.inspect(tenant, |share| share.waiting.load(Ordering::Acquire) > 0)
            .unwrap_or(false)
    }
}

/// Workflow instances in memory: each tenant's share, and the node's pool.
pub struct Instances {
    per_tenant: TenantQuotas,
    /// Each tenant's turns on the guest threads.
    turns: Arc<TenantQuotas>,
    guest_threads: usize,
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
    /// For a pool of `pool_size` instance slots (0: no pool, unbounded)
    /// and `guest_threads` threads running guest code.
    pub fn new(pool_size: u32, guest_threads: usize) -> Instances {
        let pool_size = if pool_size == 0 {
            usize::MAX
        } else {
            pool_size as usize
        };
        Instances {
            per_tenant: TenantQuotas::default(),
            turns: Arc::default(),
            guest_threads,
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
            || self.per_tenant.is_waited_for(tenant)
    }

    /// What wakes when an activation of `tenant` starts to wait for an
    /// instance (`None` until the tenant has used one).
    pub fn contention(&self, tenant: &str) -> Option<Arc<Notify>> {
        self.per_tenant.contention(tenant)
    }

    /// A turn on the guest threads for an activation of `tenant`, whose
    /// share is `guest_threads_max` of them (at most all).
    pub fn compute_turn(&self, tenant: &str, guest_threads_max: u32) -> ComputeTurn {
        let share = (guest_threads_max as usize).min(self.guest_threads);
        ComputeTurn::new(self.turns.clone(), tenant, share)
    }

    /// Instances in memory now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

/// An activation's turn on the guest threads, within its tenant's share
/// (`guest_threads_max`): held only while its guest code runs — given back
/// at every host await (an append, a wait) and, when others of the tenant
/// wait for a turn, at every epoch tick. So one tenant's busy workflows
/// take turns among themselves and never hold more guest threads than its
/// share, while another tenant's code gets a turn of its own at once.
///
/// It also measures how long the guest code ran since the host last had
/// control: the wall-clock backstop's reading, waits for a turn excluded.
#[derive(Clone)]
pub struct ComputeTurn {
    turns: Arc<TenantQuotas>,
    tenant: Arc<str>,
    share: usize,
    state: Arc<Mutex<TurnState>>,
}

struct TurnState {
    permit: Option<QuotaPermit>,
    /// Guest time before `resumed_at`, since the last reset.
    ran: std::time::Duration,
    resumed_at: std::time::Instant,
}

impl ComputeTurn {
    fn new(turns: Arc<TenantQuotas>, tenant: &str, share: usize) -> ComputeTurn {
        ComputeTurn {
            turns,
            tenant: tenant.into(),
            share,
            state: Arc::new(Mutex::new(TurnState {
                permit: None,
                ran: std::time::Duration::ZERO,
                resumed_at: std::time::Instant::now(),
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a turn (no-op if this activation has one).
    pub async fn take(&self) {
        if self.state().permit.is_some() {
            return;
        }
        let permit = self.turns.acquire(&self.tenant, self.share).await;
        let mut state = self.state();
        state.permit = Some(permit);
        state.resumed_at = std::time::Instant::now();
    }

    /// Gives the turn back: the guest stops running (the host awaits).
    pub fn give_back(&self) {
        let mut state = self.state();
        if state.permit.take().is_some() {
            let stretch = state.resumed_at.elapsed();
            state.ran += stretch;
        }
    }

    /// The host had control: the backstop starts over.
    pub fn reset_clock(&self) {
        let mut state = self.state();
        state.ran = std::time::Duration::ZERO;
        state.resumed_at = std::time::Instant::now();
    }

    /// How long the guest code has run since the last reset.
    pub fn ran(&self) -> std::time::Duration {
        let state = self.state();
        match state.permit {
            Some(_) => state.ran + state.resumed_at.elapsed(),
            None => state.ran,
        }
    }

    /// At an epoch tick: whether the turn should pass to another
    /// activation of the tenant that waits for one.
    pub fn should_pass(&self) -> bool {
        self.turns.is_waited_for(&self.tenant)
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
        assert!(
            !quotas.is_waited_for("attacker"),
            "every unit in use is not contention until someone waits"
        );
        // The other tenant's share is untouched.
        assert!(quotas.try_acquire("good", 2).is_some());
        let waiter = {
            let quotas = quotas.clone();
            tokio::spawn(async move { quotas.acquire("attacker", 2).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the third unit must wait");
        assert!(quotas.is_waited_for("attacker"));
        assert!(!quotas.is_waited_for("good"));
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
