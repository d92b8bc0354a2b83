//! Failure drills: SIGTERM in the middle of mint load, three times the load
//! that saturates the signer, ten thousand malformed bodies, and floods of
//! unfinished headers and bodies measured against the memory bound.
//!
//! The drills assert outcomes, never speeds: every wait is a bounded liveness
//! limit, and the load they measure only sizes the load they offer. All
//! traffic stays on 127.0.0.1.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::router;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Spawned, config, oneshot, state_with};

/// The binary on a free loopback port, signing with `alg`; audit lines for
/// thousands of mints would only cost CPU here, so it logs warnings only.
async fn start_service(alg: &str) -> Spawned {
    start_service_with(alg, &[]).await
}

/// [`start_service`] with more variables.
async fn start_service_with(alg: &str, env: &[(&str, &str)]) -> Spawned {
    let mut all = vec![
        ("MACP_AUTH_SIGNING_ALG", alg.to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    all.extend(env.iter().map(|(name, value)| (*name, (*value).to_owned())));
    Spawned::start(&all).await
}

// ---------------------------------------------------------------------------
// Drill a: SIGTERM under mint load.
// ---------------------------------------------------------------------------

/// What became of one mint sent over its own connection.
#[derive(Debug)]
enum Outcome {
    /// A complete 200 with a token.
    Minted,
    /// A complete 503 with `Retry-After`: shed by a full queue.
    Shed,
    /// Refused at connect: the listener is closed.
    Refused,
    /// Anything else: reset, truncated, timed out or malformed.
    Failed(String),
}

/// The position of the blank line ending an HTTP head.
fn head_end(response: &[u8]) -> Option<usize> {
    response.windows(4).position(|window| window == b"\r\n\r\n")
}

/// Judges a response read to the end of its connection: a complete head, a
/// body of exactly its `content-length`, and the contract's JSON.
fn judge(response: &[u8]) -> Outcome {
    let Some(end) = head_end(response) else {
        return Outcome::Failed(format!(
            "the connection ended after {} bytes, before a complete response head: {:?}",
            response.len(),
            String::from_utf8_lossy(response)
        ));
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let body = &response[end + 4..];
    let status = head.get(9..12).unwrap_or("");
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(str::trim)
    };
    let Some(length) = header("content-length").and_then(|value| value.parse::<usize>().ok())
    else {
        return Outcome::Failed(format!("no content-length: {head:?}"));
    };
    if body.len() != length {
        return Outcome::Failed(format!(
            "truncated: {} of {length} body bytes; head {head:?}",
            body.len()
        ));
    }
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(err) => return Outcome::Failed(format!("body is not JSON ({err}): {head:?}")),
    };
    match status {
        "200" if json["token"].is_string() => Outcome::Minted,
        "503" if header("retry-after").is_some() && json["error"].is_string() => Outcome::Shed,
        _ => Outcome::Failed(format!("unexpected answer: {head:?} {json}")),
    }
}

/// One mint over a fresh connection (`connection: close`), so a refusal at
/// connect can be told from a connection dropped after the request was sent.
async fn mint_over_new_connection(addr: SocketAddr, n: usize) -> Outcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Outcome::Refused;
        }
        Err(err) => return Outcome::Failed(format!("connect failed: {err}")),
    };
    let body = format!(r#"{{"sender":"agent://drill/{n}"}}"#);
    let request = format!(
        "POST /tokens HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(err) = stream.write_all(request.as_bytes()).await {
        return Outcome::Failed(format!("connected, then writing the request failed: {err}"));
    }
    let mut response = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await {
        Err(_) => Outcome::Failed(format!(
            "request sent, no complete answer within 10 s ({} bytes)",
            response.len()
        )),
        Ok(Ok(_)) => judge(&response),
        Ok(Err(err)) => match judge(&response) {
            Outcome::Failed(why) => Outcome::Failed(format!("request sent, then {err}: {why}")),
            complete => complete,
        },
    }
}

