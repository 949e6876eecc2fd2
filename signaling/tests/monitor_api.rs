//! Live monitoring routes of issue 11 against the real router on loopback (real HTTP and
//! WebSocket, SQLite on a temporary file, a media plane test double): the WHEP listen-in
//! (offer, trickle, leave, the media plane's own end of it), its history in the session
//! detail and its live events, the quality signals kept and published with why a session
//! needs attention, the dashboard's JSON, the WebSocket's subprotocol token, and the wrong
//! callers refused.

mod support;

use earshot_signaling::media_port::{MediaEvent, QualitySignals};
use reqwest::Method;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, HANG, Monitor, TestServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A listener offer as far as the test double cares (it refuses anything else as bad SDP).
const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A monitor authorized the way the monitoring pages do it: the subprotocol list.
async fn page_monitor(srv: &TestServer, id: &str) -> Monitor {
    let mut req = format!("{}/v1/sessions/{id}/live", srv.ws_base)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("earshot-live, earshot-token.{}", hex(ADMIN_TOKEN))
            .parse()
            .unwrap(),
    );
    let (ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        res.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("earshot-live"),
        "the server picks the live protocol"
    );
    Monitor { ws }
}

async fn detail(srv: &TestServer, id: &str) -> Value {
    srv.admin_get_json(&format!("/v1/sessions/{id}")).await
}

