//! Live fan-out (F6, F7): the in-process [`EventBus`], a per-session broadcast of
//! pre-serialized JSON lines to monitors.
//!
//! Publishing never waits: each session has a `tokio::sync::broadcast` channel (bounded ring,
//! [`DEFAULT_CAPACITY`] lines) that exists only while someone subscribes, so a session nobody
//! watches costs one map lookup per event and no serialization. A subscriber that falls more
//! than the capacity behind loses the oldest lines; [`pump`] then tells it
//! `{"type":"lagged","missed":n}` and re-syncs it with a fresh snapshot before it continues.
//! A slow subscriber therefore never slows the publisher (the media path) or the others.

use crate::event_bus::{EventBus, LiveEvent};
pub use crate::event_bus::{Line, Next, Subscription};
use dashmap::DashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Lines buffered per session before the slowest subscriber starts losing the oldest.
pub const DEFAULT_CAPACITY: usize = 1024;

type Channels = DashMap<String, broadcast::Sender<Line>>;

/// The per-session channels.
pub struct Hub {
    /// Shared with each subscription's release hook.
    channels: Arc<Channels>,
    capacity: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(DEFAULT_CAPACITY)
    }
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        Hub {
            channels: Arc::new(DashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether anyone watches the session (publishers may skip building the line).
    pub fn is_watched(&self, session_id: &str) -> bool {
        self.channels
            .get(session_id)
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Publishes a line built by `make` if anyone watches the session; never waits. Returns
    /// how many subscribers it reached.
    pub fn publish_with(&self, session_id: &str, make: impl FnOnce() -> String) -> usize {
        self.send(session_id, make, false)
    }

    /// Publishes a ready line; never waits.
    pub fn publish(&self, session_id: &str, json: impl Into<Arc<str>>) -> usize {
        let json = json.into();
        match self.channels.get(session_id) {
            Some(tx) => tx
                .send(Line {
                    json,
                    last: false,
                    missed: 0,
                })
                .unwrap_or(0),
            None => 0,
        }
    }

    /// Publishes the session's last line and removes its channel: subscribers receive what
    /// is buffered, then the end.
    pub fn publish_last(&self, session_id: &str, make: impl FnOnce() -> String) -> usize {
        let n = self.send(session_id, make, true);
        self.channels.remove(session_id);
        n
    }

    /// Tells the session's subscribers that `missed` lines were lost upstream (they re-sync
    /// as after a lag); never waits.
    pub fn publish_gap(&self, session_id: &str, missed: u64) -> usize {
        match self.channels.get(session_id) {
            Some(tx) => tx
                .send(Line {
                    json: Arc::from(""),
                    last: false,
                    missed,
                })
                .unwrap_or(0),
            None => 0,
        }
    }

    /// Drops the session's channel without a last line (the session was deleted).
    pub fn close(&self, session_id: &str) {
        self.channels.remove(session_id);
    }

    fn send(&self, session_id: &str, make: impl FnOnce() -> String, last: bool) -> usize {
        let Some(tx) = self.channels.get(session_id) else {
            return 0;
        };
        if tx.receiver_count() == 0 {
            return 0;
        }
        let json: Arc<str> = make().into();
        tx.send(Line {
            json,
            last,
            missed: 0,
        })
        .unwrap_or(0)
    }

    /// Subscribes to the session's lines from now on (creating its channel on demand).
    pub fn subscribe(&self, session_id: &str) -> Subscription {
        let rx = self
            .channels
            .entry(session_id.to_string())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        let channels = self.channels.clone();
        let key = session_id.to_string();
        Subscription::new(session_id, rx, move || {
            // Runs after the receiver is dropped. Atomic with `subscribe` (same map shard
            // lock): a concurrent subscriber keeps the channel.
            channels.remove_if(&key, |_, tx| tx.receiver_count() == 0);
        })
    }

    /// Sessions with a channel (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Subscribers connected across all sessions (metrics).
    pub fn subscriber_count(&self) -> usize {
        self.channels.iter().map(|tx| tx.receiver_count()).sum()
    }
}

/// Where a subscriber's lines go (a WebSocket, or a channel in tests). `false`: gone.
pub trait LiveSink: Send {
    fn send(&mut self, json: Arc<str>) -> impl Future<Output = bool> + Send;
}

/// A fresh snapshot line for re-syncing, and whether the session has ended. `None`: the
/// session is gone.
pub trait Snapshot: Send + Sync {
    fn snapshot(&self) -> impl Future<Output = Option<(Arc<str>, bool)>> + Send;
}

/// How a pump finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The session ended (its last line, or a snapshot showing it ended, was delivered).
    SessionEnded,
    /// The channel closed without a last line (session deleted or gone).
    Closed,
    /// The sink refused a line (the subscriber went away).
    SinkGone,
}

/// Forwards a subscription to a sink until the session ends: every line in order; after a lag
/// `{"type":"lagged","missed":n}` then a fresh snapshot. Call it in the subscriber's own task.
pub async fn pump<K: LiveSink, S: Snapshot>(
    mut sub: Subscription,
    snapshot: &S,
    sink: &mut K,
) -> PumpEnd {
    loop {
        match sub.next().await {
            Next::Line(line) => {
                if !sink.send(line.json).await {
                    return PumpEnd::SinkGone;
                }
                if line.last {
                    return PumpEnd::SessionEnded;
                }
            }
            Next::Lagged(missed) => {
                let lagged = format!(r#"{{"type":"lagged","missed":{missed}}}"#);
                if !sink.send(lagged.into()).await {
                    return PumpEnd::SinkGone;
                }
                let Some((snap, ended)) = snapshot.snapshot().await else {
                    return PumpEnd::Closed;
                };
                if !sink.send(snap).await {
                    return PumpEnd::SinkGone;
                }
                if ended {
                    return PumpEnd::SessionEnded;
                }
            }
            Next::Closed => return PumpEnd::Closed,
        }
    }
}

impl EventBus for Hub {
    fn publish_event(&self, session_id: &str, event: &LiveEvent<'_>) {
        self.publish_with(session_id, || event.to_json_line());
    }

    fn publish_last_event(&self, session_id: &str, event: &LiveEvent<'_>) {
        self.publish_last(session_id, || event.to_json_line());
    }

    fn close_stream(&self, session_id: &str) {
        self.close(session_id);
    }

    fn subscribe(&self, session_id: &str) -> Subscription {
        Hub::subscribe(self, session_id)
    }

    fn subscriber_count(&self) -> usize {
        Hub::subscriber_count(self)
    }
}

impl LiveSink for tokio::sync::mpsc::UnboundedSender<Arc<str>> {
    async fn send(&mut self, json: Arc<str>) -> bool {
        tokio::sync::mpsc::UnboundedSender::send(self, json).is_ok()
    }
}

impl LiveSink for tokio::sync::mpsc::Sender<Arc<str>> {
    async fn send(&mut self, json: Arc<str>) -> bool {
        tokio::sync::mpsc::Sender::send(self, json).await.is_ok()
    }
}
