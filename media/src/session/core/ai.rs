//! The AI path: every 20 ms tick the next frame of the prompt being played or of the agent's
//! audio (or silence) is recorded and encoded to be sent; AI turns begin and end here.

use crate::units::samples_to_ms;
use std::time::Instant;

use bytes::Bytes;

use crate::interviewer::InterviewerAction;
use crate::request::LoadedPrompt;
use earshot_vocab::Role;
use earshot_vocab::media_port::MediaEvent;

use super::{FRAME, Output, RecordTrack, SessionCore};

/// Prompt being played: index and next sample.
pub(super) struct Playout {
    pub(super) index: usize,
    pub(super) offset: usize,
    /// Sent from the prompt's FEC copy (chosen when it starts: the participant reported loss).
    pub(super) fec: bool,
}

impl SessionCore {
    /// AI audio starts playing at `pos`.
    pub(super) fn begin_ai_turn(&mut self, pos: u64) {
        if self.ai_turn.is_none() {
            self.note_ai_response(pos);
            self.ai_turn = Some(pos);
            self.ai_audio_end = pos;
            self.emit(MediaEvent::TurnStarted {
                session_id: self.id.clone(),
                role: Role::Ai,
                at_ms: samples_to_ms(pos),
            });
        }
    }

    /// The AI audio was played out, cleared or cut off.
    pub(super) fn end_ai_turn(&mut self) {
        if let Some(start) = self.ai_turn.take() {
            self.emit(MediaEvent::TurnEnded {
                session_id: self.id.clone(),
                role: Role::Ai,
                start_ms: samples_to_ms(start),
                end_ms: samples_to_ms(self.ai_audio_end.max(start)),
            });
        }
    }

    pub(super) fn start_prompt(&mut self, index: usize, pos: u64) {
        let Some(LoadedPrompt { prompt, audio }) = self.prompts.get(index) else {
            return;
        };
        let samples = audio.pcm.len() as u64;
        tracing::debug!(session = %self.id, prompt = %prompt.id, pos, "interviewer speaks");
        let progress = MediaEvent::Progress {
            session_id: self.id.clone(),
            prompt_index: index,
            prompt_count: self.prompts.len(),
            prompt_id: prompt.id.clone(),
            text: prompt.text.clone(),
        };
        let transcript = MediaEvent::Transcript {
            session_id: self.id.clone(),
            role: Role::Ai,
            text: prompt.text.clone(),
            is_final: true,
            start_ms: samples_to_ms(pos),
            end_ms: samples_to_ms(pos + samples),
        };
        self.end_ai_turn();
        self.playout = Some(Playout {
            index,
            offset: 0,
            fec: self.sends_fec(),
        });
        self.ai_pos = pos;
        self.emit(progress);
        self.begin_ai_turn(pos);
        self.emit(transcript);
    }

    /// AI path, every 20 ms: the next frame of the prompt or the agent's audio being played
    /// (or silence) is encoded to be sent; AI audio is recorded where it was sent on the
    /// timeline. `at` is when this frame is due.
    pub(super) fn ai_tick(&mut self, at: Instant, now: Instant) {
        let pos = self.timeline.position(at);
        let mut frame = [0i16; FRAME];
        let prompt_packet = if self.agent.is_some() {
            self.agent_frame(pos, now, &mut frame);
            None
        } else {
            self.prompt_frame(pos, &mut frame)
        };
        // Silence is most of an interview's AI track: its packet is encoded once per session
        // (encoding zeros costs as much as speech: ~120 µs a frame).
        let silent = frame.iter().all(|s| *s == 0);
        let cached = if silent {
            self.silence_packet.clone()
        } else {
            None
        };
        let encoded = match prompt_packet.or(cached) {
            Some(packet) => packet,
            None => match self.encoder.encode(&frame) {
                Ok(b) => {
                    if silent {
                        self.silence_packet = Some(b.clone());
                    }
                    b
                }
                Err(e) => {
                    tracing::warn!(session = %self.id, error = %e, "opus encode failed");
                    return;
                }
            },
        };
        self.outputs.push_back(Output::SendAi(encoded));
        self.listeners_tick(pos + FRAME as u64);
    }

    /// Every frame of the listeners' mix that is due by `pos` is encoded for them.
    fn listeners_tick(&mut self, pos: u64) {
        let Some(mix) = &mut self.listen else {
            return;
        };
        while let Some(frame) = mix.take_frame(pos) {
            match mix.encode(&frame) {
                Ok(packet) => self.outputs.push_back(Output::SendListeners(packet)),
                Err(e) => tracing::warn!(session = %self.id, error = %e, "listener encode failed"),
            }
        }
    }

    pub(super) fn record_ai(&mut self, frame: &[i16]) {
        self.record(RecordTrack::Ai, self.ai_pos, frame);
    }

    /// The built-in interviewer's next frame: the prompt being played (with its packet,
    /// encoded when the prompt was loaded), or silence (`None`).
    fn prompt_frame(&mut self, pos: u64, frame: &mut [i16; FRAME]) -> Option<Bytes> {
        if let Some(InterviewerAction::Speak(i)) = self.interviewer.poll(pos) {
            self.start_prompt(i, pos);
        }
        let play = self.playout.as_mut()?;
        let audio = &self.prompts.get(play.index)?.audio;
        let packets = match &audio.packets_fec {
            Some(fec) if play.fec => fec,
            _ => &audio.packets,
        };
        let (pcm, packet) = (&audio.pcm, packets.get(play.offset / FRAME).cloned());
        let end = (play.offset + FRAME).min(pcm.len());
        let n = end.saturating_sub(play.offset);
        frame[..n].copy_from_slice(&pcm[play.offset..end]);
        play.offset = end;
        let finished_prompt = play.offset >= pcm.len();
        self.record_ai(frame);
        self.ai_audio_end = self.ai_pos + n as u64;
        self.ai_pos += FRAME as u64;
        if finished_prompt {
            self.playout = None;
            self.end_ai_turn();
            if let Some(InterviewerAction::Finished) = self.interviewer.prompt_finished(self.ai_pos)
            {
                self.emit(MediaEvent::InterviewFinished {
                    session_id: self.id.clone(),
                });
            }
        }
        packet
    }
}
