//! Audio analysis for assertions: energy envelopes, their correlation at the best lag, gaps,
//! and MP3 duration by decoding.

use std::path::Path;

/// Envelope frame length.
pub const FRAME_MS: usize = 10;
/// Floor of the dB envelope (digital silence).
const FLOOR_DB: f32 = -70.0;

/// Reads a WAV (any rate, 16/24-bit int or float) as mono f32 in -1..1, with its rate.
pub fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let spec = r.spec();
    let ch = usize::from(spec.channels.max(1));
    let raw: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.expect("sample")).collect(),
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.expect("sample") as f32 / scale)
                .collect()
        }
    };
    let mono = raw
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / ch as f32)
        .collect();
    (spec.sample_rate, mono)
}

/// RMS per 10 ms frame, in dB full scale, floored.
pub fn envelope(rate: u32, samples: &[f32]) -> Vec<f32> {
    let n = rate as usize * FRAME_MS / 1000;
    samples
        .chunks(n)
        .filter(|c| c.len() == n)
        .map(|c| {
            let rms = (c.iter().map(|s| s * s).sum::<f32>() / n as f32).sqrt();
            (20.0 * rms.max(1e-9).log10()).max(FLOOR_DB)
        })
        .collect()
}

pub fn pearson(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().sum::<f32>() / n as f32;
    let mb = b.iter().sum::<f32>() / n as f32;
    let (mut num, mut da, mut db) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        num += (x - ma) * (y - mb);
        da += (x - ma) * (x - ma);
        db += (y - mb) * (y - mb);
    }
    if da <= f32::EPSILON || db <= f32::EPSILON {
        return 0.0;
    }
    num / (da.sqrt() * db.sqrt())
}

/// The reference envelope repeated (as a looping fake microphone plays it) to `len` frames,
/// starting `lag` frames into it.
pub fn tiled(reference: &[f32], lag: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| reference[(i + lag) % reference.len()])
        .collect()
}

/// Finds the lag at which the looping `reference` best explains `recording` as a whole (one
/// lag for the entire track, so a shifted or gappy part lowers the score). Returns (lag, r).
pub fn best_loop_lag(reference: &[f32], recording: &[f32]) -> (usize, f32) {
    (0..reference.len())
        .map(|lag| {
            (
                lag,
                pearson(&tiled(reference, lag, recording.len()), recording),
            )
        })
        .fold((0, f32::MIN), |best, x| if x.1 > best.1 { x } else { best })
}

/// Longest run (in ms) where the reference is speech (> -40 dBFS) but the recording is near
/// silence (< -60 dBFS).
pub fn longest_gap_during_speech(expected: &[f32], recording: &[f32]) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for (e, r) in expected.iter().zip(recording) {
        if *e > -40.0 && *r < -60.0 {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest * FRAME_MS
}

/// Best match of `needle` (a prompt's envelope) inside `hay` at or after `from`: (pos, r).
pub fn find(needle: &[f32], hay: &[f32], from: usize) -> (usize, f32) {
    if hay.len() < needle.len() {
        return (0, 0.0);
    }
    (from..=hay.len() - needle.len())
        .map(|p| (p, pearson(needle, &hay[p..p + needle.len()])))
        .fold((0, f32::MIN), |best, x| if x.1 > best.1 { x } else { best })
}

/// Duration of an MP3 file in ms, by decoding every frame with symphonia.
pub fn mp3_duration_ms(path: &Path) -> f64 {
    use symphonia::core::codecs::DecoderOptions;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;
    let file = std::fs::File::open(path).expect("open mp3");
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .expect("probe mp3");
    let mut format = probed.format;
    let track = format.default_track().expect("mp3 track").clone();
    let rate = track.codec_params.sample_rate.expect("mp3 rate");
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .expect("mp3 decoder");
    let mut frames: u64 = 0;
    while let Ok(packet) = format.next_packet() {
        if let Ok(buf) = decoder.decode(&packet) {
            frames += buf.frames() as u64;
        }
    }
    frames as f64 * 1000.0 / f64::from(rate)
}
