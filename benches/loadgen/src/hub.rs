//! Counters every participant updates, and the once-a-second sampler that reads them with the
//! server process's CPU time and memory. Samples hold running totals, so the figures of any
//! window (the hold, one capacity step) are the difference of two samples.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::agent::Probes;
use super::latency::{AgentLatency, LatencyReport, Paired};
use super::procfs;
use super::stats::{Distribution, pct, percentile};

/// One established connection: when, at which load, how long offer -> connected took.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Connect {
    pub t_s: f64,
    /// Sessions streaming when this one connected (itself included).
    pub sessions_live: u64,
    pub offer_to_connected_ms: f64,
}

/// Shared counters of one load run.
pub struct Hub {
    origin: Instant,
    pub attempted: AtomicU64,
    pub established: AtomicU64,
    /// Never reached "connected" (HTTP error, WHIP refused, ICE/DTLS timeout).
    pub failed: AtomicU64,
    /// Connected, then lost without the session having ended and without us hanging up.
    pub dropped: AtomicU64,
    /// The server ended the session (the built-in interview finished).
    pub ended_by_server: AtomicU64,
    pub live: AtomicU64,
    pub rx_received: AtomicU64,
    pub rx_expected: AtomicU64,
    pub rx_expected_by_clock: AtomicU64,
    /// AI packets the generator itself dropped (its event channel was full): a generator
    /// overload, not a server loss.
    pub client_dropped: AtomicU64,
    pub send_errors: AtomicU64,
    /// Silent listeners (`--monitors`): connected so far, failed to connect, listening now,
    /// audio packets they received.
    pub monitors_connected: AtomicU64,
    pub monitors_failed: AtomicU64,
    pub monitors_live: AtomicU64,
    pub monitor_packets: AtomicU64,
    /// Listeners' audio packets the generator itself dropped (its event channel was full).
    pub monitor_client_dropped: AtomicU64,
    pub connects: Mutex<Vec<Connect>>,
    /// (t_s, RFC 3550 jitter ms) of every streaming session, once a second.
    pub jitter: Mutex<Vec<(f64, f64)>>,
    pub failures: Mutex<BTreeMap<String, u64>>,
    /// Server-added latency through the agent bridge (with `--agent`).
    latency: Mutex<AgentLatency>,
    /// Whether participants talk to the generator's agent.
    pub with_agent: bool,
    pub probes: Arc<Probes>,
    /// The server's (missed deadlines, ticks) from its `/metrics`, as last read.
    server_deadlines: Mutex<Option<(u64, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new(with_agent: bool) -> Self {
        Self {
            origin: Instant::now(),
            attempted: AtomicU64::new(0),
            established: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            ended_by_server: AtomicU64::new(0),
            live: AtomicU64::new(0),
            rx_received: AtomicU64::new(0),
            rx_expected: AtomicU64::new(0),
            rx_expected_by_clock: AtomicU64::new(0),
            client_dropped: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            monitors_connected: AtomicU64::new(0),
            monitors_failed: AtomicU64::new(0),
            monitors_live: AtomicU64::new(0),
            monitor_packets: AtomicU64::new(0),
            monitor_client_dropped: AtomicU64::new(0),
            connects: Mutex::new(Vec::new()),
            jitter: Mutex::new(Vec::new()),
            failures: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(AgentLatency::default()),
            with_agent,
            probes: Arc::new(Probes::default()),
            server_deadlines: Mutex::new(None),
        }
    }

    /// Seconds since the run started.
    pub fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.origin).as_secs_f64()
    }

    pub fn now_s(&self) -> f64 {
        self.secs(Instant::now())
    }

    fn note_failure(&self, reason: &str) {
        *lock(&self.failures).entry(reason.to_owned()).or_default() += 1;
    }

    pub fn fail(&self, reason: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.note_failure(reason);
    }

    pub fn drop_session(&self, reason: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.note_failure(&format!("dropped: {reason}"));
    }

    /// A listener never reached "connected".
    pub fn monitor_fail(&self, reason: &str) {
        self.monitors_failed.fetch_add(1, Ordering::Relaxed);
        self.note_failure(reason);
    }

    pub fn connected(&self, ms: f64) {
        self.established.fetch_add(1, Ordering::Relaxed);
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.connects).push(Connect {
            t_s: self.now_s(),
            sessions_live: live,
            offer_to_connected_ms: ms,
        });
    }

    pub fn jitter_sample(&self, ms: f64) {
        let t = self.now_s();
        lock(&self.jitter).push((t, ms));
    }

    pub fn connects(&self) -> Vec<Connect> {
        lock(&self.connects).clone()
    }

    pub fn failures(&self) -> BTreeMap<String, u64> {
        lock(&self.failures).clone()
    }

    /// Jitter readings taken within `[from_s, to_s]`.
    pub fn jitter_between(&self, from_s: f64, to_s: f64) -> Vec<f64> {
        lock(&self.jitter)
            .iter()
            .filter(|(t, _)| (from_s..=to_s).contains(t))
            .map(|(_, j)| *j)
            .collect()
    }

    /// Offer -> connected times of connections made within `[from_s, to_s]`.
    pub fn connects_between(&self, from_s: f64, to_s: f64) -> Vec<f64> {
        lock(&self.connects)
            .iter()
            .filter(|c| (from_s..=to_s).contains(&c.t_s))
            .map(|c| c.offer_to_connected_ms)
            .collect()
    }

    /// Notes the server's deadline counters just read (None: not readable).
    pub fn set_server_deadlines(&self, v: Option<(u64, u64)>) {
        *lock(&self.server_deadlines) = v;
    }

    pub fn server_deadlines(&self) -> Option<(u64, u64)> {
        *lock(&self.server_deadlines)
    }

    /// Latencies one probe paired, measured now.
    pub fn latencies(&self, paired: Paired) {
        // The time is read under the lock, so the series stay in time order (see `report`).
        let mut latency = lock(&self.latency);
        latency.add(self.now_s(), paired);
    }

    /// Server-added latency measured within `[from_s, to_s]`.
    pub fn latency_between(&self, from_s: f64, to_s: f64) -> LatencyReport {
        lock(&self.latency).report(from_s, to_s, self.with_agent)
    }
}

