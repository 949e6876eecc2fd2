//! Privacy of what participants say (F10, issue 16): each campaign's settings (PII policy,
//! audio retention, how deletion requests are handled), the PII policy applied to transcript
//! lines as they are streamed (always at once) and stored (at once, or by the retention
//! sweep after the campaign's delay), and the originals of changed turns sealed by the
//! server's [`TextVault`] for owners.

use super::SessionService;
use crate::error::ApiError;
use crate::pii::policy::MAX_DELAY_DAYS;
use crate::pii::{CustomPattern, Detector, PiiAction, PiiPolicy, TextVault};
use crate::store::TurnRow;
use crate::store::privacy::{PrivacyRow, PrivacyStore};
use crate::turns::Turn;
use std::sync::Arc;

/// Longest audio retention (days): ten years.
pub const MAX_RETENTION_DAYS: i64 = 3650;

/// A campaign's privacy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privacy {
    pub pii: PiiPolicy,
    /// Days after a session ended that its recordings are deleted; 0: kept until the
    /// session is deleted.
    pub audio_retention_days: u32,
    /// A participant's deletion request deletes the session at once (else an admin fulfils
    /// it).
    pub auto_delete_requests: bool,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy::from_row(&PrivacyRow::default()).expect("the default settings are valid")
    }
}

/// Changes to a campaign's privacy settings from a create or edit body (absent: unchanged).
#[derive(Debug, Clone, Default)]
pub struct PrivacyPatch {
    pub pii_action: Option<String>,
    pub pii_delay_days: Option<i64>,
    pub pii_keep_originals: Option<bool>,
    pub pii_patterns: Option<Vec<CustomPattern>>,
    pub audio_retention_days: Option<i64>,
    pub deletion_requests: Option<String>,
}

fn invalid_policy(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_pii_policy", message)
}

impl Privacy {
    fn from_row(row: &PrivacyRow) -> Result<Privacy, ApiError> {
        let corrupt = |what: &str| ApiError::internal("campaign privacy", format!("stored {what}"));
        Ok(Privacy {
            pii: PiiPolicy {
                action: PiiAction::parse(&row.pii_action).ok_or_else(|| corrupt("pii_action"))?,
                delay_days: u32::try_from(row.pii_delay_days).map_err(|_| corrupt("delay"))?,
                keep_originals: row.pii_keep_originals,
                patterns: serde_json::from_str(&row.pii_patterns)
                    .map_err(|_| corrupt("pii_patterns"))?,
            },
            audio_retention_days: u32::try_from(row.audio_retention_days)
                .map_err(|_| corrupt("audio_retention_days"))?,
            auto_delete_requests: row.auto_delete_requests,
        })
    }

    fn to_row(&self) -> PrivacyRow {
        PrivacyRow {
            pii_action: self.pii.action.as_str().into(),
            pii_delay_days: i64::from(self.pii.delay_days),
            pii_keep_originals: self.pii.keep_originals,
            pii_patterns: serde_json::to_string(&self.pii.patterns).unwrap_or_else(|_| "[]".into()),
            audio_retention_days: i64::from(self.audio_retention_days),
            auto_delete_requests: self.auto_delete_requests,
        }
    }

    /// These settings with `patch` applied, checked: `invalid_pii_policy` (action, delay,
    /// deletion_requests), `invalid_pii_pattern` (a pattern), `invalid_retention`.
    pub fn patched(&self, patch: PrivacyPatch) -> Result<Privacy, ApiError> {
        let mut next = self.clone();
        if let Some(action) = patch.pii_action {
            next.pii.action = PiiAction::parse(&action)
                .ok_or_else(|| invalid_policy("pii_action must be keep, mask or redact"))?;
        }
        if let Some(days) = patch.pii_delay_days {
            next.pii.delay_days = u32::try_from(days)
                .ok()
                .filter(|d| *d <= MAX_DELAY_DAYS)
                .ok_or_else(|| {
                    invalid_policy(format!("pii_delay_days must be 0-{MAX_DELAY_DAYS}"))
                })?;
        }
        if let Some(keep) = patch.pii_keep_originals {
            next.pii.keep_originals = keep;
        }
        if let Some(patterns) = patch.pii_patterns {
            next.pii.patterns = patterns;
        }
        if let Some(days) = patch.audio_retention_days {
            next.audio_retention_days = u32::try_from(days)
                .ok()
                .filter(|d| i64::from(*d) <= MAX_RETENTION_DAYS)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_retention",
                        format!("audio_retention_days must be 0-{MAX_RETENTION_DAYS} (0: keep)"),
                    )
                })?;
        }
        if let Some(mode) = patch.deletion_requests {
            next.auto_delete_requests = match mode.as_str() {
                "manual" => false,
                "automatic" => true,
                _ => {
                    return Err(invalid_policy(
                        "deletion_requests must be manual or automatic",
                    ));
                }
            };
        }
        next.pii.validate().map_err(|e| match e {
            crate::pii::PolicyError::DelayTooLong => invalid_policy(e.to_string()),
            _ => ApiError::bad_request("invalid_pii_pattern", e.to_string()),
        })?;
        Ok(next)
    }
}

