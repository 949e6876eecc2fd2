//! The session service: every use case of a session, behind ports ([`SessionStore`],
//! [`MediaPlane`], [`BlobStore`], [`EventBus`], [`Clock`]). This module owns the service
//! type, its construction and the lookups every use case shares; each use case extends the
//! type from its own module:
//!
//! - `steps`: [`SessionService::apply`] = load -> [`crate::lifecycle::step`] -> persist
//!   (compare-and-swap on the row's version) -> effects; session creation.
//! - `invites`: invites, opening one, consent, the participant's pause and resume.
//! - `peers`: the participant's WHIP peer (offer, trickle, hang-up) and the peer registry.
//! - `admin`: lists and details, end, restart, mark, delete, the counters behind `/metrics`.
//! - `catalog`: campaigns, their scripts and invites (the researcher console).
//! - `analytics`: each session's stored summary, one session's analytics, aggregates.
//! - `monitors`: silent listen-ins (WHEP) and the live sessions overview.
//! - `live_state`: what is kept per live session (quality signals, the current prompt and
//!   the interviewer's words) and the participant's own feed.
//! - `scripts`: storing and reading scripts.
//! - `turn_events`: the turn log and the live stream.
//! - `recordings`: recording rows, on-request derivation, downloads.
//! - `timers`: the ticker's round and the recovery after a restart.
//! - `media_events`: the media plane's events routed to the above.
//! - `background`: the two long-running tasks.
//! - `exports`: what a session's exports are made of, bulk exports page by page.
//! - `webhooks`: webhook endpoints, their delivery log, redelivery, the worker's start.
//! - `privacy`: campaigns' privacy settings, the PII policy on live and stored lines,
//!   sealed originals; `retention`: the retention sweep; `deletion`: participants'
//!   deletion tokens and requests.
//! - `media_specs`: what the media plane is told about a session; `key_lock`: the
//!   in-process per-key locks.

pub mod admin;
mod analytics;
mod background;
pub mod catalog;
pub mod deletion;
pub mod exports;
pub mod invites;
mod key_lock;
pub mod live_state;
mod media_events;
mod media_specs;
pub mod monitors;
pub mod peers;
pub mod privacy;
mod recordings;
pub mod retention;
pub mod scripts;
mod steps;
mod timers;
pub mod turn_events;
pub mod webhooks;

#[cfg(test)]
mod tests;

use crate::blob_store::{BlobStore, LocalDiskBlobs};
use crate::clock::{Clock, SystemClock};
use crate::error::ApiError;
use crate::event_bus::EventBus;
use crate::ids;
use crate::lifecycle::{Lifecycle, LifecycleConfig, Millis};
use crate::live::Hub;
use crate::media_port::MediaPlane;
use crate::store::Store;
use crate::store::webhooks::WebhookStore;
use crate::store::{CampaignRow, InviteRow, SessionRow, SessionStore};
use crate::turns::{Turn, TurnLog};
use dashmap::DashMap;
use key_lock::{KeyLock, KeyLocks};
use std::path::PathBuf;
use std::sync::Arc;

/// The service's ports.
pub struct Ports {
    pub store: Arc<dyn SessionStore>,
    pub media: Arc<dyn MediaPlane>,
    pub blobs: Arc<dyn BlobStore>,
    pub bus: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The rules new sessions run under.
    pub lifecycle: LifecycleConfig,
    /// Where the media plane writes each session's files (`<dir>/<session id>/`).
    pub recordings_dir: PathBuf,
    /// The built-in interviewer's silence after the participant spoke.
    pub silence_ms: u32,
}

