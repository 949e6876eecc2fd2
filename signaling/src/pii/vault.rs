//! Where the original text of a masked or redacted line goes when a campaign keeps
//! originals for its owners: sealed by a [`TextVault`] into a column of its own.
//!
//! The real vault (an AEAD key ring, crate `earshot-sealed`) is wired at merge; until then
//! the service holds a [`RefuseVault`], which keeps nothing: no plaintext original is ever
//! stored.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuse_vault_keeps_nothing() {
        let sealed = RefuseVault.seal("jane@example.com", "ses_1/1");
        assert!(sealed.is_empty());
        assert_eq!(RefuseVault.open(&sealed, "ses_1/1"), None);
    }
}
