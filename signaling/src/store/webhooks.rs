//! The webhook port of the store: endpoints, the outbox of events, deliveries and their
//! attempts (migration 0006). Events are written either with the lifecycle step that causes
//! them ([`super::SessionUpdate::events`]) or on their own ([`WebhookStore::enqueue`]); both
//! fan an event out to one delivery per endpoint that wants its type and campaign, in the same
//! transaction.

use super::Result;
use serde::Serialize;
use sqlx::FromRow;

/// An event for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// `msg_...`: the `webhook-id` of every delivery of it.
    pub id: String,
    /// `session.completed`, ...
    pub kind: String,
    pub session_id: Option<String>,
    pub campaign_id: Option<String>,
    /// The JSON body sent.
    pub payload: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    #[serde(skip)]
    pub secret: String,
    /// JSON array of event types.
    pub events: String,
    pub campaign_id: Option<String>,
    pub created_at: i64,
}

/// A delivery due for an attempt, with what the attempt needs.
#[derive(Debug, Clone, FromRow)]
pub struct DueDelivery {
    pub id: String,
    pub event_id: String,
    pub attempts: i64,
    /// Retries run until `retry_since` + the retry time (a redelivery restarts it).
    pub retry_since: i64,
    pub url: String,
    pub secret: String,
    pub payload: String,
}

/// A delivery as listed (`GET /v1/webhooks/{id}/deliveries`).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct DeliveryRow {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub session_id: Option<String>,
    pub endpoint_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct AttemptRow {
    pub delivery_id: String,
    pub at: i64,
    pub status_code: Option<i64>,
    pub response_ms: i64,
    pub error: Option<String>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time.
    Retry {
        at: i64,
    },
    /// Given up (the retry time is over).
    Failed,
}

#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    async fn insert_endpoint(&self, e: &EndpointRow) -> Result<()>;
    async fn endpoints(&self) -> Result<Vec<EndpointRow>>;
    async fn get_endpoint(&self, id: &str) -> Result<Option<EndpointRow>>;
    /// Deletes the endpoint with its deliveries; `false` if there was none.
    async fn delete_endpoint(&self, id: &str) -> Result<bool>;

    /// Writes an event and its deliveries; returns how many deliveries were made.
    async fn enqueue(&self, e: &OutboxEvent) -> Result<u64>;

    /// Claims up to `limit` deliveries due at `now`: each is pushed to `now + lease_ms` so no
    /// other round takes it while its attempt runs (and a crash mid-attempt retries it).
    async fn claim_due(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<DueDelivery>>;
    /// The earliest time a pending delivery is due, if any.
    async fn next_due(&self) -> Result<Option<i64>>;
    /// Records an attempt and what it came to.
    async fn record_attempt(&self, a: &AttemptRow, outcome: &AttemptOutcome) -> Result<()>;

    /// The endpoint's deliveries, newest first.
    async fn deliveries(&self, endpoint_id: &str, limit: i64) -> Result<Vec<DeliveryRow>>;
    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRow>>;
    /// Attempts of these deliveries, oldest first.
    async fn attempts(&self, delivery_ids: &[String]) -> Result<Vec<AttemptRow>>;
    /// Makes a delivery pending again, due at `now` (redelivery by hand).
    async fn redeliver(&self, id: &str, now: i64) -> Result<bool>;
    /// Removes the events created before `before` whose deliveries are all done (delivered
    /// or failed), with those deliveries and their attempts; returns how many events went.
    async fn prune(&self, before: i64) -> Result<u64>;
    /// Number of deliveries in each status (`pending`, `delivered`, `failed`).
    async fn count_deliveries_by_status(&self) -> Result<Vec<(String, i64)>>;
}