#[derive(Debug, Default)]
struct Tally {
    minted_before_signal: usize,
    minted_after_signal: usize,
    shed: usize,
    refused_after_signal: usize,
    failures: Vec<String>,
}

/// Clients minting concurrently, each over a fresh connection per request.
const LOAD_WORKERS: usize = 16;

/// Shutdowns per drill: the moment a signal lands is a race, so the drill
/// signals a few services, with both algorithms.
const SIGTERM_ROUNDS: [&str; 3] = ["RS256", "ES256", "RS256"];

/// One service under mint load, signalled in the middle of it: what the
/// clients saw, and how the process ended.
async fn sigterm_round(alg: &'static str) -> (Tally, Result<ExitStatus, String>) {
    let mut service = start_service(alg).await;
    let addr = service.addr;
    let signalled = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));

    let workers: Vec<_> = (0..LOAD_WORKERS)
        .map(|worker| {
            let (signalled, stop, answered) = (signalled.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for n in (worker * 1_000_000).. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let after_signal = signalled.load(Ordering::SeqCst);
                    match mint_over_new_connection(addr, n).await {
                        Outcome::Minted if after_signal => tally.minted_after_signal += 1,
                        Outcome::Minted => tally.minted_before_signal += 1,
                        Outcome::Shed => tally.shed += 1,
                        Outcome::Refused if signalled.load(Ordering::SeqCst) => {
                            tally.refused_after_signal += 1;
                            break;
                        }
                        Outcome::Refused => {
                            tally
                                .failures
                                .push(format!("{alg}: refused before SIGTERM"));
                            break;
                        }
                        Outcome::Failed(why) => tally.failures.push(format!("{alg}: {why}")),
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                tally
            })
        })
        .collect();

    // Let the load run for a while, then signal in the middle of it.
    let start = Instant::now();
    while (answered.load(Ordering::SeqCst) < 100 || start.elapsed() < Duration::from_secs(1))
        && start.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signalled.store(true, Ordering::SeqCst);
    service.signal(libc::SIGTERM);
    let exit = service.wait_for_exit(Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);

    let mut total = Tally::default();
    for worker in workers {
        let tally = tokio::time::timeout(Duration::from_secs(15), worker)
            .await
            .expect("every load worker stops")
            .unwrap();
        total.add(tally);
    }
    let exit = match exit {
        Some(status) if status.success() => Ok(status),
        Some(status) => Err(format!(
            "{alg}: exit status {status:?} after SIGTERM:\n{}",
            service.log()
        )),
        None => Err(format!(
            "{alg}: the service did not exit within 10 s of SIGTERM:\n{}",
            service.log()
        )),
    };
    (total, exit)
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.minted_before_signal += other.minted_before_signal;
        self.minted_after_signal += other.minted_after_signal;
        self.shed += other.shed;
        self.refused_after_signal += other.refused_after_signal;
        self.failures.extend(other.failures);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_mint_load_answers_every_accepted_request_and_exits_zero() {
    let mut total = Tally::default();
    let mut exits = Vec::new();
    for alg in SIGTERM_ROUNDS {
        let (tally, exit) = sigterm_round(alg).await;
        eprintln!(
            "SIGTERM drill ({alg}): {} minted before the signal, {} after, {} shed, {} refused after the listener closed, {} failed",
            tally.minted_before_signal,
            tally.minted_after_signal,
            tally.shed,
            tally.refused_after_signal,
            tally.failures.len()
        );
        assert!(
            tally.minted_before_signal > 0,
            "{alg}: the load was running"
        );
        total.add(tally);
        exits.push(exit);
    }
    for exit in exits {
        if let Err(why) = exit {
            panic!("{why}");
        }
    }
    assert!(
        total.failures.is_empty(),
        "{} of {} accepted requests got no complete answer; first ones: {:#?}",
        total.failures.len(),
        total.minted_before_signal + total.minted_after_signal + total.shed + total.failures.len(),
        &total.failures[..total.failures.len().min(10)]
    );
}

// ---------------------------------------------------------------------------
// Drill b: three times the load that saturates the signer.
// ---------------------------------------------------------------------------

