//! Abuse (issue 10, item 7): every limit of README "Limits" under a flood, against one real
//! `earshot` process. Each abuse must get its documented error, leave `/healthz` and a normal
//! admin request answering while it lasts, and leave the server's resident memory and open
//! descriptors (`/proc/<pid>`) back near where they were before it. The figures are printed.

mod support;

use futures_util::future::join_all;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::probe::Usage;
use support::sdp::OFFER;
use support::{ADMIN_TOKEN, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT_SECS: u64 = 2;
const BODY_TIMEOUT_SECS: u64 = 2;
const MAX_BODY_BYTES: usize = 64 * 1024;
const OFFERS_PER_INVITE: usize = 3;
const OFFERS_PER_ADDRESS: usize = 20;
const MAX_SESSIONS: usize = 3;
const MONITORS_PER_SESSION: usize = 5;
const MONITORS: usize = 8;
/// Silent connections opened at once: more than a 256-descriptor limit.
const SILENT: usize = 300;
/// How far above its level before an abuse the server may stay once the abuse is over.
const FD_MARGIN: usize = 4;
const RSS_MARGIN_KIB: u64 = 3 * 1024;

fn limits_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "EARSHOT_LIMITS_HEADER_TIMEOUT_SECS",
            HEADER_TIMEOUT_SECS.to_string(),
        ),
        (
            "EARSHOT_LIMITS_BODY_TIMEOUT_SECS",
            BODY_TIMEOUT_SECS.to_string(),
        ),
        ("EARSHOT_LIMITS_MAX_BODY_BYTES", MAX_BODY_BYTES.to_string()),
        (
            "EARSHOT_LIMITS_WHIP_OFFERS_PER_INVITE_PER_MINUTE",
            OFFERS_PER_INVITE.to_string(),
        ),
        (
            "EARSHOT_LIMITS_WHIP_OFFERS_PER_ADDRESS_PER_MINUTE",
            OFFERS_PER_ADDRESS.to_string(),
        ),
        ("EARSHOT_LIMITS_MAX_SESSIONS", MAX_SESSIONS.to_string()),
        (
            "EARSHOT_LIMITS_MAX_MONITORS_PER_SESSION",
            MONITORS_PER_SESSION.to_string(),
        ),
        ("EARSHOT_LIMITS_MAX_MONITORS", MONITORS.to_string()),
        // No recordings: the sessions here never connect, and finalizing is not under test.
        ("EARSHOT_RECORDING_ENABLED", "false".into()),
    ]
}

async fn start(nofile: Option<u64>) -> Server {
    let env = limits_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match nofile {
        Some(n) => Server::start_with_nofile(&env, n).await,
        None => Server::start(&env).await,
    }
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// `/healthz` and a normal admin request answer, each on a fresh connection.
async fn assert_serving(server: &Server, phase: &str) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let r = http.get(server.url("/healthz")).send().await;
    let status = r.map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(200)), "{phase}: /healthz: {status:?}");
    let r = http
        .get(server.url("/v1/sessions?limit=1"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await;
    let status = r.map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(200)),
        "{phase}: session list: {status:?}"
    );
}

/// Waits until the server's descriptors and memory are back near `before` (the abuse is
/// over), printing them with the peak `sampler` saw; fails if they stay above it.
async fn assert_recovers(server: &Server, phase: &str, before: Usage, sampler: Sampler) {
    let peak = sampler.peak().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = Usage::of(server.pid());
        let fds_ok = now.fds <= before.fds + FD_MARGIN;
        let rss_ok = now.rss_kib <= before.rss_kib + RSS_MARGIN_KIB;
        if (fds_ok && rss_ok) || Instant::now() > deadline {
            eprintln!("{phase:<24} before {before} | during {peak} | after {now}");
            assert!(
                fds_ok,
                "{phase}: {} fds before, {} after",
                before.fds, now.fds
            );
            assert!(
                rss_ok,
                "{phase}: RSS {} KiB before, {} KiB after",
                before.rss_kib, now.rss_kib
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The highest readings of the server while an abuse runs, sampled every 10 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Usage>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = Usage::of(pid);
            while !flag.load(Ordering::Relaxed) {
                let now = Usage::of(pid);
                peak = Usage {
                    rss_kib: peak.rss_kib.max(now.rss_kib),
                    fds: peak.fds.max(now.fds),
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        });
        Sampler { stop, task }
    }

    async fn peak(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler")
    }
}

/// Reads until the peer closes; `Some(what was read)`, or `None` if still open at `within`.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

async fn consented(server: &Server) -> (String, String) {
    let (token, _) = server.invite().await;
    let r = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/consent")))
        .json(&json!({"accept": true}))
        .send()
        .await
        .expect("consent");
    let v: Value = r.json().await.expect("json");
    (token, v["session_id"].as_str().expect("id").to_string())
}

/// A WHIP offer: (status, error code, Retry-After).
async fn offer(server: &Server, token: &str) -> (u16, Option<String>, Option<u64>) {
    let r = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/whip")))
        .header(CONTENT_TYPE, "application/sdp")
        .body(OFFER)
        .send()
        .await
        .expect("offer");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let code = r
        .json::<Value>()
        .await
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(String::from));
    (status, code, retry)
}

