//! The media plane's events, routed: connection changes, progress, agent failures and the
//! interview's end become lifecycle events; turns and transcript lines go to the turn log and
//! the live stream; finished files become recording rows; quality signals and listeners
//! leaving go to `monitors`.

use super::SessionService;
use crate::event_bus::LiveEvent;
use crate::lifecycle::Event;
use crate::media_port::MediaEvent;
use crate::turns::{self, Role, TurnInput};

impl SessionService {
    /// Handles one event from the media plane (the background task calls it in order).
    pub async fn handle_media_event(&self, ev: MediaEvent) {
        match ev {
            MediaEvent::Connected { session_id } => {
                self.peer_connected(&session_id);
                self.apply_signal(&session_id, Event::MediaStarted).await;
            }
            MediaEvent::Disconnected { session_id } => {
                self.apply_signal(&session_id, Event::MediaLost).await;
            }
            MediaEvent::Restored { session_id } => {
                self.apply_signal(&session_id, Event::MediaRestored).await;
            }
            MediaEvent::Progress {
                session_id,
                prompt_index,
                prompt_count,
                prompt_id,
                ..
            } => {
                self.progress_arrived(&session_id, prompt_index, prompt_count, &prompt_id);
                self.apply_signal(&session_id, Event::Progress { point: prompt_id })
                    .await;
            }
            MediaEvent::TurnStarted {
                session_id,
                role,
                at_ms,
            } => {
                let event = LiveEvent::TurnStart { role, at_ms };
                self.turn_event(&session_id, TurnInput::Started { role, at_ms }, event)
                    .await;
            }
            MediaEvent::TurnEnded {
                session_id,
                role,
                start_ms,
                end_ms,
            } => {
                let event = LiveEvent::TurnEnd {
                    role,
                    start_ms,
                    end_ms,
                };
                let input = TurnInput::Ended {
                    role,
                    start_ms,
                    end_ms,
                };
                self.turn_event(&session_id, input, event).await;
                let event = match role {
                    Role::Participant => Event::TurnCaptured,
                    Role::Ai => Event::Activity,
                };
                self.apply_signal(&session_id, event).await;
            }
            MediaEvent::Transcript {
                session_id,
                role,
                text,
                is_final,
                start_ms,
                end_ms,
            } => {
                let text = turns::clip(&text, turns::MAX_LINE_BYTES);
                // Monitors and the participant's captions never see what the campaign's
                // PII policy masks or redacts; the turn log gets the line as said and
                // applies the policy when it stores it.
                let live = self.scrub_live(&session_id, text).await;
                if role == Role::Ai {
                    self.caption_arrived(&session_id, &live);
                }
                let event = LiveEvent::Transcript {
                    role,
                    text: &live,
                    is_final,
                    start_ms,
                    end_ms,
                };
                if is_final {
                    let input = TurnInput::Transcript {
                        role,
                        text,
                        is_final,
                        start_ms,
                        end_ms,
                    };
                    self.turn_event(&session_id, input, event).await;
                } else {
                    // Partial lines are only streamed, never stored.
                    self.stream_only(&session_id, event);
                }
            }
            MediaEvent::AgentFailed { session_id, detail } => {
                tracing::warn!(session = %session_id, %detail, "agent failure");
                let detail = format!("agent: {detail}");
                self.apply_signal(&session_id, Event::TechnicalFailure { detail })
                    .await;
            }
            MediaEvent::InterviewFinished { session_id } => {
                self.apply_signal(&session_id, Event::InterviewFinished)
                    .await;
            }
            MediaEvent::RecordingReady { session_id, file } => {
                self.store_recording(&session_id, file).await;
            }
            MediaEvent::RecordingsFinished { session_id } => {
                tracing::info!(session = %session_id, "recordings finalized");
                // The files are final: a store that spools them moves them (in the
                // background; downloads read the spool until then).
                if let Err(e) = self.blobs.session_finished(&session_id).await {
                    tracing::error!(session = %session_id, error = %e, "finished recordings not handed to the blob store (they stay in the spool)");
                }
                self.recordings_finished(&session_id).await;
            }
            MediaEvent::Signals {
                session_id,
                signals,
            } => self.signals_arrived(&session_id, signals),
            MediaEvent::ListenerLeft {
                session_id,
                listener_id,
            } => self.listener_left(&session_id, listener_id).await,
            MediaEvent::Failed { session_id, detail } => {
                tracing::warn!(session = %session_id, %detail, "media failure");
            }
        }
    }
}
