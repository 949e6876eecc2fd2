//! The local spool of [`ObjectStoreBlobs`]: the media plane writes each session's files into
//! `<spool>/<session id>/` as it does on the local disk; this module moves their bytes (never
//! samples) to the bucket. Every few seconds ([`ObjectStoreBlobs::spawn_segment_uploads`])
//! the new bytes of each live track file go up as a segment object, so a node killed with
//! -9 loses at most the last round; when the session's files are final
//! ([`BlobStore::session_finished`](super::BlobStore::session_finished), which only marks
//! the session: the upload task does the work, never the caller's event loop) each file goes
//! up whole (multipart when large), its segments are deleted and the local folder removed.
//! Until then a download reads the spool's file, as [`super::LocalDiskBlobs`] would.
//!
//! Each process is one upload attempt, named by its start time (sortable) and its node id:
//! after a restart a file is uploaded again from its first byte under the new attempt,
//! because the local crash recovery may have cut the file's torn tail; another node that
//! continued a session would write its own attempt beside, never over, the first.

use super::object::{Layout, ObjectStoreBlobs};
use super::{BlobError, BlobKey};
use earshot_vocab::{Format, Track};
use object_store::ObjectStoreExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The most bytes one segment object holds (the first round after a restart may find a long
/// file).
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// What the spool holds and what of it is in the bucket.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    attempt: String,
    /// Bytes of each (session, file) uploaded as segments by this attempt. The lock is held
    /// for a whole round, and by a session's move to the bucket while it deletes the
    /// segments and the folder, so no segment goes up after those are gone.
    uploaded: tokio::sync::Mutex<HashMap<(String, String), u64>>,
    /// Sessions whose files are final and wait to be moved to the bucket (by the upload
    /// task, off the caller's path; one that failed stays to be tried again).
    finished: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Wakes the upload task when a session is finished.
    wake: tokio::sync::Notify,
}

impl Spool {
    /// The folder the media plane writes sessions' files into.
    pub(super) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Stops uploading the session's files and removes its local folder (the session is
    /// being deleted).
    pub(super) async fn forget(&self, session_id: &str) -> Result<(), BlobError> {
        let mut uploaded = self.uploaded.lock().await;
        uploaded.retain(|(s, _), _| s != session_id);
        remove_dir(&self.dir.join(session_id)).await
    }
}

async fn remove_dir(dir: &std::path::Path) -> Result<(), BlobError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BlobError::Io {
            context: "removing a session's spool folder",
            source,
        }),
    }
}

fn spool_error(context: &'static str) -> impl FnOnce(std::io::Error) -> BlobError {
    move |source| BlobError::Io { context, source }
}

/// The guarded value; a poisoned lock (a panic while held) still holds a usable set.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The files the media plane appends to while a session runs.
fn live_track_names() -> [String; 2] {
    [Track::Participant, Track::Ai].map(|t| t.file_name(Format::Wav))
}

/// Sessions with a folder in the spool.
async fn spooled_sessions(dir: &std::path::Path) -> Result<Vec<String>, BlobError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(spool_error("reading the spool")(source)),
    };
    let mut sessions = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(spool_error("reading the spool"))?
    {
        if let Some(name) = entry.file_name().to_str()
            && crate::ids::is_valid_id("ses", name)
        {
            sessions.push(name.to_owned());
        }
    }
    Ok(sessions)
}

impl ObjectStoreBlobs {
    /// The same store with the media plane's working files in `dir` (`<dir>/<session>/`),
    /// uploading as `node` (this media node's id: it names the attempt with the start time,
    /// so segments say which node wrote them).
    pub fn with_spool(mut self, dir: PathBuf, node: &str) -> ObjectStoreBlobs {
        self.spool = Some(Spool {
            dir,
            attempt: attempt_name(node, std::time::SystemTime::now()),
            uploaded: Default::default(),
            finished: Default::default(),
            wake: Default::default(),
        });
        self
    }

    /// This process's attempt name in segment keys (`None` without a spool).
    pub fn attempt(&self) -> Option<&str> {
        self.spool.as_ref().map(|s| s.attempt.as_str())
    }

