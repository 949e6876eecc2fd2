//! A `wss://` agent (F5 over TLS): the bridge dials it with rustls, trusting a CA file given
//! as `[agent] ca_file` would give it, and the agent gets `connected` and `start`; an agent
//! whose certificate nobody trusts is not spoken to.

use std::sync::Arc;
use std::time::Duration;

use earshot_media::agent::bridge::{AgentLink, FromAgent};
use earshot_media::request::AgentRequest;
use earshot_vocab::AgentAudioFormat;
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::rustls;

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, server config).
fn pki() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], der_key)
    .expect("server config");
    (ca.pem(), Arc::new(config))
}

/// A wss:// agent on a free port: sends what it receives (the first two messages) back.
async fn agent(
    config: Arc<rustls::ServerConfig>,
) -> (String, tokio::sync::oneshot::Receiver<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else {
            let _ = tx.send(Vec::new());
            return;
        };
        let mut ws = tokio_tungstenite::accept_async(tls)
            .await
            .expect("websocket");
        let mut got = Vec::new();
        while got.len() < 2 {
            match ws.next().await {
                Some(Ok(m)) if m.is_text() => got.push(m.into_text().expect("text").to_string()),
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        let _ = tx.send(got);
        // Keep the socket open while the bridge runs.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    (format!("wss://127.0.0.1:{port}/agent"), rx)
}

fn request(url: String, tls: Option<Arc<rustls::ClientConfig>>) -> AgentRequest {
    AgentRequest {
        url,
        audio_format: AgentAudioFormat::L16k16,
        custom_parameters: serde_json::json!({}),
        retry_for: Duration::from_secs(2),
        tls,
    }
}

#[tokio::test]
async fn a_wss_agent_trusted_through_the_ca_file_gets_the_stream() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ca_pem, server) = pki();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write");
    let tls = earshot_media::agent::tls::client_config(Some(&ca_file)).expect("client config");
    let (url, got) = agent(server).await;
    let mut link = AgentLink::spawn("ses_wss", &request(url, Some(tls)));
    let first = tokio::time::timeout(Duration::from_secs(10), link.recv())
        .await
        .expect("in time");
    assert!(
        matches!(first, Some(FromAgent::Connected { .. })),
        "{first:?}"
    );
    let got = tokio::time::timeout(Duration::from_secs(10), got)
        .await
        .expect("in time")
        .expect("agent");
    assert!(got[0].contains("\"event\":\"connected\""), "{got:?}");
    assert!(
        got[1].contains("\"event\":\"start\"") && got[1].contains("ses_wss"),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_wss_agent_nobody_trusts_is_not_spoken_to() {
    let (_ca_pem, server) = pki();
    let (url, got) = agent(server).await;
    // The system's roots only: the test CA is not among them.
    let tls = earshot_media::agent::tls::client_config(None).expect("client config");
    let mut link = AgentLink::spawn("ses_untrusted", &request(url, Some(tls)));
    let got = tokio::time::timeout(Duration::from_secs(10), got)
        .await
        .expect("in time")
        .expect("agent");
    assert!(got.is_empty(), "the handshake must fail: {got:?}");
    // The bridge keeps retrying, then gives up after retry_for.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match link.recv().await {
                Some(FromAgent::Connected { .. }) => return "connected",
                Some(FromAgent::Failed { .. }) | None => return "failed",
                Some(_) => {}
            }
        }
    })
    .await
    .expect("in time");
    assert_eq!(end, "failed");
}
