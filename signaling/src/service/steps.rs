//! Lifecycle steps: [`SessionService::apply`] loads a session, steps the pure
//! [`crate::lifecycle`] machine at the clock's now, persists the step with a compare-and-swap
//! on the row's version (stepping again from the fresh row if another writer got there
//! first), then carries out the effects in order: the media plane, live state events, a
//! restart's new session. Also where sessions are created.

use super::{SessionService, session_not_found};
use crate::error::ApiError;
use crate::event_bus::LiveEvent;
use crate::ids;
use crate::lifecycle::{self, Effect, Event, Lifecycle, Refused, Transition};
use crate::store::webhooks::OutboxEvent;
use crate::store::{InviteRow, SessionRow, SessionUpdate, StoreError, TransitionRow};
use crate::webhooks::{self, EventType};
use std::collections::BTreeMap;

/// How often a step is computed again after losing a version race before giving up. Within
/// one process the per-session lock means it never races; only another writer (a second
/// process on a shared database) can make it.
pub(super) const MAX_STEP_ATTEMPTS: usize = 5;

fn refused(r: Refused) -> ApiError {
    ApiError::conflict(r.code, r.message)
}

impl SessionService {
    /// Applies one event to a stored session and carries out the effects.
    ///
    /// The per-session lock is held from the load to the last effect. The version check
    /// alone would keep the stored steps consistent, but not the effects: they must reach
    /// the media plane in the order their steps were persisted (a pause's `PauseMedia`
    /// before the resume's `ResumeMedia`), so steps of one session never overlap here.
    pub async fn apply(&self, session_id: &str, event: Event) -> Result<SessionRow, ApiError> {
        let _guard = self.lock(session_id).await;
        let name = event.name();
        let (row, t) = self.step_and_persist(session_id, event).await?;
        if let Some((from, to)) = t.changed_state {
            tracing::info!(session = session_id, %from, %to, cause = %t.cause, event = name, "session state changed");
        }
        self.carry_out(&row, &t).await;
        if t.changed_state.is_some() {
            self.refresh_summary(session_id).await;
        }
        Ok(self.store.get_session(session_id).await?.unwrap_or(row))
    }

    /// Loads, steps and writes the session until the write finds the row it read; returns
    /// the row as read and the step.
    async fn step_and_persist(
        &self,
        session_id: &str,
        event: Event,
    ) -> Result<(SessionRow, Transition), ApiError> {
        for attempt in 1..=MAX_STEP_ATTEMPTS {
            let row = self
                .store
                .get_session(session_id)
                .await?
                .ok_or_else(session_not_found)?;
            let lc = row.lifecycle()?;
            let t = lifecycle::step(&lc, event.clone(), self.now()).map_err(refused)?;
            let transitions: Vec<TransitionRow> = t
                .effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Notify(c) => Some(TransitionRow {
                        at: c.at.0,
                        from_state: c.from.as_str().into(),
                        to_state: c.to.as_str().into(),
                        cause: c.cause.clone(),
                    }),
                    _ => None,
                })
                .collect();
            let l = &t.lifecycle;
            let lifecycle_json = serde_json::to_string(l)
                .map_err(|e| ApiError::internal("encoding lifecycle", e))?;
            let end_reason = l.end_reason.as_ref().map(|r| r.to_string());
            let update = SessionUpdate {
                state: l.state,
                lifecycle: &lifecycle_json,
                started_at: l.started_at.map(|m| m.0),
                ended_at: l.ended_at.map(|m| m.0),
                end_reason: end_reason.as_deref(),
                drop_off: l.drop_off.as_deref(),
                next_deadline: lifecycle::next_deadline(l).map(|m| m.0),
                transitions: &transitions,
                events: &[],
            };
            let events = self.end_events(&row, &t, &update);
            let update = SessionUpdate {
                events: &events,
                ..update
            };
            match self
                .store
                .update_session(session_id, &update, row.version)
                .await
            {
                Ok(_) => {
                    if !events.is_empty() {
                        self.wake_webhooks();
                    }
                    return Ok((row, t));
                }
                Err(StoreError::VersionConflict { .. }) => {
                    tracing::debug!(
                        session = session_id,
                        attempt,
                        "session changed meanwhile; stepping again"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            "session_busy",
            "the session kept changing; try again",
        ))
    }

    /// The webhook event of a step that ended the session (`session.completed`, ...), to be
    /// written with the step.
    fn end_events(
        &self,
        row: &SessionRow,
        t: &Transition,
        update: &SessionUpdate<'_>,
    ) -> Vec<OutboxEvent> {
        let Some(kind) = t.changed_state.and_then(|(_, to)| EventType::for_end(to)) else {
            return Vec::new();
        };
        let ended = SessionRow {
            state: update.state,
            started_at: update.started_at,
            ended_at: update.ended_at,
            end_reason: update.end_reason.map(String::from),
            drop_off: update.drop_off.map(String::from),
            ..row.clone()
        };
        vec![webhooks::session_event(
            kind,
            &ended,
            &self.public_url,
            self.now().0,
            serde_json::json!({}),
        )]
    }

