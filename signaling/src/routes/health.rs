//! Probes for process supervisors and load balancers, public (they reveal no data):
//! `GET /healthz` answers while the process serves HTTP (liveness); `GET /readyz` answers 200
//! only when a new session could be taken: the session store answers a query, the
//! recordings' store has room and the node is not draining (readiness), else `503 not_ready`
//! saying which check failed.

use super::state::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

/// Below this much free space for recordings the server is not ready: a 30-minute interview
/// records about 0.5 GB at the `ultra` preset (three WAV tracks and the MP3s).
pub const MIN_FREE_BYTES: u64 = 1 << 30;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let r = app.service.readiness(MIN_FREE_BYTES).await;
    let draining = app.cluster.draining();
    if r.is_ready() && !draining {
        let free = r.disk.ok().flatten();
        return Ok(Json(json!({
            "status": "ready",
            "checks": {"store": "ok", "disk": "ok"},
            "free_bytes": free,
        })));
    }
    let mut failed = Vec::new();
    if draining {
        failed.push("the node is draining (POST /v1/node/drain)".to_owned());
    }
    if let Err(e) = &r.store {
        tracing::warn!(error = %e, "readiness: the session store does not answer");
        failed.push("the session store does not answer".to_owned());
    }
    if let Err(e) = &r.disk {
        tracing::warn!(error = %e, "readiness: recordings' storage");
        failed.push(format!("recordings' storage: {e}"));
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!("not ready: {}", failed.join("; ")),
    ))
}
