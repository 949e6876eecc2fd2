//! Server-added latency through the agent bridge, measured from outside the server (F5, F12).
//!
//! Each participant with a test agent owns one [`Probe`]: the participant notes when it sent
//! every RTP packet and when every AI packet arrived; the agent notes when every participant
//! frame arrived and when it sent every frame of its talk. [`Probe::drain`] pairs them:
//!
//! - **participant -> agent**: the server forwards one 20 ms frame per participant packet as
//!   soon as it has processed it, and the frame's `timestamp` counts 20 ms steps of the
//!   participant's stream. Frame `m` belongs to packet `m + offset`; the offset is the largest
//!   for which no frame would arrive before its packet was sent (causality: on one clock, a
//!   frame cannot leave before its packet arrived). Latency = frame arrival - packet send.
//! - **agent -> participant**: the agent sends each talk at real-time pace as one unbroken
//!   sound; the n-th sounding AI packet of a talk carries the n-th agent frame (the server
//!   plays the talk's audio in order, one 20 ms frame per packet; an underrun sends a silence
//!   packet, which is not counted). Silence is recognised by its bytes: the server sends one
//!   encoded packet of digital silence, the same every time (learned from the stream's first
//!   packet, which comes before the agent's first talk); a size threshold would misjudge both
//!   ways: Opus' speech mode (SILK) codes a quiet onset in a few bytes, and its music mode
//!   (CELT, fullband) codes digital silence in about 50 bytes. Latency = packet arrival - frame send. The server sends on
//!   its own 20 ms clock, so a frame may wait up to one frame for its slot: the codec's own
//!   frame. The slot grid is read from the AI packets themselves (arrival - RTP timestamp,
//!   minimum over the session), and the latency *beyond* that wait is reported beside the raw
//!   figure; the latency bar of docs/FEATURES.md (p99 <= 2 ms beyond the codec's own frame) and
//!   the capacity limit apply to it.
//!
//! The first second of a stream is not counted: participant frames queued while the bridge
//! was still dialling the agent arrive in a burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::stats::Distribution;

const FRAME: Duration = Duration::from_millis(20);
/// Frames at a stream's start that are not counted (the bridge was connecting).
const WARMUP_FRAMES: u64 = 50;
/// Only when the stream's first packet came after a talk had begun (so it cannot be taken for
/// the silence packet): packets at most this long count as silence.
const SILENCE_PACKET_MAX_BYTES: usize = 12;
/// RTP clock of Opus.
const CLOCK_RATE: f64 = 48_000.0;

pub const NOTE_NO_AGENT: &str =
    "measured only when the generator plays the agent too: run with --agent";

/// One session's timing records, shared by its participant and its agent.
#[derive(Debug, Default)]
pub struct Probe {
    inner: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    /// Send instant of every participant packet, by index.
    sent: Vec<Instant>,
    /// Participant frames at the agent: (20 ms step from the stream's `timestamp`, arrival).
    at_agent: Vec<(u64, Instant)>,
    /// Frames of this many leading `at_agent` entries have been reported.
    at_agent_done: usize,
    /// Current pairing: frame step m belongs to packet m + offset.
    offset: Option<i64>,
    /// The agent's talks: send instant of every frame.
    talks: Vec<Vec<Instant>>,
    /// Sounding AI packets: (talk, index within the talk, arrival).
    ai_packets: Vec<(usize, usize, Instant)>,
    ai_done: usize,
    /// Talk being counted and how many of its sounding packets were seen.
    counting: Option<(usize, usize)>,
    /// First AI packet's RTP timestamp, and the earliest `arrival - (timestamp - first)`
    /// seen: the server's send slot grid.
    rtp_first: Option<u32>,
    grid: Option<Instant>,
    /// The server's packet of digital silence (the stream's first packet, when it arrived
    /// before the first talk began).
    silence: Option<Vec<u8>>,
}

/// Latencies paired by one [`Probe::drain`], in milliseconds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Paired {
    pub participant_to_agent: Vec<f64>,
    pub agent_to_participant: Vec<f64>,
    pub agent_to_participant_beyond_slot: Vec<f64>,
}

