//! Lifecycle timers: one round of the ticker (a `Tick` to every session whose stored
//! `next_deadline` has passed, found by an indexed query, not a scan of live sessions), and
//! the recovery after a restart of the process.
//!
//! When several processes share the database each due session is fired by one of them: a
//! round claims the due sessions with a lease ([`crate::store::SessionStore::claim_due_sessions`])
//! and steps only those; the step clears the lease. (Optimistic versioning would make a double
//! fire safe, but each would cost a lifecycle step.)

use super::SessionService;
use crate::lifecycle::Event;

/// How long a claimed deadline is this process's: longer than a round of steps takes; a
/// process that dies mid-round delays its claimed timers by at most this.
const DEADLINE_LEASE_MS: i64 = 30_000;
/// Sessions claimed at once (a round claims again while batches come back full).
const CLAIM_BATCH: i64 = 200;

impl SessionService {
    /// Delivers `Tick` to every session whose next timer is due by the clock's now and that
    /// this process claimed.
    pub async fn fire_due_timers(&self) {
        let now = self.now();
        loop {
            let due = match self
                .store
                .claim_due_sessions(now.0, DEADLINE_LEASE_MS, CLAIM_BATCH)
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(error = %e, "claiming sessions with due timers failed");
                    return;
                }
            };
            let full = due.len() as i64 == CLAIM_BATCH;
            for id in due {
                self.apply_signal(&id, Event::Tick).await;
            }
            if !full {
                return;
            }
        }
    }

    /// After a restart of the process no session has media: each one that was in progress
    /// is paused as `server_restart`, a pause that is not the participant's (it neither uses
    /// one of their pauses nor ends a session that has none left; see `lifecycle`).
    /// Listen-ins that were open when the process died end now.
    pub async fn recover_after_restart(&self) {
        self.end_stale_listens().await;
        self.recover_sessions_not_held(|_| false).await;
    }

    /// The same for one node among several sharing the store: only the sessions in progress
    /// whose media no live node holds (`held`, from the nodes' announcements) are paused as
    /// `server_restart`; the others run on other nodes. Listen-ins are left as they are (they
    /// may be other nodes' live ones).
    pub async fn recover_sessions_not_held(&self, held: impl Fn(&str) -> bool) {
        match self.store.session_ids_in_state("in_progress").await {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !held(id)) {
                    self.apply_signal(&id, Event::ServerRestarted).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "listing sessions to recover failed"),
        }
    }
}
