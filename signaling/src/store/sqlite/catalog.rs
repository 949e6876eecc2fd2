//! SQL of the console's part of the store ([`CatalogStore`]): campaigns, scripts and
//! invites of a campaign, session summaries and the aggregate counts.

use super::SqliteStore;
use crate::analytics::aggregate::{
    AggregateCounts, LATENCY_BUCKET_MS, LATENCY_BUCKETS, QUALITY_BUCKETS,
};
use crate::store::{
    AggregateFilter, CampaignRow, CatalogStore, InviteRow, InviteStateRow, Result, ScriptRow,
    SessionSummary,
};
use sqlx::Row;

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
        // Two index-only passes without a sort: the totals and every histogram bucket as
        // sums over the covering index `sessions_aggregate`, then the drop points grouped
        // in the order of the partial index `sessions_drop` (abandoned sessions only).
        let buckets = |col: &str, n: usize, width: f64| -> String {
            (0..n)
                .map(|b| {
                    let lo = b as f64 * width;
                    if b + 1 == n {
                        format!(", SUM({col} >= {lo})")
                    } else {
                        format!(", SUM({col} >= {lo} AND {col} < {})", lo + width)
                    }
                })
                .collect()
        };
        let sql = format!(
            "SELECT COUNT(*), SUM(started_at IS NOT NULL), SUM(state = 'completed'), \
             SUM(CASE WHEN started_at IS NOT NULL THEN active_ms ELSE 0 END), COUNT(quality), \
             TOTAL(quality){}{} FROM sessions INDEXED BY sessions_aggregate {WHERE}",
            buckets("quality", QUALITY_BUCKETS, 10.0),
            buckets("ai_latency_p50", LATENCY_BUCKETS, LATENCY_BUCKET_MS as f64),
        );
        let row = sqlx::query(&sql)
            .bind(&f.campaign)
            .bind(f.from)
            .bind(f.to)
            .fetch_one(&self.pool)
            .await?;
        let int = |i: usize| -> Result<i64> { Ok(row.try_get::<Option<i64>, _>(i)?.unwrap_or(0)) };
        let (sessions, started, completed, started_ms, rated) =
            (int(0)?, int(1)?, int(2)?, int(3)?, int(4)?);
        let quality_sum: f64 = row.try_get(5)?;
        let histogram = |first: usize, n: usize| -> Result<Vec<(i64, i64)>> {
            (0..n).map(|b| Ok((b as i64, int(first + b)?))).collect()
        };
        let drop_offs: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT drop_point, COUNT(*) FROM sessions INDEXED BY sessions_drop {WHERE} \
             AND drop_point IS NOT NULL GROUP BY drop_point"
        ))
        .bind(&f.campaign)
        .bind(f.from)
        .bind(f.to)
        .fetch_all(&self.pool)
        .await?;
        Ok(AggregateCounts {
            sessions,
            started,
            completed,
            avg_active_ms: (started > 0).then(|| started_ms as f64 / started as f64),
            avg_quality: (rated > 0).then(|| quality_sum / rated as f64),
            drop_offs,
            quality_buckets: histogram(6, QUALITY_BUCKETS)?,
            latency_buckets: histogram(6 + QUALITY_BUCKETS, LATENCY_BUCKETS)?,
        })
    }
}

/// The aggregate's filter; binds campaign, from, to.
const WHERE: &str = "WHERE (?1 IS NULL OR campaign_id = ?1) AND (?2 IS NULL OR created_at >= ?2) \
     AND (?3 IS NULL OR created_at < ?3)";

#[cfg(test)]
mod tests;
