//! Outbound HTTP for activities: an allowlist of hosts and a small HTTP/1.1
//! client (plain `http://` only, which is all 127.0.0.1 providers need).
//! Used by the built-in `http` activity and by Wasm activities' `wasi:http`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Hosts activities may call. An entry is `host` (any port) or `host:port`.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    entries: Vec<String>,
}

impl Allowlist {
    pub fn new(entries: impl IntoIterator<Item = String>) -> Allowlist {
        Allowlist {
            entries: entries
                .into_iter()
                .map(|entry| entry.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `host` with `port` may be called.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let with_port = format!("{host}:{port}");
        self.entries
            .iter()
            .any(|entry| *entry == host || *entry == with_port)
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }
}

/// Why an outbound request did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(
        "{host}:{port} is not in the activity's allowed hosts ({allowed}); an operator adds it with `--allow-host` or the tenant's `allowed_hosts` limit"
    )]
    NotAllowed {
        host: String,
        port: u16,
        allowed: String,
    },
    #[error("only http:// URLs are supported, not {0}")]
    UnsupportedScheme(String),
    #[error("the URL has no host: {0}")]
    NoHost(String),
    #[error("connecting to {authority} timed out")]
    ConnectTimeout { authority: String },
    #[error("connecting to {authority} failed: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP exchange with {authority} failed: {source}")]
    Http {
        authority: String,
        #[source]
        source: hyper::Error,
    },
}

/// Checks `uri` against the allowlist; returns the `host:port` to dial.
pub fn check_target(allowlist: &Allowlist, uri: &http::Uri) -> Result<String, OutboundError> {
    match uri.scheme_str() {
        Some("http") | None => {}
        Some(other) => return Err(OutboundError::UnsupportedScheme(other.to_string())),
    }
    let host = uri
        .host()
        .ok_or_else(|| OutboundError::NoHost(uri.to_string()))?;
    let port = uri.port_u16().unwrap_or(80);
    if !allowlist.allows(host, port) {
        let allowed = if allowlist.entries().is_empty() {
            "none".to_string()
        } else {
            allowlist.entries().join(", ")
        };
        return Err(OutboundError::NotAllowed {
            host: host.to_string(),
            port,
            allowed,
        });
    }
    Ok(format!("{host}:{port}"))
}

/// Sends `request` to `authority` over a new connection. Returns the
/// response head and a future that drives the connection (spawn it or
/// await it alongside reading the body).
pub async fn send<B>(
    authority: &str,
    mut request: Request<B>,
) -> Result<
    (
        Response<Incoming>,
        impl Future<Output = Result<(), hyper::Error>> + Send + 'static,
    ),
    OutboundError,
>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            return Err(OutboundError::Connect {
                authority: authority.to_string(),
                source,
            });
        }
        Err(_) => {
            return Err(OutboundError::ConnectTimeout {
                authority: authority.to_string(),
            });
        }
    };
    let http_error = |source| OutboundError::Http {
        authority: authority.to_string(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    // HTTP/1.1 wants origin-form on the request line and a Host header.
    let path = request
        .uri()
        .path_and_query()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    if let Ok(host) = http::HeaderValue::from_str(authority) {
        request
            .headers_mut()
            .entry(http::header::HOST)
            .or_insert(host);
    }
    if let Ok(origin_form) = path.parse() {
        *request.uri_mut() = origin_form;
    }
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http_error)?;
    Ok((response, async move {
        match driver.await {
            Ok(result) => result,
            // The task was cancelled or panicked: the connection is gone.
            Err(_) => Ok(()),
        }
    }))
}
