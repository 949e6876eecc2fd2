//! Figures across the sessions of a campaign and date range, from counts the store groups
//! (see `SessionStore::aggregate`): the number of sessions, how many started (media
//! flowed at least once) and completed, the average active duration of the started ones,
//! completion rate = completed / started, the drop-off breakdown of the abandoned ones by
//! [`super::drop_point`] (count and share of the abandoned), the quality score distribution
//! in ten buckets of 10 points (the last holds 90-100), the AI latency distribution (each
//! session's p50) in buckets of [`LATENCY_BUCKET_MS`] up to [`LATENCY_BUCKETS`] - 1 (the
//! last holds everything slower), and the mean quality score.

use serde::Serialize;

/// Width of one AI latency bucket in ms.
pub const LATENCY_BUCKET_MS: i64 = 250;
/// Number of AI latency buckets; the last holds `(LATENCY_BUCKETS - 1) x LATENCY_BUCKET_MS`
/// ms and more.
pub const LATENCY_BUCKETS: usize = 17;
/// Number of quality buckets (10 points each).
pub const QUALITY_BUCKETS: usize = 10;

/// The quality histogram bucket of a score: 0-9, 10 points each (100 is in the last).
pub fn quality_bucket(quality: f64) -> i64 {
    ((quality / 10.0).floor() as i64).clamp(0, QUALITY_BUCKETS as i64 - 1)
}

/// The AI latency histogram bucket of a session's p50 (ms).
pub fn latency_bucket(p50_ms: i64) -> i64 {
    (p50_ms / LATENCY_BUCKET_MS).clamp(0, LATENCY_BUCKETS as i64 - 1)
}

/// What the store counts for [`summarize`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregateCounts {
    pub sessions: i64,
    pub started: i64,
    pub completed: i64,
    pub avg_active_ms: Option<f64>,
    pub avg_quality: Option<f64>,
    /// (drop point, abandoned sessions left there).
    pub drop_offs: Vec<(String, i64)>,
    /// (bucket index, sessions), [`quality_bucket`].
    pub quality_buckets: Vec<(i64, i64)>,
    /// (bucket index, sessions), [`latency_bucket`].
    pub latency_buckets: Vec<(i64, i64)>,
}

/// One row of the drop-off analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropOff {
    pub point: String,
    pub count: i64,
    /// Of the abandoned sessions, in [0, 1].
    pub share: f64,
}

/// The aggregate analytics of a campaign and date range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    pub sessions: i64,
    pub started: i64,
    pub completed: i64,
    pub abandoned: i64,
    /// completed / started; `None` when none started.
    pub completion_rate: Option<f64>,
    pub avg_duration_ms: Option<i64>,
    pub avg_quality: Option<f64>,
    /// Most frequent first (ties by name).
    pub drop_off: Vec<DropOff>,
    /// Sessions per quality bucket: [0-10), [10-20), ..., [90-100].
    pub quality_histogram: Vec<i64>,
    /// Sessions per AI latency (p50) bucket of [`LATENCY_BUCKET_MS`].
    pub ai_latency_histogram: Vec<i64>,
    pub ai_latency_bucket_ms: i64,
}

/// The aggregate from the store's counts.
pub fn summarize(c: &AggregateCounts) -> Aggregate {
    let abandoned: i64 = c.drop_offs.iter().map(|d| d.1).sum();
    let mut drop_off: Vec<DropOff> = c
        .drop_offs
        .iter()
        .map(|(point, count)| DropOff {
            point: point.clone(),
            count: *count,
            share: round3(*count as f64 / abandoned.max(1) as f64),
        })
        .collect();
    drop_off.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.point.cmp(&b.point)));
    Aggregate {
        sessions: c.sessions,
        started: c.started,
        completed: c.completed,
        abandoned,
        completion_rate: (c.started > 0).then(|| round3(c.completed as f64 / c.started as f64)),
        avg_duration_ms: c.avg_active_ms.map(|d| d.round() as i64),
        avg_quality: c.avg_quality.map(|q| (q * 10.0).round() / 10.0),
        drop_off,
        quality_histogram: histogram(&c.quality_buckets, QUALITY_BUCKETS),
        ai_latency_histogram: histogram(&c.latency_buckets, LATENCY_BUCKETS),
        ai_latency_bucket_ms: LATENCY_BUCKET_MS,
    }
}

fn histogram(buckets: &[(i64, i64)], n: usize) -> Vec<i64> {
    let mut h = vec![0; n];
    for (bucket, count) in buckets {
        let i = usize::try_from(*bucket).unwrap_or(0).min(n - 1);
        h[i] += count;
    }
    h
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_shares_and_histograms() {
        let a = summarize(&AggregateCounts {
            sessions: 10,
            started: 8,
            completed: 5,
            avg_active_ms: Some(61_234.4),
            avg_quality: Some(70.06),
            drop_offs: vec![
                ("consent".into(), 1),
                ("question:q2".into(), 2),
                ("technical".into(), 1),
            ],
            quality_buckets: vec![(7, 3), (9, 2)],
            latency_buckets: vec![(3, 4), (16, 1), (40, 1)],
        });
        assert_eq!(a.abandoned, 4);
        assert_eq!(a.completion_rate, Some(0.625));
        assert_eq!(a.avg_duration_ms, Some(61_234));
        assert_eq!(a.avg_quality, Some(70.1));
        assert_eq!(
            a.drop_off[0],
            DropOff {
                point: "question:q2".into(),
                count: 2,
                share: 0.5
            }
        );
        assert_eq!(a.drop_off[1].point, "consent");
        assert_eq!(a.drop_off[1].share, 0.25);
        assert_eq!(a.quality_histogram, [0, 0, 0, 0, 0, 0, 0, 3, 0, 2]);
        assert_eq!(a.ai_latency_histogram[3], 4);
        assert_eq!(
            a.ai_latency_histogram[16], 2,
            "out-of-range buckets fall in the last"
        );
        assert_eq!(summarize(&AggregateCounts::default()).completion_rate, None);
        assert_eq!(
            [0.0, 9.99, 10.0, 62.5, 99.9, 100.0].map(quality_bucket),
            [0, 0, 1, 6, 9, 9]
        );
        assert_eq!(
            [0, 249, 250, 1300, 4000, 90_000].map(latency_bucket),
            [0, 0, 1, 5, 16, 16]
        );
    }
}
