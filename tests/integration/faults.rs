//! The binary under faults and hostile clients: a FIFO named as a key or
//! client file (at startup and at reload), revocation by an empty client
//! list, request bodies refused before they are read, and clients that
//! pipeline requests and never read the answers.
//!
//! Every wait is a bounded liveness limit, never a speed claim. All traffic
//! stays on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use macp_auth_service::clients::secret_digest_hex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Spawned, TempDir, binary, es256_ring, free_port, jwks_kids};

fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let _ = std::fs::remove_file(path);
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `name` is a valid NUL-terminated path for the call's duration.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

/// The exit status, if `child` exits within `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The kids the service publishes now.
async fn published_kids(service: &Spawned) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(service.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks_kids(&jwks)
}

/// The value of one series in a Prometheus exposition (0 when absent).
async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` every 50 ms until it holds; fails after 10 s with `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_fifo_named_as_the_key_or_client_file_stops_startup_at_once_with_one_line() {
    let dir = TempDir::new("faults-fifo");
    let fifo = dir.join("secret.json");
    make_fifo(&fifo);
    for variable in ["MACP_AUTH_SIGNING_KEY_FILE", "MACP_AUTH_CLIENTS_FILE"] {
        let mut child = binary()
            .env(variable, &fifo)
            .env("PORT", free_port().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Without the fix the open blocks until a writer appears: forever.
        let status = wait_with_deadline(&mut child, Duration::from_secs(10));
        if status.is_none() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(status.is_some(), "{variable}: startup hung on a FIFO");
        assert!(!output.status.success(), "{variable}: must not start");
        assert_eq!(stderr.lines().count(), 1, "{variable}: {stderr:?}");
        let expected = format!(
            "{variable} names {fifo:?}, which cannot be read: not a regular file (after following symlinks)"
        );
        assert!(stderr.contains(&expected), "{variable}: {stderr:?}");
    }
}

#[tokio::test]
async fn a_key_file_replaced_by_a_fifo_keeps_the_ring_and_the_service_answering() {
    let dir = TempDir::new("faults-fifo-reload");
    let path = dir.join("ring.json");
    std::fs::write(&path, es256_ring(&["first"])).unwrap();
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_SIGNING_KEY_FILE", path.display().to_string()),
        ("MACP_AUTH_KEY_POLL_SECONDS", "0".into()),
    ])
    .await;
    let base = service.base();
    make_fifo(&path);
    service.signal(libc::SIGHUP);
    let failed = r#"macp_auth_reloads_total{source="keys",result="failed"}"#;
    eventually("the reload of a FIFO is counted as failed", || async {
        metric(&base, failed).await == 1.0
    })
    .await;
    let healthz = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(published_kids(&service).await, ["first"], "the ring stays");
    let minted = reqwest::Client::new()
        .post(format!("{base}/tokens"))
        .json(&serde_json::json!({"sender": "agent://fifo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 200, "minting continues");
    // `stop` requires a clean exit on SIGTERM within the drain deadline.
    let log = service.stop().await;
    assert!(
        log.contains(&format!(
            "key ring reload (SIGHUP) failed, keeping the current ring: MACP_AUTH_SIGNING_KEY_FILE names {path:?}, which cannot be read: not a regular file"
        )),
        "{log}"
    );
}

/// The status of a mint with `secret` (none: no `Authorization`).
async fn mint_status(base: &str, secret: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/tokens"))
        .json(&serde_json::json!({"sender": "agent://team-a/risk"}));
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn writing_an_empty_client_list_revokes_every_client_and_keeps_authentication_on() {
    let dir = TempDir::new("faults-revoke");
    let path = dir.join("clients.json");
    let list = serde_json::json!([
        {"name": "control-plane", "secret_sha256": secret_digest_hex("s3cret"), "senders": ["agent://team-a/*"]}
    ]);
    std::fs::write(&path, list.to_string()).unwrap();
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_CLIENTS_FILE", path.display().to_string()),
        ("MACP_AUTH_KEY_POLL_SECONDS", "0".into()),
    ])
    .await;
    let base = service.base();
    assert_eq!(mint_status(&base, Some("s3cret")).await, 200);
    std::fs::write(&path, "[]").unwrap();
    service.signal(libc::SIGHUP);
    eventually("the leaked secret stops working", || async {
        mint_status(&base, Some("s3cret")).await == 401
    })
    .await;
    assert_eq!(mint_status(&base, None).await, 401, "never unauthenticated");
    let log = service.stop().await;
    let revoked = log
        .lines()
        .find(|line| line.contains("client list reloaded from"))
        .unwrap_or_else(|| panic!("no reload line:\n{log}"));
    assert!(revoked.contains("ERROR"), "{revoked}");
    assert!(
        revoked.contains("MACP_AUTH_CLIENTS_FILE lists no clients: every mint is refused with 401"),
        "{revoked}"
    );

    let report = binary()
        .arg("check-config")
        .env("MACP_AUTH_CLIENTS_JSON", "[]")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(
        stdout.contains("error: MACP_AUTH_CLIENTS_JSON lists no clients"),
        "{stdout}"
    );
}

/// Sends `request` on a fresh connection and returns what arrives before
/// the server has answered one response head (or closes), within 20 s.
async fn first_answer(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !received.windows(4).any(|window| window == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
            Err(_) => panic!("no answer within 20 s to {request:?}"),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn bodies_are_refused_before_they_are_read() {
    let list = serde_json::json!([
        {"name": "cp", "secret_sha256": secret_digest_hex("s3cret"), "senders": ["**"]}
    ]);
    // A request timeout far beyond the answers expected: a 408 instead of
    // the statuses below would mean the server waited for the body.
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_CLIENTS_JSON", list.to_string()),
        ("MACP_AUTH_REQUEST_TIMEOUT_SECONDS", "60".into()),
    ])
    .await;
    let addr = service.addr;
    let head = |extra: &str| {
        format!("POST /tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}\r\n")
    };
    let cases = [
        (
            "a declared 100 KB body",
            head("authorization: Bearer s3cret\r\ncontent-length: 102400\r\n"),
            "HTTP/1.1 413",
        ),
        (
            "no credentials, expecting 100-continue",
            head("expect: 100-continue\r\ncontent-length: 50\r\n"),
            "HTTP/1.1 401",
        ),
        (
            "unknown credentials, expecting 100-continue",
            head("authorization: Bearer wrong\r\nexpect: 100-continue\r\ncontent-length: 50\r\n"),
            "HTTP/1.1 401",
        ),
        (
            "a compressed body",
            head("authorization: Bearer s3cret\r\ntransfer-encoding: gzip, chunked\r\n"),
            "HTTP/1.1 501",
        ),
        // The control: with valid credentials the body is wanted, so the
        // client is told to send it.
        (
            "valid credentials, expecting 100-continue",
            head("authorization: Bearer s3cret\r\nexpect: 100-continue\r\ncontent-length: 50\r\n"),
            "HTTP/1.1 100 Continue",
        ),
    ];
    for (case, request, expected) in cases {
        let answer = first_answer(addr, &request).await;
        assert!(answer.starts_with(expected), "{case}: {answer:?}");
        if expected != "HTTP/1.1 100 Continue" {
            assert!(!answer.contains("HTTP/1.1 100"), "{case}: {answer:?}");
        }
    }
    service.stop().await;
}

/// A connection with a small receive buffer on which a background task
/// pipelines `requests` scrapes of `/metrics`; nothing reads the answers
/// until the caller does.
async fn never_reading(addr: SocketAddr, requests: usize) -> tokio::net::tcp::OwnedReadHalf {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let pipeline = "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(requests);
    tokio::spawn(async move {
        // Stops when the server stops reading, or fails when it closes.
        let _ = writer.write_all(pipeline.as_bytes()).await;
        // Dropping the writer would half-close the connection.
        std::future::pending::<()>().await;
        drop(writer);
    });
    reader
}

#[tokio::test]
async fn clients_that_never_read_are_cut_off_so_healthz_answers_at_the_connection_cap() {
    let service = Spawned::start(&[
        ("MACP_AUTH_SIGNING_ALG", "ES256".into()),
        ("MACP_AUTH_MAX_CONNECTIONS", "3".into()),
        ("MACP_AUTH_REQUEST_TIMEOUT_SECONDS", "1".into()),
        ("RUST_LOG", "warn".into()),
    ])
    .await;
    let addr = service.addr;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        // Megabytes of answers: far more than the socket buffers hold.
        stalled.push(never_reading(addr, 3_000).await);
    }
    // Every connection slot is taken by a client whose answers pile up
    // unread; this one waits in the backlog until the server gives up on
    // one of them.
    let answer = first_answer(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    for mut reader in stalled {
        let mut buffer = vec![0u8; 64 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the server closed the stalled connection");
    }
    service.stop().await;
}
