//! One session's media task: the participant's peer in, the pipeline (reorder, loss recovery,
//! decode, denoise, voice activity), the interviewer — the built-in one's turn-taking and
//! prompt playout, or an external agent over the bridge ([`crate::agent`]) whose audio is
//! queued and paced here — and the session's recordings on one timeline. The timeline is
//! 48 kHz samples of *active* time: it stops while no peer is attached, so recordings hold no
//! paused time. Turns (voice activity for the participant, audio played for the AI) and
//! transcript lines are reported as [`EngineEvent`]s on that timeline.
//!
//! This module owns the task (its state and its event loop); the paths through it live in
//! `participant` (packets in), `ai` (the 20 ms tick out), `agent` (the bridge's side),
//! `finalize` (the recordings' end) and `timeline`.

use crate::agent::bridge::{AgentLink, FromAgent};
use crate::agent::playout::{AiQueue, Marker};
use crate::codec::{OpusEncoder, OpusSettings, ParticipantDecoder};
use crate::denoise::{Denoiser, LATENCY_SAMPLES};
use crate::engine::{
    AgentRequest, EngineEvent, LoadedPrompt, RecordedFile, RecordingRequest, TurnRole,
};
use crate::interviewer::{Interviewer, InterviewerAction};
use crate::jitter::JitterBuffer;
use crate::metrics::MediaMetrics;
use crate::peer::{PeerEvent, ServerPeer};
use crate::recorder::{QualityPreset, TrackWriter};
use crate::vad::{VadConfig, VoiceActivity};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod agent;
mod ai;
mod finalize;
mod participant;
mod timeline;

use agent::{AgentSide, next_agent_message};
use ai::Playout;
pub(crate) use finalize::{derive_file, finalize_orphan};
use timeline::Timeline;

/// Samples per 20 ms frame at 48 kHz.
pub const FRAME: usize = 960;
const FRAME_DURATION: Duration = Duration::from_millis(20);
/// How long a gap in the participant's packets is held open for a late packet.
const REORDER_WAIT: Duration = Duration::from_millis(30);
/// Lead-in before the interviewer's first words, so the participant's playout has started.
const LEAD_IN_SAMPLES: u64 = 48_000 / 2;
/// No participant packet for this long on a connected peer: the media stopped.
const AUDIO_GAP: Duration = Duration::from_secs(1);
/// Agent audio waits at least this long before a turn starts playing, so that an agent pacing
/// its audio in real time does not run dry on the next tick (network and tick jitter).
const AGENT_JITTER_MARGIN: Duration = Duration::from_millis(10);
/// No new agent audio for this long: play what is queued even if it is shorter than a frame.
const AGENT_IDLE_START: Duration = Duration::from_millis(100);
/// The AI turn ends after its queue has been empty for this many ticks (200 ms), so that short
/// gaps in an agent's audio do not split a turn.
const AI_TURN_HANGOVER_TICKS: u32 = 10;

pub(crate) enum SessionCommand {
    Attach {
        peer: Arc<ServerPeer>,
        peer_events: mpsc::Receiver<PeerEvent>,
        /// The newest agent request (resume context), used the next time the agent is dialled.
        agent: Option<AgentRequest>,
    },
    HangUp,
    /// The lifecycle paused the session: hold the interview (the peer stays up).
    Pause,
    /// The lifecycle resumed it.
    /// The lifecycle resumed it; a fresh agent request (resume context) replaces the old one.
    Resume(Option<AgentRequest>),
    Finish,
    /// Stop without finalizing (the session is being deleted); acknowledged once the files
    /// are closed.
    Discard(tokio::sync::oneshot::Sender<()>),
    Flush,
}

pub(crate) struct SessionParams {
    pub session_id: String,
    pub prompts: Vec<LoadedPrompt>,
    pub silence_ms: u32,
    pub start_at: usize,
    pub noise_suppression: bool,
    pub recording: Option<RecordingRequest>,
    pub opus: OpusSettings,
    /// `Some`: an external agent leads the interview instead of the built-in interviewer.
    pub agent: Option<AgentRequest>,
    pub metrics: Arc<MediaMetrics>,
}

