//! Recordings in an S3-compatible object store (issue 17, item 2) end to end: a real server
//! with `[storage] url = "s3://..."` against moto's S3 server (`support::moto`), real WebRTC
//! participants (webrtc-rs, streaming the speech fixture):
//!
//! - an interview completes; the bucket holds its six recordings (and their waveform peaks) as
//!   whole objects, sealed at rest, with no segment left; nothing stays in the local spool;
//!   the download API serves them (the participant track follows the fed speech and is as
//!   long as the session's row says, the MP3s as long as the WAV; a Range request is the same
//!   bytes);
//! - kill -9 of the server 20 s into an interview: the segments in the bucket hold the
//!   participant track up to at most 5 s before the kill, and read back (decrypted, through
//!   `ObjectStoreBlobs`) as the fed speech: every 10 s window correlated, no gap, its level.

mod support;

use earshot_signaling::blob_store::object::ObjectStoreBlobs;
use earshot_signaling::blob_store::{BlobKey, BlobStore};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::kill_while_streaming;
use support::moto::Moto;
use support::{Server, audio, interview, short_interview};

use support::RECORDING_FILES as FILES;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interviews_record_into_an_object_store_and_a_killed_node_leaves_its_segments() {
    let moto = Moto::start("earshot-recordings").await;
    let mut vars = moto.server_env("rec/eu");
    vars.push(("EARSHOT_INTERVIEWER_SILENCE_MS".into(), "800".into()));
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let work = tempfile::tempdir().expect("work dir");
    let server = Server::start(&env).await;

    // 1. A real interview, its files moved to the bucket at the end.
    let script = short_interview::create_script(&server, "How was your week?").await;
    let p = short_interview::run(&server, &script, 6).await;
    let id = p.session_id.clone();
    let spool = server.data_path().join("recordings").join(&id);
    let deadline = Instant::now() + Duration::from_secs(20);
    while spool.exists() {
        assert!(
            Instant::now() < deadline,
            "the spool folder {} is still there:\n{}",
            spool.display(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names = moto.names(&format!("rec/eu/{id}")).await;
    let mut want: Vec<String> = FILES
        .iter()
        .chain(&["ai.peaks.json", "mix.peaks.json", "participant.peaks.json"])
        .map(|f| format!("rec/eu/{id}/{f}"))
        .collect();
    want.sort();
    assert_eq!(names, want, "the bucket holds the final files only");
    // Sealed at rest in the bucket too (encryption is on by default).
    let stored = moto.get(&format!("rec/eu/{id}/participant.wav")).await;
    assert!(earshot_sealed::is_sealed(&stored), "the object is sealed");

    let session = server.session(&id).await;
    let wav = server.download(&id, "participant.wav").await;
    let row_ms = session["recordings"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["track"] == "participant" && r["format"] == "wav")
        })
        .and_then(|r| r["duration_ms"].as_f64())
        .expect("participant.wav row");
    let (r, ms) = support::speech_r(&wav, work.path());
    eprintln!("participant.wav from the bucket: {ms:.0} ms (row {row_ms:.0} ms), speech r={r:.3}");
    assert!(
        r > 0.8,
        "the participant track does not follow the speech (r={r:.3})"
    );
    assert!(
        (ms - row_ms).abs() <= 20.0,
        "{ms:.0} ms, the row says {row_ms:.0}"
    );
    for f in &FILES[1..] {
        let bytes = server.download(&id, f).await;
        assert!(bytes.len() > 1000, "{f}: {} bytes", bytes.len());
        if f.ends_with(".mp3") {
            let path = work.path().join(f);
            std::fs::write(&path, &bytes).expect("write");
            let mp3_ms = audio::mp3_duration_ms(&path);
            assert!(
                (mp3_ms - ms).abs() < 200.0,
                "{f}: {mp3_ms:.0} ms, the WAV {ms:.0} ms"
            );
        }
    }
    server
        .check_range(&id, "participant.wav", &wav, 1000, 50_999)
        .await;

    // 2. SIGKILL while a second participant streams: what reached the bucket.
    let killed = kill_while_streaming(server, Duration::from_millis(20_000)).await;
    let (killed_id, dir, streamed_ms) = (killed.session_id, killed.data_dir, killed.streamed_ms);
    let names = moto.names(&format!("rec/eu/{killed_id}")).await;
    assert!(
        !names.is_empty() && names.iter().all(|n| n.contains(".wav.seg/")),
        "only segments: {names:?}"
    );
    let ring = earshot_sealed::KeyRing::parse(
        &std::fs::read_to_string(dir.path().join("master_keys")).expect("keys"),
    )
    .expect("ring");
    let blobs = ObjectStoreBlobs::new(moto.client(), "rec/eu").with_keys(Some(Arc::new(ring)));
    let key = BlobKey::new(&killed_id, "participant.wav").expect("key");
    let blob = blobs.open(&key).await.expect("open").expect("segments");
    let body: Vec<u8> = blob
        .body
        .map(|c| c.expect("segment bytes"))
        .collect::<Vec<_>>()
        .await
        .concat();
    let (r, kept_ms) = support::speech_r(&body, work.path());
    eprintln!(
        "killed: {kept_ms:.0} ms in the bucket of {streamed_ms:.0} ms streamed ({} segments), speech r={r:.3}",
        names.len()
    );
    assert!(
        r > 0.8,
        "the segments do not hold the fed speech (r={r:.3})"
    );
    // Every 10 s window follows the speech, without gaps, at the level it was sent.
    let killed_path = work.path().join("killed.wav");
    std::fs::write(&killed_path, &body).expect("write");
    let (min_r, gap, level) = interview::check_participant(&killed_path, "segments");
    eprintln!("segments: worst window r={min_r:.3}, gap {gap} ms, level {level:+.1} dB");
    assert!(
        streamed_ms - kept_ms <= 5_000.0,
        "lost {:.0} ms at the kill",
        streamed_ms - kept_ms
    );
}
