//! The test agent the load generator plays on the agent bridge (`--agent`, F5).
//!
//! One WebSocket endpoint on loopback; the generator creates a script whose agent URL points
//! at it, so the server dials it once per session (Twilio Media Streams, l16/16000). Per
//! stream it behaves like a real-time voice agent: it listens for [`LISTEN`], then speaks one
//! talk at real-time pace (one 20 ms `media` message every 20 ms) followed by a final
//! `transcript` line, and after [`TURNS`] talks it sends `end`, so the server finishes the
//! session (mix, MP3s) and the participant starts a new one. Its talks are real speech, whole
//! utterances with their pauses: the built-in interviewer's prompts (16 kHz) in order, so that
//! the audio the participant hears can be scored against them with PESQ-WB (pesq.rs).
//!
//! The latency pairing in [`super::latency`] counts a talk's AI packets that are not the
//! server's packet of digital silence; the prompts' pauses are quiet but not digital silence
//! (no 20 ms frame of zeros, tested), and what the live encoder makes of them differs from
//! that packet.
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
/// Talks before the agent ends the interview (each prompt once with the five built-in ones).
const TURNS: usize = 5;
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

/// The agent's [`TURNS`] talks: the `prompts` (16 kHz) in order, looped if fewer, each cut
/// to whole 20 ms frames. `None` when no prompt holds a whole frame.
pub fn talks(prompts: &[Vec<i16>]) -> Option<Vec<Vec<i16>>> {
    let usable: Vec<&Vec<i16>> = prompts
        .iter()
        .filter(|p| p.len() >= FRAME_SAMPLES)
        .collect();
    if usable.is_empty() {
        return None;
    }
    Some(
        usable
            .iter()
            .cycle()
            .take(TURNS)
            .map(|p| p[..p.len() / FRAME_SAMPLES * FRAME_SAMPLES].to_vec())
            .collect(),
    )
}

/// The talks' 20 ms payloads (base64 l16 little-endian), by talk.
fn talk_payloads(talks: &[Vec<i16>]) -> Vec<Vec<String>> {
    talks
        .iter()
        .map(|talk| {
            talk.chunks(FRAME_SAMPLES)
                .map(|frame| {
                    let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                })
                .collect()
        })
        .collect()
}

/// Starts the endpoint on `ip` (port chosen by the system), speaking `talks` (from [`talks`]);
/// returns its `ws://` URL.
pub async fn serve(
    ip: std::net::IpAddr,
    probes: Arc<Probes>,
    talks: &[Vec<i16>],
) -> anyhow::Result<String> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let addr = listener.local_addr()?;
    let payloads: Arc<Vec<Vec<String>>> = Arc::new(talk_payloads(talks));
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
async fn stream(tcp: TcpStream, probes: Arc<Probes>, payloads: Arc<Vec<Vec<String>>>) {
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
                let talk = &payloads[turns % payloads.len()];
                let msg = serde_json::json!({
                    "event": "media",
                    "streamSid": stream_sid,
                    "media": {"payload": talk[next]},
                });
                if let Some(p) = &probe {
                    p.talk_frame_sent(Instant::now());
                }
                if sink.send(Message::text(msg.to_string())).await.is_err() {
                    return;
                }
                if next + 1 < talk.len() {
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
    fn talks_are_the_prompts_in_order_in_whole_frames() {
        let prompts: Vec<Vec<i16>> = vec![
            (0..1_000).map(|i| i as i16).collect(),
            vec![5; 100], // shorter than a frame: left out
            (0..700).map(|i| -(i as i16)).collect(),
        ];
        let talks = talks(&prompts).expect("talks");
        assert_eq!(talks.len(), TURNS);
        for (k, talk) in talks.iter().enumerate() {
            let prompt = if k % 2 == 0 { &prompts[0] } else { &prompts[2] };
            let whole = prompt.len() / FRAME_SAMPLES * FRAME_SAMPLES;
            assert_eq!(talk[..], prompt[..whole], "talk {k}");
        }
        assert_eq!(super::talks(&[]), None);
        assert_eq!(super::talks(&[vec![1; 319]]), None);
        let payloads = talk_payloads(&talks);
        assert_eq!(payloads[1].len(), 2);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&payloads[1][1])
            .unwrap();
        let frame: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(frame, talks[1][FRAME_SAMPLES..2 * FRAME_SAMPLES]);
    }

    /// The latency pairing counts every talk frame as sound: the default talks (the built-in
    /// prompts) hold no 20 ms frame of digital silence.
    #[test]
    fn no_frame_of_the_default_talks_is_digital_silence() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(crate::DEFAULT_PROMPTS);
        let prompts = crate::pesq::read_prompts(&dir).unwrap();
        let talks = talks(&prompts).unwrap();
        assert_eq!(talks.len(), prompts.len());
        for (k, talk) in talks.iter().enumerate() {
            for (f, frame) in talk.chunks_exact(FRAME_SAMPLES).enumerate() {
                assert!(frame.iter().any(|s| *s != 0), "talk {k} frame {f}");
            }
        }
    }
}
