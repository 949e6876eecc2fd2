//! This process's place among the media nodes (F13): its node id, whether it drains, and the
//! table of the nodes it has heard (itself included: the binary feeds its own announcement in
//! as it sends it, so a single process and a cluster read the same table). Drained nodes take
//! no new sessions; their live ones finish.

pub mod nats;

use crate::clock::Clock;
use crate::placement::{NodeAnnouncement, NodeTable};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How often a node announces itself (ms); a node silent for three of these is lost.
pub const ANNOUNCE_INTERVAL_MS: i64 = 1000;

/// A node as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    #[serde(flatten)]
    pub announcement: NodeAnnouncement,
    /// Heard within the last three announcement intervals.
    pub healthy: bool,
    /// Milliseconds since its last announcement was heard.
    pub heard_ms_ago: i64,
}

/// The node and what it knows of the others.
pub struct Cluster {
    node_id: String,
    draining: Arc<AtomicBool>,
    table: Arc<Mutex<NodeTable>>,
    /// Sessions this process placed, and on which node (announcements list a session only
    /// from the holder's next announcement on).
    placed: Mutex<HashMap<String, String>>,
    clock: Arc<dyn Clock>,
    /// A media-only node (`serve --role media`): its HTTP serves only the cluster's routes.
    media_only: bool,
}

impl Cluster {
    pub fn new(node_id: &str, clock: Arc<dyn Clock>) -> Cluster {
        Cluster {
            node_id: node_id.to_string(),
            draining: Arc::new(AtomicBool::new(false)),
            table: Arc::new(Mutex::new(NodeTable::new(ANNOUNCE_INTERVAL_MS))),
            placed: Mutex::new(HashMap::new()),
            clock,
            media_only: false,
        }
    }

    /// The same node serving only the routes the other nodes and operators need
    /// (`routes::nodes::media_node_serves`).
    pub fn media_only(mut self) -> Cluster {
        self.media_only = true;
        self
    }

    /// Whether this node serves only the cluster's routes.
    pub fn is_media_only(&self) -> bool {
        self.media_only
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether this node drains (takes no new sessions).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Turns draining on or off; returns whether it was on.
    pub fn set_draining(&self, on: bool) -> bool {
        let was = self.draining.swap(on, Ordering::Relaxed);
        if was != on {
            tracing::info!(node = %self.node_id, draining = on, "node drain changed");
        }
        was
    }

    /// The switch itself, for whoever announces the node.
    pub fn drain_switch(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// The healthy node holding `session_id`'s media: the one this process placed it on,
    /// else the one whose announcements list it.
    pub fn holder(&self, session_id: &str) -> Option<String> {
        let now = self.clock.now();
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let placed = self
            .placed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session_id)
            .filter(|node| table.is_healthy(node, now))
            .cloned();
        placed.or_else(|| table.holder_of(session_id, now).map(str::to_string))
    }

    /// Where a new peer of `session_id` goes: its holder while healthy, else the node the
    /// table chooses (`None`: no node takes a session now).
    pub fn place(&self, session_id: &str) -> Option<NodeAnnouncement> {
        let now = self.clock.now();
        let holder = self.holder(session_id);
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        match holder {
            Some(node) => table.get(&node).cloned(),
            None => table.choose(now).cloned(),
        }
    }

    /// The node a file job goes to (any node that takes work).
    pub fn any_worker(&self) -> Option<NodeAnnouncement> {
        let now = self.clock.now();
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.choose(now).cloned()
    }

    /// Records that `session_id`'s media now runs on `node` (`None`: nowhere).
    pub fn remember(&self, session_id: &str, node: Option<&str>) {
        let mut placed = self.placed.lock().unwrap_or_else(PoisonError::into_inner);
        match node {
            Some(node) => placed.insert(session_id.to_string(), node.to_string()),
            None => placed.remove(session_id),
        };
    }

    /// Records an announcement heard now.
    pub fn hear(&self, announcement: NodeAnnouncement) {
        let now = self.clock.now();
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(announcement, now);
    }

    /// Nodes lost since the last call, as last heard (their sessions' media is gone).
    pub fn take_lost(&self) -> Vec<NodeAnnouncement> {
        let now = self.clock.now();
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_lost(now)
    }

    /// Every node heard, by id.
    pub fn view(&self) -> Vec<NodeView> {
        let now = self.clock.now();
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table
            .all()
            .map(|n| NodeView {
                announcement: n.announcement.clone(),
                healthy: table.is_healthy(&n.announcement.node_id, now),
                heard_ms_ago: now.0.saturating_sub(n.heard_at.0),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::lifecycle::Millis;
    use std::time::Duration;

    fn announcement(id: &str) -> NodeAnnouncement {
        NodeAnnouncement {
            node_id: id.into(),
            http_url: format!("http://{id}:8080"),
            sessions: 1,
            capacity: 10,
            cpu: 0.1,
            missed_deadlines: 0,
            draining: false,
            session_ids: vec!["ses_1".into()],
        }
    }

    #[test]
    fn the_view_shows_every_node_heard_and_whether_it_is_alive() {
        let clock = Arc::new(ManualClock::starting_at(Millis(10_000)));
        let cluster = Cluster::new("a", clock.clone());
        cluster.hear(announcement("a"));
        cluster.hear(announcement("b"));
        clock.advance(Duration::from_millis(2000));
        cluster.hear(announcement("a"));
        clock.advance(Duration::from_millis(1500));
        let view = cluster.view();
        assert_eq!(view.len(), 2);
        assert_eq!(
            (
                view[0].announcement.node_id.as_str(),
                view[0].healthy,
                view[0].heard_ms_ago
            ),
            ("a", true, 1500)
        );
        assert_eq!(
            (
                view[1].announcement.node_id.as_str(),
                view[1].healthy,
                view[1].heard_ms_ago
            ),
            ("b", false, 3500)
        );
        let lost = cluster.take_lost();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].session_ids, ["ses_1"]);
        assert_eq!(cluster.view().len(), 1);
        let json = serde_json::to_value(&cluster.view()[0]).unwrap();
        assert_eq!(json["node_id"], "a");
        assert_eq!(json["healthy"], true);
    }

    #[test]
    fn draining_is_a_switch_the_announcer_reads() {
        let cluster = Cluster::new("a", Arc::new(ManualClock::starting_at(Millis(0))));
        let switch = cluster.drain_switch();
        assert!(!cluster.set_draining(true));
        assert!(switch.load(Ordering::Relaxed) && cluster.draining());
        assert!(cluster.set_draining(false));
        assert!(!switch.load(Ordering::Relaxed));
    }
}
