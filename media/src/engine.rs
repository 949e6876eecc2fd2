//! The media engine: the media plane's front door. Commands in (open a participant peer, add a
//! candidate, hang up, finish), [`MediaEvent`]s out on a channel. It owns one task per
//! session ([`crate::session`]) and a cache of decoded prompt audio. A session is led either by
//! the built-in interviewer (prompts) or by an external agent over the bridge
//! ([`crate::agent`], [`AgentRequest`]).

pub use crate::request::{AgentRequest, ParticipantRequest, RecordingRequest};
pub(crate) use crate::request::{LoadedAudio, LoadedPrompt};
pub use earshot_vocab::media_port::{MediaEvent, PromptSpec, RecordingFile};
pub use earshot_vocab::{AgentAudioFormat, Role};

use crate::codec::OpusSettings;
use crate::metrics::MediaMetrics;
use crate::peer::{IceRestart, PeerConfig, PeerError, PeerEvent, PeerRole, ServerPeer};
use crate::session::{SessionCommand, SessionParams, SessionTask};
use dashmap::DashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub peer: PeerConfig,
    pub opus: OpusSettings,
    /// How long an unreachable or dropped agent is retried before the session is told.
    pub agent_retry: Duration,
    /// TLS for `wss://` agents (`None`: the system's roots, built when first needed).
    pub agent_tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Make the mix and MP3s when a session ends (else on first request).
    pub derive_at_end: bool,
    /// Encryption at rest of recordings (`None`: plain files).
    pub sealing: Option<crate::recorder::Sealing>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            peer: PeerConfig::default(),
            opus: OpusSettings::default(),
            agent_retry: Duration::from_secs(10),
            agent_tls: None,
            derive_at_end: true,
            sealing: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("the offer has no audio")]
    NoAudio,
    #[error("invalid candidate: {0}")]
    InvalidCandidate(String),
    #[error("no media session with this id")]
    UnknownSession,
    #[error("prompt audio {path}: {detail}")]
    Prompt { path: PathBuf, detail: String },
    #[error("recording: {0}")]
    Recording(String),
    #[error("peer: {0}")]
    Peer(String),
    #[error("agent: {0}")]
    Agent(String),
}

impl From<PeerError> for EngineError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::InvalidSdp(m) => Self::InvalidSdp(m),
            PeerError::NoAudio => Self::NoAudio,
            PeerError::InvalidCandidate(m) => Self::InvalidCandidate(m),
            other => Self::Peer(other.to_string()),
        }
    }
}

struct SessionHandle {
    commands: mpsc::Sender<SessionCommand>,
    /// The participant's current peer, for trickled candidates.
    peer: Arc<Mutex<Option<Arc<ServerPeer>>>>,
}

pub struct Engine {
    /// Read at each use: [`Engine::reconfigure`] changes what new sessions get.
    config: std::sync::RwLock<EngineConfig>,
    /// Ids of silent listeners, unique in the process.
    next_listener: std::sync::atomic::AtomicU64,
    sessions: Arc<DashMap<String, SessionHandle>>,
    events: mpsc::Sender<MediaEvent>,
    /// Silent listeners' peers by id (with their session), for trickled candidates and hang-up.
    listeners: Arc<DashMap<u64, (String, Arc<ServerPeer>)>>,
    /// Prompts decoded and Opus-encoded once per process, by file and encoder settings.
    prompt_cache: DashMap<(PathBuf, OpusSettings), LoadedAudio>,
    metrics: Arc<MediaMetrics>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> (Arc<Engine>, mpsc::Receiver<MediaEvent>) {
        let (tx, rx) = mpsc::channel(1024);
        let engine = Arc::new(Engine {
            config: std::sync::RwLock::new(config),
            next_listener: std::sync::atomic::AtomicU64::new(1),
            sessions: Arc::new(DashMap::new()),
            listeners: Arc::new(DashMap::new()),
            events: tx,
            prompt_cache: DashMap::new(),
            metrics: Arc::new(MediaMetrics::default()),
        });
        (engine, rx)
    }

