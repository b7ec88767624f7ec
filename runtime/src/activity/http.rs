//! The built-in `http` activity: one HTTP request per attempt, with the
//! call's idempotency key sent as `Idempotency-Key`.
//!
//! Input (JSON): `{"method": "POST", "url": "http://…", "headers": {…},
//! "body": <JSON or string>, "retryable_statuses": [..],
//! "non_retryable_statuses": [..]}`. Output: `{"status", "headers", "body"}`
//! (the body parsed as JSON when it is JSON).
//!
//! Triage by rule, overridable per call: connection errors, 5xx, 408 and 429
//! are retryable; other 4xx, a host the allowlist does not name and a TLS
//! certificate that does not check out are not. A failing response's error type is its
//! JSON body's `error_type` when it has one, else `Http<status>`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use super::outbound::{self, Allowlist, OutboundClient, OutboundError};
use crate::journal::{ActivityError, PAYLOAD_BYTES_MAX};

/// The name workflows call the built-in HTTP activity by.
pub const HTTP_ACTIVITY: &str = "http";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpInput {
    #[serde(default = "default_method")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    retryable_statuses: Vec<u16>,
    #[serde(default)]
    non_retryable_statuses: Vec<u16>,
}

fn default_method() -> String {
    "GET".to_string()
}

fn invalid(message: String) -> ActivityError {
    ActivityError {
        error_type: "InvalidHttpRequest".into(),
        message,
        details: None,
        non_retryable: true,
    }
}

/// Runs one attempt of the `http` activity.
pub async fn run(
    client: &OutboundClient,
    allowlist: &Allowlist,
    input: &str,
    idempotency_key: &str,
    traceparent: &str,
) -> Result<String, ActivityError> {
    let input: HttpInput = serde_json::from_str(input).map_err(|error| {
        invalid(format!(
            "the input of the `http` activity is malformed: {error}"
        ))
    })?;
    let uri: http::Uri = input
        .url
        .parse()
        .map_err(|error| invalid(format!("`{}` is not a URL: {error}", input.url)))?;
    let origin = outbound::check_target(allowlist, &uri).map_err(outbound_failure)?;
    let method = http::Method::from_bytes(input.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("`{}` is not an HTTP method", input.method)))?;
    let (body, content_type) = match &input.body {
        None => (Bytes::new(), None),
        Some(Value::String(text)) => (Bytes::from(text.clone()), Some("text/plain; charset=utf-8")),
        Some(value) => (Bytes::from(value.to_string()), Some("application/json")),
    };
    let mut request = http::Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    for (name, value) in &input.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut request = request
        .body(outbound::full_body(body))
        .map_err(|error| invalid(format!("could not build the request: {error}")))?;
    let headers = request.headers_mut();
    if !headers.contains_key("idempotency-key")
        && let Ok(key) = http::HeaderValue::from_str(idempotency_key)
    {
        headers.insert("idempotency-key", key);
    }
    if !headers.contains_key("traceparent")
        && let Ok(value) = http::HeaderValue::from_str(traceparent)
    {
        headers.insert("traceparent", value);
    }

    let response = client.send(request).await.map_err(outbound_failure)?;
    let status = response.status();
    let response_headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let collected = Limited::new(response.into_body(), PAYLOAD_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| ActivityError {
            error_type: "HttpResponseError".into(),
            message: format!("reading the response body from {origin} failed: {error}"),
            details: None,
            non_retryable: false,
        })?
        .to_bytes();
    let text = String::from_utf8_lossy(&collected).into_owned();
    let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));

    if status.is_success() || status.is_redirection() || status.is_informational() {
        let output =
            json!({ "status": status.as_u16(), "headers": response_headers, "body": body });
        return Ok(output.to_string());
    }
    let code = status.as_u16();
    let retryable = if input.non_retryable_statuses.contains(&code) {
        false
    } else if input.retryable_statuses.contains(&code) {
        true
    } else {
        status.is_server_error() || code == 408 || code == 429
    };
    let error_type = body["error_type"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("Http{code}"));
    let message = body["message"]
        .as_str()
        .map(|message| {
            format!(
                "{code} {}: {message}",
                status.canonical_reason().unwrap_or("")
            )
        })
        .unwrap_or_else(|| format!("{} answered {status}", input.url));
    Err(ActivityError {
        error_type,
        message,
        details: Some(json!({ "status": code, "body": body }).to_string()),
        non_retryable: !retryable,
    })
}

fn outbound_failure(error: OutboundError) -> ActivityError {
    ActivityError {
        error_type: error.error_type().into(),
        message: error.to_string(),
        details: None,
        non_retryable: !error.is_retryable(),
    }
}
