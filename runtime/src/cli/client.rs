//! Commands that talk to a `reprise serve` over its HTTP API: `deploy`,
//! `start`, `result`, `status`, `list`, and `history`, `signal`, `cancel`,
//! `terminate` when a server is named.
//!
//! Output is a readable table or summary by default, the server's JSON with
//! `--json`. Exit codes: 0 success, 1 the workflow failed, 2 the request
//! was refused (unknown id, bad input, a limit), 4 the server failed or
//! could not be reached.

use std::process::ExitCode;

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::output::{Format, pretty_json};
use super::timeline::{print_history, print_status, utc_time};
use super::{Delivered, EXIT_BAD_INPUT, EXIT_HOST_ERROR, EXIT_WORKFLOW_FAILED, exit_for_status};
use crate::activity::outbound::{self, OutboundClient};
use crate::api::{NEXT_PAGE_HEADER, RESULT_WAIT_MAX_MS};
use crate::journal::RecordedEvent;
use crate::store::{ExecutionRecord, ExecutionStatus, HistoryExport};

/// Where a server is and the tenant key to use.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The server, e.g. http://127.0.0.1:7878.
    #[arg(long, env = "REPRISE_SERVER", default_value = "http://127.0.0.1:7878")]
    pub server: String,
    /// The tenant's API key (`reprise tenant create` prints it).
    #[arg(long, env = "REPRISE_API_KEY")]
    pub api_key: String,
}

/// For commands that work on a local database or, given `--server`, on a
/// server.
#[derive(clap::Args, Clone)]
pub struct RemoteArgs {
    /// Ask this server instead of the local database.
    #[arg(long, env = "REPRISE_SERVER")]
    pub server: Option<String>,
    /// The tenant's API key, with --server.
    #[arg(long, env = "REPRISE_API_KEY")]
    pub api_key: Option<String>,
}

impl RemoteArgs {
    /// The server to ask, if one is named.
    pub fn server(&self) -> anyhow::Result<Option<ServerArgs>> {
        match (&self.server, &self.api_key) {
            (None, _) => Ok(None),
            (Some(server), Some(api_key)) => Ok(Some(ServerArgs {
                server: server.clone(),
                api_key: api_key.clone(),
            })),
            (Some(server), None) => anyhow::bail!(
                "--server {server} needs an API key: pass --api-key or set REPRISE_API_KEY"
            ),
        }
    }
}

/// A server's answer: its status and JSON body, as sent (`text`, what
/// `--json` prints and payloads are read from) and parsed (`body`, for
/// fields that are not payloads).
pub struct Answer {
    status: u16,
    pub(super) text: String,
    body: Value,
    /// A list's cursor of the next page, when there is one.
    next_page: Option<String>,
}

