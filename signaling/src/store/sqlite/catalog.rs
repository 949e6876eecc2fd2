//! SQL of the console's part of the store ([`CatalogStore`]): campaigns, scripts and
//! invites of a campaign, session summaries and the aggregate counts.

use super::SqliteStore;
use crate::analytics::aggregate::{AggregateCounts, LATENCY_BUCKET_MS, LATENCY_BUCKETS};
use crate::store::{
    AggregateFilter, CampaignRow, CatalogStore, InviteRow, InviteStateRow, Result, ScriptRow,
    SessionSummary,
};

/// The aggregate's WHERE clause over `sessions`; binds campaign, from, to (in that order).
const AGG_WHERE: &str = "WHERE (?1 IS NULL OR campaign_id = ?1) AND (?2 IS NULL OR created_at >= ?2) \
     AND (?3 IS NULL OR created_at < ?3)";

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

    async fn set_session_summary(&self, id: &str, s: &SessionSummary) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET active_ms = ?, turn_count = ?, word_count = ?, engagement = ?, \
             quality = ?, ai_latency_p50 = ?, ai_latency_p95 = ?, drop_point = ? WHERE id = ?",
        )
        .bind(s.active_ms)
        .bind(s.turn_count)
        .bind(s.word_count)
        .bind(s.engagement)
        .bind(s.quality)
        .bind(s.ai_latency_p50)
        .bind(s.ai_latency_p95)
        .bind(&s.drop_point)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn aggregate_counts(&self, f: &AggregateFilter) -> Result<AggregateCounts> {
        let totals: (i64, Option<i64>, Option<i64>, Option<f64>, Option<f64>) =
            sqlx::query_as(&format!(
                "SELECT COUNT(*), SUM(started_at IS NOT NULL), SUM(state = 'completed'), \
                 AVG(CASE WHEN started_at IS NOT NULL THEN active_ms END), AVG(quality) \
                 FROM sessions {AGG_WHERE}"
            ))
            .bind(&f.campaign)
            .bind(f.from)
            .bind(f.to)
            .fetch_one(&self.pool)
            .await?;
        let drop_offs: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT drop_point, COUNT(*) FROM sessions {AGG_WHERE} AND drop_point IS NOT NULL \
             GROUP BY drop_point"
        ))
        .bind(&f.campaign)
        .bind(f.from)
        .bind(f.to)
        .fetch_all(&self.pool)
        .await?;
        let quality_buckets: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT MIN(9, CAST(quality / 10 AS INTEGER)), COUNT(*) FROM sessions {AGG_WHERE} \
             AND quality IS NOT NULL GROUP BY 1"
        ))
        .bind(&f.campaign)
        .bind(f.from)
        .bind(f.to)
        .fetch_all(&self.pool)
        .await?;
        let last = LATENCY_BUCKETS - 1;
        let latency_buckets: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT MIN({last}, ai_latency_p50 / {LATENCY_BUCKET_MS}), COUNT(*) FROM sessions \
             {AGG_WHERE} AND ai_latency_p50 IS NOT NULL GROUP BY 1"
        ))
        .bind(&f.campaign)
        .bind(f.from)
        .bind(f.to)
        .fetch_all(&self.pool)
        .await?;
        Ok(AggregateCounts {
            sessions: totals.0,
            started: totals.1.unwrap_or(0),
            completed: totals.2.unwrap_or(0),
            avg_active_ms: totals.3,
            avg_quality: totals.4,
            drop_offs,
            quality_buckets,
            latency_buckets,
        })
    }
}

#[cfg(test)]
mod tests;
