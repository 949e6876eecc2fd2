//! The agent bridge (F5): an external AI interviewer reached over a WebSocket that Earshot
//! dials, speaking Twilio Media Streams' message shapes plus two extension events. Agents
//! written for Twilio work unchanged in the `mulaw/8000` format.
//!
//! # Protocol
//!
//! Earshot dials the agent's `ws://` or `wss://` URL when the session becomes active (the participant's
//! peer is connected and the session is not paused), and again after every pause, resume or
//! dropped connection. Every connection is one *stream* with a fresh `streamSid`
//! (`MZ` + 32 hex digits); `callSid` is the Earshot session id, `accountSid` is `earshot`.
//! `sequenceNumber`, `chunk` and `timestamp` are strings, as Twilio sends them.
//!
//! To the agent:
//! ```text
//! {"event":"connected","protocol":"Call","version":"1.0.0"}
//! {"event":"start","sequenceNumber":"1","streamSid":"MZ…",
//!  "start":{"streamSid":"MZ…","accountSid":"earshot","callSid":"<session id>",
//!           "tracks":["inbound"],"customParameters":{…},
//!           "mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000,"channels":1}}}
//! {"event":"media","sequenceNumber":"2","streamSid":"MZ…",
//!  "media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"<base64>"}}
//! {"event":"mark","sequenceNumber":"…","streamSid":"MZ…","mark":{"name":"…"}}
//! {"event":"stop","sequenceNumber":"…","streamSid":"MZ…",
//!  "stop":{"accountSid":"earshot","callSid":"<session id>"}}
//! ```
//! - `media` every 20 ms: the participant's denoised audio. `l16/16000` (default): 320
//!   samples of 16-bit signed **little-endian** PCM at 16 kHz (640 bytes); `mulaw/8000`:
//!   160 bytes of G.711 μ-law at 8 kHz (`audio/x-mulaw`, 8000). `timestamp` is ms since the
//!   stream's first frame.
//! - `mark` is echoed once all AI audio sent before the agent's `mark` has been played to the
//!   participant (20 ms after its last frame went out), in order; on `clear` every pending
//!   mark is echoed at once.
//! - `stop` is sent when the session is paused or ends; the socket is then closed.
//!
//! From the agent (unknown events and malformed messages are logged and ignored; a message
//! over [`MAX_MESSAGE_BYTES`] fails the connection, which is then dialled again):
//! ```text
//! {"event":"media","streamSid":"MZ…","media":{"payload":"<base64, same format>"}}
//! {"event":"mark","streamSid":"MZ…","mark":{"name":"…"}}
//! {"event":"clear","streamSid":"MZ…"}
//! {"event":"transcript","role":"ai"|"participant","text":"…","final":true,"start_ms":0,"end_ms":0}
//! {"event":"end"}
//! ```
//! - `media`: AI audio of any length per message, queued and played in real time (at most
//!   60 s queued). Playback of a new utterance starts at the next 20 ms tick once 40 ms are
//!   queued, or 20 ms are queued and have waited 10 ms (so an agent pacing its audio in real
//!   time does not run dry), or a `mark`/`end` follows, or no audio came for 100 ms.
//! - `clear` (barge-in): all queued AI audio is dropped; the participant hears at most the
//!   20 ms frame already sent.
//! - `transcript` (Earshot extension): a transcript line; `final` defaults to true;
//!   `start_ms`/`end_ms` are on the stream's clock (the `timestamp` of the media sent to the
//!   agent) and may be left out (then the AI line spans its turn's audio, a participant line
//!   their current or last turn).
//! - `end` (Earshot extension): the interview is over, once the AI audio queued before it has
//!   been played.
//!
//! If the agent cannot be reached or the connection drops, Earshot dials again with backoff
//! (100 ms doubling to 2 s); the participant hears silence meanwhile. After `retry_for`
//! without a working connection the session gets `MediaEvent::AgentFailed`.
//!
//! # Layout
//!
//! [`protocol`] builds and parses the JSON messages; [`audio`] converts between the session's
//! 48 kHz frames and the agent's format (16 kHz L16 or 8 kHz μ-law, base64); [`playout`] is
//! the sans-IO queue of AI audio and markers the session plays from; [`bridge`] is the
//! WebSocket client task (connect, retry with backoff, read/write), linked to the session task
//! by bounded channels so the 20 ms tick never waits on the network.

pub mod audio;
pub mod bridge;
pub mod playout;
pub mod protocol;
pub mod tls;

/// Largest WebSocket message or frame accepted from an agent. A bigger one fails the
/// connection (which is then dialled again).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Checks that `url` is a WebSocket URL Earshot can dial (`ws://` or `wss://`
/// `host[:port][/path]`).
pub fn validate_url(url: &str) -> Result<(), String> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url
        .parse()
        .map_err(|e| format!("invalid agent URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("ws") || s.eq_ignore_ascii_case("wss") => {}
        _ => return Err(format!("agent URL {url:?} must start with ws:// or wss://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("agent URL {url:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_url;

    #[test]
    fn urls_are_checked() {
        assert!(validate_url("ws://127.0.0.1:9000/agent").is_ok());
        assert!(validate_url("WS://agent.example/x?y=1").is_ok());
        assert!(validate_url("wss://agent.example/x").is_ok());
        assert!(validate_url("http://agent.example/x").is_err());
        assert!(validate_url("agent.example").is_err());
        assert!(validate_url("ws://").is_err());
        assert!(validate_url("").is_err());
    }
}
