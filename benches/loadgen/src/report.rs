//! The JSON report and the hand-written SVG plot of a load run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::hub::{Connect, Sample, Window};
use super::latency::LatencyReport;
use super::pesq::PesqReport;
use super::stats::Distribution;

/// The capacity goal (docs/FEATURES.md): server CPU per session-second with noise suppression
/// and full recording.
pub const GOAL_CPU_MS_PER_SESSION_SECOND: f64 = 10.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub generated_at: String,
    pub config: RunConfig,
    pub machine: Machine,
    pub sessions: Sessions,
    /// Every connection of the run (WHIP offer sent -> client peer connected).
    pub offer_to_connected_ms: Distribution,
    /// The measured window: the hold (or, with --find-capacity, the largest step that held).
    pub window: Option<Window>,
    pub rtp_from_server: RtpFromServer,
    pub server: Server,
    pub generator: Generator,
    pub server_added_latency: LatencyReport,
    pub deadline: Deadline,
    pub capacity: Option<Capacity>,
    /// PESQ-WB of the AI audio at the client, for the sampled sessions (`--pesq-sessions`).
    pub pesq_wb: PesqReport,
    /// Once a second: running totals and the rates of that second.
    pub samples: Vec<Sample>,
    pub connects: Vec<Connect>,
}

