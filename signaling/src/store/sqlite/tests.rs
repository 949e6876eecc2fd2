//! The SQLite store's own rules: the deadline query is served by its index, and an existing
//! database upgrades in place by migration 0003. (What both stores do is in
//! `store/tests/`.)

use super::SqliteStore;
use crate::store::SessionStore;
use crate::store::tests::sessions::{seed, session};
use earshot_vocab::State;
use sqlx::Row;
use sqlx::sqlite::SqliteConnectOptions;
use std::path::Path;

#[tokio::test]
async fn due_sessions_come_from_the_deadline_index() {
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
