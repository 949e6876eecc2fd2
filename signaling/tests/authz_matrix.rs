//! The authorization matrix: README.md's table of every route and who may call it, checked
//! against the router's sources (every route is in the table, and nothing else) and against
//! a real server (real SQLite, real HTTP on loopback) for every caller: a superuser, the
//! owner of the route's campaign, the owner of another campaign, members with and without
//! the permission needed, a viewer, an analyst, a participant's invite token, no token and a
//! bad token. Allowed means the answer is neither 401 nor 403 (validation, 404 or 409 may
//! follow); refused means `401 unauthorized` for no or a bad credential and `403 forbidden`
//! for a known caller without the right.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::{ADMIN_TOKEN, TestServer};

/// One row of README's table.
#[derive(Debug, Clone)]
struct Row {
    method: String,
    path: String,
    who: String,
}

fn readme_rows() -> Vec<Row> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("| method | route | who |")
        .expect("README has the table of routes");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "a row of three cells: {l}");
            Row {
                method: cells[0].trim_matches('`').to_string(),
                path: cells[1].trim_matches('`').to_string(),
                who: cells[2].to_string(),
            }
        })
        .collect()
}

/// Every (method, path template) the router serves, read from `.route(...)` calls in
/// `signaling/src/routes/*.rs`.
fn router_routes() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let mut rest = src.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let call = &rest[..end];
            let template = call.split('"').nth(1).unwrap().to_string();
            for method in ["get", "post", "put", "patch", "delete"] {
                let mut from = 0;
                while let Some(i) = call[from..].find(&format!("{method}(")) {
                    let i = from + i;
                    let before = call[..i].chars().last();
                    if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
                        routes.insert((method.to_uppercase(), template.clone()));
                    }
                    from = i + 1;
                }
            }
        }
    }
    routes
}

#[test]
fn every_route_of_the_router_is_in_the_readme_table_and_nothing_else() {
    let table: BTreeSet<(String, String)> = readme_rows()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let router = router_routes();
    assert!(router.len() > 50, "found only {} routes", router.len());
    let missing: Vec<_> = router.difference(&table).collect();
    let extra: Vec<_> = table.difference(&router).collect();
    assert!(
        missing.is_empty(),
        "routes missing from README: {missing:?}"
    );
    assert!(extra.is_empty(), "README rows with no route: {extra:?}");
}

/// A caller of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Superuser,
    Owner,
    OtherOwner,
    MemberWith,
    MemberWithout,
    Viewer,
    Analyst,
    Participant,
    NoToken,
    BadToken,
}

const PERMISSIONS: [&str; 6] = ["view", "edit", "invite", "listen", "export", "admin"];

/// Whether the table's `who` lets `caller` in (`None`: a credential error, 401).
fn expected(who: &str, caller: Who) -> Option<bool> {
    let rule = who.split(' ').next().unwrap();
    let open = matches!(rule, "public" | "participant");
    match caller {
        _ if open => Some(true),
        Who::NoToken | Who::BadToken | Who::Participant => None,
        Who::Superuser => Some(true),
        _ => Some(match rule {
            "signed-in" => true,
            "any" => matches!(caller, Who::Owner | Who::OtherOwner),
            "owner" | "self" => caller == Who::Owner,
            "superuser" => false,
            p if PERMISSIONS.contains(&p) => match caller {
                Who::Owner | Who::MemberWith => true,
                Who::Viewer => p == "view",
                Who::Analyst => p == "export",
                _ => false,
            },
            other => panic!("unknown who {other:?} in README"),
        }),
    }
}

struct Fixture {
    srv: TestServer,
    campaign: String,
    script: String,
    /// Console sign-in cookies by caller (users sign in with their passwords).
    cookies: Vec<(Who, String)>,
    members_with: Vec<(String, String)>,
    members_without: Vec<(String, String)>,
    owner_id: String,
    target_user: String,
}

