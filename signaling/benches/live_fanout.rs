//! Live transcript fan-out (quality bar: transcript line to every monitor, p99 <= 50 ms with
//! 100 monitors on one session).
//!
//! The real signaling stack in process: the router on loopback, SQLite on a temporary file,
//! the session controller fed through its media-event channel (the media plane's side of the
//! port). 100 monitors connect over real WebSockets (`/v1/sessions/{id}/live`). The clock
//! starts when a `MediaEvent::Transcript` enters the channel and stops when a monitor has
//! read the WebSocket frame. Events go one at a time (the next after every monitor got the
//! last), so this is latency, not throughput. Two series: partial lines (streamed only) and
//! final lines (stored in the turn log before they are streamed).
//!
//!     cargo bench -p earshot-signaling --bench live_fanout
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a short smoke run.

#[path = "../tests/support/mod.rs"]
mod support;

use earshot_signaling::media_port::MediaEvent;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::TestServer;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

struct Series {
    name: &'static str,
    is_final: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn run(monitors: usize, lines: usize, series: &Series) {
    let srv = TestServer::start().await;
    let (_, id) = srv.consented_session(json!({})).await;
    srv.send(MediaEvent::Connected {
        session_id: id.clone(),
    })
    .await;
    let received = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let mut clients = Vec::new();
    for _ in 0..monitors {
        let mut m = srv.monitor(&id).await;
        // Snapshot first; then wait for the session to be in progress so every monitor
        // starts from the same point.
        loop {
            let v = m.next().await.unwrap();
            let state = if v["type"] == "snapshot" {
                v["session"]["state"].clone()
            } else {
                v["to"].clone()
            };
            if state == "in_progress" {
                break;
            }
        }
        let received = received.clone();
        let progress = progress.clone();
        clients.push(tokio::spawn(async move {
            let mut arrivals = Vec::with_capacity(lines);
            while arrivals.len() < lines {
                let Some(Ok(msg)) = m.ws.next().await else {
                    break;
                };
                let at = Instant::now();
                let Message::Text(text) = msg else { continue };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if v["type"] != "transcript" {
                    continue;
                }
                let i: usize = v["text"].as_str().unwrap()[5..].parse().unwrap();
                arrivals.push((i, at));
                received.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
            }
            arrivals
        }));
    }
    let mut sent = Vec::with_capacity(lines);
    for i in 0..lines {
        let t0 = Instant::now();
        sent.push(t0);
        srv.send(MediaEvent::Transcript {
            session_id: id.clone(),
            // Alternating roles: every final line makes a turn of its own, as in an interview.
            role: if i % 2 == 0 {
                earshot_vocab::Role::Ai
            } else {
                earshot_vocab::Role::Participant
            },
            text: format!("line {i}"),
            is_final: series.is_final,
            start_ms: i as u64 * 100,
            end_ms: i as u64 * 100 + 90,
        })
        .await;
        let want = (i + 1) * monitors;
        loop {
            let woken = progress.notified();
            if received.load(Ordering::SeqCst) >= want {
                break;
            }
            woken.await;
        }
    }
    let mut all = Vec::with_capacity(lines * monitors);
    let mut last = vec![Duration::ZERO; lines];
    for c in clients {
        for (i, at) in c.await.unwrap() {
            let d = at.duration_since(sent[i]);
            last[i] = last[i].max(d);
            all.push(d);
        }
    }
    all.sort();
    last.sort();
    println!(
        "live_fanout/{} ({monitors} monitors, {lines} lines): per delivery p50 {} p99 {} max {}; \
         last monitor per line p50 {} p99 {}",
        series.name,
        fmt(percentile(&all, 50.0)),
        fmt(percentile(&all, 99.0)),
        fmt(all.last().copied().unwrap_or_default()),
        fmt(percentile(&last, 50.0)),
        fmt(percentile(&last, 99.0)),
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (monitors, lines) = if bench { (100, 1000) } else { (10, 20) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for series in [
        Series {
            name: "partial",
            is_final: false,
        },
        Series {
            name: "final",
            is_final: true,
        },
    ] {
        rt.block_on(run(monitors, lines, &series));
    }
}
