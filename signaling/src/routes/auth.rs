//! Who is calling: the [`Caller`] extractor turns a credential into a [`Principal`]; what
//! it may do is [`crate::access::authorize`]'s decision, asked through [`Caller::may`].
//! Participant routes are authorized by possession of the invite token in the path instead.
//!
//! Credentials: `Authorization: Bearer <admin token>` (the bootstrap superuser, unless
//! `[auth] admin_token_enabled = false`) or `Bearer <API key>` (`ek_...`), or the researcher
//! console's sign-in cookie ([`CONSOLE_COOKIE`], HttpOnly, SameSite=Strict): a user's
//! server-side sign-in id (`cs_...`), or an HMAC of the admin token for an admin-token
//! sign-in (never the token). No credential, or a wrong one, is `401 unauthorized`.
//!
//! CSRF: the cookie authorizes reads (GET, HEAD: the console's `<audio>` elements load
//! recordings with it), and state-changing requests only with the [`CONSOLE_HEADER`] header
//! as well, which a cross-site form cannot send and a cross-site script cannot add without a
//! CORS preflight that is never granted (`403 csrf_header_required`); and a request whose
//! `Origin` is not the public URL's is refused (`403 origin_mismatch`).

use super::state::AppState;
use crate::access::{Action, Permission, Principal, Resource, authorize};
use crate::audit::Outcome;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use std::net::{IpAddr, SocketAddr};

/// The authenticated caller of an API route, and the client address it called from (the
/// peer's, or behind a trusted proxy the one it forwards: see `forwarded`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub client: Option<IpAddr>,
}

/// `403 forbidden`: a known caller without the right.
pub fn forbidden(needed: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("not allowed: {needed}"),
    )
}

impl Caller {
    /// `Ok` if the caller may do `action` to `resource`, else `403 forbidden`.
    pub fn may(&self, action: Action, resource: Resource<'_>) -> Result<(), ApiError> {
        authorize(&self.principal, action, resource).map_err(forbidden)
    }

    /// As [`Caller::may`]: `permission` on a campaign.
    pub fn may_in(&self, permission: Permission, campaign: &str) -> Result<(), ApiError> {
        self.may(Action::Campaign(permission), Resource::Campaign(campaign))
    }

    /// The session `id` (from outside), if the caller holds `permission` on its campaign:
    /// `404 session_not_found` for none, `403 forbidden` without the right.
    pub async fn session(
        &self,
        app: &AppState,
        id: &str,
        permission: Permission,
    ) -> Result<crate::store::SessionRow, ApiError> {
        let session = app.service.session(id).await?;
        self.may_in(permission, &session.campaign_id)?;
        Ok(session)
    }

    /// The campaign of session `id` if the caller holds `permission` on it, as
    /// [`Caller::session`]; a refusal is audited as `action` with outcome `denied`.
    pub async fn audited_session(
        &self,
        app: &AppState,
        id: &str,
        permission: Permission,
        action: &str,
    ) -> Result<String, ApiError> {
        let session = app.service.session(id).await?;
        if let Err(e) = self.may_in(permission, &session.campaign_id) {
            self.audit(app, action, id, Some(&session.campaign_id), Outcome::Denied)
                .await;
            return Err(e);
        }
        Ok(session.campaign_id)
    }

    /// The campaigns whose `permission` the caller holds (`None`: all), for list filters.
    pub fn campaigns_with(&self, permission: Permission) -> Option<Vec<String>> {
        self.principal.campaigns_with(permission)
    }

    /// Writes an audit row of this caller's `action` on `resource`.
    pub async fn audit(
        &self,
        app: &AppState,
        action: &str,
        resource: &str,
        campaign: Option<&str>,
        outcome: Outcome,
    ) {
        app.access
            .audit
            .record_for(
                &self.principal,
                self.client,
                action,
                resource,
                campaign,
                outcome,
            )
            .await;
    }

