//! The access port of the store: users, their grants and API keys, console sign-ins
//! ([`AccessStore`]) and the append-only audit log ([`AuditStore`]), with the rows they speak
//! (migration 0008).

use super::Result;
use serde::Serialize;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub superuser: bool,
    pub created_at: i64,
}

/// A user's role on a campaign (`permissions` comma-separated, members only).
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct GrantRow {
    pub user_id: String,
    pub campaign_id: String,
    pub role: String,
    pub permissions: String,
    pub created_at: i64,
}

/// An API key (its hash; the key itself is shown once, when made).
#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub key_hash: String,
    pub prefix: String,
    /// Comma-separated permissions the key is narrowed to; `None`: all of the user's.
    pub permissions: Option<String>,
    /// Comma-separated campaign ids the key is narrowed to; `None`: all of the user's.
    pub campaigns: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A console sign-in (the hash of its cookie's id).
#[derive(Debug, Clone, FromRow)]
pub struct ConsoleSessionRow {
    pub id_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// One audit log entry.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub campaign_id: Option<String>,
    pub client: Option<String>,
    pub outcome: String,
}

/// Which audit rows to read: newest first, before `before` (a `seq`), at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows of these campaigns; `None`: all rows.
    pub campaigns: Option<Vec<String>>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// Users, grants, API keys and console sign-ins.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// Inserts a user; `false` if the email (compared without case) is taken.
    async fn insert_user(&self, u: &UserRow) -> Result<bool>;
    async fn get_user(&self, id: &str) -> Result<Option<UserRow>>;
    /// The user with this email (compared without case).
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>>;
    /// Every user, oldest first.
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    /// Deletes a user with their grants, keys and sign-ins; `false` if there was none.
    async fn delete_user(&self, id: &str) -> Result<bool>;
    /// Superusers there are (the start refuses to turn the admin token off without one).
    async fn count_superusers(&self) -> Result<i64>;

    /// Sets (inserts or replaces) a user's role on a campaign.
    async fn put_grant(&self, g: &GrantRow) -> Result<()>;
    async fn delete_grant(&self, user_id: &str, campaign_id: &str) -> Result<bool>;
    async fn grants_of_user(&self, user_id: &str) -> Result<Vec<GrantRow>>;
    async fn grants_of_campaign(&self, campaign_id: &str) -> Result<Vec<GrantRow>>;

    async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<()>;
    /// The unrevoked key with this hash.
    async fn live_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRow>>;
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRow>>;
    /// Keys of one user (all users' when `None`), newest first.
    async fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRow>>;
    /// Revokes a key at `at`; `false` if there is none or it was revoked already.
    async fn revoke_api_key(&self, id: &str, at: i64) -> Result<bool>;

    /// Deletes the sign-ins that expired or went idle (before `idle_since`) by `now`.
    async fn delete_stale_console_sessions(&self, now: i64, idle_since: i64) -> Result<u64>;
    async fn insert_console_session(&self, s: &ConsoleSessionRow) -> Result<()>;
    /// The sign-in with this hash if it is neither expired nor idle since `idle_since`; it
    /// is marked seen at `now` (written at most once a [`TOUCH_EVERY_MS`]: a console playing
    /// audio makes many range requests). An expired or idle one is deleted.
    async fn touch_console_session(
        &self,
        id_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> Result<Option<ConsoleSessionRow>>;
    async fn delete_console_session(&self, id_hash: &str) -> Result<bool>;
}

/// How stale a sign-in's `last_seen_at` may get before a use writes it again (the idle
/// timeout is minutes; this keeps it exact to the minute).
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// The audit log: only ever appended to and read (the tables refuse UPDATE and DELETE).
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends an audit row (its `seq` is assigned here); returns the `seq`.
    async fn append_audit(&self, r: &AuditRow) -> Result<i64>;
    /// Audit rows matching `f`, newest first.
    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>>;
}
