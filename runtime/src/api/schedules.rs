//! Schedules over HTTP, and the scheduler that carries them out.
//!
//! ```text
//! POST   /v1/schedules                    {"schedule_id", "workflow_type", "input"?, "spec", "overlap"?, "paused"?} → 201
//! GET    /v1/schedules                    the tenant's schedules, with their next run
//! GET    /v1/schedules/{id}
//! DELETE /v1/schedules/{id}
//! POST   /v1/schedules/{id}/pause         → the schedule
//! POST   /v1/schedules/{id}/resume        → the schedule (what fell in the pause is skipped)
//! POST   /v1/schedules/{id}/backfill      {"from_ms", "until_ms"} → the starts of every nominal time in (from, until]
//! ```
//!
//! `spec` is `{"every_ms", "offset_ms"?}` or `{"cron", "time_zone"?}`,
//! either with `"jitter_ms"?` (see `schedule::ScheduleSpec`). The start
//! at nominal time `t` is workflow `<schedule id>@<t in RFC 3339>`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::auth::Tenant;
use super::executions::{raw_text, run_error, store_error};
use super::{Server, error};
use crate::runtime::{RunError, StartOptions, check_json_payload, raw_json};
use crate::schedule::{
    Action, BACKFILL_STARTS_MAX, CATCH_UP_PER_PASS_MAX, OverlapPolicy, SCHEDULE_ID_BYTES_MAX,
    Schedule, ScheduleSpec, workflow_id,
};
use crate::store::{ExecutionStatus, MessageKind, ScheduleWrite, StoreError, StoredSchedule};

/// How often the scheduler looks for due starts (interval schedules are at
/// least 1 s apart, so a start is at most this late).
const SCHEDULER_TICK: Duration = Duration::from_millis(200);
/// The role ([`crate::store::Store::lead`]) of the node that schedules.
const SCHEDULER_ROLE: &str = "scheduler";
/// Ticks between two asks whether this node schedules.
const LEAD_CHECK_TICKS: u64 = 5;
/// How often a pause or resume re-reads a schedule the scheduler changed
/// meanwhile before giving up.
const WRITE_ATTEMPTS_MAX: usize = 8;

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/v1/schedules", post(create).get(list))
        .route("/v1/schedules/{id}", get(show).delete(delete))
        .route("/v1/schedules/{id}/pause", post(pause))
        .route("/v1/schedules/{id}/resume", post(resume))
        .route("/v1/schedules/{id}/backfill", post(backfill))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    schedule_id: String,
    workflow_type: String,
    #[serde(default)]
    input: Option<Box<RawValue>>,
    spec: Box<RawValue>,
    #[serde(default)]
    overlap: OverlapPolicy,
    #[serde(default)]
    paused: bool,
}

/// A schedule as the API shows it.
#[derive(Serialize)]
struct ScheduleView<'a> {
    schedule_id: &'a str,
    workflow_type: &'a str,
    input: Box<RawValue>,
    spec: &'a ScheduleSpec,
    description: String,
    overlap: OverlapPolicy,
    paused: bool,
    /// When the next start is due (nominal time plus jitter), ms.
    next_run_ms: Option<i64>,
    last_workflow_id: Option<&'a str>,
    buffered_ms: Option<i64>,
    started: u64,
    skipped: u64,
    last_error: Option<&'a str>,
}

fn view<'a>(schedule_id: &'a str, schedule: &'a Schedule) -> ScheduleView<'a> {
    ScheduleView {
        schedule_id,
        workflow_type: &schedule.workflow_type,
        input: raw_json(&schedule.input),
        spec: &schedule.spec,
        description: schedule.spec.describe(),
        overlap: schedule.overlap,
        paused: schedule.paused,
        next_run_ms: schedule.next_due_ms(schedule_id),
        last_workflow_id: schedule.last_workflow_id.as_deref(),
        buffered_ms: schedule.buffered_ms,
        started: schedule.started,
        skipped: schedule.skipped,
        last_error: schedule.last_error.as_deref(),
    }
}

