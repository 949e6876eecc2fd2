//! The event bus port for live events (F6, F7): what the session service announces about a
//! session (state changes, turns, transcript lines, who speaks), as [`LiveEvent`]s, to
//! whoever watches it. [`crate::live::Hub`] is the one implementation today (in-process
//! broadcast). A networked bus (Redis, NATS) would publish the encoded lines between
//! processes and feed a local hub from one remote subscription per watched session, so a
//! [`Subscription`] stays a local receiver either way.
//!
//! [`nats::NatsBus`] is that networked bus (`[bus] url`); it also shares what each node keeps
//! about its live sessions ([`LiveDigest`]) so any node's dashboard shows every session.
//!
//! The lines are encoded once per event (see [`LiveEvent::to_json_line`]), only if someone
//! watches, and shared by every subscriber: they are the live WebSocket's wire format
//! (README "Live events").

pub mod nats;

use crate::lifecycle::StateChange;
use crate::timestamps::rfc3339;
use crate::turns::{Role, Speaking};
use earshot_vocab::media_port::QualitySignals;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One live event of a session.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent<'a> {
    /// `{"type":"state","from","to","cause","at"}`
    State(&'a StateChange),
    /// `{"type":"turn_start","role","at_ms"}`
    TurnStart { role: Role, at_ms: u64 },
    /// `{"type":"turn_end","role","start_ms","end_ms"}`
    TurnEnd {
        role: Role,
        start_ms: u64,
        end_ms: u64,
    },
    /// `{"type":"transcript","role","text","final","start_ms","end_ms"}`
    Transcript {
        role: Role,
        text: &'a str,
        is_final: bool,
        start_ms: u64,
        end_ms: u64,
    },
    /// `{"type":"speaking","who"}`
    Speaking(Speaking),
    /// `{"type":"signals", <the QualitySignals fields>, "attention":[...]}`: the session's
    /// quality signals of the last second and why it needs attention (empty: it does not).
    Signals {
        signals: &'a QualitySignals,
        attention: &'a [&'static str],
    },
    /// `{"type":"progress","index","count","id"}`: the interviewer moved to prompt `index`
    /// (from 0) of `count` (0: not known, an agent leads).
    Progress {
        index: usize,
        count: usize,
        id: &'a str,
    },
    /// `{"type":"monitor","event":"joined"|"left","id","listening"}`: a QA monitor started or
    /// stopped listening in; `listening` is how many listen now.
    Monitor {
        joined: bool,
        id: &'a str,
        listening: usize,
    },
}

impl LiveEvent<'_> {
    /// The event as one JSON text line.
    pub fn to_json_line(&self) -> String {
        let value = match self {
            LiveEvent::State(c) => json!({
                "type": "state",
                "from": c.from.as_str(),
                "to": c.to.as_str(),
                "cause": c.cause,
                "at": rfc3339(c.at.0),
            }),
            LiveEvent::TurnStart { role, at_ms } => {
                json!({"type": "turn_start", "role": role.as_str(), "at_ms": at_ms})
            }
            LiveEvent::TurnEnd {
                role,
                start_ms,
                end_ms,
            } => json!({
                "type": "turn_end",
                "role": role.as_str(),
                "start_ms": start_ms,
                "end_ms": end_ms,
            }),
            LiveEvent::Transcript {
                role,
                text,
                is_final,
                start_ms,
                end_ms,
            } => json!({
                "type": "transcript",
                "role": role.as_str(),
                "text": text,
                "final": is_final,
                "start_ms": start_ms,
                "end_ms": end_ms,
            }),
            LiveEvent::Speaking(who) => json!({"type": "speaking", "who": who.as_str()}),
            LiveEvent::Signals { signals, attention } => {
                let mut v = serde_json::to_value(signals).unwrap_or_else(|_| json!({}));
                if let serde_json::Value::Object(m) = &mut v {
                    m.insert("type".into(), json!("signals"));
                    m.insert("attention".into(), json!(attention));
                }
                v
            }
            LiveEvent::Progress { index, count, id } => {
                json!({"type": "progress", "index": index, "count": count, "id": id})
            }
            LiveEvent::Monitor {
                joined,
                id,
                listening,
            } => json!({
                "type": "monitor",
                "event": if *joined { "joined" } else { "left" },
                "id": id,
                "listening": listening,
            }),
        };
        value.to_string()
    }
}

/// Where the session service publishes live events and monitors subscribe to them.
/// Publishing never waits (the media path calls it).
pub trait EventBus: Send + Sync + 'static {
    /// Announces an event of the session to its current subscribers.
    fn publish_event(&self, session_id: &str, event: &LiveEvent<'_>);
    /// Announces the session's last event (it ended): subscribers get what is buffered, then
    /// the end.
    fn publish_last_event(&self, session_id: &str, event: &LiveEvent<'_>);
    /// Ends the session's stream without a last event (the session was deleted).
    fn close_stream(&self, session_id: &str);
    /// Subscribes to the session's events from now on.
    fn subscribe(&self, session_id: &str) -> Subscription;
    /// Subscribers connected across all sessions (metrics).
    fn subscriber_count(&self) -> usize;

    /// The bus's own counters as Prometheus text (a networked bus; the hub has none).
    fn metrics_text(&self) -> String {
        String::new()
    }

    /// Whether other processes read what this one keeps about its live sessions (a
    /// networked bus): only then does the service build [`LiveDigest`]s to share.
    fn shares_live_state(&self) -> bool {
        false
    }
    /// Shares what this process keeps about a live session it runs (replacing the last).
    fn share_live_state(&self, _session_id: &str, _digest: &LiveDigest) {}
    /// The session ended or was deleted: its shared digest is withdrawn.
    fn forget_live_state(&self, _session_id: &str) {}
    /// The digest another process shared about a session it runs, if any.
    fn remote_live_state(&self, _session_id: &str) -> Option<LiveDigest> {
        None
    }
}

/// What a process keeps in memory about a live session it runs, beyond the store: what the
/// live dashboard and a participant's feed read (see `service::live_state`). Shared between
/// nodes by a networked bus as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveDigest {
    pub speaking: Speaking,
    /// The latest quality signals and when they came (ms since the epoch).
    pub signals: Option<QualitySignals>,
    pub signals_at: Option<i64>,
    /// Monitors listening in now.
    pub listening: usize,
    /// The prompt being asked (index from 0) and how many there are.
    pub progress: Option<(usize, usize)>,
    /// The interviewer's latest words.
    pub caption: Option<String>,
}