async fn fixture() -> Fixture {
    let srv = TestServer::start().await;
    let campaign = srv.new_campaign("A").await;
    let other = srv.new_campaign("B").await;
    let script = srv.new_script(&campaign).await;
    let mut cookies = Vec::new();
    let owner_id = srv.new_user("owner@a.org").await;
    srv.grant(&campaign, &owner_id, "owner", &[]).await;
    cookies.push((Who::Owner, srv.signed_in_cookie("owner@a.org").await));
    let other_owner = srv.new_user("owner@b.org").await;
    srv.grant(&other, &other_owner, "owner", &[]).await;
    cookies.push((Who::OtherOwner, srv.signed_in_cookie("owner@b.org").await));
    let viewer = srv.new_user("viewer@a.org").await;
    srv.grant(&campaign, &viewer, "viewer", &[]).await;
    cookies.push((Who::Viewer, srv.signed_in_cookie("viewer@a.org").await));
    let analyst = srv.new_user("analyst@a.org").await;
    srv.grant(&campaign, &analyst, "analyst", &[]).await;
    cookies.push((Who::Analyst, srv.signed_in_cookie("analyst@a.org").await));
    let mut members_with = Vec::new();
    let mut members_without = Vec::new();
    for p in PERMISSIONS {
        let with = format!("with-{p}@a.org");
        let id = srv.new_user(&with).await;
        srv.grant(&campaign, &id, "member", &[p]).await;
        members_with.push((p.to_string(), srv.signed_in_cookie(&with).await));
        let without = format!("without-{p}@a.org");
        let id = srv.new_user(&without).await;
        let rest: Vec<&str> = PERMISSIONS.into_iter().filter(|q| *q != p).collect();
        srv.grant(&campaign, &id, "member", &rest).await;
        members_without.push((p.to_string(), srv.signed_in_cookie(&without).await));
    }
    let target_user = srv.new_user("target@a.org").await;
    Fixture {
        srv,
        campaign,
        script,
        cookies,
        members_with,
        members_without,
        owner_id,
        target_user,
    }
}

impl Fixture {
    /// A fresh consented session of campaign A: (session id, invite token).
    async fn session(&self) -> (String, String) {
        let (token, id) = self
            .srv
            .consented_session(json!({"campaign_id": self.campaign, "script_id": self.script}))
            .await;
        (id, token)
    }

