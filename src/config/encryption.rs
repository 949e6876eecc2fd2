//! `[encryption]`: encryption at rest of recordings (README "Encryption at rest"): whether
//! new recordings are sealed, and where the master keys come from (a key file, generated on
//! the first start, or `EARSHOT_ENCRYPTION_MASTER_KEYS`).

use earshot_sealed::KeyRing;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file name of the key file in the data directory (the default `key_file`).
pub const DEFAULT_KEY_FILE: &str = "master_keys";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Seal new recordings (on by default). Off, new recordings are plain files; sealed ones
    /// still open while their key is in the ring.
    pub enabled: bool,
    /// The key file (`current <id>` and `key <id> <base64>` lines); default
    /// `<data_dir>/master_keys`, generated (0600) on the first start when missing.
    pub key_file: Option<PathBuf>,
    /// The keys themselves, `id:base64[,id:base64...]` with the current one first (usually
    /// from `EARSHOT_ENCRYPTION_MASTER_KEYS`); when set, no key file is read or made.
    pub master_keys: Option<String>,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_file: None,
            master_keys: None,
        }
    }
}

impl EncryptionConfig {
    /// The key file in use for `data_dir`.
    pub fn key_file_path(&self, data_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_KEY_FILE))
    }

    /// Checks the keys given inline and an existing `key_file` (a missing default file is
    /// made at start); the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(keys) = &self.master_keys {
            if self.key_file.is_some() {
                return Err(
                    "encryption.master_keys and encryption.key_file are both set: use one".into(),
                );
            }
            KeyRing::parse_inline(keys).map_err(|e| format!("encryption.master_keys: {e}"))?;
        }
        if let Some(path) = &self.key_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "encryption.key_file {}: cannot be read: {e}",
                    path.display()
                )
            })?;
            KeyRing::parse(&text)
                .map_err(|e| format!("encryption.key_file {}: {e}", path.display()))?;
        }
        Ok(())
    }
}
