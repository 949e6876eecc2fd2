//! The HTTP surface: one router per resource, merged here. Every route states who may call it.
//! Routes parse and check requests, call the session service (never the store) and render
//! its answers with [`views`].

mod admin;
mod analytics;
mod audit;
mod auth;
mod campaigns;
mod console;
mod exports;
mod extract;
pub mod forwarded;
pub mod handoff;
mod headers;
mod health;
mod http_metrics;
pub mod limits;
mod live;
mod metrics;
mod monitor;
mod nodes;
mod participant;
mod participant_live;
mod privacy;
pub mod scripts;
mod server;
mod state;
pub mod tls;
mod users;
pub mod views;
mod webhooks;

pub use auth::console_cookie_value;
pub use state::{App, AppState, IceServerView};

use axum::Router;

pub fn router(app: AppState) -> Router {
    let max_body = app.limits.config.max_body_bytes;
    let http_metrics = std::sync::Arc::new(http_metrics::HttpMetrics::default());
    Router::new()
        .merge(health::router())
        .merge(participant::router())
        .merge(participant_live::router())
        .merge(admin::router())
        .merge(campaigns::router())
        .merge(analytics::router())
        .merge(console::router())
        .merge(scripts::router())
        .merge(live::router())
        .merge(monitor::router())
        .merge(metrics::router())
        .merge(exports::router())
        .merge(webhooks::router())
        .merge(users::router())
        .merge(audit::router())
        .merge(privacy::router())
        .merge(nodes::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            nodes::media_node_routes,
        ))
        .layer(axum::middleware::map_response(headers::common))
        // `layer` wraps every route and the fallback after routing: the matched route's
        // template is known there (the fallback has none: "unmatched").
        .layer(axum::middleware::from_fn_with_state(
            http_metrics.clone(),
            http_metrics::count_requests,
        ))
        .layer(axum::Extension(http_metrics))
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
    server::run(listener, router(app), &limits, None, shutdown).await
}

/// As [`serve`], over TLS with the certificate `tls` holds (reloadable).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: AppState,
    tls: tls::TlsHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.limits.config.clone();
    server::run(listener, router(app), &limits, Some(tls), shutdown).await
}