/// Running totals at one instant, plus the rates of the second before it.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub phase: String,
    pub sessions_live: u64,
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub dropped: u64,
    pub ended_by_server: u64,
    /// Server CPU time so far (user + system, all threads), ms. `None`: no server pid.
    pub server_cpu_ms: Option<u64>,
    /// The kernel part of `server_cpu_ms`.
    pub server_sys_ms: Option<u64>,
    pub server_rss_kib: Option<u64>,
    pub generator_cpu_ms: Option<u64>,
    /// The server's missed 20 ms deadlines and ticks so far (its `/metrics`).
    pub server_deadline_missed: Option<u64>,
    pub server_ticks: Option<u64>,
    /// Streaming session-seconds so far (integral of `sessions_live`).
    pub session_seconds: f64,
    pub rx_received: u64,
    pub rx_expected: u64,
    pub rx_expected_by_clock: u64,
    /// Listeners listening now; listener-seconds and their audio packets so far.
    pub monitors_live: u64,
    pub monitor_seconds: f64,
    pub monitor_packets: u64,
    /// Since the previous sample: server CPU ms per streaming session-second.
    pub server_cpu_ms_per_session_second: Option<f64>,
    /// Since the previous sample: server CPU in cores (1.0 = one core busy).
    pub server_cpu_cores: Option<f64>,
    /// Since the previous sample: median offer -> connected of the sessions that connected.
    pub offer_to_connected_ms_p50: Option<f64>,
    /// Server-added latency p99 of the second before (with `--agent`): participant -> agent,
    /// and agent -> participant beyond the send slot.
    pub latency_p99_participant_to_agent_ms: Option<f64>,
    pub latency_p99_agent_to_participant_beyond_slot_ms: Option<f64>,
    /// Since the previous sample: p99 of the sessions' RFC 3550 jitter readings.
    pub jitter_ms_p99: Option<f64>,
}

/// Figures of the span between two samples.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    pub secs: f64,
    pub sessions_live_at_end: u64,
    pub session_seconds: f64,
    pub server_cpu_ms: Option<u64>,
    /// The headline figure: server CPU ms per session-second (docs/FEATURES.md goal <= 10).
    pub server_cpu_ms_per_session_second: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    /// Share of the server's CPU time spent in the kernel (sockets, timers, file writes).
    pub server_sys_pct: Option<f64>,
    pub generator_cpu_cores: Option<f64>,
    pub rx_received: u64,
    pub rx_expected: u64,
    pub rx_loss_pct: Option<f64>,
    /// Received / expected by the wall clock (below 95 %: packets went missing or late).
    pub rx_receive_rate_pct: Option<f64>,
    /// Listeners (`--monitors`) at the window's end, their listener-seconds in it, the audio
    /// packets they received and that against one packet per 20 ms of listening.
    pub monitors_live_at_end: u64,
    pub monitor_seconds: f64,
    pub monitor_packets: u64,
    pub monitor_receive_rate_pct: Option<f64>,
    /// Session ticks the server ran, and those 20 ms or more late (its `/metrics`).
    pub server_ticks: Option<u64>,
    pub server_deadline_missed: Option<u64>,
    pub jitter_ms: Distribution,
    pub offer_to_connected_ms: Distribution,
    pub established: u64,
    pub failed: u64,
    pub dropped: u64,
    pub ended_by_server: u64,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The figures between samples `a` and `b` (b later).
