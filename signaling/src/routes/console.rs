//! The researcher console (issue 14): its page and its sign-in.
//!
//! - `GET /console`: the console, one static page (plain HTML, CSS and JS under the
//!   participant page's Content-Security-Policy); anyone may load it, it holds no data.
//! - `POST /console/signin` (`{"token"}` and the [`CONSOLE_HEADER`] header): a right admin
//!   token sets the HttpOnly, SameSite=Strict sign-in cookie (`Secure` behind an `https`
//!   public URL) -> 204; a wrong one is 401. The token itself never goes into the cookie, a
//!   URL or the page's storage.
//! - `POST /console/signout`: clears the cookie -> 204.
//!
//! With the cookie, the page calls the same admin API a script calls with the bearer token
//! (see [`super::auth`] for the CSRF rule).

use super::auth::{CONSOLE_COOKIE, CONSOLE_HEADER, console_cookie_value, constant_time_eq};
use super::extract::body_rejection;
use super::headers::console_page;
use super::state::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/signin", post(sign_in))
        .route("/console/signout", post(sign_out))
}

async fn page() -> Response {
    console_page()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

fn cookie(app: &AppState, value: &str, max_age: Option<u64>) -> Option<HeaderValue> {
    let secure = if app.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    HeaderValue::from_str(&format!(
        "{CONSOLE_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .ok()
}

fn require_console_header(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(CONSOLE_HEADER) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_header_required",
            format!("the console sends {CONSOLE_HEADER} with this request"),
        ))
    }
}

async fn sign_in(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_console_header(&headers)?;
    super::participant::require_content_type(&headers, "application/json")?;
    let body = body.map_err(body_rejection)?;
    let req: SignIn = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    if !constant_time_eq(req.token.trim().as_bytes(), app.admin_token.as_bytes()) {
        tracing::warn!("console sign-in with a wrong token");
        return Err(ApiError::unauthorized());
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie(&app, &console_cookie_value(&app.admin_token), None) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}

async fn sign_out(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_console_header(&headers)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie(&app, "", Some(0)) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}
