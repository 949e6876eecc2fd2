//! Signal levels of 16-bit PCM: RMS in dBFS, peak, and clipped-sample count.
//!
//! Owns the level conventions used across Earshot: 0 dBFS is a full-scale square wave (RMS
//! 32768), so a full-scale sine reads about -3 dBFS; digital silence reads [`FLOOR_DBFS`].

/// Level reported for silence or an empty slice, instead of minus infinity.
pub const FLOOR_DBFS: f32 = -120.0;

/// A sample at or beyond this magnitude counts as clipped.
pub const CLIP_THRESHOLD: u16 = 32_767;

/// RMS level in dBFS, at least [`FLOOR_DBFS`].
pub fn rms_dbfs(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return FLOOR_DBFS;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / pcm.len() as f64).sqrt() / 32768.0;
    to_dbfs(rms)
}

/// Largest absolute sample value (0 ..= 32768).
pub fn peak(pcm: &[i16]) -> u16 {
    pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
}

/// Peak level in dBFS, at least [`FLOOR_DBFS`].
pub fn peak_dbfs(pcm: &[i16]) -> f32 {
    to_dbfs(f64::from(peak(pcm)) / 32768.0)
}

/// Number of samples at full scale (|s| >= 32767), a sign of clipping upstream.
pub fn clipped_count(pcm: &[i16]) -> usize {
    pcm.iter()
        .filter(|s| s.unsigned_abs() >= CLIP_THRESHOLD)
        .count()
}

/// All three measures in one pass-friendly struct.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub rms_dbfs: f32,
    pub peak: u16,
    pub clipped: usize,
}

/// Measure one frame.
pub fn measure(pcm: &[i16]) -> Levels {
    Levels {
        rms_dbfs: rms_dbfs(pcm),
        peak: peak(pcm),
        clipped: clipped_count(pcm),
    }
}

fn to_dbfs(ratio: f64) -> f32 {
    if ratio <= 0.0 {
        return FLOOR_DBFS;
    }
    ((20.0 * ratio.log10()) as f32).max(FLOOR_DBFS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn silence_and_empty_are_floor() {
        assert_eq!(rms_dbfs(&[]), FLOOR_DBFS);
        assert_eq!(rms_dbfs(&[0; 960]), FLOOR_DBFS);
        assert_eq!(peak(&[]), 0);
        assert_eq!(peak_dbfs(&[0; 10]), FLOOR_DBFS);
    }

    #[test]
    fn sine_levels() {
        let full = sine(32767.0, 960);
        assert!((rms_dbfs(&full) + 3.01).abs() < 0.05, "{}", rms_dbfs(&full));
        let quiet = sine(327.67, 960); // -40 dB
        assert!(
            (rms_dbfs(&quiet) + 43.01).abs() < 0.1,
            "{}",
            rms_dbfs(&quiet)
        );
        assert!((peak_dbfs(&quiet) + 40.0).abs() < 0.1);
        assert_eq!(peak(&[-5, 3, i16::MIN]), 32768);
    }

    #[test]
    fn clipping_is_counted() {
        let pcm = [0, 32767, -32768, 32766, -32767, 100];
        assert_eq!(clipped_count(&pcm), 3);
        let m = measure(&pcm);
        assert_eq!(m.clipped, 3);
        assert_eq!(m.peak, 32768);
    }
}
