//! Wiring: builds the store, the media engine and the signaling layer from the configuration,
//! hands the engine (which implements signaling's [`MediaPlane`] port and sends its events) to
//! the session service, and runs the HTTP server.

use crate::config::Config;
use crate::config::bus::Role;
use crate::config::storage::Storage;
use crate::defaults;
use crate::fonts;
use crate::rlimit;
use crate::secrets;
use anyhow::Context;
use earshot_media::codec::OpusSettings;
use earshot_media::engine::{Engine, EngineConfig};
use earshot_media::peer::{IceServer, PeerConfig};
use earshot_signaling::blob_store::object::ObjectStoreBlobs;
use earshot_signaling::event_bus::{EventBus, nats};
use earshot_signaling::live::Hub;
use earshot_signaling::media_port::{MediaPlane, PromptSpec};
use earshot_signaling::prompt_dirs::PromptDirs;
use earshot_signaling::routes::App;
use earshot_signaling::routes::limits::Limits;
use earshot_signaling::service::SessionService;
use earshot_signaling::store::{CampaignRow, ScriptRow, Store};
use earshot_signaling::{ids, now_ms};
use std::sync::Arc;

/// Runs the server until SIGINT/SIGTERM; SIGHUP reloads the configuration (`reload`).
pub async fn serve(cfg: Config, source: crate::reload::ReloadSource) -> anyhow::Result<()> {
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
    let store_url = cfg.store_url()?;
    secrets::prepare_data_dir(&data_dir, store_url.sqlite_file())
        .with_context(|| format!("preparing data directory {}", data_dir.display()))?;
    let (admin_token, token_source) =
        secrets::admin_token(&data_dir, std::env::var(secrets::ADMIN_TOKEN_VAR).ok())?;
    let (sealing, key_source) = crate::master_keys::load(&cfg.encryption, &data_dir)?;
    match &key_source {
        crate::master_keys::KeySource::Generated(path) => {
            tracing::warn!(file = %path.display(), "encryption at rest: a master key was generated; back this file up (recordings cannot be read without it)")
        }
        source => tracing::info!(
            ?source,
            sealing_new_recordings = cfg.encryption.enabled,
            current_key = sealing.as_ref().map(|s| s.keys.current_id().to_owned()),
            "encryption at rest"
        ),
    }
    let store = earshot_signaling::store::open(&store_url)
        .await
        .with_context(|| format!("opening the store ({})", store_kind(&store_url)))?;
    let default_prompts = seed_defaults(&*store, &data_dir, &cfg).await?;
    if !cfg.auth.admin_token_enabled && store.count_superusers().await? == 0 {
        anyhow::bail!(
            "[auth] admin_token_enabled = false, but no superuser user exists: nobody could \
             manage this deployment. Add one first (earshot user add --superuser ...)"
        );
    }
    if !cfg.prompts_dir().is_dir() {
        tracing::warn!(dir = %cfg.prompts_dir().display(), "no prompts directory: scripts can name only the built-in prompts");
    }

    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(cert), Some(key)) => Some(
            earshot_signaling::routes::tls::TlsHandle::open(cert.clone(), key.clone())
                .context("loading the TLS certificate")?,
        ),
        _ => None,
    };
    let cfg = with_public_ip_from_stun(cfg).await?;
    let recording_keys = sealing.as_ref().map(|s| s.keys.clone());
    let (engine, media_events) = Engine::new(EngineConfig {
        sealing,
        ..engine_config(&cfg)
    });
    // Decode and Opus-encode the built-in prompts now, not while the first participant waits.
    if let Err(e) = engine.preload_prompts(&default_prompts).await {
        tracing::warn!(error = %e, "built-in prompts not preloaded");
    }
    let public_url = cfg.public_url();
    let node_id = cfg.bus.node_id(cfg.server.listen.port());
    let role = cfg.bus.role;
    let cluster = earshot_signaling::cluster::Cluster::new(
        &node_id,
        Arc::new(earshot_signaling::clock::SystemClock),
    );
    let cluster = Arc::new(if role == Role::Media {
        cluster.media_only()
    } else {
        cluster
    });
    let (bus, nats) = event_bus(&cfg, &node_id).await?;
    let media = media_plane(&engine, &cluster, nats.as_ref(), role).await?;
    let storage = cfg
        .storage
        .resolve(&data_dir)
        .map_err(|e| anyhow::anyhow!(e))?;
    let (recordings_dir, object_blobs) = match storage {
        Storage::Local(dir) => (dir, None),
        Storage::S3 {
            settings,
            prefix,
            spool,
        } => {
            let client = settings.connect().context("storage: the S3 client")?;
            let blobs = Arc::new(
                ObjectStoreBlobs::new(client, &prefix)
                    .with_keys(recording_keys.clone())
                    .with_spool(spool.clone(), cluster.node_id()),
            );
            tracing::info!(bucket = %settings.bucket, %prefix, endpoint = ?settings.endpoint, spool = %spool.display(), attempt = ?blobs.attempt(), "recordings go to an object store");
            blobs
                .clone()
                .spawn_segment_uploads(std::time::Duration::from_secs(cfg.storage.segment_secs));
            (spool, Some(blobs))
        }
    };
    let mut service = SessionService::new(
        store.clone(),
        media,
        cfg.lifecycle.clone(),
        recordings_dir,
        cfg.interviewer.silence_ms,
    )
    .with_key_ring(recording_keys);
    if let Some(blobs) = object_blobs {
        service = service.with_blobs(blobs);
    }
    let sessions = Arc::new(
        service
            .with_audit_log(earshot_signaling::audit::AuditLog::new(store.clone()))
            .with_max_sessions(cfg.limits.max_sessions)
            .with_drain_switch(cluster.drain_switch())
            .with_public_url(&public_url)
            .with_pdf_fonts(fonts::pdf_fonts().context("loading the PDF fonts")?)
            .with_event_bus(bus),
    );
    sessions
        .spawn_webhook_worker(cfg.webhooks.clone())
        .map_err(|e| anyhow::anyhow!("starting the webhook worker: {}", e.message))?;
    match &nats {
        None => sessions.recover_after_restart().await,
        // Several nodes: wait until every live node has announced what it holds, then pause
        // only what none holds (the sessions of this node's previous life, or of nodes gone).
        Some(_) => {
            let (sessions, cluster) = (sessions.clone(), cluster.clone());
            tokio::spawn(async move {
                let wait = earshot_signaling::cluster::ANNOUNCE_INTERVAL_MS as u64 * 7 / 2;
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                sessions
                    .recover_sessions_not_held(|id| cluster.holder(id).is_some())
                    .await;
            });
        }
    }
    sessions
        .clone()
        .spawn_retention_sweep(std::time::Duration::from_secs(cfg.retention.sweep_secs));
    sessions.clone().spawn(media_events);
    crate::node::spawn_node_loop(
        crate::node::NodeSampler::new(
            &node_id,
            &cfg.bus
                .advertise_url(cfg.server.listen, cfg.server.tls_cert.is_some()),
            // An API node is never placed on.
            if role.holds_media() {
                u32::try_from(cfg.limits.max_sessions).unwrap_or(u32::MAX)
            } else {
                0
            },
            cluster.drain_switch(),
        ),
        engine.clone(),
        cluster.clone(),
        nats.clone(),
        sessions.clone(),
    );
    tokio::spawn(
        crate::reload::Reloader {
            source,
            current: cfg.clone(),
            engine: engine.clone(),
            store: store.clone(),
            tls: tls.clone(),
        }
        .run(),
    );

    let app = Arc::new(App {
        service: sessions,
        admin_token: admin_token.clone(),
        access: Arc::new(earshot_signaling::access::Access::new(
            store.clone(),
            cfg.auth.admin_token_enabled,
        )),
        public_url: public_url.clone(),
        ice_servers: cfg.turn.ice_servers.clone(),
        turn: cfg.turn.shared_secret.as_ref().map(|secret| {
            earshot_signaling::turn_credentials::TurnMinter::new(
                cfg.turn.urls.clone(),
                secret.clone(),
                cfg.turn.credential_ttl_secs,
            )
        }),
        record_ip: cfg.server.record_ip,
        default_campaign_id: defaults::CAMPAIGN_ID.into(),
        default_script_id: defaults::SCRIPT_ID.into(),
        // The operator's prompts, then the built-in ones (`default/<id>.wav`).
        prompt_dirs: PromptDirs::new([cfg.prompts_dir(), data_dir.join("prompts")]),
        handoff: nats.as_ref().map(|_| {
            earshot_signaling::routes::handoff::Handoff::new(
                cluster.node_id(),
                std::time::Duration::from_secs(10),
            )
        }),
        cluster,
        limits: Limits::new(earshot_signaling::routes::limits::HttpLimits {
            trusted_proxies: earshot_signaling::routes::forwarded::TrustedProxies::parse(
                &cfg.server.trusted_proxies,
            )
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?,
            ..cfg.limits.http(max_connections)
        }),
    });
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let demo = demo_invite(&*store).await?;
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
    tracing::info!(
        "researcher console: {public_url}/console (sign in with the admin token); live monitor: {public_url}/monitor"
    );
    match tls {
        Some(tls) => earshot_signaling::routes::serve_tls(listener, app, tls, shutdown_signal())
            .await
            .context("serving HTTPS")?,
        None => earshot_signaling::routes::serve(listener, app, shutdown_signal())
            .await
            .context("serving HTTP")?,
    }
    engine.shutdown().await;
    Ok(())
}