/// A consented session whose participant's media connected: `in_progress`.
async fn live_session(srv: &TestServer) -> (String, String) {
    let (token, id) = srv
        .consented_session(json!({"metadata": {"label": "Panel A #7"}}))
        .await;
    let res = srv
        .http
        .post(format!("{}/v1/invites/{token}/whip", srv.base))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    srv.send(MediaEvent::Connected {
        session_id: id.clone(),
    })
    .await;
    let deadline = tokio::time::Instant::now() + HANG;
    while detail(srv, &id).await["state"] != "in_progress" {
        assert!(tokio::time::Instant::now() < deadline, "never in progress");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (token, id)
}

async fn metrics(srv: &TestServer) -> String {
    srv.admin(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn error_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

async fn offer(srv: &TestServer, id: &str, content_type: &str, body: &str) -> reqwest::Response {
    srv.admin(Method::POST, &format!("/v1/sessions/{id}/whep"))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_in_is_answered_recorded_announced_and_ended() {
    let srv = TestServer::start().await;
    // Before the interview has media there is nothing to hear.
    let (_, early) = srv.consented_session(json!({})).await;
    assert_eq!(
        error_of(offer(&srv, &early, "application/sdp", OFFER).await).await,
        (409, "no_live_media".into())
    );

    let (_, id) = live_session(&srv).await;
    let mut watcher = page_monitor(&srv, &id).await;
    assert_eq!(watcher.next_of("snapshot").await["session"]["id"], id);

    let res = offer(&srv, &id, "application/sdp", OFFER).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["content-type"], "application/sdp");
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let prefix = format!("/v1/sessions/{id}/whep/mon_");
    assert!(location.starts_with(&prefix), "{location}");
    let monitor_id = location.rsplit('/').next().unwrap().to_string();
    assert!(res.text().await.unwrap().contains("a=sendonly"));
    assert!(srv.media.calls().contains(&format!("listen {id}")));

    let joined = watcher.next_of("monitor").await;
    assert!(metrics(&srv).await.contains("\nearshot_listen_ins 1\n"));
    assert_eq!(
        joined,
        json!({"type": "monitor", "event": "joined", "id": monitor_id, "listening": 1})
    );
    let d = detail(&srv, &id).await;
    assert_eq!(d["monitors"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["monitors"][0]["id"], monitor_id);
    assert_eq!(d["monitors"][0]["live"], true);
    assert!(d["monitors"][0]["ended_at"].is_null());
    assert!(d["monitors"][0]["started_at"].is_string());

    // Trickle goes to the listener's peer; a wrong content type or fragment is refused.
    let patch = |ct: &'static str, body: &'static str| {
        srv.admin(Method::PATCH, &location)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let frag = "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n";
    assert_eq!(
        patch("application/trickle-ice-sdpfrag", frag)
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(
        srv.media
            .calls()
            .contains(&format!("listener_candidate 0 {id}")),
        "{:?}",
        srv.media.calls()
    );
    assert_eq!(
        error_of(patch("text/plain", frag).await.unwrap()).await,
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        error_of(
            patch("application/trickle-ice-sdpfrag", "a=candidate:1 2\r\n")
                .await
                .unwrap()
        )
        .await,
        (400, "invalid_candidate".into())
    );

    // Leaving: the listener is hung up, the end is stored and announced; once only.
    let res = srv.admin(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(srv.media.calls().contains(&format!("unlisten 0 {id}")));
    let left = watcher.next_of("monitor").await;
    assert_eq!(left["event"], "left");
    assert_eq!(left["listening"], 0);
    let d = detail(&srv, &id).await;
    assert_eq!(d["monitors"][0]["live"], false);
    assert!(d["monitors"][0]["ended_at"].is_string(), "{d}");
    assert!(metrics(&srv).await.contains("\nearshot_listen_ins 0\n"));
    let again = srv.admin(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(error_of(again).await, (404, "monitor_not_found".into()));

    // A listener whose connection ends on its own is ended by the media plane's word.
    let res = offer(&srv, &id, "application/sdp", OFFER).await;
    assert_eq!(res.status(), 201);
    assert_eq!(watcher.next_of("monitor").await["event"], "joined");
    srv.send(MediaEvent::ListenerLeft {
        session_id: id.clone(),
        listener_id: 1,
    })
    .await;
    assert_eq!(watcher.next_of("monitor").await["event"], "left");
    let d = detail(&srv, &id).await;
    let monitors = d["monitors"].as_array().unwrap();
    assert_eq!(monitors.len(), 2);
    assert!(
        monitors
            .iter()
            .all(|m| m["live"] == false && m["ended_at"].is_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_and_unknown_targets_get_stable_codes() {
    let srv = TestServer::start().await;
    let (_, id) = live_session(&srv).await;
    assert_eq!(
        error_of(offer(&srv, &id, "text/plain", OFFER).await).await,
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        error_of(offer(&srv, &id, "application/sdp", "hello").await).await,
        (400, "invalid_sdp".into())
    );
    for unknown in ["ses_abcdefghijklmnopqrst", "nope", "ses_"] {
        assert_eq!(
            error_of(offer(&srv, unknown, "application/sdp", OFFER).await).await,
            (404, "session_not_found".into()),
            "{unknown}"
        );
    }
    let res = srv
        .admin(
            Method::DELETE,
            &format!("/v1/sessions/{id}/whep/mon_abcdefghijklmnopqrst"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (404, "monitor_not_found".into()));
    // A listen-in of one session is not reachable through another's path.
    let (_, other) = live_session(&srv).await;
    let res = offer(&srv, &id, "application/sdp", OFFER).await;
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let elsewhere = location.replace(&id, &other);
    let res = srv.admin(Method::DELETE, &elsewhere).send().await.unwrap();
    assert_eq!(error_of(res).await, (404, "monitor_not_found".into()));
    // An ended session has nothing to listen to.
    let res = srv
        .admin(Method::POST, &format!("/v1/sessions/{other}/end"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        error_of(offer(&srv, &other, "application/sdp", OFFER).await).await,
        (409, "session_ended".into())
    );
    // Nothing was asked of the media plane for the refused offers.
    let listens = srv
        .media
        .calls()
        .iter()
        .filter(|c| c.starts_with("listen "))
        .count();
    assert_eq!(listens, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_callers_are_refused_on_every_monitoring_route() {
    let srv = TestServer::start().await;
    let (invite, id) = live_session(&srv).await;
    let location = format!("/v1/sessions/{id}/whep/mon_abcdefghijklmnopqrst");
    let routes = [
        (Method::POST, format!("/v1/sessions/{id}/whep")),
        (Method::PATCH, location.clone()),
        (Method::DELETE, location),
        (Method::GET, "/v1/monitor/sessions".to_string()),
    ];
    for (method, path) in &routes {
        for bearer in [None, Some("wrong"), Some(invite.as_str())] {
            let mut req = srv
                .http
                .request(method.clone(), format!("{}{path}", srv.base))
                .header("content-type", "application/sdp")
                .body(OFFER);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            let res = req.send().await.unwrap();
            assert_eq!(
                error_of(res).await,
                (401, "unauthorized".into()),
                "{method} {path} with {bearer:?}"
            );
        }
    }
    assert!(
        !srv.media.calls().iter().any(|c| c.starts_with("listen ")),
        "no listener was opened"
    );
    // The live stream: a wrong or the participant's token in the subprotocol list is refused
    // before the upgrade.
    for token in ["wrong", invite.as_str()] {
        let mut req = format!("{}/v1/sessions/{id}/live", srv.ws_base)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            format!("earshot-live, earshot-token.{}", hex(token))
                .parse()
                .unwrap(),
        );
        assert_eq!(srv.refused_status(req).await, 401);
    }
    // The pages hold no data: anyone may load them, under the participant page's policy.
    for page in ["/monitor".to_string(), format!("/monitor/sessions/{id}")] {
        let res = srv
            .http
            .get(format!("{}{page}", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
        let html = res.text().await.unwrap();
        assert!(!html.contains(ADMIN_TOKEN) && !html.contains(&id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_kept_published_and_judged_for_the_dashboard() {
    let srv = TestServer::start().await;
    let (_, id) = live_session(&srv).await;
    let (_, calm) = live_session(&srv).await;
    let mut watcher = page_monitor(&srv, &id).await;
    watcher.next_of("snapshot").await;
    let signals = QualitySignals {
        input_dbfs: -23.5,
        loss: 0.12,
        jitter_ms: 7.5,
        ai_latency_ms: Some(1400),
        ..Default::default()
    };
    srv.send(MediaEvent::Signals {
        session_id: id.clone(),
        signals,
    })
    .await;
    let line = watcher.next_of("signals").await;
    assert_eq!(
        line["loss"].as_f64().map(|l| (l * 100.0).round()),
        Some(12.0)
    );
    assert_eq!(line["ai_latency_ms"], 1400);
    assert_eq!(line["attention"], json!(["loss"]));

    let list: Value = srv
        .admin(Method::GET, "/v1/monitor/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    let mine = sessions.iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert_eq!(mine["state"], "in_progress");
    assert_eq!(mine["label"], "Panel A #7");
    assert_eq!(mine["campaign"]["name"], "Demo");
    assert_eq!(mine["script"]["name"], "Default");
    assert_eq!(mine["attention"], json!(["loss"]));
    assert_eq!(mine["signals"]["jitter_ms"], 7.5);
    assert_eq!(mine["speaking"], "none");
    assert_eq!(mine["listening"], 0);
    assert!(mine["active_ms"].as_i64().is_some_and(|ms| ms >= 0));
    let other = sessions.iter().find(|s| s["id"] == calm.as_str()).unwrap();
    assert_eq!(other["attention"], json!([]));
    assert!(other["signals"].is_null());

    // Filters: state and campaign; anything else is a clear 400.
    let get = |q: &'static str| {
        srv.admin(Method::GET, &format!("/v1/monitor/sessions{q}"))
            .send()
    };
    let paused: Value = get("?state=paused").await.unwrap().json().await.unwrap();
    assert_eq!(paused["sessions"], json!([]));
    let none: Value = get("?campaign=cmp_other")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["sessions"], json!([]));
    let all: Value = get("?campaign=cmp_default&state=in_progress")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["sessions"].as_array().unwrap().len(), 2);
    for bad in ["?state=completed", "?state=bogus", "?limit=3"] {
        assert_eq!(
            error_of(get(bad).await.unwrap()).await,
            (400, "invalid_query".into()),
            "{bad}"
        );
    }
    // An ended session leaves the dashboard.
    let res = srv
        .admin(Method::POST, &format!("/v1/sessions/{id}/end"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = get("").await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, vec![calm.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_participant_feed_carries_only_what_the_participant_may_see() {
    let srv = TestServer::start().await;
    let (token, id) = live_session(&srv).await;
    let (_, other) = live_session(&srv).await;
    // Refusals before the upgrade: unknown invite, no session yet.
    let unknown = format!("{}/v1/invites/inv_doesnotexist/live", srv.ws_base);
    assert_eq!(srv.refused_status(unknown).await, 404);
    let res = srv
        .admin(Method::POST, "/v1/invites")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let fresh = res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let early = format!("{}/v1/invites/{fresh}/live", srv.ws_base);
    assert_eq!(srv.refused_status(early).await, 409);

    let mut monitor = page_monitor(&srv, &id).await;
    monitor.next_of("snapshot").await;
    srv.send(MediaEvent::Progress {
        session_id: id.clone(),
        prompt_index: 0,
        prompt_count: 1,
        prompt_id: "q1".into(),
        text: "Hello?".into(),
    })
    .await;
    // Handled once monitors see it: the feed's first message knows it.
    assert_eq!(monitor.next_of("progress").await["id"], "q1");
    let url = format!("{}/v1/invites/{token}/live", srv.ws_base);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut feed = Monitor { ws };
    assert_eq!(
        feed.next().await.unwrap(),
        json!({"type": "hello", "interviewer_speaking": false,
               "progress": {"index": 0, "count": 1}, "caption": null})
    );
    let m = metrics(&srv).await;
    assert!(m.contains("\nearshot_participant_feeds 1\n"), "{m}");
    assert!(
        m.contains("\nearshot_live_monitors 1\n"),
        "the feed is no monitor: {m}"
    );

    // What monitors see: the participant's feed gets only its part of it, in order.
    let ai = "ai".parse().unwrap();
    let me = "participant".parse().unwrap();
    let events = [
        MediaEvent::Signals {
            session_id: id.clone(),
            signals: QualitySignals::default(),
        },
        MediaEvent::TurnStarted {
            session_id: other.clone(),
            role: ai,
            at_ms: 0,
        },
        MediaEvent::TurnStarted {
            session_id: id.clone(),
            role: ai,
            at_ms: 100,
        },
        MediaEvent::Transcript {
            session_id: id.clone(),
            role: ai,
            text: "How was your week?".into(),
            is_final: true,
            start_ms: 100,
            end_ms: 900,
        },
        MediaEvent::TurnEnded {
            session_id: id.clone(),
            role: ai,
            start_ms: 100,
            end_ms: 900,
        },
        MediaEvent::TurnStarted {
            session_id: id.clone(),
            role: me,
            at_ms: 1000,
        },
        MediaEvent::Transcript {
            session_id: id.clone(),
            role: me,
            text: "a private answer".into(),
            is_final: true,
            start_ms: 1000,
            end_ms: 1500,
        },
    ];
    for ev in events {
        srv.send(ev).await;
    }
    let res = srv.http.post(format!("{}/v1/sessions/{id}/whep", srv.base));
    let res = res
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/sdp")
        .body(OFFER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    srv.send(MediaEvent::Progress {
        session_id: id.clone(),
        prompt_index: 1,
        prompt_count: 2,
        prompt_id: "q2".into(),
        text: "Next?".into(),
    })
    .await;
    let mut got = Vec::new();
    loop {
        let line = feed.next().await.expect("open");
        let last = line["type"] == "progress";
        got.push(line);
        if last {
            break;
        }
    }
    assert_eq!(
        got,
        vec![
            json!({"type": "interviewer", "speaking": true}),
            json!({"type": "caption", "text": "How was your week?", "final": true}),
            json!({"type": "interviewer", "speaking": false}),
            json!({"type": "progress", "index": 1, "count": 2}),
        ]
    );
    // The end of the session ends the feed after its state.
    let res = srv
        .admin(Method::POST, &format!("/v1/sessions/{id}/end"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        feed.next().await,
        Some(json!({"type": "state", "state": "admin_ended"}))
    );
    assert_eq!(feed.next().await, None);
}
