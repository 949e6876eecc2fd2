//! End to end: defects an outside probe found (issue 10, item 9), against the real `earshot`
//! process: protective response headers, bounded error messages, prompt audio confined to
//! the prompts directory, and secrets kept private.

mod support;

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use support::Server;
use support::sdp::OFFER;

/// A consented invite: (token, session id).
async fn consented(server: &Server) -> (String, String) {
    let (token, _) = server.invite().await;
    let id = support::interview::open_and_consent(server, &token).await;
    (token, id)
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{} has no {name} header", r.url()))
}

/// The `nonce` attribute of the first `<tag ` in `html`.
fn nonce_of(html: &str, tag: &str) -> String {
    let at = html
        .find(&format!("<{tag} nonce=\""))
        .expect("tag with a nonce")
        + tag.len()
        + 9;
    html[at..].split('"').next().expect("nonce").to_string()
}

#[tokio::test]
async fn the_page_and_the_api_send_protective_headers() {
    let server = Server::start(&[]).await;
    let (token, _) = server.invite().await;
    let mut nonces = Vec::new();
    for path in [
        format!("/i/{token}"),
        format!("/i/{token}?ref=x"),
        "/i/nope".into(),
    ] {
        let r = server
            .http
            .get(server.url(&path))
            .send()
            .await
            .expect("page");
        let status = r.status().as_u16();
        let csp = header(&r, "content-security-policy").to_string();
        assert_eq!(header(&r, "x-frame-options"), "DENY");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(header(&r, "referrer-policy"), "no-referrer");
        assert_eq!(header(&r, "cache-control"), "no-store");
        for directive in [
            "default-src 'none'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp:?} lacks {directive}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let html = r.text().await.expect("html");
        let nonce = nonce_of(&html, "script");
        assert_eq!(nonce_of(&html, "style"), nonce);
        assert!(
            csp.contains(&format!("script-src 'nonce-{nonce}'")),
            "{csp}"
        );
        assert!(csp.contains(&format!("style-src 'nonce-{nonce}'")), "{csp}");
        assert!(!nonces.contains(&nonce), "a fresh nonce per response");
        nonces.push(nonce);
        assert_eq!(status, if path.contains("nope") { 404 } else { 200 });
    }
    // The JSON API: a success, an error, and the health check.
    let (token2, _) = server.invite().await;
    for (path, status) in [
        (format!("/v1/invites/{token2}"), 200),
        ("/v1/invites/nope".to_string(), 404),
        ("/healthz".to_string(), 200),
    ] {
        let r = server
            .http
            .get(server.url(&path))
            .send()
            .await
            .expect("api");
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&r, "cache-control"), "no-store", "{path}");
    }
}