/// The media port the session service commands: the engine itself in one process; with a
/// bus, a plane that sends each command to the node holding the session (on a node that
/// holds media, its own sessions straight to the engine, and it answers the others'
/// commands; an API node holds none).
async fn media_plane(
    engine: &Arc<Engine>,
    cluster: &Arc<earshot_signaling::cluster::Cluster>,
    nats: Option<&nats::NatsClient>,
    role: Role,
) -> anyhow::Result<Arc<dyn MediaPlane>> {
    let Some(nats) = nats else {
        return Ok(engine.clone());
    };
    use earshot_signaling::cluster::nats as cluster_nats;
    cluster_nats::hear_nodes(nats, cluster.clone())
        .await
        .context("bus.url: node announcements")?;
    let rpc = cluster_nats::NatsRpc::new(nats, std::time::Duration::from_secs(10));
    let remote =
        earshot_signaling::media_rpc::remote::RemoteMediaPlane::new(Arc::new(rpc), cluster.clone());
    if !role.holds_media() {
        return Ok(Arc::new(remote));
    }
    cluster_nats::serve_media_commands(nats, engine.clone())
        .await
        .context("bus.url: media commands")?;
    Ok(Arc::new(
        remote.with_local(cluster.node_id(), engine.clone()),
    ))
}

