//! The HTTP-level harnesses: signaling's real axum router, driven in process with tower's
//! `oneshot` (real extractors, rejections and error rendering; real SQLite in a temporary
//! directory), with a media plane that runs the media crate's own offer and candidate checks
//! (no sockets). Every error response must be the documented `{"error":{"code","message"}}`
//! with a 4xx status: a 5xx or another shape for bad input is a finding (the harness panics).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use earshot_media::peer::{PeerError, inspect_offer};
use earshot_signaling::exports::pdf::PdfFonts;
use earshot_signaling::lifecycle::LifecycleConfig;
use earshot_signaling::media_port::{
    AgentSpec, IceCredentials, MediaError, MediaEvent, MediaPlane, OpenParticipant, RecordingFile,
    RecordingSpec,
};
use earshot_signaling::prompt_dirs::PromptDirs;
use earshot_signaling::routes::limits::Limits;
use earshot_signaling::routes::{self, App, AppState};
use earshot_signaling::service::SessionService;
use earshot_signaling::store::SessionStore;
use earshot_signaling::store::sqlite::SqliteStore;
use earshot_signaling::store::{CampaignRow, ScriptRow};
use earshot_vocab::{Format, Quality, Track};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::engine::Harness;
use crate::targets::candidate_outcome;

const ADMIN_TOKEN: &str = "adm_fuzztoken";

/// A browser's WHIP offer (one Opus m-line): sets up the peer that trickle requests address.
pub const OFFER: &str = concat!(
    "v=0\r\n",
    "o=- 3805741951836410349 2 IN IP4 127.0.0.1\r\n",
    "s=-\r\n",
    "t=0 0\r\n",
    "a=group:BUNDLE 0\r\n",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n",
    "c=IN IP4 0.0.0.0\r\n",
    "a=ice-ufrag:q7Xh\r\n",
    "a=ice-pwd:Jf3vB2mQ9zL0pR8sT1uW4yA6\r\n",
    "a=fingerprint:sha-256 8D:2B:1F:6A:93:C4:5E:07:AB:CD:EF:01:23:45:67:89:9A:BC:DE:F0:12:34:56:78:87:65:43:21:0F:ED:CB:A9\r\n",
    "a=setup:actpass\r\n",
    "a=mid:0\r\n",
    "a=sendrecv\r\n",
    "a=rtcp-mux\r\n",
    "a=rtpmap:111 opus/48000/2\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
);

/// The media plane's parsing without its sockets: offers go through `inspect_offer`,
/// candidates through `normalise_candidate` and the library's candidate parser.
struct ParsingMedia;

fn media_error(e: PeerError) -> MediaError {
    match e {
        PeerError::InvalidSdp(m) => MediaError::InvalidSdp(m),
        PeerError::NoAudio => MediaError::NoAudio,
        PeerError::InvalidCandidate(m) => MediaError::InvalidCandidate(m),
        other => MediaError::Internal(other.to_string()),
    }
}

