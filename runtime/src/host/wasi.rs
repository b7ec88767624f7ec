//! WASI for workflows, virtualized so that plain-WASI code stays replay-safe.
//!
//! | interface            | treatment                                              |
//! |----------------------|--------------------------------------------------------|
//! | `wasi:clocks`        | journaled ([`JournaledWallClock`], [`JournaledMonotonicClock`]) |
//! | `wasi:random`        | journaled ([`JournaledRandom`]); the insecure seed is fixed per run |
//! | `wasi:cli` env/args  | fixed; stdin empty                                     |
//! | stdout / stderr      | captured as log lines ([`GuestOutput`]), muted in replay |
//! | `wasi:filesystem`    | no preopens: every open fails the same way             |
//! | `wasi:sockets`       | no permission: every call is denied                    |
//! | `wasi:http`          | linked, every request denied ([`DenyHttp`])            |

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use http_body_util::BodyExt as _;

use super::activity_context::ActivityCall;
use crate::activity::outbound::{self, Allowlist, OutboundClient, OutboundError};
use crate::clock;
use crate::journal::{Clock, Recorder};
use crate::telemetry::{GuestLines, LogSink};

/// Bytes drawn from the journal at a time to serve the guest's small
/// random reads (WASI's generator asks for them a word at a time).
const RANDOM_REFILL_BYTES: usize = 256;
/// Longest log line kept; the rest is cut.
const LOG_LINE_BYTES_MAX: usize = 4096;
/// How much of the guest's stderr is kept to explain a trap.
const STDERR_TAIL_BYTES_MAX: usize = 2048;

pub type SharedRecorder = Arc<Mutex<Recorder>>;

fn lock(recorder: &SharedRecorder) -> MutexGuard<'_, Recorder> {
    // A poisoned lock means another thread panicked mid-update; the history
    // itself is append-only and checked on every use, so carry on.
    recorder
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Builds the WASI context of one workflow activation of run `run_id`,
/// whose output lines go to `lines` (`None`: nowhere).
pub fn workflow_wasi(
    recorder: &SharedRecorder,
    run_id: &str,
    lines: Option<Arc<GuestLines>>,
    workflow_type: &str,
    stderr_tail: &Arc<Mutex<Vec<u8>>>,
) -> WasiCtx {
    WasiCtxBuilder::new()
        .wall_clock(JournaledWallClock(recorder.clone()))
        .monotonic_clock(JournaledMonotonicClock {
            recorder: recorder.clone(),
            last_ns: Mutex::new(0),
        })
        .secure_random(JournaledRandom::new(recorder.clone()))
        .insecure_random(JournaledRandom::new(recorder.clone()))
        .insecure_random_seed(fixed_seed(run_id))
        .stdout(GuestOutput {
            target: OutputTarget::Workflow {
                recorder: recorder.clone(),
                lines: lines.clone(),
            },
            stream: "stdout",
            stderr_tail: None,
        })
        .stderr(GuestOutput {
            target: OutputTarget::Workflow {
                recorder: recorder.clone(),
                lines,
            },
            stream: "stderr",
            stderr_tail: Some(stderr_tail.clone()),
        })
        .args(&[workflow_type])
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// The insecure seed is a pure function of the run: deterministic by
/// construction, different across runs.
fn fixed_seed(run_id: &str) -> u128 {
    let digest = Sha256::digest(run_id.as_bytes());
    let mut seed = [0u8; 16];
    seed.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(seed)
}

pub struct JournaledWallClock(pub SharedRecorder);

impl HostWallClock for JournaledWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let value = lock(&self.0).read_clock(Clock::Wall, clock::now_ns(), clock::now_ms());
        Duration::from_nanos(value)
    }
}

/// A monotonic clock derived from the wall clock, so that values recorded
/// by one process stay monotonic when another process continues the run.
pub struct JournaledMonotonicClock {
    recorder: SharedRecorder,
    last_ns: Mutex<u64>,
}

