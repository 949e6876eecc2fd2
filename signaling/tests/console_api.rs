//! The researcher console's API (issue 14) against the real router on loopback (real HTTP,
//! SQLite on a temporary file, a media plane test double): campaigns, bulk invites (JSON and
//! CSV), the sessions list's filters and pages, analytics, range requests on recordings,
//! the console's cookie sign-in with its CSRF rule, and every new route refusing a missing
//! or wrong token and a participant's invite token.

mod support;

use earshot_signaling::media_port::MediaEvent;
use earshot_signaling::store::{RecordingRow, SessionStore};
use earshot_vocab::{Format, Role, Track};
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, json_of};

/// A campaign with a script; returns (campaign id, script id).
async fn campaign_with_script(srv: &TestServer, name: &str) -> (String, String) {
    srv.campaign_with_script(json!({"name": name, "description": "spring wave"}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_scripts_and_bulk_invites() {
    let srv = TestServer::start().await;
    let (cid, sid) = campaign_with_script(&srv, "Gardeners").await;
    let got = json_of(
        srv.admin(Method::GET, &format!("/v1/campaigns/{cid}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(got["name"], "Gardeners");
    assert_eq!(got["description"], "spring wave");
    let edited = json_of(
        srv.admin(Method::PATCH, &format!("/v1/campaigns/{cid}"))
            .json(&json!({"name": "Gardeners 2026"}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(edited["name"], "Gardeners 2026");
    assert_eq!(edited["description"], "spring wave");
    let bad = json_of(
        srv.admin(Method::POST, "/v1/campaigns")
            .json(&json!({"name": " "}))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(bad["error"]["code"], "invalid_body");
    let list = json_of(
        srv.admin(Method::GET, "/v1/campaigns")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let names: Vec<&str> = list["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Gardeners 2026", "Demo"]);
    let scripts = json_of(
        srv.admin(Method::GET, &format!("/v1/campaigns/{cid}/scripts"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(scripts["scripts"][0]["id"], sid.as_str());

    // Prompt audio uploaded, then the script replaced to use it.
    let wav = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0".to_vec();
    let up = json_of(
        srv.admin(Method::PUT, "/v1/prompts/welcome.wav")
            .body(wav)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    assert_eq!(up["audio"], "uploads/welcome.wav");
    let bad = json_of(
        srv.admin(Method::PUT, "/v1/prompts/welcome.wav")
            .body("not audio")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(bad["error"]["code"], "invalid_audio");
    let replaced = json_of(
        srv.admin(Method::PUT, &format!("/v1/scripts/{sid}"))
            .json(&json!({"name": "Script v2",
                          "prompts": [{"id": "hi", "text": "Welcome!", "audio": "uploads/welcome.wav"}],
                          "recording": {"quality": "ultra"}}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(replaced["id"], sid.as_str());
    assert_eq!(replaced["campaign_id"], cid.as_str());
    let got = json_of(
        srv.admin(Method::GET, &format!("/v1/scripts/{sid}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(got["name"], "Script v2");
    assert_eq!(got["recording"]["quality"], "ultra");
    assert_eq!(got["prompts"][0]["id"], "hi");
    let moved = json_of(
        srv.admin(Method::PUT, &format!("/v1/scripts/{sid}"))
            .json(&json!({"name": "x", "campaign_id": "cmp_default",
                          "prompts": [{"id": "hi", "text": "Hi", "audio": "q1.wav"}]}))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(moved["error"]["code"], "invalid_script");

    // N invites.
    let made = json_of(
        srv.admin(Method::POST, &format!("/v1/campaigns/{cid}/invites"))
            .json(&json!({"script_id": sid, "count": 3}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let links = made["invites"].as_array().unwrap();
    assert_eq!(links.len(), 3);
    let first = links[0]["url"].as_str().unwrap();
    assert!(first.starts_with(&format!("{}/i/", srv.base)), "{first}");
    // A CSV of metadata rows -> the same rows with token and url.
    let csv = "email,cohort\nana@example.org,A\n\"bo, jr@example.org\",B\n";
    let res = srv
        .admin(
            Method::POST,
            &format!("/v1/campaigns/{cid}/invites?script_id={sid}"),
        )
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let out = res.text().await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "email,cohort,token,url");
    assert!(lines[1].starts_with("ana@example.org,A,"), "{out}");
    assert!(lines[2].starts_with("\"bo, jr@example.org\",B,"), "{out}");
    assert_eq!(lines.len(), 3);
    let ragged = json_of(
        srv.admin(
            Method::POST,
            &format!("/v1/campaigns/{cid}/invites?script_id={sid}"),
        )
        .header("content-type", "text/csv")
        .body("a,b\n1,2,3\n")
        .send()
        .await
        .unwrap(),
        400,
    )
    .await;
    assert_eq!(ragged["error"]["code"], "invalid_csv");
    let zero = json_of(
        srv.admin(Method::POST, &format!("/v1/campaigns/{cid}/invites"))
            .json(&json!({"script_id": sid, "count": 0}))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(zero["error"]["code"], "invalid_body");

    // Invite states: opening one creates its session.
    let token = links[0]["token"].as_str().unwrap();
    let res = srv
        .http
        .get(format!("{}/i/{token}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let invites = json_of(
        srv.admin(Method::GET, &format!("/v1/campaigns/{cid}/invites"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let invites = invites["invites"].as_array().unwrap();
    assert_eq!(invites.len(), 5);
    let opened: Vec<&Value> = invites.iter().filter(|i| i["token"] == token).collect();
    assert_eq!(opened[0]["state"], "created");
    assert_eq!(invites.iter().filter(|i| i["state"] == "unused").count(), 4);
    let with_meta = invites
        .iter()
        .find(|i| i["metadata"]["email"] == "ana@example.org")
        .unwrap();
    assert_eq!(with_meta["metadata"]["cohort"], "A");
}

async fn say(srv: &TestServer, id: &str, role: Role, text: &str, start_ms: u64, end_ms: u64) {
    srv.send(MediaEvent::TurnStarted {
        session_id: id.into(),
        role,
        at_ms: start_ms,
    })
    .await;
    srv.send(MediaEvent::TurnEnded {
        session_id: id.into(),
        role,
        start_ms,
        end_ms,
    })
    .await;
    srv.send(MediaEvent::Transcript {
        session_id: id.into(),
        role,
        text: text.into(),
        is_final: true,
        start_ms,
        end_ms,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_list_finds_by_transcript_and_pages_and_analytics_follow() {
    let srv = TestServer::start().await;
    let (_, a) = srv.consented_session(json!({})).await;
    let (_, b) = srv.consented_session(json!({})).await;
    let (_, c) = srv.consented_session(json!({})).await;
    say(&srv, &a, Role::Ai, "How was your week?", 0, 2000).await;
    say(
        &srv,
        &a,
        Role::Participant,
        "I planted tomatoes in the garden",
        3000,
        6000,
    )
    .await;
    say(
        &srv,
        &b,
        Role::Participant,
        "Mostly rain this week",
        1000,
        2000,
    )
    .await;
    // The events are handled in order on the service's task: wait until the last landed.
    let mut found = Value::Null;
    for _ in 0..100 {
        found = json_of(
            srv.admin(Method::GET, "/v1/sessions?q=tomato")
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        if found["sessions"].as_array().is_some_and(|s| !s.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rows = found["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], a.as_str());
    assert_eq!(rows[0]["turns"], 2);
    assert_eq!(rows[0]["words"], 4 + 6);
    assert!(rows[0]["quality"].is_number(), "{}", rows[0]);

    // Pages of one, newest first, until the cursor runs out.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = json_of(
            srv.admin(
                Method::GET,
                &format!("/v1/sessions?limit=1&cursor={cursor}"),
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        for s in page["sessions"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, [c.clone(), b.clone(), a.clone()]);
    let by_words = json_of(
        srv.admin(Method::GET, "/v1/sessions?sort=-words&limit=2")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let ids: Vec<&str> = by_words["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str(), b.as_str()]);
    for (query, code) in [
        ("sort=loudness", "invalid_query"),
        ("cursor=nonsense", "invalid_query"),
        ("from=last-week", "invalid_query"),
        ("colour=red", "invalid_query"),
    ] {
        let e = json_of(
            srv.admin(Method::GET, &format!("/v1/sessions?{query}"))
                .send()
                .await
                .unwrap(),
            400,
        )
        .await;
        assert_eq!(e["error"]["code"], code, "{query}");
    }
    let today = json_of(
        srv.admin(Method::GET, "/v1/sessions?from=2000-01-01&to=2000-01-02")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(today["sessions"], json!([]));

    let an = json_of(
        srv.admin(Method::GET, &format!("/v1/sessions/{a}/analytics"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(an["words_participant"], 6);
    assert_eq!(an["words_ai"], 4);
    assert_eq!(an["ai_turns"], 1);
    assert_eq!(an["response_times"], json!([[2, 1000]]));
    let agg = json_of(
        srv.admin(Method::GET, "/v1/analytics?campaign=cmp_default")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(agg["sessions"], 3);
    assert_eq!(agg["completion_rate"], Value::Null, "none started: {agg}");
    assert_eq!(agg["quality_histogram"].as_array().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_answer_range_requests() {
    let srv = TestServer::start().await;
    let (_, id) = srv.consented_session(json!({})).await;
    let dir = srv.dir.path().join("recordings").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = (0..=255u8).collect();
    std::fs::write(dir.join("participant.wav"), &bytes).unwrap();
    srv.store
        .upsert_recording(&RecordingRow {
            session_id: id.clone(),
            track: Track::Participant,
            format: Format::Wav,
            path: String::new(),
            duration_ms: 1,
            bytes: 256,
            created_at: 0,
        })
        .await
        .unwrap();
    let url = format!("/v1/sessions/{id}/recordings/participant.wav");
    let whole = srv.admin(Method::GET, &url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), bytes.as_slice());
    for (range, status, content_range, body) in [
        ("bytes=4-7", 206, "bytes 4-7/256", &bytes[4..8]),
        ("bytes=250-", 206, "bytes 250-255/256", &bytes[250..]),
        ("bytes=-2", 206, "bytes 254-255/256", &bytes[254..]),
        ("bytes=200-999", 206, "bytes 200-255/256", &bytes[200..]),
    ] {
        let res = srv
            .admin(Method::GET, &url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{range}");
        assert_eq!(res.headers()["content-range"], content_range, "{range}");
        assert_eq!(
            res.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(res.bytes().await.unwrap().as_ref(), body, "{range}");
    }
    let past = srv
        .admin(Method::GET, &url)
        .header("range", "bytes=256-")
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], "bytes */256");
}

/// Every console and console-API route: (method, path with placeholders).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/campaigns"),
    ("POST", "/v1/campaigns"),
    ("GET", "/v1/campaigns/cmp_default"),
    ("PATCH", "/v1/campaigns/cmp_default"),
    ("GET", "/v1/campaigns/cmp_default/scripts"),
    ("POST", "/v1/scripts"),
    ("GET", "/v1/scripts/scr_default"),
    ("PUT", "/v1/scripts/scr_default"),
    ("PUT", "/v1/prompts/q9.wav"),
    ("GET", "/v1/campaigns/cmp_default/invites"),
    ("POST", "/v1/campaigns/cmp_default/invites"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/{id}"),
    ("GET", "/v1/sessions/{id}/analytics"),
    ("GET", "/v1/sessions/{id}/transcript"),
    ("GET", "/v1/sessions/{id}/recordings/mix.wav"),
    ("GET", "/v1/sessions/{id}/peaks/mix"),
    ("POST", "/v1/sessions/{id}/end"),
    ("POST", "/v1/sessions/{id}/restart"),
    ("POST", "/v1/sessions/{id}/mark/completed"),
    ("POST", "/v1/sessions/{id}/mark/abandoned"),
    ("DELETE", "/v1/sessions/{id}"),
    ("GET", "/v1/analytics"),
    // Exports and webhooks (issue 15), which the console calls as well.
    ("GET", "/v1/sessions/{id}/export.pdf"),
    ("GET", "/v1/sessions/{id}/export.json"),
    ("GET", "/v1/sessions/{id}/audio.zip?format=mp3"),
    ("GET", "/v1/exports/sessions.csv"),
    ("GET", "/v1/exports/sessions.jsonl?campaign=cmp_default"),
    ("GET", "/v1/exports/transcripts.zip?ids={id}"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/whk_x"),
    ("DELETE", "/v1/webhooks/whk_x"),
    ("GET", "/v1/webhooks/whk_x/deliveries"),
    ("POST", "/v1/webhooks/whk_x/deliveries/dlv_x/redeliver"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_route_refuses_a_missing_wrong_or_participant_token() {
    let srv = TestServer::start().await;
    let (invite, id) = srv.consented_session(json!({})).await;
    let cookie_value = earshot_signaling::routes::console_cookie_value(support::ADMIN_TOKEN);
    for (method, path) in ROUTES {
        let url = format!("{}{}", srv.base, path.replace("{id}", &id));
        let method: Method = method.parse().unwrap();
        let req = || srv.http.request(method.clone(), &url).json(&json!({}));
        for (who, r) in [
            ("missing", req()),
            ("wrong", req().bearer_auth("adm_wrongtoken")),
            ("participant", req().bearer_auth(&invite)),
            (
                "wrong cookie",
                req()
                    .header("cookie", "earshot_console=00ff")
                    .header("x-earshot-console", "1"),
            ),
        ] {
            let res = r.send().await.unwrap();
            assert_eq!(res.status(), 401, "{method} {path} with a {who} token");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
        }
        // The sign-in cookie without the console's header changes nothing.
        if method != Method::GET {
            let res = req()
                .header("cookie", format!("earshot_console={cookie_value}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                403,
                "{method} {path} by cookie without the header"
            );
        }
    }
    // Nothing changed: the session is still there, as it was.
    let s = srv
        .store
        .get_session(&id)
        .await
        .unwrap()
        .expect("still there");
    assert_eq!(s.state.as_str(), "created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_with_a_cookie_that_is_not_the_token() {
    let srv = TestServer::start().await;
    let page = srv
        .http
        .get(format!("{}/console", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let signin = |token: &str, header: bool| {
        let mut r = srv
            .http
            .post(format!("{}/console/signin", srv.base))
            .json(&json!({"token": token}));
        if header {
            r = r.header("x-earshot-console", "1");
        }
        r.send()
    };
    assert_eq!(signin("nope", true).await.unwrap().status(), 401);
    assert_eq!(
        signin(support::ADMIN_TOKEN, false).await.unwrap().status(),
        403
    );
    let ok = signin(support::ADMIN_TOKEN, true).await.unwrap();
    assert_eq!(ok.status(), 204);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains(support::ADMIN_TOKEN), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let list = srv
        .http
        .get(format!("{}/v1/campaigns", srv.base))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let made = srv
        .http
        .post(format!("{}/v1/campaigns", srv.base))
        .header("cookie", &pair)
        .header("x-earshot-console", "1")
        .json(&json!({"name": "By cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    // The console's bulk export reads with the cookie alone (a GET), its count up front.
    let csv = srv
        .http
        .get(format!("{}/v1/exports/sessions.csv", srv.base))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["x-total-count"], "0");
    assert!(
        csv.text()
            .await
            .unwrap()
            .starts_with("session_id,campaign,")
    );
    let out = srv
        .http
        .post(format!("{}/console/signout", srv.base))
        .header("x-earshot-console", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}
