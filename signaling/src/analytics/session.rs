//! One session's analytics from its turn log and active time.
//!
//! - words: the turns' word counts, AI and participant; turns: how many.
//! - sentiment: mean of the participant turns' VADER compound scores (the turn log's
//!   lexicon method, in [-1, 1]); `None` without any.
//! - talk ratio: participant speaking time / (participant + AI speaking time), from the turns'
//!   bounds.
//! - response times: the participant turns' `response_ms` (negative: spoke over the AI).
//! - AI response latency: for each AI turn right after a participant turn, the AI turn's
//!   start minus that turn's end (when not negative); p50 and p95 by nearest rank.
//! - interruptions: participant turns with a negative response time, plus AI turns that
//!   started before the participant turn before them ended.
//! - engagement (0-100) = 100 x (0.5 depth + 0.3 talk + 0.2 answered), where depth =
//!   min(1, mean words per participant turn / 30), talk = min(1, talk ratio / 0.5), answered
//!   = min(1, participant turns with words / AI turns) (1 without AI turns); `None` without a
//!   participant turn.
//! - quality (0-100) = 100 x (0.4 engagement/100 + 0.25 latency + 0.2 responsiveness + 0.15
//!   flow), where latency = clamp((4000 - AI latency p50 ms) / 3000, 0, 1) (1 at or under
//!   1 s, 0 at 4 s), responsiveness = clamp((10000 - median response ms) / 8000, 0, 1) (1 at
//!   or under 2 s, 0 at 10 s; a negative response counts as 0), flow = 1 / (1 +
//!   interruptions); a missing latency or response time scores 1; `None` when engagement is.
//!
//! Scores are rounded to one decimal.

use super::{keywords, percentile};
use crate::store::TurnRow;
use earshot_vocab::Role;
use serde::Serialize;

/// Everything the Analysis tab and the sessions list show of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionAnalytics {
    pub duration_ms: i64,
    pub turns: usize,
    pub ai_turns: usize,
    pub participant_turns: usize,
    pub words_ai: i64,
    pub words_participant: i64,
    pub words: i64,
    pub sentiment: Option<f64>,
    /// (turn seq, start ms, compound score) of every participant turn with a score.
    pub sentiment_series: Vec<(i64, i64, f64)>,
    pub talk_ratio: Option<f64>,
    /// (turn seq, response ms) of every participant turn with a response time.
    pub response_times: Vec<(i64, i64)>,
    pub median_response_ms: Option<i64>,
    /// (AI turn seq, latency ms).
    pub ai_latencies: Vec<(i64, i64)>,
    pub ai_latency_p50_ms: Option<i64>,
    pub ai_latency_p95_ms: Option<i64>,
    pub interruptions: usize,
    pub engagement: Option<f64>,
    pub quality: Option<f64>,
    pub keywords: Vec<keywords::Keyword>,
}

