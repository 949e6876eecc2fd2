//! A crash under load (issue 10, item 8): ten participants (real WebRTC peers) stream speech at
//! once, the server is killed with SIGKILL in the middle, and a new process starts on the same
//! data. Every session must still exist, paused as `server_restart` with none of its own pauses
//! used; every participant WAV on disk must be playable and hold the speech up to at most the
//! last second before the kill; and after an admin end every session's files (both tracks, the
//! mix and the MP3s) come out complete, the WAVs holding what the killed process wrote after
//! its last header update.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use earshot_media::codec::OpusSettings;
use support::participant::{Participant, encode};
use support::{ADMIN_TOKEN, Server, audio, fixture};

const SESSIONS: usize = 10;
/// How long the participants stream before the kill: between two of the recorder's header
/// updates (one per second of audio), so that the header is most of a second old and the
/// samples after it are on disk only.
const BEFORE_KILL: Duration = Duration::from_millis(8_700);
/// What the acceptance allows to be lost at a kill: the last second (the recorder rewrites
/// the WAV header at least once per second of audio).
const MAY_LOSE_MS: f64 = 1_000.0;
/// Audio still on its way when the process dies (the client's send pacing, the loopback hop,
/// the server's jitter buffer wait and its 20 ms tick): never reached the recorder, so not
/// the recorder's loss.
const IN_FLIGHT_MS: f64 = 80.0;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("EARSHOT_LIMITS_WHIP_OFFERS_PER_ADDRESS_PER_MINUTE", "1000"),
        ("EARSHOT_LIMITS_MAX_SESSIONS", "100"),
        // The WAV files a killed server leaves are read from disk as they are: plain files
        // (a sealed recording's crash case is `tests/encryption.rs`).
        ("EARSHOT_ENCRYPTION_ENABLED", "false"),
    ]
}

/// Looped participant speech as a browser sends it, `seconds` long.
fn speech_packets(seconds: usize) -> (Vec<f32>, Vec<bytes::Bytes>) {
    let (rate, speech) = audio::read_wav(&fixture("participant_speech.wav"));
    assert_eq!(rate, 48_000);
    let pcm: Vec<i16> = speech
        .iter()
        .cycle()
        .take(seconds * 48_000)
        .map(|s| (s * 32767.0) as i16)
        .collect();
    let packets = encode(
        &pcm,
        OpusSettings {
            bitrate_bps: 32_000,
            complexity: 9,
            fec: true,
            dtx: false,
            expected_loss_pct: 0,
            // A browser codes the full band.
            wideband: false,
        },
    );
    (speech, packets)
}

/// The WAV as a player sees it: (sample rate, samples), the data length taken from the
/// header; and whether the header counts no more than the file holds.
fn playable(path: &Path) -> (u32, Vec<f32>) {
    playable_with_tail(path).0
}

