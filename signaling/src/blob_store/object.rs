//! Recordings in an S3-compatible object store (`[storage] url = "s3://bucket/prefix"`; AWS
//! S3, MinIO, Garage or the like), through the `object_store` crate. The layout in the
//! bucket:
//!
//! - `<prefix>/<session id>/<name>`: a finished file (`participant.wav`, `mix.mp3`,
//!   `participant.peaks.json`), uploaded whole when the session's files are final;
//! - `<prefix>/<session id>/<name>.seg/<attempt>/<offset>`: while the session runs, the
//!   new bytes of each live track file every few seconds (`spool`); `<attempt>` names the
//!   process that wrote them (its start time and its node id, so a second node or a
//!   restart writes beside, never over, what is there), `<offset>` (20 digits) is where the
//!   segment's bytes start in that attempt's file.
//!
//! A blob is its finished object when there is one, else the longest gap-free run of one
//! attempt's segments (the node died): plain WAVs get their header repaired on the way out
//! as the local crash recovery repairs it ([`earshot_vocab::wav`]); sealed files open as a
//! torn local file does. Reads are ranged GETs only ([`super::parts`]).

use super::parts::{self, Part, Parts, PartsReader};
use super::{Blob, BlobError, BlobKey, BlobStore};
use crate::byte_range::ByteRange;
use bytes::Bytes;
use earshot_sealed::KeyRing;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How many bytes of a blob's start are read to tell sealed from plain and find a WAV's
/// data chunk.
const HEAD_BYTES: u64 = 4096;

/// Where recordings are kept, from `[storage] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// `file:///abs/path`: the local disk.
    Local(std::path::PathBuf),
    /// `s3://bucket/prefix` (the prefix may be empty).
    S3 { bucket: String, prefix: String },
}

impl StorageUrl {
    /// Parses a storage URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<StorageUrl, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "a file:// URL needs an absolute path (file:///var/lib/earshot/recordings), got {url:?}"
                ));
            }
            return Ok(StorageUrl::Local(path.into()));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "must be file:///path or s3://bucket/prefix, got {url:?}"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "{bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-' and '.')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix.split('/').all(|part| {
            part.is_empty()
                || (part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        }) && !prefix.contains("//");
        if !prefix_ok {
            return Err(format!(
                "the prefix {prefix:?} may hold only letters, digits, '-', '_', '.' and '/' between parts"
            ));
        }
        Ok(StorageUrl::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// A credential that `Debug` (and so any log of a settings struct) never shows.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
    }
}

/// How to reach the bucket; `None` fields come from the standard AWS environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Allow an `http://` endpoint (a local MinIO; never for a bucket across a network).
    pub allow_http: bool,
}

impl S3Settings {
    /// The S3 client (no request is made yet).
    pub fn connect(&self) -> Result<Arc<dyn ObjectStore>, BlobError> {
        use object_store::aws::AmazonS3Builder;
        // The S3 client's TLS uses rustls with the process's provider: ring, as everywhere
        // in Earshot (an error: one is installed already).
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_allow_http(self.allow_http);
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(region) = &self.region {
            b = b.with_region(region);
        }
        if let Some(id) = &self.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(Secret(secret)) = &self.secret_access_key {
            b = b.with_secret_access_key(secret);
        }
        let store = b.build().map_err(|source| BlobError::ObjectStore {
            context: "configuring the S3 client",
            source,
        })?;
        Ok(Arc::new(store))
    }
}

/// The object names of the layout above.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The key prefix without slashes at either end; may be empty.
    prefix: String,
}