pub fn window(hub: &Hub, a: &Sample, b: &Sample) -> Window {
    let secs = (b.t_s - a.t_s).max(1e-9);
    let session_seconds = b.session_seconds - a.session_seconds;
    let server_cpu_ms = b
        .server_cpu_ms
        .zip(a.server_cpu_ms)
        .map(|(y, x)| y.saturating_sub(x));
    let rx_received = b.rx_received.saturating_sub(a.rx_received);
    let rx_expected = b.rx_expected - a.rx_expected;
    let by_clock = b.rx_expected_by_clock - a.rx_expected_by_clock;
    Window {
        from_s: round3(a.t_s),
        to_s: round3(b.t_s),
        secs: round3(secs),
        sessions_live_at_end: b.sessions_live,
        session_seconds: round3(session_seconds),
        server_cpu_ms,
        server_cpu_ms_per_session_second: server_cpu_ms
            .filter(|_| session_seconds > 0.5)
            .map(|ms| round3(ms as f64 / session_seconds)),
        server_cpu_cores: server_cpu_ms.map(|ms| round3(ms as f64 / 1000.0 / secs)),
        server_sys_pct: b
            .server_sys_ms
            .zip(a.server_sys_ms)
            .zip(server_cpu_ms)
            .and_then(|((y, x), total)| pct(y.saturating_sub(x) as f64, total as f64)),
        generator_cpu_cores: b
            .generator_cpu_ms
            .zip(a.generator_cpu_ms)
            .map(|(y, x)| round3(y.saturating_sub(x) as f64 / 1000.0 / secs)),
        rx_received,
        rx_expected,
        rx_loss_pct: pct(
            rx_expected.saturating_sub(rx_received) as f64,
            rx_expected as f64,
        ),
        rx_receive_rate_pct: pct(rx_received as f64, by_clock as f64),
        monitors_live_at_end: b.monitors_live,
        monitor_seconds: round3(b.monitor_seconds - a.monitor_seconds),
        monitor_packets: b.monitor_packets.saturating_sub(a.monitor_packets),
        monitor_receive_rate_pct: pct(
            b.monitor_packets.saturating_sub(a.monitor_packets) as f64,
            (b.monitor_seconds - a.monitor_seconds) * 50.0,
        ),
        server_ticks: b
            .server_ticks
            .zip(a.server_ticks)
            .map(|(y, x)| y.saturating_sub(x)),
        server_deadline_missed: b
            .server_deadline_missed
            .zip(a.server_deadline_missed)
            .map(|(y, x)| y.saturating_sub(x)),
        jitter_ms: Distribution::of(&hub.jitter_between(a.t_s, b.t_s)),
        offer_to_connected_ms: Distribution::of(&hub.connects_between(a.t_s, b.t_s)),
        established: b.established - a.established,
        failed: b.failed - a.failed,
        dropped: b.dropped - a.dropped,
        ended_by_server: b.ended_by_server - a.ended_by_server,
    }
}

/// Takes [`Sample`]s of the hub and the server process.
pub struct Sampler {
    server_pid: Option<u32>,
    state: Mutex<SamplerState>,
}

struct SamplerState {
    samples: Vec<Sample>,
    phase: String,
}

