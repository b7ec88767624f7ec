//! Activities of the order flow.
//!
//! - `provision`: records the order in `/data/provisioned.jsonl`, once per
//!   idempotency key.
//! - `charge-direct`: charges through the provider with outbound
//!   `wasi:http` (the host only lets it reach allowed hosts), sending the
//!   idempotency key as `Idempotency-Key`.
//! - `provision-trip`, `notify`: the last steps of the trip saga.
//! - `slow-steps`: works in steps, heartbeating progress; a retry resumes
//!   from the last heartbeat's details.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use reprise_sdk::{ActivityContext, ActivityError};
use serde::Deserialize;
use serde_json::{Value, json};

const PROVISIONED: &str = "/data/provisioned.jsonl";

#[derive(Deserialize)]
struct ProvisionInput {
    order_id: String,
    charge_id: String,
}

fn provision(ctx: &ActivityContext, input: ProvisionInput) -> Result<Value, ActivityError> {
    let key = ctx.idempotency_key();
    let io_error =
        |error: std::io::Error| ActivityError::retryable("ProvisionIo", error.to_string());
    let existing = match std::fs::read_to_string(PROVISIONED) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(io_error(error)),
    };
    let seen = existing
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|line| line["key"] == json!(key));
    if !seen {
        let mut line =
            json!({ "key": key, "order_id": input.order_id, "charge_id": input.charge_id })
                .to_string();
        // One write per line: concurrent appends must not interleave.
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(PROVISIONED)
            .map_err(io_error)?;
        file.write_all(line.as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
    }
    Ok(json!({ "provisioned": true }))
}

#[derive(Deserialize)]
struct ChargeInput {
    order_id: String,
    amount_cents: u64,
    card: String,
    provider_url: String,
}

fn charge_direct(ctx: &ActivityContext, input: ChargeInput) -> Result<Value, ActivityError> {
    let body = json!({
        "order_id": input.order_id,
        "amount_cents": input.amount_cents,
        "card": input.card,
    });
    let (status, response) = http_post(
        &format!("{}/charges", input.provider_url),
        &ctx.idempotency_key(),
        &ctx.traceparent(),
        body.to_string().as_bytes(),
    )?;
    let response: Value = serde_json::from_slice(&response).unwrap_or(Value::Null);
    match status {
        200..=299 => Ok(response),
        402 => Err(ActivityError::non_retryable(
            "PaymentNotCompleted",
            response["message"]
                .as_str()
                .unwrap_or("declined")
                .to_string(),
        )),
        _ => Err(ActivityError::retryable(
            format!("Http{status}"),
            format!("the provider answered {status}: {response}"),
        )),
    }
}

/// A blocking POST over `wasi:http`, in the caller's trace.
fn http_post(
    url: &str,
    idempotency_key: &str,
    traceparent: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), ActivityError> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

    let denied = |what: String| ActivityError::non_retryable("HttpRequestDenied", what);
    let transient = |what: String| ActivityError::retryable("HttpError", what);
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(denied(format!("only http:// and https:// URLs, not {url}")));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        (
            "idempotency-key".to_string(),
            idempotency_key.as_bytes().to_vec(),
        ),
        ("traceparent".to_string(), traceparent.as_bytes().to_vec()),
    ])
    .map_err(|error| transient(format!("{error:?}")))?;
    let request = OutgoingRequest::new(headers);
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    let outgoing = request
        .body()
        .map_err(|()| transient("no request body".into()))?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| transient("no body stream".into()))?;
        stream
            .blocking_write_and_flush(body)
            .map_err(|error| transient(format!("{error:?}")))?;
    }
    let future = outgoing_handler::handle(request, None).map_err(|code| match code {
        wasip2::http::types::ErrorCode::HttpRequestDenied => {
            denied(format!("the host denied {url}"))
        }
        other => transient(format!("{other:?}")),
    })?;
    OutgoingBody::finish(outgoing, None).map_err(|error| transient(format!("{error:?}")))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(wasip2::http::types::ErrorCode::HttpRequestDenied))) => {
            return Err(denied(format!("the host denied {url}")));
        }
        // A certificate that does not check out will not by retrying.
        Some(Ok(Err(wasip2::http::types::ErrorCode::TlsCertificateError))) => {
            return Err(ActivityError::non_retryable(
                "TlsCertificateError",
                format!("the certificate of {url} was refused"),
            ));
        }
        Some(Ok(Err(code))) => return Err(transient(format!("{code:?}"))),
        _ => return Err(transient("no response".into())),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| transient("no response body".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| transient("no response stream".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(error) => return Err(transient(format!("{error:?}"))),
        }
    }
    Ok((status, bytes))
}

#[derive(Deserialize)]
struct StepsInput {
    steps: u32,
    step_ms: u64,
    /// On the first attempt, stop heartbeating after this many steps.
    stall_after: u32,
}

fn slow_steps(ctx: &ActivityContext, input: StepsInput) -> Result<Value, ActivityError> {
    let resumed_from: u32 = ctx
        .last_heartbeat_details::<Value>()
        .and_then(|details| details["done"].as_u64())
        .unwrap_or(0) as u32;
    for done in resumed_from..input.steps {
        if ctx.attempt() == 1 && done == input.stall_after {
            // Hang without heartbeating: the host must give up on us.
            std::thread::sleep(Duration::from_secs(3600));
        }
        std::thread::sleep(Duration::from_millis(input.step_ms));
        ctx.heartbeat(&json!({ "done": done + 1 }));
    }
    Ok(json!({ "resumed_from": resumed_from, "attempt": ctx.attempt() }))
}

#[derive(Deserialize)]
struct TripInput {
    trip_id: String,
    #[serde(default)]
    fail: bool,
}

/// Provisions a trip — or fails for good when told to (the saga test).
fn provision_trip(_ctx: &ActivityContext, input: TripInput) -> Result<Value, ActivityError> {
    if input.fail {
        return Err(ActivityError::non_retryable(
            "ProvisioningFailed",
            format!("trip {} cannot be provisioned", input.trip_id),
        ));
    }
    Ok(json!({ "provisioned": input.trip_id }))
}

/// Notifies the traveller (here: a line in /data/notifications.jsonl).
fn notify(ctx: &ActivityContext, input: TripInput) -> Result<Value, ActivityError> {
    let mut line = json!({ "key": ctx.idempotency_key(), "trip_id": input.trip_id }).to_string();
    line.push('\n');
    let io_error = |error: std::io::Error| ActivityError::retryable("NotifyIo", error.to_string());
    OpenOptions::new()
        .create(true)
        .append(true)
        .open("/data/notifications.jsonl")
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(io_error)?;
    Ok(json!({ "notified": true }))
}

reprise_sdk::export_activities! {
    "provision-trip" => provision_trip,
    "notify" => notify,
    "provision" => provision,
    "charge-direct" => charge_direct,
    "slow-steps" => slow_steps,
}
