//! The WebSocket client task of one session's agent bridge.
//!
//! [`AgentLink::spawn`] starts a task that dials the agent, sends `connected` and `start`, then
//! streams the participant frames it is given as `media` and turns the agent's messages into
//! [`FromAgent`]s (AI audio already at 48 kHz). The session task talks to it only through two
//! bounded channels: handing over a frame never waits (a full queue drops the frame and counts
//! it). Per connection, writing to the socket happens in a writer task of its own (a stalled
//! agent never stops the reading of its messages), and the agent's audio is decoded and
//! resampled in a downlink task of its own (a message of several seconds of audio never holds
//! up the participant's frames). When the connection cannot be made or drops, the task
//! dials again with exponential backoff (100 ms doubling to 2 s) and reports
//! [`FromAgent::Failed`] once the agent has been unreachable for the request's `retry_for`.
//! Dropping the [`AgentLink`] ends the stream: the frames still queued are sent, then `stop`,
//! then the WebSocket close handshake.

mod downlink;
mod stream;

use super::protocol::TranscriptLine;
use crate::request::AgentRequest;
use earshot_vocab::AgentAudioFormat;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use stream::run_stream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Participant frames waiting for the bridge task (1.28 s).
const TO_AGENT_QUEUE: usize = 64;
/// Agent messages waiting for the session task.
const FROM_AGENT_QUEUE: usize = 256;
/// Messages waiting for the socket writer.
const WRITE_QUEUE: usize = 64;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(10);
/// A connection that lived this long, or over which the agent sent a valid message, was
/// healthy: its drop starts a new failure period. (An agent that accepts and drops at once,
/// again and again, stays in one failure period and is given up after `retry_for`.)
const HEALTHY_AFTER: Duration = Duration::from_secs(2);
/// No AI audio for this long: the audio held in the resampler (up to 15 ms) is pushed out.
const IDLE_FLUSH: Duration = Duration::from_millis(50);
/// Longest wait for `stop` and the close handshake when a stream ends.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A participant frame or a mark echo, from the session to the agent.
#[derive(Debug)]
pub enum ToAgent {
    /// 48 kHz denoised participant audio starting at timeline position `pos`.
    Media { pcm: Vec<i16>, pos: u64 },
    /// The audio before this mark has been played: echo it.
    Mark(String),
}

/// What the agent said, for the session task.
#[derive(Debug, Clone, PartialEq)]
pub enum FromAgent {
    /// A stream began (`connected` and `start` were sent).
    Connected {
        stream_sid: String,
    },
    /// AI audio at 48 kHz, in order.
    Audio(Vec<i16>),
    Mark(String),
    Clear,
    /// Times already on the session timeline.
    Transcript(TranscriptLine),
    End,
    /// The connection dropped; the task is dialling again.
    Disconnected {
        detail: String,
    },
    /// Unreachable for longer than `retry_for`: the task has ended.
    Failed {
        detail: String,
    },
}

/// Counters of one bridge (all streams).
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// `media` messages handed to the socket writer.
    pub frames_sent: AtomicU64,
    /// Participant frames dropped because a queue was full (agent or socket too slow).
    pub frames_dropped_full: AtomicU64,
    /// Participant frames dropped while the agent was not connected.
    pub frames_dropped_offline: AtomicU64,
    /// Connections made.
    pub connects: AtomicU64,
    /// Agent messages ignored (malformed, unknown or binary).
    pub ignored_messages: AtomicU64,
}

impl BridgeStats {
    fn add(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The session's end of a running bridge. Dropping it stops the stream (`stop`, close).
#[derive(Debug)]
pub struct AgentLink {
    to_agent: mpsc::Sender<ToAgent>,
    from_agent: mpsc::Receiver<FromAgent>,
    stats: Arc<BridgeStats>,
}

struct Config {
    session_id: String,
    url: String,
    format: AgentAudioFormat,
    custom_parameters: serde_json::Value,
    retry_for: Duration,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl AgentLink {
    /// Starts the bridge task for `session_id` (it dials right away). Needs a Tokio runtime.
    pub fn spawn(session_id: &str, request: &AgentRequest) -> Self {
        let (to_tx, to_rx) = mpsc::channel(TO_AGENT_QUEUE);
        let (from_tx, from_rx) = mpsc::channel(FROM_AGENT_QUEUE);
        let stats = Arc::new(BridgeStats::default());
        let config = Config {
            session_id: session_id.to_owned(),
            url: request.url.clone(),
            format: request.audio_format,
            custom_parameters: request.custom_parameters.clone(),
            retry_for: request.retry_for,
            tls: request.tls.clone(),
        };
        tokio::spawn(run(config, to_rx, from_tx, Arc::clone(&stats)));
        Self {
            to_agent: to_tx,
            from_agent: from_rx,
            stats,
        }
    }

    /// Hands one participant frame over without waiting; `false` if it was dropped (queue
    /// full).
    pub fn send_media(&self, pcm: &[i16], pos: u64) -> bool {
        match self.to_agent.try_send(ToAgent::Media {
            pcm: pcm.to_vec(),
            pos,
        }) {
            Ok(()) => true,
            Err(_) => {
                BridgeStats::add(&self.stats.frames_dropped_full);
                false
            }
        }
    }

    /// Echoes a mark (its audio has been played) without waiting.
    pub fn echo_mark(&self, name: String) {
        if self.to_agent.try_send(ToAgent::Mark(name)).is_err() {
            tracing::warn!("agent bridge: mark echo dropped (queue full)");
        }
    }

    /// The next message from the agent; `None` once the task has ended.
    pub async fn recv(&mut self) -> Option<FromAgent> {
        self.from_agent.recv().await
    }

    pub fn stats(&self) -> &BridgeStats {
        &self.stats
    }
}

/// The TLS connector for a `wss://` agent: the request's configuration, else the system's
/// roots (built once per process). `None` for `ws://`.
fn tls_connector(config: &Config) -> Option<tokio_tungstenite::Connector> {
    static SYSTEM: std::sync::OnceLock<Option<Arc<tokio_rustls::rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    if !config
        .url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
    {
        return None;
    }
    let tls = config.tls.clone().or_else(|| {
        SYSTEM
            .get_or_init(|| match crate::agent::tls::client_config(None) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "no TLS configuration for wss:// agents");
                    None
                }
            })
            .clone()
    })?;
    Some(tokio_tungstenite::Connector::Rustls(tls))
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(super::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(super::MAX_MESSAGE_BYTES))
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
}

