//! The participant path: packets out of the jitter buffer are decoded, denoised, analysed for
//! voice, recorded, forwarded to the agent and shown to the interviewer.

use crate::units::samples_to_ms;
use std::time::Instant;

use crate::denoise::LATENCY_SAMPLES;
use crate::interviewer::InterviewerAction;
use earshot_vocab::Role;
use earshot_vocab::media_port::MediaEvent;

use super::{RecordTrack, SessionCore, ToAgent};

impl SessionCore {
    /// Every frame the jitter buffer releases by `now` goes down the participant path.
    pub(super) fn drain_jitter(&mut self, now: Instant) {
        while let Some(out) = self.jitter.poll(now) {
            let frame = self.decoder.decode(out);
            let pos = match self.rtp_anchor {
                Some((ts0, pos0)) => pos0 + u64::from(frame.timestamp.wrapping_sub(ts0)),
                None => {
                    let pos0 = self.timeline.position(now);
                    self.rtp_anchor = Some((frame.timestamp, pos0));
                    pos0
                }
            };
            let samples = frame.pcm.len() as u64;
            let rms = crate::level::rms_dbfs(frame.pcm);
            let clipped = crate::level::clipped_count(frame.pcm);
            self.signals
                .frame(rms, clipped, frame.pcm.len(), frame.concealed);
            let denoised = match self.denoiser.process(frame.pcm) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(session = %self.id, error = %e, "frame not denoised");
                    continue;
                }
            };
            let vad = self
                .vad
                .update(denoised.voice_prob, rms, samples_to_ms(samples) as u32);
            // The recording and the agent get the same denoised frame, placed where it was
            // spoken (the denoiser's output lags one frame).
            let pcm = denoised.pcm.to_vec();
            if let Some(at) = pos.checked_sub(LATENCY_SAMPLES as u64) {
                self.record(RecordTrack::Participant, at, &pcm);
                if self.agent.as_ref().is_some_and(|a| a.link_up) {
                    self.outputs
                        .push_back(super::Output::Agent(ToAgent::Media { pcm, at }));
                }
            }
            let end = pos + samples;
            if vad.started {
                self.turn_start = Some(pos);
                self.emit(MediaEvent::TurnStarted {
                    session_id: self.id.clone(),
                    role: Role::Participant,
                    at_ms: samples_to_ms(pos),
                });
            }
            if vad.stopped
                && let Some(start) = self.turn_start.take()
            {
                self.last_turn = Some((start, end));
                self.emit(MediaEvent::TurnEnded {
                    session_id: self.id.clone(),
                    role: Role::Participant,
                    start_ms: samples_to_ms(start),
                    end_ms: samples_to_ms(end),
                });
            }
            if self.agent.is_none()
                && let Some(InterviewerAction::Speak(i)) =
                    self.interviewer.on_frame(end, vad.speaking, samples)
            {
                let pos = self.timeline.position(now);
                self.start_prompt(i, pos);
            }
        }
    }
}
