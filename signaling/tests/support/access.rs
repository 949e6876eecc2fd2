//! Users, roles and sign-ins for route tests, made through the API with the admin token.

use super::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

/// The password every test user gets.
pub const PASSWORD: &str = "a long enough password";

impl TestServer {
    /// An admin-token call that must succeed; its JSON body (`null` if none).
    pub async fn admin_json(&self, method: Method, path: &str, body: Value) -> Value {
        let res = self.admin(method, path).json(&body).send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new campaign's id.
    pub async fn new_campaign(&self, name: &str) -> String {
        self.admin_json(Method::POST, "/v1/campaigns", json!({"name": name}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An admin-token GET's JSON body, whatever the status.
    pub async fn admin_get_json(&self, path: &str) -> Value {
        self.admin(Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A new one-prompt script of `campaign`; its id.
    pub async fn new_script(&self, campaign: &str) -> String {
        self.admin_json(
            Method::POST,
            "/v1/scripts",
            json!({"name": "S", "campaign_id": campaign,
                   "prompts": [{"id": "q1", "text": "Hi?", "audio": "q1.wav"}]}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A new user (password [`PASSWORD`]); its id.
    pub async fn new_user(&self, email: &str) -> String {
        self.admin_json(
            Method::POST,
            "/v1/users",
            json!({"email": email, "password": PASSWORD}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Gives `user` `role` (and a member's `perms`) on `campaign`.
    pub async fn grant(&self, campaign: &str, user: &str, role: &str, perms: &[&str]) {
        self.admin_json(
            Method::PUT,
            &format!("/v1/campaigns/{campaign}/grants/{user}"),
            json!({"role": role, "permissions": perms}),
        )
        .await;
    }

    /// A console sign-in request (with the console's header).
    pub fn sign_in_request(&self, email: &str, password: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/console/signin", self.base))
            .header("x-earshot-console", "1")
            .json(&json!({"email": email, "password": password}))
    }

    /// Signs `email` in with [`PASSWORD`]: the `name=value` of its cookie.
    pub async fn signed_in_cookie(&self, email: &str) -> String {
        let res = self.sign_in_request(email, PASSWORD).send().await.unwrap();
        assert_eq!(res.status(), 204, "sign-in of {email}");
        cookie_pair(&res)
    }
}

/// The `name=value` of a response's `Set-Cookie`.
pub fn cookie_pair(res: &reqwest::Response) -> String {
    res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}
