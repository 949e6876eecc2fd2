//! One session's media task: the async shell around [`core::SessionCore`]. It owns the I/O —
//! the participant's peer and its events, the 20 ms clock, the agent bridge, the recording
//! files and the event channel — feeds what happens into the core with the time, and carries
//! out what the core answers: AI packets to the peer, samples to the WAV tracks, messages to
//! the agent, events to signaling. All decisions are the core's; `finalize` closes the
//! recordings at the end and `timeline` is the session's clock of active time.

mod core;
mod finalize;
mod loss_probe;
mod timeline;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::agent::bridge::{AgentLink, FromAgent};
use crate::codec::OpusSettings;
use crate::metrics::MediaMetrics;
use crate::peer::{PeerEvent, ServerPeer};
use crate::recorder::{Quality, TrackWriter};
use crate::request::{AgentRequest, LoadedPrompt, RecordingRequest};
use earshot_vocab::media_port::MediaEvent;

pub use self::core::FRAME;
use self::core::{CoreParams, FRAME_DURATION, Input, Output, RecordTrack, SessionCore, ToAgent};
pub(crate) use finalize::{derive_file, finalize_orphan};

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
    /// The lifecycle resumed it; a fresh agent request (resume context) replaces the old one.
    Resume(Option<AgentRequest>),
    Finish,
    /// A silent listener (receive-only peer) joins; `id` names it for [`Self::DetachListener`].
    AttachListener {
        id: u64,
        peer: Arc<ServerPeer>,
    },
    /// The listener left (hung up, failed or closed).
    DetachListener {
        id: u64,
    },
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

/// The session's open recording files.
struct Recording {
    dir: PathBuf,
    quality: Quality,
    derive_at_end: bool,
    sealing: Option<crate::recorder::Sealing>,
    participant: TrackWriter,
    ai: TrackWriter,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("creating recording files in {dir}: {detail}")]
    Recording { dir: PathBuf, detail: String },
    #[error(transparent)]
    Core(#[from] self::core::CoreError),
}

/// The task of one session (see the module doc).
pub(crate) struct SessionTask {
    core: SessionCore,
    events: mpsc::Sender<MediaEvent>,
    peer: Option<Arc<ServerPeer>>,
    /// Silent listeners, by id: they hear the session's mix.
    listeners: Vec<(u64, Arc<ServerPeer>)>,
    link: Option<AgentLink>,
    recording: Option<Recording>,
    metrics: Arc<MediaMetrics>,
    /// When the current participant peer was attached (its offer just answered), until it
    /// connects: the connect time metric.
    peer_since: Option<Instant>,
    loss_probe: loss_probe::LossProbe,
}

