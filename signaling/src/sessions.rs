//! The session controller: applies lifecycle events (from routes, the media plane and the
//! clock) to stored sessions through the pure state machine in [`crate::lifecycle`], persists
//! each step, and carries out its effects on the media plane.

use crate::error::ApiError;
use crate::ids;
use crate::lifecycle::{self, Effect, Event, Lifecycle, LifecycleConfig, Millis, Refused};
use crate::live::Hub;
use crate::media_port::{
    AgentSpec, InterviewSpec, MediaError, MediaEvent, MediaPlane, OpenParticipant, PromptSpec,
    RecordingFile, RecordingSpec,
};
use crate::store::{
    InviteRow, RecordingRow, ScriptRow, SessionRow, SessionUpdate, Store, TransitionRow, parse_json,
};
use crate::turns::{self, Role, Speaking, Turn, TurnInput, TurnLog};
use axum::http::StatusCode;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// What a script's `definition` column holds: the built-in interviewer's prompts
/// (`{"prompts":[...]}`) or an external agent (`{"agent":{"url","audio_format"}}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScriptDefinition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<PromptSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentDefinition>,
}

/// An external agent as a script defines it (see [`AgentSpec`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentDefinition {
    pub url: String,
    #[serde(default = "default_audio_format")]
    pub audio_format: String,
}

/// Audio formats an agent may speak; the first is the default.
pub const AUDIO_FORMATS: [&str; 2] = ["l16/16000", "mulaw/8000"];

fn default_audio_format() -> String {
    AUDIO_FORMATS[0].to_string()
}

/// Result of a WHIP offer.
pub struct StartedMedia {
    pub session_id: String,
    pub peer_id: String,
    pub answer_sdp: String,
}

pub struct Sessions {
    store: Store,
    media: Arc<dyn MediaPlane>,
    config: LifecycleConfig,
    recordings_dir: PathBuf,
    silence_ms: u32,
    /// One lock per session (and per invite, for creation): lifecycle steps are serialized.
    locks: DashMap<String, Arc<Mutex<()>>>,
    /// The participant's current WHIP resource per session.
    peers: DashMap<String, String>,
    /// Live fan-out to monitors.
    hub: Arc<Hub>,
    /// Turn logs of live sessions being assembled (only the media-event task changes them).
    turn_logs: DashMap<String, TurnLog>,
}

fn now() -> Millis {
    Millis(crate::now_ms())
}

fn refused(r: Refused) -> ApiError {
    ApiError::conflict(r.code, r.message)
}

fn media_error(e: MediaError) -> ApiError {
    match e {
        MediaError::InvalidSdp(m) => ApiError::bad_request("invalid_sdp", m),
        MediaError::NoAudio => ApiError::bad_request("no_audio", "the offer has no audio m-line"),
        MediaError::InvalidCandidate(m) => ApiError::bad_request("invalid_candidate", m),
        MediaError::UnknownSession => {
            ApiError::not_found("peer_not_found", "no media for this session")
        }
        MediaError::Internal(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            format!("the media plane failed: {m}"),
        ),
    }
}

/// Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

impl Sessions {
    pub fn new(
        store: Store,
        media: Arc<dyn MediaPlane>,
        config: LifecycleConfig,
        recordings_dir: PathBuf,
        silence_ms: u32,
    ) -> Self {
        Self {
            store,
            media,
            config,
            recordings_dir,
            silence_ms,
            locks: DashMap::new(),
            peers: DashMap::new(),
            hub: Arc::new(Hub::default()),
            turn_logs: DashMap::new(),
        }
    }