fn lock(m: &Mutex<Records>) -> std::sync::MutexGuard<'_, Records> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a - b` in milliseconds, negative when `a` is earlier.
fn diff_ms(a: Instant, b: Instant) -> f64 {
    if a >= b { ms(a - b) } else { -ms(b - a) }
}

impl Probe {
    /// The participant sent its next packet (call just before sending).
    pub fn packet_sent(&self, at: Instant) {
        lock(&self.inner).sent.push(at);
    }

    /// The agent received a participant frame with stream `timestamp_ms`.
    pub fn frame_at_agent(&self, timestamp_ms: u64, at: Instant) {
        lock(&self.inner).at_agent.push((timestamp_ms / 20, at));
    }

    /// The agent begins a talk.
    pub fn talk_started(&self) {
        lock(&self.inner).talks.push(Vec::new());
    }

    /// The agent sends the next frame of its talk (call just before sending).
    pub fn talk_frame_sent(&self, at: Instant) {
        if let Some(talk) = lock(&self.inner).talks.last_mut() {
            talk.push(at);
        }
    }

    /// An AI packet reached the participant.
    pub fn ai_packet(&self, rtp_timestamp: u32, payload: &[u8], at: Instant) {
        let mut r = lock(&self.inner);
        if r.rtp_first.is_none() && r.talks.is_empty() {
            r.silence = Some(payload.to_vec());
        }
        let first = *r.rtp_first.get_or_insert(rtp_timestamp);
        // (The 32-bit clock wraps after 24 h at 48 kHz: far beyond a session.)
        let media =
            Duration::from_secs_f64(f64::from(rtp_timestamp.wrapping_sub(first)) / CLOCK_RATE);
        if let Some(slot0) = at.checked_sub(media) {
            r.grid = Some(r.grid.map_or(slot0, |g| g.min(slot0)));
        }
        let silent = match &r.silence {
            Some(silence) => silence.as_slice() == payload,
            None => payload.len() <= SILENCE_PACKET_MAX_BYTES,
        };
        if silent {
            return;
        }
        // The talk this sound belongs to: the latest one begun before it arrived.
        let Some(talk) = r
            .talks
            .iter()
            .rposition(|t| t.first().is_some_and(|s| *s <= at))
        else {
            return;
        };
        let index = match r.counting {
            Some((t, n)) if t == talk => n,
            _ => 0,
        };
        r.counting = Some((talk, index + 1));
        r.ai_packets.push((talk, index, at));
    }

    /// Pairs what arrived since the last call.
    pub fn drain(&self) -> Paired {
        let mut r = lock(&self.inner);
        let mut out = Paired::default();
        r.pair_participant_to_agent(&mut out.participant_to_agent);
        r.pair_agent_to_participant(&mut out);
        out
    }
}

