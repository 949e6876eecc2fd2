//! Session routes of the researchers: invites, sessions, transcripts, recordings, admin
//! actions. Every handler takes the [`Caller`] extractor (a missing or wrong credential gets
//! 401) and checks its permission on the session's campaign (403 `forbidden`); lists show
//! only the campaigns the caller may view. Admin actions and downloads are audited.

use super::auth::Caller;
use super::extract::{body_rejection, path_or_not_found, query_time};
use super::state::AppState;
use super::views::{detail_view, list_view, public_view, transcript_view};
use crate::access::{Action, Permission, Resource};
use crate::audit::Outcome;
use crate::byte_range::ByteRange;
use crate::error::ApiError;
use crate::ids;
use crate::lifecycle::State as LifecycleState;
use crate::store::{SessionCursor, SessionFilter, SessionRow, SessionSort, SortKey};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use earshot_vocab::{Format, Track};
use serde::Deserialize;
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/invites", post(create_invite))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{id}", get(get_session).delete(delete_session))
        .route("/v1/sessions/{id}/end", post(end_session))
        .route("/v1/sessions/{id}/restart", post(restart_session))
        .route("/v1/sessions/{id}/mark/{outcome}", post(mark_session))
        .route("/v1/sessions/{id}/transcript", get(get_transcript))
        .route("/v1/sessions/{id}/recordings/{file}", get(get_recording))
        .route("/v1/sessions/{id}/peaks/{track}", get(get_peaks))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateInvite {
    campaign_id: Option<String>,
    script_id: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

async fn create_invite(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(body_rejection)?;
    // An empty body means "the defaults"; a present body must be a valid CreateInvite.
    let req: CreateInvite = if body.iter().all(u8::is_ascii_whitespace) {
        CreateInvite::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?
    };
    let campaign_id = req
        .campaign_id
        .unwrap_or_else(|| app.default_campaign_id.clone());
    let script_id = req
        .script_id
        .unwrap_or_else(|| app.default_script_id.clone());
    caller.may_in(Permission::Invite, &campaign_id)?;
    let invite = app
        .service
        .create_invite(campaign_id, script_id, &req.metadata)
        .await?;
    let url = format!("{}/i/{}", app.public_url, invite.token);
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"token": invite.token, "url": url})),
    ))
}

/// `GET /v1/sessions` query. Checked here rather than clamped or ignored by the store: a
/// state that does not exist, a limit out of range or an unknown parameter is a mistake the
/// caller should hear about, not an empty or silently different list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    campaign: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
    /// Created at or after: RFC 3339 or `YYYY-MM-DD`.
    from: Option<String>,
    /// Created before (RFC 3339) or on (`YYYY-MM-DD`, inclusive).
    to: Option<String>,
    /// Words that must all occur in one turn of the transcript.
    q: Option<String>,
    /// A sort key, `-` first for descending: `created` (default `-created`), `started`,
    /// `duration`, `turns`, `words`, `quality`.
    sort: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Most sessions one list returns.
const MAX_LIST_LIMIT: i64 = 1000;

impl ListQuery {
    fn into_filter(self) -> Result<SessionFilter, ApiError> {
        let invalid = |m: String| ApiError::bad_request("invalid_query", m);
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        // An empty state is a mistake too (unlike the other parameters, where empty is absent).
        let state = match self.state {
            None => None,
            Some(state) => Some(state.parse::<LifecycleState>().map_err(|_| {
                let known: Vec<&str> = LifecycleState::ALL.iter().map(|s| s.as_str()).collect();
                invalid(format!(
                    "state must be one of {}, got {state:?}",
                    known.join(", ")
                ))
            })?),
        };
        if let Some(limit) = self.limit
            && !(1..=MAX_LIST_LIMIT).contains(&limit)
        {
            return Err(invalid(format!(
                "limit must be 1..={MAX_LIST_LIMIT}, got {limit}"
            )));
        }
        let sort = match nonempty(self.sort) {
            None => SessionSort::default(),
            Some(s) => {
                let (name, ascending) = match s.strip_prefix('-') {
                    Some(name) => (name, false),
                    None => (s.as_str(), true),
                };
                let key = SortKey::ALL
                    .into_iter()
                    .find(|k| k.as_str() == name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = SortKey::ALL.iter().map(|k| k.as_str()).collect();
                        invalid(format!(
                            "sort must be one of {} (- first: descending), got {s:?}",
                            known.join(", ")
                        ))
                    })?;
                SessionSort { key, ascending }
            }
        };
        let after = match nonempty(self.cursor) {
            None => None,
            Some(c) => Some(
                parse_cursor(&c)
                    .ok_or_else(|| invalid("cursor is not one this API gave".into()))?,
            ),
        };
        let text: Vec<String> = self
            .q
            .unwrap_or_default()
            .split_whitespace()
            .take(10)
            .map(String::from)
            .collect();
        Ok(SessionFilter {
            campaign: nonempty(self.campaign),
            state,
            limit: self.limit,
            from: query_time(self.from, "from", false)?,
            to: query_time(self.to, "to", true)?,
            text,
            sort,
            after,
            campaigns: None,
        })
    }
}

/// A page's cursor: the last row's sort value and id, `<value>~<id>`.
fn cursor_of(sort: SessionSort, row: &SessionRow) -> String {
    format!("{}~{}", sort.key.value(row), row.id)
}

fn parse_cursor(c: &str) -> Option<SessionCursor> {
    let (value, id) = c.split_once('~')?;
    let value: f64 = value.parse().ok().filter(|v: &f64| v.is_finite())?;
    ids::is_valid_id("ses", id).then(|| SessionCursor {
        value,
        id: id.to_string(),
    })
}

