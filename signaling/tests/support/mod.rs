//! An in-process server for signaling's route tests: the real router on a loopback socket,
//! the session service on a temporary SQLite file, and a media plane test double whose events the test
//! sends itself.

#![allow(dead_code)]

pub mod access;
pub mod nats;

use earshot_signaling::blob_store::LocalDiskBlobs;
use earshot_signaling::clock::{Clock, SystemClock};
use earshot_signaling::event_bus::EventBus;
use earshot_signaling::lifecycle::LifecycleConfig;
use earshot_signaling::live::Hub;
use earshot_signaling::media_port::{
    MediaError, MediaEvent, MediaPlane, OpenParticipant, RecordingFile, RecordingSpec,
};
use earshot_signaling::pii::{RefuseVault, TextVault};
use earshot_signaling::prompt_dirs::PromptDirs;
use earshot_signaling::routes::limits::Limits;
use earshot_signaling::routes::{self, App, AppState};
use earshot_signaling::service::{Ports, ServiceConfig, SessionService};
use earshot_signaling::store::sqlite::SqliteStore;
use earshot_signaling::store::{CampaignRow, ScriptRow, SessionStore};
use earshot_vocab::media_port::IceCredentials;
use earshot_vocab::{Format, Quality, Track};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const ADMIN_TOKEN: &str = "adm_testtoken";
/// A guard against hangs only (never a measured threshold).
pub const HANG: Duration = Duration::from_secs(30);

/// Records what signaling asked of the media plane.
#[derive(Default)]
pub struct FakeMedia {
    pub calls: Mutex<Vec<String>>,
    pub opened: Mutex<Vec<OpenParticipant>>,
    /// The agent context each `resume` carried.
    pub resumed: Mutex<Vec<Option<earshot_signaling::media_port::AgentSpec>>>,
    /// Listener ids handed out.
    pub listeners: std::sync::atomic::AtomicU64,
}

impl FakeMedia {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, call: &str, session_id: &str) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{call} {session_id}"));
    }
}

#[async_trait::async_trait]
impl MediaPlane for FakeMedia {
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError> {
        self.record("open", &req.session_id);
        self.opened.lock().unwrap().push(req);
        Ok("v=0\r\n".into())
    }
    async fn add_candidate(&self, session_id: &str, _: &str) -> Result<(), MediaError> {
        self.record("candidate", session_id);
        Ok(())
    }
    async fn hang_up(&self, session_id: &str) {
        self.record("hang_up", session_id);
    }
    async fn derive_recording(
        &self,
        _: RecordingSpec,
        _: Track,
        _: Format,
    ) -> Result<RecordingFile, MediaError> {
        Err(MediaError::Internal("no media in these tests".into()))
    }
    async fn restart_ice(
        &self,
        session_id: &str,
        _: IceCredentials,
    ) -> Result<Option<IceCredentials>, MediaError> {
        self.record("restart_ice", session_id);
        Ok(None)
    }
    async fn open_listener(
        &self,
        session_id: &str,
        offer_sdp: &str,
    ) -> Result<(u64, String), MediaError> {
        if !offer_sdp.starts_with("v=0") {
            return Err(MediaError::InvalidSdp("not an SDP offer".into()));
        }
        self.record("listen", session_id);
        let id = self
            .listeners
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((id, "v=0\r\na=sendonly\r\n".into()))
    }
    async fn add_listener_candidate(
        &self,
        session_id: &str,
        listener_id: u64,
        _: &str,
    ) -> Result<(), MediaError> {
        self.record(&format!("listener_candidate {listener_id}"), session_id);
        Ok(())
    }
    async fn close_listener(&self, session_id: &str, listener_id: u64) {
        self.record(&format!("unlisten {listener_id}"), session_id);
    }
    fn metrics_text(&self) -> String {
        "# TYPE earshot_media_sessions gauge\nearshot_media_sessions 0\n".into()
    }
    async fn pause(&self, session_id: &str) {
        self.record("pause", session_id);
    }
    async fn resume(
        &self,
        session_id: &str,
        agent: Option<earshot_signaling::media_port::AgentSpec>,
    ) {
        self.resumed.lock().unwrap().push(agent);
        self.record("resume", session_id);
    }
    async fn discard(&self, session_id: &str) {
        self.record("discard", session_id);
    }
    async fn finish(
        &self,
        session_id: &str,
        _recording: Option<earshot_signaling::media_port::RecordingSpec>,
    ) {
        self.record("finish", session_id);
    }
}

