//! A blob in an object store as a run of objects read one after the other: a finished file
//! is one object, a file whose node died holds only the segments that reached the store
//! (see `spool`). Both are read with ranged GETs only: [`stream`] for plain bytes (a download
//! never buffered whole) and [`PartsReader`], a blocking `Read + Seek` over the same, for the
//! sealed reader, which decrypts chunk by chunk exactly as it does a local file.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};
use std::sync::Arc;

/// How many bytes one ranged GET of [`PartsReader`] asks for at least (the sealed reader
/// reads a 16 KiB chunk at a time).
const READ_AHEAD: u64 = 256 * 1024;

/// One object of a blob: where it is and which bytes of the blob it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub path: Path,
    /// Offset of the object's first byte in the blob.
    pub start: u64,
    pub len: u64,
}

/// The parts of a blob, in order, without gaps.
#[derive(Debug, Clone)]
pub struct Parts {
    pub store: Arc<dyn ObjectStore>,
    pub parts: Vec<Part>,
}

impl Parts {
    pub fn len(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.start + p.len)
    }
}

fn io_error(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            std::io::Error::new(std::io::ErrorKind::NotFound, e)
        }
        other => std::io::Error::other(other),
    }
}

/// Bytes `start..end` of the blob as a stream of ranged GETs, one per part it touches.
pub fn stream(parts: &Parts, start: u64, end: u64) -> BoxStream<'static, std::io::Result<Bytes>> {
    let store = parts.store.clone();
    let ranges: Vec<(Path, std::ops::Range<u64>)> = parts
        .parts
        .iter()
        .filter(|p| p.start < end && p.start + p.len > start)
        .map(|p| {
            let from = start.max(p.start) - p.start;
            let to = end.min(p.start + p.len) - p.start;
            (p.path.clone(), from..to)
        })
        .collect();
    futures_util::stream::iter(ranges)
        .then(move |(path, range)| {
            let store = store.clone();
            async move {
                let opts = GetOptions::default().with_range(Some(range));
                match store.get_opts(&path, opts).await {
                    Ok(got) => got.into_stream().map(|r| r.map_err(io_error)).boxed(),
                    Err(e) => futures_util::stream::once(async move { Err(io_error(e)) }).boxed(),
                }
            }
        })
        .flatten()
        .boxed()
}

/// Collects bytes `start..end` of the blob (a header's few KiB, never a whole file).
pub async fn read(parts: &Parts, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut body = stream(parts, start, end);
    while let Some(piece) = body.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

/// A blocking reader of the blob for a blocking thread (it waits on the runtime for each
/// ranged GET): what `SealedReader` opens when the sealed file is in an object store.
pub struct PartsReader {
    parts: Parts,
    runtime: tokio::runtime::Handle,
    pos: u64,
    /// The bytes fetched last and the blob offset they start at.
    buffer: (u64, Bytes),
}

impl PartsReader {
    pub fn new(parts: Parts, runtime: tokio::runtime::Handle) -> PartsReader {
        PartsReader {
            parts,
            runtime,
            pos: 0,
            buffer: (0, Bytes::new()),
        }
    }
}

impl std::io::Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = self.parts.len();
        if self.pos >= len || buf.is_empty() {
            return Ok(0);
        }
        let (at, held) = &self.buffer;
        let in_buffer = self.pos >= *at && self.pos < at + held.len() as u64;
        if !in_buffer {
            let end = (self.pos + READ_AHEAD.max(buf.len() as u64)).min(len);
            let fetched = self.runtime.block_on(read(&self.parts, self.pos, end))?;
            self.buffer = (self.pos, Bytes::from(fetched));
        }
        let (at, held) = &self.buffer;
        let from = (self.pos - at) as usize;
        let n = buf.len().min(held.len() - from);
        buf[..n].copy_from_slice(&held[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for PartsReader {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let len = self.parts.len() as i128;
        let target = match to {
            std::io::SeekFrom::Start(n) => i128::from(n),
            std::io::SeekFrom::End(d) => len + i128::from(d),
            std::io::SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(target).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}