    /// Uploads the new bytes of every live track file in the spool every `every`, and moves
    /// finished sessions to the bucket as soon as they are marked, until the process ends. A
    /// failed round is logged and its bytes go up with the next.
    pub fn spawn_segment_uploads(self: std::sync::Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let woken = async {
                    match &self.spool {
                        Some(spool) => spool.wake.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = woken => {}
                }
                if let Err(e) = self.upload_segments().await {
                    tracing::warn!(error = %e, "recording segments not uploaded this round");
                }
                self.publish_finished().await;
            }
        });
    }

    /// Marks the session's files final: the upload task moves them to the bucket.
    pub(super) fn mark_finished(&self, session_id: &str) {
        if let Some(spool) = &self.spool {
            lock(&spool.finished).insert(session_id.to_owned());
            spool.wake.notify_one();
        }
    }

    /// Moves every session marked finished to the bucket; returns how many moved. One that
    /// fails (the bucket unreachable) is logged and stays marked for the next round.
    pub async fn publish_finished(&self) -> usize {
        let Some(spool) = &self.spool else {
            return 0;
        };
        let sessions: Vec<String> = lock(&spool.finished).iter().cloned().collect();
        let mut moved = 0;
        for session in sessions {
            match self.publish(&session).await {
                Ok(()) => {
                    lock(&spool.finished).remove(&session);
                    moved += 1;
                }
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, "finished recordings not moved to the bucket yet (tried again next round)");
                }
            }
        }
        moved
    }

    /// One round: each live track file's bytes not yet uploaded go up as segments; returns
    /// how many segments were written.
    pub async fn upload_segments(&self) -> Result<usize, BlobError> {
        let Some(spool) = &self.spool else {
            return Ok(0);
        };
        let mut uploaded = spool.uploaded.lock().await;
        let mut written = 0;
        for session in spooled_sessions(&spool.dir).await? {
            for name in live_track_names() {
                let path = spool.dir.join(&session).join(&name);
                let len = match tokio::fs::metadata(&path).await {
                    Ok(meta) => meta.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(spool_error("reading a track's size")(source)),
                };
                let done = uploaded.entry((session.clone(), name.clone())).or_insert(0);
                while *done < len {
                    let end = len.min(*done + MAX_SEGMENT_BYTES);
                    let bytes = read_file_range(&path, *done, end).await?;
                    if bytes.is_empty() {
                        break;
                    }
                    let next = *done + bytes.len() as u64;
                    let key = self.layout.segment(&session, &name, &spool.attempt, *done);
                    self.store.put(&key, bytes.into()).await.map_err(|source| {
                        BlobError::ObjectStore {
                            context: "uploading a recording segment",
                            source,
                        }
                    })?;
                    *done = next;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    /// Moves the session's final files from the spool to the bucket: each uploaded whole,
    /// then the session's segments deleted, then the local folder removed. A file that fails
    /// to go up leaves everything in place (segments and spool) and is an error.
    async fn publish(&self, session_id: &str) -> Result<(), BlobError> {
        let Some(spool) = &self.spool else {
            return Ok(());
        };
        // The whole files go up without the round's lock, so the other sessions' segments
        // keep going up meanwhile (a round finds no new bytes in these final files).
        let dir = spool.dir.join(session_id);
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(spool_error("reading a session's spool folder")(source)),
        };
        let mut files = 0;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(spool_error("reading a session's spool folder"))?
        {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // Only what a download can name (no temporary or hidden files).
            if BlobKey::new(session_id, &name).is_none() {
                continue;
            }
            self.upload_whole(&entry.path(), &self.layout.file(session_id, &name))
                .await?;
            files += 1;
        }
        let mut uploaded = spool.uploaded.lock().await;
        // Only this process's segments: those of an earlier run of the session on another
        // node (it died, the participant came back here) hold audio these files do not have.
        let attempt = spool.attempt.clone();
        self.delete_objects(&self.layout.session(session_id), |p| {
            Layout::is_segment_of(p, &attempt)
        })
        .await?;
        uploaded.retain(|(s, _), _| s != session_id);
        remove_dir(&dir).await?;
        tracing::info!(session = %session_id, files, "recordings moved to the object store");
        Ok(())
    }

    /// Uploads the file at `path` as one object (`object_store`'s buffered writer: one PUT
    /// for a small file, a multipart upload for a large one).
    async fn upload_whole(
        &self,
        path: &std::path::Path,
        to: &object_store::path::Path,
    ) -> Result<(), BlobError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(spool_error("opening a finished recording"))?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), to.clone());
        if let Err(source) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(BlobError::Io {
                context: "uploading a finished recording",
                source,
            });
        }
        writer.shutdown().await.map_err(|source| BlobError::Io {
            context: "completing a finished recording's upload",
            source,
        })
    }
}

/// `<start ms, 13 digits>-<node>`, the node id kept to what is safe in an object key
/// (lowercase letters, digits and `-`; anything else becomes `-`).
fn attempt_name(node: &str, started: std::time::SystemTime) -> String {
    let ms = started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let node: String = node
        .chars()
        .take(48)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    format!("{ms:013}-{node}")
}

/// Bytes `start..end` of the file at `path`.
async fn read_file_range(
    path: &std::path::Path,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, BlobError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(spool_error("opening a live track"))?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(spool_error("seeking in a live track"))?;
    let mut bytes = Vec::with_capacity((end - start) as usize);
    file.take(end - start)
        .read_to_end(&mut bytes)
        .await
        .map_err(spool_error("reading a live track"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn attempts_sort_by_start_and_name_their_node() {
        let at = |ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        assert_eq!(
            super::attempt_name("Media-7.eu_west:8080", at(1_764_567_890_123)),
            "1764567890123-media-7-eu-west-8080"
        );
        assert!(super::attempt_name("b", at(999)) < super::attempt_name("a", at(1_000)));
    }
}