impl Layout {
    fn join(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// Everything of a session.
    pub(super) fn session(&self, session_id: &str) -> Path {
        self.join(session_id)
    }

    /// A finished file.
    pub(super) fn file(&self, session_id: &str, name: &str) -> Path {
        self.join(&format!("{session_id}/{name}"))
    }

    /// Every segment of a file, of every attempt.
    fn segments(&self, session_id: &str, name: &str) -> Path {
        self.join(&format!("{session_id}/{name}.seg"))
    }

    /// One segment.
    pub(super) fn segment(&self, session_id: &str, name: &str, attempt: &str, offset: u64) -> Path {
        self.join(&format!("{session_id}/{name}.seg/{attempt}/{offset:020}"))
    }

    /// Whether `path` is a segment (of any file of any session).
    pub(super) fn is_segment(path: &Path) -> bool {
        let parts: Vec<_> = path.parts().collect();
        parts.len() >= 3 && parts[parts.len() - 3].as_ref().ends_with(".seg")
    }

    /// A segment written by `attempt` (one process's run of the session's media).
    pub(super) fn is_segment_of(path: &Path, attempt: &str) -> bool {
        let parts: Vec<_> = path.parts().collect();
        Self::is_segment(path) && parts[parts.len() - 2].as_ref() == attempt
    }
}

/// Recordings in a bucket; see the module's doc. With a spool (`with_spool`), the media
/// plane's local files are uploaded as they grow and moved to the bucket when final.
#[derive(Debug)]
pub struct ObjectStoreBlobs {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) layout: Layout,
    keys: Option<Arc<KeyRing>>,
    pub(super) spool: Option<super::spool::Spool>,
}

