//! Analytics of sessions (F8): each session's summary (kept on its row for the sessions
//! list and the aggregates, refreshed when its turns are stored and when its state
//! changes), one session's full analytics, and the aggregate of a campaign and date range.
//! The formulas are in [`crate::analytics`].

use super::SessionService;
use crate::analytics::aggregate::{Aggregate, summarize};
use crate::analytics::{SessionAnalytics, analyze, drop_point};
use crate::error::ApiError;
use crate::store::{AggregateFilter, SessionSummary};

impl SessionService {
    /// The session's analytics as of now.
    pub async fn session_analytics(&self, id: &str) -> Result<SessionAnalytics, ApiError> {
        let row = self.session(id).await?;
        let active = row.lifecycle()?.active_duration_ms(self.now());
        let turns = self.store.turns(id).await?;
        Ok(analyze(&turns, active))
    }

    /// Recomputes and stores the session's summary; failures are logged (the summary is
    /// derived data: the next refresh repairs it).
    pub(super) async fn refresh_summary(&self, id: &str) {
        if let Err(e) = self.try_refresh_summary(id).await {
            tracing::warn!(session = id, error = %e, "refreshing the session summary failed");
        }
    }

    async fn try_refresh_summary(&self, id: &str) -> Result<(), ApiError> {
        let Some(row) = self.store.get_session(id).await? else {
            return Ok(());
        };
        let a = analyze(&self.store.turns(id).await?, 0);
        let summary = SessionSummary {
            active_ms: row.lifecycle()?.active_duration_ms(self.now()),
            turn_count: a.turns as i64,
            word_count: a.words,
            engagement: a.engagement,
            quality: a.quality,
            ai_latency_p50: a.ai_latency_p50_ms,
            ai_latency_p95: a.ai_latency_p95_ms,
            drop_point: drop_point(
                row.state,
                row.end_reason.as_deref(),
                row.drop_off.as_deref(),
                row.started_at.is_some(),
            ),
        };
        Ok(self.store.set_session_summary(id, &summary).await?)
    }

    /// Computes the summary of every session that has none (those stored before summaries
    /// existed), in batches; returns how many. Run once in the background at start.
    pub async fn backfill_summaries(&self) -> usize {
        let mut done = 0;
        loop {
            let ids = match self.store.unsummarized_sessions(500).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "listing sessions without a summary failed");
                    return done;
                }
            };
            if ids.is_empty() {
                break;
            }
            let before = done;
            for id in &ids {
                if self.try_refresh_summary(id).await.is_ok() {
                    done += 1;
                }
            }
            if done == before {
                // Every one of them failed (logged by the caller's next run): stop here.
                tracing::warn!(
                    sessions = ids.len(),
                    "session summaries could not be computed"
                );
                break;
            }
        }
        if done > 0 {
            tracing::info!(
                sessions = done,
                "session summaries computed for older sessions"
            );
        }
        done
    }

    /// The aggregate analytics of the sessions the filter selects.
    pub async fn aggregate(&self, filter: &AggregateFilter) -> Result<Aggregate, ApiError> {
        Ok(summarize(&self.store.aggregate_counts(filter).await?))
    }
}
