//! Wiring: builds the store, the media engine and the signaling layer from the configuration,
//! adapts the media engine to signaling's [`MediaPlane`] port, and runs the HTTP server.

use crate::config::Config;
use crate::defaults;
use crate::rlimit;
use crate::secrets;
use anyhow::Context;
use earshot_media::codec::OpusSettings;
use earshot_media::engine::{
    AgentAudioFormat, AgentRequest, Engine, EngineConfig, EngineError, EngineEvent,
    ParticipantRequest,
};
use earshot_media::peer::{IceServer, PeerConfig};
use earshot_media::recorder::QualityPreset;
use earshot_signaling::media_port::{
    AgentSpec, MediaError, MediaEvent, MediaPlane, OpenParticipant, PromptSpec, RecordingFile,
    RecordingSpec,
};
use earshot_signaling::prompt_dirs::PromptDirs;
use earshot_signaling::routes::App;
use earshot_signaling::routes::limits::Limits;
use earshot_signaling::service::SessionService;
use earshot_signaling::store::sqlite::SqliteStore;
use earshot_signaling::store::{CampaignRow, ScriptRow, SessionStore};
use earshot_signaling::{ids, now_ms};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Runs the server until SIGINT/SIGTERM.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let open_files = match rlimit::raise_open_files() {
        Ok(f) => {
            tracing::info!(soft = f.soft, hard = f.hard, raised_from = ?f.raised_from, "open-file limit");
            Some(f)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the open-file limit could not be read or raised");
            None
        }
    };
    let max_connections = rlimit::connection_cap(cfg.limits.max_connections, open_files);
    let data_dir = cfg.server.data_dir.clone();
    secrets::prepare_data_dir(&data_dir)
        .with_context(|| format!("preparing data directory {}", data_dir.display()))?;
    let (admin_token, token_source) =
        secrets::admin_token(&data_dir, std::env::var(secrets::ADMIN_TOKEN_VAR).ok())?;
    let store = SqliteStore::open(&data_dir.join("earshot.db"))
        .await
        .context("opening the database")?;
    let default_prompts = seed_defaults(&store, &data_dir, &cfg).await?;
    if !cfg.prompts_dir().is_dir() {
        tracing::warn!(dir = %cfg.prompts_dir().display(), "no prompts directory: scripts can name only the built-in prompts");
    }

    let (engine, engine_events) = Engine::new(engine_config(&cfg));
    // Decode and Opus-encode the built-in prompts now, not while the first participant waits.
    let prompts: Vec<_> = default_prompts.into_iter().map(engine_prompt).collect();
    if let Err(e) = engine.preload_prompts(&prompts).await {
        tracing::warn!(error = %e, "built-in prompts not preloaded");
    }
    let (media_tx, media_rx) = mpsc::channel(1024);
    tokio::spawn(forward_events(engine_events, media_tx));
    let media: Arc<dyn MediaPlane> = Arc::new(EngineAdapter {
        engine: engine.clone(),
        quality_default: cfg.recording.quality.clone(),
        derive_at_end: cfg.recording.derive == "at_end",
        agent_retry: std::time::Duration::from_secs(cfg.agent.retry_secs),
    });
    let sessions = Arc::new(
        SessionService::new(
            store.clone(),
            media,
            cfg.lifecycle.clone(),
            data_dir.join("recordings"),
            cfg.interviewer.silence_ms,
        )
        .with_max_sessions(cfg.limits.max_sessions),
    );
    sessions.recover_after_restart().await;
    sessions.clone().spawn(media_rx);

    let public_url = cfg.public_url();
    let app = Arc::new(App {
        service: sessions,
        admin_token: admin_token.clone(),
        public_url: public_url.clone(),
        ice_servers: cfg.turn.ice_servers.clone(),
        record_ip: cfg.server.record_ip,
        default_campaign_id: defaults::CAMPAIGN_ID.into(),
        default_script_id: defaults::SCRIPT_ID.into(),
        // The operator's prompts, then the built-in ones (`default/<id>.wav`).
        prompt_dirs: PromptDirs::new([cfg.prompts_dir(), data_dir.join("prompts")]),
        limits: Limits::new(cfg.limits.http(max_connections)),
    });
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let demo = demo_invite(&store).await?;
    tracing::info!(listen = %cfg.server.listen, media_ip = %cfg.media_ip(), max_connections, "earshot is serving");
    // The token is shown once, when it was just made; never when the operator set it.
    match token_source {
        secrets::TokenSource::Generated => tracing::info!(
            "admin API: {public_url}/v1/sessions with header 'Authorization: Bearer {admin_token}' (a new admin token, stored in {})",
            data_dir.join("admin_token").display()
        ),
        secrets::TokenSource::File => tracing::info!(
            "admin API: {public_url}/v1/sessions (admin token in {})",
            data_dir.join("admin_token").display()
        ),
        secrets::TokenSource::Environment => tracing::info!(
            "admin API: {public_url}/v1/sessions (admin token from {})",
            secrets::ADMIN_TOKEN_VAR
        ),
    }
    tracing::info!("demo invite (open in a browser): {public_url}/i/{demo}");
    earshot_signaling::routes::serve(listener, app, shutdown_signal())
        .await
        .context("serving HTTP")?;
    engine.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn seed_defaults(
    store: &SqliteStore,
    data_dir: &std::path::Path,
    cfg: &Config,
) -> anyhow::Result<Vec<PromptSpec>> {
    let prompts = defaults::write_default_prompts(&data_dir.join("prompts").join("default"))
        .context("writing the default prompts")?;
    store
        .insert_campaign(&CampaignRow {
            id: defaults::CAMPAIGN_ID.into(),
            name: defaults::CAMPAIGN_NAME.into(),
            created_at: now_ms(),
        })
        .await?;
    let definition = serde_json::json!({ "prompts": prompts });
    store
        .upsert_script(&ScriptRow {
            id: defaults::SCRIPT_ID.into(),
            campaign_id: defaults::CAMPAIGN_ID.into(),
            name: defaults::SCRIPT_NAME.into(),
            definition: definition.to_string(),
            recording_enabled: cfg.recording.enabled,
            noise_suppression: cfg.recording.noise_suppression,
            quality: cfg.recording.quality.clone(),
            created_at: now_ms(),
        })
        .await?;
    Ok(prompts)
}

