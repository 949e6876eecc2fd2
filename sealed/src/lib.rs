//! Encryption at rest for Earshot: recordings on disk and small sensitive fields.
//!
//! # Keys
//! A [`KeyRing`] holds master keys (32 random bytes each) under short ids, one of them
//! current. New things are sealed under the current key; anything sealed under any key of the
//! ring opens. Master keys never encrypt bulk data: each file gets a fresh random data key,
//! and only that data key is encrypted ("wrapped") by the master key (envelope encryption),
//! so rotating the master key rewrites a file's header, never its audio
//! ([`rewrap_file`]).
//!
//! # Files ([`SealedWriter`], [`SealedReader`])
//! A sealed file is a fixed-size header followed by chunks, all with XChaCha20-Poly1305:
//!
//! ```text
//! header (136 bytes)
//!   fixed part (32): magic "EARSHOTS", version 1, content kind, channels, bits per sample,
//!                    sample rate (u32 LE), file id (16 random bytes)
//!   key slot (104):  key id length, key id (31 bytes, zero padded),
//!                    nonce (24), data key sealed by the master key (32 + 16 tag);
//!                    associated data: the fixed part and the key id
//! chunk, repeated
//!   length (u32 LE: ciphertext bytes; the top bit set on the last chunk), nonce (24),
//!   ciphertext (plaintext + 16 tag); associated data: the fixed part, the chunk's
//!   counter (u64 LE, from 0) and the last flag
//! ```
//!
//! The counter and the last flag are bound to every chunk as associated data (the STREAM
//! construction's guarantees), so a chunk moved, dropped or replayed from elsewhere fails to
//! open, and a file cut after a whole chunk reads as unfinished. Each chunk has its own random
//! 192-bit nonce instead of STREAM's nonce = prefix || counter || flag: after a crash the
//! writer continues a file by writing the torn chunk's counter again with new content, which
//! under a counter nonce would reuse a nonce with another plaintext.
//!
//! A writer's `flush` seals what is buffered as one chunk (chunks vary in size) and writes it,
//! so a process killed at any moment leaves a file whose every complete chunk opens: the
//! reader drops a torn last chunk and says the file is unfinished ([`SealedReader::is_finished`])
//! instead of failing. Readers give the plaintext length and any byte range, decrypting only
//! the chunks that hold it. A file's content kind says what the plaintext is: bytes as they
//! are ([`Content::Bytes`], an MP3), or the samples of a WAV whose 44-byte header is not
//! stored but rebuilt from the authenticated header ([`Content::Pcm`]; [`wav_header`]).
//!
//! # Fields ([`KeyRing::seal_field`], [`KeyRing::open_field`])
//! For small sensitive values kept in the database (a transcript's original text, an
//! address): `ring.seal_field(plaintext, context)` gives bytes holding the key id, a random
//! nonce and the ciphertext; `ring.open_field(&sealed, context)` gives the plaintext back
//! with whichever key of the ring sealed it. `context` is associated data: say what the value
//! is and whose it is (`b"turn.text:ses_abc:12"`), so a sealed value copied to another row or
//! column does not open there. [`KeyRing::is_current`] tells whether a sealed field should be
//! sealed again after a rotation.
//!
//! ```
//! use earshot_sealed::KeyRing;
//! let ring = KeyRing::generate("k1").unwrap();
//! let sealed = ring.seal_field(b"my phone is 555-0100", b"turn.text:ses_x:3").unwrap();
//! assert_eq!(ring.open_field(&sealed, b"turn.text:ses_x:3").unwrap(), b"my phone is 555-0100");
//! assert!(ring.open_field(&sealed, b"turn.text:ses_y:3").is_err());
//! ```

mod error;
mod header;
mod keyring;
mod reader;
mod writer;

pub use error::SealError;
pub use header::{Content, HEADER_LEN, MAGIC, is_sealed, wav_header};
pub use keyring::{KeyRing, MAX_KEY_ID_LEN};
pub use reader::{ChunkSource, SealedReader, plaintext_len};
pub use writer::{SealedWriter, key_id_of, rewrap_file};

/// Largest plaintext of one chunk a reader accepts.
pub const MAX_CHUNK_PLAINTEXT: usize = 1 << 20;
/// A writer seals its buffer as a chunk when it gets this big (or on a flush). Small enough
/// that a live recording holds little (two tracks per session, each with its buffer and the
/// chunk being sealed: about 64 KiB where 1 MiB chunks held about 350 KiB per session, the
/// recorder flushing once a second), large enough that the 44 bytes of a chunk's framing
/// stay near 0.3 % of the file.
pub const WRITE_CHUNK_PLAINTEXT: usize = 16 * 1024;