/// The 500 for a stored schedule this server cannot read.
fn unreadable(stored: &StoredSchedule, problem: serde_json::Error) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "schedule `{}` is stored in a form this server cannot read: {problem}",
            stored.schedule_id
        ),
    )
}

fn encode(schedule: &Schedule) -> String {
    serde_json::to_string(schedule).unwrap_or_else(|_| unreachable!("a schedule always encodes"))
}

async fn create(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Json(request): Json<CreateRequest>,
) -> Response {
    let id = &request.schedule_id;
    if id.is_empty()
        || id.len() > SCHEDULE_ID_BYTES_MAX
        || id.chars().any(|c| c.is_control() || c == '@' || c == '/')
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "a schedule_id is 1 to {SCHEDULE_ID_BYTES_MAX} bytes without control characters, `@` or `/`; got {} bytes",
                id.len()
            ),
        );
    }
    let spec = match ScheduleSpec::parse(request.spec.get()) {
        Ok(spec) => spec,
        Err(problem) => {
            return error(StatusCode::BAD_REQUEST, format!("invalid spec: {problem}"));
        }
    };
    let input = raw_text(request.input);
    if let Err(problem) = check_json_payload("input", &input, tenant.limits.payload_bytes_max) {
        return run_error(problem.into());
    }
    match server
        .runtime()
        .resolve_type(&tenant.name, &request.workflow_type)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            return run_error(RunError::UnknownWorkflowType {
                name: request.workflow_type,
            });
        }
        Err(problem) => return run_error(problem),
    }
    let schedule = Schedule {
        workflow_type: request.workflow_type,
        input,
        spec,
        overlap: request.overlap,
        paused: request.paused,
        watermark_ms: crate::clock::now_ms() as i64,
        buffered_ms: None,
        last_workflow_id: None,
        started: 0,
        skipped: 0,
        last_error: None,
    };
    let written = server
        .store()
        .create_schedule(
            &tenant.name,
            id,
            &encode(&schedule),
            tenant.limits.schedules_max,
        )
        .await;
    match written {
        Ok(ScheduleWrite::Written) => {
            (StatusCode::CREATED, Json(view(id, &schedule))).into_response()
        }
        Ok(ScheduleWrite::Conflict) => error(
            StatusCode::CONFLICT,
            format!("schedule `{id}` exists; delete it first to replace it"),
        ),
        Ok(ScheduleWrite::LimitReached) => error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the tenant has {} schedules, its limit (schedules_max); delete one first",
                tenant.limits.schedules_max
            ),
        ),
        Err(problem) => store_error(problem),
    }
}

async fn list(State(server): State<Arc<Server>>, tenant: Tenant) -> Response {
    let stored = match server.store().schedules(Some(&tenant.name)).await {
        Ok(stored) => stored,
        Err(problem) => return store_error(problem),
    };
    let mut schedules = Vec::with_capacity(stored.len());
    for one in &stored {
        match serde_json::from_str::<Schedule>(&one.document) {
            Ok(schedule) => schedules.push((one.schedule_id.as_str(), schedule)),
            Err(problem) => return unreadable(one, problem),
        }
    }
    let views: Vec<ScheduleView> = schedules
        .iter()
        .map(|(id, schedule)| view(id, schedule))
        .collect();
    Json(views).into_response()
}

/// The tenant's schedule `id` as stored and as read, or the answer to
/// give (404, 500).
async fn find(
    server: &Server,
    tenant: &str,
    id: &str,
) -> Result<(StoredSchedule, Schedule), Response> {
    let stored = server
        .store()
        .schedules(Some(tenant))
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|schedule| schedule.schedule_id == id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no schedule `{id}`")))?;
    match serde_json::from_str(&stored.document) {
        Ok(schedule) => Ok((stored, schedule)),
        Err(problem) => Err(unreadable(&stored, problem)),
    }
}

