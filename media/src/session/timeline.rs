//! The session timeline: 48 kHz samples of active time, stopped while paused or detached.

use std::time::{Duration, Instant};

/// The session timeline: active time since the first peer, pauses excluded.
pub(crate) struct Timeline {
    /// Samples already recorded before this process took the session over.
    pub(crate) base: u64,
    pub(crate) origin: Instant,
    pub(crate) paused_total: Duration,
    pub(crate) paused_at: Option<Instant>,
    /// When the timeline last started running.
    pub(crate) last_resume: Instant,
}

impl Timeline {
    pub(crate) fn new(base: u64, now: Instant) -> Self {
        Self {
            base,
            origin: now,
            paused_total: Duration::ZERO,
            paused_at: None,
            last_resume: now,
        }
    }
    pub(crate) fn position(&self, now: Instant) -> u64 {
        let until = self.paused_at.unwrap_or(now);
        let active = until
            .saturating_duration_since(self.origin)
            .saturating_sub(self.paused_total);
        self.base + crate::units::duration_to_samples(active)
    }
    pub(crate) fn pause(&mut self, now: Instant) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }
    pub(crate) fn resume(&mut self, now: Instant) {
        if let Some(at) = self.paused_at.take() {
            self.paused_total += now.saturating_duration_since(at);
            self.last_resume = now;
        }
    }
}
