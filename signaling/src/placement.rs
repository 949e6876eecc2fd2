//! Placement of new participant peers on media nodes (F13), sans-IO: the announcements media
//! nodes send about themselves go in with the time they were heard, and the table answers which
//! node takes a new session and which nodes are lost. How announcements travel (the event bus)
//! and how a session is handed to its node are the callers' business.
//!
//! A node is *healthy* while its last announcement is at most [`NodeTable::stale_after`] old
//! (three announcement intervals: one lost message is not a lost node). A healthy node that is
//! draining or full is still alive (its sessions go on) but takes nothing new. Among the nodes
//! that take sessions the least loaded wins, load being the larger of its session share and its
//! CPU share, and a node that missed 20 ms deadlines since its last announcement only wins when
//! every other node missed some too: missed deadlines mean its participants hear gaps already.

use crate::lifecycle::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a media node says about itself, about once per announcement interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAnnouncement {
    /// The node's id, unique among live nodes (stable for its process's lifetime).
    pub node_id: String,
    /// The node's HTTP base URL as other nodes reach it (where a participant's WHIP request
    /// is handed off to, `routes::handoff`).
    #[serde(default)]
    pub http_url: String,
    /// Sessions with media on the node now.
    pub sessions: u32,
    /// How many sessions the node takes at most (`[limits] max_sessions`).
    pub capacity: u32,
    /// Share of the node's cores in use, 0.0-1.0 (the process's CPU time over the last
    /// interval divided by its cores).
    pub cpu: f32,
    /// 20 ms deadlines the node's media missed since its previous announcement.
    pub missed_deadlines: u64,
    /// The node takes no new sessions; its live ones finish.
    pub draining: bool,
    /// The sessions whose media the node holds (so any API node can route a command).
    #[serde(default)]
    pub session_ids: Vec<String>,
}

impl NodeAnnouncement {
    /// The node's load in 0.0-1.0: the larger of its session share and its CPU share.
    pub fn load(&self) -> f32 {
        let share = if self.capacity == 0 {
            1.0
        } else {
            self.sessions as f32 / self.capacity as f32
        };
        share.max(self.cpu).clamp(0.0, 1.0)
    }

    /// Whether the node accepts a new session (not draining, not full).
    pub fn takes_sessions(&self) -> bool {
        !self.draining && self.sessions < self.capacity
    }
}

/// A node as last heard.
#[derive(Debug, Clone, PartialEq)]
pub struct HeardNode {
    pub announcement: NodeAnnouncement,
    pub heard_at: Millis,
}

/// The media nodes heard from, by id.
#[derive(Debug, Clone)]
pub struct NodeTable {
    nodes: BTreeMap<String, HeardNode>,
    stale_after_ms: i64,
}

impl NodeTable {
    /// A table in which a node is lost once not heard for three `interval_ms`.
    pub fn new(interval_ms: i64) -> NodeTable {
        NodeTable {
            nodes: BTreeMap::new(),
            stale_after_ms: interval_ms.saturating_mul(3),
        }
    }

    /// How long a node may stay silent and still count as healthy.
    pub fn stale_after(&self) -> Millis {
        Millis(self.stale_after_ms)
    }

    /// Records an announcement heard at `now` (it replaces the node's previous one).
    pub fn observe(&mut self, announcement: NodeAnnouncement, now: Millis) {
        let heard = HeardNode {
            announcement,
            heard_at: now,
        };
        self.nodes.insert(heard.announcement.node_id.clone(), heard);
    }

    /// Forgets a node that said it is leaving.
    pub fn forget(&mut self, node_id: &str) {
        self.nodes.remove(node_id);
    }

    /// Whether `node_id` was heard recently enough to count as alive.
    pub fn is_healthy(&self, node_id: &str, now: Millis) -> bool {
        self.nodes.get(node_id).is_some_and(|n| self.fresh(n, now))
    }

    /// A node's last announcement.
    pub fn get(&self, node_id: &str) -> Option<&NodeAnnouncement> {
        self.nodes.get(node_id).map(|n| &n.announcement)
    }

