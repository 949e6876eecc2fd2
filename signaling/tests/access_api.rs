//! Users, API keys, console sign-ins and the audit log over real HTTP and SQLite: lists show
//! only the caller's campaigns, keys are narrowed and revocable, sign-in resists fixation,
//! CSRF and guessing, and actions leave audit rows that cannot be changed.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::TestServer;
use support::access::{PASSWORD, cookie_pair};

async fn get_with(srv: &TestServer, path: &str, auth: (&str, &str)) -> reqwest::Response {
    srv.http
        .get(format!("{}{path}", srv.base))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap()
}

async fn session_in(srv: &TestServer, campaign: &str) -> String {
    let script = srv.new_script(campaign).await;
    srv.consented_session(json!({"campaign_id": campaign, "script_id": script}))
        .await
        .1
}

#[tokio::test]
async fn lists_show_only_the_campaigns_the_caller_may_see() {
    let srv = TestServer::start().await;
    let a = srv.new_campaign("A").await;
    let b = srv.new_campaign("B").await;
    let in_a = session_in(&srv, &a).await;
    let in_b = session_in(&srv, &b).await;
    let viewer = srv.new_user("v@a.org").await;
    srv.grant(&a, &viewer, "viewer", &[]).await;
    let analyst = srv.new_user("an@b.org").await;
    srv.grant(&b, &analyst, "analyst", &[]).await;
    let viewer_cookie = srv.signed_in_cookie("v@a.org").await;
    let analyst_cookie = srv.signed_in_cookie("an@b.org").await;
    let ids = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let list: Value = get_with(&srv, "/v1/sessions", ("cookie", &viewer_cookie))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&list, "sessions"), vec![in_a.clone()]);
    // Naming a campaign it cannot see gives an empty list, not a refusal.
    let list: Value = get_with(
        &srv,
        &format!("/v1/sessions?campaign={b}"),
        ("cookie", &viewer_cookie),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&list, "sessions"), Vec::<String>::new());
    let campaigns: Value = get_with(&srv, "/v1/campaigns", ("cookie", &viewer_cookie))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&campaigns, "campaigns"), vec![a.clone()]);
    // The viewer may export nothing: the bulk CSV is its header alone.
    let csv = get_with(&srv, "/v1/exports/sessions.csv", ("cookie", &viewer_cookie)).await;
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["x-total-count"], "0");
    // The analyst of B exports B's session only, and its aggregate counts only B.
    let csv = get_with(
        &srv,
        "/v1/exports/sessions.csv",
        ("cookie", &analyst_cookie),
    )
    .await;
    assert_eq!(csv.headers()["x-total-count"], "1");
    let text = csv.text().await.unwrap();
    assert!(text.contains(&in_b) && !text.contains(&in_a), "{text}");
    let agg: Value = get_with(&srv, "/v1/analytics", ("cookie", &analyst_cookie))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(agg["sessions"], 1);
    let all: Value = srv.admin_get_json("/v1/analytics").await;
    assert!(all["sessions"].as_i64().unwrap() >= 2, "{all}");
}