impl Answer {
    pub(super) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`, payloads kept as sent when `T` holds them as
    /// [`RawValue`]s.
    pub(super) fn parse<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_str(&self.text)
            .context("the server sent an answer this client cannot read")
    }

    /// The exit code for a refusal, after printing the server's reason.
    pub(super) fn refused(&self) -> ExitCode {
        eprintln!("error: {self}");
        ExitCode::from(if self.status >= 500 {
            EXIT_HOST_ERROR
        } else {
            EXIT_BAD_INPUT
        })
    }
}

/// One request to a server.
pub(super) async fn call(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let uri: http::Uri = server
        .server
        .parse()
        .with_context(|| format!("--server {} is not a URL", server.server))?;
    let authority = uri
        .authority()
        .with_context(|| format!("--server {} has no host", server.server))?;
    let target = format!("{}://{authority}{path}", uri.scheme_str().unwrap_or("http"));
    let request = http::Request::builder()
        .method(method)
        .uri(target)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", server.api_key),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(outbound::full_body(body))?;
    let response = OutboundClient::for_this_process()?
        .send(request)
        .await
        .with_context(|| format!("is `reprise serve` running at {}?", server.server))?;
    let status = response.status().as_u16();
    let next_page = response
        .headers()
        .get(NEXT_PAGE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let bytes = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        next_page,
    })
}

/// Runs a client command: a failure to reach the server is a host error.
pub(super) async fn run_command(
    command: impl Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    match command.await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_HOST_ERROR)
        }
    }
}

/// Percent-encodes a path segment (workflow ids may hold `/`).
pub(super) fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The order `deploy` lists imports in: what touches the world last.
const TREATMENTS: [&str; 9] = [
    "journaled",
    "fixed",
    "captured",
    "plumbing",
    "live",
    "granted-directory",
    "allowed-hosts",
    "denied",
    "other",
];

/// Unbinds workflow type `name`, or deletes module `name` (a digest).
pub async fn undeploy(name: &str, module: bool, format: Format, server: &ServerArgs) -> ExitCode {
    run_command(async {
        let path = if module {
            format!("/v1/modules/{}", segment(name))
        } else {
            format!("/v1/workflow-types/{}", segment(name))
        };
        let answer = call(server, "DELETE", &path, Vec::new()).await?;
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        if format == Format::Json {
            println!("{}", answer.text);
        } else if module {
            println!("deleted module {name}");
        } else {
            println!("unbound workflow type `{name}`; its running executions keep their module");
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

pub async fn delete_execution(id: &str, format: Format, server: &ServerArgs) -> ExitCode {
    run_command(async {
        let path = format!("/v1/executions/{}", segment(id));
        let mut answer = call(server, "DELETE", &path, Vec::new()).await?;
        // 202: partly deleted; the server asks for the same request again.
        while answer.status == 202 {
            answer = call(server, "DELETE", &path, Vec::new()).await?;
        }
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        if format == Format::Json {
            println!("{}", answer.text);
        } else {
            println!("deleted execution {id}");
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

pub async fn deploy(
    file: &std::path::Path,
    name: Option<String>,
    upgrade_running: bool,
    format: Format,
    server: &ServerArgs,
) -> ExitCode {
    run_command(async {
        let bytes =
            std::fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
        let size = bytes.len();
        let module = call(server, "POST", "/v1/modules", bytes).await?;
        if !module.is_success() {
            return Ok(module.refused());
        }
        let workflow_type = if module.body["kind"] == "workflow" {
            let name = name.unwrap_or_else(|| super::type_name(file));
            let bind =
                json!({ "digest": module.body["digest"], "upgrade_running": upgrade_running })
                    .to_string();
            let path = format!("/v1/workflow-types/{}", segment(&name));
            let bound = call(server, "PUT", &path, bind.into_bytes()).await?;
            if !bound.is_success() {
                return Ok(bound.refused());
            }
            Some((name, bound.body))
        } else {
            None
        };
        if format == Format::Json {
            println!("{}", module.text);
            return Ok(ExitCode::SUCCESS);
        }
        let digest = module.body["digest"].as_str().unwrap_or_default();
        let kind = module.body["kind"].as_str().unwrap_or_default();
        match &workflow_type {
            Some((name, bound)) => {
                println!(
                    "deployed {kind} module {digest} ({} KiB) as type `{name}`",
                    size.div_ceil(1024)
                );
                if upgrade_running {
                    println!(
                        "  running executions: {} upgraded, {} kept on their module",
                        bound["upgraded"], bound["kept"]
                    );
                    for kept in bound["upgrade"]["kept"].as_array().into_iter().flatten() {
                        println!(
                            "    {} kept: {}",
                            kept["workflow_id"].as_str().unwrap_or_default(),
                            kept["reason"].as_str().unwrap_or_default()
                        );
                    }
                }
            }
            None => println!(
                "deployed {kind} module {digest} ({} KiB)",
                size.div_ceil(1024)
            ),
        }
        let names = |value: &Value| -> String {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let activities = names(&module.body["activities"]);
        if !activities.is_empty() {
            println!("  {:<18} {activities}", "serves");
        }
        println!("  {:<18} {}", "exports", names(&module.body["exports"]));
        let by_treatment = &module.body["imports_by_treatment"];
        for treatment in TREATMENTS {
            let listed = names(&by_treatment[treatment]);
            if !listed.is_empty() {
                println!("  {:<18} {listed}", format!("imports {treatment}"));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// An execution as the API describes it, payloads as sent.
#[derive(serde::Deserialize)]
struct ExecutionView {
    workflow_id: String,
    run_id: String,
    workflow_type: String,
    module_digest: String,
    status: String,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    created_at_ms: i64,
    updated_at_ms: i64,
    #[serde(default)]
    search_attributes: Option<Box<RawValue>>,
}

impl ExecutionView {
    /// As the record the timeline and `replay --history` read.
    fn into_record(self) -> ExecutionRecord {
        ExecutionRecord {
            id: 0,
            tenant: String::new(),
            status: ExecutionStatus::parse(&self.status),
            workflow_id: self.workflow_id,
            run_id: self.run_id,
            workflow_type: self.workflow_type,
            module_digest: self.module_digest,
            result: self.result.map(|result| result.get().to_string()),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            search_attributes: self
                .search_attributes
                .map(|attributes| attributes.get().to_string()),
            owner_node: None,
        }
    }

    /// For a person: the id and state, then the result or error as
    /// recorded, indented.
    fn print(&self) {
        println!(
            "{} ({}, run {}) {}",
            self.workflow_id, self.workflow_type, self.run_id, self.status
        );
        if let Some(result) = &self.result {
            println!("{}", pretty_json(result.get()));
        }
    }
}

/// Prints an execution answer as `format` says; the exit code its status
/// gives.
fn print_execution(answer: &Answer, format: Format) -> anyhow::Result<ExitCode> {
    let view: ExecutionView = answer.parse()?;
    match format {
        Format::Json => println!("{}", answer.text),
        Format::Human => view.print(),
    }
    Ok(exit_for_status(ExecutionStatus::parse(&view.status)))
}

/// The timeouts `reprise start` asks for, in ms (see `StartOptions`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StartTimeouts {
    #[serde(
        rename = "execution_timeout_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub execution_ms: Option<u64>,
    #[serde(rename = "run_timeout_ms", skip_serializing_if = "Option::is_none")]
    pub run_ms: Option<u64>,
}

/// What `reprise start` sends besides the type, id and input.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StartExtras {
    #[serde(flatten)]
    pub timeouts: StartTimeouts,
    /// A JSON object, sent as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_attributes: Option<Box<RawValue>>,
}

pub async fn start(
    name: &str,
    input: &str,
    id: Option<String>,
    wait: bool,
    extras: StartExtras,
    format: Format,
    server: &ServerArgs,
) -> ExitCode {
    // Sent as given, byte for byte.
    let input: Box<RawValue> = match RawValue::from_string(input.to_string()) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("error: --input is not valid JSON ({error})");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    run_command(async {
        #[derive(serde::Serialize)]
        struct StartBody<'a> {
            workflow_type: &'a str,
            workflow_id: Option<String>,
            input: Box<RawValue>,
            wait_ms: u64,
            #[serde(flatten)]
            extras: StartExtras,
        }
        // With --wait, one request starts the execution and answers once it
        // has finished.
        let body = serde_json::to_vec(&StartBody {
            workflow_type: name,
            workflow_id: id,
            input,
            wait_ms: if wait { RESULT_WAIT_MAX_MS } else { 0 },
            extras,
        })?;
        let started = call(server, "POST", "/v1/executions", body).await?;
        if !started.is_success() {
            return Ok(started.refused());
        }
        if wait {
            return print_execution(&started, format);
        }
        let view: ExecutionView = started.parse()?;
        match format {
            Format::Json => println!("{}", started.text),
            // 200, not 201: the id was in use, and this is its execution.
            Format::Human if started.status == 200 => println!(
                "{} exists already ({}, run {}), {}; nothing new was started",
                view.workflow_id, view.workflow_type, view.run_id, view.status
            ),
            Format::Human => println!(
                "started {} ({}, run {}); `reprise result {} --wait` prints its result",
                view.workflow_id, view.workflow_type, view.run_id, view.workflow_id
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `args` as raw JSON, or the exit code of a usage error.
fn json_args(args: &str) -> Result<Box<RawValue>, ExitCode> {
    RawValue::from_string(args.to_string()).map_err(|error| {
        eprintln!(
            "error: --args is not valid JSON ({error}); pass a JSON value like '{{\"amount\": 5}}'"
        );
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

/// `reprise query`: prints the answer of the execution's query handler.
pub async fn query(
    id: &str,
    name: &str,
    args: &str,
    format: Format,
    server: &ServerArgs,
) -> ExitCode {
    let args = match json_args(args) {
        Ok(args) => args,
        Err(code) => return code,
    };
    #[derive(serde::Serialize)]
    struct QueryBody {
        args: Box<RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct QueryAnswer {
        result: Box<RawValue>,
    }
    let body = serde_json::to_vec(&QueryBody { args }).expect("raw JSON always serializes");
    run_command(async {
        let path = format!("/v1/executions/{}/queries/{}", segment(id), segment(name));
        let answer = call(server, "POST", &path, body).await?;
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        match format {
            Format::Json => println!("{}", answer.text),
            Format::Human => println!(
                "{}",
                pretty_json(answer.parse::<QueryAnswer>()?.result.get())
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// What `reprise update` sends besides its name and args.
pub struct UpdateOptions<'a> {
    pub update_id: Option<&'a str>,
    pub wait_ms: Option<u64>,
}

/// `reprise update`: sends an update and prints the workflow's answer:
/// exit 0 with its output, 1 with its error, 2 if rejected; an update not
/// answered in time prints its id (send it again to wait more).
pub async fn update(
    id: &str,
    name: &str,
    args: &str,
    options: UpdateOptions<'_>,
    format: Format,
    server: &ServerArgs,
) -> ExitCode {
    let args = match json_args(args) {
        Ok(args) => args,
        Err(code) => return code,
    };
    #[derive(serde::Serialize)]
    struct UpdateBody<'a> {
        args: Box<RawValue>,
        update_id: Option<&'a str>,
        wait_ms: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct UpdateAnswer {
        update_id: String,
        status: String,
        #[serde(default)]
        result: Option<Box<RawValue>>,
        #[serde(default)]
        error: Option<Value>,
    }
    let body = serde_json::to_vec(&UpdateBody {
        args,
        update_id: options.update_id,
        wait_ms: options.wait_ms,
    })
    .expect("strings and raw JSON always serialize");
    run_command(async {
        let path = format!("/v1/executions/{}/updates/{}", segment(id), segment(name));
        let answer = call(server, "POST", &path, body).await?;
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        let update: UpdateAnswer = answer.parse()?;
        if format == Format::Json {
            println!("{}", answer.text);
        }
        let code = match update.status.as_str() {
            "completed" => {
                if format == Format::Human
                    && let Some(result) = &update.result
                {
                    println!("{}", pretty_json(result.get()));
                }
                ExitCode::SUCCESS
            }
            "failed" => {
                if format == Format::Human {
                    let error = update.error.unwrap_or(Value::Null);
                    eprintln!(
                        "error: the workflow answered update `{name}` with {}: {}",
                        error["error_type"].as_str().unwrap_or("an error"),
                        error["message"].as_str().unwrap_or("")
                    );
                }
                ExitCode::from(EXIT_WORKFLOW_FAILED)
            }
            _ => {
                if format == Format::Human {
                    println!(
                        "update {} accepted; not answered yet (run the same command with --update-id {} to wait again)",
                        update.update_id, update.update_id
                    );
                }
                ExitCode::SUCCESS
            }
        };
        Ok(code)
    })
    .await
}

/// Prints the result (the output, or the error with exit code 1).
pub async fn result(id: &str, wait: bool, format: Format, server: &ServerArgs) -> ExitCode {
    run_command(async {
        let wait = if wait {
            format!("?wait_ms={RESULT_WAIT_MAX_MS}")
        } else {
            String::new()
        };
        let answer = call(
            server,
            "GET",
            &format!("/v1/executions/{}{wait}", segment(id)),
            Vec::new(),
        )
        .await?;
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        print_execution(&answer, format)
    })
    .await
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.body["error"].as_str().unwrap_or("unexpected answer");
        write!(f, "the server answered {}: {message}", self.status)
    }
}

/// The whole history, page by page.
pub async fn fetch_history(
    server: &ServerArgs,
    id: &str,
) -> anyhow::Result<Result<HistoryExport, Answer>> {
    #[derive(serde::Deserialize)]
    struct HistoryPage {
        execution: ExecutionView,
        events: Vec<RecordedEvent>,
        next_after: Option<u64>,
    }
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut after = 0u64;
    loop {
        let path = format!("/v1/executions/{}/history?after={after}", segment(id));
        let answer = call(server, "GET", &path, Vec::new()).await?;
        if !answer.is_success() {
            return Ok(Err(answer));
        }
        let page: HistoryPage = answer.parse()?;
        events.extend(page.events);
        match page.next_after {
            Some(next) if next > after => after = next,
            _ => {
                return Ok(Ok(HistoryExport {
                    execution: page.execution.into_record(),
                    events,
                }));
            }
        }
    }
}

pub async fn history(id: &str, format: Format, server: &ServerArgs) -> ExitCode {
    run_command(async {
        let export = match fetch_history(server, id).await? {
            Ok(export) => export,
            Err(refusal) => return Ok(refusal.refused()),
        };
        print_history(&export, format)?;
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// A summary: state, what it waits for, attempts so far, the last error.
pub async fn status(id: &str, format: Format, server: &ServerArgs) -> ExitCode {
    run_command(async {
        let export = match fetch_history(server, id).await? {
            Ok(export) => export,
            Err(refusal) => return Ok(refusal.refused()),
        };
        print_status(&export.execution, &export.events, format);
        Ok(exit_for_status(export.execution.status))
    })
    .await
}

/// Filters of `reprise list`.
#[derive(clap::Args, Clone)]
pub struct ListFilters {
    /// Only executions in this state: running, completed, failed, cancelled, terminated.
    #[arg(long)]
    pub status: Option<String>,
    /// Only executions of this workflow type.
    #[arg(long = "type")]
    pub workflow_type: Option<String>,
    /// Only executions whose workflow id starts with this.
    #[arg(long)]
    pub id_prefix: Option<String>,
    /// Only runs whose search attribute NAME is VALUE (VALUE is read as
    /// JSON if it parses: `priority=2`, `vip=true`; else as text).
    #[arg(long, value_name = "NAME=VALUE")]
    pub search_attribute: Option<String>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// The page after the one that printed this cursor.
    #[arg(long)]
    pub before: Option<String>,
}

pub async fn list(filters: &ListFilters, format: Format, server: &ServerArgs) -> ExitCode {
    run_command(async {
        let mut query = format!("?limit={}", filters.limit);
        if let Some(status) = &filters.status {
            query.push_str(&format!("&status={}", segment(status)));
        }
        if let Some(workflow_type) = &filters.workflow_type {
            query.push_str(&format!("&workflow_type={}", segment(workflow_type)));
        }
        if let Some(prefix) = &filters.id_prefix {
            query.push_str(&format!("&id_prefix={}", segment(prefix)));
        }
        if let Some(attribute) = &filters.search_attribute {
            query.push_str(&format!("&search_attribute={}", segment(attribute)));
        }
        if let Some(before) = &filters.before {
            query.push_str(&format!("&before={}", segment(before)));
        }
        let answer = call(server, "GET", &format!("/v1/executions{query}"), Vec::new()).await?;
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        if format == Format::Json {
            println!("{}", answer.text);
            return Ok(ExitCode::SUCCESS);
        }
        let executions: Vec<ExecutionView> = answer.parse()?;
        let rows: Vec<[String; 5]> = executions
            .into_iter()
            .map(ExecutionView::into_record)
            .map(|record| {
                [
                    record.workflow_id,
                    record.workflow_type,
                    record.status.as_str().to_string(),
                    utc_time(record.created_at_ms),
                    utc_time(record.updated_at_ms),
                ]
            })
            .collect();
        print_table(
            [
                "WORKFLOW ID",
                "TYPE",
                "STATUS",
                "STARTED (UTC)",
                "UPDATED (UTC)",
            ],
            &rows,
        );
        if let Some(cursor) = &answer.next_page {
            println!("more: the same command with --before {cursor}");
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// Columns padded to their widest cell.
pub(super) fn print_table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(|header| header.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// What `signal`, `cancel` and `terminate` send.
pub enum Message<'a> {
    Signal {
        name: &'a str,
        payload: &'a str,
        signal_id: Option<&'a str>,
    },
    Cancel,
    Terminate {
        reason: &'a str,
    },
}

pub async fn send(id: &str, message: Message<'_>, format: Format, server: &ServerArgs) -> ExitCode {
    let (route, body) = match &message {
        Message::Signal {
            name,
            payload,
            signal_id,
        } => {
            let payload: Box<RawValue> = match RawValue::from_string(payload.to_string()) {
                Ok(payload) => payload,
                Err(error) => {
                    eprintln!("error: --payload is not valid JSON ({error})");
                    return ExitCode::from(EXIT_BAD_INPUT);
                }
            };
            #[derive(serde::Serialize)]
            struct SignalBody<'a> {
                name: &'a str,
                payload: Box<RawValue>,
                signal_id: Option<&'a str>,
            }
            let body = serde_json::to_vec(&SignalBody {
                name,
                payload,
                signal_id: *signal_id,
            })
            .expect("strings and raw JSON always serialize");
            ("signals", body)
        }
        Message::Cancel => ("cancel", Vec::new()),
        Message::Terminate { reason } => (
            "terminate",
            json!({ "reason": reason }).to_string().into_bytes(),
        ),
    };
    run_command(async {
        let path = format!("/v1/executions/{}/{route}", segment(id));
        let answer = call(server, "POST", &path, body).await?;
        if !answer.is_success() {
            return Ok(answer.refused());
        }
        let delivered = match &message {
            Message::Signal {
                name, signal_id, ..
            } => Delivered::Signal {
                name,
                signal_id: *signal_id,
                accepted: answer.body["accepted"] == json!(true),
            },
            Message::Cancel => Delivered::Cancel {
                accepted: answer.body["accepted"] == json!(true),
            },
            Message::Terminate { .. } => Delivered::Terminated,
        };
        delivered.print(id, format);
        Ok(ExitCode::SUCCESS)
    })
    .await
}
