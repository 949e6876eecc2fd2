//! Campaigns for the researcher console: create, list, edit, and what belongs to one (its
//! scripts, its invites with their state).

use super::SessionService;
use crate::error::ApiError;
use crate::ids;
use crate::store::{CampaignRow, InviteStateRow, ScriptRow};

/// Most invites one list or one bulk request holds.
pub const MAX_INVITES: usize = 10_000;

impl SessionService {
    /// Stores a new campaign.
    pub async fn create_campaign(
        &self,
        name: String,
        description: String,
    ) -> Result<CampaignRow, ApiError> {
        let row = CampaignRow {
            id: ids::new_id("cmp"),
            name,
            description,
            created_at: self.now().0,
        };
        self.store.insert_campaign(&row).await?;
        tracing::info!(campaign = %row.id, "campaign created");
        Ok(row)
    }

    pub async fn campaigns(&self) -> Result<Vec<CampaignRow>, ApiError> {
        Ok(self.store.list_campaigns().await?)
    }

    /// Renames / redescribes a campaign.
    pub async fn update_campaign(
        &self,
        id: &str,
        name: &str,
        description: &str,
    ) -> Result<CampaignRow, ApiError> {
        self.campaign(id).await?;
        self.store.update_campaign(id, name, description).await?;
        self.campaign(id).await
    }

    /// The scripts of a campaign (all when `None`).
    pub async fn scripts(&self, campaign: Option<&str>) -> Result<Vec<ScriptRow>, ApiError> {
        if let Some(c) = campaign {
            self.campaign(c).await?;
        }
        Ok(self.store.list_scripts(campaign).await?)
    }

    /// A campaign's invites, newest first, with their newest session's state.
    pub async fn invites(&self, campaign: &str) -> Result<Vec<InviteStateRow>, ApiError> {
        self.campaign(campaign).await?;
        Ok(self
            .store
            .list_invites(campaign, MAX_INVITES as i64)
            .await?)
    }
}
