//! Two media nodes on the distributed parts (issue 17): a private PostgreSQL server (the
//! store), a `nats-server` (the bus), moto's S3 server (the recordings) and two `earshot
//! serve` processes on loopback with their own data directories and one master key ring.
//! Participants (real WebRTC, webrtc-rs, streaming the speech fixture) all open their invite
//! at node A; the first interview is placed on A, the second (A holding one session, its
//! capacity) is handed to node B, a media-only node (`[bus] role = "media"`: it answers only
//! the cluster's routes). Both complete with their six recordings in the bucket, and
//! the participant tracks downloaded through node A follow the fed speech; a monitor
//! connected to node A follows the interview running on node B to its end.

mod support;

#[path = "../signaling/src/store/postgres/test_cluster.rs"]
#[allow(dead_code)]
mod postgres;

use futures_util::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::moto::Moto;
use support::nats::NatsServer;
use support::{ADMIN_TOKEN, Server, short_interview};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `GET /v1/nodes` of `server`.
async fn nodes(server: &Server) -> Value {
    let r = server
        .admin(server.http.get(server.url("/v1/nodes")))
        .send()
        .await
        .expect("nodes");
    assert_eq!(r.status(), 200);
    r.json().await.expect("nodes json")
}

/// The node entry `id` of a `GET /v1/nodes` answer.
fn node<'a>(nodes: &'a Value, id: &str) -> Option<&'a Value> {
    nodes["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node_id"] == id))
}

