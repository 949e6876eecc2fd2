//! The researcher console's part of the store port: campaigns (list, edit), scripts and
//! invites of a campaign (invites with their latest session's state, several inserted at
//! once), each session's analytics summary and the counts behind the aggregate analytics.
//! A supertrait of [`super::SessionStore`], implemented by the same store.

use super::{CampaignRow, InviteRow, Result, ScriptRow, SessionSummary};
use crate::analytics::aggregate::AggregateCounts;
use sqlx::FromRow;

/// An invite with the state of its newest session (`None`: never opened).
#[derive(Debug, Clone, FromRow)]
pub struct InviteStateRow {
    #[sqlx(flatten)]
    pub invite: InviteRow,
    pub session_id: Option<String>,
    pub state: Option<String>,
}

/// Which sessions an aggregate counts: a campaign (or all) created in [from, to).
#[derive(Debug, Clone, Default)]
pub struct AggregateFilter {
    pub campaign: Option<String>,
    /// Only sessions of these campaigns (what the caller may see), when given.
    pub campaigns: Option<Vec<String>>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

#[async_trait::async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Every campaign, newest first.
    async fn list_campaigns(&self) -> Result<Vec<CampaignRow>>;
    /// Renames / redescribes a campaign; `false` if there is none with the id.
    async fn update_campaign(&self, id: &str, name: &str, description: &str) -> Result<bool>;
    /// Replaces a script's name, definition and recording settings (same id).
    async fn replace_script(&self, s: &ScriptRow) -> Result<()>;
    /// The scripts of a campaign (all when `None`), newest first.
    async fn list_scripts(&self, campaign: Option<&str>) -> Result<Vec<ScriptRow>>;
    /// Inserts invites in one transaction (all or none).
    async fn insert_invites(&self, invites: &[InviteRow]) -> Result<()>;
    /// A campaign's invites, newest first, with their newest session's state.
    async fn list_invites(&self, campaign: &str, limit: i64) -> Result<Vec<InviteStateRow>>;
    /// Up to `limit` ids of sessions whose summary was never computed.
    async fn unsummarized_sessions(&self, limit: i64) -> Result<Vec<String>>;
    /// Stores a session's analytics summary.
    async fn set_session_summary(&self, id: &str, summary: &SessionSummary) -> Result<()>;
    /// The counts behind [`crate::analytics::aggregate::summarize`].
    async fn aggregate_counts(&self, f: &AggregateFilter) -> Result<AggregateCounts>;
}
