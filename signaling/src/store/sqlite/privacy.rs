//! SQLite side of the privacy port (tables of migration 0007).

use super::SqliteStore;
use crate::store::Result;
use crate::store::common_sql::{PII_DUE, audio_due};
use crate::store::privacy::{
    DEFAULT_AUDIO_RETENTION_DAYS, DeletionRequestRow, DueRow, PrivacyRow, PrivacyStore,
};

#[async_trait::async_trait]
impl PrivacyStore for SqliteStore {
    async fn campaign_privacy(&self, campaign_id: &str) -> Result<Option<PrivacyRow>> {
        Ok(sqlx::query_as(
            "SELECT pii_action, pii_delay_days, pii_keep_originals, pii_patterns, \
             audio_retention_days, auto_delete_requests FROM campaign_privacy WHERE campaign_id = ?",
        )
        .bind(campaign_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn set_campaign_privacy(&self, campaign_id: &str, p: &PrivacyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaign_privacy (campaign_id, pii_action, pii_delay_days, \
             pii_keep_originals, pii_patterns, audio_retention_days, auto_delete_requests) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(campaign_id) DO UPDATE SET \
             pii_action = excluded.pii_action, pii_delay_days = excluded.pii_delay_days, \
             pii_keep_originals = excluded.pii_keep_originals, \
             pii_patterns = excluded.pii_patterns, \
             audio_retention_days = excluded.audio_retention_days, \
             auto_delete_requests = excluded.auto_delete_requests",
        )
        .bind(campaign_id)
        .bind(&p.pii_action)
        .bind(p.pii_delay_days)
        .bind(p.pii_keep_originals)
        .bind(&p.pii_patterns)
        .bind(p.audio_retention_days)
        .bind(p.auto_delete_requests)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_turn_originals(
        &self,
        session_id: &str,
        originals: &[(i64, Vec<u8>)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (seq, sealed) in originals {
            sqlx::query("UPDATE turns SET original = ? WHERE session_id = ? AND seq = ?")
                .bind(sealed)
                .bind(session_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn turn_originals(&self, session_id: &str) -> Result<Vec<(i64, Vec<u8>)>> {
        Ok(sqlx::query_as(
            "SELECT seq, original FROM turns WHERE session_id = ? AND original IS NOT NULL \
             ORDER BY seq",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn recordings_due(&self, now: i64, limit: i64) -> Result<Vec<DueRow>> {
        let due = audio_due();
        Ok(sqlx::query_as(&format!(
            "SELECT s.id AS session_id, s.campaign_id, {due} AS due_at FROM sessions s \
             LEFT JOIN campaign_privacy p ON p.campaign_id = s.campaign_id \
             WHERE s.ended_at IS NOT NULL AND s.recordings_deleted_at IS NULL \
             AND COALESCE(p.audio_retention_days, {DEFAULT_AUDIO_RETENTION_DAYS}) > 0 \
             AND {due} <= ? ORDER BY due_at, s.id LIMIT ?"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn redactions_due(&self, now: i64, limit: i64) -> Result<Vec<DueRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT s.id AS session_id, s.campaign_id, {PII_DUE} AS due_at FROM sessions s \
             JOIN campaign_privacy p ON p.campaign_id = s.campaign_id \
             WHERE s.ended_at IS NOT NULL AND s.pii_applied_at IS NULL \
             AND p.pii_action != 'keep' AND p.pii_delay_days > 0 \
             AND {PII_DUE} <= ? ORDER BY due_at, s.id LIMIT ?"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn next_due(&self, now: i64) -> Result<(Option<i64>, Option<i64>)> {
        let due = audio_due();
        let audio: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MIN({due}) FROM sessions s \
             LEFT JOIN campaign_privacy p ON p.campaign_id = s.campaign_id \
             WHERE s.ended_at IS NOT NULL AND s.recordings_deleted_at IS NULL \
             AND COALESCE(p.audio_retention_days, {DEFAULT_AUDIO_RETENTION_DAYS}) > 0 \
             AND {due} > ?"
        ))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let pii: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MIN({PII_DUE}) FROM sessions s \
             JOIN campaign_privacy p ON p.campaign_id = s.campaign_id \
             WHERE s.ended_at IS NOT NULL AND s.pii_applied_at IS NULL \
             AND p.pii_action != 'keep' AND p.pii_delay_days > 0 AND {PII_DUE} > ?"
        ))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok((audio, pii))
    }

    async fn mark_recordings_deleted(&self, session_id: &str, at: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM recordings WHERE session_id = ?")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE sessions SET recordings_deleted_at = ? \
             WHERE id = ? AND recordings_deleted_at IS NULL",
        )
        .bind(at)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recordings_deleted_at(&self, session_id: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT recordings_deleted_at FROM sessions WHERE id = ?")
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    async fn mark_pii_applied(&self, session_id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET pii_applied_at = ? WHERE id = ?")
            .bind(at)
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_sweep(&self, at: i64, report: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT OR REPLACE INTO retention_sweeps (at, report) VALUES (?, ?)")
            .bind(at)
            .bind(report)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM retention_sweeps WHERE at NOT IN \
             (SELECT at FROM retention_sweeps ORDER BY at DESC LIMIT 100)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn last_sweep(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT at, report FROM retention_sweeps ORDER BY at DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_deletion_token(&self, session_id: &str, hash: &str) -> Result<()> {
        sqlx::query("UPDATE sessions SET deletion_token_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session_by_deletion_token(&self, hash: &str) -> Result<Option<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT id, campaign_id FROM sessions WHERE deletion_token_hash = ?")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn insert_deletion_request(&self, r: &DeletionRequestRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO deletion_requests (id, session_id, campaign_id, requested_at, \
             fulfilled_at, fulfilled_by) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.session_id)
        .bind(&r.campaign_id)
        .bind(r.requested_at)
        .bind(r.fulfilled_at)
        .bind(&r.fulfilled_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deletion_requests(&self, limit: i64) -> Result<Vec<DeletionRequestRow>> {
        Ok(
            sqlx::query_as(
                "SELECT * FROM deletion_requests ORDER BY requested_at DESC, id LIMIT ?",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn deletion_request(&self, id: &str) -> Result<Option<DeletionRequestRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM deletion_requests WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn pending_request_for(&self, session_id: &str) -> Result<Option<DeletionRequestRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM deletion_requests WHERE session_id = ? AND fulfilled_at IS NULL \
             ORDER BY requested_at LIMIT 1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn fulfil_requests(&self, session_id: &str, at: i64, by: &str) -> Result<()> {
        sqlx::query(
            "UPDATE deletion_requests SET fulfilled_at = ?, fulfilled_by = ? \
             WHERE session_id = ? AND fulfilled_at IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(session_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
