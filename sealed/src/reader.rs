//! Reading sealed files: the chunk index (from the length words only), the plaintext's
//! length, and any byte range decrypted chunk by chunk ([`ChunkSource`]).

use crate::MAX_CHUNK_PLAINTEXT;
use crate::error::{Result, SealError};
use crate::header::{Content, FIXED_LEN, HEADER_LEN, Header, wav_header};
use crate::keyring::KeyRing;
use crate::writer::{CHUNK_OVERHEAD, LAST_FLAG, TAG_LEN, chunk_aad};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// Where one chunk is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkIndex {
    /// Offset of its length word in the file.
    pub offset: u64,
    pub counter: u64,
    /// Offset of its first plaintext byte in the plaintext.
    pub plain_start: u64,
    pub plain_len: u64,
    pub last: bool,
}

/// Walks the chunks' length words from the end of the header. Returns the whole chunks and
/// whether the file is finished (its last chunk is flagged last). A chunk reaching past the
/// end of the file is a torn write and is left out.
pub(crate) fn scan<R: Read + Seek>(file: &mut R) -> Result<(Vec<ChunkIndex>, bool)> {
    let file_len = file.seek(SeekFrom::End(0))?;
    let mut pos = HEADER_LEN as u64;
    let mut plain = 0u64;
    let mut chunks = Vec::new();
    while pos + 4 <= file_len {
        let mut word = [0u8; 4];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut word)?;
        let word = u32::from_le_bytes(word);
        let ct_len = u64::from(word & !LAST_FLAG);
        let last = word & LAST_FLAG != 0;
        let stored = CHUNK_OVERHEAD as u64 + ct_len;
        if pos + stored > file_len {
            break; // torn
        }
        if ct_len < TAG_LEN as u64 || ct_len > (MAX_CHUNK_PLAINTEXT + TAG_LEN) as u64 {
            return Err(SealError::Corrupt(format!(
                "chunk {} has a bad length",
                chunks.len()
            )));
        }
        let plain_len = ct_len - TAG_LEN as u64;
        chunks.push(ChunkIndex {
            offset: pos,
            counter: chunks.len() as u64,
            plain_start: plain,
            plain_len,
            last,
        });
        plain += plain_len;
        pos += stored;
        if last {
            if pos != file_len {
                return Err(SealError::Corrupt("data after the last chunk".into()));
            }
            return Ok((chunks, true));
        }
    }
    Ok((chunks, false))
}

/// Reads and opens one chunk.
pub(crate) fn open_chunk<R: Read + Seek>(
    file: &mut R,
    cipher: &XChaCha20Poly1305,
    fixed: &[u8; FIXED_LEN],
    chunk: &ChunkIndex,
) -> Result<Vec<u8>> {
    let mut stored = vec![0u8; chunk.stored_len() as usize - 4];
    file.seek(SeekFrom::Start(chunk.offset + 4))?;
    file.read_exact(&mut stored)?;
    let (nonce, ct) = stored.split_at(24);
    let aad = chunk_aad(fixed, chunk.counter, chunk.last);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .map_err(|_| {
            SealError::Corrupt(format!(
                "chunk {} does not open (tampered, moved or from another file)",
                chunk.counter
            ))
        })
}

/// The length the sealed file at `path` reads as (with the rebuilt WAV header for PCM), from
/// its header and the chunks' length words, without a key: for sizes, not for trust (nothing
/// is authenticated). `None`: the file is not sealed.
pub fn plaintext_len(path: &std::path::Path) -> Result<Option<u64>> {
    let mut file = std::fs::File::open(path)?;
    let head = crate::header::read_up_to_header(&mut file)?;
    if !crate::is_sealed(&head) {
        return Ok(None);
    }
    let fixed: [u8; FIXED_LEN] = head
        .get(..FIXED_LEN)
        .and_then(|f| f.try_into().ok())
        .ok_or_else(|| SealError::Corrupt("header cut short".into()))?;
    let (chunks, _) = scan(&mut file)?;
    let content = crate::header::content_of(&fixed)?;
    let body = whole_frames(content, chunks.iter().map(|c| c.plain_len).sum());
    Ok(Some(match content {
        Content::Bytes => body,
        Content::Pcm {
            channels,
            bits,
            sample_rate,
        } => wav_header(channels, bits, sample_rate, body).len() as u64 + body,
    }))
}

/// `len` bytes of content cut to whole sample frames (PCM; bytes are kept whole).
fn whole_frames(content: Content, len: u64) -> u64 {
    match content {
        Content::Bytes => len,
        Content::Pcm { channels, bits, .. } => {
            let align = (u64::from(channels) * u64::from(bits).div_ceil(8)).max(1);
            len - len % align
        }
    }
}

/// A sealed file opened for reading. Its plaintext, as a reader presents it, is the content
/// itself ([`Content::Bytes`]) or a WAV file: the rebuilt 44-byte header, then the samples
/// ([`Content::Pcm`]).
pub struct SealedReader<R> {
    inner: R,
    header: Header,
    chunks: Arc<Vec<ChunkIndex>>,
    finished: bool,
    body_len: u64,
}