async fn show(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Response {
    match find(&server, &tenant.name, &id).await {
        Ok((_, schedule)) => Json(view(&id, &schedule)).into_response(),
        Err(response) => response,
    }
}

async fn delete(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Response {
    match server.store().delete_schedule(&tenant.name, &id).await {
        Ok(ScheduleWrite::Written) => Json(serde_json::json!({ "deleted": id })).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, format!("no schedule `{id}`")),
        Err(problem) => store_error(problem),
    }
}

async fn pause(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Response {
    change(&server, &tenant.name, &id, |schedule| {
        schedule.paused = true
    })
    .await
}

async fn resume(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Response {
    change(&server, &tenant.name, &id, |schedule| {
        if schedule.paused {
            // What fell in the pause is not caught up on.
            schedule.paused = false;
            schedule.watermark_ms = schedule.watermark_ms.max(crate::clock::now_ms() as i64);
        }
    })
    .await
}

/// Applies `edit` to schedule `id` and writes it back, reading it again if
/// the scheduler wrote it meanwhile.
async fn change(server: &Server, tenant: &str, id: &str, edit: impl Fn(&mut Schedule)) -> Response {
    for _ in 0..WRITE_ATTEMPTS_MAX {
        let (stored, mut schedule) = match find(server, tenant, id).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        edit(&mut schedule);
        match server
            .store()
            .replace_schedule(&stored, &encode(&schedule))
            .await
        {
            Ok(ScheduleWrite::Written) => return Json(view(id, &schedule)).into_response(),
            Ok(_) => continue,
            Err(problem) => return store_error(problem),
        }
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("schedule `{id}` kept changing while this request wrote it; try again"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillRequest {
    from_ms: i64,
    until_ms: i64,
}

#[derive(Serialize)]
struct BackfillView {
    /// Workflow ids started now.
    started: Vec<String>,
    /// Workflow ids that existed already (started before, by the schedule
    /// or an earlier backfill).
    existing: Vec<String>,
}

async fn backfill(
    State(server): State<Arc<Server>>,
    tenant: Tenant,
    Path(id): Path<String>,
    Json(request): Json<BackfillRequest>,
) -> Response {
    let (_, schedule) = match find(&server, &tenant.name, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if request.until_ms <= request.from_ms {
        return error(
            StatusCode::BAD_REQUEST,
            "a backfill needs from_ms < until_ms (the range is (from_ms, until_ms])".to_string(),
        );
    }
    let times =
        schedule
            .spec
            .nominal_times(request.from_ms, request.until_ms, BACKFILL_STARTS_MAX + 1);
    if times.len() > BACKFILL_STARTS_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the range holds more than {BACKFILL_STARTS_MAX} start times; backfill it in parts"
            ),
        );
    }
    let mut answer = BackfillView {
        started: Vec::new(),
        existing: Vec::new(),
    };
    for nominal_ms in times {
        match start(&server, &tenant.name, &id, &schedule, nominal_ms).await {
            Ok((workflow_id, true)) => answer.started.push(workflow_id),
            Ok((workflow_id, false)) => answer.existing.push(workflow_id),
            Err(problem) => return run_error(problem),
        }
    }
    Json(answer).into_response()
}

/// Starts the schedule's workflow for `nominal_ms` (idempotent by the
/// derived workflow id) and drives it: its id, and whether it is new.
async fn start(
    server: &Arc<Server>,
    tenant: &str,
    schedule_id: &str,
    schedule: &Schedule,
    nominal_ms: i64,
) -> Result<(String, bool), RunError> {
    let workflow_id = workflow_id(schedule_id, nominal_ms);
    let (_, created) = server
        .start_and_drive(
            tenant,
            &schedule.workflow_type,
            Some(workflow_id.clone()),
            &schedule.input,
            StartOptions::default(),
        )
        .await?;
    Ok((workflow_id, created))
}

/// Runs the scheduler until the runtime shuts down: every tick, each due
/// start of each schedule of every tenant.
pub fn spawn_scheduler(server: Arc<Server>) {
    tokio::spawn(async move {
        let mut shutdown = server.runtime().shutdown_requested();
        let mut leads = false;
        for tick in 0u64.. {
            // One node schedules for all: starts are idempotent anyway,
            // this spares the others the work. Asked every few ticks, as
            // asking is a write.
            if tick % LEAD_CHECK_TICKS == 0 {
                leads = server
                    .store()
                    .lead(SCHEDULER_ROLE)
                    .await
                    .unwrap_or_else(|problem| {
                        tracing::warn!(%problem, "could not learn which node schedules");
                        false
                    });
            }
            if leads && let Err(problem) = scheduler_pass(&server).await {
                tracing::warn!(%problem, "a scheduler pass failed; the next one tries again");
            }
            tokio::select! {
                () = tokio::time::sleep(SCHEDULER_TICK) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    });
}

async fn scheduler_pass(server: &Arc<Server>) -> Result<(), StoreError> {
    let now_ms = crate::clock::now_ms() as i64;
    for stored in server.store().schedules(None).await? {
        run_due_starts(server, stored, now_ms).await?;
    }
    Ok(())
}

/// Carries out what is due for one schedule, writing it back after each
/// step (so a crash repeats at most the step in progress, which is
/// idempotent).
async fn run_due_starts(
    server: &Arc<Server>,
    mut stored: StoredSchedule,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Ok(mut schedule) = serde_json::from_str::<Schedule>(&stored.document) else {
        tracing::warn!(schedule_id = %stored.schedule_id, "a schedule this server cannot read; skipped");
        return Ok(());
    };
    let store = server.store();
    let metrics = &server.runtime().telemetry().metrics;
    for _ in 0..CATCH_UP_PER_PASS_MAX {
        // Nothing is due even if the previous start has ended: no need to
        // look it up (every tick, for every schedule).
        if schedule
            .next_action(&stored.schedule_id, now_ms, false)
            .is_none()
        {
            return Ok(());
        }
        let previous_running = match &schedule.last_workflow_id {
            Some(previous) => store
                .execution(&stored.tenant, previous)
                .await?
                .is_some_and(|record| record.status == ExecutionStatus::Running),
            None => false,
        };
        let Some(action) = schedule.next_action(&stored.schedule_id, now_ms, previous_running)
        else {
            return Ok(());
        };
        let failure = match &action {
            Action::Skip { .. } => None,
            Action::Buffer { .. } => None,
            Action::Start { nominal_ms }
            | Action::StartBuffered { nominal_ms }
            | Action::CancelPreviousAndStart { nominal_ms, .. } => {
                if let Action::CancelPreviousAndStart { previous, .. } = &action
                    && let Some(record) = store.execution(&stored.tenant, previous).await?
                {
                    store
                        .post_message(record.id, MessageKind::Cancel, "", "null", "cancel")
                        .await?;
                }
                match start(
                    server,
                    &stored.tenant,
                    &stored.schedule_id,
                    &schedule,
                    *nominal_ms,
                )
                .await
                {
                    Ok(_) => None,
                    // At the tenant's running limit: due still, tried again
                    // at the next pass.
                    Err(RunError::Limit(_)) => return Ok(()),
                    Err(problem) => Some(problem.to_string()),
                }
            }
        };
        let outcome = match (&action, &failure) {
            (_, Some(_)) => "failed",
            (Action::Skip { .. }, None) => "skipped",
            (Action::Buffer { .. }, None) => "buffered",
            _ => "started",
        };
        metrics.schedule_action(&stored.tenant, outcome);
        schedule.record(&stored.schedule_id, &action, failure);
        match store.replace_schedule(&stored, &encode(&schedule)).await? {
            ScheduleWrite::Written => stored.version += 1,
            // Paused, resumed or deleted meanwhile: the next pass reads it again.
            _ => return Ok(()),
        }
    }
    Ok(())
}
