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
    /// Seconds after which trying again makes sense (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u64>,
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
            retry_after: None,
        }
    }
    /// The same error telling the client to try again in `secs` seconds.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
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
            "missing, wrong or expired credentials (Authorization: Bearer <admin token or API key>, or the console sign-in)",
        )
    }
    /// `503 server_busy`: the server holds all the `what` it may (sessions, monitors).
    pub fn server_busy(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            format!("the server has all the {what} it may have; try again later"),
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
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
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
/// JSON is `415 unsupported_media_type` (as on every other route), one that could not be read
/// as [`body_rejection`] says, anything else `invalid_json`.
pub fn json_rejection(rej: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection;
    let code = match rej {
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        JsonRejection::BytesRejection(b) => return body_rejection(b),
        _ => "invalid_json",
    };
    ApiError::new(rej.status(), code, rej.body_text())
}

/// A request body that could not be read: over the size limit (`413 body_too_large`), too
/// slow (`408 body_timeout`: nothing came for the body timeout), or broken off
/// (`400 invalid_body`).
pub fn body_rejection(rej: axum::extract::rejection::BytesRejection) -> ApiError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than the server accepts",
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rej);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body stopped arriving",
            );
        }
        source = e.source();
    }
    ApiError::new(rej.status(), "invalid_body", rej.body_text())
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