/// One invite to try the product right away.
async fn demo_invite(store: &SqliteStore) -> anyhow::Result<String> {
    let invite = earshot_signaling::store::InviteRow {
        token: ids::new_invite_token(),
        campaign_id: defaults::CAMPAIGN_ID.into(),
        script_id: defaults::SCRIPT_ID.into(),
        metadata: "{}".into(),
        created_at: now_ms(),
    };
    store.insert_invite(&invite).await?;
    Ok(invite.token)
}

fn recording_file(file: earshot_media::engine::RecordedFile) -> RecordingFile {
    RecordingFile {
        track: file.track,
        format: file.format,
        path: file.path,
        duration_ms: file.duration_ms,
        bytes: file.bytes,
    }
}

fn engine_prompt(p: PromptSpec) -> earshot_media::engine::Prompt {
    earshot_media::engine::Prompt {
        id: p.id,
        text: p.text,
        audio: p.audio,
    }
}

fn engine_config(cfg: &Config) -> EngineConfig {
    EngineConfig {
        peer: PeerConfig {
            bind_ip: cfg.media_ip(),
            udp_port_min: cfg.media.udp_port_min,
            udp_port_max: cfg.media.udp_port_max,
            nat_1to1_ips: cfg.media.nat_1to1_ips.clone(),
            ice_servers: Vec::<IceServer>::new(),
            ice_lite: true,
            opus_fmtp: format!("minptime=10;useinbandfec={}", u8::from(cfg.opus.fec)),
            liveness: Default::default(),
        },
        opus: OpusSettings {
            bitrate_bps: cfg.opus.bitrate,
            complexity: cfg.opus.complexity,
            fec: cfg.opus.fec,
            dtx: cfg.opus.dtx,
            ..OpusSettings::default()
        },
    }
}

fn parse_quality(name: &str) -> Option<QualityPreset> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Adapts the media engine to signaling's port.
struct EngineAdapter {
    engine: Arc<Engine>,
    quality_default: String,
    /// `[recording] derive = "at_end"`: the mix and MP3s are made when a session ends.
    derive_at_end: bool,
    agent_retry: std::time::Duration,
}

impl EngineAdapter {
    /// The script's preset, else the configured default, else high.
    fn quality(&self, name: &str) -> QualityPreset {
        parse_quality(name)
            .or_else(|| parse_quality(&self.quality_default))
            .unwrap_or(QualityPreset::High)
    }
}

fn agent_request(a: AgentSpec, retry_for: std::time::Duration) -> Result<AgentRequest, MediaError> {
    Ok(AgentRequest {
        audio_format: a
            .audio_format
            .parse::<AgentAudioFormat>()
            .map_err(|e| MediaError::Internal(e.to_string()))?,
        url: a.url,
        custom_parameters: a.custom_parameters,
        retry_for,
    })
}

fn media_error(e: EngineError) -> MediaError {
    match e {
        EngineError::InvalidSdp(m) => MediaError::InvalidSdp(m),
        EngineError::NoAudio => MediaError::NoAudio,
        EngineError::InvalidCandidate(m) => MediaError::InvalidCandidate(m),
        EngineError::UnknownSession => MediaError::UnknownSession,
        other => MediaError::Internal(other.to_string()),
    }
}

