//! Response headers that protect what the API and the participant page hand out.
//!
//! Every response: `X-Content-Type-Options: nosniff` (a JSON error quoting input is never
//! sniffed into HTML), `Cache-Control: no-store` unless the route set one (invite tokens,
//! sessions and recordings are private) and `Referrer-Policy: no-referrer`.
//!
//! The participant page (`GET /i/{token}`, whose URL holds the invite token) also gets a
//! Content-Security-Policy that allows only its own inline script and style, by a fresh nonce
//! per response, and calls to its own origin; and it may not be framed. The monitoring pages
//! (`/monitor`, `/monitor/sessions/{id}`), the console (`/console`) and the participant's
//! deletion page (`/delete/{token}`) are served the same way.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const PARTICIPANT_PAGE: &str = include_str!("../../assets/participant.html");
/// The Live Sessions dashboard and the session monitor page (F7); they hold no data: their
/// script asks for the admin token and calls the admin API with it.
const DASHBOARD_PAGE: &str = include_str!("../../assets/monitor.html");
const MONITOR_PAGE: &str = include_str!("../../assets/monitor_session.html");
/// The researcher console (issue 14); it holds no data: it signs in with the admin token
/// (a cookie) and calls the admin API.
const CONSOLE_PAGE: &str = include_str!("../../assets/console.html");
/// The participant's deletion page (`GET /delete/{token}`); it holds no data: its script
/// posts the token from its URL.
const DELETION_PAGE: &str = include_str!("../../assets/deletion.html");

/// Adds the headers every response carries (see the module doc).
pub(super) async fn common(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The Content-Security-Policy of the participant page. Its one inline `<script>` and one
/// `<style>` carry `nonce`; it calls only its own origin (fetch), plays the server's audio from
/// a MediaStream (`srcObject`), and loads nothing else.
fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; media-src 'self' blob: mediastream:; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// A fresh nonce: 128 random bits, hex (a valid CSP nonce; unguessable per response).
fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The participant page with `status` (200, or 404 for an unknown invite: the same page shows
/// the error), its inline script and style tagged with a fresh nonce named by its CSP.
pub(super) fn participant_page(status: StatusCode) -> Response {
    page(PARTICIPANT_PAGE, status)
}

/// The Live Sessions dashboard (`GET /monitor`), under the same policy.
pub(super) fn dashboard_page() -> Response {
    page(DASHBOARD_PAGE, StatusCode::OK)
}

/// The session monitor page (`GET /monitor/sessions/{id}`), under the same policy.
pub(super) fn monitor_page() -> Response {
    page(MONITOR_PAGE, StatusCode::OK)
}

/// The researcher console (`GET /console`), under the same policy.
pub(super) fn console_page() -> Response {
    page(CONSOLE_PAGE, StatusCode::OK)
}

/// The participant's deletion page (`GET /delete/{token}`), under the same policy.
pub(super) fn deletion_page() -> Response {
    page(DELETION_PAGE, StatusCode::OK)
}

fn page(template: &str, status: StatusCode) -> Response {
    let nonce = new_nonce();
    let html = template
        .replacen("<script>", &format!("<script nonce=\"{nonce}\">"), 1)
        .replacen("<style>", &format!("<style nonce=\"{nonce}\">"), 1);
    let mut headers = HeaderMap::new();
    if let Ok(csp) = HeaderValue::from_str(&page_policy(&nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    (status, headers, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSP allows exactly one inline script and one inline style: anything else inline
    /// (another tag, an event handler attribute, a style attribute) would be blocked in the
    /// browser, so it is caught here.
    #[test]
    fn the_page_has_only_what_its_policy_allows() {
        for page in [
            PARTICIPANT_PAGE,
            DASHBOARD_PAGE,
            MONITOR_PAGE,
            CONSOLE_PAGE,
            DELETION_PAGE,
        ] {
            only_what_the_policy_allows(&page.to_ascii_lowercase());
        }
    }

    fn only_what_the_policy_allows(page: &str) {
        assert_eq!(page.matches("<script").count(), 1);
        assert_eq!(page.matches("<script>").count(), 1);
        assert_eq!(page.matches("<style").count(), 1);
        assert_eq!(page.matches("<style>").count(), 1);
        assert!(!page.contains(" style="), "inline style attribute");
        assert!(!page.contains("javascript:"));
        for handler in [
            " onclick=",
            " onload=",
            " onchange=",
            " oninput=",
            " onerror=",
        ] {
            assert!(!page.contains(handler), "inline handler {handler}");
        }
    }

    #[test]
    fn each_page_gets_its_own_nonce_in_the_policy_and_the_tags() {
        let a = participant_page(StatusCode::OK);
        let b = participant_page(StatusCode::OK);
        let csp = |r: &Response| {
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_ne!(csp(&a), csp(&b));
        assert!(csp(&a).contains("frame-ancestors 'none'"));
        assert!(!csp(&a).contains("unsafe-inline"));
        assert_eq!(a.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}
