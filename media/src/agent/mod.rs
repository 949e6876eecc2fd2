//! The agent bridge (F5): an external AI interviewer reached over a WebSocket that Earshot
//! dials, speaking Twilio Media Streams' message shapes plus two extension events.
//!
//! To the agent: `connected`, `start` (with `customParameters`), `media` every 20 ms with the
//! participant's denoised audio, `mark` echoed once the AI audio before it was played, `stop`.
//! From the agent: `media` (AI audio, queued and paced in real time to the participant),
//! `mark`, `clear` (barge-in: drop all queued AI audio), and Earshot's `transcript` and `end`.
//!
//! Layout: [`protocol`] builds and parses the JSON messages; [`audio`] converts between the
//! session's 48 kHz frames and the agent's format (16 kHz L16 or 8 kHz μ-law, base64);
//! [`playout`] is the sans-IO queue of AI audio and markers the session plays from;
//! [`bridge`] is the WebSocket client task (connect, retry with backoff, read/write), linked to
//! the session task by bounded channels so the 20 ms tick never waits on the network.

pub mod audio;
pub mod bridge;
pub mod playout;
pub mod protocol;

/// Largest WebSocket message or frame accepted from an agent. A bigger one fails the
/// connection (which is then dialled again).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Checks that `url` is a WebSocket URL Earshot can dial (`ws://host[:port][/path]`).
pub fn validate_url(url: &str) -> Result<(), String> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url
        .parse()
        .map_err(|e| format!("invalid agent URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("ws") => {}
        Some(s) if s.eq_ignore_ascii_case("wss") => {
            return Err(format!(
                "agent URL {url:?}: wss:// is not supported by this build; use ws:// (e.g. behind a TLS-terminating proxy)"
            ));
        }
        _ => return Err(format!("agent URL {url:?} must start with ws://")),
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
        assert!(validate_url("wss://agent.example/x").is_err());
        assert!(validate_url("http://agent.example/x").is_err());
        assert!(validate_url("agent.example").is_err());
        assert!(validate_url("ws://").is_err());
        assert!(validate_url("").is_err());
    }
}