    /// The configuration new sessions and peers get now.
    pub fn config(&self) -> EngineConfig {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies what can change while running (a configuration reload): the Opus settings of
    /// AI audio, the agent retry time and when derived files are made, for sessions that
    /// start from now on. The peer settings (addresses, ports) are kept: they need a restart.
    /// Prompts encoded with other Opus settings are dropped from the cache (re-encoded when
    /// next used; sessions running keep theirs). Returns whether the Opus settings changed.
    pub fn reconfigure(&self, new: &EngineConfig) -> bool {
        let mut c = match self.config.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let opus_changed = c.opus != new.opus;
        c.opus = new.opus;
        c.agent_retry = new.agent_retry;
        c.derive_at_end = new.derive_at_end;
        drop(c);
        if opus_changed {
            self.prompt_cache.clear();
        }
        opus_changed
    }

    /// The media plane's counters (`/metrics`).
    pub fn metrics(&self) -> &MediaMetrics {
        &self.metrics
    }

    /// Ids of the sessions whose media runs here (what a media node announces it holds).
    pub fn session_ids(&self) -> Vec<String> {
        self.sessions.iter().map(|e| e.key().clone()).collect()
    }

    /// Answers the participant's offer. A session that already has media (a reconnect or a
    /// resume) gets the new peer attached and continues on the same timeline.
    pub async fn open_participant(&self, req: ParticipantRequest) -> Result<String, EngineError> {
        if let Some(agent) = &req.agent {
            crate::agent::validate_url(&agent.url).map_err(EngineError::Agent)?;
        }
        // An agent-led session plays no prompts.
        let prompts = if req.agent.is_some() {
            Vec::new()
        } else {
            let opus = req.opus.unwrap_or(self.config().opus);
            self.load_prompts(&req.prompts, opus).await?
        };
        let (peer, answer, peer_events) =
            ServerPeer::answer(&self.config().peer, &req.offer_sdp, PeerRole::Participant).await?;
        let peer = Arc::new(peer);
        let existing = self
            .sessions
            .get(&req.session_id)
            .map(|h| (h.commands.clone(), h.peer.clone()));
        if let Some((commands, current)) = existing {
            *current.lock().await = Some(peer.clone());
            if commands
                .send(SessionCommand::Attach {
                    peer,
                    peer_events,
                    agent: req.agent,
                })
                .await
                .is_ok()
            {
                return Ok(answer);
            }
            // The task ended meanwhile: start a new one below.
            self.sessions.remove(&req.session_id);
            return Err(EngineError::UnknownSession);
        }
        let (tx, rx) = mpsc::channel(64);
        let params = SessionParams {
            session_id: req.session_id.clone(),
            prompts,
            silence_ms: req.silence_ms,
            start_at: req.start_at,
            noise_suppression: req.noise_suppression,
            recording: req.recording,
            opus: req.opus.unwrap_or(self.config().opus),
            agent: req.agent,
            metrics: Arc::clone(&self.metrics),
        };
        let media = SessionTask::new(params, self.events.clone())
            .map_err(|e| EngineError::Recording(e.to_string()))?;
        self.sessions.insert(
            req.session_id.clone(),
            SessionHandle {
                commands: tx,
                peer: Arc::new(Mutex::new(Some(peer.clone()))),
            },
        );
        let (metrics, sessions) = (Arc::clone(&self.metrics), Arc::clone(&self.sessions));
        let id = req.session_id;
        tokio::spawn(async move {
            metrics.session_started();
            media.run(rx, peer, peer_events).await;
            metrics.session_ended();
            sessions.remove(&id);
        });
        Ok(answer)
    }

    /// Loads (decodes and Opus-encodes) prompts ahead of the first session that plays them.
    pub async fn preload_prompts(&self, prompts: &[PromptSpec]) -> Result<(), EngineError> {
        self.load_prompts(prompts, self.config().opus)
            .await
            .map(|_| ())
    }

    async fn load_prompts(
        &self,
        prompts: &[PromptSpec],
        opus: OpusSettings,
    ) -> Result<Vec<LoadedPrompt>, EngineError> {
        let mut out = Vec::with_capacity(prompts.len());
        for p in prompts {
            let key = (p.audio.clone(), opus);
            if let Some(audio) = self.prompt_cache.get(&key) {
                out.push(LoadedPrompt {
                    prompt: p.clone(),
                    audio: audio.clone(),
                });
                continue;
            }
            let path = p.audio.clone();
            let audio = tokio::task::spawn_blocking(move || LoadedAudio::load(&path, opus))
                .await
                .map_err(|e| EngineError::Prompt {
                    path: p.audio.clone(),
                    detail: e.to_string(),
                })?
                .map_err(|e| EngineError::Prompt {
                    path: p.audio.clone(),
                    detail: e.to_string(),
                })?;
            self.prompt_cache.insert(key, audio.clone());
            out.push(LoadedPrompt {
                prompt: p.clone(),
                audio,
            });
        }
        Ok(out)
    }

    pub async fn add_candidate(
        &self,
        session_id: &str,
        candidate: &str,
    ) -> Result<(), EngineError> {
        let peer = {
            let handle = self
                .sessions
                .get(session_id)
                .ok_or(EngineError::UnknownSession)?;
            handle.peer.clone()
        };
        let peer = peer
            .lock()
            .await
            .clone()
            .ok_or(EngineError::UnknownSession)?;
        peer.add_remote_candidate(candidate, None, None).await?;
        Ok(())
    }

    /// WHIP ICE restart of the participant's current peer: the client's new credentials in,
    /// the server's out (see [`ServerPeer::restart_ice`]).
    pub async fn restart_ice(
        &self,
        session_id: &str,
        ufrag: &str,
        pwd: &str,
    ) -> Result<Option<IceRestart>, EngineError> {
        let peer = {
            let handle = self
                .sessions
                .get(session_id)
                .ok_or(EngineError::UnknownSession)?;
            handle.peer.clone()
        };
        let peer = peer
            .lock()
            .await
            .clone()
            .ok_or(EngineError::UnknownSession)?;
        Ok(peer.restart_ice(ufrag, pwd).await?)
    }

    async fn command(&self, session_id: &str, cmd: SessionCommand) {
        let tx = self.sessions.get(session_id).map(|h| h.commands.clone());
        if let Some(tx) = tx {
            let _ = tx.send(cmd).await;
        }
    }

    /// Answers a silent listener's offer (receive-only): it hears the session's participant and
    /// AI mixed, a little behind the timeline, and is never heard. Returns the listener's id
    /// (for [`Self::close_listener`]) and the answer. The session must have media.
    pub async fn open_listener(
        &self,
        session_id: &str,
        offer_sdp: &str,
    ) -> Result<(u64, String), EngineError> {
        let commands = self
            .sessions
            .get(session_id)
            .map(|h| h.commands.clone())
            .ok_or(EngineError::UnknownSession)?;
        let (peer, answer, mut events) =
            ServerPeer::answer(&self.config().peer, offer_sdp, PeerRole::Monitor).await?;
        let id = self
            .next_listener
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let peer = Arc::new(peer);
        self.listeners
            .insert(id, (session_id.to_owned(), Arc::clone(&peer)));
        if commands
            .send(SessionCommand::AttachListener {
                id,
                peer: Arc::clone(&peer),
            })
            .await
            .is_err()
        {
            self.listeners.remove(&id);
            peer.close().await;
            return Err(EngineError::UnknownSession);
        }
        // The listener leaves when its connection fails or closes (the session's media
        // closes it when it ends). Whatever it sends is dropped here: the server's side of
        // its audio is send-only, and no packet of it reaches the session.
        let (listeners, events_out) = (Arc::clone(&self.listeners), self.events.clone());
        let session = session_id.to_owned();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if matches!(ev, PeerEvent::Failed | PeerEvent::Closed) {
                    break;
                }
            }
            let _ = commands.send(SessionCommand::DetachListener { id }).await;
            listeners.remove(&id);
            let _ = events_out
                .send(MediaEvent::ListenerLeft {
                    session_id: session,
                    listener_id: id,
                })
                .await;
        });
        Ok((id, answer))
    }

    /// A trickled candidate of a silent listener (see [`Self::add_candidate`]).
    pub async fn add_listener_candidate(
        &self,
        session_id: &str,
        listener_id: u64,
        candidate: &str,
    ) -> Result<(), EngineError> {
        let peer = self
            .listeners
            .get(&listener_id)
            .filter(|l| l.0 == session_id)
            .map(|l| Arc::clone(&l.1))
            .ok_or(EngineError::UnknownSession)?;
        peer.add_remote_candidate(candidate, None, None).await?;
        Ok(())
    }

    /// Hangs up a silent listener.
    pub async fn close_listener(&self, session_id: &str, listener_id: u64) {
        let peer = self
            .listeners
            .get(&listener_id)
            .filter(|l| l.0 == session_id)
            .map(|l| Arc::clone(&l.1));
        self.command(
            session_id,
            SessionCommand::DetachListener { id: listener_id },
        )
        .await;
        // Closed here too, in case the session's media has ended meanwhile.
        if let Some(peer) = peer {
            peer.close().await;
        }
    }

    /// Closes the participant's peer; the session's timeline stops until a peer is attached.
    pub async fn hang_up(&self, session_id: &str) {
        self.command(session_id, SessionCommand::HangUp).await;
    }

    /// Holds the interview (lifecycle pause): the timeline stops, nothing is recorded.
    pub async fn pause(&self, session_id: &str) {
        self.command(session_id, SessionCommand::Pause).await;
    }

    /// Continues a held interview.
    pub async fn resume(&self, session_id: &str, agent: Option<AgentRequest>) {
        self.command(session_id, SessionCommand::Resume(agent))
            .await;
    }

    /// Stops the session's media without finalizing anything (the session is being deleted);
    /// returns once its files are closed.
    pub async fn discard(&self, session_id: &str) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = match self.sessions.get(session_id).map(|h| h.commands.clone()) {
            Some(cmd) => cmd.send(SessionCommand::Discard(tx)).await.is_ok(),
            None => false,
        };
        if sent {
            let _ = rx.await;
        }
        self.sessions.remove(session_id);
    }

    /// Ends the session's media and finalizes its recordings (reported as events).
    pub async fn finish(&self, session_id: &str, orphan: Option<RecordingRequest>) {
        if self.sessions.contains_key(session_id) {
            self.command(session_id, SessionCommand::Finish).await;
            return;
        }
        // No media task (e.g. the process restarted since): finalize what is on disk.
        if let Some(req) = orphan {
            let queued = self.metrics.finalize_queued();
            let result = crate::finalizer::run(move || crate::session::finalize_orphan(&req)).await;
            let written = match &result {
                Some(Ok(files)) => files.as_slice(),
                _ => &[],
            };
            self.metrics.finalize_done(queued, written);
            match result {
                Some(Ok(files)) => {
                    for file in files {
                        let _ = self
                            .events
                            .send(MediaEvent::RecordingReady {
                                session_id: session_id.to_string(),
                                file,
                            })
                            .await;
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(session = session_id, error = %e, "finalizing left-over recordings failed")
                }
                None => {
                    tracing::error!(
                        session = session_id,
                        "finalizing left-over recordings failed: the finalizer thread failed"
                    )
                }
            }
        }
        let _ = self
            .events
            .send(MediaEvent::RecordingsFinished {
                session_id: session_id.to_string(),
            })
            .await;
    }

    /// Makes one of a finished session's derived files (`mix.wav`, or any track's `.mp3`) from
    /// its finalized tracks, on the finalizer thread; an existing file is made again.
    pub async fn derive_recording(
        &self,
        req: RecordingRequest,
        track: earshot_vocab::Track,
        format: earshot_vocab::Format,
    ) -> Result<RecordingFile, EngineError> {
        let queued = self.metrics.finalize_queued();
        let result = crate::finalizer::run(move || {
            crate::session::derive_file(&req.dir, req.quality, track, format, req.sealing.as_ref())
        })
        .await;
        let written = match &result {
            Some(Ok(file)) => std::slice::from_ref(file),
            _ => &[],
        };
        self.metrics.finalize_done(queued, written);
        match result {
            Some(Ok(file)) => Ok(file),
            Some(Err(e)) => Err(EngineError::Recording(e.to_string())),
            None => Err(EngineError::Recording(
                "the finalizer thread failed".to_owned(),
            )),
        }
    }

    /// Flushes every session's recordings (process shutdown).
    pub async fn shutdown(&self) {
        let senders: Vec<_> = self.sessions.iter().map(|h| h.commands.clone()).collect();
        for tx in senders {
            let _ = tx.send(SessionCommand::Flush).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_packets_decode_to_the_prompt() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../assets/interviewer/default/q1.wav");
        let audio = LoadedAudio::load(&path, OpusSettings::default()).expect("prompt");
        let frames = audio.pcm.len().div_ceil(crate::units::FRAME);
        assert_eq!(audio.packets.len(), frames);
        let mut decoder = crate::codec::OpusDecoder::new().expect("decoder");
        let mut decoded = Vec::with_capacity(frames * crate::units::FRAME);
        for p in audio.packets.iter() {
            decoded.extend_from_slice(decoder.decode(p).expect("decode"));
        }
        // Opus delays its output by 6.5 ms (312 samples at 48 kHz): compare at the best lag.
        let best = (0..480)
            .map(|lag| {
                let n = audio.pcm.len().min(decoded.len() - lag);
                let (mut dot, mut e1, mut e2) = (0.0, 0.0, 0.0);
                for i in 0..n {
                    let (a, b) = (f64::from(audio.pcm[i]), f64::from(decoded[i + lag]));
                    dot += a * b;
                    e1 += a * a;
                    e2 += b * b;
                }
                dot / (e1 * e2).sqrt()
            })
            .fold(f64::MIN, f64::max);
        assert!(best > 0.9, "correlation {best}");
    }
}
