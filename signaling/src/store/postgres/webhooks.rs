//! PostgreSQL side of the webhook port: endpoints, the outbox fan-out (also run inside a
//! lifecycle step's transaction), claiming due deliveries (`FOR UPDATE SKIP LOCKED`: two
//! processes never take the same one) and recording attempts.

use super::PgStore;
use crate::store::Result;
use crate::store::common_sql::DELIVERY_COLUMNS;
use crate::store::webhooks::{
    AttemptOutcome, AttemptRow, DeliveryRow, DueDelivery, EndpointRow, OutboxEvent, WebhookStore,
};
use sqlx::PgConnection;

/// Inserts the event and one pending delivery per endpoint that wants its type and campaign
/// (an endpoint without a campaign wants every campaign). Runs on the caller's connection,
/// so inside its transaction.
pub(super) async fn enqueue_on(conn: &mut PgConnection, e: &OutboxEvent) -> Result<u64> {
    sqlx::query(
        "INSERT INTO webhook_events (id, type, session_id, campaign_id, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&e.id)
    .bind(&e.kind)
    .bind(&e.session_id)
    .bind(&e.campaign_id)
    .bind(&e.payload)
    .bind(e.created_at)
    .execute(&mut *conn)
    .await?;
    // `dlv_` and 20 random hex digits, as the SQLite store makes them.
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, \
         next_attempt_at, created_at, retry_since) \
         SELECT 'dlv_' || left(replace(gen_random_uuid()::text, '-', ''), 20), $1, w.id, \
           'pending', 0, $2, $2, $2 \
         FROM webhook_endpoints w \
         WHERE (w.campaign_id IS NULL OR w.campaign_id = $3) \
         AND w.events::jsonb @> jsonb_build_array($4::text)",
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
impl WebhookStore for PgStore {
    async fn insert_endpoint(&self, e: &EndpointRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, secret, events, campaign_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
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
            sqlx::query_as("SELECT * FROM webhook_endpoints WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
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
        // One statement: lock the due rows no other transaction holds, push them a lease
        // ahead, and return them with what the attempt needs, in due order.
        Ok(sqlx::query_as(
            "WITH due AS (SELECT id, next_attempt_at AS was FROM webhook_deliveries \
               WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE webhook_deliveries d SET next_attempt_at = $2 FROM due \
               WHERE d.id = due.id \
               RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.retry_since, due.was) \
             SELECT c.id, c.event_id, c.attempts, c.retry_since, w.url, w.secret, e.payload \
             FROM claimed c JOIN webhook_endpoints w ON w.id = c.endpoint_id \
             JOIN webhook_events e ON e.id = c.event_id ORDER BY c.was, c.id",
        )
        .bind(now)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
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
             VALUES ($1, $2, $3, $4, $5)",
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
            "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, \
             attempts = attempts + 1 WHERE id = $3",
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
             JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = $1 \
             ORDER BY d.created_at DESC, d.row_seq DESC LIMIT $2"
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
             JOIN webhook_events e ON e.id = d.event_id WHERE d.id = $1"
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
        Ok(sqlx::query_as(
            "SELECT delivery_id, at, status_code, response_ms, error FROM webhook_attempts \
             WHERE delivery_id = ANY($1) ORDER BY id",
        )
        .bind(delivery_ids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn redeliver(&self, id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, \
             retry_since = $1 WHERE id = $2",
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
            "DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS \
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