pub struct SessionService {
    store: Arc<dyn SessionStore>,
    media: Arc<dyn MediaPlane>,
    blobs: Arc<dyn BlobStore>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    config: ServiceConfig,
    /// One lock per session (and per invite, for creation): see [`SessionService::apply`].
    locks: KeyLocks,
    /// The participant's current WHIP resource per session (see `peers`).
    peers: DashMap<String, peers::PeerEntry>,
    /// Turn logs of live sessions being assembled (see `turn_events`).
    turn_logs: DashMap<String, TurnLog>,
    /// Listen-ins in progress, by monitor id (see `monitors`).
    monitors: DashMap<String, monitors::MonitorEntry>,
    /// The latest quality signals of each live session (see `monitors`).
    signals: DashMap<String, live_state::LatestSignals>,
    /// The current prompt and the interviewer's latest words of each live session.
    interview_now: DashMap<String, live_state::InterviewNow>,
    /// Participants' own live feeds open (they are bus subscribers, but not monitors).
    participant_feeds: Arc<std::sync::atomic::AtomicUsize>,
    /// Sessions with media (a participant peer, open or held while paused) at most; see
    /// `peers`.
    max_sessions: usize,
    /// Serializes the check and the reservation of a place among `max_sessions`.
    admission: std::sync::Mutex<()>,
    /// On: the node drains and admits no new session with media (`503 node_draining`);
    /// sessions that have a place keep it.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Webhook endpoints and deliveries (the outbox itself is written through `store`).
    webhooks: Option<Arc<dyn WebhookStore>>,
    /// Wakes the webhook worker when an event was written.
    wake: Arc<tokio::sync::Notify>,
    /// Base of the links in webhook bodies and exports (`[server] public_url`).
    public_url: String,
    /// The fonts PDF transcripts are drawn with (shipped by the binary).
    pdf_fonts: Option<crate::exports::pdf::PdfFonts>,
    /// Campaigns' privacy settings, sweeps and deletion requests (see `privacy`).
    privacy: Option<Arc<dyn crate::store::privacy::PrivacyStore>>,
    /// Seals originals of changed turns; [`crate::pii::RefuseVault`] keeps none.
    vault: Arc<dyn crate::pii::TextVault>,
    /// Campaigns' privacy settings with their detectors compiled, by campaign id.
    policies: DashMap<String, Arc<privacy::ActivePolicy>>,
    /// The campaign of each session with transcript lines since it was last forgotten.
    session_campaigns: DashMap<String, String>,
    /// The retention sweep's counters (`/metrics`).
    retention: retention::RetentionCounters,
    /// The master key ring of encryption at rest (see [`Self::key_ring`]).
    key_ring: Option<Arc<earshot_sealed::KeyRing>>,
    /// Where what the service does on its own (retention, deletion by policy, a participant's
    /// request) is audited; routes audit what callers do.
    audit: Option<crate::audit::AuditLog>,
}

fn session_not_found() -> ApiError {
    ApiError::not_found("session_not_found", "no session with this id")
}

impl SessionService {
    /// The production service: the store (SQLite or PostgreSQL, all of its ports), the
    /// system clock, the in-process live hub, and recordings on the local disk where the
    /// media plane writes them.
    pub fn new(
        store: Arc<dyn Store>,
        media: Arc<dyn MediaPlane>,
        lifecycle: LifecycleConfig,
        recordings_dir: PathBuf,
        silence_ms: u32,
    ) -> Self {
        let webhooks: Arc<dyn WebhookStore> = store.clone();
        let privacy: Arc<dyn crate::store::privacy::PrivacyStore> = store.clone();
        let ports = Ports {
            store,
            media,
            blobs: Arc::new(LocalDiskBlobs::new(recordings_dir.clone())),
            bus: Arc::new(Hub::default()),
            clock: Arc::new(SystemClock),
        };
        let config = ServiceConfig {
            lifecycle,
            recordings_dir,
            silence_ms,
        };
        let mut service = Self::with_ports(ports, config);
        service.webhooks = Some(webhooks);
        service.privacy = Some(privacy);
        service
    }

    pub fn with_ports(ports: Ports, config: ServiceConfig) -> Self {
        Self {
            store: ports.store,
            media: ports.media,
            blobs: ports.blobs,
            bus: ports.bus,
            clock: ports.clock,
            config,
            locks: KeyLocks::default(),
            peers: DashMap::new(),
            turn_logs: DashMap::new(),
            monitors: DashMap::new(),
            signals: DashMap::new(),
            interview_now: DashMap::new(),
            participant_feeds: Arc::default(),
            max_sessions: usize::MAX,
            admission: std::sync::Mutex::new(()),
            draining: Arc::default(),
            webhooks: None,
            wake: Arc::default(),
            public_url: String::new(),
            pdf_fonts: None,
            privacy: None,
            vault: Arc::new(crate::pii::RefuseVault),
            policies: DashMap::new(),
            session_campaigns: DashMap::new(),
            retention: retention::RetentionCounters::default(),
            key_ring: None,
            audit: None,
        }
    }

    /// The same service keeping webhook endpoints and deliveries in `store` (what
    /// [`SessionService::new`] does with its store).
    pub fn with_webhook_store(mut self, store: Arc<dyn WebhookStore>) -> Self {
        self.webhooks = Some(store);
        self
    }

    /// The same service with the master key ring of encryption at rest: recordings sealed
    /// at rest open with it (the production service's local-disk blob store; `None`: sealed
    /// recordings do not open), and the originals of masked transcript lines are sealed with
    /// it ([`crate::pii::KeyRingVault`]; without a ring none are kept).
    pub fn with_key_ring(mut self, keys: Option<Arc<earshot_sealed::KeyRing>>) -> Self {
        self.blobs = Arc::new(
            LocalDiskBlobs::new(self.config.recordings_dir.clone()).with_keys(keys.clone()),
        );
        if let Some(keys) = &keys {
            self.vault = Arc::new(crate::pii::KeyRingVault(keys.clone()));
        }
        self.key_ring = keys;
        self
    }

