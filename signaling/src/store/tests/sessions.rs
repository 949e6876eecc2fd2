//! Sessions on either store: compare-and-swap lifecycle writes, the due-deadline query,
//! and listen-ins.

use super::{Fixture, on_both_stores};
use crate::store::{
    CampaignRow, InviteRow, MonitorRow, ScriptRow, SessionRow, SessionUpdate, Store, StoreError,
};
use earshot_vocab::{Quality, State};

on_both_stores!(
    a_lifecycle_write_needs_the_version_it_was_computed_from,
    due_sessions_come_earliest_first,
    listen_ins_end_once_and_a_restart_closes_the_open_ones,
    two_processes_claiming_due_timers_at_once_each_get_a_session_once,
);

pub(crate) async fn seed(store: &dyn Store) {
    store
        .insert_campaign(&CampaignRow {
            id: "cmp_a".into(),
            name: "A".into(),
            description: String::new(),
            created_at: 0,
        })
        .await
        .unwrap();
    store
        .insert_script(&ScriptRow {
            id: "scr_a".into(),
            campaign_id: "cmp_a".into(),
            name: "A".into(),
            definition: "{}".into(),
            recording_enabled: true,
            noise_suppression: true,
            quality: Quality::High,
            created_at: 0,
        })
        .await
        .unwrap();
    store
        .insert_invite(&InviteRow {
            token: "tokentoken".into(),
            campaign_id: "cmp_a".into(),
            script_id: "scr_a".into(),
            metadata: "{}".into(),
            created_at: 0,
        })
        .await
        .unwrap();
}

pub(crate) fn session(id: &str, state: State, next_deadline: Option<i64>) -> SessionRow {
    SessionRow {
        id: id.into(),
        invite_token: "tokentoken".into(),
        campaign_id: "cmp_a".into(),
        script_id: "scr_a".into(),
        state,
        lifecycle: "{}".into(),
        created_at: 0,
        started_at: None,
        ended_at: None,
        end_reason: None,
        drop_off: None,
        user_agent: None,
        ip: None,
        metadata: "{}".into(),
        version: 0,
        next_deadline,
        summary: Default::default(),
    }
}

pub(crate) fn update(state: State, next_deadline: Option<i64>) -> SessionUpdate<'static> {
    SessionUpdate {
        state,
        lifecycle: "{}",
        started_at: None,
        ended_at: None,
        end_reason: None,
        drop_off: None,
        next_deadline,
        transitions: &[],
        events: &[],
    }
}

async fn a_lifecycle_write_needs_the_version_it_was_computed_from(store: Fixture) {
    seed(&*store).await;
    store
        .insert_session(&session("ses_a", State::Created, None))
        .await
        .unwrap();
    let v1 = store
        .update_session("ses_a", &update(State::InProgress, Some(5)), 0)
        .await
        .unwrap();
    assert_eq!(v1, 1);
    let stale = store
        .update_session("ses_a", &update(State::Paused, Some(7)), 0)
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::VersionConflict { expected: 0, .. })
    ));
    let row = store.get_session("ses_a").await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.version), ("in_progress", 1));
    assert_eq!(
        row.next_deadline,
        Some(5),
        "the stale write changed nothing"
    );
    // A row that is gone is a conflict too: the caller re-reads and finds nothing.
    assert!(store.delete_session("ses_a").await.unwrap());
    assert!(matches!(
        store
            .update_session("ses_a", &update(State::Paused, None), 1)
            .await,
        Err(StoreError::VersionConflict { .. })
    ));
}

async fn due_sessions_come_earliest_first(store: Fixture) {
    seed(&*store).await;
    for (id, state, deadline) in [
        ("ses_late", State::Paused, Some(300)),
        ("ses_early", State::InProgress, Some(100)),
        ("ses_future", State::InProgress, Some(10_000)),
        ("ses_none", State::Created, None),
        ("ses_done", State::Completed, None),
    ] {
        store
            .insert_session(&session(id, state, deadline))
            .await
            .unwrap();
    }
    assert_eq!(
        store.due_sessions(300).await.unwrap(),
        ["ses_early", "ses_late"]
    );
    assert!(store.due_sessions(99).await.unwrap().is_empty());
}

