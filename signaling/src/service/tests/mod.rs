//! The session service against the real SQLite store in a temporary folder, a media plane
//! that records what it is asked, and a manual clock: every timer rule runs in virtual time,
//! stepped by hand, with no sleeping.

use super::{Ports, ServiceConfig, SessionService};
use crate::blob_store::LocalDiskBlobs;
use crate::clock::ManualClock;
use crate::lifecycle::{self, Event, Lifecycle, LifecycleConfig, Millis, PauseCause, State};
use crate::live::Hub;
use crate::media_port::{
    AgentSpec, MediaError, MediaEvent, MediaPlane, OpenParticipant, RecordingFile, RecordingSpec,
};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::store::{CampaignRow, InviteRow, ScriptRow, SessionRow, SessionStore, SessionUpdate};
use earshot_vocab::media_port::IceCredentials;
use earshot_vocab::{Format, Quality, Role, Track};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T0: Millis = Millis(1_700_000_000_000);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Records what the service asked of the media plane, as `"<call> <session id>"`.
#[derive(Default)]
struct RecordingMedia {
    calls: Mutex<Vec<String>>,
}

impl RecordingMedia {
    fn record(&self, call: &str, session_id: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(format!("{call} {session_id}"));
        }
    }

    /// The calls for one session, without the id.
    fn calls_for(&self, session_id: &str) -> Vec<String> {
        let suffix = format!(" {session_id}");
        self.calls
            .lock()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c.strip_suffix(&suffix))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl MediaPlane for RecordingMedia {
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError> {
        self.record("open", &req.session_id);
        Ok("v=0\r\n".into())
    }
    async fn add_candidate(&self, session_id: &str, _: &str) -> Result<(), MediaError> {
        self.record("candidate", session_id);
        Ok(())
    }
    async fn hang_up(&self, session_id: &str) {
        self.record("hang_up", session_id);
    }
    async fn pause(&self, session_id: &str) {
        self.record("pause", session_id);
    }
    async fn resume(&self, session_id: &str, _: Option<AgentSpec>) {
        self.record("resume", session_id);
    }
    async fn discard(&self, session_id: &str) {
        self.record("discard", session_id);
    }
    async fn finish(&self, session_id: &str, _: Option<RecordingSpec>) {
        self.record("finish", session_id);
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
    async fn open_listener(&self, session_id: &str, _: &str) -> Result<(u64, String), MediaError> {
        self.record("listen", session_id);
        Ok((1, "v=0\r\n".into()))
    }
    async fn add_listener_candidate(
        &self,
        session_id: &str,
        _: u64,
        _: &str,
    ) -> Result<(), MediaError> {
        self.record("listener_candidate", session_id);
        Ok(())
    }
    async fn close_listener(&self, session_id: &str, _: u64) {
        self.record("unlisten", session_id);
    }
    fn metrics_text(&self) -> String {
        String::new()
    }
}

struct Harness {
    service: SessionService,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    media: Arc<RecordingMedia>,
    dir: tempfile::TempDir,
}

/// A participant in an interview: the invite, its session and the current WHIP peer.
struct Participant {
    invite: InviteRow,
    session_id: String,
    peer_id: String,
}

/// A service over `store` with the given clock and media plane, recordings under `dir`.
fn service_over(
    store: Arc<dyn SessionStore>,
    clock: Arc<ManualClock>,
    media: Arc<RecordingMedia>,
    dir: &std::path::Path,
) -> SessionService {
    let recordings_dir = dir.join("recordings");
    let ports = Ports {
        store,
        media,
        blobs: Arc::new(LocalDiskBlobs::new(recordings_dir.clone())),
        bus: Arc::new(Hub::default()),
        clock,
    };
    let config = ServiceConfig {
        lifecycle: LifecycleConfig::default(),
        recordings_dir,
        silence_ms: 1500,
    };
    SessionService::with_ports(ports, config)
}

/// Which store a harness runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Harness {
    async fn on(backend: Backend) -> Harness {
        Self::with_store_on(backend, |s| s as Arc<dyn SessionStore>).await
    }

    /// A harness whose service sees the SQLite store through `wrap`.
    async fn with_store(wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn SessionStore>) -> Harness {
        Self::with_store_on(Backend::Sqlite, wrap).await
    }

    /// A harness on a fresh store of `backend` (SQLite in its folder, or a fresh database
    /// on the test binary's PostgreSQL server) that its service sees through `wrap`.
    async fn with_store_on(
        backend: Backend,
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn SessionStore>,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = match backend {
            Backend::Sqlite => Arc::new(
                SqliteStore::open(&dir.path().join("earshot.db"))
                    .await
                    .expect("database"),
            ),
            Backend::Postgres => {
                let url = crate::store::postgres::test_cluster::fresh_database().await;
                Arc::new(
                    crate::store::postgres::PgStore::open(&url)
                        .await
                        .expect("database"),
                )
            }
        };
        seed(&*store).await;
        let clock = Arc::new(ManualClock::starting_at(T0));
        let media = Arc::new(RecordingMedia::default());
        let service = service_over(
            wrap(store.clone()),
            clock.clone(),
            media.clone(),
            dir.path(),
        );
        Harness {
            service,
            store,
            clock,
            media,
            dir,
        }
    }

    /// A new invite whose participant consented, offered a peer and connected: the session
    /// is in progress from now.
    async fn participant_in_progress(&self) -> Participant {
        let invite = self
            .service
            .create_invite("cmp_default".into(), "scr_default".into(), &BTreeMap::new())
            .await
            .expect("invite");
        let session = self
            .service
            .open_invite(&invite, Some("test"), None, &BTreeMap::new())
            .await
            .expect("opened");
        self.service.consent(&invite, true).await.expect("consent");
        let started = self
            .service
            .start_media(&invite, "v=0\r\n")
            .await
            .expect("offer answered");
        self.media_event(MediaEvent::Connected {
            session_id: session.id.clone(),
        })
        .await;
        assert_eq!(self.state(&session.id).await, State::InProgress);
        Participant {
            invite,
            session_id: session.id,
            peer_id: started.peer_id,
        }
    }

    async fn media_event(&self, ev: MediaEvent) {
        self.service.handle_media_event(ev).await;
    }

    async fn row(&self, id: &str) -> SessionRow {
        self.service.session(id).await.expect("session")
    }

    async fn lifecycle(&self, id: &str) -> Lifecycle {
        self.row(id).await.lifecycle().expect("lifecycle")
    }

    async fn state(&self, id: &str) -> State {
        self.lifecycle(id).await.state
    }

    /// Moves virtual time on and runs one round of the ticker.
    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.service.fire_due_timers().await;
    }
}

