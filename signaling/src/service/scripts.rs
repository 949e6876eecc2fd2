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

impl NewScript {
    /// The stored row of this script under `id`, created at `created_at`.
    fn into_row(self, id: String, created_at: i64) -> Result<ScriptRow, ApiError> {
        Ok(ScriptRow {
            id,
            campaign_id: self.campaign_id,
            name: self.name,
            definition: serde_json::to_string(&self.definition)
                .map_err(|e| ApiError::internal("encoding script", e))?,
            recording_enabled: self.recording_enabled,
            noise_suppression: self.noise_suppression,
            quality: self.quality,
            created_at,
        })
    }
}

impl SessionService {
    /// Stores a new script (its campaign must exist).
    pub async fn create_script(&self, new: NewScript) -> Result<ScriptRow, ApiError> {
        self.campaign(&new.campaign_id).await?;
        let row = new.into_row(ids::new_id("scr"), self.now().0)?;
        self.store.insert_script(&row).await?;
        tracing::info!(script = %row.id, campaign = %row.campaign_id, "script created");
        Ok(row)
    }

    /// Replaces a script's name, definition and recording settings (it keeps its id,
    /// campaign and creation time); sessions that start from then on use it.
    pub async fn replace_script(&self, id: &str, new: NewScript) -> Result<ScriptRow, ApiError> {
        let old = self.script(id).await?;
        let new = NewScript {
            campaign_id: old.campaign_id,
            ..new
        };
        let row = new.into_row(old.id, old.created_at)?;
        self.store.replace_script(&row).await?;
        tracing::info!(script = %row.id, "script replaced");
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
