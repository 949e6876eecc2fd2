//! The embedded SQLite database (via sqlx): the [`SessionStore`] of a single Earshot
//! process. Owns every SQL statement in Earshot; migrations in `signaling/migrations/` run on
//! open, so an existing database upgrades in place.

mod access;
mod privacy;
mod webhooks;

use super::CatalogStore;
use super::common_sql::search_words;
use super::{
    CampaignRow, ExportFilter, InviteRow, MonitorRow, RecordingRow, Result, ScriptRow,
    SessionFilter, SessionRow, SessionStore, SessionUpdate, SortKey, StoreError, TransitionRow,
    TurnRow,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use std::path::Path;
use std::str::FromStr;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
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
            .bind(s.quality.as_str())
            .bind(s.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The bulk export's filters, parameters 1-6 (bound by [`bind_export_filter`]).
const EXPORT_WHERE: &str = "(?1 IS NULL OR campaign_id = ?1) AND (?2 IS NULL OR state = ?2) \
     AND (?3 IS NULL OR created_at >= ?3) AND (?4 IS NULL OR created_at < ?4) \
     AND (?5 IS NULL OR id IN (SELECT value FROM json_each(?5))) \
     AND (?6 IS NULL OR campaign_id IN (SELECT value FROM json_each(?6)))";

/// A list of campaign ids as the JSON array `json_each` reads.
pub(super) fn campaigns_json(campaigns: &Option<Vec<String>>) -> Option<String> {
    campaigns.as_ref().map(|c| serde_json::json!(c).to_string())
}

/// Binds parameters 1-6 of [`EXPORT_WHERE`].
fn bind_export_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
    f: &'q ExportFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>> {
    q.bind(&f.campaign)
        .bind(f.state.map(|s| s.as_str()))
        .bind(f.from)
        .bind(f.to)
        .bind(f.ids.as_ref().map(|ids| serde_json::json!(ids).to_string()))
        .bind(campaigns_json(&f.campaigns))
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    async fn insert_campaign(&self, c: &CampaignRow) -> Result<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO campaigns (id, name, description, created_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(c.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_campaign(&self, id: &str) -> Result<Option<CampaignRow>> {
        Ok(sqlx::query_as("SELECT * FROM campaigns WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn upsert_script(&self, s: &ScriptRow) -> Result<()> {
        self.write_script(
            s,
            " ON CONFLICT(id) DO UPDATE SET definition = excluded.definition",
        )
        .await
    }

    async fn insert_script(&self, s: &ScriptRow) -> Result<()> {
        self.write_script(s, "").await
    }

    async fn get_script(&self, id: &str) -> Result<Option<ScriptRow>> {
        Ok(sqlx::query_as("SELECT * FROM scripts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn insert_invite(&self, i: &InviteRow) -> Result<()> {
        self.insert_invites(std::slice::from_ref(i)).await
    }

    async fn get_invite(&self, token: &str) -> Result<Option<InviteRow>> {
        Ok(sqlx::query_as("SELECT * FROM invites WHERE token = ?")
            .bind(token)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn latest_session_for_invite(&self, token: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM sessions WHERE invite_token = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, invite_token, campaign_id, script_id, state, lifecycle, \
             created_at, started_at, ended_at, end_reason, drop_off, user_agent, ip, metadata, \
             version, next_deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.invite_token)
        .bind(&s.campaign_id)
        .bind(&s.script_id)
        .bind(s.state.as_str())
        .bind(&s.lifecycle)
        .bind(s.created_at)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(&s.end_reason)
        .bind(&s.drop_off)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(&s.metadata)
        .bind(s.version)
        .bind(s.next_deadline)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as("SELECT * FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>> {
        let limit = f.limit.unwrap_or(100).clamp(1, 1000);
        // The sort expression comes from this fixed list, never from input.
        let key = match f.sort.key {
            SortKey::Created => "created_at",
            SortKey::Started => "COALESCE(started_at, -1)",
            SortKey::Duration => "active_ms",
            SortKey::Turns => "turn_count",
            SortKey::Words => "word_count",
            SortKey::Quality => "COALESCE(quality, -1)",
        };
        let (dir, cmp) = if f.sort.ascending {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        // With transcript words, the full-text index drives: its matching sessions (a
        // small set for a selective word) are joined to their rows, then filtered and
        // sorted; scanning the list's order and testing each row would read far more.
        let mut q: QueryBuilder<Sqlite> = match fts_query(&f.text) {
            Some(matched) => {
                let mut q = QueryBuilder::new(
                    "SELECT sessions.* FROM (SELECT DISTINCT t.session_id AS sid FROM turns_fts \
                     JOIN turns t ON t.rowid = turns_fts.rowid WHERE turns_fts MATCH ",
                );
                q.push_bind(matched)
                    .push(") AS m CROSS JOIN sessions ON sessions.id = m.sid WHERE 1");
                q
            }
            None => QueryBuilder::new("SELECT * FROM sessions WHERE 1"),
        };
        if let Some(c) = &f.campaign {
            q.push(" AND campaign_id = ").push_bind(c);
        }
        if let Some(c) = campaigns_json(&f.campaigns) {
            q.push(" AND campaign_id IN (SELECT value FROM json_each(")
                .push_bind(c)
                .push("))");
        }
        if let Some(state) = f.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(from) = f.from {
            q.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(to) = f.to {
            q.push(" AND created_at < ").push_bind(to);
        }
        if let Some(after) = &f.after {
            q.push(format_args!(" AND ({key} {cmp} "))
                .push_bind(after.value)
                .push(format_args!(" OR ({key} = "))
                .push_bind(after.value)
                .push(format_args!(" AND id {cmp} "))
                .push_bind(&after.id)
                .push("))");
        }
        q.push(format_args!(" ORDER BY {key} {dir}, id {dir} LIMIT "))
            .push_bind(limit);
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn export_page(
        &self,
        f: &ExportFilter,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<SessionRow>> {
        let (after_at, after_id) = match after {
            Some((at, id)) => (Some(at), Some(id)),
            None => (None, None),
        };
        let sql = format!(
            "SELECT * FROM sessions WHERE {EXPORT_WHERE} \
             AND (?7 IS NULL OR created_at > ?7 OR (created_at = ?7 AND id > ?8)) \
             ORDER BY created_at, id LIMIT ?9"
        );
        Ok(bind_export_filter(sqlx::query_as(&sql), f)
            .bind(after_at)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn count_export(&self, f: &ExportFilter) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM sessions WHERE {EXPORT_WHERE}");
        Ok(bind_export_filter(sqlx::query_as::<_, (i64,)>(&sql), f)
            .fetch_one(&self.pool)
            .await?
            .0)
    }

    async fn session_ids_in_state(&self, state: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM sessions WHERE state = ?")
                .bind(state)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn due_sessions(&self, now: i64) -> Result<Vec<String>> {
        // Served by the partial index `sessions_next_deadline` (migration 0003).
        Ok(sqlx::query_scalar(
            "SELECT id FROM sessions WHERE next_deadline IS NOT NULL AND next_deadline <= ? \
             ORDER BY next_deadline",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn claim_due_sessions(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<String>> {
        // IMMEDIATE: the write lock up front, so that a second process sharing the file
        // waits for this claim instead of reading the same due rows.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE next_deadline IS NOT NULL AND next_deadline <= ?1 \
             AND (deadline_lease_until IS NULL OR deadline_lease_until <= ?1) \
             ORDER BY next_deadline LIMIT ?2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for id in &due {
            sqlx::query("UPDATE sessions SET deadline_lease_until = ? WHERE id = ?")
                .bind(now + lease_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn set_session_client(
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

    async fn update_session(
        &self,
        id: &str,
        u: &SessionUpdate<'_>,
        expected_version: i64,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET state = ?, lifecycle = ?, started_at = ?, ended_at = ?, \
             end_reason = ?, drop_off = ?, next_deadline = ?, version = version + 1, \
             deadline_lease_until = NULL WHERE id = ? AND version = ?",
        )
        .bind(u.state.as_str())
        .bind(u.lifecycle)
        .bind(u.started_at)
        .bind(u.ended_at)
        .bind(u.end_reason)
        .bind(u.drop_off)
        .bind(u.next_deadline)
        .bind(id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Dropping the transaction rolls it back (nothing was written anyway).
            return Err(StoreError::VersionConflict {
                session_id: id.to_string(),
                expected: expected_version,
            });
        }
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
        for e in u.events {
            webhooks::enqueue_on(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(expected_version + 1)
    }

    async fn transitions(&self, session_id: &str) -> Result<Vec<TransitionRow>> {
        Ok(sqlx::query_as(
            "SELECT at, from_state, to_state, cause FROM session_transitions \
             WHERE session_id = ? ORDER BY id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_sessions_by_state(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT state, COUNT(*) FROM sessions GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn upsert_recording(&self, r: &RecordingRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO recordings (session_id, track, format, path, duration_ms, bytes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, track, format) DO UPDATE SET \
             path = excluded.path, duration_ms = excluded.duration_ms, bytes = excluded.bytes",
        )
        .bind(&r.session_id)
        .bind(r.track.as_str())
        .bind(r.format.as_str())
        .bind(&r.path)
        .bind(r.duration_ms)
        .bind(r.bytes)
        .bind(r.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn recordings(&self, session_id: &str) -> Result<Vec<RecordingRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM recordings WHERE session_id = ? ORDER BY track, format")
                .bind(session_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn upsert_turns(&self, session_id: &str, turns: &[TurnRow]) -> Result<()> {
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
            .bind(t.role.as_str())
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

    async fn turns(&self, session_id: &str) -> Result<Vec<TurnRow>> {
        Ok(sqlx::query_as(
            "SELECT seq, role, start_ms, end_ms, text, words, response_ms, sentiment \
             FROM turns WHERE session_id = ? ORDER BY seq",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_monitor(&self, m: &MonitorRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO monitors (id, session_id, started_at, ended_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&m.id)
        .bind(&m.session_id)
        .bind(m.started_at)
        .bind(m.ended_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn end_monitor(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE monitors SET ended_at = ? WHERE id = ? AND ended_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn end_open_monitors(&self, at: i64) -> Result<u64> {
        let done = sqlx::query("UPDATE monitors SET ended_at = ? WHERE ended_at IS NULL")
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn monitors(&self, session_id: &str) -> Result<Vec<MonitorRow>> {
        Ok(sqlx::query_as(
            "SELECT id, session_id, started_at, ended_at FROM monitors \
             WHERE session_id = ? ORDER BY started_at, id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// An FTS5 query matching turns that hold every word (each as a prefix), or `None` for no
/// words. Each word is quoted (and holds only letters, digits and `'`, see
/// [`search_words`]), so no input can be read as FTS5 syntax.
fn fts_query(words: &[String]) -> Option<String> {
    let terms: Vec<String> = search_words(words)
        .iter()
        .map(|w| format!("\"{w}\"*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

mod catalog;
#[cfg(test)]
mod tests;