/// Analyzes a turn log (in `seq` order) of a session that was active `duration_ms`.
pub fn analyze(turns: &[TurnRow], duration_ms: i64) -> SessionAnalytics {
    let is = |t: &&TurnRow, role: Role| t.role == role;
    let ai: Vec<&TurnRow> = turns.iter().filter(|t| is(t, Role::Ai)).collect();
    let part: Vec<&TurnRow> = turns.iter().filter(|t| is(t, Role::Participant)).collect();
    let words = |ts: &[&TurnRow]| ts.iter().map(|t| t.words).sum::<i64>();
    let speaking = |ts: &[&TurnRow]| {
        ts.iter()
            .filter_map(|t| Some((t.end_ms? - t.start_ms).max(0)))
            .sum::<i64>()
    };
    let (words_ai, words_participant) = (words(&ai), words(&part));
    let sentiment_series: Vec<(i64, i64, f64)> = part
        .iter()
        .filter_map(|t| Some((t.seq, t.start_ms, t.sentiment?)))
        .collect();
    let sentiment = mean(sentiment_series.iter().map(|s| s.2));
    let (talk_p, talk_ai) = (speaking(&part), speaking(&ai));
    let talk_ratio = (talk_p + talk_ai > 0).then(|| talk_p as f64 / (talk_p + talk_ai) as f64);
    let response_times: Vec<(i64, i64)> = part
        .iter()
        .filter_map(|t| Some((t.seq, t.response_ms?)))
        .collect();
    let responses: Vec<i64> = response_times.iter().map(|r| r.1).collect();
    let median_response_ms = percentile(&responses, 50);
    let mut ai_latencies = Vec::new();
    let mut interruptions = responses.iter().filter(|r| **r < 0).count();
    for pair in turns.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        if prev.role == Role::Participant
            && next.role == Role::Ai
            && let Some(end) = prev.end_ms
        {
            let latency = next.start_ms - end;
            if latency >= 0 {
                ai_latencies.push((next.seq, latency));
            } else {
                interruptions += 1;
            }
        }
    }
    let latencies: Vec<i64> = ai_latencies.iter().map(|l| l.1).collect();
    let ai_latency_p50_ms = percentile(&latencies, 50);
    let engagement = (!part.is_empty()).then(|| {
        let depth = (words_participant as f64 / part.len() as f64 / 30.0).min(1.0);
        let talk = talk_ratio.map_or(0.0, |r| (r / 0.5).min(1.0));
        let answered_turns = part.iter().filter(|t| t.words > 0).count();
        let answered = if ai.is_empty() {
            1.0
        } else {
            (answered_turns as f64 / ai.len() as f64).min(1.0)
        };
        round1(100.0 * (0.5 * depth + 0.3 * talk + 0.2 * answered))
    });
    let quality = engagement.map(|e| {
        let latency =
            ai_latency_p50_ms.map_or(1.0, |l| ((4000 - l) as f64 / 3000.0).clamp(0.0, 1.0));
        let responsiveness = median_response_ms.map_or(1.0, |r| {
            ((10_000 - r.max(0)) as f64 / 8000.0).clamp(0.0, 1.0)
        });
        let flow = 1.0 / (1.0 + interruptions as f64);
        round1(100.0 * (0.4 * e / 100.0 + 0.25 * latency + 0.2 * responsiveness + 0.15 * flow))
    });
    let participant_text: Vec<&str> = part.iter().map(|t| t.text.as_str()).collect();
    SessionAnalytics {
        duration_ms,
        turns: turns.len(),
        ai_turns: ai.len(),
        participant_turns: part.len(),
        words_ai,
        words_participant,
        words: words_ai + words_participant,
        sentiment: sentiment.map(|s| (s * 1000.0).round() / 1000.0),
        sentiment_series,
        talk_ratio: talk_ratio.map(|r| (r * 1000.0).round() / 1000.0),
        response_times,
        median_response_ms,
        ai_latency_p95_ms: percentile(&latencies, 95),
        ai_latency_p50_ms,
        ai_latencies,
        interruptions,
        engagement,
        quality,
        keywords: keywords::rake(&participant_text, 8),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(seq: i64, role: Role, start: i64, end: i64, text: &str) -> TurnRow {
        TurnRow {
            seq,
            role,
            start_ms: start,
            end_ms: Some(end),
            words: text.split_whitespace().count() as i64,
            text: text.into(),
            response_ms: None,
            sentiment: None,
        }
    }

    /// AI asks (0-2 s), participant answers 1 s later (3-9 s, 12 words, +0.5), AI replies
    /// after 800 ms (9.8-11.8 s), participant answers (12.3-15.3 s, 6 words, -0.1),
    /// AI cuts in 300 ms early (15.0-16.0 s).
    fn interview() -> Vec<TurnRow> {
        let mut t = vec![
            turn(1, Role::Ai, 0, 2_000, "how was your week"),
            turn(
                2,
                Role::Participant,
                3_000,
                9_000,
                "my week was great the new garden project went really well thanks",
            ),
            turn(3, Role::Ai, 9_800, 11_800, "what made it great"),
            turn(
                4,
                Role::Participant,
                12_300,
                15_300,
                "the garden project and friends",
            ),
            turn(5, Role::Ai, 15_000, 16_000, "thanks"),
        ];
        t[1].response_ms = Some(1_000);
        t[1].sentiment = Some(0.5);
        t[3].response_ms = Some(500);
        t[3].sentiment = Some(-0.1);
        t
    }

    #[test]
    fn hand_computed_session() {
        let a = analyze(&interview(), 16_000);
        assert_eq!((a.turns, a.ai_turns, a.participant_turns), (5, 3, 2));
        assert_eq!(a.words_participant, 12 + 5);
        assert_eq!(a.words_ai, 4 + 4 + 1);
        assert_eq!(a.words, 26);
        // (0.5 - 0.1) / 2
        assert_eq!(a.sentiment, Some(0.2));
        // participant 6000 + 3000 ms, AI 2000 + 2000 + 1000 ms: 9000 / 14000
        assert_eq!(a.talk_ratio, Some(0.643));
        assert_eq!(a.median_response_ms, Some(500));
        // AI after turn 2: 9800 - 9000; after turn 4: 15000 - 15300 < 0 is an interruption.
        assert_eq!(a.ai_latencies, [(3, 800)]);
        assert_eq!(a.ai_latency_p50_ms, Some(800));
        assert_eq!(a.ai_latency_p95_ms, Some(800));
        assert_eq!(a.interruptions, 1);
        // depth = min(1, 8.5 / 30) = 0.28333; talk = min(1, 0.642857 / 0.5) = 1;
        // answered = min(1, 2 / 3) = 0.66667
        // 100 x (0.141667 + 0.3 + 0.133333) = 57.5
        assert_eq!(a.engagement, Some(57.5));
        // latency 1 (800 ms), responsiveness 1 (500 ms), flow 1/2:
        // 100 x (0.4 x 0.575 + 0.25 + 0.2 + 0.075) = 75.5
        assert_eq!(a.quality, Some(75.5));
        assert_eq!(a.keywords[0].phrase, "garden project");
    }

    #[test]
    fn slow_and_silent_sessions() {
        // Latency 2500 ms -> (4000 - 2500) / 3000 = 0.5; response 6000 ms -> 0.5.
        let mut t = vec![
            turn(1, Role::Ai, 0, 1_000, "hello"),
            turn(2, Role::Participant, 7_000, 8_000, "hi"),
            turn(3, Role::Ai, 10_500, 11_000, "bye"),
        ];
        t[1].response_ms = Some(6_000);
        let a = analyze(&t, 11_000);
        assert_eq!(a.ai_latency_p50_ms, Some(2_500));
        // depth 1/30 = 0.03333, talk = min(1, (1000/2500)/0.5) = 0.8, answered = 1/2:
        // 100 x (0.016667 + 0.24 + 0.1) = 35.7
        assert_eq!(a.engagement, Some(35.7));
        // 100 x (0.4 x 0.357 + 0.25 x 0.5 + 0.2 x 0.5 + 0.15) = 51.78 -> 51.8
        assert_eq!(a.quality, Some(51.8));

        let silent = analyze(&[turn(1, Role::Ai, 0, 1_000, "hello")], 5_000);
        assert_eq!(silent.engagement, None);
        assert_eq!(silent.quality, None);
        assert_eq!(silent.sentiment, None);
        assert_eq!(silent.talk_ratio, Some(0.0));
        assert_eq!(analyze(&[], 0).talk_ratio, None);
    }
}
