//! Reorder buffer and loss decisions for one incoming Opus RTP stream.
//!
//! Owns: turning packets as they arrive (any order, duplicates, gaps, u16 sequence wraparound)
//! into a strictly ordered stream of [`JitterOutput`]s, one per RTP sequence number.
//! In-order packets come out at once (no added latency). When a packet is missing, later packets
//! are held up to the current wait (measured from the arrival of the oldest held packet); then
//! the missing packet is declared lost. The wait adapts to the network, as a browser's jitter
//! buffer does: it grows to cover how late reordered packets have been arriving (and jumps when
//! one arrives after its slot was given up), and decays back towards its floor when the network
//! calms down, so a clean path keeps the short wait and a jittery one stops losing packets that
//! were only late. A loss directly followed by a present packet carries that
//! packet's payload in `fec_from`, so the decoder can recover it with Opus in-band FEC.
//!
//! Sans-IO: the clock is passed in; call [`JitterBuffer::poll`] after every push and when
//! [`JitterBuffer::next_deadline`] passes.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Samples in a 20 ms frame at 48 kHz, the assumed packet duration until one is measured.
pub const DEFAULT_PACKET_SAMPLES: u32 = crate::units::FRAME as u32;
/// Packet durations outside this range (2.5 ms ..= 120 ms at 48 kHz) are not Opus packet
/// durations (e.g. a DTX gap) and do not update the measured duration.
const MIN_PACKET_SAMPLES: u32 = 120;
const MAX_PACKET_SAMPLES: u32 = 5760;
/// A packet further than this ahead of the playout point restarts the stream instead of
/// producing thousands of losses (about 20 s of 20 ms packets).
const MAX_JUMP: i64 = 1000;
/// This many late packets in a row (1 s of 20 ms packets) restart the stream.
const MAX_LATE_RUN: u32 = 50;
/// How many past sequence numbers remember whether they were played or given up.
const HISTORY: usize = 1024;
/// Upper bound on packets held while waiting for a missing one (bounded memory).
const MAX_HELD: usize = 256;
/// The adaptive wait is the observed lateness times this, plus [`WAIT_MARGIN`].
const WAIT_HEADROOM: f64 = 1.2;
const WAIT_MARGIN: Duration = Duration::from_millis(5);
/// A packet that came after its slot was given up raises the wait by this factor at once (its
/// exact lateness is unknown: at least the wait it missed).
const LATE_GROWTH: f64 = 1.5;
/// The observed lateness halves every this long without a new observation.
const LATENESS_HALF_LIFE: Duration = Duration::from_secs(10);

/// What comes out of the buffer, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitterOutput {
    /// The packet with this RTP timestamp, to decode normally.
    Packet { timestamp: u32, payload: Bytes },
    /// The packet at this (estimated) timestamp never arrived in time.
    Lost {
        timestamp: u32,
        /// Estimated duration of the missing packet in 48 kHz samples.
        samples: u32,
        /// Payload of the packet right after the lost one, when it is present: decode it with
        /// FEC to recover this frame. `None`: use packet-loss concealment.
        fec_from: Option<Bytes>,
    },
}

/// Counters since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Every packet pushed, including duplicates and late ones.
    pub received: u64,
    /// Packets declared lost (one per `Lost` output).
    pub lost: u64,
    /// Packets that arrived after their slot was played or given up (dropped).
    pub late: u64,
    /// Packets that were already held or played (dropped).
    pub duplicate: u64,
    /// Packets that arrived after a higher sequence number but still in time.
    pub reordered: u64,
    /// Times the stream was restarted: a sequence jump of more than 1000 packets ahead, or 50
    /// late packets in a row (the sender restarted its sequence numbers).
    pub resets: u64,
}

#[derive(Debug)]
struct Held {
    timestamp: u32,
    payload: Bytes,
    arrived: Instant,
}

