//! `reprise schedule …`: a server's schedules (see `api/schedules`).

use std::process::ExitCode;

use serde_json::Value;
use serde_json::value::RawValue;

use super::EXIT_BAD_INPUT;
use super::client::{ServerArgs, call, print_table, run_command, segment};
use super::output::Format;
use super::timeline::utc_time;

/// What to do with schedules.
#[derive(clap::Subcommand)]
pub enum ScheduleAction {
    /// Start WORKFLOW_TYPE every --every-ms, or by --cron in --time-zone.
    /// The start at nominal time t is workflow `ID@t`.
    Create {
        id: String,
        /// The workflow type to start.
        #[arg(long = "type")]
        workflow_type: String,
        #[arg(long, default_value = "null")]
        input: String,
        /// An interval in ms (at least 1000).
        #[arg(long, value_name = "MS", conflicts_with = "cron")]
        every_ms: Option<u64>,
        /// A 5-field cron expression, like "0 9 * * MON-FRI".
        #[arg(long, required_unless_present = "every_ms")]
        cron: Option<String>,
        /// The IANA time zone the cron fields are in (default UTC).
        #[arg(long, requires = "cron")]
        time_zone: Option<String>,
        /// Each start waits a fixed pseudo-random 0..MS after its nominal time.
        #[arg(long, value_name = "MS")]
        jitter_ms: Option<u64>,
        /// What a due start does while the previous one still runs.
        #[arg(long, value_enum, default_value = "skip")]
        overlap: Overlap,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// The tenant's schedules and their next runs.
    List,
    Show {
        id: String,
    },
    /// No start comes due until it is resumed.
    Pause {
        id: String,
    },
    /// Starts come due again; those that fell in the pause are skipped.
    Resume {
        id: String,
    },
    /// Start every nominal time in (--from, --until]: RFC 3339 times.
    Backfill {
        id: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        until: String,
    },
    Delete {
        id: String,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum Overlap {
    Skip,
    BufferOne,
    AllowAll,
    CancelPrevious,
}

impl Overlap {
    fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::AllowAll => "allow_all",
            Overlap::CancelPrevious => "cancel_previous",
        }
    }
}

/// A time the user typed, in ms since the epoch.
fn parse_time(flag: &str, text: &str) -> Result<i64, ExitCode> {
    text.parse::<jiff::Timestamp>()
        .map(|at| at.as_millisecond())
        .map_err(|error| {
            eprintln!(
                "error: {flag} {text} is not an RFC 3339 time like 2026-12-01T09:00:00Z ({error})"
            );
            ExitCode::from(EXIT_BAD_INPUT)
        })
}

pub async fn run(action: ScheduleAction, format: Format, server: &ServerArgs) -> ExitCode {
    let (method, path, body) = match &action {
        ScheduleAction::Create {
            id,
            workflow_type,
            input,
            every_ms,
            cron,
            time_zone,
            jitter_ms,
            overlap,
            paused,
        } => {
            let input: Box<RawValue> = match RawValue::from_string(input.clone()) {
                Ok(input) => input,
                Err(error) => {
                    eprintln!("error: --input is not valid JSON ({error})");
                    return ExitCode::from(EXIT_BAD_INPUT);
                }
            };
            let mut spec = serde_json::Map::new();
            if let Some(every_ms) = every_ms {
                spec.insert("every_ms".into(), (*every_ms).into());
            }
            if let Some(cron) = cron {
                spec.insert("cron".into(), cron.clone().into());
            }
            if let Some(time_zone) = time_zone {
                spec.insert("time_zone".into(), time_zone.clone().into());
            }
            if let Some(jitter_ms) = jitter_ms {
                spec.insert("jitter_ms".into(), (*jitter_ms).into());
            }
            #[derive(serde::Serialize)]
            struct CreateBody<'a> {
                schedule_id: &'a str,
                workflow_type: &'a str,
                input: Box<RawValue>,
                spec: serde_json::Map<String, Value>,
                overlap: &'static str,
                paused: bool,
            }
            let body = CreateBody {
                schedule_id: id,
                workflow_type,
                input,
                spec,
                overlap: overlap.as_str(),
                paused: *paused,
            };
            let body = serde_json::to_vec(&body).expect("strings and raw JSON always serialize");
            ("POST", "/v1/schedules".to_string(), body)
        }
        ScheduleAction::List => ("GET", "/v1/schedules".to_string(), Vec::new()),
        ScheduleAction::Show { id } => {
            ("GET", format!("/v1/schedules/{}", segment(id)), Vec::new())
        }
        ScheduleAction::Pause { id } => (
            "POST",
            format!("/v1/schedules/{}/pause", segment(id)),
            Vec::new(),
        ),
        ScheduleAction::Resume { id } => (
            "POST",
            format!("/v1/schedules/{}/resume", segment(id)),
            Vec::new(),
        ),
        ScheduleAction::Backfill { id, from, until } => {
            let (from_ms, until_ms) =
                match (parse_time("--from", from), parse_time("--until", until)) {
                    (Ok(from_ms), Ok(until_ms)) => (from_ms, until_ms),
                    (Err(code), _) | (_, Err(code)) => return code,
                };
            let body = serde_json::json!({ "from_ms": from_ms, "until_ms": until_ms });
            (
                "POST",
                format!("/v1/schedules/{}/backfill", segment(id)),
                body.to_string().into_bytes(),
            )
        }
        ScheduleAction::Delete { id } => (
            "DELETE",
            format!("/v1/schedules/{}", segment(id)),
            Vec::new(),
        ),
    };
    run_command(async {
        let answer = call(server, method, &path, body).await?;
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        if format == Format::Json {
            println!("{}", answer.text);
            return Ok(ExitCode::SUCCESS);
        }
        let body: Value = answer.parse()?;
        match &action {
            ScheduleAction::List => print_schedules(body.as_array().map_or(&[][..], Vec::as_slice)),
            ScheduleAction::Backfill { id, .. } => {
                let count = |field: &str| body[field].as_array().map_or(0, Vec::len);
                println!(
                    "backfilled {id}: {} started, {} existed already",
                    count("started"),
                    count("existing")
                );
            }
            ScheduleAction::Delete { id } => println!("schedule {id} deleted"),
            _ => print_schedules(std::slice::from_ref(&body)),
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

fn print_schedules(schedules: &[Value]) {
    let text = |value: &Value| value.as_str().unwrap_or("").to_string();
    let rows: Vec<[String; 7]> = schedules
        .iter()
        .map(|schedule| {
            [
                text(&schedule["schedule_id"]),
                text(&schedule["workflow_type"]),
                text(&schedule["description"]),
                text(&schedule["overlap"]),
                if schedule["paused"] == Value::Bool(true) {
                    "paused".to_string()
                } else {
                    schedule["next_run_ms"]
                        .as_i64()
                        .map_or_else(|| "-".to_string(), utc_time)
                },
                schedule["started"].to_string(),
                schedule["skipped"].to_string(),
            ]
        })
        .collect();
    print_table(
        [
            "SCHEDULE", "TYPE", "WHEN", "OVERLAP", "NEXT RUN", "STARTED", "SKIPPED",
        ],
        &rows,
    );
}
