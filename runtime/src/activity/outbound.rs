//! Outbound HTTP: the allowlist activities' requests are checked against,
//! and one pooled client per process for everything the runtime sends
//! (activities' requests, OTLP export, the CLI's calls to a server).
//!
//! The client keeps connections alive (HTTP/1.1) and speaks HTTP/2 where
//! the server offers it by ALPN. `https://` goes through rustls with the
//! system's roots plus an operator's CA file (`--http-ca-file`); a
//! certificate that does not check out is a named, non-retryable failure.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tower::ServiceExt as _;
use tower::util::MapResponse;

/// How long connecting (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle kept-alive connection stays in the pool.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per origin; more are closed when they go idle.
pub const POOL_IDLE_PER_ORIGIN_MAX: usize = 64;
/// Entries of one allowlist (`--allow-host`, a tenant's `allowed_hosts`).
pub const ALLOWED_HOSTS_MAX: usize = 256;

/// Connections the process's outbound client opened, for `/metrics`.
static CONNECTIONS_OPENED: AtomicU64 = AtomicU64::new(0);

/// Outbound connections opened since the process started (a pooled
/// client opens few: one per origin and concurrent request, not one per
/// request).
pub fn connections_opened() -> u64 {
    CONNECTIONS_OPENED.load(Ordering::Relaxed)
}

fn count_connection(connection: TokioIo<TcpStream>) -> TokioIo<TcpStream> {
    CONNECTIONS_OPENED.fetch_add(1, Ordering::Relaxed);
    connection
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// A request body the outbound client sends.
pub type OutboundBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of bytes known up front.
pub fn full_body(bytes: impl Into<Bytes>) -> OutboundBody {
    use http_body_util::BodyExt as _;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

type CountingConnector = MapResponse<HttpConnector, fn(TokioIo<TcpStream>) -> TokioIo<TcpStream>>;

/// The process's outbound HTTP client. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct OutboundClient {
    client: Client<HttpsConnector<CountingConnector>, OutboundBody>,
}

/// Why the outbound client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(
        "cannot read the CA file {path}: {source}; give `--http-ca-file` a PEM file of CA certificates"
    )]
    CaFile {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the CA file {path} holds no certificate; it should hold PEM `CERTIFICATE` blocks")]
    CaFileEmpty { path: String },
    #[error("a certificate in the CA file {path} is not a usable CA: {source}")]
    CaCertificate {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("setting up TLS failed: {0}")]
    Tls(#[from] rustls::Error),
}

impl OutboundClient {
    /// A client that trusts the system's roots, plus the CA certificates in
    /// `ca_file` (PEM) when given.
    pub fn new(ca_file: Option<&Path>) -> Result<OutboundClient, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        let system = rustls_native_certs::load_native_certs();
        for error in &system.errors {
            tracing::debug!(%error, "a system root certificate could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(system.certs);
        tracing::debug!(added, ignored, "system root certificates");
        if let Some(path) = ca_file {
            let shown = path.display().to_string();
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsSetupError::CaFile {
                    path: shown.clone(),
                    source,
                })?;
            if certificates.is_empty() {
                return Err(TlsSetupError::CaFileEmpty { path: shown });
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|source| TlsSetupError::CaCertificate {
                        path: shown.clone(),
                        source,
                    })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let counting: CountingConnector = tcp.map_response(count_connection as fn(_) -> _);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(counting);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_ORIGIN_MAX)
            .build(connector);
        Ok(OutboundClient { client })
    }

    /// The one client of a process with one async runtime and no CA file of
    /// its own (the CLI's commands, `reprise bench`'s API client): built
    /// once, so the system roots are read once and connections are reused
    /// across requests. (Its connections belong to the runtime that opened
    /// them: a process with several runtimes, like the tests, makes its own.)
    pub fn for_this_process() -> Result<&'static OutboundClient, TlsSetupError> {
        static CLIENT: std::sync::OnceLock<OutboundClient> = std::sync::OnceLock::new();
        if let Some(client) = CLIENT.get() {
            return Ok(client);
        }
        let client = OutboundClient::new(None)?;
        Ok(CLIENT.get_or_init(|| client))
    }

    /// Sends `request` (an absolute URI) on a pooled connection. The
    /// response body streams; the connection goes back to the pool once it
    /// is read.
    pub async fn send(
        &self,
        request: Request<OutboundBody>,
    ) -> Result<Response<Incoming>, OutboundError> {
        let origin = request
            .uri()
            .authority()
            .map(|authority| authority.to_string())
            .unwrap_or_default();
        self.client
            .request(request)
            .await
            .map_err(|error| OutboundError::classify(origin, error))
    }
}

