//! The agent side of a session: dialling and stopping the bridge, pacing the agent's queued
//! audio into 20 ms frames with its marks, and what the agent sends (audio, marks, clear,
//! transcript lines, end).

use super::*;

/// The external agent of an agent-led session.
pub(super) struct AgentSide {
    pub(super) request: AgentRequest,
    /// The running bridge; `None` while paused, before the first connect, or after failing.
    pub(super) link: Option<AgentLink>,
    /// AI audio (48 kHz) and markers waiting to be played.
    pub(super) queue: AiQueue,
    /// Gave up (reported `AgentFailed`): not dialled again until a resume or a new peer.
    pub(super) failed: bool,
    /// When audio began waiting in an idle queue, and when the newest audio arrived.
    pub(super) waiting_since: Option<Instant>,
    pub(super) last_audio_at: Option<Instant>,
    /// Ticks of the current AI turn played with an empty queue.
    pub(super) idle_ticks: u32,
}

impl AgentSide {
    pub(super) fn new(request: AgentRequest) -> Self {
        Self {
            request,
            link: None,
            queue: AiQueue::new(),
            failed: false,
            waiting_since: None,
            last_audio_at: None,
            idle_ticks: 0,
        }
    }

    /// Enough audio is queued to start an AI turn without running dry.
    pub(super) fn ready_to_play(&self, now: Instant) -> bool {
        let q = &self.queue;
        if q.is_empty() {
            return false;
        }
        let waited = self
            .waiting_since
            .is_some_and(|t| now.saturating_duration_since(t) >= AGENT_JITTER_MARGIN);
        let idle = self
            .last_audio_at
            .is_none_or(|t| now.saturating_duration_since(t) >= AGENT_IDLE_START);
        q.len() >= 2 * FRAME || (q.len() >= FRAME && waited) || q.markers() > 0 || idle
    }
}

impl SessionMedia {
    /// Dials the agent when the session is active and no bridge runs.
    pub(super) fn maybe_start_agent(&mut self) {
        let active = self.peer_connected && !self.held;
        if let Some(agent) = &mut self.agent
            && active
            && agent.link.is_none()
            && !agent.failed
        {
            tracing::info!(session = %self.id, url = %agent.request.url, format = %agent.request.audio_format, "dialling the agent");
            agent.link = Some(AgentLink::spawn(&self.id, &agent.request));
        }
    }

    /// Ends the agent's stream (`stop`, close) on a pause or the end: its queued audio is
    /// dropped.
    pub(super) async fn stop_agent(&mut self) {
        if let Some(agent) = &mut self.agent
            && let Some(link) = agent.link.take()
        {
            log_bridge_stats(&self.id, &link, &agent.queue);
        }
        if self.drop_queued_audio().await {
            self.emit(EngineEvent::InterviewFinished {
                session_id: self.id.clone(),
            })
            .await;
        }
    }

    /// The agent's next frame: marks whose audio has been played are echoed, then the next
    /// 20 ms of queued audio (or silence) is taken.
    pub(super) async fn agent_frame(&mut self, pos: u64, now: Instant, frame: &mut [i16; FRAME]) {
        let Some(agent) = &mut self.agent else {
            return;
        };
        // Markers whose audio went out on earlier ticks: it has been played by now.
        let mut finished = false;
        while let Some(marker) = agent.queue.next_due() {
            match marker {
                Marker::Mark(name) => {
                    if let Some(link) = &agent.link {
                        link.echo_mark(name);
                    }
                }
                Marker::End => finished = true,
            }
        }
        let mut start = false;
        let mut end = false;
        let mut played = 0;
        if self.ai_turn.is_some() || agent.ready_to_play(now) {
            start = self.ai_turn.is_none();
            agent.waiting_since = None;
            played = agent.queue.pop_frame(frame);
            if played > 0 {
                agent.idle_ticks = 0;
            } else {
                agent.idle_ticks += 1;
                end = agent.idle_ticks >= AI_TURN_HANGOVER_TICKS;
            }
        }
        if start {
            self.ai_pos = self.ai_pos.max(pos);
            self.begin_ai_turn(self.ai_pos).await;
        }
        if self.ai_turn.is_some() {
            if played > 0 {
                self.record_ai(&frame[..played]);
                self.ai_audio_end = self.ai_pos + played as u64;
            }
            self.ai_pos += FRAME as u64;
        }
        if end {
            self.end_ai_turn().await;
        }
        if finished {
            self.emit(EngineEvent::InterviewFinished {
                session_id: self.id.clone(),
            })
            .await;
        }
    }

