//! Finding the source talks in the audio a participant heard (16 kHz), for PESQ-WB (pesq.rs).
//!
//! [`align`] finds where one source clip lies in a stretch of received audio and at what gain:
//! first on 10 ms envelopes (cheap, robust to the codec's waveform changes), then to the
//! sample by normalised cross-correlation around the coarse answer. [`find_talks`] walks a
//! whole received track: at each onset of sound it tries every source and keeps the best match
//! when it correlates well enough, so talks lost, cut off by the end of the run or never sent
//! by the source set (another speaker) are left out rather than scored against the wrong
//! reference.

/// 10 ms at 16 kHz: the coarse step.
const BLOCK: usize = 160;
/// A 10 ms block louder than this (mean absolute value, about -45 dBFS) starts a talk.
const ONSET_LEVEL: f64 = 180.0;
/// A talk may begin this long before its onset is heard (a source clip can start quietly).
const SEARCH_BEFORE: usize = 16_000;
/// ... and this long after (the onset may be a stray sound just before it).
const SEARCH_AFTER: usize = 3_200;
/// A match below this normalised correlation is not the source's audio.
const MIN_CORRELATION: f64 = 0.7;
/// A talk whose last 20 ms never arrived still counts (with silence there): the decoder's delay
/// (Opus' lookahead) puts the last few ms of a session's last talk into a packet that is never
/// sent when the session ends right after it.
const MISSING_TAIL: usize = 320;
/// After an onset that matched no source, look again this much later.
const SKIP_UNMATCHED: usize = 8_000;

/// Where a source clip lies in received audio: `received[lag + i] ≈ gain * source[i]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    pub lag: usize,
    pub gain: f64,
    /// Normalised cross-correlation at `lag` (1 for a scaled copy).
    pub correlation: f64,
}

/// One source talk found in a received track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TalkMatch {
    /// Index into the sources.
    pub source: usize,
    /// First sample of the talk in the received track.
    pub start: usize,
    pub alignment: Alignment,
}

fn envelope(pcm: &[i16]) -> Vec<f64> {
    pcm.chunks_exact(BLOCK)
        .map(|b| b.iter().map(|s| f64::from(*s).abs()).sum::<f64>() / BLOCK as f64)
        .collect()
}

/// Pearson correlation of two equally long series (0 when either is flat).
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x - ma, y - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// The lag in `0..=max_lag` at which `source` best matches `received` (the whole clip must
/// fit), with the gain and normalised correlation there; `None` when it does not fit at all
/// or is silent.
pub fn align(source: &[i16], received: &[i16], max_lag: usize) -> Option<Alignment> {
    let max_lag = max_lag.min(received.len().checked_sub(source.len())?);
    let env_source = envelope(source);
    let env_received = envelope(received);
    let coarse = (0..=max_lag / BLOCK)
        .filter(|b| b + env_source.len() <= env_received.len())
        .map(|b| (b, pearson(&env_source, &env_received[b..])))
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map_or(0, |(b, _)| b * BLOCK);
    let source_energy: f64 = source.iter().map(|s| f64::from(*s).powi(2)).sum();
    if source_energy == 0.0 {
        return None;
    }
    let (lo, hi) = (
        coarse.saturating_sub(2 * BLOCK),
        (coarse + 2 * BLOCK).min(max_lag),
    );
    (lo..=hi)
        .map(|lag| {
            let window = &received[lag..lag + source.len()];
            let (mut dot, mut energy) = (0.0, 0.0);
            for (s, r) in source.iter().zip(window) {
                let r = f64::from(*r);
                dot += f64::from(*s) * r;
                energy += r * r;
            }
            let correlation = if energy == 0.0 {
                0.0
            } else {
                dot / (source_energy * energy).sqrt()
            };
            Alignment {
                lag,
                gain: dot / source_energy,
                correlation,
            }
        })
        .max_by(|x, y| x.correlation.total_cmp(&y.correlation))
}

