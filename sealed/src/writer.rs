//! Writing sealed files: [`SealedWriter`] (create, or continue one a crash left), chunk
//! sealing, and [`rewrap_file`] for key rotation.

use crate::WRITE_CHUNK_PLAINTEXT;
use crate::error::{Result, SealError, random};
use crate::header::{Content, FIXED_LEN, HEADER_LEN, Header, slot_key_id};
use crate::keyring::KeyRing;
use crate::reader::{ChunkIndex, scan};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bit of a chunk's length word marking the last chunk.
pub(crate) const LAST_FLAG: u32 = 1 << 31;
/// Length word and nonce before a chunk's ciphertext.
pub(crate) const CHUNK_OVERHEAD: usize = 4 + 24;
pub(crate) const TAG_LEN: usize = 16;

/// A chunk's associated data: the header's fixed part, its counter and the last flag.
pub(crate) fn chunk_aad(fixed: &[u8; FIXED_LEN], counter: u64, last: bool) -> [u8; FIXED_LEN + 9] {
    let mut aad = [0u8; FIXED_LEN + 9];
    aad[..FIXED_LEN].copy_from_slice(fixed);
    aad[FIXED_LEN..FIXED_LEN + 8].copy_from_slice(&counter.to_le_bytes());
    aad[FIXED_LEN + 8] = u8::from(last);
    aad
}

/// Writes sealed chunks to a file. `write` buffers; `flush` seals the buffer as one chunk and
/// writes it (nothing when the buffer is empty); [`SealedWriter::finish`] seals the rest as
/// the last chunk. Dropping a writer without `finish` leaves an unfinished file whose flushed
/// chunks all open (what a crash leaves).
pub struct SealedWriter {
    file: File,
    fixed: [u8; FIXED_LEN],
    cipher: XChaCha20Poly1305,
    counter: u64,
    buf: Vec<u8>,
    /// Plaintext bytes written (sealed or buffered).
    len: u64,
    content: Content,
}

impl std::fmt::Debug for SealedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedWriter")
            .field("counter", &self.counter)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SealedWriter {
    /// Creates (or truncates) `path` as a sealed file of `content` under the ring's current
    /// key, with a fresh data key.
    pub fn create(path: &Path, ring: &KeyRing, content: Content) -> Result<SealedWriter> {
        let (header, bytes) = Header::new(ring, content)?;
        let mut file = File::create(path)?;
        file.write_all(&bytes)?;
        Ok(Self::with_header(file, &header, 0, 0))
    }

    fn with_header(file: File, header: &Header, counter: u64, len: u64) -> SealedWriter {
        SealedWriter {
            file,
            fixed: header.fixed,
            cipher: XChaCha20Poly1305::new((&*header.data_key).into()),
            counter,
            buf: Vec::with_capacity(WRITE_CHUNK_PLAINTEXT),
            len,
            content: header.content,
        }
    }

    /// Continues the sealed file at `path` (after a restart of the process): a torn or
    /// unopenable last chunk is cut off, a last chunk is opened and its plaintext taken back
    /// into the buffer, and writing carries on after the plaintext that is there. Returns
    /// the writer; [`SealedWriter::len`] is the plaintext kept.
    pub fn append(path: &Path, ring: &KeyRing) -> Result<SealedWriter> {
        let mut file = File::options().read(true).write(true).open(path)?;
        let mut head = vec![0u8; HEADER_LEN];
        file.read_exact(&mut head).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => SealError::Corrupt("header cut short".into()),
            _ => SealError::Io(e),
        })?;
        let header = Header::parse(&head, ring)?;
        let (mut chunks, _) = scan(&mut file)?;
        let mut writer = Self::with_header(file.try_clone()?, &header, 0, 0);
        // The last chunk is checked (a crash may have left garbage of the right length); a
        // last-flagged one is reopened for more.
        let mut carry = Vec::new();
        while let Some(last) = chunks.last().copied() {
            match crate::reader::open_chunk(&mut file, &writer.cipher, &header.fixed, &last) {
                Ok(plain) if last.last => {
                    carry = plain;
                    chunks.pop();
                    break;
                }
                Ok(_) => break,
                Err(SealError::Io(e)) => return Err(SealError::Io(e)),
                Err(_) => {
                    chunks.pop();
                }
            }
        }
        let end = chunks
            .last()
            .map_or(HEADER_LEN as u64, |c| c.offset + c.stored_len());
        file.set_len(end)?;
        file.seek(SeekFrom::Start(end))?;
        let kept: u64 = chunks.iter().map(|c| c.plain_len).sum();
        writer.file = file;
        writer.counter = chunks.len() as u64;
        writer.len = kept + carry.len() as u64;
        writer.buf = carry;
        Ok(writer)
    }

    /// What the plaintext is.
    pub fn content(&self) -> Content {
        self.content
    }

    /// Plaintext bytes written so far (sealed or buffered).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn seal(&mut self, last: bool) -> Result<()> {
        let mut nonce = [0u8; 24];
        random(&mut nonce)?;
        let aad = chunk_aad(&self.fixed, self.counter, last);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &self.buf,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Corrupt("sealing a chunk failed".into()))?;
        let word = ct.len() as u32 | if last { LAST_FLAG } else { 0 };
        let mut out = Vec::with_capacity(CHUNK_OVERHEAD + ct.len());
        out.extend_from_slice(&word.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        // One write per chunk: a killed process leaves whole chunks and at most one torn one.
        self.file.write_all(&out)?;
        self.counter += 1;
        self.buf.clear();
        Ok(())
    }

    /// Seals the rest as the last chunk and syncs the file.
    pub fn finish(mut self) -> Result<()> {
        self.seal(true)?;
        self.file.sync_data()?;
        Ok(())
    }
}