async fn end_session(server: &Server, id: &str) {
    let r = server
        .admin(
            server
                .http
                .post(server.url(&format!("/v1/sessions/{id}/end"))),
        )
        .send()
        .await
        .expect("end");
    assert_eq!(r.status(), 200, "ending {id}");
}

/// 300 TCP connections that never send a byte, and one kept alive after a request: the
/// server keeps serving while they are open and closes them all after the header timeout.
/// `first`: the server's first flood of connections, whose memory the allocator may keep
/// (its high-water mark: about 10 KiB per connection served at once); its descriptors must
/// come back, and the next flood must not add memory.
async fn silent_connections(server: &Server, phase: &str, first: bool) {
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let mut conns = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        conns.push(TcpStream::connect(addr(server)).await.expect("connect"));
    }
    let mut kept = TcpStream::connect(addr(server)).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "keep-alive request");
    let mut during = Usage::of(pid);
    for _ in 0..20 {
        if during.fds >= before.fds + SILENT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        during = Usage::of(pid);
    }
    assert!(
        during.fds >= before.fds + SILENT,
        "the server holds the silent connections: {during}"
    );
    assert_serving(server, phase).await;
    let within = Duration::from_secs(HEADER_TIMEOUT_SECS + 5);
    let started = Instant::now();
    for (i, mut c) in conns.into_iter().enumerate() {
        let left = within.saturating_sub(started.elapsed());
        assert!(
            read_to_close(&mut c, left).await.is_some(),
            "silent connection {i} still open after {within:?}"
        );
    }
    assert!(
        read_to_close(&mut kept, within).await.is_some(),
        "idle kept-alive connection still open"
    );
    eprintln!(
        "{SILENT} silent connections closed by the server {:.1} s after the last opened",
        started.elapsed().as_secs_f64()
    );
    if first {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut now = Usage::of(pid);
        while now.fds > before.fds + FD_MARGIN && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            now = Usage::of(pid);
        }
        let peak = sampler.peak().await;
        eprintln!("{phase:<24} before {before} | during {peak} | after {now} (memory may stay)");
        assert!(
            now.fds <= before.fds + FD_MARGIN,
            "{phase}: {before} -> {now}"
        );
        return;
    }
    assert_recovers(server, phase, before, sampler).await;
}

/// Request heads sent one byte at a time (slowloris): closed at the header timeout however
/// steadily the bytes come.
async fn dribbled_heads(server: &Server) {
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let n = 50;
    let clients = (0..n).map(|_| {
        let addr = addr(server);
        async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut rx, mut tx) = stream.into_split();
            let started = Instant::now();
            let writer = tokio::spawn(async move {
                let _ = tx.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ").await;
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if tx.write_all(b"a").await.is_err() {
                        break;
                    }
                }
            });
            let mut buf = [0u8; 256];
            let closed = tokio::time::timeout(Duration::from_secs(15), async {
                while let Ok(n) = rx.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await
            .is_ok();
            writer.abort();
            closed.then(|| started.elapsed())
        }
    });
    let flood = tokio::spawn(join_all(clients));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_serving(server, "dribbled heads").await;
    let times = flood.await.expect("clients");
    let latest = times
        .iter()
        .map(|t| t.expect("a dribbling connection was never closed"))
        .max()
        .expect("clients");
    assert!(
        latest < Duration::from_secs(HEADER_TIMEOUT_SECS + 2),
        "closed after {latest:?}"
    );
    assert_recovers(server, "dribbled heads", before, sampler).await;
}

/// Endless request heads sent fast: each is cut off at 64 KiB (`431`), so a flood of them
/// cannot make the server buffer hundreds of KiB per connection.
async fn huge_heads(server: &Server) {
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let filler = std::sync::Arc::new(format!("x-filler: {}\r\n", "a".repeat(1000)).repeat(200));
    let clients = (0..50).map(|_| {
        let (addr, filler) = (addr(server), filler.clone());
        async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut rx, mut tx) = stream.into_split();
            let writer = tokio::spawn(async move {
                if tx.write_all(b"GET /healthz HTTP/1.1\r\n").await.is_ok() {
                    let _ = tx.write_all(filler.as_bytes()).await;
                }
            });
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), rx.read_to_end(&mut got)).await;
            writer.abort();
            String::from_utf8_lossy(&got).into_owned()
        }
    });
    let flood = tokio::spawn(join_all(clients));
    assert_serving(server, "huge heads").await;
    for answer in flood.await.expect("clients") {
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    }
    assert_recovers(server, "huge heads", before, sampler).await;
}