/// The source talks heard in `received`, in order (see the module docs). The last talk may
/// reach up to [`MISSING_TAIL`] past the end of `received`.
pub fn find_talks(received: &[i16], sources: &[Vec<i16>]) -> Vec<TalkMatch> {
    let mut padded = received.to_vec();
    padded.resize(received.len() + MISSING_TAIL, 0);
    let received = &padded[..];
    let mut found = Vec::new();
    let mut cursor = 0;
    while let Some(onset) = received[cursor..]
        .chunks_exact(BLOCK)
        .position(|b| {
            b.iter().map(|s| f64::from(*s).abs()).sum::<f64>() / BLOCK as f64 > ONSET_LEVEL
        })
        .map(|b| cursor + b * BLOCK)
    {
        let from = onset.saturating_sub(SEARCH_BEFORE).max(cursor);
        let max_lag = onset - from + SEARCH_AFTER;
        let best = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| align(s, &received[from..], max_lag).map(|a| (i, a)))
            .max_by(|x, y| x.1.correlation.total_cmp(&y.1.correlation));
        match best {
            Some((source, alignment)) if alignment.correlation >= MIN_CORRELATION => {
                let start = from + alignment.lag;
                found.push(TalkMatch {
                    source,
                    start,
                    alignment,
                });
                cursor = start + sources[source].len();
            }
            _ => cursor = onset + SKIP_UNMATCHED,
        }
        if cursor >= received.len() - MISSING_TAIL {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic speech-like test signal: a gliding voiced tone in syllables of varying
    /// loudness with short pauses, different for every seed.
    fn talk(seed: u64, len: usize) -> Vec<i16> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut noise = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as f64 / f64::from(1u32 << 31)) - 0.5
        };
        let mut phase = 0.0f64;
        (0..len)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                let f0 = 110.0 + 30.0 * seed as f64 + 40.0 * (t * 2.3).sin();
                phase += 2.0 * std::f64::consts::PI * f0 / 16_000.0;
                let syllable = (t * (3.0 + seed as f64 * 0.7) * std::f64::consts::PI).sin();
                let amp = if syllable > 0.2 { syllable } else { 0.0 };
                let v = (1..=6)
                    .map(|h| (phase * f64::from(h)).sin() / f64::from(h))
                    .sum::<f64>();
                ((v * 0.3 + noise() * 0.05) * amp * 12_000.0) as i16
            })
            .collect()
    }

    fn scaled(pcm: &[i16], gain: f64) -> Vec<i16> {
        pcm.iter()
            .map(|s| (f64::from(*s) * gain).round() as i16)
            .collect()
    }

    #[test]
    fn a_known_delay_and_gain_are_found() {
        let source = talk(1, 32_000);
        for (delay, gain) in [(0usize, 1.0f64), (1_237, 0.5), (7_919, 1.6), (12_001, 0.25)] {
            let mut received = vec![0i16; delay];
            received.extend(scaled(&source, gain));
            received.extend(vec![0i16; 4_000]);
            let a = align(&source, &received, 16_000).expect("fits");
            assert_eq!(a.lag, delay, "gain {gain}");
            assert!((a.gain - gain).abs() < 0.01, "{} for {gain}", a.gain);
            assert!(a.correlation > 0.999, "{}", a.correlation);
        }
    }

    #[test]
    fn a_clip_that_does_not_fit_is_not_aligned() {
        let source = talk(1, 32_000);
        assert_eq!(align(&source, &source[..31_999], 100), None);
        assert_eq!(align(&vec![0; 3_200], &source, 100), None);
    }

    #[test]
    fn talks_are_found_in_order_with_their_source_and_place() {
        let sources: Vec<Vec<i16>> = (0..4)
            .map(|k| talk(k, 24_000 + 4_000 * k as usize))
            .collect();
        // Heard: silence, source 2 at 0.8 gain, silence, source 0 at 1.3, a stranger's talk,
        // source 3 cut off by the end of the run.
        let mut received = vec![0i16; 9_001];
        let mut expected = Vec::new();
        for (source, gain) in [(2usize, 0.8f64), (0, 1.3)] {
            expected.push((source, received.len(), gain));
            received.extend(scaled(&sources[source], gain));
            received.extend(vec![0i16; 20_000 + 333 * source]);
        }
        received.extend(talk(9, 30_000));
        received.extend(vec![0i16; 15_000]);
        received.extend(&sources[3][..20_000]);
        let found = find_talks(&received, &sources);
        // Source 1 with its last 300 samples missing (the track ends): still found.
        let mut short = vec![0i16; 5_000];
        short.extend(&sources[1][..sources[1].len() - 300]);
        let tail = find_talks(&short, &sources);
        assert_eq!(
            tail.iter().map(|m| (m.source, m.start)).collect::<Vec<_>>(),
            [(1, 5_000)]
        );
        let got: Vec<(usize, usize)> = found.iter().map(|m| (m.source, m.start)).collect();
        let want: Vec<(usize, usize)> = expected.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(got, want);
        for (m, e) in found.iter().zip(&expected) {
            assert!((m.alignment.gain - e.2).abs() < 0.01, "{m:?}");
        }
    }
}
