//! The HTTP surface: one router per resource, merged here. Every route states who may call it.

mod admin;
mod live;
mod metrics;
mod participant;
pub mod scripts;

use crate::sessions::Sessions;
use crate::store::Store;
use axum::Router;
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;

/// An ICE server handed to browsers (F11). Empty list unless the operator configures one.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct IceServerView {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Shared state of every route.
pub struct App {
    pub store: Store,
    pub sessions: Arc<Sessions>,
    pub admin_token: String,
    /// Base URL for links we hand out, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    pub ice_servers: Vec<IceServerView>,
    /// Store the participant's IP address (off unless enabled in config).
    pub record_ip: bool,
    pub default_campaign_id: String,
    pub default_script_id: String,
}

pub type AppState = Arc<App>;

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(participant::router())
        .merge(admin::router())
        .merge(scripts::router())
        .merge(live::router())
        .merge(metrics::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
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

/// A request body that could not be read (over the size limit, or the client went away).
pub(crate) fn body_rejection(
    rej: axum::extract::rejection::BytesRejection,
) -> crate::error::ApiError {
    crate::error::ApiError::new(rej.status(), "invalid_body", rej.body_text())
}

/// Path parameters that cannot even be decoded (e.g. not UTF-8) name nothing that exists:
/// they read as "not found" with the resource's own code, never as a framework error.
pub(crate) fn path_or_not_found<T>(
    path: Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>,
    code: &'static str,
) -> Result<T, crate::error::ApiError> {
    path.map(|axum::extract::Path(v)| v)
        .map_err(|_| crate::error::ApiError::not_found(code, "no such resource"))
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Liveness: anyone may call it.
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}