async fn seed(store: &dyn Store) {
    store
        .insert_campaign(&CampaignRow {
            id: "cmp_default".into(),
            name: "Demo".into(),
            description: String::new(),
            created_at: 0,
        })
        .await
        .expect("campaign");
    let definition =
        serde_json::json!({"prompts": [{"id": "q1", "text": "Hello?", "audio": "/q1.wav"}]});
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
}

async fn pause_and_resume_by_button_count_only_the_active_time(h: Harness) {
    let p = h.participant_in_progress().await;
    h.clock.advance(secs(60));
    let paused = h.service.pause(&p.invite, false).await.expect("paused");
    assert_eq!(paused.state, State::Paused);
    h.clock.advance(secs(300));
    let resumed = h.service.resume(&p.invite).await.expect("resumed");
    assert_eq!(resumed.state, State::InProgress);
    h.clock.advance(secs(30));

    let detail = h
        .service
        .session_detail(&p.session_id)
        .await
        .expect("detail");
    assert_eq!(detail.lifecycle.active_duration_ms(detail.as_of), 90_000);
    assert_eq!(detail.lifecycle.pauses.len(), 1);
    let pause = &detail.lifecycle.pauses[0];
    assert_eq!(pause.cause, PauseCause::Button);
    assert_eq!(pause.started_at, Millis(T0.0 + 60_000));
    assert_eq!(pause.ended_at, Some(Millis(T0.0 + 360_000)));
    let causes: Vec<_> = detail
        .transitions
        .iter()
        .map(|t| t.to_state.as_str())
        .collect();
    assert_eq!(causes, ["in_progress", "paused", "in_progress"]);
    assert_eq!(
        h.media.calls_for(&p.session_id),
        ["open", "pause", "resume"]
    );
    // The stuck timer runs from the resume.
    assert_eq!(
        h.row(&p.session_id).await.next_deadline,
        Some(T0.0 + 360_000 + 1_800_000)
    );
}

