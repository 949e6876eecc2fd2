//! The key ring: master keys by id, one current; its text form (the key file, or an
//! environment variable), and field sealing with it.
//!
//! Key file text, one entry a line (`#` comments and blank lines ignored):
//!
//! ```text
//! current k2
//! key k1 <base64 of 32 bytes>
//! key k2 <base64 of 32 bytes>
//! ```
//!
//! The one-line form (for an environment variable) is `k2:<base64>,k1:<base64>`, the first
//! one current.

use crate::error::{Result, SealError, random};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Longest key id (it is stored in a fixed slot of every file's header).
pub const MAX_KEY_ID_LEN: usize = 31;
const KEY_LEN: usize = 32;
const FIELD_MAGIC: &[u8; 4] = b"ESF1";
const NONCE_LEN: usize = 24;

/// Master keys by id, one of them current. Cloning copies the keys (they are wiped when
/// dropped).
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(String, Zeroizing<[u8; KEY_LEN]>)>,
    current: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

fn check_id(id: &str) -> Result<()> {
    let ok = (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SealError::KeyRing(format!(
            "key id {id:?} must be 1-{MAX_KEY_ID_LEN} letters, digits, `_`, `-` or `.`"
        )))
    }
}

fn decode_key(id: &str, b64: &str) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let bytes = Zeroizing::new(
        B64.decode(b64.trim())
            .map_err(|_| SealError::KeyRing(format!("key {id:?} is not valid base64")))?,
    );
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return Err(SealError::KeyRing(format!(
            "key {id:?} has {} bytes, a master key has {KEY_LEN}",
            bytes.len()
        )));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

impl KeyRing {
    /// A ring of one new random key, current.
    pub fn generate(id: &str) -> Result<KeyRing> {
        check_id(id)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        random(&mut key[..])?;
        Ok(KeyRing {
            keys: vec![(id.to_string(), key)],
            current: id.to_string(),
        })
    }

    /// Reads the key file's text (see the module doc).
    pub fn parse(text: &str) -> Result<KeyRing> {
        let mut keys: Vec<(String, Zeroizing<[u8; KEY_LEN]>)> = Vec::new();
        let mut current = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["current", id] => {
                    if current.replace(id.to_string()).is_some() {
                        return Err(SealError::KeyRing(format!(
                            "line {}: a second `current`",
                            n + 1
                        )));
                    }
                }
                ["key", id, b64] => {
                    check_id(id)?;
                    if keys.iter().any(|(k, _)| k == id) {
                        return Err(SealError::KeyRing(format!("key {id:?} is listed twice")));
                    }
                    keys.push((id.to_string(), decode_key(id, b64)?));
                }
                _ => {
                    return Err(SealError::KeyRing(format!(
                        "line {}: expected `current <id>` or `key <id> <base64>`",
                        n + 1
                    )));
                }
            }
        }
        let current = current.ok_or_else(|| SealError::KeyRing("no `current <id>` line".into()))?;
        Self::checked(keys, current)
    }

    /// Reads the one-line form `id:base64,id:base64` (the first current).
    pub fn parse_inline(text: &str) -> Result<KeyRing> {
        let mut keys: Vec<(String, Zeroizing<[u8; KEY_LEN]>)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, b64) = entry
                .split_once(':')
                .ok_or_else(|| SealError::KeyRing("expected `id:base64[,id:base64...]`".into()))?;
            let id = id.trim();
            check_id(id)?;
            if keys.iter().any(|(k, _)| k == id) {
                return Err(SealError::KeyRing(format!("key {id:?} is listed twice")));
            }
            keys.push((id.to_string(), decode_key(id, b64)?));
        }
        let current = keys
            .first()
            .map(|(id, _)| id.clone())
            .ok_or_else(|| SealError::KeyRing("no key given".into()))?;
        Self::checked(keys, current)
    }

    fn checked(keys: Vec<(String, Zeroizing<[u8; KEY_LEN]>)>, current: String) -> Result<Self> {
        if !keys.iter().any(|(id, _)| *id == current) {
            return Err(SealError::KeyRing(format!(
                "the current key {current:?} is not listed"
            )));
        }
        Ok(KeyRing { keys, current })
    }

    /// The key file's text of this ring.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# Earshot master keys (see README \"Encryption at rest\"). Keep this file secret\n\
             # and backed up: recordings sealed under a key cannot be read without it.\n",
        );
        out.push_str(&format!("current {}\n", self.current));
        for (id, key) in &self.keys {
            out.push_str(&format!("key {id} {}\n", B64.encode(&key[..])));
        }
        out
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Every key's id, in the ring's order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Adds a new random key under `id` and makes it current.
    pub fn add_current(&mut self, id: &str) -> Result<()> {
        check_id(id)?;
        if self.keys.iter().any(|(k, _)| k == id) {
            return Err(SealError::KeyRing(format!(
                "key {id:?} is already in the ring"
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        random(&mut key[..])?;
        self.keys.push((id.to_string(), key));
        self.current = id.to_string();
        Ok(())
    }

    /// Removes the key `id`; the current key cannot be removed.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        if id == self.current {
            return Err(SealError::KeyRing(format!(
                "key {id:?} is current: rotate to a new key first"
            )));
        }
        let before = self.keys.len();
        self.keys.retain(|(k, _)| k != id);
        if self.keys.len() == before {
            return Err(SealError::KeyRing(format!("no key {id:?} in the ring")));
        }
        Ok(())
    }

    pub(crate) fn cipher(&self, id: &str) -> Result<XChaCha20Poly1305> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        Ok(XChaCha20Poly1305::new((&**key).into()))
    }

    /// Seals a small value (see the crate doc): `"ESF1"`, key id length, key id, nonce,
    /// ciphertext. `context` is bound as associated data.
    pub fn seal_field(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let id = self.current.as_bytes();
        let mut out = Vec::with_capacity(5 + id.len() + NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(FIELD_MAGIC);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        out.extend_from_slice(&nonce);
        let aad = field_aad(id, context);
        let ct = self
            .cipher(&self.current)?
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Corrupt("sealing a field failed".into()))?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value made by [`KeyRing::seal_field`] with the same `context`.
    pub fn open_field(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let (id, nonce, ct) = split_field(sealed)?;
        let aad = field_aad(id.as_bytes(), context);
        self.cipher(id)?
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| {
                SealError::Corrupt(
                    "the field does not open (wrong key, context or tampered)".into(),
                )
            })
    }

    /// Whether a sealed field is sealed under the current key (else seal it again after a
    /// rotation, before the old key is removed).
    pub fn is_current(&self, sealed: &[u8]) -> Result<bool> {
        Ok(split_field(sealed)?.0 == self.current)
    }
}

