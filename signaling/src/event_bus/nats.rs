//! The NATS event bus (`[bus] url`, issue 17): live events cross nodes over a NATS server.
//!
//! Each event is encoded once; the publishing node hands the line to its own [`Hub`] (its
//! local subscribers see it at once, exactly once) and queues it for NATS on the session's
//! subject `earshot.live.<session id>` with headers naming the node, the kind (`event`,
//! `last`, `close`) and a per-session sequence number. A node subscribes to a session's
//! subject only while it has local subscribers: one NATS subscription per watched session,
//! feeding the local hub (its own messages skipped), so a [`Subscription`] stays a local
//! receiver with the hub's lag handling. A gap in a node's sequence numbers (lines it could
//! not send) reaches the local subscribers as [`crate::event_bus::Next::Lagged`].
//!
//! Publishing never waits: a bounded queue feeds one publisher task (which keeps each
//! session's order). While NATS is unreachable, or the queue is full, lines are dropped,
//! counted ([`BusCounters`]) and logged once per outage; publishing resumes by itself once
//! the client has reconnected.
//!
//! What each node keeps about its live sessions crosses too (`digests`), so any node's
//! dashboard shows every node's sessions.

mod digests;

pub use digests::{STATE_SUBJECT, SYNC_SUBJECT};

use super::{EventBus, LiveDigest, LiveEvent, Subscription};
use crate::live::Hub;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use dashmap::DashMap;
use digests::Digests;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

/// Lines queued for NATS before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8192;
/// Subject prefix of a session's live lines.
pub const LIVE_SUBJECT: &str = "earshot.live";

const NODE_HEADER: &str = "Earshot-Node";
const KIND_HEADER: &str = "Earshot-Kind";
const SEQ_HEADER: &str = "Earshot-Seq";

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("cannot subscribe to {subject} on NATS: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
}

/// The process's NATS connection and its node id, owned by the wiring (the bus, and later
/// placement, use it).
#[derive(Clone)]
pub struct NatsClient {
    client: async_nats::Client,
    node_id: Arc<str>,
}

impl NatsClient {
    /// Connects to `url` (`nats://host:port`); fails if the server cannot be reached now.
    /// Afterwards the client reconnects by itself, forever.
    pub async fn connect(url: &str, node_id: &str) -> Result<NatsClient, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("earshot {node_id}"))
            .max_reconnects(None)
            .connection_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_string(),
                source,
            })?;
        Ok(NatsClient {
            client,
            node_id: node_id.into(),
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Returns once the server has handled what this client sent before (a subscription is
    /// then in place): a message to a fresh inbox of ours comes back after it. A flush only
    /// writes the socket. Gives up after 5 s (logged; NATS down).
    async fn round_trip(&self) {
        let echo = async {
            let inbox = self.client.new_inbox();
            let mut sub = self.client.subscribe(inbox.clone()).await.ok()?;
            self.client.publish(inbox, Bytes::new()).await.ok()?;
            sub.next().await
        };
        if !matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), echo).await,
            Ok(Some(_))
        ) {
            tracing::warn!("NATS did not answer a round trip within 5 s");
        }
    }

    /// Whether the client is connected to the server now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// What the bus counted (`/metrics` may show them; tests read them).
#[derive(Debug, Default)]
pub struct BusCounters {
    /// Lines and digests handed to NATS.
    pub sent: AtomicU64,
    /// Lines and digests dropped: NATS unreachable or the queue full.
    pub dropped: AtomicU64,
    /// Lines other nodes sent that this node saw missing (reported to subscribers as lags).
    pub gaps: AtomicU64,
}

struct Outgoing {
    subject: Subject,
    headers: HeaderMap,
    payload: Bytes,
}