impl ObjectStoreBlobs {
    /// The store of `prefix` (no slashes at either end needed) in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> ObjectStoreBlobs {
        ObjectStoreBlobs {
            store,
            layout: Layout {
                prefix: prefix.trim_matches('/').to_owned(),
            },
            keys: None,
            spool: None,
        }
    }

    /// The same store opening sealed blobs with `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<KeyRing>>) -> ObjectStoreBlobs {
        self.keys = keys;
        self
    }

    fn store_error(context: &'static str) -> impl FnOnce(object_store::Error) -> BlobError {
        move |source| BlobError::ObjectStore { context, source }
    }

    /// The objects `key`'s blob is read from: its finished object, else the longest
    /// gap-free run of one attempt's segments (`true`: from segments); `None`: neither.
    async fn locate(&self, key: &BlobKey) -> Result<Option<(Parts, bool)>, BlobError> {
        let path = self.layout.file(key.session_id(), key.name());
        match self.store.head(&path).await {
            Ok(meta) => {
                let parts = vec![Part {
                    path,
                    start: 0,
                    len: meta.size,
                }];
                return Ok(Some((self.parts(parts), false)));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Self::store_error("looking up a recording")(e)),
        }
        let listed: Vec<_> = self
            .store
            .list(Some(&self.layout.segments(key.session_id(), key.name())))
            .try_collect()
            .await
            .map_err(Self::store_error("listing a recording's segments"))?;
        // attempt -> offset -> (path, len)
        let mut attempts: BTreeMap<String, BTreeMap<u64, (Path, u64)>> = BTreeMap::new();
        for meta in listed {
            let parts: Vec<String> = meta.location.parts().map(|p| p.as_ref().into()).collect();
            let [.., attempt, offset] = parts.as_slice() else {
                continue;
            };
            let Ok(offset) = offset.parse::<u64>() else {
                continue;
            };
            attempts
                .entry(attempt.clone())
                .or_default()
                .insert(offset, (meta.location, meta.size));
        }
        let best = attempts
            .into_values()
            .map(|segments| {
                let mut run = Vec::new();
                let mut next = 0u64;
                for (offset, (path, len)) in segments {
                    if offset != next || len == 0 {
                        break;
                    }
                    run.push(Part {
                        path,
                        start: offset,
                        len,
                    });
                    next = offset + len;
                }
                run
            })
            .max_by_key(|run| run.last().map_or(0, |p| p.start + p.len));
        Ok(best
            .filter(|run| !run.is_empty())
            .map(|run| (self.parts(run), true)))
    }

    fn parts(&self, parts: Vec<Part>) -> Parts {
        Parts {
            store: self.store.clone(),
            parts,
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for ObjectStoreBlobs {
    async fn open_range(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<Option<Blob>, BlobError> {
        // A file still in the spool (the session runs, or its move is under way) is read
        // there, as on the local disk; once moved, the folder is gone.
        if let Some(spool) = &self.spool {
            let local = super::LocalDiskBlobs::new(spool.dir().to_path_buf())
                .with_keys(self.keys.clone())
                .open_range(key, range)
                .await?;
            if local.is_some() {
                return Ok(local);
            }
        }
        let Some((parts, from_segments)) = self.locate(key).await? else {
            return Ok(None);
        };
        let read_error = |source| BlobError::Io {
            context: "reading a recording from the object store",
            source,
        };
        let stored_len = parts.len();
        let mut head = parts::read(&parts, 0, stored_len.min(HEAD_BYTES))
            .await
            .map_err(read_error)?;
        if earshot_sealed::is_sealed(&head) {
            let what = format!("{}/{}", key.session_id(), key.name());
            let runtime = tokio::runtime::Handle::current();
            let open = move || Ok(PartsReader::new(parts, runtime));
            return super::open_sealed(open, what, self.keys.clone(), range)
                .await
                .map(Some);
        }
        // A plain WAV cut by a crash: the header as it was when its first segment went up.
        let (len, patched_head) = match from_segments
            .then(|| earshot_vocab::wav::repair_header(&mut head, stored_len))
            .flatten()
        {
            Some(repaired_len) => {
                let data_start =
                    earshot_vocab::wav::find_data_chunk(&head).map_or(0, |c| c.start as usize);
                head.truncate(data_start);
                (repaired_len, Some(Bytes::from(head)))
            }
            None => (stored_len, None),
        };
        let span = super::Span::new(range, len);
        let (start, end) = (span.start, span.end);
        let body = match patched_head {
            Some(head) if start < head.len() as u64 => {
                let head_end = end.min(head.len() as u64);
                let first = head.slice(start as usize..head_end as usize);
                futures_util::stream::once(async move { Ok(first) })
                    .chain(parts::stream(&parts, head_end, end))
                    .boxed()
            }
            _ => parts::stream(&parts, start, end),
        };
        Ok(Some(span.blob(len, body)))
    }

    async fn delete_session(&self, session_id: &str) -> Result<(), BlobError> {
        super::check_session(session_id)?;
        if let Some(spool) = &self.spool {
            spool.forget(session_id).await?;
        }
        self.delete_objects(&self.layout.session(session_id), |_| true)
            .await
    }

    async fn free_bytes(&self) -> Result<Option<u64>, BlobError> {
        Ok(None)
    }

    async fn session_finished(&self, session_id: &str) -> Result<(), BlobError> {
        self.mark_finished(session_id);
        Ok(())
    }
}

impl ObjectStoreBlobs {
    /// Deletes the objects under `prefix` that `which` picks.
    pub(super) async fn delete_objects(
        &self,
        prefix: &Path,
        which: impl Fn(&Path) -> bool,
    ) -> Result<(), BlobError> {
        let listed: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(Self::store_error("listing recordings to delete"))?;
        for meta in listed.into_iter().filter(|m| which(&m.location)) {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::store_error("deleting recordings")(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_parse_or_say_what_is_wrong() {
        assert_eq!(
            StorageUrl::parse("file:///var/lib/earshot/recordings"),
            Ok(StorageUrl::Local("/var/lib/earshot/recordings".into()))
        );
        assert_eq!(
            StorageUrl::parse("s3://earshot-rec/prod/eu/"),
            Ok(StorageUrl::S3 {
                bucket: "earshot-rec".into(),
                prefix: "prod/eu".into()
            })
        );
        assert_eq!(
            StorageUrl::parse("s3://earshot-rec"),
            Ok(StorageUrl::S3 {
                bucket: "earshot-rec".into(),
                prefix: String::new()
            })
        );
        for bad in [
            "file://relative/path",
            "s3://",
            "s3://Upper/x",
            "s3://ok-bucket/../x",
            "s3://ok-bucket/a b",
            "gs://bucket",
            "",
        ] {
            assert!(StorageUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_names_carry_attempt_and_offset() {
        let layout = Layout {
            prefix: "rec".into(),
        };
        let seg = layout.segment("ses_a", "participant.wav", "0001-x", 96_044);
        assert_eq!(
            seg.as_ref(),
            "rec/ses_a/participant.wav.seg/0001-x/00000000000000096044"
        );
        assert!(Layout::is_segment(&seg));
        assert!(!Layout::is_segment(
            &layout.file("ses_a", "participant.wav")
        ));
        let bare = Layout {
            prefix: String::new(),
        };
        assert_eq!(bare.file("ses_a", "mix.mp3").as_ref(), "ses_a/mix.mp3");
    }
}