/// Request bodies that stop arriving: `408 body_timeout` after the body timeout.
async fn stalled_bodies(server: &Server) {
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let (token, _) = server.invite().await;
    let head = format!(
        "POST /v1/invites/{token}/consent HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"acc"
    );
    let clients = (0..50).map(|_| {
        let (addr, head) = (addr(server), head.clone());
        async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(head.as_bytes()).await.expect("write");
            read_to_close(&mut s, Duration::from_secs(BODY_TIMEOUT_SECS + 5)).await
        }
    });
    let flood = tokio::spawn(join_all(clients));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_serving(server, "stalled bodies").await;
    for answer in flood.await.expect("clients") {
        let answer = answer.expect("a stalled body was never answered");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"body_timeout\""), "{answer}");
    }
    assert_recovers(server, "stalled bodies", before, sampler).await;
}

/// Bodies over the size limit: `413 body_too_large`, a short error, nothing buffered. Sent
/// by hand: the server answers as soon as it sees the length and stops reading, so a client
/// must read the answer while it is still sending (reqwest gives up on the write error).
async fn oversized_bodies(server: &Server) {
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let (token, _) = server.invite().await;
    let body = std::sync::Arc::new(vec![b'x'; 1 << 20]);
    let clients = (0..40).map(|i| {
        let head = if i % 2 == 0 {
            format!(
                "POST /v1/scripts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
        } else {
            format!(
                "POST /v1/invites/{token}/consent HTTP/1.1\r\nhost: x\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
        };
        let (addr, body) = (addr(server), body.clone());
        async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut rx, mut tx) = stream.into_split();
            let writer = tokio::spawn(async move {
                if tx.write_all(head.as_bytes()).await.is_ok() {
                    let _ = tx.write_all(&body).await;
                }
            });
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), rx.read_to_end(&mut got)).await;
            writer.abort();
            String::from_utf8_lossy(&got).into_owned()
        }
    });
    let flood = tokio::spawn(join_all(clients));
    assert_serving(server, "oversized bodies").await;
    for answer in flood.await.expect("clients") {
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(
            body.contains("\"body_too_large\"") && body.len() < 300,
            "{answer}"
        );
    }
    assert_recovers(server, "oversized bodies", before, sampler).await;
}

