//! Hands a participant's WHIP request to the media node that holds, or is to hold, the
//! session (F13). Earshot hands off rather than redirects: the request goes on over HTTP to the
//! node's internal address as it came (method, path, the headers WHIP uses, body) and the
//! node's answer comes back as the node gave it. The participant's page keeps talking to one
//! origin (no CORS, no public HTTP address per media node), and the resource URL in
//! `Location` stays valid through any API node, which hands its PATCH and DELETE on the same
//! way. The media node sees the participant's address in `X-Forwarded-For` (list the API
//! nodes in its `[server] trusted_proxies`) and [`HANDED_OFF`], which makes it serve the
//! request itself.

use super::state::App;
use crate::error::ApiError;
use crate::placement::NodeAnnouncement;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::time::Duration;

/// Set on a handed-off request (its value: the API node's id): the receiving node serves it
/// and never hands it on.
pub const HANDED_OFF: &str = "x-earshot-handoff";

/// Request headers a handed-off WHIP request keeps.
const REQUEST_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::IF_MATCH,
    header::USER_AGENT,
    header::ACCEPT,
];

/// Response headers the participant gets back.
const RESPONSE_HEADERS: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::ETAG,
    header::LINK,
    header::RETRY_AFTER,
    header::CACHE_CONTROL,
    HeaderName::from_static("accept-patch"),
];

/// Forwards requests to media nodes.
#[derive(Debug, Clone)]
pub struct Handoff {
    client: reqwest::Client,
    /// This node's id, sent in [`HANDED_OFF`].
    node_id: String,
}

impl Handoff {
    /// A forwarder for node `node_id`; a media node that does not answer within `timeout`
    /// counts as unavailable.
    pub fn new(node_id: &str, timeout: Duration) -> Handoff {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Handoff {
            client,
            node_id: node_id.to_string(),
        }
    }

    /// Sends the request to `node_url` (the media node's internal base URL) and returns its
    /// answer. `503 media_unavailable` when the node cannot be reached.
    pub async fn forward(
        &self,
        node_url: &str,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        client: IpAddr,
        body: Bytes,
    ) -> Response {
        let url = format!("{}{}", node_url.trim_end_matches('/'), path_and_query);
        let mut request = self.client.request(method, &url).body(body);
        for name in REQUEST_HEADERS.iter() {
            for value in headers.get_all(name) {
                request = request.header(name, value);
            }
        }
        let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {client}"),
            None => client.to_string(),
        };
        request = request
            .header("x-forwarded-for", forwarded)
            .header(HANDED_OFF, &self.node_id);
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(node = %node_url, error = %e, "hand-off to a media node failed");
                return unavailable().into_response();
            }
        };
        let status = answer.status();
        let mut kept = HeaderMap::new();
        for name in RESPONSE_HEADERS.iter() {
            for value in answer.headers().get_all(name) {
                if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                    kept.append(name.clone(), value);
                }
            }
        }
        match answer.bytes().await {
            Ok(body) => (
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                kept,
                body,
            )
                .into_response(),
            Err(e) => {
                tracing::warn!(node = %node_url, error = %e, "a media node's answer broke off");
                unavailable().into_response()
            }
        }
    }
}

