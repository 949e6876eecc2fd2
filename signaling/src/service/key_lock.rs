//! In-process locks by key (a session id, `invite:<token>`, `derive:<session id>`): work on
//! one key is serialized, and a key's entry lives only while someone holds or waits for it.

use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The locks of one service.
#[derive(Default)]
pub(super) struct KeyLocks {
    locks: DashMap<String, Arc<Mutex<()>>>,
}

impl KeyLocks {
    /// Waits for the key's lock.
    pub(super) async fn acquire(&self, key: &str) -> KeyLock<'_> {
        let mutex = self.locks.entry(key.to_string()).or_default().clone();
        KeyLock {
            locks: &self.locks,
            key: key.to_string(),
            guard: Some(mutex.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.len()
    }
}

/// One key's lock, held until dropped. The map entry goes with the last holder, so the map
/// holds only keys being worked on (it grew by one entry per session before).
pub(super) struct KeyLock<'a> {
    locks: &'a DashMap<String, Arc<Mutex<()>>>,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map's own reference left: nobody holds or waits for this key.
        self.locks
            .remove_if(&self.key, |_, m| Arc::strong_count(m) == 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_with_the_last_holder() {
        let locks = KeyLocks::default();
        {
            let _a = locks.acquire("ses_1").await;
            assert_eq!(locks.len(), 1);
        }
        assert_eq!(locks.len(), 0, "released and unshared: removed");

        // A waiter keeps the entry (and the exclusion) alive.
        let a = locks.acquire("ses_2").await;
        let locks_ref = &locks;
        let waiter = async move {
            let _b = locks_ref.acquire("ses_2").await;
            assert_eq!(locks_ref.len(), 1);
        };
        let release = async move {
            tokio::task::yield_now().await;
            drop(a);
        };
        tokio::join!(waiter, release);
        assert_eq!(locks.len(), 0);
    }
}
