//! The agent side of a session: when to dial and stop the bridge, pacing the agent's queued
//! audio into 20 ms frames with its marks, and what the agent sends (audio, marks, clear,
//! transcript lines, end).

use crate::units::samples_to_ms;
use std::time::{Duration, Instant};

use crate::agent::bridge::FromAgent;
use crate::agent::playout::{AiQueue, Marker};
use crate::request::AgentRequest;
use earshot_vocab::Role;
use earshot_vocab::media_port::MediaEvent;

use super::{FRAME, Output, SessionCore, ToAgent};

/// An AI turn starts on the first tick that finds a whole frame queued once that frame has
/// waited this margin since it arrived (two frames queued start it at once): an agent pacing
/// its audio in real time then has the margin to spare on every later frame (network and tick
/// jitter). The margin costs a whole frame (20 ms) of latency on the turns whose audio
/// happens to arrive within it before a tick. Starting at zero was tried: a paced test agent
/// on a loaded machine then ran dry 80 ms into a turn (a 30 ms hole, `tests/e2e_agent.rs`),
/// so it starts at 10 ms and is raised by [`START_MARGIN_STEP`] after each underrun, up to
/// [`START_MARGIN_MAX`].
const START_MARGIN_INITIAL: Duration = Duration::from_millis(10);
const START_MARGIN_MAX: Duration = Duration::from_millis(20);
const START_MARGIN_STEP: Duration = Duration::from_millis(10);
/// A turn's queue ran dry for at most this many ticks and then the agent's audio went on with at
/// least [`UNDERRUN_MIN_SAMPLES`]: an underrun (the audio came late), not a pause between
/// sentences.
const UNDERRUN_MAX_TICKS: u32 = 2;
/// Late audio shorter than this is not counted: when the agent pauses, the bridge pushes out the
/// resampler's tail (its 5 ms delay) 50 ms later, which is the end of a talk, not late audio.
const UNDERRUN_MIN_SAMPLES: usize = FRAME / 2;
/// No new agent audio for this long: play what is queued even if it is shorter than a frame.
const AGENT_IDLE_START: Duration = Duration::from_millis(100);
/// The AI turn ends after its queue has been empty for this many ticks (200 ms), so that short
/// gaps in an agent's audio do not split a turn.
const AI_TURN_HANGOVER_TICKS: u32 = 10;

/// The external agent of an agent-led session.
pub(crate) struct AgentSide {
    pub(super) request: AgentRequest,
    /// A bridge runs (dialled, not stopped, not given up).
    pub(super) link_up: bool,
    /// AI audio (48 kHz) and markers waiting to be played.
    queue: AiQueue,
    /// Gave up (reported `AgentFailed`): not dialled again until a resume or a new peer.
    pub(super) failed: bool,
    /// When audio began waiting in an idle queue, and when the newest audio arrived.
    waiting_since: Option<Instant>,
    last_audio_at: Option<Instant>,
    /// Ticks of the current AI turn played with an empty queue.
    idle_ticks: u32,
    /// The wait for jitter before a turn starts (see [`START_MARGIN_INITIAL`]); raised by
    /// underruns, kept for the session.
    start_margin: Duration,
    /// Underruns seen in this session.
    pub(super) underruns: u32,
}

impl AgentSide {
    pub(crate) fn new(request: AgentRequest) -> Self {
        Self {
            request,
            link_up: false,
            queue: AiQueue::new(),
            failed: false,
            waiting_since: None,
            last_audio_at: None,
            idle_ticks: 0,
            start_margin: START_MARGIN_INITIAL,
            underruns: 0,
        }
    }

    /// Audio arrived while a turn is playing after its queue ran dry for a tick or two: the
    /// audio came late, so later turns wait longer before they start.
    fn note_late_audio(&mut self, turn_playing: bool, samples: usize) -> bool {
        if !turn_playing
            || samples < UNDERRUN_MIN_SAMPLES
            || self.idle_ticks == 0
            || self.idle_ticks > UNDERRUN_MAX_TICKS
        {
            return false;
        }
        self.underruns += 1;
        self.start_margin = (self.start_margin + START_MARGIN_STEP).min(START_MARGIN_MAX);
        true
    }

