//! Campaign routes of the researcher console: campaigns (create: superusers; list: those
//! the caller has a role on; read: `view`; edit: `edit`), a campaign's scripts (`view`), its
//! invites with their state (`invite`), and invites made in bulk (`invite`): `{"script_id","count"}` in, JSON of links
//! out; or a CSV of metadata rows in (`Content-Type: text/csv`, `?script_id=`; the header
//! row names the metadata keys), the same CSV with `token` and `url` columns added out.

use super::auth::{Admin, Caller};
use super::extract::{body_rejection, path_or_not_found};
use super::participant::require_content_type;
use super::scripts::script_view;
use super::state::AppState;
use crate::access::Permission;
use crate::error::ApiError;
use crate::pii::CustomPattern;
use crate::service::catalog::MAX_INVITES;
use crate::service::privacy::{Privacy, PrivacyPatch};
use crate::store::{CampaignRow, InviteRow, InviteStateRow};
use crate::timestamps::rfc3339;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", get(list).post(create))
        .route("/v1/campaigns/{id}", get(read).patch(edit))
        .route("/v1/campaigns/{id}/scripts", get(scripts))
        .route(
            "/v1/campaigns/{id}/invites",
            get(invites).post(bulk_invites),
        )
}

/// Longest campaign name / description in characters.
const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 2000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignBody {
    name: Option<String>,
    description: Option<String>,
    // Privacy settings (see `service::privacy`), checked there.
    pii_action: Option<String>,
    pii_delay_days: Option<i64>,
    pii_keep_originals: Option<bool>,
    pii_patterns: Option<Value>,
    audio_retention_days: Option<i64>,
    deletion_requests: Option<String>,
}

impl CampaignBody {
    /// The privacy fields of the body (absent: unchanged).
    fn privacy_patch(&mut self) -> Result<Option<PrivacyPatch>, ApiError> {
        let patterns = match self.pii_patterns.take() {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<Vec<CustomPattern>>(v).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_pii_pattern",
                        format!("pii_patterns must be a list of {{\"name\",\"regex\"}}: {e}"),
                    )
                })?,
            ),
        };
        let patch = PrivacyPatch {
            pii_action: self.pii_action.take(),
            pii_delay_days: self.pii_delay_days.take(),
            pii_keep_originals: self.pii_keep_originals.take(),
            pii_patterns: patterns,
            audio_retention_days: self.audio_retention_days.take(),
            deletion_requests: self.deletion_requests.take(),
        };
        let any = patch.pii_action.is_some()
            || patch.pii_delay_days.is_some()
            || patch.pii_keep_originals.is_some()
            || patch.pii_patterns.is_some()
            || patch.audio_retention_days.is_some()
            || patch.deletion_requests.is_some();
        Ok(any.then_some(patch))
    }
}

fn campaign_view(c: &CampaignRow, p: &Privacy) -> Value {
    json!({"id": c.id, "name": c.name, "description": c.description,
           "created_at": rfc3339(c.created_at),
           "pii_action": p.pii.action.as_str(),
           "pii_delay_days": p.pii.delay_days,
           "pii_keep_originals": p.pii.keep_originals,
           "pii_patterns": p.pii.patterns,
           "audio_retention_days": p.audio_retention_days,
           "deletion_requests": if p.auto_delete_requests { "automatic" } else { "manual" }})
}

/// A campaign's view with its privacy settings.
async fn full_view(app: &AppState, c: &CampaignRow) -> Result<Value, ApiError> {
    Ok(campaign_view(
        c,
        &app.service.campaign_privacy(&c.id).await?,
    ))
}

/// A JSON body of type `T`, or the API's error for it.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    require_content_type(headers, "application/json")?;
    let body = body.map_err(body_rejection)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}

/// A checked name and description: name 1-200 characters, description up to 2000.
fn checked(name: &str, description: &str) -> Result<(), ApiError> {
    let invalid = |m: &str| ApiError::bad_request("invalid_body", m);
    let n = name.trim().chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(invalid("name must be 1-200 characters"));
    }
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(invalid("description must be at most 2000 characters"));
    }
    Ok(())
}

async fn list(caller: Caller, State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let p = &caller.principal;
    let mut campaigns: Vec<Value> = Vec::new();
    for c in app.service.campaigns().await? {
        if p.superuser || p.grants.contains_key(&c.id) {
            campaigns.push(full_view(&app, &c).await?);
        }
    }
    Ok(axum::Json(json!({"campaigns": campaigns})))
}

async fn create(
    _: Admin,
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut req: CampaignBody = json_body(&headers, body)?;
    let privacy = match req.privacy_patch()? {
        Some(patch) => Some(Privacy::default().patched(patch)?),
        None => None,
    };
    let name = req.name.unwrap_or_default();
    let description = req.description.unwrap_or_default();
    checked(&name, &description)?;
    let c = app
        .service
        .create_campaign(name.trim().to_string(), description)
        .await?;
    if let Some(privacy) = &privacy {
        app.service.set_campaign_privacy(&c.id, privacy).await?;
    }
    let location = format!("/v1/campaigns/{}", c.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(full_view(&app, &c).await?),
    )
        .into_response())
}

async fn read(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "campaign_not_found")?;
    caller.may_in(Permission::View, &id)?;
    let c = app.service.campaign(&id).await?;
    Ok(axum::Json(full_view(&app, &c).await?))
}

