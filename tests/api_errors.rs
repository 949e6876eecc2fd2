//! End to end: the HTTP API's refusals against the real `earshot` process (real HTTP over
//! loopback, real SQLite). Every bad request must get the documented status and stable error
//! code in `{"error":{"code","message"}}`, change nothing, and leave the server serving.

mod support;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, USER_AGENT};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use std::time::Duration;
use support::{ADMIN_TOKEN, Server};

use support::sdp::OFFER;

/// The same browser offering only a camera: a video m-line and no audio at all.
const VIDEO_ONLY_OFFER: &str = concat!(
    "v=0\r\n",
    "o=- 3805741951836410350 2 IN IP4 127.0.0.1\r\n",
    "s=-\r\n",
    "t=0 0\r\n",
    "a=group:BUNDLE 0\r\n",
    "a=msid-semantic: WMS\r\n",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n",
    "c=IN IP4 0.0.0.0\r\n",
    "a=rtcp:9 IN IP4 0.0.0.0\r\n",
    "a=ice-ufrag:q7Xh\r\n",
    "a=ice-pwd:Jf3vB2mQ9zL0pR8sT1uW4yA6\r\n",
    "a=fingerprint:sha-256 8D:2B:1F:6A:93:C4:5E:07:AB:CD:EF:01:23:45:67:89:9A:BC:DE:F0:12:34:56:78:87:65:43:21:0F:ED:CB:A9\r\n",
    "a=setup:actpass\r\n",
    "a=mid:0\r\n",
    "a=sendrecv\r\n",
    "a=rtcp-mux\r\n",
    "a=rtpmap:96 VP8/90000\r\n",
    "a=rtcp-fb:96 nack\r\n",
    "a=rtpmap:97 rtx/90000\r\n",
    "a=fmtp:97 apt=96\r\n",
);

/// A well-formed trickle fragment with one host candidate and end-of-candidates.
const SDPFRAG: &str = concat!(
    "a=ice-ufrag:q7Xh\r\n",
    "a=ice-pwd:Jf3vB2mQ9zL0pR8sT1uW4yA6\r\n",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    "a=mid:0\r\n",
    "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n",
    "a=end-of-candidates\r\n",
);

const TEST_USER_AGENT: &str = "earshot-api-errors-test/1.0 (like Chromium)";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A response read whole, labelled with the request it answers (for failure messages).
struct Reply {
    label: String,
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}); status {}, body {:?}",
                self.label,
                self.status,
                self.text()
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request (with a timeout, so a hung server fails the test instead of hanging it).
async fn send(req: RequestBuilder) -> Reply {
    let (client, req) = req.timeout(Duration::from_secs(30)).build_split();
    let req = req.expect("request builds");
    let label = format!("{} {}", req.method(), req.url());
    let resp = client
        .execute(req)
        .await
        .unwrap_or_else(|e| panic!("{label}: no response: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{label}: reading body: {e}"))
        .to_vec();
    Reply {
        label,
        status,
        headers,
        body,
    }
}

/// Asserts the documented error shape: `status` and `{"error":{"code": code, "message": "..."}}`.
fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(
        r.status,
        status,
        "{}: expected {status} {code}, got {} {:?}",
        r.label,
        r.status,
        r.text()
    );
    assert_error_body(r, code);
}

/// Like [`assert_error`] for refusals documented only as "a fitting status": any 4xx.
fn assert_client_error(r: &Reply, code: &str) {
    assert!(
        (400..500).contains(&r.status),
        "{}: expected a 4xx {code}, got {} {:?}",
        r.label,
        r.status,
        r.text()
    );
    assert_error_body(r, code);
}

fn assert_error_body(r: &Reply, code: &str) {
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{}: error Content-Type is {:?}",
        r.label,
        r.header("content-type")
    );
    let v = r.json();
    assert_eq!(
        v["error"]["code"], code,
        "{}: error code; body {v}",
        r.label
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "{}: error message must be a non-empty string; body {v}",
        r.label
    );
}

/// The error code of a reply, if it has the documented error shape.
fn error_code(r: &Reply) -> Option<String> {
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    v["error"]["code"].as_str().map(String::from)
}

fn assert_status(r: &Reply, status: u16) {
    assert_eq!(
        r.status,
        status,
        "{}: expected {status}, got {} {:?}",
        r.label,
        r.status,
        r.text()
    );
}

fn path_segment_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// Admin: every session (newest first).
async fn sessions(server: &Server) -> Vec<Value> {
    let r = send(server.admin(server.http.get(server.url("/v1/sessions?limit=1000")))).await;
    assert_status(&r, 200);
    r.json()["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no sessions array: {}", r.label, r.text()))
        .clone()
}

async fn session_count(server: &Server) -> usize {
    sessions(server).await.len()
}

/// A session's admin view without the fields that move with the clock alone.
async fn session_snapshot(server: &Server, id: &str) -> Value {
    let mut s = server.session(id).await;
    if let Value::Object(m) = &mut s {
        m.remove("active_duration_ms");
        m.remove("total_duration_ms");
    }
    s
}

