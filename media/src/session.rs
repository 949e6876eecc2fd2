//! One session's media task: the participant's peer in, the pipeline (reorder, loss recovery,
//! decode, denoise, voice activity), the interviewer — the built-in one's turn-taking and
//! prompt playout, or an external agent over the bridge ([`crate::agent`]) whose audio is
//! queued and paced here — and the session's recordings on one timeline. The timeline is
//! 48 kHz samples of *active* time: it stops while no peer is attached, so recordings hold no
//! paused time. Turns (voice activity for the participant, audio played for the AI) and
//! transcript lines are reported as [`EngineEvent`]s on that timeline.

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

/// The session timeline: active time since the first peer, pauses excluded.
struct Timeline {
    /// Samples already recorded before this process took the session over.
    base: u64,
    origin: Instant,
    paused_total: Duration,
    paused_at: Option<Instant>,
    /// When the timeline last started running.
    last_resume: Instant,
}

impl Timeline {
    fn new(base: u64, now: Instant) -> Self {
        Self {
            base,
            origin: now,
            paused_total: Duration::ZERO,
            paused_at: None,
            last_resume: now,
        }
    }
    fn position(&self, now: Instant) -> u64 {
        let until = self.paused_at.unwrap_or(now);
        let active = until
            .saturating_duration_since(self.origin)
            .saturating_sub(self.paused_total);
        self.base + (active.as_micros() as u64) * 48 / 1000
    }
    fn pause(&mut self, now: Instant) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }
    fn resume(&mut self, now: Instant) {
        if let Some(at) = self.paused_at.take() {
            self.paused_total += now.saturating_duration_since(at);
            self.last_resume = now;
        }
    }
}

struct Recording {
    dir: PathBuf,
    quality: QualityPreset,
    participant: TrackWriter,
    ai: TrackWriter,
}

/// Prompt being played: index and next sample.
struct Playout {
    index: usize,
    offset: usize,
}

/// The external agent of an agent-led session.
struct AgentSide {
    request: AgentRequest,
    /// The running bridge; `None` while paused, before the first connect, or after failing.
    link: Option<AgentLink>,
    /// AI audio (48 kHz) and markers waiting to be played.
    queue: AiQueue,
    /// Gave up (reported `AgentFailed`): not dialled again until a resume or a new peer.
    failed: bool,
    /// When audio began waiting in an idle queue, and when the newest audio arrived.
    waiting_since: Option<Instant>,
    last_audio_at: Option<Instant>,
    /// Ticks of the current AI turn played with an empty queue.
    idle_ticks: u32,
}

