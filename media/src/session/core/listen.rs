//! What a silent listener (a QA monitor) hears: the participant and the AI mixed on the session
//! timeline, a little behind it. The participant's audio reaches a timeline position up to the
//! reorder wait (plus network jitter) after the AI's, so both are summed into a short ring by
//! position and a frame leaves only once it is [`LISTEN_DELAY`] behind the timeline, complete.
//! The mix is encoded once per tick for every listener of the session.

use crate::codec::{OpusEncoder, OpusSettings};
use crate::units::{FRAME, ms_to_samples};

/// How far behind the timeline listeners hear the session.
pub(crate) const LISTEN_DELAY: u64 = ms_to_samples(120);
/// Ring length: the delay and some room for early audio.
const RING: usize = 48_000 / 2;

pub(super) struct ListenerMix {
    ring: Vec<i32>,
    /// Timeline position of the next frame to leave.
    next: u64,
    encoder: OpusEncoder,
}

impl ListenerMix {
    /// A mix whose first frame is the one at `now_pos`, heard `LISTEN_DELAY` later.
    pub(super) fn new(now_pos: u64, opus: OpusSettings) -> Result<Self, crate::codec::CodecError> {
        Ok(Self {
            ring: vec![0; RING],
            next: now_pos,
            encoder: OpusEncoder::new(opus)?,
        })
    }

    /// Adds samples that stand at `at` on the timeline; what is too late (already sent) or too
    /// early for the ring is left out.
    pub(super) fn add(&mut self, at: u64, pcm: &[i16]) {
        for (i, s) in pcm.iter().enumerate() {
            let pos = at + i as u64;
            if pos >= self.next && pos < self.next + RING as u64 {
                self.ring[(pos % RING as u64) as usize] += i32::from(*s);
            }
        }
    }

    /// The next mixed frame, if the timeline (at `now_pos`) is far enough past it.
    pub(super) fn take_frame(&mut self, now_pos: u64) -> Option<[i16; FRAME]> {
        if now_pos < self.next + FRAME as u64 + LISTEN_DELAY {
            return None;
        }
        let mut frame = [0i16; FRAME];
        for (i, out) in frame.iter_mut().enumerate() {
            let slot = &mut self.ring[((self.next + i as u64) % RING as u64) as usize];
            *out = (*slot).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            *slot = 0;
        }
        self.next += FRAME as u64;
        Some(frame)
    }

    pub(super) fn encode(
        &mut self,
        frame: &[i16; FRAME],
    ) -> Result<bytes::Bytes, crate::codec::CodecError> {
        self.encoder.encode(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_are_summed_by_position_and_leave_after_the_delay() {
        let mut mix = ListenerMix::new(0, OpusSettings::default()).expect("mix");
        // The AI's frame at 0 and the participant's at 0, arriving at different times.
        mix.add(0, &[1000; FRAME]);
        assert!(
            mix.take_frame(FRAME as u64).is_none(),
            "not before the delay"
        );
        mix.add(0, &[-300; FRAME]);
        mix.add(FRAME as u64, &[30_000; FRAME]);
        mix.add(FRAME as u64, &[30_000; FRAME]);
        let f = mix
            .take_frame(FRAME as u64 + LISTEN_DELAY)
            .expect("frame due");
        assert!(f.iter().all(|s| *s == 700), "summed: {}", f[0]);
        let f = mix
            .take_frame(2 * FRAME as u64 + LISTEN_DELAY)
            .expect("frame due");
        assert!(f.iter().all(|s| *s == i16::MAX), "saturated, not wrapped");
        // Audio for a position already sent is dropped; the ring slot was cleared.
        mix.add(0, &[5000; FRAME]);
        mix.add(2 * FRAME as u64, &[7; FRAME]);
        let f = mix
            .take_frame(3 * FRAME as u64 + LISTEN_DELAY)
            .expect("frame due");
        assert!(f.iter().all(|s| *s == 7), "{}", f[0]);
    }
}
