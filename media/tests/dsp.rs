//! DSP pipeline tests on real signals: Opus round trip and FEC recovery, RNNoise denoising and
//! voice probability.

use std::f64::consts::PI;
use std::path::Path;
use std::process::Command;

use earshot_media::codec::{FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings};
use earshot_media::denoise::{Denoiser, LATENCY_SAMPLES};

const RATE: f64 = 48_000.0;

fn sine(hz: f64, amp: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * (2.0 * PI * hz * i as f64 / RATE).sin()) as i16)
        .collect()
}

/// A vowel-like harmonic signal: fundamental `f0` with 1/k harmonics up to 4 kHz.
fn voiced(f0: &dyn Fn(usize) -> f64, amp: f64, n: usize) -> Vec<i16> {
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let f = f0(i);
            phase += 2.0 * PI * f / RATE;
            let harmonics = (4000.0 / f) as usize;
            let v: f64 = (1..=harmonics)
                .map(|k| (k as f64 * phase).sin() / k as f64)
                .sum();
            (amp * 0.5 * v) as i16
        })
        .collect()
}

/// Deterministic white noise (xorshift), uniform in [-amp, amp].
fn noise(amp: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amp
        })
        .collect()
}

fn energy(x: &[i16]) -> f64 {
    x.iter().map(|&s| f64::from(s) * f64::from(s)).sum()
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

/// Normalised correlation of `a` and `b` (same length).
fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    dot / (energy(a) * energy(b)).sqrt().max(1.0)
}

