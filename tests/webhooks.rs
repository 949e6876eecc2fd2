//! Webhooks (issue 15) against a real server and real receivers on loopback:
//! - a receiver that checks every Standard Webhooks signature with its own HMAC, fails the
//!   first three deliveries of each event and accepts the fourth (backoff 200 ms doubling);
//! - a receiver that accepts connections and never answers, holding deliveries in flight
//!   while a real interview runs: the media plane misses no 20 ms deadline;
//! - a receiver that is down when a session ends, the server SIGKILLed right after: the
//!   event is delivered after the restart on the same data directory;
//! - the delivery log with every attempt, redelivery by hand, and the routes' authorization.

mod support;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Server, short_interview};

const ENV: [(&str, &str); 4] = [
    ("EARSHOT_INTERVIEWER_SILENCE_MS", "800"),
    ("EARSHOT_WEBHOOKS_BACKOFF_INITIAL_MS", "200"),
    ("EARSHOT_WEBHOOKS_BACKOFF_MAX_SECS", "2"),
    ("EARSHOT_WEBHOOKS_TIMEOUT_MS", "1000"),
];

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    id: String,
    body: Value,
    /// The signature matched the receiver's own HMAC of `id.timestamp.body`, and the
    /// timestamp is within five minutes of now.
    valid: bool,
    at: Instant,
    answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    /// The endpoint's secret (`whsec_...`), known once the endpoint is created.
    secret: Mutex<Option<String>>,
    /// Answer 500 to the first `fail_first` deliveries of each webhook-id.
    fail_first: usize,
    hits: Mutex<Vec<Hit>>,
}

fn verify(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
    else {
        return false;
    };
    let Ok(ts_secs) = ts.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    // The header may carry several space-separated signatures.
    (now - ts_secs).abs() < 300 && sig.split(' ').any(|s| s == want)
}

