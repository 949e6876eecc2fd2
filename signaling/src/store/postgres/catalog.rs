//! PostgreSQL side of the console's part of the store ([`CatalogStore`]): campaigns,
//! scripts and invites of a campaign, session summaries and the aggregate counts.

use super::PgStore;
use crate::analytics::aggregate::{AggregateCounts, latency_bucket, quality_bucket};
use crate::store::common_sql::{AggregateGroup, fold};
use crate::store::{
    AggregateFilter, CampaignRow, CatalogStore, InviteRow, InviteStateRow, Result, ScriptRow,
    SessionSummary,
};

#[async_trait::async_trait]
impl CatalogStore for PgStore {
    async fn list_campaigns(&self) -> Result<Vec<CampaignRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM campaigns ORDER BY created_at DESC, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn update_campaign(&self, id: &str, name: &str, description: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE campaigns SET name = $1, description = $2 WHERE id = $3")
            .bind(name)
            .bind(description)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn replace_script(&self, s: &ScriptRow) -> Result<()> {
        self.write_script(
            s,
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             definition = excluded.definition, recording_enabled = excluded.recording_enabled, \
             noise_suppression = excluded.noise_suppression, quality = excluded.quality",
        )
        .await
    }

    async fn list_scripts(&self, campaign: Option<&str>) -> Result<Vec<ScriptRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM scripts WHERE ($1::text IS NULL OR campaign_id = $1) \
             ORDER BY created_at DESC, id",
        )
        .bind(campaign)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_invites(&self, invites: &[InviteRow]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for i in invites {
            sqlx::query(
                "INSERT INTO invites (token, campaign_id, script_id, metadata, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&i.token)
            .bind(&i.campaign_id)
            .bind(&i.script_id)
            .bind(&i.metadata)
            .bind(i.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_invites(&self, campaign: &str, limit: i64) -> Result<Vec<InviteStateRow>> {
        Ok(sqlx::query_as(
            "SELECT i.*, s.id AS session_id, s.state AS state FROM invites i \
             LEFT JOIN LATERAL (SELECT id, state FROM sessions WHERE invite_token = i.token \
               ORDER BY created_at DESC, row_seq DESC LIMIT 1) s ON TRUE \
             WHERE i.campaign_id = $1 ORDER BY i.created_at DESC, i.token LIMIT $2",
        )
        .bind(campaign)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn unsummarized_sessions(&self, limit: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM sessions WHERE NOT summarized LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn set_session_summary(&self, id: &str, s: &SessionSummary) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET active_ms = $1, turn_count = $2, word_count = $3, \
             engagement = $4, quality = $5, ai_latency_p50 = $6, ai_latency_p95 = $7, \
             drop_point = $8, quality_bucket = $9, latency_bucket = $10, summarized = TRUE \
             WHERE id = $11",
        )
        .bind(s.active_ms)
        .bind(s.turn_count)
        .bind(s.word_count)
        .bind(s.engagement)
        .bind(s.quality)
        .bind(s.ai_latency_p50)
        .bind(s.ai_latency_p95)
        .bind(&s.drop_point)
        .bind(s.quality.map(quality_bucket))
        .bind(s.ai_latency_p50.map(latency_bucket))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn aggregate_counts(&self, f: &AggregateFilter) -> Result<AggregateCounts> {
        // Grouped by the stored buckets and the drop point (the index `sessions_aggregate`
        // covers it), folded here as the SQLite store does. SUM of BIGINT is NUMERIC in
        // PostgreSQL, hence the casts.
        let groups: Vec<AggregateGroup> = sqlx::query_as(
            "SELECT quality_bucket AS qb, latency_bucket AS lb, drop_point, \
               COUNT(*) AS sessions, COUNT(started_at) AS started, \
               COUNT(*) FILTER (WHERE state = 'completed') AS completed, \
               COALESCE(SUM(active_ms) FILTER (WHERE started_at IS NOT NULL), 0)::BIGINT \
                 AS started_ms, \
               COUNT(quality) AS rated, COALESCE(SUM(quality), 0)::FLOAT8 AS quality_sum \
             FROM sessions \
             WHERE ($1::text IS NULL OR campaign_id = $1) \
               AND ($2::bigint IS NULL OR created_at >= $2) \
               AND ($3::bigint IS NULL OR created_at < $3) \
               AND ($4::text[] IS NULL OR campaign_id = ANY($4)) \
             GROUP BY quality_bucket, latency_bucket, drop_point",
        )
        .bind(&f.campaign)
        .bind(f.from)
        .bind(f.to)
        .bind(&f.campaigns)
        .fetch_all(&self.pool)
        .await?;
        Ok(fold(&groups))
    }
}
