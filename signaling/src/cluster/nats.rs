//! The media nodes over NATS (F13, `[bus] url`): every node announces itself on
//! [`NODES_SUBJECT`] about once a second (a JSON [`NodeAnnouncement`]) and hears the others
//! into its [`Cluster`] table; media commands for a node go as NATS requests on its subject
//! ([`crate::media_rpc::node_subject`]) and are answered from its local media plane.

use super::Cluster;
use crate::event_bus::nats::{BusError, NatsClient};
use crate::media_rpc::{RpcError, RpcTransport, node_subject, serve_request};
use crate::placement::NodeAnnouncement;
use earshot_vocab::media_port::MediaPlane;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Where nodes announce themselves.
pub const NODES_SUBJECT: &str = "earshot.nodes";

/// Media commands to other nodes as NATS requests.
pub struct NatsRpc {
    client: async_nats::Client,
    timeout: Duration,
}

impl NatsRpc {
    /// Requests over `nats`; a node that does not answer within `timeout` is unreachable.
    pub fn new(nats: &NatsClient, timeout: Duration) -> NatsRpc {
        NatsRpc {
            client: nats.client().clone(),
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl RpcTransport for NatsRpc {
    async fn request(&self, node_id: &str, payload: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let unreachable = |detail: String| RpcError::Unreachable {
            node: node_id.to_string(),
            detail,
        };
        let request = self.client.request(node_subject(node_id), payload.into());
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(answer)) => Ok(answer.payload.to_vec()),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no answer within {:?}", self.timeout))),
        }
    }
}

/// Answers the media commands sent to this node from `plane`, each in its own task, for as
/// long as the connection lives.
pub async fn serve_media_commands(
    nats: &NatsClient,
    plane: Arc<dyn MediaPlane>,
) -> Result<JoinHandle<()>, BusError> {
    let subject = node_subject(nats.node_id());
    let mut requests = nats
        .client()
        .subscribe(subject.clone())
        .await
        .map_err(|source| BusError::Subscribe { subject, source })?;
    let client = nats.client().clone();
    Ok(tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let (plane, client) = (plane.clone(), client.clone());
            tokio::spawn(async move {
                let answer = serve_request(plane.as_ref(), &request.payload).await;
                if let Some(reply) = request.reply
                    && let Err(e) = client.publish(reply, answer.into()).await
                {
                    tracing::warn!(error = %e, "a media command's answer was not sent");
                }
            });
        }
    }))
}

/// Hears every node's announcements (this node's own included) into `cluster`.
pub async fn hear_nodes(
    nats: &NatsClient,
    cluster: Arc<Cluster>,
) -> Result<JoinHandle<()>, BusError> {
    let mut heard = nats
        .client()
        .subscribe(NODES_SUBJECT)
        .await
        .map_err(|source| BusError::Subscribe {
            subject: NODES_SUBJECT.into(),
            source,
        })?;
    Ok(tokio::spawn(async move {
        while let Some(message) = heard.next().await {
            match serde_json::from_slice::<NodeAnnouncement>(&message.payload) {
                Ok(announcement) => cluster.hear(announcement),
                Err(e) => tracing::warn!(error = %e, "an unreadable node announcement"),
            }
        }
    }))
}

/// Sends this node's announcement to every node.
pub async fn announce(nats: &NatsClient, announcement: &NodeAnnouncement) {
    let Ok(payload) = serde_json::to_vec(announcement) else {
        return;
    };
    if let Err(e) = nats.client().publish(NODES_SUBJECT, payload.into()).await {
        tracing::debug!(error = %e, "node announcement not sent");
    }
}
