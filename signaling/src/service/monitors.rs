//! Live monitoring (F7) beyond the transcript stream: silent listen-ins over WHEP (a QA
//! monitor's receive-only peer on the session's media, its trickled candidates, its hang-up,
//! each listen-in recorded with its start and end) and the overview of the live sessions that
//! the Live Sessions dashboard shows (with what `live_state` keeps).

use super::SessionService;
use super::live_state::LatestSignals;
use super::peers::{TrickleFragment, media_error};
use crate::error::ApiError;
use crate::event_bus::LiveEvent;
use crate::ids;
use crate::lifecycle::State;
use crate::media_port::MediaError;
use crate::store::{MonitorRow, SessionFilter, SessionRow};
use crate::turns::Speaking;
use std::collections::HashMap;

/// A listen-in in progress, in the service's registry (by monitor id).
pub(super) struct MonitorEntry {
    session_id: String,
    /// The media plane's id of the listener peer.
    listener_id: u64,
    /// Whatever the caller holds for as long as the listen-in lasts (a place among the
    /// monitors of the session, see `routes::limits`); dropped when it ends.
    _hold: Box<dyn Send + Sync>,
}

/// A started listen-in: its resource id and the SDP answer.
pub struct StartedListen {
    pub monitor_id: String,
    pub answer_sdp: String,
}

/// One live session as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct LiveOverview {
    pub session: SessionRow,
    pub campaign_name: Option<String>,
    pub script_name: Option<String>,
    /// The invite's `label` metadata (the invite token itself is never shown).
    pub label: Option<String>,
    pub active_ms: i64,
    /// The current question (the interviewer's last progress point).
    pub point: Option<String>,
    pub turns: usize,
    pub speaking: Speaking,
    pub signals: Option<LatestSignals>,
    /// Monitors listening in now.
    pub listening: usize,
}

impl MonitorEntry {
    pub(super) fn session_id(&self) -> &str {
        &self.session_id
    }
}

fn monitor_not_found() -> ApiError {
    ApiError::not_found("monitor_not_found", "no such listen-in")
}

fn no_live_media() -> ApiError {
    ApiError::conflict(
        "no_live_media",
        "the session has no live media to listen to (it has not started, or its participant is not connected)",
    )
}

impl SessionService {
    /// WHEP offer of a QA monitor: a receive-only peer on the session's live media. `hold`
    /// is kept until the listen-in ends.
    pub async fn start_listen(
        &self,
        session_id: &str,
        offer: &str,
        hold: Box<dyn Send + Sync>,
    ) -> Result<StartedListen, ApiError> {
        let session = self.session(session_id).await?;
        if session.state.is_terminal() {
            return Err(ApiError::conflict(
                "session_ended",
                "this interview has ended",
            ));
        }
        if !matches!(session.state, State::InProgress | State::Paused) {
            return Err(no_live_media());
        }
        let (listener_id, answer_sdp) =
            self.media
                .open_listener(session_id, offer)
                .await
                .map_err(|e| match e {
                    MediaError::UnknownSession => no_live_media(),
                    other => media_error(other),
                })?;
        let monitor_id = ids::new_id("mon");
        let row = MonitorRow {
            id: monitor_id.clone(),
            session_id: session_id.to_string(),
            started_at: self.now().0,
            ended_at: None,
        };
        if let Err(e) = self.store.insert_monitor(&row).await {
            self.media.close_listener(session_id, listener_id).await;
            return Err(e.into());
        }
        self.monitors.insert(
            monitor_id.clone(),
            MonitorEntry {
                session_id: session_id.to_string(),
                listener_id,
                _hold: hold,
            },
        );
        tracing::info!(session = session_id, monitor = %monitor_id, "a monitor listens in");
        self.publish_monitor(session_id, &monitor_id, true);
        Ok(StartedListen {
            monitor_id,
            answer_sdp,
        })
    }

    /// The media plane's listener id of a listen-in of this session.
    fn listener_of(&self, session_id: &str, monitor_id: &str) -> Result<u64, ApiError> {
        self.monitors
            .get(monitor_id)
            .filter(|m| m.session_id == session_id)
            .map(|m| m.listener_id)
            .ok_or_else(monitor_not_found)
    }

    /// WHEP PATCH: trickled candidates of a listen-in (an ICE restart is not offered to
    /// monitors: the fragment's candidates are added, its credentials ignored; a monitor that
    /// lost its connection posts a new offer).
    pub async fn listen_trickle(
        &self,
        session_id: &str,
        monitor_id: &str,
        fragment: TrickleFragment,
    ) -> Result<(), ApiError> {
        self.session(session_id).await?;
        let listener = self.listener_of(session_id, monitor_id)?;
        for c in &fragment.candidates {
            self.media
                .add_listener_candidate(session_id, listener, c)
                .await
                .map_err(|e| match e {
                    MediaError::UnknownSession => monitor_not_found(),
                    other => media_error(other),
                })?;
        }
        Ok(())
    }

    /// WHEP DELETE: the monitor stops listening.
    pub async fn stop_listen(&self, session_id: &str, monitor_id: &str) -> Result<(), ApiError> {
        self.session(session_id).await?;
        let listener = self.listener_of(session_id, monitor_id)?;
        self.media.close_listener(session_id, listener).await;
        self.end_listen(monitor_id).await;
        Ok(())
    }

