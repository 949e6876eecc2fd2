//! The privacy port of the store (migration 0007): each campaign's privacy settings, sealed
//! originals of changed turns, what the retention sweep finds due and marks done, the
//! sweeps' reports, participants' deletion tokens and deletion requests.

use super::Result;
use sqlx::FromRow;

/// A campaign's privacy settings as stored (the defaults when it has no row).
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct PrivacyRow {
    pub pii_action: String,
    pub pii_delay_days: i64,
    pub pii_keep_originals: bool,
    /// JSON array of `{"name","regex"}`.
    pub pii_patterns: String,
    pub audio_retention_days: i64,
    pub auto_delete_requests: bool,
}

/// Audio kept this many days after a session ended unless the campaign says otherwise.
pub const DEFAULT_AUDIO_RETENTION_DAYS: i64 = 90;

impl Default for PrivacyRow {
    fn default() -> Self {
        PrivacyRow {
            pii_action: "keep".into(),
            pii_delay_days: 0,
            pii_keep_originals: false,
            pii_patterns: "[]".into(),
            audio_retention_days: DEFAULT_AUDIO_RETENTION_DAYS,
            auto_delete_requests: false,
        }
    }
}

/// A session something is due for, and since when.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct DueRow {
    pub session_id: String,
    pub campaign_id: String,
    /// When the work became due (unix ms).
    pub due_at: i64,
}

/// One deletion request.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct DeletionRequestRow {
    pub id: String,
    pub session_id: String,
    pub campaign_id: String,
    pub requested_at: i64,
    pub fulfilled_at: Option<i64>,
    /// Who: a principal's id (`admin-token`, a user id) or `policy`.
    pub fulfilled_by: Option<String>,
}

#[async_trait::async_trait]
pub trait PrivacyStore: Send + Sync + 'static {
    /// The campaign's settings (`None`: it has none stored, the defaults apply).
    async fn campaign_privacy(&self, campaign_id: &str) -> Result<Option<PrivacyRow>>;
    /// Stores the campaign's settings.
    async fn set_campaign_privacy(&self, campaign_id: &str, p: &PrivacyRow) -> Result<()>;

    /// Stores sealed originals of turns by `seq`.
    async fn set_turn_originals(
        &self,
        session_id: &str,
        originals: &[(i64, Vec<u8>)],
    ) -> Result<()>;
    /// The sealed originals of a session's turns by `seq`.
    async fn turn_originals(&self, session_id: &str) -> Result<Vec<(i64, Vec<u8>)>>;

    /// Ended sessions whose recordings are due for deletion at `now` (retention > 0 days,
    /// not deleted yet), oldest first, at most `limit`.
    async fn recordings_due(&self, now: i64, limit: i64) -> Result<Vec<DueRow>>;
    /// Ended sessions whose delayed PII policy is due at `now`, oldest first.
    async fn redactions_due(&self, now: i64, limit: i64) -> Result<Vec<DueRow>>;
    /// The next time recordings or a redaction fall due after `now`: (recordings, redaction).
    async fn next_due(&self, now: i64) -> Result<(Option<i64>, Option<i64>)>;
    /// Removes the session's recording rows and marks its recordings deleted at `at`.
    async fn mark_recordings_deleted(&self, session_id: &str, at: i64) -> Result<()>;
    /// When the session's recordings were deleted, if they were.
    async fn recordings_deleted_at(&self, session_id: &str) -> Result<Option<i64>>;
    /// Marks the session's delayed PII policy applied at `at`.
    async fn mark_pii_applied(&self, session_id: &str, at: i64) -> Result<()>;

    /// Stores a sweep's report (JSON) and keeps the newest 100.
    async fn insert_sweep(&self, at: i64, report: &str) -> Result<()>;
    /// The newest sweep's time and report.
    async fn last_sweep(&self) -> Result<Option<(i64, String)>>;

    /// Sets the hash of the session's deletion token (replacing any earlier one).
    async fn set_deletion_token(&self, session_id: &str, hash: &str) -> Result<()>;
    /// The session whose deletion token has this hash.
    async fn session_by_deletion_token(&self, hash: &str) -> Result<Option<(String, String)>>;
    async fn insert_deletion_request(&self, r: &DeletionRequestRow) -> Result<()>;
    /// Every request, newest first, at most `limit`.
    async fn deletion_requests(&self, limit: i64) -> Result<Vec<DeletionRequestRow>>;
    async fn deletion_request(&self, id: &str) -> Result<Option<DeletionRequestRow>>;
    /// The pending request of a session, if any.
    async fn pending_request_for(&self, session_id: &str) -> Result<Option<DeletionRequestRow>>;
    /// Marks every pending request of the session fulfilled.
    async fn fulfil_requests(&self, session_id: &str, at: i64, by: &str) -> Result<()>;
}