    /// The live fan-out hub (`GET /v1/sessions/{id}/live`).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Starts the background work: media events and lifecycle timers.
    pub fn spawn(self: Arc<Self>, mut media_events: mpsc::Receiver<MediaEvent>) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = media_events.recv().await {
                me.on_media_event(ev).await;
            }
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                self.fire_timers().await;
            }
        });
    }

    /// Serializes work on one key (a session, an invite); see [`KeyLock`].
    async fn lock(&self, key: &str) -> KeyLock<'_> {
        KeyLock::acquire(&self.locks, key).await
    }

    /// Applies one event to a stored session and carries out the effects.
    pub async fn apply(&self, session_id: &str, event: Event) -> Result<SessionRow, ApiError> {
        let _guard = self.lock(session_id).await;
        let row =
            self.store.get_session(session_id).await?.ok_or_else(|| {
                ApiError::not_found("session_not_found", "no session with this id")
            })?;
        let lc: Lifecycle = parse_json("sessions.lifecycle", &row.lifecycle)?;
        let name = event.name();
        let t = lifecycle::step(&lc, event, now()).map_err(refused)?;
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
        let lifecycle_json =
            serde_json::to_string(l).map_err(|e| ApiError::internal("encoding lifecycle", e))?;
        let end_reason = l.end_reason.as_ref().map(|r| r.to_string());
        self.store
            .update_session(
                session_id,
                &SessionUpdate {
                    state: l.state.as_str(),
                    lifecycle: &lifecycle_json,
                    started_at: l.started_at.map(|m| m.0),
                    ended_at: l.ended_at.map(|m| m.0),
                    end_reason: end_reason.as_deref(),
                    drop_off: l.drop_off.as_deref(),
                    transitions: &transitions,
                },
            )
            .await?;
        if let Some((from, to)) = t.changed_state {
            tracing::info!(session = session_id, %from, %to, cause = %t.cause, event = name, "session state changed");
        }
        self.publish_state_changes(session_id, &t.effects, l.state.is_terminal());
        let finalizing = t.effects.contains(&Effect::FinalizeRecordings);
        for effect in &t.effects {
            match effect {
                Effect::PauseMedia => self.media.pause(session_id).await,
                Effect::ResumeMedia { .. } => {
                    let agent = self.agent_spec(&row, &t.lifecycle).await;
                    self.media.resume(session_id, agent).await;
                }
                Effect::StopMedia if !finalizing => {
                    self.peers.remove(session_id);
                    self.media.hang_up(session_id).await;
                }
                Effect::FinalizeRecordings => {
                    self.peers.remove(session_id);
                    let spec = self.recording_spec(&row).await;
                    self.media.finish(session_id, spec).await;
                }
                Effect::IssueRestart => {
                    if let Err(e) = self.issue_restart(&row).await {
                        tracing::error!(session = session_id, error = %e, "restart failed");
                    }
                }
                // Starting and resuming happen when the participant's peer attaches; resume
                // prompts and notifications are read from the stored lifecycle.
                _ => {}
            }
        }
        Ok(self.store.get_session(session_id).await?.unwrap_or(row))
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
            let make = || {
                json!({
                    "type": "state",
                    "from": c.from.as_str(),
                    "to": c.to.as_str(),
                    "cause": c.cause,
                    "at": rfc3339(c.at.0),
                })
                .to_string()
            };
            if ended && i + 1 == changes.len() {
                self.hub.publish_last(session_id, make);
            } else {
                self.hub.publish_with(session_id, make);
            }
        }
        if ended {
            self.turn_logs.remove(session_id);
        }
    }

    fn recording_spec_of(&self, script: &ScriptRow, session_id: &str) -> RecordingSpec {
        RecordingSpec {
            enabled: script.recording_enabled,
            noise_suppression: script.noise_suppression,
            quality: script.quality.clone(),
            dir: self.recordings_dir.join(session_id),
        }
    }

    /// Makes a finished session's derived recording (`mix.wav`, a track's `.mp3`) that is not
    /// there yet — with `[recording] derive = "on_request"` they are made on first download —
    /// stores its row and returns it. `None`: nothing to make it from (the session has not
    /// ended, or its two tracks are not finalized).
    pub async fn derive_recording(
        &self,
        session_id: &str,
        track: &str,
        format: &str,
    ) -> Result<Option<RecordingRow>, ApiError> {
        let find = |rows: Vec<RecordingRow>, t: &str, f: &str| {
            rows.into_iter().find(|r| r.track == t && r.format == f)
        };
        let Some(session) = self.store.get_session(session_id).await? else {
            return Ok(None);
        };
        if session.ended_at.is_none() {
            return Ok(None);
        }
        let rows = self.store.recordings(session_id).await?;
        let has_wav = |t: &str| rows.iter().any(|r| r.track == t && r.format == "wav");
        if !(has_wav("participant") && has_wav("ai")) {
            return Ok(None);
        }
        let Some(spec) = self.recording_spec(&session).await else {
            return Ok(None);
        };
        // One derivation per session at a time; a request that waited finds the file made.
        let _guard = self.lock(&format!("derive:{session_id}")).await;
        if let Some(row) = find(self.store.recordings(session_id).await?, track, format) {
            return Ok(Some(row));
        }
        let file = self
            .media
            .derive_recording(spec, track, format)
            .await
            .map_err(|e| ApiError::internal("making a recording on request", e))?;
        let row = recording_row(session_id, file);
        self.store.upsert_recording(&row).await?;
        Ok(Some(row))
    }

    /// The media plane's counters (Prometheus text).
    pub fn media_metrics(&self) -> String {
        self.media.metrics_text()
    }

    /// The agent's fresh `start` context for a session of an agent script (None otherwise).
    async fn agent_spec(&self, session: &SessionRow, lc: &Lifecycle) -> Option<AgentSpec> {
        let script = self.store.get_script(&session.script_id).await.ok()??;
        match self.interview_spec(&script, session, lc).await {
            Ok(spec) => spec.agent,
            Err(e) => {
                tracing::error!(session = %session.id, error = %e.message, "building the agent context failed");
                None
            }
        }
    }

    /// Where a session's recordings are (none if its script records nothing).
    async fn recording_spec(&self, session: &SessionRow) -> Option<RecordingSpec> {
        match self.store.get_script(&session.script_id).await {
            Ok(Some(script)) if script.recording_enabled => {
                Some(self.recording_spec_of(&script, &session.id))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::error!(session = %session.id, error = %e, "loading the script failed");
                None
            }
        }
    }

    /// Applies an event whose refusal is expected now and then (signals from the media plane
    /// racing with the participant's own actions): refusals are logged, not raised.
    async fn apply_signal(&self, session_id: &str, event: Event) {
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

    async fn create_session(
        &self,
        invite: &InviteRow,
        user_agent: Option<&str>,
        ip: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Result<SessionRow, ApiError> {
        let mut metadata: BTreeMap<String, Value> =
            serde_json::from_str(&invite.metadata).unwrap_or_default();
        for (k, v) in params {
            metadata.insert(k.clone(), Value::String(v.clone()));
        }
        let now = now();
        let lc = Lifecycle::new(self.config.clone(), now);
        let row = SessionRow {
            id: ids::new_id("ses"),
            invite_token: invite.token.clone(),
            campaign_id: invite.campaign_id.clone(),
            script_id: invite.script_id.clone(),
            state: lc.state.as_str().into(),
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
        };
        self.store.insert_session(&row).await?;
        tracing::info!(session = %row.id, invite = %invite.token, "session created");
        Ok(row)
    }

    /// The invite was opened: its current session, or a new one if it has none.
    pub async fn open_invite(
        &self,
        invite: &InviteRow,
        user_agent: Option<&str>,
        ip: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Result<SessionRow, ApiError> {
        let _guard = self.lock(&format!("invite:{}", invite.token)).await;
        match self.store.latest_session_for_invite(&invite.token).await? {
            Some(s) => {
                if !is_terminal(&s.state) && user_agent.is_some() {
                    self.store.set_session_client(&s.id, user_agent, ip).await?;
                }
                Ok(s)
            }
            None => self.create_session(invite, user_agent, ip, params).await,
        }
    }

    /// Consent accepted or declined for the invite's session.
    pub async fn consent(&self, invite: &InviteRow, accept: bool) -> Result<SessionRow, ApiError> {
        let session = self
            .open_invite(invite, None, None, &BTreeMap::new())
            .await?;
        let lc: Lifecycle = parse_json("sessions.lifecycle", &session.lifecycle)?;
        if accept && lc.consented() && !lc.is_ended() {
            return Ok(session);
        }
        let event = if accept {
            Event::ConsentAccepted
        } else {
            Event::ConsentDeclined
        };
        self.apply(&session.id, event).await
    }

    /// The session a participant action applies to: the invite's newest, not ended.
    async fn live_session(&self, invite: &InviteRow) -> Result<(SessionRow, Lifecycle), ApiError> {
        let session = self
            .store
            .latest_session_for_invite(&invite.token)
            .await?
            .ok_or_else(|| ApiError::conflict("consent_required", "accept the consent first"))?;
        let lc: Lifecycle = parse_json("sessions.lifecycle", &session.lifecycle)?;
        if lc.is_ended() {
            return Err(ApiError::conflict(
                "session_ended",
                "this interview has ended",
            ));
        }
        if !lc.consented() {
            return Err(ApiError::conflict(
                "consent_required",
                "accept the consent first",
            ));
        }
        Ok((session, lc))
    }

    /// WHIP offer: answers it with a peer for the invite's session.
    pub async fn start_media(
        &self,
        invite: &InviteRow,
        offer: &str,
    ) -> Result<StartedMedia, ApiError> {
        let (session, lc) = self.live_session(invite).await?;
        let script = self
            .store
            .get_script(&session.script_id)
            .await?
            .ok_or_else(|| ApiError::internal("loading script", "script missing"))?;
        let interview = self.interview_spec(&script, &session, &lc).await?;
        let answer_sdp = self
            .media
            .open_participant(OpenParticipant {
                session_id: session.id.clone(),
                offer_sdp: offer.to_string(),
                interview,
                recording: self.recording_spec_of(&script, &session.id),
            })
            .await
            .map_err(media_error)?;
        let peer_id = ids::new_id("peer");
        self.peers.insert(session.id.clone(), peer_id.clone());
        Ok(StartedMedia {
            session_id: session.id,
            peer_id,
            answer_sdp,
        })
    }

    async fn interview_spec(
        &self,
        script: &ScriptRow,
        session: &SessionRow,
        lc: &Lifecycle,
    ) -> Result<InterviewSpec, ApiError> {
        let def: ScriptDefinition = parse_json("scripts.definition", &script.definition)?;
        if let Some(agent) = def.agent {
            // The agent's `start` context: who, where from, and what was said so far.
            let turns = self.stored_turns(&session.id).await?;
            let metadata: Value =
                serde_json::from_str(&session.metadata).unwrap_or_else(|_| json!({}));
            return Ok(InterviewSpec {
                prompts: Vec::new(),
                silence_ms: self.silence_ms,
                start_at: 0,
                agent: Some(AgentSpec {
                    url: agent.url,
                    audio_format: agent.audio_format,
                    custom_parameters: json!({
                        "session": session.id,
                        "campaign": session.campaign_id,
                        "script": session.script_id,
                        "metadata": metadata,
                        "resume": lc.started_at.is_some(),
                        "turns": turns,
                    }),
                }),
            });
        }
        // Resume at the prompt the session had reached: it is asked again.
        let start_at = lc
            .drop_off
            .as_deref()
            .and_then(|p| def.prompts.iter().position(|q| q.id == p))
            .unwrap_or(0);
        Ok(InterviewSpec {
            prompts: def.prompts,
            silence_ms: self.silence_ms,
            start_at,
            agent: None,
        })
    }

    fn check_peer(&self, session_id: &str, peer_id: &str) -> Result<(), ApiError> {
        match self.peers.get(session_id) {
            Some(p) if *p == peer_id => Ok(()),
            _ => Err(ApiError::not_found(
                "peer_not_found",
                "no such peer resource",
            )),
        }
    }

    /// WHIP trickle: candidates for the participant's current peer.
    pub async fn trickle(
        &self,
        invite: &InviteRow,
        peer_id: &str,
        candidates: &[String],
    ) -> Result<(), ApiError> {
        let (session, _) = self.live_session(invite).await?;
        self.check_peer(&session.id, peer_id)?;
        for c in candidates {
            self.media
                .add_candidate(&session.id, c)
                .await
                .map_err(media_error)?;
        }
        Ok(())
    }

    /// WHIP DELETE of the participant's current peer resource: the participant ended the
    /// interview (the page's "End interview", a bot hanging up). The session ends at once as
    /// `abandoned` (`participant_ended`); the lifecycle's end effects close the peer and
    /// finalize the recordings. A peer replaced by a newer offer is `peer_not_found` and
    /// changes nothing; an ended session is `session_ended`.
    pub async fn hang_up(&self, invite: &InviteRow, peer_id: &str) -> Result<(), ApiError> {
        let (session, _) = self.live_session(invite).await?;
        self.check_peer(&session.id, peer_id)?;
        self.apply(&session.id, Event::ParticipantEnded).await?;
        Ok(())
    }

    /// Pause button (or the page reporting that it is being closed).
    pub async fn pause(&self, invite: &InviteRow, tab_closed: bool) -> Result<Value, ApiError> {
        let (session, _) = self.live_session(invite).await?;
        let event = if tab_closed {
            Event::TabClosed
        } else {
            Event::PauseRequested
        };
        let row = self.apply(&session.id, event).await?;
        Ok(self.public_view(&row))
    }

    /// Resume button.
    pub async fn resume(&self, invite: &InviteRow) -> Result<Value, ApiError> {
        let (session, _) = self.live_session(invite).await?;
        let row = self.apply(&session.id, Event::ResumeRequested).await?;
        Ok(self.public_view(&row))
    }

    fn require_id(id: &str) -> Result<(), ApiError> {
        if ids::is_valid_id("ses", id) {
            Ok(())
        } else {
            Err(ApiError::not_found(
                "session_not_found",
                "no session with this id",
            ))
        }
    }

    /// Admin: end the session now (`admin_ended`), keeping what was recorded.
    pub async fn admin_end(&self, id: &str) -> Result<Value, ApiError> {
        Self::require_id(id)?;
        let row = self.apply(id, Event::AdminEnd).await?;
        Ok(self.public_view(&row))
    }

    /// Admin: mark the session `restarted` and issue a new one for the same invite.
    pub async fn admin_restart(&self, id: &str) -> Result<Value, ApiError> {
        Self::require_id(id)?;
        let old = self.apply(id, Event::AdminRestart).await?;
        let new = self
            .store
            .latest_session_for_invite(&old.invite_token)
            .await?
            .filter(|s| s.id != old.id)
            .ok_or_else(|| ApiError::internal("restarting", "no new session was issued"))?;
        Ok(json!({"restarted": self.public_view(&old), "session": self.public_view(&new)}))
    }

    /// Admin: delete every row and file of the session, irrevocably.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        Self::require_id(id)?;
        let _guard = self.lock(id).await;
        if self.store.get_session(id).await?.is_none() {
            return Err(ApiError::not_found(
                "session_not_found",
                "no session with this id",
            ));
        }
        self.peers.remove(id);
        self.media.discard(id).await;
        self.store.delete_session(id).await?;
        self.turn_logs.remove(id);
        self.hub.close(id);
        let dir = self.recordings_dir.join(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ApiError::internal("deleting recordings", e)),
        }
        tracing::info!(session = id, "session deleted");
        Ok(())
    }

    /// After a restart of the process no session has media: each one that was in progress
    /// is told its media was lost, so the disconnect rules (pause, or end) apply to it.
    pub async fn recover_after_restart(&self) {
        match self.store.live_sessions().await {
            Ok(rows) => {
                for row in rows.into_iter().filter(|r| r.state == "in_progress") {
                    self.apply_signal(&row.id, Event::MediaLost).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "listing sessions to recover failed"),
        }
    }

    async fn on_media_event(&self, ev: MediaEvent) {
        match ev {
            MediaEvent::Connected { session_id } => {
                self.apply_signal(&session_id, Event::MediaStarted).await;
            }
            MediaEvent::Disconnected { session_id } => {
                self.apply_signal(&session_id, Event::MediaLost).await;
            }
            MediaEvent::Restored { session_id } => {
                self.apply_signal(&session_id, Event::MediaRestored).await;
            }
            MediaEvent::Progress {
                session_id,
                prompt_id,
                ..
            } => {
                self.apply_signal(&session_id, Event::Progress { point: prompt_id })
                    .await;
            }
            MediaEvent::TurnStarted {
                session_id,
                role,
                at_ms,
            } => {
                let Some(role) = parse_role(&session_id, &role) else {
                    return;
                };
                let line = || {
                    json!({"type": "turn_start", "role": role.as_str(), "at_ms": at_ms}).to_string()
                };
                self.turn_event(&session_id, TurnInput::Started { role, at_ms }, line)
                    .await;
            }
            MediaEvent::TurnEnded {
                session_id,
                role,
                start_ms,
                end_ms,
            } => {
                let Some(role) = parse_role(&session_id, &role) else {
                    return;
                };
                let line = || {
                    json!({
                        "type": "turn_end",
                        "role": role.as_str(),
                        "start_ms": start_ms,
                        "end_ms": end_ms,
                    })
                    .to_string()
                };
                let input = TurnInput::Ended {
                    role,
                    start_ms,
                    end_ms,
                };
                self.turn_event(&session_id, input, line).await;
                let event = match role {
                    Role::Participant => Event::TurnCaptured,
                    Role::Ai => Event::Activity,
                };
                self.apply_signal(&session_id, event).await;
            }
            MediaEvent::Transcript {
                session_id,
                role,
                text,
                is_final,
                start_ms,
                end_ms,
            } => {
                let Some(role) = parse_role(&session_id, &role) else {
                    return;
                };
                let text = turns::clip(&text, turns::MAX_LINE_BYTES);
                let line = || {
                    json!({
                        "type": "transcript",
                        "role": role.as_str(),
                        "text": text,
                        "final": is_final,
                        "start_ms": start_ms,
                        "end_ms": end_ms,
                    })
                    .to_string()
                };
                if is_final {
                    let input = TurnInput::Transcript {
                        role,
                        text,
                        is_final,
                        start_ms,
                        end_ms,
                    };
                    self.turn_event(&session_id, input, line).await;
                } else {
                    // Partial lines are only streamed, never stored.
                    self.hub.publish_with(&session_id, line);
                }
            }
            MediaEvent::AgentFailed { session_id, detail } => {
                tracing::warn!(session = %session_id, %detail, "agent failure");
                let detail = format!("agent: {detail}");
                self.apply_signal(&session_id, Event::TechnicalFailure { detail })
                    .await;
            }
            MediaEvent::InterviewFinished { session_id } => {
                self.apply_signal(&session_id, Event::InterviewFinished)
                    .await;
            }
            MediaEvent::RecordingReady { session_id, file } => {
                let row = recording_row(&session_id, file);
                if let Err(e) = self.store.upsert_recording(&row).await {
                    tracing::error!(session = %session_id, error = %e, "storing recording row failed");
                }
            }
            MediaEvent::RecordingsFinished { session_id } => {
                tracing::info!(session = %session_id, "recordings finalized");
            }
            MediaEvent::Failed { session_id, detail } => {
                tracing::warn!(session = %session_id, %detail, "media failure");
            }
        }
    }

    /// Feeds one turn event to the session's turn log, stores the turns it changed, then
    /// streams `line` (and a `speaking` line if who speaks changed) to monitors. Storing
    /// first keeps a monitor's snapshot (read after it subscribed) consistent with the stream.
    async fn turn_event(
        &self,
        session_id: &str,
        input: TurnInput<'_>,
        line: impl FnOnce() -> String,
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
            let rows: Vec<_> = changed.iter().map(Turn::to_row).collect();
            if let Err(e) = self.store.upsert_turns(session_id, &rows).await {
                tracing::error!(session = session_id, error = %e, "storing turns failed");
            }
        }
        self.hub.publish_with(session_id, line);
        if before != after {
            self.hub.publish_with(session_id, || {
                json!({"type": "speaking", "who": after.as_str()}).to_string()
            });
        }
    }

    /// The stored turn log of a session and whether the session is live (not ended); `None`
    /// if the session does not exist.
    async fn load_turn_log(&self, session_id: &str) -> Result<Option<(TurnLog, bool)>, ApiError> {
        let Some(row) = self.store.get_session(session_id).await? else {
            return Ok(None);
        };
        let log = TurnLog::from_turns(self.stored_turns(session_id).await?);
        Ok(Some((log, !is_terminal(&row.state))))
    }

    async fn stored_turns(&self, session_id: &str) -> Result<Vec<Turn>, ApiError> {
        Ok(self
            .store
            .turns(session_id)
            .await?
            .into_iter()
            .filter_map(Turn::from_row)
            .collect())
    }

    /// Admin: the session's turn log.
    pub async fn transcript(&self, id: &str) -> Result<Value, ApiError> {
        Self::require_id(id)?;
        if self.store.get_session(id).await?.is_none() {
            return Err(ApiError::not_found(
                "session_not_found",
                "no session with this id",
            ));
        }
        let turns = self.stored_turns(id).await?;
        Ok(json!({"session_id": id, "turns": turns}))
    }

    /// A monitor's snapshot line `{"type":"snapshot","session","turns"}` and whether the
    /// session has ended; `None` if there is no such session.
    pub async fn live_snapshot(&self, id: &str) -> Result<Option<(String, bool)>, ApiError> {
        let Some(row) = self.store.get_session(id).await? else {
            return Ok(None);
        };
        let turns = self.stored_turns(id).await?;
        let line = json!({
            "type": "snapshot",
            "session": self.public_view(&row),
            "turns": turns,
        });
        Ok(Some((line.to_string(), is_terminal(&row.state))))
    }

    /// Delivers `Tick` to every live session whose next timer is due.
    async fn fire_timers(&self) {
        let rows = match self.store.live_sessions().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "listing live sessions for timers failed");
                return;
            }
        };
        let now = now();
        for row in rows {
            let Ok(lc) = parse_json::<Lifecycle>("sessions.lifecycle", &row.lifecycle) else {
                continue;
            };
            if lifecycle::next_deadline(&lc).is_some_and(|d| d <= now) {
                self.apply_signal(&row.id, Event::Tick).await;
            }
        }
    }

    /// The session as participants and lists see it.
    pub fn public_view(&self, s: &SessionRow) -> Value {
        let lc = parse_json::<Lifecycle>("sessions.lifecycle", &s.lifecycle).ok();
        json!({
            "id": s.id,
            "state": s.state,
            "campaign_id": s.campaign_id,
            "script_id": s.script_id,
            "created_at": rfc3339(s.created_at),
            "started_at": s.started_at.map(rfc3339),
            "ended_at": s.ended_at.map(rfc3339),
            "end_reason": s.end_reason,
            "drop_off": s.drop_off,
            "consented": lc.as_ref().map(|l| l.consented()),
            "pause_count": lc.as_ref().map(|l| l.pause_count()),
            "pauses_remaining": lc.as_ref().map(|l| l.pauses_remaining()),
            "resume_prompt": lc.as_ref().and_then(|l| l.current_pause()).is_some_and(|p| p.resume_prompt_at.is_some()),
        })
    }

    /// Everything about one session (admin).
    pub async fn detail_view(&self, id: &str) -> Result<Value, ApiError> {
        let not_found = || ApiError::not_found("session_not_found", "no session with this id");
        Self::require_id(id)?;
        let s = self.store.get_session(id).await?.ok_or_else(not_found)?;
        let lc: Lifecycle = parse_json("sessions.lifecycle", &s.lifecycle)?;
        let recordings: Vec<Value> = self
            .store
            .recordings(id)
            .await?
            .into_iter()
            .map(|r| {
                json!({
                    "track": r.track,
                    "format": r.format,
                    "duration_ms": r.duration_ms,
                    "bytes": r.bytes,
                    "url": format!("/v1/sessions/{}/recordings/{}.{}", id, r.track, r.format),
                })
            })
            .collect();
        let transitions = self.store.transitions(id).await?;
        let metadata: Value = serde_json::from_str(&s.metadata).unwrap_or(Value::Null);
        let mut view = self.public_view(&s);
        let now = now();
        if let Value::Object(m) = &mut view {
            m.insert("invite_token".into(), json!(s.invite_token));
            m.insert("user_agent".into(), json!(s.user_agent));
            m.insert(
                "client".into(),
                json!(s.user_agent.as_deref().map(crate::user_agent::describe)),
            );
            m.insert("ip".into(), json!(s.ip));
            m.insert("metadata".into(), metadata);
            m.insert(
                "active_duration_ms".into(),
                json!(lc.active_duration_ms(now)),
            );
            m.insert("total_duration_ms".into(), json!(lc.total_duration_ms(now)));
            m.insert("pauses".into(), json!(lc.pauses));
            m.insert("recordings".into(), Value::Array(recordings));
            m.insert(
                "transitions".into(),
                Value::Array(
                    transitions
                        .into_iter()
                        .map(|t| json!({"at": rfc3339(t.at), "from": t.from_state, "to": t.to_state, "cause": t.cause}))
                        .collect(),
                ),
            );
        }
        Ok(view)
    }
}