impl<R: Read + Seek> SealedReader<R> {
    /// Reads the header (unwrapping the data key with a key of `ring`) and indexes the
    /// chunks. Fails on a plain file ([`SealError::NotSealed`]), a key not in the ring, a
    /// wrong key, a malformed chunk list; never on a torn tail (see [`Self::is_finished`]).
    pub fn open(mut inner: R, ring: &KeyRing) -> Result<Self> {
        let head = crate::header::read_up_to_header(&mut inner)?;
        let header = Header::parse(&head, ring)?;
        let (chunks, finished) = scan(&mut inner)?;
        if let Some(last) = chunks.last().filter(|c| c.last) {
            // "Finished" is only believed once the last chunk (its flag bound) opens; the
            // others are checked as they are read.
            let cipher = XChaCha20Poly1305::new((&*header.data_key).into());
            open_chunk(&mut inner, &cipher, &header.fixed, last)?;
        }
        let body_len = whole_frames(header.content, chunks.iter().map(|c| c.plain_len).sum());
        Ok(SealedReader {
            inner,
            header,
            chunks: Arc::new(chunks),
            finished,
            body_len,
        })
    }

    /// What the plaintext is.
    pub fn content(&self) -> Content {
        self.header.content
    }

    /// The master key the file is sealed under.
    pub fn key_id(&self) -> &str {
        &self.header.key_id
    }

    /// Whether the writer finished the file. An unfinished file (a killed process, or a
    /// recording still being written) reads as the chunks it has.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Length of the content (samples, for PCM; without the WAV header).
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    fn prefix(&self) -> Vec<u8> {
        match self.header.content {
            Content::Bytes => Vec::new(),
            Content::Pcm {
                channels,
                bits,
                sample_rate,
            } => wav_header(channels, bits, sample_rate, self.body_len),
        }
    }

    /// Length of the plaintext as presented (with the WAV header for PCM).
    pub fn plaintext_len(&self) -> u64 {
        self.body_len + self.prefix().len() as u64
    }

    /// The presented plaintext's bytes `start..end` (end exclusive, clamped to the length).
    pub fn range(self, start: u64, end: u64) -> ChunkSource<R> {
        let end = end.min(self.plaintext_len());
        let start = start.min(end);
        let prefix = self.prefix();
        let plen = prefix.len() as u64;
        let head = prefix[start.min(plen) as usize..end.min(plen) as usize].to_vec();
        self.source(head, start.saturating_sub(plen), end.saturating_sub(plen))
    }

    /// The content only (the samples of PCM, without a WAV header), all of it.
    pub fn body(self) -> ChunkSource<R> {
        let end = self.body_len;
        self.source(Vec::new(), 0, end)
    }

    fn source(self, head: Vec<u8>, pos: u64, end: u64) -> ChunkSource<R> {
        ChunkSource {
            cipher: XChaCha20Poly1305::new((&*self.header.data_key).into()),
            fixed: self.header.fixed,
            inner: self.inner,
            chunks: self.chunks,
            pending: head,
            pending_at: 0,
            pos,
            end,
        }
    }
}

/// A byte range of a sealed file's plaintext, decrypted a chunk at a time: by
/// [`ChunkSource::next_piece`] (for streaming out) or as a [`Read`].
pub struct ChunkSource<R> {
    inner: R,
    cipher: XChaCha20Poly1305,
    fixed: [u8; FIXED_LEN],
    chunks: Arc<Vec<ChunkIndex>>,
    /// Bytes ready to hand out, from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    /// Next body offset to decrypt, and the end (exclusive).
    pos: u64,
    end: u64,
}

impl<R: Read + Seek> ChunkSource<R> {
    /// Bytes left to hand out.
    pub fn remaining(&self) -> u64 {
        (self.pending.len() - self.pending_at) as u64 + (self.end - self.pos)
    }

    /// The next piece of the range (at most one chunk's plaintext); `None` at the end.
    pub fn next_piece(&mut self) -> Result<Option<Vec<u8>>> {
        if self.pending_at < self.pending.len() {
            let piece = self.pending.split_off(self.pending_at);
            self.pending.clear();
            self.pending_at = 0;
            return Ok(Some(piece));
        }
        self.decrypt_next()?;
        if self.pending.is_empty() {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.pending)))
    }

    /// Decrypts the chunk holding `pos` into `pending` (left empty at the end).
    fn decrypt_next(&mut self) -> Result<()> {
        self.pending.clear();
        self.pending_at = 0;
        if self.pos >= self.end {
            return Ok(());
        }
        let at = self
            .chunks
            .partition_point(|c| c.plain_start + c.plain_len <= self.pos);
        let Some(chunk) = self.chunks.get(at).copied() else {
            return Err(SealError::Corrupt("range past the chunks".into()));
        };
        let plain = open_chunk(&mut self.inner, &self.cipher, &self.fixed, &chunk)?;
        let from = (self.pos - chunk.plain_start) as usize;
        let to = ((self.end - chunk.plain_start) as usize).min(plain.len());
        self.pending = if from == 0 && to == plain.len() {
            plain
        } else {
            plain[from..to].to_vec()
        };
        self.pos += (to - from) as u64;
        Ok(())
    }
}

impl<R: Read + Seek> Read for ChunkSource<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pending_at >= self.pending.len() {
            self.decrypt_next()?;
        }
        let avail = &self.pending[self.pending_at..];
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.pending_at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
