//! Request parts that could not be read, turned into the API's errors (never a framework
//! error page).

use crate::error::ApiError;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};

/// A request body that could not be read (see [`crate::error::body_rejection`]).
pub(super) fn body_rejection(rej: BytesRejection) -> ApiError {
    crate::error::body_rejection(rej)
}

/// Path parameters that cannot even be decoded (e.g. not UTF-8) name nothing that exists:
/// they read as "not found" with the resource's own code, never as a framework error.
pub(super) fn path_or_not_found<T>(
    path: Result<Path<T>, PathRejection>,
    code: &'static str,
) -> Result<T, ApiError> {
    path.map(|Path(v)| v)
        .map_err(|_| ApiError::not_found(code, "no such resource"))
}

/// An optional time query parameter `name` (RFC 3339 or `YYYY-MM-DD`; with `end_of_day` a
/// date includes its whole day) as unix ms; empty is absent; anything else `invalid_query`.
pub(super) fn query_time(
    value: Option<String>,
    name: &str,
    end_of_day: bool,
) -> Result<Option<i64>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => crate::timestamps::parse_query_time(&v, end_of_day)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{name} must be RFC 3339 or YYYY-MM-DD, got {v:?}"),
                )
            }),
    }
}
