//! One session's media task: the participant's peer in, the pipeline (reorder, loss recovery,
//! decode, denoise, voice activity), the built-in interviewer's turn-taking and prompt playout,
//! and the session's recordings on one timeline. The timeline is 48 kHz samples of *active*
//! time: it stops while no peer is attached, so recordings hold no paused time.

use crate::codec::{OpusEncoder, OpusSettings, ParticipantDecoder};
use crate::denoise::{Denoiser, LATENCY_SAMPLES};
use crate::engine::{EngineEvent, Prompt, RecordedFile, RecordingRequest};
use crate::interviewer::{Interviewer, InterviewerAction};
use crate::jitter::JitterBuffer;
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

pub(crate) enum SessionCommand {
    Attach {
        peer: Arc<ServerPeer>,
        peer_events: mpsc::Receiver<PeerEvent>,
    },
    HangUp,
    /// The lifecycle paused the session: hold the interview (the peer stays up).
    Pause,
    /// The lifecycle resumed it.
    Resume,
    Finish,
    /// Stop without finalizing (the session is being deleted); acknowledged once the files
    /// are closed.
    Discard(tokio::sync::oneshot::Sender<()>),
    Flush,
}

pub(crate) struct SessionParams {
    pub session_id: String,
    pub prompts: Vec<(Prompt, Arc<Vec<i16>>)>,
    pub silence_ms: u32,
    pub start_at: usize,
    pub noise_suppression: bool,
    pub recording: Option<RecordingRequest>,
    pub opus: OpusSettings,
}

/// The session timeline: active time since the first peer, pauses excluded.
struct Timeline {
    /// Samples already recorded before this process took the session over.
    base: u64,
    origin: Instant,
    paused_total: Duration,
    paused_at: Option<Instant>,
}

impl Timeline {
    fn new(base: u64, now: Instant) -> Self {
        Self {
            base,
            origin: now,
            paused_total: Duration::ZERO,
            paused_at: None,
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

pub(crate) struct SessionMedia {
    id: String,
    events: mpsc::Sender<EngineEvent>,
    prompts: Vec<(Prompt, Arc<Vec<i16>>)>,
    timeline: Timeline,
    jitter: JitterBuffer,
    decoder: ParticipantDecoder,
    denoiser: Denoiser,
    vad: VoiceActivity,
    /// (first RTP timestamp, its timeline position) of the current peer's stream.
    rtp_anchor: Option<(u32, u64)>,
    interviewer: Interviewer,
    playout: Option<Playout>,
    ai_pos: u64,
    encoder: OpusEncoder,
    recording: Option<Recording>,
    turn_start: Option<u64>,
    /// Decisions taken while draining packets, acted on (async) right after.
    pending_speak: Option<usize>,
    pending_turn_end: Option<u64>,
    peer: Option<Arc<ServerPeer>>,
    /// DTLS-SRTP is up on the current peer: AI audio can be sent.
    peer_connected: bool,
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
            encoder,
            recording,
            turn_start: None,
            pending_speak: None,
            pending_turn_end: None,
            peer: None,
            peer_connected: false,
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
                    Some(SessionCommand::Attach { peer, peer_events: rx }) => {
                        self.detach_peer().await;
                        self.attach_peer(peer);
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
                    }
                    Some(SessionCommand::Resume) => {
                        if self.held {
                            self.held = false;
                            self.resume_interview(Instant::now());
                        }
                    }
                    Some(SessionCommand::Flush) => self.flush(),
                    Some(SessionCommand::Discard(ack)) => {
                        self.detach_peer().await;
                        self.recording = None;
                        let _ = ack.send(());
                        return;
                    }
                    Some(SessionCommand::Finish) | None => break,
                },
                ev = next_peer_event(&mut peer_events) => match ev {
                    Some(PeerEvent::Audio(pkt)) => {
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
                    }
                    Some(PeerEvent::Disconnected | PeerEvent::Failed | PeerEvent::Closed) | None => {
                        self.detach_peer().await;
                        peer_events = None;
                        self.emit(EngineEvent::Disconnected { session_id: self.id.clone() }).await;
                    }
                },
                _ = tick.tick() => {
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
                        self.ai_tick(now).await;
                    }
                }
            }
        }
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

    fn attach_peer(&mut self, peer: Arc<ServerPeer>) {
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

    fn resume_interview(&mut self, now: Instant) {
        self.update_timeline(now);
        self.playout = None;
        let pos = self.timeline.position(now);
        self.interviewer.resume(pos, LEAD_IN_SAMPLES);
    }

    async fn detach_peer(&mut self) {
        self.peer_connected = false;
        if let Some(peer) = self.peer.take() {
            peer.close().await;
        }
        self.timeline.pause(Instant::now());
        self.end_turn(self.timeline.position(Instant::now())).await;
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
            let end = pos + samples;
            if vad.started {
                self.turn_start = Some(pos);
            }
            if vad.stopped {
                self.pending_turn_end = Some(end);
            }
            if let Some(InterviewerAction::Speak(i)) =
                self.interviewer.on_frame(end, vad.speaking, samples)
            {
                self.pending_speak = Some(i);
            }
        }
    }
}

