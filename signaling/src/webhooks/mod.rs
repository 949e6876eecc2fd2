//! Webhooks (F9): the event types, their JSON bodies (the Standard Webhooks shape
//! `{"type","timestamp","data"}`), the settings of delivery ([`WebhookConfig`], the
//! `[webhooks]` config section), the signature ([`signature`]) and the delivery worker
//! ([`worker`]), which reads the outbox the session service writes and never runs on the
//! session path.

pub mod signature;
pub mod worker;

use crate::ids;
use crate::store::SessionRow;
use crate::store::webhooks::OutboxEvent;
use crate::timestamps::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a webhook endpoint may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    #[serde(rename = "session.completed")]
    SessionCompleted,
    #[serde(rename = "session.abandoned")]
    SessionAbandoned,
    #[serde(rename = "session.admin_ended")]
    SessionAdminEnded,
    #[serde(rename = "recording.ready")]
    RecordingReady,
    #[serde(rename = "export.ready")]
    ExportReady,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::SessionCompleted,
        EventType::SessionAbandoned,
        EventType::SessionAdminEnded,
        EventType::RecordingReady,
        EventType::ExportReady,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SessionCompleted => "session.completed",
            EventType::SessionAbandoned => "session.abandoned",
            EventType::SessionAdminEnded => "session.admin_ended",
            EventType::RecordingReady => "recording.ready",
            EventType::ExportReady => "export.ready",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event of a session that ended in `state`, if that end has one.
    pub fn for_end(state: earshot_vocab::State) -> Option<EventType> {
        use earshot_vocab::State;
        match state {
            State::Completed => Some(EventType::SessionCompleted),
            State::Abandoned => Some(EventType::SessionAbandoned),
            State::AdminEnded => Some(EventType::SessionAdminEnded),
            _ => None,
        }
    }
}

/// Delivery settings (`[webhooks]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// How long a delivery is retried after its event (or a redelivery by hand).
    pub retry_secs: u64,
    /// Wait before the first retry; doubled after each failed attempt...
    pub backoff_initial_ms: u64,
    /// ...up to this.
    pub backoff_max_secs: u64,
    /// An attempt without a complete response within this counts as failed.
    pub timeout_ms: u64,
    /// Attempts running at once.
    pub max_in_flight: usize,
    /// Events whose deliveries are done (delivered or failed) are removed with their
    /// delivery log after this many days.
    pub keep_days: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_secs: 86_400,
            backoff_initial_ms: 5_000,
            backoff_max_secs: 3_600,
            timeout_ms: 10_000,
            max_in_flight: 8,
            keep_days: 30,
        }
    }
}

impl WebhookConfig {
    /// A message naming the key that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_secs == 0 || self.retry_secs > 30 * 86_400 {
            return Err(format!(
                "webhooks.retry_secs must be 1..=2592000 (30 days), got {}",
                self.retry_secs
            ));
        }
        if !(10..=3_600_000).contains(&self.backoff_initial_ms) {
            return Err(format!(
                "webhooks.backoff_initial_ms must be 10..=3600000, got {}",
                self.backoff_initial_ms
            ));
        }
        if self.backoff_max_secs * 1000 < self.backoff_initial_ms || self.backoff_max_secs > 86_400
        {
            return Err(format!(
                "webhooks.backoff_max_secs must be at least backoff_initial_ms and at most 86400, got {}",
                self.backoff_max_secs
            ));
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err(format!(
                "webhooks.timeout_ms must be 100..=120000, got {}",
                self.timeout_ms
            ));
        }
        if !(1..=256).contains(&self.max_in_flight) {
            return Err(format!(
                "webhooks.max_in_flight must be 1..=256, got {}",
                self.max_in_flight
            ));
        }
        if !(1..=3650).contains(&self.keep_days) {
            return Err(format!(
                "webhooks.keep_days must be 1..=3650, got {}",
                self.keep_days
            ));
        }
        Ok(())
    }

    /// Wait after the `attempts`-th failed attempt (1, 2, ...): exponential, capped.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
        let ms = self
            .backoff_initial_ms
            .saturating_mul(1u64 << doublings)
            .min(self.backoff_max_secs.saturating_mul(1000));
        i64::try_from(ms).unwrap_or(i64::MAX)
    }
}

/// Links of a session's exports, absolute under `base` (the public URL).
pub fn session_links(base: &str, session_id: &str) -> Value {
    json!({
        "session": format!("{base}/v1/sessions/{session_id}"),
        "transcript": format!("{base}/v1/sessions/{session_id}/transcript"),
        "export_pdf": format!("{base}/v1/sessions/{session_id}/export.pdf"),
        "export_json": format!("{base}/v1/sessions/{session_id}/export.json"),
        "audio_zip": format!("{base}/v1/sessions/{session_id}/audio.zip"),
    })
}

/// The outbox event `kind` about a session, `data` added to the session's fields.
pub fn session_event(
    kind: EventType,
    session: &SessionRow,
    base: &str,
    now_ms: i64,
    data: Value,
) -> OutboxEvent {
    let mut d = json!({
        "session_id": session.id,
        "campaign_id": session.campaign_id,
        "script_id": session.script_id,
        "state": session.state,
        "end_reason": session.end_reason,
        "drop_off": session.drop_off,
        "created_at": rfc3339(session.created_at),
        "started_at": session.started_at.map(rfc3339),
        "ended_at": session.ended_at.map(rfc3339),
        "links": session_links(base, &session.id),
    });
    if let (Value::Object(m), Value::Object(extra)) = (&mut d, data) {
        m.extend(extra);
    }
    let body = json!({
        "type": kind.as_str(),
        "timestamp": rfc3339(now_ms),
        "data": d,
    });
    OutboxEvent {
        id: ids::new_id("msg"),
        kind: kind.as_str().to_string(),
        session_id: Some(session.id.clone()),
        campaign_id: Some(session.campaign_id.clone()),
        payload: body.to_string(),
        created_at: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).ok(), Some(json!(e.as_str())));
        }
        assert_eq!(EventType::parse("session.started"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = WebhookConfig {
            backoff_initial_ms: 200,
            backoff_max_secs: 1,
            ..WebhookConfig::default()
        };
        let waits: Vec<i64> = (1..=5).map(|n| c.backoff_ms(n)).collect();
        assert_eq!(waits, vec![200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff_ms(1000), 1000);
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(WebhookConfig::default().validate(), Ok(()));
        let bad = WebhookConfig {
            timeout_ms: 5,
            ..WebhookConfig::default()
        };
        assert!(
            bad.validate()
                .is_err_and(|m| m.contains("webhooks.timeout_ms"))
        );
        let bad = WebhookConfig {
            backoff_initial_ms: 10_000,
            backoff_max_secs: 1,
            ..WebhookConfig::default()
        };
        assert!(
            bad.validate()
                .is_err_and(|m| m.contains("backoff_max_secs"))
        );
    }
}
