//! The built-in interviewer's turn-taking, sans-IO: it is told where the session timeline is
//! (sample positions at 48 kHz) and whether the participant is speaking, and answers with what
//! to say next. It speaks a prompt, waits until the participant has spoken and then been silent
//! for the configured time, then speaks the next; after the last prompt it is finished.

/// What the session should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterviewerAction {
    /// Play prompt `index` now.
    Speak(usize),
    /// The last prompt has been played: the interview is over.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first prompt (or a resumed one): speak at `at`.
    Waiting {
        index: usize,
        at: u64,
    },
    Speaking {
        index: usize,
    },
    Listening {
        index: usize,
        speech: u64,
        last_voice: u64,
    },
    Done,
}

/// Turn-taking state of one session's built-in interviewer.
#[derive(Debug, Clone)]
pub struct Interviewer {
    prompt_count: usize,
    silence_samples: u64,
    min_speech_samples: u64,
    phase: Phase,
}

/// Speech shorter than this (after a prompt) is not yet an answer: a cough or a click.
const MIN_SPEECH_MS: u64 = 300;

impl Interviewer {
    /// An interviewer for `prompt_count` prompts that starts at prompt `start_at` once the
    /// timeline reaches `start_pos` (a short lead-in so the participant hears the start).
    pub fn new(prompt_count: usize, silence_ms: u32, start_at: usize, start_pos: u64) -> Self {
        let phase = if start_at >= prompt_count {
            Phase::Done
        } else {
            Phase::Waiting {
                index: start_at,
                at: start_pos,
            }
        };
        Self {
            prompt_count,
            silence_samples: ms_to_samples(u64::from(silence_ms)),
            min_speech_samples: ms_to_samples(MIN_SPEECH_MS),
            phase,
        }
    }

    /// The prompt being spoken or waited for; `None` when finished.
    pub fn current_prompt(&self) -> Option<usize> {
        match self.phase {
            Phase::Waiting { index, .. }
            | Phase::Speaking { index }
            | Phase::Listening { index, .. } => Some(index),
            Phase::Done => None,
        }
    }

    pub fn is_speaking(&self) -> bool {
        matches!(self.phase, Phase::Speaking { .. })
    }

    /// The timeline reached `pos`: starts the first (or resumed) prompt when its time comes.
    pub fn poll(&mut self, pos: u64) -> Option<InterviewerAction> {
        match self.phase {
            Phase::Waiting { index, at } if pos >= at => {
                self.phase = Phase::Speaking { index };
                Some(InterviewerAction::Speak(index))
            }
            _ => None,
        }
    }

