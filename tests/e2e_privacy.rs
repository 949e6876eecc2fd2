//! End to end (issue 16) on a real `earshot` process: a WebRTC participant (webrtc-rs, real
//! UDP on loopback) in a campaign that masks personal data, and a test AI agent speaking the
//! Twilio-style bridge over a real WebSocket whose transcript lines carry an e-mail address
//! and a phone number. A monitor's live transcript and the stored transcript show `[EMAIL]`
//! and `[PHONE]`, the search index does not find the address; then the participant asks for
//! deletion with their deletion token, an admin fulfils it, and the session's folder of
//! recordings written by the media plane is gone from the disk.
//!
//! A second test drives the pages in a real headless Chromium: the consent step states the
//! campaign's retention period; after the interview (here: declined) the end screen links to
//! the deletion page, whose button files the request.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use support::browser::{Browser, visible};
use support::participant::Participant;
use support::{ADMIN_TOKEN, Server};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

const AI_LINE: &str = "Can you confirm your email is jane.doe@example.com?";
const PARTICIPANT_LINE: &str = "Yes, and my phone is (555) 123-4567.";

/// The test agent: waits for `start`, then for `go`, says two transcript lines and ends the
/// interview; reads until Earshot hangs up.
async fn run_agent(listener: TcpListener, go: oneshot::Receiver<()>) {
    let (tcp, _) = listener.accept().await.expect("agent accept");
    let mut ws = tokio_tungstenite::accept_async(tcp)
        .await
        .expect("agent handshake");
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg
            && serde_json::from_str::<Value>(&t).expect("json")["event"] == "start"
        {
            break;
        }
    }
    let _ = go.await;
    for v in [
        json!({"event":"transcript","role":"ai","text":AI_LINE,"final":true,"start_ms":0,"end_ms":1500}),
        json!({"event":"transcript","role":"participant","text":PARTICIPANT_LINE,"final":true,"start_ms":2000,"end_ms":3500}),
    ] {
        ws.send(Message::Text(v.to_string().into()))
            .await
            .expect("agent send");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    ws.send(Message::Text(json!({"event":"end"}).to_string().into()))
        .await
        .expect("agent end");
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {}
}

