//! The media nodes (F13), superusers only:
//!
//! - `GET /v1/nodes`: this node's id and drain state, and every node it has heard (itself
//!   included) with its last announcement, whether it is healthy and how long ago it was heard.
//! - `POST /v1/node/drain`, `DELETE /v1/node/drain`: this node stops / starts taking new
//!   sessions (its live ones go on). Sent to the node itself; audited.
//!
//! A media-only node (`serve --role media`) answers only what the other nodes and operators
//! need: these routes, health, metrics and participants' WHIP requests (handed to it); every
//! other route is `404 route_not_found` there.

use super::auth::Caller;
use super::state::AppState;
use crate::access::{Action, Resource};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/node/drain", post(drain).delete(undrain))
}

fn node_state(app: &AppState) -> Value {
    json!({"node": app.cluster.node_id(), "draining": app.cluster.draining()})
}

async fn list_nodes(caller: Caller, State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.may(Action::Superuser, Resource::Deployment)?;
    let mut body = node_state(&app);
    body["nodes"] = json!(app.cluster.view());
    Ok(Json(body))
}

async fn drain(caller: Caller, State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    set_draining(caller, app, true).await
}

async fn undrain(caller: Caller, State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    set_draining(caller, app, false).await
}

async fn set_draining(caller: Caller, app: AppState, on: bool) -> Result<Json<Value>, ApiError> {
    caller.may(Action::Superuser, Resource::Deployment)?;
    app.cluster.set_draining(on);
    let action = if on { "node.drain" } else { "node.undrain" };
    let node = app.cluster.node_id().to_string();
    caller.audited(&app, action, &node, None, Ok(())).await?;
    Ok(Json(node_state(&app)))
}

/// Whether a media-only node serves `path`.
pub fn media_node_serves(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/v1/nodes" | "/v1/node/drain"
    ) || path.strip_prefix("/v1/invites/").is_some_and(|rest| {
        let mut parts = rest.split('/');
        parts.next().is_some_and(|t| !t.is_empty()) && parts.next() == Some("whip")
    })
}

/// On a media-only node, refuses every route but those [`media_node_serves`].
pub async fn media_node_routes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if app.cluster.is_media_only() && !media_node_serves(req.uri().path()) {
        return ApiError::not_found("route_not_found", "this media node serves no such route")
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::media_node_serves;

    #[test]
    fn a_media_node_serves_the_cluster_routes_and_handed_off_whip_only() {
        for yes in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/nodes",
            "/v1/node/drain",
            "/v1/invites/inv_abc/whip",
            "/v1/invites/inv_abc/whip/peer_1",
        ] {
            assert!(media_node_serves(yes), "{yes}");
        }
        for no in [
            "/console",
            "/v1/sessions",
            "/v1/invites/inv_abc",
            "/v1/invites/inv_abc/consent",
            "/v1/invites//whip",
            "/i/inv_abc",
            "/v1/nodes/x",
            "/monitor",
        ] {
            assert!(!media_node_serves(no), "{no}");
        }
    }
}
