//! HTTPS served directly: the certificate chain and private key from PEM files (`[server]
//! tls_cert` / `tls_key`), loaded at start and again on reload (SIGHUP: certificates rotate).
//! Each new connection takes the configuration current when it is accepted; connections open
//! at a reload keep theirs. A reload that fails keeps the running certificate.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls_cert {path}: {detail}")]
    Cert { path: PathBuf, detail: String },
    #[error("server.tls_key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("server.tls_cert / server.tls_key do not go together: {0}")]
    Mismatch(String),
}

/// The PEM files and the configuration made from them.
#[derive(Clone)]
pub struct TlsHandle {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for TlsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsHandle")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Reads and checks the pair: a chain of at least one certificate, a private key that matches
/// it. HTTP/1.1 only, as over plain HTTP.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_err = |detail: String| TlsError::Cert {
        path: cert.to_owned(),
        detail,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl TlsHandle {
    /// Loads the pair now (an error names the key and the file).
    pub fn open(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let config = load(&cert, &key)?;
        Ok(Self {
            cert,
            key,
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Loads the files again; on success new connections get the new certificate.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.cert, &self.key)?;
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// The acceptor for a connection accepted now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        tokio_rustls::TlsAcceptor::from(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_mismatched_files_name_the_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("missing.pem");
        let err = load(&missing, &missing).expect_err("missing");
        assert!(err.to_string().starts_with("server.tls_cert"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("write");
        let err = load(&garbage, &garbage).expect_err("garbage");
        assert!(err.to_string().contains("server.tls_cert"), "{err}");
    }
}
