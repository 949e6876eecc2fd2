//! [`RemoteMediaPlane`]: the media port of a node that does not hold a session's media. A
//! participant's offer goes to the node that holds the session already (a reconnect) while it
//! is healthy, else to the node [`NodeTable::choose`] picks; every later command of the session
//! goes to that node. Where a session's media is, this process knows from its own placements
//! and, for sessions another API node placed, from the nodes' announcements.

use super::{MediaCommand, MediaReply, RpcTransport};
use crate::cluster::Cluster;
use earshot_vocab::media_port::{
    AgentSpec, IceCredentials, MediaError, MediaPlane, OpenParticipant, RecordingFile,
    RecordingSpec,
};
use earshot_vocab::{Format, Track};
use std::sync::Arc;

/// Commands media nodes over an [`RpcTransport`] (and this process's own media plane
/// directly, when it is a media node too).
pub struct RemoteMediaPlane {
    transport: Arc<dyn RpcTransport>,
    /// This node's id and media plane, when it holds media itself (`--role all`).
    local: Option<(String, Arc<dyn MediaPlane>)>,
    cluster: Arc<Cluster>,
}

impl RemoteMediaPlane {
    /// A plane placing on the nodes `cluster` has heard.
    pub fn new(transport: Arc<dyn RpcTransport>, cluster: Arc<Cluster>) -> RemoteMediaPlane {
        RemoteMediaPlane {
            transport,
            local: None,
            cluster,
        }
    }

    /// The same plane on a node that is a media node too: commands for `node_id` go to `plane`
    /// in-process instead of over the transport.
    pub fn with_local(mut self, node_id: &str, plane: Arc<dyn MediaPlane>) -> RemoteMediaPlane {
        self.local = Some((node_id.to_string(), plane));
        self
    }

    /// The healthy node holding `session_id`'s media, if any.
    pub fn holder(&self, session_id: &str) -> Option<String> {
        self.cluster.holder(session_id)
    }

    async fn call(&self, node: &str, command: &MediaCommand) -> Result<MediaReply, MediaError> {
        if let Some((_, plane)) = self.local.as_ref().filter(|(id, _)| id == node) {
            return match super::serve_command(plane.as_ref(), command.clone()).await {
                MediaReply::Error { error } => Err(error.into()),
                reply => Ok(reply),
            };
        }
        let payload = serde_json::to_vec(command)
            .map_err(|e| MediaError::Internal(format!("media command does not encode: {e}")))?;
        let answer = self
            .transport
            .request(node, payload)
            .await
            .map_err(|e| MediaError::Internal(e.to_string()))?;
        match serde_json::from_slice::<MediaReply>(&answer) {
            Ok(MediaReply::Error { error }) => Err(error.into()),
            Ok(reply) => Ok(reply),
            Err(e) => Err(MediaError::Internal(format!(
                "media node {node} answered something unreadable: {e}"
            ))),
        }
    }

    /// Sends a command of `session_id` to its holder; `UnknownSession` when no healthy node
    /// holds it.
    async fn call_holder(
        &self,
        session_id: &str,
        command: MediaCommand,
    ) -> Result<MediaReply, MediaError> {
        let node = self.holder(session_id).ok_or(MediaError::UnknownSession)?;
        self.call(&node, &command).await
    }

    /// A command whose caller expects nothing back: failures are logged.
    async fn tell_holder(&self, session_id: &str, command: MediaCommand) {
        if let Err(e) = self.call_holder(session_id, command).await {
            tracing::warn!(session = session_id, error = %e, "media command not delivered");
        }
    }
}

fn unexpected(reply: MediaReply) -> MediaError {
    MediaError::Internal(format!("media node answered out of turn: {reply:?}"))
}