/// A URL scheme an allowlist entry may pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Scheme> {
        match text {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AllowedHost {
    /// `None`: either scheme.
    scheme: Option<Scheme>,
    /// Lowercase; IPv6 addresses keep their brackets.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<AllowedHost, InvalidAllowedHost> {
        let invalid = |why: &str| InvalidAllowedHost {
            entry: entry.to_string(),
            why: why.to_string(),
        };
        let lower = entry.trim().to_ascii_lowercase();
        let (scheme, rest) = match lower.split_once("://") {
            Some((scheme, rest)) => (
                Some(
                    Scheme::parse(scheme)
                        .ok_or_else(|| invalid("the scheme is not http or https"))?,
                ),
                rest,
            ),
            None => (None, lower.as_str()),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(invalid(
                "it names a path or credentials; name only the host",
            ));
        }
        let authority: http::uri::Authority = rest
            .parse()
            .map_err(|_| invalid("it is not a host or host:port"))?;
        if authority.host().is_empty() {
            return Err(invalid("it has no host"));
        }
        // `Authority` reads `host:notaport` as a host without a port.
        let written_port = match rest.strip_prefix(authority.host()) {
            Some("") => None,
            Some(port) => Some(
                port.strip_prefix(':')
                    .and_then(|port| port.parse::<u16>().ok())
                    .ok_or_else(|| invalid("the port is not a number from 0 to 65535"))?,
            ),
            None => return Err(invalid("it is not a host or host:port")),
        };
        let port = written_port.or(scheme.map(Scheme::default_port));
        Ok(AllowedHost {
            scheme,
            host: authority.host().to_string(),
            port,
        })
    }

    fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.scheme.is_none_or(|allowed| allowed == scheme)
            && self.host.eq_ignore_ascii_case(host)
            && self.port.is_none_or(|allowed| allowed == port)
    }
}

/// An allowlist entry that means nothing.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{entry}` is not an allowed host: {why} (write `host`, `host:port`, `https://host` or `https://host:port`)"
)]
pub struct InvalidAllowedHost {
    entry: String,
    why: String,
}

/// Hosts activities may call. An entry is `host` (any port, either
/// scheme), `host:port` (that port, either scheme), or `scheme://host[:port]`
/// (only that scheme, on that port or the scheme's default).
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    entries: Vec<AllowedHost>,
    /// The entries as written, for error messages.
    written: Vec<String>,
}

impl Allowlist {
    /// Parses entries as an operator or tenant wrote them.
    pub fn parse(
        entries: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Allowlist, InvalidAllowedHost> {
        let mut allowlist = Allowlist::default();
        for entry in entries {
            let entry = entry.as_ref();
            if allowlist.entries.len() == ALLOWED_HOSTS_MAX {
                return Err(InvalidAllowedHost {
                    entry: entry.to_string(),
                    why: format!("a list holds at most {ALLOWED_HOSTS_MAX} entries"),
                });
            }
            allowlist.entries.push(AllowedHost::parse(entry)?);
            allowlist.written.push(entry.to_string());
        }
        Ok(allowlist)
    }

    fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.allows(scheme, host, port))
    }
}

