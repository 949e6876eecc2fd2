//! The narrow typed interface between signaling and the media plane: commands in (the
//! [`MediaPlane`] trait, which the media engine implements), events out ([`MediaEvent`] on a
//! channel, which the media engine sends and signaling reads). Signaling never sees a sample;
//! the binary only constructs the two sides and hands one to the other.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::{AgentAudioFormat, Format, Quality, Role, Track};

/// One prompt of the built-in interviewer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromptSpec {
    pub id: String,
    pub text: String,
    /// Audio file (WAV/FLAC) of the spoken prompt.
    pub audio: PathBuf,
}

/// An external AI interviewer (F5) that the media plane dials over WebSocket, speaking the
/// Twilio Media Streams shapes (`connected`, `start`, `media`, `mark`, `clear`, `stop`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentSpec {
    /// `ws://` URL of the agent.
    pub url: String,
    /// Audio on the agent socket: `l16/16000` (default) or `mulaw/8000`.
    pub audio_format: AgentAudioFormat,
    /// The `start` message's `customParameters`, filled by the controller each time the media
    /// starts: `{"session","campaign","script","metadata","resume","turns"}`.
    pub custom_parameters: serde_json::Value,
}

/// What the interviewer does in a session: the built-in interviewer's prompts, or an external
/// agent (then `prompts` is empty).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InterviewSpec {
    pub prompts: Vec<PromptSpec>,
    /// Silence after the participant spoke before the next prompt.
    pub silence_ms: u32,
    /// Index of the prompt to start at (non-zero when resuming).
    pub start_at: usize,
    /// The external agent, when the script names one instead of prompts.
    pub agent: Option<AgentSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingSpec {
    pub enabled: bool,
    pub noise_suppression: bool,
    pub quality: Quality,
    /// Folder for this session's files.
    pub dir: PathBuf,
}

/// Everything the media plane needs to answer a participant's offer.
#[derive(Debug, Clone)]
pub struct OpenParticipant {
    pub session_id: String,
    pub offer_sdp: String,
    pub interview: InterviewSpec,
    pub recording: RecordingSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("invalid SDP offer: {0}")]
    InvalidSdp(String),
    #[error("the offer has no audio")]
    NoAudio,
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    #[error("no media for this session")]
    UnknownSession,
    #[error("media plane failure: {0}")]
    Internal(String),
}

/// Commands from signaling to the media plane.
#[async_trait::async_trait]
pub trait MediaPlane: Send + Sync + 'static {
    /// Terminates a participant peer for the session: returns the SDP answer.
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError>;
    /// Adds one trickled remote candidate line (`candidate:...`) or end-of-candidates.
    async fn add_candidate(&self, session_id: &str, candidate: &str) -> Result<(), MediaError>;
    /// Hangs up the participant's peer (the session may continue later).
    async fn hang_up(&self, session_id: &str);
    /// Holds the interview while the session is paused (the peer stays connected; the
    /// recordings' timeline stops).
    async fn pause(&self, session_id: &str);
    /// Continues a held interview at the current question.
    /// `agent` carries the fresh `start` context (resume flag, turns so far) for an agent script.
    async fn resume(&self, session_id: &str, agent: Option<AgentSpec>);
    /// Stops the session's media without finalizing (the session is being deleted); returns
    /// once no file of the session is open.
    async fn discard(&self, session_id: &str);
    /// Ends the session's media: hangs up and finalizes the recordings, reported as
    /// [`MediaEvent::RecordingReady`] events followed by [`MediaEvent::RecordingsFinished`].
    /// `recording` says where the session's files are, for a session whose media is no longer
    /// running (the process restarted): its flushed tracks are finalized from disk.
    async fn finish(&self, session_id: &str, recording: Option<RecordingSpec>);
    /// Makes one derived file of a finished session (`mix.wav`, or a track's `.mp3`) from its
    /// finalized tracks in `recording.dir` (they are made on first request when `[recording]
    /// derive = "on_request"`).
    async fn derive_recording(
        &self,
        recording: RecordingSpec,
        track: Track,
        format: Format,
    ) -> Result<RecordingFile, MediaError>;
    /// A trickle fragment that names ICE credentials, for the participant's current peer: new
    /// credentials are a WHIP ICE restart (RFC 9725 §4.3) and the server's new credentials and
    /// candidates come back; the current ones are plain trickle (`None`). The fragment's
    /// candidates are added either way.
    async fn restart_ice(
        &self,
        session_id: &str,
        client: IceCredentials,
    ) -> Result<Option<IceCredentials>, MediaError>;
    /// The media plane's counters in Prometheus' text format (appended to `/metrics`).
    fn metrics_text(&self) -> String;
}

/// One side's ICE credentials and candidates (`candidate:...`), as a trickle-ice-sdpfrag
/// carries them in a WHIP ICE restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
    pub candidates: Vec<String>,
}

/// A file the media plane finished writing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingFile {
    pub track: Track,
    pub format: Format,
    pub path: PathBuf,
    pub duration_ms: u64,
    pub bytes: u64,
}

/// Events from the media plane to signaling.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// The participant's peer connected and audio flows.
    Connected {
        session_id: String,
    },
    /// The participant's media stopped (peer disconnected, failed or closed).
    Disconnected {
        session_id: String,
    },
    /// Audio flows again on the same peer.
    Restored {
        session_id: String,
    },
    /// The interviewer moved to a prompt (the session's current point).
    Progress {
        session_id: String,
        prompt_index: usize,
        prompt_id: String,
        text: String,
    },
    /// Someone began speaking: `role` is `ai` (interviewer audio started) or `participant`
    /// (voice activity began). `at_ms` is on the session's media timeline.
    TurnStarted {
        session_id: String,
        role: Role,
        at_ms: u64,
    },
    /// A turn ended (`ai` audio finished or was cleared by barge-in; `participant` voice
    /// activity ended), with its bounds on the session's media timeline.
    TurnEnded {
        session_id: String,
        role: Role,
        start_ms: u64,
        end_ms: u64,
    },
    /// A transcript line from the agent (or the built-in interviewer's prompt text). Partial
    /// lines (`is_final: false`) are only streamed live; final ones go into the turn log.
    Transcript {
        session_id: String,
        role: Role,
        text: String,
        is_final: bool,
        start_ms: u64,
        end_ms: u64,
    },
    /// The external agent could not be reached or broke the protocol; the session ends as
    /// abandoned (`technical: agent: ...`).
    AgentFailed {
        session_id: String,
        detail: String,
    },
    /// The interviewer said its last prompt.
    InterviewFinished {
        session_id: String,
    },
    RecordingReady {
        session_id: String,
        file: RecordingFile,
    },
    RecordingsFinished {
        session_id: String,
    },
    /// Something broke in the media path for this session.
    Failed {
        session_id: String,
        detail: String,
    },
}