/// Lag (0..max_lag) of `y` against `x` with the best correlation over `range`.
fn best_lag(x: &[i16], y: &[i16], range: std::ops::Range<usize>, max_lag: usize) -> (usize, f64) {
    (0..max_lag)
        .map(|lag| {
            (
                lag,
                correlation(&x[range.clone()], &y[range.start + lag..range.end + lag]),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// Amplitude of frequency `hz` in `x` (single-bin DFT), relative to a sine of amplitude 1.
fn tone(x: &[i16], hz: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        let ph = 2.0 * PI * hz * i as f64 / RATE;
        re += f64::from(s) * ph.cos();
        im += f64::from(s) * ph.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

fn encode_all(signal: &[i16], settings: OpusSettings) -> Vec<bytes::Bytes> {
    let mut enc = OpusEncoder::new(settings).expect("encoder");
    signal
        .chunks_exact(FRAME_SAMPLES)
        .map(|f| {
            enc.encode(f.try_into().expect("960 samples"))
                .expect("encode")
        })
        .collect()
}

#[test]
fn opus_round_trip_keeps_a_440_hz_sine() {
    let input = sine(440.0, 10_000.0, 48_000);
    let packets = encode_all(&input, OpusSettings::default());
    assert_eq!(packets.len(), 50);
    assert!(
        packets.iter().all(|p| !p.is_empty() && p.len() < 200),
        "32 kbps -> ~80 B/packet"
    );
    let mut dec = OpusDecoder::new().expect("decoder");
    let mut output = Vec::new();
    for p in &packets {
        let pcm = dec.decode(p).expect("decode");
        assert_eq!(pcm.len(), FRAME_SAMPLES);
        output.extend_from_slice(pcm);
    }
    let lookahead = OpusEncoder::new(OpusSettings::default())
        .expect("enc")
        .lookahead()
        .expect("la");
    let (lag, corr) = best_lag(&input, &output, 4800..40_000, 1500);
    assert!(corr > 0.9, "correlation {corr} at lag {lag}");
    assert!(
        lag.abs_diff(lookahead) <= 120,
        "lag {lag} vs encoder lookahead {lookahead}"
    );
    let amp = tone(&output[4800..], 440.0);
    assert!((amp / 10_000.0 - 1.0).abs() < 0.15, "amplitude {amp}");
}

#[test]
fn opus_fec_recovers_a_lost_frame_better_than_plc() {
    // Pitch jumps from 150 Hz to 260 Hz and level rises at frame 25: PLC cannot guess that,
    // in-band FEC carries it.
    let lost = 25;
    let f0 = move |i: usize| {
        if i < lost * FRAME_SAMPLES {
            150.0
        } else {
            260.0
        }
    };
    let mut input = voiced(&f0, 6000.0, 48_000);
    for s in &mut input[lost * FRAME_SAMPLES..] {
        *s = (f64::from(*s) * 1.6) as i16;
    }
    let settings = OpusSettings {
        expected_loss_pct: 20,
        ..OpusSettings::default()
    };
    let packets = encode_all(&input, settings);

    let decode_with = |conceal: &dyn Fn(&mut OpusDecoder) -> Vec<i16>| -> Vec<i16> {
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == lost {
                out.extend(conceal(&mut dec));
            } else {
                out.extend_from_slice(dec.decode(p).expect("decode"));
            }
        }
        out
    };
    let reference = decode_with(&|d| d.decode(&packets[lost]).expect("decode").to_vec());
    let fec = decode_with(&|d| d.conceal(Some(&packets[lost + 1]), FRAME_SAMPLES).to_vec());
    let plc = decode_with(&|d| d.conceal(None, FRAME_SAMPLES).to_vec());
    let frame = lost * FRAME_SAMPLES..(lost + 1) * FRAME_SAMPLES;
    let (r, f, p) = (&reference[frame.clone()], &fec[frame.clone()], &plc[frame]);

    let fec_db = db(energy(f) / energy(r));
    let fec_err = db(energy(r)
        / r.iter()
            .zip(f)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>());
    let plc_err = db(energy(r)
        / r.iter()
            .zip(p)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>());
    eprintln!("fec energy {fec_db:.1} dB, fec snr {fec_err:.1} dB, plc snr {plc_err:.1} dB");
    assert!(fec_db.abs() < 3.0, "FEC frame energy off by {fec_db:.1} dB");
    assert!(f != p, "FEC output must differ from PLC");
    assert!(
        fec_err > plc_err + 3.0,
        "FEC ({fec_err:.1} dB) not better than PLC ({plc_err:.1} dB)"
    );
    // After the loss both decoders are back in sync with the reference within a few frames.
    let later = (lost + 5) * FRAME_SAMPLES..(lost + 6) * FRAME_SAMPLES;
    assert!(correlation(&reference[later.clone()], &fec[later]) > 0.95);
}

/// Denoise `input` (multiple of 960) and return the output shifted back by the latency.
fn denoise_all(input: &[i16], enabled: bool) -> (Vec<i16>, Vec<f32>) {
    let mut d = Denoiser::new(enabled);
    let mut out = Vec::with_capacity(input.len() + FRAME_SAMPLES);
    let mut probs = Vec::new();
    for frame in input.chunks_exact(FRAME_SAMPLES) {
        let o = d.process(frame).expect("denoise");
        out.extend_from_slice(o.pcm);
        probs.push(o.voice_prob);
    }
    (out.split_off(LATENCY_SAMPLES), probs)
}

/// Speech from espeak-ng (installed by the test command) at 48 kHz.
fn espeak_speech(dir: &Path) -> Option<Vec<i16>> {
    let wav = dir.join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-w"])
        .arg(&wav)
        .arg("Hello, thank you for joining this interview. Could you tell me about your last job?")
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    earshot_media::prompt::load_prompt(&wav).ok()
}

/// SNR (dB) of `y` against the clean reference `x` over `range`.
fn snr(x: &[i16], y: &[i16], range: std::ops::Range<usize>) -> f64 {
    let sig: f64 = x[range.clone()].iter().map(|&s| f64::from(s).powi(2)).sum();
    let err: f64 = x[range.clone()]
        .iter()
        .zip(&y[range])
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    db(sig / err.max(1.0))
}

/// `clean` padded to whole frames with one second of silence before and after, plus white
/// noise at `snr_db` below the mean power of the active (speech) frames.
struct Scene {
    clean: Vec<i16>,
    noisy: Vec<i16>,
    active: Vec<bool>,
}

fn scene(speech: &[i16], snr_db: f64) -> Scene {
    let mut clean = vec![0i16; 48_000];
    clean.extend_from_slice(speech);
    clean.resize(
        (clean.len() + 48_000).div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES,
        0,
    );
    let active: Vec<bool> = clean
        .chunks_exact(FRAME_SAMPLES)
        .map(|f| energy(f) / 960.0 > 300.0f64.powi(2))
        .collect();
    let n_active = active.iter().filter(|a| **a).count().max(1) as f64;
    let speech_power = clean
        .chunks_exact(FRAME_SAMPLES)
        .zip(&active)
        .filter(|(_, a)| **a)
        .map(|(f, _)| energy(f) / 960.0)
        .sum::<f64>()
        / n_active;
    // Uniform noise in [-amp, amp] has power amp^2 / 3.
    let amp = (speech_power / 10f64.powf(snr_db / 10.0) * 3.0).sqrt();
    let n = noise(amp, clean.len(), 42);
    let noisy = clean
        .iter()
        .zip(&n)
        .map(|(&s, &v)| (f64::from(s) + v).clamp(-32768.0, 32767.0) as i16)
        .collect();
    Scene {
        clean,
        noisy,
        active,
    }
}

/// Mean voice probability over frames that are (or are not) speech, skipping 200 ms warm-up.
fn mean_prob(probs: &[f32], active: &[bool], want: bool) -> f32 {
    let sel: Vec<f32> = probs
        .iter()
        .zip(active)
        .skip(10)
        .filter(|(_, a)| **a == want)
        .map(|(p, _)| *p)
        .collect();
    sel.iter().sum::<f32>() / sel.len().max(1) as f32
}

fn check_denoising(speech: &[i16], label: &str) {
    let s = scene(speech, 10.0);
    let (den, probs) = denoise_all(&s.noisy, true);
    let body = 48_000..den.len() - 48_000;
    let before = snr(&s.clean, &s.noisy, body.clone());
    let after = snr(&s.clean, &den, body);
    // Noise floor: the leading second has no speech (skip the first 200 ms warm-up).
    let floor_before = db(energy(&s.noisy[9_600..48_000]) / 38_400.0);
    let floor_after = db(energy(&den[9_600..48_000]) / 38_400.0);
    let (voiced, silent) = (
        mean_prob(&probs, &s.active, true),
        mean_prob(&probs, &s.active, false),
    );
    eprintln!(
        "{label} @10 dB SNR: SNR {before:.1} -> {after:.1} dB, noise floor {floor_before:.1} -> \
         {floor_after:.1} dB, voice prob speech {voiced:.2} / pauses {silent:.2}"
    );
    assert!(
        after > before + 4.0,
        "{label}: SNR {before:.1} -> {after:.1} dB"
    );
    assert!(
        floor_after < floor_before - 4.0,
        "{label}: noise floor {floor_before:.1} -> {floor_after:.1}"
    );
    assert!(
        voiced > silent + 0.3,
        "{label}: voice prob speech {voiced} vs pauses {silent}"
    );

    // Quiet room (noise 60 dB below speech): clear-cut voice probability.
    let s = scene(speech, 60.0);
    let (_, probs) = denoise_all(&s.noisy, true);
    let (voiced, silent) = (
        mean_prob(&probs, &s.active, true),
        mean_prob(&probs, &s.active, false),
    );
    eprintln!("{label} quiet: voice prob speech {voiced:.2} / pauses {silent:.2}");
    assert!(
        voiced > 0.6,
        "{label}: voice probability on speech {voiced}"
    );
    assert!(
        silent < 0.15,
        "{label}: voice probability in pauses {silent}"
    );
}

#[test]
fn denoiser_improves_snr_of_espeak_speech_in_white_noise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(speech) = espeak_speech(dir.path()) else {
        panic!("espeak-ng failed or is missing: scripts/install-deps.sh --test installs it");
    };
    assert!(
        speech.len() > 48_000,
        "espeak output too short: {}",
        speech.len()
    );
    check_denoising(&speech, "espeak");
}

#[test]
fn denoiser_improves_snr_of_synthetic_vowels_in_white_noise() {
    // Three 600 ms "vowels" with gliding pitch and 300 ms pauses.
    let mut clean = Vec::new();
    for (k, base) in [120.0, 180.0, 140.0].into_iter().enumerate() {
        let glide = move |i: usize| base + 30.0 * (i as f64 / 28_800.0) + 5.0 * k as f64;
        clean.extend(voiced(&glide, 8000.0, 28_800));
        clean.extend(vec![0i16; 14_400]);
    }
    check_denoising(&clean, "synthetic");
}

#[test]
fn disabled_denoiser_keeps_timeline_and_voice_probability() {
    // Gliding pitch, so the alignment search has a single clear peak.
    let x = voiced(&|i| 100.0 + 200.0 * i as f64 / 48_000.0, 8000.0, 48_000);
    let (on, p_on) = denoise_all(&x, true);
    let (off, p_off) = denoise_all(&x, false);
    assert_eq!(on.len(), off.len());
    assert_eq!(
        &off[..],
        &x[..off.len()],
        "disabled = input delayed by exactly LATENCY_SAMPLES"
    );
    assert_eq!(p_on, p_off, "voice probability does not depend on enabled");
    // Enabled output is aligned with the input too (not shifted by another block).
    let (lag, corr) = best_lag(&x, &on, 4800..40_000, 960);
    assert!(
        lag <= 2 && corr > 0.8,
        "denoised output lag {lag} corr {corr}"
    );
}
