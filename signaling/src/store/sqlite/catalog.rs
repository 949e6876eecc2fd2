//! SQL of the console's part of the store ([`CatalogStore`]): campaigns, scripts and
//! invites of a campaign, session summaries and the aggregate counts.

use super::SqliteStore;
use crate::analytics::aggregate::{AggregateCounts, latency_bucket, quality_bucket};
use crate::store::common_sql::{AggregateGroup, fold};
use crate::store::{
    AggregateFilter, CampaignRow, CatalogStore, InviteRow, InviteStateRow, Result, ScriptRow,
    SessionSummary,
};

#[async_trait::async_trait]
impl CatalogStore for SqliteStore {
    async fn list_campaigns(&self) -> Result<Vec<CampaignRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM campaigns ORDER BY created_at DESC, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn update_campaign(&self, id: &str, name: &str, description: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE campaigns SET name = ?, description = ? WHERE id = ?")
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
            " ON CONFLICT(id) DO UPDATE SET name = excluded.name, \
             definition = excluded.definition, recording_enabled = excluded.recording_enabled, \
             noise_suppression = excluded.noise_suppression, quality = excluded.quality",
        )
        .await
    }

    async fn list_scripts(&self, campaign: Option<&str>) -> Result<Vec<ScriptRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM scripts WHERE (?1 IS NULL OR campaign_id = ?1) \
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
                 VALUES (?, ?, ?, ?, ?)",
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
             LEFT JOIN sessions s ON s.rowid = (SELECT rowid FROM sessions \
               WHERE invite_token = i.token ORDER BY created_at DESC, rowid DESC LIMIT 1) \
             WHERE i.campaign_id = ? ORDER BY i.created_at DESC, i.token LIMIT ?",
        )
        .bind(campaign)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn unsummarized_sessions(&self, limit: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM sessions WHERE summarized = 0 LIMIT ?")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn set_session_summary(&self, id: &str, s: &SessionSummary) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET active_ms = ?, turn_count = ?, word_count = ?, engagement = ?, \
             quality = ?, ai_latency_p50 = ?, ai_latency_p95 = ?, drop_point = ?, \
             quality_bucket = ?, latency_bucket = ?, summarized = 1 WHERE id = ?",
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
        // One pass over the covering index `sessions_aggregate`, grouped in its order by the
        // stored buckets and the drop point (at most 11 x 18 x a few groups, no sort),
        // folded here.
        let groups: Vec<AggregateGroup> = sqlx::query_as(
            "SELECT quality_bucket AS qb, latency_bucket AS lb, drop_point, COUNT(*) AS sessions, \
               SUM(started_at IS NOT NULL) AS started, SUM(state = 'completed') AS completed, \
               SUM(CASE WHEN started_at IS NOT NULL THEN active_ms ELSE 0 END) AS started_ms, \
               COUNT(quality) AS rated, TOTAL(quality) AS quality_sum \
             FROM sessions INDEXED BY sessions_aggregate \
             WHERE (?1 IS NULL OR campaign_id = ?1) AND (?2 IS NULL OR created_at >= ?2) \
               AND (?3 IS NULL OR created_at < ?3) \
               AND (?4 IS NULL OR campaign_id IN (SELECT value FROM json_each(?4))) \
             GROUP BY quality_bucket, latency_bucket, drop_point",
        )
        .bind(&f.campaign)
        .bind(f.from)
        .bind(f.to)
        .bind(super::campaigns_json(&f.campaigns))
        .fetch_all(&self.pool)
        .await?;
        Ok(fold(&groups))
    }
}