/// Counts from closed-loop mint load.
#[derive(Debug, Default)]
struct Load {
    minted: usize,
    shed: usize,
    failures: Vec<String>,
}

/// Judges one answer to a mint under load: 200 with a token, or a
/// deliberate 503 with `Retry-After` and the contract's error.
async fn judge_loaded(result: reqwest::Result<reqwest::Response>, load: &mut Load) {
    let response = match result {
        Ok(response) => response,
        Err(err) => {
            load.failures.push(format!("request failed: {err}"));
            return;
        }
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = match response.json().await {
        Ok(body) => body,
        Err(err) => {
            load.failures
                .push(format!("{status} with a body that is not JSON: {err}"));
            return;
        }
    };
    match status {
        200 if body["token"].is_string() => load.minted += 1,
        503 if retry_after.as_ref().is_some_and(|value| value == "1")
            && body["error"] == "the service is at capacity, retry shortly" =>
        {
            load.shed += 1;
        }
        _ => load
            .failures
            .push(format!("{status} {retry_after:?} {body}")),
    }
}

/// `concurrency` clients minting back to back for `window`.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    window: Duration,
) -> Load {
    let until = Instant::now() + window;
    let tasks: Vec<_> = (0..concurrency)
        .map(|client_index| {
            let client = client.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut load = Load::default();
                while Instant::now() < until {
                    let result = client
                        .post(&url)
                        .json(
                            &serde_json::json!({"sender": format!("agent://load/{client_index}")}),
                        )
                        .send()
                        .await;
                    judge_loaded(result, &mut load).await;
                }
                load
            })
        })
        .collect();
    let mut total = Load::default();
    for task in tasks {
        let load = task.await.unwrap();
        total.minted += load.minted;
        total.shed += load.shed;
        total.failures.extend(load.failures);
    }
    total
}

/// The window each step of the saturation measurement mints for.
const SATURATION_WINDOW: Duration = Duration::from_millis(400);

/// The concurrency past which more clients mint no more, and the most
/// requests one [`SATURATION_WINDOW`] completed.
async fn measure_saturation(client: &reqwest::Client, url: &str) -> (usize, usize) {
    let window = SATURATION_WINDOW;
    let mut measured = 1;
    let mut best = 0;
    for concurrency in [1, 2, 4, 8, 16, 32] {
        let load = closed_loop(client, url, concurrency, window).await;
        assert!(
            load.failures.is_empty(),
            "while measuring at {concurrency}: {:?}",
            &load.failures[..load.failures.len().min(10)]
        );
        let done = load.minted + load.shed;
        if done * 100 < best * 115 {
            break;
        }
        best = best.max(done);
        measured = concurrency;
    }
    (measured, best)
}