    /// Every node in the table (healthy or not yet reported lost), by id.
    pub fn all(&self) -> impl Iterator<Item = &HeardNode> {
        self.nodes.values()
    }

    /// The healthy nodes, by id.
    pub fn healthy(&self, now: Millis) -> impl Iterator<Item = &HeardNode> {
        self.nodes.values().filter(move |n| self.fresh(n, now))
    }

    /// Nodes heard once but silent for longer than [`Self::stale_after`], as last heard: the
    /// media of the sessions they listed is lost. Removed from the table (each is reported
    /// once).
    pub fn take_lost(&mut self, now: Millis) -> Vec<NodeAnnouncement> {
        let lost: Vec<String> = self
            .nodes
            .values()
            .filter(|n| !self.fresh(n, now))
            .map(|n| n.announcement.node_id.clone())
            .collect();
        lost.iter()
            .filter_map(|id| self.nodes.remove(id))
            .map(|n| n.announcement)
            .collect()
    }

    /// The node a new session goes to: the least loaded healthy node that takes sessions,
    /// nodes without missed deadlines first; ties go to the fewer sessions, then the smaller
    /// id (so every API node given the same table picks the same). `None`: no node can take it.
    pub fn choose(&self, now: Millis) -> Option<&NodeAnnouncement> {
        self.healthy(now)
            .map(|n| &n.announcement)
            .filter(|a| a.takes_sessions())
            .min_by(|a, b| {
                (a.missed_deadlines > 0)
                    .cmp(&(b.missed_deadlines > 0))
                    .then(a.load().total_cmp(&b.load()))
                    .then(a.sessions.cmp(&b.sessions))
                    .then(a.node_id.cmp(&b.node_id))
            })
    }

    /// The healthy node that says it holds `session_id`'s media.
    pub fn holder_of(&self, session_id: &str, now: Millis) -> Option<&str> {
        self.healthy(now)
            .find(|n| n.announcement.session_ids.iter().any(|s| s == session_id))
            .map(|n| n.announcement.node_id.as_str())
    }

    /// Counts the room the table's healthy nodes have left (for readiness and metrics).
    pub fn room(&self, now: Millis) -> u32 {
        self.healthy(now)
            .map(|n| &n.announcement)
            .filter(|a| a.takes_sessions())
            .map(|a| a.capacity - a.sessions)
            .sum()
    }

    fn fresh(&self, n: &HeardNode, now: Millis) -> bool {
        now.0.saturating_sub(n.heard_at.0) <= self.stale_after_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, sessions: u32, cpu: f32) -> NodeAnnouncement {
        NodeAnnouncement {
            node_id: id.into(),
            http_url: format!("http://{id}.internal:8080"),
            sessions,
            capacity: 100,
            cpu,
            missed_deadlines: 0,
            draining: false,
            session_ids: Vec::new(),
        }
    }

    fn table(nodes: &[NodeAnnouncement]) -> NodeTable {
        let mut t = NodeTable::new(1000);
        for n in nodes {
            t.observe(n.clone(), Millis(0));
        }
        t
    }

    fn chosen(t: &NodeTable, now: i64) -> Option<String> {
        t.choose(Millis(now)).map(|a| a.node_id.clone())
    }

    #[test]
    fn the_least_loaded_node_takes_a_new_session() {
        let t = table(&[node("a", 30, 0.2), node("b", 10, 0.1), node("c", 20, 0.1)]);
        assert_eq!(chosen(&t, 0).as_deref(), Some("b"));
    }

    #[test]
    fn cpu_counts_when_it_is_the_larger_share() {
        // b has fewer sessions but its cores are busier than a's session share.
        let t = table(&[node("a", 30, 0.1), node("b", 10, 0.6)]);
        assert_eq!(chosen(&t, 0).as_deref(), Some("a"));
        assert!((t.nodes["b"].announcement.load() - 0.6).abs() < 1e-6);
    }