async fn list_sessions(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut filter = query.into_filter()?;
    filter.campaigns = caller.campaigns_with(Permission::View);
    let limit = filter.limit.unwrap_or(100);
    let rows = app.service.list_sessions(&filter).await?;
    let now = app.service.now();
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| cursor_of(filter.sort, r)))
        .flatten();
    let sessions: Vec<_> = rows.iter().map(|r| list_view(r, now)).collect();
    Ok(axum::Json(
        serde_json::json!({"sessions": sessions, "next_cursor": next}),
    ))
}

async fn get_session(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    caller.session(&app, &id, Permission::View).await?;
    let detail = app.service.session_detail(&id).await?;
    Ok(axum::Json(detail_view(&detail)))
}

async fn end_session(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Admin, "session.end")
        .await?;
    let result = app.service.admin_end(&id).await;
    let session = caller
        .audited(&app, "session.end", &id, Some(&campaign), result)
        .await?;
    Ok(axum::Json(public_view(&session)))
}

/// `POST /v1/sessions/{id}/mark/{completed|abandoned}`: ends a session stuck in progress.
async fn mark_session(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, outcome) = path_or_not_found(path, "session_not_found")?;
    if !matches!(outcome.as_str(), "completed" | "abandoned") {
        return Err(ApiError::not_found(
            "route_not_found",
            "mark a session `completed` or `abandoned`",
        ));
    }
    let action = format!("session.mark.{outcome}");
    let campaign = caller
        .audited_session(&app, &id, Permission::Admin, &action)
        .await?;
    let result = if outcome == "completed" {
        app.service.mark_complete(&id).await
    } else {
        app.service.mark_abandoned(&id).await
    };
    let session = caller
        .audited(&app, &action, &id, Some(&campaign), result)
        .await?;
    Ok(axum::Json(public_view(&session)))
}

async fn restart_session(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Admin, "session.restart")
        .await?;
    let result = app.service.admin_restart(&id).await;
    let r = caller
        .audited(&app, "session.restart", &id, Some(&campaign), result)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "restarted": public_view(&r.restarted),
            "session": public_view(&r.session),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TranscriptQuery {
    /// The originals of masked or redacted turns, where the server's vault kept them.
    #[serde(default)]
    original: bool,
}

async fn get_transcript(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<TranscriptQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let session = caller.session(&app, &id, Permission::View).await?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let turns = if query.original {
        // The originals of masked lines are the campaign owners' only, and each read of
        // them is audited.
        let owner = caller.may(
            Action::ManageCampaign,
            Resource::Campaign(&session.campaign_id),
        );
        let outcome = if owner.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Denied
        };
        caller
            .audit(
                &app,
                "transcript.originals",
                &id,
                Some(&session.campaign_id),
                outcome,
            )
            .await;
        owner?;
        app.service.original_transcript(&id).await?
    } else {
        app.service.transcript(&id).await?
    };
    Ok(axum::Json(transcript_view(&id, &turns)))
}

async fn delete_session(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Admin, "session.delete")
        .await?;
    let result = app.service.delete(&id).await;
    caller
        .audited(&app, "session.delete", &id, Some(&campaign), result)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sessions/{id}/peaks/{track}`: the track's stored waveform peaks (JSON).
async fn get_peaks(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, track) = path_or_not_found(path, "peaks_not_found")?;
    let track: Track = track
        .parse()
        .map_err(|_| ApiError::not_found("peaks_not_found", "track is participant, ai or mix"))?;
    if !ids::is_valid_id("ses", &id) {
        return Err(ApiError::not_found("peaks_not_found", "no such session"));
    }
    caller
        .session(&app, &id, Permission::View)
        .await
        .map_err(|e| {
            if e.code == "session_not_found" {
                ApiError::not_found("peaks_not_found", "no such session")
            } else {
                e
            }
        })?;
    let peaks = app.service.peaks(&id, track).await?;
    let len = peaks.len;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(peaks.body),
    )
        .into_response())
}

async fn get_recording(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let (id, file) = path_or_not_found(path, "recording_not_found")?;
    let not_found = || ApiError::not_found("recording_not_found", "no such recording");
    let (track, format) = Track::parse_file_name(&file).ok_or_else(not_found)?;
    let content_type = match format {
        Format::Wav => "audio/wav",
        Format::Mp3 => "audio/mpeg",
    };
    if !ids::is_valid_id("ses", &id) {
        return Err(not_found());
    }
    let campaign = caller
        .audited_session(&app, &id, Permission::View, "recording.download")
        .await
        .map_err(|e| {
            // An unknown session has no recordings: the route's own code, as before roles.
            if e.code == "session_not_found" {
                not_found()
            } else {
                e
            }
        })?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse);
    let result = app.service.recording_range(&id, track, format, range).await;
    let resource = format!("{id}/{file}");
    let recording = caller
        .audited(
            &app,
            "recording.download",
            &resource,
            Some(&campaign),
            result,
        )
        .await?;
    let len = recording.len;
    if recording.unsatisfiable {
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response());
    }
    let (status, served, content_range) = match recording.range {
        Some((start, end)) => (
            StatusCode::PARTIAL_CONTENT,
            end - start + 1,
            Some(format!("bytes {start}-{end}/{len}")),
        ),
        None => (StatusCode::OK, len, None),
    };
    let body = Body::from_stream(recording.body);
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, served.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-{track}.{format}\""),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(v) = content_range.and_then(|v| header::HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}
