//! Inputs shared by the benches: real speech, cut into 20 ms frames and Opus packets the way a
//! browser sends them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use earshot_media::codec::{FRAME_SAMPLES, OpusEncoder, OpusSettings};
use earshot_media::denoise::Denoiser;
use earshot_media::recorder::{Quality, TrackWriter};

pub const FRAME: usize = FRAME_SAMPLES;
/// Frames in one session-second.
pub const FRAMES_PER_SECOND: usize = 50;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn frames_of(pcm: &[i16]) -> Vec<[i16; FRAME]> {
    pcm.chunks_exact(FRAME)
        .map(|c| {
            let mut f = [0i16; FRAME];
            f.copy_from_slice(c);
            f
        })
        .collect()
}

/// The participant's speech (tests/fixtures/participant_speech.wav, 48 kHz mono, 7.1 s) in
/// 20 ms frames: speech with the pauses between sentences, as a participant talks.
pub fn participant_frames() -> Vec<[i16; FRAME]> {
    let pcm = earshot_media::prompt::load_prompt(repo("tests/fixtures/participant_speech.wav"))
        .expect("participant speech fixture");
    frames_of(&pcm)
}

/// The interviewer's voice (the built-in prompts, greeting and first question) in 20 ms
/// frames: what the server encodes towards the participant.
pub fn ai_frames() -> Vec<[i16; FRAME]> {
    let mut pcm = Vec::new();
    for p in ["greeting", "q1"] {
        pcm.extend(
            earshot_media::prompt::load_prompt(repo(&format!(
                "assets/interviewer/default/{p}.wav"
            )))
            .expect("prompt audio"),
        );
    }
    frames_of(&pcm)
}

/// The participant's speech as the Opus packets a browser sends (32 kbps, in-band FEC).
pub fn participant_packets() -> Vec<Bytes> {
    let mut enc = OpusEncoder::new(OpusSettings::default()).expect("encoder");
    participant_frames()
        .iter()
        .map(|f| enc.encode(f).expect("encode"))
        .collect()
}

/// RNNoise voice probability and level of each participant frame (input of voice activity).
pub fn voice_inputs() -> Vec<(f32, f32)> {
    let mut dn = Denoiser::new(true);
    participant_frames()
        .iter()
        .map(|f| {
            let prob = dn.process(f).expect("denoise").voice_prob;
            (prob, earshot_media::level::rms_dbfs(f))
        })
        .collect()
}

/// Writes `frames` (looped) as a WAV track of `seconds` seconds.
pub fn write_track(path: &Path, frames: &[[i16; FRAME]], seconds: usize) {
    let mut w = TrackWriter::create(path, Quality::Standard, None).expect("create wav");
    for i in 0..seconds * FRAMES_PER_SECOND {
        w.write_at((i * FRAME) as u64, &frames[i % frames.len()])
            .expect("write wav");
    }
    w.finalize().expect("finalize wav");
}

/// Criterion settings: short enough for a 2-core CI box, long enough for stable means.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}
