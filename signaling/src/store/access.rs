//! The rows of users, their grants and API keys, console sign-ins and the audit log, as
//! [`super::sqlite::SqliteStore`] reads and writes them (`store/sqlite/access.rs`).

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
