//! Routes of issue 4 against the real router on loopback (real HTTP and WebSocket, SQLite on a
//! temporary file, a media plane test double): scripts, the transcript, the live stream and
//! its authorization, agent specs handed to the media plane.

mod support;

use earshot_signaling::media_port::MediaEvent;
use earshot_signaling::store::SessionStore;
use reqwest::Method;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, TestServer, transcript, turn_ended, turn_started};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_refuses_before_the_upgrade_without_the_admin_token() {
    let srv = TestServer::start().await;
    let (_, id) = srv.consented_session(json!({})).await;
    let url = format!("{}/v1/sessions/{id}/live", srv.ws_base);
    assert_eq!(srv.refused_status(url.clone()).await, 401);
    assert_eq!(srv.refused_status(format!("{url}?token=wrong")).await, 401);
    assert_eq!(srv.refused_status(format!("{url}?token=")).await, 401);
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(srv.refused_status(req).await, 401);
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", ADMIN_TOKEN.parse().unwrap());
    assert_eq!(srv.refused_status(req).await, 401, "a token without Bearer");
    // Authorized, but no such session.
    let other = format!(
        "{}/v1/sessions/ses_nosuchsession/live?token={ADMIN_TOKEN}",
        srv.ws_base
    );
    assert_eq!(srv.refused_status(other).await, 404);
    let garbage = format!(
        "{}/v1/sessions/..%2Fx/live?token={ADMIN_TOKEN}",
        srv.ws_base
    );
    assert_eq!(srv.refused_status(garbage).await, 404);
    // A plain GET (no upgrade) gets the API's error shape.
    let res = srv
        .admin(Method::GET, &format!("/v1/sessions/{id}/live"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "websocket_required");
    let res = srv
        .http
        .get(format!("{}/v1/sessions/{id}/live", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The transcript is admin-only too.
    let res = srv
        .http
        .get(format!("{}/v1/sessions/{id}/transcript", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_get_a_snapshot_then_every_event_until_the_session_ends() {
    let srv = TestServer::start().await;
    let (_, id) = srv.consented_session(json!({})).await;
    let mut a = srv.monitor(&id).await;
    let mut b = srv.monitor_with_header(&id).await;
    for m in [&mut a, &mut b] {
        let snap = m.next().await.unwrap();
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["session"]["id"], id.as_str());
        assert_eq!(snap["session"]["state"], "created");
        assert_eq!(snap["turns"], json!([]));
    }
    srv.send(MediaEvent::Connected {
        session_id: id.clone(),
    })
    .await;
    let events = [
        turn_started(&id, "ai", 0),
        transcript(&id, "ai", "How are you today?", true, 0, 1800),
        turn_ended(&id, "ai", 0, 2000),
        turn_started(&id, "participant", 2600),
        transcript(&id, "participant", "I am", false, 2600, 3000),
        turn_ended(&id, "participant", 2600, 5000),
        transcript(
            &id,
            "participant",
            "I am great, thank you so much!",
            true,
            2650,
            4900,
        ),
    ];
    for ev in events {
        srv.send(ev).await;
    }
    let want = [
        json!({"type":"state","from":"created","to":"in_progress","cause":"media started"}),
        json!({"type":"turn_start","role":"ai","at_ms":0}),
        json!({"type":"speaking","who":"ai"}),
        json!({"type":"transcript","role":"ai","text":"How are you today?","final":true,"start_ms":0,"end_ms":1800}),
        json!({"type":"turn_end","role":"ai","start_ms":0,"end_ms":2000}),
        json!({"type":"speaking","who":"none"}),
        json!({"type":"turn_start","role":"participant","at_ms":2600}),
        json!({"type":"speaking","who":"participant"}),
        json!({"type":"transcript","role":"participant","text":"I am","final":false,"start_ms":2600,"end_ms":3000}),
        json!({"type":"turn_end","role":"participant","start_ms":2600,"end_ms":5000}),
        json!({"type":"speaking","who":"none"}),
        json!({"type":"transcript","role":"participant","text":"I am great, thank you so much!","final":true,"start_ms":2650,"end_ms":4900}),
    ];
    for m in [&mut a, &mut b] {
        for w in &want {
            let mut got = m.next().await.expect("stream ended early");
            if got["type"] == "state" {
                assert!(got["at"].as_str().unwrap().ends_with('Z'), "{got}");
                got.as_object_mut().unwrap().remove("at");
            }
            assert_eq!(&got, w);
        }
    }

    // The stored turn log.
    let res = srv
        .admin(Method::GET, &format!("/v1/sessions/{id}/transcript"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap();
    assert_eq!(t["session_id"], id.as_str());
    let turns = t["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{t}");
    assert_eq!(
        turns[0],
        json!({"seq":1,"role":"ai","start_ms":0,"end_ms":2000,"text":"How are you today?",
               "words":4,"response_ms":null,"sentiment":turns[0]["sentiment"].clone()})
    );
    assert_eq!(turns[1]["seq"], 2);
    assert_eq!(turns[1]["role"], "participant");
    assert_eq!(turns[1]["text"], "I am great, thank you so much!");
    assert_eq!(turns[1]["words"], 7);
    assert_eq!(turns[1]["response_ms"], 600);
    assert!(turns[1]["sentiment"].as_f64().unwrap() > 0.0);

    // A monitor joining now sees the turns in its snapshot.
    let mut c = srv.monitor(&id).await;
    let snap = c.next().await.unwrap();
    assert_eq!(snap["session"]["state"], "in_progress");
    assert_eq!(snap["turns"], t["turns"]);

    // The end: the final state line, then the socket closes.
    let res = srv
        .admin(Method::POST, &format!("/v1/sessions/{id}/end"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for m in [&mut a, &mut b, &mut c] {
        let last = m.next_of("state").await;
        assert_eq!(last["to"], "admin_ended");
        assert!(m.next().await.is_none(), "the socket closes after the end");
    }
    // Joining an ended session: its snapshot, then the close.
    let mut d = srv.monitor(&id).await;
    let snap = d.next().await.unwrap();
    assert_eq!(snap["session"]["state"], "admin_ended");
    assert_eq!(snap["turns"].as_array().unwrap().len(), 2);
    assert!(d.next().await.is_none());
    assert_eq!(srv.hub.channel_count(), 0);
    assert!(srv.media.calls().contains(&format!("finish {id}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_scripts_hand_the_media_an_agent_with_its_context() {
    let srv = TestServer::start().await;
    // Scripts API: admin only, validated, stable codes.
    let body = json!({"name": "Support bot", "agent": {"url": "ws://bot.example.com/twilio"}});
    let res = srv
        .http
        .post(format!("{}/v1/scripts", srv.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    for (bad, code, status) in [
        (
            json!({"name": "x", "agent": {"url": "https://bot"}}),
            "invalid_script",
            400,
        ),
        (json!({"name": "x"}), "invalid_script", 400),
        (
            json!({"name": "x", "campaign_id": "cmp_nope", "agent": {"url": "ws://bot"}}),
            "campaign_not_found",
            404,
        ),
    ] {
        let res = srv
            .admin(Method::POST, "/v1/scripts")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{bad}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{bad}");
    }
    let res = srv
        .admin(Method::POST, "/v1/scripts")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let script_id = created["id"].as_str().unwrap().to_string();
    assert!(script_id.starts_with("scr_"));
    assert_eq!(created["kind"], "agent");
    assert_eq!(
        created["agent"],
        json!({"url": "ws://bot.example.com/twilio", "audio_format": "l16/16000"})
    );
    assert_eq!(created["campaign_id"], "cmp_default");
    // Recording settings default to the operator's (the default script's).
    assert_eq!(
        created["recording"],
        json!({"enabled": true, "noise_suppression": false, "quality": "standard"})
    );
    let res = srv
        .admin(Method::GET, &format!("/v1/scripts/{script_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), created);
    for missing in ["scr_nosuch", "nope", "scr_A"] {
        let res = srv
            .admin(Method::GET, &format!("/v1/scripts/{missing}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "script_not_found");
    }

    // An invite for the script: the media is told to dial the agent, with the context.
    let (token, id) = srv
        .consented_session(json!({"script_id": script_id, "metadata": {"ref": "abc"}}))
        .await;
    let whip = |token: String| {
        srv.http
            .post(format!("{}/v1/invites/{token}/whip", srv.base))
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
    };
    assert_eq!(whip(token.clone()).await.unwrap().status(), 201);
    let spec = srv.media.opened.lock().unwrap()[0].interview.clone();
    assert!(spec.prompts.is_empty());
    let agent = spec.agent.expect("an agent spec");
    assert_eq!(agent.url, "ws://bot.example.com/twilio");
    assert_eq!(agent.audio_format.as_str(), "l16/16000");
    assert_eq!(
        agent.custom_parameters,
        json!({"session": id, "campaign": "cmp_default", "script": script_id,
               "metadata": {"ref": "abc"}, "resume": false, "turns": []})
    );

    // It runs, a turn is captured, then the participant comes back on a new peer: resume.
    let mut m = srv.monitor(&id).await;
    m.next_of("snapshot").await;
    srv.send(MediaEvent::Connected {
        session_id: id.clone(),
    })
    .await;
    srv.send(turn_ended(&id, "ai", 0, 1000)).await;
    srv.send(transcript(&id, "ai", "Hi, shall we start?", true, 0, 1000))
        .await;
    m.next_of("transcript").await;
    assert_eq!(whip(token.clone()).await.unwrap().status(), 201);
    let spec = srv.media.opened.lock().unwrap()[1].interview.clone();
    let params = spec.agent.unwrap().custom_parameters;
    assert_eq!(params["resume"], true);
    assert_eq!(params["turns"][0]["text"], "Hi, shall we start?");
    assert_eq!(params["turns"][0]["role"], "ai");

    // A pause and a resume by button on the same peer: the agent is redialled with fresh
    // context (a resume, and the turns so far).
    for action in ["pause", "resume"] {
        let res = srv
            .http
            .post(format!("{}/v1/invites/{token}/{action}", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{action}");
    }
    let resumed = srv.media.resumed.lock().unwrap().clone();
    let agent = resumed
        .last()
        .cloned()
        .flatten()
        .expect("resume carries the agent context");
    assert_eq!(agent.custom_parameters["resume"], true);
    assert_eq!(
        agent.custom_parameters["turns"][0]["text"],
        "Hi, shall we start?"
    );
    assert_eq!(m.next_of("state").await["to"], "paused");
    assert_eq!(m.next_of("state").await["to"], "in_progress");

    // The agent fails: the session ends as abandoned, technical, recordings finalized.
    srv.send(MediaEvent::AgentFailed {
        session_id: id.clone(),
        detail: "connection refused".into(),
    })
    .await;
    let last = m.next_of("state").await;
    assert_eq!(last["to"], "abandoned");
    assert!(m.next().await.is_none());
    let res = srv
        .admin(Method::GET, &format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    let s: Value = res.json().await.unwrap();
    assert_eq!(s["state"], "abandoned");
    assert_eq!(s["end_reason"], "technical: agent: connection refused");
    assert!(srv.media.calls().contains(&format!("finish {id}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_script_keeps_the_built_in_interviewer() {
    let srv = TestServer::start().await;
    let audio = "q1.wav";
    let body = json!({"name": "Two questions", "prompts": [
        {"id": "q1", "text": "First?", "audio": audio},
        {"id": "q2", "text": "Second?", "audio": audio}],
        "recording": {"enabled": false}});
    let res = srv
        .admin(Method::POST, "/v1/scripts")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["kind"], "prompts");
    assert_eq!(created["prompts"][1]["id"], "q2");
    assert_eq!(created["recording"]["enabled"], false);
    let script_id = created["id"].as_str().unwrap();
    let (token, _) = srv.consented_session(json!({"script_id": script_id})).await;
    let res = srv
        .http
        .post(format!("{}/v1/invites/{token}/whip", srv.base))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let req = srv.media.opened.lock().unwrap()[0].clone();
    assert!(req.interview.agent.is_none());
    assert_eq!(req.interview.prompts.len(), 2);
    assert!(!req.recording.enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_removes_its_turns_and_closes_monitors() {
    let srv = TestServer::start().await;
    let (_, id) = srv.consented_session(json!({})).await;
    let mut m = srv.monitor(&id).await;
    m.next_of("snapshot").await;
    srv.send(MediaEvent::Connected {
        session_id: id.clone(),
    })
    .await;
    srv.send(turn_ended(&id, "participant", 100, 900)).await;
    srv.send(transcript(&id, "participant", "hello there", true, 0, 0))
        .await;
    m.next_of("transcript").await;
    assert_eq!(srv.store.turns(&id).await.unwrap().len(), 1);
    let res = srv
        .admin(Method::DELETE, &format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(m.next().await.is_none(), "the monitor is closed");
    assert!(srv.store.turns(&id).await.unwrap().is_empty());
    let res = srv
        .admin(Method::GET, &format!("/v1/sessions/{id}/transcript"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Late events for the deleted session change nothing and break nothing.
    srv.send(transcript(&id, "participant", "late", true, 0, 0))
        .await;
    srv.send(turn_started(&id, "ai", 5)).await;
    let (_, other) = srv.consented_session(json!({})).await;
    let mut m = srv.monitor(&other).await;
    m.next_of("snapshot").await;
    srv.send(MediaEvent::Connected {
        session_id: other.clone(),
    })
    .await;
    m.next_of("state").await;
    assert!(srv.store.turns(&id).await.unwrap().is_empty());
}