/// Polls `/healthz` on its own connection until `overloading` turns false;
/// returns the number of polls and what went wrong in any of them.
fn probe_health_while(
    overloading: Arc<AtomicBool>,
    health: String,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let (mut polls, mut failures) = (0usize, Vec::new());
        while overloading.load(Ordering::SeqCst) {
            polls += 1;
            match probe.get(&health).send().await {
                Ok(response) if response.status() == 200 => {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if body != serde_json::json!({"ok": true}) {
                        failures.push(format!("healthz body {body}"));
                    }
                }
                Ok(response) => failures.push(format!("healthz {}", response.status())),
                Err(err) => failures.push(format!("healthz failed: {err}")),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (polls, failures)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_times_the_saturating_load_is_served_or_shed_while_healthz_keeps_answering() {
    let mut service = start_service("RS256").await;
    let url = service.url("/tokens");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Saturation: the concurrency past which more clients mint no more.
    let window = SATURATION_WINDOW;
    let (measured, best) = measure_saturation(&client, &url).await;
    // The signer runs one thread per core, so fewer concurrent mints than
    // cores never saturate it; the measurement can come out lower when the
    // load generator competes for the same cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let saturation = measured.max(cores);
    let offered = 3 * saturation;

    // Liveness probe on its own connection, polled for the whole overload.
    let overloading = Arc::new(AtomicBool::new(true));
    let prober = probe_health_while(overloading.clone(), service.url("/healthz"));
    let load = closed_loop(&client, &url, offered, Duration::from_secs(3)).await;
    overloading.store(false, Ordering::SeqCst);
    let (polls, health_failures) = prober.await.unwrap();

    eprintln!(
        "overload drill: saturation measured at {measured} concurrent mints ({best} per {window:?}), taken as {saturation}; offered {offered}: {} minted, {} shed, {} failed; healthz polled {polls} times",
        load.minted,
        load.shed,
        load.failures.len()
    );
    assert!(
        load.failures.is_empty(),
        "{} answers were neither a token nor a deliberate 503: {:?}",
        load.failures.len(),
        &load.failures[..load.failures.len().min(10)]
    );
    assert!(load.minted > 0, "work still gets done under overload");
    assert!(polls > 0, "healthz was polled during the overload");
    assert!(
        health_failures.is_empty(),
        "healthz failed {} of {polls} polls: {:?}",
        health_failures.len(),
        &health_failures[..health_failures.len().min(10)]
    );

    service.signal(libc::SIGTERM);
    let exit = service.wait_for_exit(Duration::from_secs(10)).await;
    assert!(
        exit.is_some_and(|status| status.success()),
        "clean exit after the drill: {exit:?}"
    );
}

// ---------------------------------------------------------------------------
// Drill c: ten thousand malformed bodies through the router.
// ---------------------------------------------------------------------------

/// SplitMix64: a small seeded generator, so a failing body can be
/// regenerated from the seed the failure names.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const VALID: &[&str] = &[
    r#"{"sender":"agent://a"}"#,
    r#"{"sender":"agent://risk","scopes":{"can_start_sessions":true,"allowed_modes":["macp.mode.decision.v1"],"max_open_sessions":1},"ttl_seconds":600}"#,
    r#"{"sender":"  ünïcödé \u2028 ","scopes":{"n":[1.0,2.5,-0.0,1e2],"o":{"p":null}},"ttl_seconds":1.5}"#,
    r#"{"ttl_seconds":null,"scopes":{},"sender":"x"}"#,
];

/// JSON fragments of every type, for wrong-type members.
const FRAGMENTS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e308",
    "-0.0",
    "\"\"",
    "\" \"",
    "\"agent://a\"",
    "\"\\u0000\"",
    "[]",
    "[1,2]",
    "{}",
    "{\"a\":1}",
    "[[[]]]",
    "{\"sender\":\"a\"}",
];

const HUGE_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "1e-400",
    "1E+308",
    "1.7976931348623157e309",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "18446744073709551616",
    "-9223372036854775809",
    "4.9e-325",
    "0.000000000000000000000000000000000000000000000001",
];

const SYNTAX_ERRORS: &[&str] = &[
    r#"{"sender":"a",}"#,
    r#"{"sender":"a" "scopes":{}}"#,
    r#"{sender:"a"}"#,
    r#"{'sender':'a'}"#,
    r#"{"sender":"a"} // comment"#,
    r#"/* c */ {"sender":"a"}"#,
    r#"{"sender":"a","ttl_seconds":NaN}"#,
    r#"{"sender":"a","ttl_seconds":Infinity}"#,
    r#"{"sender":"a","ttl_seconds":-Infinity}"#,
    r#"{"sender":"a","ttl_seconds":01}"#,
    r#"{"sender":"a","ttl_seconds":+1}"#,
    r#"{"sender":"a","ttl_seconds":.5}"#,
    r#"{"sender":"a","ttl_seconds":1.}"#,
    r#"{"sender":"a","ttl_seconds":0x10}"#,
    r#"{"sender":"a","ttl_seconds":1e}"#,
    r#"{"sender":"a"}{"sender":"b"}"#,
    r#"{"sender":"a"},"#,
    r#"[{"sender":"a"}"#,
    r#"{"sender":"a\x41"}"#,
    r#"{"sender":"\ud800"}"#,
    r#"{"sender":"\udc00x"}"#,
    r#"{"sender":"\ud800\u0041"}"#,
    r#"{"sender":"\u12"}"#,
    r#"{"sender":"\"}"#,
    r#"{"sender":undefined}"#,
    r#"{"sender":"a","scopes":{1:2}}"#,
    r#"{"sender":"a"}]"#,
    r#"{"sender":"a",,"scopes":{}}"#,
];

