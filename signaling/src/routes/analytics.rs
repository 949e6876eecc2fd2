//! Analytics routes (admin): one session's analytics (`GET /v1/sessions/{id}/analytics`)
//! and the aggregate of a campaign and date range (`GET /v1/analytics?campaign=&from=&to=`).
//! The formulas are in `crate::analytics` and README.md ("Analytics"). A session's analytics
//! are part of viewing it (`view`); the aggregate counts the campaigns where the caller may
//! view or export (viewers and analysts alike).

use super::auth::Caller;
use super::extract::{path_or_not_found, query_time};
use super::state::AppState;
use crate::access::Permission;
use crate::error::ApiError;
use crate::store::AggregateFilter;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/analytics", get(aggregate))
        .route("/v1/sessions/{id}/analytics", get(session))
}

async fn session(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    caller.session(&app, &id, Permission::View).await?;
    Ok(axum::Json(app.service.session_analytics(&id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregateQuery {
    campaign: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn aggregate(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<AggregateQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let filter = AggregateFilter {
        campaign: q.campaign.filter(|c| !c.is_empty()),
        campaigns: caller
            .principal
            .campaigns_with_any(&[Permission::View, Permission::Export]),
        from: query_time(q.from, "from", false)?,
        to: query_time(q.to, "to", true)?,
    };
    Ok(axum::Json(app.service.aggregate(&filter).await?))
}
