//! A certificate authority made in the test, and server certificates it signs for 127.0.0.1:
//! PEM files for the server, a rustls client configuration that trusts the CA, and the value
//! of Chromium's `--ignore-certificate-errors-spki-list` for a certificate (Chromium accepts
//! that certificate then, as it would one from a trusted CA).

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate: its files and the SPKI hash Chromium is given.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub spki_sha256_b64: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca cert"),
        }
    }

    /// A certificate for 127.0.0.1 signed by this CA, written as `<name>.pem` (the chain:
    /// the certificate, then the CA's) and `<name>.key` into `dir`.
    pub fn server_cert(&self, dir: &Path, name: &str) -> ServerCert {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.issuer.pem()))
            .expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        let spki = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
        ServerCert {
            cert: cert_path,
            key: key_path,
            spki_sha256_b64: base64::engine::general_purpose::STANDARD.encode(spki.as_ref()),
        }
    }

    /// A WebSocket over TLS to `127.0.0.1:port` (the server's certificate from this CA), at
    /// `path_and_query`.
    pub async fn wss(
        &self,
        port: u16,
        path_and_query: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>
    {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(self.client_config()))
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
                tcp,
            )
            .await
            .expect("tls");
        let url = format!("wss://127.0.0.1:{port}{path_and_query}");
        tokio_tungstenite::client_async(url, tls)
            .await
            .expect("websocket upgrade")
            .0
    }

    /// A TLS client configuration that trusts this CA only.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("ca root");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}
