//! HTTPS served directly (F11): with `[server] tls_cert` / `tls_key` a Chromium participant on
//! `https://` completes an interview, the live WebSocket works as WSS, and after SIGHUP with a
//! new certificate (from another CA) new connections get it.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::browser::Browser;
use support::pki::TestCa;
use support::{Server, fixture, join_interview};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_on_https_completes_an_interview_and_monitors_use_wss() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("Earshot test CA");
    let cert = ca.server_cert(dir.path(), "server");
    let (c, k) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let server = Server::start_https(
        &[
            ("EARSHOT_SERVER_TLS_CERT", c.as_str()),
            ("EARSHOT_SERVER_TLS_KEY", k.as_str()),
            ("EARSHOT_INTERVIEWER_SILENCE_MS", "1000"),
        ],
        ca.client_config(),
    )
    .await;
    assert!(server.base.starts_with("https://"));
    let (_token, url) = server.invite().await;
    assert!(
        url.starts_with("https://127.0.0.1:"),
        "invite links are https: {url}"
    );
    let flag = format!(
        "--ignore-certificate-errors-spki-list={}",
        cert.spki_sha256_b64
    );
    let mut b = Browser::launch_with(&url, Some(&fixture("participant_speech.wav")), &[flag]).await;
    let id = join_interview(&mut b, &server).await;
    assert_eq!(
        b.eval("location.protocol").await,
        serde_json::json!("https:")
    );
    assert_eq!(
        b.eval("window.isSecureContext").await,
        serde_json::json!(true)
    );

    // A monitor over WSS: TLS with the test CA, then the WebSocket on it.
    let port: u16 = server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut ws = ca
        .wss(
            port,
            &format!("/v1/sessions/{id}/live?token={}", support::ADMIN_TOKEN),
        )
        .await;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a live event in time")
        .expect("open")
        .expect("frame");
    let text = first.into_text().expect("text");
    assert!(
        text.contains("snapshot") || text.contains("\"type\""),
        "{text}"
    );

    let done = server
        .wait_session(&id, Duration::from_secs(150), |s| s["state"] == "completed")
        .await;
    assert_eq!(
        done["state"],
        "completed",
        "{done:#}\nlog:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_new_certificate_to_new_connections() {
    let dir = tempfile::tempdir().expect("tmp");
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let cert = old_ca.server_cert(dir.path(), "server");
    let (c, k) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let server = Server::start_https(
        &[
            ("EARSHOT_SERVER_TLS_CERT", c.as_str()),
            ("EARSHOT_SERVER_TLS_KEY", k.as_str()),
        ],
        old_ca.client_config(),
    )
    .await;
    let client = |ca: &TestCa| {
        reqwest::Client::builder()
            .use_preconfigured_tls(ca.client_config())
            .build()
            .expect("client")
    };
    let healthz = server.url("/healthz");
    assert!(client(&old_ca).get(&healthz).send().await.is_ok());
    assert!(
        client(&new_ca).get(&healthz).send().await.is_err(),
        "the new CA is not trusted yet"
    );

    // Rotate: a certificate from the new CA in the same files, then SIGHUP.
    let rotated = new_ca.server_cert(dir.path(), "rotated");
    std::fs::copy(&rotated.cert, &cert.cert).expect("copy cert");
    std::fs::copy(&rotated.key, &cert.key).expect("copy key");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log().contains("TLS certificate reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client(&new_ca)
        .get(&healthz)
        .send()
        .await
        .expect("new certificate served");
    assert_eq!(r.status(), 200);
    assert!(
        client(&old_ca).get(&healthz).send().await.is_err(),
        "the old certificate is gone"
    );

    // A broken file at the next reload keeps the running certificate.
    std::fs::write(&cert.cert, "not a certificate").expect("write");
    let mark = server.log().len();
    assert_eq!(
        unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log()[mark..].contains("TLS certificate reload refused") {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(client(&new_ca).get(&healthz).send().await.is_ok());
}
