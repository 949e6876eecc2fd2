//! A long interview for the client matrix: a built-in-interviewer script of five long
//! questions (each four of the default prompts back to back), so that an interview with the
//! looping test speech lasts more than 90 s whatever the phase of the speech; and the checks a
//! finished interview must pass whatever the client (session history, recordings' content).
//!
//! Why it cannot finish early: the five questions hold 86 s of interviewer audio, and each of
//! the four answers in between takes at least the 300 ms of speech an answer needs plus the
//! interviewer's `silence_ms` (1 s here). Why it does not run long: the looping speech (4.7 s
//! of talk, then 2.4 s of silence) ends every answer within one loop plus `silence_ms`.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::audio;
pub use super::participant::strip_ansi;
use super::{Server, fixture};

/// The interviewer's silence before it goes on (EARSHOT_INTERVIEWER_SILENCE_MS).
pub const SILENCE_MS: &str = "1000";
/// Server settings every matrix interview runs with.
pub const SERVER_ENV: [(&str, &str); 2] = [
    ("EARSHOT_INTERVIEWER_SILENCE_MS", SILENCE_MS),
    // The mix and MP3s are made on request (not needed here): the clients share two cores.
    ("EARSHOT_RECORDING_DERIVE", "on_request"),
];
/// The interview must last at least this long (active time).
pub const MIN_INTERVIEW: Duration = Duration::from_secs(90);

/// The default prompts the long questions are made of.
const PIECES: [&str; 5] = ["greeting", "q1", "q2", "q3", "goodbye"];
/// Silence between two pieces of one question.
const PIECE_GAP_MS: usize = 250;
/// Question k is pieces k, k+1, k+2, k+3 (mod 5) of [`PIECES`].
const QUESTIONS: usize = 5;
const PIECES_PER_QUESTION: usize = 4;
/// Longest wait for the next question in an AI track (10 ms frames): an answer (at most one
/// loop of the speech, 7.1 s, plus `silence_ms`) with margin. The same piece comes again no
/// earlier than a whole question (>= 15.9 s) later.
const MAX_WAIT_FRAMES: usize = 1200;
/// How far (10 ms frames) a piece may sit from right after the one before it.
const MAX_PIECE_SHIFT: usize = 5;

fn piece_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("assets/interviewer/default/{name}.wav"))
}

/// The pieces of every question, in the order the interviewer plays them.
pub fn piece_order() -> Vec<&'static str> {
    (0..QUESTIONS)
        .flat_map(|k| (0..PIECES_PER_QUESTION).map(move |j| PIECES[(k + j) % PIECES.len()]))
        .collect()
}

/// The long script on one server.
pub struct LongScript {
    pub id: String,
}

impl LongScript {
    /// Writes the question WAVs into the server's prompts directory (`<data_dir>/prompts`, where
    /// scripts' prompt audio must come from) and creates the script naming them relatively.
    pub async fn create(server: &Server) -> LongScript {
        let dir = server.data_path().join("prompts").join("matrix");
        std::fs::create_dir_all(&dir).expect("prompt dir");
        let mut prompts = Vec::new();
        let order = piece_order();
        for (k, pieces) in order.chunks(PIECES_PER_QUESTION).enumerate() {
            let mut rate = 0;
            let mut out: Vec<i16> = Vec::new();
            for (j, name) in pieces.iter().enumerate() {
                let mut r = hound::WavReader::open(piece_path(name)).expect("prompt wav");
                let spec = r.spec();
                assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{name}.wav");
                rate = spec.sample_rate;
                if j > 0 {
                    out.extend(std::iter::repeat_n(0, rate as usize * PIECE_GAP_MS / 1000));
                }
                out.extend(r.samples::<i16>().map(|s| s.expect("sample")));
            }
            let path = dir.join(format!("question{}.wav", k + 1));
            let mut w = hound::WavWriter::create(
                &path,
                hound::WavSpec {
                    channels: 1,
                    sample_rate: rate,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                },
            )
            .expect("write question");
            for s in out {
                w.write_sample(s).expect("sample");
            }
            w.finalize().expect("finalize question");
            prompts.push(json!({
                "id": format!("question{}", k + 1),
                "text": format!("Long question {}: {}", k + 1, pieces.join(", ")),
                "audio": format!("matrix/question{}.wav", k + 1),
            }));
        }
        let r = server
            .admin(server.http.post(server.url("/v1/scripts")))
            .json(&json!({"name": "Client matrix: five long questions", "prompts": prompts}))
            .send()
            .await
            .expect("create script");
        assert_eq!(r.status(), 201, "create script");
        let v: Value = r.json().await.expect("script json");
        LongScript {
            id: v["id"].as_str().expect("script id").to_string(),
        }
    }

