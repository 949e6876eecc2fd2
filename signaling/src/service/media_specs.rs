//! What the media plane is told about a session, built from its stored rows: the interview
//! (the built-in interviewer's prompts from where the session stopped, or an external agent
//! with its `start` context) and where its recordings go. The builders are pure; the
//! service's methods here load what they need.

use super::SessionService;
use crate::error::ApiError;
use crate::lifecycle::Lifecycle;
use crate::media_port::{AgentSpec, InterviewSpec, RecordingSpec};
use crate::script_definition::ScriptDefinition;
use crate::store::{self, ScriptRow, SessionRow, parse_json};
use crate::turns::Turn;
use serde_json::{Value, json};
use std::path::Path;

/// The script's stored definition.
fn definition(script: &ScriptRow) -> store::Result<ScriptDefinition> {
    parse_json("scripts.definition", &script.definition)
}

/// The interview of `session` under its script's definition, given the turns so far (only
/// an agent is told them).
fn interview_spec_of(
    def: ScriptDefinition,
    session: &SessionRow,
    lc: &Lifecycle,
    turns: &[Turn],
    silence_ms: u32,
) -> InterviewSpec {
    let codec = def.codec;
    if let Some(agent) = def.agent {
        // The agent's `start` context: who, where from, and what was said so far.
        let metadata: Value = serde_json::from_str(&session.metadata).unwrap_or_else(|_| json!({}));
        return InterviewSpec {
            prompts: Vec::new(),
            silence_ms,
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
            codec,
        };
    }
    // Resume at the prompt the session had reached: it is asked again.
    let start_at = lc
        .drop_off
        .as_deref()
        .and_then(|p| def.prompts.iter().position(|q| q.id == p))
        .unwrap_or(0);
    InterviewSpec {
        prompts: def.prompts,
        silence_ms,
        start_at,
        agent: None,
        codec,
    }
}

/// Where and how the session's recordings are made, as its script says.
pub(super) fn recording_spec_of(
    script: &ScriptRow,
    session_id: &str,
    recordings_dir: &Path,
) -> RecordingSpec {
    RecordingSpec {
        enabled: script.recording_enabled,
        noise_suppression: script.noise_suppression,
        quality: script.quality,
        dir: recordings_dir.join(session_id),
    }
}

impl SessionService {
    /// Where a session's recordings are (none if its script records nothing).
    pub(super) async fn recording_spec(&self, session: &SessionRow) -> Option<RecordingSpec> {
        match self.store.get_script(&session.script_id).await {
            Ok(Some(script)) if script.recording_enabled => Some(recording_spec_of(
                &script,
                &session.id,
                &self.config.recordings_dir,
            )),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(session = %session.id, error = %e, "loading the script failed");
                None
            }
        }
    }

    /// The agent's fresh `start` context for a session of an agent script (None otherwise).
    pub(super) async fn agent_spec(
        &self,
        session: &SessionRow,
        lc: &Lifecycle,
    ) -> Option<AgentSpec> {
        let script = self.store.get_script(&session.script_id).await.ok()??;
        match self.interview_spec(&script, session, lc).await {
            Ok(spec) => spec.agent,
            Err(e) => {
                tracing::error!(session = %session.id, error = %e.message, "building the agent context failed");
                None
            }
        }
    }

    /// What the interviewer does in this session, from its script.
    pub(super) async fn interview_spec(
        &self,
        script: &ScriptRow,
        session: &SessionRow,
        lc: &Lifecycle,
    ) -> Result<InterviewSpec, ApiError> {
        let def = definition(script)?;
        let turns = if def.agent.is_some() {
            self.stored_turns(&session.id).await?
        } else {
            Vec::new()
        };
        let silence_ms = self.config.silence_ms;
        Ok(interview_spec_of(def, session, lc, &turns, silence_ms))
    }
}
