//! Whether a live session needs a QA monitor's attention (F7): a pure rule on its latest
//! quality signals, shown on the Live Sessions dashboard and sent with every `signals` live
//! event. The thresholds are the product's: more than 5 % of the participant's packets lost,
//! any real clipping of their microphone, more than 30 s of silence on their turn, the AI
//! taking more than 2 s to answer.

use earshot_vocab::media_port::QualitySignals;

/// Share of lost packets above which the participant's audio is damaged.
pub const MAX_LOSS: f32 = 0.05;
/// Share of full-scale samples above which the participant's microphone clips (a few
/// isolated full-scale samples per second are not yet audible distortion).
pub const MAX_CLIPPING: f32 = 0.001;
/// Seconds of silence on the participant's turn before someone should look.
pub const MAX_SILENCE_SECS: f32 = 30.0;
/// The AI's response time above which the exchange feels broken.
pub const MAX_AI_LATENCY_MS: u64 = 2000;

/// Why the session needs attention, as stable codes (`loss`, `clipping`, `silence`,
/// `ai_latency`, `agent_errors`), in that order; empty when it does not.
pub fn attention(s: &QualitySignals) -> Vec<&'static str> {
    let mut why = Vec::new();
    if s.loss > MAX_LOSS {
        why.push("loss");
    }
    if s.clipping > MAX_CLIPPING {
        why.push("clipping");
    }
    if s.silence_secs > MAX_SILENCE_SECS {
        why.push("silence");
    }
    if s.ai_latency_ms.is_some_and(|ms| ms > MAX_AI_LATENCY_MS) {
        why.push("ai_latency");
    }
    if s.agent_errors > 0 {
        why.push("agent_errors");
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> QualitySignals {
        QualitySignals {
            input_dbfs: -24.0,
            clipping: 0.0,
            loss: 0.01,
            concealment: 0.01,
            jitter_ms: 4.0,
            reorder_wait_ms: 30,
            silence_secs: 3.0,
            ai_latency_ms: Some(1500),
            agent_errors: 0,
        }
    }

    #[test]
    fn a_healthy_session_needs_nothing() {
        assert!(attention(&healthy()).is_empty());
        assert!(attention(&QualitySignals::default()).is_empty());
    }

    #[test]
    fn each_threshold_is_exclusive_and_named() {
        let at_limits = QualitySignals {
            loss: MAX_LOSS,
            clipping: MAX_CLIPPING,
            silence_secs: MAX_SILENCE_SECS,
            ai_latency_ms: Some(MAX_AI_LATENCY_MS),
            ..healthy()
        };
        assert!(
            attention(&at_limits).is_empty(),
            "the limits themselves pass"
        );
        let cases: [(QualitySignals, &str); 5] = [
            (
                QualitySignals {
                    loss: 0.06,
                    ..healthy()
                },
                "loss",
            ),
            (
                QualitySignals {
                    clipping: 0.01,
                    ..healthy()
                },
                "clipping",
            ),
            (
                QualitySignals {
                    silence_secs: 31.0,
                    ..healthy()
                },
                "silence",
            ),
            (
                QualitySignals {
                    ai_latency_ms: Some(2001),
                    ..healthy()
                },
                "ai_latency",
            ),
            (
                QualitySignals {
                    agent_errors: 1,
                    ..healthy()
                },
                "agent_errors",
            ),
        ];
        for (signals, why) in cases {
            assert_eq!(attention(&signals), vec![why]);
        }
    }

    #[test]
    fn several_reasons_come_in_a_stable_order() {
        let bad = QualitySignals {
            loss: 0.2,
            clipping: 0.05,
            silence_secs: 45.0,
            ai_latency_ms: Some(4000),
            agent_errors: 2,
            ..healthy()
        };
        assert_eq!(
            attention(&bad),
            vec!["loss", "clipping", "silence", "ai_latency", "agent_errors"]
        );
    }
}
