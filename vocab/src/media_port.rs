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

/// A script's settings for the Opus encoder of the AI audio participants hear; each one unset
/// is the deployment's (`[opus]`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CodecSpec {
    /// Bits per second, 6000..=510000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u32>,
    /// 0..=10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<u8>,
    /// In-band forward error correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec: Option<bool>,
    /// Discontinuous transmission in silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtx: Option<bool>,
    /// The least loss the encoder prepares its FEC for, 0..=100 % (raised to the loss the
    /// participant reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_loss_pct: Option<u8>,
    /// Code at most wideband (8 kHz band; the AI audio is 16 kHz speech) or the full band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wideband: Option<bool>,
}

impl CodecSpec {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the ranges; an error names the field (`codec.bitrate`).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(b) = self.bitrate
            && !(6_000..=510_000).contains(&b)
        {
            return Err(format!("codec.bitrate must be 6000..=510000 bps, got {b}"));
        }
        if let Some(c) = self.complexity
            && c > 10
        {
            return Err(format!("codec.complexity must be 0..=10, got {c}"));
        }
        if let Some(l) = self.expected_loss_pct
            && l > 100
        {
            return Err(format!("codec.expected_loss_pct must be 0..=100, got {l}"));
        }
        Ok(())
    }
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
    /// The script's encoder settings for the AI audio.
    #[serde(default)]
    pub codec: CodecSpec,
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// Answers a silent listener's (a QA monitor's) offer with a receive-only peer on the
    /// session's media: it hears the participant and the AI mixed from now on and is never
    /// heard (whatever the offer asks to send is answered send-only from the server's side and
    /// dropped). Returns the listener's id and the SDP answer; `UnknownSession` when the
    /// session has no media running.
    async fn open_listener(
        &self,
        session_id: &str,
        offer_sdp: &str,
    ) -> Result<(u64, String), MediaError>;
    /// Adds one trickled candidate line (or end-of-candidates) to a listener's peer.
    async fn add_listener_candidate(
        &self,
        session_id: &str,
        listener_id: u64,
        candidate: &str,
    ) -> Result<(), MediaError>;
    /// Hangs up a silent listener (nothing happens if it is gone already).
    async fn close_listener(&self, session_id: &str, listener_id: u64);
    /// The media plane's counters in Prometheus' text format (appended to `/metrics`).
    fn metrics_text(&self) -> String;
}

/// Live quality signals of one session's participant audio and interview (F7), from counters
/// the media plane keeps anyway; sent about once a second while the session's media is live
/// ([`MediaEvent::Signals`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualitySignals {
    /// The participant's input level over the last second (RMS, dBFS; -120 for silence).
    pub input_dbfs: f32,
    /// Share (0-1) of the participant's samples at full scale over the last second.
    pub clipping: f32,
    /// Share (0-1) of the participant's packets declared lost over the last second.
    pub loss: f32,
    /// Share (0-1) of the participant's 20 ms frames not decoded from their own packet
    /// (recovered from FEC or concealed) over the last second.
    pub concealment: f32,
    /// Interarrival jitter of the participant's packets (RFC 3550 §6.4.1), ms.
    pub jitter_ms: f32,
    /// How long the jitter buffer holds a gap open for a late packet now, ms.
    pub reorder_wait_ms: u32,
    /// Seconds the participant has been silent while it is their turn (the interviewer has
    /// spoken and is quiet); 0 while someone speaks.
    pub silence_secs: f32,
    /// The AI's response time in the last exchange: the participant stopped speaking -> the
    /// first AI audio, ms (none before the first exchange).
    pub ai_latency_ms: Option<u64>,
    /// Agent connection failures and drops in this session's media so far.
    pub agent_errors: u32,
}

/// One side's ICE credentials and candidates (`candidate:...`), as a trickle-ice-sdpfrag
/// carries them in a WHIP ICE restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        /// How many prompts the interview has (0 when an agent leads it: not known).
        prompt_count: usize,
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
    /// The session's quality signals over the last second (about once a second while the
    /// media is live).
    Signals {
        session_id: String,
        signals: QualitySignals,
    },
    /// A silent listener left on its own (its connection failed or closed) or was closed
    /// with the session's media.
    ListenerLeft {
        session_id: String,
        listener_id: u64,
    },
    /// Something broke in the media path for this session.
    Failed {
        session_id: String,
        detail: String,
    },
}
