//! Scripts: what the interviewer does in the sessions of an invite and how they are
//! recorded. Routes validate a script's body; the service stores and reads them.

use super::SessionService;
use crate::error::ApiError;
use crate::ids;
use crate::script_definition::ScriptDefinition;
use crate::store::ScriptRow;
use earshot_vocab::Quality;

/// A validated script to store.
#[derive(Debug, Clone)]
pub struct NewScript {
    pub campaign_id: String,
    pub name: String,
    pub definition: ScriptDefinition,
    pub recording_enabled: bool,
    pub noise_suppression: bool,
    pub quality: Quality,
}

impl SessionService {
    /// Stores a new script (its campaign must exist).
    pub async fn create_script(&self, new: NewScript) -> Result<ScriptRow, ApiError> {
        self.campaign(&new.campaign_id).await?;
        let row = ScriptRow {
            id: ids::new_id("scr"),
            campaign_id: new.campaign_id,
            name: new.name,
            definition: serde_json::to_string(&new.definition)
                .map_err(|e| ApiError::internal("encoding script", e))?,
            recording_enabled: new.recording_enabled,
            noise_suppression: new.noise_suppression,
            quality: new.quality,
            created_at: self.now().0,
        };
        self.store.insert_script(&row).await?;
        tracing::info!(script = %row.id, campaign = %row.campaign_id, "script created");
        Ok(row)
    }

    /// The script with this id (from outside), or `script_not_found`.
    pub async fn script(&self, id: &str) -> Result<ScriptRow, ApiError> {
        let not_found = || ApiError::not_found("script_not_found", "no script with this id");
        if !ids::is_valid_id("scr", id) {
            return Err(not_found());
        }
        self.store.get_script(id).await?.ok_or_else(not_found)
    }
}