fn parse_role(session_id: &str, role: &str) -> Option<Role> {
    let parsed = Role::parse(role);
    if parsed.is_none() {
        tracing::warn!(
            session = session_id,
            role,
            "turn event with an unknown role ignored"
        );
    }
    parsed
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "completed" | "abandoned" | "admin_ended" | "restarted"
    )
}

/// The stored row of a file the media plane finished.
fn recording_row(session_id: &str, file: RecordingFile) -> RecordingRow {
    RecordingRow {
        session_id: session_id.to_owned(),
        track: file.track,
        format: file.format,
        path: file.path.to_string_lossy().into_owned(),
        duration_ms: i64::try_from(file.duration_ms).unwrap_or(i64::MAX),
        bytes: i64::try_from(file.bytes).unwrap_or(i64::MAX),
        created_at: crate::now_ms(),
    }
}

/// One key's lock, held until dropped. The map entry goes with the last holder, so the map
/// holds only keys being worked on (it grew by one entry per session before).
struct KeyLock<'a> {
    locks: &'a DashMap<String, Arc<Mutex<()>>>,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<'a> KeyLock<'a> {
    async fn acquire(locks: &'a DashMap<String, Arc<Mutex<()>>>, key: &str) -> KeyLock<'a> {
        let mutex = locks.entry(key.to_string()).or_default().clone();
        KeyLock {
            locks,
            key: key.to_string(),
            guard: Some(mutex.lock_owned().await),
        }
    }
}

impl Drop for KeyLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map's own reference left: nobody holds or waits for this key.
        self.locks
            .remove_if(&self.key, |_, m| Arc::strong_count(m) == 1);
    }
}

#[cfg(test)]
mod key_lock_tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_with_the_last_holder() {
        let locks: DashMap<String, Arc<Mutex<()>>> = DashMap::new();
        {
            let _a = KeyLock::acquire(&locks, "ses_1").await;
            assert_eq!(locks.len(), 1);
        }
        assert!(locks.is_empty(), "released and unshared: removed");

        // A waiter keeps the entry (and the exclusion) alive.
        let a = KeyLock::acquire(&locks, "ses_2").await;
        let locks_ref = &locks;
        let waiter = async move {
            let _b = KeyLock::acquire(locks_ref, "ses_2").await;
            assert_eq!(locks_ref.len(), 1);
        };
        let release = async move {
            tokio::task::yield_now().await;
            drop(a);
        };
        tokio::join!(waiter, release);
        assert!(locks.is_empty());
    }
}
