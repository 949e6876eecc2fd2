//! `earshot-loadgen`, Earshot's load generator: drives N real WebRTC participants against a
//! running Earshot server and reports what it takes (F12): sessions established and failed,
//! offer-to-connected times, RTP loss and jitter of the AI audio as the participants receive
//! it, and the server process's CPU per session-second and memory per session. With `--agent`
//! it also plays the AI agent on the agent bridge and measures the latency the server adds in
//! both directions (latency.rs).
//! For a sample of sessions (`--pesq-sessions`) it scores the AI audio the participant hears
//! with PESQ-WB against its source (pesq.rs).
//! With `--find-capacity` it raises N step by step until a quality limit breaks and reports the
//! largest N that held (capacity.rs).
//!
//! The generator measures the server only through /proc/<server pid>: its own CPU time is
//! reported beside it and never counted.
//!
//! It is a client of the server's public HTTP, WHIP and agent-bridge protocols and uses
//! `earshot-media` only for the participants' WebRTC peer and Opus: it does not link the
//! server (`earshot`) or `earshot-signaling`.

mod agent;
mod align;
mod capacity;
mod hub;
mod latency;
mod monitor;
mod participant;
mod pesq;
mod procfs;
mod report;
mod server;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use earshot_media::client::ClientConfig;
use earshot_media::codec::{FRAME_SAMPLES, OpusEncoder, OpusSettings};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use capacity::{MIN_RECEIVE_RATE_PCT, find_capacity, round1};
use hub::{Hub, Sample, Sampler, Window, window};
use report::Report;
use server::{read_server_metrics, server_pid, spawn_sampler};
use stats::{Distribution, pct};

/// The built-in interviewer's prompts (16 kHz WAVs), relative to the repository root.
const DEFAULT_PROMPTS: &str = "assets/interviewer/default";

/// Default log filter (EARSHOT_LOG overrides it): its own progress, without the WebRTC
/// library's per-connection lines.
const LOG_FILTER: &str = "info,rtc=warn,rtc_ice=error,webrtc=warn,earshot_media=warn";