/// Reorder buffer for one RTP stream (see module docs).
#[derive(Debug)]
pub struct JitterBuffer {
    /// Floor and ceiling of the wait for a missing packet.
    min_wait: Duration,
    max_wait: Duration,
    /// The wait now (between the two), recomputed at every push.
    wait: Duration,
    /// The largest lateness seen recently (before decay) and when it was seen.
    lateness: Duration,
    lateness_at: Option<Instant>,
    /// Extended (unwrapped) sequence number of the next packet to output.
    next: Option<i64>,
    /// Highest extended sequence number pushed so far.
    highest: i64,
    held: BTreeMap<i64, Held>,
    /// Timestamp and extended seq of the last output (packet or loss).
    last_out: Option<(i64, u32)>,
    packet_samples: u32,
    /// Bit per recent sequence number (index ext % HISTORY): played (true) or given up (false).
    played: Box<[bool; HISTORY]>,
    stats: JitterStats,
    /// Outputs already decided but not yet returned (stream reset, overfull buffer).
    ready: VecDeque<JitterOutput>,
    last_push: Option<Instant>,
    /// Consecutive late packets; a long run means the sender restarted its sequence.
    late_run: u32,
}

impl JitterBuffer {
    /// A buffer that always waits `wait` for a missing packet.
    pub fn new(wait: Duration) -> Self {
        Self::adaptive(wait, wait)
    }

    /// A buffer whose wait for a missing packet adapts to the lateness of reordered packets,
    /// between `min_wait` and `max_wait` (see module docs).
    pub fn adaptive(min_wait: Duration, max_wait: Duration) -> Self {
        Self {
            min_wait,
            max_wait: max_wait.max(min_wait),
            wait: min_wait,
            lateness: Duration::ZERO,
            lateness_at: None,
            next: None,
            highest: 0,
            held: BTreeMap::new(),
            last_out: None,
            packet_samples: DEFAULT_PACKET_SAMPLES,
            played: Box::new([false; HISTORY]),
            stats: JitterStats::default(),
            ready: VecDeque::new(),
            last_push: None,
            late_run: 0,
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The packet duration currently assumed for losses (48 kHz samples).
    pub fn packet_samples(&self) -> u32 {
        self.packet_samples
    }

    /// How long a missing packet is waited for now.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Takes `lateness` (how long after a later packet one arrived) into the estimate and
    /// recomputes the wait at `now`.
    fn observe_lateness(&mut self, lateness: Duration, now: Instant) {
        let decayed = self.decayed_lateness(now);
        if lateness >= decayed {
            self.lateness = lateness;
            self.lateness_at = Some(now);
        }
        self.update_wait(now);
    }

    fn decayed_lateness(&self, now: Instant) -> Duration {
        let Some(at) = self.lateness_at else {
            return Duration::ZERO;
        };
        let halvings =
            now.saturating_duration_since(at).as_secs_f64() / LATENESS_HALF_LIFE.as_secs_f64();
        self.lateness.mul_f64(0.5f64.powf(halvings))
    }

    fn update_wait(&mut self, now: Instant) {
        if self.min_wait == self.max_wait {
            return;
        }
        let target = self.decayed_lateness(now).mul_f64(WAIT_HEADROOM) + WAIT_MARGIN;
        self.wait = target.clamp(self.min_wait, self.max_wait);
    }

    /// Number of packets currently held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Accept one packet. Call [`poll`](Self::poll) afterwards until it returns `None`.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: Bytes, now: Instant) {
        self.stats.received += 1;
        self.last_push = Some(now);
        let ext = self.extend(seq);
        let Some(next) = self.next else {
            self.next = Some(ext);
            self.highest = ext;
            self.held.insert(
                ext,
                Held {
                    timestamp,
                    payload,
                    arrived: now,
                },
            );
            return;
        };

        if ext < next {
            if next - ext <= HISTORY as i64 && self.played[slot(ext)] {
                self.stats.duplicate += 1;
                tracing::trace!(seq, "jitter: duplicate dropped");
            } else {
                self.stats.late += 1;
                self.late_run += 1;
                tracing::debug!(
                    seq,
                    wait_ms = self.wait.as_millis() as u64,
                    "jitter: late packet dropped"
                );
                let missed = self.wait.mul_f64(LATE_GROWTH);
                self.observe_lateness(
                    missed.saturating_sub(WAIT_MARGIN).div_f64(WAIT_HEADROOM),
                    now,
                );
                if self.late_run >= MAX_LATE_RUN {
                    // The sender restarted its sequence just below ours: follow it.
                    self.restart_at(ext, timestamp, payload, now);
                }
            }
            return;
        }
        self.late_run = 0;
        if self.held.contains_key(&ext) {
            self.stats.duplicate += 1;
            return;
        }
        if ext - next > MAX_JUMP {
            self.restart_at(ext, timestamp, payload, now);
            return;
        }
        if ext < self.highest {
            self.stats.reordered += 1;
            // How long it came after the first packet that overtook it.
            let overtaken_at = self.held.range(ext + 1..).map(|(_, h)| h.arrived).min();
            if let Some(at) = overtaken_at {
                self.observe_lateness(now.saturating_duration_since(at), now);
            }
        } else {
            self.highest = ext;
            self.update_wait(now);
        }
        self.held.insert(
            ext,
            Held {
                timestamp,
                payload,
                arrived: now,
            },
        );
        // Bounded memory: if far too much is held, stop waiting for the gap now.
        while self.held.len() > MAX_HELD {
            let Some(next) = self.next else { break };
            let out = match self.held.remove(&next) {
                Some(held) => self.emit_packet(next, held),
                None => match self.give_up_next() {
                    Some(out) => out,
                    None => break,
                },
            };
            self.ready.push_back(out);
        }
    }

    /// The next output, if one is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<JitterOutput> {
        if let Some(out) = self.ready.pop_front() {
            return Some(out);
        }
        let next = self.next?;
        if let Some(held) = self.held.remove(&next) {
            return Some(self.emit_packet(next, held));
        }
        let oldest = self.held.values().map(|h| h.arrived).min()?;
        if now >= oldest + self.wait {
            return self.give_up_next();
        }
        None
    }

