//! `[limits]`: limits under abuse (README "Limits"), turned into the HTTP layer's
//! [`HttpLimits`] and the session service's cap.

use super::ConfigError;
use earshot_signaling::routes::limits::HttpLimits;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits under abuse (README "Limits"). Defaults: [`HttpLimits::default`] and 100 sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body (bytes); more is `413 body_too_large`.
    pub max_body_bytes: usize,
    /// Time for a request's head, from when the server waits for it (also the keep-alive
    /// idle timeout).
    pub header_timeout_secs: u64,
    /// Longest pause inside a request body; more is `408 body_timeout`.
    pub body_timeout_secs: u64,
    /// HTTP connections at once (at most half the open-file limit); more get `503`.
    pub max_connections: usize,
    pub whip_offers_per_invite_per_minute: u32,
    pub whip_offers_per_address_per_minute: u32,
    /// Sessions with media (a participant peer) at once; more offers get `503 server_busy`.
    pub max_sessions: usize,
    pub max_monitors_per_session: usize,
    pub max_monitors: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let h = HttpLimits::default();
        Self {
            max_body_bytes: h.max_body_bytes,
            header_timeout_secs: h.header_timeout.as_secs(),
            body_timeout_secs: h.body_timeout.as_secs(),
            max_connections: h.max_connections,
            whip_offers_per_invite_per_minute: h.whip_offers_per_invite_per_minute,
            whip_offers_per_address_per_minute: h.whip_offers_per_address_per_minute,
            max_sessions: 100,
            max_monitors_per_session: h.max_monitors_per_session,
            max_monitors: h.max_monitors,
        }
    }
}

impl LimitsConfig {
    /// The HTTP layer's limits, with the connection cap as given (see `rlimit`).
    pub fn http(&self, max_connections: usize) -> HttpLimits {
        HttpLimits {
            max_body_bytes: self.max_body_bytes,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections,
            whip_offers_per_invite_per_minute: self.whip_offers_per_invite_per_minute,
            whip_offers_per_address_per_minute: self.whip_offers_per_address_per_minute,
            max_monitors_per_session: self.max_monitors_per_session,
            max_monitors: self.max_monitors,
            trusted_proxies: Default::default(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&str, u64, u64, u64); 9] = [
            ("max_body_bytes", self.max_body_bytes as u64, 1024, 64 << 20),
            ("header_timeout_secs", self.header_timeout_secs, 1, 300),
            ("body_timeout_secs", self.body_timeout_secs, 1, 300),
            ("max_connections", self.max_connections as u64, 1, 1_000_000),
            (
                "whip_offers_per_invite_per_minute",
                u64::from(self.whip_offers_per_invite_per_minute),
                1,
                100_000,
            ),
            (
                "whip_offers_per_address_per_minute",
                u64::from(self.whip_offers_per_address_per_minute),
                1,
                1_000_000,
            ),
            ("max_sessions", self.max_sessions as u64, 1, 100_000),
            (
                "max_monitors_per_session",
                self.max_monitors_per_session as u64,
                1,
                100_000,
            ),
            ("max_monitors", self.max_monitors as u64, 1, 1_000_000),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "limits.{key} must be {min}..={max}, got {value}"
                )));
            }
        }
        if self.max_monitors < self.max_monitors_per_session {
            return Err(ConfigError::Invalid(format!(
                "limits.max_monitors ({}) must be at least limits.max_monitors_per_session ({})",
                self.max_monitors, self.max_monitors_per_session
            )));
        }
        Ok(())
    }
}
