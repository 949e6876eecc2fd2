//! The server peer's ICE-lite behaviour over real UDP on 127.0.0.1 (no mocks): liveness by any
//! datagram with the RFC 7675 timing of full-ICE clients other than Chromium (Firefox and aiortc
//! check every 4-6 s), quiet and failed after 10 s and 35 s of silence, and the answer to a
//! nominating check sent right after the first one (aiortc does that, 1 ms apart).
//!
//! The timing tests run the real timers (10 s, 35 s): they take that long, in parallel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::peer::{PeerConfig, PeerEvent, PeerRole, ServerPeer};
use rtc::ice::attributes::control::AttrControlling;
use rtc::ice::attributes::priority::PriorityAttr;
use rtc::ice::attributes::use_candidate::UseCandidateAttr;
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    BINDING_REQUEST, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_BINDING, Message, Setter,
    TransactionId,
};
use rtc::stun::textattrs::Username;
use tokio::sync::mpsc::Receiver;

const FRAME: Duration = Duration::from_millis(20);

async fn wait_connected(rx: &mut Receiver<PeerEvent>, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(PeerEvent::Connected)) => return,
            Ok(Some(PeerEvent::Audio(_) | PeerEvent::Disconnected | PeerEvent::Restored)) => {}
            Ok(Some(ev)) => panic!("{who}: {ev:?} before Connected"),
            Ok(None) => panic!("{who}: channel closed before Connected"),
            Err(_) => panic!("{who}: not connected within 10 s"),
        }
    }
}

/// The server's state events (audio skipped) until `until` after the start, with their time.
async fn state_events(
    rx: &mut Receiver<PeerEvent>,
    start: Instant,
    until: Duration,
    stop_at_failed: bool,
) -> Vec<(Duration, &'static str)> {
    let mut out = Vec::new();
    let end = start + until;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let name = match tokio::time::timeout(left, rx.recv()).await {
            Err(_) | Ok(None) => return out,
            Ok(Some(PeerEvent::Audio(_))) => continue,
            Ok(Some(PeerEvent::Connected)) => "connected",
            Ok(Some(PeerEvent::Disconnected)) => "disconnected",
            Ok(Some(PeerEvent::Restored)) => "restored",
            Ok(Some(PeerEvent::Failed)) => "failed",
            Ok(Some(PeerEvent::Closed)) => "closed",
        };
        out.push((start.elapsed(), name));
        if stop_at_failed && name == "failed" {
            return out;
        }
    }
}

/// Some valid Opus frame (20 ms of silence-ish audio) to keep media flowing.
fn opus_frame() -> Bytes {
    let mut enc = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)
        .expect("opus encoder");
    let pcm: Vec<i16> = (0..960).map(|i| ((i % 48) as i16 - 24) * 100).collect();
    let mut buf = [0u8; 1500];
    let n = enc.encode(&pcm, &mut buf).expect("encode");
    Bytes::copy_from_slice(&buf[..n])
}

/// Sends an Opus frame every 20 ms until the task is aborted.
fn stream_audio(client: Arc<ClientPeer>) -> tokio::task::JoinHandle<()> {
    let frame = opus_frame();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FRAME);
        loop {
            tick.tick().await;
            let _ = client.send_opus(frame.clone(), FRAME).await;
        }
    })
}

