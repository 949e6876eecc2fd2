//! Turns and the live stream (F6, F7): the media plane's turn and transcript events are fed
//! to the session's [`TurnLog`] (kept in memory while the session is live, rebuilt from the
//! store after a restart), the turns they change are stored, and the live events go out on
//! the event bus. Also what a monitor or an admin reads: the stored turn log, the snapshot a
//! monitor starts from, and a subscription to the stream.

use super::SessionService;
use crate::error::ApiError;
use crate::event_bus::{LiveEvent, Subscription};
use crate::store::SessionRow;
use crate::turns::{Speaking, Turn, TurnInput, TurnLog};

/// A session and its turns so far, as a monitor first sees them.
#[derive(Debug, Clone)]
pub struct LiveSnapshot {
    pub session: SessionRow,
    pub turns: Vec<Turn>,
    /// The session has ended: the stream has nothing more.
    pub ended: bool,
}

impl SessionService {
    /// Feeds one turn event to the session's turn log, stores the turns it changed, then
    /// publishes `event` (and a `speaking` event if who speaks changed). Storing first keeps
    /// a monitor's snapshot (read after it subscribed) consistent with the stream.
    pub(super) async fn turn_event(
        &self,
        session_id: &str,
        input: TurnInput<'_>,
        event: LiveEvent<'_>,
    ) {
        fn step(log: &mut TurnLog, input: TurnInput<'_>) -> (Vec<Turn>, Speaking, Speaking) {
            let before = log.speaking();
            let changed = log.apply(input);
            (changed, before, log.speaking())
        }
        // A session that already ended gets a log that is used once and not kept.
        let mut once = None;
        if !self.turn_logs.contains_key(session_id) {
            match self.load_turn_log(session_id).await {
                Ok(Some((log, true))) => {
                    self.turn_logs.entry(session_id.to_string()).or_insert(log);
                }
                Ok(Some((log, false))) => once = Some(log),
                Ok(None) => {
                    tracing::debug!(session = session_id, "turn event for an unknown session");
                    return;
                }
                Err(e) => {
                    tracing::error!(session = session_id, error = %e, "loading the turn log failed");
                    return;
                }
            }
        }
        let stepped = match once.as_mut() {
            Some(log) => Some(step(log, input)),
            None => self
                .turn_logs
                .get_mut(session_id)
                .map(|mut log| step(&mut log, input)),
        };
        let Some((changed, before, after)) = stepped else {
            return;
        };
        if !changed.is_empty() {
            let mut rows: Vec<_> = changed.iter().map(Turn::to_row).collect();
            // The campaign's PII policy, when it applies as lines are stored.
            let originals = self.protect_rows(session_id, &mut rows).await;
            if let Err(e) = self.store.upsert_turns(session_id, &rows).await {
                tracing::error!(session = session_id, error = %e, "storing turns failed");
            } else if let (false, Some(privacy)) = (originals.is_empty(), &self.privacy)
                && let Err(e) = privacy.set_turn_originals(session_id, &originals).await
            {
                tracing::error!(session = session_id, error = %e, "storing originals failed");
            }
        }
        self.bus.publish_event(session_id, &event);
        if before != after {
            self.bus
                .publish_event(session_id, &LiveEvent::Speaking(after));
            self.share_live(session_id);
        }
        // After the live line went out: the list's summary may lag it, monitors may not.
        if !changed.is_empty() {
            self.refresh_summary(session_id).await;
        }
    }

    /// Streams an event that changes no turn (a partial transcript line).
    pub(super) fn stream_only(&self, session_id: &str, event: LiveEvent<'_>) {
        self.bus.publish_event(session_id, &event);
    }

    /// The stored turn log of a session and whether the session is live (not ended); `None`
    /// if the session does not exist.
    async fn load_turn_log(&self, session_id: &str) -> Result<Option<(TurnLog, bool)>, ApiError> {
        let Some(row) = self.store.get_session(session_id).await? else {
            return Ok(None);
        };
        let log = TurnLog::from_turns(self.stored_turns(session_id).await?);
        Ok(Some((log, !row.state.is_terminal())))
    }

    /// The session's turn log (admin).
    pub async fn transcript(&self, id: &str) -> Result<Vec<Turn>, ApiError> {
        self.session(id).await?;
        self.stored_turns(id).await
    }

    /// What a monitor starts from; `None` if there is no such session.
    pub async fn live_snapshot(&self, id: &str) -> Result<Option<LiveSnapshot>, ApiError> {
        let Some(session) = self.store.get_session(id).await? else {
            return Ok(None);
        };
        let mut turns = self.stored_turns(id).await?;
        self.scrub_turns_live(id, &mut turns).await;
        Ok(Some(LiveSnapshot {
            ended: session.state.is_terminal(),
            session,
            turns,
        }))
    }

    /// A monitor's subscription to the session's live events from now on.
    pub fn subscribe_live(&self, id: &str) -> Subscription {
        self.bus.subscribe(id)
    }
}
