//! Schedule specifications: when a schedule starts its workflow.
//!
//! A spec is either a fixed interval on a grid anchored at the Unix epoch or
//! a 5-field cron expression read in the local time of an IANA time zone,
//! plus optional jitter. Everything here is a pure function of the spec and
//! the instants passed in (never the clock), so a scheduler that restarts
//! recomputes exactly the nominal times, and the jitter, it computed before.
//!
//! Instants are milliseconds since the Unix epoch (`i64`), as in the store.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The shortest interval: shorter ones would make the scheduler loop the
/// busiest part of the runtime.
pub const EVERY_MS_MIN: u64 = 1_000;

/// The longest interval (about ten years); longer ones are better written
/// as a cron, and the bound keeps grid arithmetic far from overflow.
pub const EVERY_MS_MAX: u64 = 10 * 366 * 24 * 60 * 60 * 1_000;

/// The largest jitter: it spreads starts over a window, it is not a delay.
pub const JITTER_MS_MAX: u64 = 60 * 60 * 1_000;

/// The longest cron text; real expressions are a few dozen bytes.
pub const CRON_BYTES_MAX: usize = 256;

/// The longest time zone name; IANA names are at most about 30 bytes.
pub const TIME_ZONE_BYTES_MAX: usize = 64;

/// The longest JSON text [`ScheduleSpec::parse`] reads: every field at its
/// limit fits with room for whitespace.
pub const SPEC_JSON_BYTES_MAX: usize = 4_096;

/// How many calendar years past the current one a cron search looks.
/// [`ScheduleSpec::validate`] refuses a cron that can go this many years in a
/// row without a match, so for a valid spec the search always finds one.
/// Eight covers February 29, whose longest wait is 2096 to 2104.
pub const SEARCH_HORIZON_YEARS: i32 = 8;

/// The time zone of a cron spec without `time_zone`.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// Jiff offsets lie within ±25:59:59, so no time zone gap (spring forward)
/// is longer than the difference of two of them.
const OFFSET_CHANGE_SECONDS_MAX: i64 = 2 * 26 * 60 * 60;

/// The last civil year jiff represents.
const CIVIL_YEAR_MAX: i32 = 9_999;

/// Separates the jitter hash from any other SHA-256 use of the same inputs;
/// changing it moves every jittered start.
const JITTER_HASH_DOMAIN: &[u8] = b"reprise/schedule-jitter/v1\0";

const MILLIS_PER_SECOND: i64 = 1_000;
const MILLIS_PER_MINUTE: i64 = 60 * MILLIS_PER_SECOND;
const SECONDS_PER_DAY: i64 = 24 * 60 * 60;
const MINUTES_PER_DAY: i64 = 24 * 60;

/// When a schedule starts its workflow. JSON forms:
///
/// - `{"every_ms": 60000}`, optionally with `"offset_ms": 5000`: nominal
///   times are `k * every_ms + offset_ms` since the Unix epoch, for every
///   integer `k`.
/// - `{"cron": "*/15 9-17 * * MON-FRI", "time_zone": "Europe/Berlin"}`:
///   `time_zone` is optional, default `"UTC"`.
///
/// Either form may add `"jitter_ms": N`: a start waits a pseudo-random
/// `0..N` ms after its nominal time (see [`ScheduleSpec::jitter_for`]).
///
/// The fields are public so a spec can be built in code; run
/// [`ScheduleSpec::validate`] on one built that way. An invalid spec has no
/// nominal times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
}

/// Why a schedule spec was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("the schedule spec is {bytes} bytes of JSON; the limit is {SPEC_JSON_BYTES_MAX}")]
    JsonTooLong { bytes: usize },
    #[error(
        "the schedule spec is not valid: {0}; expected {{\"every_ms\": N}} or {{\"cron\": \"...\"}} \
         with optional \"offset_ms\", \"time_zone\" and \"jitter_ms\""
    )]
    Json(String),
    #[error("the schedule spec has neither \"every_ms\" nor \"cron\"; give exactly one")]
    NoForm,
    #[error("the schedule spec has both \"every_ms\" and \"cron\"; give exactly one")]
    BothForms,
    #[error(
        "\"offset_ms\" only applies to \"every_ms\" schedules; remove it from this cron schedule"
    )]
    OffsetWithoutInterval,
    #[error(
        "\"time_zone\" only applies to \"cron\" schedules; remove it (intervals count from the Unix epoch)"
    )]
    TimeZoneWithoutCron,
    #[error("every_ms {every_ms} is below the minimum {EVERY_MS_MIN}; use a longer interval")]
    EveryTooSmall { every_ms: u64 },
    #[error("every_ms {every_ms} is above the maximum {EVERY_MS_MAX} (about 10 years); use a cron")]
    EveryTooLarge { every_ms: u64 },
    #[error(
        "offset_ms {offset_ms} is not below every_ms {every_ms}; use an offset from 0 to {}",
        every_ms.saturating_sub(1)
    )]
    OffsetTooLarge { offset_ms: u64, every_ms: u64 },
    #[error("jitter_ms {jitter_ms} is above the maximum {JITTER_MS_MAX} (1 hour)")]
    JitterTooLarge { jitter_ms: u64 },
    #[error("the cron text is {bytes} bytes; the limit is {CRON_BYTES_MAX}")]
    CronTooLong { bytes: usize },
    #[error(
        "cron \"{cron}\" has {found} fields; it needs 5 (minute hour day-of-month month \
         day-of-week) or one macro such as @daily"
    )]
    CronFieldCount { cron: String, found: usize },
    #[error(
        "cron macro \"{name}\" is not supported; use @hourly, @daily, @midnight, @weekly, \
         @monthly, @yearly, @annually or 5 fields"
    )]
    CronUnknownMacro { name: String },
    /// `position` counts from 1: minute, hour, day-of-month, month,
    /// day-of-week. `value` is the offending part of the field.
    #[error("cron field {position} ({field}) \"{value}\" {problem}")]
    CronField {
        position: u8,
        field: &'static str,
        value: String,
        problem: String,
    },
    #[error(
        "cron \"{cron}\" never matches: its day-of-month, month and day-of-week fields name no \
         day that exists; check those fields"
    )]
    CronNeverMatches { cron: String },
    #[error(
        "cron \"{cron}\" goes {years} years in a row without a match (e.g. from {from_year}); a \
         schedule must match at least once in every {SEARCH_HORIZON_YEARS} years"
    )]
    CronTooRare {
        cron: String,
        years: u32,
        from_year: i32,
    },
    #[error("the time zone name is {bytes} bytes; the limit is {TIME_ZONE_BYTES_MAX}")]
    TimeZoneTooLong { bytes: usize },
    #[error(
        "time zone \"{name}\" is not in the time zone database; use an IANA name such as \
         \"Europe/Berlin\" or \"UTC\""
    )]
    UnknownTimeZone { name: String },
}

/// A spec checked and compiled for computing times.
enum Plan {
    Interval {
        every_ms: u64,
        offset_ms: u64,
    },
    Cron {
        cron: CronExpression,
        zone: TimeZone,
    },
}