    /// When [`poll`](Self::poll) should be called next even if no packet arrives.
    /// `None` when nothing is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return self.last_push;
        }
        let next = self.next?;
        if let Some(held) = self.held.get(&next) {
            return Some(held.arrived);
        }
        self.held
            .values()
            .map(|h| h.arrived)
            .min()
            .map(|t| t + self.wait)
    }

    /// Unwrap a 16-bit sequence number to the value nearest the highest seen.
    fn extend(&self, seq: u16) -> i64 {
        if self.next.is_none() {
            // Start well above zero so earlier (reordered) packets stay positive.
            return (1 << 20) + i64::from(seq);
        }
        let base = self.highest & !0xFFFF;
        let candidates = [base - 0x1_0000, base, base + 0x1_0000].map(|b| b + i64::from(seq));
        candidates
            .into_iter()
            .min_by_key(|c| (c - self.highest).abs())
            .unwrap_or(base + i64::from(seq))
    }

    fn emit_packet(&mut self, ext: i64, held: Held) -> JitterOutput {
        if let Some((last_ext, last_ts)) = self.last_out
            && ext - last_ext == 1
        {
            let delta = held.timestamp.wrapping_sub(last_ts);
            if (MIN_PACKET_SAMPLES..=MAX_PACKET_SAMPLES).contains(&delta) {
                self.packet_samples = delta;
            }
        }
        self.played[slot(ext)] = true;
        self.last_out = Some((ext, held.timestamp));
        self.next = Some(ext + 1);
        JitterOutput::Packet {
            timestamp: held.timestamp,
            payload: held.payload,
        }
    }

    /// Declare the next sequence number lost.
    fn give_up_next(&mut self) -> Option<JitterOutput> {
        let next = self.next?;
        let samples = self.gap_packet_samples(next);
        let timestamp = match self.last_out {
            Some((last_ext, last_ts)) => {
                let steps = u32::try_from(next - last_ext).unwrap_or(1);
                last_ts.wrapping_add(samples.wrapping_mul(steps))
            }
            // Nothing played yet: count back from the first held packet.
            None => self
                .held
                .iter()
                .next()
                .map(|(ext, h)| {
                    let steps = u32::try_from(ext - next).unwrap_or(1);
                    h.timestamp.wrapping_sub(samples.wrapping_mul(steps))
                })
                .unwrap_or(0),
        };
        let fec_from = self.held.get(&(next + 1)).map(|h| h.payload.clone());
        self.played[slot(next)] = false;
        self.last_out = Some((next, timestamp));
        self.next = Some(next + 1);
        self.stats.lost += 1;
        tracing::debug!(
            timestamp,
            samples,
            fec = fec_from.is_some(),
            "jitter: packet lost"
        );
        Some(JitterOutput::Lost {
            timestamp,
            samples,
            fec_from,
        })
    }

    /// Duration of the missing packet `next`: spread the timestamp gap up to the first held
    /// packet evenly when that gives a plausible Opus duration, else the last measured one.
    fn gap_packet_samples(&self, next: i64) -> u32 {
        let (Some((last_ext, last_ts)), Some((held_ext, held))) =
            (self.last_out, self.held.iter().next())
        else {
            return self.packet_samples;
        };
        let Ok(steps) = u32::try_from(held_ext - last_ext) else {
            return self.packet_samples;
        };
        if next <= last_ext || steps == 0 {
            return self.packet_samples;
        }
        let span = held.timestamp.wrapping_sub(last_ts);
        let per = span / steps;
        if span.is_multiple_of(steps) && (MIN_PACKET_SAMPLES..=MAX_PACKET_SAMPLES).contains(&per) {
            per
        } else {
            self.packet_samples
        }
    }

    /// Treat `ext` as the start of a new stream: everything held is output first, in order.
    fn restart_at(&mut self, ext: i64, timestamp: u32, payload: Bytes, now: Instant) {
        tracing::warn!(
            jump = ext - self.next.unwrap_or(ext),
            "jitter: sequence jump, restarting"
        );
        self.stats.resets += 1;
        self.late_run = 0;
        self.drain_held_into_ready();
        self.next = Some(ext);
        self.highest = ext;
        let held = Held {
            timestamp,
            payload,
            arrived: now,
        };
        self.held.insert(ext, held);
    }

    /// Output everything held, in order, without loss markers (before a stream restart).
    fn drain_held_into_ready(&mut self) {
        let held = std::mem::take(&mut self.held);
        for (ext, h) in held {
            let out = self.emit_packet(ext, h);
            self.ready.push_back(out);
        }
        self.last_out = None;
    }
}

