//! The blob store port for recordings: files addressed by a [`BlobKey`] (session id, file
//! name), never by a filesystem path, streamed out on download and deleted with their
//! session. Two implementations: [`LocalDiskBlobs`] (the default: one folder per session
//! under a root, the folder the media plane writes the session's files into) and
//! [`object::ObjectStoreBlobs`] (an S3-compatible bucket, the local folder a spool: see
//! `object` and `spool`). Files sealed at rest (`earshot-sealed`, told by their first bytes)
//! are decrypted as they stream out: a blob's length, ranges and bytes are always those of
//! the plain file.

pub mod object;
mod parts;
pub mod spool;

use crate::byte_range::ByteRange;
use bytes::Bytes;
use earshot_sealed::{ChunkSource, KeyRing, SealedReader};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::path::PathBuf;
use std::sync::Arc;
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

/// A requested range resolved against a blob's length: what a [`Blob`] says it serves and
/// the bytes `start..end` its body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// `None`: no range asked; `Some(None)`: one asked that cannot be satisfied.
    resolved: Option<Option<(u64, u64)>>,
    start: u64,
    end: u64,
}

impl Span {
    fn new(range: Option<ByteRange>, len: u64) -> Span {
        let resolved = range.map(|r| r.resolve(len));
        let (start, end) = match resolved {
            None => (0, len),
            Some(None) => (0, 0),
            Some(Some((a, b))) => (a, b + 1),
        };
        Span {
            resolved,
            start,
            end,
        }
    }

    /// The blob of `len` bytes serving this span with `body`.
    fn blob(self, len: u64, body: BoxStream<'static, std::io::Result<Bytes>>) -> Blob {
        Blob {
            len,
            range: self.resolved.flatten(),
            unsatisfiable: self.resolved == Some(None),
            body,
        }
    }
}

/// Refuses anything but a valid session id (a deletion names a folder or a key prefix).
fn check_session(session_id: &str) -> Result<(), BlobError> {
    if crate::ids::is_valid_id("ses", session_id) {
        Ok(())
    } else {
        Err(BlobError::InvalidSession(session_id.to_string()))
    }
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
    /// An encrypted blob that does not open: no key ring, its key not in the ring, a wrong
    /// key, or a tampered file. Never served as bytes.
    #[error("encrypted recording cannot be opened: {0}")]
    Sealed(String),
    /// The object store refused or failed a request.
    #[error("{context}: {source}")]
    ObjectStore {
        context: &'static str,
        source: object_store::Error,
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
    /// The media plane finished the session's files (the last `RecordingReady` was
    /// stored): a store that spools them locally moves them to their final place now.
    async fn session_finished(&self, _session_id: &str) -> Result<(), BlobError> {
        Ok(())
    }
}

/// Recordings on the local disk: `<root>/<session id>/<name>`, sealed ones opened with the
/// key ring.
#[derive(Debug, Clone)]
pub struct LocalDiskBlobs {
    root: PathBuf,
    keys: Option<Arc<KeyRing>>,
}

impl LocalDiskBlobs {
    pub fn new(root: PathBuf) -> LocalDiskBlobs {
        LocalDiskBlobs { root, keys: None }
    }

    /// The same store opening sealed blobs with `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<KeyRing>>) -> LocalDiskBlobs {
        self.keys = keys;
        self
    }
}

/// Opens the sealed blob that `open` reads (a file, or an object's ranged GETs) and streams
/// the plaintext's `range` (resolved against the plaintext's length) a chunk at a time, each
/// decrypted on a blocking thread. `what` names the blob in the log.
async fn open_sealed<R, F>(
    open: F,
    what: String,
    keys: Option<Arc<KeyRing>>,
    range: Option<ByteRange>,
) -> Result<Blob, BlobError>
where
    R: std::io::Read + std::io::Seek + Send + 'static,
    F: FnOnce() -> Result<R, BlobError> + Send + 'static,
{
    let opened = tokio::task::spawn_blocking(move || {
        let keys = keys.ok_or_else(|| {
            BlobError::Sealed("the file is encrypted and no master key is configured".into())
        })?;
        let reader = SealedReader::open(open()?, &keys).map_err(|e| match e {
            earshot_sealed::SealError::Io(source) => BlobError::Io {
                context: "reading a recording",
                source,
            },
            other => BlobError::Sealed(other.to_string()),
        })?;
        if !reader.is_finished() {
            tracing::warn!(file = %what, "serving an unfinished encrypted recording (still being written, or cut by a crash)");
        }
        let len = reader.plaintext_len();
        let span = Span::new(range, len);
        Ok::<_, BlobError>((len, span, reader.range(span.start, span.end)))
    })
    .await
    .map_err(|e| BlobError::Io {
        context: "opening a recording",
        source: std::io::Error::other(e),
    })??;
    let (len, span, source) = opened;
    Ok(span.blob(len, decrypted_stream(source)))
}

