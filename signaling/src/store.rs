//! Storage: the embedded SQLite database (via sqlx) holding campaigns, scripts, invites,
//! sessions, their transitions, recordings and turn logs. Owns every SQL statement in Earshot.

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};
use std::path::Path;
use std::str::FromStr;

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
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
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
    pub quality: String,
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
    pub state: String,
    pub lifecycle: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub drop_off: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub metadata: String,
}

#[derive(Debug, Clone, FromRow, Serialize, Deserialize, PartialEq)]
pub struct RecordingRow {
    pub session_id: String,
    pub track: String,
    pub format: String,
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
    pub role: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub text: String,
    pub words: i64,
    pub response_ms: Option<i64>,
    pub sentiment: Option<f64>,
}

/// What changes on a session row when its lifecycle moves.
#[derive(Debug, Clone)]
pub struct SessionUpdate<'a> {
    pub state: &'a str,
    pub lifecycle: &'a str,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<&'a str>,
    pub drop_off: Option<&'a str>,
    /// State changes to record (a late timer may cross several at once).
    pub transitions: &'a [TransitionRow],
}

/// Filters for listing sessions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SessionFilter {
    pub campaign: Option<String>,
    pub state: Option<String>,
    pub limit: Option<i64>,
}

impl Store {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let url = format!("sqlite://{}", path.display());
        let opts = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn insert_campaign(&self, c: &CampaignRow) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO campaigns (id, name, created_at) VALUES (?, ?, ?)")
            .bind(&c.id)
            .bind(&c.name)
            .bind(c.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_campaign(&self, id: &str) -> Result<Option<CampaignRow>> {
        Ok(sqlx::query_as("SELECT * FROM campaigns WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Inserts a script, or replaces the definition of one with the same id (used for the
    /// built-in default script, whose prompt paths follow the data directory).
    pub async fn upsert_script(&self, s: &ScriptRow) -> Result<()> {
        self.write_script(
            s,
            " ON CONFLICT(id) DO UPDATE SET definition = excluded.definition",
        )
        .await
    }

    /// Inserts a new script (fails if the id exists).
    pub async fn insert_script(&self, s: &ScriptRow) -> Result<()> {
        self.write_script(s, "").await
    }

    async fn write_script(&self, s: &ScriptRow, on_conflict: &str) -> Result<()> {
        let sql = format!(
            "INSERT INTO scripts (id, campaign_id, name, definition, recording_enabled, \
             noise_suppression, quality, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?){on_conflict}"
        );
        sqlx::query(&sql)
            .bind(&s.id)
            .bind(&s.campaign_id)
            .bind(&s.name)
            .bind(&s.definition)
            .bind(s.recording_enabled)
            .bind(s.noise_suppression)
            .bind(&s.quality)
            .bind(s.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_script(&self, id: &str) -> Result<Option<ScriptRow>> {
        Ok(sqlx::query_as("SELECT * FROM scripts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn insert_invite(&self, i: &InviteRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO invites (token, campaign_id, script_id, metadata, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&i.token)
        .bind(&i.campaign_id)
        .bind(&i.script_id)
        .bind(&i.metadata)
        .bind(i.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_invite(&self, token: &str) -> Result<Option<InviteRow>> {
        Ok(sqlx::query_as("SELECT * FROM invites WHERE token = ?")
            .bind(token)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The newest session of an invite, whatever its state.
    pub async fn latest_session_for_invite(&self, token: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM sessions WHERE invite_token = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, invite_token, campaign_id, script_id, state, lifecycle, \
             created_at, started_at, ended_at, end_reason, drop_off, user_agent, ip, metadata) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.invite_token)
        .bind(&s.campaign_id)
        .bind(&s.script_id)
        .bind(&s.state)
        .bind(&s.lifecycle)
        .bind(s.created_at)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(&s.end_reason)
        .bind(&s.drop_off)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(&s.metadata)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as("SELECT * FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>> {
        let limit = f.limit.unwrap_or(100).clamp(1, 1000);
        Ok(sqlx::query_as(
            "SELECT * FROM sessions WHERE (?1 IS NULL OR campaign_id = ?1) \
             AND (?2 IS NULL OR state = ?2) ORDER BY created_at DESC, rowid DESC LIMIT ?3",
        )
        .bind(&f.campaign)
        .bind(&f.state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sessions not in a terminal state (for timers and crash recovery).
    pub async fn live_sessions(&self) -> Result<Vec<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM sessions WHERE state IN ('created', 'in_progress', 'paused')",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn set_session_client(
        &self,
        id: &str,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE sessions SET user_agent = ?, ip = ? WHERE id = ?")
            .bind(user_agent)
            .bind(ip)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes a lifecycle step atomically: the session row and, if the state moved, the
    /// transition record.
    pub async fn update_session(&self, id: &str, u: &SessionUpdate<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE sessions SET state = ?, lifecycle = ?, started_at = ?, ended_at = ?, \
             end_reason = ?, drop_off = ? WHERE id = ?",
        )
        .bind(u.state)
        .bind(u.lifecycle)
        .bind(u.started_at)
        .bind(u.ended_at)
        .bind(u.end_reason)
        .bind(u.drop_off)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for t in u.transitions {
            sqlx::query(
                "INSERT INTO session_transitions (session_id, at, from_state, to_state, cause) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(t.at)
            .bind(&t.from_state)
            .bind(&t.to_state)
            .bind(&t.cause)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn transitions(&self, session_id: &str) -> Result<Vec<TransitionRow>> {
        Ok(sqlx::query_as(
            "SELECT at, from_state, to_state, cause FROM session_transitions \
             WHERE session_id = ? ORDER BY id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn upsert_recording(&self, r: &RecordingRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO recordings (session_id, track, format, path, duration_ms, bytes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, track, format) DO UPDATE SET \
             path = excluded.path, duration_ms = excluded.duration_ms, bytes = excluded.bytes",
        )
        .bind(&r.session_id)
        .bind(&r.track)
        .bind(&r.format)
        .bind(&r.path)
        .bind(r.duration_ms)
        .bind(r.bytes)
        .bind(r.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn recordings(&self, session_id: &str) -> Result<Vec<RecordingRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM recordings WHERE session_id = ? ORDER BY track, format")
                .bind(session_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Writes turns of a session (new ones, or changed ones with the same `seq`) atomically.
    pub async fn upsert_turns(&self, session_id: &str, turns: &[TurnRow]) -> Result<()> {
        if turns.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for t in turns {
            sqlx::query(
                "INSERT INTO turns (session_id, seq, role, start_ms, end_ms, text, words, \
                 response_ms, sentiment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT(session_id, seq) DO UPDATE SET role = excluded.role, \
                 start_ms = excluded.start_ms, end_ms = excluded.end_ms, text = excluded.text, \
                 words = excluded.words, response_ms = excluded.response_ms, \
                 sentiment = excluded.sentiment",
            )
            .bind(session_id)
            .bind(t.seq)
            .bind(&t.role)
            .bind(t.start_ms)
            .bind(t.end_ms)
            .bind(&t.text)
            .bind(t.words)
            .bind(t.response_ms)
            .bind(t.sentiment)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The session's turn log in order.
    pub async fn turns(&self, session_id: &str) -> Result<Vec<TurnRow>> {
        Ok(sqlx::query_as(
            "SELECT seq, role, start_ms, end_ms, text, words, response_ms, sentiment \
             FROM turns WHERE session_id = ? ORDER BY seq",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes the session and everything that references it (transitions, recordings rows,
    /// turns).
    pub async fn delete_session(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Number of sessions in each state.
    pub async fn count_sessions_by_state(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT state, COUNT(*) FROM sessions GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn count_sessions(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Parses a JSON column, naming it in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| StoreError::Json { what, source })
}
