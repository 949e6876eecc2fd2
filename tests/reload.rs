//! Codec settings (F11) measured on the AI audio a real WebRTC peer receives: a configuration
//! reload on SIGHUP brings a changed Opus bitrate to the next participant without a restart (a
//! restart-only key is logged as such; an invalid file is refused and the running
//! configuration stays), and a script's own `codec` settings override the deployment's.

mod support;

use std::time::Duration;

use earshot_media::codec::OpusSettings;
use support::browser::Browser;
use support::participant::{Participant, encode};
use support::{ADMIN_TOKEN, Server, fixture, join_interview};

/// Bits per second of the AI's speech packets a participant receives in `seconds` (the larger
/// half of the packets: the silence between prompts is coded in a few bytes).
async fn ai_speech_bitrate(server: &Server, seconds: usize) -> f64 {
    ai_speech_bitrate_of(server, seconds, serde_json::json!({})).await
}

/// As [`ai_speech_bitrate`], the invite made with `invite_body`.
async fn ai_speech_bitrate_of(
    server: &Server,
    seconds: usize,
    invite_body: serde_json::Value,
) -> f64 {
    // The participant stays quiet so that the interviewer keeps talking (its greeting).
    let pcm = vec![0i16; seconds * 48_000];
    let mut p = Participant::join_invite(
        reqwest::Client::new(),
        &server.base,
        ADMIN_TOKEN,
        invite_body,
        None,
    )
    .await;
    let streamed = p.stream(&encode(&pcm, OpusSettings::default())).await;
    p.hang_up().await;
    let mut sizes: Vec<usize> = streamed.received.iter().map(|r| r.payload.len()).collect();
    assert!(sizes.len() > 100, "{} AI packets received", sizes.len());
    sizes.sort_unstable();
    let speech_half = &sizes[sizes.len() / 2..];
    let mean = speech_half.iter().sum::<usize>() as f64 / speech_half.len() as f64;
    mean * 8.0 / 0.020
}

/// Bits per second of audio a headless Chromium participant receives while the interviewer
/// greets it, from the browser's own `getStats` (`inbound-rtp` `bytesReceived` over 3 s).
async fn browser_ai_bitrate(server: &Server) -> f64 {
    let (_token, url) = server.invite().await;
    let mut b = Browser::launch(&url, Some(&fixture("participant_speech.wav"))).await;
    join_interview(&mut b, server).await;
    let bytes = r#"(async () => {
      let n = 0;
      (await window.earshot.pc.getStats()).forEach(r => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.bytesReceived;
      });
      return n;
    })()"#;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = b.eval(bytes).await.as_f64().expect("bytes");
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = b.eval(bytes).await.as_f64().expect("bytes");
    (second - first) * 8.0 / t0.elapsed().as_secs_f64()
}

fn hangup(server: &Server) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "SIGHUP");
}

async fn wait_log(server: &Server, needle: &str, after: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if let Some(pos) = log.get(after..).and_then(|l| l.find(needle)) {
            let from = after + pos;
            let end = log[from..].find('\n').map_or(log.len(), |e| from + e);
            return log[from..end].to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_opus_bitrate_to_the_next_session() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("earshot.toml");
    std::fs::write(&file, "[opus]\nbitrate = 12000\n").expect("write");
    let path = file.to_str().expect("utf-8").to_owned();
    let server = Server::start(&[("EARSHOT_CONFIG", path.as_str())]).await;

    let before = ai_speech_bitrate(&server, 6).await;
    let browser_before = browser_ai_bitrate(&server).await;
    eprintln!(
        "AI speech at [opus] bitrate = 12000: {before:.0} bit/s; Chromium's getStats: {browser_before:.0} bit/s"
    );
    assert!((6_000.0..=20_000.0).contains(&before), "{before}");
    assert!(
        (5_000.0..=20_000.0).contains(&browser_before),
        "{browser_before}"
    );

    std::fs::write(&file, "[opus]\nbitrate = 64000\n").expect("write");
    let mark = server.log().len();
    hangup(&server);
    let line = wait_log(&server, "configuration reloaded", mark).await;
    assert!(line.contains("opus.bitrate"), "{line}");

    let after = ai_speech_bitrate(&server, 6).await;
    let browser_after = browser_ai_bitrate(&server).await;
    eprintln!(
        "AI speech after the reload to 64000: {after:.0} bit/s; Chromium's getStats: {browser_after:.0} bit/s"
    );
    assert!((40_000.0..=80_000.0).contains(&after), "{after}");
    assert!(
        browser_after > 3.0 * browser_before,
        "{browser_before} -> {browser_after}"
    );

    // A key that needs a restart is named as such, and an invalid file changes nothing.
    std::fs::write(
        &file,
        "[opus]\nbitrate = 64000\n[media]\nudp_port_min = 41000\nudp_port_max = 41100\n",
    )
    .expect("write");
    let mark = server.log().len();
    hangup(&server);
    let line = wait_log(&server, "need a restart", mark).await;
    assert!(line.contains("media.udp_port_min"), "{line}");
    std::fs::write(&file, "[opus]\nbitrate = 5\n").expect("write");
    let mark = server.log().len();
    hangup(&server);
    let line = wait_log(&server, "configuration reload refused", mark).await;
    assert!(line.contains("opus.bitrate"), "{line}");
    let still = ai_speech_bitrate(&server, 6).await;
    assert!((40_000.0..=80_000.0).contains(&still), "{still}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripts_codec_settings_override_the_deployments() {
    let server = Server::start(&[]).await;
    // The built-in script's prompts, in a script of its own that asks for 12 kbit/s.
    let built_in: serde_json::Value = server
        .admin(server.http.get(server.url("/v1/scripts/scr_default")))
        .send()
        .await
        .expect("script")
        .json()
        .await
        .expect("json");
    let prompts: Vec<serde_json::Value> = built_in["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| {
            let audio = p["audio"].as_str().expect("audio");
            let name = &audio[audio.find("default/").expect("default/")..];
            serde_json::json!({"id": p["id"], "text": p["text"], "audio": name})
        })
        .collect();
    let r = server
        .admin(server.http.post(server.url("/v1/scripts")))
        .json(&serde_json::json!({"name": "low bitrate", "prompts": prompts, "codec": {"bitrate": 12000}}))
        .send()
        .await
        .expect("create script");
    let status = r.status();
    let script: serde_json::Value = r.json().await.expect("json");
    assert_eq!(status, 201, "{script}");
    assert_eq!(script["codec"]["bitrate"], 12000, "{script}");
    let id = script["id"].as_str().expect("id");

    let default = ai_speech_bitrate(&server, 6).await;
    let low = ai_speech_bitrate_of(&server, 6, serde_json::json!({"script_id": id})).await;
    eprintln!(
        "AI speech: deployment default {default:.0} bit/s, script codec 12000: {low:.0} bit/s"
    );
    assert!((40_000.0..=65_000.0).contains(&default), "{default}");
    assert!((6_000.0..=20_000.0).contains(&low), "{low}");
}
