//! The store's test suite, run against both implementations: each test is a function of a
//! [`Fixture`] (a fresh, migrated, empty store), and [`on_both_stores!`] makes of it one
//! test on SQLite (a file in a temporary folder) and one on PostgreSQL (a fresh database
//! on the test binary's private server, see [`super::postgres::test_cluster`]).

mod access;
mod catalog;
mod privacy;
pub(crate) mod sessions;
mod webhooks;

use super::{Store, StoreUrl};
use std::sync::Arc;

/// A fresh store and what it needs to stay (its folder), with its pool for statements
/// behind the store's back.
pub(crate) struct Fixture {
    pub store: Arc<dyn Store>,
    pub raw: Raw,
    /// Where it is, for a second handle on the same database ("another process").
    pub url: StoreUrl,
    _dir: Option<tempfile::TempDir>,
}

/// The pool under a fixture's store.
pub(crate) enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    /// Runs one statement; the database's error as text.
    pub async fn execute(&self, sql: &str) -> Result<u64, String> {
        match self {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|d| d.rows_affected()),
            Raw::Postgres(p) => sqlx::query(sql).execute(p).await.map(|d| d.rows_affected()),
        }
        .map_err(|e| e.to_string())
    }
}

impl Fixture {
    /// Another store on the same database, as a second process would open it.
    pub async fn second_handle(&self) -> Arc<dyn Store> {
        super::open(&self.url).await.expect("a second handle")
    }
}

impl std::ops::Deref for Fixture {
    type Target = dyn Store;
    fn deref(&self) -> &dyn Store {
        &*self.store
    }
}

pub(crate) async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("earshot.db");
    let store = super::sqlite::SqliteStore::open(&path)
        .await
        .expect("sqlite store");
    Fixture {
        url: StoreUrl::Sqlite(path),
        raw: Raw::Sqlite(store.pool_for_tests()),
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

pub(crate) async fn postgres() -> Fixture {
    let url = super::postgres::test_cluster::fresh_database().await;
    let store = super::postgres::PgStore::open(&url)
        .await
        .expect("postgres store");
    Fixture {
        url: StoreUrl::Postgres(url),
        raw: Raw::Postgres(store.pool_for_tests()),
        store: Arc::new(store),
        _dir: None,
    }
}

/// For each `async fn name(Fixture)` named, a module `name` with the tests `sqlite` and
/// `postgres`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(crate::store::tests::sqlite().await).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name(crate::store::tests::postgres().await).await
                }
            }
        )*
    };
}
pub(crate) use on_both_stores;