fn slot(ext: i64) -> usize {
    ext.rem_euclid(HISTORY as i64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(60);

    fn pkt(seq: u16) -> Bytes {
        Bytes::from(seq.to_be_bytes().to_vec())
    }

    fn drain(jb: &mut JitterBuffer, now: Instant) -> Vec<JitterOutput> {
        std::iter::from_fn(|| jb.poll(now)).collect()
    }

    fn ts_of(out: &JitterOutput) -> u32 {
        match out {
            JitterOutput::Packet { timestamp, .. } | JitterOutput::Lost { timestamp, .. } => {
                *timestamp
            }
        }
    }

    #[test]
    fn in_order_packets_come_out_immediately() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        for i in 0..5u16 {
            jb.push(i, u32::from(i) * 960, pkt(i), t0);
            let out = drain(&mut jb, t0);
            assert_eq!(
                out,
                vec![JitterOutput::Packet {
                    timestamp: u32::from(i) * 960,
                    payload: pkt(i)
                }]
            );
        }
        assert_eq!(jb.next_deadline(), None);
        assert_eq!(jb.stats().received, 5);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn swapped_packets_come_out_in_order() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(0, 0, pkt(0), t0);
        assert_eq!(drain(&mut jb, t0).len(), 1);
        jb.push(2, 1920, pkt(2), t0);
        assert!(drain(&mut jb, t0).is_empty(), "must wait for seq 1");
        assert_eq!(jb.next_deadline(), Some(t0 + WAIT));
        let t1 = t0 + Duration::from_millis(5);
        jb.push(1, 960, pkt(1), t1);
        let out = drain(&mut jb, t1);
        assert_eq!(out.iter().map(ts_of).collect::<Vec<_>>(), vec![960, 1920]);
        assert_eq!(jb.stats().reordered, 1);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn one_lost_packet_carries_fec_from_next() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(10, 9600, pkt(10), t0);
        drain(&mut jb, t0);
        jb.push(12, 11520, pkt(12), t0);
        jb.push(13, 12480, pkt(13), t0);
        assert!(drain(&mut jb, t0 + WAIT - Duration::from_millis(1)).is_empty());
        let out = drain(&mut jb, t0 + WAIT);
        assert_eq!(
            out[0],
            JitterOutput::Lost {
                timestamp: 10560,
                samples: 960,
                fec_from: Some(pkt(12))
            }
        );
        assert_eq!(
            out[1],
            JitterOutput::Packet {
                timestamp: 11520,
                payload: pkt(12)
            }
        );
        assert_eq!(
            out[2],
            JitterOutput::Packet {
                timestamp: 12480,
                payload: pkt(13)
            }
        );
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn burst_loss_uses_fec_only_for_the_last_one() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(0, 0, pkt(0), t0);
        drain(&mut jb, t0);
        jb.push(4, 4 * 960, pkt(4), t0);
        let out = drain(&mut jb, t0 + WAIT);
        assert_eq!(out.len(), 4);
        assert_eq!(
            out.iter().map(ts_of).collect::<Vec<_>>(),
            vec![960, 1920, 2880, 3840]
        );
        let fec: Vec<bool> = out
            .iter()
            .map(|o| {
                matches!(
                    o,
                    JitterOutput::Lost {
                        fec_from: Some(_),
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(fec, vec![false, false, true, false]);
        assert!(matches!(
            out[3],
            JitterOutput::Packet {
                timestamp: 3840,
                ..
            }
        ));
        assert_eq!(jb.stats().lost, 3);
    }

    #[test]
    fn gap_spread_over_known_timestamps_when_duration_changed() {
        // Only one packet seen (duration unknown, 960 assumed), then 10 ms packets after a gap.
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(0, 0, pkt(0), t0);
        jb.push(3, 3 * 480, pkt(3), t0);
        let out = drain(&mut jb, t0 + WAIT);
        assert_eq!(
            out.iter().map(ts_of).collect::<Vec<_>>(),
            vec![0, 480, 960, 1440]
        );
        assert!(matches!(out[1], JitterOutput::Lost { samples: 480, .. }));
    }

    #[test]
    fn loss_duration_follows_measured_packet_duration() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(0, 0, pkt(0), t0);
        jb.push(1, 480, pkt(1), t0);
        jb.push(3, 1440, pkt(3), t0);
        let out = drain(&mut jb, t0 + WAIT);
        assert_eq!(
            out[2],
            JitterOutput::Lost {
                timestamp: 960,
                samples: 480,
                fec_from: Some(pkt(3))
            }
        );
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(0, 0, pkt(0), t0);
        drain(&mut jb, t0);
        jb.push(0, 0, pkt(0), t0); // already played
        jb.push(2, 1920, pkt(2), t0);
        jb.push(2, 1920, pkt(2), t0); // already held
        assert!(drain(&mut jb, t0).is_empty());
        assert_eq!(jb.stats().duplicate, 2);
        let out = drain(&mut jb, t0 + WAIT);
        assert_eq!(out.len(), 2);
    }

    /// Packets 20 ms apart, every fourth one overtaken and arriving `late` after its successor.
    fn jittery_stream(jb: &mut JitterBuffer, t0: Instant, from: u16, n: u16, late: Duration) {
        let step = Duration::from_millis(20);
        let mut arrivals: Vec<(Instant, u16)> = (from..from + n)
            .map(|seq| {
                let sent = t0 + step * u32::from(seq);
                let at = if seq % 4 == 1 {
                    sent + step + late
                } else {
                    sent
                };
                (at, seq)
            })
            .collect();
        arrivals.sort();
        for (at, seq) in arrivals {
            // The clock passes the deadlines between arrivals, as the session's tick does.
            while let Some(d) = jb.next_deadline() {
                if d > at {
                    break;
                }
                drain(jb, d);
            }
            jb.push(seq, u32::from(seq) * 960, pkt(seq), at);
            drain(jb, at);
        }
    }

    #[test]
    fn adaptive_wait_grows_until_late_packets_stop_and_decays_when_the_network_calms() {
        let t0 = Instant::now();
        let (min, max) = (Duration::from_millis(30), Duration::from_millis(120));
        let mut jb = JitterBuffer::adaptive(min, max);
        assert_eq!(jb.wait(), min);
        // Reordered by 45 ms: more than the floor.
        jittery_stream(&mut jb, t0, 0, 200, Duration::from_millis(45));
        let first = jb.stats();
        assert!(first.late >= 1, "{first:?}");
        assert!(
            first.late <= 3,
            "the wait grew after the first late ones: {first:?}"
        );
        assert!(jb.wait() > Duration::from_millis(45), "{:?}", jb.wait());
        assert!(jb.wait() <= max);
        // Once grown, the same reordering loses nothing.
        jittery_stream(&mut jb, t0, 200, 200, Duration::from_millis(45));
        let second = jb.stats();
        assert_eq!(second.late, first.late, "{second:?}");
        assert!(second.reordered > first.reordered);
        // A minute of in-order packets: the wait is back near the floor.
        jittery_stream(&mut jb, t0, 400, 3000, Duration::ZERO);
        assert!(
            jb.wait() < min + Duration::from_millis(5),
            "{:?}",
            jb.wait()
        );
    }

    #[test]
    fn a_fixed_wait_never_moves() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(30);
        let mut jb = JitterBuffer::new(wait);
        jittery_stream(&mut jb, t0, 0, 200, Duration::from_millis(45));
        assert_eq!(jb.wait(), wait);
        assert!(jb.stats().late > 40, "{:?}", jb.stats());
    }

    #[test]
    fn late_packets_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(0, 0, pkt(0), t0);
        jb.push(2, 1920, pkt(2), t0);
        let out = drain(&mut jb, t0 + WAIT);
        assert_eq!(out.len(), 3);
        jb.push(1, 960, pkt(1), t0 + WAIT * 2);
        assert!(drain(&mut jb, t0 + WAIT * 2).is_empty());
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.stats().duplicate, 0);
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        let ts0 = u32::MAX - 960 * 2 + 1; // timestamps wrap too
        let mut per_push = Vec::new();
        for seq in [65534u16, 65535, 1, 0, 2] {
            let k = u32::from(seq.wrapping_sub(65534));
            jb.push(seq, ts0.wrapping_add(k * 960), pkt(seq), t0);
            let seqs: Vec<u16> = drain(&mut jb, t0)
                .iter()
                .map(|o| match o {
                    JitterOutput::Packet { payload, .. } => {
                        u16::from_be_bytes([payload[0], payload[1]])
                    }
                    JitterOutput::Lost { .. } => u16::MAX - 1000, // marker: must not happen
                })
                .collect();
            per_push.push(seqs);
        }
        let expected: Vec<Vec<u16>> = vec![vec![65534], vec![65535], vec![], vec![0, 1], vec![2]];
        assert_eq!(per_push, expected);
        assert_eq!(jb.stats().lost, 0);
        assert_eq!(jb.stats().reordered, 1);
        assert_eq!(jb.packet_samples(), 960);
    }

    #[test]
    fn wraparound_order_is_exact() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        let mut got = Vec::new();
        for seq in [65534u16, 65535, 1, 0, 2] {
            jb.push(seq, u32::from(seq.wrapping_sub(65534)) * 960, pkt(seq), t0);
            got.extend(drain(&mut jb, t0));
        }
        let ts: Vec<u32> = got.iter().map(ts_of).collect();
        assert_eq!(ts, vec![0, 960, 1920, 2880, 3840]);
    }

    #[test]
    fn sequence_restart_just_below_is_followed_after_a_run_of_late_packets() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        for seq in 500..510u16 {
            jb.push(seq, u32::from(seq) * 960, pkt(seq), t0);
        }
        assert_eq!(drain(&mut jb, t0).len(), 10);
        let mut out = Vec::new();
        for seq in 400..460u16 {
            jb.push(seq, u32::from(seq) * 960, pkt(seq), t0);
            out.extend(drain(&mut jb, t0));
        }
        assert_eq!(jb.stats().late, 50);
        assert_eq!(jb.stats().resets, 1);
        assert_eq!(out.len(), 11, "packets 449..=459 play after the restart");
        assert_eq!(
            out[0],
            JitterOutput::Packet {
                timestamp: 449 * 960,
                payload: pkt(449)
            }
        );
    }

    #[test]
    fn overfull_buffer_gives_up_without_dropping_present_packets() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(0, 0, pkt(0), t0); // not polled: stays held
        for seq in 2..=(MAX_HELD as u16 + 2) {
            jb.push(seq, u32::from(seq) * 960, pkt(seq), t0);
        }
        let out = drain(&mut jb, t0);
        assert_eq!(out.len(), MAX_HELD + 3);
        assert_eq!(
            out[0],
            JitterOutput::Packet {
                timestamp: 0,
                payload: pkt(0)
            }
        );
        assert!(matches!(out[1], JitterOutput::Lost { timestamp: 960, .. }));
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn huge_jump_restarts_instead_of_thousands_of_losses() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(WAIT);
        jb.push(100, 0, pkt(100), t0);
        drain(&mut jb, t0);
        jb.push(30000, 5_000_000, pkt(30000), t0);
        let out = drain(&mut jb, t0);
        assert_eq!(out.len(), 1);
        assert_eq!(jb.stats().resets, 1);
        assert_eq!(jb.stats().lost, 0);
    }
}