struct Recording {
    dir: PathBuf,
    quality: QualityPreset,
    derive_at_end: bool,
    participant: TrackWriter,
    ai: TrackWriter,
}

pub(crate) struct SessionMedia {
    id: String,
    events: mpsc::Sender<EngineEvent>,
    prompts: Vec<LoadedPrompt>,
    timeline: Timeline,
    jitter: JitterBuffer,
    decoder: ParticipantDecoder,
    denoiser: Denoiser,
    vad: VoiceActivity,
    /// (first RTP timestamp, its timeline position) of the current peer's stream.
    rtp_anchor: Option<(u32, u64)>,
    interviewer: Interviewer,
    playout: Option<Playout>,
    /// Where the next AI frame goes on the timeline.
    ai_pos: u64,
    /// The AI turn being played (its start), and where its audio ends so far.
    ai_turn: Option<u64>,
    ai_audio_end: u64,
    /// `Some` for an agent-led session.
    agent: Option<AgentSide>,
    encoder: OpusEncoder,
    recording: Option<Recording>,
    turn_start: Option<u64>,
    /// The participant's last finished turn (start, end).
    last_turn: Option<(u64, u64)>,
    /// Decisions taken while draining packets, acted on (async) right after.
    pending_speak: Option<usize>,
    pending_events: Vec<EngineEvent>,
    peer: Option<Arc<ServerPeer>>,
    /// DTLS-SRTP is up on the current peer: AI audio can be sent.
    peer_connected: bool,
    metrics: Arc<MediaMetrics>,
    /// The encoded 20 ms of silence, reused while the AI is quiet.
    silence_packet: Option<bytes::Bytes>,
    /// The lifecycle holds the session (paused).
    held: bool,
    /// A peer of this task has connected: there is media to keep (or to finalize).
    ever_connected: bool,
    last_audio: Option<Instant>,
    audio_stopped: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("creating recording files in {dir}: {detail}")]
    Recording { dir: PathBuf, detail: String },
    #[error("opus: {0}")]
    Codec(String),
}

impl SessionMedia {
    pub(crate) fn new(
        p: SessionParams,
        events: mpsc::Sender<EngineEvent>,
    ) -> Result<Self, SessionError> {
        let recording = match p.recording {
            None => None,
            Some(req) => {
                let err = |e: &dyn std::fmt::Display| SessionError::Recording {
                    dir: req.dir.clone(),
                    detail: e.to_string(),
                };
                std::fs::create_dir_all(&req.dir).map_err(|e| err(&e))?;
                let participant = TrackWriter::open(req.dir.join("participant.wav"), req.quality)
                    .map_err(|e| err(&e))?;
                let ai =
                    TrackWriter::open(req.dir.join("ai.wav"), req.quality).map_err(|e| err(&e))?;
                Some(Recording {
                    dir: req.dir,
                    quality: req.quality,
                    derive_at_end: req.derive_at_end,
                    participant,
                    ai,
                })
            }
        };
        let encoder = OpusEncoder::new(p.opus).map_err(|e| SessionError::Codec(e.to_string()))?;
        let decoder = ParticipantDecoder::new().map_err(|e| SessionError::Codec(e.to_string()))?;
        Ok(Self {
            id: p.session_id,
            events,
            interviewer: Interviewer::new(
                p.prompts.len(),
                p.silence_ms,
                p.start_at,
                LEAD_IN_SAMPLES,
            ),
            prompts: p.prompts,
            timeline: Timeline::new(0, Instant::now()),
            jitter: JitterBuffer::new(REORDER_WAIT),
            decoder,
            denoiser: Denoiser::new(p.noise_suppression),
            vad: VoiceActivity::new(VadConfig::default()),
            rtp_anchor: None,
            playout: None,
            ai_pos: 0,
            ai_turn: None,
            ai_audio_end: 0,
            agent: p.agent.map(AgentSide::new),
            encoder,
            recording,
            turn_start: None,
            last_turn: None,
            pending_speak: None,
            pending_events: Vec::new(),
            peer: None,
            peer_connected: false,
            metrics: p.metrics,
            silence_packet: None,
            held: false,
            ever_connected: false,
            last_audio: None,
            audio_stopped: false,
        })
    }

