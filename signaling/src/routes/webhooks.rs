//! Webhook routes: endpoints (create, list, read, delete), each endpoint's delivery log with
//! every attempt, and redelivery by hand. The secret is shown once, in the answer that
//! created the endpoint. An endpoint of a campaign is its owners' (and superusers'); one of
//! every campaign only superusers'. The list shows the endpoints the caller may manage.

use super::auth::Caller;
use super::extract::{body_rejection, path_or_not_found};
use super::state::AppState;
use crate::access::{Action, Resource};
use crate::error::ApiError;
use crate::service::webhooks::{MAX_DELIVERIES, NewEndpoint};
use crate::store::webhooks::{AttemptRow, DeliveryRow, EndpointRow};
use crate::timestamps::rfc3339;
use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", post(create).get(list))
        .route("/v1/webhooks/{id}", get(read).delete(delete))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(redeliver),
        )
}

/// Owners of the endpoint's campaign, or superusers for one of every campaign.
fn may_manage(caller: &Caller, campaign: Option<&str>) -> Result<(), ApiError> {
    match campaign {
        Some(c) => caller.may(Action::ManageCampaign, Resource::Campaign(c)),
        None => caller.may(Action::Superuser, Resource::Deployment),
    }
}

/// The endpoint `id`, if the caller may manage it.
async fn managed_endpoint(
    caller: &Caller,
    app: &AppState,
    id: &str,
) -> Result<EndpointRow, ApiError> {
    let e = app.service.endpoint(id).await?;
    may_manage(caller, e.campaign_id.as_deref())?;
    Ok(e)
}

fn endpoint_view(e: &EndpointRow) -> Value {
    let events: Value = serde_json::from_str(&e.events).unwrap_or(Value::Null);
    json!({
        "id": e.id,
        "url": e.url,
        "events": events,
        "campaign_id": e.campaign_id,
        "created_at": rfc3339(e.created_at),
    })
}

fn delivery_view(d: &DeliveryRow, attempts: &[AttemptRow]) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "type": d.event_type,
        "session_id": d.session_id,
        "status": d.status,
        "attempt_count": d.attempts,
        "next_attempt_at": d.next_attempt_at.map(rfc3339),
        "created_at": rfc3339(d.created_at),
        "attempts": attempts.iter().map(|a| json!({
            "at": rfc3339(a.at),
            "status_code": a.status_code,
            "response_ms": a.response_ms,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    events: Vec<String>,
    campaign_id: Option<String>,
}

async fn create(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(body_rejection)?;
    let req: CreateEndpoint = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    may_manage(&caller, req.campaign_id.as_deref())?;
    let campaign = req.campaign_id.clone();
    let result = app
        .service
        .create_endpoint(NewEndpoint {
            url: req.url,
            events: req.events,
            campaign_id: req.campaign_id,
        })
        .await;
    let resource = result.as_ref().map_or(String::new(), |e| e.id.clone());
    let e = caller
        .audited(
            &app,
            "webhook.create",
            &resource,
            campaign.as_deref(),
            result,
        )
        .await?;
    let mut view = endpoint_view(&e);
    if let Value::Object(m) = &mut view {
        m.insert("secret".into(), json!(e.secret));
    }
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn list(caller: Caller, State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let rows = app.service.endpoints().await?;
    let views: Vec<Value> = rows
        .iter()
        .filter(|e| may_manage(&caller, e.campaign_id.as_deref()).is_ok())
        .map(endpoint_view)
        .collect();
    Ok(axum::Json(json!({ "webhooks": views })))
}

async fn read(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "webhook_not_found")?;
    Ok(axum::Json(endpoint_view(
        &managed_endpoint(&caller, &app, &id).await?,
    )))
}

async fn delete(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_or_not_found(id, "webhook_not_found")?;
    let e = managed_endpoint(&caller, &app, &id).await?;
    let result = app.service.delete_endpoint(&id).await;
    caller
        .audited(
            &app,
            "webhook.delete",
            &id,
            e.campaign_id.as_deref(),
            result,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    limit: Option<i64>,
}

async fn deliveries(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "webhook_not_found")?;
    managed_endpoint(&caller, &app, &id).await?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_DELIVERIES).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..={MAX_DELIVERIES}, got {limit}"),
        ));
    }
    let rows = app.service.deliveries(&id, limit).await?;
    let views: Vec<Value> = rows.iter().map(|(d, a)| delivery_view(d, a)).collect();
    Ok(axum::Json(json!({ "deliveries": views })))
}

async fn redeliver(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, delivery) = path_or_not_found(path, "delivery_not_found")?;
    managed_endpoint(&caller, &app, &id).await.map_err(|e| {
        if e.code == "webhook_not_found" {
            ApiError::not_found("delivery_not_found", "no such delivery")
        } else {
            e
        }
    })?;
    let d = app.service.redeliver(&id, &delivery).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery_view(&d, &[]))))
}
