//! Loopback tests of the WebRTC peers: a real `ClientPeer` offers, a real `ServerPeer` answers,
//! over UDP on 127.0.0.1 (no mocks).

use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::peer::{PeerConfig, PeerError, PeerEvent, PeerRole, RtpAudioPacket, ServerPeer};
use tokio::sync::mpsc::Receiver;

const FRAME: Duration = Duration::from_millis(20);
const FRAMES: usize = 50;

/// 50 Opus frames (20 ms, 48 kHz mono) of a 440 Hz sine.
fn sine_frames() -> Vec<Bytes> {
    let mut enc = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)
        .expect("opus encoder");
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    for f in 0..FRAMES {
        let pcm: Vec<i16> = (0..960)
            .map(|i| {
                let t = (f * 960 + i) as f32 / 48000.0;
                ((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let n = enc.encode(&pcm, &mut buf).expect("encode");
        out.push(Bytes::copy_from_slice(&buf[..n]));
    }
    out
}

async fn wait_connected(rx: &mut Receiver<PeerEvent>, who: &str) {
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(PeerEvent::Connected) => return,
                Some(PeerEvent::Failed) | Some(PeerEvent::Closed) | None => {
                    panic!("{who}: connection failed or closed before Connected")
                }
                _ => {}
            },
            _ = &mut deadline => panic!("{who}: not connected within 10 s"),
        }
    }
}