async fn ok_json(r: reqwest::RequestBuilder, status: u16) -> Value {
    let r = r.send().await.expect("request");
    assert_eq!(r.status(), status, "{}", r.url());
    r.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_live_and_stored_then_deleted_on_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("agent port");
    let agent_url = format!("ws://{}/agent", listener.local_addr().expect("addr"));
    let (go, go_rx) = oneshot::channel();
    let agent = tokio::spawn(run_agent(listener, go_rx));
    let server = Server::start(&[]).await;
    let http = &server.http;
    let campaign = ok_json(
        server
            .admin(http.post(server.url("/v1/campaigns")))
            .json(&json!({"name": "Masked study", "pii_action": "mask"})),
        201,
    )
    .await;
    let cid = campaign["id"].as_str().expect("id").to_string();
    let script = ok_json(
        server
            .admin(http.post(server.url("/v1/scripts")))
            .json(&json!({"name": "agent", "campaign_id": cid,
                          "agent": {"url": agent_url, "audio_format": "l16/16000"}})),
        201,
    )
    .await;
    let participant = Participant::join_invite(
        reqwest::Client::new(),
        &server.base,
        ADMIN_TOKEN,
        json!({"campaign_id": cid, "script_id": script["id"]}),
        None,
    )
    .await;
    let id = participant.session_id.clone();

    // A monitor on the live stream, then the agent speaks.
    let url = format!(
        "{}/v1/sessions/{id}/live?token={ADMIN_TOKEN}",
        server.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("live socket");
    let monitor = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await
        {
            if let Message::Text(t) = msg
                && let Ok(v) = serde_json::from_str::<Value>(&t)
                && v["type"] == "transcript"
            {
                lines.push(v);
            }
        }
        lines
    });
    go.send(()).expect("agent waiting");
    let ended = server
        .wait_session(&id, Duration::from_secs(60), |s| s["state"] == "completed")
        .await;
    assert_eq!(ended["state"], "completed", "{ended}");
    let live = monitor.await.expect("monitor");
    let texts: Vec<&str> = live.iter().filter_map(|v| v["text"].as_str()).collect();
    assert!(
        texts.contains(&"Can you confirm your email is [EMAIL]?"),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"Yes, and my phone is [PHONE]."),
        "{texts:?}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("jane") || t.contains("4567"))
    );
    let stored = ok_json(
        server.admin(http.get(server.url(&format!("/v1/sessions/{id}/transcript")))),
        200,
    )
    .await;
    let turns: Vec<&str> = stored["turns"]
        .as_array()
        .expect("turns")
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert_eq!(
        turns,
        vec![
            "Can you confirm your email is [EMAIL]?",
            "Yes, and my phone is [PHONE]."
        ]
    );
    let found = ok_json(
        server.admin(http.get(server.url("/v1/sessions?q=jane"))),
        200,
    )
    .await;
    assert_eq!(found["sessions"].as_array().expect("list").len(), 0);
    let found = ok_json(
        server.admin(http.get(server.url("/v1/sessions?q=confirm"))),
        200,
    )
    .await;
    assert_eq!(found["sessions"].as_array().expect("list").len(), 1);

    // The recordings are finished on disk (three WAVs, three MP3s, the peaks).
    let done = server
        .wait_session(&id, Duration::from_secs(60), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        done["recordings"].as_array().map(Vec::len),
        Some(6),
        "{done}"
    );
    let folder = server.data_path().join("recordings").join(&id);
    let files = std::fs::read_dir(&folder).expect("session folder").count();
    assert!(files >= 6, "{files} files in {}", folder.display());

    // The participant asks for deletion with their own token; an admin fulfils it.
    let issued = ok_json(
        http.post(server.url(&format!("/v1/invites/{}/deletion-token", participant.token))),
        201,
    )
    .await;
    let token = issued["token"].as_str().expect("token").to_string();
    let page = http
        .get(server.url(&format!("/delete/{token}")))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let filed = ok_json(
        http.post(server.url("/v1/deletion-requests"))
            .json(&json!({"token": token})),
        202,
    )
    .await;
    assert_eq!(filed["state"], "pending");
    let rid = filed["id"].as_str().expect("id").to_string();
    let fulfil = server.url(&format!("/v1/deletion-requests/{rid}/fulfil"));
    for bearer in [participant.token.as_str(), token.as_str(), "wrong"] {
        let r = http
            .post(&fulfil)
            .bearer_auth(bearer)
            .send()
            .await
            .expect("refused");
        assert_eq!(r.status(), 401);
    }
    assert!(folder.exists(), "nothing deleted by refused calls");
    let done = ok_json(server.admin(http.post(&fulfil)), 200).await;
    assert_eq!(done["state"], "fulfilled");
    assert!(!folder.exists(), "{} still there", folder.display());
    let gone = server
        .admin(http.get(server.url(&format!("/v1/sessions/{id}"))))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    let list = ok_json(
        server.admin(http.get(server.url("/v1/deletion-requests"))),
        200,
    )
    .await;
    assert_eq!(list["deletion_requests"][0]["session_id"], id.as_str());
    assert_eq!(list["deletion_requests"][0]["state"], "fulfilled");
    participant.peer.close().await;
    let _ = agent.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_state_retention_and_lead_to_a_deletion_request() {
    let server = Server::start(&[]).await;
    let http = &server.http;
    let campaign = ok_json(
        server
            .admin(http.post(server.url("/v1/campaigns")))
            .json(&json!({"name": "Thirty days", "audio_retention_days": 30})),
        201,
    )
    .await;
    let script = ok_json(
        server
            .admin(http.post(server.url("/v1/scripts")))
            .json(&json!({"name": "s", "campaign_id": campaign["id"],
                          "prompts": [{"id": "q1", "text": "Hi?", "audio": "default/q1.wav"}]})),
        201,
    )
    .await;
    let invite = ok_json(
        server
            .admin(http.post(server.url("/v1/invites")))
            .json(&json!({"campaign_id": campaign["id"], "script_id": script["id"]})),
        201,
    )
    .await;
    let url = invite["url"].as_str().expect("url");
    let mut browser = Browser::launch(url, None).await;
    let wait = Duration::from_secs(20);
    assert!(browser.wait_for(&visible("#consent-retention"), wait).await);
    let said = browser
        .eval("document.querySelector('#consent-retention').textContent")
        .await;
    assert!(
        said.as_str()
            .is_some_and(|t| t.contains("kept for 30 days")),
        "{said}"
    );
    browser.click("#decline").await;
    assert!(
        browser.wait_for(&visible("#deletion-link"), wait).await,
        "the end screen offers deletion"
    );
    let link = browser
        .eval("document.querySelector('#deletion-link').getAttribute('href')")
        .await;
    let link = link.as_str().expect("href").to_string();
    assert!(link.starts_with("/delete/dtk_"), "{link}");
    browser.navigate(&server.url(&link)).await;
    assert!(browser.wait_for(&visible("#ask"), wait).await);
    browser.click("#ask").await;
    assert!(
        browser
            .wait_for("window.earshotDeletion.state === 'pending'", wait)
            .await,
        "the request was filed"
    );
    let list = ok_json(
        server.admin(http.get(server.url("/v1/deletion-requests"))),
        200,
    )
    .await;
    let requests = list["deletion_requests"].as_array().expect("list");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["state"], "pending");
}

