//! The audit log's routes: `GET /v1/audit` (JSON pages, newest first) and `GET /v1/audit.csv`
//! (the same rows as CSV), for superusers (every row) and campaign owners (their campaigns'
//! rows only). Filters: `actor`, `action`, `resource`, `campaign`, `from`, `to`; pages:
//! `limit` (1-1000, default 100) and `cursor` (the previous page's `next_cursor`).

use super::auth::Caller;
use super::extract::query_time;
use super::state::AppState;
use crate::access::Role;
use crate::error::ApiError;
use crate::store::access::{AuditFilter, AuditRow};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(list))
        .route("/v1/audit.csv", get(csv))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    campaign: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The filter of a query, narrowed to the rows the caller may read; `403 forbidden` for a
/// caller who owns no campaign and is no superuser.
fn filter(
    caller: &Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<AuditFilter, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let invalid = |m: String| ApiError::bad_request("invalid_query", m);
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid(format!("limit must be 1..=1000, got {limit}")));
    }
    let before = match q.cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| invalid(format!("bad cursor {c:?}")))?,
        ),
    };
    let p = &caller.principal;
    let owned: Option<Vec<String>> = (!p.superuser).then(|| {
        p.grants
            .iter()
            .filter(|(_, g)| {
                g.role == Role::Owner && g.permissions.len() == crate::access::Permission::ALL.len()
            })
            .map(|(c, _)| c.clone())
            .collect()
    });
    if owned.as_ref().is_some_and(Vec::is_empty) {
        return Err(super::auth::forbidden(
            "a campaign's owner role or a superuser",
        ));
    }
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let campaigns = match (nonempty(q.campaign), owned) {
        (Some(c), None) => Some(vec![c]),
        (Some(c), Some(owned)) => Some(owned.into_iter().filter(|o| *o == c).collect()),
        (None, owned) => owned,
    };
    Ok(AuditFilter {
        campaigns,
        actor: nonempty(q.actor),
        action: nonempty(q.action),
        resource: nonempty(q.resource),
        from: query_time(q.from, "from", false)?,
        to: query_time(q.to, "to", true)?,
        before,
        limit,
    })
}

fn row_view(r: &AuditRow) -> serde_json::Value {
    json!({"seq": r.seq, "at": crate::timestamps::rfc3339(r.at), "actor": r.actor,
           "action": r.action, "resource": r.resource, "campaign_id": r.campaign_id,
           "client": r.client, "outcome": r.outcome})
}

async fn list(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let f = filter(&caller, query)?;
    let rows = app.access.audit.list(&f).await?;
    let next = (rows.len() as i64 == f.limit)
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    let entries: Vec<_> = rows.iter().map(row_view).collect();
    Ok(axum::Json(json!({"entries": entries, "next_cursor": next})))
}

async fn csv(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let f = filter(&caller, query)?;
    let rows = app.access.audit.list(&f).await?;
    let body = crate::audit::to_csv(&rows).map_err(|e| ApiError::internal("audit CSV", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}
