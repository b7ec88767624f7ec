//! A fake payment provider that behaves like a real one: a real HTTP server
//! on 127.0.0.1 that honours `Idempotency-Key` (same key → same charge, no
//! second charge), keeps a ledger you can query, and can be told to
//! misbehave: succeed but drop the response, answer 503 a few times, or
//! decline the card.
//!
//! ```text
//! POST /charges   {"order_id", "amount_cents", "card"}  + Idempotency-Key header
//!   201 {"charge_id", "order_id", "amount_cents"}
//!   402 {"error_type": "PaymentNotCompleted", "message"}   (card "declined")
//!   503 {"error_type": "Unavailable", "message"}            (fail mode)
//! POST /control   {"drop_responses": n, "fail_503": n, "delay_ms": ms}
//! GET  /ledger    [{"charge_id", "order_id", "amount_cents", "idempotency_key"}]
//! GET  /stats     {"requests": n, "charges": n}
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

/// The largest request body the provider reads.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub charge_id: String,
    pub order_id: String,
    pub amount_cents: u64,
    pub idempotency_key: String,
}

#[derive(Default)]
struct State {
    ledger: Vec<Charge>,
    /// Idempotency key → the response first given for it.
    responses: HashMap<String, (StatusCode, serde_json::Value)>,
    requests: u64,
    drop_responses: u32,
    fail_503: u32,
    /// Every charge waits this long before answering.
    delay_ms: u64,
}

/// A running provider. Dropping it does not stop the server task; the
/// test process ends it.
#[derive(Clone)]
pub struct PaymentProvider {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl PaymentProvider {
    /// Binds 127.0.0.1 on `port` (0: any free port) and serves in the background.
    pub async fn start(port: u16) -> std::io::Result<PaymentProvider> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(serve(listener, state.clone()));
        Ok(PaymentProvider { addr, state })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn ledger(&self) -> Vec<Charge> {
        self.state().ledger.clone()
    }

    /// Requests received so far (all routes but /ledger, /stats, /control).
    pub fn requests(&self) -> u64 {
        self.state().requests
    }

    /// The next `count` charge requests are carried out, then the
    /// connection is closed without a response.
    pub fn drop_responses(&self, count: u32) {
        self.state().drop_responses = count;
    }

    /// Charges take `delay_ms` before they answer (the charge is made first).
    pub fn delay_responses(&self, delay_ms: u64) {
        self.state().delay_ms = delay_ms;
    }

    /// The next `count` charge requests get 503 and charge nothing.
    pub fn fail_with_503(&self, count: u32) {
        self.state().fail_503 = count;
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, state.clone()));
            // An error here is a dropped response (on purpose) or a client
            // that went away: nothing to do.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

/// The error a handler returns to make hyper close the connection without
/// answering: the "lost response".
#[derive(Debug)]
struct DropResponse;

impl std::fmt::Display for DropResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response dropped on purpose")
    }
}

impl std::error::Error for DropResponse {}

fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(message: impl Into<String>) -> Reply {
    reply(
        StatusCode::BAD_REQUEST,
        json!({ "error_type": "BadRequest", "message": message.into() }),
    )
}

async fn read_json(request: Request<Incoming>) -> Result<serde_json::Value, Reply> {
    let body = http_body_util::Limited::new(request.into_body(), REQUEST_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| bad_request(format!("could not read the body: {error}")))?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|error| bad_request(format!("the body is not JSON: {error}")))
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Reply, DropResponse> {
    match (request.method().clone(), request.uri().path()) {
        (Method::POST, "/charges") => charge(request, state).await,
        (Method::GET, "/ledger") => Ok(reply(StatusCode::OK, json!(lock(&state).ledger))),
        (Method::GET, "/stats") => {
            let state = lock(&state);
            Ok(reply(
                StatusCode::OK,
                json!({ "requests": state.requests, "charges": state.ledger.len() }),
            ))
        }
        (Method::POST, "/control") => Ok(control(request, state).await),
        _ => Ok(reply(
            StatusCode::NOT_FOUND,
            json!({ "error_type": "NotFound", "message": "no such route" }),
        )),
    }
}

async fn control(request: Request<Incoming>, state: Arc<Mutex<State>>) -> Reply {
    let body = match read_json(request).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let mut state = lock(&state);
    if let Some(count) = body["drop_responses"].as_u64() {
        state.drop_responses = count as u32;
    }
    if let Some(count) = body["fail_503"].as_u64() {
        state.fail_503 = count as u32;
    }
    if let Some(delay_ms) = body["delay_ms"].as_u64() {
        state.delay_ms = delay_ms;
    }
    reply(StatusCode::OK, json!({ "ok": true }))
}

async fn charge(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Reply, DropResponse> {
    let key = request
        .headers()
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = match read_json(request).await {
        Ok(body) => body,
        Err(reply) => return Ok(reply),
    };
    let outcome = charge_locked(&mut lock(&state), key, &body);
    match outcome {
        ChargeOutcome::Answer {
            status,
            body,
            delay_ms,
        } => {
            if delay_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            }
            Ok(reply(status, body))
        }
        ChargeOutcome::Refused(refusal) => Ok(refusal),
        ChargeOutcome::DropResponse => Err(DropResponse),
    }
}

/// What the charge decided, under the lock.
enum ChargeOutcome {
    /// Answer after `delay_ms`.
    Answer {
        status: StatusCode,
        body: serde_json::Value,
        delay_ms: u64,
    },
    /// Answer at once (bad request, 503).
    Refused(Reply),
    /// Charged, but close the connection without answering.
    DropResponse,
}

fn charge_locked(
    state: &mut State,
    key: Option<String>,
    body: &serde_json::Value,
) -> ChargeOutcome {
    state.requests += 1;
    let Some(key) = key else {
        return ChargeOutcome::Refused(bad_request("the Idempotency-Key header is required"));
    };
    if state.fail_503 > 0 {
        state.fail_503 -= 1;
        return ChargeOutcome::Refused(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error_type": "Unavailable", "message": "try again later" }),
        ));
    }
    if let Some((status, body)) = state.responses.get(&key) {
        return ChargeOutcome::Answer {
            status: *status,
            body: body.clone(),
            delay_ms: state.delay_ms,
        };
    }
    let (Some(order_id), Some(amount_cents)) =
        (body["order_id"].as_str(), body["amount_cents"].as_u64())
    else {
        return ChargeOutcome::Refused(bad_request(
            "order_id (string) and amount_cents (integer) are required",
        ));
    };
    let (status, response) = if body["card"].as_str() == Some("declined") {
        (
            StatusCode::PAYMENT_REQUIRED,
            json!({ "error_type": "PaymentNotCompleted", "message": "the card was declined" }),
        )
    } else {
        let charge = Charge {
            charge_id: format!("ch_{}", state.ledger.len() + 1),
            order_id: order_id.to_string(),
            amount_cents,
            idempotency_key: key.clone(),
        };
        state.ledger.push(charge.clone());
        (StatusCode::CREATED, json!(charge))
    };
    state.responses.insert(key, (status, response.clone()));
    if state.drop_responses > 0 {
        state.drop_responses -= 1;
        return ChargeOutcome::DropResponse;
    }
    ChargeOutcome::Answer {
        status,
        body: response,
        delay_ms: state.delay_ms,
    }
}
