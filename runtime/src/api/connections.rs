//! The accept loop of the API, with limits on what a client can hold: open
//! connections (in all and per peer address), time to send a request's
//! head (which is also how long a kept-alive connection may sit idle), and
//! time to send its body. A slow or lying client ties up one connection
//! for a bounded time, never the server.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

/// What one client may hold of the server.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections in all; more are closed as soon as they are accepted.
    pub connections_max: usize,
    /// Open connections from one peer address.
    pub connections_per_peer_max: usize,
    /// Time to send a request's head, counted from when the server waits
    /// for it — so also the longest a kept-alive connection stays idle.
    pub header_read_timeout: Duration,
    /// Time to send a request's whole body (a module upload included).
    pub body_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            connections_max: 4_096,
            // A benchmark client with 500 start-and-wait requests in flight
            // is one address; an attacker holding this many idle ones for
            // the header timeout still leaves three quarters.
            connections_per_peer_max: 1_024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
        }
    }
}

/// Connections the kernel completes and queues for the accept loop. The
/// standard library's 128 overflows when a few hundred clients connect at
/// once (500 start-and-wait requests, say): the kernel then drops their
/// SYNs and each retries only after a second, which stalled whole
/// benchmark runs. Linux caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4_096;

/// Binds a listener for the API on `address` with [`LISTEN_BACKLOG`].
pub fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted server takes its port back at once, as std's bind does.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    if let Some(cap) = kernel_backlog_cap()
        && cap < LISTEN_BACKLOG
    {
        tracing::warn!(
            cap,
            wanted = LISTEN_BACKLOG,
            "the kernel caps the listen backlog at net.core.somaxconn; clients connecting in a burst beyond it retry a second later (raise it with sysctl)"
        );
    }
    socket.listen(LISTEN_BACKLOG)
}

/// Linux's cap on every listen backlog, if it can be read.
pub fn kernel_backlog_cap() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Open connections by peer address.
struct OpenConnections {
    limits: ConnectionLimits,
    by_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it closes its place.
struct Admitted {
    open: Arc<OpenConnections>,
    peer: IpAddr,
}

impl OpenConnections {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let mut by_peer = self
            .by_peer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let total: usize = by_peer.values().sum();
        let from_peer = by_peer.get(&peer).copied().unwrap_or(0);
        if total >= self.limits.connections_max || from_peer >= self.limits.connections_per_peer_max
        {
            return None;
        }
        by_peer.insert(peer, from_peer + 1);
        Some(Admitted {
            open: self.clone(),
            peer,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut by_peer = self
            .open
            .by_peer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = by_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    serve_until(
        listener,
        router,
        ConnectionLimits::default(),
        std::future::pending(),
    )
    .await
}

/// Serves `router` on `listener` within `limits` until `stop` resolves;
/// then stops taking connections and lets the open ones finish their
/// requests.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(OpenConnections {
        limits,
        by_peer: Mutex::default(),
    });
    let (stopping, _) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Some(admitted) = open.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many open connections");
            continue;
        };
        let service = TowerToHyperService::new(router.clone().map_request(
            move |request: Request<Incoming>| {
                request.map(|body| with_body_deadline(body, limits.body_read_timeout))
            },
        ));
        let mut stopping = stopping.subscribe();
        tokio::spawn(async move {
            let _admitted = admitted;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                _ = stopping.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    stopping.send_replace(true);
    Ok(())
}

/// A request body that fails once `timeout` has passed: a
/// `Content-Length` larger than what is sent, or a body trickled a byte at
/// a time, ends in a 400 instead of holding the connection.
fn with_body_deadline(body: Incoming, timeout: Duration) -> Body {
    Body::new(DeadlineBody {
        inner: body,
        timeout,
        deadline: Box::pin(tokio::time::sleep(timeout)),
    })
}

struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// Why a body stopped being read.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive within {} ms (the body read timeout); send it whole and at once",
    .0.as_millis()
)]
struct BodyTimedOut(Duration);

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(axum::BoxError::from)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
