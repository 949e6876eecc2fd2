//! Analytics (F8), pure: what one session's turn log says ([`session`]: durations, words,
//! turns, sentiment, talk ratio, response times, AI latency, interruptions, the engagement
//! and quality scores), its keywords ([`keywords`], RAKE), where an abandoned session was
//! left ([`drop_point`]), and the figures across sessions ([`aggregate`]). No I/O: the
//! service feeds stored rows in and stores or renders what comes out. The formulas are
//! documented in README.md ("Analytics") and here, and unit-tested with hand-computed values.

pub mod aggregate;
pub mod keywords;
pub mod session;

pub use session::{SessionAnalytics, analyze};

use earshot_vocab::State;

/// Where an abandoned session was left, for the drop-off analysis; `None` for a session that
/// did not end as `abandoned`. In order: declined consent (`consent`), opened but never
/// consented (`never_started`), a technical failure (`technical`), a pause that expired
/// (`pause_expiry`), disconnected with no pause left (`pause_limit`), consented but the
/// interview never started (`mic_check`: the microphone check and start are the step
/// between), else the last question reached (`question:<prompt id>`), else `other`.
pub fn drop_point(
    state: State,
    end_reason: Option<&str>,
    drop_off: Option<&str>,
    started: bool,
) -> Option<String> {
    if state != State::Abandoned {
        return None;
    }
    let point = match (drop_off, end_reason) {
        (Some("consent"), _) => "consent".to_string(),
        (Some("never_started"), _) => "never_started".to_string(),
        (_, Some(r)) if r.starts_with("technical") => "technical".to_string(),
        (_, Some("pause_expired")) => "pause_expiry".to_string(),
        (_, Some("pause_limit")) => "pause_limit".to_string(),
        _ if !started => "mic_check".to_string(),
        (Some(q), _) => format!("question:{q}"),
        (None, _) => "other".to_string(),
    };
    Some(point)
}

/// Nearest-rank percentile (`p` in 0..=100) of `values`; `None` when empty.
pub fn percentile(values: &[i64], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (u64::from(p.min(100)) * sorted.len() as u64)
        .div_ceil(100)
        .max(1);
    sorted.get(rank as usize - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [400, 100, 300, 200, 1000];
        assert_eq!(percentile(&v, 50), Some(300));
        assert_eq!(percentile(&v, 95), Some(1000));
        assert_eq!(percentile(&v, 0), Some(100));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
        // 20 values 1..=20: p95 is the 19th.
        let twenty: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&twenty, 95), Some(19));
    }

    #[test]
    fn drop_points_in_order() {
        let ab = State::Abandoned;
        assert_eq!(drop_point(State::Completed, None, Some("q2"), true), None);
        let p = |r: Option<&str>, d: Option<&str>, started| drop_point(ab, r, d, started);
        assert_eq!(
            p(Some("declined"), Some("consent"), false).as_deref(),
            Some("consent")
        );
        assert_eq!(
            p(Some("never_started"), Some("never_started"), false).as_deref(),
            Some("never_started")
        );
        assert_eq!(
            p(Some("technical"), Some("q1"), true).as_deref(),
            Some("technical")
        );
        assert_eq!(
            p(Some("pause_expired"), Some("q2"), true).as_deref(),
            Some("pause_expiry")
        );
        assert_eq!(
            p(Some("pause_limit"), Some("q2"), true).as_deref(),
            Some("pause_limit")
        );
        assert_eq!(
            p(Some("participant_ended"), None, false).as_deref(),
            Some("mic_check")
        );
        assert_eq!(
            p(Some("participant_ended"), Some("q3"), true).as_deref(),
            Some("question:q3")
        );
        assert_eq!(p(Some("stuck"), None, true).as_deref(), Some("other"));
    }
}