impl ScheduleSpec {
    /// Parses and validates JSON text (the raw request field).
    pub fn parse(json: &str) -> Result<ScheduleSpec, SpecError> {
        if json.len() > SPEC_JSON_BYTES_MAX {
            return Err(SpecError::JsonTooLong { bytes: json.len() });
        }
        let spec: ScheduleSpec =
            serde_json::from_str(json).map_err(|error| SpecError::Json(error.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Validates a spec: exactly one form, cron syntax, a time zone that
    /// exists, `EVERY_MS_MIN <= every_ms <= EVERY_MS_MAX`,
    /// `offset_ms < every_ms`, `jitter_ms <= JITTER_MS_MAX`, and a cron that
    /// matches at least once in every [`SEARCH_HORIZON_YEARS`] years (so
    /// `"0 0 30 2 *"` is refused). Jitter may exceed the gap between starts.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self.plan()? {
            Plan::Interval { .. } => Ok(()),
            Plan::Cron { cron, .. } => cron.check_frequency(self.cron.as_deref().unwrap_or("")),
        }
    }

    /// The first nominal time strictly after `after_ms`, or `None` if there
    /// is none within [`SEARCH_HORIZON_YEARS`] (only for a spec that
    /// [`validate`](Self::validate) refuses, or at the end of the supported
    /// range: year 9999 for crons, `i64::MAX` ms for intervals).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self.plan().ok()? {
            Plan::Interval {
                every_ms,
                offset_ms,
            } => next_interval_time(every_ms, offset_ms, after_ms),
            Plan::Cron { cron, zone } => next_cron_time(&cron, &zone, after_ms),
        }
    }

    /// Nominal times in `(after_ms, until_ms]`, oldest first, at most `max`.
    /// Parses the spec once, so it is cheaper per time than calling
    /// [`next_after`](Self::next_after) in a loop.
    pub fn nominal_times(&self, after_ms: i64, until_ms: i64, max: usize) -> Vec<i64> {
        let mut times = Vec::new();
        if max == 0 || until_ms <= after_ms {
            return times;
        }
        let Ok(plan) = self.plan() else {
            return times;
        };
        let mut cursor = after_ms;
        while times.len() < max {
            let next = match &plan {
                Plan::Interval {
                    every_ms,
                    offset_ms,
                } => next_interval_time(*every_ms, *offset_ms, cursor),
                Plan::Cron { cron, zone } => next_cron_time(cron, zone, cursor),
            };
            match next {
                Some(time) if time <= until_ms => {
                    times.push(time);
                    cursor = time;
                }
                _ => break,
            }
        }
        times
    }

    /// The delay of the start at `nominal_ms` of schedule `schedule_id`: in
    /// `[0, jitter_ms)`, derived from SHA-256 of (schedule id, nominal time)
    /// so a restart computes the same delay; 0 without jitter.
    pub fn jitter_for(&self, schedule_id: &str, nominal_ms: i64) -> u64 {
        let jitter_ms = match self.jitter_ms {
            Some(jitter_ms) if jitter_ms > 0 => jitter_ms,
            _ => return 0,
        };
        let mut hasher = Sha256::new();
        hasher.update(JITTER_HASH_DOMAIN);
        // The length prefix keeps ("ab", t) and ("a", t') from sharing bytes.
        hasher.update((schedule_id.len() as u64).to_be_bytes());
        hasher.update(schedule_id.as_bytes());
        hasher.update(nominal_ms.to_be_bytes());
        let digest = hasher.finalize();
        let mut first_eight = [0u8; 8];
        first_eight.copy_from_slice(&digest[..8]);
        // The modulo bias is below 2^-42 for any allowed jitter.
        u64::from_be_bytes(first_eight) % jitter_ms
    }

    /// A short human description: "every 60s", "cron */15 9-17 * * MON-FRI
    /// (Europe/Berlin)", with ", offset 5s" and ", jitter up to 30s" when set.
    pub fn describe(&self) -> String {
        let mut description = match (self.every_ms, self.cron.as_deref()) {
            (Some(every_ms), None) => {
                let mut text = format!("every {}", describe_millis(every_ms));
                if let Some(offset_ms) = self.offset_ms.filter(|offset| *offset > 0) {
                    text.push_str(&format!(", offset {}", describe_millis(offset_ms)));
                }
                text
            }
            (None, Some(cron)) => format!(
                "cron {} ({})",
                cron.trim(),
                self.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE)
            ),
            _ => "invalid schedule (needs exactly one of every_ms and cron)".to_string(),
        };
        if let Some(jitter_ms) = self.jitter_ms.filter(|jitter| *jitter > 0) {
            description.push_str(&format!(", jitter up to {}", describe_millis(jitter_ms)));
        }
        description
    }

    fn plan(&self) -> Result<Plan, SpecError> {
        if let Some(jitter_ms) = self.jitter_ms
            && jitter_ms > JITTER_MS_MAX
        {
            return Err(SpecError::JitterTooLarge { jitter_ms });
        }
        match (self.every_ms, self.cron.as_deref()) {
            (None, None) => Err(SpecError::NoForm),
            (Some(_), Some(_)) => Err(SpecError::BothForms),
            (Some(every_ms), None) => {
                if self.time_zone.is_some() {
                    return Err(SpecError::TimeZoneWithoutCron);
                }
                if every_ms < EVERY_MS_MIN {
                    return Err(SpecError::EveryTooSmall { every_ms });
                }
                if every_ms > EVERY_MS_MAX {
                    return Err(SpecError::EveryTooLarge { every_ms });
                }
                let offset_ms = self.offset_ms.unwrap_or(0);
                if offset_ms >= every_ms {
                    return Err(SpecError::OffsetTooLarge {
                        offset_ms,
                        every_ms,
                    });
                }
                Ok(Plan::Interval {
                    every_ms,
                    offset_ms,
                })
            }
            (None, Some(cron_text)) => {
                if self.offset_ms.is_some() {
                    return Err(SpecError::OffsetWithoutInterval);
                }
                let cron = CronExpression::parse(cron_text)?;
                let zone = time_zone(self.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE))?;
                Ok(Plan::Cron { cron, zone })
            }
        }
    }
}

fn time_zone(name: &str) -> Result<TimeZone, SpecError> {
    if name.len() > TIME_ZONE_BYTES_MAX {
        return Err(SpecError::TimeZoneTooLong { bytes: name.len() });
    }
    match TimeZone::get(name) {
        // Jiff answers "Etc/Unknown" with a placeholder zone that acts as
        // UTC; a schedule must not silently run in UTC.
        Ok(zone) if !zone.is_unknown() => Ok(zone),
        _ => Err(SpecError::UnknownTimeZone {
            name: name.to_string(),
        }),
    }
}

fn describe_millis(millis: u64) -> String {
    if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

fn next_interval_time(every_ms: u64, offset_ms: u64, after_ms: i64) -> Option<i64> {
    // i128 keeps k * every_ms + offset_ms exact for every i64 input; only a
    // result past i64::MAX is refused.
    let every = i128::from(every_ms);
    let offset = i128::from(offset_ms);
    let periods = (i128::from(after_ms) - offset).div_euclid(every) + 1;
    i64::try_from(periods * every + offset).ok()
}

/// A parsed cron expression: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq)]
struct CronExpression {
    minutes: u64,
    hours: u64,
    /// Bits 1..=31.
    days_of_month: u64,
    /// Bits 1..=12.
    months: u64,
    /// Bits 0..=6, 0 = Sunday (a 7 in the text lands on bit 0).
    days_of_week: u64,
    /// Vixie cron: a day field whose text starts with `*` (also `*/2`) is
    /// "unrestricted". Only when both day fields are restricted does a day
    /// match on either of them; otherwise it must match both.
    day_of_month_starred: bool,
    day_of_week_starred: bool,
}

struct FieldRules {
    position: u8,
    name: &'static str,
    min: u32,
    max: u32,
    /// Names in order; the first stands for `first_name_value`.
    names: &'static [&'static str],
    first_name_value: u32,
    names_hint: &'static str,
}