impl Records {
    /// Frames past the warm-up, as (step, arrival).
    fn counted_frames(&self) -> impl Iterator<Item = (u64, Instant)> + '_ {
        let first = self.at_agent.first().map_or(0, |f| f.0);
        self.at_agent
            .iter()
            .copied()
            .filter(move |(m, _)| *m >= first + WARMUP_FRAMES)
    }

    /// Whether every counted frame arrived after its packet was sent under `offset`.
    fn causal(&self, offset: i64) -> bool {
        self.counted_frames().all(|(m, at)| {
            usize::try_from(m as i64 + offset)
                .ok()
                .and_then(|i| self.sent.get(i))
                .is_some_and(|sent| *sent <= at)
        })
    }

    fn pair_participant_to_agent(&mut self, out: &mut Vec<f64>) {
        let Some((m0, at0)) = self.counted_frames().next() else {
            return;
        };
        // Largest candidate: the newest packet sent before the first counted frame arrived.
        let newest = self.sent.partition_point(|s| *s <= at0);
        let Some(newest) = newest.checked_sub(1) else {
            return;
        };
        let mut offset = self
            .offset
            .unwrap_or(newest as i64 - m0 as i64)
            .min(newest as i64 - m0 as i64);
        while !self.causal(offset) {
            offset -= 1;
            if (m0 as i64) + offset < 0 {
                return;
            }
        }
        self.offset = Some(offset);
        let first = self.at_agent.first().map_or(0, |f| f.0);
        let from = self.at_agent_done;
        for &(m, at) in &self.at_agent[from..] {
            if m < first + WARMUP_FRAMES {
                continue;
            }
            if let Some(sent) = usize::try_from(m as i64 + offset)
                .ok()
                .and_then(|i| self.sent.get(i))
            {
                out.push(diff_ms(at, *sent));
            }
        }
        self.at_agent_done = self.at_agent.len();
    }

    fn pair_agent_to_participant(&mut self, out: &mut Paired) {
        let Some(grid) = self.grid else {
            return;
        };
        for &(talk, index, at) in &self.ai_packets[self.ai_done..] {
            let Some(sent) = self.talks.get(talk).and_then(|t| t.get(index)) else {
                continue;
            };
            out.agent_to_participant.push(diff_ms(at, *sent));
            // The first send slot at or after the frame was sent.
            let since = diff_ms(*sent, grid).max(0.0);
            let slots = (since / ms(FRAME)).ceil();
            let slot = grid + Duration::from_secs_f64(slots * FRAME.as_secs_f64());
            out.agent_to_participant_beyond_slot
                .push(diff_ms(at, slot).max(0.0));
        }
        self.ai_done = self.ai_packets.len();
    }
}

/// All latencies of a run, with the run time (s) they were measured at, in time order (so a
/// window is found by binary search: the sampler asks for every second of the run).
#[derive(Debug, Default)]
pub struct AgentLatency {
    participant_to_agent: Vec<(f64, f64)>,
    agent_to_participant: Vec<(f64, f64)>,
    beyond_slot: Vec<(f64, f64)>,
}

impl AgentLatency {
    pub fn add(&mut self, t_s: f64, p: Paired) {
        let tag = |v: Vec<f64>| v.into_iter().map(move |x| (t_s, x));
        self.participant_to_agent
            .extend(tag(p.participant_to_agent));
        self.agent_to_participant
            .extend(tag(p.agent_to_participant));
        self.beyond_slot
            .extend(tag(p.agent_to_participant_beyond_slot));
    }

    /// Figures of latencies measured within `[from_s, to_s]`; `measured` tells whether an
    /// agent ran at all.
    pub fn report(&self, from_s: f64, to_s: f64, measured: bool) -> LatencyReport {
        let dist = |v: &[(f64, f64)]| {
            let from = v.partition_point(|(t, _)| *t < from_s);
            let to = v.partition_point(|(t, _)| *t <= to_s);
            let x: Vec<f64> = v[from..to.max(from)].iter().map(|(_, x)| *x).collect();
            (!x.is_empty()).then(|| Distribution::of(&x))
        };
        LatencyReport {
            participant_to_agent_ms: dist(&self.participant_to_agent),
            agent_to_participant_ms: dist(&self.agent_to_participant),
            agent_to_participant_beyond_slot_ms: dist(&self.beyond_slot),
            note: if measured {
                "participant -> agent: participant RTP packet sent -> the agent frame it became \
                 received; agent -> participant: agent frame sent -> the RTP packet carrying it \
                 received (raw: includes waiting up to 20 ms for the server's send slot, the \
                 codec's own frame; beyond_slot: what is left after that wait). The first second \
                 of every stream is not counted. See benches/loadgen/src/latency.rs."
            } else {
                NOTE_NO_AGENT
            },
        }
    }
}

/// The report's `server_added_latency`.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub participant_to_agent_ms: Option<Distribution>,
    pub agent_to_participant_ms: Option<Distribution>,
    pub agent_to_participant_beyond_slot_ms: Option<Distribution>,
    pub note: &'static str,
}

