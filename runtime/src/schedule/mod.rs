//! Schedules: start a workflow type every interval or by a cron expression
//! (in a time zone), with an overlap policy, pause, backfill and jitter.
//!
//! A schedule is a document in the store ([`Schedule`]); the scheduler
//! (`api/schedules`) reads it, asks [`Schedule::next_action`] what is due,
//! carries that out, and writes the document back with
//! [`Schedule::record`] (compare and swap). Durability comes from two
//! rules: the start at nominal time `t` has the workflow id
//! [`workflow_id`]`(schedule, t)` (starts are idempotent by id, so a start
//! repeated after a crash is the same execution), and the watermark moves
//! past `t` only after `t` was dealt with — a restart neither skips nor
//! doubles a due start.

mod spec;

use serde::{Deserialize, Serialize};

pub use spec::{ScheduleSpec, SpecError};

/// How many due starts one schedule may catch up on in one scheduler pass
/// (after downtime); the rest follow in the next passes.
pub const CATCH_UP_PER_PASS_MAX: usize = 100;
/// The most nominal times one backfill starts.
pub const BACKFILL_STARTS_MAX: usize = 1_000;
/// Longest schedule id, in bytes: workflow ids are derived from it.
pub const SCHEDULE_ID_BYTES_MAX: usize = 128;

/// What a start that comes due does while the schedule's previous start
/// still runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// The start does not happen (it is counted as skipped).
    #[default]
    Skip,
    /// One start waits for the previous to end; more are skipped.
    BufferOne,
    /// The start happens anyway.
    AllowAll,
    /// The previous is asked to cancel, and the start happens.
    CancelPrevious,
}

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub workflow_type: String,
    /// JSON, passed to every start as it was sent.
    pub input: String,
    pub spec: ScheduleSpec,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    #[serde(default)]
    pub paused: bool,
    /// Every nominal time up to here was dealt with (started, skipped or
    /// buffered). A new schedule starts at its creation time; a resumed
    /// one at the resume (a pause skips what fell in it).
    pub watermark_ms: i64,
    /// The start the buffer-one policy holds until the previous ends.
    #[serde(default)]
    pub buffered_ms: Option<i64>,
    /// The workflow id of the last start: the "previous" of the policy.
    #[serde(default)]
    pub last_workflow_id: Option<String>,
    #[serde(default)]
    pub started: u64,
    #[serde(default)]
    pub skipped: u64,
    /// Why the last start failed, if it did (an unbound workflow type…).
    #[serde(default)]
    pub last_error: Option<String>,
}

/// What the scheduler does next for a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Start {
        nominal_ms: i64,
    },
    /// The previous start still runs and the policy says skip.
    Skip {
        nominal_ms: i64,
    },
    /// The previous start still runs; this one waits for it.
    Buffer {
        nominal_ms: i64,
    },
    /// Cancel `previous`, then start.
    CancelPreviousAndStart {
        previous: String,
        nominal_ms: i64,
    },
    /// The previous start ended: start the buffered one.
    StartBuffered {
        nominal_ms: i64,
    },
}

/// The workflow id of the start at `nominal_ms`: derived from the schedule
/// and the time, so the same start made twice is one execution.
pub fn workflow_id(schedule_id: &str, nominal_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(nominal_ms) {
        Ok(at) => format!("{schedule_id}@{at}"),
        Err(_) => format!("{schedule_id}@{nominal_ms}"),
    }
}

impl Schedule {
    /// What is due at `now_ms`, given whether the last start still runs;
    /// `None` when nothing is (paused, or the next time has not come).
    pub fn next_action(
        &self,
        schedule_id: &str,
        now_ms: i64,
        previous_running: bool,
    ) -> Option<Action> {
        if self.paused {
            return None;
        }
        if let Some(nominal_ms) = self.buffered_ms
            && !previous_running
        {
            return Some(Action::StartBuffered { nominal_ms });
        }
        let nominal_ms = self.spec.next_after(self.watermark_ms)?;
        let due_ms = nominal_ms.saturating_add(self.jitter_ms(schedule_id, nominal_ms));
        if now_ms < due_ms {
            return None;
        }
        if !previous_running {
            return Some(Action::Start { nominal_ms });
        }
        Some(match (self.overlap, &self.last_workflow_id) {
            (OverlapPolicy::AllowAll, _) => Action::Start { nominal_ms },
            (OverlapPolicy::Skip, _) => Action::Skip { nominal_ms },
            (OverlapPolicy::BufferOne, _) if self.buffered_ms.is_some() => {
                Action::Skip { nominal_ms }
            }
            (OverlapPolicy::BufferOne, _) => Action::Buffer { nominal_ms },
            (OverlapPolicy::CancelPrevious, Some(previous)) => Action::CancelPreviousAndStart {
                previous: previous.clone(),
                nominal_ms,
            },
            (OverlapPolicy::CancelPrevious, None) => Action::Start { nominal_ms },
        })
    }

    /// The schedule after `action` was carried out; `failure` says why a
    /// start did not happen (it counts as skipped).
    pub fn record(&mut self, schedule_id: &str, action: &Action, failure: Option<String>) {
        match action {
            Action::Start { nominal_ms } | Action::CancelPreviousAndStart { nominal_ms, .. } => {
                self.watermark_ms = *nominal_ms;
                self.note_start(schedule_id, *nominal_ms, failure);
            }
            Action::StartBuffered { nominal_ms } => {
                self.buffered_ms = None;
                self.note_start(schedule_id, *nominal_ms, failure);
            }
            Action::Skip { nominal_ms } => {
                self.watermark_ms = *nominal_ms;
                self.skipped += 1;
            }
            Action::Buffer { nominal_ms } => {
                self.watermark_ms = *nominal_ms;
                self.buffered_ms = Some(*nominal_ms);
            }
        }
    }

