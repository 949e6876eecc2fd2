//! The researcher console (issue 14): its page and its sign-in.
//!
//! - `GET /console`: the console, one static page (plain HTML, CSS and JS under the
//!   participant page's Content-Security-Policy); anyone may load it, it holds no data.
//! - `POST /console/signin` (`{"email","password"}`, or `{"token"}` while the admin token is
//!   enabled; with the [`CONSOLE_HEADER`] header and no foreign `Origin`): sets the HttpOnly,
//!   SameSite=Strict sign-in cookie (`Secure` behind an `https` public URL) -> 204; wrong
//!   credentials are `401 invalid_credentials` (throttled: `429 rate_limited`). A user's
//!   cookie holds a new random sign-in id every time (a cookie from before is never
//!   promoted: session fixation); the admin token's an HMAC of it. Every attempt is audited.
//! - `POST /console/signout`: deletes the sign-in server-side and clears the cookie -> 204.
//!
//! With the cookie, the page calls the same admin API a script calls with the bearer token
//! (see [`super::auth`] for the CSRF rule).

use super::auth::{
    CONSOLE_COOKIE, ClientAddr, console_cookie_value, constant_time_eq, cookie_value,
    require_console_request,
};
use super::extract::body_rejection;
use super::headers::console_page;
use super::state::AppState;
use crate::audit::Outcome;
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
    token: Option<String>,
    email: Option<String>,
    password: Option<String>,
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

async fn sign_in(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_console_request(&headers, &app.public_url)?;
    super::participant::require_content_type(&headers, "application/json")?;
    let body = body.map_err(body_rejection)?;
    let req: SignIn = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    // Whatever sign-in the browser had ends here: a new one gets a new id.
    if let Some(old) = cookie_value(&headers).filter(|c| c.starts_with("cs_") && c.len() <= 128) {
        app.access.sign_out(&old).await?;
    }
    let value = match (req.token, req.email, req.password) {
        (Some(token), None, None) => {
            let right = app.access.admin_token_enabled
                && constant_time_eq(token.trim().as_bytes(), app.admin_token.as_bytes());
            let outcome = if right { Outcome::Ok } else { Outcome::Denied };
            app.access
                .audit
                .record(crate::audit::Entry {
                    actor: crate::access::authz::ADMIN_TOKEN_ID,
                    action: "signin",
                    resource: crate::access::authz::ADMIN_TOKEN_ID,
                    campaign: None,
                    client,
                    outcome,
                })
                .await;
            if !right {
                tracing::warn!("console sign-in with a wrong token");
                return Err(ApiError::unauthorized());
            }
            console_cookie_value(&app.admin_token)
        }
        (None, Some(email), Some(password)) => {
            app.access.sign_in(&email, &password, client).await?.0
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "sign in with {\"email\",\"password\"} or {\"token\"}",
            ));
        }
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie(&app, &value, None) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}

async fn sign_out(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_console_request(&headers, &app.public_url)?;
    if let Some(id) = cookie_value(&headers).filter(|c| c.starts_with("cs_") && c.len() <= 128) {
        app.access.sign_out(&id).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie(&app, "", Some(0)) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}