    /// One participant frame ending at `pos` (samples) was analysed: `speaking` is the voice
    /// activity decision and `frame_samples` its length.
    pub fn on_frame(
        &mut self,
        pos: u64,
        speaking: bool,
        frame_samples: u64,
    ) -> Option<InterviewerAction> {
        match &mut self.phase {
            Phase::Listening {
                index,
                speech,
                last_voice,
            } => {
                if speaking {
                    *speech += frame_samples;
                    *last_voice = pos;
                    None
                } else if *speech >= self.min_speech_samples
                    && pos.saturating_sub(*last_voice) >= self.silence_samples
                {
                    let next = *index + 1;
                    self.phase = Phase::Speaking { index: next };
                    Some(InterviewerAction::Speak(next))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The session continues at `pos` after a pause or a reconnect: a prompt that was cut off
    /// is asked again from its start after `lead_in` samples; an answer being listened to is
    /// listened to afresh (what was said before the pause does not count as the answer).
    pub fn resume(&mut self, pos: u64, lead_in: u64) {
        self.phase = match self.phase {
            Phase::Speaking { index } | Phase::Waiting { index, .. } => Phase::Waiting {
                index,
                at: pos + lead_in,
            },
            Phase::Listening { index, .. } => Phase::Listening {
                index,
                speech: 0,
                last_voice: pos,
            },
            Phase::Done => Phase::Done,
        };
    }

    /// The prompt being spoken has been played out completely at `pos`.
    pub fn prompt_finished(&mut self, pos: u64) -> Option<InterviewerAction> {
        let Phase::Speaking { index } = self.phase else {
            return None;
        };
        if index + 1 >= self.prompt_count {
            self.phase = Phase::Done;
            Some(InterviewerAction::Finished)
        } else {
            self.phase = Phase::Listening {
                index,
                speech: 0,
                last_voice: pos,
            };
            None
        }
    }
}

use crate::units::ms_to_samples;

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 960;

    /// Feeds frames from `from` for `ms` milliseconds, returning the first action and its position.
    fn feed(
        iv: &mut Interviewer,
        from: u64,
        ms: u64,
        speaking: bool,
    ) -> (u64, Option<(u64, InterviewerAction)>) {
        let mut pos = from;
        while pos < from + ms_to_samples(ms) {
            pos += FRAME;
            if let Some(a) = iv.poll(pos).or_else(|| iv.on_frame(pos, speaking, FRAME)) {
                return (pos, Some((pos, a)));
            }
        }
        (pos, None)
    }

    #[test]
    fn speaks_waits_for_answer_and_silence_then_goes_on_and_finishes() {
        let mut iv = Interviewer::new(3, 1500, 0, ms_to_samples(500));
        let (pos, first) = feed(&mut iv, 0, 1000, false);
        assert_eq!(first.map(|f| f.1), Some(InterviewerAction::Speak(0)));
        assert!(pos >= ms_to_samples(500));
        // The participant talks over the prompt: ignored.
        let (_, none) = feed(&mut iv, pos, 1000, true);
        assert_eq!(none, None);
        let pos = pos + ms_to_samples(2000);
        assert_eq!(iv.prompt_finished(pos), None);
        // Silence without any answer never moves on.
        let (pos, none) = feed(&mut iv, pos, 5000, false);
        assert_eq!(none, None);
        // A short click is not an answer.
        let (pos, _) = feed(&mut iv, pos, 100, true);
        let (pos, none) = feed(&mut iv, pos, 3000, false);
        assert_eq!(none, None);
        // A real answer, then 1.5 s of silence: next prompt, not earlier.
        let (pos, _) = feed(&mut iv, pos, 2000, true);
        let (_, early) = feed(&mut iv, pos, 1400, false);
        assert_eq!(early, None);
        let mut iv2 = iv.clone();
        let (_, next) = feed(&mut iv2, pos, 1600, false);
        assert_eq!(next.map(|n| n.1), Some(InterviewerAction::Speak(1)));
        assert_eq!(iv2.current_prompt(), Some(1));
        // Last prompt: finishing it ends the interview.
        let mut last = Interviewer::new(3, 1500, 2, 0);
        assert_eq!(last.on_frame(FRAME, false, FRAME), None);
        assert_eq!(last.poll(FRAME), Some(InterviewerAction::Speak(2)));
        assert_eq!(
            last.prompt_finished(10 * FRAME),
            Some(InterviewerAction::Finished)
        );
        assert_eq!(last.current_prompt(), None);
    }

    #[test]
    fn resuming_repeats_a_cut_off_prompt_and_forgets_a_half_answer() {
        let mut iv = Interviewer::new(3, 1500, 1, 0);
        assert_eq!(iv.poll(FRAME), Some(InterviewerAction::Speak(1)));
        // Paused while speaking prompt 1: after resuming it is asked again, after the lead-in.
        iv.resume(100 * FRAME, 10 * FRAME);
        assert!(!iv.is_speaking());
        assert_eq!(iv.poll(105 * FRAME), None);
        assert_eq!(iv.poll(110 * FRAME), Some(InterviewerAction::Speak(1)));
        assert_eq!(iv.prompt_finished(200 * FRAME), None);
        // Half an answer, then a pause: the answer starts over.
        let (pos, _) = feed(&mut iv, 200 * FRAME, 1000, true);
        iv.resume(pos, 0);
        let (_, next) = feed(&mut iv, pos, 3000, false);
        assert_eq!(next, None, "speech before the pause is not an answer");
        assert_eq!(iv.current_prompt(), Some(1));
    }

    #[test]
    fn starting_past_the_end_is_finished_and_idle() {
        let mut iv = Interviewer::new(2, 1500, 2, 0);
        assert_eq!(iv.current_prompt(), None);
        assert_eq!(iv.on_frame(FRAME, true, FRAME), None);
        assert_eq!(iv.poll(FRAME), None);
        assert_eq!(iv.prompt_finished(FRAME), None);
    }
}