/// A campaign's settings with their detector compiled (cached per campaign).
pub(super) struct ActivePolicy {
    pub privacy: Privacy,
    pub detector: Detector,
}

impl ActivePolicy {
    /// Whether stored lines are changed as they are written.
    fn applies_on_store(&self) -> bool {
        self.privacy.pii.changes_text() && self.privacy.pii.delay_days == 0
    }
}

/// What binds a sealed original to its turn.
fn seal_context(session_id: &str, seq: i64) -> String {
    format!("turn:{session_id}:{seq}")
}

impl SessionService {
    pub(super) fn privacy_store(&self) -> Result<&Arc<dyn PrivacyStore>, ApiError> {
        self.privacy
            .as_ref()
            .ok_or_else(|| ApiError::internal("privacy", "no privacy store in this service"))
    }

    /// The same service sealing originals with `vault` (the default keeps none).
    pub fn with_vault(mut self, vault: Arc<dyn TextVault>) -> Self {
        self.vault = vault;
        self
    }

    /// The same service with a privacy store (the production service has SQLite's).
    pub fn with_privacy_store(mut self, store: Arc<dyn PrivacyStore>) -> Self {
        self.privacy = Some(store);
        self
    }

    /// A campaign's privacy settings (the defaults when none were stored).
    pub async fn campaign_privacy(&self, campaign_id: &str) -> Result<Privacy, ApiError> {
        let Some(store) = &self.privacy else {
            return Ok(Privacy::default());
        };
        match store.campaign_privacy(campaign_id).await? {
            Some(row) => Privacy::from_row(&row),
            None => Ok(Privacy::default()),
        }
    }

    /// Stores a campaign's privacy settings (checked by [`Privacy::patched`]).
    pub async fn set_campaign_privacy(
        &self,
        campaign_id: &str,
        privacy: &Privacy,
    ) -> Result<(), ApiError> {
        self.privacy_store()?
            .set_campaign_privacy(campaign_id, &privacy.to_row())
            .await?;
        self.policies.remove(campaign_id);
        tracing::info!(target: "audit", campaign = campaign_id,
            pii_action = privacy.pii.action.as_str(), pii_delay_days = privacy.pii.delay_days,
            audio_retention_days = privacy.audio_retention_days, "campaign privacy set");
        Ok(())
    }