/// One delivered line: JSON text, and whether it is the session's last (the session ended).
#[derive(Debug, Clone)]
pub struct Line {
    pub json: Arc<str>,
    pub last: bool,
    /// Not a line but a gap: this many lines were lost upstream (a networked bus saw them
    /// missing); the subscriber gets [`Next::Lagged`] as if it had fallen behind.
    pub missed: u64,
}

/// What a subscriber gets next.
#[derive(Debug, Clone)]
pub enum Next {
    Line(Line),
    /// `missed` lines were lost because this subscriber fell behind.
    Lagged(u64),
    /// The stream is gone (session ended or deleted) and everything buffered was read.
    Closed,
}

/// One subscriber's receiving end. Dropping it runs the bus's release hook (the hub drops a
/// session's channel with its last subscriber).
pub struct Subscription {
    rx: Option<broadcast::Receiver<Line>>,
    session_id: String,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Subscription {
    /// A subscription reading `rx`; `release` runs once the receiver is dropped.
    pub fn new(
        session_id: &str,
        rx: broadcast::Receiver<Line>,
        release: impl FnOnce() + Send + Sync + 'static,
    ) -> Subscription {
        Subscription {
            rx: Some(rx),
            session_id: session_id.to_string(),
            release: Some(Box::new(release)),
        }
    }

    /// The next line; cancel-safe.
    pub async fn next(&mut self) -> Next {
        let Some(rx) = self.rx.as_mut() else {
            return Next::Closed;
        };
        match rx.recv().await {
            Ok(line) if line.missed > 0 => Next::Lagged(line.missed),
            Ok(line) => Next::Line(line),
            Err(broadcast::error::RecvError::Lagged(n)) => Next::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The same subscription running `then` after its current release hook.
    pub fn then_release(mut self, then: impl FnOnce() + Send + Sync + 'static) -> Subscription {
        let first = self.release.take();
        self.release = Some(Box::new(move || {
            if let Some(first) = first {
                first();
            }
            then();
        }));
        self
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Millis, State};
    use serde_json::Value;

    fn parsed(e: LiveEvent<'_>) -> Value {
        serde_json::from_str(&e.to_json_line()).unwrap()
    }

    #[test]
    fn events_encode_as_the_documented_lines() {
        let change = StateChange {
            at: Millis(0),
            from: State::InProgress,
            to: State::Paused,
            cause: "pause button".into(),
        };
        assert_eq!(
            parsed(LiveEvent::State(&change)),
            json!({"type": "state", "from": "in_progress", "to": "paused",
                   "cause": "pause button", "at": "1970-01-01T00:00:00Z"})
        );
        let t = LiveEvent::Transcript {
            role: Role::Ai,
            text: "Hi",
            is_final: false,
            start_ms: 1,
            end_ms: 2,
        };
        assert_eq!(
            parsed(t),
            json!({"type": "transcript", "role": "ai", "text": "Hi", "final": false,
                   "start_ms": 1, "end_ms": 2})
        );
        assert_eq!(
            parsed(LiveEvent::Speaking(Speaking::None)),
            json!({"type": "speaking", "who": "none"})
        );
        assert_eq!(
            parsed(LiveEvent::TurnStart {
                role: Role::Participant,
                at_ms: 5
            }),
            json!({"type": "turn_start", "role": "participant", "at_ms": 5})
        );
        let signals = QualitySignals {
            loss: 0.5,
            ai_latency_ms: Some(2500),
            ..Default::default()
        };
        let line = parsed(LiveEvent::Signals {
            signals: &signals,
            attention: &["loss", "ai_latency"],
        });
        assert_eq!(line["type"], "signals");
        assert_eq!(line["loss"], 0.5);
        assert_eq!(line["ai_latency_ms"], 2500);
        assert_eq!(line["attention"], json!(["loss", "ai_latency"]));
        assert_eq!(
            parsed(LiveEvent::Progress {
                index: 1,
                count: 5,
                id: "q1"
            }),
            json!({"type": "progress", "index": 1, "count": 5, "id": "q1"})
        );
        assert_eq!(
            parsed(LiveEvent::Monitor {
                joined: false,
                id: "mon_1",
                listening: 0
            }),
            json!({"type": "monitor", "event": "left", "id": "mon_1", "listening": 0})
        );
        assert_eq!(
            parsed(LiveEvent::TurnEnd {
                role: Role::Ai,
                start_ms: 5,
                end_ms: 9
            }),
            json!({"type": "turn_end", "role": "ai", "start_ms": 5, "end_ms": 9})
        );
    }
}
