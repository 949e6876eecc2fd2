//! The queue of AI audio (48 kHz) waiting to be played to the participant, with markers placed
//! between samples: a `mark` to echo, or the `end` of the interview. Sans-IO: the session pops
//! one 20 ms frame per tick and asks which markers the played audio has passed.

use std::collections::VecDeque;

/// Most AI audio held at once (60 s at 48 kHz, about 5.5 MiB); more is dropped.
pub const MAX_QUEUED_SAMPLES: usize = crate::units::SAMPLE_RATE as usize * 60;

/// Something to do once the audio queued before it has been played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// Echo this mark to the agent.
    Mark(String),
    /// The interview is over.
    End,
}

/// AI audio and markers in arrival order.
#[derive(Debug, Default)]
pub struct AiQueue {
    samples: VecDeque<i16>,
    /// Samples ever pushed and ever popped (or cleared); markers sit at a pushed count.
    pushed: u64,
    popped: u64,
    markers: VecDeque<(u64, Marker)>,
    dropped: u64,
}

impl AiQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Markers waiting.
    pub fn markers(&self) -> usize {
        self.markers.len()
    }

    /// Samples dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends audio (beyond [`MAX_QUEUED_SAMPLES`] it is dropped and counted).
    pub fn push_audio(&mut self, pcm: &[i16]) {
        let room = MAX_QUEUED_SAMPLES.saturating_sub(self.samples.len());
        let n = pcm.len().min(room);
        self.samples.extend(&pcm[..n]);
        self.pushed += n as u64;
        self.dropped += (pcm.len() - n) as u64;
    }

    /// Places a marker after the audio queued so far.
    pub fn push_marker(&mut self, marker: Marker) {
        self.markers.push_back((self.pushed, marker));
    }

    /// Fills `frame` with the next samples (the rest with silence); returns how many were
    /// audio.
    pub fn pop_frame(&mut self, frame: &mut [i16]) -> usize {
        let n = frame.len().min(self.samples.len());
        for (dst, src) in frame.iter_mut().zip(self.samples.drain(..n)) {
            *dst = src;
        }
        frame[n..].fill(0);
        self.popped += n as u64;
        n
    }

    /// The next marker if the audio before it has all been popped.
    pub fn next_due(&mut self) -> Option<Marker> {
        match self.markers.front() {
            Some((at, _)) if *at <= self.popped => self.markers.pop_front().map(|(_, m)| m),
            _ => None,
        }
    }

    /// Drops all queued audio; returns the pending markers in order (Twilio echoes the
    /// pending marks when it clears).
    pub fn clear(&mut self) -> Vec<Marker> {
        self.popped += self.samples.len() as u64;
        self.samples.clear();
        self.markers.drain(..).map(|(_, m)| m).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_come_due_after_their_audio_in_order() {
        let mut q = AiQueue::new();
        q.push_marker(Marker::Mark("empty".into()));
        assert_eq!(q.next_due(), Some(Marker::Mark("empty".into())));
        q.push_audio(&[1; 1500]);
        q.push_marker(Marker::Mark("a".into()));
        q.push_audio(&[2; 100]);
        q.push_marker(Marker::Mark("b".into()));
        q.push_marker(Marker::End);
        let mut f = [0i16; 960];
        assert_eq!(q.pop_frame(&mut f), 960);
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop_frame(&mut f), 640);
        assert_eq!(f[539], 1);
        assert_eq!(f[540], 2);
        assert_eq!(f[639], 2);
        assert_eq!(f[640], 0);
        assert_eq!(q.next_due(), Some(Marker::Mark("a".into())));
        assert_eq!(q.next_due(), Some(Marker::Mark("b".into())));
        assert_eq!(q.next_due(), Some(Marker::End));
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop_frame(&mut f), 0);
        assert!(f.iter().all(|&s| s == 0));
    }

    #[test]
    fn clear_drops_audio_and_hands_back_pending_marks() {
        let mut q = AiQueue::new();
        q.push_audio(&[5; 5000]);
        q.push_marker(Marker::Mark("x".into()));
        q.push_audio(&[5; 5000]);
        q.push_marker(Marker::Mark("y".into()));
        let mut f = [0i16; 960];
        q.pop_frame(&mut f);
        assert_eq!(
            q.clear(),
            vec![Marker::Mark("x".into()), Marker::Mark("y".into())]
        );
        assert!(q.is_empty());
        assert_eq!(q.pop_frame(&mut f), 0);
        // New audio after a clear keeps working.
        q.push_audio(&[7; 10]);
        q.push_marker(Marker::Mark("z".into()));
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop_frame(&mut f), 10);
        assert_eq!(q.next_due(), Some(Marker::Mark("z".into())));
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut q = AiQueue::new();
        q.push_audio(&vec![1; MAX_QUEUED_SAMPLES - 10]);
        q.push_audio(&[1; 25]);
        assert_eq!(q.len(), MAX_QUEUED_SAMPLES);
        assert_eq!(q.dropped(), 15);
    }
}