#[async_trait::async_trait]
impl MediaPlane for EngineAdapter {
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError> {
        let quality = self.quality(&req.recording.quality);
        let agent = req
            .interview
            .agent
            .map(|a| agent_request(a, self.agent_retry))
            .transpose()?;
        let request = ParticipantRequest {
            agent,
            session_id: req.session_id,
            offer_sdp: req.offer_sdp,
            prompts: req
                .interview
                .prompts
                .into_iter()
                .map(engine_prompt)
                .collect(),
            silence_ms: req.interview.silence_ms,
            start_at: req.interview.start_at,
            noise_suppression: req.recording.noise_suppression,
            recording: req
                .recording
                .enabled
                .then_some(earshot_media::engine::RecordingRequest {
                    dir: req.recording.dir,
                    quality,
                    derive_at_end: self.derive_at_end,
                }),
        };
        self.engine
            .open_participant(request)
            .await
            .map_err(media_error)
    }

    async fn add_candidate(&self, session_id: &str, candidate: &str) -> Result<(), MediaError> {
        self.engine
            .add_candidate(session_id, candidate)
            .await
            .map_err(media_error)
    }

    async fn derive_recording(
        &self,
        recording: RecordingSpec,
        track: &str,
        format: &str,
    ) -> Result<RecordingFile, MediaError> {
        let req = earshot_media::engine::RecordingRequest {
            quality: self.quality(&recording.quality),
            dir: recording.dir,
            derive_at_end: self.derive_at_end,
        };
        let file = self
            .engine
            .derive_recording(req, track, format)
            .await
            .map_err(media_error)?;
        Ok(recording_file(file))
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        self.engine.metrics().render(&mut out);
        out
    }

    async fn hang_up(&self, session_id: &str) {
        self.engine.hang_up(session_id).await;
    }

    async fn finish(&self, session_id: &str, recording: Option<RecordingSpec>) {
        let orphan = recording.map(|r| earshot_media::engine::RecordingRequest {
            quality: self.quality(&r.quality),
            dir: r.dir,
            derive_at_end: self.derive_at_end,
        });
        self.engine.finish(session_id, orphan).await;
    }

    async fn pause(&self, session_id: &str) {
        self.engine.pause(session_id).await;
    }

    async fn resume(&self, session_id: &str, agent: Option<AgentSpec>) {
        let agent = match agent
            .map(|a| agent_request(a, self.agent_retry))
            .transpose()
        {
            Ok(agent) => agent,
            Err(e) => {
                tracing::error!(session = session_id, error = %e, "agent spec refused on resume");
                None
            }
        };
        self.engine.resume(session_id, agent).await;
    }

    async fn discard(&self, session_id: &str) {
        self.engine.discard(session_id).await;
    }
}

/// Translates media events into signaling's events.
async fn forward_events(mut rx: mpsc::Receiver<EngineEvent>, tx: mpsc::Sender<MediaEvent>) {
    while let Some(ev) = rx.recv().await {
        let out = match ev {
            EngineEvent::Connected { session_id } => MediaEvent::Connected { session_id },
            EngineEvent::Disconnected { session_id } => MediaEvent::Disconnected { session_id },
            EngineEvent::AudioRestored { session_id } => MediaEvent::Restored { session_id },
            EngineEvent::Progress {
                session_id,
                prompt_index,
                prompt_id,
                text,
            } => MediaEvent::Progress {
                session_id,
                prompt_index,
                prompt_id,
                text,
            },
            EngineEvent::TurnStarted {
                session_id,
                role,
                at_ms,
            } => MediaEvent::TurnStarted {
                session_id,
                role: role.as_str().into(),
                at_ms,
            },
            EngineEvent::TurnEnded {
                session_id,
                role,
                start_ms,
                end_ms,
            } => MediaEvent::TurnEnded {
                session_id,
                role: role.as_str().into(),
                start_ms,
                end_ms,
            },
            EngineEvent::Transcript {
                session_id,
                role,
                text,
                is_final,
                start_ms,
                end_ms,
            } => MediaEvent::Transcript {
                session_id,
                role: role.as_str().into(),
                text,
                is_final,
                start_ms,
                end_ms,
            },
            EngineEvent::AgentFailed { session_id, detail } => {
                MediaEvent::AgentFailed { session_id, detail }
            }
            EngineEvent::InterviewFinished { session_id } => {
                MediaEvent::InterviewFinished { session_id }
            }
            EngineEvent::RecordingReady { session_id, file } => MediaEvent::RecordingReady {
                session_id,
                file: recording_file(file),
            },
            EngineEvent::RecordingsFinished { session_id } => {
                MediaEvent::RecordingsFinished { session_id }
            }
            EngineEvent::Failed { session_id, detail } => MediaEvent::Failed { session_id, detail },
        };
        if tx.send(out).await.is_err() {
            break;
        }
    }
}