impl LatencyReport {
    /// The worse p99 of what the latency limit applies to: participant -> agent, and agent ->
    /// participant beyond the send slot.
    pub fn worst_p99(&self) -> Option<f64> {
        [
            &self.participant_to_agent_ms,
            &self.agent_to_participant_beyond_slot_ms,
        ]
        .into_iter()
        .filter_map(|d| d.and_then(|d| d.p99))
        .reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: f64) -> Instant {
        t0 + Duration::from_secs_f64(ms / 1000.0)
    }

    #[test]
    fn participant_frames_pair_with_the_packet_they_came_from() {
        let t0 = Instant::now();
        let p = Probe::default();
        // Packets every 20 ms; the agent stream starts at packet 7 (timestamp 0) and each
        // frame arrives 0.5 ms after its packet, 30 ms for the queued first ten.
        for i in 0..200 {
            p.packet_sent(at(t0, i as f64 * 20.0));
        }
        for m in 0..150u64 {
            let delay = if m < 10 { 30.0 } else { 0.5 };
            p.frame_at_agent(m * 20, at(t0, (m + 7) as f64 * 20.0 + delay));
        }
        let got = p.drain().participant_to_agent;
        assert_eq!(got.len(), 100, "warm-up frames are not counted");
        assert!(got.iter().all(|x| (x - 0.5).abs() < 1e-6), "{got:?}");
        // A slow frame later does not move the pairing; it shows as what it is.
        p.frame_at_agent(150 * 20, at(t0, 157.0 * 20.0 + 35.0));
        assert!((p.drain().participant_to_agent[0] - 35.0).abs() < 1e-6);
    }

    #[test]
    fn a_later_pairing_is_refused_once_a_frame_would_precede_its_packet() {
        // All frames 25 ms late: a pairing one packet later would give 5 ms, but sends are not
        // perfectly regular and it would put some frames before their packets. (Were every
        // frame late by more than a frame *and* the sends perfectly regular, the pairing would
        // be one packet late: the measure needs the fastest frame of a session under 20 ms.)
        let t0 = Instant::now();
        let p = Probe::default();
        for i in 0..200 {
            let jitter = if i % 7 == 0 { 6.0 } else { 0.0 };
            p.packet_sent(at(t0, i as f64 * 20.0 + jitter));
        }
        for m in 0..120u64 {
            let sent = (m + 3) as f64 * 20.0 + if (m + 3) % 7 == 0 { 6.0 } else { 0.0 };
            p.frame_at_agent(m * 20, at(t0, sent + 25.0));
        }
        let got = p.drain().participant_to_agent;
        assert_eq!(got.len(), 70);
        assert!(got.iter().all(|x| (x - 25.0).abs() < 1e-6), "{got:?}");
    }