const MINUTE_FIELD: FieldRules = FieldRules {
    position: 1,
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    first_name_value: 0,
    names_hint: "",
};
const HOUR_FIELD: FieldRules = FieldRules {
    position: 2,
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    first_name_value: 0,
    names_hint: "",
};
const DAY_OF_MONTH_FIELD: FieldRules = FieldRules {
    position: 3,
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    first_name_value: 0,
    names_hint: "",
};
const MONTH_FIELD: FieldRules = FieldRules {
    position: 4,
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    first_name_value: 1,
    names_hint: " or a month name (JAN-DEC)",
};
const DAY_OF_WEEK_FIELD: FieldRules = FieldRules {
    position: 5,
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    first_name_value: 0,
    names_hint: " or a day name (SUN-SAT)",
};

/// The longest number a field accepts, in digits; longer is out of range
/// without parsing (and without overflow).
const FIELD_NUMBER_DIGITS_MAX: usize = 2;

const MACROS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

impl FieldRules {
    fn error(&self, value: &str, problem: impl Into<String>) -> SpecError {
        SpecError::CronField {
            position: self.position,
            field: self.name,
            value: value.to_string(),
            problem: problem.into(),
        }
    }

    /// The bits a field allows.
    fn parse(&self, field: &str) -> Result<u64, SpecError> {
        let mut bits = 0u64;
        for item in field.split(',') {
            if item.is_empty() {
                return Err(self.error(field, "has an empty list item; remove the extra comma"));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(self.step(item, step)?)),
                None => (item, None),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((low, high)) = range.split_once('-') {
                let low = self.value(item, low)?;
                let high = self.value(item, high)?;
                if low > high {
                    return Err(self.error(
                        item,
                        "is a range whose start is after its end; split it in two, e.g. \"22-23,0-2\"",
                    ));
                }
                (low, high)
            } else {
                let value = self.value(item, range)?;
                if step.is_some() {
                    return Err(self.error(
                        item,
                        format!(
                            "has a step but no range; write \"{range}-{}/N\" or \"*/N\"",
                            self.max
                        ),
                    ));
                }
                (value, value)
            };
            let step = step.unwrap_or(1);
            let mut value = low;
            while value <= high {
                bits |= 1 << value;
                value += step;
            }
        }
        Ok(bits)
    }

    fn step(&self, item: &str, step: &str) -> Result<u32, SpecError> {
        let in_range = |step: &u32| (1..=self.max).contains(step);
        match parse_digits(step).filter(in_range) {
            Some(step) => Ok(step),
            None => Err(self.error(
                item,
                format!(
                    "has step \"{step}\"; a step must be a number from 1 to {}",
                    self.max
                ),
            )),
        }
    }

    fn value(&self, item: &str, token: &str) -> Result<u32, SpecError> {
        if token.is_empty() {
            return Err(self.error(item, "is not a number, range or step"));
        }
        if token.bytes().all(|byte| byte.is_ascii_digit()) {
            return match parse_digits(token) {
                Some(value) if (self.min..=self.max).contains(&value) => Ok(value),
                _ => Err(self.error(token, format!("is out of range {}-{}", self.min, self.max))),
            };
        }
        let named = self
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(token));
        match named.and_then(|index| u32::try_from(index).ok()) {
            Some(index) => Ok(self.first_name_value + index),
            None => Err(self.error(token, format!("is not a number{}", self.names_hint))),
        }
    }
}

/// A short all-digit number; `None` for anything else (also `+5`, which
/// `str::parse` would take).
fn parse_digits(text: &str) -> Option<u32> {
    if text.is_empty()
        || text.len() > FIELD_NUMBER_DIGITS_MAX
        || !text.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    text.parse().ok()
}

/// The lowest set bit at or above `from`.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= u64::BITS {
        return None;
    }
    let rest = bits >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn has_bit(bits: u64, value: u32) -> bool {
    next_bit(bits, value) == Some(value)
}

