//! PostgreSQL (via sqlx): the [`SessionStore`] of several Earshot processes sharing one
//! database. The same semantics as [`super::sqlite::SqliteStore`], statement for statement;
//! where the dialects differ: JSON id lists are `= ANY($n)` over arrays, the transcript
//! search is a `tsvector` GIN index with prefix queries instead of FTS5, SQLite's `rowid`
//! (insertion order) is an identity column, and claims of due rows use `FOR UPDATE SKIP
//! LOCKED` so that two processes never take the same row. Migrations in
//! `signaling/migrations_postgres/` run on open (sqlx holds an advisory lock meanwhile, so
//! processes starting together migrate once).

mod access;
mod catalog;
mod privacy;
mod webhooks;

use super::common_sql::search_words;
use super::{
    CampaignRow, ExportFilter, InviteRow, MonitorRow, RecordingRow, Result, ScriptRow,
    SessionFilter, SessionRow, SessionStore, SessionUpdate, SortKey, StoreError, TransitionRow,
    TurnRow,
};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};

/// Connections each process keeps to the database at most.
const MAX_CONNECTIONS: u32 = 10;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://user:password@host:port/db`) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations_postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for tests that change rows behind the store's back.
    #[cfg(test)]
    pub(crate) fn pool_for_tests(&self) -> PgPool {
        self.pool.clone()
    }

    async fn write_script(&self, s: &ScriptRow, on_conflict: &str) -> Result<()> {
        let sql = format!(
            "INSERT INTO scripts (id, campaign_id, name, definition, recording_enabled, \
             noise_suppression, quality, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)\
             {on_conflict}"
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
const EXPORT_WHERE: &str = "($1::text IS NULL OR campaign_id = $1) \
     AND ($2::text IS NULL OR state = $2) \
     AND ($3::bigint IS NULL OR created_at >= $3) AND ($4::bigint IS NULL OR created_at < $4) \
     AND ($5::text[] IS NULL OR id = ANY($5)) \
     AND ($6::text[] IS NULL OR campaign_id = ANY($6))";

/// Binds parameters 1-6 of [`EXPORT_WHERE`].
fn bind_export_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, Postgres, O, PgArguments>,
    f: &'q ExportFilter,
) -> sqlx::query::QueryAs<'q, Postgres, O, PgArguments> {
    q.bind(&f.campaign)
        .bind(f.state.map(|s| s.as_str()))
        .bind(f.from)
        .bind(f.to)
        .bind(&f.ids)
        .bind(&f.campaigns)
}

/// A `tsquery` matching turns that hold every word, each as a prefix (what the SQLite
/// store's FTS5 query matches), or `None` for no words. A word with `'` is, as FTS5's
/// tokenizer splits it, a phrase of its parts (`don't` -> `don <-> t:*`). The parts hold
/// only letters and digits, so no input can be read as query syntax.
fn ts_query(words: &[String]) -> Option<String> {
    let terms: Vec<String> = search_words(words)
        .iter()
        .filter_map(|w| {
            let parts: Vec<&str> = w.split('\'').filter(|p| !p.is_empty()).collect();
            (!parts.is_empty()).then(|| format!("({}:*)", parts.join(" <-> ")))
        })
        .collect();
    (!terms.is_empty()).then(|| terms.join(" & "))
}

