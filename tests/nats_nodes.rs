//! Two `earshot serve` processes as two nodes (issue 17, item 3): one data directory (one
//! SQLite file, until a shared PostgreSQL store exists), `[bus] url` on a real `nats-server`
//! started by the test. A monitor connected to node A follows a session that node B ends; a
//! `bus.url` that is not a NATS URL stops the start with a message naming the key.

mod support;

use futures_util::StreamExt;
use serde_json::Value;
use std::process::Command;
use support::interview::open_and_consent;
use support::nats::NatsServer;
use support::{ADMIN_TOKEN, Server};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The next JSON text message of a live socket; `None` once it closed.
async fn next_line<S>(ws: &mut S) -> Option<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .expect("no message from node A");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(_))) | None => return None,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_on_node_a_sees_a_session_ended_on_node_b() {
    let nats = NatsServer::start();
    let url = nats.url();
    let a = Server::start(&[("EARSHOT_BUS_URL", &url), ("EARSHOT_BUS_NODE_ID", "node-a")]).await;
    let b = Server::start_sharing_data(
        &a,
        &[("EARSHOT_BUS_URL", &url), ("EARSHOT_BUS_NODE_ID", "node-b")],
    )
    .await;
    assert!(
        a.log().contains("live events go through NATS"),
        "{}",
        a.log()
    );

    // An invite and its session, made on B.
    let (token, _) = b.invite().await;
    let id = open_and_consent(&b, &token).await;

    // A monitor on A: the snapshot from the shared database, then the live subject watched.
    let ws_url = a
        .url(&format!("/v1/sessions/{id}/live"))
        .replacen("http", "ws", 1);
    let mut req = ws_url.into_client_request().expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("node A's live socket");
    let snap = next_line(&mut ws).await.expect("a snapshot");
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["session"]["id"], id.as_str());
    assert_eq!(snap["session"]["state"], "created");
    let subject = format!("earshot.live.{id}");
    tokio::task::block_in_place(|| nats.wait_subscriptions(&subject, 1));

    // Ended on B: A's monitor gets B's final state line, then the close.
    b.end_session(&id).await;
    let last = next_line(&mut ws).await.expect("the final state line");
    assert_eq!(last["type"], "state");
    assert_eq!(last["from"], "created");
    assert_eq!(last["to"], "admin_ended");
    assert!(next_line(&mut ws).await.is_none(), "the socket closes");
    // A let go of the session's subject with its last monitor.
    tokio::task::block_in_place(|| nats.wait_subscriptions(&subject, 0));
}

#[test]
fn a_bus_url_that_is_not_nats_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["check-config"])
        .env("EARSHOT_SERVER_DATA_DIR", dir.path())
        .env("EARSHOT_BUS_URL", "redis://127.0.0.1:6379")
        .output()
        .expect("earshot runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bus.url must be nats://host:port"), "{err}");
}

#[test]
fn an_unreachable_nats_server_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["serve", "--listen", &listen.to_string(), "--data-dir"])
        .arg(dir.path())
        .env("EARSHOT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("EARSHOT_BUS_URL", format!("nats://127.0.0.1:{closed}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("earshot runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("earshot kept running without its NATS server");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    assert!(!status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("bus.url") && text.contains("cannot connect to NATS at nats://127.0.0.1"),
        "{text}"
    );
}
