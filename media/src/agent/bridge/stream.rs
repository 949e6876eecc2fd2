//! One connection's stream: sends `connected` and `start`, turns participant frames into `media`
//! messages (resampled and encoded by the [`Uplink`]), reads the agent's messages and hands
//! them to the downlink task, and ends with `stop` and the close handshake (or reports the
//! drop). Writing to the socket happens in a writer task of its own ([`write_loop`]).

use super::downlink::{Downstream, downlink_loop, note_ignored};
use super::{
    BridgeStats, CLOSE_WAIT, Config, FROM_AGENT_QUEUE, FromAgent, StreamEnd, ToAgent, WRITE_QUEUE,
    new_stream_sid,
};
use crate::agent::audio::Uplink;
use crate::agent::protocol::{self, AgentMessage, StreamMessages, TranscriptLine};
use crate::units::samples_to_ms;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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

pub(super) async fn run_stream(
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