    #[test]
    fn draining_and_full_nodes_take_nothing_new() {
        let mut draining = node("a", 0, 0.0);
        draining.draining = true;
        let mut full = node("b", 100, 0.5);
        full.capacity = 100;
        let t = table(&[draining.clone(), full.clone(), node("c", 90, 0.9)]);
        assert_eq!(chosen(&t, 0).as_deref(), Some("c"));
        let only_unavailable = table(&[draining, full]);
        assert_eq!(chosen(&only_unavailable, 0), None);
        assert_eq!(only_unavailable.room(Millis(0)), 0);
        // Both stay healthy: their live sessions go on.
        assert_eq!(only_unavailable.healthy(Millis(0)).count(), 2);
    }

    #[test]
    fn a_node_missing_deadlines_wins_only_when_all_do() {
        let mut struggling = node("a", 1, 0.05);
        struggling.missed_deadlines = 3;
        let t = table(&[struggling.clone(), node("b", 60, 0.7)]);
        assert_eq!(chosen(&t, 0).as_deref(), Some("b"));
        let mut also = node("b", 60, 0.7);
        also.missed_deadlines = 1;
        let t = table(&[struggling, also]);
        assert_eq!(chosen(&t, 0).as_deref(), Some("a"));
    }

    #[test]
    fn ties_break_by_sessions_then_id_so_every_api_node_agrees() {
        let t = table(&[node("b", 0, 0.0), node("a", 0, 0.0)]);
        assert_eq!(chosen(&t, 0).as_deref(), Some("a"));
        let mut a = node("a", 5, 0.3);
        a.capacity = 10; // session share 0.5
        let mut b = node("b", 50, 0.3);
        b.capacity = 100; // session share 0.5, more sessions
        let t = table(&[a, b]);
        assert_eq!(chosen(&t, 0).as_deref(), Some("a"));
    }

    #[test]
    fn a_silent_node_is_lost_after_three_intervals_and_reported_once() {
        let mut t = NodeTable::new(1000);
        t.observe(node("a", 0, 0.0), Millis(0));
        t.observe(node("b", 5, 0.0), Millis(0));
        // b keeps announcing, a goes silent.
        t.observe(node("b", 5, 0.0), Millis(2500));
        assert!(t.is_healthy("a", Millis(3000)));
        assert_eq!(chosen(&t, 3000).as_deref(), Some("a"));
        assert!(t.take_lost(Millis(3000)).is_empty());
        assert!(!t.is_healthy("a", Millis(3001)));
        assert_eq!(chosen(&t, 3001).as_deref(), Some("b"));
        let lost = t.take_lost(Millis(3001));
        assert_eq!(lost, vec![node("a", 0, 0.0)]);
        assert!(t.take_lost(Millis(3002)).is_empty());
        // A node heard again after being lost comes back.
        t.observe(node("a", 0, 0.0), Millis(4000));
        assert!(t.is_healthy("a", Millis(4000)));
    }

    #[test]
    fn a_node_that_says_goodbye_is_gone_at_once() {
        let mut t = table(&[node("a", 0, 0.0), node("b", 1, 0.0)]);
        t.forget("a");
        assert_eq!(chosen(&t, 0).as_deref(), Some("b"));
        assert_eq!(t.room(Millis(0)), 99);
    }

    #[test]
    fn a_session_is_found_on_the_healthy_node_that_holds_it() {
        let mut a = node("a", 1, 0.0);
        a.session_ids = vec!["ses_1".into()];
        let mut t = NodeTable::new(1000);
        t.observe(a, Millis(0));
        t.observe(node("b", 0, 0.0), Millis(0));
        assert_eq!(t.holder_of("ses_1", Millis(10)), Some("a"));
        assert_eq!(t.holder_of("ses_2", Millis(10)), None);
        // Once a is lost, nobody holds it.
        assert_eq!(t.holder_of("ses_1", Millis(3001)), None);
    }

    #[test]
    fn announcements_travel_as_json() {
        let a = node("n1", 3, 0.25);
        let text = serde_json::to_string(&a).unwrap();
        let back: NodeAnnouncement = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
        // A zero capacity is a full node, not a division by zero.
        let mut zero = a;
        zero.capacity = 0;
        assert_eq!(zero.load(), 1.0);
        assert!(!zero.takes_sessions());
    }
}
