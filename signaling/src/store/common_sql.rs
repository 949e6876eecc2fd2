//! What the SQLite and PostgreSQL stores share: SQL fragments both dialects read alike, the
//! words of a transcript search, and the folding of the aggregate query's groups.

use super::privacy::DEFAULT_AUDIO_RETENTION_DAYS;
use crate::analytics::aggregate::AggregateCounts;

const DAY_MS: i64 = 86_400_000;

/// When a session's recordings fall due (`s` sessions joined with `p` campaign_privacy).
pub(super) fn audio_due() -> String {
    format!(
        "s.ended_at + COALESCE(p.audio_retention_days, {DEFAULT_AUDIO_RETENTION_DAYS}) * {DAY_MS}"
    )
}

/// When a session's delayed PII policy falls due (the same join).
pub(super) const PII_DUE: &str = "s.ended_at + p.pii_delay_days * 86400000";

/// The columns of a [`super::webhooks::DeliveryRow`] (`d` deliveries joined with `e` events).
pub(super) const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type AS event_type, \
     e.session_id, d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.created_at";

/// The words of a transcript search as the full-text indexes take them: of each, only
/// letters, digits and `'` are kept; words left empty are dropped.
pub(super) fn search_words(words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// One group of the aggregate query.
#[derive(sqlx::FromRow)]
pub(super) struct AggregateGroup {
    pub qb: Option<i64>,
    pub lb: Option<i64>,
    pub drop_point: Option<String>,
    pub sessions: i64,
    pub started: i64,
    pub completed: i64,
    pub started_ms: i64,
    pub rated: i64,
    pub quality_sum: f64,
}

/// The groups summed into the counts [`crate::analytics::aggregate::summarize`] takes.
pub(super) fn fold(groups: &[AggregateGroup]) -> AggregateCounts {
    use std::collections::BTreeMap;
    let mut c = AggregateCounts::default();
    let (mut started_ms, mut rated, mut quality_sum) = (0i64, 0i64, 0f64);
    let mut drops: BTreeMap<String, i64> = BTreeMap::new();
    let mut qb: BTreeMap<i64, i64> = BTreeMap::new();
    let mut lb: BTreeMap<i64, i64> = BTreeMap::new();
    for g in groups {
        c.sessions += g.sessions;
        c.started += g.started;
        c.completed += g.completed;
        started_ms += g.started_ms;
        rated += g.rated;
        quality_sum += g.quality_sum;
        if let Some(d) = &g.drop_point {
            *drops.entry(d.clone()).or_default() += g.sessions;
        }
        if let Some(b) = g.qb {
            *qb.entry(b).or_default() += g.sessions;
        }
        if let Some(b) = g.lb {
            *lb.entry(b).or_default() += g.sessions;
        }
    }
    c.avg_active_ms = (c.started > 0).then(|| started_ms as f64 / c.started as f64);
    c.avg_quality = (rated > 0).then(|| quality_sum / rated as f64);
    c.drop_offs = drops.into_iter().collect();
    c.quality_buckets = qb.into_iter().collect();
    c.latency_buckets = lb.into_iter().collect();
    c
}
