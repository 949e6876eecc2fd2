//! Counters of the media plane for the `/metrics` endpoint (F11) and the load generator: live
//! sessions, the 20 ms send deadline (every session's tick), packets and end-of-session work.
//! Lock-free atomics, updated on the real-time path; rendered in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (ms) of the tick lateness histogram's buckets.
const LATENESS_BUCKETS_MS: [u64; 7] = [1, 2, 5, 10, 20, 50, 100];
/// A tick this late missed its deadline: the frame went out a whole frame late.
pub const DEADLINE: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
pub struct MediaMetrics {
    sessions: AtomicI64,
    ticks: AtomicU64,
    deadline_missed: AtomicU64,
    lateness_buckets: [AtomicU64; LATENESS_BUCKETS_MS.len()],
    lateness_sum_us: AtomicU64,
    participant_packets: AtomicU64,
    ai_packets: AtomicU64,
    finalize_waiting: AtomicI64,
    finalized: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl MediaMetrics {
    pub fn session_started(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_ended(&self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// A session's 20 ms tick ran `lateness` after its scheduled instant.
    pub fn tick(&self, lateness: Duration) {
        inc(&self.ticks);
        if lateness >= DEADLINE {
            inc(&self.deadline_missed);
        }
        let ms = lateness.as_secs_f64() * 1000.0;
        if let Some(i) = LATENESS_BUCKETS_MS.iter().position(|b| ms <= *b as f64) {
            inc(&self.lateness_buckets[i]);
        }
        self.lateness_sum_us.fetch_add(
            u64::try_from(lateness.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn participant_packet(&self) {
        inc(&self.participant_packets);
    }

    pub fn ai_packet(&self) {
        inc(&self.ai_packets);
    }

    /// A session's files were queued for finalization; `done` when finished.
    pub fn finalize_queued(&self) {
        self.finalize_waiting.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finalize_done(&self) {
        self.finalize_waiting.fetch_sub(1, Ordering::Relaxed);
        inc(&self.finalized);
    }

    pub fn deadline_missed(&self) -> u64 {
        self.deadline_missed.load(Ordering::Relaxed)
    }

    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text exposition of every counter.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "earshot_media_sessions",
            "gauge",
            "Sessions with a running media task.",
            self.sessions.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "earshot_media_ticks_total",
            "counter",
            "20 ms ticks run by all sessions (one AI packet each while a peer is connected).",
            get(&self.ticks).to_string(),
        );
        metric(
            "earshot_media_deadline_missed_total",
            "counter",
            "Ticks that ran 20 ms or more after their scheduled instant (a missed frame deadline).",
            get(&self.deadline_missed).to_string(),
        );
        metric(
            "earshot_media_participant_packets_total",
            "counter",
            "RTP packets received from participants.",
            get(&self.participant_packets).to_string(),
        );
        metric(
            "earshot_media_ai_packets_total",
            "counter",
            "RTP packets of AI audio sent to participants.",
            get(&self.ai_packets).to_string(),
        );
        metric(
            "earshot_media_finalize_waiting",
            "gauge",
            "Sessions whose recordings wait for or are in end-of-session work (mix, MP3s).",
            self.finalize_waiting.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "earshot_media_finalized_total",
            "counter",
            "Sessions whose end-of-session work finished.",
            get(&self.finalized).to_string(),
        );
        let name = "earshot_media_tick_lateness_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} How late each session tick ran after its scheduled instant.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (b, c) in LATENESS_BUCKETS_MS.iter().zip(&self.lateness_buckets) {
            cumulative += get(c);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1000.0
            );
        }
        let count = get(&self.ticks);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            get(&self.lateness_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_late_by_a_frame_are_missed_deadlines() {
        let m = MediaMetrics::default();
        m.tick(Duration::from_micros(300));
        m.tick(Duration::from_millis(7));
        m.tick(Duration::from_millis(19));
        m.tick(Duration::from_millis(20));
        m.tick(Duration::from_millis(250));
        assert_eq!((m.ticks(), m.deadline_missed()), (5, 2));
        let mut text = String::new();
        m.render(&mut text);
        for line in [
            "earshot_media_ticks_total 5",
            "earshot_media_deadline_missed_total 2",
            "earshot_media_tick_lateness_seconds_bucket{le=\"0.001\"} 1",
            "earshot_media_tick_lateness_seconds_bucket{le=\"0.01\"} 2",
            "earshot_media_tick_lateness_seconds_bucket{le=\"0.02\"} 4",
            "earshot_media_tick_lateness_seconds_bucket{le=\"0.1\"} 4",
            "earshot_media_tick_lateness_seconds_bucket{le=\"+Inf\"} 5",
            "earshot_media_tick_lateness_seconds_count 5",
            "# TYPE earshot_media_sessions gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