    fn note_start(&mut self, schedule_id: &str, nominal_ms: i64, failure: Option<String>) {
        match failure {
            None => {
                self.started += 1;
                self.last_workflow_id = Some(workflow_id(schedule_id, nominal_ms));
                self.last_error = None;
            }
            Some(failure) => {
                self.skipped += 1;
                self.last_error = Some(failure);
            }
        }
    }

    /// When the next start is due (its nominal time plus its jitter), if
    /// the schedule is not paused.
    pub fn next_due_ms(&self, schedule_id: &str) -> Option<i64> {
        if self.paused {
            return None;
        }
        let nominal_ms = self.spec.next_after(self.watermark_ms)?;
        Some(nominal_ms.saturating_add(self.jitter_ms(schedule_id, nominal_ms)))
    }

    fn jitter_ms(&self, schedule_id: &str, nominal_ms: i64) -> i64 {
        i64::try_from(self.spec.jitter_for(schedule_id, nominal_ms)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_second(overlap: OverlapPolicy) -> Schedule {
        Schedule {
            workflow_type: "hello".into(),
            input: "null".into(),
            spec: ScheduleSpec::parse(r#"{"every_ms": 1000}"#).expect("spec"),
            overlap,
            paused: false,
            watermark_ms: 10_000,
            buffered_ms: None,
            last_workflow_id: None,
            started: 0,
            skipped: 0,
            last_error: None,
        }
    }

    #[test]
    fn nothing_is_due_before_the_next_nominal_time_or_while_paused() {
        let mut schedule = every_second(OverlapPolicy::Skip);
        assert_eq!(schedule.next_action("s", 10_999, false), None);
        assert_eq!(
            schedule.next_action("s", 11_000, false),
            Some(Action::Start { nominal_ms: 11_000 })
        );
        schedule.paused = true;
        assert_eq!(schedule.next_action("s", 50_000, false), None);
        assert_eq!(schedule.next_due_ms("s"), None);
    }

    #[test]
    fn each_policy_decides_what_an_overlapping_start_does() {
        let running = |overlap| {
            let mut schedule = every_second(overlap);
            schedule.record("s", &Action::Start { nominal_ms: 11_000 }, None);
            schedule
        };
        let at = 12_000;
        assert_eq!(
            running(OverlapPolicy::Skip).next_action("s", at, true),
            Some(Action::Skip { nominal_ms: at })
        );
        assert_eq!(
            running(OverlapPolicy::AllowAll).next_action("s", at, true),
            Some(Action::Start { nominal_ms: at })
        );
        assert_eq!(
            running(OverlapPolicy::CancelPrevious).next_action("s", at, true),
            Some(Action::CancelPreviousAndStart {
                previous: "s@1970-01-01T00:00:11Z".into(),
                nominal_ms: at
            })
        );
        // Buffer one: the first overlap waits, the next is skipped, and
        // the buffered start goes once the previous has ended.
        let mut buffering = running(OverlapPolicy::BufferOne);
        let first = buffering.next_action("s", at, true).expect("due");
        assert_eq!(first, Action::Buffer { nominal_ms: at });
        buffering.record("s", &first, None);
        let second = buffering.next_action("s", 13_000, true).expect("due");
        assert_eq!(second, Action::Skip { nominal_ms: 13_000 });
        buffering.record("s", &second, None);
        let freed = buffering.next_action("s", 13_500, false).expect("due");
        assert_eq!(freed, Action::StartBuffered { nominal_ms: at });
        buffering.record("s", &freed, None);
        assert_eq!(
            (buffering.started, buffering.skipped, buffering.buffered_ms),
            (2, 1, None)
        );
        assert_eq!(
            buffering.last_workflow_id.as_deref(),
            Some("s@1970-01-01T00:00:12Z")
        );
    }

    #[test]
    fn the_watermark_moves_one_nominal_time_at_a_time() {
        let mut schedule = every_second(OverlapPolicy::AllowAll);
        let mut started = Vec::new();
        while let Some(action) = schedule.next_action("s", 13_500, false) {
            schedule.record("s", &action, None);
            started.push(action);
        }
        assert_eq!(
            started,
            [11_000, 12_000, 13_000].map(|nominal_ms| Action::Start { nominal_ms })
        );
        assert_eq!(schedule.watermark_ms, 13_000);
        // A failed start is counted as skipped and says why.
        let failed = schedule.next_action("s", 14_000, false).expect("due");
        schedule.record("s", &failed, Some("no workflow type".into()));
        assert_eq!(
            (schedule.skipped, schedule.last_error.as_deref()),
            (1, Some("no workflow type"))
        );
    }

    #[test]
    fn jitter_delays_a_start_by_the_same_amount_every_time() {
        let mut schedule = every_second(OverlapPolicy::Skip);
        schedule.spec =
            ScheduleSpec::parse(r#"{"every_ms": 60000, "jitter_ms": 30000}"#).expect("spec");
        schedule.watermark_ms = 0;
        let due = schedule.next_due_ms("s").expect("due");
        assert!((60_000..90_000).contains(&due), "{due}");
        assert_eq!(schedule.next_due_ms("s"), Some(due));
        assert_eq!(schedule.next_action("s", due - 1, false), None);
        assert_eq!(
            schedule.next_action("s", due, false),
            Some(Action::Start { nominal_ms: 60_000 })
        );
    }
}
