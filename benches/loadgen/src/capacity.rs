//! The capacity search (`--find-capacity`): raises the number of sessions step by step, measures
//! each step, checks it against the quality limits (docs/FEATURES.md quality bars) and reports
//! the largest number of sessions that held.

use std::time::Duration;

use tracing::info;

use crate::Run;
use crate::hub::{Window, window};
use crate::report;

/// Limits of the capacity search (docs/FEATURES.md quality bars, issue 5).
pub(crate) const MAX_LOSS_PCT: f64 = 1.0;
pub(crate) const MAX_JITTER_P99_MS: f64 = 20.0;
pub(crate) const MAX_SERVER_LATENCY_P99_MS: f64 = 20.0;
pub(crate) const MIN_RECEIVE_RATE_PCT: f64 = 95.0;

/// Steps of `--step` sessions from `--sessions` up until a limit breaks.
pub(crate) async fn find_capacity(run: &mut Run) -> (Option<Window>, report::Capacity) {
    let args = run.args.clone();
    let mut target = args.sessions.max(1).min(args.max_sessions.max(1));
    let mut steps: Vec<report::Step> = Vec::new();
    let stopped_because;
    loop {
        run.sampler.set_phase(&format!("step {target}: ramp"));
        run.ramp_to(target).await;
        run.wait_live(target).await;
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        let (a, b) = run
            .hold(args.hold_secs, &format!("step {target}: hold"))
            .await;
        let w = window(&run.hub, &a, &b);
        let latency = run.hub.latency_between(w.from_s, w.to_s);
        let latency_p99 = latency.worst_p99();
        let broken = limits_broken(&w, latency_p99, run.sampler.server_alive());
        let held = broken.is_empty();
        info!(
            sessions = target,
            held,
            broken = ?broken,
            cpu_ms_per_session_second = ?w.server_cpu_ms_per_session_second,
            server_cpu_cores = ?w.server_cpu_cores,
            loss_pct = ?w.rx_loss_pct,
            jitter_p99_ms = ?w.jitter_ms.p99,
            receive_rate_pct = ?w.rx_receive_rate_pct,
            server_latency_p99_ms = ?latency_p99,
            "loadgen: capacity step"
        );
        steps.push(report::Step {
            sessions: target,
            held,
            broken,
            rss_kib: b.server_rss_kib,
            server_added_latency: latency,
            window: w,
        });
        if !held {
            stopped_because = format!("a limit broke at {target} sessions");
            break;
        }
        if target >= args.max_sessions {
            stopped_because = format!("reached --max-sessions {}", args.max_sessions);
            break;
        }
        target = (target + args.step).min(args.max_sessions);
    }
    let best = steps.iter().rev().find(|s| s.held);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let window = best.map(|s| s.window.clone());
    let capacity = report::Capacity {
        limits: report::Limits {
            max_loss_pct: MAX_LOSS_PCT,
            max_jitter_p99_ms: MAX_JITTER_P99_MS,
            max_server_latency_p99_ms: MAX_SERVER_LATENCY_P99_MS,
            min_receive_rate_pct: MIN_RECEIVE_RATE_PCT,
            // A session tick 20 ms late sent its frame a whole frame late: none may be missed.
            max_missed_deadlines: 0,
            max_failed_sessions: 0,
        },
        largest_ok_sessions: best.map(|s| s.sessions),
        sessions_per_machine_core: best.map(|s| round1(s.sessions as f64 / cores as f64)),
        sessions_per_server_core: best.and_then(|s| {
            s.window
                .server_cpu_cores
                .filter(|c| *c > 0.0)
                .map(|c| round1(s.sessions as f64 / c))
        }),
        stopped_because,
        steps,
    };
    (window, capacity)
}

/// The limits a measured window breaks (empty: it held).
fn limits_broken(w: &Window, server_latency_p99: Option<f64>, server_alive: bool) -> Vec<String> {
    let mut broken = Vec::new();
    if !server_alive {
        broken.push("server process gone".to_owned());
    }
    if let Some(loss) = w.rx_loss_pct
        && loss > MAX_LOSS_PCT
    {
        broken.push(format!("loss {loss:.2} % > {MAX_LOSS_PCT} %"));
    }
    if let Some(j) = w.jitter_ms.p99
        && j > MAX_JITTER_P99_MS
    {
        broken.push(format!("jitter p99 {j:.1} ms > {MAX_JITTER_P99_MS} ms"));
    }
    if let Some(l) = server_latency_p99
        && l > MAX_SERVER_LATENCY_P99_MS
    {
        broken.push(format!(
            "server-added latency p99 {l:.1} ms > {MAX_SERVER_LATENCY_P99_MS} ms"
        ));
    }
    if let Some(missed) = w.server_deadline_missed
        && missed > 0
    {
        broken.push(format!(
            "{missed} missed 20 ms deadlines in the media path (of {} ticks)",
            w.server_ticks.unwrap_or(0)
        ));
    }
    if let Some(r) = w.rx_receive_rate_pct
        && r < MIN_RECEIVE_RATE_PCT
    {
        broken.push(format!(
            "AI packets received at {r:.1} % of the real-time rate < {MIN_RECEIVE_RATE_PCT} %"
        ));
    }
    if w.rx_expected == 0 {
        broken.push("no AI audio received".to_owned());
    }
    if w.failed + w.dropped > 0 {
        broken.push(format!(
            "{} sessions failed and {} dropped",
            w.failed, w.dropped
        ));
    }
    broken
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Distribution;

    fn window_with(loss: f64, jitter_p99: f64, rate: f64, failed: u64, missed: u64) -> Window {
        Window {
            from_s: 0.0,
            to_s: 10.0,
            secs: 10.0,
            sessions_live_at_end: 5,
            session_seconds: 50.0,
            server_cpu_ms: Some(500),
            server_cpu_ms_per_session_second: Some(10.0),
            server_cpu_cores: Some(0.05),
            server_sys_pct: Some(30.0),
            generator_cpu_cores: Some(0.1),
            rx_received: 2500,
            rx_expected: 2500,
            rx_loss_pct: Some(loss),
            rx_receive_rate_pct: Some(rate),
            monitors_live_at_end: 0,
            monitor_seconds: 0.0,
            monitor_packets: 0,
            monitor_receive_rate_pct: None,
            server_ticks: Some(25_000),
            server_deadline_missed: Some(missed),
            jitter_ms: Distribution::of(&[1.0, jitter_p99]),
            offer_to_connected_ms: Distribution::of(&[30.0]),
            established: 5,
            failed,
            dropped: 0,
            ended_by_server: 0,
        }
    }

    #[test]
    fn capacity_limits() {
        assert!(limits_broken(&window_with(0.5, 5.0, 99.0, 0, 0), None, true).is_empty());
        let b = limits_broken(&window_with(1.5, 25.0, 90.0, 1, 3), Some(30.0), false);
        assert_eq!(b.len(), 7, "{b:?}");
        assert!(
            b.iter()
                .any(|l| l == "3 missed 20 ms deadlines in the media path (of 25000 ticks)")
        );
        // The latency limit applies only once it is measured.
        assert!(limits_broken(&window_with(0.0, 1.0, 100.0, 0, 0), None, true).is_empty());
        assert_eq!(
            limits_broken(&window_with(0.0, 1.0, 100.0, 0, 0), Some(25.0), true).len(),
            1
        );
        // One missed deadline is enough.
        assert_eq!(
            limits_broken(&window_with(0.0, 1.0, 100.0, 0, 1), None, true).len(),
            1
        );
    }
}
