//! The HTTP surface: one router per resource, merged here. Every route states who may call it.
//! Routes parse and check requests, call the session service (never the store) and render
//! its answers with [`views`].

mod admin;
mod auth;
mod extract;
mod headers;
pub mod limits;
mod live;
mod metrics;
mod monitor;
mod participant;
mod participant_live;
pub mod scripts;
mod server;
mod state;
pub mod views;

pub use state::{App, AppState, IceServerView};

use axum::Router;
use axum::routing::get;

pub fn router(app: AppState) -> Router {
    let max_body = app.limits.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .merge(participant::router())
        .merge(participant_live::router())
        .merge(admin::router())
        .merge(scripts::router())
        .merge(live::router())
        .merge(monitor::router())
        .merge(metrics::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(headers::common))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(app)
}

async fn no_route() -> crate::error::ApiError {
    crate::error::ApiError::not_found("route_not_found", "no such route")
}

async fn method_not_allowed() -> crate::error::ApiError {
    crate::error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Serves the API on `listener` until `shutdown` completes, within the app's limits (header
/// and body timeouts, connection cap: see `server`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.limits.config.clone();
    server::run(listener, router(app), &limits, shutdown).await
}

/// Liveness: anyone may call it.
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}