impl AgentSide {
    fn new(request: AgentRequest) -> Self {
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
    fn ready_to_play(&self, now: Instant) -> bool {
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
                        self.last_audio = Some(Instant::now());
                        self.update_timeline(Instant::now());
                        self.emit(EngineEvent::Connected { session_id: self.id.clone() }).await;
                        self.maybe_start_agent();
                    }
                    Some(PeerEvent::Disconnected | PeerEvent::Failed | PeerEvent::Closed) | None => {
                        self.detach_peer().await;
                        peer_events = None;
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

    /// Dials the agent when the session is active and no bridge runs.
    fn maybe_start_agent(&mut self) {
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
    async fn stop_agent(&mut self) {
        let mut finished = false;
        if let Some(agent) = &mut self.agent {
            if let Some(link) = agent.link.take() {
                log_bridge_stats(&self.id, &link, &agent.queue);
            }
            finished = agent.queue.clear().contains(&Marker::End);
            agent.waiting_since = None;
        }
        self.end_ai_turn().await;
        if finished {
            self.emit(EngineEvent::InterviewFinished {
                session_id: self.id.clone(),
            })
            .await;
        }
    }

    /// Participant path: every frame the jitter buffer releases is decoded, denoised,
    /// analysed for voice, recorded and shown to the interviewer.
    fn drain_jitter(&mut self, now: Instant) {
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
}

impl SessionMedia {
    async fn act_on_pending(&mut self) {
        for ev in std::mem::take(&mut self.pending_events) {
            self.emit(ev).await;
        }
        if let Some(i) = self.pending_speak.take() {
            let pos = self.timeline.position(Instant::now());
            self.start_prompt(i, pos).await;
        }
    }

    async fn end_turn(&mut self, end: u64) {
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

    /// AI audio starts playing at `pos`.
    async fn begin_ai_turn(&mut self, pos: u64) {
        if self.ai_turn.is_none() {
            self.ai_turn = Some(pos);
            self.ai_audio_end = pos;
            self.emit(EngineEvent::TurnStarted {
                session_id: self.id.clone(),
                role: TurnRole::Ai,
                at_ms: pos / 48,
            })
            .await;
        }
    }

    /// The AI audio was played out, cleared or cut off.
    async fn end_ai_turn(&mut self) {
        if let Some(start) = self.ai_turn.take() {
            self.emit(EngineEvent::TurnEnded {
                session_id: self.id.clone(),
                role: TurnRole::Ai,
                start_ms: start / 48,
                end_ms: self.ai_audio_end.max(start) / 48,
            })
            .await;
        }
    }

    async fn start_prompt(&mut self, index: usize, pos: u64) {
        let Some(LoadedPrompt { prompt, audio }) = self.prompts.get(index) else {
            return;
        };
        let pcm = &audio.pcm;
        tracing::debug!(session = %self.id, prompt = %prompt.id, pos, "interviewer speaks");
        let progress = EngineEvent::Progress {
            session_id: self.id.clone(),
            prompt_index: index,
            prompt_id: prompt.id.clone(),
            text: prompt.text.clone(),
        };
        let transcript = EngineEvent::Transcript {
            session_id: self.id.clone(),
            role: TurnRole::Ai,
            text: prompt.text.clone(),
            is_final: true,
            start_ms: pos / 48,
            end_ms: (pos + pcm.len() as u64) / 48,
        };
        self.end_ai_turn().await;
        self.playout = Some(Playout { index, offset: 0 });
        self.ai_pos = pos;
        self.emit(progress).await;
        self.begin_ai_turn(pos).await;
        self.emit(transcript).await;
    }

    /// AI path, every 20 ms: the next frame of the prompt or the agent's audio being played
    /// (or silence) is encoded and sent; AI audio is recorded where it was sent on the
    /// timeline.
    async fn ai_tick(&mut self, now: Instant) {
        let pos = self.timeline.position(now);
        let mut frame = [0i16; FRAME];
        let mut prompt_packet = None;
        if self.agent.is_some() {
            self.agent_frame(pos, Instant::now(), &mut frame).await;
        } else {
            prompt_packet = self.prompt_frame(pos, &mut frame).await;
        }
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
        if let Some(peer) = &self.peer {
            match peer.send_opus(encoded, FRAME_DURATION).await {
                Ok(()) => self.metrics.ai_packet(),
                Err(e) => {
                    tracing::debug!(session = %self.id, error = %e, "sending AI audio failed")
                }
            }
        }
    }

    fn record_ai(&mut self, frame: &[i16]) {
        if let Some(rec) = &mut self.recording
            && let Err(e) = rec.ai.write_at(self.ai_pos, frame)
        {
            tracing::warn!(session = %self.id, error = %e, "AI track write failed");
        }
    }

    /// The built-in interviewer's next frame: the prompt being played (with its packet,
    /// encoded when the prompt was loaded), or silence (`None`).
    async fn prompt_frame(&mut self, pos: u64, frame: &mut [i16; FRAME]) -> Option<bytes::Bytes> {
        if let Some(InterviewerAction::Speak(i)) = self.interviewer.poll(pos) {
            self.start_prompt(i, pos).await;
        }
        let play = self.playout.as_mut()?;
        let audio = &self.prompts.get(play.index)?.audio;
        let (pcm, packet) = (&audio.pcm, audio.packets.get(play.offset / FRAME).cloned());
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
            self.end_ai_turn().await;
            if let Some(InterviewerAction::Finished) = self.interviewer.prompt_finished(self.ai_pos)
            {
                self.emit(EngineEvent::InterviewFinished {
                    session_id: self.id.clone(),
                })
                .await;
            }
        }
        packet
    }

    /// The agent's next frame: marks whose audio has been played are echoed, then the next
    /// 20 ms of queued audio (or silence) is taken.
    async fn agent_frame(&mut self, pos: u64, now: Instant, frame: &mut [i16; FRAME]) {
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
    async fn on_agent_message(&mut self, msg: Option<FromAgent>) {
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
            FromAgent::Transcript {
                role,
                text,
                is_final,
                start_ms,
                end_ms,
            } => {
                let (start_ms, end_ms) = self.transcript_times(role, start_ms, end_ms, now);
                self.emit(EngineEvent::Transcript {
                    session_id: self.id.clone(),
                    role,
                    text,
                    is_final,
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

    /// The agent is gone (for now, or for good): the participant hears silence.
    async fn agent_lost(&mut self, detail: String, failed: bool) {
        let mut finished = false;
        if let Some(agent) = &mut self.agent {
            finished = agent.queue.clear().contains(&Marker::End);
            agent.waiting_since = None;
        }
        self.end_ai_turn().await;
        if finished {
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
    fn transcript_times(
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

    fn flush(&mut self) {
        if let Some(rec) = &mut self.recording {
            for w in [&mut rec.participant, &mut rec.ai] {
                if let Err(e) = w.flush() {
                    tracing::warn!(session = %self.id, error = %e, "flushing recording failed");
                }
            }
        }
    }

    /// Finalizes the WAVs, then (off the async threads) builds the mix and the MP3s.
    async fn finalize(mut self) {
        let id = self.id.clone();
        if let Some(rec) = self.recording.take() {
            let events = self.events.clone();
            let sid = id.clone();
            // Bulk work: one session at a time, below the real-time path (finalizer.rs).
            self.metrics.finalize_queued();
            let result = crate::finalizer::run(move || finalize_files(rec)).await;
            self.metrics.finalize_done();
            let outcome = match result {
                Some(Ok(files)) => Ok(files),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("the finalizer thread failed".to_owned()),
            };
            match outcome {
                Ok(files) => {
                    for file in files {
                        let _ = events
                            .send(EngineEvent::RecordingReady {
                                session_id: sid.clone(),
                                file,
                            })
                            .await;
                    }
                }
                Err(detail) => {
                    tracing::error!(session = %sid, %detail, "finalizing recordings failed");
                    let _ = events
                        .send(EngineEvent::Failed {
                            session_id: sid.clone(),
                            detail,
                        })
                        .await;
                }
            }
        }
        self.emit(EngineEvent::RecordingsFinished { session_id: id })
            .await;
    }
}

/// Finalizes the tracks a session left on disk without a media task (the process restarted and
/// the session ended without the participant coming back): the flushed WAVs are closed, the
/// mix and MP3s made. Nothing on disk: nothing to report.
pub(crate) fn finalize_orphan(
    req: &RecordingRequest,
) -> Result<Vec<RecordedFile>, crate::recorder::RecorderError> {
    let participant = req.dir.join("participant.wav");
    let ai = req.dir.join("ai.wav");
    if !participant.exists() && !ai.exists() {
        return Ok(Vec::new());
    }
    finalize_files(Recording {
        dir: req.dir.clone(),
        quality: req.quality,
        participant: TrackWriter::open(participant, req.quality)?,
        ai: TrackWriter::open(ai, req.quality)?,
    })
}

fn finalize_files(rec: Recording) -> Result<Vec<RecordedFile>, crate::recorder::RecorderError> {
    let mut files = Vec::with_capacity(6);
    let participant = rec.participant.finalize()?;
    let ai = rec.ai.finalize()?;
    let mix = crate::recorder::mix_wavs(&participant.path, &ai.path, &rec.dir.join("mix.wav"))?;
    for (track, wav) in [("participant", participant), ("ai", ai), ("mix", mix)] {
        let mp3_path = rec.dir.join(format!("{track}.mp3"));
        let mp3 =
            crate::recorder::encode_mp3(&wav.path, &mp3_path, rec.quality.mp3_bitrate_kbps())?;
        files.push(recorded(track, "wav", wav));
        files.push(recorded(track, "mp3", mp3));
    }
    Ok(files)
}

fn recorded(track: &str, format: &str, info: crate::recorder::TrackInfo) -> RecordedFile {
    RecordedFile {
        track: track.into(),
        format: format.into(),
        path: info.path,
        duration_ms: info.duration_ms,
        bytes: info.bytes,
    }
}

fn log_bridge_stats(id: &str, link: &AgentLink, queue: &AiQueue) {
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

async fn next_agent_message(agent: &mut Option<AgentSide>) -> Option<FromAgent> {
    match agent.as_mut().and_then(|a| a.link.as_mut()) {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_peer_event(rx: &mut Option<mpsc::Receiver<PeerEvent>>) -> Option<PeerEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