/// A fresh Twilio-like stream SID: `MZ` and 32 hex digits.
fn new_stream_sid() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let hi = a.finish();
    let mut b = state.build_hasher();
    b.write_u64(hi);
    format!("MZ{hi:016x}{:016x}", b.finish())
}

/// Drops participant frames until the session lets go of the link.
async fn discard_until_closed(rx: &mut mpsc::Receiver<ToAgent>, stats: &BridgeStats) {
    while let Some(msg) = rx.recv().await {
        if let ToAgent::Media { .. } = msg {
            BridgeStats::add(&stats.frames_dropped_offline);
        }
    }
}

async fn run(
    config: Config,
    mut to_agent: mpsc::Receiver<ToAgent>,
    from_agent: mpsc::Sender<FromAgent>,
    stats: Arc<BridgeStats>,
) {
    let sid = config.session_id.clone();
    let mut failing_since: Option<Instant> = None;
    let mut backoff = BACKOFF_START;
    loop {
        let attempt_began = Instant::now();
        let remaining = failing_since.map_or(config.retry_for, |since| {
            config.retry_for.saturating_sub(since.elapsed())
        });
        let timeout = remaining.clamp(Duration::from_secs(1), CONNECT_TIMEOUT_MAX);
        let connect = tokio::time::timeout(
            timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                config.url.as_str(),
                Some(ws_config()),
                true,
                tls_connector(&config),
            ),
        );
        let result = tokio::select! {
            r = connect => r,
            () = discard_until_closed(&mut to_agent, &stats) => return,
        };
        let (detail, failure_began) = match result {
            Ok(Ok((ws, _response))) => {
                BridgeStats::add(&stats.connects);
                tracing::info!(session = %sid, url = %config.url, "agent connected");
                let mut heard = false;
                let end = run_stream(ws, &config, &mut to_agent, &from_agent, &stats, &mut heard);
                match end.await {
                    StreamEnd::Stopped => return,
                    StreamEnd::Ended => {
                        tracing::info!(session = %sid, "agent closed the connection after its end");
                        discard_until_closed(&mut to_agent, &stats).await;
                        return;
                    }
                    StreamEnd::Dropped(detail) => {
                        tracing::warn!(session = %sid, %detail, "agent connection dropped");
                        if from_agent
                            .send(FromAgent::Disconnected {
                                detail: detail.clone(),
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                        if heard || attempt_began.elapsed() >= HEALTHY_AFTER {
                            failing_since = None;
                            backoff = BACKOFF_START;
                        }
                        (detail, Instant::now())
                    }
                }
            }
            Ok(Err(e)) => (e.to_string(), attempt_began),
            Err(_) => (
                format!("no connection within {} ms", timeout.as_millis()),
                attempt_began,
            ),
        };
        let since = *failing_since.get_or_insert(failure_began);
        let down_for = since.elapsed();
        if down_for >= config.retry_for {
            let detail = format!(
                "agent {} unreachable for {} ms: {detail}",
                config.url,
                down_for.as_millis()
            );
            tracing::warn!(session = %sid, %detail, "agent failed");
            let _ = from_agent.send(FromAgent::Failed { detail }).await;
            return;
        }
        tracing::debug!(session = %sid, %detail, retry_in_ms = backoff.as_millis() as u64, "agent unreachable; retrying");
        let wait = backoff.min(config.retry_for - down_for);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = discard_until_closed(&mut to_agent, &stats) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum StreamEnd {
    /// The session let go: `stop` was sent and the socket closed.
    Stopped,
    /// The connection failed.
    Dropped(String),
    /// The connection closed after the agent sent `end`: nothing to dial again.
    Ended,
}