#[tokio::test]
async fn api_keys_are_shown_once_narrowed_and_revocable() {
    let srv = TestServer::start().await;
    let a = srv.new_campaign("A").await;
    let b = srv.new_campaign("B").await;
    let in_a = session_in(&srv, &a).await;
    let owner = srv.new_user("o@a.org").await;
    srv.grant(&a, &owner, "owner", &[]).await;
    srv.grant(&b, &owner, "owner", &[]).await;
    let made = srv
        .admin_json(
            Method::POST,
            "/v1/keys",
            json!({"name": "reader", "user_id": owner, "permissions": ["view"], "campaigns": [a]}),
        )
        .await;
    let key = made["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ek_") && key.len() == 43, "{key}");
    let stored: Vec<String> = sqlx_rows(&srv, "SELECT key_hash FROM api_keys").await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], key, "the key itself is never stored");
    let bearer = format!("Bearer {key}");
    let me: Value = get_with(&srv, "/v1/me", ("authorization", &bearer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], owner.as_str());
    assert_eq!(me["grants"][&a]["permissions"], json!(["view"]));
    assert!(me["grants"].get(&b).is_none(), "{me}");
    let path = format!("/v1/sessions/{in_a}");
    assert_eq!(
        get_with(&srv, &path, ("authorization", &bearer))
            .await
            .status(),
        200
    );
    // Narrowed to view: no export, and no managing the campaign though its user owns it.
    let pdf = format!("/v1/sessions/{in_a}/export.json");
    assert_eq!(
        get_with(&srv, &pdf, ("authorization", &bearer))
            .await
            .status(),
        403
    );
    let grants = format!("/v1/campaigns/{a}/grants");
    assert_eq!(
        get_with(&srv, &grants, ("authorization", &bearer))
            .await
            .status(),
        403
    );
    // A key cannot make keys.
    let res = srv
        .http
        .post(format!("{}/v1/keys", srv.base))
        .header("authorization", &bearer)
        .json(&json!({"name": "more"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // The list never shows the key again.
    let keys: Value = srv.admin_get_json("/v1/keys").await;
    assert!(!keys.to_string().contains(&key), "{keys}");
    let id = made["id"].as_str().unwrap();
    let res = srv
        .admin(Method::DELETE, &format!("/v1/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        get_with(&srv, &path, ("authorization", &bearer))
            .await
            .status(),
        401
    );
}

async fn sqlx_rows(srv: &TestServer, sql: &str) -> Vec<String> {
    let conn = format!("sqlite://{}", srv.dir.path().join("earshot.db").display());
    let pool = sqlx::SqlitePool::connect(&conn).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

#[tokio::test]
async fn sign_in_makes_a_new_server_side_session_every_time_and_sign_out_ends_it() {
    let srv = TestServer::start().await;
    let a = srv.new_campaign("A").await;
    let u = srv.new_user("u@a.org").await;
    srv.grant(&a, &u, "viewer", &[]).await;
    // A cookie planted before sign-in (session fixation) is never promoted.
    let planted = "earshot_console=cs_plantedplantedplantedplantedplanted12345";
    let res = srv
        .sign_in_request("u@a.org", PASSWORD)
        .header("cookie", planted)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let first = cookie_pair(&res);
    assert_ne!(first, planted);
    assert_eq!(
        get_with(&srv, "/v1/me", ("cookie", planted)).await.status(),
        401
    );
    assert_eq!(
        get_with(&srv, "/v1/me", ("cookie", &first)).await.status(),
        200
    );
    // Only the hash of the id is stored.
    let stored = sqlx_rows(&srv, "SELECT id_hash FROM console_sessions").await;
    let id = first.split_once('=').unwrap().1;
    assert_eq!(stored.len(), 1);
    assert!(!stored.contains(&id.to_string()));
    // Signing in again from that browser gives a new id and ends the old one.
    let again = srv
        .sign_in_request("u@a.org", PASSWORD)
        .header("cookie", &first)
        .send()
        .await
        .unwrap();
    let second = cookie_pair(&again);
    assert_ne!(second, first);
    assert_eq!(
        get_with(&srv, "/v1/me", ("cookie", &first)).await.status(),
        401
    );
    // Sign-out deletes it server-side: the cookie, replayed, is refused.
    let out = srv
        .http
        .post(format!("{}/console/signout", srv.base))
        .header("x-earshot-console", "1")
        .header("cookie", &second)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(
        get_with(&srv, "/v1/me", ("cookie", &second)).await.status(),
        401
    );
    assert!(
        sqlx_rows(&srv, "SELECT id_hash FROM console_sessions")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn cookie_requests_that_change_something_need_the_header_and_the_own_origin() {
    let srv = TestServer::start().await;
    let a = srv.new_campaign("A").await;
    let u = srv.new_user("e@a.org").await;
    srv.grant(&a, &u, "member", &["edit"]).await;
    let cookie = srv.signed_in_cookie("e@a.org").await;
    let patch = |header: bool, origin: Option<&str>| {
        let mut r = srv
            .http
            .patch(format!("{}/v1/campaigns/{a}", srv.base))
            .header("cookie", &cookie)
            .json(&json!({"name": "Renamed"}));
        if header {
            r = r.header("x-earshot-console", "1");
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let res = patch(false, None).await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "csrf_header_required"
    );
    let res = patch(true, Some("https://evil.example")).await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "origin_mismatch"
    );
    let read: Value = srv.admin_get_json(&format!("/v1/campaigns/{a}")).await;
    assert_eq!(read["name"], "A", "refused requests changed nothing");
    let res = patch(true, Some(&srv.base)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["name"], "Renamed");
    // Sign-in itself is checked the same way.
    let res = srv
        .sign_in_request("e@a.org", PASSWORD)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_and_audited() {
    let srv = TestServer::start().await;
    srv.new_user("t@a.org").await;
    for _ in 0..5 {
        let res = srv
            .sign_in_request("t@a.org", "wrong password!!")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"]["code"],
            "invalid_credentials"
        );
    }
    // The sixth try is refused before the password is checked: even the right one.
    let res = srv
        .sign_in_request("t@a.org", PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    // Another account from the same address is not locked by these five.
    srv.new_user("other@a.org").await;
    assert_eq!(
        srv.sign_in_request("other@a.org", PASSWORD)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let audit: Value = srv.admin_get_json("/v1/audit?action=signin").await;
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "denied", "denied", "denied", "denied", "denied"]
    );
    assert_eq!(audit["entries"][1]["client"], "127.0.0.1");
}

#[tokio::test]
async fn actions_leave_audit_rows_that_owners_read_for_their_campaigns() {
    let srv = TestServer::start().await;
    let a = srv.new_campaign("A").await;
    let b = srv.new_campaign("B").await;
    let s_a = session_in(&srv, &a).await;
    let s_b = session_in(&srv, &b).await;
    let owner = srv.new_user("o@a.org").await;
    srv.grant(&a, &owner, "owner", &[]).await;
    let cookie = srv.signed_in_cookie("o@a.org").await;
    let post = |path: String| {
        srv.http
            .post(format!("{}{path}", srv.base))
            .header("cookie", &cookie)
            .header("x-earshot-console", "1")
            .send()
    };
    assert_eq!(
        post(format!("/v1/sessions/{s_a}/end"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(format!("/v1/sessions/{s_b}/end"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        get_with(
            &srv,
            &format!("/v1/sessions/{s_a}/export.json"),
            ("cookie", &cookie)
        )
        .await
        .status(),
        200
    );
    let res = srv
        .admin(Method::DELETE, &format!("/v1/sessions/{s_b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let mine: Value = get_with(&srv, "/v1/audit", ("cookie", &cookie))
        .await
        .json()
        .await
        .unwrap();
    let rows: Vec<(String, String, String, String)> = mine["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Newest first; only campaign A's rows (the deletion in B is not the owner's to see).
    assert_eq!(
        rows,
        vec![
            (
                owner.clone(),
                "export.json".into(),
                s_a.clone(),
                "ok".into()
            ),
            (
                owner.clone(),
                "session.end".into(),
                s_a.clone(),
                "ok".into()
            ),
            (
                "admin-token".into(),
                "grant.put".into(),
                format!("{owner}@{a}:owner"),
                "ok".into()
            ),
        ]
    );
    let all: Value = srv
        .admin(
            Method::GET,
            &format!("/v1/audit?action=session.delete&resource={s_b}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["entries"][0]["actor"], "admin-token");
    assert_eq!(all["entries"][0]["campaign_id"], b.as_str());
    // The owner's refused attempt on B is there too, as denied.
    let denied: Value = srv
        .admin_get_json(&format!("/v1/audit?action=session.end&resource={s_b}"))
        .await;
    assert_eq!(denied["entries"][0]["actor"], owner.as_str());
    assert_eq!(denied["entries"][0]["outcome"], "denied");
    assert_eq!(denied["entries"][0]["client"], "127.0.0.1");
    // Pages by cursor.
    let page: Value = srv.admin_get_json("/v1/audit?limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let next: Value = srv
        .admin_get_json(&format!("/v1/audit?limit=2&cursor={cursor}"))
        .await;
    assert!(
        next["entries"][0]["seq"].as_i64().unwrap() < page["entries"][1]["seq"].as_i64().unwrap()
    );
    let csv = get_with(&srv, "/v1/audit.csv", ("cookie", &cookie)).await;
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("seq,at,actor,action,resource,campaign_id,client,outcome")
    );
    assert_eq!(lines.count(), 3);
    // A viewer owns nothing: no audit log.
    let v = srv.new_user("v@a.org").await;
    srv.grant(&a, &v, "viewer", &[]).await;
    let vc = srv.signed_in_cookie("v@a.org").await;
    assert_eq!(
        get_with(&srv, "/v1/audit", ("cookie", &vc)).await.status(),
        403
    );
    // The table refuses changes (the trigger), whoever asks.
    let conn = format!("sqlite://{}", srv.dir.path().join("earshot.db").display());
    let pool = sqlx::SqlitePool::connect(&conn).await.unwrap();
    let err = sqlx::query("UPDATE audit_log SET outcome = 'denied' WHERE action = 'session.end'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}
