//! What this process says about itself as a media node (F13): the sessions whose media it
//! holds, how many it takes, the share of its cores in use and the 20 ms deadlines it missed
//! since its previous announcement, and whether it drains. The placement table of every API
//! node is built from these (`earshot_signaling::placement`).

use earshot_media::engine::Engine;
use earshot_signaling::cluster::Cluster;
use earshot_signaling::event_bus::nats::NatsClient;
use earshot_signaling::media_port::MediaEvent;
use earshot_signaling::placement::NodeAnnouncement;
use earshot_signaling::service::SessionService;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Takes one announcement at a time; each covers the time since the previous one.
pub struct NodeSampler {
    node_id: String,
    http_url: String,
    capacity: u32,
    cores: f64,
    draining: Arc<AtomicBool>,
    last_cpu: Duration,
    last_at: Instant,
    last_missed: u64,
}

impl NodeSampler {
    /// A sampler for node `node_id`, reached by other nodes at `http_url`, that takes at most
    /// `capacity` sessions; `draining` is the switch an operator turns on to drain the node.
    pub fn new(
        node_id: &str,
        http_url: &str,
        capacity: u32,
        draining: Arc<AtomicBool>,
    ) -> NodeSampler {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        NodeSampler {
            node_id: node_id.to_string(),
            http_url: http_url.to_string(),
            capacity,
            cores,
            draining,
            last_cpu: process_cpu(),
            last_at: Instant::now(),
            last_missed: 0,
        }
    }

    /// The node as it is now.
    pub fn sample(&mut self, engine: &Engine) -> NodeAnnouncement {
        let (cpu, at) = (process_cpu(), Instant::now());
        let wall = at.duration_since(self.last_at).as_secs_f64();
        let used = cpu.saturating_sub(self.last_cpu).as_secs_f64();
        let share = if wall > 0.0 {
            (used / wall / self.cores).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let missed = engine.metrics().deadline_missed();
        let session_ids = engine.session_ids();
        let announcement = NodeAnnouncement {
            node_id: self.node_id.clone(),
            http_url: self.http_url.clone(),
            sessions: u32::try_from(session_ids.len()).unwrap_or(u32::MAX),
            capacity: self.capacity,
            cpu: share as f32,
            missed_deadlines: missed.saturating_sub(self.last_missed),
            draining: self.draining.load(Ordering::Relaxed),
            session_ids,
        };
        (self.last_cpu, self.last_at, self.last_missed) = (cpu, at, missed);
        announcement
    }
}

/// Every announcement interval: this node's announcement into its own table (and to every
/// node over NATS, when there is a bus), and the media of the sessions of nodes lost since
/// the last round reported lost to the session service (the lifecycle's `MediaLost`: the
/// disconnect grace starts, the participant's page reconnects and lands on a live node).
pub fn spawn_node_loop(
    mut sampler: NodeSampler,
    engine: Arc<Engine>,
    cluster: Arc<Cluster>,
    nats: Option<NatsClient>,
    sessions: Arc<SessionService>,
) {
    let interval = Duration::from_millis(earshot_signaling::cluster::ANNOUNCE_INTERVAL_MS as u64);
    tokio::spawn(async move {
        let mut may_report_losses = HearingOthers::default();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let announcement = sampler.sample(&engine);
            if let Some(nats) = &nats {
                earshot_signaling::cluster::nats::announce(nats, &announcement).await;
            }
            cluster.hear(announcement);
            let hearing = nats.as_ref().is_none_or(NatsClient::connected);
            if !may_report_losses.update(hearing, Instant::now()) {
                continue;
            }
            for lost in cluster.take_lost() {
                tracing::warn!(node = %lost.node_id, sessions = lost.session_ids.len(), "a media node is lost");
                for session_id in lost.session_ids {
                    sessions
                        .handle_media_event(MediaEvent::Disconnected { session_id })
                        .await;
                }
            }
        }
    });
}

/// Whether this node has heard the others long enough to call a silent one lost: its own
/// bus connection up for three and a half announcement intervals. Without it, a NATS outage
/// (or this node's own reconnect) would look like every other node dying, and their live
/// sessions would be reported as media lost.
#[derive(Debug, Default)]
struct HearingOthers {
    since: Option<Instant>,
}

impl HearingOthers {
    fn update(&mut self, connected: bool, now: Instant) -> bool {
        if !connected {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        let enough =
            Duration::from_millis(earshot_signaling::cluster::ANNOUNCE_INTERVAL_MS as u64 * 7 / 2);
        now.duration_since(since) >= enough
    }
}

/// CPU time this process has used (user + system).
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use earshot_media::engine::EngineConfig;

    #[test]
    fn losses_are_reported_only_after_hearing_the_others_for_a_while() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut h = HearingOthers::default();
        assert!(!h.update(true, at(0)), "just connected");
        assert!(!h.update(true, at(3_000)));
        assert!(h.update(true, at(3_500)));
        // The bus goes down: nothing is reported, and after it is back the wait starts over.
        assert!(!h.update(false, at(4_000)));
        assert!(!h.update(true, at(5_000)));
        assert!(!h.update(true, at(8_000)));
        assert!(h.update(true, at(8_500)));
    }

    #[test]
    fn a_sample_says_what_the_node_holds_and_spends() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let (engine, _events) = Engine::new(EngineConfig::default());
        let draining = Arc::new(AtomicBool::new(false));
        let mut sampler = NodeSampler::new("node-a", "http://127.0.0.1:1", 40, draining.clone());
        // Burn some CPU so the share is above zero.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let a = sampler.sample(&engine);
        assert_eq!(a.node_id, "node-a");
        assert_eq!((a.sessions, a.capacity), (0, 40));
        assert!(a.session_ids.is_empty());
        assert!(a.cpu > 0.0 && a.cpu <= 1.0, "cpu share {}", a.cpu);
        assert_eq!(a.missed_deadlines, 0);
        assert!(!a.draining);
        draining.store(true, Ordering::Relaxed);
        let b = sampler.sample(&engine);
        assert!(b.draining);
        assert!(!b.takes_sessions());
    }
}
