//! Earshot's signaling and control layer: HTTP/WebSocket routes, the session lifecycle,
//! storage and fan-out. It never touches a sample: the media plane is reached through
//! [`media_port::MediaPlane`].
//!
//! Layers, each depending only on those below it: `routes` (HTTP, views) -> `service` (the
//! session use cases) -> the ports (`store`, `blob_store`, `event_bus`, `clock`,
//! `media_port`) and the pure parts (`lifecycle`, `turns`, `script_definition`), with the
//! in-process implementations beside their ports (`store::SqliteStore`,
//! `blob_store::LocalDiskBlobs`, `live::Hub`, `clock::SystemClock`).

pub mod access;
pub mod analytics;
pub mod attention;
pub mod audit;
pub mod blob_store;
pub mod byte_range;
pub mod clock;
pub mod cluster;
pub mod error;
pub mod event_bus;
pub mod exports;
pub mod ids;
pub mod lifecycle;
pub mod live;
pub mod media_rpc;
pub mod pii;
pub mod placement;
pub mod prompt_dirs;
pub mod routes;
pub mod script_definition;
pub mod service;
pub mod store;
pub mod timestamps;
pub mod turn_credentials;
pub mod turns;
pub mod user_agent;
pub mod webhooks;

/// The media port (commands and events), defined in the shared vocabulary crate.
pub use earshot_vocab::media_port;

/// Wall-clock now as unix milliseconds: what [`clock::SystemClock`] reads (and the binary,
/// for rows it seeds).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
