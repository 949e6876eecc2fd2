//! The retention sweep (F3, F10): every `[retention] sweep_secs` it deletes the recordings
//! (every track and derived file, through the blob store) of ended sessions older than their
//! campaign's `audio_retention_days`, marking them deleted with the time (the session row
//! and transcript stay), and applies campaigns' delayed PII policies to stored transcripts.
//! It reads the service clock, so tests move time instead of sleeping; it never touches a
//! session that has not ended; running it twice does nothing more the second time. Each
//! sweep's report is stored for `GET /v1/retention`.

use super::SessionService;
use crate::error::ApiError;
use crate::store::privacy::DueRow;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The sweep's settings (`[retention]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between sweeps (1 to 86400; the first runs at start).
    pub sweep_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { sweep_secs: 3600 }
    }
}

impl RetentionConfig {
    /// A message naming the key that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if (1..=86_400).contains(&self.sweep_secs) {
            Ok(())
        } else {
            Err(format!(
                "retention.sweep_secs must be 1..=86400, got {}",
                self.sweep_secs
            ))
        }
    }
}

/// Most sessions one sweep handles of each kind (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;

/// The sweep's counters since the process started (`/metrics`).
#[derive(Debug, Default)]
pub struct RetentionCounters {
    pub sweeps: AtomicU64,
    pub recordings_deleted: AtomicU64,
    pub transcripts_redacted: AtomicU64,
    pub failures: AtomicU64,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// When it ran (unix ms).
    pub at: i64,
    /// Sessions whose recordings were deleted.
    pub recordings_deleted: Vec<String>,
    /// Sessions whose transcript got the campaign's delayed PII policy.
    pub transcripts_redacted: Vec<String>,
    /// Turns changed by those redactions.
    pub turns_redacted: usize,
    /// Sessions it could not handle now (retried next sweep).
    pub failed: Vec<String>,
}

/// The retention state: the last sweep and what falls due next.
#[derive(Debug, Clone)]
pub struct RetentionStatus {
    pub last: Option<SweepReport>,
    pub next_recordings_due: Option<i64>,
    pub next_redaction_due: Option<i64>,
}

impl SessionService {
    /// Runs one sweep at the clock's now.
    pub async fn sweep_retention(&self) -> Result<SweepReport, ApiError> {
        let store = self.privacy_store()?.clone();
        let now = self.now().0;
        let mut report = SweepReport {
            at: now,
            ..SweepReport::default()
        };
        for due in store.recordings_due(now, SWEEP_BATCH).await? {
            match self.expire_recordings(&due, now).await {
                Ok(true) => report.recordings_deleted.push(due.session_id),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(session = %due.session_id, error = %e.message, "deleting recordings failed");
                    report.failed.push(due.session_id);
                }
            }
        }
        for due in store.redactions_due(now, SWEEP_BATCH).await? {
            if !self.has_ended(&due.session_id).await? {
                continue;
            }
            match self
                .apply_stored_policy(&due.session_id, &due.campaign_id)
                .await
            {
                Ok(turns) => {
                    report.turns_redacted += turns;
                    report.transcripts_redacted.push(due.session_id);
                }
                Err(e) => {
                    tracing::warn!(session = %due.session_id, error = %e.message, "redaction failed");
                    report.failed.push(due.session_id);
                }
            }
        }
        let c = &self.retention;
        c.sweeps.fetch_add(1, Ordering::Relaxed);
        c.recordings_deleted
            .fetch_add(report.recordings_deleted.len() as u64, Ordering::Relaxed);
        c.transcripts_redacted
            .fetch_add(report.transcripts_redacted.len() as u64, Ordering::Relaxed);
        c.failures
            .fetch_add(report.failed.len() as u64, Ordering::Relaxed);
        let json = serde_json::to_string(&report)
            .map_err(|e| ApiError::internal("retention report", e))?;
        store.insert_sweep(now, &json).await?;
        tracing::info!(
            recordings_deleted = report.recordings_deleted.len(),
            transcripts_redacted = report.transcripts_redacted.len(),
            turns_redacted = report.turns_redacted,
            failed = report.failed.len(),
            "retention sweep"
        );
        Ok(report)
    }

    /// Whether the session exists and has ended (a sweep never touches a live one).
    async fn has_ended(&self, session_id: &str) -> Result<bool, ApiError> {
        Ok(self
            .store
            .get_session(session_id)
            .await?
            .is_some_and(|s| s.state.is_terminal() && s.ended_at.is_some()))
    }

    /// Deletes a due session's recordings; `false` if it was not due after all (not ended).
    async fn expire_recordings(&self, due: &DueRow, now: i64) -> Result<bool, ApiError> {
        let store = self.privacy_store()?.clone();
        let _guard = self.lock(&due.session_id).await;
        if !self.has_ended(&due.session_id).await? {
            return Ok(false);
        }
        self.blobs
            .delete_session(&due.session_id)
            .await
            .map_err(|e| ApiError::internal("deleting recordings", e))?;
        store.mark_recordings_deleted(&due.session_id, now).await?;
        self.audit_system(
            "retention",
            "recordings.delete",
            &due.session_id,
            Some(&due.campaign_id),
        )
        .await;
        Ok(true)
    }

    /// The last sweep and what falls due next.
    pub async fn retention_status(&self) -> Result<RetentionStatus, ApiError> {
        let store = self.privacy_store()?;
        let last = match store.last_sweep().await? {
            Some((_, json)) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| ApiError::internal("stored retention report", e))?,
            ),
            None => None,
        };
        let (next_recordings_due, next_redaction_due) = store.next_due(self.now().0).await?;
        Ok(RetentionStatus {
            last,
            next_recordings_due,
            next_redaction_due,
        })
    }

    /// The sweep's counters (`/metrics`).
    pub fn retention_counters(&self) -> &RetentionCounters {
        &self.retention
    }

    /// When a session's recordings were deleted by the sweep, if they were.
    pub async fn recordings_deleted_at(&self, session_id: &str) -> Result<Option<i64>, ApiError> {
        match &self.privacy {
            Some(store) => Ok(store.recordings_deleted_at(session_id).await?),
            None => Ok(None),
        }
    }

    /// Starts the sweep every `every` (the first one at once).
    pub fn spawn_retention_sweep(self: Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.sweep_retention().await {
                    self.retention.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e.message, "retention sweep failed");
                }
            }
        });
    }
}