async fn receive(
    State(st): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let secret = st.secret.lock().expect("lock").clone().unwrap_or_default();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut hits = st.hits.lock().expect("lock");
    let before = hits.iter().filter(|h| h.id == id).count();
    let answered = if before < st.fail_first { 500 } else { 200 };
    hits.push(Hit {
        valid: verify(&secret, &headers, &body),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        id,
        at: Instant::now(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An answering receiver on `listener`.
fn start_receiver(listener: std::net::TcpListener, fail_first: usize) -> Arc<ReceiverState> {
    let st = Arc::new(ReceiverState {
        fail_first,
        ..ReceiverState::default()
    });
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(st.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    st
}

/// A receiver that accepts connections and never answers; returns its address.
async fn start_silent_receiver() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

fn hits(st: &ReceiverState) -> Vec<Hit> {
    st.hits.lock().expect("lock").clone()
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_endpoint(server: &Server, body: Value) -> Value {
    let r = server
        .admin(server.http.post(server.url("/v1/webhooks")))
        .json(&body)
        .send()
        .await
        .expect("create webhook");
    assert_eq!(r.status(), 201, "create webhook {body}");
    r.json().await.expect("webhook json")
}

async fn deliveries(server: &Server, endpoint: &str) -> Vec<Value> {
    let r = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/webhooks/{endpoint}/deliveries"))),
        )
        .send()
        .await
        .expect("deliveries");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Opens and consents an invite, then ends the session as an admin; returns its id.
async fn admin_ended_session(server: &Server) -> String {
    let (token, _) = server.invite().await;
    let id = support::interview::open_and_consent(server, &token).await;
    server.end_session(&id).await;
    id
}

async fn refuses_non_admins(server: &Server, invite_token: &str) {
    for (method, path) in [
        ("GET", "/v1/webhooks"),
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/webhooks/whk_x"),
        ("DELETE", "/v1/webhooks/whk_x"),
        ("GET", "/v1/webhooks/whk_x/deliveries"),
        ("POST", "/v1/webhooks/whk_x/deliveries/dlv_x/redeliver"),
    ] {
        for token in [None, Some("wrong-token"), Some(invite_token)] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = server.http.request(method.clone(), server.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req
                .json(&json!({"url": "http://127.0.0.1:9/x", "events": ["session.completed"]}))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 401, "{method} {path} with {token:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_logged_and_survive_a_kill() {
    let good_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let good_addr = good_listener.local_addr().expect("addr");
    let good = start_receiver(good_listener, 3);
    let silent = start_silent_receiver().await;
    // The receiver that is down until after the kill: its port is reserved, then freed.
    let down_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };

    let server = Server::start(&ENV).await;
    let (invite_token, _) = server.invite().await;
    refuses_non_admins(&server, &invite_token).await;
    for (body, status, code) in [
        (
            json!({"url": "ftp://x/y", "events": ["session.completed"]}),
            400,
            "invalid_webhook",
        ),
        (
            json!({"url": "http://x/y", "events": ["session.started"]}),
            400,
            "invalid_webhook",
        ),
        (
            json!({"url": "http://x/y", "events": []}),
            400,
            "invalid_webhook",
        ),
        (
            json!({"url": "http://x/y", "events": ["session.completed"], "campaign_id": "cmp_nope"}),
            404,
            "campaign_not_found",
        ),
        (json!({"url": "http://x/y"}), 400, "invalid_json"),
    ] {
        let r = server
            .admin(server.http.post(server.url("/v1/webhooks")))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), status, "{body}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], code, "{body}");
    }

    let good_ep = create_endpoint(
        &server,
        json!({"url": format!("http://{good_addr}/hook"),
               "events": ["session.completed", "recording.ready", "export.ready"]}),
    )
    .await;
    *good.secret.lock().expect("lock") = good_ep["secret"].as_str().map(String::from);
    let silent_ep = create_endpoint(
        &server,
        json!({"url": format!("http://{silent}/hook"),
               "events": ["session.completed", "session.admin_ended"]}),
    )
    .await;
    let down_ep = create_endpoint(
        &server,
        json!({"url": format!("http://{down_addr}/hook"),
               "events": ["session.admin_ended"], "campaign_id": "cmp_default"}),
    )
    .await;
    let listed: Value = server
        .admin(server.http.get(server.url("/v1/webhooks")))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let listed = listed["webhooks"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 3);
    assert!(
        listed.iter().all(|w| w.get("secret").is_none()),
        "secrets are shown once"
    );

    // Deliveries to the silent receiver hang until their timeout, again and again, while a
    // real interview runs.
    for _ in 0..8 {
        admin_ended_session(&server).await;
    }
    let script = short_interview::create_script(&server, "How was your week?").await;
    let started = Instant::now();
    let p = short_interview::run(&server, &script, 6).await;
    let interview_took = started.elapsed();
    let missed = server.metric("earshot_media_deadline_missed_total").await;
    let ticks = server.metric("earshot_media_ticks_total").await;
    let silent_log = deliveries(&server, silent_ep["id"].as_str().expect("id")).await;
    let timed_out = silent_log
        .iter()
        .flat_map(|d| d["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["error"].as_str().is_some_and(|e| e.contains("timed out")))
        .count();
    eprintln!(
        "interview with a silent receiver: {interview_took:?}, {timed_out} attempts timed out meanwhile, {missed} of {ticks} ticks missed their deadline"
    );
    assert!(
        timed_out >= 8,
        "the silent receiver held deliveries: {silent_log:#?}"
    );
    // Zero when the machine is not shared; other work on the same two cores (a busy CI
    // machine) can make a tick late whatever the webhooks do, so the bound is the one
    // tests/e2e_interview.rs holds every interview to.
    assert!(
        missed <= ticks * 0.01,
        "a silent receiver must not slow the media plane: {missed} of {ticks} ticks late"
    );
    assert!(
        interview_took < Duration::from_secs(25),
        "the interview took {interview_took:?}"
    );

    // The good receiver: session.completed failed three times, then delivered; every
    // request signed.
    let completed = |h: &Hit| h.body["type"] == "session.completed";
    wait_for(
        "session.completed delivered",
        Duration::from_secs(20),
        || {
            hits(&good)
                .iter()
                .any(|h| completed(h) && h.answered == 200)
        },
    )
    .await;
    let got: Vec<Hit> = hits(&good).into_iter().filter(completed).collect();
    assert_eq!(
        got.iter().map(|h| h.answered).collect::<Vec<_>>(),
        vec![500, 500, 500, 200]
    );
    assert!(got.iter().all(|h| h.valid), "every signature verifies");
    assert!(
        got.iter().all(|h| h.id == got[0].id),
        "one webhook-id per event"
    );
    let gaps: Vec<u128> = got
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis())
        .collect();
    eprintln!("session.completed attempts: gaps {gaps:?} ms (backoff 200, 400, 800)");
    for (gap, backoff) in gaps.iter().zip([200u128, 400, 800]) {
        assert!(
            *gap >= backoff - 20 && *gap < backoff + 1500,
            "gaps {gaps:?}"
        );
    }
    let data = &got[3].body["data"];
    assert_eq!(data["session_id"], p.session_id.as_str());
    assert_eq!(data["state"], "completed");
    assert!(
        data["links"]["export_pdf"]
            .as_str()
            .is_some_and(|u| u.starts_with(&server.base) && u.ends_with("/export.pdf"))
    );
    for kind in ["recording.ready", "export.ready"] {
        wait_for(kind, Duration::from_secs(20), || {
            hits(&good)
                .iter()
                .any(|h| h.body["type"] == kind && h.answered == 200 && h.valid)
        })
        .await;
    }
    let rec = hits(&good)
        .into_iter()
        .find(|h| h.body["type"] == "recording.ready")
        .expect("recording.ready");
    assert_eq!(
        rec.body["data"]["recordings"].as_array().map(Vec::len),
        Some(6)
    );
    assert!(
        !hits(&good)
            .iter()
            .any(|h| h.body["type"] == "session.admin_ended"),
        "an endpoint gets only the events it asked for"
    );

    // The delivery log: four attempts with status and response time.
    let good_id = good_ep["id"].as_str().expect("id").to_string();
    let log = deliveries(&server, &good_id).await;
    let d = log
        .iter()
        .find(|d| d["type"] == "session.completed")
        .expect("the delivery")
        .clone();
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempt_count"], 4);
    let codes: Vec<i64> = d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].as_i64().expect("status"))
        .collect();
    assert_eq!(codes, vec![500, 500, 500, 200]);
    assert!(
        d["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .all(|a| a["response_ms"].as_i64().is_some_and(|ms| ms < 1000))
    );

    // Redelivery by hand: the same event again.
    let r = server
        .admin(server.http.post(server.url(&format!(
            "/v1/webhooks/{good_id}/deliveries/{}/redeliver",
            d["id"].as_str().expect("id")
        ))))
        .send()
        .await
        .expect("redeliver");
    assert_eq!(r.status(), 202);
    wait_for("the redelivery", Duration::from_secs(10), || {
        hits(&good).iter().filter(|h| completed(h)).count() == 5
    })
    .await;
    let again = hits(&good).into_iter().rfind(completed).expect("hit");
    assert!(again.valid && again.id == got[0].id && again.answered == 200);
    let r = server
        .admin(server.http.post(server.url(&format!(
            "/v1/webhooks/{good_id}/deliveries/dlv_nope/redeliver"
        ))))
        .send()
        .await
        .expect("redeliver");
    assert_eq!(r.status(), 404);

    // A session ends while its receiver is down; the server is SIGKILLed right after.
    let last = admin_ended_session(&server).await;
    let data_dir = server.kill_keep_data();
    let down = start_receiver(std::net::TcpListener::bind(down_addr).expect("rebind"), 0);
    *down.secret.lock().expect("lock") = down_ep["secret"].as_str().map(String::from);
    let restarted_at = Instant::now();
    let server = Server::start_in(data_dir, &ENV).await;
    wait_for(
        "the event after the restart",
        Duration::from_secs(30),
        || {
            hits(&down)
                .iter()
                .any(|h| h.body["data"]["session_id"] == last.as_str())
        },
    )
    .await;
    eprintln!(
        "delivered {:?} after the restart began",
        restarted_at.elapsed()
    );
    let got = hits(&down);
    assert!(
        got.iter()
            .all(|h| h.valid && h.body["type"] == "session.admin_ended")
    );
    // Each of the nine admin-ended sessions, once the receiver was up (at least once).
    wait_for("all nine", Duration::from_secs(30), || {
        let ids: std::collections::HashSet<String> = hits(&down)
            .iter()
            .map(|h| {
                h.body["data"]["session_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        ids.len() == 9
    })
    .await;
    let log = deliveries(&server, down_ep["id"].as_str().expect("id")).await;
    let last_delivery = log
        .iter()
        .find(|d| d["session_id"] == last.as_str())
        .expect("logged");
    assert_eq!(last_delivery["status"], "delivered", "{last_delivery:#}");
    let attempts = last_delivery["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts.last().and_then(|a| a["status_code"].as_i64()),
        Some(200)
    );
    assert!(
        attempts[..attempts.len() - 1]
            .iter()
            .all(|a| a["status_code"].is_null() && a["error"].is_string()),
        "attempts before the restart failed to connect: {attempts:#?}"
    );

    // The delivery states in /metrics: nothing of the good or down receivers is left over.
    assert!(
        server
            .metric("earshot_webhook_deliveries{status=\"delivered\"}")
            .await
            >= 12.0
    );
    assert_eq!(
        server
            .metric("earshot_webhook_deliveries{status=\"failed\"}")
            .await,
        0.0
    );

    // Deleting an endpoint.
    let r = server
        .admin(
            server
                .http
                .delete(server.url(&format!("/v1/webhooks/{good_id}"))),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/webhooks/{good_id}"))),
        )
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 404);
}