fn field_aad(id: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(5 + id.len() + context.len());
    aad.extend_from_slice(FIELD_MAGIC);
    aad.push(id.len() as u8);
    aad.extend_from_slice(id);
    aad.extend_from_slice(context);
    aad
}

fn split_field(sealed: &[u8]) -> Result<(&str, &[u8], &[u8])> {
    let bad = || SealError::Corrupt("not a sealed field".into());
    let rest = sealed
        .strip_prefix(FIELD_MAGIC.as_slice())
        .ok_or_else(bad)?;
    let (&len, rest) = rest.split_first().ok_or_else(bad)?;
    let len = usize::from(len);
    if len == 0 || len > MAX_KEY_ID_LEN || rest.len() < len + NONCE_LEN + 16 {
        return Err(bad());
    }
    let id = std::str::from_utf8(&rest[..len]).map_err(|_| bad())?;
    let (nonce, ct) = rest[len..].split_at(NONCE_LEN);
    Ok((id, nonce, ct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_text_round_trips_and_errors_name_the_problem() {
        let mut ring = KeyRing::generate("k1").unwrap();
        ring.add_current("k2").unwrap();
        let back = KeyRing::parse(&ring.to_text()).unwrap();
        assert_eq!(back.current_id(), "k2");
        assert_eq!(back.ids().collect::<Vec<_>>(), ["k1", "k2"]);
        let sealed = ring.seal_field(b"x", b"c").unwrap();
        assert_eq!(back.open_field(&sealed, b"c").unwrap(), b"x");

        let key = B64.encode([7u8; 32]);
        let inline =
            KeyRing::parse_inline(&format!("b:{key}, a:{}", B64.encode([8u8; 32]))).unwrap();
        assert_eq!(inline.current_id(), "b");
        for (text, want) in [
            ("key k1 AAAA\ncurrent k1", "32"),
            (&format!("key k1 {key}") as &str, "current"),
            (&format!("key k1 {key}\ncurrent k9"), "k9"),
            (&format!("key k/1 {key}\ncurrent k/1"), "letters"),
            (&format!("key k1 {key}\nkey k1 {key}\ncurrent k1"), "twice"),
            ("key k1 !!!\ncurrent k1", "base64"),
            ("hello", "line 1"),
        ] {
            let err = KeyRing::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(KeyRing::parse_inline("").is_err());
        assert!(KeyRing::parse_inline("k1").is_err());
    }

    #[test]
    fn fields_open_only_with_their_context_and_a_key_of_the_ring() {
        let mut ring = KeyRing::generate("k1").unwrap();
        let sealed = ring.seal_field(b"secret text", b"turn:1").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert!(ring.open_field(&sealed, b"turn:2").is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(ring.open_field(&flipped, b"turn:1").is_err());
        assert!(ring.open_field(&sealed[..10], b"turn:1").is_err());
        // After a rotation the old field still opens and is flagged for sealing again.
        ring.add_current("k2").unwrap();
        assert_eq!(ring.open_field(&sealed, b"turn:1").unwrap(), b"secret text");
        assert!(!ring.is_current(&sealed).unwrap());
        let again = ring.seal_field(b"secret text", b"turn:1").unwrap();
        assert!(ring.is_current(&again).unwrap());
        ring.remove("k1").unwrap();
        assert!(matches!(
            ring.open_field(&sealed, b"turn:1"),
            Err(SealError::UnknownKey(id)) if id == "k1"
        ));
        assert!(ring.remove("k2").is_err(), "the current key stays");
        // Another ring with a key of the same id: refused, never garbage.
        let other = KeyRing::generate("k2").unwrap();
        assert!(other.open_field(&again, b"turn:1").is_err());
    }
}
