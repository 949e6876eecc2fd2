//! What an admin does with sessions: list them, read one in full, end it, restart it, mark a
//! stuck one complete or abandoned, delete
//! it with everything it left (rows, recordings, live stream), and read the counters behind
//! `/metrics`.

use super::SessionService;
use crate::error::ApiError;
use crate::lifecycle::{Event, Lifecycle, Millis};
use crate::store::{MonitorRow, RecordingRow, SessionFilter, SessionRow, TransitionRow};

/// Everything about one session, as of a moment (durations run until then).
#[derive(Debug, Clone)]
pub struct SessionDetail {
    pub session: SessionRow,
    pub lifecycle: Lifecycle,
    pub recordings: Vec<RecordingRow>,
    pub transitions: Vec<TransitionRow>,
    /// Its listen-ins, with whether each is in progress.
    pub monitors: Vec<(MonitorRow, bool)>,
    pub as_of: Millis,
}

/// An admin restart: the old session (now `restarted`) and the new one for the same invite.
#[derive(Debug, Clone)]
pub struct Restarted {
    pub restarted: SessionRow,
    pub session: SessionRow,
}

impl SessionService {
    pub async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRow>, ApiError> {
        Ok(self.store.list_sessions(filter).await?)
    }

    /// Everything about one session.
    pub async fn session_detail(&self, id: &str) -> Result<SessionDetail, ApiError> {
        let session = self.session(id).await?;
        let lifecycle = session.lifecycle()?;
        Ok(SessionDetail {
            recordings: self.store.recordings(id).await?,
            transitions: self.store.transitions(id).await?,
            monitors: self
                .store
                .monitors(id)
                .await?
                .into_iter()
                .map(|m| {
                    let live = m.ended_at.is_none() && self.is_listening(&m.id);
                    (m, live)
                })
                .collect(),
            as_of: self.now(),
            session,
            lifecycle,
        })
    }

    /// Ends the session now (`admin_ended`), keeping what was recorded.
    pub async fn admin_end(&self, id: &str) -> Result<SessionRow, ApiError> {
        Self::require_id(id)?;
        self.apply(id, Event::AdminEnd).await
    }

    /// Ends a session stuck in progress as `completed` (it must have a captured turn).
    pub async fn mark_complete(&self, id: &str) -> Result<SessionRow, ApiError> {
        Self::require_id(id)?;
        self.apply(id, Event::MarkComplete).await
    }

    /// Ends a session stuck in progress as `abandoned`.
    pub async fn mark_abandoned(&self, id: &str) -> Result<SessionRow, ApiError> {
        Self::require_id(id)?;
        self.apply(id, Event::MarkAbandoned).await
    }

    /// Marks the session `restarted` (also one that ended, not one already restarted); its
    /// effect issues a new one for the same invite.
    pub async fn admin_restart(&self, id: &str) -> Result<Restarted, ApiError> {
        Self::require_id(id)?;
        let old = self.apply(id, Event::AdminRestart).await?;
        let new = self
            .store
            .latest_session_for_invite(&old.invite_token)
            .await?
            .filter(|s| s.id != old.id)
            .ok_or_else(|| ApiError::internal("restarting", "no new session was issued"))?;
        Ok(Restarted {
            restarted: old,
            session: new,
        })
    }

    /// Deletes every row and file of the session, irrevocably (an admin's request).
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.delete_by(id, "admin").await
    }

    /// Deletes every row and file of the session; `by` fulfils its pending deletion
    /// requests (`admin`, `policy`).
    pub(super) async fn delete_by(&self, id: &str, by: &str) -> Result<(), ApiError> {
        Self::require_id(id)?;
        let _guard = self.lock(id).await;
        self.session(id).await?;
        self.peers.remove(id);
        self.media.discard(id).await;
        self.store.delete_session(id).await?;
        self.turn_logs.remove(id);
        self.forget_live(id);
        self.monitors.retain(|_, m| m.session_id() != id);
        self.bus.close_stream(id);
        self.blobs
            .delete_session(id)
            .await
            .map_err(|e| ApiError::internal("deleting recordings", e))?;
        tracing::info!(session = id, by, "session deleted");
        self.deletion_done(id, by).await;
        Ok(())
    }

    /// Number of sessions in each state.
    pub async fn sessions_by_state(&self) -> Result<Vec<(String, i64)>, ApiError> {
        Ok(self.store.count_sessions_by_state().await?)
    }

    /// Whether this process can take sessions: the store answers a query and the recordings'
    /// store has at least `min_free_bytes` of room (see `routes::health`).
    pub async fn readiness(&self, min_free_bytes: u64) -> Readiness {
        let store = match self.store.count_sessions_by_state().await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        let disk = match self.blobs.free_bytes().await {
            Ok(Some(free)) if free < min_free_bytes => Err(format!(
                "{} MiB free for recordings, {} MiB needed",
                free >> 20,
                min_free_bytes >> 20
            )),
            Ok(free) => Ok(free),
            Err(e) => Err(e.to_string()),
        };
        Readiness { store, disk }
    }

    /// Monitors connected to live streams.
    pub fn live_monitor_count(&self) -> usize {
        self.bus
            .subscriber_count()
            .saturating_sub(self.participant_feed_count())
    }

    /// The media plane's counters (Prometheus text).
    pub fn media_metrics(&self) -> String {
        self.media.metrics_text()
    }

    /// The event bus's counters (Prometheus text; none for the in-process hub).
    pub fn bus_metrics(&self) -> String {
        self.bus.metrics_text()
    }
}

/// What [`SessionService::readiness`] found: each check passed, or why not.
#[derive(Debug)]
pub struct Readiness {
    pub store: Result<(), String>,
    /// Free bytes for recordings when known.
    pub disk: Result<Option<u64>, String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.store.is_ok() && self.disk.is_ok()
    }
}