/// Checks `uri` (absolute) against the allowlist; returns the origin it
/// names (`host:port`).
pub fn check_target(allowlist: &Allowlist, uri: &http::Uri) -> Result<String, OutboundError> {
    let scheme = match uri.scheme_str() {
        Some(text) => {
            Scheme::parse(text).ok_or_else(|| OutboundError::UnsupportedScheme(text.to_string()))?
        }
        None => return Err(OutboundError::NoHost(uri.to_string())),
    };
    let host = uri
        .host()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| OutboundError::NoHost(uri.to_string()))?;
    let port = uri.port_u16().unwrap_or(scheme.default_port());
    if !allowlist.allows(scheme, host, port) {
        let allowed = if allowlist.written.is_empty() {
            "none".to_string()
        } else {
            allowlist.written.join(", ")
        };
        return Err(OutboundError::NotAllowed {
            target: format!("{}://{host}:{port}", uri.scheme_str().unwrap_or("http")),
            allowed,
        });
    }
    Ok(format!("{host}:{port}"))
}

/// What was wrong with a server's certificate or TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate does not name the host the URL names.
    NameMismatch,
    /// No trusted CA issued the certificate.
    UnknownAuthority,
    /// The certificate is expired or not valid yet.
    Expired,
    /// Any other certificate problem (revoked, bad signature, wrong use…).
    InvalidCertificate,
    /// The handshake failed for a reason other than the certificate.
    Handshake,
}

impl TlsFailure {
    /// The error type an activity attempt reports.
    pub fn error_type(self) -> &'static str {
        match self {
            TlsFailure::NameMismatch => "TlsCertificateNameMismatch",
            TlsFailure::UnknownAuthority => "TlsUnknownCertificateAuthority",
            TlsFailure::Expired => "TlsCertificateExpired",
            TlsFailure::InvalidCertificate => "TlsCertificateInvalid",
            TlsFailure::Handshake => "TlsHandshakeFailed",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            TlsFailure::NameMismatch => "the certificate is not valid for the URL's host name",
            TlsFailure::UnknownAuthority => {
                "the certificate was issued by a CA this host does not trust (an operator adds one with `--http-ca-file`)"
            }
            TlsFailure::Expired => "the certificate is expired or not valid yet",
            TlsFailure::InvalidCertificate => "the certificate was refused",
            TlsFailure::Handshake => "the TLS handshake failed",
        }
    }

    fn of(error: &rustls::Error) -> TlsFailure {
        use rustls::CertificateError;
        match error {
            rustls::Error::InvalidCertificate(certificate) => match certificate {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
                CertificateError::UnknownIssuer => TlsFailure::UnknownAuthority,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
                _ => TlsFailure::InvalidCertificate,
            },
            _ => TlsFailure::Handshake,
        }
    }
}