async fn connect(
    client_config: ClientConfig,
    role: PeerRole,
) -> (
    Arc<ClientPeer>,
    Receiver<PeerEvent>,
    ServerPeer,
    Receiver<PeerEvent>,
) {
    let (client, offer, mut client_rx) = ClientPeer::offer(&client_config)
        .await
        .expect("client offer");
    let (server, answer, mut server_rx) = ServerPeer::answer(&PeerConfig::default(), &offer, role)
        .await
        .expect("server answer");
    let applied = Instant::now();
    client.apply_answer(&answer).await.expect("apply answer");
    wait_connected(&mut client_rx, "client").await;
    wait_connected(&mut server_rx, "server").await;
    // A measured figure, not an assertion (timing is for the benches).
    eprintln!(
        "answer applied to both sides connected: {:?}",
        applied.elapsed()
    );
    (Arc::new(client), client_rx, server, server_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_checks_six_seconds_apart_keep_a_silent_client_connected() {
    // A receive-only client of a server that sends nothing: the only datagrams the server
    // hears are the client's consent checks, 6 s apart (Firefox/aiortc pace, and slower).
    let (client, _client_rx, server, mut server_rx) = connect(
        ClientConfig {
            receive_only: true,
            consent_interval: Some(Duration::from_secs(6)),
            ..Default::default()
        },
        PeerRole::Monitor,
    )
    .await;
    let start = Instant::now();
    let events = state_events(&mut server_rx, start, Duration::from_secs(25), true).await;
    assert!(
        events.is_empty(),
        "server reported {events:?} for a client whose checks come every 6 s"
    );
    server.close().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_cut_for_twelve_seconds_is_quiet_then_restored_without_closing() {
    let (client, _client_rx, server, mut server_rx) =
        connect(ClientConfig::default(), PeerRole::Participant).await;
    let audio = stream_audio(Arc::clone(&client));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut = Instant::now();
    client.cut_path(true);
    let during = state_events(&mut server_rx, cut, Duration::from_secs(12), true).await;
    client.cut_path(false);
    let after = state_events(&mut server_rx, cut, Duration::from_secs(15), true).await;
    assert_eq!(during.len(), 1, "events while cut: {during:?}");
    let (quiet_at, name) = during[0];
    assert_eq!(name, "disconnected");
    assert!(
        (Duration::from_millis(9500)..Duration::from_millis(11500)).contains(&quiet_at),
        "quiet reported {quiet_at:?} after the cut (rule: 10 s)"
    );
    assert_eq!(
        after.iter().map(|e| e.1).collect::<Vec<_>>(),
        vec!["restored"],
        "events after the path came back: {after:?}"
    );
    // The connection carried on: audio flows again.
    let got_audio = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match server_rx.recv().await {
                Some(PeerEvent::Audio(_)) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    audio.abort();
    assert_eq!(got_audio, Ok(true), "no audio after the path came back");
    server.close().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_everything_fails_at_thirty_five_seconds() {
    let (client, _client_rx, server, mut server_rx) =
        connect(ClientConfig::default(), PeerRole::Participant).await;
    let audio = stream_audio(Arc::clone(&client));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut = Instant::now();
    client.cut_path(true);
    let events = state_events(&mut server_rx, cut, Duration::from_secs(40), true).await;
    audio.abort();
    let names: Vec<&str> = events.iter().map(|e| e.1).collect();
    assert_eq!(names, vec!["disconnected", "failed"], "events: {events:?}");
    assert!(
        (Duration::from_millis(9500)..Duration::from_millis(11500)).contains(&events[0].0),
        "quiet reported {:?} after the cut (rule: 10 s)",
        events[0].0
    );
    assert!(
        (Duration::from_millis(34500)..Duration::from_millis(36500)).contains(&events[1].0),
        "failure reported {:?} after the cut (rule: 35 s)",
        events[1].0
    );
    server.close().await;
    client.close().await;
}

/// The first `a=<key>:` value of an SDP.
fn sdp_attr<'a>(sdp: &'a str, key: &str) -> &'a str {
    let prefix = format!("a={key}:");
    sdp.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no a={key} in SDP:\n{sdp}"))
}

/// A connectivity check as a full controlling agent sends it.
fn binding_request(username: &str, password: &str, nominate: bool) -> Message {
    let provider = rtc::crypto::default_provider().expect("crypto provider");
    let mut setters: Vec<Box<dyn Setter + '_>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(ATTR_USERNAME, username.to_owned())),
        Box::new(AttrControlling(0x0123_4567_89ab_cdef)),
        Box::new(PriorityAttr(0x6e00_1eff)),
    ];
    if nominate {
        setters.push(Box::new(UseCandidateAttr::new()));
    }
    let integrity = MessageIntegrity::new_short_term_integrity_with_provider(
        password.to_owned(),
        provider.crypto(),
    );
    setters.push(Box::new(integrity));
    setters.push(Box::new(FINGERPRINT));
    let mut msg = Message::new();
    msg.build(&setters).expect("build STUN request");
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_server_answers_a_nomination_sent_right_after_the_first_check_and_sends_no_checks() {
    // A real offer (its credentials are what the server checks against); its own client is
    // never given the answer, a raw UDP socket plays the full agent instead.
    let (_client, offer, _client_rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("client offer");
    let (server, answer, mut server_rx) =
        ServerPeer::answer(&PeerConfig::default(), &offer, PeerRole::Participant)
            .await
            .expect("server answer");
    assert!(
        answer.contains("a=ice-lite"),
        "answer is not ICE-lite:\n{answer}"
    );
    let server_addr: SocketAddr = {
        let cand = sdp_attr(&answer, "candidate");
        let f: Vec<&str> = cand.split(' ').collect();
        format!("{}:{}", f[4], f[5])
            .parse()
            .expect("candidate address")
    };
    let username = format!(
        "{}:{}",
        sdp_attr(&answer, "ice-ufrag"),
        sdp_attr(&offer, "ice-ufrag")
    );
    let password = sdp_attr(&answer, "ice-pwd");

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let first = binding_request(&username, password, false);
    let nominate = binding_request(&username, password, true);
    sock.send_to(&first.raw, server_addr).await.expect("send");
    tokio::time::sleep(Duration::from_millis(1)).await;
    sock.send_to(&nominate.raw, server_addr)
        .await
        .expect("send");

    // Both are answered, and nothing the server sends is a check of its own; once the pair
    // is nominated, DTLS starts on it (the server is the DTLS client: a=setup:active).
    let mut answered = Vec::new();
    let mut requests_from_server = 0;
    let mut dtls = 0;
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok((n, _))) = tokio::time::timeout(left, sock.recv_from(&mut buf)).await else {
            break;
        };
        let data = &buf[..n];
        match data.first() {
            Some(0..=3) => {
                let mut m = Message::new();
                m.raw = data.to_vec();
                m.decode().expect("STUN from the server decodes");
                assert_eq!(m.typ.method, METHOD_BINDING);
                if m.typ.class == CLASS_REQUEST {
                    requests_from_server += 1;
                } else if m.typ.class == CLASS_SUCCESS_RESPONSE {
                    answered.push(m.transaction_id);
                }
            }
            Some(20..=63) => dtls += 1,
            _ => {}
        }
    }
    assert!(
        answered.contains(&first.transaction_id),
        "first check unanswered"
    );
    assert!(
        answered.contains(&nominate.transaction_id),
        "nominating check sent 1 ms after the first was not answered"
    );
    assert_eq!(requests_from_server, 0, "an ICE-lite server sent checks");
    if sdp_attr(&answer, "setup") == "active" {
        assert!(dtls > 0, "no DTLS on the nominated pair");
    }
    // The nomination made the server's ICE connected; DTLS cannot finish with a raw socket,
    // so no `Connected` event, but nothing failed either.
    while let Ok(ev) = server_rx.try_recv() {
        assert!(
            !matches!(ev, PeerEvent::Failed | PeerEvent::Closed),
            "server peer {ev:?}"
        );
    }
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_after_a_cut_path_carries_on_the_same_connection() {
    let (client, mut client_rx, server, mut server_rx) =
        connect(ClientConfig::default(), PeerRole::Participant).await;
    let audio = stream_audio(Arc::clone(&client));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The path goes for 3 s (the client's network changed); then the client restarts ICE as
    // a WHIP client does, with new credentials, and the server answers with its own.
    client.cut_path(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    client.cut_path(false);
    let ours = client.restart_ice().await.expect("client restart offer");
    let theirs = server
        .restart_ice(&ours.ufrag, &ours.pwd)
        .await
        .expect("server restart")
        .expect("new credentials are a restart");
    assert!(
        !theirs.candidates.is_empty(),
        "the server's restart answer names its candidates"
    );
    client
        .finish_ice_restart(&theirs)
        .await
        .expect("client applies the restart answer");
    // Media flows again both ways on the same connection, with no failure reported.
    let start = Instant::now();
    let mut heard_server = 0;
    while heard_server < 25 && start.elapsed() < Duration::from_secs(5) {
        match tokio::time::timeout(Duration::from_millis(500), server_rx.recv()).await {
            Ok(Some(PeerEvent::Audio(_))) => heard_server += 1,
            Ok(Some(PeerEvent::Failed | PeerEvent::Closed)) | Ok(None) => {
                panic!("the server peer failed during the restart")
            }
            _ => {}
        }
    }
    assert!(
        heard_server >= 25,
        "the server got {heard_server} packets after the restart"
    );
    audio.abort();
    // The server's credentials changed, and bad credentials are refused without harm.
    assert!(server.restart_ice("ab", "short").await.is_err());
    // The current credentials again are no restart.
    assert_eq!(
        server.restart_ice(&ours.ufrag, &ours.pwd).await.ok(),
        Some(None)
    );
    while let Ok(ev) = client_rx.try_recv() {
        assert!(
            !matches!(ev, PeerEvent::Failed | PeerEvent::Closed),
            "client {ev:?}"
        );
    }
    server.close().await;
    client.close().await;
}