/// The pieces of `source`, each decrypted off the async threads; a chunk that does not open
/// ends the stream with an error (the client sees a cut download, never altered audio).
fn decrypted_stream<R>(source: ChunkSource<R>) -> BoxStream<'static, std::io::Result<Bytes>>
where
    R: std::io::Read + std::io::Seek + Send + 'static,
{
    futures_util::stream::unfold(Some(source), |state| async move {
        let mut source = state?;
        let step = tokio::task::spawn_blocking(move || {
            let piece = source.next_piece();
            (source, piece)
        })
        .await;
        match step {
            Ok((source, Ok(Some(piece)))) => Some((Ok(Bytes::from(piece)), Some(source))),
            Ok((_, Ok(None))) => None,
            Ok((_, Err(e))) => {
                tracing::error!(error = %e, "decrypting a recording failed mid-stream");
                Some((Err(std::io::Error::from(e)), None))
            }
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    })
    .boxed()
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
        let mut head = [0u8; 8];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..]).await {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(source) => {
                    return Err(BlobError::Io {
                        context: "reading a recording",
                        source,
                    });
                }
            }
        }
        if earshot_sealed::is_sealed(&head[..got]) {
            let what = path.display().to_string();
            let open = move || {
                std::fs::File::open(&path).map_err(|source| BlobError::Io {
                    context: "opening a recording",
                    source,
                })
            };
            return open_sealed(open, what, self.keys.clone(), range)
                .await
                .map(Some);
        }
        let span = Span::new(range, len);
        file.seek(std::io::SeekFrom::Start(span.start))
            .await
            .map_err(|source| BlobError::Io {
                context: "seeking in a recording",
                source,
            })?;
        let body = tokio_util::io::ReaderStream::new(file.take(span.end - span.start)).boxed();
        Ok(Some(span.blob(len, body)))
    }

    async fn delete_session(&self, session_id: &str) -> Result<(), BlobError> {
        check_session(session_id)?;
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

    async fn read(blob: Blob) -> Vec<u8> {
        let chunks: Vec<Bytes> = blob.body.map(|c| c.unwrap()).collect().await;
        chunks.concat()
    }

    #[tokio::test]
    async fn sealed_blobs_stream_out_as_their_plaintext() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(KeyRing::generate("k1").unwrap());
        std::fs::create_dir_all(dir.path().join("ses_one")).unwrap();
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut w = earshot_sealed::SealedWriter::create(
            &dir.path().join("ses_one/mix.mp3"),
            &ring,
            earshot_sealed::Content::Bytes,
        )
        .unwrap();
        for piece in plain.chunks(70_000) {
            w.write_all(piece).unwrap();
            w.flush().unwrap();
        }
        w.finish().unwrap();
        let key = BlobKey::new("ses_one", "mix.mp3").unwrap();
        let blobs = LocalDiskBlobs::new(dir.path().to_path_buf()).with_keys(Some(ring.clone()));
        let whole = blobs.open(&key).await.unwrap().unwrap();
        assert_eq!((whole.len, whole.range), (plain.len() as u64, None));
        assert_eq!(read(whole).await, plain);
        for (range, want) in [
            (ByteRange::From(69_990, Some(140_010)), (69_990, 140_010)),
            (ByteRange::From(5, Some(5)), (5, 5)),
            (ByteRange::Suffix(10), (299_990, 299_999)),
        ] {
            let part = blobs.open_range(&key, Some(range)).await.unwrap().unwrap();
            assert_eq!((part.len, part.range), (plain.len() as u64, Some(want)));
            assert_eq!(read(part).await, plain[want.0 as usize..=want.1 as usize]);
        }
        let past = blobs
            .open_range(&key, Some(ByteRange::From(300_000, None)))
            .await
            .unwrap()
            .unwrap();
        assert!(past.unsatisfiable);
        // No key ring, or another key under the same id: an error, never bytes.
        let keyless = LocalDiskBlobs::new(dir.path().to_path_buf());
        assert!(
            matches!(keyless.open(&key).await, Err(BlobError::Sealed(m)) if m.contains("no master key"))
        );
        let other = LocalDiskBlobs::new(dir.path().to_path_buf())
            .with_keys(Some(Arc::new(KeyRing::generate("k1").unwrap())));
        assert!(
            matches!(other.open(&key).await, Err(BlobError::Sealed(m)) if m.contains("does not open"))
        );
        // A tampered chunk ends the stream with an error.
        let path = dir.path().join("ses_one/mix.mp3");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let blob = blobs.open(&key).await.unwrap().unwrap();
        let results: Vec<std::io::Result<Bytes>> = blob.body.collect().await;
        assert!(results.last().unwrap().is_err());
    }
}