/// [`playable`], and the bytes on disk after the data the header counts (audio written after
/// the last header update).
fn playable_with_tail(path: &Path) -> ((u32, Vec<f32>), u64) {
    let reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} does not open as WAV: {e}", path.display()));
    let spec = reader.spec();
    let declared = u64::from(reader.len()) * u64::from(spec.bits_per_sample / 8);
    let size = std::fs::metadata(path).expect("size").len();
    assert!(
        declared + 44 <= size,
        "{}: header counts {declared} data bytes, the file has {size}",
        path.display()
    );
    (audio::read_wav(path), size - 44 - declared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_streaming_sessions_survive_a_sigkill_of_the_server() {
    let vars = env();
    let server = Server::start(&vars).await;
    let (speech, packets) = speech_packets(30);

    // Ten participants connect at once and stream.
    let joins = (0..SESSIONS).map(|_| Participant::join(&server.base, ADMIN_TOKEN, None));
    let participants = futures_util::future::join_all(joins).await;
    let mut streams = Vec::new();
    let mut ids = Vec::new();
    for mut p in participants {
        ids.push((p.session_id.clone(), p.token.clone()));
        let connected = Instant::now();
        let packets = packets.clone();
        streams.push((
            connected,
            tokio::spawn(async move {
                let streamed = p.stream(&packets).await;
                (p, streamed)
            }),
        ));
    }
    tokio::time::sleep(BEFORE_KILL).await;
    let mut before = Vec::new();
    for (id, _) in &ids {
        let s = server.session(id).await;
        assert_eq!(s["state"], "in_progress", "before the kill: {s:#}");
        before.push(s);
    }
    let log = server.log();
    let killed_at = Instant::now();
    let dir = server.kill_keep_data();

    // On disk, before any new process touched it.
    let speech_env = audio::envelope(48_000, &speech);
    let mut on_disk_ms = Vec::new();
    for ((id, _), (connected, _)) in ids.iter().zip(&streams) {
        let session_dir = dir.path().join("recordings").join(id);
        let expected_ms = killed_at.duration_since(*connected).as_secs_f64() * 1000.0;
        let ((rate, rec), tail) = playable_with_tail(&session_dir.join("participant.wav"));
        assert_eq!(rate, 48_000);
        let ms = rec.len() as f64 / 48.0;
        let tail_ms = tail as f64 / 96.0;
        let lost = expected_ms - ms;
        // The speech is there, in the order it was sent, up to the end of what was kept.
        let rec_env = audio::envelope(48_000, &rec);
        let (lag, r) = audio::best_loop_lag(&speech_env, &rec_env);
        let loud = rec_env.iter().filter(|v| **v > -40.0).count();
        eprintln!(
            "{id}: participant.wav {ms:.0} ms of {expected_ms:.0} ms streamed before the kill \
             (lost {lost:.0} ms; {tail_ms:.0} ms more on disk after the header's count), speech r={r:.3} at lag {lag}0 ms, {loud} loud 10 ms frames"
        );
        assert!(
            lost <= MAY_LOSE_MS + IN_FLIGHT_MS,
            "{id}: the participant WAV lost {lost:.0} ms at the kill; log:\n{log}"
        );
        assert!(
            r > 0.8,
            "{id}: participant.wav does not hold the speech streamed (r={r:.3})"
        );
        assert!(loud as f64 > ms / 10.0 * 0.3, "{id}: {loud} loud frames");
        let (rate, _) = playable(&session_dir.join("ai.wav"));
        assert_eq!(rate, 48_000);
        on_disk_ms.push((ms, tail_ms));
    }
    for (_, task) in streams {
        let (p, _) = task.await.expect("stream task");
        p.peer.close().await;
    }

    // A new process over the same data: every session is there, paused by the restart.
    let server = Server::start_in(dir, &vars).await;
    let healthz = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    for ((id, _), was) in ids.iter().zip(&before) {
        let s = server.session(id).await;
        assert_eq!(s["state"], "paused", "after the restart: {s:#}");
        let pauses = s["pauses"].as_array().expect("pauses");
        assert_eq!(pauses.len(), 1, "{s:#}");
        assert_eq!(pauses[0]["cause"], "server_restart", "{s:#}");
        assert!(pauses[0]["ended_at"].is_null(), "{s:#}");
        assert_eq!(
            s["pauses_remaining"], was["pauses_remaining"],
            "the restart used none of the participant's pauses: {s:#}"
        );
        assert!(s["ended_at"].is_null(), "{s:#}");
    }

    // Ended by an admin, each session's files are finalized from what the killed process left.
    for (id, _) in &ids {
        let r = server
            .admin(
                server
                    .http
                    .post(server.url(&format!("/v1/sessions/{id}/end"))),
            )
            .send()
            .await
            .expect("end");
        assert_eq!(r.status(), 200, "end {id}");
    }
    for ((id, _), (kept_ms, tail_ms)) in ids.iter().zip(&on_disk_ms) {
        let s = server
            .wait_session(id, Duration::from_secs(120), |s| {
                s["recordings"].as_array().is_some_and(|r| r.len() == 6)
            })
            .await;
        assert_eq!(s["state"], "admin_ended", "{s:#}");
        let session_dir = server.data_path().join("recordings").join(id);
        let (_, rec) = playable(&session_dir.join("participant.wav"));
        let final_ms = rec.len() as f64 / 48.0;
        eprintln!(
            "{id}: participant.wav finalized at {final_ms:.0} ms (the header said {kept_ms:.0} ms, \
             {tail_ms:.0} ms more were on disk)"
        );
        // The samples after the stale header are recovered, not dropped (whole 20 ms frames).
        assert!(
            final_ms >= kept_ms + tail_ms - 20.0,
            "{id}: finalizing kept {final_ms:.0} ms of the {kept_ms:.0} + {tail_ms:.0} ms on disk"
        );
        let (_, mix) = playable(&session_dir.join("mix.wav"));
        assert!(
            mix.len() >= rec.len(),
            "{id}: the mix is shorter than the participant track"
        );
        for track in ["participant", "ai", "mix"] {
            let mp3 = session_dir.join(format!("{track}.mp3"));
            let ms = audio::mp3_duration_ms(&mp3);
            assert!(ms > 1_000.0, "{id}: {track}.mp3 holds {ms:.0} ms");
        }
    }
}
