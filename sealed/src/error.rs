//! What can go wrong opening or writing sealed things.

/// An error of the sealed format or its keys. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes do not start with the sealed magic (a plain file).
    #[error("not a sealed file")]
    NotSealed,
    #[error("sealed with format version {0}, which this build cannot read")]
    Version(u8),
    /// The file names a master key the ring does not hold.
    #[error("sealed with master key {0:?}, which is not in the key ring")]
    UnknownKey(String),
    /// The key of that id does not open the file's data key: another key under the same id,
    /// or a tampered header.
    #[error("master key {0:?} does not open this file's data key (wrong key or tampered header)")]
    WrongKey(String),
    /// A chunk or field failed authentication or is malformed.
    #[error("sealed data is corrupt or was tampered with: {0}")]
    Corrupt(String),
    /// A key ring definition is wrong (the message names what).
    #[error("key ring: {0}")]
    KeyRing(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

pub type Result<T, E = SealError> = std::result::Result<T, E>;

impl From<SealError> for std::io::Error {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Io(io) => io,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// Fills `buf` with random bytes from the operating system.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| SealError::Random(e.to_string()))
}
