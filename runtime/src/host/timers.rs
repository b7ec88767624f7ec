//! WASI timers of a workflow, made durable: the subscriptions of
//! `wasi:clocks/monotonic-clock` and `wasi:io/poll` over them.
//!
//! `std::thread::sleep`, Python's `time.sleep` and anything else built on a
//! clock subscription become journaled timers, like `durable.sleep-ms`:
//!
//! - `subscribe-duration` / `subscribe-instant` record `TimerStarted` (its
//!   fire time is fixed then, and durable before anyone waits on it);
//! - `pollable.block` and a `poll` over timers only wait durably for the
//!   earliest one (`TimerFired`; the instance may be evicted meanwhile, a
//!   crash resumes with the remaining time, a replay does not wait);
//! - `pollable.ready` and what `poll` reports are answered from the journal
//!   (`TimersPolled`): the same answer live, in replay and after a crash;
//!   `poll` reports of the fired timers only those due first, so callbacks
//!   run in due order however late the guest polled.
//!
//! Other pollables (stdout, stderr, the empty stdin, denied HTTP) are ready
//! at once and go to wasmtime-wasi's own implementation.

use wasmtime::component::Resource;
use wasmtime_wasi::clocks::WasiClocksView as _;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi_io::bindings::wasi::io::poll;

use super::WorkflowHost;
use super::durable::{interrupt, off_turn};
use crate::clock;
use crate::execution::Wait;
use crate::journal::Seq;

/// A durable timer's side of its pollable. Its `ready` is never polled:
/// `poll` answers timers from the journal instead.
struct DurableTimer;

#[wasmtime_wasi::async_trait]
impl Pollable for DurableTimer {
    async fn ready(&mut self) {
        std::future::pending::<()>().await
    }
}

/// A subscription of zero time: ready at once, nothing to journal.
struct Elapsed;

#[wasmtime_wasi::async_trait]
impl Pollable for Elapsed {
    async fn ready(&mut self) {}
}

impl WorkflowHost {
    /// A pollable for a durable timer of `duration_ns`.
    fn subscribe_timer(&mut self, duration_ns: u64) -> wasmtime::Result<Resource<DynPollable>> {
        if duration_ns == 0 {
            let elapsed = self.table.push(Elapsed)?;
            return subscribe(&mut self.table, elapsed);
        }
        let duration_ms = duration_ns.div_ceil(1_000_000);
        let seq = self
            .execution
            .recorder()
            .start_timer(duration_ms, clock::now_ms())
            .map_err(|halt| interrupt(halt.into()))?;
        let timer = self.table.push(DurableTimer)?;
        let pollable = subscribe(&mut self.table, timer)?;
        self.timers.insert(pollable.rep(), seq);
        Ok(pollable)
    }

    /// The timer seq behind `pollable`, if it is a durable timer.
    fn timer_of(&self, pollable: &Resource<DynPollable>) -> Option<Seq> {
        self.timers.get(&pollable.rep()).copied()
    }

    /// Waits durably until timer `seq` fired.
    async fn wait_for_timer(&mut self, seq: Seq) -> wasmtime::Result<()> {
        // The timer's start must be durable before the wait: a crash then
        // resumes with the time that is left, not a fresh full duration.
        let turn = self.turn.clone();
        off_turn(&turn, self.execution.flush())
            .await
            .map_err(interrupt)?;
        self.block(Wait::Sleep(seq)).await.map(|_| ())
    }

    /// The timer of `timers` that fires first (the lowest seq on a tie):
    /// decided from the journal, so the same in replay.
    fn earliest(&self, timers: &[(u32, Seq)]) -> Option<Seq> {
        let recorder = self.execution.recorder();
        timers
            .iter()
            .map(|(_, seq)| (recorder.timer_fire_at(*seq).unwrap_or(0), *seq))
            .min()
            .map(|(_, seq)| seq)
    }

