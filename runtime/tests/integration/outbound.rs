//! Outbound HTTP for activities against a local TLS server with a test CA
//! (no traffic leaves the machine): the operator's CA is trusted, HTTP/2
//! is negotiated, calls share pooled connections (counted at the server),
//! and a certificate that does not check out fails at once with its name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reprise::activity::outbound::Allowlist;
use reprise::{ActivityConfig, Limits, RuntimeOptions};
use serde_json::{Value, json};

use crate::activities::call;
use crate::support::{Harness, completed_output};

/// What the server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    version: http::Version,
    path: String,
    idempotency_key: Option<String>,
}

/// An HTTPS server on 127.0.0.1 whose certificate names `localhost`,
/// issued by a CA made for the test. `POST /add-one` answers its JSON
/// number plus one; `POST /charges` answers a charge.
struct TlsServer {
    address: SocketAddr,
    ca_file: PathBuf,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    async fn start() -> TlsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Reprise test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");
        let ca_file = dir.path().join("test-ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA");

        let server_key = rcgen::KeyPair::generate().expect("server key");
        let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let connections = connections.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let acceptor = acceptor.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        let service = hyper::service::service_fn(move |request| {
                            answer(request, seen.clone())
                        });
                        let io = TokioIo::new(tls);
                        let _ = if h2 {
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(io, service)
                                .await
                        } else {
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await
                        };
                    });
                }
            })
        };
        TlsServer {
            address,
            ca_file,
            connections,
            seen,
            _dir: dir,
            task,
        }
    }

    fn port(&self) -> u16 {
        self.address.port()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

async fn answer(
    request: http::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<http::Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    seen.lock().expect("seen").push(Seen {
        version: parts.version,
        path: parts.uri.path().to_string(),
        idempotency_key: parts
            .headers
            .get("idempotency-key")
            .and_then(|key| key.to_str().ok())
            .map(str::to_string),
    });
    let answer = match parts.uri.path() {
        "/add-one" => {
            let number: u64 = serde_json::from_slice(&body).unwrap_or(0);
            json!(number + 1)
        }
        "/charges" => json!({ "charge_id": "ch_tls" }),
        _ => json!({ "error_type": "NotFound" }),
    };
    Ok(http::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .expect("response"))
}

async fn harness(allowed_hosts: &[String], http_ca_file: Option<PathBuf>) -> Harness {
    let config = ActivityConfig {
        allowed_hosts: Allowlist::parse(allowed_hosts).expect("a valid allowlist"),
        http_ca_file,
        ..ActivityConfig::default()
    };
    Harness::with_activity_config(Limits::default(), RuntimeOptions::default(), config).await
}

/// Twenty sequential `http` calls and a Wasm activity's `wasi:http` call
/// to an HTTPS origin signed by the operator's CA: all succeed, over one
/// pooled HTTP/2 connection.
#[tokio::test]
async fn https_calls_trust_the_operator_ca_and_share_one_http2_connection() {
    let server = TlsServer::start().await;
    let origin = format!("https://localhost:{}", server.port());
    let harness = harness(std::slice::from_ref(&origin), Some(server.ca_file.clone())).await;

    let chain = json!({ "steps": 20, "via_http": format!("{origin}/add-one") });
    let (_, outcome) = harness.run("bench", "tls-chain", &chain.to_string()).await;
    assert_eq!(completed_output(&outcome), json!(20));

    let order = json!({
        "order_id": "tls-1",
        "amount_cents": 500,
        "provider_url": origin,
        "charge_via": "wasm",
        "initial_interval_ms": 50,
    });
    let (_, outcome) = harness.run("order", "tls-order", &order.to_string()).await;
    assert_eq!(completed_output(&outcome)["charge_id"], "ch_tls");

    let seen = server.seen();
    assert_eq!(seen.len(), 21, "{seen:?}");
    assert!(
        seen.iter()
            .all(|request| request.version == http::Version::HTTP_2),
        "ALPN chose HTTP/2 for every request: {seen:?}"
    );
    let keys: std::collections::BTreeSet<_> = seen
        .iter()
        .filter_map(|request| request.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 21, "each call kept its own key: {keys:?}");
    assert!(keys.contains("charge-tls-1"));
    assert_eq!(seen[20].path, "/charges");
    assert_eq!(
        server.connections(),
        1,
        "the built-in and the Wasm activity's requests shared one pooled connection"
    );
}

/// A certificate for another name, one from a CA nobody trusts, and a
/// scheme the allowlist does not name: each fails its first attempt for
/// good, under a name that says which, and no request reaches the server.
#[tokio::test]
async fn certificates_that_do_not_check_out_fail_at_once_with_named_errors() {
    let server = TlsServer::start().await;
    let port = server.port();
    let add_one = |host: &str, scheme: &str| json!({ "method": "POST", "url": format!("{scheme}://{host}:{port}/add-one"), "body": 1 });

    let trusting = harness(
        &["localhost".to_string(), "127.0.0.1".to_string()],
        Some(server.ca_file.clone()),
    )
    .await;
    let wrong_name = call(
        &trusting,
        "tls-wrong-name",
        "http",
        add_one("127.0.0.1", "https"),
    )
    .await;
    assert_failed_once(&wrong_name, "TlsCertificateNameMismatch", "not valid for");

    let system_roots_only = harness(&["localhost".to_string()], None).await;
    let unknown_ca = call(
        &system_roots_only,
        "tls-unknown-ca",
        "http",
        add_one("localhost", "https"),
    )
    .await;
    assert_failed_once(
        &unknown_ca,
        "TlsUnknownCertificateAuthority",
        "--http-ca-file",
    );
    assert_eq!(server.connections(), 2, "one handshake each, no retries");

    let pinned = harness(&[format!("https://localhost:{port}")], None).await;
    let plain = call(&pinned, "tls-pinned", "http", add_one("localhost", "http")).await;
    assert_failed_once(
        &plain,
        "HttpRequestDenied",
        "not in the activity's allowed hosts",
    );
    assert_eq!(server.connections(), 2, "a denied request never connects");
    assert!(server.seen().is_empty(), "no request got through");
}

fn assert_failed_once(output: &Value, error_type: &str, message_part: &str) {
    let failed = &output["failed"];
    assert_eq!(failed["error_type"], error_type, "{output}");
    assert_eq!(failed["reason"], "FailureReason::NonRetryable", "{output}");
    assert_eq!(failed["attempts"], 1, "{output}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "{output}");
}
