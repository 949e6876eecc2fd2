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

use super::audio::{Downlink, Uplink};
use super::protocol::{self, AgentMessage, StreamMessages, TranscriptLine};
use crate::request::AgentRequest;
use crate::units::samples_to_ms;
use earshot_vocab::AgentAudioFormat;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
            tokio_tungstenite::connect_async_with_config(
                config.url.as_str(),
                Some(ws_config()),
                true,
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

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Writes queued messages (batched: one flush per burst), then closes the socket.
async fn write_loop(
    mut sink: SplitSink<WsStream, Message>,
    mut rx: mpsc::Receiver<Message>,
) -> Result<(), String> {
    while let Some(msg) = rx.recv().await {
        sink.feed(msg).await.map_err(|e| e.to_string())?;
        while let Ok(more) = rx.try_recv() {
            sink.feed(more).await.map_err(|e| e.to_string())?;
        }
        sink.flush().await.map_err(|e| e.to_string())?;
    }
    sink.close().await.map_err(|e| e.to_string())
}

/// What the reading side hands to the downlink task, in arrival order.
enum Downstream {
    Media(String),
    Mark(String),
    Clear,
    End,
    /// Times already on the session timeline.
    Transcript(TranscriptLine),
}

/// Counts an ignored agent message; logs the first few at warn level, then every power of
/// two (a misbehaving agent must not flood the log).
fn note_ignored(session_id: &str, stats: &BridgeStats, what: &str) {
    let n = BridgeStats::add(&stats.ignored_messages);
    if n <= 5 || n.is_power_of_two() {
        tracing::warn!(session = %session_id, ignored = n, "agent message ignored: {what}");
    } else {
        tracing::debug!(session = %session_id, "agent message ignored: {what}");
    }
}

/// The downlink task of one connection: decodes and resamples the agent's audio (which may
/// come as messages of many seconds) away from the task that streams the participant's
/// frames, and hands everything to the session in arrival order. A pause of the agent's audio
/// pushes out what the resampler holds.
async fn downlink_loop(
    format: AgentAudioFormat,
    session_id: String,
    mut rx: mpsc::Receiver<Downstream>,
    from_agent: mpsc::Sender<FromAgent>,
    stats: Arc<BridgeStats>,
) {
    let mut downlink = match Downlink::new(format) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(session = %session_id, error = %e, "agent downlink unavailable");
            return;
        }
    };
    let mut audio = Vec::new();
    let mut last_audio = Instant::now();
    loop {
        let next = if downlink.has_pending() {
            let deadline = tokio::time::Instant::from_std(last_audio + IDLE_FLUSH);
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    // The agent paused: push out the tail of its audio.
                    if !flush(&mut downlink, &mut audio, &from_agent, &session_id).await {
                        return;
                    }
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(msg) = next else {
            // The connection ended: what was received still goes to the session.
            flush(&mut downlink, &mut audio, &from_agent, &session_id).await;
            return;
        };
        let out = match msg {
            Downstream::Media(payload) => {
                last_audio = Instant::now();
                audio.clear();
                if let Err(e) = downlink.push_payload(&payload, &mut audio) {
                    note_ignored(&session_id, &stats, &format!("media: {e}"));
                    continue;
                }
                if audio.is_empty() {
                    continue;
                }
                FromAgent::Audio(std::mem::take(&mut audio))
            }
            Downstream::Mark(name) => {
                if !flush(&mut downlink, &mut audio, &from_agent, &session_id).await {
                    return;
                }
                FromAgent::Mark(name)
            }
            Downstream::Clear => {
                if let Err(e) = downlink.reset() {
                    tracing::warn!(session = %session_id, error = %e, "agent downlink reset failed");
                }
                FromAgent::Clear
            }
            Downstream::End => {
                if !flush(&mut downlink, &mut audio, &from_agent, &session_id).await {
                    return;
                }
                FromAgent::End
            }
            Downstream::Transcript(line) => FromAgent::Transcript(line),
        };
        if from_agent.send(out).await.is_err() {
            return;
        }
    }
}