/// Opens the participant page like a browser would; creates the invite's session.
async fn open_page(server: &Server, token: &str, query: &str) -> Reply {
    send(
        server
            .http
            .get(server.url(&format!("/i/{token}{query}")))
            .header(USER_AGENT, TEST_USER_AGENT),
    )
    .await
}

/// The invite's public view (`GET /v1/invites/{token}`).
async fn invite_view(server: &Server, token: &str) -> Value {
    let r = send(server.http.get(server.url(&format!("/v1/invites/{token}")))).await;
    assert_status(&r, 200);
    r.json()
}

/// The id of the invite's current session (the page must have been opened).
async fn session_id_of(server: &Server, token: &str) -> String {
    let v = invite_view(server, token).await;
    v["session"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("invite {token} has no session: {v}"))
        .to_string()
}

/// A fresh invite whose page was opened: (token, session id).
async fn opened_invite(server: &Server) -> (String, String) {
    let (token, _) = server.invite().await;
    let r = open_page(server, &token, "").await;
    assert_status(&r, 200);
    let id = session_id_of(server, &token).await;
    (token, id)
}

async fn consent(server: &Server, token: &str, accept: bool) -> Reply {
    send(
        server
            .http
            .post(server.url(&format!("/v1/invites/{token}/consent")))
            .json(&json!({ "accept": accept })),
    )
    .await
}

/// A fresh invite, opened and consented: (token, session id).
async fn consented_invite(server: &Server) -> (String, String) {
    let (token, id) = opened_invite(server).await;
    let r = consent(server, &token, true).await;
    assert_status(&r, 200);
    assert_eq!(r.json()["session_id"], id.as_str(), "{}", r.label);
    (token, id)
}

/// `POST /v1/invites/{token}/whip` with an optional Content-Type.
async fn whip(server: &Server, token: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/whip")))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    send(req).await
}

/// `PATCH` (trickle) on a WHIP resource path with an optional Content-Type.
async fn trickle(server: &Server, path: &str, content_type: Option<&str>, body: &str) -> Reply {
    let mut req = server.http.patch(server.url(path)).body(body.to_string());
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    send(req).await
}

/// The server still answers: `/healthz`, an admin call and a participant call.
async fn assert_still_serves(server: &Server) {
    let r = send(server.http.get(server.url("/healthz"))).await;
    assert_status(&r, 200);
    assert_eq!(r.json(), json!({"status": "ok"}), "{}", r.label);
    let (token, url) = server.invite().await;
    assert!(url.ends_with(&format!("/i/{token}")), "invite url {url}");
    let v = invite_view(server, &token).await;
    assert_eq!(v["token"], token.as_str(), "invite view {v}");
}

