//! Invites and what their holder does with them: issuing an invite (admin), looking one up,
//! opening it (which creates its session), consent, and the participant's pause and resume.
//! The invite's session is always its newest one.

use super::SessionService;
use crate::error::ApiError;
use crate::ids;
use crate::lifecycle::Event;
use crate::store::{CampaignRow, InviteRow, ScriptRow, SessionRow};
use std::collections::BTreeMap;

/// What the participant page shows about an invite before anything happens.
#[derive(Debug, Clone)]
pub struct InviteOverview {
    pub campaign: Option<CampaignRow>,
    pub script: Option<ScriptRow>,
    /// The invite's newest session, if it was opened.
    pub session: Option<SessionRow>,
}

fn invite_not_found() -> ApiError {
    ApiError::not_found("invite_not_found", "no invite with this token")
}

impl SessionService {
    /// Issues an invite to a campaign's script.
    pub async fn create_invite(
        &self,
        campaign_id: String,
        script_id: String,
        metadata: &BTreeMap<String, String>,
    ) -> Result<InviteRow, ApiError> {
        let mut made = self
            .create_invites(campaign_id, script_id, std::slice::from_ref(metadata))
            .await?;
        made.pop()
            .ok_or_else(|| ApiError::internal("creating an invite", "none was made"))
    }

    /// One invite per metadata map, for a script of the campaign, stored together (all or
    /// none).
    pub async fn create_invites(
        &self,
        campaign_id: String,
        script_id: String,
        metadata: &[BTreeMap<String, String>],
    ) -> Result<Vec<InviteRow>, ApiError> {
        self.campaign(&campaign_id).await?;
        match self.store.get_script(&script_id).await? {
            Some(s) if s.campaign_id == campaign_id => {}
            _ => {
                return Err(ApiError::not_found(
                    "script_not_found",
                    "no script with this id in the campaign",
                ));
            }
        }
        let now = self.now().0;
        let invites = metadata
            .iter()
            .map(|m| {
                Ok(InviteRow {
                    token: ids::new_invite_token(),
                    campaign_id: campaign_id.clone(),
                    script_id: script_id.clone(),
                    metadata: serde_json::to_string(m)
                        .map_err(|e| ApiError::internal("encoding metadata", e))?,
                    created_at: now,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        self.store.insert_invites(&invites).await?;
        Ok(invites)
    }

    /// The invite with this token (from outside), or `invite_not_found`.
    pub async fn invite(&self, token: &str) -> Result<InviteRow, ApiError> {
        if !ids::is_valid_token(token) {
            return Err(invite_not_found());
        }
        self.store
            .get_invite(token)
            .await?
            .ok_or_else(invite_not_found)
    }

    pub async fn invite_overview(&self, invite: &InviteRow) -> Result<InviteOverview, ApiError> {
        Ok(InviteOverview {
            campaign: self.store.get_campaign(&invite.campaign_id).await?,
            session: self.store.latest_session_for_invite(&invite.token).await?,
            script: self.store.get_script(&invite.script_id).await?,
        })
    }

    /// The invite was opened: its current session, or a new one if it has none.
    pub async fn open_invite(
        &self,
        invite: &InviteRow,
        user_agent: Option<&str>,
        ip: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Result<SessionRow, ApiError> {
        // Two tabs opening the link at once must not make two sessions.
        let _guard = self.lock(&format!("invite:{}", invite.token)).await;
        match self.store.latest_session_for_invite(&invite.token).await? {
            Some(s) => {
                if !s.state.is_terminal() && user_agent.is_some() {
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
        let lc = session.lifecycle()?;
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

    /// Pause button (or the page reporting that it is being closed).
    pub async fn pause(
        &self,
        invite: &InviteRow,
        tab_closed: bool,
    ) -> Result<SessionRow, ApiError> {
        let (session, _) = self.participant_session(invite).await?;
        let event = if tab_closed {
            Event::TabClosed
        } else {
            Event::PauseRequested
        };
        self.apply(&session.id, event).await
    }

    /// Resume button.
    pub async fn resume(&self, invite: &InviteRow) -> Result<SessionRow, ApiError> {
        let (session, _) = self.participant_session(invite).await?;
        self.apply(&session.id, Event::ResumeRequested).await
    }
}