async fn edit(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "campaign_not_found")?;
    caller.may_in(Permission::Edit, &id)?;
    let mut req: CampaignBody = json_body(&headers, body)?;
    let old = app.service.campaign(&id).await?;
    let privacy = match req.privacy_patch()? {
        Some(patch) => Some(app.service.campaign_privacy(&id).await?.patched(patch)?),
        None => None,
    };
    let name = req.name.unwrap_or(old.name);
    let description = req.description.unwrap_or(old.description);
    checked(&name, &description)?;
    let c = app
        .service
        .update_campaign(&id, name.trim(), &description)
        .await?;
    if let Some(privacy) = &privacy {
        app.service.set_campaign_privacy(&id, privacy).await?;
    }
    Ok(axum::Json(full_view(&app, &c).await?))
}

async fn scripts(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "campaign_not_found")?;
    caller.may_in(Permission::View, &id)?;
    let scripts = app
        .service
        .scripts(Some(&id))
        .await?
        .iter()
        .map(script_view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(json!({"scripts": scripts})))
}

fn invite_link(app: &AppState, token: &str) -> String {
    format!("{}/i/{}", app.public_url, token)
}

fn invite_view(app: &AppState, i: &InviteStateRow) -> Value {
    let metadata: Value = serde_json::from_str(&i.invite.metadata).unwrap_or(Value::Null);
    json!({
        "token": i.invite.token,
        "url": invite_link(app, &i.invite.token),
        "script_id": i.invite.script_id,
        "metadata": metadata,
        "created_at": rfc3339(i.invite.created_at),
        // The newest session's state; "unused" while the link was never opened.
        "state": i.state.as_deref().unwrap_or("unused"),
        "session_id": i.session_id,
    })
}

async fn invites(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "campaign_not_found")?;
    caller.may_in(Permission::Invite, &id)?;
    let rows = app.service.invites(&id).await?;
    let invites: Vec<Value> = rows.iter().map(|i| invite_view(&app, i)).collect();
    Ok(axum::Json(json!({"invites": invites})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkJson {
    script_id: String,
    count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkQuery {
    script_id: Option<String>,
}

/// `POST /v1/campaigns/{id}/invites`: N invites (JSON) or one per CSV row (CSV).
async fn bulk_invites(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<BulkQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = path_or_not_found(id, "campaign_not_found")?;
    caller.may_in(Permission::Invite, &id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let too_many = || {
        ApiError::bad_request(
            "invalid_body",
            format!("between 1 and {MAX_INVITES} invites at a time"),
        )
    };
    if require_content_type(&headers, "text/csv").is_ok() {
        let script_id = q.script_id.ok_or_else(|| {
            ApiError::bad_request("invalid_query", "script_id is required with a CSV body")
        })?;
        let body = body.map_err(body_rejection)?;
        let (columns, rows) = parse_metadata_csv(&body)?;
        if rows.is_empty() || rows.len() > MAX_INVITES {
            return Err(too_many());
        }
        let made = app.service.create_invites(id, script_id, &rows).await?;
        let csv = links_csv(&app, &columns, &rows, &made)?;
        return Ok((
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv,
        )
            .into_response());
    }
    let req: BulkJson = json_body(&headers, body)?;
    if req.count == 0 || req.count > MAX_INVITES {
        return Err(too_many());
    }
    let metadata = vec![BTreeMap::new(); req.count];
    let made = app
        .service
        .create_invites(id, req.script_id, &metadata)
        .await?;
    let links: Vec<Value> = made
        .iter()
        .map(|i| json!({"token": i.token, "url": invite_link(&app, &i.token)}))
        .collect();
    Ok((StatusCode::CREATED, axum::Json(json!({"invites": links}))).into_response())
}

/// The header row and one metadata map per data row of a CSV body. Empty cells leave the
/// key out; a row with a different number of cells than the header is refused, naming it.
#[allow(clippy::type_complexity)]
fn parse_metadata_csv(
    body: &[u8],
) -> Result<(Vec<String>, Vec<BTreeMap<String, String>>), ApiError> {
    let invalid = |m: String| ApiError::bad_request("invalid_csv", m);
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(body);
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| invalid(format!("header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if columns.iter().any(|c| c.is_empty() || c.len() > 100) {
        return Err(invalid("every header cell must be 1-100 characters".into()));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| invalid(format!("row {}: {e}", i + 2)))?;
        let row: BTreeMap<String, String> = columns
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        rows.push(row);
        if rows.len() > MAX_INVITES {
            break;
        }
    }
    Ok((columns, rows))
}

/// The CSV of links: the metadata columns, then `token` and `url`, a row per invite.
fn links_csv(
    app: &AppState,
    columns: &[String],
    rows: &[BTreeMap<String, String>],
    made: &[InviteRow],
) -> Result<Vec<u8>, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ApiError::internal("writing the CSV of links", e);
    let mut head: Vec<&str> = columns.iter().map(String::as_str).collect();
    head.extend(["token", "url"]);
    out.write_record(&head).map_err(fail)?;
    for (row, invite) in rows.iter().zip(made) {
        let mut cells: Vec<String> = columns
            .iter()
            .map(|c| row.get(c).cloned().unwrap_or_default())
            .collect();
        cells.push(invite.token.clone());
        cells.push(invite_link(app, &invite.token));
        out.write_record(&cells).map_err(fail)?;
    }
    out.into_inner()
        .map_err(|e| ApiError::internal("writing the CSV of links", e))
}