// ---------------------------------------------------------------------------------------------
// 1. Admin authorization
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_routes_refuse_missing_wrong_and_non_bearer_credentials() {
    use base64::Engine as _;
    let server = Server::start(&[]).await;
    let (invite_token, id) = opened_invite(&server).await;
    let before_count = session_count(&server).await;
    let before = session_snapshot(&server, &id).await;

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_TOKEN}"));
    let bad_credentials: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong-token".into()),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("Bearer {}", ADMIN_TOKEN.to_uppercase())),
        Some(format!("Basic {basic}")),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(format!("Token {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_string()),
        Some("Bearer ".into()),
        Some("Bearer".into()),
        Some(String::new()),
        // A participant's invite token opens only the participant routes.
        Some(format!("Bearer {invite_token}")),
    ];
    let listen_in = format!("/v1/sessions/{id}/whep/mon_abcdefghijklmnopqrst");
    let routes: Vec<(Method, String)> = vec![
        (Method::POST, "/v1/invites".into()),
        (Method::GET, "/v1/sessions".into()),
        (Method::GET, format!("/v1/sessions/{id}")),
        (Method::POST, format!("/v1/sessions/{id}/whep")),
        (Method::PATCH, listen_in.clone()),
        (Method::DELETE, listen_in),
        (Method::GET, "/v1/monitor/sessions".into()),
        (
            Method::GET,
            format!("/v1/sessions/{id}/recordings/participant.wav"),
        ),
        (Method::GET, "/metrics".into()),
        (Method::GET, format!("/v1/sessions/{id}/export.pdf")),
        (Method::GET, format!("/v1/sessions/{id}/export.json")),
        (Method::GET, format!("/v1/sessions/{id}/audio.zip")),
        (Method::GET, "/v1/exports/sessions.csv".into()),
        (Method::GET, "/v1/exports/sessions.jsonl".into()),
        (Method::GET, "/v1/exports/transcripts.zip".into()),
        (Method::POST, "/v1/webhooks".into()),
        (Method::GET, "/v1/webhooks".into()),
        (Method::GET, "/v1/webhooks/whk_abcdefghijklmnopqrst".into()),
        (
            Method::DELETE,
            "/v1/webhooks/whk_abcdefghijklmnopqrst".into(),
        ),
        (
            Method::GET,
            "/v1/webhooks/whk_abcdefghijklmnopqrst/deliveries".into(),
        ),
        (
            Method::POST,
            "/v1/webhooks/whk_abcdefghijklmnopqrst/deliveries/dlv_abcdef/redeliver".into(),
        ),
        (Method::GET, "/v1/retention".into()),
        (Method::GET, "/v1/deletion-requests".into()),
        (
            Method::POST,
            "/v1/deletion-requests/del_abcdefghijklmnopqrst/fulfil".into(),
        ),
        (
            Method::GET,
            format!("/v1/sessions/{id}/transcript?original=true"),
        ),
    ];
    for (method, path) in &routes {
        for cred in &bad_credentials {
            let mut req = server
                .http
                .request(method.clone(), server.url(path))
                .header(CONTENT_TYPE, "application/json");
            if *method == Method::POST {
                req = req.body("{}");
            }
            if let Some(c) = cred {
                req = req.header(AUTHORIZATION, c.as_str());
            }
            let r = send(req).await;
            assert_error(&r, 401, "unauthorized");
            assert!(
                r.json().get("sessions").is_none() && r.json().get("token").is_none(),
                "{}: a refusal carries no data",
                r.label
            );
        }
    }

    // Nothing changed.
    assert_eq!(session_count(&server).await, before_count);
    assert_eq!(session_snapshot(&server, &id).await, before);

    // The right token works on every route.
    let r = send(
        server
            .admin(server.http.post(server.url("/v1/invites")))
            .header(CONTENT_TYPE, "application/json")
            .body("{}"),
    )
    .await;
    assert_status(&r, 201);
    let v = r.json();
    let new_token = v["token"].as_str().expect("token");
    assert!(
        v["url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/i/{new_token}"))),
        "invite {v}"
    );

    let r = send(server.admin(server.http.get(server.url("/v1/sessions")))).await;
    assert_status(&r, 200);
    let list = r.json();
    assert!(
        list["sessions"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["id"] == id.as_str())),
        "session {id} listed: {list}"
    );

    let r = send(server.admin(server.http.get(server.url(&format!("/v1/sessions/{id}"))))).await;
    assert_status(&r, 200);
    assert_eq!(r.json()["id"], id.as_str());

    // Metrics: Prometheus text, sessions by state (the one opened invite is `created`), the
    // media plane's counters (no media ran yet).
    let r = send(server.admin(server.http.get(server.url("/metrics")))).await;
    assert_status(&r, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    for line in [
        format!("earshot_sessions{{state=\"created\"}} {before_count}"),
        "earshot_sessions{state=\"completed\"} 0".to_owned(),
        "earshot_media_sessions 0".to_owned(),
        "earshot_media_deadline_missed_total 0".to_owned(),
        "earshot_live_monitors 0".to_owned(),
        "earshot_listen_ins 0".to_owned(),
        "earshot_participant_feeds 0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }

    // No recording exists yet for a session that never started.
    let r = send(
        server.admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{id}/recordings/participant.wav"))),
        ),
    )
    .await;
    assert_error(&r, 404, "recording_not_found");

    // Creating an invite does not create a session.
    assert_eq!(session_count(&server).await, before_count);
    assert_still_serves(&server).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Unknown and malformed invite tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_and_malformed_invite_tokens_are_404_on_every_participant_route() {
    let server = Server::start(&[]).await;
    // One real invite exists, so "unknown" is not just "the table is empty".
    let (real, _) = server.invite().await;
    let unicode = "%C3%A9t%C3%A9-%E2%9C%93-%F0%9F%8E%A4".repeat(2);
    let tokens: Vec<(&str, String)> = vec![
        ("unknown, well-formed", "abcdefghijklmnopqrstuvwx".into()),
        ("real token upper-cased", real.to_uppercase()),
        ("real token plus one char", format!("{real}a")),
        ("too short", "abc".into()),
        ("path traversal", "..%2F..%2Fetc%2Fpasswd".into()),
        ("500 chars", "a".repeat(500)),
        ("unicode", unicode),
        ("spaces and quotes", "abc%20def%27%22%3B--%20".into()),
        ("NUL byte", "abcdefgh%00ijkl".into()),
    ];
    for (what, t) in &tokens {
        let r = send(server.http.get(server.url(&format!("/v1/invites/{t}")))).await;
        assert_error(&r, 404, "invite_not_found");

        let r = send(
            server
                .http
                .post(server.url(&format!("/v1/invites/{t}/consent")))
                .json(&json!({"accept": true})),
        )
        .await;
        assert_error(&r, 404, "invite_not_found");

        let r = whip(&server, t, Some("application/sdp"), OFFER.into()).await;
        assert_error(&r, 404, "invite_not_found");

        let r = send(
            server
                .http
                .post(server.url(&format!("/v1/invites/{t}/deletion-token"))),
        )
        .await;
        assert_error(&r, 404, "invite_not_found");

        let peer = format!("/v1/invites/{t}/whip/peer_abcdefghijklmnopqrst");
        let r = trickle(
            &server,
            &peer,
            Some("application/trickle-ice-sdpfrag"),
            SDPFRAG,
        )
        .await;
        assert_error(&r, 404, "invite_not_found");
        let r = send(server.http.delete(server.url(&peer))).await;
        assert_error(&r, 404, "invite_not_found");

        let r = open_page(&server, t, "?ref=x").await;
        assert_eq!(
            r.status,
            404,
            "{what}: {}: expected the 404 page, got {} {:?}",
            r.label,
            r.status,
            r.text()
        );
    }

    // Nothing was created; the real invite is untouched and the server still serves.
    assert_eq!(session_count(&server).await, 0);
    assert_eq!(invite_view(&server, &real).await["session"], Value::Null);
    assert_still_serves(&server).await;
}

/// A token whose percent-encoding is not UTF-8 is just another unknown token: a JSON 404 (the
/// README: errors are JSON), not the framework's plain-text path rejection.
#[tokio::test]
async fn non_utf8_percent_encoded_token_is_a_json_404() {
    let server = Server::start(&[]).await;
    let t = path_segment_hex(&[0xff, 0xfe, 0xfd, 0xc3, 0x28, 0xa0, 0xa1, 0x80, 0x81]);
    let r = send(server.http.get(server.url(&format!("/v1/invites/{t}")))).await;
    assert_error(&r, 404, "invite_not_found");
    let r = send(
        server
            .http
            .post(server.url(&format!("/v1/invites/{t}/consent")))
            .json(&json!({"accept": true})),
    )
    .await;
    assert_error(&r, 404, "invite_not_found");
    let r = whip(&server, &t, Some("application/sdp"), OFFER.into()).await;
    assert_error(&r, 404, "invite_not_found");
    let r = open_page(&server, &t, "").await;
    assert_status(&r, 404);
    assert_eq!(session_count(&server).await, 0);
    assert_still_serves(&server).await;
}

// ---------------------------------------------------------------------------------------------
// 3. WHIP offers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn whip_before_consent_is_409_consent_required_and_starts_nothing() {
    let server = Server::start(&[]).await;

    // Invite never opened: no session exists, and WHIP must not create one.
    let (token, _) = server.invite().await;
    let r = whip(&server, &token, Some("application/sdp"), OFFER.into()).await;
    assert_error(&r, 409, "consent_required");
    assert_eq!(session_count(&server).await, 0);

    // Page opened (session `created`), consent not given.
    let r = open_page(&server, &token, "").await;
    assert_status(&r, 200);
    let id = session_id_of(&server, &token).await;
    let before = session_snapshot(&server, &id).await;
    assert_eq!(before["state"], "created");
    assert_eq!(before["consented"], false);
    for _ in 0..2 {
        let r = whip(&server, &token, Some("application/sdp"), OFFER.into()).await;
        assert_error(&r, 409, "consent_required");
        assert!(r.header("location").is_none(), "{}: no Location", r.label);
    }
    assert_eq!(session_snapshot(&server, &id).await, before);
    assert_eq!(session_count(&server).await, 1);
    assert!(
        sessions(&server)
            .await
            .iter()
            .all(|s| s["state"] == "created"),
        "no session moved out of created"
    );
    assert_still_serves(&server).await;
}

