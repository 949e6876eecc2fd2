//! Lifecycle steps racing another writer on the same database: the compare-and-swap write
//! loses, and the service steps again from the fresh row (or gives up, doing nothing).

use super::*;
use crate::store::{
    self, CampaignRow, InviteRow, RecordingRow, ScriptRow, SessionFilter, SessionRow, SessionStore,
    SessionUpdate, StoreError, TransitionRow, TurnRow,
};
use earshot_vocab::State;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The store shared with another writer that, while races are armed, steps the same
/// session (a progress event) just before each of the service's writes, and so wins.
pub(super) struct RacedStore {
    inner: Arc<dyn Store>,
    pub(super) races_left: AtomicUsize,
    pub(super) conflicts: AtomicUsize,
}

impl RacedStore {
    fn new(inner: Arc<dyn Store>) -> RacedStore {
        RacedStore {
            inner,
            races_left: AtomicUsize::new(0),
            conflicts: AtomicUsize::new(0),
        }
    }

    async fn competing_step(&self, id: &str) {
        let row = self
            .inner
            .get_session(id)
            .await
            .expect("read")
            .expect("row");
        let lc = row.lifecycle().expect("lifecycle");
        let point = Event::Progress { point: "q9".into() };
        let t = lifecycle::step(&lc, point, T0).expect("progress applies");
        let l = &t.lifecycle;
        let json = serde_json::to_string(l).expect("json");
        let update = SessionUpdate {
            state: l.state,
            lifecycle: &json,
            started_at: l.started_at.map(|m| m.0),
            ended_at: l.ended_at.map(|m| m.0),
            end_reason: None,
            drop_off: l.drop_off.as_deref(),
            next_deadline: lifecycle::next_deadline(l).map(|m| m.0),
            transitions: &[],
            events: &[],
        };
        self.inner
            .update_session(id, &update, row.version)
            .await
            .expect("the other writer's step");
    }
}

#[async_trait::async_trait]
impl store::CatalogStore for RacedStore {
    async fn list_campaigns(&self) -> store::Result<Vec<CampaignRow>> {
        self.inner.list_campaigns().await
    }
    async fn update_campaign(&self, id: &str, name: &str, desc: &str) -> store::Result<bool> {
        self.inner.update_campaign(id, name, desc).await
    }
    async fn replace_script(&self, s: &ScriptRow) -> store::Result<()> {
        self.inner.replace_script(s).await
    }
    async fn list_scripts(&self, campaign: Option<&str>) -> store::Result<Vec<ScriptRow>> {
        self.inner.list_scripts(campaign).await
    }
    async fn insert_invites(&self, invites: &[InviteRow]) -> store::Result<()> {
        self.inner.insert_invites(invites).await
    }
    async fn list_invites(
        &self,
        campaign: &str,
        limit: i64,
    ) -> store::Result<Vec<store::InviteStateRow>> {
        self.inner.list_invites(campaign, limit).await
    }
    async fn unsummarized_sessions(&self, limit: i64) -> store::Result<Vec<String>> {
        self.inner.unsummarized_sessions(limit).await
    }
    async fn set_session_summary(
        &self,
        id: &str,
        summary: &store::SessionSummary,
    ) -> store::Result<()> {
        self.inner.set_session_summary(id, summary).await
    }
    async fn aggregate_counts(
        &self,
        f: &store::AggregateFilter,
    ) -> store::Result<crate::analytics::aggregate::AggregateCounts> {
        self.inner.aggregate_counts(f).await
    }
}

