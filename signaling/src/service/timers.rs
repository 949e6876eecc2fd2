//! Lifecycle timers: one round of the ticker (a `Tick` to every session whose stored
//! `next_deadline` has passed, found by an indexed query, not a scan of live sessions), and
//! the recovery after a restart of the process.

use super::SessionService;
use crate::lifecycle::Event;

impl SessionService {
    /// Delivers `Tick` to every session whose next timer is due by the clock's now.
    pub async fn fire_due_timers(&self) {
        let now = self.now();
        let due = match self.store.due_sessions(now.0).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "listing sessions with due timers failed");
                return;
            }
        };
        for id in due {
            self.apply_signal(&id, Event::Tick).await;
        }
    }

    /// After a restart of the process no session has media: each one that was in progress
    /// is paused as `server_restart`, a pause that is not the participant's (it neither uses
    /// one of their pauses nor ends a session that has none left; see `lifecycle`).
    /// Listen-ins that were open when the process died end now.
    pub async fn recover_after_restart(&self) {
        self.end_stale_listens().await;
        match self.store.session_ids_in_state("in_progress").await {
            Ok(ids) => {
                for id in ids {
                    self.apply_signal(&id, Event::ServerRestarted).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "listing sessions to recover failed"),
        }
    }
}