/// Live monitors over the per-session and the total limit: `429 monitor_limit`, then
/// `503 server_busy`; places come back when monitors leave.
async fn monitors(server: &Server) {
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let ws = |id: &str| {
        format!(
            "ws://{}/v1/sessions/{id}/live?token={ADMIN_TOKEN}",
            addr(server)
        )
    };
    let refused = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("monitor refused without an answer: {e}"),
        Ok(_) => (101, String::new()),
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(consented(server).await.1);
    }
    let mut open = Vec::new();
    for _ in 0..MONITORS_PER_SESSION {
        open.push(
            tokio_tungstenite::connect_async(ws(&ids[0]))
                .await
                .expect("monitor"),
        );
    }
    let (status, body) = refused(tokio_tungstenite::connect_async(ws(&ids[0])).await);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("\"monitor_limit\""), "{body}");
    for _ in MONITORS_PER_SESSION..MONITORS {
        open.push(
            tokio_tungstenite::connect_async(ws(&ids[1]))
                .await
                .expect("monitor"),
        );
    }
    let (status, body) = refused(tokio_tungstenite::connect_async(ws(&ids[2])).await);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"server_busy\""), "{body}");
    assert_serving(server, "monitors").await;
    // One leaves: its place is free again.
    drop(open.pop());
    let mut again = None;
    for _ in 0..20 {
        if let Ok(m) = tokio_tungstenite::connect_async(ws(&ids[2])).await {
            again = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a freed monitor place is taken again");
    drop(again);
    drop(open);
    assert_recovers(server, "monitors", before, sampler).await;
}

/// Sessions with media over the limit: `503 server_busy` with Retry-After; an ended one
/// gives its place back. Then WHIP offers over the per-invite and the per-address rates:
/// `429 rate_limited` with Retry-After.
async fn offers(server: &Server, earlier_offers: usize) {
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let mut sessions = Vec::new();
    for _ in 0..=MAX_SESSIONS {
        sessions.push(consented(server).await);
    }
    let mut sent = earlier_offers;
    for (token, _) in &sessions[..MAX_SESSIONS] {
        assert_eq!(offer(server, token).await.0, 201);
        sent += 1;
    }
    let (status, code, retry) = offer(server, &sessions[MAX_SESSIONS].0).await;
    sent += 1;
    assert_eq!((status, code.as_deref()), (503, Some("server_busy")));
    assert!(retry.is_some(), "Retry-After");
    assert_serving(server, "sessions").await;
    end_session(server, &sessions[0].1).await;
    assert_eq!(offer(server, &sessions[MAX_SESSIONS].0).await.0, 201);
    sent += 1;
    for (_, id) in &sessions[1..] {
        end_session(server, id).await;
    }
    assert_recovers(server, "sessions", before, sampler).await;

    // One invite, offer after offer (each replaces the last peer).
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let (token, id) = consented(server).await;
    for _ in 0..OFFERS_PER_INVITE {
        assert_eq!(offer(server, &token).await.0, 201);
        sent += 1;
    }
    let (status, code, retry) = offer(server, &token).await;
    sent += 1;
    assert_eq!((status, code.as_deref()), (429, Some("rate_limited")));
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After {retry:?}");
    assert_serving(server, "offers per invite").await;
    end_session(server, &id).await;
    assert_recovers(server, "offers per invite", before, sampler).await;

    // One address, offers for made-up invites: counted until the address is limited.
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let mut limited = None;
    for i in 0..OFFERS_PER_ADDRESS + 5 {
        let (status, code, retry) = offer(server, "nosuchinvitetoken0000000").await;
        if status == 429 {
            limited = Some((i, code, retry));
            break;
        }
        assert_eq!(status, 404, "{code:?}");
    }
    let (i, code, retry) = limited.expect("the address was never limited");
    assert_eq!(code.as_deref(), Some("rate_limited"));
    assert!(retry.is_some());
    eprintln!(
        "address limited after {} offers in all ({} before this step)",
        sent + i,
        sent
    );
    assert!(sent + i >= OFFERS_PER_ADDRESS, "limited too early");
    assert_serving(server, "offers per address").await;
    assert_recovers(server, "offers per address", before, sampler).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_holds_under_abuse_on_one_server() {
    let server = start(None).await;
    // Warm-up: the first requests of each kind allocate what the process keeps for good
    // (pools, caches, the allocator's arenas); the baselines are taken after it.
    eprintln!("server after start: {}", Usage::of(server.pid()));
    assert_serving(&server, "warm-up").await;
    let _ = offer(&server, "nosuchinvitetoken0000000").await;
    let mut warm = Vec::new();
    for _ in 0..MAX_SESSIONS {
        let (token, id) = consented(&server).await;
        assert_eq!(offer(&server, &token).await.0, 201);
        warm.push(id);
    }
    for id in &warm {
        end_session(&server, id).await;
    }
    let warmup_offers = 1 + MAX_SESSIONS;
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("server after the warm-up: {}", Usage::of(server.pid()));
    // Twice: the first round's memory may stay with the allocator, a second must not add.
    silent_connections(&server, "silent connections", true).await;
    silent_connections(&server, "silent, again", false).await;
    dribbled_heads(&server).await;
    huge_heads(&server).await;
    stalled_bodies(&server).await;
    oversized_bodies(&server).await;
    monitors(&server).await;
    offers(&server, warmup_offers).await;
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Under a 256-descriptor limit (hard too), 300 silent connections used to take every
/// descriptor and stop the server. Now the connection cap (half the limit) answers the
/// excess with `503 server_busy` at once, and the held ones are closed at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_under_a_256_descriptor_limit() {
    let server = start(Some(256)).await;
    assert_serving(&server, "start").await;
    let pid = server.pid();
    let before = Usage::of(pid);
    let sampler = Sampler::start(pid);
    let mut conns = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        conns.push(TcpStream::connect(addr(&server)).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = Usage::of(pid);
    assert!(during.fds < 256, "{during}");
    let (mut busy, mut timed_out) = (0, 0);
    let within = Duration::from_secs(HEADER_TIMEOUT_SECS + 5);
    let started = Instant::now();
    for (i, mut c) in conns.into_iter().enumerate() {
        let left = within.saturating_sub(started.elapsed());
        let answer = read_to_close(&mut c, left)
            .await
            .unwrap_or_else(|| panic!("connection {i} still open"));
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("\"server_busy\""), "{answer}");
            busy += 1;
        } else {
            timed_out += 1;
        }
    }
    eprintln!(
        "256 descriptors: {timed_out} connections held until the header timeout, {busy} refused \
         at once with 503 server_busy; during {during}"
    );
    // The cap is half the descriptor limit: 128, less a kept-alive connection or two of
    // the test's own client.
    assert!((124..=128).contains(&timed_out), "{timed_out} held");
    assert_eq!(busy + timed_out, SILENT);
    assert_serving(&server, "after the silent connections").await;
    assert_recovers(&server, "256 descriptors", before, sampler).await;
    let log = server.log();
    assert!(log.contains("connection limit reached"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