impl HostMonotonicClock for JournaledMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let mut last = self
            .last_ns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let live = clock::now_ns().max(*last);
        let value = lock(&self.recorder).read_clock(Clock::Monotonic, live, clock::now_ms());
        *last = (*last).max(value);
        value
    }
}

/// Randomness served from journaled draws of `RANDOM_REFILL_BYTES`.
pub struct JournaledRandom {
    recorder: SharedRecorder,
    buffer: Vec<u8>,
    /// The run's host behaviour is 1 or more: a `u32` takes one byte (see
    /// [`rand::TryRng::try_next_u32`] below).
    byte_per_u32: bool,
}

impl JournaledRandom {
    pub fn new(recorder: SharedRecorder) -> JournaledRandom {
        let byte_per_u32 = lock(&recorder).history.host_behaviour() >= 1;
        JournaledRandom {
            recorder,
            buffer: Vec::new(),
            byte_per_u32,
        }
    }

    fn take(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            if self.buffer.is_empty() {
                let mut live = vec![0u8; RANDOM_REFILL_BYTES];
                rand::Rng::fill_bytes(&mut rand::rng(), &mut live);
                let mut drawn = lock(&self.recorder).draw_random(live, clock::now_ms());
                // Served from the back: reverse so bytes come out in draw order.
                drawn.reverse();
                self.buffer = drawn;
            }
            while filled < out.len() {
                match self.buffer.pop() {
                    Some(byte) => {
                        out[filled] = byte;
                        filled += 1;
                    }
                    None => break,
                }
            }
        }
    }
}

impl rand::TryRng for JournaledRandom {
    type Error = Infallible;

    /// wasmtime-wasi asks for a `u32` per byte of `get-random-bytes` and
    /// keeps its low byte, so a `u32` of one journaled byte serves each
    /// guest byte with one byte of journal (host behaviour 1; behaviour 0
    /// journaled four). `get-random-u64` asks for a whole `u64`.
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        if self.byte_per_u32 {
            let mut byte = [0u8; 1];
            self.take(&mut byte);
            return Ok(u32::from(byte[0]));
        }
        let mut word = [0u8; 4];
        self.take(&mut word);
        Ok(u32::from_le_bytes(word))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut word = [0u8; 8];
        self.take(&mut word);
        Ok(u64::from_le_bytes(word))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.take(dst);
        Ok(())
    }
}

/// Guest stdout/stderr: each line becomes a log line tied to the
/// execution — for a workflow, behind its journal (see [`GuestLines`]).
#[derive(Clone)]
pub struct GuestOutput {
    target: OutputTarget,
    stream: &'static str,
    stderr_tail: Option<Arc<Mutex<Vec<u8>>>>,
}

#[derive(Clone)]
enum OutputTarget {
    Workflow {
        recorder: SharedRecorder,
        lines: Option<Arc<GuestLines>>,
    },
    /// Activities never replay: their lines go out at once, tagged with
    /// the seq of the call the instance serves.
    Activity(Arc<ActivityLines>),
}

/// Where an activity instance's stdout and stderr lines go: to the call it
/// serves now. A warm instance serves several calls in turn.
#[derive(Default)]
pub struct ActivityLines {
    serving: Mutex<Option<(LogSink, u64)>>,
}

impl ActivityLines {
    /// Lines written from now on belong to `call`.
    pub fn serve(&self, call: &ActivityCall) {
        *self
            .serving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            call.logs.clone().map(|sink| (sink, call.seq));
    }

    fn write(&self, stream: &'static str, line: &str) {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((sink, seq)) = serving.as_ref() {
            sink.write(*seq, "info", stream, line);
        }
    }
}

impl GuestOutput {
    /// Output of an activity instance: logged (with the seq of the call
    /// it serves), never muted.
    pub fn for_activity(lines: &Arc<ActivityLines>, stream: &'static str) -> GuestOutput {
        GuestOutput {
            target: OutputTarget::Activity(lines.clone()),
            stream: match stream {
                "stdout" => "activity-stdout",
                _ => "activity-stderr",
            },
            stderr_tail: None,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 asks for this; workflows link WASIp2.
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestOutputStream {
            output: self.clone(),
            line: Vec::new(),
        })
    }
}

