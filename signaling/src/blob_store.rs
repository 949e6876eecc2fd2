//! The blob store port for recordings: files addressed by a [`BlobKey`] (session id, file
//! name), never by a filesystem path, streamed out on download and deleted with their
//! session. [`LocalDiskBlobs`] is the one implementation today: one folder per session under
//! a root, the folder the media plane writes the session's files into (an object store such
//! as S3 would be a second implementation, with the files uploaded when they are finished).

use crate::byte_range::ByteRange;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Longest file name a key may carry.
const MAX_NAME_BYTES: usize = 64;

/// What names one blob: a session and one of its files (`participant.wav`, `mix.mp3`).
/// Both parts are checked on construction, so a key can never name anything outside its
/// session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey {
    session_id: String,
    name: String,
}

impl BlobKey {
    /// A key for `name` of `session_id`; `None` unless the session id is a valid `ses_` id and
    /// the name is 1-64 lowercase letters, digits, `_`, `-` and `.`, not starting with `.`.
    pub fn new(session_id: &str, name: &str) -> Option<BlobKey> {
        let name_ok = (1..=MAX_NAME_BYTES).contains(&name.len())
            && !name.starts_with('.')
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        (crate::ids::is_valid_id("ses", session_id) && name_ok).then(|| BlobKey {
            session_id: session_id.to_string(),
            name: name.to_string(),
        })
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One blob opened for reading: its length, the range served (when one was asked for and
/// can be satisfied) and those bytes (else all of them) as a stream.
pub struct Blob {
    pub len: u64,
    /// First and last byte served, inclusive; `None`: the whole blob.
    pub range: Option<(u64, u64)>,
    /// A range was asked for that the blob cannot satisfy (the body is empty).
    pub unsatisfiable: bool,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("not a session id: {0:?}")]
    InvalidSession(String),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
}

/// Where recordings are kept.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Opens a blob for streaming, all of it; `None` if there is none under the key.
    async fn open(&self, key: &BlobKey) -> Result<Option<Blob>, BlobError> {
        self.open_range(key, None).await
    }
    /// Opens a blob for streaming, all of it or `range`; `None` if there is none under the
    /// key.
    async fn open_range(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<Option<Blob>, BlobError>;
    /// Deletes every blob of the session; a session with none is fine.
    async fn delete_session(&self, session_id: &str) -> Result<(), BlobError>;
    /// Room left for new blobs in bytes (for readiness), `None` when the store cannot say.
    async fn free_bytes(&self) -> Result<Option<u64>, BlobError>;
}

/// Recordings on the local disk: `<root>/<session id>/<name>`.
#[derive(Debug, Clone)]
pub struct LocalDiskBlobs {
    root: PathBuf,
}

impl LocalDiskBlobs {
    pub fn new(root: PathBuf) -> LocalDiskBlobs {
        LocalDiskBlobs { root }
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalDiskBlobs {
    async fn open_range(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<Option<Blob>, BlobError> {
        let path = self.root.join(key.session_id()).join(key.name());
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BlobError::Io {
                    context: "opening a recording",
                    source,
                });
            }
        };
        let len = file
            .metadata()
            .await
            .map_err(|source| BlobError::Io {
                context: "reading a recording's size",
                source,
            })?
            .len();
        let resolved = range.map(|r| r.resolve(len));
        let body = match resolved {
            None => tokio_util::io::ReaderStream::new(file).boxed(),
            Some(None) => futures_util::stream::empty().boxed(),
            Some(Some((start, end))) => {
                file.seek(std::io::SeekFrom::Start(start))
                    .await
                    .map_err(|source| BlobError::Io {
                        context: "seeking in a recording",
                        source,
                    })?;
                tokio_util::io::ReaderStream::new(file.take(end - start + 1)).boxed()
            }
        };
        Ok(Some(Blob {
            len,
            range: resolved.flatten(),
            unsatisfiable: resolved == Some(None),
            body,
        }))
    }

    async fn delete_session(&self, session_id: &str) -> Result<(), BlobError> {
        if !crate::ids::is_valid_id("ses", session_id) {
            return Err(BlobError::InvalidSession(session_id.to_string()));
        }
        match tokio::fs::remove_dir_all(self.root.join(session_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BlobError::Io {
                context: "deleting recordings",
                source,
            }),
        }
    }

    async fn free_bytes(&self) -> Result<Option<u64>, BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || available_bytes(&root))
            .await
            .map_err(|e| BlobError::Io {
                context: "checking free space",
                source: std::io::Error::other(e),
            })?
            .map(Some)
            .map_err(|source| BlobError::Io {
                context: "checking free space",
                source,
            })
    }
}

/// Bytes available to an unprivileged writer on the file system holding `path` (or, before
/// `path` is made, its nearest existing ancestor).
fn available_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = path.ancestors().find(|p| p.exists()).unwrap_or(path);
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes only into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_only_files_inside_a_session() {
        assert!(BlobKey::new("ses_abc", "mix.mp3").is_some());
        for (session, name) in [
            ("ses_abc", "../x.wav"),
            ("ses_abc", "a/b.wav"),
            ("ses_abc", ".hidden"),
            ("ses_abc", ""),
            ("ses_abc", "Mix.WAV"),
            ("../etc", "mix.wav"),
            ("ses_../x", "mix.wav"),
        ] {
            assert!(BlobKey::new(session, name).is_none(), "{session} {name}");
        }
    }

    #[tokio::test]
    async fn blobs_stream_out_and_go_with_their_session() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalDiskBlobs::new(dir.path().to_path_buf());
        let key = BlobKey::new("ses_one", "ai.wav").unwrap();
        assert!(blobs.open(&key).await.unwrap().is_none());
        std::fs::create_dir_all(dir.path().join("ses_one")).unwrap();
        std::fs::write(dir.path().join("ses_one/ai.wav"), b"RIFF1234").unwrap();
        let blob = blobs.open(&key).await.unwrap().unwrap();
        assert_eq!(blob.len, 8);
        let chunks: Vec<Bytes> = blob.body.map(|c| c.unwrap()).collect().await;
        assert_eq!(chunks.concat(), b"RIFF1234");
        let part = blobs
            .open_range(&key, Some(ByteRange::From(2, Some(4))))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (part.len, part.range, part.unsatisfiable),
            (8, Some((2, 4)), false)
        );
        let chunks: Vec<Bytes> = part.body.map(|c| c.unwrap()).collect().await;
        assert_eq!(chunks.concat(), b"FF1");
        let past = blobs
            .open_range(&key, Some(ByteRange::From(8, None)))
            .await
            .unwrap()
            .unwrap();
        assert!(past.unsatisfiable);
        blobs.delete_session("ses_one").await.unwrap();
        assert!(!dir.path().join("ses_one").exists());
        blobs.delete_session("ses_one").await.unwrap();
        assert!(blobs.delete_session("../x").await.is_err());
    }
}
