//! TURN (F11): Debian's coturn on loopback, configured from `turn-config/turnserver.conf`, and
//! a headless Chromium participant forced to relay-only (`iceTransportPolicy: "relay"`). With
//! the credentials Earshot mints per session the interview runs through the relay to its end
//! and is recorded; with credentials the relay refuses (a secret it does not share: the 401 an
//! expired credential also gets) the page says so instead of hanging. A participant in a
//! network namespace that reaches the server only over TCP completes an interview through the
//! relay over TCP.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::browser::Browser;
use support::netns::Netns;
use support::tcp_bridge::TcpBridge;
use support::{Server, audio, fixture, join_interview};

/// A coturn process of the test's own.
struct Coturn {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Coturn {
    fn start(secret: &str) -> Coturn {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // Relay ports: 40 of them per coturn, from a per-process base, away from ephemeral
        // ports (the tests of this file run at once).
        static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = 20_000 + (std::process::id() % 100) as u16 * 200 + nth * 50;
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("turn-config/turnserver.conf");
        // The shipped config logs to standard output (for journald): kept in a file here.
        let log = std::fs::File::create(dir.path().join("turn.log")).expect("log");
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&conf)
            .args([
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                &format!("--static-auth-secret={secret}"),
                // The media server is on loopback here (the shipped config denies private
                // ranges and allows the server's address only).
                "--allow-loopback-peers",
                "--allowed-peer-ip=127.0.0.1",
                &format!("--min-port={base}"),
                &format!("--max-port={}", base + 40),
                "--no-tls",
                "--no-dtls",
            ])
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turn.pid").display()
            ))
            .arg(format!("--db={}", dir.path().join("turndb").display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (scripts/install-deps.sh --test installs coturn)");
        let c = Coturn { child, port, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !c.log().contains("Total General servers") {
            assert!(
                std::time::Instant::now() < deadline,
                "coturn did not start:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("turn.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        self.url_over("udp")
    }

    fn url_over(&self, transport: &str) -> String {
        format!("[\"turn:127.0.0.1:{}?transport={transport}\"]", self.port)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes every RTCPeerConnection the page creates relay-only, as a participant behind a
/// network that lets nothing else through would be.
const RELAY_ONLY: &str = r#"(() => {
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = function (config, ...rest) {
    return new Original(Object.assign({}, config || {}, { iceTransportPolicy: 'relay' }), ...rest);
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  return true;
})()"#;

/// The local candidate type of the connection's selected pair, and for a relay candidate the
/// transport to the relay (`relay/udp`, `relay/tcp`).
const SELECTED_LOCAL_TYPE: &str = r#"(async () => {
  const stats = await window.earshot.pc.getStats();
  let type = null;
  stats.forEach(r => {
    if (r.type === 'transport' && r.selectedCandidatePairId) {
      const pair = stats.get(r.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      type = local ? local.candidateType + (local.relayProtocol ? '/' + local.relayProtocol : '') : null;
    }
  });
  return type;
})()"#;

/// Opens an invite in a fresh Chromium (inside `ns` if given) and waits for the consent screen.
/// Outside a namespace the page is made relay-only (see [`RELAY_ONLY`]).
async fn page_on_consent(server: &Server, ns: Option<&Netns>) -> (Browser, String) {
    let (token, url) = server.invite().await;
    let speech = fixture("participant_speech.wav");
    let mut b = match ns {
        Some(ns) => Browser::launch_in_netns(ns, &url, Some(&speech), &[]).await,
        None => Browser::launch(&url, Some(&speech)).await,
    };
    assert!(
        b.wait_for(
            "!!document.querySelector('#accept') && !document.querySelector('#accept').closest('[hidden]')",
            Duration::from_secs(15),
        )
        .await,
        "consent screen"
    );
    if ns.is_none() {
        assert_eq!(b.eval(RELAY_ONLY).await, serde_json::json!(true));
    }
    (b, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interview_runs_through_coturn_with_minted_credentials() {
    interview_through_turn(Network::Open).await;
}

/// A participant whose network lets only TCP out: Chromium runs in a network namespace with
/// no route anywhere (its link is down); the server's HTTP port and the relay's TCP port are
/// forwarded into it over TCP, nothing else. It finds on its own that the relay over TCP is
/// the only path (TURN over TCP; the relay speaks UDP to the media server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interview_runs_from_a_network_that_lets_only_tcp_out() {
    interview_through_turn(Network::TcpOnly).await;
}

#[derive(PartialEq)]
enum Network {
    /// Chromium on the host, made relay-only, the relay over UDP.
    Open,
    /// Chromium in a namespace that reaches the host only through TCP forwards.
    TcpOnly,
}

async fn interview_through_turn(network: Network) {
    let secret = "shared-secret-for-the-turn-test-0123";
    let turn = Coturn::start(secret);
    let transport = match network {
        Network::Open => "udp",
        Network::TcpOnly => "tcp",
    };
    let urls = turn.url_over(transport);
    let server = Server::start(&[
        ("EARSHOT_TURN_URLS", urls.as_str()),
        ("EARSHOT_TURN_SHARED_SECRET", secret),
        ("EARSHOT_INTERVIEWER_SILENCE_MS", "1000"),
    ])
    .await;
    let mut ns = None;
    let mut _forwards = Vec::new();
    if network == Network::TcpOnly {
        let n = Netns::create();
        n.set_link(false);
        // The same addresses inside as outside, so invite links and TURN URLs hold as they are.
        let http: std::net::SocketAddr = server
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("server address");
        let relay = std::net::SocketAddr::from(([127, 0, 0, 1], turn.port));
        for at in [http, relay] {
            _forwards.push(TcpBridge::out_of(&n.name, at, at));
        }
        ns = Some(n);
    }
    let (mut b, token) = page_on_consent(&server, ns.as_ref()).await;
    let id = join_interview(&mut b, &server).await;
    // The invite hands out the relay with credentials minted for this session.
    let view: serde_json::Value = server
        .http
        .get(server.url(&format!("/v1/invites/{token}")))
        .send()
        .await
        .expect("invite")
        .json()
        .await
        .expect("json");
    let minted = &view["ice_servers"][0];
    let username = minted["username"].as_str().expect("username");
    let (expiry, session) = username.split_once(':').expect("<expiry>:<session>");
    assert_eq!(session, id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expiry: u64 = expiry.parse().expect("expiry");
    assert!(
        (now + 3500..=now + 3700).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(
        b.eval(SELECTED_LOCAL_TYPE).await,
        serde_json::json!(format!("relay/{transport}")),
        "the media goes through the relay, over {transport}"
    );
    // The server counts the path (a second after connecting): the client's relay candidate,
    // over UDP from the relay to here.
    let path = "earshot_media_peer_paths_total{type=\"relay\",protocol=\"udp\"} 1";
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = server.metrics_text().await;
        if metrics.lines().any(|l| l == path) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(metrics.lines().any(|l| l == path), "{metrics}");
    let done = server
        .wait_session(&id, Duration::from_secs(150), |s| {
            s["state"] == "completed" && s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        done["state"],
        "completed",
        "{done:#}\nlog:\n{}",
        server.log()
    );
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = server.download(&id, "participant.wav").await;
    let path = dir.path().join("participant.wav");
    std::fs::write(&path, bytes).expect("write");
    // The fed speech is in the participant track (over the whole track: Chromium's echo
    // canceller ducks the microphone while the interviewer speaks, see e2e_interview).
    let (_, fed) = audio::read_wav(&fixture("participant_speech.wav"));
    let (rate, rec) = audio::read_wav(&path);
    let rec_env = audio::envelope(rate, &rec);
    let (_, r) = audio::best_loop_lag(&audio::envelope(48_000, &fed), &rec_env[100..]);
    eprintln!(
        "participant track through TURN: r={r:.3} over {} s",
        rec_env.len() / 100
    );
    assert!(
        r > 0.75,
        "participant track does not match the fed speech (r={r:.3})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_get_a_message_on_the_page() {
    let turn = Coturn::start("the-relay-has-another-secret-0123");
    let urls = turn.url();
    let server = Server::start(&[
        ("EARSHOT_TURN_URLS", urls.as_str()),
        (
            "EARSHOT_TURN_SHARED_SECRET",
            "earshot-mints-with-this-one-4567",
        ),
    ])
    .await;
    let (mut b, _token) = page_on_consent(&server, None).await;
    b.eval("document.querySelector('#accept').click(); true")
        .await;
    assert!(
        b.wait_for(
            "window.earshot.state === 'mic' && !document.querySelector('#start').disabled",
            Duration::from_secs(15)
        )
        .await
    );
    b.eval("document.querySelector('#start').click(); true")
        .await;
    assert!(
        b.wait_for(
            "window.earshot.turnRefused === 401",
            Duration::from_secs(20)
        )
        .await,
        "the page saw the relay refuse: {}",
        b.eval("JSON.stringify({s: window.earshot.state, t: window.earshot.turnRefused})")
            .await
    );
    assert!(
        b.wait_for(
            "document.body.innerText.includes('relay server refused')",
            Duration::from_secs(10)
        )
        .await,
        "the page says the relay refused access"
    );
    // After its retries (each with fresh credentials, refused the same) it gives up saying
    // why, never connected.
    assert!(
        b.wait_for(
            "!!window.earshot.error && window.earshot.error.code === 'turn_refused'",
            Duration::from_secs(120)
        )
        .await,
        "page state: {}",
        b.eval("JSON.stringify({s: window.earshot.state, e: window.earshot.error})")
            .await
    );
    assert!(
        b.eval("document.body.innerText")
            .await
            .as_str()
            .is_some_and(|t| t.contains("The relay server (TURN) refused this browser's access")),
        "{}",
        b.eval("document.body.innerText").await
    );
}

/// `[media] public_ip_stun` against a real STUN server (coturn answers Binding requests): on
/// loopback the address it reports is the one asked from.
#[tokio::test]
async fn coturn_tells_the_stun_probe_its_address() {
    let turn = Coturn::start("shared-secret-for-the-stun-probe-0123");
    let server = format!("127.0.0.1:{}", turn.port).parse().expect("addr");
    let ip = earshot_media::peer::stun_probe::public_ip(
        server,
        "127.0.0.1".parse().expect("ip"),
        Duration::from_millis(700),
    )
    .await
    .expect("coturn answers");
    assert_eq!(ip.to_string(), "127.0.0.1");
}