/// A 1 MB bad input used to come back whole in the error message.
#[tokio::test]
async fn huge_bad_inputs_get_short_error_messages() {
    let server = Server::start(&[]).await;
    let (token, _) = consented(&server).await;
    let mb = 1 << 20;
    let bad_sdp = format!("v=0\r\n{}\r\n", "x".repeat(mb));
    let bad_frag = format!("a=candidate:{}\r\n", "y".repeat(mb));
    let bad_key = format!(r#"{{"{}":1}}"#, "z".repeat(mb));
    let requests = [
        (
            "whip offer",
            server
                .http
                .post(server.url(&format!("/v1/invites/{token}/whip")))
                .header(CONTENT_TYPE, "application/sdp")
                .body(bad_sdp),
        ),
        (
            "trickle",
            server
                .http
                .patch(server.url(&format!("/v1/invites/{token}/whip/peer_x")))
                .header(CONTENT_TYPE, "application/trickle-ice-sdpfrag")
                .body(bad_frag),
        ),
        (
            "invite body",
            server
                .admin(server.http.post(server.url("/v1/invites")))
                .header(CONTENT_TYPE, "application/json")
                .body(bad_key.clone()),
        ),
        (
            "script body",
            server
                .admin(server.http.post(server.url("/v1/scripts")))
                .header(CONTENT_TYPE, "application/json")
                .body(bad_key),
        ),
    ];
    for (what, req) in requests {
        let r = req.send().await.expect(what);
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        assert!((400..500).contains(&status), "{what}: {status}");
        assert!(body.len() < 1024, "{what}: {} byte error", body.len());
        let v: Value = serde_json::from_slice(&body).expect("json error");
        let message = v["error"]["message"].as_str().expect("message");
        assert!(
            message.chars().count() <= 201,
            "{what}: {} chars",
            message.chars().count()
        );
        eprintln!("{what}: {status} {} bytes: {v}", body.len());
    }
}

/// A script's prompt `audio` used to accept any readable file on the server (`/etc/shadow`
/// -> 201), whose path a failing offer then showed the participant in a 503.
#[tokio::test]
async fn prompt_audio_comes_only_from_the_prompts_directory() {
    let server = Server::start(&[]).await;
    let prompts = server.data_path().join("prompts");
    std::fs::write(prompts.join("not-audio.wav"), b"this is no WAV file").expect("write");
    let outside = server.data_path().join("outside.wav");
    std::fs::copy(prompts.join("default/q1.wav"), &outside).expect("copy");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, prompts.join("link.wav")).expect("symlink");
    let script = |audio: &str| json!({"name": "s", "prompts": [{"id": "q1", "text": "Hello?", "audio": audio}]});
    let create = |body: Value| {
        server
            .admin(server.http.post(server.url("/v1/scripts")))
            .json(&body)
            .send()
    };
    let outside_path = outside.to_str().expect("utf-8 path").to_string();
    for audio in [
        "/etc/shadow",
        "/etc/passwd",
        outside_path.as_str(),
        "../outside.wav",
        "default/../../outside.wav",
        "link.wav",
        "nope.wav",
    ] {
        let r = create(script(audio)).await.expect("create");
        assert_eq!(r.status(), 400, "{audio}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "invalid_script", "{audio}: {v}");
        let message = v["error"]["message"].as_str().expect("message");
        let data_dir = server.data_path().to_str().expect("utf-8");
        assert!(
            !message.contains(data_dir) || audio.contains(data_dir),
            "{message}"
        );
    }
    // The built-in prompts are there by name.
    let r = create(script("default/q1.wav")).await.expect("create");
    assert_eq!(r.status(), 201);

    // A file in the directory that is no audio: the offer fails, and the participant is not
    // told where the server keeps its files.
    let r = create(script("not-audio.wav")).await.expect("create");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    let script_id = v["id"].as_str().expect("id");
    let r = server
        .admin(server.http.post(server.url("/v1/invites")))
        .json(&json!({"script_id": script_id}))
        .send()
        .await
        .expect("invite");
    let token = r.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string();
    server
        .http
        .post(server.url(&format!("/v1/invites/{token}/consent")))
        .json(&json!({"accept": true}))
        .send()
        .await
        .expect("consent");
    let r = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/whip")))
        .header(CONTENT_TYPE, "application/sdp")
        .body(OFFER)
        .send()
        .await
        .expect("offer");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    eprintln!("offer with an undecodable prompt: {status} {body}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("media_unavailable"), "{body}");
    assert!(!body.contains('/'), "no path in {body}");
    assert!(!body.contains("not-audio"), "no file name in {body}");
    assert!(
        server.log().contains("not-audio.wav"),
        "the detail is logged"
    );
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The admin token was logged on every start, a one-character token was accepted, and the
/// database (invite tokens) and recordings were readable by every local user.
#[tokio::test]
async fn secrets_stay_private() {
    // Set by the operator: never logged.
    let server = Server::start(&[]).await;
    let (token, _) = server.invite().await;
    assert!(
        !server.log().contains(support::ADMIN_TOKEN),
        "{}",
        server.log()
    );
    assert!(!server.log().contains("Bearer"), "{}", server.log());
    #[cfg(unix)]
    {
        let data = server.data_path();
        for (name, want) in [
            ("earshot.db", 0o600),
            ("earshot.db-wal", 0o600),
            ("earshot.db-shm", 0o600),
            ("recordings", 0o700),
        ] {
            assert_eq!(mode(&data.join(name)), want, "{name}");
        }
    }
    assert!(!server.log().contains(&token));
    drop(server);

    // Generated: shown once, on the start that made it, and stored 0600.
    let no_env = [(support::ADMIN_TOKEN_VAR, "")];
    let server = Server::start(&no_env).await;
    let stored = std::fs::read_to_string(server.data_path().join("admin_token")).expect("stored");
    assert!(stored.len() >= 32, "{stored}");
    assert_eq!(
        server.log().matches(stored.as_str()).count(),
        1,
        "{}",
        server.log()
    );
    #[cfg(unix)]
    assert_eq!(mode(&server.data_path().join("admin_token")), 0o600);
    let dir = server.kill_keep_data();
    let server = Server::start_in(dir, &no_env).await;
    assert_eq!(
        server.log().matches(stored.as_str()).count(),
        0,
        "{}",
        server.log()
    );
    let r = server
        .http
        .get(server.url("/v1/sessions"))
        .bearer_auth(stored.trim())
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200, "the stored token still works");
    drop(server);

    // Too short: the start is refused with a clear message.
    for short in ["x", "0123456789abcdef0123456789abcde"] {
        let dir = tempfile::tempdir().expect("dir");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env(support::ADMIN_TOKEN_VAR, short)
            .output()
            .expect("run earshot");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{short:?} accepted: {stderr}");
        assert!(stderr.contains("at least 32 characters"), "{stderr}");
        if short.len() > 8 {
            assert!(
                !stderr.contains(short),
                "the refused token is not echoed: {stderr}"
            );
        }
    }
}

/// The probes are public and say nothing about sessions: `/healthz` while HTTP is served,
/// `/readyz` when a session could be taken (store answering, room for recordings).
#[tokio::test]
async fn probes_answer_without_a_token() {
    let server = Server::start(&[]).await;
    let r = server
        .http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["checks"]["store"], "ok", "{v}");
    assert!(v["free_bytes"].as_u64().is_some_and(|b| b > 0), "{v}");
    let r = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    // Only GET.
    let r = server
        .http
        .post(server.url("/readyz"))
        .send()
        .await
        .expect("post readyz");
    assert_eq!(r.status(), 405);
}
