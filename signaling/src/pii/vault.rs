//! Where the original text of a masked or redacted line goes when a campaign keeps
//! originals for its owners: sealed by a [`TextVault`] into a column of its own.
//!
//! [`KeyRingVault`] seals with the master key ring of encryption at rest (crate
//! `earshot-sealed`: XChaCha20-Poly1305, the key id inside, the context bound as associated
//! data, so a key rotation keeps old originals readable while their key is in the ring). A
//! server without a key ring holds a [`RefuseVault`], which keeps nothing: no plaintext
//! original is ever stored.

/// Seals and opens original text. `context` binds a sealed value to where it belongs (the
/// session and turn), so a value copied elsewhere does not open.
pub trait TextVault: Send + Sync {
    /// The sealed form of `plain`; empty when the vault keeps no originals.
    fn seal(&self, plain: &str, context: &str) -> Vec<u8>;
    /// The original text, or `None` if it cannot be opened here.
    fn open(&self, sealed: &[u8], context: &str) -> Option<String>;
}

/// The vault of a server without a key ring: originals are not kept.
#[derive(Debug, Default, Clone, Copy)]
pub struct RefuseVault;

impl TextVault for RefuseVault {
    fn seal(&self, _plain: &str, _context: &str) -> Vec<u8> {
        Vec::new()
    }

    fn open(&self, _sealed: &[u8], _context: &str) -> Option<String> {
        None
    }
}

/// The vault of a server with a master key ring.
pub struct KeyRingVault(pub std::sync::Arc<earshot_sealed::KeyRing>);

impl TextVault for KeyRingVault {
    fn seal(&self, plain: &str, context: &str) -> Vec<u8> {
        match self.0.seal_field(plain.as_bytes(), context.as_bytes()) {
            Ok(sealed) => sealed,
            Err(e) => {
                // Keeping nothing is the safe side: the masked text is stored either way.
                tracing::warn!(error = %e, "an original could not be sealed; it is not kept");
                Vec::new()
            }
        }
    }

    fn open(&self, sealed: &[u8], context: &str) -> Option<String> {
        if sealed.is_empty() {
            return None;
        }
        match self.0.open_field(sealed, context.as_bytes()) {
            Ok(plain) => String::from_utf8(plain).ok(),
            Err(e) => {
                tracing::warn!(error = %e, "a sealed original does not open");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ring_vault_opens_only_in_its_context_and_keeps_no_plaintext() {
        let ring = std::sync::Arc::new(earshot_sealed::KeyRing::generate("k1").expect("ring"));
        let vault = KeyRingVault(ring);
        let sealed = vault.seal("jane@example.com", "ses_1/1");
        assert!(!sealed.is_empty());
        assert!(
            !sealed.windows(4).any(|w| w == b"jane"),
            "the original is not in the sealed bytes"
        );
        assert_eq!(
            vault.open(&sealed, "ses_1/1").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(
            vault.open(&sealed, "ses_1/2"),
            None,
            "another turn's context"
        );
        assert_eq!(vault.open(&[], "ses_1/1"), None);
    }

    #[test]
    fn refuse_vault_keeps_nothing() {
        let sealed = RefuseVault.seal("jane@example.com", "ses_1/1");
        assert!(sealed.is_empty());
        assert_eq!(RefuseVault.open(&sealed, "ses_1/1"), None);
    }
}
