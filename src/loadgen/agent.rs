//! Server-added latency: the hook for measuring through the agent bridge (F5).
//!
//! PRODUCT.md's bar is p99 <= 2 ms beyond the codec's own frame, in both directions:
//! participant RTP packet -> agent `media` frame, and agent `media` frame -> RTP packet to the
//! participant. Measuring it needs the load generator to play the agent too (the WebSocket
//! endpoint a script's agent URL points at). That endpoint is not built yet, so both series
//! stay empty and the report prints `null` with [`NOTE`].
//!
//! How it slots in: the load generator runs a small agent endpoint and creates its invites
//! under a script whose agent URL points at it. Each participant marks the frames it sends
//! (e.g. a tone burst or a counter in a known frame; `participant::send_loop` knows the send
//! instant of every frame) and the agent endpoint records when the matching `media` message
//! arrives: [`AgentLatency::participant_to_agent`]. The agent endpoint sends marked frames back
//! and the participant's receive loop records the RTP arrival:
//! [`AgentLatency::agent_to_participant`]. Both feed [`LatencyReport`], which the report and the
//! capacity search already read (a p99 above the limit ends a capacity step).

use serde::Serialize;

use super::stats::Distribution;

pub const NOTE: &str = "server-added latency is measured through the agent bridge (F5) with the load \
     generator playing the agent; that agent endpoint is not built yet: null until then";

/// Latency samples in milliseconds, filled by the agent endpoint once it exists.
#[derive(Debug, Default)]
pub struct AgentLatency {
    participant_to_agent: Vec<f64>,
    agent_to_participant: Vec<f64>,
}

impl AgentLatency {
    /// A participant frame reached the agent `ms` after the participant sent it (minus the
    /// frame duration the codec needs anyway).
    #[allow(dead_code)] // called by the agent endpoint once the bridge exists
    pub fn participant_to_agent(&mut self, ms: f64) {
        self.participant_to_agent.push(ms);
    }

    /// An agent frame reached the participant `ms` after the agent sent it.
    #[allow(dead_code)] // called by the agent endpoint once the bridge exists
    pub fn agent_to_participant(&mut self, ms: f64) {
        self.agent_to_participant.push(ms);
    }

    pub fn report(&self) -> LatencyReport {
        let dist = |v: &[f64]| (!v.is_empty()).then(|| Distribution::of(v));
        let participant_to_agent_ms = dist(&self.participant_to_agent);
        let agent_to_participant_ms = dist(&self.agent_to_participant);
        let measured = participant_to_agent_ms.is_some() || agent_to_participant_ms.is_some();
        LatencyReport {
            participant_to_agent_ms,
            agent_to_participant_ms,
            note: (!measured).then_some(NOTE),
        }
    }
}

/// The report's `server_added_latency`.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub participant_to_agent_ms: Option<Distribution>,
    pub agent_to_participant_ms: Option<Distribution>,
    pub note: Option<&'static str>,
}

impl LatencyReport {
    /// The worse p99 of the two directions, when measured.
    pub fn worst_p99(&self) -> Option<f64> {
        [&self.participant_to_agent_ms, &self.agent_to_participant_ms]
            .into_iter()
            .filter_map(|d| d.and_then(|d| d.p99))
            .reduce(f64::max)
    }
}
