//! A hostile tenant against `reprise serve` over real HTTP: a stolen worker
//! token, slow and lying clients, compile bombs. The good tenant's server
//! stays ready and keeps its memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::hosting::Hosted;
use crate::server::{call, json_call};

/// A worker of tenant B that got hold of tenant A's task token cannot
/// report for it: the token is as unknown to B as a made-up one.
#[tokio::test]
async fn a_stolen_worker_token_is_unknown_to_another_tenant() {
    let hosted = Hosted::start(&[]).await;
    let acme = hosted.tenant("acme", json!({})).await;
    let globex = hosted.tenant("globex", json!({})).await;
    hosted.deploy(&acme, "patterns", Some("patterns")).await;
    let input =
        json!({ "mode": "call", "activity": "charge-external", "activity_input": { "cents": 5 } });
    let (status, started) = hosted
        .start_execution(&acme, "patterns", "charged", input)
        .await;
    assert_eq!(status, 201, "{started}");
    let poll = json!({ "activities": ["charge-external"], "wait_ms": 20000 });
    let (status, task) = json_call(
        hosted.address(),
        &acme,
        "POST",
        "/v1/activity-tasks/poll",
        poll,
    )
    .await;
    assert_eq!(status, 200, "{task}");
    let token = task["task_token"].as_str().expect("token").to_string();
    for route in ["complete", "fail", "heartbeat"] {
        let body = match route {
            "complete" => json!({ "output": { "forged_by": "globex" } }),
            "fail" => {
                json!({ "error_type": "Forged", "message": "by globex", "non_retryable": true })
            }
            _ => json!({}),
        };
        let (status, refused) = json_call(
            hosted.address(),
            &globex,
            "POST",
            &format!("/v1/activity-tasks/{token}/{route}"),
            body,
        )
        .await;
        assert_eq!(status, 404, "{route}: {refused}");
    }
    let (status, done) = json_call(
        hosted.address(),
        &acme,
        "POST",
        &format!("/v1/activity-tasks/{token}/complete"),
        json!({ "output": { "charged": 5 } }),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let finished = hosted.finished(&acme, "charged").await;
    assert_eq!(finished["result"], json!({ "output": { "charged": 5 } }));
}

/// Reads what the server sends until it closes the connection; the read
/// must end within `max`.
fn read_until_closed(stream: &mut TcpStream, max: Duration) -> String {
    stream.set_read_timeout(Some(max)).expect("read timeout");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) => panic!(
                "the server held the connection for {:?}: {error}",
                started.elapsed()
            ),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// A client that never finishes its head, one whose `Content-Length`
/// promises more than it sends, and one that opens more connections than
/// its share: each gets its connection closed in bounded time, and the
/// server stays ready for everyone else.
#[tokio::test]
async fn slow_and_lying_clients_are_cut_off_in_bounded_time() {
    let hosted = Hosted::start(&[
        "--header-read-timeout-ms",
        "500",
        "--body-read-timeout-ms",
        "500",
    ])
    .await;
    let key = hosted.tenant("acme", json!({})).await;
    let address = hosted.address().to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut slow_head = TcpStream::connect(&address).expect("connect");
        slow_head
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        read_until_closed(&mut slow_head, Duration::from_secs(10));

        let mut lying = TcpStream::connect(&address).expect("connect");
        let head = format!(
            "POST /v1/executions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        lying.write_all(head.as_bytes()).expect("write");
        let answer = read_until_closed(&mut lying, Duration::from_secs(10));
        answer.lines().next().unwrap_or_default().to_string()
    })
    .await
    .expect("join");
    assert!(outcome.starts_with("HTTP/1.1 4"), "{outcome}");
    let (status, ready) = json_call(hosted.address(), "", "GET", "/readyz", Value::Null).await;
    assert_eq!(status, 200, "{ready}");
}

/// A component of `functions` functions (a distinct one per `salt`, so no
/// cache answers for it) that exports nothing a workflow needs.
fn compile_bomb(functions: usize, salt: u128) -> Vec<u8> {
    let body = format!("(func (result i64) i64.const {})", salt as i64);
    let text = format!("(component (core module {}))", body.repeat(functions));
    wat::parse_str(text).expect("wat")
}

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Compile bombs from one tenant: a second upload while the first compiles
/// is refused with 429 naming `compilations_max`; the bombs compile in a
/// child process, so the server's memory stays where it was.
#[tokio::test]
async fn compile_bombs_neither_queue_up_nor_stay_in_memory() {
    let hosted = Hosted::start(&[]).await;
    let key = hosted.tenant("attacker", json!({})).await;
    let pid = hosted.server.child.id();
    let baseline = resident_bytes(pid);
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    let upload = |bytes: Vec<u8>| {
        let address = hosted.address().to_string();
        let key = key.clone();
        async move { call(&address, &key, "POST", "/v1/modules", Bytes::from(bytes)).await }
    };
    let first = tokio::spawn(upload(compile_bomb(40_000, salt)));
    // The second arrives while the first compiles (seconds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, refused) = upload(compile_bomb(40_000, salt + 1)).await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("compilations_max = 1"),
        "{refused}"
    );
    let (status, answer) = first.await.expect("join");
    assert_eq!(status, 400, "a bomb exports no entry point: {answer}");
    let (status, answer) = upload(compile_bomb(40_000, salt + 2)).await;
    assert_eq!(status, 400, "{answer}");
    let grown = resident_bytes(pid).saturating_sub(baseline);
    assert!(
        grown < 100 * 1024 * 1024,
        "the server kept {} MiB after the bombs",
        grown / (1024 * 1024)
    );
    let (status, _) = json_call(hosted.address(), "", "GET", "/readyz", Value::Null).await;
    assert_eq!(status, 200);
}

/// One address holds at most its share of connections (128 here): the
/// 129th is closed as soon as it is accepted, while the first ones stay
/// open; once they close, the address is served again.
#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let hosted = Hosted::start(&[
        "--header-read-timeout-ms",
        "20000",
        "--connections-per-peer-max",
        "128",
    ])
    .await;
    let address = hosted.address().to_string();
    let (admitted_open, refused_closed) = tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..128)
            .map(|_| TcpStream::connect(&address).expect("connect"))
            .collect();
        // Let the server accept them all before the one too many.
        std::thread::sleep(Duration::from_millis(300));
        let mut over = TcpStream::connect(&address).expect("connect");
        let closed_at_once = {
            over.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            matches!(over.read(&mut [0u8; 16]), Ok(0))
        };
        let mut first = held.first().expect("held").try_clone().expect("clone");
        first
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let still_open = matches!(
            first.read(&mut [0u8; 16]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock
                || error.kind() == std::io::ErrorKind::TimedOut
        );
        drop(held);
        (still_open, closed_at_once)
    })
    .await
    .expect("join");
    assert!(admitted_open, "an admitted connection stays open");
    assert!(refused_closed, "the 129th connection is closed at once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, ready) = json_call(hosted.address(), "", "GET", "/readyz", Value::Null).await;
    assert_eq!(status, 200, "{ready}");
}
