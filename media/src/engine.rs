//! The media engine: the media plane's front door. Commands in (open a participant peer, add a
//! candidate, hang up, finish), [`EngineEvent`]s out on a channel. It owns one task per
//! session ([`crate::session`]) and a cache of decoded prompt audio.

use crate::codec::OpusSettings;
use crate::peer::{PeerConfig, PeerError, PeerRole, ServerPeer};
use crate::recorder::QualityPreset;
use crate::session::{SessionCommand, SessionMedia, SessionParams};
use dashmap::DashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub peer: PeerConfig,
    pub opus: OpusSettings,
}

#[derive(Debug, Clone)]
pub struct Prompt {
    pub id: String,
    pub text: String,
    pub audio: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RecordingRequest {
    pub dir: PathBuf,
    pub quality: QualityPreset,
}

/// A participant's offer and what their session's media must do.
#[derive(Debug, Clone)]
pub struct ParticipantRequest {
    pub session_id: String,
    pub offer_sdp: String,
    pub prompts: Vec<Prompt>,
    pub silence_ms: u32,
    pub start_at: usize,
    pub noise_suppression: bool,
    /// `None` when recording is disabled for the script.
    pub recording: Option<RecordingRequest>,
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

/// A finished recording file.
#[derive(Debug, Clone)]
pub struct RecordedFile {
    pub track: String,
    pub format: String,
    pub path: PathBuf,
    pub duration_ms: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub enum EngineEvent {
    Connected {
        session_id: String,
    },
    Disconnected {
        session_id: String,
    },
    /// Packets flow again on the same peer after a stop.
    AudioRestored {
        session_id: String,
    },
    Progress {
        session_id: String,
        prompt_index: usize,
        prompt_id: String,
        text: String,
    },
    ParticipantTurn {
        session_id: String,
        start_ms: u64,
        end_ms: u64,
    },
    InterviewFinished {
        session_id: String,
    },
    RecordingReady {
        session_id: String,
        file: RecordedFile,
    },
    RecordingsFinished {
        session_id: String,
    },
    Failed {
        session_id: String,
        detail: String,
    },
}

struct SessionHandle {
    commands: mpsc::Sender<SessionCommand>,
    /// The participant's current peer, for trickled candidates.
    peer: Arc<Mutex<Option<Arc<ServerPeer>>>>,
}

pub struct Engine {
    config: EngineConfig,
    sessions: DashMap<String, SessionHandle>,
    events: mpsc::Sender<EngineEvent>,
    prompt_cache: DashMap<PathBuf, Arc<Vec<i16>>>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> (Arc<Engine>, mpsc::Receiver<EngineEvent>) {
        let (tx, rx) = mpsc::channel(1024);
        let engine = Arc::new(Engine {
            config,
            sessions: DashMap::new(),
            events: tx,
            prompt_cache: DashMap::new(),
        });
        (engine, rx)
    }

    /// Answers the participant's offer. A session that already has media (a reconnect or a
    /// resume) gets the new peer attached and continues on the same timeline.
    pub async fn open_participant(
        self: &Arc<Self>,
        req: ParticipantRequest,
    ) -> Result<String, EngineError> {
        let prompts = self.load_prompts(&req.prompts).await?;
        let (peer, answer, peer_events) =
            ServerPeer::answer(&self.config.peer, &req.offer_sdp, PeerRole::Participant).await?;
        let peer = Arc::new(peer);
        let existing = self
            .sessions
            .get(&req.session_id)
            .map(|h| (h.commands.clone(), h.peer.clone()));
        if let Some((commands, current)) = existing {
            *current.lock().await = Some(peer.clone());
            if commands
                .send(SessionCommand::Attach { peer, peer_events })
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
            opus: self.config.opus,
        };
        let media = SessionMedia::new(params, self.events.clone())
            .map_err(|e| EngineError::Recording(e.to_string()))?;
        self.sessions.insert(
            req.session_id.clone(),
            SessionHandle {
                commands: tx,
                peer: Arc::new(Mutex::new(Some(peer.clone()))),
            },
        );
        let engine = Arc::clone(self);
        let id = req.session_id;
        tokio::spawn(async move {
            media.run(rx, peer, peer_events).await;
            engine.sessions.remove(&id);
        });
        Ok(answer)
    }

    async fn load_prompts(
        &self,
        prompts: &[Prompt],
    ) -> Result<Vec<(Prompt, Arc<Vec<i16>>)>, EngineError> {
        let mut out = Vec::with_capacity(prompts.len());
        for p in prompts {
            if let Some(pcm) = self.prompt_cache.get(&p.audio) {
                out.push((p.clone(), pcm.clone()));
                continue;
            }
            let path = p.audio.clone();
            let pcm = tokio::task::spawn_blocking(move || crate::prompt::load_prompt(&path))
                .await
                .map_err(|e| EngineError::Prompt {
                    path: p.audio.clone(),
                    detail: e.to_string(),
                })?
                .map_err(|e| EngineError::Prompt {
                    path: p.audio.clone(),
                    detail: e.to_string(),
                })?;
            let pcm = Arc::new(pcm);
            self.prompt_cache.insert(p.audio.clone(), pcm.clone());
            out.push((p.clone(), pcm));
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

    async fn command(&self, session_id: &str, cmd: SessionCommand) {
        let tx = self.sessions.get(session_id).map(|h| h.commands.clone());
        if let Some(tx) = tx {
            let _ = tx.send(cmd).await;
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
    pub async fn resume(&self, session_id: &str) {
        self.command(session_id, SessionCommand::Resume).await;
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
    pub async fn finish(&self, session_id: &str) {
        let known = self.sessions.contains_key(session_id);
        if known {
            self.command(session_id, SessionCommand::Finish).await;
        } else {
            let _ = self
                .events
                .send(EngineEvent::RecordingsFinished {
                    session_id: session_id.to_string(),
                })
                .await;
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
