//! The session's live quality signals (F7), for QA staff watching it: the participant's level
//! and clipping, packet loss and concealment, interarrival jitter, the participant's silence on
//! their turn, the AI's response time and the agent's errors. Everything comes from counters
//! the participant path keeps anyway (each frame's RMS is computed for voice activity) or from
//! arithmetic on packet times: no extra signal processing per frame. One
//! [`QualitySignals`] leaves every [`SIGNAL_TICKS`] live ticks (about a second).

use std::time::Instant;

use earshot_vocab::media_port::{MediaEvent, QualitySignals};

use super::SessionCore;
use crate::level::FLOOR_DBFS;
use crate::units::{SAMPLES_PER_MS, samples_to_ms};

/// Live 20 ms ticks between two signal reports (one second).
pub(super) const SIGNAL_TICKS: u32 = 50;

/// What the participant path counted since the last report.
#[derive(Debug, Default)]
pub(super) struct SignalMeter {
    ticks: u32,
    frames: u64,
    concealed: u64,
    /// Sum of each frame's mean square (linear, full scale 1.0).
    power: f64,
    samples: u64,
    clipped: u64,
    /// The jitter buffer's `lost` counter at the last report.
    lost_base: u64,
    /// (arrival, RTP timestamp) of the previous packet, for the jitter estimate.
    previous: Option<(Instant, u32)>,
    /// RFC 3550 interarrival jitter, in 48 kHz samples.
    jitter: f64,
    /// Agent connection failures and drops so far.
    pub(super) agent_errors: u32,
    /// The AI's last response time (participant turn end -> first AI audio), samples.
    pub(super) ai_latency: Option<u64>,
}

impl SignalMeter {
    /// One decoded participant frame: its RMS (already computed for voice activity), how many
    /// of its samples are at full scale, its length, and whether it was made up.
    pub(super) fn frame(&mut self, rms_dbfs: f32, clipped: usize, samples: usize, concealed: bool) {
        self.frames += 1;
        self.concealed += u64::from(concealed);
        if rms_dbfs > FLOOR_DBFS {
            let linear = 10f64.powf(f64::from(rms_dbfs) / 20.0);
            self.power += linear * linear * samples as f64;
        }
        self.samples += samples as u64;
        self.clipped += clipped as u64;
    }

    /// One participant packet arrived (RFC 3550 §6.4.1: the difference in transit time of two
    /// packets, smoothed with gain 1/16).
    pub(super) fn packet(&mut self, timestamp: u32, arrival: Instant) {
        if let Some((at, ts)) = self.previous {
            let arrival_samples = if arrival >= at {
                arrival.duration_since(at).as_secs_f64() * 48_000.0
            } else {
                -(at.duration_since(arrival).as_secs_f64() * 48_000.0)
            };
            let sent_samples = f64::from(timestamp.wrapping_sub(ts) as i32);
            let d = (arrival_samples - sent_samples).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.previous = Some((arrival, timestamp));
    }

    /// A new RTP stream starts (new peer, or after a hold): its counters start at zero.
    pub(super) fn restart_stream(&mut self) {
        self.previous = None;
        self.lost_base = 0;
    }

    /// One live tick; every [`SIGNAL_TICKS`] the report of the ticks since the last one.
    /// `lost` is the jitter buffer's counter, `reorder_wait_ms` its current wait and
    /// `silence` the participant's silence on their turn (samples).
    pub(super) fn tick(
        &mut self,
        lost: u64,
        reorder_wait_ms: u32,
        silence: u64,
    ) -> Option<QualitySignals> {
        self.ticks += 1;
        if self.ticks < SIGNAL_TICKS {
            return None;
        }
        let lost_now = lost.saturating_sub(self.lost_base.min(lost));
        self.lost_base = lost;
        let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f32 / of as f32 };
        let input_dbfs = if self.power > 0.0 && self.samples > 0 {
            ((10.0 * (self.power / self.samples as f64).log10()) as f32).max(FLOOR_DBFS)
        } else {
            FLOOR_DBFS
        };
        let signals = QualitySignals {
            input_dbfs,
            clipping: share(self.clipped, self.samples),
            loss: share(lost_now, self.frames.max(lost_now)),
            concealment: share(self.concealed, self.frames),
            jitter_ms: (self.jitter / SAMPLES_PER_MS as f64) as f32,
            reorder_wait_ms,
            silence_secs: samples_to_ms(silence) as f32 / 1000.0,
            ai_latency_ms: self.ai_latency.map(samples_to_ms),
            agent_errors: self.agent_errors,
        };
        let keep = (self.lost_base, self.previous, self.jitter);
        let (agent_errors, ai_latency) = (self.agent_errors, self.ai_latency);
        *self = SignalMeter {
            lost_base: keep.0,
            previous: keep.1,
            jitter: keep.2,
            agent_errors,
            ai_latency,
            ..SignalMeter::default()
        };
        Some(signals)
    }
}