/// Sets an input's value as typing would.
async fn fill(b: &mut Browser, selector: &str, value: &str) {
    let js = format!(
        "(() => {{ const e = document.querySelector({}); e.value = {}; return true; }})()",
        serde_json::to_string(selector).expect("selector"),
        serde_json::to_string(value).expect("value")
    );
    assert_eq!(b.eval(&js).await, json!(true), "fill {selector}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sets_a_campaigns_privacy_and_shows_the_retention_panel() {
    let server = Server::start(&[]).await;
    let campaign = ok_json(
        server
            .admin(server.http.post(server.url("/v1/campaigns")))
            .json(&json!({"name": "Console privacy"})),
        201,
    )
    .await;
    let cid = campaign["id"].as_str().expect("id").to_string();
    let mut b = Browser::launch(&server.url("/console"), None).await;
    let wait = Duration::from_secs(20);
    assert!(b.wait_for(&visible("#token"), wait).await);
    fill(&mut b, "#token", ADMIN_TOKEN).await;
    b.click("#signin-form button").await;
    assert!(b.wait_for(&visible("#nav"), wait).await, "signed in");
    b.navigate(&server.url(&format!("/console#/campaigns/{cid}")))
        .await;
    assert!(b.wait_for(&visible("#privacy-form"), wait).await);
    b.eval("document.querySelector('#p-action').value = 'mask'; true")
        .await;
    fill(&mut b, "#p-audio", "14").await;
    fill(
        &mut b,
        "#p-patterns",
        r#"[{"name": "EMPLOYEE_ID", "regex": "\\bE\\d{5}\\b"}]"#,
    )
    .await;
    b.click("#privacy-form button").await;
    assert!(
        b.wait_for(
            "document.querySelector('#privacy-form .ok').textContent === 'Saved.'",
            wait
        )
        .await,
        "saved"
    );
    let c = ok_json(
        server.admin(server.http.get(server.url(&format!("/v1/campaigns/{cid}")))),
        200,
    )
    .await;
    assert_eq!(c["pii_action"], "mask");
    assert_eq!(c["audio_retention_days"], 14);
    assert_eq!(c["pii_patterns"][0]["name"], "EMPLOYEE_ID");
    // A bad pattern is refused with the API's message, and nothing changes.
    fill(&mut b, "#p-patterns", r#"[{"name": "X", "regex": "("}]"#).await;
    b.click("#privacy-form button").await;
    assert!(
        b.wait_for(
            "document.querySelector('#privacy-form .error').textContent.includes('pattern')",
            wait
        )
        .await,
        "refused"
    );
    let again = ok_json(
        server.admin(server.http.get(server.url(&format!("/v1/campaigns/{cid}")))),
        200,
    )
    .await;
    assert_eq!(again, c);
    // The Privacy panel: the sweep that ran at start, and no deletion requests.
    b.navigate(&server.url("/console#/privacy")).await;
    assert!(b.wait_for(&visible("#retention"), wait).await);
    let panel = b
        .eval("document.querySelector('#retention').textContent + '|' + document.querySelector('#deletion-requests').textContent")
        .await;
    let panel = panel.as_str().expect("text");
    assert!(panel.contains("Last sweep"), "{panel}");
    assert!(
        !panel.contains("not yet"),
        "the sweep ran at start: {panel}"
    );
    assert!(panel.contains("No requests."), "{panel}");
}