/// The event bus `[bus]` names: NATS (and the connection, for whatever else goes over it),
/// or the in-process hub without a `url`.
async fn event_bus(
    cfg: &Config,
    node_id: &str,
) -> anyhow::Result<(Arc<dyn EventBus>, Option<nats::NatsClient>)> {
    let Some(url) = &cfg.bus.url else {
        return Ok((Arc::new(Hub::default()), None));
    };
    let client = nats::NatsClient::connect(url, node_id)
        .await
        .context("bus.url")?;
    let bus = nats::NatsBus::start(client.clone(), earshot_signaling::live::DEFAULT_CAPACITY)
        .await
        .context("bus.url")?;
    tracing::info!(url = %url, node = %node_id, "live events go through NATS");
    Ok((Arc::new(bus), Some(client)))
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

/// With `[media] public_ip_stun` and no `nat_1to1_ips`: asks the STUN server for the public
/// address and announces it (a 1:1 NAT found instead of written down).
async fn with_public_ip_from_stun(mut cfg: Config) -> anyhow::Result<Config> {
    let Some(stun) = cfg.media.public_ip_stun.clone() else {
        return Ok(cfg);
    };
    if !cfg.media.nat_1to1_ips.is_empty() {
        tracing::info!("media.nat_1to1_ips is set: media.public_ip_stun is not asked");
        return Ok(cfg);
    }
    let server = tokio::net::lookup_host(stun.as_str())
        .await
        .with_context(|| format!("media.public_ip_stun: resolving {stun}"))?
        .next()
        .with_context(|| format!("media.public_ip_stun: {stun} has no address"))?;
    let ip = earshot_media::peer::stun_probe::public_ip(
        server,
        cfg.media_ip(),
        std::time::Duration::from_millis(700),
    )
    .await
    .map_err(|e| anyhow::anyhow!("media.public_ip_stun: {e}"))?;
    tracing::info!(%ip, stun = %server, "public address from STUN: announced in host candidates");
    cfg.media.nat_1to1_ips = vec![ip.to_string()];
    Ok(cfg)
}

/// What the store is, for messages (never the URL: it may hold a password).
fn store_kind(url: &earshot_signaling::store::StoreUrl) -> String {
    match url {
        earshot_signaling::store::StoreUrl::Sqlite(path) => format!("SQLite {}", path.display()),
        earshot_signaling::store::StoreUrl::Postgres(_) => "PostgreSQL".into(),
    }
}

pub(crate) async fn seed_defaults(
    store: &dyn Store,
    data_dir: &std::path::Path,
    cfg: &Config,
) -> anyhow::Result<Vec<PromptSpec>> {
    let prompts = defaults::write_default_prompts(&data_dir.join("prompts").join("default"))
        .context("writing the default prompts")?;
    store
        .insert_campaign(&CampaignRow {
            id: defaults::CAMPAIGN_ID.into(),
            name: defaults::CAMPAIGN_NAME.into(),
            description: String::new(),
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
            quality: cfg
                .recording
                .quality
                .parse()
                .context("[recording] quality")?,
            created_at: now_ms(),
        })
        .await?;
    Ok(prompts)
}

/// One invite to try the product right away.
async fn demo_invite(store: &dyn Store) -> anyhow::Result<String> {
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

pub(crate) fn engine_config(cfg: &Config) -> EngineConfig {
    EngineConfig {
        peer: PeerConfig {
            bind_ip: cfg.media_ip(),
            extra_bind_ips: cfg.media.extra_bind_ips.clone(),
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
            wideband: cfg.opus.wideband,
            ..OpusSettings::default()
        },
        agent_retry: std::time::Duration::from_secs(cfg.agent.retry_secs),
        // The system's roots and the operator's CA file, read once (validated at load).
        agent_tls: earshot_media::agent::tls::client_config(cfg.agent.ca_file.as_deref()).ok(),
        derive_at_end: cfg.recording.derive == "at_end",
        // The key ring is read once at start (`master_keys::load`), not on reload.
        sealing: None,
    }
}