    /// The concrete path of a template, with fresh resources where the route may change them,
    /// and a body that passes validation for routes that read their campaign from it.
    async fn request(&self, row: &Row) -> (String, Value, String) {
        let (session, token) = self.session().await;
        let mut path = row.path.clone();
        let mut body = json!({});
        if path.contains("/v1/webhooks/{id}") {
            let hook = self
                .srv
                .admin_json(
                    Method::POST,
                    "/v1/webhooks",
                    json!({"url": "http://127.0.0.1:9/x", "events": ["session.completed"],
                       "campaign_id": self.campaign}),
                )
                .await["id"]
                .as_str()
                .unwrap()
                .to_string();
            path = path.replace("{id}", &hook);
        }
        if path == "/v1/deletion-requests/{id}/fulfil" {
            // A real request: the session ends, its participant asks for its deletion.
            self.srv
                .admin_json(
                    Method::POST,
                    &format!("/v1/sessions/{session}/end"),
                    json!({}),
                )
                .await;
            let base = &self.srv.base;
            let deletion: Value = self
                .srv
                .http
                .post(format!("{base}/v1/invites/{token}/deletion-token"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let request: Value = self
                .srv
                .http
                .post(format!("{base}/v1/deletion-requests"))
                .json(&json!({"token": deletion["token"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = request["id"].as_str().expect("a deletion request id");
            path = path.replace("{id}", id);
        }
        if path == "/v1/keys/{id}" {
            let key = self
                .srv
                .admin_json(
                    Method::POST,
                    "/v1/keys",
                    json!({"name": "k", "user_id": self.owner_id}),
                )
                .await["id"]
                .as_str()
                .unwrap()
                .to_string();
            path = path.replace("{id}", &key);
        }
        if path == "/v1/users/{id}" {
            let email = format!("gone-{}@a.org", session);
            path = path.replace("{id}", &self.srv.new_user(&email).await);
        }
        if path.contains("{user}") {
            self.srv
                .grant(&self.campaign, &self.target_user, "viewer", &[])
                .await;
            path = path.replace("{user}", &self.target_user);
            body = json!({"role": "viewer"});
        }
        if path.starts_with("/v1/campaigns/{id}") {
            path = path.replace("{id}", &self.campaign);
        }
        if path.starts_with("/v1/scripts/{id}") {
            path = path.replace("{id}", &self.script);
        }
        match (row.method.as_str(), row.path.as_str()) {
            ("POST", "/v1/invites") => {
                body = json!({"campaign_id": self.campaign, "script_id": self.script});
            }
            ("POST", "/v1/scripts") => {
                body = json!({"name": "T", "campaign_id": self.campaign,
                              "prompts": [{"id": "q1", "text": "Hi?", "audio": "q1.wav"}]});
            }
            ("POST", "/v1/webhooks") => {
                body = json!({"url": "http://127.0.0.1:9/x", "events": ["session.completed"],
                              "campaign_id": self.campaign});
            }
            _ => {}
        }
        let path = path
            .replace("{id}", &session)
            .replace("{token}", &token)
            .replace("{file}", "participant.wav")
            .replace("{track}", "participant")
            .replace("{outcome}", "completed")
            .replace("{monitor}", "mon_none")
            .replace("{peer_id}", "peer_none")
            .replace("{delivery}", "dlv_none")
            .replace("{name}", "matrix.wav");
        (path, body, token)
    }

    fn callers(&self, who: &str, invite: &str) -> Vec<(Who, Option<String>, Option<String>)> {
        let needed = who.split(' ').next().unwrap();
        let mut out = vec![
            (Who::Superuser, Some(ADMIN_TOKEN.to_string()), None),
            // A participant's invite token is no credential for the researchers' routes.
            (Who::Participant, Some(invite.to_string()), None),
            (Who::NoToken, None, None),
            (Who::BadToken, Some("ek_notakey".to_string()), None),
        ];
        for (w, c) in &self.cookies {
            out.push((*w, None, Some(c.clone())));
        }
        // Members with and without the permission the route needs (for other rules, the
        // `view` ones: a member with only `view` is still no owner or superuser).
        let perm = if PERMISSIONS.contains(&needed) {
            needed
        } else {
            "view"
        };
        for (p, c) in &self.members_with {
            if p == perm {
                out.push((Who::MemberWith, None, Some(c.clone())));
            }
        }
        for (p, c) in &self.members_without {
            if p == perm {
                out.push((Who::MemberWithout, None, Some(c.clone())));
            }
        }
        out
    }
}

#[tokio::test]
async fn every_route_admits_exactly_the_callers_readme_names() {
    let fx = fixture().await;
    let mut checked = 0;
    for row in readme_rows() {
        let (path, body, invite) = fx.request(&row).await;
        let mut callers = fx.callers(&row.who, &invite);
        if row.path.starts_with("/console/sign") {
            // Public, and they end the browser's sign-in: the cookie callers keep theirs.
            callers.retain(|(_, _, cookie)| cookie.is_none());
        }
        // Refusals first: an allowed call may change or remove what the route acts on.
        callers.sort_by_key(|(w, _, _)| expected(&row.who, *w) == Some(true));
        for (who, bearer, cookie) in callers {
            let method = Method::from_bytes(row.method.as_bytes()).unwrap();
            let mut req = fx
                .srv
                .http
                .request(method.clone(), format!("{}{path}", fx.srv.base))
                .header("x-earshot-console", "1");
            if method != Method::GET {
                req = req.json(&body);
            }
            if let Some(b) = &bearer {
                req = req.bearer_auth(b);
            }
            if let Some(c) = &cookie {
                req = req.header("cookie", c);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            let code = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
            let context = format!(
                "{} {} as {who:?}: {status} {text:.200}",
                row.method, row.path
            );
            match expected(&row.who, who) {
                Some(true) => assert!(status != 401 && status != 403, "allowed, got {context}"),
                Some(false) => {
                    assert_eq!(status, 403, "refused, {context}");
                    assert_eq!(code.as_deref(), Some("forbidden"), "{context}");
                }
                None => {
                    assert_eq!(status, 401, "no credential, {context}");
                    assert_eq!(code.as_deref(), Some("unauthorized"), "{context}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 600, "checked {checked} calls");
}
