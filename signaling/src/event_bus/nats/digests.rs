//! Live-session digests between nodes ([`LiveDigest`]): what the node running a session
//! keeps about it goes on `earshot.state.<session id>` (JSON; an empty payload withdraws it);
//! every node subscribes to `earshot.state.*` and keeps the other nodes' digests. A node that
//! starts asks on `earshot.sync.state`, and the others send theirs again.

use super::{BusCounters, BusError, NODE_HEADER, NatsClient, Outgoing, header};
use crate::event_bus::LiveDigest;
use async_nats::HeaderMap;
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// Subject prefix of a session's live digest.
pub const STATE_SUBJECT: &str = "earshot.state";
/// Where a starting node asks the others for their digests.
pub const SYNC_SUBJECT: &str = "earshot.sync.state";

/// The other nodes' digests and this node's own, with the two tasks keeping them.
pub(super) struct Digests {
    /// Other nodes' digests of their live sessions.
    others: Arc<DashMap<String, LiveDigest>>,
    /// This node's digests as last shared (sent again when a node starts).
    own: Arc<DashMap<String, Bytes>>,
    /// Keeping the others' digests, answering their sync requests.
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Digests {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Digests {
    /// Subscribes to the digests and the sync requests, then asks the other nodes for
    /// theirs. Answers go into `queue`.
    pub(super) async fn start(
        nats: &NatsClient,
        queue: mpsc::Sender<Outgoing>,
        counters: Arc<BusCounters>,
    ) -> Result<Digests, BusError> {
        let subscribe = |subject: String| async {
            nats.client
                .subscribe(subject.clone())
                .await
                .map_err(|source| BusError::Subscribe { subject, source })
        };
        let states = subscribe(format!("{STATE_SUBJECT}.*")).await?;
        let syncs = subscribe(SYNC_SUBJECT.to_string()).await?;
        nats.round_trip().await;
        let others = Arc::new(DashMap::new());
        let own = Arc::new(DashMap::new());
        let tasks = [
            tokio::spawn(keep_others(nats.clone(), states, others.clone())),
            tokio::spawn(answer_syncs(
                nats.clone(),
                syncs,
                own.clone(),
                queue,
                counters,
            )),
        ];
        let mut headers = HeaderMap::new();
        headers.insert(NODE_HEADER, nats.node_id());
        if let Err(e) = nats
            .client
            .publish_with_headers(SYNC_SUBJECT, headers, Bytes::new())
            .await
        {
            tracing::warn!(error = %e, "asking the other nodes for their live digests failed");
        }
        Ok(Digests { others, own, tasks })
    }

    /// This node's digest of a session as JSON, kept for sync requests; the message to send.
    pub(super) fn share(&self, node_id: &str, session_id: &str, json: Vec<u8>) -> Outgoing {
        let payload = Bytes::from(json);
        self.own.insert(session_id.to_string(), payload.clone());
        message(node_id, session_id, payload)
    }

    /// Withdraws the session's digest here; the message telling the others.
    pub(super) fn forget(&self, node_id: &str, session_id: &str) -> Outgoing {
        self.others.remove(session_id);
        self.own.remove(session_id);
        message(node_id, session_id, Bytes::new())
    }

    /// Another node's digest of the session.
    pub(super) fn remote(&self, session_id: &str) -> Option<LiveDigest> {
        self.others.get(session_id).map(|d| d.clone())
    }
}

fn message(node_id: &str, session_id: &str, payload: Bytes) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(NODE_HEADER, node_id);
    Outgoing {
        subject: format!("{STATE_SUBJECT}.{session_id}").into(),
        headers,
        payload,
    }
}

/// Keeps the other nodes' live digests: a JSON payload replaces the session's, an empty one
/// withdraws it.
async fn keep_others(
    nats: NatsClient,
    mut states: async_nats::Subscriber,
    others: Arc<DashMap<String, LiveDigest>>,
) {
    let prefix = format!("{STATE_SUBJECT}.");
    while let Some(msg) = states.next().await {
        if header(msg.headers.as_ref(), NODE_HEADER) == Some(nats.node_id()) {
            continue;
        }
        let Some(session_id) = msg.subject.as_str().strip_prefix(&prefix) else {
            continue;
        };
        if msg.payload.is_empty() {
            others.remove(session_id);
            continue;
        }
        match serde_json::from_slice::<LiveDigest>(&msg.payload) {
            Ok(d) => {
                others.insert(session_id.to_string(), d);
            }
            Err(e) => {
                tracing::warn!(session = session_id, error = %e, "a live digest that does not parse ignored")
            }
        }
    }
}

/// Another node started and asked: this node's digests go out again (queued like the rest;
/// what does not fit is dropped and counted).
async fn answer_syncs(
    nats: NatsClient,
    mut syncs: async_nats::Subscriber,
    own: Arc<DashMap<String, Bytes>>,
    queue: mpsc::Sender<Outgoing>,
    counters: Arc<BusCounters>,
) {
    while let Some(msg) = syncs.next().await {
        if header(msg.headers.as_ref(), NODE_HEADER) == Some(nats.node_id()) {
            continue;
        }
        let digests: Vec<(String, Bytes)> = own
            .iter()
            .map(|d| (d.key().clone(), d.value().clone()))
            .collect();
        for (session_id, payload) in digests {
            if queue
                .try_send(message(nats.node_id(), &session_id, payload))
                .is_err()
            {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
