//! Counters of the media plane for the `/metrics` endpoint (F11) and the load generator: live
//! sessions, the 20 ms send deadline (every session's tick), packets, how long peers take to
//! connect, and end-of-session work (its lag and the bytes it wrote). Lock-free atomics,
//! updated on the real-time path; rendered in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the histograms' buckets.
const LATENESS_BUCKETS: [f64; 7] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];
const CONNECT_BUCKETS: [f64; 9] = [0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];
const FINALIZE_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
/// Loss share (0-1) of one participant-second; jitter (seconds).
const LOSS_BUCKETS: [f64; 8] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
const JITTER_BUCKETS: [f64; 8] = [0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2];

/// A Prometheus histogram over fixed buckets: lock-free, cumulative only when rendered.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        self.observe_value(d.as_secs_f64());
    }

    /// One observation in the histogram's unit (seconds, or a ratio); the sum is kept in
    /// millionths.
    fn observe_value(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            inc(&self.buckets[i]);
        }
        inc(&self.count);
        self.sum_us
            .fetch_add((v.max(0.0) * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}
/// A tick this late missed its deadline: the frame went out a whole frame late.
pub const DEADLINE: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct MediaMetrics {
    sessions: AtomicI64,
    deadline_missed: AtomicU64,
    /// One observation per tick: its count is the tick count.
    lateness: Histogram,
    participant_packets: AtomicU64,
    ai_packets: AtomicU64,
    /// Participant peers: the offer answered -> ICE and DTLS up.
    connect: Histogram,
    finalize_waiting: AtomicI64,
    /// End-of-session work: queued -> done (waiting for the finalizer thread included).
    finalize: Histogram,
    recorded_bytes: AtomicU64,
    /// Agent connections made (streams started), dropped (then dialled again) and given up.
    agent_connects: AtomicU64,
    agent_drops: AtomicU64,
    agent_failures: AtomicU64,
    /// Per participant-second (each session's quality signals): packet loss share and
    /// interarrival jitter.
    loss: Histogram,
    jitter: Histogram,
    /// Connected participant peers by the client's candidate in the selected pair:
    /// (type, protocol) -> count. Written once per connection, not on the real-time path.
    selected_paths: std::sync::Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
}

impl Default for MediaMetrics {
    fn default() -> Self {
        Self {
            sessions: AtomicI64::new(0),
            deadline_missed: AtomicU64::new(0),
            lateness: Histogram::new(&LATENESS_BUCKETS),
            participant_packets: AtomicU64::new(0),
            ai_packets: AtomicU64::new(0),
            connect: Histogram::new(&CONNECT_BUCKETS),
            finalize_waiting: AtomicI64::new(0),
            finalize: Histogram::new(&FINALIZE_BUCKETS),
            recorded_bytes: AtomicU64::new(0),
            agent_connects: AtomicU64::new(0),
            agent_drops: AtomicU64::new(0),
            agent_failures: AtomicU64::new(0),
            loss: Histogram::new(&LOSS_BUCKETS),
            jitter: Histogram::new(&JITTER_BUCKETS),
            selected_paths: Default::default(),
        }
    }
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
        if lateness >= DEADLINE {
            inc(&self.deadline_missed);
        }
        self.lateness.observe(lateness);
    }

    /// Counts what the agent bridge reports: connections, drops (redialled) and give-ups.
    pub fn agent_message(&self, msg: Option<&crate::agent::bridge::FromAgent>) {
        use crate::agent::bridge::FromAgent;
        match msg {
            Some(FromAgent::Connected { .. }) => inc(&self.agent_connects),
            Some(FromAgent::Disconnected { .. }) => inc(&self.agent_drops),
            Some(FromAgent::Failed { .. }) => inc(&self.agent_failures),
            _ => {}
        }
    }

    /// One second of a participant's stream: its loss share (0-1) and jitter (ms).
    pub fn participant_second(&self, loss: f32, jitter_ms: f32) {
        self.loss.observe_value(f64::from(loss.clamp(0.0, 1.0)));
        self.jitter
            .observe_value(f64::from(jitter_ms.max(0.0)) / 1000.0);
    }

    /// A participant peer connected `took` after its offer was answered.
    pub fn peer_connected(&self, took: Duration) {
        self.connect.observe(took);
    }

    /// A participant peer connected over this path (the client's candidate type and protocol).
    pub fn peer_path(&self, path: crate::peer::SelectedPath) {
        if let Ok(mut paths) = self.selected_paths.lock() {
            *paths
                .entry((path.candidate_type, path.protocol))
                .or_default() += 1;
        }
    }

    pub fn participant_packet(&self) {
        inc(&self.participant_packets);
    }

    pub fn ai_packet(&self) {
        inc(&self.ai_packets);
    }

    /// A session's files were queued for end-of-session work; pass what this returns to
    /// [`Self::finalize_done`] when it finished.
    pub fn finalize_queued(&self) -> std::time::Instant {
        self.finalize_waiting.fetch_add(1, Ordering::Relaxed);
        std::time::Instant::now()
    }

    /// End-of-session work queued at `queued` finished, having written these files.
    pub fn finalize_done<'a>(
        &self,
        queued: std::time::Instant,
        files: impl IntoIterator<Item = &'a earshot_vocab::media_port::RecordingFile>,
    ) {
        self.finalize_waiting.fetch_sub(1, Ordering::Relaxed);
        self.finalize.observe(queued.elapsed());
        let bytes: u64 = files.into_iter().map(|f| f.bytes).sum();
        self.recorded_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn deadline_missed(&self) -> u64 {
        self.deadline_missed.load(Ordering::Relaxed)
    }

    pub fn ticks(&self) -> u64 {
        self.lateness.count()
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
            self.lateness.count().to_string(),
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
            "End-of-session work items finished (a session's files, or one derived file).",
            self.finalize.count().to_string(),
        );
        metric(
            "earshot_agent_connects_total",
            "counter",
            "Agent WebSocket streams started (the first connection and every reconnection).",
            get(&self.agent_connects).to_string(),
        );
        metric(
            "earshot_agent_disconnects_total",
            "counter",
            "Agent connections that dropped (the bridge dials again).",
            get(&self.agent_drops).to_string(),
        );
        metric(
            "earshot_agent_failures_total",
            "counter",
            "Agents given up after being unreachable for [agent] retry_secs.",
            get(&self.agent_failures).to_string(),
        );
        metric(
            "earshot_media_recorded_bytes_total",
            "counter",
            "Bytes of recording files written by finished end-of-session work.",
            get(&self.recorded_bytes).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP earshot_media_peer_paths_total Participant peers connected, by the client's \
             candidate in the selected ICE pair (type host/srflx/prflx/relay, protocol udp/tcp).\n\
             # TYPE earshot_media_peer_paths_total counter"
        );
        if let Ok(paths) = self.selected_paths.lock() {
            for ((kind, protocol), n) in paths.iter() {
                let _ = writeln!(
                    out,
                    "earshot_media_peer_paths_total{{type=\"{kind}\",protocol=\"{protocol}\"}} {n}"
                );
            }
        }
        self.lateness.render(
            out,
            "earshot_media_tick_lateness_seconds",
            "How late each session tick ran after its scheduled instant.",
        );
        self.connect.render(
            out,
            "earshot_media_connect_seconds",
            "Participant peers: the WHIP offer answered -> ICE and DTLS-SRTP up.",
        );
        self.finalize.render(
            out,
            "earshot_media_finalize_seconds",
            "End-of-session work: queued -> done (the finalizer's lag included).",
        );
        self.loss.render(
            out,
            "earshot_media_participant_loss_ratio",
            "Share of a participant's packets lost, per participant-second.",
        );
        self.jitter.render(
            out,
            "earshot_media_participant_jitter_seconds",
            "Interarrival jitter of a participant's packets (RFC 3550), per participant-second.",
        );
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

    #[test]
    fn connect_times_and_end_of_session_work_are_histograms() {
        let m = MediaMetrics::default();
        m.peer_connected(Duration::from_millis(40));
        m.peer_connected(Duration::from_millis(300));
        let queued = m.finalize_queued();
        let file = earshot_vocab::media_port::RecordingFile {
            track: earshot_vocab::Track::Mix,
            format: earshot_vocab::Format::Mp3,
            path: "mix.mp3".into(),
            duration_ms: 1000,
            bytes: 1234,
        };
        m.finalize_done(queued, [&file, &file]);
        use crate::agent::bridge::FromAgent;
        m.agent_message(Some(&FromAgent::Disconnected { detail: "x".into() }));
        m.agent_message(Some(&FromAgent::Clear));
        m.agent_message(None);
        m.participant_second(0.0, 3.0);
        m.participant_second(0.08, 25.0);
        let mut text = String::new();
        m.render(&mut text);
        for line in [
            "earshot_media_connect_seconds_bucket{le=\"0.025\"} 0",
            "earshot_media_connect_seconds_bucket{le=\"0.05\"} 1",
            "earshot_media_connect_seconds_bucket{le=\"0.5\"} 2",
            "earshot_media_connect_seconds_count 2",
            "earshot_media_connect_seconds_sum 0.34",
            "earshot_media_finalize_seconds_count 1",
            "earshot_media_finalized_total 1",
            "earshot_media_finalize_waiting 0",
            "earshot_media_recorded_bytes_total 2468",
            "earshot_agent_connects_total 0",
            "earshot_agent_disconnects_total 1",
            "earshot_agent_failures_total 0",
            "earshot_media_participant_loss_ratio_bucket{le=\"0\"} 1",
            "earshot_media_participant_loss_ratio_bucket{le=\"0.05\"} 1",
            "earshot_media_participant_loss_ratio_bucket{le=\"0.1\"} 2",
            "earshot_media_participant_loss_ratio_count 2",
            "earshot_media_participant_jitter_seconds_bucket{le=\"0.005\"} 1",
            "earshot_media_participant_jitter_seconds_bucket{le=\"0.03\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
