//! The API's error type: a stable machine-readable code, an HTTP status and a human message,
//! rendered as `{"error":{"code","message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error returned by any route. `code` is stable and documented in README.md.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// Longest error message in characters. Messages quote what was wrong (an SDP line, a JSON
/// parser's complaint, a field), so without a bound a 1 MB bad body came back as a 1 MB error.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// `message` cut to [`MAX_MESSAGE_CHARS`], with an ellipsis when something was cut.
fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message,
        Some((cut, _)) => {
            let mut short = message;
            short.truncate(cut);
            short.push('…');
            short
        }
    }
}

impl ApiError {
    /// Every error is made here, so every message is bounded here (see [`MAX_MESSAGE_CHARS`]).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: bounded(message.into()),
        }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token (Authorization: Bearer <token>)",
        )
    }
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the server log"),
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::internal("storage failed", err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Turns axum's JSON extractor rejections into our error shape: a body that is not declared
/// JSON is `415 unsupported_media_type` (as on every other route), anything else
/// `invalid_json`.
pub fn json_rejection(rej: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection;
    let code = match rej {
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ => "invalid_json",
    };
    ApiError::new(rej.status(), code, rej.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_with_an_ellipsis() {
        let short = ApiError::bad_request("x", "short");
        assert_eq!(short.message, "short");
        let exact = "é".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(ApiError::bad_request("x", exact.clone()).message, exact);
        let huge = format!("bad line: {}", "ä".repeat(1 << 20));
        let e = ApiError::bad_request("invalid_sdp", huge);
        assert_eq!(e.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(e.message.starts_with("bad line: ää"));
        assert!(e.message.ends_with('…'));
    }
}
