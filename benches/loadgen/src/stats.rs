//! The load generator's arithmetic: percentiles and what a receiver learns from one RTP
//! stream (RFC 3550: extended highest sequence number, expected and lost packets, interarrival
//! jitter). Pure functions and plain state, so the report's figures are unit-tested.

use serde::Serialize;

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values; `None` when empty.
/// NaNs are ignored.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(percentile_sorted(&v, p))
}

/// Nearest-rank percentile of sorted, non-empty values.
fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Count, mean, p50, p90, p99 and max of a set of values (milliseconds in the report).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Distribution {
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Self {
                count: 0,
                mean: None,
                p50: None,
                p90: None,
                p99: None,
                max: None,
            };
        }
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        Self {
            count: v.len(),
            mean: Some(round(v.iter().sum::<f64>() / v.len() as f64)),
            p50: Some(round(percentile_sorted(&v, 50.0))),
            p90: Some(round(percentile_sorted(&v, 90.0))),
            p99: Some(round(percentile_sorted(&v, 99.0))),
            max: v.last().copied().map(round),
        }
    }
}

/// What one new packet changed in a [`RtpReceiver`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketDelta {
    /// Increase of the expected packet count (from sequence numbers).
    pub expected: u64,
    /// Increase of the packets expected by the wall clock (one per `frame_ms` since the
    /// first packet).
    pub expected_by_clock: u64,
}

/// Receiver statistics of one RTP stream (RFC 3550 section 6.4.1 and appendix A.3, A.8).
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    clock_rate: f64,
    frame_secs: f64,
    /// Extended sequence number of the first packet.
    base: Option<i64>,
    /// Highest extended sequence number seen.
    max_ext: i64,
    received: u64,
    /// Interarrival jitter in RTP timestamp units.
    jitter: f64,
    /// (arrival in seconds, RTP timestamp) of the previous packet.
    last: Option<(f64, u32)>,
    first_arrival: f64,
    expected_by_clock: u64,
}

impl RtpReceiver {
    /// `clock_rate` of the RTP timestamps (48 000 for Opus), `frame_ms` the packet interval
    /// the sender promises (20 ms).
    pub fn new(clock_rate: u32, frame_ms: u32) -> Self {
        Self {
            clock_rate: f64::from(clock_rate),
            frame_secs: f64::from(frame_ms) / 1000.0,
            base: None,
            max_ext: 0,
            received: 0,
            jitter: 0.0,
            last: None,
            first_arrival: 0.0,
            expected_by_clock: 0,
        }
    }

    /// One packet with sequence number `seq` and RTP timestamp `ts` arrived at `arrival`
    /// seconds (any monotonic origin).
    pub fn on_packet(&mut self, seq: u16, ts: u32, arrival: f64) -> PacketDelta {
        self.received += 1;
        let mut delta = PacketDelta::default();
        match self.base {
            None => {
                let ext = i64::from(seq);
                self.base = Some(ext);
                self.max_ext = ext;
                self.first_arrival = arrival;
                self.expected_by_clock = 1;
                delta.expected = 1;
                delta.expected_by_clock = 1;
            }
            Some(_) => {
                // Nearest unwrapping of the 16-bit number around the highest seen.
                let step = i64::from(seq.wrapping_sub(self.max_ext as u16) as i16);
                if step > 0 {
                    self.max_ext += step;
                    delta.expected = step as u64;
                }
                let by_clock =
                    ((arrival - self.first_arrival) / self.frame_secs + 1e-6).floor() as u64 + 1;
                if by_clock > self.expected_by_clock {
                    delta.expected_by_clock = by_clock - self.expected_by_clock;
                    self.expected_by_clock = by_clock;
                }
            }
        }
        // RFC 3550 A.8: D(i,j) = (Rj - Ri) - (Sj - Si) in timestamp units,
        // J += (|D| - J) / 16.
        if let Some((last_arrival, last_ts)) = self.last {
            let arrival_units = (arrival - last_arrival) * self.clock_rate;
            let ts_units = f64::from(ts.wrapping_sub(last_ts) as i32);
            let d = arrival_units - ts_units;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last = Some((arrival, ts));
        delta
    }

    /// Packets received (duplicates included, as RFC 3550 counts them).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the sequence numbers: highest - first + 1.
    pub fn expected(&self) -> u64 {
        match self.base {
            Some(base) => (self.max_ext - base + 1) as u64,
            None => 0,
        }
    }

    /// Packets lost: expected - received, never negative (duplicates can exceed losses).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Packets expected from the wall clock: one per frame interval since the first arrival.
    pub fn expected_by_clock(&self) -> u64 {
        self.expected_by_clock
    }

    /// RFC 3550 interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter / self.clock_rate * 1000.0
    }
}