impl CronExpression {
    fn parse(text: &str) -> Result<CronExpression, SpecError> {
        if text.len() > CRON_BYTES_MAX {
            return Err(SpecError::CronTooLong { bytes: text.len() });
        }
        let mut fields: Vec<&str> = text.split_whitespace().collect();
        if let [only] = fields.as_slice()
            && only.starts_with('@')
        {
            let expansion = MACROS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(only))
                .map(|(_, expansion)| *expansion)
                .ok_or_else(|| SpecError::CronUnknownMacro {
                    name: only.to_string(),
                })?;
            fields = expansion.split_whitespace().collect();
        }
        let [minute, hour, day_of_month, month, day_of_week] = fields.as_slice() else {
            return Err(SpecError::CronFieldCount {
                cron: text.to_string(),
                found: fields.len(),
            });
        };
        let mut days_of_week = DAY_OF_WEEK_FIELD.parse(day_of_week)?;
        // 7 is Sunday as well as 0.
        if has_bit(days_of_week, 7) {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(CronExpression {
            minutes: MINUTE_FIELD.parse(minute)?,
            hours: HOUR_FIELD.parse(hour)?,
            days_of_month: DAY_OF_MONTH_FIELD.parse(day_of_month)?,
            months: MONTH_FIELD.parse(month)?,
            days_of_week,
            day_of_month_starred: day_of_month.starts_with('*'),
            day_of_week_starred: day_of_week.starts_with('*'),
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let day_of_month = has_bit(self.days_of_month, day);
        let day_of_week = has_bit(self.days_of_week, weekday);
        if self.day_of_month_starred || self.day_of_week_starred {
            day_of_month && day_of_week
        } else {
            day_of_month || day_of_week
        }
    }

    /// The first matching day of `month` at or after `from_day`.
    fn next_day_in_month(&self, year: i32, month: u32, from_day: u32) -> Option<u32> {
        let last_day = days_in_month(year, month);
        if from_day > last_day {
            return None;
        }
        let mut weekday = weekday(year, month, from_day);
        for day in from_day..=last_day {
            if self.day_matches(day, weekday) {
                return Some(day);
            }
            weekday = (weekday + 1) % 7;
        }
        None
    }

    fn year_has_match(&self, year: i32) -> bool {
        (1..=12).any(|month| {
            has_bit(self.months, month) && self.next_day_in_month(year, month, 1).is_some()
        })
    }

    /// The first matching local minute at or after `from` (whose fields may
    /// have run one past their end, e.g. minute 60), in a year up to
    /// `last_year`. Skips whole months, days and hours that cannot match, so
    /// the cost is a few steps per field, not a scan over minutes.
    fn next_match(&self, from: CivilMinute, last_year: i32) -> Option<CivilMinute> {
        let CivilMinute {
            mut year,
            mut month,
            mut day,
            mut hour,
            mut minute,
        } = from;
        loop {
            if year > last_year {
                return None;
            }
            match next_bit(self.months, month) {
                None => {
                    (year, month, day, hour, minute) = (year + 1, 1, 1, 0, 0);
                    continue;
                }
                Some(next_month) if next_month != month => {
                    (month, day, hour, minute) = (next_month, 1, 0, 0);
                }
                Some(_) => {}
            }
            match self.next_day_in_month(year, month, day) {
                None => {
                    (month, day, hour, minute) = (month + 1, 1, 0, 0);
                    continue;
                }
                Some(next_day) if next_day != day => {
                    (day, hour, minute) = (next_day, 0, 0);
                }
                Some(_) => {}
            }
            match next_bit(self.hours, hour) {
                None => {
                    (day, hour, minute) = (day + 1, 0, 0);
                    continue;
                }
                Some(next_hour) if next_hour != hour => {
                    (hour, minute) = (next_hour, 0);
                }
                Some(_) => {}
            }
            match next_bit(self.minutes, minute) {
                None => {
                    (hour, minute) = (hour + 1, 0);
                    continue;
                }
                Some(next_minute) => {
                    return Some(CivilMinute {
                        year,
                        month,
                        day,
                        hour,
                        minute: next_minute,
                    });
                }
            }
        }
    }

    /// Refuses a cron that never matches, or that can go
    /// [`SEARCH_HORIZON_YEARS`] years in a row without a match. Hours and
    /// minutes always allow something, so only days decide; the Gregorian
    /// calendar, weekdays included, repeats every 400 years, so one cycle
    /// (plus a window's overlap) settles it for all years.
    fn check_frequency(&self, text: &str) -> Result<(), SpecError> {
        const CYCLE_START: i32 = 2_000;
        const CYCLE_YEARS: i32 = 400;
        let window = SEARCH_HORIZON_YEARS;
        let mut any_match = false;
        let mut run_start = CYCLE_START;
        let mut run_years = 0u32;
        let mut longest: Option<(u32, i32)> = None;
        for year in CYCLE_START..CYCLE_START + CYCLE_YEARS + window {
            if self.year_has_match(year) {
                any_match = true;
                run_years = 0;
                continue;
            }
            if run_years == 0 {
                run_start = year;
            }
            run_years += 1;
            if longest.is_none_or(|(years, _)| run_years > years) {
                longest = Some((run_years, run_start));
            }
        }
        if !any_match {
            return Err(SpecError::CronNeverMatches {
                cron: text.to_string(),
            });
        }
        match longest {
            Some((years, from_year)) if years >= window.unsigned_abs() => {
                Err(SpecError::CronTooRare {
                    cron: text.to_string(),
                    years,
                    from_year,
                })
            }
            _ => Ok(()),
        }
    }
}

/// A local wall-clock minute. Fields may run one past their end while a
/// search carries (minute 60, hour 24, day 32, month 13).
#[derive(Clone, Copy, Debug, PartialEq)]
struct CivilMinute {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

impl CivilMinute {
    fn from_local_minutes(local_minutes: i64) -> Option<CivilMinute> {
        let (year, month, day) = civil_from_days(local_minutes.div_euclid(MINUTES_PER_DAY))?;
        let minute_of_day = u32::try_from(local_minutes.rem_euclid(MINUTES_PER_DAY)).ok()?;
        Some(CivilMinute {
            year,
            month,
            day,
            hour: minute_of_day / 60,
            minute: minute_of_day % 60,
        })
    }

    fn local_seconds(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * SECONDS_PER_DAY
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
    }

    /// The instant of this local minute, and whether it fell in a gap.
    /// Disambiguation is jiff's "compatible": a gap (spring forward) uses
    /// the offset before it, so 02:30 in a 02:00-03:00 gap is 03:30 after
    /// it; a fold (fall back) takes the earlier of the two instants.
    fn resolve(&self, zone: &TimeZone) -> Option<(i64, bool)> {
        let datetime = DateTime::new(
            i16::try_from(self.year).ok()?,
            i8::try_from(self.month).ok()?,
            i8::try_from(self.day).ok()?,
            i8::try_from(self.hour).ok()?,
            i8::try_from(self.minute).ok()?,
            0,
            0,
        )
        .ok()?;
        let (offset, in_gap) = match zone.to_ambiguous_timestamp(datetime).offset() {
            AmbiguousOffset::Unambiguous { offset } => (offset, false),
            AmbiguousOffset::Gap { before, .. } => (before, true),
            AmbiguousOffset::Fold { before, .. } => (before, false),
        };
        let instant_ms = (self.local_seconds() - i64::from(offset.seconds())) * MILLIS_PER_SECOND;
        (instant_ms <= Timestamp::MAX.as_millisecond()).then_some((instant_ms, in_gap))
    }
}

/// The first cron time strictly after `after_ms`.
///
/// Local minutes map to instants in increasing order except inside a gap:
/// there "compatible" pushes a time forward by the gap's length, past real
/// times just after the gap. So the search starts early enough to see gap
/// times that land after `after_ms`, and a match in a gap only wins if no
/// real match after the gap comes earlier.
fn next_cron_time(cron: &CronExpression, zone: &TimeZone, after_ms: i64) -> Option<i64> {
    if after_ms >= Timestamp::MAX.as_millisecond() {
        return None;
    }
    // Every cron time is at or after the earliest instant jiff has.
    let after_ms = after_ms.max(Timestamp::MIN.as_millisecond());
    let after = Timestamp::from_millisecond(after_ms).ok()?;
    let start_offset = search_start_offset(zone, after);
    let local_ms = after_ms + i64::from(start_offset.seconds()) * MILLIS_PER_SECOND;
    let mut cursor = CivilMinute::from_local_minutes(local_ms.div_euclid(MILLIS_PER_MINUTE))?;
    let last_year = (cursor.year + SEARCH_HORIZON_YEARS).min(CIVIL_YEAR_MAX);
    let mut earliest_in_gap: Option<i64> = None;
    while let Some(candidate) = cron.next_match(cursor, last_year) {
        let Some((instant_ms, in_gap)) = candidate.resolve(zone) else {
            break;
        };
        if instant_ms > after_ms {
            let earliest = earliest_in_gap.map_or(instant_ms, |gap_ms| gap_ms.min(instant_ms));
            if !in_gap {
                return Some(earliest);
            }
            earliest_in_gap = Some(earliest);
        }
        cursor = CivilMinute {
            minute: candidate.minute + 1,
            ..candidate
        };
    }
    earliest_in_gap
}

/// The offset whose local reading of `after` is where a search must start:
/// normally the offset in force, but just after a gap the one before it,
/// because local times inside the gap land in [gap, gap + its length).
fn search_start_offset(zone: &TimeZone, after: Timestamp) -> Offset {
    let mut start_offset = zone.to_offset(after);
    // `preceding` is strictly before its argument; one nanosecond later
    // includes a transition exactly at `after`.
    let Ok(just_after) = Timestamp::from_nanosecond(after.as_nanosecond() + 1) else {
        return start_offset;
    };
    for transition in zone.preceding(just_after) {
        let transition_at = transition.timestamp();
        let since_transition_ms = after.as_millisecond() - transition_at.as_millisecond();
        if since_transition_ms >= OFFSET_CHANGE_SECONDS_MAX * MILLIS_PER_SECOND {
            break;
        }
        let Ok(just_before) = Timestamp::from_nanosecond(transition_at.as_nanosecond() - 1) else {
            break;
        };
        let offset_before = zone.to_offset(just_before);
        let gap_seconds =
            i64::from(transition.offset().seconds()) - i64::from(offset_before.seconds());
        if gap_seconds > 0
            && since_transition_ms < gap_seconds * MILLIS_PER_SECOND
            && offset_before.seconds() < start_offset.seconds()
        {
            start_offset = offset_before;
        }
    }
    start_offset
}

fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given date.
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> Option<(i32, u32, u32)> {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Some((
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    ))
}

/// 0 = Sunday.
fn weekday(year: i32, month: u32, day: u32) -> u32 {
    // 1970-01-01 was a Thursday.
    let weekday = (days_from_civil(year, month, day) + 4).rem_euclid(7);
    u32::try_from(weekday).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339
            .parse::<Timestamp>()
            .expect("test instant")
            .as_millisecond()
    }

    fn rfc3339(millis: i64) -> String {
        Timestamp::from_millisecond(millis)
            .expect("instant in range")
            .to_string()
    }

    fn cron(text: &str) -> ScheduleSpec {
        cron_in(text, None)
    }

    fn cron_in(text: &str, time_zone: Option<&str>) -> ScheduleSpec {
        let spec = ScheduleSpec {
            every_ms: None,
            offset_ms: None,
            cron: Some(text.to_string()),
            time_zone: time_zone.map(str::to_string),
            jitter_ms: None,
        };
        spec.validate().expect("valid cron spec");
        spec
    }

    fn every(every_ms: u64, offset_ms: Option<u64>) -> ScheduleSpec {
        let spec = ScheduleSpec {
            every_ms: Some(every_ms),
            offset_ms,
            cron: None,
            time_zone: None,
            jitter_ms: None,
        };
        spec.validate().expect("valid interval spec");
        spec
    }

    /// The next `count` times after `after`, as RFC 3339 text.
    fn next_times(spec: &ScheduleSpec, after: &str, count: usize) -> Vec<String> {
        spec.nominal_times(ms(after), i64::MAX, count)
            .into_iter()
            .map(rfc3339)
            .collect()
    }

    fn field_error(position: u8, field: &'static str, value: &str, problem: &str) -> SpecError {
        SpecError::CronField {
            position,
            field,
            value: value.to_string(),
            problem: problem.to_string(),
        }
    }

    #[test]
    fn interval_without_offset_is_a_grid_from_the_epoch() {
        let spec = every(60_000, None);
        assert_eq!(spec.next_after(0), Some(60_000));
        assert_eq!(spec.next_after(59_999), Some(60_000));
        assert_eq!(spec.next_after(60_000), Some(120_000));
        assert_eq!(spec.next_after(-1), Some(0));
        assert_eq!(spec.next_after(-60_001), Some(-60_000));
    }

    #[test]
    fn interval_with_offset_shifts_the_grid() {
        let spec = every(60_000, Some(5_000));
        assert_eq!(spec.next_after(0), Some(5_000));
        assert_eq!(spec.next_after(5_000), Some(65_000));
        assert_eq!(spec.next_after(4_999), Some(5_000));
        assert_eq!(spec.next_after(-55_001), Some(-55_000));
        assert_eq!(
            spec.next_after(ms("2026-01-05T10:00:30Z")),
            Some(ms("2026-01-05T10:01:05Z"))
        );
    }

    #[test]
    fn interval_covers_the_whole_i64_range() {
        let spec = every(60_000, Some(1_000));
        assert_eq!(spec.next_after(i64::MAX), None);
        let first = spec.next_after(i64::MIN).expect("a time after i64::MIN");
        assert!(first > i64::MIN && first - i64::MIN <= 60_000);
        assert_eq!(first.rem_euclid(60_000), 1_000);
        // The last grid point that fits in an i64.
        let last = (i64::MAX - 1_000).div_euclid(60_000) * 60_000 + 1_000;
        assert_eq!(spec.next_after(last - 1), Some(last));
        assert_eq!(spec.next_after(last), None);
    }

    #[test]
    fn cron_every_fifteen_minutes() {
        let spec = cron("*/15 * * * *");
        assert_eq!(
            next_times(&spec, "2026-01-05T10:07:00Z", 4),
            [
                "2026-01-05T10:15:00Z",
                "2026-01-05T10:30:00Z",
                "2026-01-05T10:45:00Z",
                "2026-01-05T11:00:00Z"
            ]
        );
        // Strictly after: a time exactly on a match moves on.
        assert_eq!(
            spec.next_after(ms("2026-01-05T10:15:00Z")),
            Some(ms("2026-01-05T10:30:00Z"))
        );
        // Seconds and milliseconds inside a minute count.
        assert_eq!(
            spec.next_after(ms("2026-01-05T10:14:59.999Z")),
            Some(ms("2026-01-05T10:15:00Z"))
        );
    }

    #[test]
    fn cron_weekdays_skip_the_weekend() {
        // 2026-01-09 is a Friday.
        let spec = cron("0 9 * * MON-FRI");
        assert_eq!(
            next_times(&spec, "2026-01-09T10:00:00Z", 2),
            ["2026-01-12T09:00:00Z", "2026-01-13T09:00:00Z"]
        );
        let business_hours = cron("*/15 9-17 * * MON-FRI");
        assert_eq!(
            next_times(&business_hours, "2026-01-09T17:40:00Z", 2),
            ["2026-01-09T17:45:00Z", "2026-01-12T09:00:00Z"]
        );
    }

    #[test]
    fn cron_names_are_case_insensitive() {
        let spec = cron("30 6 1 jan,Jul *");
        assert_eq!(
            next_times(&spec, "2026-02-01T00:00:00Z", 2),
            ["2026-07-01T06:30:00Z", "2027-01-01T06:30:00Z"]
        );
        // 2026-01-01 is a Thursday; the next Sunday is the 4th.
        let sundays = cron("0 0 * * sun");
        assert_eq!(
            next_times(&sundays, "2026-01-01T00:00:00Z", 1),
            ["2026-01-04T00:00:00Z"]
        );
    }

    #[test]
    fn cron_steps_ranges_and_lists() {
        let spec = cron("5-20/5 */6 * * *");
        assert_eq!(
            next_times(&spec, "2026-01-01T06:20:00Z", 3),
            [
                "2026-01-01T12:05:00Z",
                "2026-01-01T12:10:00Z",
                "2026-01-01T12:15:00Z"
            ]
        );
        let list = cron("0 8,12,18 1,15 * *");
        assert_eq!(
            next_times(&list, "2026-01-01T13:00:00Z", 3),
            [
                "2026-01-01T18:00:00Z",
                "2026-01-15T08:00:00Z",
                "2026-01-15T12:00:00Z"
            ]
        );
        let quarterly = cron("0 0 1 */3 *");
        assert_eq!(
            next_times(&quarterly, "2026-01-01T00:00:00Z", 2),
            ["2026-04-01T00:00:00Z", "2026-07-01T00:00:00Z"]
        );
    }

    #[test]
    fn day_of_week_seven_is_sunday() {
        let seven = cron("0 0 * * 7");
        let zero = cron("0 0 * * 0");
        let after = ms("2026-01-01T00:00:00Z");
        assert_eq!(seven.next_after(after), Some(ms("2026-01-04T00:00:00Z")));
        assert_eq!(seven.next_after(after), zero.next_after(after));
        // FRI-7 is Friday, Saturday, Sunday.
        assert_eq!(
            next_times(&cron("0 0 * * 5-7"), "2026-01-05T00:00:00Z", 3),
            [
                "2026-01-09T00:00:00Z",
                "2026-01-10T00:00:00Z",
                "2026-01-11T00:00:00Z"
            ]
        );
    }

    #[test]
    fn cron_macros() {
        let after = "2026-01-07T10:30:00Z"; // a Wednesday
        assert_eq!(
            next_times(&cron("@daily"), after, 1),
            ["2026-01-08T00:00:00Z"]
        );
        assert_eq!(
            cron("@midnight").next_after(ms(after)),
            cron("0 0 * * *").next_after(ms(after))
        );
        assert_eq!(
            next_times(&cron("@hourly"), after, 1),
            ["2026-01-07T11:00:00Z"]
        );
        assert_eq!(
            next_times(&cron("@weekly"), after, 1),
            ["2026-01-11T00:00:00Z"]
        );
        assert_eq!(
            next_times(&cron("@monthly"), after, 1),
            ["2026-02-01T00:00:00Z"]
        );
        assert_eq!(
            next_times(&cron("@YEARLY"), after, 1),
            ["2027-01-01T00:00:00Z"]
        );
        assert_eq!(
            next_times(&cron("@annually"), after, 1),
            ["2027-01-01T00:00:00Z"]
        );
    }

    #[test]
    fn restricted_day_of_month_and_day_of_week_match_either() {
        // 13th or any Friday: Friday the 2nd and 9th, Tuesday the 13th.
        let spec = cron("0 0 13 * FRI");
        assert_eq!(
            next_times(&spec, "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-02T00:00:00Z",
                "2026-01-09T00:00:00Z",
                "2026-01-13T00:00:00Z",
                "2026-01-16T00:00:00Z"
            ]
        );
    }

    #[test]
    fn a_starred_day_field_makes_days_match_both() {
        // Vixie: "*/2" starts with '*', so it is unrestricted for the OR rule
        // and the day must be odd AND a Monday: the 5th and 19th of January
        // 2026 (not the 12th or the 3rd).
        let spec = cron("0 0 */2 * MON");
        assert_eq!(
            next_times(&spec, "2026-01-01T00:00:00Z", 2),
            ["2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z"]
        );
        // A plain "*" day-of-week leaves day-of-month alone.
        assert_eq!(
            next_times(&cron("0 0 13 * *"), "2026-01-01T00:00:00Z", 1),
            ["2026-01-13T00:00:00Z"]
        );
    }

    #[test]
    fn february_29_waits_for_the_next_leap_year() {
        let spec = cron("0 12 29 2 *");
        assert_eq!(
            next_times(&spec, "2026-03-01T00:00:00Z", 2),
            ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]
        );
        // 2100 is not a leap year: the longest wait, eight years.
        assert_eq!(
            next_times(&spec, "2096-03-01T00:00:00Z", 1),
            ["2104-02-29T12:00:00Z"]
        );
    }

    #[test]
    fn cron_runs_in_local_time_of_its_zone() {
        let spec = cron_in("0 9 * * *", Some("America/New_York"));
        assert_eq!(
            next_times(&spec, "2026-01-15T00:00:00Z", 1),
            ["2026-01-15T14:00:00Z"]
        );
        assert_eq!(
            next_times(&spec, "2026-07-15T00:00:00Z", 1),
            ["2026-07-15T13:00:00Z"]
        );
        // Local midnight in Tokyo is the previous day in UTC.
        let tokyo = cron_in("0 0 1 * *", Some("Asia/Tokyo"));
        assert_eq!(
            next_times(&tokyo, "2026-01-15T00:00:00Z", 1),
            ["2026-01-31T15:00:00Z"]
        );
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_moves_forward_by_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not
        // exist and runs at 03:30 CEST (01:30Z), once.
        let spec = cron_in("30 2 * * *", Some("Europe/Berlin"));
        assert_eq!(
            next_times(&spec, "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
        // Asked from just after the jump (03:10 CEST), the shifted start is
        // still ahead.
        assert_eq!(
            next_times(&spec, "2026-03-29T01:10:00Z", 1),
            ["2026-03-29T01:30:00Z"]
        );
    }

    #[test]
    fn an_interval_like_cron_has_no_duplicates_across_the_gap() {
        let spec = cron_in("*/30 * * * *", Some("Europe/Berlin"));
        assert_eq!(
            next_times(&spec, "2026-03-29T00:00:00Z", 4),
            [
                "2026-03-29T00:30:00Z", // 01:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST (02:00 would be the same)
                "2026-03-29T01:30:00Z",
                "2026-03-29T02:00:00Z"
            ]
        );
    }

    #[test]
    fn a_gap_time_does_not_hide_an_earlier_real_time_after_the_gap() {
        // Lord Howe Island, 2026-10-04: 02:00 (+10:30) jumps to 02:30
        // (+11:00). 02:15 does not exist and moves to 02:45, after the real
        // 02:35, which must come first.
        let spec = cron_in("15,35 2 * * *", Some("Australia/Lord_Howe"));
        assert_eq!(
            next_times(&spec, "2026-10-03T12:00:00Z", 3),
            [
                "2026-10-03T15:35:00Z",
                "2026-10-03T15:45:00Z",
                "2026-10-04T15:15:00Z"
            ]
        );
    }

    #[test]
    fn a_repeated_local_time_runs_once_at_the_earlier_instant() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET, so 02:30
        // happens at 00:30Z and at 01:30Z; only the first is a start.
        let spec = cron_in("30 2 * * *", Some("Europe/Berlin"));
        assert_eq!(
            next_times(&spec, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // From inside the second pass, the next start is the next day.
        assert_eq!(
            next_times(&spec, "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
        let half_hourly = cron_in("*/30 * * * *", Some("Europe/Berlin"));
        assert_eq!(
            half_hourly
                .nominal_times(ms("2026-10-24T23:59:00Z"), ms("2026-10-25T02:30:00Z"), 10)
                .into_iter()
                .map(rfc3339)
                .collect::<Vec<_>>(),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST
                // 02:00 and 02:30 CET repeat local times: skipped.
                "2026-10-25T02:00:00Z", // 03:00 CET
                "2026-10-25T02:30:00Z"
            ]
        );
    }

    #[test]
    fn nominal_times_is_a_half_open_range_capped_by_max() {
        let spec = every(60_000, None);
        assert_eq!(
            spec.nominal_times(0, 300_000, 100),
            [60_000, 120_000, 180_000, 240_000, 300_000]
        );
        assert_eq!(
            spec.nominal_times(0, 300_000, 3),
            [60_000, 120_000, 180_000]
        );
        assert_eq!(spec.nominal_times(0, 59_999, 100), Vec::<i64>::new());
        assert_eq!(spec.nominal_times(300_000, 0, 100), Vec::<i64>::new());
        assert_eq!(spec.nominal_times(0, 300_000, 0), Vec::<i64>::new());
        let daily = cron("@daily");
        let times = daily.nominal_times(
            ms("2026-01-01T00:00:00Z"),
            ms("2027-01-01T00:00:00Z"),
            1_000,
        );
        assert_eq!(times.len(), 365);
        assert!(times.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(times.last().copied(), Some(ms("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn cron_times_are_strictly_increasing_through_a_year_of_transitions() {
        let spec = cron_in("*/10 * * * *", Some("Europe/Berlin"));
        let times = spec.nominal_times(
            ms("2026-01-01T00:00:00Z"),
            ms("2027-01-01T00:00:00Z"),
            100_000,
        );
        assert!(times.windows(2).all(|pair| pair[0] < pair[1]));
        // 365 days of 144 starts; the spring gap loses nothing (its times
        // coincide with real ones after it), the autumn fold's repeat hour
        // loses 6.
        assert_eq!(times.len(), 365 * 144 - 6);
    }

    #[test]
    fn cron_supports_the_range_jiff_supports() {
        let spec = cron("0 0 1 1 *");
        assert_eq!(spec.next_after(i64::MAX), None);
        assert_eq!(spec.next_after(Timestamp::MAX.as_millisecond()), None);
        let first = spec.next_after(i64::MIN).expect("a time in year -9998");
        assert_eq!(rfc3339(first), "-009998-01-01T00:00:00Z");
        assert_eq!(
            next_times(&spec, "9999-06-01T00:00:00Z", 1),
            Vec::<String>::new()
        );
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_varies() {
        let spec =
            ScheduleSpec::parse(r#"{"every_ms": 60000, "jitter_ms": 30000}"#).expect("valid spec");
        let nominal = ms("2026-01-05T10:00:00Z");
        assert_eq!(
            spec.jitter_for("nightly-report", nominal),
            spec.jitter_for("nightly-report", nominal)
        );
        let delays: Vec<u64> = (0..1_000)
            .map(|step| spec.jitter_for("nightly-report", nominal + step * 60_000))
            .collect();
        assert!(delays.iter().all(|delay| *delay < 30_000));
        let mut distinct = delays.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() > 900,
            "only {} distinct delays",
            distinct.len()
        );
        // Spread over the window, not bunched at one end.
        assert!(delays.iter().any(|delay| *delay < 10_000));
        assert!(delays.iter().any(|delay| *delay >= 20_000));
        let other_schedule: Vec<u64> = (0..20)
            .map(|step| spec.jitter_for("other-report", nominal + step * 60_000))
            .collect();
        assert_ne!(other_schedule, delays[..20]);
    }

    #[test]
    fn no_jitter_means_no_delay() {
        assert_eq!(every(60_000, None).jitter_for("s", 60_000), 0);
        let zero =
            ScheduleSpec::parse(r#"{"every_ms": 60000, "jitter_ms": 0}"#).expect("valid spec");
        assert_eq!(zero.jitter_for("s", 60_000), 0);
    }

    #[test]
    fn parse_accepts_both_forms_and_round_trips() {
        let interval = ScheduleSpec::parse(r#"{"every_ms": 60000, "offset_ms": 5000}"#)
            .expect("valid interval");
        assert_eq!(interval.every_ms, Some(60_000));
        assert_eq!(interval.offset_ms, Some(5_000));
        assert_eq!(
            serde_json::to_string(&interval).expect("serializes"),
            r#"{"every_ms":60000,"offset_ms":5000}"#
        );
        let text =
            r#"{"cron":"*/15 9-17 * * MON-FRI","time_zone":"Europe/Berlin","jitter_ms":1000}"#;
        let spec = ScheduleSpec::parse(text).expect("valid cron");
        assert_eq!(serde_json::to_string(&spec).expect("serializes"), text);
        assert_eq!(
            ScheduleSpec::parse(&serde_json::to_string(&spec).expect("json")),
            Ok(spec)
        );
    }

    #[test]
    fn parse_refuses_unknown_fields() {
        let error =
            ScheduleSpec::parse(r#"{"every_ms": 60000, "every": 5}"#).expect_err("unknown field");
        let SpecError::Json(message) = &error else {
            panic!("expected a JSON error, got {error:?}");
        };
        assert!(message.contains("unknown field `every`"), "{message}");
    }

    #[test]
    fn parse_refuses_malformed_json_and_wrong_types() {
        assert!(matches!(ScheduleSpec::parse("{"), Err(SpecError::Json(_))));
        assert!(matches!(
            ScheduleSpec::parse(r#"{"every_ms": -5}"#),
            Err(SpecError::Json(_))
        ));
        assert!(matches!(
            ScheduleSpec::parse(r#"{"cron": 5}"#),
            Err(SpecError::Json(_))
        ));
        let long = format!(
            r#"{{"every_ms": 60000{}}}"#,
            " ".repeat(SPEC_JSON_BYTES_MAX)
        );
        assert_eq!(
            ScheduleSpec::parse(&long),
            Err(SpecError::JsonTooLong { bytes: long.len() })
        );
    }

    #[test]
    fn parse_needs_exactly_one_form() {
        assert_eq!(ScheduleSpec::parse("{}"), Err(SpecError::NoForm));
        assert_eq!(
            ScheduleSpec::parse(r#"{"jitter_ms": 5}"#),
            Err(SpecError::NoForm)
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"every_ms": 60000, "cron": "@daily"}"#),
            Err(SpecError::BothForms)
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"cron": "@daily", "offset_ms": 5}"#),
            Err(SpecError::OffsetWithoutInterval)
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"every_ms": 60000, "time_zone": "UTC"}"#),
            Err(SpecError::TimeZoneWithoutCron)
        );
    }

    #[test]
    fn parse_checks_interval_limits() {
        assert_eq!(
            ScheduleSpec::parse(r#"{"every_ms": 999}"#),
            Err(SpecError::EveryTooSmall { every_ms: 999 })
        );
        assert!(ScheduleSpec::parse(r#"{"every_ms": 1000}"#).is_ok());
        let too_large = EVERY_MS_MAX + 1;
        assert_eq!(
            ScheduleSpec::parse(&format!(r#"{{"every_ms": {too_large}}}"#)),
            Err(SpecError::EveryTooLarge {
                every_ms: too_large
            })
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"every_ms": 60000, "offset_ms": 60000}"#),
            Err(SpecError::OffsetTooLarge {
                offset_ms: 60_000,
                every_ms: 60_000
            })
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"every_ms": 60000, "jitter_ms": 3600001}"#),
            Err(SpecError::JitterTooLarge {
                jitter_ms: 3_600_001
            })
        );
        // Jitter may be longer than the interval.
        assert!(ScheduleSpec::parse(r#"{"every_ms": 60000, "jitter_ms": 3600000}"#).is_ok());
    }

    #[test]
    fn bad_cron_fields_name_the_field_and_the_value() {
        let parse_cron =
            |text: &str| ScheduleSpec::parse(&serde_json::json!({ "cron": text }).to_string());
        let error = parse_cron("0 25 * * *").expect_err("hour 25");
        assert_eq!(error, field_error(2, "hour", "25", "is out of range 0-23"));
        assert_eq!(
            error.to_string(),
            r#"cron field 2 (hour) "25" is out of range 0-23"#
        );
        assert_eq!(
            parse_cron("60 * * * *"),
            Err(field_error(1, "minute", "60", "is out of range 0-59"))
        );
        assert_eq!(
            parse_cron("0 0 0 * *"),
            Err(field_error(3, "day-of-month", "0", "is out of range 1-31"))
        );
        assert_eq!(
            parse_cron("0 0 * MON *"),
            Err(field_error(
                4,
                "month",
                "MON",
                "is not a number or a month name (JAN-DEC)"
            ))
        );
        assert_eq!(
            parse_cron("0 0 * * 8"),
            Err(field_error(5, "day-of-week", "8", "is out of range 0-7"))
        );
        assert_eq!(
            parse_cron("*/0 * * * *"),
            Err(field_error(
                1,
                "minute",
                "*/0",
                "has step \"0\"; a step must be a number from 1 to 59"
            ))
        );
        assert_eq!(
            parse_cron("0 0 * * FRI-MON"),
            Err(field_error(
                5,
                "day-of-week",
                "FRI-MON",
                "is a range whose start is after its end; split it in two, e.g. \"22-23,0-2\""
            ))
        );
        assert_eq!(
            parse_cron("5/15 * * * *"),
            Err(field_error(
                1,
                "minute",
                "5/15",
                "has a step but no range; write \"5-59/N\" or \"*/N\""
            ))
        );
        assert_eq!(
            parse_cron("1,,2 * * * *"),
            Err(field_error(
                1,
                "minute",
                "1,,2",
                "has an empty list item; remove the extra comma"
            ))
        );
        assert_eq!(
            parse_cron("+5 * * * *"),
            Err(field_error(1, "minute", "+5", "is not a number"))
        );
        assert_eq!(
            parse_cron("-5 * * * *"),
            Err(field_error(
                1,
                "minute",
                "-5",
                "is not a number, range or step"
            ))
        );
        assert_eq!(
            parse_cron("0 0 * *"),
            Err(SpecError::CronFieldCount {
                cron: "0 0 * *".to_string(),
                found: 4
            })
        );
        assert_eq!(
            parse_cron("@reboot"),
            Err(SpecError::CronUnknownMacro {
                name: "@reboot".to_string()
            })
        );
        let long = format!("0 0 * * {}", "1,".repeat(200) + "1");
        assert_eq!(
            parse_cron(&long),
            Err(SpecError::CronTooLong { bytes: long.len() })
        );
    }

    #[test]
    fn parse_refuses_unknown_time_zones() {
        assert_eq!(
            ScheduleSpec::parse(r#"{"cron": "@daily", "time_zone": "Mars/Olympus_Mons"}"#),
            Err(SpecError::UnknownTimeZone {
                name: "Mars/Olympus_Mons".to_string()
            })
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"cron": "@daily", "time_zone": "Etc/Unknown"}"#),
            Err(SpecError::UnknownTimeZone {
                name: "Etc/Unknown".to_string()
            })
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"cron": "@daily", "time_zone": ""}"#),
            Err(SpecError::UnknownTimeZone {
                name: String::new()
            })
        );
        let long_name = "A".repeat(TIME_ZONE_BYTES_MAX + 1);
        assert_eq!(
            ScheduleSpec::parse(
                &serde_json::json!({ "cron": "@daily", "time_zone": long_name }).to_string()
            ),
            Err(SpecError::TimeZoneTooLong {
                bytes: TIME_ZONE_BYTES_MAX + 1
            })
        );
    }

    #[test]
    fn parse_refuses_crons_that_never_or_too_rarely_match() {
        assert_eq!(
            ScheduleSpec::parse(r#"{"cron": "0 0 30 2 *"}"#),
            Err(SpecError::CronNeverMatches {
                cron: "0 0 30 2 *".to_string()
            })
        );
        assert_eq!(
            ScheduleSpec::parse(r#"{"cron": "0 0 31 4,6,9,11 *"}"#),
            Err(SpecError::CronNeverMatches {
                cron: "0 0 31 4,6,9,11 *".to_string()
            })
        );
        // February 29 that is also a Sunday ("*/7" is 0 and 7, both
        // Sunday; starred, so both day fields must match): 28 years apart.
        let rare = ScheduleSpec::parse(r#"{"cron": "0 0 29 2 */7"}"#);
        assert!(
            matches!(rare, Err(SpecError::CronTooRare { years, .. }) if years >= 8),
            "{rare:?}"
        );
        // With a restricted day-of-week the OR rule makes it weekly.
        assert!(ScheduleSpec::parse(r#"{"cron": "0 0 30 2 SUN"}"#).is_ok());
        // And an unvalidated impossible spec simply has no next time.
        let impossible = ScheduleSpec {
            every_ms: None,
            offset_ms: None,
            cron: Some("0 0 30 2 *".to_string()),
            time_zone: None,
            jitter_ms: None,
        };
        assert_eq!(impossible.next_after(0), None);
    }

    #[test]
    fn an_invalid_spec_has_no_times() {
        let both = ScheduleSpec {
            every_ms: Some(60_000),
            offset_ms: None,
            cron: Some("@daily".to_string()),
            time_zone: None,
            jitter_ms: None,
        };
        assert_eq!(both.next_after(0), None);
        assert_eq!(both.nominal_times(0, 1_000_000, 10), Vec::<i64>::new());
    }

    #[test]
    fn describe_is_short_and_readable() {
        assert_eq!(every(60_000, None).describe(), "every 60s");
        assert_eq!(
            every(1_500, Some(500)).describe(),
            "every 1500ms, offset 500ms"
        );
        let spec = ScheduleSpec::parse(
            r#"{"cron": "*/15 9-17 * * MON-FRI", "time_zone": "Europe/Berlin"}"#,
        )
        .expect("valid");
        assert_eq!(
            spec.describe(),
            "cron */15 9-17 * * MON-FRI (Europe/Berlin)"
        );
        let jittered =
            ScheduleSpec::parse(r#"{"cron": "@daily", "jitter_ms": 30000}"#).expect("valid");
        assert_eq!(jittered.describe(), "cron @daily (UTC), jitter up to 30s");
    }

    /// Every time of `cron_text` from local minutes in `[from, from +
    /// minutes)` found the slow way: each local minute checked field by
    /// field and resolved with jiff's own "compatible", duplicates removed.
    fn brute_force_times(
        cron_text: &str,
        zone: &TimeZone,
        from: DateTime,
        minutes: i64,
    ) -> Vec<i64> {
        let cron = CronExpression::parse(cron_text).expect("valid cron");
        let mut times = Vec::new();
        let mut local = from;
        for _ in 0..minutes {
            let field = |value: i8| u32::try_from(value).expect("positive field");
            let weekday = u32::try_from(local.weekday().to_sunday_zero_offset()).expect("weekday");
            if has_bit(cron.minutes, field(local.minute()))
                && has_bit(cron.hours, field(local.hour()))
                && has_bit(cron.months, field(local.month()))
                && cron.day_matches(field(local.day()), weekday)
            {
                let instant = zone
                    .to_ambiguous_timestamp(local)
                    .compatible()
                    .expect("in range");
                times.push(instant.as_millisecond());
            }
            local = local
                .checked_add(jiff::SignedDuration::from_mins(1))
                .expect("in range");
        }
        times.sort_unstable();
        times.dedup();
        times
    }

    #[test]
    fn matches_a_brute_force_reference_around_transitions() {
        let windows = [
            ("UTC", "2028-02-27T00:00"),
            ("Europe/Berlin", "2026-03-28T00:00"),
            ("Europe/Berlin", "2026-10-24T00:00"),
            ("America/New_York", "2026-03-07T00:00"),
            ("America/New_York", "2026-10-31T00:00"),
            // Half-hour gap and fold.
            ("Australia/Lord_Howe", "2026-10-03T00:00"),
            ("Australia/Lord_Howe", "2026-04-04T00:00"),
            ("America/St_Johns", "2026-03-07T00:00"),
            // Samoa skipped all of 2011-12-30: a 24-hour gap.
            ("Pacific/Apia", "2011-12-28T00:00"),
        ];
        let crons = [
            "* * * * *",
            "*/7 * * * *",
            "0 * * * *",
            "15,35 2 * * *",
            "30 2 * * *",
            "45 1-3 * * *",
            "0 0 * * *",
            "59 23 * * *",
            "10,50 0-4 * * SAT,SUN",
            "0 12 29,30 * *",
            "20 0-23/5 * * 1-5",
        ];
        const DAYS: i64 = 4;
        const MARGIN_DAYS: i64 = 2;
        for (zone_name, start) in windows {
            let zone = TimeZone::get(zone_name).expect("zone in tzdb");
            let start: DateTime = start.parse().expect("civil datetime");
            let margin = jiff::Span::new().days(MARGIN_DAYS);
            let from = start.checked_sub(margin).expect("in range");
            let end = start
                .checked_add(jiff::Span::new().days(DAYS))
                .expect("in range");
            let after_ms = zone.to_timestamp(start).expect("in range").as_millisecond();
            let until_ms = zone.to_timestamp(end).expect("in range").as_millisecond();
            for cron_text in crons {
                let spec = cron_in(cron_text, Some(zone_name));
                let reference: Vec<i64> = brute_force_times(
                    cron_text,
                    &zone,
                    from,
                    (DAYS + 2 * MARGIN_DAYS) * MINUTES_PER_DAY,
                )
                .into_iter()
                .filter(|time| *time > after_ms && *time <= until_ms)
                .collect();
                let context = format!("{cron_text} in {zone_name} from {start}");
                assert_eq!(
                    spec.nominal_times(after_ms, until_ms, usize::MAX),
                    reference,
                    "{context}"
                );
                // next_after from arbitrary points, and on and around some
                // of the times (all of them would make the test slow).
                let mut probes: Vec<i64> = (after_ms..until_ms).step_by(47 * 60_000 + 7).collect();
                for time in reference.iter().step_by(11) {
                    probes.extend([time - 1, *time, time + 1]);
                }
                for probe in probes {
                    let Some(expected) = reference.iter().copied().find(|time| *time > probe)
                    else {
                        continue;
                    };
                    assert_eq!(
                        spec.next_after(probe),
                        Some(expected),
                        "{context}, after {}",
                        rfc3339(probe)
                    );
                }
            }
        }
    }

    #[test]
    fn calendar_arithmetic_round_trips() {
        for days in (-4_000_000..4_000_000).step_by(997) {
            let (year, month, day) = civil_from_days(days).expect("in range");
            assert_eq!(days_from_civil(year, month, day), days);
            assert!(day >= 1 && day <= days_in_month(year, month));
        }
        assert_eq!(weekday(2026, 1, 1), 4);
        assert_eq!(weekday(2000, 2, 29), 2);
    }
}
