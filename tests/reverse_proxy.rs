//! The reverse-proxy recipe (`turn-config/nginx-earshot.conf`) with Debian's nginx in front of
//! Earshot: TLS at nginx, the API, WHIP and the live WebSocket through it, media direct; the
//! client address Earshot records is the one nginx saw (trusted via `[server]
//! trusted_proxies`), never one the client claims in its own `X-Forwarded-For`, and a direct
//! request's header is ignored; the audit log records the same address.

mod support;

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use earshot_media::codec::OpusSettings;
use futures_util::StreamExt;
use support::participant::{Participant, encode};
use support::pki::TestCa;
use support::{ADMIN_TOKEN, Server};

/// The test client's own address: another loopback address than nginx's and Earshot's.
const CLIENT_IP: &str = "127.0.0.2";

struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with the recipe, its upstream pointed at `upstream` and its certificate replaced.
    fn start(upstream: &str, cert: &support::pki::ServerCert) -> Nginx {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let recipe = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("turn-config/nginx-earshot.conf"),
        )
        .expect("recipe");
        let site = recipe
            .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
            .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
            .replace("listen [::]:443 ssl;", "")
            .replace(
                "/etc/letsencrypt/live/interviews.example.org/fullchain.pem",
                &cert.cert.display().to_string(),
            )
            .replace(
                "/etc/letsencrypt/live/interviews.example.org/privkey.pem",
                &cert.key.display().to_string(),
            );
        assert!(
            site.contains(&format!("listen 127.0.0.1:{port} ssl;")),
            "recipe changed:\n{site}"
        );
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
                 access_log {d}/access.log;\nclient_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n{site}\n}}\n"
            ),
        )
        .expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/install-deps.sh --test installs nginx-light)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { child, port, dir }
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// The id of the session an opened invite has, read through `base`.
async fn session_of(http: &reqwest::Client, base: &str, token: &str) -> String {
    let view: serde_json::Value = http
        .get(format!("{base}/v1/invites/{token}"))
        .send()
        .await
        .expect("invite")
        .json()
        .await
        .expect("json");
    view["session"]["id"].as_str().expect("session").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_recipe_forwards_the_api_whip_and_websockets_and_the_client_address() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("proxy test CA");
    let cert = ca.server_cert(dir.path(), "proxy");
    let server = Server::start(&[
        ("EARSHOT_SERVER_TRUSTED_PROXIES", r#"["127.0.0.1"]"#),
        ("EARSHOT_SERVER_RECORD_IP", "true"),
    ])
    .await;
    let upstream = server.base.trim_start_matches("http://").to_owned();
    let nginx = Nginx::start(&upstream, &cert);
    let client_ip: IpAddr = CLIENT_IP.parse().expect("ip");
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(ca.client_config())
        .local_address(client_ip)
        .build()
        .expect("client");

    // A whole participant through nginx: invite, page, consent, WHIP; media direct.
    let mut p = Participant::join_with(http.clone(), &nginx.base(), ADMIN_TOKEN, None).await;
    let pcm = vec![0i16; 2 * 48_000];
    let streamed = p.stream(&encode(&pcm, OpusSettings::default())).await;
    assert!(
        streamed.received.len() > 50,
        "AI audio over the direct media path"
    );
    let s = server.session(&p.session_id).await;
    assert_eq!(s["state"], "in_progress", "{s:#}");
    assert_eq!(s["ip"], CLIENT_IP, "the address nginx saw: {s:#}");

    // A client's own X-Forwarded-For, through nginx: replaced by what nginx saw.
    let (token, _) = server.invite().await;
    let r = http
        .get(format!("{}/i/{token}", nginx.base()))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    let id = session_of(&http, &nginx.base(), &token).await;
    assert_eq!(server.session(&id).await["ip"], CLIENT_IP);

    // Straight to Earshot from an untrusted address: the header is not believed.
    let (token, _) = server.invite().await;
    let direct = reqwest::Client::builder()
        .local_address(client_ip)
        .build()
        .expect("client");
    direct
        .get(server.url(&format!("/i/{token}")))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("page");
    let id = session_of(&direct, &server.base, &token).await;
    assert_eq!(server.session(&id).await["ip"], CLIENT_IP);

    // The live WebSocket through nginx (WSS at nginx, upgraded to Earshot).
    let mut ws = ca
        .wss(
            nginx.port,
            &format!("/v1/sessions/{}/live?token={ADMIN_TOKEN}", p.session_id),
        )
        .await;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an event in time")
        .expect("open")
        .expect("frame");
    assert!(first.into_text().expect("text").contains("\"type\""));

    // The audit log names the address nginx saw: for a failed sign-in whose client claimed
    // another address, and for that listen-in.
    let r = http
        .post(format!("{}/console/signin", nginx.base()))
        .header("x-earshot-console", "1")
        .header("x-forwarded-for", "203.0.113.7")
        .json(&serde_json::json!({"email": "nobody@example.org", "password": "wrong wrong wrong"}))
        .send()
        .await
        .expect("sign-in");
    assert_eq!(r.status(), 401);
    let audit: serde_json::Value = server
        .admin(server.http.get(server.url("/v1/audit")))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let client_of = |action: &str| {
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["action"] == action)
            .map(|e| e["client"].clone())
    };
    assert_eq!(client_of("signin"), Some(CLIENT_IP.into()), "{audit:#}");
    // The WSS helper connects from 127.0.0.1 (not CLIENT_IP): that is what nginx saw.
    assert_eq!(
        client_of("listen.live"),
        Some("127.0.0.1".into()),
        "{audit:#}"
    );
    p.hang_up().await;
}