#[derive(Debug, Serialize)]
pub struct RunConfig {
    pub server: String,
    pub sessions: usize,
    pub ramp_per_sec: f64,
    pub hold_secs: u64,
    pub find_capacity: bool,
    pub step: usize,
    pub max_sessions: usize,
    pub renew: bool,
    /// The generator played the agent (`--agent`).
    pub agent: bool,
    /// Silent listeners per session (`--monitors`).
    pub monitors_per_session: usize,
    pub speech: String,
    pub speech_packets: usize,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// /proc/loadavg (1, 5, 15 min) when the run started and ended: other work on the
    /// machine disturbs jitter and connect times (less so CPU time, which is per process).
    pub loadavg_start: Option<String>,
    pub loadavg_end: Option<String>,
    pub note: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Sessions {
    /// Simulated participants (concurrent sessions aimed for).
    pub participants: usize,
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub dropped: u64,
    pub ended_by_server: u64,
    /// Listen-ins (`--monitors`) that connected / never did (their reasons are in `failures`).
    pub monitors_connected: u64,
    pub monitors_failed: u64,
    /// Listeners' audio packets the generator itself dropped (not a server loss).
    pub monitor_generator_dropped: u64,
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct RtpFromServer {
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss_pct: Option<f64>,
    pub receive_rate_pct: Option<f64>,
    /// RFC 3550 interarrival jitter of each streaming session, read once a second.
    pub jitter_ms: Distribution,
    pub generator_dropped: u64,
    pub send_errors: u64,
    pub note: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Server {
    pub pid: Option<u32>,
    pub cpu_ms_per_session_second: Option<f64>,
    /// Median over the window's seconds of that second's CPU ms per session-second: the
    /// steady streaming cost, without the bursts of session setup and end-of-session work.
    pub cpu_ms_per_session_second_median_second: Option<f64>,
    pub goal_cpu_ms_per_session_second: f64,
    pub cpu_cores: Option<f64>,
    pub rss_baseline_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    pub rss_per_session_kib: Option<f64>,
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct Generator {
    pub cpu_cores: Option<f64>,
    pub note: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Deadline {
    /// The server's session ticks in the window, and those that ran 20 ms or more late
    /// (`earshot_media_ticks_total`, `earshot_media_deadline_missed_total` from `/metrics`).
    pub server_ticks: Option<u64>,
    pub server_missed: Option<u64>,
    /// AI packets received / packets due by the wall clock, as the participants see it.
    pub receive_rate_pct: Option<f64>,
    /// No missed deadline, and the receive rate at least 95 %.
    pub held: Option<bool>,
    pub note: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Capacity {
    pub limits: Limits,
    pub steps: Vec<Step>,
    /// The largest number of concurrent sessions whose step held every limit.
    pub largest_ok_sessions: Option<usize>,
    pub sessions_per_machine_core: Option<f64>,
    /// Largest OK sessions divided by the cores the server actually used at that step.
    pub sessions_per_server_core: Option<f64>,
    pub stopped_because: String,
}

#[derive(Debug, Serialize)]
pub struct Limits {
    pub max_loss_pct: f64,
    pub max_jitter_p99_ms: f64,
    pub max_server_latency_p99_ms: f64,
    pub min_receive_rate_pct: f64,
    pub max_missed_deadlines: u64,
    pub max_failed_sessions: u64,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub sessions: usize,
    pub held: bool,
    pub broken: Vec<String>,
    pub rss_kib: Option<u64>,
    /// Server-added latency in the step's window (with `--agent`).
    pub server_added_latency: LatencyReport,
    pub window: Window,
}

/// RFC 3339 UTC time of `secs` since the Unix epoch.
pub fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Axis maximum and tick step: a 1/2/5 step giving about five ticks.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_tick(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

struct Panel<'a> {
    title: &'a str,
    y_label: &'a str,
    top: f64,
    /// (x, y, colour)
    points: Vec<(f64, f64, &'static str)>,
    /// Dashed horizontal reference line and its label.
    reference: Option<(f64, &'a str)>,
}

const W: f64 = 900.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

fn draw_panel(svg: &mut String, p: &Panel<'_>, x_max: f64, x_step: f64, mark_x: Option<f64>) {
    let y_data = p
        .points
        .iter()
        .map(|q| q.1)
        .chain(p.reference.map(|r| r.0))
        .fold(0.0, f64::max);
    let (y_max, y_step) = nice_axis(y_data * 1.05);
    let (x0, x1) = (LEFT, W - RIGHT);
    let (y0, y1) = (p.top + 30.0, p.top + PANEL_H - 40.0);
    let sx = |x: f64| x0 + x / x_max * (x1 - x0);
    let sy = |y: f64| y1 - y / y_max * (y1 - y0);
    let _ = writeln!(
        svg,
        r#"<text x="{x0}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        p.top + 18.0,
        p.title
    );
    // Grid and ticks.
    let mut y = 0.0;
    while y <= y_max + 1e-9 {
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{0:.1}" x2="{x1}" y2="{0:.1}" stroke="#ddd"/><text x="{1}" y="{2:.1}" font-size="11" text-anchor="end">{3}</text>"##,
            sy(y),
            x0 - 6.0,
            sy(y) + 4.0,
            fmt_tick(y)
        );
        y += y_step;
    }
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{y0}" x2="{0:.1}" y2="{y1}" stroke="#eee"/><text x="{0:.1}" y="{1}" font-size="11" text-anchor="middle">{2}</text>"##,
            sx(x),
            y1 + 15.0,
            fmt_tick(x)
        );
        x += x_step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        x1 - x0,
        y1 - y0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">concurrent sessions</text>"#,
        (x0 + x1) / 2.0,
        y1 + 32.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{0}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
        (y0 + y1) / 2.0,
        p.y_label
    );
    if let Some((ry, label)) = p.reference {
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{0:.1}" x2="{x1}" y2="{0:.1}" stroke="#c00" stroke-dasharray="6 4"/><text x="{1}" y="{2:.1}" font-size="11" fill="#c00" text-anchor="end">{3}</text>"##,
            sy(ry),
            x1 - 4.0,
            sy(ry) - 4.0,
            label
        );
    }
    if let Some(mx) = mark_x {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{y0}" x2="{0:.1}" y2="{y1}" stroke="#080" stroke-dasharray="3 3"/>"##,
            sx(mx)
        );
    }
    for (x, y, colour) in &p.points {
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}" fill-opacity="0.7"/>"#,
            sx(*x),
            sy(y.min(y_max))
        );
    }
}

/// Server CPU per session-second (one point a second) and offer -> connected (one point per
/// connection) against the number of concurrent sessions.
pub fn svg(samples: &[Sample], connects: &[Connect], largest_ok: Option<usize>) -> String {
    let colour = |phase: &str| {
        if phase.contains("hold") {
            "#1a7f37"
        } else {
            "#1f6feb"
        }
    };
    let cpu: Vec<(f64, f64, &'static str)> = samples
        .iter()
        .filter(|s| s.sessions_live > 0)
        .filter_map(|s| {
            s.server_cpu_ms_per_session_second
                .map(|v| (s.sessions_live as f64, v, colour(&s.phase)))
        })
        .collect();
    let conn: Vec<(f64, f64, &'static str)> = connects
        .iter()
        .map(|c| (c.sessions_live as f64, c.offer_to_connected_ms, "#8250df"))
        .collect();
    // Server-added latency p99 per second: orange participant -> agent, teal agent ->
    // participant beyond the send slot (only with --agent).
    let latency: Vec<(f64, f64, &'static str)> = samples
        .iter()
        .filter(|s| s.sessions_live > 0)
        .flat_map(|s| {
            let x = s.sessions_live as f64;
            [
                s.latency_p99_participant_to_agent_ms
                    .map(|v| (x, v, "#d4760a")),
                s.latency_p99_agent_to_participant_beyond_slot_ms
                    .map(|v| (x, v, "#0f8b8d")),
            ]
        })
        .flatten()
        .collect();
    let panels = if latency.is_empty() { 2.0 } else { 3.0 };
    let x_data = cpu
        .iter()
        .chain(&conn)
        .chain(&latency)
        .map(|p| p.0)
        .chain(largest_ok.map(|n| n as f64))
        .fold(1.0, f64::max);
    let (x_max, x_step) = nice_axis(x_data);
    let height = panels * PANEL_H + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let mark = largest_ok.map(|n| n as f64);
    draw_panel(
        &mut svg,
        &Panel {
            title: "Server CPU per session-second (blue: ramp, green: hold)",
            y_label: "CPU ms per session-second",
            top: 0.0,
            points: cpu,
            reference: Some((GOAL_CPU_MS_PER_SESSION_SECOND, "goal 10 ms")),
        },
        x_max,
        x_step,
        mark,
    );
    draw_panel(
        &mut svg,
        &Panel {
            title: "Offer to connected (one point per session)",
            y_label: "offer -> connected, ms",
            top: PANEL_H,
            points: conn,
            reference: Some((100.0, "goal 100 ms")),
        },
        x_max,
        x_step,
        mark,
    );
    if !latency.is_empty() {
        draw_panel(
            &mut svg,
            &Panel {
                title: "Server-added latency p99 per second (orange: participant -> agent; teal: agent -> participant beyond the send slot)",
                y_label: "p99, ms",
                top: 2.0 * PANEL_H,
                points: latency,
                reference: Some((2.0, "bar 2 ms")),
            },
            x_max,
            x_step,
            mark,
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{}" font-size="11" fill="#555">earshot-loadgen{}</text>"##,
        height - 12.0,
        largest_ok
            .map(|n| format!(" - green dashed line: largest N that held ({n})"))
            .unwrap_or_default()
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_axis(23.0), (25.0, 5.0));
        let (max, step) = nice_axis(0.0);
        assert!((max - 1.0).abs() < 1e-9 && (step - 0.2).abs() < 1e-9);
        assert_eq!(nice_axis(180.0), (200.0, 50.0));
        assert_eq!(nice_axis(9.0), (10.0, 2.0));
    }

    #[test]
    fn plot_is_svg_with_a_point_per_reading() {
        let sample = |live: u64, v: Option<f64>| Sample {
            t_s: 1.0,
            phase: "ramp".into(),
            sessions_live: live,
            attempted: live,
            established: live,
            failed: 0,
            dropped: 0,
            ended_by_server: 0,
            server_cpu_ms: Some(100),
            server_sys_ms: Some(30),
            server_rss_kib: Some(1000),
            generator_cpu_ms: Some(10),
            server_deadline_missed: Some(0),
            server_ticks: Some(50),
            session_seconds: 1.0,
            rx_received: 0,
            rx_expected: 0,
            rx_expected_by_clock: 0,
            monitors_live: 0,
            monitor_seconds: 0.0,
            monitor_packets: 0,
            server_cpu_ms_per_session_second: v,
            server_cpu_cores: Some(0.1),
            offer_to_connected_ms_p50: None,
            jitter_ms_p99: None,
            latency_p99_participant_to_agent_ms: v.map(|_| 1.5),
            latency_p99_agent_to_participant_beyond_slot_ms: None,
        };
        let samples = [
            sample(0, None),
            sample(5, Some(12.5)),
            sample(10, Some(11.0)),
        ];
        let connects = [Connect {
            t_s: 1.0,
            sessions_live: 1,
            offer_to_connected_ms: 30.0,
        }];
        let s = svg(&samples, &connects, Some(10));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        // Two CPU readings, one connect, two latency readings (a third panel).
        assert_eq!(s.matches("<circle").count(), 5);
        assert!(s.contains("largest N that held (10)"));
        assert!(s.contains("Server-added latency p99"));
        let without: Vec<Sample> = samples
            .iter()
            .cloned()
            .map(|mut s| {
                s.latency_p99_participant_to_agent_ms = None;
                s
            })
            .collect();
        let s = svg(&without, &connects, Some(10));
        assert_eq!(s.matches("<circle").count(), 3);
        assert!(
            !s.contains("Server-added latency p99"),
            "no third panel without --agent"
        );
    }
}