    /// Enough audio is queued to start an AI turn without running dry.
    fn ready_to_play(&self, now: Instant) -> bool {
        let q = &self.queue;
        if q.is_empty() {
            return false;
        }
        let waited = self
            .waiting_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.start_margin);
        let idle = self
            .last_audio_at
            .is_none_or(|t| now.saturating_duration_since(t) >= AGENT_IDLE_START);
        q.len() >= 2 * FRAME || (q.len() >= FRAME && waited) || q.markers() > 0 || idle
    }
}

impl SessionCore {
    fn tell_agent(&mut self, message: ToAgent) {
        self.outputs.push_back(Output::Agent(message));
    }

    /// Dials the agent when the session is active and no bridge runs.
    pub(super) fn maybe_start_agent(&mut self) {
        let live = self.is_live();
        if let Some(agent) = &mut self.agent
            && live
            && !agent.link_up
            && !agent.failed
        {
            tracing::info!(session = %self.id, url = %agent.request.url, format = %agent.request.audio_format, "dialling the agent");
            agent.link_up = true;
            let request = agent.request.clone();
            self.tell_agent(ToAgent::Dial(request));
        }
    }

    /// Ends the agent's stream (`stop`, close) on a pause or the end: its queued audio is
    /// dropped.
    pub(super) fn stop_agent(&mut self) {
        if let Some(agent) = &mut self.agent
            && agent.link_up
        {
            agent.link_up = false;
            let dropped_samples = agent.queue.dropped();
            self.tell_agent(ToAgent::Stop { dropped_samples });
        }
        if self.drop_queued_audio() {
            self.emit(MediaEvent::InterviewFinished {
                session_id: self.id.clone(),
            });
        }
    }

    /// Marks whose audio went out: echoed to the agent; true if the agent's `end` was among
    /// them.
    fn echo_markers(&mut self, markers: Vec<Marker>) -> bool {
        let mut finished = false;
        let link_up = self.agent.as_ref().is_some_and(|a| a.link_up);
        for marker in markers {
            match marker {
                Marker::Mark(name) if link_up => self.tell_agent(ToAgent::EchoMark(name)),
                Marker::Mark(_) => {}
                Marker::End => finished = true,
            }
        }
        finished
    }