impl SessionMedia {
    async fn act_on_pending(&mut self) {
        if let Some(end) = self.pending_turn_end.take() {
            self.end_turn(end).await;
        }
        if let Some(i) = self.pending_speak.take() {
            let pos = self.timeline.position(Instant::now());
            self.start_prompt(i, pos).await;
        }
    }

    async fn end_turn(&mut self, end: u64) {
        if let Some(start) = self.turn_start.take() {
            self.emit(EngineEvent::ParticipantTurn {
                session_id: self.id.clone(),
                start_ms: start / 48,
                end_ms: end / 48,
            })
            .await;
        }
    }

    async fn start_prompt(&mut self, index: usize, pos: u64) {
        let Some((prompt, _)) = self.prompts.get(index) else {
            return;
        };
        tracing::debug!(session = %self.id, prompt = %prompt.id, pos, "interviewer speaks");
        let ev = EngineEvent::Progress {
            session_id: self.id.clone(),
            prompt_index: index,
            prompt_id: prompt.id.clone(),
            text: prompt.text.clone(),
        };
        self.playout = Some(Playout { index, offset: 0 });
        self.ai_pos = pos;
        self.emit(ev).await;
    }

    /// AI path, every 20 ms: the next frame of the prompt being played (or silence) is
    /// encoded and sent; prompt audio is recorded where it was sent on the timeline.
    async fn ai_tick(&mut self, now: Instant) {
        let pos = self.timeline.position(now);
        if let Some(InterviewerAction::Speak(i)) = self.interviewer.poll(pos) {
            self.start_prompt(i, pos).await;
        }
        let mut frame = [0i16; FRAME];
        let mut finished_prompt = false;
        let mut speaking = false;
        if let Some(play) = &mut self.playout
            && let Some((_, pcm)) = self.prompts.get(play.index)
        {
            let end = (play.offset + FRAME).min(pcm.len());
            let n = end.saturating_sub(play.offset);
            frame[..n].copy_from_slice(&pcm[play.offset..end]);
            play.offset = end;
            finished_prompt = play.offset >= pcm.len();
            speaking = true;
        }
        let encoded = match self.encoder.encode(&frame) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "opus encode failed");
                return;
            }
        };
        if let Some(peer) = &self.peer
            && let Err(e) = peer.send_opus(encoded, FRAME_DURATION).await
        {
            tracing::debug!(session = %self.id, error = %e, "sending AI audio failed");
        }
        if speaking {
            if let Some(rec) = &mut self.recording
                && let Err(e) = rec.ai.write_at(self.ai_pos, &frame)
            {
                tracing::warn!(session = %self.id, error = %e, "AI track write failed");
            }
            self.ai_pos += FRAME as u64;
        }
        if finished_prompt {
            self.playout = None;
            if let Some(InterviewerAction::Finished) = self.interviewer.prompt_finished(self.ai_pos)
            {
                self.emit(EngineEvent::InterviewFinished {
                    session_id: self.id.clone(),
                })
                .await;
            }
        }
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
            let result = tokio::task::spawn_blocking(move || finalize_files(rec)).await;
            let outcome = match result {
                Ok(Ok(files)) => Ok(files),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
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

async fn next_peer_event(rx: &mut Option<mpsc::Receiver<PeerEvent>>) -> Option<PeerEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