    /// Creates an invite for this script: (token, url).
    pub async fn invite(&self, server: &Server) -> (String, String) {
        let r = server
            .admin(server.http.post(server.url("/v1/invites")))
            .json(&json!({"script_id": self.id}))
            .send()
            .await
            .expect("create invite");
        assert_eq!(r.status(), 201, "create invite");
        let v: Value = r.json().await.expect("invite json");
        (
            v["token"].as_str().expect("token").to_string(),
            v["url"].as_str().expect("url").to_string(),
        )
    }

    /// The server decodes and Opus-encodes a script's prompts in the first WHIP request that
    /// needs them (only the built-in prompts are loaded at start). So that the clients'
    /// offer -> connected is measured as for any later participant, one throwaway session
    /// offers first and hangs up; returns how long that first WHIP request took.
    pub async fn warm_up(&self, server: &Server) -> Duration {
        let (token, _) = self.invite(server).await;
        open_and_consent(server, &token).await;
        let (peer, offer, _events) = earshot_media::client::ClientPeer::offer(&Default::default())
            .await
            .expect("offer");
        let t = Instant::now();
        let r = server
            .http
            .post(server.url(&format!("/v1/invites/{token}/whip")))
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .expect("whip");
        let took = t.elapsed();
        assert_eq!(r.status(), 201, "warm-up WHIP");
        let location = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .expect("Location")
            .to_string();
        peer.close().await;
        let d = server
            .http
            .delete(server.url(&location))
            .send()
            .await
            .expect("hang up");
        assert!(d.status().is_success(), "warm-up hang-up: {}", d.status());
        took
    }
}

/// Opens the invite page (creates the session) and consents, as the page does; returns the
/// session id.
pub async fn open_and_consent(server: &Server, token: &str) -> String {
    let page = server
        .http
        .get(server.url(&format!("/i/{token}")))
        .send()
        .await
        .expect("invite page");
    assert_eq!(page.status(), 200, "invite page");
    let c = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/consent")))
        .json(&json!({"accept": true}))
        .send()
        .await
        .expect("consent");
    assert_eq!(c.status(), 200, "consent");
    let v: Value = c.json().await.expect("consent json");
    v["session_id"].as_str().expect("session id").to_string()
}

/// The server's `peer liveness` log lines (a peer reported quiet, heard again, or failed).
pub fn liveness_lines(server: &Server) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|l| l.contains("peer liveness"))
        .map(strip_ansi)
        .collect()
}

/// What the recordings of a finished interview showed.
#[derive(Debug, Clone, Default)]
pub struct InterviewFigures {
    pub active_ms: f64,
    /// Worst 10 s window of the participant track: correlation with the fed speech.
    pub participant_min_r: f32,
    /// Longest stretch where the speech played but the participant track was silent.
    pub participant_gap_ms: usize,
    /// Speech level in the participant track minus in the fed speech, dB (worst window).
    pub participant_level_db: f32,
    /// Weakest match of a prompt piece in ai.wav.
    pub ai_min_r: f32,
}

/// Speech level (mean dB over the frames where `expected` is speech) of `rec` minus `expected`.
fn level_difference(expected: &[f32], rec: &[f32]) -> f32 {
    let frames: Vec<usize> = (0..expected.len().min(rec.len()))
        .filter(|i| expected[*i] > -40.0)
        .collect();
    if frames.is_empty() {
        return f32::NAN;
    }
    let mean = |v: &[f32]| frames.iter().map(|i| v[*i]).sum::<f32>() / frames.len() as f32;
    mean(rec) - mean(expected)
}