#[async_trait::async_trait]
impl MediaPlane for ParsingMedia {
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError> {
        inspect_offer(&req.offer_sdp).map_err(media_error)?;
        Ok("v=0\r\n".into())
    }
    async fn add_candidate(&self, _: &str, candidate: &str) -> Result<(), MediaError> {
        let outcome = candidate_outcome(candidate);
        if outcome.starts_with("err") || outcome.starts_with("lib") {
            return Err(MediaError::InvalidCandidate(outcome));
        }
        Ok(())
    }
    async fn hang_up(&self, _: &str) {}
    async fn pause(&self, _: &str) {}
    async fn resume(&self, _: &str, _: Option<AgentSpec>) {}
    async fn discard(&self, _: &str) {}
    async fn finish(&self, _: &str, _: Option<RecordingSpec>) {}
    async fn derive_recording(
        &self,
        _: RecordingSpec,
        _: Track,
        _: Format,
    ) -> Result<RecordingFile, MediaError> {
        Err(MediaError::Internal("no media in the fuzz harness".into()))
    }
    async fn restart_ice(
        &self,
        _: &str,
        client: IceCredentials,
    ) -> Result<Option<IceCredentials>, MediaError> {
        for c in &client.candidates {
            self.add_candidate("", c).await?;
        }
        Ok(None)
    }
    async fn open_listener(&self, _: &str, offer_sdp: &str) -> Result<(u64, String), MediaError> {
        inspect_offer(offer_sdp).map_err(media_error)?;
        Ok((1, "v=0\r\n".into()))
    }
    async fn add_listener_candidate(
        &self,
        _: &str,
        _: u64,
        candidate: &str,
    ) -> Result<(), MediaError> {
        self.add_candidate("", candidate).await
    }
    async fn close_listener(&self, _: &str, _: u64) {}
    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// One in-process server: the real router over a fresh SQLite store.
pub struct TestApp {
    rt: tokio::runtime::Runtime,
    router: Router,
    _events: mpsc::Sender<MediaEvent>,
    dir: tempfile::TempDir,
    /// A consented invite with a live WHIP peer.
    pub token: String,
    pub peer: String,
}

/// A response: status, error code (if any) and the body.
pub struct Reply {
    pub status: StatusCode,
    pub code: Option<String>,
    pub body: Vec<u8>,
    pub location: Option<String>,
}

impl TestApp {
    pub fn new() -> TestApp {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (router, events) = rt.block_on(async {
            let store = SqliteStore::open(&dir.path().join("earshot.db"))
                .await
                .expect("store");
            let prompt = dir.path().join("q1.wav");
            std::fs::write(&prompt, b"RIFF").expect("prompt file");
            store
                .insert_campaign(&CampaignRow {
                    id: "cmp_default".into(),
                    name: "Fuzz".into(),
                    description: String::new(),
                    created_at: 0,
                })
                .await
                .expect("campaign");
            let definition = json!({"prompts": [{"id": "q1", "text": "Hello?", "audio": prompt}]});
            store
                .upsert_script(&ScriptRow {
                    id: "scr_default".into(),
                    campaign_id: "cmp_default".into(),
                    name: "Default".into(),
                    definition: definition.to_string(),
                    recording_enabled: true,
                    noise_suppression: false,
                    quality: Quality::Standard,
                    created_at: 0,
                })
                .await
                .expect("script");
            let fonts = PdfFonts::new(
                include_bytes!("../../../assets/fonts/DejaVuSans.ttf"),
                include_bytes!("../../../assets/fonts/DroidSansFallbackFull.ttf"),
            )
            .expect("fonts");
            let service = Arc::new(
                SessionService::new(
                    store.clone(),
                    Arc::new(ParsingMedia),
                    LifecycleConfig::default(),
                    dir.path().join("recordings"),
                    1500,
                )
                .with_pdf_fonts(fonts),
            );
            let (events, rx) = mpsc::channel(64);
            service.clone().spawn(rx);
            let app: AppState = Arc::new(App {
                service,
                admin_token: ADMIN_TOKEN.into(),
                access: Arc::new(earshot_signaling::access::Access::new(store, true)),
                public_url: "http://127.0.0.1:8080".into(),
                ice_servers: Vec::new(),
                turn: None,
                record_ip: false,
                default_campaign_id: "cmp_default".into(),
                default_script_id: "scr_default".into(),
                prompt_dirs: PromptDirs::new([dir.path().to_path_buf()]),
                // Every fuzz case may make a fresh invite and WHIP offer from the one address
                // of the harness: the per-address offer rate would refuse them after 60.
                limits: Limits::new(earshot_signaling::routes::limits::HttpLimits {
                    whip_offers_per_address_per_minute: u32::MAX,
                    ..Default::default()
                }),
                cluster: Arc::new(earshot_signaling::cluster::Cluster::new(
                    "fuzz",
                    Arc::new(earshot_signaling::clock::SystemClock),
                )),
                handoff: None,
            });
            (routes::router(app), events)
        });
        let mut app = TestApp {
            rt,
            router,
            _events: events,
            dir,
            token: String::new(),
            peer: String::new(),
        };
        app.fresh_invite();
        app
    }