    /// The same service keeping recordings in `blobs` (an object store) instead of the
    /// local-disk store the constructor made; call after [`Self::with_key_ring`], which
    /// remakes the local-disk store.
    pub fn with_blobs(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = blobs;
        self
    }

    /// The same service auditing what it does on its own (see [`Self::audit_system`]).
    pub fn with_audit_log(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Appends an audit row for an action no caller made: `actor` is `retention`, `policy`
    /// or `participant` (a deletion request), with no client address. Also logged.
    pub(crate) async fn audit_system(
        &self,
        actor: &str,
        action: &str,
        resource: &str,
        campaign: Option<&str>,
    ) {
        tracing::info!(target: "audit", actor, action, resource, campaign, "audited");
        if let Some(audit) = &self.audit {
            audit
                .record(crate::audit::Entry {
                    actor,
                    action,
                    resource,
                    campaign,
                    client: None,
                    outcome: crate::audit::Outcome::Ok,
                })
                .await;
        }
    }

    /// The master key ring (`[encryption]`), for sealing sensitive fields with
    /// `KeyRing::seal_field` / `open_field` (see the `earshot-sealed` crate doc); `None` when
    /// the deployment has none (encryption off and no key file).
    pub fn key_ring(&self) -> Option<&Arc<earshot_sealed::KeyRing>> {
        self.key_ring.as_ref()
    }

    /// The same service drawing PDF transcripts with `fonts`.
    pub fn with_pdf_fonts(mut self, fonts: crate::exports::pdf::PdfFonts) -> Self {
        self.pdf_fonts = Some(fonts);
        self
    }

    /// The fonts of PDF transcripts, if the service has them.
    pub fn pdf_fonts(&self) -> Option<&crate::exports::pdf::PdfFonts> {
        self.pdf_fonts.as_ref()
    }

    /// The same service with `url` as the base of the links it hands out (webhook bodies,
    /// exports), e.g. `https://earshot.example.org`.
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = url.trim_end_matches('/').to_string();
        self
    }

    /// The same service publishing live events on `bus` instead of the in-process hub (a
    /// networked bus: several nodes, `[bus] url`).
    pub fn with_event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = bus;
        self
    }

    /// The same service admitting at most `max` sessions with media at once (a WHIP offer
    /// for one more is `503 server_busy`).
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
        self
    }

    /// The same service reading the node's drain switch (`crate::cluster::Cluster`) when
    /// admitting a session.
    pub fn with_drain_switch(mut self, draining: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.draining = draining;
        self
    }

    /// The service clock's now.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Serializes work on one key (a session, an invite); see [`KeyLock`].
    async fn lock(&self, key: &str) -> KeyLock<'_> {
        self.locks.acquire(key).await
    }

    /// The session a participant action applies to: the invite's newest, consented and not
    /// ended.
    async fn participant_session(
        &self,
        invite: &InviteRow,
    ) -> Result<(SessionRow, Lifecycle), ApiError> {
        let consent_required =
            || ApiError::conflict("consent_required", "accept the consent first");
        let session = self
            .store
            .latest_session_for_invite(&invite.token)
            .await?
            .ok_or_else(consent_required)?;
        let lc = session.lifecycle()?;
        if lc.is_ended() {
            return Err(ApiError::conflict(
                "session_ended",
                "this interview has ended",
            ));
        }
        if !lc.consented() {
            return Err(consent_required());
        }
        Ok((session, lc))
    }

    /// The id of the invite's session a WHIP offer would serve (the same refusals as the
    /// offer: `consent_required`, `session_ended`); reads only.
    pub async fn participant_session_id(&self, invite: &InviteRow) -> Result<String, ApiError> {
        Ok(self.participant_session(invite).await?.0.id)
    }

    /// A session id from outside: malformed ones are refused like unknown ones.
    fn require_id(id: &str) -> Result<(), ApiError> {
        if ids::is_valid_id("ses", id) {
            Ok(())
        } else {
            Err(session_not_found())
        }
    }

    /// The stored session with this id (from outside), or `session_not_found`.
    pub async fn session(&self, id: &str) -> Result<SessionRow, ApiError> {
        Self::require_id(id)?;
        self.store
            .get_session(id)
            .await?
            .ok_or_else(session_not_found)
    }

    /// The campaign with this id (from outside), or `campaign_not_found`.
    pub async fn campaign(&self, id: &str) -> Result<CampaignRow, ApiError> {
        let not_found = || ApiError::not_found("campaign_not_found", "no campaign with this id");
        if !ids::is_valid_id("cmp", id) {
            return Err(not_found());
        }
        self.store.get_campaign(id).await?.ok_or_else(not_found)
    }

    /// The session's stored turn log.
    async fn stored_turns(&self, session_id: &str) -> Result<Vec<Turn>, ApiError> {
        Ok(self
            .store
            .turns(session_id)
            .await?
            .into_iter()
            .filter_map(Turn::from_row)
            .collect())
    }
}
