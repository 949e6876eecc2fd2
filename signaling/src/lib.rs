//! Earshot's signaling and control layer: HTTP/WebSocket routes, the session lifecycle,
//! storage and fan-out. It never touches a sample: the media plane is reached through
//! [`media_port::MediaPlane`].

pub mod auth;
pub mod error;
pub mod ids;
pub mod lifecycle;
pub mod live;
pub mod media_port;
pub mod routes;
pub mod sessions;
pub mod store;
pub mod turns;
pub mod user_agent;

/// Wall-clock now as unix milliseconds: the one place signaling reads the clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