    /// A temporary directory of the app's (holds a file that passes as prompt audio).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A new invite, consented, with a WHIP peer.
    pub fn fresh_invite(&mut self) {
        let r = self.send(Method::POST, "/v1/invites", true, None, b"{}".to_vec());
        assert_eq!(r.status, StatusCode::CREATED, "create invite");
        let v: Value = serde_json::from_slice(&r.body).expect("invite JSON");
        self.token = v["token"].as_str().expect("token").to_owned();
        let path = format!("/v1/invites/{}/consent", self.token);
        let r = self.send(
            Method::POST,
            &path,
            false,
            Some("application/json"),
            br#"{"accept":true}"#.to_vec(),
        );
        assert_eq!(r.status, StatusCode::OK, "consent");
        let path = format!("/v1/invites/{}/whip", self.token);
        let r = self.send(
            Method::POST,
            &path,
            false,
            Some("application/sdp"),
            OFFER.as_bytes().to_vec(),
        );
        assert_eq!(r.status, StatusCode::CREATED, "WHIP offer");
        let location = r.location.expect("WHIP Location");
        self.peer = location.rsplit('/').next().unwrap_or_default().to_owned();
    }

    /// Sends one request (`None` if `uri` is not a valid URI) and checks the error shape.
    pub fn try_send(
        &self,
        method: Method,
        uri: &str,
        admin: bool,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Option<Reply> {
        let mut req = Request::builder().method(method).uri(uri);
        if admin {
            req = req.header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req = req.header(header::USER_AGENT, "earshot-fuzz/1.0");
        let mut req = req.body(Body::from(body)).ok()?;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let router = self.router.clone();
        let reply = self.rt.block_on(async move {
            let res = router.oneshot(req).await.expect("infallible router");
            let status = res.status();
            let text_header = |name| {
                res.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let location = text_header(header::LOCATION);
            let content_type = text_header(header::CONTENT_TYPE).unwrap_or_default();
            let body = axum::body::to_bytes(res.into_body(), 16 << 20)
                .await
                .expect("response body");
            (status, location, content_type, body.to_vec())
        });
        let (status, location, content_type, body) = reply;
        // The participant page answers an unknown invite with itself (HTML) and a 404.
        let page = content_type.starts_with("text/html");
        let code = if (status.is_client_error() || status.is_server_error()) && !page {
            let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                let text = String::from_utf8_lossy(&body);
                panic!(
                    "{status} without a JSON error body ({e}): {:?}",
                    text.chars().take(200).collect::<String>()
                )
            });
            let code = v["error"]["code"].as_str().map(str::to_owned);
            assert!(
                code.is_some() && v["error"]["message"].is_string(),
                "{status} with an error body not of the documented shape: {v}"
            );
            assert!(
                !status.is_server_error(),
                "{status} for a request: {v} (bad input must get a clear 4xx error)"
            );
            code
        } else {
            None
        };
        Some(Reply {
            status,
            code,
            body,
            location,
        })
    }

    pub fn send(
        &self,
        method: Method,
        uri: &str,
        admin: bool,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        self.try_send(method, uri, admin, content_type, body)
            .expect("valid URI")
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

fn outcome(r: &Reply) -> String {
    match &r.code {
        Some(code) => format!("{}:{code}", r.status.as_u16()),
        None => r.status.as_u16().to_string(),
    }
}

/// Percent-encodes what cannot stand in a URI, keeping the characters that structure one.
fn uri_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 3);
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~=&%+!$'()*,;:@/?".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// sdpfrag: trickle ICE through PATCH
// ---------------------------------------------------------------------------------------------

/// Trickle ICE (`application/trickle-ice-sdpfrag`) to a live WHIP peer.
pub struct TrickleHarness {
    app: TestApp,
    cases: u64,
}

impl TrickleHarness {
    pub fn new() -> Self {
        TrickleHarness {
            app: TestApp::new(),
            cases: 0,
        }
    }
}

impl Default for TrickleHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for TrickleHarness {
    fn run(&mut self, data: &[u8]) -> String {
        self.cases += 1;
        let path = format!("/v1/invites/{}/whip/{}", self.app.token, self.app.peer);
        let r = self.app.send(
            Method::PATCH,
            &path,
            false,
            Some("application/trickle-ice-sdpfrag"),
            data.to_vec(),
        );
        // The lifecycle may end a session whose media never connects (after many minutes):
        // then the next case gets a fresh invite and peer.
        if matches!(
            r.code.as_deref(),
            Some("peer_not_found" | "session_ended" | "consent_required")
        ) {
            self.app.fresh_invite();
        }
        outcome(&r)
    }
}

// ---------------------------------------------------------------------------------------------
// api: request bodies, queries and URIs
// ---------------------------------------------------------------------------------------------

/// The routes the `api` target feeds. An input starting with `<name>\n` goes to that route
/// with the rest as its body; any other input goes to the route its first byte picks, whole.
pub const API_ROUTES: [&str; 10] = [
    "invites", "scripts", "consent", "pause", "whip", "trickle", "sessions", "uri", "webhooks",
    "exports",
];

pub struct ApiHarness {
    app: TestApp,
    cases: u64,
}

impl ApiHarness {
    pub fn new() -> Self {
        ApiHarness {
            app: TestApp::new(),
            cases: 0,
        }
    }
}

impl Default for ApiHarness {
    fn default() -> Self {
        Self::new()
    }
}

fn split_route(data: &[u8]) -> (&'static str, &[u8]) {
    for name in API_ROUTES {
        if let Some(rest) = data.strip_prefix(name.as_bytes())
            && let Some(rest) = rest.strip_prefix(b"\n")
        {
            return (name, rest);
        }
    }
    let i = data
        .first()
        .map_or(0, |&b| usize::from(b) % API_ROUTES.len());
    (API_ROUTES[i], data)
}

impl Harness for ApiHarness {
    fn run(&mut self, data: &[u8]) -> String {
        self.cases += 1;
        // Consent, pause and offers move the invite's session along (to the end, sometimes):
        // a fresh invite now and then keeps every route reachable.
        if self.cases.is_multiple_of(500) {
            self.app.fresh_invite();
        }
        let (route, body) = split_route(data);
        let app = &mut self.app;
        let tok = app.token.clone();
        let body = body.to_vec();
        let json = Some("application/json");
        let r = match route {
            "invites" => app.send(Method::POST, "/v1/invites", true, json, body),
            "scripts" => app.send(Method::POST, "/v1/scripts", true, json, body),
            "consent" => app.send(
                Method::POST,
                &format!("/v1/invites/{tok}/consent"),
                false,
                json,
                body,
            ),
            "pause" => app.send(
                Method::POST,
                &format!("/v1/invites/{tok}/pause"),
                false,
                json,
                body,
            ),
            "whip" => {
                let r = app.send(
                    Method::POST,
                    &format!("/v1/invites/{tok}/whip"),
                    false,
                    Some("application/sdp"),
                    body,
                );
                if let Some(peer) = r.location.as_deref().and_then(|l| l.rsplit('/').next()) {
                    app.peer = peer.to_owned();
                }
                r
            }
            "trickle" => app.send(
                Method::PATCH,
                &format!("/v1/invites/{tok}/whip/{}", app.peer),
                false,
                Some("application/trickle-ice-sdpfrag"),
                body,
            ),
            "webhooks" => app.send(Method::POST, "/v1/webhooks", true, json, body),
            "exports" => {
                let uri = format!("/v1/exports/sessions.csv?{}", uri_encode(&body));
                match app.try_send(Method::GET, &uri, true, None, Vec::new()) {
                    Some(r) => r,
                    None => return "bad-uri".to_owned(),
                }
            }
            "sessions" => {
                let uri = format!("/v1/sessions?{}", uri_encode(&body));
                match app.try_send(Method::GET, &uri, true, None, Vec::new()) {
                    Some(r) => r,
                    None => return "bad-uri".to_owned(),
                }
            }
            _ => {
                // An arbitrary URI: method and admin token from the first byte.
                let (first, rest) = body.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
                let method = [
                    Method::GET,
                    Method::POST,
                    Method::PATCH,
                    Method::DELETE,
                    Method::PUT,
                ][usize::from(first) % 5]
                    .clone();
                let admin = first & 0x80 == 0;
                let path = uri_encode(rest);
                let uri = if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                };
                match app.try_send(method, &uri, admin, json, Vec::new()) {
                    Some(r) => r,
                    None => return "bad-uri".to_owned(),
                }
            }
        };
        format!("{route}:{}", outcome(&r))
    }
}