/// One NATS subscription feeding the local hub for a watched session; ends with it.
struct Watch {
    task: tokio::task::JoinHandle<()>,
    ready: watch::Receiver<bool>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The NATS [`EventBus`].
pub struct NatsBus {
    nats: NatsClient,
    hub: Arc<Hub>,
    watches: Arc<DashMap<String, Watch>>,
    /// The next sequence number of each session this node published to.
    seqs: DashMap<String, u64>,
    queue: mpsc::Sender<Outgoing>,
    counters: Arc<BusCounters>,
    /// Whether the queue was full the last time (logs once per episode).
    queue_full: AtomicBool,
    /// The live digests: the other nodes' and this node's own.
    digests: Digests,
}

fn live_subject(session_id: &str) -> String {
    format!("{LIVE_SUBJECT}.{session_id}")
}

/// Whether `id` can stand as one token of a subject (our ids: letters, digits, `_`, `-`).
fn is_subject_token(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

impl NatsBus {
    /// The bus on `nats`, its local hub holding `capacity` lines per session; starts the
    /// publisher task and the digest subscription (on the current runtime).
    pub async fn start(nats: NatsClient, capacity: usize) -> Result<NatsBus, BusError> {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(BusCounters::default());
        tokio::spawn(publisher(nats.clone(), rx, counters.clone()));
        let digests = Digests::start(&nats, queue.clone(), counters.clone()).await?;
        Ok(NatsBus {
            nats,
            hub: Arc::new(Hub::new(capacity)),
            watches: Arc::new(DashMap::new()),
            seqs: DashMap::new(),
            queue,
            counters,
            queue_full: AtomicBool::new(false),
            digests,
        })
    }

    pub fn counters(&self) -> &BusCounters {
        &self.counters
    }

    pub fn client(&self) -> &NatsClient {
        &self.nats
    }

    /// Waits until this node's NATS subscription to the session is in place (after a
    /// [`EventBus::subscribe`]); lines other nodes publish from then on arrive.
    pub async fn wait_watching(&self, session_id: &str) {
        let ready = self.watches.get(session_id).map(|w| w.ready.clone());
        if let Some(mut ready) = ready {
            let _ = ready.wait_for(|r| *r).await;
        }
    }

    /// Waits until this node holds another node's digest of the session matching `check`
    /// (tests and the cross-node checks).
    pub async fn wait_digest(&self, session_id: &str, check: impl Fn(&LiveDigest) -> bool) {
        loop {
            if self.digests.remote(session_id).is_some_and(|d| check(&d)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Delivers a line to this node's subscribers (`deliver`) and queues it for NATS; never
    /// waits. `kind` and the session's next sequence number go in the headers (the number is
    /// taken even if the message is then dropped, so receivers see the gap). Both happen
    /// under the session's sequence entry: local order and NATS order are the same.
    fn publish(&self, session_id: &str, kind: &str, payload: Bytes, deliver: impl FnOnce(&Hub)) {
        let mut seq = self.seqs.entry(session_id.to_string()).or_insert(0);
        *seq += 1;
        deliver(&self.hub);
        let mut headers = HeaderMap::new();
        headers.insert(NODE_HEADER, self.nats.node_id());
        headers.insert(KIND_HEADER, kind);
        headers.insert(SEQ_HEADER, seq.to_string().as_str());
        self.enqueue(Outgoing {
            subject: live_subject(session_id).into(),
            headers,
            payload,
        });
        drop(seq);
    }

    fn enqueue(&self, out: Outgoing) {
        match self.queue.try_send(out) {
            Ok(()) => {
                self.queue_full.store(false, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.queue_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        capacity = QUEUE_CAPACITY,
                        "NATS publish queue full: live lines are dropped until it drains"
                    );
                }
            }
        }
    }

    fn start_watch(&self, session_id: &str) -> Watch {
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(forward_session(
            self.nats.clone(),
            session_id.to_string(),
            self.hub.clone(),
            self.counters.clone(),
            ready_tx,
        ));
        Watch { task, ready }
    }
}

impl EventBus for NatsBus {
    fn publish_event(&self, session_id: &str, event: &LiveEvent<'_>) {
        let line: Arc<str> = event.to_json_line().into();
        let payload = Bytes::copy_from_slice(line.as_bytes());
        self.publish(session_id, "event", payload, |hub| {
            hub.publish(session_id, line);
        });
    }

    fn publish_last_event(&self, session_id: &str, event: &LiveEvent<'_>) {
        let line = event.to_json_line();
        let payload = Bytes::copy_from_slice(line.as_bytes());
        self.publish(session_id, "last", payload, |hub| {
            hub.publish_last(session_id, || line);
        });
        self.seqs.remove(session_id);
    }

    fn close_stream(&self, session_id: &str) {
        self.publish(session_id, "close", Bytes::new(), |hub| {
            hub.close(session_id)
        });
        self.seqs.remove(session_id);
    }

    fn subscribe(&self, session_id: &str) -> Subscription {
        let sub = self.hub.subscribe(session_id);
        if !is_subject_token(session_id) {
            // Not one of our ids (a wildcard or a dot would widen the subscription).
            return sub;
        }
        // A watch whose task ended (its session's stream ended) is replaced: a restarted
        // session streams again under the same id.
        self.watches
            .entry(session_id.to_string())
            .and_modify(|w| {
                if w.task.is_finished() {
                    *w = self.start_watch(session_id);
                }
            })
            .or_insert_with(|| self.start_watch(session_id));
        let watches = self.watches.clone();
        let hub = self.hub.clone();
        let key = session_id.to_string();
        sub.then_release(move || {
            // After the hub dropped the session's channel with its last subscriber; a
            // concurrent subscriber has already subscribed to the hub, and keeps the watch.
            watches.remove_if(&key, |_, _| !hub.is_watched(&key));
        })
    }

    fn subscriber_count(&self) -> usize {
        self.hub.subscriber_count()
    }

    fn metrics_text(&self) -> String {
        let c = &self.counters;
        let mut out = String::new();
        for (name, help, value) in [
            (
                "earshot_bus_sent_total",
                "Live lines and digests handed to NATS.",
                c.sent.load(Ordering::Relaxed),
            ),
            (
                "earshot_bus_dropped_total",
                "Live lines and digests dropped: NATS unreachable or the publish queue full.",
                c.dropped.load(Ordering::Relaxed),
            ),
            (
                "earshot_bus_gaps_total",
                "Live lines of other nodes seen missing (monitors told they lagged).",
                c.gaps.load(Ordering::Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        let name = "earshot_bus_watched_sessions";
        out.push_str(&format!(
            "# HELP {name} Sessions this node follows on NATS for its subscribers.\n# TYPE {name} gauge\n{name} {}\n",
            self.watches.len()
        ));
        out
    }

    fn shares_live_state(&self) -> bool {
        true
    }

    fn share_live_state(&self, session_id: &str, digest: &LiveDigest) {
        match serde_json::to_vec(digest) {
            Ok(json) => {
                let message = self.digests.share(self.nats.node_id(), session_id, json);
                self.enqueue(message);
            }
            Err(e) => {
                tracing::error!(session = session_id, error = %e, "encoding a live digest failed")
            }
        }
    }

    fn forget_live_state(&self, session_id: &str) {
        let message = self.digests.forget(self.nats.node_id(), session_id);
        self.enqueue(message);
    }

    fn remote_live_state(&self, session_id: &str) -> Option<LiveDigest> {
        self.digests.remote(session_id)
    }
}

/// The publisher task: hands queued messages to NATS in order; drops them while NATS is
/// unreachable (logged once per outage).
async fn publisher(nats: NatsClient, mut rx: mpsc::Receiver<Outgoing>, counters: Arc<BusCounters>) {
    let mut down = false;
    while let Some(out) = rx.recv().await {
        if !nats.connected() {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            if !down {
                down = true;
                tracing::warn!(
                    "NATS unreachable: live lines to other nodes are dropped until it is back"
                );
            }
            continue;
        }
        if down {
            down = false;
            tracing::info!("NATS reachable again: live lines go to other nodes");
        }
        match nats
            .client
            .publish_with_headers(out.subject, out.headers, out.payload)
            .await
        {
            Ok(()) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "publishing a live line on NATS failed");
            }
        }
    }
}

/// One watched session: its subject's messages from other nodes into the local hub, in
/// order; a sender's sequence gap becomes a lag; ends after the session's last line or close.
async fn forward_session(
    nats: NatsClient,
    session_id: String,
    hub: Arc<Hub>,
    counters: Arc<BusCounters>,
    ready: watch::Sender<bool>,
) {
    let subject = live_subject(&session_id);
    let mut sub = match nats.client.subscribe(subject.clone()).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(session = %session_id, error = %e, "subscribing to a session on NATS failed");
            return;
        }
    };
    nats.round_trip().await;
    let _ = ready.send(true);
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    while let Some(msg) = sub.next().await {
        let headers = msg.headers.as_ref();
        let Some(node) = header(headers, NODE_HEADER) else {
            tracing::debug!(subject = %subject, "a message without a node header ignored");
            continue;
        };
        if node == nats.node_id() {
            continue;
        }
        if let Some(seq) = header(headers, SEQ_HEADER).and_then(|s| s.parse::<u64>().ok()) {
            // A lower number: the sender restarted its count (the session restarted there).
            if let Some(prev) = last_seq.insert(node.to_string(), seq)
                && seq > prev + 1
            {
                let missed = seq - prev - 1;
                counters.gaps.fetch_add(missed, Ordering::Relaxed);
                hub.publish_gap(&session_id, missed);
            }
        }
        match header(headers, KIND_HEADER) {
            Some("event") => {
                let Ok(line) = std::str::from_utf8(&msg.payload) else {
                    tracing::warn!(subject = %subject, "a live line that is not UTF-8 ignored");
                    continue;
                };
                hub.publish(&session_id, line);
            }
            Some("last") => {
                let line = String::from_utf8_lossy(&msg.payload).into_owned();
                hub.publish_last(&session_id, || line);
                return;
            }
            Some("close") => {
                hub.close(&session_id);
                return;
            }
            other => {
                tracing::debug!(subject = %subject, kind = ?other, "unknown live message kind ignored")
            }
        }
    }
}