    /// Audits `result` of `action` (`ok`, or `failed:<code>`) and passes it on.
    pub async fn audited<T>(
        &self,
        app: &AppState,
        action: &str,
        resource: &str,
        campaign: Option<&str>,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(e.code),
        };
        self.audit(app, action, resource, campaign, outcome).await;
        result
    }
}

/// The client address a request came from (set by the listener; absent when the router is
/// driven without one, as the fuzz harness does).
pub fn client_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Extractor of the client address (see [`client_of`]); never fails.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(ClientAddr(client_of(parts)))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let client = client_of(parts);
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_string());
        let principal = match presented {
            Some(token) => bearer_principal(state, &token).await?,
            None => console_cookie(parts, state).await?,
        };
        Ok(Caller { principal, client })
    }
}

/// Extractor that succeeds only for a superuser (the admin token, or a superuser user):
/// deployment-wide routes. Another caller is `403 forbidden`, no credential `401`.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.may(Action::Superuser, Resource::Deployment)?;
        Ok(Admin)
    }
}

/// The principal of a bearer token (the admin token or an API key), else `401`.
pub async fn bearer_principal(app: &AppState, token: &str) -> Result<Principal, ApiError> {
    if app.access.admin_token_enabled
        && constant_time_eq(token.as_bytes(), app.admin_token.as_bytes())
    {
        return Ok(Principal::admin_token());
    }
    if token.starts_with(crate::access::KEY_PREFIX)
        && token.len() <= 128
        && let Some(p) = app.access.principal_of_key(token).await?
    {
        return Ok(p);
    }
    Err(ApiError::unauthorized())
}

/// The console's sign-in cookie.
pub const CONSOLE_COOKIE: &str = "earshot_console";
/// The header the console sends with every state-changing request (any value).
pub const CONSOLE_HEADER: &str = "x-earshot-console";

/// The cookie's value for an admin token: hex HMAC-SHA1 of a fixed label keyed by the
/// token (a new token signs every console out).
pub fn console_cookie_value(admin_token: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(admin_token.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; unreachable, but never a panic.
        Err(_) => return String::new(),
    };
    mac.update(b"earshot-console-v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The console cookie's value, if the request carries one.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == CONSOLE_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The principal of the console cookie (see the module doc), else 401; a state-changing
/// request without [`CONSOLE_HEADER`] is `403 csrf_header_required`, one from another
/// origin `403 origin_mismatch`.
async fn console_cookie(parts: &Parts, app: &AppState) -> Result<Principal, ApiError> {
    let value = cookie_value(&parts.headers).ok_or_else(ApiError::unauthorized)?;
    let principal = if app.access.admin_token_enabled
        && constant_time_eq(
            value.as_bytes(),
            console_cookie_value(&app.admin_token).as_bytes(),
        ) {
        Principal::admin_token()
    } else if value.starts_with("cs_") && value.len() <= 128 {
        app.access
            .principal_of_signin(&value)
            .await?
            .ok_or_else(ApiError::unauthorized)?
    } else {
        return Err(ApiError::unauthorized());
    };
    let safe = parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
    if !safe {
        require_console_request(&parts.headers, &app.public_url)?;
    }
    Ok(principal)
}

/// The console's CSRF rule for a request that changes something: [`CONSOLE_HEADER`] present,
/// and `Origin`, when sent, the public URL's origin.
pub fn require_console_request(
    headers: &axum::http::HeaderMap,
    public_url: &str,
) -> Result<(), ApiError> {
    if !headers.contains_key(CONSOLE_HEADER) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_header_required",
            format!("a console request that changes something must carry {CONSOLE_HEADER}"),
        ));
    }
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let expected = origin_of(public_url);
        if origin.to_str().ok() != expected.as_deref() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_mismatch",
                "a console request must come from the console's own origin",
            ));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL, as browsers send it in `Origin`.
fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization())
}

/// Compares without an early exit, so response timing does not leak how much matched.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            super::origin_of("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            super::origin_of("https://earshot.example.org").as_deref(),
            Some("https://earshot.example.org")
        );
    }

    #[test]
    fn constant_time_eq_matches_only_equal() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }
}