/// Wraps `inner` in `depth` levels of arrays, objects, or both (alternating,
/// starting with an array). Built from repeated strings rather than a
/// character at a time: bodies nest up to 50,000 deep, and this runs in a
/// debug build.
fn nested(rng: &mut Rng, depth: usize, inner: &str, closed: bool) -> String {
    let (open, close, odd_open, odd_close) = match rng.below(3) {
        0 => ("[", "]", "", ""),
        1 => ("{\"a\":", "}", "", ""),
        // Pairs of levels, plus a lone array level when the depth is odd.
        _ => ("[{\"a\":", "}]", "[", "]"),
    };
    let (repeats, odd) = if odd_open.is_empty() {
        (depth, false)
    } else {
        (depth / 2, depth % 2 == 1)
    };
    let mut text = open.repeat(repeats);
    if odd {
        text.push_str(odd_open);
    }
    text.push_str(inner);
    if closed {
        if odd {
            text.push_str(odd_close);
        }
        text.push_str(&close.repeat(repeats));
    }
    text
}

/// Places `value` where a member or the whole body would be.
fn placed(rng: &mut Rng, value: &str) -> String {
    match rng.below(5) {
        0 => value.to_owned(),
        1 => format!(r#"{{"sender":"agent://a","scopes":{{"deep":{value}}}}}"#),
        2 => format!(r#"{{"sender":{value}}}"#),
        3 => format!(r#"{{"sender":"agent://a","ttl_seconds":{value}}}"#),
        _ => format!(r#"{{"sender":"agent://a","unknown":{value}}}"#),
    }
}

/// One malformed (or oddly valid) body of the given kind.
fn malformed_body(rng: &mut Rng, kind: usize) -> Vec<u8> {
    match kind {
        // Valid requests cut short.
        0 => {
            let valid = rng.pick(VALID).as_bytes();
            valid[..rng.below(valid.len())].to_vec()
        }
        // Every member with every wrong type.
        1 => format!(
            r#"{{"sender":{},"scopes":{},"ttl_seconds":{}}}"#,
            rng.pick(FRAGMENTS),
            rng.pick(FRAGMENTS),
            rng.pick(FRAGMENTS)
        )
        .into_bytes(),
        // Nesting around serde_json's recursion limit (128) and far beyond.
        2 => {
            let depth = *rng.pick(&[
                1usize, 64, 126, 127, 128, 129, 130, 200, 1_000, 10_000, 20_000, 30_000,
            ]);
            let closed = rng.chance(80);
            let leaf = rng_leaf(rng);
            let value = nested(rng, depth, leaf, closed);
            placed(rng, &value).into_bytes()
        }
        // Numbers out of every range.
        3 => {
            let number = match rng.below(4) {
                0 => rng.pick(HUGE_NUMBERS).to_string(),
                1 => format!("1{}", "0".repeat(rng.below(5_000))),
                2 => format!("0.{}1", "0".repeat(rng.below(5_000))),
                _ => "9".repeat(1 + rng.below(1_000)),
            };
            placed(rng, &number).into_bytes()
        }
        // Invalid UTF-8 inside strings and keys.
        4 => {
            let bad: &[&[u8]] = &[
                b"\xff",
                b"\xc0\xaf",
                b"\xed\xa0\x80",
                b"\xe2\x82",
                b"\xf4\x90\x80\x80",
                b"\x80",
                b"\xfe\xfe",
            ];
            let bad = *rng.pick(bad);
            match rng.below(3) {
                0 => [
                    br#"{"sender":"agent://"#.as_slice(),
                    bad,
                    br#""}"#.as_slice(),
                ]
                .concat(),
                1 => [
                    br#"{"sender":"a","scopes":{""#.as_slice(),
                    bad,
                    br#"":1}}"#.as_slice(),
                ]
                .concat(),
                _ => [br#"{"sen"#.as_slice(), bad, br#"der":"a"}"#.as_slice()].concat(),
            }
        }
        // Duplicate keys, a few or very many.
        5 => {
            let member = format!(
                r#""{}":{}"#,
                rng.pick(&["sender", "scopes", "ttl_seconds"]),
                rng.pick(FRAGMENTS)
            );
            let many = rng.chance(10);
            let repeats = 1 + rng.below(if many { 2_000 } else { 4 });
            let mut members = vec![r#""sender":"agent://dup""#.to_owned()];
            members.extend(std::iter::repeat_n(member, repeats));
            if rng.chance(50) {
                members.reverse();
            }
            format!("{{{}}}", members.join(",")).into_bytes()
        }
        // Byte-order marks, UTF-8 and UTF-16, before or inside the JSON.
        6 => {
            let valid = rng.pick(VALID);
            match rng.below(4) {
                0 => [b"\xef\xbb\xbf".as_slice(), valid.as_bytes()].concat(),
                1 => {
                    let mut bytes = vec![0xff, 0xfe];
                    for unit in valid.encode_utf16() {
                        bytes.extend_from_slice(&unit.to_le_bytes());
                    }
                    bytes
                }
                2 => {
                    let mut bytes = vec![0xfe, 0xff];
                    for unit in valid.encode_utf16() {
                        bytes.extend_from_slice(&unit.to_be_bytes());
                    }
                    bytes
                }
                _ => r#"{"sender":"a"}"#.replacen(':', ":\u{feff}", 1).into_bytes(),
            }
        }
        // Near-miss syntax, escapes and literals.
        7 => rng.pick(SYNTAX_ERRORS).as_bytes().to_vec(),
        // Control characters and NUL, raw inside strings or around the JSON.
        8 => {
            let byte = [rng.below(32) as u8];
            match rng.below(3) {
                0 => [br#"{"sender":"a"#.as_slice(), &byte, br#"b"}"#.as_slice()].concat(),
                1 => [byte.as_slice(), br#"{"sender":"a"}"#.as_slice()].concat(),
                _ => [br#"{"sender":"a"}"#.as_slice(), &byte].concat(),
            }
        }
        // Random bytes.
        9 => {
            let length = rng.below(2_000);
            (0..length).map(|_| rng.next() as u8).collect()
        }
        // A valid request with a few bytes flipped, inserted or deleted.
        10 => {
            let mut bytes = rng.pick(VALID).as_bytes().to_vec();
            for _ in 0..1 + rng.below(5) {
                let at = rng.below(bytes.len().max(1));
                match rng.below(3) {
                    0 if !bytes.is_empty() => bytes[at] = rng.next() as u8,
                    1 => bytes.insert(at.min(bytes.len()), rng.next() as u8),
                    _ if !bytes.is_empty() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            bytes
        }
        // Empty, blank, padded, and over the size limit.
        11 => match rng.below(5) {
            0 => Vec::new(),
            1 => " \t\r\n".repeat(1 + rng.below(1_000)).into_bytes(),
            2 => format!(
                "{}{}{}",
                " ".repeat(rng.below(30_000)),
                rng.pick(VALID),
                "\n".repeat(rng.below(30_000))
            )
            .into_bytes(),
            3 => {
                let mut body = br#"{"sender":"a","scopes":{"pad":""#.to_vec();
                body.resize(64 * 1024 + 1 + rng.below(4_096), b'x');
                body.extend_from_slice(br#""}}"#);
                body
            }
            _ => nested(rng, 50_000, "", true).into_bytes(),
        },
        // Odd but valid requests, so the drill also mints.
        _ => {
            let sender: String = (0..1 + rng.below(20))
                .map(|_| char::from_u32(0x20 + rng.below(0x2_0000) as u32).unwrap_or('x'))
                .collect();
            let depth = rng.below(120);
            let scopes = format!(
                r#"{{"deep":{},"big":{}}}"#,
                nested(rng, depth, "1.0", true),
                rng.pick(&HUGE_NUMBERS[5..])
            );
            let mut body = serde_json::json!({"sender": format!("agent://{sender}")}).to_string();
            body.pop();
            body.push_str(&format!(r#","scopes":{scopes}}}"#));
            body.into_bytes()
        }
    }
}

/// What the innermost level of a nested value holds.
const LEAVES: &[&str] = &["1", "\"x\"", "null", "3.0", "[]", "{}", ""];

fn rng_leaf(rng: &mut Rng) -> &'static str {
    rng.pick::<&str>(LEAVES)
}

const MALFORMED_KINDS: usize = 13;
const MALFORMED_BODIES: usize = 10_000;

/// A body as it should appear in a failure report.
fn preview(body: &[u8]) -> String {
    let shown = &body[..body.len().min(160)];
    format!(
        "{} bytes: \"{}\"{}",
        body.len(),
        shown.escape_ascii(),
        if body.len() > shown.len() { "..." } else { "" }
    )
}

#[tokio::test]
async fn ten_thousand_malformed_bodies_get_json_answers_and_never_a_5xx_or_a_panic() {
    let seed = std::env::var("MACP_DRILL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = Rng(seed);
    let state = state_with(config(SigningAlg::Es256));
    let app = router(state);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut failures = Vec::new();
    for index in 0..MALFORMED_BODIES {
        let kind = index % MALFORMED_KINDS;
        let body = malformed_body(&mut rng, kind);
        let request = Request::post("/tokens")
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap();
        let app = app.clone();
        // Each request runs as its own task, so a panic is caught and named.
        let answered = tokio::spawn(async move {
            let (status, headers, bytes) = oneshot(&app, request).await;
            (status, headers.get("content-type").cloned(), bytes)
        })
        .await;
        let (status, content_type, bytes) = match answered {
            Ok(answer) => answer,
            Err(err) => {
                failures.push(format!("kind {kind}: {err} for {}", preview(&body)));
                continue;
            }
        };
        *statuses.entry(status.as_u16()).or_default() += 1;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        let fine = match (&json, status) {
            (_, status) if status.is_server_error() => false,
            (Some(json), StatusCode::OK) => json["token"].is_string(),
            (Some(json), status) if status.is_client_error() => {
                json.as_object().map(|object| object.len()) == Some(1) && json["error"].is_string()
            }
            _ => false,
        } && content_type.is_some_and(|value| value == "application/json");
        if !fine {
            failures.push(format!(
                "kind {kind}: {status} {:?} for {}",
                String::from_utf8_lossy(&bytes),
                preview(&body)
            ));
        }
    }
    eprintln!("malformed-body drill (seed {seed}): statuses {statuses:?}");
    assert!(
        failures.is_empty(),
        "{} of {MALFORMED_BODIES} bodies (seed {seed}, rerun with MACP_DRILL_SEED={seed}) got a 5xx, a panic or a non-JSON answer; first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );

    // The service is still whole afterwards.
    let request = Request::post("/tokens")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"sender":"agent://after-the-drill"}"#))
        .unwrap();
    assert_eq!(oneshot(&app, request).await.0, StatusCode::OK);
}

// ---------------------------------------------------------------------------
// Drill d: floods of unfinished headers and bodies, against the memory bound.
// ---------------------------------------------------------------------------

/// Connections each flood holds open: a quarter of the default cap (4096).
const FLOOD_CONNECTIONS: usize = 1_000;

/// Opens `count` connections, writes `payload` on each and holds them open.
/// A write the server cuts short by answering and closing is fine.
async fn hold_connections(addr: SocketAddr, count: usize, payload: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(payload).await;
        held.push(stream);
    }
    held
}

/// `/healthz` answers 200 while the flood holds its connections: they were
/// all accepted before it (the backlog is first in, first out).
async fn healthz_answers(service: &Spawned) {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = probe.get(service.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Memory held per flooding connection, in KiB, and its projection to the
/// default cap, in MiB.
fn per_connection(idle: u64, flooded: u64) -> (u64, u64) {
    let each = flooded
        .saturating_sub(idle)
        .div_ceil(FLOOD_CONNECTIONS as u64);
    (each, (idle + each * 4096).div_ceil(1024))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_headers_holds_at_most_the_bounded_buffer_per_connection() {
    let service =
        start_service_with("ES256", &[("MACP_AUTH_HEADER_READ_TIMEOUT_SECONDS", "120")]).await;
    let idle = service.settled_rss_kib().await;
    // 15 KiB of a head that never ends: just under the 16 KiB head limit,
    // the most a connection can make the service hold.
    let mut head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ".to_vec();
    head.resize(15 * 1024, b'a');
    let held = hold_connections(service.addr, FLOOD_CONNECTIONS, &head).await;
    healthz_answers(&service).await;
    let flooded = service.settled_rss_kib().await;

    // One byte more than the limit is answered 431, before any route runs.
    let mut oversized = TcpStream::connect(service.addr).await.unwrap();
    let mut big = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ".to_vec();
    big.resize(16 * 1024 + 1, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    oversized.write_all(&big).await.unwrap();
    let mut answer = vec![0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), oversized.read(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    drop(held);

    let (each, at_cap) = per_connection(idle, flooded);
    eprintln!(
        "header flood drill: {FLOOD_CONNECTIONS} connections x 15 KiB unfinished heads: RSS {idle} KiB idle, {flooded} KiB flooded, {each} KiB per connection; projected at 4096 connections: {at_cap} MiB"
    );
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // The read buffer is capped at 16 KiB; the rest is the connection's
    // task, hyper's state and allocator slack. hyper's default buffer
    // (about 400 KB) would let each connection hold twelve times this.
    assert!(
        each <= 32,
        "{each} KiB per connection: more than the 16 KiB buffer and 16 KiB of state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_bodies_holds_at_most_one_body_per_connection() {
    // 60 KiB of a body declared as 64 KiB, the most that is read, which
    // never finishes.
    let mut payload = b"POST /tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 65536\r\n\r\n{\"sender\":\"".to_vec();
    payload.resize(payload.len() + 60 * 1024, b'a');
    let clients = serde_json::json!([{
        "name": "flooder",
        "secret_sha256": macp_auth_service::clients::secret_digest_hex("flood-secret"),
        "senders": ["**"],
    }])
    .to_string();
    let mut figures = Vec::new();
    for (case, client_list) in [
        ("without a client list", false),
        ("with a client list, no credentials", true),
    ] {
        let mut env = vec![("MACP_AUTH_REQUEST_TIMEOUT_SECONDS", "120")];
        if client_list {
            env.push(("MACP_AUTH_CLIENTS_JSON", clients.as_str()));
        }
        let service = start_service_with("ES256", &env).await;
        let idle = service.settled_rss_kib().await;
        let held = hold_connections(service.addr, FLOOD_CONNECTIONS, &payload).await;
        healthz_answers(&service).await;
        let flooded = service.settled_rss_kib().await;
        drop(held);
        let (each, at_cap) = per_connection(idle, flooded);
        eprintln!(
            "body flood drill, {case}: {FLOOD_CONNECTIONS} connections x 60 KiB of a 64 KiB body: RSS {idle} KiB idle, {flooded} KiB flooded, {each} KiB per connection; projected at 4096 connections: {at_cap} MiB"
        );
        figures.push(each);
    }
    // Read bodies: the 64 KiB limit plus the 16 KiB read buffer and state.
    assert!(figures[0] <= 112, "{} KiB per connection", figures[0]);
    // Refused before reading: no body is ever held.
    assert!(figures[1] <= 32, "{} KiB per connection", figures[1]);
}