async fn media_lost_for_the_grace_period_pauses_from_the_loss(h: Harness) {
    let p = h.participant_in_progress().await;
    h.clock.advance(secs(5));
    let lost_at = Millis(T0.0 + 5_000);
    h.media_event(MediaEvent::Disconnected {
        session_id: p.session_id.clone(),
    })
    .await;
    assert_eq!(
        h.row(&p.session_id).await.next_deadline,
        Some(lost_at.0 + 10_000)
    );

    h.advance(Duration::from_millis(9_999)).await;
    assert_eq!(
        h.state(&p.session_id).await,
        State::InProgress,
        "still in grace"
    );
    h.advance(Duration::from_millis(1)).await;
    let lc = h.lifecycle(&p.session_id).await;
    assert_eq!(lc.state, State::Paused);
    let pause = lc.current_pause().expect("a pause");
    assert_eq!(pause.cause, PauseCause::MediaLost);
    assert_eq!(
        pause.started_at, lost_at,
        "the dead air belongs to the pause"
    );
    assert_eq!(h.media.calls_for(&p.session_id), ["open", "pause"]);

    // The returning peer resumes it.
    h.media_event(MediaEvent::Restored {
        session_id: p.session_id.clone(),
    })
    .await;
    assert_eq!(h.state(&p.session_id).await, State::InProgress);
}

async fn a_media_blip_shorter_than_the_grace_is_no_pause(h: Harness) {
    let p = h.participant_in_progress().await;
    let id = p.session_id.clone();
    h.media_event(MediaEvent::Disconnected {
        session_id: id.clone(),
    })
    .await;
    h.advance(secs(5)).await;
    h.media_event(MediaEvent::Restored {
        session_id: id.clone(),
    })
    .await;
    h.advance(secs(60)).await;
    let lc = h.lifecycle(&id).await;
    assert_eq!(lc.state, State::InProgress);
    assert!(lc.pauses.is_empty());
    assert_eq!(
        h.row(&id).await.next_deadline,
        Some(T0.0 + 5_000 + 1_800_000)
    );
}

async fn an_unresumed_pause_prompts_then_expires(h: Harness) {
    let p = h.participant_in_progress().await;
    let id = p.session_id.clone();
    h.media_event(MediaEvent::Progress {
        session_id: id.clone(),
        prompt_index: 0,
        prompt_count: 1,
        prompt_id: "q1".into(),
        text: "Hello?".into(),
    })
    .await;
    h.clock.advance(secs(10));
    h.service.pause(&p.invite, false).await.expect("paused");
    let paused_at = T0.0 + 10_000;
    assert_eq!(h.row(&id).await.next_deadline, Some(paused_at + 120_000));

    h.advance(Duration::from_millis(119_999)).await;
    let pause = h
        .lifecycle(&id)
        .await
        .current_pause()
        .cloned()
        .expect("paused");
    assert_eq!(pause.resume_prompt_at, None);
    h.advance(Duration::from_millis(1)).await;
    let pause = h
        .lifecycle(&id)
        .await
        .current_pause()
        .cloned()
        .expect("paused");
    assert_eq!(pause.resume_prompt_at, Some(Millis(paused_at + 120_000)));
    assert_eq!(h.row(&id).await.next_deadline, Some(paused_at + 1_800_000));

    h.advance(secs(1_800 - 120 - 1)).await;
    assert_eq!(h.state(&id).await, State::Paused);
    h.advance(secs(1)).await;
    let row = h.row(&id).await;
    assert_eq!(row.state, State::Abandoned);
    assert_eq!(row.end_reason.as_deref(), Some("pause_expired"));
    assert_eq!(row.drop_off.as_deref(), Some("q1"));
    assert_eq!(row.ended_at, Some(paused_at + 1_800_000));
    assert_eq!(
        row.next_deadline, None,
        "no timer runs for an ended session"
    );
    assert_eq!(h.media.calls_for(&id), ["open", "pause", "finish"]);
    assert!(
        h.store
            .due_sessions(i64::MAX)
            .await
            .expect("due")
            .is_empty()
    );
}

