//! The test agent the load generator plays on the agent bridge (`--agent`, F5).
//!
//! One WebSocket endpoint on loopback; the generator creates a script whose agent URL points
//! at it, so the server dials it once per session (Twilio Media Streams, l16/16000). Per
//! stream it behaves like a real-time voice agent: it listens for [`LISTEN`], then talks for
//! [`TALK_FRAMES`] frames at real-time pace (one 20 ms `media` message every 20 ms) followed
//! by a final `transcript` line, and after [`TURNS`] talks it sends `end`, so the server
//! finishes the session (mix, MP3s) and the participant starts a new one. Its sound is a
//! steady voiced tone: every frame of a talk is clearly not silence, which the latency pairing
//! in [`super::latency`] relies on.
//!
//! It records, in the session's [`Probe`] (found by the `session` custom parameter), when each
//! participant frame arrived and when it sent each of its own frames.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::latency::Probe;

/// Silence before each talk.
const LISTEN: Duration = Duration::from_millis(2000);
/// Frames per talk (2 s).
const TALK_FRAMES: usize = 100;
/// Talks before the agent ends the interview.
const TURNS: usize = 8;
/// Agent sample rate (l16/16000).
const RATE: f64 = 16_000.0;
const FRAME_SAMPLES: usize = 320;

/// Probes of the sessions now running, by session id.
#[derive(Default)]
pub struct Probes {
    by_session: Mutex<HashMap<String, Arc<Probe>>>,
}

impl Probes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Probe>>> {
        self.by_session.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, session_id: &str, probe: Arc<Probe>) {
        self.lock().insert(session_id.to_owned(), probe);
    }

    pub fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    fn get(&self, session_id: &str) -> Option<Arc<Probe>> {
        self.lock().get(session_id).cloned()
    }
}

/// The talk's 20 ms payloads (base64 l16 little-endian): a 150 Hz voiced tone with five
/// harmonics and a slow vibrato at about -18 dBFS, the same for every talk.
fn talk_payloads() -> Vec<String> {
    let mut phase = 0.0f64;
    let mut out = Vec::with_capacity(TALK_FRAMES);
    for f in 0..TALK_FRAMES {
        let mut bytes = Vec::with_capacity(FRAME_SAMPLES * 2);
        for i in 0..FRAME_SAMPLES {
            let t = (f * FRAME_SAMPLES + i) as f64 / RATE;
            let f0 = 150.0 + 10.0 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / RATE;
            let v: f64 = (1..=5)
                .map(|h| (phase * f64::from(h)).sin() / f64::from(h))
                .sum::<f64>()
                * 0.1;
            let s = (v * f64::from(i16::MAX)).clamp(-32_767.0, 32_767.0) as i16;
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        out.push(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    out
}

/// Starts the endpoint on `ip` (port chosen by the system); returns its `ws://` URL.
pub async fn serve(ip: std::net::IpAddr, probes: Arc<Probes>) -> anyhow::Result<String> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let addr = listener.local_addr()?;
    let payloads: Arc<Vec<String>> = Arc::new(talk_payloads());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(stream(tcp, Arc::clone(&probes), Arc::clone(&payloads)));
        }
    });
    Ok(format!("ws://{addr}/agent"))
}

enum Phase {
    Waiting,
    Listening { until: tokio::time::Instant },
    Talking { next: usize },
    Done,
}

/// One stream (one session's connection), until the server stops it.
async fn stream(tcp: TcpStream, probes: Arc<Probes>, payloads: Arc<Vec<String>>) {
    let ws = match tokio_tungstenite::accept_async(tcp).await {
        Ok(ws) => ws,
        Err(e) => {
            debug!(error = %e, "agent: handshake failed");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();
    let mut probe: Option<Arc<Probe>> = None;
    let mut stream_sid = String::new();
    let mut phase = Phase::Waiting;
    let mut turns = 0;
    let mut frame_tick = tokio::time::interval(Duration::from_millis(20));
    // A real-time agent keeps its pace: after a stall it catches up.
    frame_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        let listen_until = match phase {
            Phase::Listening { until } => Some(until),
            _ => None,
        };
        tokio::select! {
            msg = source.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                    continue;
                };
                match v["event"].as_str() {
                    Some("start") => {
                        stream_sid = v["start"]["streamSid"].as_str().unwrap_or_default().to_owned();
                        let session = v["start"]["customParameters"]["session"].as_str().unwrap_or_default();
                        probe = probes.get(session);
                        if probe.is_none() {
                            debug!(session, "agent: stream for an unknown session");
                        }
                        phase = Phase::Listening { until: tokio::time::Instant::now() + LISTEN };
                    }
                    Some("media") => {
                        let ts = &v["media"]["timestamp"];
                        let ts = ts.as_str().and_then(|s| s.parse().ok()).or_else(|| ts.as_u64());
                        if let (Some(p), Some(ts)) = (&probe, ts) {
                            p.frame_at_agent(ts, Instant::now());
                        }
                    }
                    Some("stop") => return,
                    _ => {}
                }
            }
            _ = sleep_until(listen_until) => {
                if let Some(p) = &probe {
                    p.talk_started();
                }
                frame_tick.reset_immediately();
                phase = Phase::Talking { next: 0 };
            }
            _ = frame_tick.tick(), if matches!(phase, Phase::Talking { .. }) => {
                let Phase::Talking { next } = phase else { continue };
                let msg = serde_json::json!({
                    "event": "media",
                    "streamSid": stream_sid,
                    "media": {"payload": payloads[next]},
                });
                if let Some(p) = &probe {
                    p.talk_frame_sent(Instant::now());
                }
                if sink.send(Message::text(msg.to_string())).await.is_err() {
                    return;
                }
                if next + 1 < payloads.len() {
                    phase = Phase::Talking { next: next + 1 };
                    continue;
                }
                turns += 1;
                let line = serde_json::json!({
                    "event": "transcript", "streamSid": stream_sid, "role": "ai",
                    "text": format!("Load test question {turns}."), "final": true,
                });
                if sink.send(Message::text(line.to_string())).await.is_err() {
                    return;
                }
                if turns >= TURNS {
                    let end = serde_json::json!({"event": "end", "streamSid": stream_sid});
                    if sink.send(Message::text(end.to_string())).await.is_err() {
                        return;
                    }
                    phase = Phase::Done;
                } else {
                    phase = Phase::Listening { until: tokio::time::Instant::now() + LISTEN };
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_talk_frame_sounds() {
        let p = talk_payloads();
        assert_eq!(p.len(), TALK_FRAMES);
        for b64 in &p {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(bytes.len(), FRAME_SAMPLES * 2);
            let pcm: Vec<i16> = bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            let db = earshot_media::level::rms_dbfs(&pcm);
            assert!((-24.0..-14.0).contains(&db), "{db} dBFS");
        }
    }
}