    /// The agent's next frame: marks whose audio has been played are echoed, then the next
    /// 20 ms of queued audio (or silence) is taken.
    pub(super) fn agent_frame(&mut self, pos: u64, now: Instant, frame: &mut [i16; FRAME]) {
        let Some(agent) = &mut self.agent else {
            return;
        };
        // Markers whose audio went out on earlier ticks: it has been played by now.
        let mut due = Vec::new();
        while let Some(marker) = agent.queue.next_due() {
            due.push(marker);
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
        let finished = self.echo_markers(due);
        if start {
            self.ai_pos = self.ai_pos.max(pos);
            self.begin_ai_turn(self.ai_pos);
        }
        if self.ai_turn.is_some() {
            if played > 0 {
                self.record_ai(&frame[..played]);
                self.ai_audio_end = self.ai_pos + played as u64;
            }
            self.ai_pos += FRAME as u64;
        }
        if end {
            self.end_ai_turn();
        }
        if finished {
            self.emit(MediaEvent::InterviewFinished {
                session_id: self.id.clone(),
            });
        }
    }

    /// A message from the agent bridge (`None`: the bridge task ended).
    pub(super) fn on_agent_message(&mut self, msg: Option<FromAgent>, now: Instant) {
        let Some(agent) = &mut self.agent else {
            return;
        };
        let Some(msg) = msg else {
            agent.link_up = false;
            agent.failed = true;
            self.agent_lost("the agent bridge stopped".into(), true);
            return;
        };
        match msg {
            FromAgent::Connected { stream_sid } => {
                tracing::info!(session = %self.id, %stream_sid, "agent stream started");
            }
            FromAgent::Audio(pcm) => {
                if agent.note_late_audio(self.ai_turn.is_some(), pcm.len()) {
                    tracing::debug!(
                        session = %self.id,
                        underruns = agent.underruns,
                        start_margin_ms = agent.start_margin.as_millis() as u64,
                        "agent audio came after its slot; later AI turns start later"
                    );
                }
                if self.ai_turn.is_none() && agent.queue.is_empty() {
                    agent.waiting_since = Some(now);
                }
                agent.last_audio_at = Some(now);
                agent.queue.push_audio(&pcm);
            }
            FromAgent::Mark(name) => agent.queue.push_marker(Marker::Mark(name)),
            FromAgent::End => agent.queue.push_marker(Marker::End),
            FromAgent::Clear => {
                // Barge-in: the queued audio is dropped; its marks are echoed at once.
                let markers = agent.queue.clear();
                agent.waiting_since = None;
                let finished = self.echo_markers(markers);
                tracing::debug!(
                    session = %self.id,
                    at = self.timeline.position(now),
                    audio_end = self.ai_audio_end,
                    "agent cleared its audio"
                );
                self.end_ai_turn();
                if finished {
                    self.emit(MediaEvent::InterviewFinished {
                        session_id: self.id.clone(),
                    });
                }
            }
            FromAgent::Transcript(line) => {
                let (start_ms, end_ms) =
                    self.transcript_times(line.role, line.start_ms, line.end_ms, now);
                self.emit(MediaEvent::Transcript {
                    session_id: self.id.clone(),
                    role: line.role,
                    text: line.text,
                    is_final: line.is_final,
                    start_ms,
                    end_ms,
                });
            }
            FromAgent::Disconnected { detail } => self.agent_lost(detail, false),
            FromAgent::Failed { detail } => {
                agent.link_up = false;
                agent.failed = true;
                self.agent_lost(detail, true);
            }
        }
    }

    /// Drops the agent's queued audio and ends the AI turn; true if the agent had ended the
    /// interview (its `end` was still queued).
    fn drop_queued_audio(&mut self) -> bool {
        let finished = self.agent.as_mut().is_some_and(|agent| {
            agent.waiting_since = None;
            agent.queue.clear().contains(&Marker::End)
        });
        self.end_ai_turn();
        finished
    }

    /// The agent is gone (for now, or for good): the participant hears silence.
    fn agent_lost(&mut self, detail: String, failed: bool) {
        self.signals.agent_errors = self.signals.agent_errors.saturating_add(1);
        if self.drop_queued_audio() {
            self.emit(MediaEvent::InterviewFinished {
                session_id: self.id.clone(),
            });
        } else if failed {
            self.emit(MediaEvent::AgentFailed {
                session_id: self.id.clone(),
                detail,
            });
        }
    }

    /// Fills in the times of an agent's transcript line it did not give: an AI line spans the
    /// current AI turn and its queued audio; a participant line their current or last turn.
    fn transcript_times(
        &self,
        role: Role,
        start_ms: Option<u64>,
        end_ms: Option<u64>,
        now: Instant,
    ) -> (u64, u64) {
        let now_pos = self.timeline.position(now);
        let (start, end) = match role {
            Role::Ai => {
                let queued = self.agent.as_ref().map_or(0, |a| a.queue.len() as u64);
                let start = self.ai_turn.unwrap_or(now_pos);
                let end = match self.ai_turn {
                    Some(_) => self.ai_pos + queued,
                    None => now_pos + queued,
                };
                (start, end)
            }
            Role::Participant => match (self.turn_start, self.last_turn) {
                (Some(start), _) => (start, now_pos),
                (None, Some((start, end))) => (start, end),
                (None, None) => (now_pos, now_pos),
            },
        };
        let start_ms = start_ms.unwrap_or(samples_to_ms(start));
        let end_ms = end_ms.unwrap_or(samples_to_ms(end)).max(start_ms);
        (start_ms, end_ms)
    }
}