impl Write for SealedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = WRITE_CHUNK_PLAINTEXT - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.len += n as u64;
        if self.buf.len() >= WRITE_CHUNK_PLAINTEXT {
            self.seal(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.seal(false)?;
        }
        Ok(())
    }
}

/// Rewraps the data key of the sealed file at `path` under the ring's current key: only the
/// header's key slot is rewritten (in place, synced), never a chunk. Returns the key id it was
/// sealed under before (`None`: the file is not sealed, and is left alone).
pub fn rewrap_file(path: &Path, ring: &KeyRing) -> Result<Option<String>> {
    let mut file = File::options().read(true).write(true).open(path)?;
    let Some(head) = read_head(&mut file)? else {
        return Ok(None);
    };
    let before = slot_key_id(&head)?;
    if before == ring.current_id() {
        return Ok(Some(before));
    }
    let header = Header::parse(&head, ring)?;
    let slot = header.slot(ring)?;
    file.seek(SeekFrom::Start(FIXED_LEN as u64))?;
    file.write_all(&slot)?;
    file.sync_data()?;
    Ok(Some(before))
}

/// The id of the master key the sealed file at `path` is sealed under (`None`: not sealed).
pub fn key_id_of(path: &Path) -> Result<Option<String>> {
    let Some(head) = read_head(&mut File::open(path)?)? else {
        return Ok(None);
    };
    slot_key_id(&head).map(Some)
}

/// The header bytes of a sealed file (`None`: the file does not start with the magic).
fn read_head(file: &mut File) -> Result<Option<Vec<u8>>> {
    let head = crate::header::read_up_to_header(file)?;
    if !crate::is_sealed(&head) {
        return Ok(None);
    }
    if head.len() < HEADER_LEN {
        return Err(SealError::Corrupt("header cut short".into()));
    }
    Ok(Some(head))
}

impl ChunkIndex {
    /// Bytes the chunk takes on disk.
    pub(crate) fn stored_len(&self) -> u64 {
        CHUNK_OVERHEAD as u64 + self.plain_len + TAG_LEN as u64
    }
}
