//! The downlink task of one connection: decodes and resamples the agent's audio away from the
//! task that streams the participant's frames, and hands the agent's messages to the session
//! in arrival order; also the counting (and rate-limited logging) of ignored agent messages.

use super::{BridgeStats, FromAgent, IDLE_FLUSH};
use crate::agent::audio::Downlink;
use crate::agent::protocol::TranscriptLine;
use earshot_vocab::AgentAudioFormat;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What the reading side hands to the downlink task, in arrival order.
pub(super) enum Downstream {
    Media(String),
    Mark(String),
    Clear,
    End,
    /// Times already on the session timeline.
    Transcript(TranscriptLine),
}

/// Counts an ignored agent message; logs the first few at warn level, then every power of
/// two (a misbehaving agent must not flood the log).
pub(super) fn note_ignored(session_id: &str, stats: &BridgeStats, what: &str) {
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
pub(super) async fn downlink_loop(
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
