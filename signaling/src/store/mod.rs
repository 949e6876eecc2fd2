//! The session store port: everything the session service persists (campaigns, scripts,
//! invites, sessions with their transitions, recording rows, turn logs, listen-ins), as the
//! [`SessionStore`] trait and the row types it speaks, and [`Store`]: all of the store's
//! ports in one object, opened by URL ([`open`]). [`sqlite::SqliteStore`] (the embedded
//! default) and [`postgres::PgStore`] (several processes sharing one database) implement it.
//!
//! Lifecycle steps are written with optimistic versioning: every session row carries a
//! `version`, and [`SessionStore::update_session`] writes only if the row still has the
//! version the step was computed from, else it returns [`StoreError::VersionConflict`] and the
//! caller steps again from the fresh row. That is what lets a second implementation (say
//! PostgreSQL, shared by several signaling processes) stay correct without in-process locks.
//! Each row also carries its `next_deadline` (from [`crate::lifecycle::next_deadline`]) in an
//! indexed column, so the ticker asks for the sessions that are due instead of scanning.

pub mod access;
pub mod catalog;
mod common_sql;
pub mod postgres;
pub mod privacy;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod tests;
pub mod webhooks;

pub use catalog::{AggregateFilter, CatalogStore, InviteStateRow};

use access::{AccessStore, AuditStore};
use privacy::PrivacyStore;
use std::sync::Arc;
use webhooks::WebhookStore;

use earshot_vocab::{Format, Quality, Role, State, Track};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON in {what} is invalid: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    /// The session row changed (or went) since it was read: its version is no longer
    /// `expected`. Nothing was written.
    #[error("session {session_id} changed since version {expected} was read")]
    VersionConflict { session_id: String, expected: i64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct ScriptRow {
    pub id: String,
    pub campaign_id: String,
    pub name: String,
    pub definition: String,
    pub recording_enabled: bool,
    pub noise_suppression: bool,
    #[sqlx(try_from = "String")]
    pub quality: Quality,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct InviteRow {
    pub token: String,
    pub campaign_id: String,
    pub script_id: String,
    pub metadata: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub id: String,
    pub invite_token: String,
    pub campaign_id: String,
    pub script_id: String,
    #[sqlx(try_from = "String")]
    pub state: State,
    pub lifecycle: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub drop_off: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub metadata: String,
    /// Bumped by every lifecycle step; see [`SessionStore::update_session`].
    pub version: i64,
    /// When the ticker must deliver the next `Tick` (unix ms); `None` if no timer runs.
    pub next_deadline: Option<i64>,
    /// The analytics summary the list shows (refreshed by the service).
    #[sqlx(flatten)]
    pub summary: SessionSummary,
}

/// A session's summary for the sessions list and the aggregates (from
/// [`crate::analytics`]), stored on its row.
#[derive(Debug, Clone, Default, FromRow, PartialEq)]
pub struct SessionSummary {
    pub active_ms: i64,
    pub turn_count: i64,
    pub word_count: i64,
    pub engagement: Option<f64>,
    pub quality: Option<f64>,
    pub ai_latency_p50: Option<i64>,
    pub ai_latency_p95: Option<i64>,
    pub drop_point: Option<String>,
}

impl SessionRow {
    /// The stored lifecycle record.
    pub fn lifecycle(&self) -> Result<crate::lifecycle::Lifecycle> {
        parse_json("sessions.lifecycle", &self.lifecycle)
    }
}

#[derive(Debug, Clone, FromRow, Serialize, Deserialize, PartialEq)]
pub struct RecordingRow {
    pub session_id: String,
    #[sqlx(try_from = "String")]
    pub track: Track,
    #[sqlx(try_from = "String")]
    pub format: Format,
    /// Where the media plane wrote the file (informational: downloads go through the blob
    /// store by session id and file name).
    pub path: String,
    pub duration_ms: i64,
    pub bytes: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct TransitionRow {
    pub at: i64,
    pub from_state: String,
    pub to_state: String,
    pub cause: String,
}

/// One stored turn of the turn log (see [`crate::turns::Turn`]).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct TurnRow {
    pub seq: i64,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub text: String,
    pub words: i64,
    pub response_ms: Option<i64>,
    pub sentiment: Option<f64>,
}

/// One silent listen-in of a QA monitor (WHEP), from its start to its end.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct MonitorRow {
    pub id: String,
    pub session_id: String,
    pub started_at: i64,
    /// `None` while the monitor listens.
    pub ended_at: Option<i64>,
}

/// What changes on a session row when its lifecycle moves.
#[derive(Debug, Clone)]
pub struct SessionUpdate<'a> {
    pub state: State,
    pub lifecycle: &'a str,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<&'a str>,
    pub drop_off: Option<&'a str>,
    pub next_deadline: Option<i64>,
    /// State changes to record (a late timer may cross several at once).
    pub transitions: &'a [TransitionRow],
    /// Webhook events the step causes, written to the outbox in the same transaction.
    pub events: &'a [webhooks::OutboxEvent],
}

