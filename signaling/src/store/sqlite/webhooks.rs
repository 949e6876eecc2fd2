//! SQLite side of the webhook port (tables of migration 0006): endpoints, the outbox fan-out
//! (also run inside a lifecycle step's transaction), claiming due deliveries and recording
//! attempts.

use super::SqliteStore;
use crate::store::Result;
use crate::store::common_sql::DELIVERY_COLUMNS;
use crate::store::webhooks::{
    AttemptOutcome, AttemptRow, DeliveryRow, DueDelivery, EndpointRow, OutboxEvent, WebhookStore,
};
use sqlx::SqliteConnection;

/// Inserts the event and one pending delivery per endpoint that wants its type and campaign
/// (an endpoint without a campaign wants every campaign). Runs on the caller's connection,
/// so inside its transaction.
pub(super) async fn enqueue_on(conn: &mut SqliteConnection, e: &OutboxEvent) -> Result<u64> {
    sqlx::query(
        "INSERT INTO webhook_events (id, type, session_id, campaign_id, payload, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.id)
    .bind(&e.kind)
    .bind(&e.session_id)
    .bind(&e.campaign_id)
    .bind(&e.payload)
    .bind(e.created_at)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, \
         next_attempt_at, created_at, retry_since) \
         SELECT 'dlv_' || lower(hex(randomblob(10))), ?1, w.id, 'pending', 0, ?2, ?2, ?2 \
         FROM webhook_endpoints w \
         WHERE (w.campaign_id IS NULL OR w.campaign_id = ?3) \
         AND EXISTS (SELECT 1 FROM json_each(w.events) WHERE json_each.value = ?4)",
    )
    .bind(&e.id)
    .bind(e.created_at)
    .bind(&e.campaign_id)
    .bind(&e.kind)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

#[async_trait::async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_endpoint(&self, e: &EndpointRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, secret, events, campaign_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(&e.url)
        .bind(&e.secret)
        .bind(&e.events)
        .bind(&e.campaign_id)
        .bind(e.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn endpoints(&self) -> Result<Vec<EndpointRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM webhook_endpoints ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn get_endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM webhook_endpoints WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn enqueue(&self, e: &OutboxEvent) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = enqueue_on(&mut tx, e).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn claim_due(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<DueDelivery>> {
        // IMMEDIATE: the write lock up front, so that a second process sharing the file
        // waits (busy timeout) instead of failing to upgrade its read to a write.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let due: Vec<DueDelivery> = sqlx::query_as(
            "SELECT d.id, d.event_id, d.attempts, d.retry_since, w.url, w.secret, e.payload \
             FROM webhook_deliveries d \
             JOIN webhook_endpoints w ON w.id = d.endpoint_id \
             JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.next_attempt_at IS NOT NULL AND d.next_attempt_at <= ? \
             ORDER BY d.next_attempt_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for d in due {
            // Only if still due: another process sharing the database may have claimed it.
            let done = sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ? \
                 AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?",
            )
            .bind(now + lease_ms)
            .bind(&d.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                claimed.push(d);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn record_attempt(&self, a: &AttemptRow, outcome: &AttemptOutcome) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, at, status_code, response_ms, error) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&a.delivery_id)
        .bind(a.at)
        .bind(a.status_code)
        .bind(a.response_ms)
        .bind(&a.error)
        .execute(&mut *tx)
        .await?;
        let (status, next) = match outcome {
            AttemptOutcome::Delivered => ("delivered", None),
            AttemptOutcome::Retry { at } => ("pending", Some(*at)),
            AttemptOutcome::Failed => ("failed", None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, \
             attempts = attempts + 1 WHERE id = ?",
        )
        .bind(status)
        .bind(next)
        .bind(&a.delivery_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deliveries(&self, endpoint_id: &str, limit: i64) -> Result<Vec<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = ? \
             ORDER BY d.created_at DESC, d.rowid DESC LIMIT ?"
        );
        Ok(sqlx::query_as(&sql)
            .bind(endpoint_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             JOIN webhook_events e ON e.id = d.event_id WHERE d.id = ?"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn attempts(&self, delivery_ids: &[String]) -> Result<Vec<AttemptRow>> {
        if delivery_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(delivery_ids).unwrap_or_else(|_| "[]".into());
        Ok(sqlx::query_as(
            "SELECT delivery_id, at, status_code, response_ms, error FROM webhook_attempts \
             WHERE delivery_id IN (SELECT value FROM json_each(?)) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn redeliver(&self, id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?1, \
             retry_since = ?1 WHERE id = ?2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn prune(&self, before: i64) -> Result<u64> {
        // Deliveries and attempts go with their event (ON DELETE CASCADE).
        let done = sqlx::query(
            "DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id \
              AND d.status = 'pending')",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn count_deliveries_by_status(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