    async fn emit(&mut self, ev: EngineEvent) {
        let _ = self.events.send(ev).await;
    }

    /// Runs until finished: peer events, commands and the 20 ms clock.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<SessionCommand>,
        peer: Arc<ServerPeer>,
        peer_events: mpsc::Receiver<PeerEvent>,
    ) {
        // The timeline starts when the first peer connects, after any audio this session
        // already recorded (a session resumed after a restart of the process).
        let base = self
            .recording
            .as_ref()
            .map_or(0, |r| r.participant.position().max(r.ai.position()));
        self.timeline = Timeline::new(base, Instant::now());
        self.timeline.pause(Instant::now());
        self.peer = Some(peer);
        let mut peer_events = Some(peer_events);
        let mut tick = tokio::time::interval(FRAME_DURATION);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(SessionCommand::Attach { peer, peer_events: rx, agent }) => {
                        self.detach_peer().await;
                        self.attach_peer(peer, agent);
                        peer_events = Some(rx);
                    }
                    Some(SessionCommand::HangUp) => {
                        self.detach_peer().await;
                        peer_events = None;
                        if !self.ever_connected {
                            self.release_unused().await;
                            return;
                        }
                    }
                    Some(SessionCommand::Pause) => {
                        self.held = true;
                        self.playout = None;
                        let now = Instant::now();
                        self.update_timeline(now);
                        self.end_turn(self.timeline.position(now)).await;
                        self.stop_agent().await;
                    }
                    Some(SessionCommand::Resume(request)) => {
                        if self.held {
                            self.held = false;
                            if let Some(agent) = &mut self.agent {
                                agent.failed = false;
                                if let Some(request) = request {
                                    agent.request = request;
                                }
                            }
                            self.resume_interview(Instant::now());
                        }
                    }
                    Some(SessionCommand::Flush) => self.flush(),
                    Some(SessionCommand::Discard(ack)) => {
                        self.stop_agent().await;
                        self.detach_peer().await;
                        self.recording = None;
                        let _ = ack.send(());
                        return;
                    }
                    Some(SessionCommand::Finish) | None => break,
                },
                ev = next_peer_event(&mut peer_events) => match ev {
                    Some(PeerEvent::Audio(pkt)) => {
                        self.metrics.participant_packet();
                        self.last_audio = Some(pkt.arrival);
                        if self.audio_stopped {
                            self.audio_stopped = false;
                            self.emit(EngineEvent::AudioRestored { session_id: self.id.clone() }).await;
                        }
                        if self.timeline.paused_at.is_none() {
                            self.jitter.push(pkt.sequence, pkt.timestamp, pkt.payload, pkt.arrival);
                            self.drain_jitter(Instant::now());
                            self.act_on_pending().await;
                        }
                    }
                    Some(PeerEvent::Connected) => {
                        self.peer_connected = true;
                        self.ever_connected = true;
                        self.last_audio = Some(Instant::now());
                        self.update_timeline(Instant::now());
                        self.emit(EngineEvent::Connected { session_id: self.id.clone() }).await;
                        self.maybe_start_agent();
                    }
                    // Quiet for a while but not failed: the peer stays, nothing to act on (a
                    // participant whose audio stops is caught by `AUDIO_GAP` below).
                    Some(PeerEvent::Disconnected) => {
                        tracing::info!(session = %self.id, "participant's link quiet (nothing heard for a while)");
                    }
                    Some(PeerEvent::Restored) => {
                        tracing::info!(session = %self.id, "participant's link heard again");
                    }
                    Some(PeerEvent::Failed | PeerEvent::Closed) | None => {
                        self.detach_peer().await;
                        peer_events = None;
                        if !self.ever_connected {
                            self.release_unused().await;
                            return;
                        }
                        self.emit(EngineEvent::Disconnected { session_id: self.id.clone() }).await;
                    }
                },
                scheduled = tick.tick() => {
                    let now = Instant::now();
                    if self.peer_connected
                        && !self.audio_stopped
                        && self.last_audio.is_some_and(|t| now.saturating_duration_since(t) > AUDIO_GAP)
                    {
                        self.audio_stopped = true;
                        self.emit(EngineEvent::Disconnected { session_id: self.id.clone() }).await;
                    }
                    self.drain_jitter(now);
                    self.act_on_pending().await;
                    if self.timeline.paused_at.is_none() && self.peer_connected {
                        // AI frames are placed at the tick's scheduled time: a tick that runs
                        // late (a busy machine) must not push the following frames ahead of
                        // where they are sent on the timeline.
                        let scheduled = scheduled.into_std();
                        self.metrics.tick(now.saturating_duration_since(scheduled));
                        let at = scheduled.max(self.timeline.last_resume);
                        self.ai_tick(at).await;
                    }
                }
                msg = next_agent_message(&mut self.agent) => self.on_agent_message(msg).await,
            }
        }
        self.stop_agent().await;
        self.detach_peer().await;
        let (j, d) = (self.jitter.stats(), self.decoder.stats());
        tracing::info!(
            session = %self.id,
            received = j.received, lost = j.lost, late = j.late, duplicate = j.duplicate,
            reordered = j.reordered, resets = j.resets, fec = d.fec, plc = d.plc, corrupt = d.corrupt,
            "participant audio statistics"
        );
        self.finalize().await;
    }

    fn attach_peer(&mut self, peer: Arc<ServerPeer>, agent: Option<AgentRequest>) {
        if let Some(side) = &mut self.agent {
            if let Some(request) = agent {
                side.request = request;
            }
            side.failed = false;
        } else if agent.is_some() {
            tracing::warn!(session = %self.id, "agent request on a session of the built-in interviewer ignored");
        }
        self.peer = Some(peer);
        self.peer_connected = false;
        self.audio_stopped = false;
        // A returning participant hears the cut-off question again (from the timeline point
        // where the new peer connects).
        self.playout = None;
        let pos = self.timeline.position(Instant::now());
        self.interviewer.resume(pos, LEAD_IN_SAMPLES);
        // A new peer has its own RTP clock and sequence numbers.
        self.rtp_anchor = None;
        self.jitter = JitterBuffer::new(REORDER_WAIT);
        if let Ok(d) = ParticipantDecoder::new() {
            self.decoder = d;
        }
    }

    /// The timeline runs only while a peer is connected and the session is not held.
    fn update_timeline(&mut self, now: Instant) {
        if self.peer_connected && !self.held {
            self.timeline.resume(now);
        } else {
            self.timeline.pause(now);
        }
    }

    /// The participant's packets are placed anew from here: after a hold the RTP stream went on
    /// while the timeline stood still, so the old anchor would put new audio after the pause,
    /// and the sequence gap would be "concealed" as if it were loss.
    fn restart_participant_stream(&mut self) {
        self.rtp_anchor = None;
        self.jitter = JitterBuffer::new(REORDER_WAIT);
        if let Ok(d) = ParticipantDecoder::new() {
            self.decoder = d;
        }
    }

    fn resume_interview(&mut self, now: Instant) {
        self.update_timeline(now);
        self.restart_participant_stream();
        self.playout = None;
        let pos = self.timeline.position(now);
        self.interviewer.resume(pos, LEAD_IN_SAMPLES);
        self.maybe_start_agent();
    }

    /// The task's peer went (failed, or hung up) without ever connecting: nothing was
    /// recorded, so the task ends and gives back its files and its slot; a later offer for the
    /// session starts a new one, which continues the same files.
    async fn release_unused(&mut self) {
        tracing::info!(session = %self.id, "peer never connected: media session released");
        self.stop_agent().await;
        self.recording = None;
    }

    async fn detach_peer(&mut self) {
        self.peer_connected = false;
        if let Some(peer) = self.peer.take() {
            peer.close().await;
        }
        self.timeline.pause(Instant::now());
        self.end_turn(self.timeline.position(Instant::now())).await;
        // What was playing is cut off (a prompt is asked again; agent audio still queued
        // plays when a peer is back, as a new turn).
        self.end_ai_turn().await;
    }
}

async fn next_peer_event(rx: &mut Option<mpsc::Receiver<PeerEvent>>) -> Option<PeerEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
