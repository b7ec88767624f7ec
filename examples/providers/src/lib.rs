//! Fake third-party providers that behave like real ones: real HTTP servers
//! on 127.0.0.1 that honour `Idempotency-Key` (same key → same answer, no
//! second effect), keep a ledger you can query, and can be told to
//! misbehave: carry out a request but drop the response, answer 503 a few
//! times, answer slowly, or refuse (a business failure).
//!
//! One server speaks both the payment and the inventory protocol; tests
//! start one instance per provider.
//!
//! ```text
//! POST /charges       {"order_id", "amount_cents", "card"}  201 {"charge_id", …}; card "declined" → 402 PaymentNotCompleted
//! POST /refunds       {"charge_id"}                         201 {"refund_id", …}; rejected charge → 409 RefundRejected
//! POST /reservations  {"order_id", "item"}                  201 {"reservation_id", …}; rejected item → 409 OutOfStock
//! POST /releases      {"reservation_id"}                    201 {"release_id", …}
//!      every POST needs an Idempotency-Key header
//! POST /control       {"drop_responses": n, "fail_503": n, "delay_ms": ms}
//! GET  /ledger        charges;  GET /operations: every effect, in order
//! GET  /stats         {"requests": n, "operations": n}
//! ```

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The largest request body the provider reads.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// The kinds of effect a provider carries out.
pub const CHARGE: &str = "charge";
pub const REFUND: &str = "refund";
pub const RESERVATION: &str = "reservation";
pub const RELEASE: &str = "release";

/// One effect the provider carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub kind: String,
    /// `ch_1`, `re_1`, `rs_1`, `rl_1`…
    pub id: String,
    /// What it acts on: the order (charge, reservation), the charge
    /// (refund) or the reservation (release).
    pub subject: String,
    pub amount_cents: u64,
    pub idempotency_key: String,
}

/// A charge, as `GET /ledger` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub charge_id: String,
    pub order_id: String,
    pub amount_cents: u64,
    pub idempotency_key: String,
}

#[derive(Default)]
struct State {
    operations: Vec<Operation>,
    /// (kind, idempotency key) → the answer first given.
    responses: HashMap<(String, String), (StatusCode, Value)>,
    requests: u64,
    /// Misbehaviour per kind: requests to drop after acting, to answer 503.
    drop_responses: HashMap<String, u32>,
    fail_503: HashMap<String, u32>,
    delay_ms: u64,
    /// Subjects (charge ids, items) whose refund or reservation is refused.
    rejected: HashSet<String>,
    /// The `traceparent` header of every request that had one, in order.
    traceparents: Vec<String>,
}

impl State {
    fn charges(&self) -> Vec<Charge> {
        self.operations
            .iter()
            .filter(|operation| operation.kind == CHARGE)
            .map(|operation| Charge {
                charge_id: operation.id.clone(),
                order_id: operation.subject.clone(),
                amount_cents: operation.amount_cents,
                idempotency_key: operation.idempotency_key.clone(),
            })
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.operations
            .iter()
            .filter(|operation| operation.kind == kind)
            .count()
    }

    fn take(counters: &mut HashMap<String, u32>, kind: &str) -> bool {
        match counters.get_mut(kind) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}

/// A running provider. Dropping it does not stop the server task; the
/// process ends it.
#[derive(Clone)]
pub struct Provider {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// The payment provider is a [`Provider`] used for charges and refunds.
pub type PaymentProvider = Provider;

impl Provider {
    /// Binds 127.0.0.1 on `port` (0: any free port) and serves in the background.
    pub async fn start(port: u16) -> std::io::Result<Provider> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(serve(listener, state.clone()));
        Ok(Provider { addr, state })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The charges carried out.
    pub fn ledger(&self) -> Vec<Charge> {
        self.state().charges()
    }

    /// Every effect carried out, in order.
    pub fn operations(&self) -> Vec<Operation> {
        self.state().operations.clone()
    }

    /// POST requests received so far.
    pub fn requests(&self) -> u64 {
        self.state().requests
    }

    /// The next `count` charges are carried out, then the connection is
    /// closed without a response.
    pub fn drop_responses(&self, count: u32) {
        self.state()
            .drop_responses
            .insert(CHARGE.to_string(), count);
    }

    /// The next `count` charges get 503 and charge nothing.
    pub fn fail_with_503(&self, count: u32) {
        self.fail_kind_with_503(CHARGE, count);
    }

    /// The next `count` requests of `kind` get 503 and do nothing.
    pub fn fail_kind_with_503(&self, kind: &str, count: u32) {
        self.state().fail_503.insert(kind.to_string(), count);
    }

    /// Every request answers `delay_ms` late (the effect happens first).
    /// The `traceparent` headers requests carried, in order.
    pub fn traceparents(&self) -> Vec<String> {
        self.state().traceparents.clone()
    }

    pub fn delay_responses(&self, delay_ms: u64) {
        self.state().delay_ms = delay_ms;
    }

