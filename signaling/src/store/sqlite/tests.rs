//! The SQLite store's own rules: compare-and-swap lifecycle writes, the indexed deadline
//! query, an existing database upgraded in place by migration 0003, and listen-ins (0004).

use super::SqliteStore;
use crate::store::{
    CampaignRow, InviteRow, MonitorRow, ScriptRow, SessionRow, SessionStore, SessionUpdate,
    StoreError,
};
use earshot_vocab::{Quality, State};
use sqlx::Row;
use sqlx::sqlite::SqliteConnectOptions;
use std::path::Path;

async fn seed(store: &SqliteStore) {
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

fn session(id: &str, state: State, next_deadline: Option<i64>) -> SessionRow {
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

fn update(state: State, next_deadline: Option<i64>) -> SessionUpdate<'static> {
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

#[tokio::test]
async fn a_lifecycle_write_needs_the_version_it_was_computed_from() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
    seed(&store).await;
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

#[tokio::test]
async fn due_sessions_come_from_the_deadline_index_earliest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
    seed(&store).await;
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
    let plan: Vec<String> = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE next_deadline IS NOT NULL \
         AND next_deadline <= ? ORDER BY next_deadline",
    )
    .bind(300)
    .fetch_all(&store.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("detail"))
    .collect();
    assert!(
        plan.iter().any(|d| d.contains("sessions_next_deadline")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|d| d.starts_with("SCAN")), "{plan:?}");
}

/// A database as an earlier Earshot left it: migrations 0001 and 0002 only.
async fn database_before_0003(path: &Path) {
    let migrations = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for name in ["0001_init.sql", "0002_turns.sql"] {
        std::fs::copy(source.join(name), migrations.path().join(name)).unwrap();
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO campaigns (id, name, created_at) VALUES ('cmp_a', 'A', 0); \
         INSERT INTO scripts (id, campaign_id, name, definition, created_at) \
           VALUES ('scr_a', 'cmp_a', 'A', '{}', 0); \
         INSERT INTO invites (token, campaign_id, script_id, created_at) \
           VALUES ('tokentoken', 'cmp_a', 'scr_a', 0); \
         INSERT INTO sessions (id, invite_token, campaign_id, script_id, state, lifecycle, created_at) VALUES \
           ('ses_paused', 'tokentoken', 'cmp_a', 'scr_a', 'paused', '{}', 0), \
           ('ses_live', 'tokentoken', 'cmp_a', 'scr_a', 'in_progress', '{}', 0), \
           ('ses_new', 'tokentoken', 'cmp_a', 'scr_a', 'created', '{}', 0), \
           ('ses_done', 'tokentoken', 'cmp_a', 'scr_a', 'completed', '{}', 0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn an_existing_database_upgrades_with_its_live_sessions_due_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("earshot.db");
    database_before_0003(&path).await;
    let store = SqliteStore::open(&path).await.unwrap();
    let mut due = store.due_sessions(0).await.unwrap();
    due.sort();
    assert_eq!(due, ["ses_live", "ses_new", "ses_paused"]);
    let done = store.get_session("ses_done").await.unwrap().unwrap();
    assert_eq!((done.version, done.next_deadline), (0, None));
    let paused = store.get_session("ses_paused").await.unwrap().unwrap();
    assert_eq!((paused.version, paused.next_deadline), (0, Some(0)));
    // Opening it again applies nothing twice.
    drop(store);
    SqliteStore::open(&path).await.unwrap();
}

#[tokio::test]
async fn listen_ins_end_once_and_a_restart_closes_the_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("earshot.db"))
        .await
        .unwrap();
    seed(&store).await;
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