/// Waits until `check` holds for `server`'s view of the nodes.
async fn wait_nodes(server: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = nodes(server).await;
        if check(&n) {
            return n;
        }
        assert!(Instant::now() < deadline, "{what}: {n:#}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interviews_are_placed_on_two_nodes_and_a_monitor_on_one_follows_the_other() {
    let database = postgres::fresh_database().await;
    let nats = NatsServer::start();
    let moto = Moto::start("earshot-cluster").await;
    let mut common = moto.server_env("rec");
    common.extend([
        ("EARSHOT_STORE_URL".to_string(), database),
        ("EARSHOT_BUS_URL".to_string(), nats.url()),
        (
            "EARSHOT_INTERVIEWER_SILENCE_MS".to_string(),
            "800".to_string(),
        ),
        // One session per node: the second participant must go to the other node.
        ("EARSHOT_LIMITS_MAX_SESSIONS".to_string(), "1".to_string()),
    ]);
    let env = |node_id: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut env = common.clone();
        env.push(("EARSHOT_BUS_NODE_ID".into(), node_id.into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    let a_env = env("node-a", &[]);
    let a_vars: Vec<(&str, &str)> = a_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let a = Server::start(&a_vars).await;
    // Node B decrypts what A sealed and the other way round: one key ring for the cluster.
    let ring = a.data_path().join("master_keys");
    let ring = ring.to_str().expect("a UTF-8 path");
    // B is a media-only node (`serve --role media`, here `[bus] role`).
    let b_env = env(
        "node-b",
        &[
            ("EARSHOT_ENCRYPTION_KEY_FILE", ring),
            ("EARSHOT_BUS_ROLE", "media"),
        ],
    );
    let b_vars: Vec<(&str, &str)> = b_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let b = Server::start(&b_vars).await;

    // Each node hears both.
    for server in [&a, &b] {
        wait_nodes(server, "both nodes heard", |n| {
            ["node-a", "node-b"]
                .iter()
                .all(|id| node(n, id).is_some_and(|n| n["healthy"] == true))
        })
        .await;
    }

    // The media-only node answers the cluster's routes and nothing a researcher uses.
    let console = b.http.get(b.url("/console")).send().await.expect("console");
    assert_eq!(console.status(), 404);
    let sessions = b
        .admin(b.http.get(b.url("/v1/sessions")))
        .send()
        .await
        .expect("sessions");
    assert_eq!(sessions.status(), 404);
    let body: Value = sessions.json().await.expect("json");
    assert_eq!(body["error"]["code"], "route_not_found");
    let health = b.http.get(b.url("/healthz")).send().await.expect("health");
    assert_eq!(health.status(), 200);

    // The first interview: its participant opens the invite at A, A is the least loaded
    // (ties go to the smaller id) and holds it. The second starts once A announces it holds
    // one session (its capacity): A hands that participant's WHIP offer to B.
    let script = short_interview::create_script(&a, "What did you do this week?").await;
    let first = short_interview::run(&a, &script, 6);
    let rest = async {
        let placed = wait_nodes(&a, "the first session on node A", |n| {
            node(n, "node-a").is_some_and(|a| a["sessions"] == 1)
        })
        .await;
        let first_id = node(&placed, "node-a").unwrap()["session_ids"][0]
            .as_str()
            .expect("first session id")
            .to_string();
        let second = short_interview::run(&a, &script, 6);
        let follow = async {
            let placed = wait_nodes(&a, "the second session on node B", |n| {
                node(n, "node-b").is_some_and(|b| b["sessions"] == 1)
            })
            .await;
            let second_id = node(&placed, "node-b").unwrap()["session_ids"][0]
                .as_str()
                .expect("second session id")
                .to_string();
            (second_id.clone(), monitor(&a, &second_id).await)
        };
        let (second, (second_id, seen)) = tokio::join!(second, follow);
        (first_id, second, second_id, seen)
    };
    let (first, (first_id, second, second_id, (kinds, transcript))) = tokio::join!(first, rest);
    assert_eq!(first.session_id, first_id);
    assert_eq!(second.session_id, second_id);
    assert_ne!(first_id, second_id);
    eprintln!(
        "node A's monitor of B's session: {} lines, transcript {transcript:?}",
        kinds.len()
    );
    assert!(
        transcript
            .iter()
            .any(|t| t.contains("What did you do this week?")),
        "the AI's question reached node A's monitor: {transcript:?}"
    );
    assert!(
        kinds.iter().any(|k| k == "state"),
        "state changes reached node A's monitor: {kinds:?}"
    );

    // Both interviews complete, each with its six recordings in the bucket, and the
    // participant tracks, downloaded through A, follow the fed speech.
    let work = tempfile::tempdir().expect("work dir");
    for id in [&first_id, &second_id] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let names = moto.names(&format!("rec/{id}")).await;
            let finals = support::RECORDING_FILES
                .iter()
                .filter(|f| names.contains(&format!("rec/{id}/{f}")))
                .count();
            if finals == support::RECORDING_FILES.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: the bucket holds {names:?}\nA:\n{}\nB:\n{}",
                a.log(),
                b.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let wav = a.download(id, "participant.wav").await;
        let (r, ms) = support::speech_r(&wav, work.path());
        eprintln!("{id}: participant.wav through node A: {ms:.0} ms, speech r={r:.3}");
        assert!(
            r > 0.8,
            "{id}: the participant track does not follow the speech (r={r:.3})"
        );
        assert!(ms > 3_000.0, "{id}: {ms:.0} ms");
    }
}

/// Follows `session_id`'s live events through `server`'s live socket to its end: the kinds of
/// lines seen and the final transcript lines.
async fn monitor(server: &Server, session_id: &str) -> (Vec<String>, Vec<String>) {
    let ws_base = server.base.replacen("http", "ws", 1);
    let mut req = format!("{ws_base}/v1/sessions/{session_id}/live")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("live socket");
    let (mut kinds, mut transcript) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("the monitor went silent before the session's end");
        let text = match msg {
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("live socket: {e}"),
        };
        let line: Value = serde_json::from_str(&text).expect("JSON line");
        let kind = line["type"].as_str().unwrap_or("").to_string();
        if kind == "transcript" && line["final"] == true {
            transcript.push(line["text"].as_str().unwrap_or("").to_string());
        }
        kinds.push(kind);
    }
    (kinds, transcript)
}
