//! Is the browser still there? The liveness rule of one ICE-lite server peer, sans-IO: the
//! caller reports when the peer connected and when the last datagram from it arrived, and polls
//! with the time; the rule answers with the changes to report.
//!
//! An ICE-lite agent sends no checks, so it only hears the client: its RFC 7675 consent checks
//! (Chromium about every 2.5 s; Firefox and aiortc every 4-6 s, one try each) and its media and
//! RTCP. Any of them is a sign of life (the WHIP spec, RFC 9725, leaves consent to ICE, and a
//! client that keeps sending media has consent). webrtc 0.21 counted only STUN and called the
//! pair disconnected 5 s after the last check, which cut Firefox and aiortc clients within
//! seconds; its timers are turned off and this rule decides instead, with pion/ice's ICE-lite
//! figures: quiet after 10 s of nothing (reported, never acted on: it may come back), failed
//! after 35 s (RFC 7675's 30 s consent expiry plus margin), which closes the peer. A peer that
//! has not connected 35 s after its answer has failed too, so an abandoned offer is reaped.

use std::time::{Duration, Instant};

/// The timers of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Nothing heard for this long: the link is quiet (reported; the peer stays up).
    pub quiet_after: Duration,
    /// Nothing heard for this long, or not connected this long after the answer: failed.
    pub failed_after: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            quiet_after: Duration::from_secs(10),
            failed_after: Duration::from_secs(35),
        }
    }
}

/// A change of the link to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkChange {
    /// Nothing heard for `quiet_after`.
    Quiet,
    /// Heard again after being quiet.
    Back,
    /// Nothing heard for `failed_after` (or never connected): the peer is to be closed.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Answered, not connected yet (since the answer).
    Connecting {
        since: Instant,
    },
    Up {
        since: Instant,
    },
    Quiet {
        since: Instant,
    },
    Failed,
}

/// The liveness rule of one peer.
#[derive(Debug)]
pub(crate) struct Liveness {
    config: LivenessConfig,
    link: Link,
}

impl Liveness {
    /// A peer whose answer was made at `now`.
    pub(crate) fn new(config: LivenessConfig, now: Instant) -> Self {
        Self {
            config,
            link: Link::Connecting { since: now },
        }
    }

    /// DTLS is up: the silence is counted from here.
    pub(crate) fn connected(&mut self, now: Instant) {
        if let Link::Connecting { .. } = self.link {
            self.link = Link::Up { since: now };
        }
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.link == Link::Failed
    }

    /// The change due at `now`, given the arrival of the last datagram from the peer.
    pub(crate) fn poll(&mut self, now: Instant, last_heard: Option<Instant>) -> Option<LinkChange> {
        let (since, quiet) = match self.link {
            Link::Failed => return None,
            Link::Connecting { since } => {
                if now.saturating_duration_since(since) >= self.config.failed_after {
                    self.link = Link::Failed;
                    return Some(LinkChange::Failed);
                }
                return None;
            }
            Link::Up { since } => (since, false),
            Link::Quiet { since } => (since, true),
        };
        let heard = last_heard.map_or(since, |t| t.max(since));
        let silent = now.saturating_duration_since(heard);
        if silent >= self.config.failed_after {
            self.link = Link::Failed;
            Some(LinkChange::Failed)
        } else if silent >= self.config.quiet_after {
            self.link = Link::Quiet { since };
            (!quiet).then_some(LinkChange::Quiet)
        } else {
            self.link = Link::Up { since };
            quiet.then_some(LinkChange::Back)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Polls every 100 ms from `from` to `to` (seconds after `t0`) with checks arriving at
    /// `heard` (seconds); returns each change with the time it was reported.
    fn run(
        l: &mut Liveness,
        t0: Instant,
        heard: &[f64],
        from: f64,
        to: f64,
    ) -> Vec<(f64, LinkChange)> {
        let mut out = Vec::new();
        let (first_step, last_step) = ((from * 10.0).round() as u32, (to * 10.0).round() as u32);
        for step in first_step..=last_step {
            let t = f64::from(step) / 10.0;
            let now = t0 + secs(t);
            let last = heard
                .iter()
                .copied()
                .filter(|h| *h <= t)
                .fold(None, |acc: Option<f64>, h| {
                    Some(acc.map_or(h, |a| a.max(h)))
                })
                .map(|h| t0 + secs(h));
            if let Some(c) = l.poll(now, last) {
                out.push((t, c));
            }
        }
        out
    }

    #[test]
    fn checks_six_seconds_apart_never_make_the_link_quiet() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        l.connected(t0 + secs(0.1));
        // A client with no media and consent checks 6 s apart, for 90 s.
        let heard: Vec<f64> = (0..=15).map(|i| 0.1 + 6.0 * i as f64).collect();
        assert_eq!(run(&mut l, t0, &heard, 0.0, 90.0), vec![]);
    }

    #[test]
    fn media_counts_as_much_as_checks() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        l.connected(t0);
        // No check at all after connecting, but audio every 20 ms for 60 s.
        let heard: Vec<f64> = (0..3000).map(|i| 0.02 * i as f64).collect();
        assert_eq!(run(&mut l, t0, &heard, 0.0, 60.0), vec![]);
    }

    #[test]
    fn silence_is_quiet_at_ten_seconds_and_failed_at_thirty_five() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        l.connected(t0);
        // Heard until 5 s, then nothing.
        let heard: Vec<f64> = (0..=50).map(|i| 0.1 * i as f64).collect();
        let changes = run(&mut l, t0, &heard, 0.0, 60.0);
        assert_eq!(
            changes,
            vec![(15.0, LinkChange::Quiet), (40.0, LinkChange::Failed)]
        );
        assert!(l.has_failed());
        // Nothing after failing, even if a late packet shows up.
        assert_eq!(l.poll(t0 + secs(61.0), Some(t0 + secs(61.0))), None);
    }

    #[test]
    fn a_quiet_link_that_is_heard_again_comes_back() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        l.connected(t0);
        // Heard at 0 s, then a 12 s hole, then steadily again from 12 s.
        let mut heard = vec![0.0];
        heard.extend((0..100).map(|i| 12.0 + 0.1 * i as f64));
        let changes = run(&mut l, t0, &heard, 0.0, 21.0);
        assert_eq!(
            changes,
            vec![(10.0, LinkChange::Quiet), (12.0, LinkChange::Back)]
        );
        assert!(!l.has_failed());
    }

    #[test]
    fn a_peer_that_never_connects_fails_after_the_failure_time() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        // Checks arrive (ICE works) but DTLS never completes.
        let heard: Vec<f64> = (0..40).map(|i| i as f64).collect();
        assert_eq!(
            run(&mut l, t0, &heard, 0.0, 40.0),
            vec![(35.0, LinkChange::Failed)]
        );
        // Connecting after failure changes nothing.
        l.connected(t0 + secs(41.0));
        assert!(l.has_failed());
    }

    #[test]
    fn silence_is_counted_from_the_connection_not_from_the_answer() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        // Nothing heard before the connection (no datagram recorded yet), connected at 20 s.
        assert_eq!(l.poll(t0 + secs(20.0), None), None);
        l.connected(t0 + secs(20.0));
        assert_eq!(l.poll(t0 + secs(29.9), None), None);
        assert_eq!(l.poll(t0 + secs(30.0), None), Some(LinkChange::Quiet));
    }
}
