//! The session timeline: 48 kHz samples of active time, stopped while paused or detached.

use super::*;

/// The session timeline: active time since the first peer, pauses excluded.
pub(super) struct Timeline {
    /// Samples already recorded before this process took the session over.
    pub(super) base: u64,
    pub(super) origin: Instant,
    pub(super) paused_total: Duration,
    pub(super) paused_at: Option<Instant>,
    /// When the timeline last started running.
    pub(super) last_resume: Instant,
}

impl Timeline {
    pub(super) fn new(base: u64, now: Instant) -> Self {
        Self {
            base,
            origin: now,
            paused_total: Duration::ZERO,
            paused_at: None,
            last_resume: now,
        }
    }
    pub(super) fn position(&self, now: Instant) -> u64 {
        let until = self.paused_at.unwrap_or(now);
        let active = until
            .saturating_duration_since(self.origin)
            .saturating_sub(self.paused_total);
        self.base + (active.as_micros() as u64) * 48 / 1000
    }
    pub(super) fn pause(&mut self, now: Instant) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }
    pub(super) fn resume(&mut self, now: Instant) {
        if let Some(at) = self.paused_at.take() {
            self.paused_total += now.saturating_duration_since(at);
            self.last_resume = now;
        }
    }
}