    /// Refunds of this charge, or reservations of this item, are refused
    /// for good (409).
    pub fn reject(&self, subject: &str) {
        self.state().rejected.insert(subject.to_string());
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

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn failure(status: StatusCode, error_type: &str, message: impl Into<String>) -> Reply {
    reply(
        status,
        json!({ "error_type": error_type, "message": message.into() }),
    )
}

fn bad_request(message: impl Into<String>) -> Reply {
    failure(StatusCode::BAD_REQUEST, "BadRequest", message)
}

async fn read_json(request: Request<Incoming>) -> Result<Value, Reply> {
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
    let kind = match (request.method().clone(), request.uri().path()) {
        (Method::POST, "/charges") => CHARGE,
        (Method::POST, "/refunds") => REFUND,
        (Method::POST, "/reservations") => RESERVATION,
        (Method::POST, "/releases") => RELEASE,
        (Method::GET, "/ledger") => {
            return Ok(reply(StatusCode::OK, json!(lock(&state).charges())));
        }
        (Method::GET, "/operations") => {
            return Ok(reply(StatusCode::OK, json!(lock(&state).operations)));
        }
        (Method::GET, "/stats") => {
            let state = lock(&state);
            return Ok(reply(
                StatusCode::OK,
                json!({ "requests": state.requests, "operations": state.operations.len() }),
            ));
        }
        (Method::POST, "/control") => return Ok(control(request, state).await),
        _ => return Ok(failure(StatusCode::NOT_FOUND, "NotFound", "no such route")),
    };
    if let Some(traceparent) = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        lock(&state).traceparents.push(traceparent.to_string());
    }
    let key = request
        .headers()
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = match read_json(request).await {
        Ok(body) => body,
        Err(reply) => return Ok(reply),
    };
    let outcome = act(&mut lock(&state), kind, key, &body);
    match outcome {
        Outcome::Answer {
            status,
            body,
            delay_ms,
        } => {
            if delay_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            }
            Ok(reply(status, body))
        }
        Outcome::Refused(refusal) => Ok(refusal),
        Outcome::DropResponse => Err(DropResponse),
    }
}

async fn control(request: Request<Incoming>, state: Arc<Mutex<State>>) -> Reply {
    let body = match read_json(request).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let mut state = lock(&state);
    if let Some(count) = body["drop_responses"].as_u64() {
        state
            .drop_responses
            .insert(CHARGE.to_string(), count as u32);
    }
    if let Some(count) = body["fail_503"].as_u64() {
        state.fail_503.insert(CHARGE.to_string(), count as u32);
    }
    if let Some(delay_ms) = body["delay_ms"].as_u64() {
        state.delay_ms = delay_ms;
    }
    reply(StatusCode::OK, json!({ "ok": true }))
}

/// What a request decided, under the lock.
enum Outcome {
    /// Answer after `delay_ms`.
    Answer {
        status: StatusCode,
        body: Value,
        delay_ms: u64,
    },
    /// Answer at once (bad request, 503).
    Refused(Reply),
    /// Carried out, but close the connection without answering.
    DropResponse,
}

fn act(state: &mut State, kind: &'static str, key: Option<String>, body: &Value) -> Outcome {
    state.requests += 1;
    let Some(key) = key else {
        return Outcome::Refused(bad_request("the Idempotency-Key header is required"));
    };
    if State::take(&mut state.fail_503, kind) {
        return Outcome::Refused(failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "try again later",
        ));
    }
    let remembered = (kind.to_string(), key.clone());
    if let Some((status, body)) = state.responses.get(&remembered) {
        return Outcome::Answer {
            status: *status,
            body: body.clone(),
            delay_ms: state.delay_ms,
        };
    }
    let (status, response) = match carry_out(state, kind, &key, body) {
        Ok(answer) => answer,
        Err(refusal) => return Outcome::Refused(*refusal),
    };
    state
        .responses
        .insert(remembered, (status, response.clone()));
    if State::take(&mut state.drop_responses, kind) {
        return Outcome::DropResponse;
    }
    Outcome::Answer {
        status,
        body: response,
        delay_ms: state.delay_ms,
    }
}

/// Validates the request and carries out its effect (remembered for its key).
fn carry_out(
    state: &mut State,
    kind: &'static str,
    key: &str,
    body: &Value,
) -> Result<(StatusCode, Value), Box<Reply>> {
    let field = |name: &str| -> Result<String, Box<Reply>> {
        body[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Box::new(bad_request(format!("`{name}` (a string) is required"))))
    };
    let (subject, amount_cents, id_field, prefix) = match kind {
        CHARGE => {
            let order_id = field("order_id")?;
            let amount = body["amount_cents"]
                .as_u64()
                .ok_or_else(|| Box::new(bad_request("`amount_cents` (an integer) is required")))?;
            if body["card"].as_str() == Some("declined") {
                let declined = json!({ "error_type": "PaymentNotCompleted", "message": "the card was declined" });
                return Ok((StatusCode::PAYMENT_REQUIRED, declined));
            }
            (order_id, amount, "charge_id", "ch")
        }
        REFUND => {
            let charge_id = field("charge_id")?;
            if state.rejected.contains(&charge_id) {
                let refused = json!({ "error_type": "RefundRejected", "message": format!("{charge_id} cannot be refunded") });
                return Ok((StatusCode::CONFLICT, refused));
            }
            (charge_id, 0, "refund_id", "re")
        }
        RESERVATION => {
            let order_id = field("order_id")?;
            let item = field("item")?;
            if state.rejected.contains(&item) {
                let refused =
                    json!({ "error_type": "OutOfStock", "message": format!("{item} is sold out") });
                return Ok((StatusCode::CONFLICT, refused));
            }
            (format!("{order_id}/{item}"), 0, "reservation_id", "rs")
        }
        _ => (field("reservation_id")?, 0, "release_id", "rl"),
    };
    let operation = Operation {
        kind: kind.to_string(),
        id: format!("{prefix}_{}", state.count(kind) + 1),
        subject,
        amount_cents,
        idempotency_key: key.to_string(),
    };
    let mut answer = json!({ id_field: operation.id, "subject": operation.subject });
    if kind == CHARGE {
        answer["order_id"] = json!(operation.subject);
        answer["amount_cents"] = json!(operation.amount_cents);
    }
    state.operations.push(operation);
    Ok((StatusCode::CREATED, answer))
}