/// Why an outbound request did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(
        "{target} is not in the activity's allowed hosts ({allowed}); an operator adds it with `--allow-host` or the tenant's `allowed_hosts` limit"
    )]
    NotAllowed { target: String, allowed: String },
    #[error("only http:// and https:// URLs are supported, not {0}://")]
    UnsupportedScheme(String),
    #[error("the URL has no host: {0}")]
    NoHost(String),
    #[error("TLS with {origin} failed: {}: {detail}", failure.advice())]
    Tls {
        origin: String,
        failure: TlsFailure,
        detail: String,
    },
    #[error("connecting to {origin} timed out")]
    ConnectTimeout { origin: String },
    #[error("connecting to {origin} was refused")]
    ConnectionRefused { origin: String },
    #[error("connecting to {origin} failed: {}", chain(source))]
    Connect {
        origin: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("the HTTP exchange with {origin} failed: {}", chain(source))]
    Http {
        origin: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

/// An error and its causes on one line (the client's own message alone,
/// "client error (Connect)", says little).
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// The first error of `kind` in `error`'s chain, looking inside
/// `io::Error`s too (their `source()` skips the error they wrap).
fn find_in_chain<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = find_in_chain::<T>(inner)
        {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

impl OutboundError {
    fn classify(origin: String, error: hyper_util::client::legacy::Error) -> OutboundError {
        if let Some(tls) = find_in_chain::<rustls::Error>(&error) {
            return OutboundError::Tls {
                origin,
                failure: TlsFailure::of(tls),
                detail: tls.to_string(),
            };
        }
        if !error.is_connect() {
            return OutboundError::Http {
                origin,
                source: error,
            };
        }
        match find_in_chain::<std::io::Error>(&error).map(std::io::Error::kind) {
            Some(std::io::ErrorKind::TimedOut) => OutboundError::ConnectTimeout { origin },
            Some(std::io::ErrorKind::ConnectionRefused) => {
                OutboundError::ConnectionRefused { origin }
            }
            _ => OutboundError::Connect {
                origin,
                source: error,
            },
        }
    }

    /// Whether trying again may help: refusals by rule and certificate
    /// problems will not change by themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            OutboundError::NotAllowed { .. }
            | OutboundError::UnsupportedScheme(_)
            | OutboundError::NoHost(_)
            | OutboundError::Tls { .. } => false,
            OutboundError::ConnectTimeout { .. }
            | OutboundError::ConnectionRefused { .. }
            | OutboundError::Connect { .. }
            | OutboundError::Http { .. } => true,
        }
    }

    /// The error type an activity attempt reports.
    pub fn error_type(&self) -> &'static str {
        match self {
            OutboundError::NotAllowed { .. } => "HttpRequestDenied",
            OutboundError::UnsupportedScheme(_) | OutboundError::NoHost(_) => "InvalidHttpRequest",
            OutboundError::Tls { failure, .. } => failure.error_type(),
            OutboundError::ConnectTimeout { .. }
            | OutboundError::ConnectionRefused { .. }
            | OutboundError::Connect { .. }
            | OutboundError::Http { .. } => "HttpConnectionError",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowlist(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries).expect("valid entries")
    }

    fn allowed(list: &Allowlist, url: &str) -> bool {
        check_target(list, &url.parse().expect("a URL")).is_ok()
    }

    #[test]
    fn entries_pin_what_they_name_and_nothing_more() {
        let list = allowlist(&["localhost", "127.0.0.1:8080", "https://api.example.com"]);
        assert!(allowed(&list, "http://localhost:1/"));
        assert!(allowed(&list, "https://LOCALHOST:9443/x"));
        assert!(allowed(&list, "http://127.0.0.1:8080/"));
        assert!(allowed(&list, "https://127.0.0.1:8080/"));
        assert!(!allowed(&list, "http://127.0.0.1:8081/"));
        assert!(allowed(&list, "https://api.example.com/v1"));
        assert!(
            !allowed(&list, "http://api.example.com/v1"),
            "the entry pins https"
        );
        assert!(
            !allowed(&list, "https://api.example.com:8443/"),
            "the entry pins 443"
        );
        assert!(!allowed(&list, "ftp://localhost/"));
    }

    #[test]
    fn a_denied_target_names_itself_and_the_list() {
        let list = allowlist(&["https://127.0.0.1:9443"]);
        let error = check_target(&list, &"http://127.0.0.1:9443/".parse().expect("a URL"))
            .expect_err("the scheme differs");
        let message = error.to_string();
        assert!(message.contains("http://127.0.0.1:9443"), "{message}");
        assert!(message.contains("https://127.0.0.1:9443"), "{message}");
        assert!(!error.is_retryable());
    }

    #[test]
    fn entries_that_mean_nothing_are_refused_with_the_reason() {
        for (entry, reason) in [
            ("ftp://host", "scheme"),
            ("https://host/path", "path"),
            ("user@host", "credentials"),
            ("host:notaport", "port is not a number"),
            ("", "host"),
        ] {
            let error = Allowlist::parse([entry]).expect_err(entry).to_string();
            assert!(error.contains(reason), "{entry}: {error}");
        }
        let too_many: Vec<String> = (0..=ALLOWED_HOSTS_MAX).map(|n| format!("h{n}")).collect();
        assert!(Allowlist::parse(&too_many).is_err());
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused_by_name() {
        let missing = OutboundClient::new(Some(Path::new("/nonexistent/ca.pem")))
            .expect_err("no such file")
            .to_string();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        assert!(missing.contains("PEM"), "{missing}");

        let dir = tempfile::tempdir().expect("temp dir");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
        let empty = OutboundClient::new(Some(&not_pem))
            .expect_err("no certificate inside")
            .to_string();
        assert!(empty.contains("holds no certificate"), "{empty}");
    }
}