#[async_trait::async_trait]
impl MediaPlane for RemoteMediaPlane {
    /// On a media node the offer is answered here: the WHIP hand-off
    /// (`routes::handoff`) already brought it to the node placement chose. A node without
    /// media of its own places it and sends it on.
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError> {
        let session_id = req.session_id.clone();
        let node = match &self.local {
            Some((local, _)) => local.clone(),
            None => self
                .cluster
                .place(&session_id)
                .map(|a| a.node_id)
                .ok_or_else(|| {
                    MediaError::Internal("no media node can take a session now".into())
                })?,
        };
        match self
            .call(&node, &MediaCommand::OpenParticipant(req))
            .await?
        {
            MediaReply::Answer { sdp } => {
                tracing::info!(session = %session_id, node = %node, "participant placed");
                self.cluster.remember(&session_id, Some(&node));
                Ok(sdp)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn add_candidate(&self, session_id: &str, candidate: &str) -> Result<(), MediaError> {
        let command = MediaCommand::AddCandidate {
            session_id: session_id.into(),
            candidate: candidate.into(),
        };
        match self.call_holder(session_id, command).await? {
            MediaReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn hang_up(&self, session_id: &str) {
        let command = MediaCommand::HangUp {
            session_id: session_id.into(),
        };
        self.tell_holder(session_id, command).await;
    }

    async fn pause(&self, session_id: &str) {
        let command = MediaCommand::Pause {
            session_id: session_id.into(),
        };
        self.tell_holder(session_id, command).await;
    }

    async fn resume(&self, session_id: &str, agent: Option<AgentSpec>) {
        let command = MediaCommand::Resume {
            session_id: session_id.into(),
            agent,
        };
        self.tell_holder(session_id, command).await;
    }

    async fn discard(&self, session_id: &str) {
        let command = MediaCommand::Discard {
            session_id: session_id.into(),
        };
        self.tell_holder(session_id, command).await;
        self.cluster.remember(session_id, None);
    }

    async fn finish(&self, session_id: &str, recording: Option<RecordingSpec>) {
        let command = MediaCommand::Finish {
            session_id: session_id.into(),
            recording,
        };
        self.tell_holder(session_id, command).await;
        self.cluster.remember(session_id, None);
    }

    async fn derive_recording(
        &self,
        recording: RecordingSpec,
        track: Track,
        format: Format,
    ) -> Result<RecordingFile, MediaError> {
        // File work of an ended session: any node that takes work does it.
        let node = self
            .cluster
            .any_worker()
            .map(|a| a.node_id)
            .ok_or_else(|| MediaError::Internal("no media node can make the file now".into()))?;
        let command = MediaCommand::DeriveRecording {
            recording,
            track,
            format,
        };
        match self.call(&node, &command).await? {
            MediaReply::File { file } => Ok(file),
            other => Err(unexpected(other)),
        }
    }

    async fn restart_ice(
        &self,
        session_id: &str,
        client: IceCredentials,
    ) -> Result<Option<IceCredentials>, MediaError> {
        let command = MediaCommand::RestartIce {
            session_id: session_id.into(),
            client,
        };
        match self.call_holder(session_id, command).await? {
            MediaReply::Ice { credentials } => Ok(credentials),
            other => Err(unexpected(other)),
        }
    }

    async fn open_listener(
        &self,
        session_id: &str,
        offer_sdp: &str,
    ) -> Result<(u64, String), MediaError> {
        let command = MediaCommand::OpenListener {
            session_id: session_id.into(),
            offer_sdp: offer_sdp.into(),
        };
        match self.call_holder(session_id, command).await? {
            MediaReply::Listener { id, sdp } => Ok((id, sdp)),
            other => Err(unexpected(other)),
        }
    }

    async fn add_listener_candidate(
        &self,
        session_id: &str,
        listener_id: u64,
        candidate: &str,
    ) -> Result<(), MediaError> {
        let command = MediaCommand::AddListenerCandidate {
            session_id: session_id.into(),
            listener_id,
            candidate: candidate.into(),
        };
        match self.call_holder(session_id, command).await? {
            MediaReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn close_listener(&self, session_id: &str, listener_id: u64) {
        let command = MediaCommand::CloseListener {
            session_id: session_id.into(),
            listener_id,
        };
        self.tell_holder(session_id, command).await;
    }

    fn metrics_text(&self) -> String {
        // Each media node serves its own media counters on its /metrics.
        self.local
            .as_ref()
            .map(|(_, plane)| plane.metrics_text())
            .unwrap_or_default()
    }
}