#[async_trait::async_trait]
impl SessionStore for PgStore {
    async fn insert_campaign(&self, c: &CampaignRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaigns (id, name, description, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
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
        Ok(
            sqlx::query_as("SELECT id, name, description, created_at FROM campaigns WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn upsert_script(&self, s: &ScriptRow) -> Result<()> {
        self.write_script(
            s,
            " ON CONFLICT (id) DO UPDATE SET definition = excluded.definition",
        )
        .await
    }

    async fn insert_script(&self, s: &ScriptRow) -> Result<()> {
        self.write_script(s, "").await
    }

    async fn get_script(&self, id: &str) -> Result<Option<ScriptRow>> {
        Ok(sqlx::query_as("SELECT * FROM scripts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn insert_invite(&self, i: &InviteRow) -> Result<()> {
        use super::CatalogStore;
        self.insert_invites(std::slice::from_ref(i)).await
    }

    async fn get_invite(&self, token: &str) -> Result<Option<InviteRow>> {
        Ok(sqlx::query_as("SELECT * FROM invites WHERE token = $1")
            .bind(token)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn latest_session_for_invite(&self, token: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM sessions WHERE invite_token = $1 \
             ORDER BY created_at DESC, row_seq DESC LIMIT 1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, invite_token, campaign_id, script_id, state, lifecycle, \
             created_at, started_at, ended_at, end_reason, drop_off, user_agent, ip, metadata, \
             version, next_deadline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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
        Ok(sqlx::query_as("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>> {
        let limit = f.limit.unwrap_or(100).clamp(1, 1000);
        // The sort expression comes from this fixed list, never from input; the same
        // expressions as the indexes (migration 0001).
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
        // With transcript words the full-text index drives (see the SQLite store).
        let mut q: QueryBuilder<Postgres> = match ts_query(&f.text) {
            Some(matched) => {
                let mut q = QueryBuilder::new(
                    "SELECT sessions.* FROM (SELECT DISTINCT session_id AS sid FROM turns \
                     WHERE text_search @@ to_tsquery('simple', ",
                );
                q.push_bind(matched)
                    .push(")) AS m JOIN sessions ON sessions.id = m.sid WHERE TRUE");
                q
            }
            None => QueryBuilder::new("SELECT * FROM sessions WHERE TRUE"),
        };
        if let Some(c) = &f.campaign {
            q.push(" AND campaign_id = ").push_bind(c);
        }
        if let Some(c) = &f.campaigns {
            q.push(" AND campaign_id = ANY(").push_bind(c).push(")");
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
             AND ($7::bigint IS NULL OR created_at > $7 OR (created_at = $7 AND id > $8)) \
             ORDER BY created_at, id LIMIT $9"
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
            sqlx::query_scalar("SELECT id FROM sessions WHERE state = $1")
                .bind(state)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn due_sessions(&self, now: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM sessions WHERE next_deadline IS NOT NULL AND next_deadline <= $1 \
             ORDER BY next_deadline",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn claim_due_sessions(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<String>> {
        // One statement: take the due rows on the `next_deadline` index that no other
        // transaction holds (SKIP LOCKED: a concurrent claim gets the others), lease them,
        // and return them in due order.
        Ok(sqlx::query_scalar(
            "WITH due AS (SELECT id, next_deadline FROM sessions \
               WHERE next_deadline IS NOT NULL AND next_deadline <= $1 \
               AND (deadline_lease_until IS NULL OR deadline_lease_until <= $1) \
               ORDER BY next_deadline LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE sessions s SET deadline_lease_until = $2 FROM due \
               WHERE s.id = due.id RETURNING s.id, due.next_deadline) \
             SELECT id FROM claimed ORDER BY next_deadline, id",
        )
        .bind(now)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn set_session_client(
        &self,
        id: &str,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE sessions SET user_agent = $1, ip = $2 WHERE id = $3")
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
            "UPDATE sessions SET state = $1, lifecycle = $2, started_at = $3, ended_at = $4, \
             end_reason = $5, drop_off = $6, next_deadline = $7, version = version + 1, \
             deadline_lease_until = NULL WHERE id = $8 AND version = $9",
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
                 VALUES ($1, $2, $3, $4, $5)",
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
             WHERE session_id = $1 ORDER BY id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
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
            "INSERT INTO recordings (session_id, track, format, path, duration_ms, bytes, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (session_id, track, format) DO UPDATE SET path = excluded.path, \
             duration_ms = excluded.duration_ms, bytes = excluded.bytes",
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
            sqlx::query_as("SELECT * FROM recordings WHERE session_id = $1 ORDER BY track, format")
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
                 response_ms, sentiment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (session_id, seq) DO UPDATE SET role = excluded.role, \
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
             FROM turns WHERE session_id = $1 ORDER BY seq",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_monitor(&self, m: &MonitorRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO monitors (id, session_id, started_at, ended_at) VALUES ($1, $2, $3, $4)",
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
        sqlx::query("UPDATE monitors SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn end_open_monitors(&self, at: i64) -> Result<u64> {
        let done = sqlx::query("UPDATE monitors SET ended_at = $1 WHERE ended_at IS NULL")
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn monitors(&self, session_id: &str) -> Result<Vec<MonitorRow>> {
        Ok(sqlx::query_as(
            "SELECT id, session_id, started_at, ended_at FROM monitors \
             WHERE session_id = $1 ORDER BY started_at, id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
pub(crate) mod test_cluster;