pub struct TestServer {
    pub base: String,
    pub ws_base: String,
    pub app: AppState,
    /// The service's database and live hub, for tests that look behind the API.
    pub store: SqliteStore,
    pub hub: Arc<Hub>,
    pub media: Arc<FakeMedia>,
    pub events: mpsc::Sender<MediaEvent>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(Arc::new(SystemClock), Arc::new(RefuseVault)).await
    }

    /// A server on `clock` (tests move time instead of sleeping) sealing originals with
    /// `vault`.
    pub async fn start_with(clock: Arc<dyn Clock>, vault: Arc<dyn TextVault>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("earshot.db");
        let hub = Arc::new(Hub::default());
        TestServer::build(dir, &db, hub.clone(), hub, clock, vault).await
    }

    /// One node of several: live events go through `bus`, the database is the file `db`
    /// (seeded by the first node), everything else is its own. (`hub` is then unused.)
    pub async fn start_node(db: &std::path::Path, bus: Arc<dyn EventBus>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let unused = Arc::new(Hub::default());
        TestServer::build(
            dir,
            db,
            bus,
            unused,
            Arc::new(SystemClock),
            Arc::new(RefuseVault),
        )
        .await
    }

    async fn build(
        dir: tempfile::TempDir,
        db: &std::path::Path,
        bus: Arc<dyn EventBus>,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
        vault: Arc<dyn TextVault>,
    ) -> TestServer {
        let store = SqliteStore::open(db).await.unwrap();
        let prompt = dir.path().join("q1.wav");
        std::fs::write(&prompt, b"RIFF").unwrap();
        if store.get_campaign("cmp_default").await.unwrap().is_none() {
            store
                .insert_campaign(&CampaignRow {
                    id: "cmp_default".into(),
                    name: "Demo".into(),
                    description: String::new(),
                    created_at: 0,
                })
                .await
                .unwrap();
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
                .unwrap();
        }
        let media = Arc::new(FakeMedia::default());
        let recordings_dir = dir.path().join("recordings");
        let cluster = Arc::new(earshot_signaling::cluster::Cluster::new(
            "test-node",
            clock.clone(),
        ));
        let ports = Ports {
            store: Arc::new(store.clone()),
            media: media.clone(),
            blobs: Arc::new(LocalDiskBlobs::new(recordings_dir.clone())),
            bus,
            clock,
        };
        let config = ServiceConfig {
            lifecycle: LifecycleConfig::default(),
            recordings_dir,
            silence_ms: 1500,
        };
        let service = Arc::new(
            SessionService::with_ports(ports, config)
                .with_webhook_store(Arc::new(store.clone()))
                .with_privacy_store(Arc::new(store.clone()))
                .with_audit_log(earshot_signaling::audit::AuditLog::new(Arc::new(
                    store.clone(),
                )))
                .with_vault(vault)
                .with_drain_switch(cluster.drain_switch()),
        );
        let (events, rx) = mpsc::channel(1024);
        service.clone().spawn(rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(App {
            service,
            admin_token: ADMIN_TOKEN.into(),
            access: Arc::new(earshot_signaling::access::Access::new(
                Arc::new(store.clone()),
                true,
            )),
            public_url: format!("http://{addr}"),
            ice_servers: Vec::new(),
            turn: None,
            record_ip: false,
            default_campaign_id: "cmp_default".into(),
            default_script_id: "scr_default".into(),
            prompt_dirs: PromptDirs::new([dir.path().to_path_buf()]),
            limits: Limits::default(),
            cluster,
            handoff: None,
        });
        tokio::spawn(routes::serve(
            listener,
            app.clone(),
            std::future::pending::<()>(),
        ));
        TestServer {
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            app,
            store,
            hub,
            media,
            events,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// A new invite (optionally for a script, with metadata) and its consented session.
    pub async fn consented_session(&self, body: Value) -> (String, String) {
        let res = self
            .admin(reqwest::Method::POST, "/v1/invites")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let token = res.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let res = self
            .http
            .post(format!("{}/v1/invites/{token}/consent", self.base))
            .json(&json!({"accept": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let id = res.json::<Value>().await.unwrap()["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        (token, id)
    }

    /// A campaign made with `body` (the create body) and a script of it; returns (campaign
    /// id, script id).
    pub async fn campaign_with_script(&self, body: Value) -> (String, String) {
        let c = json_of(
            self.admin(reqwest::Method::POST, "/v1/campaigns")
                .json(&body)
                .send()
                .await
                .unwrap(),
            201,
        )
        .await;
        let cid = c["id"].as_str().unwrap().to_string();
        let s = json_of(
            self.admin(reqwest::Method::POST, "/v1/scripts")
                .json(&json!({"name": "Script", "campaign_id": cid,
                              "prompts": [{"id": "q1", "text": "Hi?", "audio": "q1.wav"}]}))
                .send()
                .await
                .unwrap(),
            201,
        )
        .await;
        (cid, s["id"].as_str().unwrap().to_string())
    }

    /// `GET /metrics` as the admin.
    pub async fn metrics_text(&self) -> String {
        let res = self.admin(reqwest::Method::GET, "/metrics").send().await;
        let res = res.expect("metrics");
        assert_eq!(res.status(), 200, "metrics");
        res.text().await.expect("metrics text")
    }

    pub async fn send(&self, ev: MediaEvent) {
        self.events.send(ev).await.unwrap();
    }

    /// A monitor authorized by `?token=`.
    pub async fn monitor(&self, session_id: &str) -> Monitor {
        let url = format!(
            "{}/v1/sessions/{session_id}/live?token={ADMIN_TOKEN}",
            self.ws_base
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Monitor { ws }
    }

    /// A monitor authorized by the `Authorization` header.
    pub async fn monitor_with_header(&self, session_id: &str) -> Monitor {
        let mut req = format!("{}/v1/sessions/{session_id}/live", self.ws_base)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        Monitor { ws }
    }

    /// The HTTP status a WebSocket handshake to `url` is refused with.
    pub async fn refused_status(&self, req: impl IntoClientRequest + Unpin + Send) -> u16 {
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
            Ok(_) => panic!("the handshake was accepted"),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// The JSON body of a response with `status`.
pub async fn json_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status, "status");
    res.json().await.expect("JSON body")
}

pub struct Monitor {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Monitor {
    /// The next JSON text message; `None` once the server closed the socket.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(HANG, self.ws.next())
                .await
                .expect("no message from the server");
            match msg {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error: {e}"),
            }
        }
    }

    /// Skips lines until one of `kind` arrives (a live stream may repeat what a snapshot
    /// already showed).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next().await.expect("closed before the line came");
            if v["type"] == kind {
                return v;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.send(Message::Close(None)).await;
    }
}

/// The media plane's events a test sends (role `ai` or `participant`).
pub fn turn_started(id: &str, role: &str, at_ms: u64) -> MediaEvent {
    MediaEvent::TurnStarted {
        session_id: id.into(),
        role: role.parse().expect("a role"),
        at_ms,
    }
}

pub fn turn_ended(id: &str, role: &str, start_ms: u64, end_ms: u64) -> MediaEvent {
    MediaEvent::TurnEnded {
        session_id: id.into(),
        role: role.parse().expect("a role"),
        start_ms,
        end_ms,
    }
}

pub fn transcript(
    id: &str,
    role: &str,
    text: &str,
    fin: bool,
    start_ms: u64,
    end_ms: u64,
) -> MediaEvent {
    MediaEvent::Transcript {
        session_id: id.into(),
        role: role.parse().expect("a role"),
        text: text.into(),
        is_final: fin,
        start_ms,
        end_ms,
    }
}