/// Filters of a bulk export: every session that matches, in creation order.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub campaign: Option<String>,
    /// Only sessions of these campaigns (what the caller may see), when given.
    pub campaigns: Option<Vec<String>>,
    pub state: Option<State>,
    /// Created at or after (unix ms).
    pub from: Option<i64>,
    /// Created before (unix ms).
    pub to: Option<i64>,
    /// Only these sessions (a selection), when given.
    pub ids: Option<Vec<String>>,
}

/// Filters, order and page of a sessions list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub campaign: Option<String>,
    /// Only sessions of these campaigns (what the caller may see), when given.
    pub campaigns: Option<Vec<String>>,
    pub state: Option<State>,
    /// Created at or after (unix ms).
    pub from: Option<i64>,
    /// Created before (unix ms).
    pub to: Option<i64>,
    /// Words that must all occur in the session's transcript (prefix match on each, via the
    /// full-text index); only letters, digits and `'` are kept of each.
    pub text: Vec<String>,
    pub sort: SessionSort,
    /// Continue after this row of the previous page.
    pub after: Option<SessionCursor>,
    pub limit: Option<i64>,
}

/// What a sessions list is ordered by (ties by id, the same direction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Created,
    Started,
    Duration,
    Turns,
    Words,
    Quality,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Created,
        SortKey::Started,
        SortKey::Duration,
        SortKey::Turns,
        SortKey::Words,
        SortKey::Quality,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Created => "created",
            SortKey::Started => "started",
            SortKey::Duration => "duration",
            SortKey::Turns => "turns",
            SortKey::Words => "words",
            SortKey::Quality => "quality",
        }
    }

    /// The key's value of a row, as the store compares it (missing values sort as -1).
    pub fn value(self, s: &SessionRow) -> f64 {
        match self {
            SortKey::Created => s.created_at as f64,
            SortKey::Started => s.started_at.map_or(-1.0, |v| v as f64),
            SortKey::Duration => s.summary.active_ms as f64,
            SortKey::Turns => s.summary.turn_count as f64,
            SortKey::Words => s.summary.word_count as f64,
            SortKey::Quality => s.summary.quality.unwrap_or(-1.0),
        }
    }
}

/// A sort key and direction; the default is newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSort {
    pub key: SortKey,
    pub ascending: bool,
}

/// Where a page ended: the last row's sort value and id.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCursor {
    pub value: f64,
    pub id: String,
}

