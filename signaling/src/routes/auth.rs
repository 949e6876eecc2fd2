//! Authorization rules of the routes. Admin routes take `Authorization: Bearer <admin
//! token>`, or the researcher console's sign-in cookie; participant routes are authorized by
//! possession of the invite token in the path.
//!
//! The console cookie ([`CONSOLE_COOKIE`], HttpOnly, SameSite=Strict) holds an HMAC of the
//! admin token, never the token: it authorizes reads (GET, HEAD: the console's `<audio>`
//! elements load recordings with it), and state-changing requests only with the
//! [`CONSOLE_HEADER`] header as well, which a cross-site form cannot send and a cross-site
//! script cannot add without a CORS preflight that is never granted (CSRF).

use super::state::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// Extractor that succeeds only for the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
                Ok(Admin)
            }
            Some(_) => Err(ApiError::unauthorized()),
            None => console_cookie(parts, &state.admin_token),
        }
    }
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

/// Admin by the console cookie (see the module doc), else 401; a state-changing request
/// without [`CONSOLE_HEADER`] is `403 csrf_header_required`.
fn console_cookie(parts: &Parts, admin_token: &str) -> Result<Admin, ApiError> {
    let expected = console_cookie_value(admin_token);
    let signed_in = parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(name, value)| {
            name == CONSOLE_COOKIE
                && !expected.is_empty()
                && constant_time_eq(value.as_bytes(), expected.as_bytes())
        });
    if !signed_in {
        return Err(ApiError::unauthorized());
    }
    let safe = parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
    if safe || parts.headers.contains_key(CONSOLE_HEADER) {
        Ok(Admin)
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "csrf_header_required",
            format!("a console request that changes something must carry {CONSOLE_HEADER}"),
        ))
    }
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
    fn constant_time_eq_matches_only_equal() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }
}