    /// The campaign's settings and detector, compiled once.
    pub(super) async fn active_policy(&self, campaign_id: &str) -> Option<Arc<ActivePolicy>> {
        if let Some(p) = self.policies.get(campaign_id) {
            return Some(p.clone());
        }
        let privacy = match self.campaign_privacy(campaign_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(campaign = campaign_id, error = %e, "reading privacy settings failed");
                return None;
            }
        };
        let detector = match privacy.pii.detector() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(campaign = campaign_id, error = %e, "stored PII patterns invalid");
                Detector::builtin()
            }
        };
        let active = Arc::new(ActivePolicy { privacy, detector });
        self.policies
            .insert(campaign_id.to_string(), active.clone());
        Some(active)
    }

    /// The policy of a session's campaign.
    async fn session_policy(&self, session_id: &str) -> Option<Arc<ActivePolicy>> {
        let campaign = match self.session_campaigns.get(session_id) {
            Some(c) => c.clone(),
            None => {
                let row = self.store.get_session(session_id).await.ok()??;
                self.session_campaigns
                    .insert(session_id.to_string(), row.campaign_id.clone());
                row.campaign_id
            }
        };
        self.active_policy(&campaign).await
    }

    /// A transcript line as monitors and the participant's captions get it: the campaign's
    /// mask or redaction applied at once (whatever its delay for stored text).
    pub(super) async fn scrub_live(&self, session_id: &str, text: &str) -> String {
        match self.session_policy(session_id).await {
            Some(p) if p.privacy.pii.changes_text() => p.detector.scrub(p.privacy.pii.action, text),
            _ => text.to_string(),
        }
    }

    /// Turns about to be stored, with the campaign's policy applied when it applies on
    /// store; returns the sealed originals of the turns it changed (empty when the vault
    /// keeps none or the campaign keeps no originals).
    pub(super) async fn protect_rows(
        &self,
        session_id: &str,
        rows: &mut [TurnRow],
    ) -> Vec<(i64, Vec<u8>)> {
        match self.session_policy(session_id).await {
            Some(p) if p.applies_on_store() => self.scrub_rows(session_id, &p, rows),
            _ => Vec::new(),
        }
    }

    /// Applies `p` to `rows`; the sealed originals of those that changed.
    fn scrub_rows(
        &self,
        session_id: &str,
        p: &ActivePolicy,
        rows: &mut [TurnRow],
    ) -> Vec<(i64, Vec<u8>)> {
        let mut originals = Vec::new();
        for row in rows.iter_mut() {
            let scrubbed = p.detector.scrub(p.privacy.pii.action, &row.text);
            if scrubbed == row.text {
                continue;
            }
            let original = std::mem::replace(&mut row.text, scrubbed);
            row.words = i64::from(crate::turns::word_count(&row.text));
            if p.privacy.pii.keep_originals {
                let sealed = self
                    .vault
                    .seal(&original, &seal_context(session_id, row.seq));
                if !sealed.is_empty() {
                    originals.push((row.seq, sealed));
                }
            }
        }
        originals
    }

    /// Applies a campaign's delayed policy to a session's stored turns (the retention
    /// sweep); the number of turns changed.
    pub(super) async fn apply_stored_policy(
        &self,
        session_id: &str,
        campaign_id: &str,
    ) -> Result<usize, ApiError> {
        let store = self.privacy_store()?.clone();
        let Some(p) = self.active_policy(campaign_id).await else {
            return Err(ApiError::internal("privacy", "no policy for the campaign"));
        };
        let _guard = self.lock(session_id).await;
        let mut rows = self.store.turns(session_id).await?;
        let before = rows.clone();
        let originals = self.scrub_rows(session_id, &p, &mut rows);
        let changed: Vec<TurnRow> = rows
            .into_iter()
            .zip(before)
            .filter(|(now, was)| now != was)
            .map(|(now, _)| now)
            .collect();
        if !changed.is_empty() {
            self.store.upsert_turns(session_id, &changed).await?;
            store.set_turn_originals(session_id, &originals).await?;
        }
        store.mark_pii_applied(session_id, self.now().0).await?;
        tracing::info!(
            session = session_id,
            pii_action = p.privacy.pii.action.as_str(),
            turns = changed.len(),
            "transcript redacted by the campaign's policy"
        );
        self.audit_system(
            "retention",
            "transcript.redact",
            session_id,
            Some(campaign_id),
        )
        .await;
        Ok(changed.len())
    }

    /// A session's turn log with the originals of changed turns where the vault opens them
    /// (`GET /v1/sessions/{id}/transcript?original=true`).
    pub async fn original_transcript(&self, id: &str) -> Result<Vec<Turn>, ApiError> {
        let mut turns = self.transcript(id).await?;
        let Some(store) = &self.privacy else {
            return Ok(turns);
        };
        for (seq, sealed) in store.turn_originals(id).await? {
            let Some(text) = self.vault.open(&sealed, &seal_context(id, seq)) else {
                continue;
            };
            if let Some(turn) = turns.iter_mut().find(|t| i64::from(t.seq) == seq) {
                turn.words = crate::turns::word_count(&text);
                turn.text = text;
            }
        }
        tracing::info!(target: "audit", session = id, "original transcript read");
        Ok(turns)
    }

    /// What a monitor's snapshot shows of stored turns: the policy applied at once, as on
    /// the live stream (stored text may still wait for the campaign's delay).
    pub(super) async fn scrub_turns_live(&self, session_id: &str, turns: &mut [Turn]) {
        if let Some(p) = self.session_policy(session_id).await
            && p.privacy.pii.changes_text()
        {
            for t in turns.iter_mut() {
                t.text = p.detector.scrub(p.privacy.pii.action, &t.text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_checked_with_stable_codes() {
        let base = Privacy::default();
        assert_eq!(base.audio_retention_days, 90);
        let code = |patch: PrivacyPatch| base.patched(patch).unwrap_err().code;
        assert_eq!(
            code(PrivacyPatch {
                pii_action: Some("scramble".into()),
                ..Default::default()
            }),
            "invalid_pii_policy"
        );
        assert_eq!(
            code(PrivacyPatch {
                audio_retention_days: Some(-1),
                ..Default::default()
            }),
            "invalid_retention"
        );
        assert_eq!(
            code(PrivacyPatch {
                pii_patterns: Some(vec![CustomPattern {
                    name: "ID".into(),
                    regex: "[".into()
                }]),
                ..Default::default()
            }),
            "invalid_pii_pattern"
        );
        let ok = base
            .patched(PrivacyPatch {
                pii_action: Some("mask".into()),
                pii_delay_days: Some(30),
                deletion_requests: Some("automatic".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ok.pii.action, PiiAction::Mask);
        assert_eq!(ok.pii.delay_days, 30);
        assert!(ok.auto_delete_requests);
        assert_eq!(Privacy::from_row(&ok.to_row()).unwrap(), ok);
    }
}