/// Drive N real WebRTC participants against a running Earshot server and report capacity,
/// loss, jitter, latency, CPU and memory per session (see README).
#[derive(Parser, Debug, Clone)]
#[command(name = "earshot-loadgen", version)]
pub struct Args {
    /// Base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The server's admin token (creates the invites).
    #[arg(long, env = "EARSHOT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Concurrent sessions (with --find-capacity: the first step).
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Sessions started per second while ramping up.
    #[arg(long, default_value_t = 2.0)]
    pub ramp_per_sec: f64,
    /// Seconds to hold the full load (with --find-capacity: per step).
    #[arg(long, default_value_t = 30)]
    pub hold_secs: u64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "loadgen-report.json")]
    pub report: PathBuf,
    /// Where to write the SVG plot (CPU per session-second and offer-to-connected against
    /// the number of sessions).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The server's process id, for its CPU and memory. Default: the local process
    /// listening on the --server port.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Speech the participants send (48 kHz mono WAV), looped.
    #[arg(long, default_value = "tests/fixtures/participant_speech.wav")]
    pub speech: PathBuf,
    /// IP the participants' WebRTC peers bind their host candidate to.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_ip: std::net::IpAddr,
    /// Seconds a participant waits for its peer to connect before counting a failure.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout_secs: u64,
    /// Play the AI agent too: the generator runs a test agent on the agent bridge (a script
    /// pointing at it is created) and measures the server-added latency both ways. Without
    /// it the participants talk to the built-in interviewer.
    #[arg(long)]
    pub agent: bool,
    /// Silent listeners per session: each a receive-only WebRTC peer that listens in over
    /// WHEP (`POST /v1/sessions/{id}/whep`) as a QA monitor's page does, from the moment the
    /// participant connects until its session ends. The hold starts once they all listen.
    #[arg(long, default_value_t = 0)]
    pub monitors: usize,
    /// Do not start a new session when the server ends one (the interview finished).
    #[arg(long)]
    pub no_renew: bool,
    /// Raise the number of sessions step by step until a quality limit breaks.
    #[arg(long)]
    pub find_capacity: bool,
    /// Sessions added per capacity step.
    #[arg(long, default_value_t = 5)]
    pub step: usize,
    /// Upper bound of the capacity search.
    #[arg(long, default_value_t = 200)]
    pub max_sessions: usize,
    /// Seconds to let a capacity step settle after its sessions connected, before measuring.
    #[arg(long, default_value_t = 3)]
    pub settle_secs: u64,
    /// Sessions whose AI audio is scored with PESQ-WB at the client (the first to connect);
    /// 0 turns it off. Needs python3 with PyPI's pesq (`scripts/install-deps.sh --quality`).
    #[arg(long, default_value_t = 3)]
    pub pesq_sessions: usize,
    /// The built-in interviewer's prompts (16 kHz mono WAVs): what the test agent speaks (one
    /// talk each, in file name order) and, without --agent, the PESQ-WB reference of what the
    /// server plays.
    #[arg(long, default_value = DEFAULT_PROMPTS)]
    pub prompts: PathBuf,
    /// The PESQ-WB scorer.
    #[arg(long, default_value = "scripts/pesq_wb.py")]
    pub pesq_script: PathBuf,
    /// Keep the WAVs PESQ-WB scored (sources and what the client heard) in this directory.
    #[arg(long)]
    pub pesq_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EARSHOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_FILTER)),
        )
        .init();
    run(args)
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.sessions == 0 && !args.find_capacity {
        bail!("--sessions must be at least 1");
    }
    if !(args.ramp_per_sec > 0.0 && args.ramp_per_sec.is_finite()) {
        bail!("--ramp-per-sec must be a positive number");
    }
    if args.hold_secs == 0 {
        bail!("--hold-secs must be at least 1");
    }
    if args.find_capacity && args.step == 0 {
        bail!("--step must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

/// Encodes the speech file once into 20 ms Opus packets, as a browser would send them.
fn speech_packets(path: &std::path::Path) -> anyhow::Result<Vec<Bytes>> {
    let pcm = earshot_media::prompt::load_prompt(path)
        .with_context(|| format!("reading the speech file {}", path.display()))?;
    let mut enc = OpusEncoder::new(OpusSettings::default()).context("opus encoder")?;
    let mut packets = Vec::with_capacity(pcm.len() / FRAME_SAMPLES);
    for chunk in pcm.chunks_exact(FRAME_SAMPLES) {
        let frame: &[i16; FRAME_SAMPLES] = chunk.try_into().context("frame")?;
        packets.push(enc.encode(frame).context("opus encode")?);
    }
    if packets.is_empty() {
        bail!("the speech file {} holds no audio", path.display());
    }
    Ok(packets)
}

struct Run {
    args: Args,
    ctx: Arc<participant::Ctx>,
    hub: Arc<Hub>,
    sampler: Arc<Sampler>,
    stop: watch::Sender<bool>,
    slots: Vec<JoinHandle<()>>,
}

impl Run {
    /// Starts participants until there are `target`, at the ramp rate.
    async fn ramp_to(&mut self, target: usize) {
        let start = tokio::time::Instant::now();
        let first = self.slots.len();
        for (k, slot) in (first..target).enumerate() {
            let at = start + Duration::from_secs_f64(k as f64 / self.args.ramp_per_sec);
            tokio::time::sleep_until(at).await;
            let ctx = Arc::clone(&self.ctx);
            let stop = self.stop.subscribe();
            self.slots
                .push(tokio::spawn(participant::run(ctx, slot, stop)));
        }
    }

    /// Waits until `target` sessions stream (and their monitors listen), or the connect
    /// timeout passes (twice over with monitors: they connect after their session).
    async fn wait_live(&self, target: usize) {
        let monitors = target * self.args.monitors;
        let timeout = self.ctx.connect_timeout * if monitors > 0 { 2 } else { 1 };
        let deadline = Instant::now() + timeout;
        while ((self.hub.live.load(Ordering::Relaxed) as usize) < target
            || (self.hub.monitors_live.load(Ordering::Relaxed) as usize) < monitors)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Holds for `secs`, between two samples; stops early if the server process goes away.
    async fn hold(&self, secs: u64, phase: &str) -> (Sample, Sample) {
        self.sampler.set_phase(phase);
        read_server_metrics(&self.ctx).await;
        let a = self.sampler.sample(&self.hub);
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(250).min(end - Instant::now())).await;
            if !self.sampler.server_alive() {
                warn!("the server process is gone");
                break;
            }
        }
        read_server_metrics(&self.ctx).await;
        let b = self.sampler.sample(&self.hub);
        (a, b)
    }

    async fn teardown(&mut self) {
        self.sampler.set_phase("teardown");
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for h in self.slots.drain(..) {
            if tokio::time::timeout_at(deadline, h).await.is_err() {
                warn!("a participant did not hang up in time");
            }
        }
    }
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("earshot-loadgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("HTTP client")?;
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .with_context(|| format!("the server at {base} does not answer"))?;
    if !health.status().is_success() {
        bail!("{base}/healthz answered {}", health.status());
    }
    let (pid, pid_note) = server_pid(&args)?;
    info!(server = %base, %pid_note, "loadgen: measuring the server");
    let packets = speech_packets(&args.speech)?;
    if args.pesq_sessions > 0 {
        pesq::check_scorer(&args.pesq_script)?;
    }
    let prompts = pesq::read_prompts(&args.prompts)?;
    // The sources PESQ-WB compares with: what the test agent says, or the server's prompts.
    let (sources, reference) = if args.agent {
        let talks = agent::talks(&prompts).context("the prompts hold no audio")?;
        (
            talks,
            format!(
                "the test agent's talks: the prompts in {}",
                args.prompts.display()
            ),
        )
    } else {
        (
            prompts,
            format!("the built-in prompts in {}", args.prompts.display()),
        )
    };

    let loadavg_start = procfs::loadavg();
    let hub = Arc::new(Hub::new(args.agent));
    let script_id = if args.agent {
        let url = agent::serve(args.bind_ip, Arc::clone(&hub.probes), &sources)
            .await
            .context("starting the test agent")?;
        let id = create_agent_script(&http, &base, &args.admin_token, &url).await?;
        info!(%url, script = %id, "loadgen: participants talk to the generator's test agent");
        Some(id)
    } else {
        None
    };
    let sampler = Arc::new(Sampler::new(pid));
    let (stop, _) = watch::channel(false);
    let ctx = Arc::new(participant::Ctx {
        http,
        base: base.clone(),
        admin_token: args.admin_token.clone(),
        script_id,
        packets: Arc::new(packets),
        client: ClientConfig {
            bind_ip: args.bind_ip,
            ..ClientConfig::default()
        },
        connect_timeout: Duration::from_secs(args.connect_timeout_secs.max(1)),
        renew: !args.no_renew,
        monitors: args.monitors,
        hub: Arc::clone(&hub),
        pesq: pesq::Capture::new(args.pesq_sessions),
    });
    read_server_metrics(&ctx).await;
    if hub.server_deadlines().is_none() {
        warn!(
            "the server's /metrics is not readable with this token: missed deadlines not counted"
        );
    }
    let baseline = sampler.sample(&hub);
    let sampler_task = spawn_sampler(Arc::clone(&ctx), Arc::clone(&sampler));
    let mut run = Run {
        args: args.clone(),
        ctx,
        hub: Arc::clone(&hub),
        sampler: Arc::clone(&sampler),
        stop,
        slots: Vec::new(),
    };

    let (measured, capacity) = if args.find_capacity {
        let (w, c) = find_capacity(&mut run).await;
        (w, Some(c))
    } else {
        sampler.set_phase("ramp");
        info!(
            sessions = args.sessions,
            ramp_per_sec = args.ramp_per_sec,
            hold_secs = args.hold_secs,
            "loadgen: ramping up"
        );
        run.ramp_to(args.sessions).await;
        run.wait_live(args.sessions).await;
        info!(live = hub.live.load(Ordering::Relaxed), "loadgen: holding");
        let (a, b) = run.hold(args.hold_secs, "hold").await;
        (Some(window(&hub, &a, &b)), None)
    };
    run.teardown().await;
    sampler_task.abort();
    sampler.sample(&hub);

    let mut report = build_report(&args, &run, pid, &pid_note, &baseline, measured, capacity);
    report.machine.loadavg_start = loadavg_start;
    report.pesq_wb = if args.pesq_sessions == 0 {
        pesq::PesqReport::not_measured(0, "off (--pesq-sessions 0)")
    } else {
        info!(
            sessions = args.pesq_sessions,
            "loadgen: scoring the AI audio with PESQ-WB"
        );
        pesq::score(
            &run.ctx.pesq,
            &sources,
            &args.pesq_script,
            &reference,
            args.pesq_dir.as_deref(),
        )?
    };
    let json = serde_json::to_string_pretty(&report).context("report json")?;
    std::fs::write(&args.report, json)
        .with_context(|| format!("writing {}", args.report.display()))?;
    if let Some(plot) = &args.plot {
        let largest = report.capacity.as_ref().and_then(|c| c.largest_ok_sessions);
        std::fs::write(
            plot,
            report::svg(&report.samples, &report.connects, largest),
        )
        .with_context(|| format!("writing {}", plot.display()))?;
    }
    let w = report.window.as_ref();
    info!(
        established = report.sessions.established,
        failed = report.sessions.failed,
        dropped = report.sessions.dropped,
        offer_to_connected_p50_ms = ?report.offer_to_connected_ms.p50,
        offer_to_connected_p99_ms = ?report.offer_to_connected_ms.p99,
        loss_pct = ?w.and_then(|w| w.rx_loss_pct),
        jitter_p99_ms = ?w.and_then(|w| w.jitter_ms.p99),
        cpu_ms_per_session_second = ?report.server.cpu_ms_per_session_second,
        rss_per_session_kib = ?report.server.rss_per_session_kib,
        capacity = ?report.capacity.as_ref().and_then(|c| c.largest_ok_sessions),
        pesq_wb_median = ?report.pesq_wb.median,
        pesq_wb_min = ?report.pesq_wb.min,
        pesq_wb_talks_scored = report.pesq_wb.talks_scored,
        report = %args.report.display(),
        "loadgen: done"
    );
    Ok(())
}

/// Creates the script whose agent is the generator's test agent; returns its id.
async fn create_agent_script(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
    agent_url: &str,
) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/v1/scripts"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({
            "name": "loadgen test agent",
            "agent": {"url": agent_url, "audio_format": "l16/16000"},
        }))
        .send()
        .await
        .context("creating the agent script")?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("creating the agent script: {status} {body}");
    }
    body["id"]
        .as_str()
        .map(str::to_owned)
        .context("the created script has no id")
}