/// The node a participant's WHIP request of `session_id` goes to, when not this one: for an
/// offer (`new_peer`) the node placement picks (the holder while it lives), for a PATCH or
/// DELETE the holder. `None`: serve it here (one process, a handed-off request, or this node
/// is the one). An offer no node can take is `503 server_busy`.
pub fn target(
    app: &App,
    session_id: &str,
    headers: &HeaderMap,
    new_peer: bool,
) -> Result<Option<NodeAnnouncement>, ApiError> {
    if app.handoff.is_none() || headers.contains_key(HANDED_OFF) {
        return Ok(None);
    }
    // `place` is the holder while it lives, else the node placement picks: an offer takes
    // either, a PATCH or DELETE only a holder.
    if !new_peer && app.cluster.holder(session_id).is_none() {
        return Ok(None);
    }
    let node = app
        .cluster
        .place(session_id)
        .ok_or_else(|| ApiError::server_busy("sessions on every media node"))?;
    Ok((node.node_id != app.cluster.node_id()).then_some(node))
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "media_unavailable",
        "the media plane could not serve this session; try again later",
    )
    .with_retry_after(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Request;
    use std::sync::{Arc, Mutex};

    /// What the media node received.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        method: String,
        path: String,
        content_type: String,
        forwarded_for: String,
        handed_off: String,
        cookie: Option<String>,
        body: Vec<u8>,
    }

    async fn media_node() -> (String, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        // Every path: a fallback (authz_matrix reads the routes of this folder).
        let app = Router::new().fallback(move |req: Request| {
            let record = record.clone();
            async move {
                let (parts, body) = req.into_parts();
                let h = |n: &str| {
                    parts
                        .headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                *record.lock().unwrap() = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.to_string(),
                    content_type: h("content-type"),
                    forwarded_for: h("x-forwarded-for"),
                    handed_off: h(HANDED_OFF),
                    cookie: parts.headers.get("cookie").map(|_| h("cookie")),
                    body: body.to_vec(),
                };
                (
                    StatusCode::CREATED,
                    [
                        ("content-type", "application/sdp"),
                        ("location", "/v1/invites/inv_x/whip/peer_1"),
                        ("etag", "\"abc\""),
                        ("set-cookie", "node=b"),
                    ],
                    "v=0 answer",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn a_handed_off_offer_arrives_whole_and_its_answer_comes_back() {
        let (url, seen) = media_node().await;
        let handoff = Handoff::new("node-a", Duration::from_secs(5));
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/sdp"));
        headers.insert("cookie", HeaderValue::from_static("earshot_console=secret"));
        let answer = handoff
            .forward(
                &url,
                Method::POST,
                "/v1/invites/inv_x/whip",
                &headers,
                "198.51.100.7".parse().unwrap(),
                Bytes::from_static(b"v=0 offer"),
            )
            .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/v1/invites/inv_x/whip");
        assert_eq!(seen.content_type, "application/sdp");
        assert_eq!(seen.forwarded_for, "198.51.100.7");
        assert_eq!(seen.handed_off, "node-a");
        assert_eq!(seen.body, b"v=0 offer");
        // Credentials of this origin never travel to a media node.
        assert_eq!(seen.cookie, None);

        assert_eq!(answer.status(), StatusCode::CREATED);
        let h = answer.headers();
        assert_eq!(h["location"], "/v1/invites/inv_x/whip/peer_1");
        assert_eq!(h["etag"], "\"abc\"");
        assert_eq!(h["content-type"], "application/sdp");
        assert!(h.get("set-cookie").is_none());
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&body[..], b"v=0 answer");
    }

    #[tokio::test]
    async fn an_earlier_proxy_chain_is_kept_in_x_forwarded_for() {
        let (url, seen) = media_node().await;
        let handoff = Handoff::new("node-a", Duration::from_secs(5));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
        );
        handoff
            .forward(
                &url,
                Method::DELETE,
                "/v1/invites/inv_x/whip/peer_1",
                &headers,
                "10.0.0.2".parse().unwrap(),
                Bytes::new(),
            )
            .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.method, "DELETE");
        assert_eq!(seen.forwarded_for, "203.0.113.9, 10.0.0.1, 10.0.0.2");
    }

    #[tokio::test]
    async fn a_node_that_does_not_answer_is_media_unavailable() {
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let handoff = Handoff::new("node-a", Duration::from_secs(2));
        let answer = handoff
            .forward(
                &url,
                Method::POST,
                "/v1/invites/inv_x/whip",
                &HeaderMap::new(),
                "127.0.0.1".parse().unwrap(),
                Bytes::new(),
            )
            .await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()["retry-after"], "2");
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "media_unavailable");
    }
}