impl Sampler {
    pub fn new(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            state: Mutex::new(SamplerState {
                samples: Vec::new(),
                phase: "baseline".to_owned(),
            }),
        }
    }

    pub fn set_phase(&self, phase: &str) {
        lock(&self.state).phase = phase.to_owned();
    }

    /// Whether the server process is still there (always true without a pid).
    pub fn server_alive(&self) -> bool {
        self.server_pid
            .is_none_or(|pid| procfs::sample(pid).is_some())
    }

    /// Takes a sample now, keeps it and returns it.
    pub fn sample(&self, hub: &Hub) -> Sample {
        let server = self.server_pid.and_then(procfs::sample);
        let generator = procfs::sample_self();
        let mut st = lock(&self.state);
        let t_s = hub.now_s();
        let live = hub.live.load(Ordering::Relaxed);
        let monitors = hub.monitors_live.load(Ordering::Relaxed);
        let prev = st.samples.last();
        let session_seconds = match prev {
            // Trapezoid: sessions change one at a time between samples a second apart.
            Some(p) => p.session_seconds + (p.sessions_live + live) as f64 / 2.0 * (t_s - p.t_s),
            None => 0.0,
        };
        let monitor_seconds = match prev {
            Some(p) => {
                p.monitor_seconds + (p.monitors_live + monitors) as f64 / 2.0 * (t_s - p.t_s)
            }
            None => 0.0,
        };
        let server_cpu_ms = server.map(|s| s.cpu_ms);
        let latency = prev.map(|p| hub.latency_between(p.t_s, t_s));
        let (per_session_second, cores, connect_p50, jitter_p99) = match prev {
            Some(p) => {
                let dt = (t_s - p.t_s).max(1e-9);
                let cpu = server_cpu_ms
                    .zip(p.server_cpu_ms)
                    .map(|(y, x)| y.saturating_sub(x) as f64);
                let ss = session_seconds - p.session_seconds;
                (
                    cpu.filter(|_| ss > 0.0).map(|c| round3(c / ss)),
                    cpu.map(|c| round3(c / 1000.0 / dt)),
                    percentile(&hub.connects_between(p.t_s, t_s), 50.0),
                    percentile(&hub.jitter_between(p.t_s, t_s), 99.0),
                )
            }
            None => (None, None, None, None),
        };
        let sample = Sample {
            t_s: round3(t_s),
            phase: st.phase.clone(),
            sessions_live: live,
            attempted: hub.attempted.load(Ordering::Relaxed),
            established: hub.established.load(Ordering::Relaxed),
            failed: hub.failed.load(Ordering::Relaxed),
            dropped: hub.dropped.load(Ordering::Relaxed),
            ended_by_server: hub.ended_by_server.load(Ordering::Relaxed),
            server_cpu_ms,
            server_sys_ms: server.map(|s| s.sys_ms),
            server_rss_kib: server.map(|s| s.rss_kib),
            generator_cpu_ms: generator.map(|s| s.cpu_ms),
            server_deadline_missed: hub.server_deadlines().map(|d| d.0),
            server_ticks: hub.server_deadlines().map(|d| d.1),
            session_seconds,
            rx_received: hub.rx_received.load(Ordering::Relaxed),
            rx_expected: hub.rx_expected.load(Ordering::Relaxed),
            rx_expected_by_clock: hub.rx_expected_by_clock.load(Ordering::Relaxed),
            monitors_live: monitors,
            monitor_seconds,
            monitor_packets: hub.monitor_packets.load(Ordering::Relaxed),
            server_cpu_ms_per_session_second: per_session_second,
            server_cpu_cores: cores,
            offer_to_connected_ms_p50: connect_p50,
            latency_p99_participant_to_agent_ms: latency
                .as_ref()
                .and_then(|l| l.participant_to_agent_ms.and_then(|d| d.p99)),
            latency_p99_agent_to_participant_beyond_slot_ms: latency
                .as_ref()
                .and_then(|l| l.agent_to_participant_beyond_slot_ms.and_then(|d| d.p99)),
            jitter_ms_p99: jitter_p99,
        };
        st.samples.push(sample.clone());
        sample
    }

    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.state).samples.clone()
    }

    /// Peak resident memory of the server seen in samples from `from_s` on.
    pub fn peak_rss_since(&self, from_s: f64) -> Option<u64> {
        lock(&self.state)
            .samples
            .iter()
            .filter(|s| s.t_s >= from_s)
            .filter_map(|s| s.server_rss_kib)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_listener_seconds_and_their_audio() {
        let hub = Hub::new(false);
        let sampler = Sampler::new(None);
        let a = sampler.sample(&hub);
        // Ten listeners for the whole span, 40 packets each (of 50 a second).
        hub.monitors_live.store(10, Ordering::Relaxed);
        let mut b = sampler.sample(&hub);
        b.t_s = a.t_s + 1.0;
        b.monitor_seconds = 10.0;
        b.monitor_packets = 400;
        let w = window(&hub, &a, &b);
        assert_eq!(w.monitors_live_at_end, 10);
        assert_eq!(w.monitor_seconds, 10.0);
        assert_eq!(w.monitor_packets, 400);
        assert_eq!(w.monitor_receive_rate_pct, Some(80.0));
        // The sampler integrates listeners over time (trapezoid), as it does sessions.
        let c = sampler.sample(&hub);
        assert!(c.monitor_seconds > 0.0 && c.monitors_live == 10, "{c:?}");
    }
}
