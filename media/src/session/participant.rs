//! The participant path: packets out of the jitter buffer are decoded, denoised, analysed for
//! voice, recorded, forwarded to the agent and shown to the interviewer.

use super::*;

impl SessionMedia {
    /// Participant path: every frame the jitter buffer releases is decoded, denoised,
    /// analysed for voice, recorded and shown to the interviewer.
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
            let denoised = match self.denoiser.process(frame.pcm) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(session = %self.id, error = %e, "frame not denoised");
                    continue;
                }
            };
            let vad = self
                .vad
                .update(denoised.voice_prob, rms, (samples / 48) as u32);
            if let Some(rec) = &mut self.recording
                && let Some(at) = pos.checked_sub(LATENCY_SAMPLES as u64)
                && let Err(e) = rec.participant.write_at(at, denoised.pcm)
            {
                tracing::warn!(session = %self.id, error = %e, "participant track write failed");
            }
            // The agent hears the same denoised frame, placed as in the recording.
            if let Some(link) = self.agent.as_ref().and_then(|a| a.link.as_ref())
                && let Some(at) = pos.checked_sub(LATENCY_SAMPLES as u64)
            {
                link.send_media(denoised.pcm, at);
            }
            let end = pos + samples;
            if vad.started {
                self.turn_start = Some(pos);
                self.pending_events.push(EngineEvent::TurnStarted {
                    session_id: self.id.clone(),
                    role: TurnRole::Participant,
                    at_ms: pos / 48,
                });
            }
            if vad.stopped
                && let Some(start) = self.turn_start.take()
            {
                self.last_turn = Some((start, end));
                self.pending_events.push(EngineEvent::TurnEnded {
                    session_id: self.id.clone(),
                    role: TurnRole::Participant,
                    start_ms: start / 48,
                    end_ms: end / 48,
                });
            }
            if self.agent.is_none()
                && let Some(InterviewerAction::Speak(i)) =
                    self.interviewer.on_frame(end, vad.speaking, samples)
            {
                self.pending_speak = Some(i);
            }
        }
    }

    pub(super) async fn act_on_pending(&mut self) {
        for ev in std::mem::take(&mut self.pending_events) {
            self.emit(ev).await;
        }
        if let Some(i) = self.pending_speak.take() {
            let pos = self.timeline.position(Instant::now());
            self.start_prompt(i, pos).await;
        }
    }

    pub(super) async fn end_turn(&mut self, end: u64) {
        if let Some(start) = self.turn_start.take() {
            self.last_turn = Some((start, end));
            self.emit(EngineEvent::TurnEnded {
                session_id: self.id.clone(),
                role: TurnRole::Participant,
                start_ms: start / 48,
                end_ms: end / 48,
            })
            .await;
        }
    }
}
