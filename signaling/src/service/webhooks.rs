//! Webhooks as a use case: endpoints (create, list, read, delete), their delivery log with
//! every attempt, redelivery by hand, the events written outside a lifecycle step
//! (`recording.ready`, `export.ready` when a session's recordings are finalized) and the
//! delivery worker's start. Session end events are written by `steps`, in the step's own
//! transaction.

use super::SessionService;
use crate::error::ApiError;
use crate::ids;
use crate::store::webhooks::{AttemptRow, DeliveryRow, EndpointRow, WebhookStore};
use crate::webhooks::{self, EventType, WebhookConfig, signature};
use std::collections::HashMap;
use std::sync::Arc;

/// Most deliveries one list returns.
pub const MAX_DELIVERIES: i64 = 1000;

/// A new endpoint as asked for.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    pub campaign_id: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_webhook", message)
}

fn webhook_not_found() -> ApiError {
    ApiError::not_found("webhook_not_found", "no webhook endpoint with this id")
}

fn delivery_not_found() -> ApiError {
    ApiError::not_found("delivery_not_found", "no delivery with this id")
}

impl SessionService {
    fn webhook_store(&self) -> Result<&Arc<dyn WebhookStore>, ApiError> {
        self.webhooks
            .as_ref()
            .ok_or_else(|| ApiError::internal("webhooks", "no webhook store in this service"))
    }

    /// Starts the delivery worker (once, at start).
    pub fn spawn_webhook_worker(&self, config: WebhookConfig) -> Result<(), ApiError> {
        let store = self.webhook_store()?.clone();
        let worker =
            webhooks::worker::Worker::new(store, self.clock.clone(), config, self.wake.clone())
                .map_err(|e| ApiError::internal("starting the webhook worker", e))?;
        tokio::spawn(worker.run());
        Ok(())
    }

    /// Tells the worker an event was written.
    pub(super) fn wake_webhooks(&self) {
        self.wake.notify_one();
    }

    pub async fn create_endpoint(&self, req: NewEndpoint) -> Result<EndpointRow, ApiError> {
        let url = url::Url::parse(&req.url).map_err(|e| invalid(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "url must be an http:// or https:// URL with a host",
            ));
        }
        if req.url.len() > 2000 {
            return Err(invalid("url is longer than 2000 characters"));
        }
        if req.events.is_empty() {
            return Err(invalid("events must name at least one event type"));
        }
        let mut events = Vec::new();
        for e in &req.events {
            let Some(t) = EventType::parse(e) else {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                return Err(invalid(format!(
                    "events: unknown {e:?} (known: {})",
                    known.join(", ")
                )));
            };
            if !events.contains(&t.as_str()) {
                events.push(t.as_str());
            }
        }
        if let Some(c) = &req.campaign_id {
            self.campaign(c).await?;
        }
        let row = EndpointRow {
            id: ids::new_id("whk"),
            url: url.to_string(),
            secret: signature::new_secret(),
            events: serde_json::to_string(&events)
                .map_err(|e| ApiError::internal("encoding events", e))?,
            campaign_id: req.campaign_id,
            created_at: self.now().0,
        };
        self.webhook_store()?.insert_endpoint(&row).await?;
        tracing::info!(webhook = %row.id, url = %row.url, "webhook endpoint created");
        Ok(row)
    }

    /// Webhook deliveries by status (for `/metrics`); none without a webhook store.
    pub async fn deliveries_by_status(&self) -> Result<Vec<(String, i64)>, ApiError> {
        match &self.webhooks {
            Some(store) => Ok(store.count_deliveries_by_status().await?),
            None => Ok(Vec::new()),
        }
    }

    pub async fn endpoints(&self) -> Result<Vec<EndpointRow>, ApiError> {
        Ok(self.webhook_store()?.endpoints().await?)
    }

    pub async fn endpoint(&self, id: &str) -> Result<EndpointRow, ApiError> {
        if !ids::is_valid_id("whk", id) {
            return Err(webhook_not_found());
        }
        self.webhook_store()?
            .get_endpoint(id)
            .await?
            .ok_or_else(webhook_not_found)
    }

    pub async fn delete_endpoint(&self, id: &str) -> Result<(), ApiError> {
        self.endpoint(id).await?;
        self.webhook_store()?.delete_endpoint(id).await?;
        tracing::info!(webhook = %id, "webhook endpoint deleted");
        Ok(())
    }

    /// The endpoint's deliveries, newest first, each with its attempts (oldest first).
    pub async fn deliveries(
        &self,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Vec<(DeliveryRow, Vec<AttemptRow>)>, ApiError> {
        self.endpoint(endpoint_id).await?;
        let store = self.webhook_store()?;
        let rows = store
            .deliveries(endpoint_id, limit.clamp(1, MAX_DELIVERIES))
            .await?;
        let ids: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
        let mut by_delivery: HashMap<String, Vec<AttemptRow>> = HashMap::new();
        for a in store.attempts(&ids).await? {
            by_delivery
                .entry(a.delivery_id.clone())
                .or_default()
                .push(a);
        }
        Ok(rows
            .into_iter()
            .map(|d| {
                let attempts = by_delivery.remove(&d.id).unwrap_or_default();
                (d, attempts)
            })
            .collect())
    }

    /// Makes a delivery of this endpoint pending again, due now.
    pub async fn redeliver(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryRow, ApiError> {
        self.endpoint(endpoint_id).await?;
        let store = self.webhook_store()?;
        if !delivery_id.starts_with("dlv_") || delivery_id.len() > 64 {
            return Err(delivery_not_found());
        }
        let d = store
            .get_delivery(delivery_id)
            .await?
            .filter(|d| d.endpoint_id == endpoint_id)
            .ok_or_else(delivery_not_found)?;
        store.redeliver(&d.id, self.now().0).await?;
        self.wake_webhooks();
        tracing::info!(delivery = %d.id, "webhook redelivery asked");
        store
            .get_delivery(&d.id)
            .await?
            .ok_or_else(delivery_not_found)
    }

    /// A session's recordings are finalized: `recording.ready` (the files with their links)
    /// and `export.ready` (the session's exports can be downloaded now).
    pub(super) async fn recordings_finished(&self, session_id: &str) {
        let Some(store) = self.webhooks.clone() else {
            return;
        };
        let (session, recordings) = match (
            self.store.get_session(session_id).await,
            self.store.recordings(session_id).await,
        ) {
            (Ok(Some(s)), Ok(r)) => (s, r),
            (Ok(None), _) => return,
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(session = %session_id, error = %e, "webhook events not written");
                return;
            }
        };
        let base = self.public_url.as_str();
        let files: Vec<serde_json::Value> = recordings
            .iter()
            .map(|r| {
                serde_json::json!({
                    "track": r.track,
                    "format": r.format,
                    "duration_ms": r.duration_ms,
                    "bytes": r.bytes,
                    "url": format!("{base}/v1/sessions/{session_id}/recordings/{}", r.track.file_name(r.format)),
                })
            })
            .collect();
        let now = self.now().0;
        let events = [
            webhooks::session_event(
                EventType::RecordingReady,
                &session,
                base,
                now,
                serde_json::json!({ "recordings": files }),
            ),
            webhooks::session_event(
                EventType::ExportReady,
                &session,
                base,
                now,
                serde_json::json!({}),
            ),
        ];
        for e in &events {
            if let Err(err) = store.enqueue(e).await {
                tracing::error!(session = %session_id, error = %err, "webhook event not written");
            }
        }
        self.wake_webhooks();
    }
}