/// Checks that the participant track holds the looping fed speech throughout: every 10 s
/// window matches it (at its own best lag: a window-wise lag absorbs the sub-frame drift of a
/// 7.125 s loop against 10 ms frames), with no gap while it plays, at the level it was sent.
pub fn check_participant(path: &Path, what: &str) -> (f32, usize, f32) {
    let speech = fixture("participant_speech.wav");
    let (ref_rate, ref_samples) = audio::read_wav(&speech);
    let reference = audio::envelope(ref_rate, &ref_samples);
    let (rate, samples) = audio::read_wav(path);
    assert_eq!(rate, 48_000, "{what}: participant.wav rate");
    let env = audio::envelope(rate, &samples);
    // The first second: the client's encoder and the denoiser starting up.
    let skip = 100;
    assert!(
        env.len() > skip + 1000,
        "{what}: participant track too short"
    );
    let (mut min_r, mut worst_gap, mut worst_level) = (f32::MAX, 0usize, 0f32);
    let mut report = Vec::new();
    for window in env[skip..].chunks(1000).filter(|w| w.len() >= 500) {
        let (lag, r) = audio::best_loop_lag(&reference, window);
        let expected = audio::tiled(&reference, lag, window.len());
        let gap = audio::longest_gap_during_speech(&expected, window);
        let level = level_difference(&expected, window);
        report.push(format!("r={r:.3} gap={gap}ms level={level:+.1}dB"));
        min_r = min_r.min(r);
        worst_gap = worst_gap.max(gap);
        if level.abs() > worst_level.abs() || level.is_nan() {
            worst_level = level;
        }
    }
    eprintln!(
        "{what}: participant track per 10 s window: {}",
        report.join("; ")
    );
    assert!(
        min_r > 0.8,
        "{what}: a 10 s window of participant.wav does not match the fed speech: {}",
        report.join("; ")
    );
    assert!(
        worst_gap <= 100,
        "{what}: participant.wav is silent for {worst_gap} ms while the speech played: {}",
        report.join("; ")
    );
    assert!(
        worst_level.abs() <= 6.0,
        "{what}: participant speech level off by {worst_level:+.1} dB: {}",
        report.join("; ")
    );
    (min_r, worst_gap, worst_level)
}

/// Finds every piece of every question, in order, in an AI audio envelope: returns the
/// weakest match. Pieces of one question must follow each other at their own length plus the
/// gap (the audio was played without a stall).
pub fn check_ai_audio(env: &[f32], min_r: f32, what: &str) -> f32 {
    // The session ends as the last question has been played: a client's receive buffer may
    // lose the last few frames of its trailing silence, which is silence all the same.
    let heard_ms = env.len() * audio::FRAME_MS;
    let env: Vec<f32> = env
        .iter()
        .copied()
        .chain(std::iter::repeat_n(-70.0, 50))
        .collect();
    let env = &env[..];
    let mut from = 0;
    let mut weakest = f32::MAX;
    let mut prev_end: Option<usize> = None;
    for (i, name) in piece_order().into_iter().enumerate() {
        let (rate, s) = audio::read_wav(&piece_path(name));
        let piece = audio::envelope(rate, &s);
        // A question's first piece comes within one answer's time of the previous question
        // (a piece heard again in a later question must not be taken for it); the others
        // right after the piece before them.
        let (pos, r) = match prev_end {
            Some(end) if i % PIECES_PER_QUESTION != 0 => {
                let expected = end + PIECE_GAP_MS / audio::FRAME_MS;
                let lo = expected.saturating_sub(2 * MAX_PIECE_SHIFT);
                let window = &env[..env.len().min(expected + piece.len() + 2 * MAX_PIECE_SHIFT)];
                let (pos, r) = audio::find(&piece, window, lo);
                assert!(
                    r <= min_r || pos.abs_diff(expected) <= MAX_PIECE_SHIFT,
                    "{what}: piece {i} ({name}) at {} ms, expected at {} ms (played with a stall?)",
                    pos * audio::FRAME_MS,
                    expected * audio::FRAME_MS
                );
                (pos, r)
            }
            _ => {
                let window = &env[..env.len().min(from + piece.len() + MAX_WAIT_FRAMES)];
                assert!(
                    window.len() >= from + piece.len(),
                    "{what}: the audio ends at {heard_ms} ms, before piece {i} ({name}) could"
                );
                audio::find(&piece, window, from)
            }
        };
        assert!(
            r > min_r,
            "{what}: piece {i} ({name}) of the questions not found after {} ms (best r={r:.3})",
            from * audio::FRAME_MS
        );
        weakest = weakest.min(r);
        from = pos + piece.len();
        prev_end = Some(from);
    }
    weakest
}