    /// A message from the agent bridge (`None`: the bridge task ended).
    pub(super) async fn on_agent_message(&mut self, msg: Option<FromAgent>) {
        let Some(agent) = &mut self.agent else {
            return;
        };
        let now = Instant::now();
        let Some(msg) = msg else {
            agent.link = None;
            agent.failed = true;
            self.agent_lost("the agent bridge stopped".into(), true)
                .await;
            return;
        };
        match msg {
            FromAgent::Connected { stream_sid } => {
                tracing::info!(session = %self.id, %stream_sid, "agent stream started");
            }
            FromAgent::Audio(pcm) => {
                if self.ai_turn.is_none() && agent.queue.is_empty() {
                    agent.waiting_since = Some(now);
                }
                agent.last_audio_at = Some(now);
                agent.queue.push_audio(&pcm);
            }
            FromAgent::Mark(name) => agent.queue.push_marker(Marker::Mark(name)),
            FromAgent::End => agent.queue.push_marker(Marker::End),
            FromAgent::Clear => {
                let markers = agent.queue.clear();
                agent.waiting_since = None;
                let mut finished = false;
                for marker in markers {
                    match marker {
                        Marker::Mark(name) => {
                            if let Some(link) = &agent.link {
                                link.echo_mark(name);
                            }
                        }
                        Marker::End => finished = true,
                    }
                }
                tracing::debug!(
                    session = %self.id,
                    at = self.timeline.position(now),
                    audio_end = self.ai_audio_end,
                    "agent cleared its audio"
                );
                self.end_ai_turn().await;
                if finished {
                    self.emit(EngineEvent::InterviewFinished {
                        session_id: self.id.clone(),
                    })
                    .await;
                }
            }
            FromAgent::Transcript(line) => {
                let (start_ms, end_ms) =
                    self.transcript_times(line.role, line.start_ms, line.end_ms, now);
                self.emit(EngineEvent::Transcript {
                    session_id: self.id.clone(),
                    role: line.role,
                    text: line.text,
                    is_final: line.is_final,
                    start_ms,
                    end_ms,
                })
                .await;
            }
            FromAgent::Disconnected { detail } => {
                self.agent_lost(detail, false).await;
            }
            FromAgent::Failed { detail } => {
                agent.link = None;
                agent.failed = true;
                self.agent_lost(detail, true).await;
            }
        }
    }

    /// Drops the agent's queued audio and ends the AI turn; true if the agent had ended the
    /// interview (its `end` was still queued).
    async fn drop_queued_audio(&mut self) -> bool {
        let finished = self.agent.as_mut().is_some_and(|agent| {
            agent.waiting_since = None;
            agent.queue.clear().contains(&Marker::End)
        });
        self.end_ai_turn().await;
        finished
    }

    /// The agent is gone (for now, or for good): the participant hears silence.
    pub(super) async fn agent_lost(&mut self, detail: String, failed: bool) {
        if self.drop_queued_audio().await {
            self.emit(EngineEvent::InterviewFinished {
                session_id: self.id.clone(),
            })
            .await;
        } else if failed {
            self.emit(EngineEvent::AgentFailed {
                session_id: self.id.clone(),
                detail,
            })
            .await;
        }
    }

    /// Fills in the times of an agent's transcript line it did not give: an AI line spans the
    /// current AI turn and its queued audio; a participant line their current or last turn.
    pub(super) fn transcript_times(
        &self,
        role: TurnRole,
        start_ms: Option<u64>,
        end_ms: Option<u64>,
        now: Instant,
    ) -> (u64, u64) {
        let now_pos = self.timeline.position(now);
        let (start, end) = match role {
            TurnRole::Ai => {
                let queued = self.agent.as_ref().map_or(0, |a| a.queue.len() as u64);
                let start = self.ai_turn.unwrap_or(now_pos);
                let end = match self.ai_turn {
                    Some(_) => self.ai_pos + queued,
                    None => now_pos + queued,
                };
                (start, end)
            }
            TurnRole::Participant => match (self.turn_start, self.last_turn) {
                (Some(start), _) => (start, now_pos),
                (None, Some((start, end))) => (start, end),
                (None, None) => (now_pos, now_pos),
            },
        };
        let start_ms = start_ms.unwrap_or(start / 48);
        let end_ms = end_ms.unwrap_or(end / 48).max(start_ms);
        (start_ms, end_ms)
    }
}

pub(super) fn log_bridge_stats(id: &str, link: &AgentLink, queue: &AiQueue) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = link.stats();
    tracing::info!(
        session = %id,
        connects = s.connects.load(Relaxed),
        frames_sent = s.frames_sent.load(Relaxed),
        dropped_full = s.frames_dropped_full.load(Relaxed),
        dropped_offline = s.frames_dropped_offline.load(Relaxed),
        ignored = s.ignored_messages.load(Relaxed),
        ai_samples_dropped = queue.dropped(),
        "agent bridge statistics"
    );
}

pub(super) async fn next_agent_message(agent: &mut Option<AgentSide>) -> Option<FromAgent> {
    match agent.as_mut().and_then(|a| a.link.as_mut()) {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}
