//! Media nodes' routes on a real server (real SQLite, HTTP on loopback): `GET /v1/nodes`, and
//! draining with `POST/DELETE /v1/node/drain`: no new session is admitted (`503
//! node_draining`), a session with media may offer again, `/readyz` says not ready, both
//! changes are audited. Who may call them is checked by `authz_matrix.rs`.

mod support;

use serde_json::{Value, json};
use support::{TestServer, json_of};

async fn whip(srv: &TestServer, token: &str) -> reqwest::Response {
    srv.http
        .post(format!("{}/v1/invites/{token}/whip", srv.base))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap()
}

/// An admin call answered `200`, its JSON.
async fn admin_ok(srv: &TestServer, method: reqwest::Method, path: &str) -> Value {
    json_of(srv.admin(method, path).send().await.unwrap(), 200).await
}

#[tokio::test]
async fn a_drained_node_takes_no_new_session_and_keeps_its_own() {
    let srv = TestServer::start().await;
    let nodes = admin_ok(&srv, reqwest::Method::GET, "/v1/nodes").await;
    assert_eq!(nodes["node"], "test-node");
    assert_eq!(nodes["draining"], false);
    assert!(nodes["nodes"].is_array());

    let (live, _) = srv.consented_session(json!({})).await;
    assert_eq!(whip(&srv, &live).await.status(), 201);
    let (new, _) = srv.consented_session(json!({})).await;

    let drained = admin_ok(&srv, reqwest::Method::POST, "/v1/node/drain").await;
    assert_eq!(drained, json!({"node": "test-node", "draining": true}));

    let refused = whip(&srv, &new).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "30");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "node_draining");
    // The session with media reconnects as before.
    assert_eq!(whip(&srv, &live).await.status(), 201);
    let ready = srv
        .http
        .get(format!("{}/readyz", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("draining"),
        "{body}"
    );

    let undrained = admin_ok(&srv, reqwest::Method::DELETE, "/v1/node/drain").await;
    assert_eq!(undrained["draining"], false);
    assert_eq!(whip(&srv, &new).await.status(), 201);
    let ready = srv
        .http
        .get(format!("{}/readyz", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let audit = admin_ok(&srv, reqwest::Method::GET, "/v1/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"] == "test-node")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"node.drain") && actions.contains(&"node.undrain"),
        "{audit}"
    );
}
