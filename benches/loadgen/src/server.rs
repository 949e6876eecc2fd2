//! The server under load, as the generator sees it from outside: which process to measure
//! (`server_pid`), its missed-deadline counters read from `/metrics`, and the once-a-second
//! sampler that logs progress.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::task::JoinHandle;
use tracing::info;

use crate::hub::Sampler;
use crate::{Args, participant, procfs};

/// Progress lines are logged this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The pid to measure: given, or the local listener of the server's port.
pub(crate) fn server_pid(args: &Args) -> anyhow::Result<(Option<u32>, String)> {
    if let Some(pid) = args.server_pid {
        if procfs::sample(pid).is_none() {
            bail!("--server-pid {pid}: no such process readable in /proc");
        }
        return Ok((Some(pid), format!("pid {pid} given with --server-pid")));
    }
    let url = reqwest::Url::parse(&args.server).context("--server is not a URL")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if !local {
        return Ok((
            None,
            "remote server and no --server-pid: CPU and memory not measured".to_owned(),
        ));
    }
    match procfs::find_listener(port) {
        Some(pid) => Ok((
            Some(pid),
            format!("pid {pid}: the process listening on TCP port {port}"),
        )),
        None => Ok((
            None,
            format!(
                "no single readable process listens on port {port}: CPU and memory not measured \
                 (pass --server-pid)"
            ),
        )),
    }
}
/// Reads the server's missed-deadline and tick counters from its `/metrics` into the hub.
pub(crate) async fn read_server_metrics(ctx: &participant::Ctx) {
    let text = async {
        let r = ctx
            .http
            .get(format!("{}/metrics", ctx.base))
            .bearer_auth(&ctx.admin_token)
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    }
    .await;
    let value = |text: &str, name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let counters = text.and_then(|t| {
        Some((
            value(&t, "earshot_media_deadline_missed_total")?,
            value(&t, "earshot_media_ticks_total")?,
        ))
    });
    ctx.hub.set_server_deadlines(counters);
}

/// Logs progress and samples once a second.
pub(crate) fn spawn_sampler(ctx: Arc<participant::Ctx>, sampler: Arc<Sampler>) -> JoinHandle<()> {
    let hub = Arc::clone(&ctx.hub);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_log = Instant::now();
        tick.tick().await;
        loop {
            tick.tick().await;
            read_server_metrics(&ctx).await;
            let s = sampler.sample(&hub);
            if last_log.elapsed() >= PROGRESS_EVERY {
                last_log = Instant::now();
                info!(
                    t = s.t_s.round(),
                    phase = %s.phase,
                    live = s.sessions_live,
                    established = s.established,
                    failed = s.failed,
                    dropped = s.dropped,
                    ended_by_server = s.ended_by_server,
                    server_cpu_cores = ?s.server_cpu_cores,
                    cpu_ms_per_session_second = ?s.server_cpu_ms_per_session_second,
                    server_rss_mib = ?s.server_rss_kib.map(|k| k / 1024),
                    "loadgen progress"
                );
            }
        }
    })
}