    /// Of the timers that fired, those due first (host behaviour 2 on):
    /// a guest that polls late gets its timers one due time at a time, in
    /// due order, whichever order it listed them in. Decided from the
    /// journal, so the same in replay.
    fn due_first(&self, fired: Vec<Seq>) -> Vec<Seq> {
        let recorder = self.execution.recorder();
        if recorder.history.host_behaviour() < 2 {
            return fired;
        }
        let due = |seq: &Seq| recorder.timer_fire_at(*seq).unwrap_or(0);
        let Some(first) = fired.iter().map(due).min() else {
            return fired;
        };
        fired.into_iter().filter(|seq| due(seq) == first).collect()
    }

    /// Which of `timers` fired, as journaled.
    fn fired(&mut self, timers: &[Seq]) -> wasmtime::Result<Vec<Seq>> {
        self.execution
            .recorder()
            .poll_timers(timers, clock::now_ms())
            .map_err(|halt| interrupt(halt.into()))
    }
}

impl monotonic_clock::Host for WorkflowHost {
    fn now(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::now(&mut self.clocks())
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::resolution(&mut self.clocks())
    }

    fn subscribe_duration(&mut self, duration_ns: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.subscribe_timer(duration_ns)
    }

    fn subscribe_instant(&mut self, when_ns: u64) -> wasmtime::Result<Resource<DynPollable>> {
        // The monotonic clock is journaled: the same duration in replay.
        let now_ns = monotonic_clock::Host::now(self)?;
        self.subscribe_timer(when_ns.saturating_sub(now_ns))
    }
}

impl poll::Host for WorkflowHost {
    async fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let mut timers: Vec<(u32, Seq)> = Vec::new();
        let mut others: Vec<(u32, Resource<DynPollable>)> = Vec::new();
        for (index, pollable) in (0u32..).zip(pollables) {
            match self.timer_of(&pollable) {
                Some(seq) => timers.push((index, seq)),
                None => others.push((index, pollable)),
            }
        }
        let mut ready: Vec<u32> = Vec::new();
        if !others.is_empty() {
            let (indexes, others): (Vec<u32>, Vec<_>) = others.into_iter().unzip();
            let others_ready = poll::Host::poll(&mut self.table, others).await?;
            ready.extend(others_ready.into_iter().map(|i| indexes[i as usize]));
        } else if let Some(earliest) = self.earliest(&timers) {
            // Only timers: wait for the first of them to fire.
            self.wait_for_timer(earliest).await?;
        }
        if !timers.is_empty() {
            let seqs: Vec<Seq> = timers.iter().map(|(_, seq)| *seq).collect();
            let fired = self.fired(&seqs)?;
            let fired = self.due_first(fired);
            ready.extend(
                timers
                    .iter()
                    .filter(|(_, seq)| fired.contains(seq))
                    .map(|(index, _)| *index),
            );
        }
        ready.sort_unstable();
        Ok(ready)
    }
}

impl poll::HostPollable for WorkflowHost {
    async fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        match self.timer_of(&pollable) {
            Some(seq) => self.wait_for_timer(seq).await,
            None => poll::HostPollable::block(&mut self.table, pollable).await,
        }
    }

    async fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        match self.timer_of(&pollable) {
            Some(seq) => Ok(!self.fired(&[seq])?.is_empty()),
            None => poll::HostPollable::ready(&mut self.table, pollable).await,
        }
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.timers.remove(&pollable.rep());
        poll::HostPollable::drop(&mut self.table, pollable)
    }
}

/// Links the durable versions over wasmtime-wasi's (the linker must allow
/// shadowing).
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<WorkflowHost>,
) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    monotonic_clock::add_to_linker::<WorkflowHost, HasSelf<WorkflowHost>>(linker, |host| host)?;
    poll::add_to_linker::<WorkflowHost, HasSelf<WorkflowHost>>(linker, |host| host)?;
    Ok(())
}
