//! TLS for `wss://` agents: rustls (ring) trusting the system's root certificates and,
//! optionally, the certificates of a CA file (`[agent] ca_file`: an operator's private CA, or
//! a test's). Built once at start; every agent connection of the process shares it.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// The client configuration agents are dialled with. An unreadable or empty `ca_file` is an
/// error naming it; unreadable system roots are logged (the CA file may be all there is).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "reading the system's root certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("agent.ca_file {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("agent.ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "agent.ca_file {}: no CERTIFICATE in the file",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("agent.ca_file {}: {e}", path.display()))?;
        }
    } else if added == 0 {
        tracing::warn!("no system root certificates: wss:// agents will not be trusted");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("missing.pem");
        let err = client_config(Some(&missing)).expect_err("missing");
        assert!(err.starts_with("agent.ca_file"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here").expect("write");
        let err = client_config(Some(&empty)).expect_err("empty");
        assert!(err.contains("no CERTIFICATE"), "{err}");
        assert!(client_config(None).is_ok());
    }
}
