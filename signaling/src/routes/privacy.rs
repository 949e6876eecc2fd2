//! Privacy routes (issue 16). Superusers: the retention sweep's report (`GET /v1/retention`).
//! The `admin` permission on a request's campaign: participants' deletion requests (`GET
//! /v1/deletion-requests` lists those of such campaigns) and their fulfilment (`POST
//! /v1/deletion-requests/{id}/fulfil`, audited). Participant, by possession
//! of the invite token once the interview ended: a deletion token
//! (`POST /v1/invites/{token}/deletion-token`); by possession of that token: the deletion
//! page (`GET /delete/{token}`) and the request (`POST /v1/deletion-requests`, a JSON body
//! `{"token"}`: no cookie is involved and a cross-site form cannot send JSON, so there is
//! nothing for a forged request to ride on).

use super::auth::{Admin, Caller};
use super::extract::path_or_not_found;
use super::headers::deletion_page;
use super::state::AppState;
use crate::access::Permission;
use crate::audit::Outcome;
use crate::error::{ApiError, json_rejection};
use crate::store::privacy::DeletionRequestRow;
use crate::timestamps::rfc3339;
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/retention", get(retention))
        .route(
            "/v1/deletion-requests",
            get(list_requests).post(request_deletion),
        )
        .route("/v1/deletion-requests/{id}/fulfil", post(fulfil))
        .route("/v1/invites/{token}/deletion-token", post(deletion_token))
        .route("/delete/{token}", get(page))
}

fn ms(at: Option<i64>) -> Value {
    at.map_or(Value::Null, rfc3339)
}

async fn retention(_: Admin, State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let status = app.service.retention_status().await?;
    let last = status.last.map(|r| {
        json!({
            "at": rfc3339(r.at),
            "recordings_deleted": r.recordings_deleted,
            "transcripts_redacted": r.transcripts_redacted,
            "turns_redacted": r.turns_redacted,
            "failed": r.failed,
        })
    });
    Ok(axum::Json(json!({
        "last_sweep": last,
        "next_recordings_due": ms(status.next_recordings_due),
        "next_redaction_due": ms(status.next_redaction_due),
    })))
}

fn request_view(r: &DeletionRequestRow) -> Value {
    json!({
        "id": r.id,
        "session_id": r.session_id,
        "campaign_id": r.campaign_id,
        "requested_at": rfc3339(r.requested_at),
        "state": if r.fulfilled_at.is_some() { "fulfilled" } else { "pending" },
        "fulfilled_at": ms(r.fulfilled_at),
        "fulfilled_by": r.fulfilled_by,
    })
}

async fn list_requests(
    caller: Caller,
    State(app): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let requests: Vec<Value> = app
        .service
        .deletion_requests()
        .await?
        .iter()
        .filter(|r| caller.may_in(Permission::Admin, &r.campaign_id).is_ok())
        .map(request_view)
        .collect();
    Ok(axum::Json(json!({"deletion_requests": requests})))
}

async fn fulfil(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    const ACTION: &str = "deletion.fulfil";
    let id = path_or_not_found(id, "deletion_request_not_found")?;
    let request = app.service.deletion_request(&id).await?;
    let campaign = Some(request.campaign_id.as_str());
    if let Err(e) = caller.may_in(Permission::Admin, &request.campaign_id) {
        caller
            .audit(&app, ACTION, &id, campaign, Outcome::Denied)
            .await;
        return Err(e);
    }
    let result = app
        .service
        .fulfil_deletion_request(&id, &caller.principal.id)
        .await;
    let done = caller.audited(&app, ACTION, &id, campaign, result).await?;
    Ok(axum::Json(request_view(&done)))
}

async fn deletion_token(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let token = path_or_not_found(token, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    let deletion = app.service.issue_deletion_token(&invite).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "token": deletion,
            "url": format!("{}/delete/{deletion}", app.public_url),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletionBody {
    token: String,
}

async fn request_deletion(
    State(app): State<AppState>,
    body: Result<axum::Json<DeletionBody>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let axum::Json(body) = body.map_err(json_rejection)?;
    let request = app.service.request_deletion(&body.token).await?;
    // What the participant learns: their request's id and whether it was carried out.
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "id": request.id,
            "state": if request.fulfilled_at.is_some() { "fulfilled" } else { "pending" },
        })),
    ))
}

async fn page(token: Result<Path<String>, PathRejection>) -> Response {
    // The page holds nothing; an unknown token is told when the request is sent.
    match token {
        Ok(_) => deletion_page(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
