//! The media nodes (F13), superusers only:
//!
//! - `GET /v1/nodes`: this node's id and drain state, and every node it has heard (itself
//!   included) with its last announcement, whether it is healthy and how long ago it was heard.
//! - `POST /v1/node/drain`, `DELETE /v1/node/drain`: this node stops / starts taking new
//!   sessions (its live ones go on). Sent to the node itself; audited.

use super::auth::Caller;
use super::state::AppState;
use crate::access::{Action, Resource};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::State;
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