#[async_trait::async_trait]
impl SessionStore for RacedStore {
    async fn update_session(
        &self,
        id: &str,
        update: &SessionUpdate<'_>,
        expected_version: i64,
    ) -> store::Result<i64> {
        let armed = self
            .races_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            self.competing_step(id).await;
        }
        let result = self
            .inner
            .update_session(id, update, expected_version)
            .await;
        if matches!(result, Err(StoreError::VersionConflict { .. })) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    async fn insert_campaign(&self, c: &CampaignRow) -> store::Result<()> {
        self.inner.insert_campaign(c).await
    }
    async fn get_campaign(&self, id: &str) -> store::Result<Option<CampaignRow>> {
        self.inner.get_campaign(id).await
    }
    async fn upsert_script(&self, s: &ScriptRow) -> store::Result<()> {
        self.inner.upsert_script(s).await
    }
    async fn insert_script(&self, s: &ScriptRow) -> store::Result<()> {
        self.inner.insert_script(s).await
    }
    async fn get_script(&self, id: &str) -> store::Result<Option<ScriptRow>> {
        self.inner.get_script(id).await
    }
    async fn insert_invite(&self, i: &InviteRow) -> store::Result<()> {
        self.inner.insert_invite(i).await
    }
    async fn get_invite(&self, token: &str) -> store::Result<Option<InviteRow>> {
        self.inner.get_invite(token).await
    }
    async fn latest_session_for_invite(&self, token: &str) -> store::Result<Option<SessionRow>> {
        self.inner.latest_session_for_invite(token).await
    }
    async fn insert_session(&self, s: &SessionRow) -> store::Result<()> {
        self.inner.insert_session(s).await
    }
    async fn get_session(&self, id: &str) -> store::Result<Option<SessionRow>> {
        self.inner.get_session(id).await
    }
    async fn list_sessions(&self, f: &SessionFilter) -> store::Result<Vec<SessionRow>> {
        self.inner.list_sessions(f).await
    }
    async fn session_ids_in_state(&self, state: &str) -> store::Result<Vec<String>> {
        self.inner.session_ids_in_state(state).await
    }
    async fn export_page(
        &self,
        f: &store::ExportFilter,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> store::Result<Vec<SessionRow>> {
        self.inner.export_page(f, after, limit).await
    }
    async fn count_export(&self, f: &store::ExportFilter) -> store::Result<i64> {
        self.inner.count_export(f).await
    }
    async fn due_sessions(&self, now: i64) -> store::Result<Vec<String>> {
        self.inner.due_sessions(now).await
    }
    async fn claim_due_sessions(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> store::Result<Vec<String>> {
        self.inner.claim_due_sessions(now, lease_ms, limit).await
    }
    async fn set_session_client(
        &self,
        id: &str,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> store::Result<()> {
        self.inner.set_session_client(id, user_agent, ip).await
    }
    async fn transitions(&self, session_id: &str) -> store::Result<Vec<TransitionRow>> {
        self.inner.transitions(session_id).await
    }
    async fn delete_session(&self, id: &str) -> store::Result<bool> {
        self.inner.delete_session(id).await
    }
    async fn count_sessions_by_state(&self) -> store::Result<Vec<(String, i64)>> {
        self.inner.count_sessions_by_state().await
    }
    async fn upsert_recording(&self, r: &RecordingRow) -> store::Result<()> {
        self.inner.upsert_recording(r).await
    }
    async fn recordings(&self, session_id: &str) -> store::Result<Vec<RecordingRow>> {
        self.inner.recordings(session_id).await
    }
    async fn upsert_turns(&self, session_id: &str, turns: &[TurnRow]) -> store::Result<()> {
        self.inner.upsert_turns(session_id, turns).await
    }
    async fn turns(&self, session_id: &str) -> store::Result<Vec<TurnRow>> {
        self.inner.turns(session_id).await
    }

    async fn insert_monitor(&self, m: &store::MonitorRow) -> store::Result<()> {
        self.inner.insert_monitor(m).await
    }

    async fn end_monitor(&self, id: &str, at: i64) -> store::Result<()> {
        self.inner.end_monitor(id, at).await
    }

    async fn end_open_monitors(&self, at: i64) -> store::Result<u64> {
        self.inner.end_open_monitors(at).await
    }

    async fn monitors(&self, session_id: &str) -> store::Result<Vec<store::MonitorRow>> {
        self.inner.monitors(session_id).await
    }
}

pub(super) async fn raced_harness() -> (Harness, Arc<RacedStore>) {
    let mut raced = None;
    let h = Harness::with_store(|s| {
        let store = Arc::new(RacedStore::new(s));
        raced = Some(store.clone());
        store
    })
    .await;
    (h, raced.expect("the wrapped store"))
}

#[tokio::test]
async fn a_step_that_loses_a_version_race_is_stepped_again_from_the_fresh_row() {
    let (h, raced) = raced_harness().await;
    let p = h.participant_in_progress().await;
    raced.races_left.store(1, Ordering::SeqCst);
    let row = h.service.pause(&p.invite, false).await.expect("paused");
    assert_eq!(raced.conflicts.load(Ordering::SeqCst), 1);
    assert_eq!(row.state, State::Paused);
    assert_eq!(
        row.drop_off.as_deref(),
        Some("q9"),
        "the other writer's step is kept, not overwritten"
    );
    let transitions = h
        .store
        .transitions(&p.session_id)
        .await
        .expect("transitions");
    let to: Vec<_> = transitions.iter().map(|t| t.to_state.as_str()).collect();
    assert_eq!(to, ["in_progress", "paused"]);
    assert_eq!(h.media.calls_for(&p.session_id), ["open", "pause"]);
}

#[tokio::test]
async fn a_session_that_keeps_changing_is_refused_as_busy_and_nothing_is_done() {
    let (h, raced) = raced_harness().await;
    let p = h.participant_in_progress().await;
    raced.races_left.store(usize::MAX, Ordering::SeqCst);
    let err = h.service.pause(&p.invite, false).await.expect_err("busy");
    assert_eq!(err.code, "session_busy");
    assert_eq!(err.status, axum::http::StatusCode::CONFLICT);
    assert_eq!(
        raced.conflicts.load(Ordering::SeqCst),
        crate::service::steps::MAX_STEP_ATTEMPTS
    );
    raced.races_left.store(0, Ordering::SeqCst);
    assert_eq!(h.state(&p.session_id).await, State::InProgress);
    assert_eq!(h.media.calls_for(&p.session_id), ["open"]);
}