async fn listen_ins_end_once_and_a_restart_closes_the_open_ones(store: Fixture) {
    seed(&*store).await;
    store
        .insert_session(&session("ses_m", State::InProgress, None))
        .await
        .unwrap();
    for (id, at) in [("mon_a", 10), ("mon_b", 20), ("mon_c", 30)] {
        store
            .insert_monitor(&MonitorRow {
                id: id.into(),
                session_id: "ses_m".into(),
                started_at: at,
                ended_at: None,
            })
            .await
            .unwrap();
    }
    store.end_monitor("mon_a", 15).await.unwrap();
    // A second end keeps the first.
    store.end_monitor("mon_a", 99).await.unwrap();
    assert_eq!(store.end_open_monitors(50).await.unwrap(), 2);
    let ends: Vec<(String, Option<i64>)> = store
        .monitors("ses_m")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.ended_at))
        .collect();
    assert_eq!(
        ends,
        vec![
            ("mon_a".to_string(), Some(15)),
            ("mon_b".to_string(), Some(50)),
            ("mon_c".to_string(), Some(50)),
        ]
    );
    // They go with their session.
    assert!(store.delete_session("ses_m").await.unwrap());
    assert!(store.monitors("ses_m").await.unwrap().is_empty());
}

/// Two handles on one database ("two nodes") claim the due sessions at once, in small
/// batches: together they get every due session, none twice; a lease holds until it runs
/// out or a lifecycle step clears it.
async fn two_processes_claiming_due_timers_at_once_each_get_a_session_once(store: Fixture) {
    seed(&*store).await;
    let mut due = Vec::new();
    for n in 0..60 {
        let id = format!("ses_{n:02}");
        // 40 due by 1000 (at 0..=975), 20 later.
        let deadline = if n < 40 { n * 25 } else { 5_000 + n };
        store
            .insert_session(&session(&id, State::InProgress, Some(deadline)))
            .await
            .unwrap();
        if n < 40 {
            due.push(id);
        }
    }
    store
        .insert_session(&session("ses_none", State::Created, None))
        .await
        .unwrap();
    let other = store.second_handle().await;
    let claim_all = |s: std::sync::Arc<dyn Store>| async move {
        let mut got = Vec::new();
        loop {
            let batch = s.claim_due_sessions(1_000, 30_000, 7).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    };
    let (a, b) = tokio::join!(claim_all(store.store.clone()), claim_all(other.clone()));
    assert_eq!(a.len() + b.len(), 40, "a: {a:?}\nb: {b:?}");
    let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all, due, "every due session claimed, none twice");
    // Each batch comes earliest first.
    let mut sorted_a = a.clone();
    sorted_a.sort();
    assert_eq!(a, sorted_a);
    // Leased: not due again for anyone until the lease runs out...
    assert!(
        other
            .claim_due_sessions(4_999, 30_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // ...or a lifecycle step (here a Tick that moves the deadline on) clears it.
    let v = store
        .update_session("ses_00", &update(State::InProgress, Some(2_000)), 0)
        .await
        .unwrap();
    assert_eq!(v, 1);
    assert_eq!(
        other.claim_due_sessions(2_000, 30_000, 100).await.unwrap(),
        ["ses_00"]
    );
    let expired = store.claim_due_sessions(31_000, 30_000, 100).await.unwrap();
    assert_eq!(
        expired.len(),
        39 + 20,
        "the rest, leases over, and the later ones"
    );
    assert!(
        !expired.contains(&"ses_00".to_string()),
        "still leased since 2000"
    );
    // The plain query still lists every due session, claimed or not (ses_00 moved on).
    assert_eq!(store.due_sessions(1_000).await.unwrap(), due[1..]);
}