/// Sends frames every 20 ms through `send`, retrying the first frame until the sender is bound.
async fn pace<F, Fut>(frames: &[Bytes], mut send: F)
where
    F: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(), PeerError>>,
{
    let start = Instant::now();
    let mut first = true;
    let mut ticker = tokio::time::interval(FRAME);
    for frame in frames {
        ticker.tick().await;
        loop {
            match send(frame.clone()).await {
                Ok(()) => break,
                Err(e) if first && start.elapsed() < Duration::from_secs(2) => {
                    eprintln!("send not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("send failed: {e}"),
            }
        }
        first = false;
    }
}

/// Collects audio packets until `want` arrived or nothing came for 1 s.
async fn collect_audio(rx: &mut Receiver<PeerEvent>, want: usize) -> Vec<RtpAudioPacket> {
    let mut got = Vec::new();
    while got.len() < want {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(PeerEvent::Audio(p))) => got.push(p),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    got
}

fn assert_in_order(packets: &[RtpAudioPacket], who: &str) {
    for w in packets.windows(2) {
        let dseq = w[1].sequence.wrapping_sub(w[0].sequence);
        let dts = w[1].timestamp.wrapping_sub(w[0].timestamp);
        assert!(
            (1..1000).contains(&dseq),
            "{who}: sequence not increasing: {} -> {}",
            w[0].sequence,
            w[1].sequence
        );
        assert!(
            (1..1 << 30).contains(&dts),
            "{who}: timestamp not increasing: {} -> {}",
            w[0].timestamp,
            w[1].timestamp
        );
    }
}

/// Decodes received payloads and returns the RMS of the decoded audio.
fn decoded_rms(packets: &[RtpAudioPacket]) -> f64 {
    let mut dec = opus::Decoder::new(48000, opus::Channels::Mono).expect("decoder");
    let mut pcm = vec![0i16; 5760];
    let (mut sum, mut n) = (0f64, 0usize);
    for p in packets {
        let k = dec.decode(&p.payload, &mut pcm, false).expect("decode");
        for s in &pcm[..k] {
            sum += f64::from(*s) * f64::from(*s);
        }
        n += k;
    }
    (sum / n.max(1) as f64).sqrt()
}

async fn wait_closed(rx: &mut Receiver<PeerEvent>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(PeerEvent::Closed)) => return true,
            Ok(None) => return false,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_audio_both_ways_over_loopback() {
    let frames = sine_frames();

    let t_start = Instant::now();
    let (client, offer, mut client_rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("client offer");
    let t_offer = Instant::now();
    let (server, answer, mut server_rx) =
        ServerPeer::answer(&PeerConfig::default(), &offer, PeerRole::Participant)
            .await
            .expect("server answer");
    let t_answer = Instant::now();
    assert!(
        answer.contains("a=ice-lite"),
        "answer is not ICE-lite:\n{answer}"
    );
    assert!(
        answer.contains("typ host"),
        "answer carries no candidate:\n{answer}"
    );
    assert!(
        answer.contains("opus/48000/2"),
        "answer has no opus:\n{answer}"
    );
    client.apply_answer(&answer).await.expect("apply answer");
    wait_connected(&mut client_rx, "client").await;
    wait_connected(&mut server_rx, "server").await;
    let t_connected = Instant::now();
    eprintln!(
        "loopback timings: client offer (build+gather) {:?}, server answer {:?}, \
         offer->connected {:?} (answer applied -> connected {:?}), total {:?}",
        t_offer - t_start,
        t_answer - t_offer,
        t_connected - t_offer,
        t_connected - t_answer,
        t_connected - t_start
    );

    // Browser -> server.
    pace(&frames, |f| client.send_opus(f, FRAME)).await;
    let got = collect_audio(&mut server_rx, FRAMES).await;
    eprintln!(
        "server received {}/{} frames (dropped {})",
        got.len(),
        FRAMES,
        server.dropped_audio_packets()
    );
    assert!(got.len() >= 45, "server received only {} frames", got.len());
    assert_in_order(&got, "server");
    let rms = decoded_rms(&got);
    assert!(rms > 1000.0, "decoded audio is too quiet (rms {rms})");

    // Server -> browser.
    pace(&frames, |f| server.send_opus(f, FRAME)).await;
    let back = collect_audio(&mut client_rx, FRAMES).await;
    eprintln!("client received {}/{} frames", back.len(), FRAMES);
    assert!(
        back.len() >= 45,
        "client received only {} frames",
        back.len()
    );
    assert_in_order(&back, "client");
    assert!(decoded_rms(&back) > 1000.0);

    // Trickle after the fact is accepted (and ignored forms are fine).
    server
        .add_remote_candidate(
            "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
            Some("0".into()),
            Some(0),
        )
        .await
        .expect("host candidate");
    server
        .add_remote_candidate("a=end-of-candidates", None, None)
        .await
        .expect("end of candidates");
    server
        .add_remote_candidate(
            "candidate:1 1 udp 2130706431 abcd.local 9 typ host",
            None,
            Some(0),
        )
        .await
        .expect("mDNS candidate skipped");
    assert!(matches!(
        server.add_remote_candidate("nonsense", None, None).await,
        Err(PeerError::InvalidCandidate(_))
    ));

    server.close().await;
    server.close().await;
    assert!(wait_closed(&mut server_rx).await, "server: no Closed event");
    client.close().await;
    assert!(wait_closed(&mut client_rx).await, "client: no Closed event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_only_receives_and_port_range_is_used() {
    let frames = sine_frames();
    let (client, offer, mut client_rx) = ClientPeer::offer(&ClientConfig {
        receive_only: true,
        ..Default::default()
    })
    .await
    .expect("client offer");
    let config = PeerConfig {
        udp_port_min: 47100,
        udp_port_max: 47140,
        ..Default::default()
    };
    let (server, answer, mut server_rx) = ServerPeer::answer(&config, &offer, PeerRole::Monitor)
        .await
        .expect("server answer");
    assert!(
        answer.contains("a=sendonly"),
        "monitor answer not sendonly:\n{answer}"
    );
    let port: u16 = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .and_then(|l| l.split(' ').nth(5))
        .and_then(|p| p.parse().ok())
        .expect("candidate port");
    assert!((47100..=47140).contains(&port), "port {port} outside range");

    client.apply_answer(&answer).await.expect("apply answer");
    wait_connected(&mut client_rx, "client").await;
    wait_connected(&mut server_rx, "server").await;
    assert!(client.send_opus(frames[0].clone(), FRAME).await.is_err());

    pace(&frames, |f| server.send_opus(f, FRAME)).await;
    let back = collect_audio(&mut client_rx, FRAMES).await;
    assert!(
        back.len() >= 45,
        "monitor received only {} frames",
        back.len()
    );
    assert_in_order(&back, "monitor");
    server.close().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_1to1_mapping_rewrites_host_candidates() {
    let (client, offer, _rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("offer");
    let config = PeerConfig {
        nat_1to1_ips: vec!["203.0.113.7".into()],
        ..Default::default()
    };
    let (server, answer, _srx) = ServerPeer::answer(&config, &offer, PeerRole::Participant)
        .await
        .expect("answer");
    let cands: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert!(!cands.is_empty());
    for c in cands {
        assert!(c.contains(" 203.0.113.7 "), "not mapped: {c}");
    }
    server.close().await;
    client.close().await;
}

const VIDEO_ONLY_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_rejected_without_panicking() {
    let config = PeerConfig::default();
    for garbage in [
        "",
        "   ",
        "hello world",
        "v=0\r\n",
        "\u{0}\u{1}\u{2}",
        "m=audio",
    ] {
        let r = ServerPeer::answer(&config, garbage, PeerRole::Participant).await;
        assert!(
            matches!(r, Err(PeerError::InvalidSdp(_))),
            "{garbage:?} -> {:?}",
            r.err()
        );
    }
    let r = ServerPeer::answer(&config, VIDEO_ONLY_OFFER, PeerRole::Participant).await;
    assert!(
        matches!(r, Err(PeerError::NoAudio)),
        "video only -> {:?}",
        r.err()
    );
    let pcmu_only = VIDEO_ONLY_OFFER
        .replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0",
        )
        .replace("a=rtpmap:96 VP8/90000", "a=rtpmap:0 PCMU/8000");
    let r = ServerPeer::answer(&config, &pcmu_only, PeerRole::Participant).await;
    assert!(
        matches!(r, Err(PeerError::NoAudio)),
        "pcmu only -> {:?}",
        r.err()
    );

    // A real offer truncated at every line and at a spread of byte offsets: an error or (when
    // only optional trailing lines are lost) an answer, never a panic.
    let (client, offer, _rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("offer");
    let mut cuts: Vec<usize> = offer.match_indices('\n').map(|(i, _)| i + 1).collect();
    cuts.extend((0..offer.len()).step_by(37));
    let (mut ok, mut invalid, mut no_audio) = (0, 0, 0);
    for cut in cuts {
        let Some(truncated) = offer.get(..cut) else {
            continue;
        };
        match ServerPeer::answer(&config, truncated, PeerRole::Participant).await {
            Ok((peer, _, _)) => {
                ok += 1;
                peer.close().await;
            }
            Err(PeerError::InvalidSdp(_)) => invalid += 1,
            Err(PeerError::NoAudio) => no_audio += 1,
            Err(e) => panic!("truncated at {cut}: unexpected {e}"),
        }
    }
    eprintln!("truncated offers: {ok} answered, {invalid} InvalidSdp, {no_audio} NoAudio");
    assert!(invalid > 0);
    client.close().await;
}

// ---------------------------------------------------------------------------------------------
// Interop with a real headless Chromium (/usr/bin/chromium, installed by the test command).
// The page offers (its fake microphone), trickles its candidates over HTTP, and reports what it
// received; the server sends a 440 Hz sine back.

const CHROMIUM_PAGE: &str = r#"<!doctype html><html><body><audio id="a" autoplay></audio><script>
const post = (path, body) => fetch(path, {method: 'POST', body});
(async () => {
  try {
    const pc = new RTCPeerConnection();
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    stream.getTracks().forEach(t => pc.addTrack(t, stream));
    pc.ontrack = e => { document.getElementById('a').srcObject = e.streams[0] || new MediaStream([e.track]); };
    let t0 = 0, connectedMs = -1;
    const queued = [];
    let answered = false;
    pc.onicecandidate = e => {
      const c = e.candidate ? e.candidate.candidate : '';
      if (answered) post('/candidate', c); else queued.push(c);
    };
    pc.onconnectionstatechange = async () => {
      if (pc.connectionState === 'connected') {
        connectedMs = performance.now() - t0;
        setTimeout(async () => {
          const stats = await pc.getStats();
          let recv = 0, sent = 0, codec = '';
          stats.forEach(s => {
            if (s.type === 'inbound-rtp' && s.kind === 'audio') recv = s.packetsReceived;
            if (s.type === 'outbound-rtp' && s.kind === 'audio') sent = s.packetsSent;
            if (s.type === 'codec' && s.mimeType) codec = s.mimeType;
          });
          post('/result', `connected_ms=${connectedMs.toFixed(1)} recv=${recv} sent=${sent} codec=${codec}`);
        }, 3500);
      } else if (pc.connectionState === 'failed') {
        post('/result', 'failed');
      }
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    t0 = performance.now();
    const res = await post('/offer', pc.localDescription.sdp);
    if (!res.ok) { post('/result', 'answer error ' + await res.text()); return; }
    await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
    answered = true;
    for (const c of queued) post('/candidate', c);
  } catch (e) { post('/result', 'error ' + e); }
})();
</script></body></html>"#;

async fn read_http(sock: &mut tokio::net::TcpStream) -> Option<(String, String, String)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut first = head.lines().next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Some((method, path, body))
}

async fn write_http(sock: &mut tokio::net::TcpStream, status: &str, ctype: &str, body: &str) {
    use tokio::io::AsyncWriteExt;
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_interop() {
    use std::os::unix::process::CommandExt;
    use std::sync::Arc;
    use tokio::sync::{Mutex, mpsc};

    let chromium = "/usr/bin/chromium";
    assert!(
        std::path::Path::new(chromium).exists(),
        "Chromium is missing: scripts/install-deps.sh --test installs it"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let server: Arc<Mutex<Option<ServerPeer>>> = Arc::default();
    let (events_tx, mut events_rx) = mpsc::channel::<Receiver<PeerEvent>>(1);
    let (result_tx, mut result_rx) = mpsc::channel::<String>(4);
    let (cand_tx, mut cand_rx) = mpsc::unbounded_channel::<(String, Result<(), String>)>();
    let answer_time = Arc::new(Mutex::new(None::<Instant>));

    let srv = Arc::clone(&server);
    let at = Arc::clone(&answer_time);
    let http = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                break;
            };
            let (srv, events_tx, result_tx, cand_tx, at) = (
                Arc::clone(&srv),
                events_tx.clone(),
                result_tx.clone(),
                cand_tx.clone(),
                Arc::clone(&at),
            );
            tokio::spawn(async move {
                let Some((method, path, body)) = read_http(&mut sock).await else {
                    return;
                };
                match (method.as_str(), path.as_str()) {
                    ("GET", "/") => {
                        write_http(&mut sock, "200 OK", "text/html", CHROMIUM_PAGE).await
                    }
                    ("POST", "/offer") => {
                        let t = Instant::now();
                        match ServerPeer::answer(
                            &PeerConfig::default(),
                            &body,
                            PeerRole::Participant,
                        )
                        .await
                        {
                            Ok((peer, answer, rx)) => {
                                eprintln!("chromium offer:\n{body}\nanswer:\n{answer}");
                                eprintln!("server answer took {:?}", t.elapsed());
                                *at.lock().await = Some(Instant::now());
                                *srv.lock().await = Some(peer);
                                let _ = events_tx.send(rx).await;
                                write_http(&mut sock, "200 OK", "application/sdp", &answer).await;
                            }
                            Err(e) => {
                                write_http(
                                    &mut sock,
                                    "400 Bad Request",
                                    "text/plain",
                                    &e.to_string(),
                                )
                                .await
                            }
                        }
                    }
                    ("POST", "/candidate") => {
                        let r = match srv.lock().await.as_ref() {
                            Some(p) => p
                                .add_remote_candidate(&body, None, Some(0))
                                .await
                                .map_err(|e| e.to_string()),
                            None => Err("no peer".into()),
                        };
                        let _ = cand_tx.send((body, r));
                        write_http(&mut sock, "204 No Content", "text/plain", "").await;
                    }
                    ("POST", "/result") => {
                        let _ = result_tx.send(body).await;
                        write_http(&mut sock, "204 No Content", "text/plain", "").await;
                    }
                    _ => write_http(&mut sock, "404 Not Found", "text/plain", "").await,
                }
            });
        }
    });

    let profile = std::env::temp_dir().join(format!("earshot-chromium-{}", std::process::id()));
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let pgid = child.id();

    let outcome = async {
        let mut rx = tokio::time::timeout(Duration::from_secs(30), events_rx.recv())
            .await
            .map_err(|_| "no offer from chromium within 30 s".to_owned())?
            .ok_or("http task ended")?;
        wait_connected(&mut rx, "server").await;
        let connected_after_answer = answer_time.lock().await.map(|t| t.elapsed());
        eprintln!("server saw Connected {connected_after_answer:?} after answering");
        let frames = sine_frames();
        let guard = server.lock().await;
        let peer = guard.as_ref().ok_or("no peer")?;
        // 3 s of sine to the browser while counting what the browser sends.
        let mut all = Vec::new();
        for _ in 0..3 {
            pace(&frames, |f| peer.send_opus(f, FRAME)).await;
            while let Ok(ev) = rx.try_recv() {
                if let PeerEvent::Audio(p) = ev {
                    all.push(p);
                }
            }
        }
        all.extend(collect_audio(&mut rx, 10).await);
        drop(guard);
        let result = tokio::time::timeout(Duration::from_secs(10), result_rx.recv())
            .await
            .map_err(|_| "no result from the page".to_owned())?
            .ok_or("no result")?;
        Ok::<_, String>((all, result))
    }
    .await;

    let _ = std::process::Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&profile);
    http.abort();
    if let Some(p) = server.lock().await.take() {
        p.close().await;
    }

    let (from_browser, result) = outcome.expect("chromium interop");
    while let Ok((c, r)) = cand_rx.try_recv() {
        eprintln!("trickled {c:?} -> {r:?}");
        assert!(r.is_ok(), "candidate {c:?} rejected: {r:?}");
    }
    eprintln!(
        "page: {result}; server received {} packets from chromium",
        from_browser.len()
    );
    assert!(from_browser.len() > 100, "too few packets from chromium");
    assert_in_order(&from_browser, "from chromium");
    let recv: u64 = result
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("recv="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        recv >= 140,
        "chromium received only {recv} packets: {result}"
    );
}