struct GuestOutputStream {
    output: GuestOutput,
    line: Vec<u8>,
}

impl GuestOutputStream {
    fn emit_line(&mut self) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        match &self.output.target {
            OutputTarget::Workflow {
                recorder,
                lines: Some(lines),
            } => lines.write(&lock(recorder), "info", self.output.stream, line),
            OutputTarget::Workflow { lines: None, .. } => {}
            OutputTarget::Activity(lines) => lines.write(self.output.stream, &line),
        }
    }
}

impl OutputStream for GuestOutputStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if let Some(tail) = &self.output.stderr_tail {
            let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tail.extend_from_slice(&bytes);
            let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES_MAX);
            tail.drain(..excess);
        }
        for &byte in bytes.iter() {
            if byte == b'\n' {
                self.emit_line();
            } else if self.line.len() < LOG_LINE_BYTES_MAX {
                self.line.push(byte);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl Drop for GuestOutputStream {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit_line();
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutputStream {
    async fn ready(&mut self) {}
}

/// The connection-driving future `send_request` takes and returns.
type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

/// What `WasiHttpHooks::send_request` returns: the response and its
/// connection driver, or why there is none.
type SentRequest = Box<
    dyn Future<
            Output = Result<
                (http::Response<wasmtime_wasi_http::WasiBody>, IoFuture),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

/// `wasi:http` hooks that refuse every request, the same way live and in
/// replay.
pub struct DenyHttp;

impl wasmtime_wasi_http::WasiHttpHooks for DenyHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> SentRequest {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// `wasi:http` hooks for activities: requests go out through the
/// process's pooled client (HTTP/1.1, HTTP/2, TLS), only to hosts in the
/// allowlist; anything else is denied.
pub struct AllowlistedHttp {
    pub client: OutboundClient,
    pub allowlist: Arc<Allowlist>,
}

impl wasmtime_wasi_http::WasiHttpHooks for AllowlistedHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> SentRequest {
        let client = self.client.clone();
        let allowlist = self.allowlist.clone();
        Box::new(async move {
            use wasmtime_wasi_http::Error;
            outbound::check_target(&allowlist, request.uri()).map_err(|error| {
                tracing::warn!(%error, "activity HTTP request denied");
                Error::HttpRequestDenied
            })?;
            let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
            let sent = client.send(request);
            // The guest's own first-byte timeout, if it set one; the pool's
            // connect timeout covers connecting.
            let first_byte = options.and_then(|options| options.first_byte_timeout);
            let response = match first_byte {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|_| Error::ConnectionReadTimeout)?,
                None => sent.await,
            }
            .map_err(|error| {
                tracing::info!(%error, "activity HTTP request failed");
                match error {
                    OutboundError::Tls {
                        failure: outbound::TlsFailure::Handshake,
                        ..
                    } => Error::TlsProtocolError,
                    OutboundError::Tls { .. } => Error::TlsCertificateError,
                    OutboundError::ConnectTimeout { .. } => Error::ConnectionTimeout,
                    OutboundError::ConnectionRefused { .. } => Error::ConnectionRefused,
                    OutboundError::NotAllowed { .. } => Error::HttpRequestDenied,
                    OutboundError::UnsupportedScheme(_) | OutboundError::NoHost(_) => {
                        Error::HttpRequestUriInvalid
                    }
                    OutboundError::Connect { .. } | OutboundError::Http { .. } => {
                        Error::InternalError(Some(error.to_string()))
                    }
                }
            })?;
            let response = response.map(|body| body.map_err(Error::Hyper).boxed_unsync());
            // The pool drives the connection; nothing is left for the caller.
            let connection: IoFuture = Box::new(async { Ok(()) });
            Ok((response, connection))
        })
    }
}
