//! What a session's media is asked to do: the participant's offer with the interview and the
//! recording it needs ([`ParticipantRequest`]), the external agent to dial ([`AgentRequest`]),
//! where and how to record ([`RecordingRequest`]), and the prompts loaded for playing. The
//! engine builds these from the media port's specs; the session task and the agent bridge read
//! them. It sits below both so that neither imports the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use earshot_vocab::AgentAudioFormat;
use earshot_vocab::media_port::PromptSpec;

use crate::codec::OpusSettings;
use crate::recorder::Quality;

#[derive(Debug, Clone)]
pub struct RecordingRequest {
    pub dir: PathBuf,
    pub quality: Quality,
    /// Make the mix and the MP3s when the session ends; otherwise only when first asked for
    /// ([`Engine::derive_recording`]).
    pub derive_at_end: bool,
    /// Encryption at rest of the files (`None`: plain files, and sealed ones do not open).
    pub sealing: Option<crate::recorder::Sealing>,
}

/// A prompt's audio, decoded to 48 kHz and encoded to the 20 ms Opus packets it is sent as:
/// every session playing the prompt sends these packets instead of encoding it again (Opus
/// encoding is the largest per-frame cost while the interviewer speaks).
#[derive(Debug, Clone)]
pub(crate) struct LoadedAudio {
    pub pcm: Arc<Vec<i16>>,
    /// One packet per 960 samples, the last frame padded with silence: without FEC bits, for
    /// a participant who reports no loss.
    pub packets: Arc<Vec<bytes::Bytes>>,
    /// The same with in-band FEC for [`PROMPT_FEC_LOSS_PCT`] loss, for a participant who
    /// reports loss (`None` with FEC off).
    pub packets_fec: Option<Arc<Vec<bytes::Bytes>>>,
}

/// The loss the FEC copy of a prompt is prepared for.
const PROMPT_FEC_LOSS_PCT: u8 = 10;

impl LoadedAudio {
    pub(crate) fn load(path: &std::path::Path, opus: OpusSettings) -> Result<Self, String> {
        let pcm = crate::prompt::load_prompt(path).map_err(|e| e.to_string())?;
        Self::encode(pcm, opus)
    }

    /// The prompt's packets, plain and with FEC, from its 48 kHz samples.
    pub(crate) fn encode(pcm: Vec<i16>, opus: OpusSettings) -> Result<Self, String> {
        // Encoded once per process, so the encoder's CPU/quality knob costs nothing here: the
        // highest complexity. Bitrate and band stay as configured.
        let opus = OpusSettings {
            complexity: 10,
            ..opus
        };
        let packets = Arc::new(encode_all(&pcm, opus)?);
        let packets_fec = if opus.fec {
            let lossy = OpusSettings {
                expected_loss_pct: opus.expected_loss_pct.max(PROMPT_FEC_LOSS_PCT),
                ..opus
            };
            Some(Arc::new(encode_all(&pcm, lossy)?))
        } else {
            None
        };
        Ok(Self {
            pcm: Arc::new(pcm),
            packets,
            packets_fec,
        })
    }
}

fn encode_all(pcm: &[i16], opus: OpusSettings) -> Result<Vec<bytes::Bytes>, String> {
    let mut encoder = crate::codec::OpusEncoder::new(opus).map_err(|e| e.to_string())?;
    let mut packets = Vec::with_capacity(pcm.len().div_ceil(crate::units::FRAME));
    for chunk in pcm.chunks(crate::units::FRAME) {
        let mut frame = [0i16; crate::units::FRAME];
        frame[..chunk.len()].copy_from_slice(chunk);
        packets.push(encoder.encode(&frame).map_err(|e| e.to_string())?);
    }
    Ok(packets)
}

/// One prompt of a session's script with its audio.
#[derive(Debug, Clone)]
pub(crate) struct LoadedPrompt {
    pub prompt: PromptSpec,
    pub audio: LoadedAudio,
}

/// An external AI interviewer the session's media task dials (Twilio Media Streams shapes).
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// `ws://host:port/path` of the agent.
    pub url: String,
    pub audio_format: AgentAudioFormat,
    /// Sent as `start.customParameters` (an object: session, campaign, script, metadata,
    /// resume context).
    pub custom_parameters: serde_json::Value,
    /// Give up (emit [`MediaEvent::AgentFailed`]) after the agent has been unreachable this
    /// long.
    pub retry_for: Duration,
    /// TLS for a `wss://` agent (`None`: the system's roots, see `agent::tls`).
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// A participant's offer and what their session's media must do.
#[derive(Debug, Clone)]
pub struct ParticipantRequest {
    pub session_id: String,
    pub offer_sdp: String,
    /// The built-in interviewer's prompts (unused when `agent` is set).
    pub prompts: Vec<PromptSpec>,
    pub silence_ms: u32,
    pub start_at: usize,
    pub noise_suppression: bool,
    /// `None` when recording is disabled for the script.
    pub recording: Option<RecordingRequest>,
    /// The external agent leading the interview; `None`: the built-in interviewer. On a
    /// resume the newest request is used when the agent is dialled again.
    pub agent: Option<AgentRequest>,
    /// The AI audio's encoder settings; `None`: the engine's.
    pub opus: Option<OpusSettings>,
}
