//! Encryption at rest (issue 16, part 3) against a real server with real WebRTC participants
//! (webrtc-rs, streaming the speech fixture), on one data directory through restarts:
//!
//! - after a real interview no file in the session's folder holds `RIFF`/`WAVE` or any 4 KiB
//!   run of what the download returns; the download is a WAV whose participant track follows
//!   the speech sent; a range is the same bytes with 206 and the plaintext's Content-Range;
//!   the audio ZIP holds the downloads byte for byte;
//! - SIGKILL while a second participant streams: on disk the track decrypts (unfinished) and
//!   lacks at most the last second; after a restart and an admin end it downloads whole;
//! - `earshot keys rotate` rewrites only headers, every recording downloads byte-identical,
//!   and still does after `earshot keys remove` of the old key;
//! - a wrong master key is `500 recording_unreadable`, never audio.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::kill_while_streaming;
use support::{Server, short_interview};

use support::RECORDING_FILES as FILES;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("EARSHOT_ENCRYPTION_ENABLED", "true"),
        ("EARSHOT_INTERVIEWER_SILENCE_MS", "800"),
    ]
}

/// `earshot keys ...` on the data directory; returns (success, stdout + stderr).
fn keys(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("EARSHOT_CONFIG")
        .output()
        .expect("run earshot keys");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Whether any `RUN`-byte stretch of `plain` (not a constant one, such as silence) is in
/// `disk`. Any such stretch holds a 16-byte piece of `plain` starting at a multiple of
/// `RUN / 2`, so those pieces are looked up in every 16-byte window of `disk`, and a hit is
/// checked in full.
fn shares_a_run(plain: &[u8], disk: &[u8]) -> bool {
    const RUN: usize = 4096;
    const GRAM: usize = 16;
    let grams: HashSet<&[u8]> = (0..plain.len().saturating_sub(GRAM))
        .step_by(RUN / 2)
        .map(|at| &plain[at..at + GRAM])
        .filter(|g| g.iter().any(|b| *b != g[0]))
        .collect();
    for (d, window) in disk.windows(GRAM).enumerate() {
        if !grams.contains(window) {
            continue;
        }
        // A 16-byte match: does a 4 KiB run around it match?
        for p in (0..plain.len().saturating_sub(GRAM)).step_by(RUN / 2) {
            if &plain[p..p + GRAM] != window {
                continue;
            }
            for back in 0..RUN.min(p + 1).min(d + 1) {
                let (ps, ds) = (p - back, d - back);
                if ps + RUN <= plain.len()
                    && ds + RUN <= disk.len()
                    && plain[ps..ps + RUN] == disk[ds..ds + RUN]
                {
                    return true;
                }
            }
        }
    }
    false
}

async fn download_all(server: &Server, id: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in FILES {
        out.push(server.download(id, f).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recordings_are_encrypted_at_rest_survive_a_kill_and_a_key_rotation() {
    let vars = env();
    let work = tempfile::tempdir().expect("work dir");
    let server = Server::start(&vars).await;
    let data = server.data_path().to_path_buf();
    let key_file = std::fs::read_to_string(data.join("master_keys")).expect("key file made");
    assert!(key_file.contains("current k1"), "{key_file}");

    // 1. A real interview, recorded sealed.
    let script = short_interview::create_script(&server, "How was your week?").await;
    let p = short_interview::run(&server, &script, 6).await;
    let id = p.session_id.clone();
    let folder = data.join("recordings").join(&id);
    let downloads = download_all(&server, &id).await;
    for (name, plain) in FILES.iter().zip(&downloads) {
        let disk = std::fs::read(folder.join(name)).expect("on disk");
        assert!(disk.starts_with(b"EARSHOTS"), "{name} is sealed");
        for magic in [b"RIFF", b"WAVE"] {
            assert!(
                !disk.windows(4).any(|w| w == magic),
                "{name}: {magic:?} on disk"
            );
        }
        assert!(plain.len() > 10_000, "{name}: {} bytes", plain.len());
        // The download's bytes (PCM, MP3 frames) are nowhere on disk in the clear.
        for entry in std::fs::read_dir(&folder).expect("folder") {
            let path = entry.expect("entry").path();
            let other = std::fs::read(&path).expect("read");
            assert!(
                !shares_a_run(plain, &other),
                "{}: holds 4 KiB of {name} in the clear",
                path.display()
            );
        }
    }
    assert!(downloads[0].starts_with(b"RIFF") && downloads[3].len() > 1000);
    // The waveform peaks are sealed too, and served as their JSON.
    let peaks_disk = std::fs::read(folder.join("participant.peaks.json")).expect("peaks");
    assert!(peaks_disk.starts_with(b"EARSHOTS"));
    let peaks: serde_json::Value = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{id}/peaks/participant"))),
        )
        .send()
        .await
        .expect("peaks")
        .json()
        .await
        .expect("peaks json");
    assert!(
        peaks["peaks"].as_array().is_some_and(|p| p.len() > 100),
        "{peaks}"
    );
    // The session lists each recording with the size its download has.
    let listed = server.session(&id).await;
    for (name, plain) in FILES.iter().zip(&downloads) {
        let row = listed["recordings"]
            .as_array()
            .and_then(|r| {
                r.iter().find(|r| {
                    format!(
                        "{}.{}",
                        r["track"].as_str().unwrap_or(""),
                        r["format"].as_str().unwrap_or("")
                    ) == *name
                })
            })
            .unwrap_or_else(|| panic!("{name} listed: {listed:#}"));
        assert_eq!(row["bytes"], plain.len() as u64, "{name}");
    }
    let on_disk: u64 = FILES
        .iter()
        .map(|f| std::fs::metadata(folder.join(f)).expect("size").len())
        .sum();
    let plain: u64 = downloads.iter().map(|d| d.len() as u64).sum();
    eprintln!(
        "six recordings: {on_disk} bytes on disk for {plain} bytes of WAV/MP3 (+{} bytes)",
        on_disk as i64 - plain as i64
    );
    let (r, ms) = support::speech_r(&downloads[0], work.path());
    eprintln!("participant.wav: {ms:.0} ms, speech r={r:.3}");
    assert!(
        r > 0.8,
        "the participant track does not follow the speech (r={r:.3})"
    );
    // A range: 206, the plaintext's Content-Range and length, the same bytes.
    server
        .check_range(&id, "participant.wav", &downloads[0], 1000, 50_999)
        .await;
    // The audio ZIP holds the downloads byte for byte.
    let zip = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{id}/audio.zip"))),
        )
        .send()
        .await
        .expect("zip");
    assert_eq!(zip.status(), 200);
    let zip_path = work.path().join("audio.zip");
    std::fs::write(&zip_path, zip.bytes().await.expect("zip body")).expect("write");
    for (name, plain) in FILES.iter().zip(&downloads).take(3) {
        let entry = Command::new("unzip")
            .arg("-p")
            .arg(&zip_path)
            .arg(name)
            .output()
            .expect("unzip");
        assert!(
            entry.stdout == *plain,
            "{name} in the ZIP differs from the download"
        );
    }

    // 2. SIGKILL while a second participant streams.
    let killed = kill_while_streaming(server, Duration::from_millis(6_500)).await;
    let (killed_id, dir) = (killed.session_id, killed.data_dir);
    let ring = earshot_sealed::KeyRing::parse(
        &std::fs::read_to_string(dir.path().join("master_keys")).expect("keys"),
    )
    .expect("ring");
    let track = dir
        .path()
        .join("recordings")
        .join(&killed_id)
        .join("participant.wav");
    let reader =
        earshot_sealed::SealedReader::open(std::fs::File::open(&track).expect("open"), &ring)
            .expect("the killed track opens");
    assert!(!reader.is_finished());
    let kept_ms = reader.body_len() as f64 / 96.0;
    let streamed_ms = killed.streamed_ms;
    eprintln!("killed: {kept_ms:.0} ms on disk of {streamed_ms:.0} ms streamed");
    // At most the last second (one sealed chunk per second of audio) and the ~80 ms still in
    // flight when the process died.
    assert!(
        streamed_ms - kept_ms <= 1_080.0,
        "lost {:.0} ms at the kill",
        streamed_ms - kept_ms
    );
    let server = Server::start_in(dir, &vars).await;
    server.end_session(&killed_id).await;
    let done = server
        .wait_session(&killed_id, Duration::from_secs(60), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        done["recordings"].as_array().map(Vec::len),
        Some(6),
        "{done:#}"
    );
    let after_kill = download_all(&server, &killed_id).await;
    let (r, ms) = support::speech_r(&after_kill[0], work.path());
    eprintln!("after the restart: participant.wav {ms:.0} ms, speech r={r:.3}");
    assert!(
        ms + 1.0 >= kept_ms,
        "{ms:.0} ms downloaded, {kept_ms:.0} ms were on disk"
    );
    assert!(r > 0.8, "r={r:.3}");

    // 3. Rotation: headers rewritten, every recording byte-identical, then the old key gone.
    let data = server.data_path().to_path_buf();
    let dir = server.kill_keep_data();
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(data.join("recordings").join(&id).join(f)).expect("disk"))
        .collect();
    let (ok, said) = keys(dir.path(), &["rotate"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("key k2 added") && said.contains("rewrapped"),
        "{said}"
    );
    for (f, old) in FILES.iter().zip(&before) {
        let new = std::fs::read(dir.path().join("recordings").join(&id).join(f)).expect("disk");
        assert_eq!(new.len(), old.len(), "{f}");
        assert_eq!(
            new[earshot_sealed::HEADER_LEN..],
            old[earshot_sealed::HEADER_LEN..],
            "{f}: audio rewritten"
        );
        assert_ne!(
            new[..earshot_sealed::HEADER_LEN],
            old[..earshot_sealed::HEADER_LEN],
            "{f}: header kept"
        );
    }
    let (ok, said) = keys(dir.path(), &["remove", "k2"]);
    assert!(!ok && said.contains("current"), "{said}");
    let (ok, said) = keys(dir.path(), &["remove", "k1"]);
    assert!(ok, "{said}");
    let keys_now = std::fs::read_to_string(dir.path().join("master_keys")).expect("keys");
    assert!(
        keys_now.contains("current k2") && !keys_now.contains("key k1 "),
        "{keys_now}"
    );
    let server = Server::start_in(dir, &vars).await;
    assert!(
        download_all(&server, &id).await == downloads,
        "byte-identical after rotation"
    );
    assert!(download_all(&server, &killed_id).await == after_kill);

    // 4. A wrong master key (another key under the same id): a clear error, never audio.
    let dir = server.kill_keep_data();
    let wrong = earshot_sealed::KeyRing::generate("k2").expect("ring");
    std::fs::write(dir.path().join("master_keys"), wrong.to_text()).expect("write");
    let server = Server::start_in(dir, &vars).await;
    let r = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{id}/recordings/participant.wav"))),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "recording_unreadable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("k2") && message.contains("does not open"),
        "{message}"
    );
}
