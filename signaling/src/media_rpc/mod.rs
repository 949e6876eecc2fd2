//! The media port across processes (F13): the [`MediaPlane`] commands as JSON requests and
//! replies, so a node without the session's media (an API node, or any node after a
//! placement) commands the media node that holds it. [`serve_command`] answers one request
//! on the media node from its local plane; [`remote::RemoteMediaPlane`] is the other end, a
//! `MediaPlane` that places new participants with [`crate::placement`] and sends every command
//! to the node that holds the session, over an [`RpcTransport`] (NATS request/reply in
//! production: one subject per node, [`node_subject`]).
//!
//! Media events do not travel this way: the node holding a session's media handles its events
//! itself (its session service steps the shared store and publishes live events on the bus).

pub mod remote;

use earshot_vocab::media_port::{
    AgentSpec, IceCredentials, MediaError, MediaPlane, OpenParticipant, RecordingFile,
    RecordingSpec,
};
use earshot_vocab::{Format, Track};
use serde::{Deserialize, Serialize};

/// The subject a media node answers its commands on.
pub fn node_subject(node_id: &str) -> String {
    format!("earshot.media.{node_id}")
}

/// One command to a media node (a [`MediaPlane`] method and its arguments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MediaCommand {
    OpenParticipant(OpenParticipant),
    AddCandidate {
        session_id: String,
        candidate: String,
    },
    HangUp {
        session_id: String,
    },
    Pause {
        session_id: String,
    },
    Resume {
        session_id: String,
        agent: Option<AgentSpec>,
    },
    Discard {
        session_id: String,
    },
    Finish {
        session_id: String,
        recording: Option<RecordingSpec>,
    },
    DeriveRecording {
        recording: RecordingSpec,
        track: Track,
        format: Format,
    },
    RestartIce {
        session_id: String,
        client: IceCredentials,
    },
    OpenListener {
        session_id: String,
        offer_sdp: String,
    },
    AddListenerCandidate {
        session_id: String,
        listener_id: u64,
        candidate: String,
    },
    CloseListener {
        session_id: String,
        listener_id: u64,
    },
}

/// A media node's answer to one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum MediaReply {
    /// Done; nothing to return.
    Done,
    /// An SDP answer (a participant's offer).
    Answer { sdp: String },
    /// A listener's id and SDP answer.
    Listener { id: u64, sdp: String },
    /// An ICE restart's new server credentials (`None`: plain trickle).
    Ice { credentials: Option<IceCredentials> },
    /// A derived file.
    File { file: RecordingFile },
    /// The command failed as a [`MediaError`] says.
    Error { error: WireError },
}

/// A [`MediaError`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum WireError {
    InvalidSdp(String),
    NoAudio,
    InvalidCandidate(String),
    UnknownSession,
    Internal(String),
}

impl From<MediaError> for WireError {
    fn from(e: MediaError) -> WireError {
        match e {
            MediaError::InvalidSdp(d) => WireError::InvalidSdp(d),
            MediaError::NoAudio => WireError::NoAudio,
            MediaError::InvalidCandidate(d) => WireError::InvalidCandidate(d),
            MediaError::UnknownSession => WireError::UnknownSession,
            MediaError::Internal(d) => WireError::Internal(d),
        }
    }
}

impl From<WireError> for MediaError {
    fn from(e: WireError) -> MediaError {
        match e {
            WireError::InvalidSdp(d) => MediaError::InvalidSdp(d),
            WireError::NoAudio => MediaError::NoAudio,
            WireError::InvalidCandidate(d) => MediaError::InvalidCandidate(d),
            WireError::UnknownSession => MediaError::UnknownSession,
            WireError::Internal(d) => MediaError::Internal(d),
        }
    }
}

/// Why a request reached no answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No node answered in time (it may be gone).
    #[error("media node {node} did not answer: {detail}")]
    Unreachable { node: String, detail: String },
    /// The answer was not a reply this version understands.
    #[error("media node {node} answered something unreadable: {detail}")]
    Malformed { node: String, detail: String },
}

/// How a request reaches a media node and its answer comes back.
#[async_trait::async_trait]
pub trait RpcTransport: Send + Sync + 'static {
    /// Sends `payload` to `node_id` and waits for its answer (bounded by the transport's
    /// timeout).
    async fn request(&self, node_id: &str, payload: Vec<u8>) -> Result<Vec<u8>, RpcError>;
}

/// Answers one encoded command from the local media plane: what a media node runs for each
/// request on its subject. A request that does not parse is answered with an `internal`
/// error naming why (nothing is done).
pub async fn serve_request(plane: &dyn MediaPlane, payload: &[u8]) -> Vec<u8> {
    let reply = match serde_json::from_slice::<MediaCommand>(payload) {
        Ok(command) => serve_command(plane, command).await,
        Err(e) => MediaReply::Error {
            error: WireError::Internal(format!("unreadable media command: {e}")),
        },
    };
    // A reply of these types always encodes; the fallback only keeps this panic-free.
    serde_json::to_vec(&reply).unwrap_or_else(|_| br#"{"reply":"done"}"#.to_vec())
}

/// Runs one command on the local media plane.
pub async fn serve_command(plane: &dyn MediaPlane, command: MediaCommand) -> MediaReply {
    fn failed(e: MediaError) -> MediaReply {
        MediaReply::Error { error: e.into() }
    }
    match command {
        MediaCommand::OpenParticipant(req) => match plane.open_participant(req).await {
            Ok(sdp) => MediaReply::Answer { sdp },
            Err(e) => failed(e),
        },
        MediaCommand::AddCandidate {
            session_id,
            candidate,
        } => match plane.add_candidate(&session_id, &candidate).await {
            Ok(()) => MediaReply::Done,
            Err(e) => failed(e),
        },
        MediaCommand::HangUp { session_id } => {
            plane.hang_up(&session_id).await;
            MediaReply::Done
        }
        MediaCommand::Pause { session_id } => {
            plane.pause(&session_id).await;
            MediaReply::Done
        }
        MediaCommand::Resume { session_id, agent } => {
            plane.resume(&session_id, agent).await;
            MediaReply::Done
        }
        MediaCommand::Discard { session_id } => {
            plane.discard(&session_id).await;
            MediaReply::Done
        }
        MediaCommand::Finish {
            session_id,
            recording,
        } => {
            plane.finish(&session_id, recording).await;
            MediaReply::Done
        }
        MediaCommand::DeriveRecording {
            recording,
            track,
            format,
        } => match plane.derive_recording(recording, track, format).await {
            Ok(file) => MediaReply::File { file },
            Err(e) => failed(e),
        },
        MediaCommand::RestartIce { session_id, client } => {
            match plane.restart_ice(&session_id, client).await {
                Ok(credentials) => MediaReply::Ice { credentials },
                Err(e) => failed(e),
            }
        }
        MediaCommand::OpenListener {
            session_id,
            offer_sdp,
        } => match plane.open_listener(&session_id, &offer_sdp).await {
            Ok((id, sdp)) => MediaReply::Listener { id, sdp },
            Err(e) => failed(e),
        },
        MediaCommand::AddListenerCandidate {
            session_id,
            listener_id,
            candidate,
        } => match plane
            .add_listener_candidate(&session_id, listener_id, &candidate)
            .await
        {
            Ok(()) => MediaReply::Done,
            Err(e) => failed(e),
        },
        MediaCommand::CloseListener {
            session_id,
            listener_id,
        } => {
            plane.close_listener(&session_id, listener_id).await;
            MediaReply::Done
        }
    }
}

#[cfg(test)]
mod tests;