impl SessionTask {
    pub(crate) fn new(
        p: SessionParams,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<Self, SessionError> {
        let recording = match p.recording {
            None => None,
            Some(req) => {
                let err = |e: &dyn std::fmt::Display| SessionError::Recording {
                    dir: req.dir.clone(),
                    detail: e.to_string(),
                };
                std::fs::create_dir_all(&req.dir).map_err(|e| err(&e))?;
                let sealing = req.sealing.as_ref();
                let participant =
                    TrackWriter::open(req.dir.join("participant.wav"), req.quality, sealing)
                        .map_err(|e| err(&e))?;
                let ai = TrackWriter::open(req.dir.join("ai.wav"), req.quality, sealing)
                    .map_err(|e| err(&e))?;
                Some(Recording {
                    dir: req.dir,
                    quality: req.quality,
                    derive_at_end: req.derive_at_end,
                    sealing: req.sealing,
                    participant,
                    ai,
                })
            }
        };
        // The timeline continues after any audio this session already recorded (a session
        // resumed after a restart of the process).
        let timeline_base = recording
            .as_ref()
            .map_or(0, |r| r.participant.position().max(r.ai.position()));
        let core = SessionCore::new(
            CoreParams {
                session_id: p.session_id,
                prompts: p.prompts,
                silence_ms: p.silence_ms,
                start_at: p.start_at,
                noise_suppression: p.noise_suppression,
                timeline_base,
                recording: recording.is_some(),
                opus: p.opus,
                agent: p.agent,
            },
            Instant::now(),
        )?;
        Ok(Self {
            core,
            events,
            peer: None,
            listeners: Vec::new(),
            link: None,
            recording,
            metrics: p.metrics,
            peer_since: None,
            loss_probe: Default::default(),
        })
    }

    /// Runs until finished: peer events, commands, the 20 ms clock and the agent bridge.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<SessionCommand>,
        peer: Arc<ServerPeer>,
        peer_events: mpsc::Receiver<PeerEvent>,
    ) {
        self.peer = Some(peer);
        self.peer_since = Some(Instant::now());
        let mut peer_events = Some(peer_events);
        let mut tick = tokio::time::interval(FRAME_DURATION);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(SessionCommand::Attach { peer, peer_events: rx, agent }) => {
                        self.close_peer().await;
                        self.peer = Some(peer);
                        self.peer_since = Some(Instant::now());
                        peer_events = Some(rx);
                        self.step(Input::PeerAttached { agent }).await;
                    }
                    Some(SessionCommand::HangUp) => {
                        self.close_peer().await;
                        peer_events = None;
                        self.step(Input::HangUp).await;
                        if !self.core.ever_connected() {
                            return self.release_unused().await;
                        }
                    }
                    Some(SessionCommand::Pause) => self.step(Input::Pause).await,
                    Some(SessionCommand::Resume(agent)) => self.step(Input::Resume { agent }).await,
                    Some(SessionCommand::Flush) => self.flush(),
                    Some(SessionCommand::AttachListener { id, peer }) => {
                        self.listeners.push((id, peer));
                        self.step(Input::Listeners(self.listeners.len())).await;
                    }
                    Some(SessionCommand::DetachListener { id }) => {
                        if let Some(i) = self.listeners.iter().position(|(l, _)| *l == id) {
                            let (_, peer) = self.listeners.swap_remove(i);
                            peer.close().await;
                        }
                        self.step(Input::Listeners(self.listeners.len())).await;
                    }
                    Some(SessionCommand::Discard(ack)) => {
                        self.core.end(Instant::now());
                        self.carry_out().await;
                        self.close_peer().await;
                        self.close_listeners().await;
                        self.recording = None;
                        let _ = ack.send(());
                        return;
                    }
                    Some(SessionCommand::Finish) | None => break,
                },
                ev = next_peer_event(&mut peer_events) => match ev {
                    Some(PeerEvent::Audio(pkt)) => {
                        self.metrics.participant_packet();
                        self.step(Input::Audio(pkt)).await;
                    }
                    Some(PeerEvent::Connected) => {
                        if let Some(since) = self.peer_since.take() {
                            self.metrics.peer_connected(since.elapsed());
                        }
                        if let Some(peer) = &self.peer {
                            // Off the loop: the statistics wait for the connection's lock.
                            let (peer, metrics) = (Arc::clone(peer), Arc::clone(&self.metrics));
                            let session = self.core.id().to_string();
                            tokio::spawn(async move {
                                // Let media flow first: the path is read from where it goes.
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                if let Some(path) = peer.selected_path().await {
                                    tracing::info!(%session, candidate = path.candidate_type, protocol = path.protocol, "participant's path selected");
                                    metrics.peer_path(path);
                                }
                            });
                        }
                        self.step(Input::PeerConnected).await;
                    }
                    // Quiet for a while but not failed: the peer stays, nothing to act on (a
                    // participant whose audio stops is caught by the core's audio-gap rule).
                    Some(PeerEvent::Disconnected) => {
                        tracing::info!(session = %self.core.id(), "participant's link quiet (nothing heard for a while)");
                    }
                    Some(PeerEvent::Restored) => {
                        tracing::info!(session = %self.core.id(), "participant's link heard again");
                    }
                    Some(PeerEvent::Failed | PeerEvent::Closed) | None => {
                        self.close_peer().await;
                        peer_events = None;
                        self.step(Input::PeerGone).await;
                        if !self.core.ever_connected() {
                            return self.release_unused().await;
                        }
                    }
                },
                scheduled = tick.tick() => {
                    let scheduled = scheduled.into_std();
                    if self.core.is_live() {
                        self.metrics.tick(Instant::now().saturating_duration_since(scheduled));
                    }
                    self.step(Input::Tick { scheduled }).await;
                    if let Some(loss) = self.loss_probe.tick(self.peer.as_deref()) {
                        self.core.reported_loss(loss);
                    }
                }
                msg = next_agent_message(&mut self.link) => {
                    self.metrics.agent_message(msg.as_ref());
                    if matches!(msg, None | Some(FromAgent::Failed { .. })) {
                        // The bridge gave up (or its task ended): it is not used again.
                        self.link = None;
                    }
                    self.step(Input::Agent(msg)).await;
                }
            }
        }
        self.core.end(Instant::now());
        self.carry_out().await;
        self.close_peer().await;
        self.close_listeners().await;
        self.core.log_statistics();
        self.finalize().await;
    }

    /// Hands one input to the core (with the time) and carries out what it answers.
    async fn step(&mut self, input: Input) {
        self.core.handle(input, Instant::now());
        self.carry_out().await;
    }

    async fn carry_out(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Event(ev) => {
                    if let MediaEvent::Signals { signals, .. } = &ev {
                        self.metrics
                            .participant_second(signals.loss, signals.jitter_ms);
                    }
                    let _ = self.events.send(ev).await;
                }
                Output::SendAi(packet) => {
                    if let Some(peer) = &self.peer {
                        match peer.send_opus(packet, FRAME_DURATION).await {
                            Ok(()) => self.metrics.ai_packet(),
                            Err(e) => {
                                tracing::debug!(session = %self.core.id(), error = %e, "sending AI audio failed")
                            }
                        }
                    }
                }
                Output::SendListeners(packet) => {
                    for (_, listener) in &self.listeners {
                        if let Err(e) = listener.send_opus(packet.clone(), FRAME_DURATION).await {
                            tracing::trace!(session = %self.core.id(), error = %e, "sending to a listener failed");
                        }
                    }
                }
                Output::Record { track, at, pcm } => {
                    if let Some(rec) = &mut self.recording {
                        let writer = match track {
                            RecordTrack::Participant => &mut rec.participant,
                            RecordTrack::Ai => &mut rec.ai,
                        };
                        if let Err(e) = writer.write_at(at, &pcm) {
                            tracing::warn!(session = %self.core.id(), ?track, error = %e, "track write failed");
                        }
                    }
                }
                Output::Agent(ToAgent::Dial(request)) => {
                    self.link = Some(AgentLink::spawn(self.core.id(), &request));
                }
                Output::Agent(ToAgent::Stop { dropped_samples }) => {
                    if let Some(link) = self.link.take() {
                        log_bridge_stats(self.core.id(), &link, dropped_samples);
                    }
                }
                Output::Agent(ToAgent::Media { pcm, at }) => {
                    if let Some(link) = &self.link {
                        link.send_media(&pcm, at);
                    }
                }
                Output::Agent(ToAgent::EchoMark(name)) => {
                    if let Some(link) = &self.link {
                        link.echo_mark(name);
                    }
                }
            }
        }
    }

    async fn close_peer(&mut self) {
        if let Some(peer) = self.peer.take() {
            peer.close().await;
        }
    }

    async fn close_listeners(&mut self) {
        for (_, listener) in self.listeners.drain(..) {
            listener.close().await;
        }
    }

    /// The task's peer went (failed, or hung up) without ever connecting: nothing was
    /// recorded, so the task ends and gives back its files and its slot; a later offer for the
    /// session starts a new one, which continues the same files.
    async fn release_unused(mut self) {
        tracing::info!(session = %self.core.id(), "peer never connected: media session released");
        self.core.end(Instant::now());
        self.carry_out().await;
        self.close_listeners().await;
        self.link = None;
        self.recording = None;
    }
}

fn log_bridge_stats(id: &str, link: &AgentLink, ai_samples_dropped: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = link.stats();
    tracing::info!(
        session = %id,
        connects = s.connects.load(Relaxed),
        frames_sent = s.frames_sent.load(Relaxed),
        dropped_full = s.frames_dropped_full.load(Relaxed),
        dropped_offline = s.frames_dropped_offline.load(Relaxed),
        ignored = s.ignored_messages.load(Relaxed),
        ai_samples_dropped,
        "agent bridge statistics"
    );
}

async fn next_peer_event(rx: &mut Option<mpsc::Receiver<PeerEvent>>) -> Option<PeerEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_agent_message(link: &mut Option<AgentLink>) -> Option<FromAgent> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}