#[tokio::test]
async fn whip_with_a_wrong_content_type_is_415() {
    let server = Server::start(&[]).await;
    let (token, id) = consented_invite(&server).await;
    let before = session_snapshot(&server, &id).await;

    let json_body = serde_json::to_vec(&json!({"type": "offer", "sdp": OFFER})).expect("json");
    let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("application/json"), json_body),
        (None, OFFER.into()),
        (Some("text/plain"), OFFER.into()),
        (Some("application/sdpx"), OFFER.into()),
        (Some("application/x-www-form-urlencoded"), OFFER.into()),
        (Some(""), OFFER.into()),
    ];
    for (ct, body) in cases {
        let r = whip(&server, &token, ct, body).await;
        assert_error(&r, 415, "unsupported_media_type");
        assert!(r.header("location").is_none(), "{}: no Location", r.label);
    }

    assert_eq!(session_snapshot(&server, &id).await, before);
    assert_eq!(before["state"], "created");
    assert_eq!(session_count(&server).await, 1);
    assert_still_serves(&server).await;
}

#[tokio::test]
async fn malformed_sdp_offers_are_400_and_leave_the_session_created() {
    let server = Server::start(&[]).await;
    let (token, id) = consented_invite(&server).await;
    let before = session_snapshot(&server, &id).await;
    assert_eq!(before["state"], "created");
    assert_eq!(before["consented"], true);

    let before_media = OFFER.find("m=audio").expect("offer has m=audio");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage text",
            b"hello, this is not SDP at all".to_vec(),
            "invalid_sdp",
        ),
        ("empty body", Vec::new(), "invalid_sdp"),
        ("only whitespace", b"  \r\n\r\n ".to_vec(), "invalid_sdp"),
        (
            "truncated inside the origin line",
            OFFER.as_bytes()[..20].to_vec(),
            "invalid_sdp",
        ),
        (
            "truncated before the first m-line",
            OFFER.as_bytes()[..before_media].to_vec(),
            "invalid_sdp",
        ),
        (
            "json in an sdp body",
            br#"{"sdp":"v=0"}"#.to_vec(),
            "invalid_sdp",
        ),
        ("video m-line only", VIDEO_ONLY_OFFER.into(), "no_audio"),
        (
            "non-UTF-8 bytes",
            vec![b'v', b'=', b'0', b'\r', b'\n', 0xff, 0xfe, 0x80, 0xc3, 0x28],
            "invalid_body",
        ),
    ];
    for (what, body, code) in cases {
        let r = whip(&server, &token, Some("application/sdp"), body).await;
        assert_eq!(
            (r.status, error_code(&r).as_deref()),
            (400, Some(code)),
            "{what}: {} -> {} {:?}",
            r.label,
            r.status,
            r.text()
        );
        assert_error(&r, 400, code);
        assert!(r.header("location").is_none(), "{what}: no Location");
        assert_eq!(
            session_snapshot(&server, &id).await,
            before,
            "{what}: session changed"
        );
    }

    assert_eq!(session_count(&server).await, 1);
    let v = invite_view(&server, &token).await;
    assert_eq!(v["session"]["state"], "created", "invite view {v}");
    assert_still_serves(&server).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Consent
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn consent_with_invalid_json_is_refused_and_changes_nothing() {
    let server = Server::start(&[]).await;
    let (token, id) = opened_invite(&server).await;
    let before = session_snapshot(&server, &id).await;
    assert_eq!(before["consented"], false);

    let url = server.url(&format!("/v1/invites/{token}/consent"));
    let bodies = [
        "{",
        "",
        "[]",
        "null",
        "true",
        "{}",
        r#"{"accept":"yes"}"#,
        r#"{"accept":1}"#,
        r#"{"accept":null}"#,
        r#"{"acept":true}"#,
        r#"{"accept":true"#,
        // Unknown fields are refused as on every other route (issue 10, 9.6).
        r#"{"accept":true,"extra":1}"#,
        r#"{"accept":false,"acept":true}"#,
    ];
    for body in bodies {
        let r = send(
            server
                .http
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await;
        assert_client_error(&r, "invalid_json");
    }
    // A JSON body without the JSON Content-Type: 415 with README's code (issue 10, 9.6).
    for ct in [None, Some("text/plain")] {
        let mut req = server.http.post(&url).body(r#"{"accept":true}"#);
        if let Some(ct) = ct {
            req = req.header(CONTENT_TYPE, ct);
        }
        let r = send(req).await;
        assert_error(&r, 415, "unsupported_media_type");
    }

    assert_eq!(session_snapshot(&server, &id).await, before);
    assert_eq!(session_count(&server).await, 1);

    // A valid consent still works afterwards.
    let r = consent(&server, &token, true).await;
    assert_status(&r, 200);
    assert_eq!(r.json(), json!({"session_id": id, "state": "created"}));
    assert_eq!(server.session(&id).await["consented"], true);
    assert_still_serves(&server).await;
}

#[tokio::test]
async fn declined_consent_abandons_the_session_and_ends_it_for_good() {
    let server = Server::start(&[]).await;
    let (token, id) = opened_invite(&server).await;

    let r = consent(&server, &token, false).await;
    assert_status(&r, 200);
    assert_eq!(r.json(), json!({"session_id": id, "state": "abandoned"}));
    let ended = session_snapshot(&server, &id).await;
    assert_eq!(ended["state"], "abandoned", "{ended}");
    assert_eq!(ended["drop_off"], "consent", "{ended}");
    assert!(ended["end_reason"].is_string(), "end reason: {ended}");
    assert!(ended["ended_at"].is_string(), "ended_at: {ended}");
    assert!(
        ended["transitions"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["from"] == "created" && t["to"] == "abandoned")),
        "transition created -> abandoned: {ended}"
    );

    let r = whip(&server, &token, Some("application/sdp"), OFFER.into()).await;
    assert_error(&r, 409, "session_ended");
    let r = consent(&server, &token, true).await;
    assert_error(&r, 409, "session_ended");
    let r = consent(&server, &token, false).await;
    assert_error(&r, 409, "session_ended");
    let r = trickle(
        &server,
        &format!("/v1/invites/{token}/whip/peer_abcdefghijklmnopqrst"),
        Some("application/trickle-ice-sdpfrag"),
        SDPFRAG,
    )
    .await;
    assert_error(&r, 409, "session_ended");

    // Re-opening the link shows the page but neither revives nor replaces the session.
    let r = open_page(&server, &token, "?ref=again").await;
    assert_status(&r, 200);
    assert_eq!(session_count(&server).await, 1);
    assert_eq!(session_snapshot(&server, &id).await, ended);
    assert_still_serves(&server).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Admin session, recording and invite-creation refusals
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_or_malformed_session_ids_are_404_session_not_found() {
    let server = Server::start(&[]).await;
    let (_token, id) = opened_invite(&server).await;
    let ids = [
        "not-an-id".to_string(),
        "ses_doesnotexist".to_string(),
        "ses_".to_string(),
        id.to_uppercase(),
        format!("{id}x"),
        id.replacen("ses_", "inv_", 1),
        "ses_..%2F..%2Fetc%2Fpasswd".to_string(),
        "%C3%A9t%C3%A9".to_string(),
        format!("ses_{}", "a".repeat(500)),
        "ses_a%27%20OR%20%271%27%3D%271".to_string(),
    ];
    for bad in &ids {
        let r =
            send(server.admin(server.http.get(server.url(&format!("/v1/sessions/{bad}"))))).await;
        assert_error(&r, 404, "session_not_found");
    }
    assert_eq!(session_count(&server).await, 1);
    assert_eq!(server.session(&id).await["id"], id.as_str());
    assert_still_serves(&server).await;
}

#[tokio::test]
async fn bad_recording_names_are_404_recording_not_found() {
    let server = Server::start(&[]).await;
    let (_token, id) = opened_invite(&server).await;
    let before = session_snapshot(&server, &id).await;
    let names = [
        "..%2Fx.wav",
        "..%2F..%2Fadmin_token",
        "..%2F..%2Fearshot.db",
        "participant.ogg",
        "video.wav",
        "participant",
        "participant.",
        ".wav",
        "participant.WAV",
        "PARTICIPANT.wav",
        "participant.wav.mp3.exe",
        "participant%00.wav",
        // Valid names, but the session has no recordings yet.
        "participant.wav",
        "ai.mp3",
        "mix.wav",
    ];
    for name in names {
        for sid in [id.as_str(), "ses_doesnotexist", "not-an-id"] {
            let r = send(
                server.admin(
                    server
                        .http
                        .get(server.url(&format!("/v1/sessions/{sid}/recordings/{name}"))),
                ),
            )
            .await;
            assert_error(&r, 404, "recording_not_found");
        }
    }
    assert_eq!(session_snapshot(&server, &id).await, before);
    assert_still_serves(&server).await;
}

#[tokio::test]
async fn create_invite_refuses_bad_json_unknown_fields_and_unknown_campaigns() {
    let server = Server::start(&[]).await;
    let post = |body: &'static str| {
        server
            .admin(server.http.post(server.url("/v1/invites")))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    };

    for body in [
        "{",
        "[]",
        "null",
        "\"cmp_default\"",
        "{\"campaign_id\":\"cmp_default\"",
        r#"{"campaign":"cmp_default"}"#,
        r#"{"campaign_id":"cmp_default","extra":1}"#,
        r#"{"metadata":{},"is_admin":true}"#,
        r#"{"campaign_id":5}"#,
        r#"{"metadata":[]}"#,
        r#"{"metadata":"ref=abc"}"#,
    ] {
        let r = send(post(body)).await;
        assert_error(&r, 400, "invalid_json");
    }

    for body in [
        r#"{"campaign_id":"cmp_doesnotexist"}"#,
        r#"{"campaign_id":"../../etc/passwd"}"#,
        r#"{"campaign_id":""}"#,
        r#"{"campaign_id":"CMP_DEFAULT"}"#,
        r#"{"campaign_id":"cmp_doesnotexist","script_id":"scr_default"}"#,
    ] {
        let r = send(post(body)).await;
        assert_error(&r, 404, "campaign_not_found");
    }

    let r = send(post(r#"{"script_id":"scr_doesnotexist"}"#)).await;
    assert_error(&r, 404, "script_not_found");

    // Nothing was created.
    assert_eq!(session_count(&server).await, 0);

    // Valid bodies work: none, `{}`, and explicit ids with metadata.
    for body in [
        "",
        "{}",
        r#"{"campaign_id":"cmp_default","script_id":"scr_default","metadata":{"cohort":"a"}}"#,
    ] {
        let r = send(post(body)).await;
        assert_status(&r, 201);
        let v = r.json();
        let token = v["token"].as_str().expect("token");
        assert_eq!(invite_view(&server, token).await["token"], token);
    }
    assert_still_serves(&server).await;
}

#[tokio::test]
async fn list_sessions_with_a_bad_query_is_400_invalid_query() {
    let server = Server::start(&[]).await;
    let (_token, id) = opened_invite(&server).await;
    for q in [
        "limit=abc",
        "limit=1.5",
        "limit=99999999999999999999999",
        // Out of range, unknown states and parameters (issue 10, 9.6): no silent clamping.
        "limit=-1",
        "limit=0",
        "limit=1001",
        "state=bogus",
        "state=",
        "state=Paused",
        "stat=paused",
    ] {
        let r = send(server.admin(server.http.get(server.url(&format!("/v1/sessions?{q}"))))).await;
        assert_error(&r, 400, "invalid_query");
    }
    for q in [
        "limit=1",
        "state=created",
        "campaign=cmp_default&state=created&limit=5",
    ] {
        let r = send(server.admin(server.http.get(server.url(&format!("/v1/sessions?{q}"))))).await;
        assert_status(&r, 200);
        let list = r.json();
        assert_eq!(list["sessions"][0]["id"], id.as_str(), "{q}: {list}");
    }
    assert_still_serves(&server).await;
}

// ---------------------------------------------------------------------------------------------
// 6. WHIP trickle and hang-up on peer resources
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn whip_trickle_to_an_unknown_peer_is_404_and_a_wrong_content_type_415() {
    let server = Server::start(&[]).await;
    let (token, id) = consented_invite(&server).await;
    let before = session_snapshot(&server, &id).await;
    let frag_ct = Some("application/trickle-ice-sdpfrag");

    for peer in [
        "peer_abcdefghijklmnopqrst",
        "not-a-peer",
        "..%2F..%2Fconsent",
    ] {
        let path = format!("/v1/invites/{token}/whip/{peer}");
        let r = trickle(&server, &path, frag_ct, SDPFRAG).await;
        assert_error(&r, 404, "peer_not_found");
        let r = send(server.http.delete(server.url(&path))).await;
        assert_error(&r, 404, "peer_not_found");
    }

    let path = format!("/v1/invites/{token}/whip/peer_abcdefghijklmnopqrst");
    for ct in [
        None,
        Some("application/sdp"),
        Some("application/json"),
        Some("text/plain"),
    ] {
        let r = trickle(&server, &path, ct, SDPFRAG).await;
        assert_error(&r, 415, "unsupported_media_type");
    }

    assert_eq!(session_snapshot(&server, &id).await, before);
    assert_eq!(session_count(&server).await, 1);
    assert_still_serves(&server).await;
}

/// With a live WHIP resource (a real offer answered by the media plane): its Location takes
/// trickle and hang-up, other peer ids are still unknown, bad fragments are refused.
#[tokio::test]
async fn whip_trickle_on_a_live_peer_resource() {
    let server = Server::start(&[]).await;
    let (token, id) = consented_invite(&server).await;

    let r = whip(&server, &token, Some("application/sdp"), OFFER.into()).await;
    assert_status(&r, 201);
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/sdp")),
        "answer content type {:?}",
        r.header("content-type")
    );
    assert!(r.text().starts_with("v=0"), "SDP answer: {:?}", r.text());
    let location = r
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location of the peer resource")
        .to_string();
    assert!(
        location.starts_with(&format!("/v1/invites/{token}/whip/")),
        "Location {location}"
    );
    let frag_ct = Some("application/trickle-ice-sdpfrag");

    // Another peer id on the same invite is unknown.
    let other = format!("/v1/invites/{token}/whip/peer_abcdefghijklmnopqrst");
    let r = trickle(&server, &other, frag_ct, SDPFRAG).await;
    assert_error(&r, 404, "peer_not_found");
    let r = send(server.http.delete(server.url(&other))).await;
    assert_error(&r, 404, "peer_not_found");

    // Wrong content type on the real resource.
    let r = trickle(&server, &location, Some("application/sdp"), SDPFRAG).await;
    assert_error(&r, 415, "unsupported_media_type");
    let r = trickle(&server, &location, None, SDPFRAG).await;
    assert_error(&r, 415, "unsupported_media_type");

    // Malformed fragments.
    let r = trickle(&server, &location, frag_ct, "a=candidate:1 2 3\r\n").await;
    assert_error(&r, 400, "invalid_candidate");
    let r = trickle(&server, &location, frag_ct, "hello world").await;
    assert_error(&r, 400, "invalid_sdpfrag");

    // A valid fragment is taken.
    let r = trickle(&server, &location, frag_ct, SDPFRAG).await;
    assert_status(&r, 204);

    // Hang up: the participant ended the interview, so the session is over and the resource
    // answers as an ended session does.
    let r = send(server.http.delete(server.url(&location))).await;
    assert_status(&r, 200);
    let ended = session_snapshot(&server, &id).await;
    assert_eq!(ended["state"], "abandoned", "{ended}");
    assert_eq!(ended["end_reason"], "participant_ended", "{ended}");
    let r = trickle(&server, &location, frag_ct, SDPFRAG).await;
    assert_error(&r, 409, "session_ended");
    let r = send(server.http.delete(server.url(&location))).await;
    assert_error(&r, 409, "session_ended");

    assert_eq!(session_count(&server).await, 1);
    assert_eq!(session_snapshot(&server, &id).await, ended);
    assert_still_serves(&server).await;
}

/// A second WHIP offer for the invite replaces the session's peer (a reconnect): DELETE of the
/// replaced resource is `404 peer_not_found` and changes nothing; DELETE of the current one
/// ends the interview (`abandoned`, `participant_ended`); an ended session's resources answer
/// `409 session_ended`.
#[tokio::test]
async fn whip_delete_of_a_replaced_peer_changes_nothing_and_of_the_current_peer_ends_the_interview()
{
    let server = Server::start(&[]).await;
    let (token, id) = consented_invite(&server).await;
    let location_of = |r: &Reply| {
        r.header("location")
            .unwrap_or_else(|| panic!("{}: no Location", r.label))
            .to_string()
    };
    let r = whip(&server, &token, Some("application/sdp"), OFFER.into()).await;
    assert_status(&r, 201);
    let replaced = location_of(&r);
    let r = whip(&server, &token, Some("application/sdp"), OFFER.into()).await;
    assert_status(&r, 201);
    let current = location_of(&r);
    assert_ne!(replaced, current, "each offer gets its own resource");
    let before = session_snapshot(&server, &id).await;
    assert_eq!(before["state"], "created", "{before}");
    assert!(before["end_reason"].is_null(), "{before}");

    let r = send(server.http.delete(server.url(&replaced))).await;
    assert_error(&r, 404, "peer_not_found");
    assert_eq!(session_snapshot(&server, &id).await, before);
    let frag_ct = Some("application/trickle-ice-sdpfrag");
    let r = trickle(&server, &replaced, frag_ct, SDPFRAG).await;
    assert_error(&r, 404, "peer_not_found");
    // The current resource is still the session's peer.
    let r = trickle(&server, &current, frag_ct, SDPFRAG).await;
    assert_status(&r, 204);
    assert_eq!(session_snapshot(&server, &id).await, before);

    let r = send(server.http.delete(server.url(&current))).await;
    assert_status(&r, 200);
    let ended = session_snapshot(&server, &id).await;
    assert_eq!(ended["state"], "abandoned", "{ended}");
    assert_eq!(ended["end_reason"], "participant_ended", "{ended}");
    assert!(ended["ended_at"].is_string(), "{ended}");
    assert!(ended["drop_off"].is_null(), "never started: {ended}");
    let last = ended["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(last["from"], "created", "{ended}");
    assert_eq!(last["to"], "abandoned", "{ended}");
    assert_eq!(last["cause"], "participant ended the interview", "{ended}");
    assert_eq!(
        invite_view(&server, &token).await["session"]["state"],
        "abandoned"
    );

    for path in [&replaced, &current] {
        let r = send(server.http.delete(server.url(path))).await;
        assert_error(&r, 409, "session_ended");
    }
    let r = whip(&server, &token, Some("application/sdp"), OFFER.into()).await;
    assert_error(&r, 409, "session_ended");
    assert_eq!(session_snapshot(&server, &id).await, ended);
    assert_eq!(session_count(&server).await, 1);
    assert_still_serves(&server).await;
}

// ---------------------------------------------------------------------------------------------
// 7. Opening the invite link
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn opening_the_invite_link_creates_one_session_with_its_query_metadata() {
    let server = Server::start(&[]).await;
    let (token, _) = server.invite().await;
    assert_eq!(session_count(&server).await, 0);
    assert_eq!(invite_view(&server, &token).await["session"], Value::Null);

    let r = open_page(&server, &token, "?ref=abc&utm_source=mail").await;
    assert_status(&r, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "page content type {:?}",
        r.header("content-type")
    );
    let all = sessions(&server).await;
    assert_eq!(all.len(), 1, "one session: {all:?}");
    let id = all[0]["id"].as_str().expect("id").to_string();
    assert_eq!(session_id_of(&server, &token).await, id);

    let s = server.session(&id).await;
    assert_eq!(s["state"], "created", "{s}");
    assert_eq!(s["consented"], false, "{s}");
    assert_eq!(s["metadata"]["ref"], "abc", "{s}");
    assert_eq!(s["metadata"]["utm_source"], "mail", "{s}");
    assert_eq!(s["user_agent"], TEST_USER_AGENT, "{s}");
    assert_eq!(s["invite_token"], token.as_str(), "{s}");

    // Opening it again, alone or several times at once, creates nothing more.
    let r = open_page(&server, &token, "?ref=second").await;
    assert_status(&r, 200);
    let replies =
        futures_util::future::join_all((0..5).map(|_| open_page(&server, &token, "?ref=burst")))
            .await;
    for r in &replies {
        assert_status(r, 200);
    }
    assert_eq!(session_count(&server).await, 1);
    assert_eq!(session_id_of(&server, &token).await, id);
    assert_eq!(server.session(&id).await["metadata"]["ref"], "abc");

    // A fresh invite opened many times at once also gets exactly one session.
    let (token2, _) = server.invite().await;
    let replies =
        futures_util::future::join_all((0..6).map(|_| open_page(&server, &token2, "?ref=race")))
            .await;
    for r in &replies {
        assert_status(r, 200);
    }
    assert_eq!(session_count(&server).await, 2);

    // The invite's own metadata and the link's parameters both land in the session.
    let r = send(
        server
            .admin(server.http.post(server.url("/v1/invites")))
            .json(&json!({"metadata": {"cohort": "a"}})),
    )
    .await;
    assert_status(&r, 201);
    let token3 = r.json()["token"].as_str().expect("token").to_string();
    let r = open_page(&server, &token3, "?ref=abc&panel=p7").await;
    assert_status(&r, 200);
    let s = server.session(&session_id_of(&server, &token3).await).await;
    assert_eq!(s["metadata"]["cohort"], "a", "{s}");
    assert_eq!(s["metadata"]["panel"], "p7", "{s}");
    assert_eq!(s["metadata"]["ref"], "abc", "{s}");
    assert_still_serves(&server).await;
}