    /// Carries out a persisted step's effects, in order.
    async fn carry_out(&self, row: &SessionRow, t: &Transition) {
        let session_id = row.id.as_str();
        self.publish_state_changes(session_id, &t.effects, t.lifecycle.state.is_terminal());
        let finalizing = t.effects.contains(&Effect::FinalizeRecordings);
        for effect in &t.effects {
            match effect {
                Effect::PauseMedia => self.media.pause(session_id).await,
                Effect::ResumeMedia { .. } => {
                    let agent = self.agent_spec(row, &t.lifecycle).await;
                    self.media.resume(session_id, agent).await;
                }
                Effect::StopMedia if !finalizing => {
                    self.peers.remove(session_id);
                    self.media.hang_up(session_id).await;
                }
                Effect::FinalizeRecordings => {
                    self.peers.remove(session_id);
                    let spec = self.recording_spec(row).await;
                    self.media.finish(session_id, spec).await;
                }
                Effect::IssueRestart => {
                    if let Err(e) = self.issue_restart(row).await {
                        tracing::error!(session = session_id, error = %e, "restart failed");
                    }
                }
                // Starting and resuming happen when the participant's peer attaches; resume
                // prompts and notifications are read from the stored lifecycle.
                _ => {}
            }
        }
    }

    /// Announces the step's state changes to monitors; the last one of an ended session is
    /// the stream's last line.
    fn publish_state_changes(&self, session_id: &str, effects: &[Effect], ended: bool) {
        let changes: Vec<&lifecycle::StateChange> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(c) => Some(c),
                _ => None,
            })
            .collect();
        for (i, c) in changes.iter().enumerate() {
            let event = LiveEvent::State(c);
            if ended && i + 1 == changes.len() {
                self.bus.publish_last_event(session_id, &event);
            } else {
                self.bus.publish_event(session_id, &event);
            }
        }
        if ended {
            self.turn_logs.remove(session_id);
            self.forget_live(session_id);
        }
    }

    /// Applies an event whose refusal is expected now and then (signals from the media plane
    /// racing with the participant's own actions, timers): refusals are logged, not raised.
    pub(super) async fn apply_signal(&self, session_id: &str, event: Event) {
        let name = event.name();
        if let Err(e) = self.apply(session_id, event).await {
            tracing::debug!(
                session = session_id,
                event = name,
                code = e.code,
                "signal not applied: {}",
                e.message
            );
        }
    }

    /// A new session for the invite, in `created`.
    pub(super) async fn create_session(
        &self,
        invite: &InviteRow,
        user_agent: Option<&str>,
        ip: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Result<SessionRow, ApiError> {
        // The invite's metadata, with the link's query parameters over it.
        let mut metadata: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&invite.metadata).unwrap_or_default();
        for (k, v) in params {
            metadata.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let now = self.now();
        let lc = Lifecycle::new(self.config.lifecycle.clone(), now);
        let row = SessionRow {
            id: ids::new_id("ses"),
            invite_token: invite.token.clone(),
            campaign_id: invite.campaign_id.clone(),
            script_id: invite.script_id.clone(),
            state: lc.state,
            lifecycle: serde_json::to_string(&lc)
                .map_err(|e| ApiError::internal("encoding lifecycle", e))?,
            created_at: now.0,
            started_at: None,
            ended_at: None,
            end_reason: None,
            drop_off: None,
            user_agent: user_agent.map(String::from),
            ip: ip.map(String::from),
            metadata: serde_json::to_string(&metadata)
                .map_err(|e| ApiError::internal("encoding metadata", e))?,
            version: 0,
            next_deadline: lifecycle::next_deadline(&lc).map(|m| m.0),
            summary: Default::default(),
        };
        self.store.insert_session(&row).await?;
        tracing::info!(session = %row.id, invite = %invite.token, "session created");
        Ok(row)
    }

    /// Admin restart's effect: a new session for the same invite.
    async fn issue_restart(&self, old: &SessionRow) -> Result<SessionRow, ApiError> {
        let invite = self
            .store
            .get_invite(&old.invite_token)
            .await?
            .ok_or_else(|| {
                ApiError::not_found("invite_not_found", "the session's invite is gone")
            })?;
        self.create_session(
            &invite,
            old.user_agent.as_deref(),
            old.ip.as_deref(),
            &BTreeMap::new(),
        )
        .await
    }
}
