//! The delivery worker: a task of its own that claims due deliveries from the outbox, POSTs
//! each signed body to its endpoint (at most `max_in_flight` at once, each within
//! `timeout_ms`), records every attempt (status, response time, error) and schedules the next
//! one with exponential backoff until `retry_secs` after the event. It is woken when an event
//! is written and otherwise looks at the outbox every second, so deliveries left by a killed
//! process go out after the restart. Nothing on the session path waits for it.

use super::WebhookConfig;
use super::signature::{secret_key, sign};
use crate::clock::Clock;
use crate::store::webhooks::{AttemptOutcome, AttemptRow, DueDelivery, WebhookStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// Longest sleep between two looks at the outbox.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often old events and their delivery logs are removed (`keep_days`).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Shortest sleep of a round that claimed nothing (no spinning on the store).
const MIN_SLEEP: Duration = Duration::from_millis(10);
/// Longest error text kept with an attempt.
const MAX_ERROR_CHARS: usize = 300;

pub struct Worker {
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    config: WebhookConfig,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

impl Worker {
    /// `wake` is notified whenever an event is written.
    pub fn new(
        store: Arc<dyn WebhookStore>,
        clock: Arc<dyn Clock>,
        config: WebhookConfig,
        wake: Arc<Notify>,
    ) -> Result<Worker, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // A receiver's redirect is an answer (3xx: not delivered), never followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Earshot-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Worker {
            store,
            clock,
            config,
            client,
            wake,
        })
    }

    /// Runs until the process ends.
    pub async fn run(self) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.max_in_flight));
        // Longer than an attempt may take: a claimed delivery is not claimed again meanwhile.
        let lease_ms = i64::try_from(this.config.timeout_ms).unwrap_or(i64::MAX / 2) + 5_000;
        let mut pruned_at: Option<Instant> = None;
        loop {
            if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(Instant::now());
                this.prune().await;
            }
            let free = slots.available_permits();
            let mut claimed = 0;
            if free > 0 {
                let now = this.clock.now().0;
                let limit = i64::try_from(free).unwrap_or(1);
                match this.store.claim_due(now, lease_ms, limit).await {
                    Ok(due) => {
                        claimed = due.len();
                        for d in due {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                return;
                            };
                            let this = this.clone();
                            tokio::spawn(async move {
                                this.attempt(d).await;
                                drop(permit);
                                this.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "webhook outbox: claiming failed"),
                }
            }
            // Every slot busy: the next finished attempt wakes the loop (no polling while a
            // slow receiver holds them all).
            let wait = if slots.available_permits() == 0 {
                IDLE_POLL
            } else {
                match this.store.next_due().await {
                    Ok(Some(at)) => {
                        let ms = (at - this.clock.now().0).clamp(0, IDLE_POLL.as_millis() as i64);
                        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                    }
                    _ => IDLE_POLL,
                }
            };
            if wait.is_zero() && claimed > 0 {
                continue;
            }
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(MIN_SLEEP)) => {}
            }
        }
    }

    /// Removes events older than `keep_days` whose deliveries are done.
    async fn prune(&self) {
        let keep_ms =
            i64::try_from(self.config.keep_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
        let before = self.clock.now().0.saturating_sub(keep_ms);
        match self.store.prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                events = n,
                "old webhook events and their delivery logs removed"
            ),
            Err(e) => tracing::error!(error = %e, "pruning webhook events failed"),
        }
    }

    /// One attempt of one delivery, recorded with what it came to.
    async fn attempt(&self, d: DueDelivery) {
        let started = Instant::now();
        let at = self.clock.now().0;
        let (status_code, error) = match secret_key(&d.secret) {
            None => (None, Some("the endpoint's secret is not valid".to_string())),
            Some(key) => {
                let ts = at / 1000;
                let signature = sign(&key, &d.event_id, ts, &d.payload);
                let sent = self
                    .client
                    .post(&d.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &d.event_id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature)
                    .body(d.payload.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let status = r.status();
                        // The body is not kept; reading it ends the exchange within the timeout.
                        let _ = r.bytes().await;
                        let error = (!status.is_success()).then(|| format!("HTTP {status}"));
                        (Some(i64::from(status.as_u16())), error)
                    }
                    Err(e) => (None, Some(describe(&e))),
                }
            }
        };
        let response_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let attempts = d.attempts + 1;
        let outcome = if error.is_none() {
            AttemptOutcome::Delivered
        } else {
            let next = self.clock.now().0 + self.config.backoff_ms(attempts);
            let until = d.retry_since
                + i64::try_from(self.config.retry_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            if next > until {
                AttemptOutcome::Failed
            } else {
                AttemptOutcome::Retry { at: next }
            }
        };
        tracing::info!(
            delivery = %d.id,
            event = %d.event_id,
            attempt = attempts,
            status = ?status_code,
            response_ms,
            outcome = ?outcome,
            error = error.as_deref().unwrap_or(""),
            "webhook attempt"
        );
        let row = AttemptRow {
            delivery_id: d.id.clone(),
            at,
            status_code,
            response_ms,
            error,
        };
        if let Err(e) = self.store.record_attempt(&row, &outcome).await {
            tracing::error!(delivery = %d.id, error = %e, "webhook attempt not recorded");
        }
    }
}

/// A transport error in a few words (the URL is the admin's own; no body is quoted).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{what}: {e}");
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
    }
    text
}