/// Ends the downlink's segment and hands its rest to the session; `false` if the session is
/// gone.
async fn flush(
    downlink: &mut Downlink,
    audio: &mut Vec<i16>,
    from_agent: &mpsc::Sender<FromAgent>,
    session_id: &str,
) -> bool {
    audio.clear();
    if let Err(e) = downlink.finish_segment(audio) {
        tracing::warn!(session = %session_id, error = %e, "agent downlink flush failed");
    }
    if audio.is_empty() {
        return true;
    }
    from_agent
        .send(FromAgent::Audio(std::mem::take(audio)))
        .await
        .is_ok()
}

/// State of one stream while it runs (the uplink and the reading side).
struct Stream<'a> {
    config: &'a Config,
    stats: &'a Arc<BridgeStats>,
    messages: StreamMessages,
    writer: mpsc::Sender<Message>,
    uplink: Uplink,
    /// To this connection's downlink task.
    downstream: mpsc::Sender<Downstream>,
    /// Timeline position of the stream's first participant frame (its `timestamp` 0).
    origin: Option<u64>,
    /// The agent sent `end`.
    ended: bool,
    /// The agent sent a valid message.
    heard: &'a mut bool,
}

type Task<T> = tokio::task::JoinHandle<T>;

async fn run_stream(
    ws: WsStream,
    config: &Config,
    to_agent: &mut mpsc::Receiver<ToAgent>,
    from_agent: &mpsc::Sender<FromAgent>,
    stats: &Arc<BridgeStats>,
    heard: &mut bool,
) -> StreamEnd {
    let uplink = match Uplink::new(config.format) {
        Ok(u) => u,
        Err(e) => return StreamEnd::Dropped(e.to_string()),
    };
    let (sink, mut reader) = ws.split();
    let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE);
    let mut writer = tokio::spawn(write_loop(sink, write_rx));
    let (down_tx, down_rx) = mpsc::channel(FROM_AGENT_QUEUE);
    let mut downlink = tokio::spawn(downlink_loop(
        config.format,
        config.session_id.clone(),
        down_rx,
        from_agent.clone(),
        Arc::clone(stats),
    ));
    let mut s = Stream {
        config,
        stats,
        messages: StreamMessages::new(new_stream_sid(), config.session_id.clone()),
        writer: write_tx,
        uplink,
        downstream: down_tx,
        origin: None,
        ended: false,
        heard,
    };
    let hello = [
        s.messages.connected(),
        s.messages.start(config.format, &config.custom_parameters),
    ];
    for msg in hello {
        if s.writer.send(Message::text(msg)).await.is_err() {
            return s.dropped("writer stopped".into(), writer, downlink).await;
        }
    }
    let stream_sid = s.messages.stream_sid().to_owned();
    tracing::debug!(session = %config.session_id, %stream_sid, "agent stream started");
    if from_agent
        .send(FromAgent::Connected { stream_sid })
        .await
        .is_err()
    {
        downlink.abort();
        s.stop(writer, &mut reader).await;
        return StreamEnd::Stopped;
    }
    loop {
        tokio::select! {
            out = to_agent.recv() => match out {
                Some(ToAgent::Media { pcm, pos }) => s.send_media(&pcm, pos),
                Some(ToAgent::Mark(name)) => {
                    let msg = s.messages.mark(&name);
                    if s.writer.send(Message::text(msg)).await.is_err() {
                        return s.dropped("writer stopped".into(), writer, downlink).await;
                    }
                }
                None => {
                    downlink.abort();
                    s.stop(writer, &mut reader).await;
                    return StreamEnd::Stopped;
                }
            },
            frame = reader.next() => {
                let forwarded = match frame {
                    Some(Ok(Message::Text(text))) => s.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(b))) => {
                        note_ignored(&config.session_id, stats, &format!("binary message of {} bytes", b.len()));
                        true
                    }
                    Some(Ok(Message::Close(_))) | None if s.ended => {
                        s.dropped(String::new(), writer, downlink).await;
                        return StreamEnd::Ended;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason));
                        return s.dropped(format!("closed by the agent{why}"), writer, downlink).await;
                    }
                    Some(Ok(_)) => true,
                    Some(Err(e)) => return s.dropped(e.to_string(), writer, downlink).await,
                    None => return s.dropped("connection closed".into(), writer, downlink).await,
                };
                if !forwarded {
                    // The session let go while a message was being handed over.
                    downlink.abort();
                    s.stop(writer, &mut reader).await;
                    return StreamEnd::Stopped;
                }
            }
            result = &mut writer => {
                let detail = match result {
                    Ok(Ok(())) => "writer ended".to_owned(),
                    Ok(Err(e)) => e,
                    Err(e) => e.to_string(),
                };
                downlink.abort();
                return StreamEnd::Dropped(detail);
            }
            _ = &mut downlink => {
                // The downlink ends early only when the session let go.
                s.stop(writer, &mut reader).await;
                return StreamEnd::Stopped;
            }
        }
    }
}