/// Everything the session service reads and writes. Methods return `Ok(None)` / empty for
/// what does not exist; errors are storage failures (and version conflicts).
#[async_trait::async_trait]
pub trait SessionStore: CatalogStore + Send + Sync + 'static {
    /// Inserts a campaign unless one with its id exists.
    async fn insert_campaign(&self, c: &CampaignRow) -> Result<()>;
    async fn get_campaign(&self, id: &str) -> Result<Option<CampaignRow>>;

    /// Inserts a script, or replaces the definition of one with the same id (used for the
    /// built-in default script, whose prompt paths follow the data directory).
    async fn upsert_script(&self, s: &ScriptRow) -> Result<()>;
    /// Inserts a new script (fails if the id exists).
    async fn insert_script(&self, s: &ScriptRow) -> Result<()>;
    async fn get_script(&self, id: &str) -> Result<Option<ScriptRow>>;

    async fn insert_invite(&self, i: &InviteRow) -> Result<()>;
    async fn get_invite(&self, token: &str) -> Result<Option<InviteRow>>;

    /// The newest session of an invite, whatever its state.
    async fn latest_session_for_invite(&self, token: &str) -> Result<Option<SessionRow>>;
    /// Inserts a new session row (its `version` and `next_deadline` as given).
    async fn insert_session(&self, s: &SessionRow) -> Result<()>;
    async fn get_session(&self, id: &str) -> Result<Option<SessionRow>>;
    /// Sessions matching the filter in its order (limit 1-1000, default 100).
    async fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>>;
    /// One page of a bulk export: up to `limit` sessions matching `f` that come after
    /// `after` (created_at, id) in creation order (keyset paging: each page is one indexed
    /// query, however far into the export).
    async fn export_page(
        &self,
        f: &ExportFilter,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<SessionRow>>;
    /// How many sessions a bulk export with `f` holds.
    async fn count_export(&self, f: &ExportFilter) -> Result<i64>;
    /// Ids of the sessions in `state` (crash recovery).
    async fn session_ids_in_state(&self, state: &str) -> Result<Vec<String>>;
    /// Ids of the sessions whose `next_deadline` is at or before `now`, earliest first (the
    /// ticker; an indexed query).
    async fn due_sessions(&self, now: i64) -> Result<Vec<String>>;
    /// Claims up to `limit` due sessions for this process's ticker, earliest first: those
    /// whose `next_deadline` is at or before `now` and that no other ticker holds. Each is
    /// leased until `now + lease_ms` (a ticker that dies mid-round leaves them to another
    /// after that); the lifecycle step that follows ([`SessionStore::update_session`])
    /// clears the lease. Two processes claiming at once never get the same session.
    async fn claim_due_sessions(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<String>>;
    /// Records the participant's browser and (when enabled) IP address. Not a lifecycle
    /// step: the version stays.
    async fn set_session_client(
        &self,
        id: &str,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<()>;
    /// Writes a lifecycle step atomically (the session row and its transitions) if the row
    /// is still at `expected_version`; returns the new version. Otherwise writes nothing and
    /// returns [`StoreError::VersionConflict`] (also when the row is gone).
    async fn update_session(
        &self,
        id: &str,
        update: &SessionUpdate<'_>,
        expected_version: i64,
    ) -> Result<i64>;
    async fn transitions(&self, session_id: &str) -> Result<Vec<TransitionRow>>;
    /// Removes the session and everything that references it (transitions, recording rows,
    /// turns). `false` if there was no such session.
    async fn delete_session(&self, id: &str) -> Result<bool>;
    /// Number of sessions in each state.
    async fn count_sessions_by_state(&self) -> Result<Vec<(String, i64)>>;

    /// Inserts a recording row or replaces the one of the same session, track and format.
    async fn upsert_recording(&self, r: &RecordingRow) -> Result<()>;
    /// The session's recording rows, by track and format.
    async fn recordings(&self, session_id: &str) -> Result<Vec<RecordingRow>>;

    /// Writes turns of a session (new ones, or changed ones with the same `seq`) atomically.
    async fn upsert_turns(&self, session_id: &str, turns: &[TurnRow]) -> Result<()>;
    /// The session's turn log in order.
    async fn turns(&self, session_id: &str) -> Result<Vec<TurnRow>>;

    /// Records a listen-in that started.
    async fn insert_monitor(&self, m: &MonitorRow) -> Result<()>;
    /// Records the end of a listen-in (once: an ended one keeps its end).
    async fn end_monitor(&self, id: &str, at: i64) -> Result<()>;
    /// Ends every listen-in still open (after a restart of the process none can be).
    async fn end_open_monitors(&self, at: i64) -> Result<u64>;
    /// The session's listen-ins, oldest first.
    async fn monitors(&self, session_id: &str) -> Result<Vec<MonitorRow>>;
}

/// Every port of the store in one object: what the binary opens ([`open`]) and hands to the
/// service, access control and the audit log. An `Arc<dyn Store>` upcasts to any one port.
pub trait Store:
    SessionStore + CatalogStore + WebhookStore + PrivacyStore + AccessStore + AuditStore
{
}

impl<T> Store for T where
    T: SessionStore + CatalogStore + WebhookStore + PrivacyStore + AccessStore + AuditStore
{
}

/// Which database a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://<path>`: the embedded database file (created if missing).
    Sqlite(std::path::PathBuf),
    /// `postgres://...` or `postgresql://...`: a PostgreSQL server (the URL as given).
    Postgres(String),
}

/// A store URL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreUrlError {
    #[error("{0:?} is not a URL (expected sqlite://<path> or postgres://user@host/db)")]
    NotUrl(String),
    #[error("unknown scheme {0:?} (expected sqlite or postgres)")]
    Scheme(String),
    #[error("sqlite:// needs a file path, got {0:?}")]
    NoPath(String),
}

impl StoreUrl {
    /// The database file of the embedded store (`None` for PostgreSQL).
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        match self {
            StoreUrl::Sqlite(path) => Some(path),
            StoreUrl::Postgres(_) => None,
        }
    }

    pub fn parse(url: &str) -> std::result::Result<StoreUrl, StoreUrlError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(StoreUrlError::NotUrl(url.to_string()));
        };
        match scheme {
            "sqlite" => {
                // Like sqlx: everything after the scheme is the path; options are not ours.
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(StoreUrlError::NoPath(url.to_string()));
                }
                Ok(StoreUrl::Sqlite(path.into()))
            }
            "postgres" | "postgresql" => {
                url::Url::parse(url).map_err(|_| StoreUrlError::NotUrl(url.to_string()))?;
                Ok(StoreUrl::Postgres(url.to_string()))
            }
            other => Err(StoreUrlError::Scheme(other.to_string())),
        }
    }
}

/// Opens the store a URL names (see [`StoreUrl`]) and runs its pending migrations.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    Ok(match url {
        StoreUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path).await?),
        StoreUrl::Postgres(url) => Arc::new(postgres::PgStore::open(url).await?),
    })
}

/// Parses a JSON column, naming it in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| StoreError::Json { what, source })
}
