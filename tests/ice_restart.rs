//! WHIP ICE restart (RFC 9725 §4.3) against the real server: a WebRTC participant streams
//! speech, its path is cut (every datagram it sends is dropped), then it restarts ICE with a
//! PATCH carrying new credentials and the server answers with its own. Within the disconnect
//! grace the session carries on with no pause; beyond it, the media-loss pause applies and the
//! restored audio resumes the same session.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_media::codec::OpusSettings;
use earshot_media::peer::IceRestart;
use serde_json::Value;
use support::participant::{Participant, encode};
use support::{ADMIN_TOKEN, Server, audio, fixture};

fn speech_packets() -> Vec<Bytes> {
    let (rate, pcm) = audio::read_wav(&fixture("participant_speech.wav"));
    assert_eq!(rate, 48_000);
    let pcm: Vec<i16> = pcm.iter().map(|s| (s * 32767.0) as i16).collect();
    encode(&pcm, OpusSettings::default())
}

/// Streams `packets` in a loop at 20 ms until `stop` is set.
fn talk(p: &Participant, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let peer = std::sync::Arc::clone(&p.peer);
    let packets = speech_packets();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for packet in packets.iter().cycle() {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            tick.tick().await;
            let _ = peer
                .send_opus(packet.clone(), Duration::from_millis(20))
                .await;
        }
    });
}

/// PATCH with the participant's new ICE credentials; the server's credentials back.
async fn restart_over_whip(p: &Participant) -> IceRestart {
    let ours = p.peer.restart_ice().await.expect("client restart offer");
    let mut frag = format!("a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", ours.ufrag, ours.pwd);
    for c in &ours.candidates {
        frag.push_str(&format!("a={c}\r\n"));
    }
    let url = if p.location.starts_with("http") {
        p.location.clone()
    } else {
        format!("{}{}", p.base, p.location)
    };
    let r = p
        .http
        .patch(&url)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body(frag)
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), 200, "an ICE restart is answered with 200");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/trickle-ice-sdpfrag")
    );
    let body = r.text().await.expect("body");
    let attr = |key: &str| {
        body.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {key} in {body}"))
    };
    let theirs = IceRestart {
        ufrag: attr("a=ice-ufrag:"),
        pwd: attr("a=ice-pwd:"),
        candidates: body
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("a=")
                    .filter(|c| c.starts_with("candidate:"))
            })
            .map(str::to_owned)
            .collect(),
    };
    assert!(!theirs.candidates.is_empty(), "server candidates: {body}");
    p.peer
        .finish_ice_restart(&theirs)
        .await
        .expect("apply the server's credentials");
    // The same PATCH again (same credentials, a retransmission) is no second restart.
    theirs
}

async fn session(server: &Server, id: &str) -> Value {
    server.session(id).await
}

/// Waits until the session's state is `state` (or panics after `within`).
async fn wait_state(server: &Server, id: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = session(server, id).await;
        if s["state"] == state {
            return s;
        }
        assert!(Instant::now() < deadline, "never {state}: {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Participant audio packets the server received so far (its `/metrics` counter).
async fn packets_in(server: &Server) -> u64 {
    let text = server.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix("earshot_media_participant_packets_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no participant packet counter in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_back_within_the_grace_continues_the_session_without_a_pause() {
    let server = Server::start(&[("EARSHOT_LIFECYCLE_DISCONNECT_GRACE_SECS", "10")]).await;
    let p = Participant::join(&server.base, ADMIN_TOKEN, None).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    talk(&p, stop.clone());
    wait_state(
        &server,
        &p.session_id,
        "in_progress",
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    p.peer.cut_path(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.peer.cut_path(false);
    restart_over_whip(&p).await;
    let before = packets_in(&server).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = packets_in(&server).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        after >= before + 100,
        "audio flows after the restart: {before} -> {after} packets"
    );
    let s = session(&server, &p.session_id).await;
    assert_eq!(s["state"], "in_progress", "{s:#}");
    assert_eq!(
        s["pauses"].as_array().map(Vec::len),
        Some(0),
        "no pause for a path back within the grace: {s:#}"
    );
    p.hang_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_gone_beyond_the_grace_pauses_and_the_restart_resumes_the_session() {
    let server = Server::start(&[("EARSHOT_LIFECYCLE_DISCONNECT_GRACE_SECS", "10")]).await;
    let p = Participant::join(&server.base, ADMIN_TOKEN, None).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    talk(&p, stop.clone());
    wait_state(
        &server,
        &p.session_id,
        "in_progress",
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    p.peer.cut_path(true);
    // Audio stops; after the 10 s grace the session pauses as media lost.
    let paused = wait_state(&server, &p.session_id, "paused", Duration::from_secs(20)).await;
    assert_eq!(paused["pauses"][0]["cause"], "media_lost", "{paused:#}");
    tokio::time::sleep(Duration::from_secs(3)).await; // 15 s or so without a path
    p.peer.cut_path(false);
    restart_over_whip(&p).await;
    // The audio is back on the same peer: the media-loss pause ends by itself.
    let resumed = wait_state(
        &server,
        &p.session_id,
        "in_progress",
        Duration::from_secs(10),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(resumed["pauses"].as_array().map(Vec::len), Some(1));
    p.hang_up().await;
}
