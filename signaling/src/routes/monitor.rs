//! Live monitoring routes (F7) for QA staff: the `listen` permission on the session's
//! campaign (listen-ins audited), except the two pages, which hold no data (their script
//! asks for a token and sends it as a bearer token):
//!
//! - `POST /v1/sessions/{id}/whep`: silent listen-in in the shape of WHEP: an SDP offer in,
//!   `201 Created` with a receive-only answer and the listen-in's `Location`; `PATCH` on it
//!   trickles candidates, `DELETE` leaves. Each listen-in holds a place among the session's
//!   and the server's monitors (`[limits] max_monitors_per_session`, `max_monitors`).
//! - `GET /v1/monitor/sessions`: the live sessions as the dashboard shows them.
//! - `GET /monitor` and `GET /monitor/sessions/{id}`: the dashboard and the session monitor
//!   page (static HTML under the participant page's Content-Security-Policy).

use super::auth::Caller;
use super::extract::{body_rejection, path_or_not_found};
use super::headers::{dashboard_page, monitor_page};
use super::participant::{body_text, parse_sdpfrag, require_content_type};
use super::state::AppState;
use super::views::overview_view;
use crate::access::Permission;
use crate::error::ApiError;
use crate::lifecycle::State as LifecycleState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/monitor", get(dashboard))
        .route("/monitor/sessions/{id}", get(session_page))
        .route("/v1/monitor/sessions", get(live_sessions))
        .route("/v1/sessions/{id}/whep", post(whep_offer))
        .route(
            "/v1/sessions/{id}/whep/{monitor}",
            axum::routing::patch(whep_trickle).delete(whep_leave),
        )
}

/// The Live Sessions dashboard: anyone may load the page; it shows nothing without the token.
async fn dashboard() -> Response {
    dashboard_page()
}

/// The session monitor page: anyone may load it; it shows nothing without the token.
async fn session_page() -> Response {
    monitor_page()
}

/// `GET /v1/monitor/sessions` query: both optional; unknown parameters are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    campaign: Option<String>,
    state: Option<String>,
}

async fn live_sessions(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<LifecycleState>() {
            Ok(st @ (LifecycleState::InProgress | LifecycleState::Paused)) => Some(st),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("state must be in_progress or paused, got {s:?}"),
                ));
            }
        },
    };
    let campaign = q.campaign.filter(|c| !c.is_empty());
    let sessions = app.service.live_overview(campaign, state).await?;
    let visible = caller.campaigns_with(Permission::Listen);
    let sessions: Vec<_> = sessions
        .iter()
        .filter(|s| {
            visible
                .as_ref()
                .is_none_or(|v| v.contains(&s.session.campaign_id))
        })
        .map(overview_view)
        .collect();
    Ok(axum::Json(serde_json::json!({"sessions": sessions})))
}

/// WHEP offer: `201 Created`, the receive-only answer and the listen-in's `Location`.
async fn whep_offer(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Listen, "listen.whep")
        .await?;
    require_content_type(&headers, "application/sdp")?;
    let body = body.map_err(body_rejection)?;
    let offer = body_text(&body)?;
    let slot = app.limits.monitors.acquire(&id)?;
    let result = app.service.start_listen(&id, offer, Box::new(slot)).await;
    let started = caller
        .audited(&app, "listen.whep", &id, Some(&campaign), result)
        .await?;
    let location = format!("/v1/sessions/{id}/whep/{}", started.monitor_id);
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        started.answer_sdp,
    )
        .into_response())
}

/// WHEP PATCH: trickled candidates of the listen-in -> 204.
async fn whep_trickle(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let (id, monitor) = path_or_not_found(path, "session_not_found")?;
    caller.session(&app, &id, Permission::Listen).await?;
    require_content_type(&headers, "application/trickle-ice-sdpfrag")?;
    let body = body.map_err(body_rejection)?;
    let fragment = parse_sdpfrag(body_text(&body)?)?;
    app.service.listen_trickle(&id, &monitor, fragment).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// WHEP DELETE: the monitor stops listening -> 200.
async fn whep_leave(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (id, monitor) = path_or_not_found(path, "session_not_found")?;
    caller.session(&app, &id, Permission::Listen).await?;
    app.service.stop_listen(&id, &monitor).await?;
    Ok(StatusCode::OK)
}
