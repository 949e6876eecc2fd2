//! A sealed file's header: the fixed part (what the content is, the file's id) and the key
//! slot (the data key wrapped by a master key), and the WAV header a PCM file is read with.

use crate::error::{Result, SealError, random};
use crate::keyring::{KeyRing, MAX_KEY_ID_LEN};
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use zeroize::Zeroizing;

/// The first bytes of every sealed file.
pub const MAGIC: &[u8; 8] = b"EARSHOTS";
const VERSION: u8 = 1;
pub(crate) const FIXED_LEN: usize = 32;
const SLOT_LEN: usize = 1 + MAX_KEY_ID_LEN + 24 + 32 + 16;
/// Bytes before the first chunk.
pub const HEADER_LEN: usize = FIXED_LEN + SLOT_LEN;

/// What a sealed file's plaintext is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Bytes as they are (an MP3).
    Bytes,
    /// Little-endian integer PCM samples of a WAV file; the WAV's header is not stored but
    /// made from these fields on reading ([`wav_header`]).
    Pcm {
        channels: u8,
        bits: u8,
        sample_rate: u32,
    },
}

/// Whether `head` (a file's first bytes) starts a sealed file.
pub fn is_sealed(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// The header of an integer PCM WAV holding `data_len` bytes of samples, byte for byte as
/// the `hound` crate writes it (so a sealed recording reads back identical to a plain one):
/// a 16-byte `PCMWAVEFORMAT` for at most 16 bits and 2 channels (44 bytes in all), else
/// `WAVE_FORMAT_EXTENSIBLE` (68 bytes).
pub fn wav_header(channels: u8, bits: u8, sample_rate: u32, data_len: u64) -> Vec<u8> {
    const SUBTYPE_PCM: [u8; 16] = [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b,
        0x71,
    ];
    let extensible = channels > 2 || bits > 16;
    let data = u32::try_from(data_len).unwrap_or(u32::MAX);
    let bytes_per_sample = u32::from(bits).div_ceil(8);
    let bytes_per_sec = sample_rate * bytes_per_sample * u32::from(channels);
    let block_align = (bytes_per_sample * u32::from(channels)) as u16;
    let mut h = Vec::with_capacity(68);
    h.extend_from_slice(b"RIFF");
    let header_after_size: u32 = if extensible { 60 } else { 36 };
    h.extend_from_slice(&data.saturating_add(header_after_size).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&(if extensible { 40u32 } else { 16 }).to_le_bytes());
    h.extend_from_slice(&(if extensible { 0xfffeu16 } else { 1 }).to_le_bytes());
    h.extend_from_slice(&u16::from(channels).to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&bytes_per_sec.to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    if extensible {
        h.extend_from_slice(&((bytes_per_sample * 8) as u16).to_le_bytes());
        h.extend_from_slice(&22u16.to_le_bytes());
        h.extend_from_slice(&u16::from(bits).to_le_bytes());
        let mask = (0..u32::from(channels.min(18))).fold(0u32, |m, c| m | (1 << c));
        h.extend_from_slice(&mask.to_le_bytes());
        h.extend_from_slice(&SUBTYPE_PCM);
    } else {
        h.extend_from_slice(&u16::from(bits).to_le_bytes());
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data.to_le_bytes());
    h
}

/// A parsed header.
#[derive(Clone)]
pub(crate) struct Header {
    pub fixed: [u8; FIXED_LEN],
    pub content: Content,
    pub key_id: String,
    pub data_key: Zeroizing<[u8; 32]>,
}

impl Header {
    /// A new header for `content` with a fresh data key wrapped by the ring's current key;
    /// returns it and its bytes.
    pub fn new(ring: &KeyRing, content: Content) -> Result<(Header, [u8; HEADER_LEN])> {
        let mut fixed = [0u8; FIXED_LEN];
        fixed[0..8].copy_from_slice(MAGIC);
        fixed[8] = VERSION;
        match content {
            Content::Bytes => fixed[9] = 0,
            Content::Pcm {
                channels,
                bits,
                sample_rate,
            } => {
                fixed[9] = 1;
                fixed[10] = channels;
                fixed[11] = bits;
                fixed[12..16].copy_from_slice(&sample_rate.to_le_bytes());
            }
        }
        random(&mut fixed[16..32])?;
        let mut data_key = Zeroizing::new([0u8; 32]);
        random(&mut data_key[..])?;
        let header = Header {
            fixed,
            content,
            key_id: ring.current_id().to_string(),
            data_key,
        };
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..FIXED_LEN].copy_from_slice(&fixed);
        bytes[FIXED_LEN..].copy_from_slice(&header.slot(ring)?);
        Ok((header, bytes))
    }

    /// The key slot: the data key wrapped by the ring's current key.
    pub fn slot(&self, ring: &KeyRing) -> Result<[u8; SLOT_LEN]> {
        let id = ring.current_id().as_bytes();
        let mut slot = [0u8; SLOT_LEN];
        slot[0] = id.len() as u8;
        slot[1..1 + id.len()].copy_from_slice(id);
        let nonce_at = 1 + MAX_KEY_ID_LEN;
        random(&mut slot[nonce_at..nonce_at + 24])?;
        let aad = slot_aad(&self.fixed, id);
        let wrapped = ring
            .cipher(ring.current_id())?
            .encrypt(
                XNonce::from_slice(&slot[nonce_at..nonce_at + 24]),
                Payload {
                    msg: &self.data_key[..],
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Corrupt("wrapping a data key failed".into()))?;
        slot[nonce_at + 24..].copy_from_slice(&wrapped);
        Ok(slot)
    }

    /// Parses and unwraps a header with a key of `ring`.
    pub fn parse(bytes: &[u8], ring: &KeyRing) -> Result<Header> {
        if !is_sealed(bytes) {
            return Err(SealError::NotSealed);
        }
        if bytes.len() < HEADER_LEN {
            return Err(SealError::Corrupt("header cut short".into()));
        }
        if bytes[8] != VERSION {
            return Err(SealError::Version(bytes[8]));
        }
        let mut fixed = [0u8; FIXED_LEN];
        fixed.copy_from_slice(&bytes[..FIXED_LEN]);
        let content = content_of(&fixed)?;
        let key_id = slot_key_id(bytes)?;
        let slot = &bytes[FIXED_LEN..HEADER_LEN];
        let nonce_at = 1 + MAX_KEY_ID_LEN;
        let aad = slot_aad(&fixed, key_id.as_bytes());
        let key = Zeroizing::new(
            ring.cipher(&key_id)?
                .decrypt(
                    XNonce::from_slice(&slot[nonce_at..nonce_at + 24]),
                    Payload {
                        msg: &slot[nonce_at + 24..],
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::WrongKey(key_id.clone()))?,
        );
        let mut data_key = Zeroizing::new([0u8; 32]);
        data_key.copy_from_slice(&key);
        Ok(Header {
            fixed,
            content,
            key_id,
            data_key,
        })
    }
}

/// What the content is, from a header's fixed part.
pub(crate) fn content_of(fixed: &[u8; FIXED_LEN]) -> Result<Content> {
    Ok(match fixed[9] {
        0 => Content::Bytes,
        1 => Content::Pcm {
            channels: fixed[10],
            bits: fixed[11],
            sample_rate: u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]),
        },
        k => return Err(SealError::Corrupt(format!("unknown content kind {k}"))),
    })
}

/// Reads a file's first bytes, as many as a header has or the file holds.
pub(crate) fn read_up_to_header<R: std::io::Read>(file: &mut R) -> Result<Vec<u8>> {
    let mut head = vec![0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match file.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    head.truncate(got);
    Ok(head)
}

/// The id of the master key a header's slot names.
pub(crate) fn slot_key_id(bytes: &[u8]) -> Result<String> {
    let slot = bytes
        .get(FIXED_LEN..HEADER_LEN)
        .ok_or_else(|| SealError::Corrupt("header cut short".into()))?;
    let len = usize::from(slot[0]);
    if len == 0 || len > MAX_KEY_ID_LEN {
        return Err(SealError::Corrupt("bad key id length".into()));
    }
    // The padding is not covered by the wrap's associated data: it must be zeros.
    if slot[1 + len..1 + MAX_KEY_ID_LEN].iter().any(|&b| b != 0) {
        return Err(SealError::Corrupt("bad key id padding".into()));
    }
    std::str::from_utf8(&slot[1..1 + len])
        .map(str::to_string)
        .map_err(|_| SealError::Corrupt("bad key id".into()))
}

fn slot_aad(fixed: &[u8; FIXED_LEN], key_id: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(FIXED_LEN + key_id.len());
    aad.extend_from_slice(fixed);
    aad.extend_from_slice(key_id);
    aad
}
