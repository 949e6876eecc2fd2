//! Waveform peaks of a finished recording, computed once when its WAV is finalized and
//! stored beside it (`<track>.peaks.json`), so a viewer draws the waveform from a few
//! kilobytes instead of the whole WAV: `{"duration_ms","samples_per_peak","peaks":[[min,max],
//! ...]}`, each pair the lowest and highest sample of its stretch, scaled to 16 bits. One
//! peak per 50 ms (2400 samples), or fewer for long recordings: at most [`MAX_PEAKS`].

use crate::recorder::{RecorderError, Sealing, TrackReader};
use crate::units::SAMPLE_RATE;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Most peaks one recording gets.
pub const MAX_PEAKS: u64 = 4000;
/// Samples per peak for a recording short enough (50 ms).
pub const MIN_SAMPLES_PER_PEAK: u64 = SAMPLE_RATE as u64 / 20;

/// What is stored.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Peaks {
    pub duration_ms: u64,
    pub samples_per_peak: u64,
    pub peaks: Vec<(i16, i16)>,
}

/// The peaks file of a track's WAV: `mix.wav` -> `mix.peaks.json`.
pub fn peaks_path(wav: &Path) -> PathBuf {
    let stem = wav
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    wav.with_file_name(format!("{stem}.peaks.json"))
}

/// Reads `wav` (48 kHz mono, 16 or 24 bit; plain, or sealed and opened with `sealing`'s
/// keys) and computes its peaks.
pub fn compute(wav: &Path, sealing: Option<&Sealing>) -> Result<Peaks, RecorderError> {
    let (mut reader, bits) = TrackReader::open(wav, sealing)?;
    let total = reader.remaining();
    let per = MIN_SAMPLES_PER_PEAK.max(total.div_ceil(MAX_PEAKS));
    let down = u32::from(bits.saturating_sub(16));
    let mut peaks = Vec::with_capacity(total.div_ceil(per) as usize);
    let (mut lo, mut hi, mut n) = (i32::MAX, i32::MIN, 0u64);
    let mut buf = Vec::new();
    while reader.read_chunk(0, &mut buf)? {
        for &s in &buf {
            let s = s >> down;
            lo = lo.min(s);
            hi = hi.max(s);
            n += 1;
            if n == per {
                peaks.push((clamp16(lo), clamp16(hi)));
                (lo, hi, n) = (i32::MAX, i32::MIN, 0);
            }
        }
    }
    if n > 0 {
        peaks.push((clamp16(lo), clamp16(hi)));
    }
    Ok(Peaks {
        duration_ms: total * 1000 / u64::from(SAMPLE_RATE),
        samples_per_peak: per,
        peaks,
    })
}

fn clamp16(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// Computes the peaks of `wav` and writes them beside it (under a temporary name, then
/// renamed). A failure is logged, never an error of the recording: the waveform is an aid.
pub fn store(wav: &Path, sealing: Option<&Sealing>) {
    let out = peaks_path(wav);
    let part = out.with_extension("json.part");
    let result = compute(wav, sealing).and_then(|p| {
        let json = serde_json::to_vec(&p)
            .map_err(|e| RecorderError::Unsupported(format!("encoding peaks: {e}")))?;
        crate::track_file::write_whole(&part, &json, sealing)?;
        std::fs::rename(&part, &out)?;
        Ok(())
    });
    if let Err(e) = result {
        tracing::warn!(file = %wav.display(), error = %e, "writing waveform peaks failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_of_a_known_wave() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("mix.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav, spec).unwrap();
        // 50 ms of silence, 50 ms between -1000 and 2000, then 10 samples of 300.
        for _ in 0..2400 {
            w.write_sample(0i16).unwrap();
        }
        for i in 0..2400 {
            w.write_sample(if i % 2 == 0 { -1000i16 } else { 2000 })
                .unwrap();
        }
        for _ in 0..10 {
            w.write_sample(300i16).unwrap();
        }
        w.finalize().unwrap();
        store(&wav, None);
        let stored: Peaks =
            serde_json::from_slice(&std::fs::read(dir.path().join("mix.peaks.json")).unwrap())
                .unwrap();
        assert_eq!(stored.samples_per_peak, 2400);
        assert_eq!(stored.peaks, [(0, 0), (-1000, 2000), (300, 300)]);
        assert_eq!(stored.duration_ms, 4810 * 1000 / 48_000);
    }

    #[test]
    fn long_recordings_get_at_most_max_peaks() {
        // An hour at 48 kHz: 172,800,000 samples / 4000 = 43,200 per peak.
        let per = MIN_SAMPLES_PER_PEAK.max((3600 * 48_000u64).div_ceil(MAX_PEAKS));
        assert_eq!(per, 43_200);
    }
}