fn build_report(
    args: &Args,
    run: &Run,
    pid: Option<u32>,
    pid_note: &str,
    baseline: &Sample,
    measured: Option<Window>,
    capacity: Option<report::Capacity>,
) -> Report {
    let hub = &run.hub;
    let samples = run.sampler.samples();
    let connects = hub.connects();
    let all_connect_ms: Vec<f64> = connects.iter().map(|c| c.offer_to_connected_ms).collect();
    let received = hub.rx_received.load(Ordering::Relaxed);
    let expected = hub.rx_expected.load(Ordering::Relaxed);
    let by_clock = hub.rx_expected_by_clock.load(Ordering::Relaxed);
    let all_jitter = hub.jitter_between(0.0, f64::MAX);
    let latency = measured.as_ref().map_or_else(
        || hub.latency_between(0.0, f64::MAX),
        |w| hub.latency_between(w.from_s, w.to_s),
    );

    // Memory: peak during the measured window over the baseline before any session.
    let sessions_in_window = measured.as_ref().map(|w| w.sessions_live_at_end);
    let rss_peak = measured
        .as_ref()
        .and_then(|w| run.sampler.peak_rss_since(w.from_s));
    let rss_per_session = rss_peak
        .zip(baseline.server_rss_kib)
        .zip(sessions_in_window.filter(|n| *n > 0))
        .map(|((peak, base), n)| round1(peak.saturating_sub(base) as f64 / n as f64));
    let receive_rate = measured.as_ref().and_then(|w| w.rx_receive_rate_pct);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Report {
        tool: "earshot-loadgen",
        version: env!("CARGO_PKG_VERSION"),
        generated_at: report::rfc3339_utc(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
        config: report::RunConfig {
            server: args.server.clone(),
            sessions: args.sessions,
            ramp_per_sec: args.ramp_per_sec,
            hold_secs: args.hold_secs,
            find_capacity: args.find_capacity,
            step: args.step,
            max_sessions: args.max_sessions,
            renew: !args.no_renew,
            agent: args.agent,
            monitors_per_session: args.monitors,
            speech: args.speech.display().to_string(),
            speech_packets: run.ctx.packets.len(),
        },
        machine: report::Machine {
            cores,
            loadavg_start: None,
            loadavg_end: procfs::loadavg(),
            note: "generator and server share these cores when both run here",
        },
        sessions: report::Sessions {
            participants: run.slots.len().max(
                capacity
                    .as_ref()
                    .and_then(|c| c.steps.last().map(|s| s.sessions))
                    .unwrap_or(args.sessions),
            ),
            attempted: hub.attempted.load(Ordering::Relaxed),
            established: hub.established.load(Ordering::Relaxed),
            failed: hub.failed.load(Ordering::Relaxed),
            dropped: hub.dropped.load(Ordering::Relaxed),
            ended_by_server: hub.ended_by_server.load(Ordering::Relaxed),
            monitors_connected: hub.monitors_connected.load(Ordering::Relaxed),
            monitors_failed: hub.monitors_failed.load(Ordering::Relaxed),
            monitor_generator_dropped: hub.monitor_client_dropped.load(Ordering::Relaxed),
            failures: hub.failures(),
        },
        offer_to_connected_ms: Distribution::of(&all_connect_ms),
        rtp_from_server: report::RtpFromServer {
            received,
            expected,
            lost: expected.saturating_sub(received),
            loss_pct: pct(expected.saturating_sub(received) as f64, expected as f64),
            receive_rate_pct: pct(received as f64, by_clock as f64),
            jitter_ms: Distribution::of(&all_jitter),
            generator_dropped: hub.client_dropped.load(Ordering::Relaxed),
            send_errors: hub.send_errors.load(Ordering::Relaxed),
            note: "whole run, AI audio as the participants receive it: loss from RTP sequence \
                   numbers, RFC 3550 interarrival jitter from RTP timestamps vs arrival time \
                   (arrival as the generator's peer sees it, so the generator's own scheduling \
                   is included); see `window` for the measured span alone",
        },
        server: report::Server {
            pid,
            cpu_ms_per_session_second: measured
                .as_ref()
                .and_then(|w| w.server_cpu_ms_per_session_second),
            cpu_ms_per_session_second_median_second: measured.as_ref().and_then(|w| {
                let per_second: Vec<f64> = samples
                    .iter()
                    .filter(|s| s.t_s > w.from_s && s.t_s <= w.to_s)
                    .filter_map(|s| s.server_cpu_ms_per_session_second)
                    .collect();
                stats::percentile(&per_second, 50.0)
            }),
            goal_cpu_ms_per_session_second: report::GOAL_CPU_MS_PER_SESSION_SECOND,
            cpu_cores: measured.as_ref().and_then(|w| w.server_cpu_cores),
            rss_baseline_kib: baseline.server_rss_kib,
            rss_peak_kib: rss_peak,
            rss_per_session_kib: rss_per_session,
            note: format!(
                "{pid_note}. CPU: user+system time of all server threads from /proc/<pid>/stat \
                 over the measured window, divided by the streaming session-seconds in it; it \
                 includes session setup and the end-of-session mix and MP3s of sessions the \
                 server ended inside the window. Memory: peak VmRSS in the window minus VmRSS \
                 before the first session, per session."
            ),
        },
        generator: report::Generator {
            cpu_cores: measured.as_ref().and_then(|w| w.generator_cpu_cores),
            note: "the load generator's own CPU over the measured window: reported, never counted",
        },
        server_added_latency: latency,
        deadline: {
            let ticks = measured.as_ref().and_then(|w| w.server_ticks);
            let missed = measured.as_ref().and_then(|w| w.server_deadline_missed);
            report::Deadline {
                server_ticks: ticks,
                server_missed: missed,
                receive_rate_pct: receive_rate,
                held: match (missed, receive_rate) {
                    (None, None) => None,
                    (m, r) => Some(
                        m.is_none_or(|m| m == 0) && r.is_none_or(|r| r >= MIN_RECEIVE_RATE_PCT),
                    ),
                },
                note: "a session's 20 ms tick that runs 20 ms or more after its scheduled instant \
                       sends its AI frame a whole frame late: a missed deadline (the server's \
                       /metrics, read with the admin token, over the measured window)",
            }
        },
        window: measured,
        capacity,
        pesq_wb: pesq::PesqReport::default(),
        samples,
        connects,
    }
}