async fn stuck_in_progress_completes_with_a_turn_and_is_abandoned_without(h: Harness) {
    let silent = h.participant_in_progress().await;
    let talker = h.participant_in_progress().await;
    h.clock.advance(secs(10));
    h.media_event(MediaEvent::TurnEnded {
        session_id: talker.session_id.clone(),
        role: Role::Participant,
        start_ms: 1_000,
        end_ms: 4_000,
    })
    .await;
    assert_eq!(h.lifecycle(&talker.session_id).await.turns_captured, 1);

    h.advance(secs(1_790)).await;
    let row = h.row(&silent.session_id).await;
    assert_eq!(row.state, State::Abandoned);
    assert_eq!(row.end_reason.as_deref(), Some("stuck"));
    assert_eq!(h.state(&talker.session_id).await, State::InProgress);

    h.advance(secs(10)).await;
    let row = h.row(&talker.session_id).await;
    assert_eq!(row.state, State::Completed);
    assert_eq!(row.end_reason.as_deref(), Some("stuck"));
    assert_eq!(row.ended_at, Some(T0.0 + 10_000 + 1_800_000));
    assert_eq!(h.media.calls_for(&talker.session_id), ["open", "finish"]);
    assert_eq!(
        h.service
            .transcript(&talker.session_id)
            .await
            .expect("turns")
            .len(),
        1
    );
}

async fn participant_ended_by_whip_delete_of_the_current_peer_only(h: Harness) {
    let p = h.participant_in_progress().await;
    let id = p.session_id.clone();
    // A reconnect replaces the peer resource; the old one no longer ends anything.
    let newer = h
        .service
        .start_media(&p.invite, "v=0\r\n")
        .await
        .expect("offer");
    let err = h
        .service
        .hang_up(&p.invite, &p.peer_id)
        .await
        .expect_err("replaced");
    assert_eq!(err.code, "peer_not_found");
    assert_eq!(h.state(&id).await, State::InProgress);

    h.clock.advance(secs(42));
    h.service
        .hang_up(&p.invite, &newer.peer_id)
        .await
        .expect("hung up");
    let row = h.row(&id).await;
    assert_eq!(row.state, State::Abandoned);
    assert_eq!(row.end_reason.as_deref(), Some("participant_ended"));
    assert_eq!(row.ended_at, Some(T0.0 + 42_000));
    assert_eq!(h.media.calls_for(&id), ["open", "open", "finish"]);
    let err = h
        .service
        .hang_up(&p.invite, &newer.peer_id)
        .await
        .expect_err("ended");
    assert_eq!(err.code, "session_ended");
}

async fn a_session_upgraded_without_a_deadline_gets_it_at_the_first_tick(h: Harness) {
    let p = h.participant_in_progress().await;
    h.clock.advance(secs(10));
    h.service.pause(&p.invite, false).await.expect("paused");
    // As migration 0003 leaves a live session: due at once, its real deadline unknown.
    let row = h.row(&p.session_id).await;
    let update = SessionUpdate {
        state: row.state,
        lifecycle: &row.lifecycle,
        started_at: row.started_at,
        ended_at: row.ended_at,
        end_reason: row.end_reason.as_deref(),
        drop_off: row.drop_off.as_deref(),
        next_deadline: Some(0),
        transitions: &[],
        events: &[],
    };
    h.store
        .update_session(&p.session_id, &update, row.version)
        .await
        .expect("written");
    h.advance(Duration::from_millis(1)).await;
    let row = h.row(&p.session_id).await;
    assert_eq!(
        row.state,
        State::Paused,
        "an early tick changes nothing else"
    );
    assert_eq!(row.next_deadline, Some(T0.0 + 10_000 + 120_000));
    assert_eq!(h.media.calls_for(&p.session_id), ["open", "pause"]);
}

/// For each `async fn name(Harness)` named, a module `name` with the tests `sqlite` and
/// `postgres`: the same service test on each store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::service::tests::{Backend, Harness};
                #[tokio::test]
                async fn sqlite() {
                    super::$name(Harness::on(Backend::Sqlite).await).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name(Harness::on(Backend::Postgres).await).await
                }
            }
        )*
    };
}

mod admin_actions;
mod limits;
mod races;
mod restart;
mod webhooks;

on_both_stores!(
    pause_and_resume_by_button_count_only_the_active_time,
    media_lost_for_the_grace_period_pauses_from_the_loss,
    a_media_blip_shorter_than_the_grace_is_no_pause,
    an_unresumed_pause_prompts_then_expires,
    stuck_in_progress_completes_with_a_turn_and_is_abandoned_without,
    participant_ended_by_whip_delete_of_the_current_peer_only,
    a_session_upgraded_without_a_deadline_gets_it_at_the_first_tick,
);
