//! What is kept in memory about each live session besides its turn log, and the
//! participant's own feed: the media plane's latest quality signals (published with why the
//! session needs attention, [`crate::attention`]), the prompt being asked and the
//! interviewer's latest words (published as `progress`; what a participant feed starts from),
//! and the count of participant feeds (they are bus subscribers, not monitors).
//!
//! With a networked bus (several nodes) the node running a session shares this, with who
//! speaks and how many monitors listen, as a [`LiveDigest`] on each change; the readers
//! here fall back to another node's digest for a session this node does not run.

use super::SessionService;
use crate::attention::attention;
use crate::error::ApiError;
use crate::event_bus::{LiveDigest, LiveEvent};
use crate::lifecycle::Millis;
use crate::media_port::QualitySignals;
use crate::store::SessionRow;
use crate::turns::Speaking;

/// The latest quality signals of a live session and when they came.
#[derive(Debug, Clone)]
pub struct LatestSignals {
    pub at: Millis,
    pub signals: QualitySignals,
    pub attention: Vec<&'static str>,
}

/// Where a live session's interview stands, for the participant's own feed: the prompt
/// being asked (index from 0, and how many there are; 0 when an agent leads) and the
/// interviewer's latest words.
#[derive(Debug, Clone, Default)]
pub struct InterviewNow {
    pub progress: Option<(usize, usize)>,
    pub caption: Option<String>,
}

/// A participant's subscription to their own session's live lines (see
/// `routes::participant_live`); counted apart from the monitors while it lasts.
pub struct ParticipantFeed {
    pub lines: crate::event_bus::Subscription,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for ParticipantFeed {
    fn drop(&mut self) {
        self.count
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl SessionService {
    /// New quality signals from the media plane: kept as the session's latest and published.
    pub(super) fn signals_arrived(&self, session_id: &str, signals: QualitySignals) {
        let latest = LatestSignals {
            at: self.now(),
            attention: attention(&signals),
            signals,
        };
        self.bus.publish_event(
            session_id,
            &LiveEvent::Signals {
                signals: &latest.signals,
                attention: &latest.attention,
            },
        );
        self.signals.insert(session_id.to_string(), latest);
        self.share_live(session_id);
    }

    /// The session's latest quality signals, if its media reported any (here, or on the
    /// node running it).
    pub fn latest_signals(&self, session_id: &str) -> Option<LatestSignals> {
        if let Some(s) = self.signals.get(session_id) {
            return Some(s.clone());
        }
        let remote = self.bus.remote_live_state(session_id)?;
        let signals = remote.signals?;
        Some(LatestSignals {
            at: Millis(remote.signals_at.unwrap_or(0)),
            attention: attention(&signals),
            signals,
        })
    }

    /// Shares what this node keeps about the session with the other nodes (only with a
    /// networked bus; the in-process hub has no other nodes).
    pub(super) fn share_live(&self, session_id: &str) {
        if !self.bus.shares_live_state() {
            return;
        }
        let latest = self
            .signals
            .get(session_id)
            .map(|s| (s.signals.clone(), s.at.0));
        let now = self.interview_now.get(session_id).map(|n| n.clone());
        let digest = LiveDigest {
            speaking: self.local_speaking(session_id).unwrap_or(Speaking::None),
            signals_at: latest.as_ref().map(|l| l.1),
            signals: latest.map(|l| l.0),
            listening: self.local_listening(session_id),
            progress: now.as_ref().and_then(|n| n.progress),
            caption: now.and_then(|n| n.caption),
        };
        self.bus.share_live_state(session_id, &digest);
    }

    /// Who speaks in a session this node runs (`None`: it runs no such session).
    pub(super) fn local_speaking(&self, session_id: &str) -> Option<Speaking> {
        self.turn_logs.get(session_id).map(|l| l.speaking())
    }

    /// The interviewer moved to a prompt: kept, and announced as a `progress` live event.
    pub(super) fn progress_arrived(&self, session_id: &str, index: usize, count: usize, id: &str) {
        self.interview_now
            .entry(session_id.to_string())
            .or_default()
            .progress = Some((index, count));
        self.bus
            .publish_event(session_id, &LiveEvent::Progress { index, count, id });
        self.share_live(session_id);
    }

    /// The interviewer's latest words (a transcript line of the AI), kept for a participant
    /// feed that starts while they are spoken.
    pub(super) fn caption_arrived(&self, session_id: &str, text: &str) {
        self.interview_now
            .entry(session_id.to_string())
            .or_default()
            .caption = Some(text.to_string());
        self.share_live(session_id);
    }

    /// Where the session's interview stands now (see [`InterviewNow`]) and whether the
    /// interviewer is speaking (here, or on the node running it).
    pub fn interview_now(&self, session_id: &str) -> (InterviewNow, bool) {
        let local = self.interview_now.get(session_id).map(|n| n.clone());
        if local.is_none()
            && self.local_speaking(session_id).is_none()
            && let Some(remote) = self.bus.remote_live_state(session_id)
        {
            let now = InterviewNow {
                progress: remote.progress,
                caption: remote.caption,
            };
            return (now, remote.speaking == Speaking::Ai);
        }
        let ai_speaking = self
            .turn_logs
            .get(session_id)
            .is_some_and(|l| l.ai_speaking());
        (local.unwrap_or_default(), ai_speaking)
    }

    /// The participant's own feed of their session's live lines (filtered by the route).
    pub fn participant_feed(&self, session_id: &str) -> ParticipantFeed {
        let lines = self.bus.subscribe(session_id);
        self.participant_feeds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ParticipantFeed {
            lines,
            count: std::sync::Arc::clone(&self.participant_feeds),
        }
    }

    /// Participants' feeds open now.
    pub fn participant_feed_count(&self) -> usize {
        self.participant_feeds
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The invite's newest session, whatever its state (the participant's live feed);
    /// `consent_required` before there is one.
    pub async fn invite_session(
        &self,
        invite: &crate::store::InviteRow,
    ) -> Result<SessionRow, ApiError> {
        self.store
            .latest_session_for_invite(&invite.token)
            .await?
            .ok_or_else(|| ApiError::conflict("consent_required", "accept the consent first"))
    }

    /// Forgets what was kept about a session's live media (it ended or was deleted).
    pub(super) fn forget_live(&self, session_id: &str) {
        self.signals.remove(session_id);
        self.interview_now.remove(session_id);
        self.session_campaigns.remove(session_id);
        self.bus.forget_live_state(session_id);
    }
}