    #[test]
    fn a_quiet_onset_is_sound_and_only_the_silence_packet_is_silence() {
        let t0 = Instant::now();
        let p = Probe::default();
        let slot = |k: u32| at(t0, 3.0 + f64::from(k) * 20.0);
        let silence = [0xf8, 0xff, 0xfe];
        for k in 0..5u32 {
            p.ai_packet(k * 960, &silence, at(slot(k), 0.2));
        }
        p.talk_started();
        for j in 0..3 {
            p.talk_frame_sent(at(t0, 85.0 + j as f64 * 20.0));
        }
        // The talk's first packet is as small as silence but other bytes (a quiet onset).
        p.ai_packet(
            5 * 960,
            &[0x0b, 0x41, 0x2c, 0x90, 0x11, 0x7e, 0x01, 0x02, 0x03],
            at(slot(5), 0.2),
        );
        p.ai_packet(6 * 960, &[7; 60], at(slot(6), 0.2));
        p.ai_packet(7 * 960, &silence, at(slot(7), 0.2));
        p.ai_packet(8 * 960, &[7; 60], at(slot(8), 0.2));
        let got = p.drain().agent_to_participant;
        // Frames sent at 85, 105, 125 ms arrive at 103.2, 123.2 and 163.2 ms (the silence
        // packet in between is not counted).
        let want = [18.2, 18.2, 38.2];
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{got:?}"
        );
    }

    #[test]
    fn a_long_silence_packet_is_learned_too() {
        // Opus' music mode (CELT, fullband) codes 20 ms of digital zeros in about 50 bytes:
        // the silence packet is whatever came before the first talk, not a small packet.
        let t0 = Instant::now();
        let p = Probe::default();
        let slot = |k: u32| at(t0, 3.0 + f64::from(k) * 20.0);
        let silence = [0x78u8; 52];
        for k in 0..5u32 {
            p.ai_packet(k * 960, &silence, at(slot(k), 0.2));
        }
        p.talk_started();
        p.talk_frame_sent(at(t0, 85.0));
        p.talk_frame_sent(at(t0, 105.0));
        // The first tick after the talk began still sends silence: not counted.
        p.ai_packet(5 * 960, &silence, at(slot(5), 0.2));
        p.ai_packet(6 * 960, &[7; 90], at(slot(6), 0.2));
        p.ai_packet(7 * 960, &[7; 90], at(slot(7), 0.2));
        let got = p.drain().agent_to_participant;
        // Frames sent at 85 and 105 ms arrive at 123.2 and 143.2 ms.
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|g| (g - 38.2).abs() < 1e-6), "{got:?}");
    }

    #[test]
    fn agent_frames_pair_with_sounding_packets_and_their_slot() {
        let t0 = Instant::now();
        let p = Probe::default();
        // The server's send slots: every 20 ms from t0 + 3 ms (packets arrive 0.2 ms later).
        // Silence before the talk.
        let slot = |k: u32| at(t0, 3.0 + f64::from(k) * 20.0);
        for k in 0..10u32 {
            p.ai_packet(k * 960, &[1, 2, 3], at(slot(k), 0.2));
        }
        // The agent talks from t0 + 205 ms: frames every 20 ms.
        p.talk_started();
        let frames: Vec<Instant> = (0..5).map(|j| at(t0, 205.0 + j as f64 * 20.0)).collect();
        for f in &frames {
            p.talk_frame_sent(*f);
        }
        // Frame j goes out in slot 11 + j (223 ms: the first slot after 205 ms), except that an
        // underrun puts one silence packet in slot 13 and pushes frames 2.. one slot later.
        let mut k = 10;
        for j in 0..5 {
            if j == 2 {
                p.ai_packet(k * 960, &[1, 2, 3], at(slot(k), 0.2));
                k += 1;
            }
            k += 1;
            p.ai_packet(k * 960, &[7; 80], at(slot(k), 0.2));
        }
        let got = p.drain();
        let raw: Vec<f64> = got
            .agent_to_participant
            .iter()
            .map(|x| (x * 10.0).round() / 10.0)
            .collect();
        assert_eq!(raw, vec![18.2, 18.2, 38.2, 38.2, 38.2]);
        let beyond: Vec<f64> = got
            .agent_to_participant_beyond_slot
            .iter()
            .map(|x| (x * 10.0).round() / 10.0)
            .collect();
        assert_eq!(beyond, vec![0.0, 0.0, 20.0, 20.0, 20.0]);
    }

    #[test]
    fn report_keeps_to_its_window() {
        let mut l = AgentLatency::default();
        l.add(
            1.0,
            Paired {
                participant_to_agent: vec![1.0; 10],
                agent_to_participant: vec![15.0; 10],
                agent_to_participant_beyond_slot: vec![0.5; 10],
            },
        );
        l.add(
            5.0,
            Paired {
                participant_to_agent: vec![9.0; 10],
                ..Paired::default()
            },
        );
        let r = l.report(0.0, 2.0, true);
        assert_eq!(r.participant_to_agent_ms.unwrap().p99, Some(1.0));
        assert_eq!(r.worst_p99(), Some(1.0));
        assert_eq!(l.report(4.0, 6.0, true).worst_p99(), Some(9.0));
        let none = l.report(7.0, 8.0, false);
        assert!(none.worst_p99().is_none());
        assert_eq!(none.note, NOTE_NO_AGENT);
    }
}