impl Stream<'_> {
    fn send_media(&mut self, pcm: &[i16], pos: u64) {
        let origin = *self.origin.get_or_insert(pos);
        let Self {
            uplink,
            messages,
            writer,
            stats,
            ..
        } = self;
        let result = uplink.push(pcm, pos, |at, payload| {
            let msg = messages.media(samples_to_ms(at.saturating_sub(origin)), payload);
            match writer.try_send(Message::text(msg)) {
                Ok(()) => {
                    BridgeStats::add(&stats.frames_sent);
                }
                Err(_) => {
                    BridgeStats::add(&stats.frames_dropped_full);
                }
            }
        });
        if let Err(e) = result {
            tracing::warn!(session = %self.config.session_id, error = %e, "agent uplink resampling failed");
        }
    }

    /// The connection failed: the socket is given up; what the agent sent before still
    /// reaches the session (the downlink task finishes first).
    async fn dropped(
        self,
        detail: String,
        writer: Task<Result<(), String>>,
        downlink: Task<()>,
    ) -> StreamEnd {
        writer.abort();
        drop(self.downstream);
        if tokio::time::timeout(CLOSE_WAIT, downlink).await.is_err() {
            tracing::warn!(session = %self.config.session_id, "agent downlink did not finish");
        }
        StreamEnd::Dropped(detail)
    }

    fn timeline_ms(&self, stream_ms: Option<u64>) -> Option<u64> {
        let origin = self.origin?;
        Some(samples_to_ms(origin) + stream_ms?)
    }

    /// Handles one text message; `false` if the session is gone.
    async fn on_text(&mut self, text: &str) -> bool {
        let msg = match protocol::parse(text) {
            Ok(m) => m,
            Err(e) => {
                note_ignored(&self.config.session_id, self.stats, &e.to_string());
                return true;
            }
        };
        *self.heard = true;
        let down = match msg {
            AgentMessage::Media { payload } => Downstream::Media(payload),
            AgentMessage::Mark { name } => Downstream::Mark(name),
            AgentMessage::Clear => Downstream::Clear,
            AgentMessage::End => {
                self.ended = true;
                Downstream::End
            }
            AgentMessage::Transcript(line) => Downstream::Transcript(TranscriptLine {
                start_ms: self.timeline_ms(line.start_ms),
                end_ms: self.timeline_ms(line.end_ms),
                ..line
            }),
            AgentMessage::Other { event } => {
                tracing::debug!(session = %self.config.session_id, %event, "agent event ignored");
                return true;
            }
        };
        self.downstream.send(down).await.is_ok()
    }

    /// Sends `stop`, closes the socket and waits (bounded) for the agent's close.
    async fn stop(
        self,
        writer: Task<Result<(), String>>,
        reader: &mut futures_util::stream::SplitStream<WsStream>,
    ) {
        let Self {
            mut messages,
            writer: write_tx,
            config,
            ..
        } = self;
        let stop = messages.stop();
        let writer_abort = writer.abort_handle();
        let closing = async {
            let _ = write_tx.send(Message::text(stop)).await;
            drop(write_tx);
            let _ = writer.await;
            while let Some(Ok(msg)) = reader.next().await {
                if msg.is_close() {
                    break;
                }
            }
        };
        if tokio::time::timeout(CLOSE_WAIT, closing).await.is_err() {
            writer_abort.abort();
        }
        tracing::debug!(session = %config.session_id, "agent stream stopped");
    }
}