impl SessionCore {
    /// How long the participant has been silent on their turn at `pos`: the interviewer spoke
    /// last and is quiet, and the participant is not speaking. 0 otherwise.
    fn silence_on_turn(&self, pos: u64) -> u64 {
        let ai_spoke_last = self.ai_audio_end > 0
            && self
                .last_turn
                .is_none_or(|(_, end)| end <= self.ai_audio_end);
        if self.ai_turn.is_some() || self.turn_start.is_some() || !ai_spoke_last {
            return 0;
        }
        pos.saturating_sub(self.ai_audio_end)
    }

    /// Counts a live tick; once a second the signals go out as an event.
    pub(super) fn signal_tick(&mut self, now: Instant) {
        let silence = self.silence_on_turn(self.timeline.position(now));
        let wait = u32::try_from(self.jitter.wait().as_millis()).unwrap_or(u32::MAX);
        if let Some(signals) = self.signals.tick(self.jitter.stats().lost, wait, silence) {
            self.emit(MediaEvent::Signals {
                session_id: self.id.clone(),
                signals,
            });
        }
    }

    /// An AI turn begins at `pos`: if the participant spoke since the AI's previous turn, the
    /// time from the end of their words to now is the AI's response time.
    pub(super) fn note_ai_response(&mut self, pos: u64) {
        if let Some((_, end)) = self.last_turn
            && end >= self.ai_audio_end
            && pos >= end
        {
            self.signals.ai_latency = Some(pos - end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_of_frames_reports_level_clipping_loss_and_concealment() {
        let mut m = SignalMeter::default();
        // 48 frames at -20 dBFS, one of them with 96 clipped samples; two more concealed.
        for i in 0..50 {
            m.frame(-20.0, if i == 0 { 96 } else { 0 }, 960, i >= 48);
        }
        for _ in 0..49 {
            assert!(m.tick(2, 30, 0).is_none());
        }
        let s = m.tick(2, 30, 48_000 * 3).expect("a report after 50 ticks");
        assert!((s.input_dbfs + 20.0).abs() < 0.01, "{}", s.input_dbfs);
        assert!(
            (s.clipping - 96.0 / 48_000.0).abs() < 1e-6,
            "{}",
            s.clipping
        );
        assert!((s.loss - 0.04).abs() < 1e-6, "{}", s.loss);
        assert!((s.concealment - 0.04).abs() < 1e-6, "{}", s.concealment);
        assert_eq!(s.reorder_wait_ms, 30);
        assert!((s.silence_secs - 3.0).abs() < 1e-6);
        // The next second counts from here: nothing lost since, no audio.
        for _ in 0..49 {
            m.tick(2, 30, 0);
        }
        let s = m.tick(2, 30, 0).expect("second report");
        assert_eq!(
            (s.loss, s.concealment, s.input_dbfs),
            (0.0, 0.0, FLOOR_DBFS)
        );
    }

    #[test]
    fn jitter_follows_the_spread_of_arrival_times() {
        let t0 = Instant::now();
        let mut steady = SignalMeter::default();
        let mut bumpy = SignalMeter::default();
        for i in 0..200u32 {
            let ts = i * 960;
            steady.packet(ts, t0 + Duration::from_millis(20 * u64::from(i)));
            // Every other packet 10 ms late.
            let late = if i % 2 == 1 { 10 } else { 0 };
            bumpy.packet(ts, t0 + Duration::from_millis(20 * u64::from(i) + late));
        }
        let j = |m: &mut SignalMeter| {
            (0..SIGNAL_TICKS)
                .find_map(|_| m.tick(0, 30, 0))
                .expect("report")
                .jitter_ms
        };
        assert!(j(&mut steady) < 0.01);
        let bumpy = j(&mut bumpy);
        assert!((9.0..=10.5).contains(&bumpy), "jitter {bumpy} ms");
    }

    #[test]
    fn a_new_stream_starts_its_loss_count_at_zero() {
        let mut m = SignalMeter::default();
        let report =
            |m: &mut SignalMeter, lost| (0..SIGNAL_TICKS).find_map(|_| m.tick(lost, 30, 0));
        for _ in 0..50 {
            m.frame(-30.0, 0, 960, false);
        }
        assert_eq!(report(&mut m, 10).expect("report").loss, 10.0 / 50.0);
        m.restart_stream();
        for _ in 0..50 {
            m.frame(-30.0, 0, 960, false);
        }
        // The new jitter buffer counted 1 lost packet: 1, not 1 - 10.
        assert_eq!(report(&mut m, 1).expect("report").loss, 1.0 / 50.0);
    }
}