/// The checks of a finished matrix interview: the session completed on its own after at least
/// [`MIN_INTERVIEW`] of active time, never paused, never lost its media; the recordings are as
/// long as the active time; the participant track holds the fed speech and the AI track every
/// question in order.
pub async fn check_finished(server: &Server, id: &str, what: &str) -> InterviewFigures {
    let s = server
        .wait_session(id, Duration::from_secs(10), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 2)
        })
        .await;
    assert_eq!(s["state"], "completed", "{what}: {s:#}");
    assert_eq!(s["end_reason"], "completed", "{what}: {s:#}");
    let transitions: Vec<(String, String, String)> = s["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap_or_default().to_string(),
                t["to"].as_str().unwrap_or_default().to_string(),
                t["cause"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let moves: Vec<(&str, &str)> = transitions
        .iter()
        .map(|(f, t, _)| (f.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        moves,
        [("created", "in_progress"), ("in_progress", "completed")],
        "{what}: state history {transitions:?}"
    );
    assert!(
        transitions
            .iter()
            .all(|(_, _, c)| !c.contains("media lost")),
        "{what}: {transitions:?}"
    );
    assert_eq!(
        s["pauses"].as_array().map(Vec::len),
        Some(0),
        "{what}: pauses {s:#}"
    );
    let active_ms = s["active_duration_ms"]
        .as_f64()
        .expect("active_duration_ms");
    assert!(
        active_ms >= MIN_INTERVIEW.as_millis() as f64,
        "{what}: the interview lasted {active_ms} ms of active time, less than {MIN_INTERVIEW:?}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    if let Ok(art) = std::env::var("TEST_ARTIFACTS_DIR") {
        let _ = std::fs::write(
            Path::new(&art).join(format!("{what}-server.log")),
            server.log(),
        );
    }
    let mut paths = std::collections::HashMap::new();
    for track in ["participant", "ai"] {
        let r = server
            .admin(
                server
                    .http
                    .get(server.url(&format!("/v1/sessions/{id}/recordings/{track}.wav"))),
            )
            .send()
            .await
            .expect("download");
        assert_eq!(r.status(), 200, "{what}: {track}.wav");
        let p = dir.path().join(format!("{track}.wav"));
        std::fs::write(&p, r.bytes().await.expect("body")).expect("write");
        if let Ok(art) = std::env::var("TEST_ARTIFACTS_DIR") {
            let _ = std::fs::copy(&p, Path::new(&art).join(format!("{what}-{track}.wav")));
        }
        let (rate, samples) = audio::read_wav(&p);
        let ms = samples.len() as f64 * 1000.0 / f64::from(rate);
        assert!(
            (ms - active_ms).abs() <= 1000.0,
            "{what}: {track}.wav is {ms:.0} ms, the active time {active_ms} ms"
        );
        paths.insert(track, p);
    }
    let (participant_min_r, participant_gap_ms, participant_level_db) =
        check_participant(&paths["participant"], what);
    let (rate, ai) = audio::read_wav(&paths["ai"]);
    let ai_min_r = check_ai_audio(&audio::envelope(rate, &ai), 0.9, what);
    InterviewFigures {
        active_ms,
        participant_min_r,
        participant_gap_ms,
        participant_level_db,
        ai_min_r,
    }
}