/// `part / whole` in percent, `None` when `whole` is 0.
pub fn pct(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| (part / whole * 100.0 * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN, 4.0], 50.0), Some(4.0));
        let d = Distribution::of(&[10.0, 20.0, 30.0, 40.0]);
        assert_eq!(
            (d.count, d.mean, d.p50, d.p99, d.max),
            (4, Some(25.0), Some(20.0), Some(40.0), Some(40.0))
        );
        assert_eq!(Distribution::of(&[]).p50, None);
    }

    #[test]
    fn perfectly_paced_stream_has_no_jitter_or_loss() {
        let mut r = RtpReceiver::new(48_000, 20);
        for i in 0..100u32 {
            r.on_packet(i as u16, i * 960, f64::from(i) * 0.02);
        }
        assert_eq!((r.received(), r.expected(), r.lost()), (100, 100, 0));
        assert_eq!(r.expected_by_clock(), 100);
        assert!(r.jitter_ms() < 1e-9, "{}", r.jitter_ms());
    }

    #[test]
    fn jitter_follows_rfc3550_recursion() {
        // Second packet 5 ms late relative to its timestamp: |D| = 240 units, J = 240/16.
        let mut r = RtpReceiver::new(48_000, 20);
        r.on_packet(0, 0, 0.0);
        r.on_packet(1, 960, 0.025);
        assert!(
            (r.jitter_ms() - 5.0 / 16.0).abs() < 1e-9,
            "{}",
            r.jitter_ms()
        );
        // Third on time again relative to the second's timestamp spacing (D = -240 units):
        // J = 15 + (240 - 15) / 16.
        r.on_packet(2, 1920, 0.040);
        let expected_units = 15.0 + (240.0 - 15.0) / 16.0;
        assert!((r.jitter_ms() - expected_units / 48.0).abs() < 1e-9);
        // Alternating 0 / 10 ms lateness converges near 10 ms (|D| is always 480 units).
        let mut r = RtpReceiver::new(48_000, 20);
        for i in 0..2000u32 {
            let late = if i % 2 == 1 { 0.010 } else { 0.0 };
            r.on_packet(i as u16, i * 960, f64::from(i) * 0.02 + late);
        }
        assert!((r.jitter_ms() - 10.0).abs() < 1e-6, "{}", r.jitter_ms());
    }

    #[test]
    fn loss_counts_gaps_across_sequence_wrap() {
        let mut r = RtpReceiver::new(48_000, 20);
        let mut seq = 65_530u16;
        let mut ts = 4_294_960_000u32; // RTP timestamps wrap too
        let mut sent = 0;
        for i in 0..20u32 {
            if i != 5 && i != 12 {
                r.on_packet(seq, ts, f64::from(i) * 0.02);
                sent += 1;
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(960);
        }
        assert_eq!(r.received(), sent);
        assert_eq!(r.expected(), 20);
        assert_eq!(r.lost(), 2);
        assert!(r.jitter_ms() < 1e-6);
        // A late (reordered) packet does not move the highest sequence number back.
        let d = r.on_packet(seq.wrapping_sub(15), 0, 0.5);
        assert_eq!(d.expected, 0);
        assert_eq!(r.expected(), 20);
    }

    #[test]
    fn clock_expectation_sees_a_stalled_sender() {
        // 50 packets over one second, then nothing for a second, then 10 more: the sequence
        // numbers show no loss but the clock expected 50 more.
        let mut r = RtpReceiver::new(48_000, 20);
        for i in 0..50u32 {
            r.on_packet(i as u16, i * 960, f64::from(i) * 0.02);
        }
        let mut by_clock = 0;
        for i in 50..60u32 {
            by_clock += r
                .on_packet(i as u16, i * 960, 2.0 + f64::from(i - 50) * 0.02)
                .expected_by_clock;
        }
        assert_eq!(r.lost(), 0);
        assert_eq!(r.expected_by_clock(), 110);
        assert_eq!(by_clock, 60);
        assert_eq!(pct(60.0, 110.0), Some(54.545));
        assert_eq!(pct(1.0, 0.0), None);
    }
}