    /// The media plane says a listener left (its connection ended, or the session's media).
    pub(super) async fn listener_left(&self, session_id: &str, listener_id: u64) {
        let id = self
            .monitors
            .iter()
            .find(|m| m.session_id == session_id && m.listener_id == listener_id)
            .map(|m| m.key().clone());
        if let Some(id) = id {
            self.end_listen(&id).await;
        }
    }

    /// Ends a listen-in once: out of the registry, its end stored, announced.
    async fn end_listen(&self, monitor_id: &str) {
        let Some((_, entry)) = self.monitors.remove(monitor_id) else {
            return;
        };
        if let Err(e) = self.store.end_monitor(monitor_id, self.now().0).await {
            tracing::error!(monitor = monitor_id, error = %e, "storing the end of a listen-in failed");
        }
        tracing::info!(session = %entry.session_id, monitor = monitor_id, "a monitor stopped listening");
        self.publish_monitor(&entry.session_id, monitor_id, false);
    }

    fn publish_monitor(&self, session_id: &str, monitor_id: &str, joined: bool) {
        let listening = self.local_listening(session_id);
        self.bus.publish_event(
            session_id,
            &LiveEvent::Monitor {
                joined,
                id: monitor_id,
                listening,
            },
        );
        self.share_live(session_id);
    }

    /// Monitors listening in to the session now (here, or on the node running it).
    pub fn listening(&self, session_id: &str) -> usize {
        match self.local_listening(session_id) {
            0 => self
                .bus
                .remote_live_state(session_id)
                .map_or(0, |d| d.listening),
            n => n,
        }
    }

    /// Monitors listening in to the session on this node.
    pub(super) fn local_listening(&self, session_id: &str) -> usize {
        self.monitors
            .iter()
            .filter(|m| m.session_id == session_id)
            .count()
    }

    /// Whether this listen-in is in progress (the session detail marks it live).
    pub fn is_listening(&self, monitor_id: &str) -> bool {
        self.monitors.contains_key(monitor_id)
    }

    /// Listen-ins in progress, in all sessions.
    pub fn listen_in_count(&self) -> usize {
        self.monitors.len()
    }

    /// Listen-ins left open by a process that was killed end at the restart.
    pub async fn end_stale_listens(&self) {
        match self.store.end_open_monitors(self.now().0).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "listen-ins of the previous run closed"),
            Err(e) => tracing::error!(error = %e, "closing the previous run's listen-ins failed"),
        }
    }

    /// The live sessions (in progress or paused), newest first, as the dashboard shows them;
    /// `state` narrows to one of the two, `campaign` to one campaign.
    pub async fn live_overview(
        &self,
        campaign: Option<String>,
        state: Option<State>,
    ) -> Result<Vec<LiveOverview>, ApiError> {
        let states = match state {
            Some(s) => vec![s],
            None => vec![State::InProgress, State::Paused],
        };
        let mut rows = Vec::new();
        for state in states {
            let filter = SessionFilter {
                campaign: campaign.clone(),
                state: Some(state),
                limit: Some(1000),
                ..SessionFilter::default()
            };
            rows.extend(self.store.list_sessions(&filter).await?);
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        let now = self.now();
        let mut campaigns: HashMap<String, Option<String>> = HashMap::new();
        let mut scripts: HashMap<String, Option<String>> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for session in rows {
            if !campaigns.contains_key(&session.campaign_id) {
                let name = self
                    .store
                    .get_campaign(&session.campaign_id)
                    .await?
                    .map(|c| c.name);
                campaigns.insert(session.campaign_id.clone(), name);
            }
            if !scripts.contains_key(&session.script_id) {
                let name = self
                    .store
                    .get_script(&session.script_id)
                    .await?
                    .map(|s| s.name);
                scripts.insert(session.script_id.clone(), name);
            }
            let label = self
                .store
                .get_invite(&session.invite_token)
                .await?
                .and_then(|i| {
                    serde_json::from_str::<HashMap<String, String>>(&i.metadata)
                        .ok()?
                        .remove("label")
                });
            let lc = session.lifecycle()?;
            let local = self
                .turn_logs
                .get(&session.id)
                .map(|log| (log.len(), log.speaking()));
            let (turns, speaking) = match local {
                Some(known) => known,
                None => {
                    // Not run here: the stored turns, and who speaks on the node running it.
                    let speaking = self
                        .bus
                        .remote_live_state(&session.id)
                        .map_or(Speaking::None, |d| d.speaking);
                    (self.store.turns(&session.id).await?.len(), speaking)
                }
            };
            out.push(LiveOverview {
                campaign_name: campaigns.get(&session.campaign_id).cloned().flatten(),
                script_name: scripts.get(&session.script_id).cloned().flatten(),
                label,
                active_ms: lc.active_duration_ms(now),
                point: lc.drop_off.clone(),
                turns,
                speaking,
                signals: self.latest_signals(&session.id),
                listening: self.listening(&session.id),
                session,
            });
        }
        Ok(out)
    }
}
