//! Background noises made here, from a seed (nothing downloaded, nothing to license): pink
//! noise, a fan (mains hum with harmonics over modulated airflow), café clatter (cutlery and
//! crockery: random damped resonances), babble (several espeak-ng voices talking at once), and
//! a café (babble + clatter + a little pink noise). All 48 kHz mono f32 with RMS 1, and a
//! mixer that puts speech and noise at a given SNR.

use std::f32::consts::PI;
use std::path::Path;
use std::process::Command;

use super::relay::Rng;

pub const RATE: f32 = 48_000.0;

fn gauss(rng: &mut Rng) -> f32 {
    // Sum of four uniforms: close enough to normal for noise, and cheap.
    ((0..4).map(|_| rng.unit()).sum::<f64>() - 2.0) as f32 * 1.732
}

/// Scales `x` to RMS 1 (in place) and returns it.
pub fn normalise(mut x: Vec<f32>) -> Vec<f32> {
    let rms = (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt();
    if rms > 0.0 {
        x.iter_mut().for_each(|s| *s /= rms);
    }
    x
}

/// Pink (1/f) noise: Paul Kellet's refined filter on white noise.
pub fn pink(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut b = [0f32; 7];
    let out = (0..n)
        .map(|_| {
            let w = gauss(&mut rng);
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.153_852;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            let y = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362;
            b[6] = w * 0.115926;
            y
        })
        .collect();
    normalise(out)
}

/// A desk fan: airflow (pink noise through a 1.2 kHz low-pass, its level wobbling at the
/// blade rate of 22 Hz) plus motor hum at 50 Hz with seven harmonics, hum 6 dB below the air.
pub fn fan(n: usize, seed: u64) -> Vec<f32> {
    let air = pink(n, seed ^ 0xFA);
    let a = (-2.0 * PI * 1200.0 / RATE).exp();
    let mut lp = 0f32;
    let mut airflow: Vec<f32> = air
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            lp = a * lp + (1.0 - a) * x;
            lp * (1.0 + 0.25 * (2.0 * PI * 22.0 * i as f32 / RATE).sin())
        })
        .collect();
    airflow = normalise(airflow);
    let mut rng = Rng::new(seed ^ 0x4D);
    let phases: Vec<f32> = (0..8).map(|_| rng.unit() as f32 * 2.0 * PI).collect();
    let hum: Vec<f32> = normalise(
        (0..n)
            .map(|i| {
                let t = i as f32 / RATE;
                (1..=8)
                    .map(|k| (2.0 * PI * 50.0 * k as f32 * t + phases[k - 1]).sin() / k as f32)
                    .sum()
            })
            .collect(),
    );
    normalise(airflow.iter().zip(&hum).map(|(a, h)| a + 0.5 * h).collect())
}

/// Cutlery and crockery: about four knocks a second at random times, each a few damped
/// resonances between 1.5 and 7 kHz (20-120 ms decay) struck by a 3 ms noise burst, with
/// levels spread over 20 dB.
pub fn clatter(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = vec![0f32; n];
    let mut t = 0usize;
    loop {
        // Exponential gaps, mean 250 ms.
        t += (-(1.0 - rng.unit()).ln() * 0.25 * RATE as f64) as usize;
        if t >= n {
            break;
        }
        let level = 10f32.powf(-(rng.unit() as f32) * 20.0 / 20.0);
        let len = (0.15 * RATE) as usize;
        for _ in 0..3 {
            let f = 1500.0 + rng.unit() as f32 * 5500.0;
            let tau = 0.02 + rng.unit() as f32 * 0.1;
            let ph = rng.unit() as f32 * 2.0 * PI;
            let amp = level * (0.3 + rng.unit() as f32);
            for (k, s) in out[t..].iter_mut().take(len).enumerate() {
                let dt = k as f32 / RATE;
                *s += amp * (-dt / tau).exp() * (2.0 * PI * f * dt + ph).sin();
            }
        }
        for s in out[t..].iter_mut().take((0.003 * RATE) as usize) {
            *s += level * gauss(&mut rng) * 0.5;
        }
    }
    normalise(out)
}

/// Texts the babble voices read (public-domain style sentences written here).
const BABBLE_TEXTS: [&str; 6] = [
    "So we drove up to the lake on Saturday, and the weather was fine until about noon, when it started raining and we had to pack everything back into the car.",
    "I told her the meeting had been moved to Thursday, but she said nobody had sent her the new invitation, so she went to the old room and waited there alone.",
    "The soup here is really good, you should try it, although last time it was a bit salty, and the bread they bring with it is always still warm from the oven.",
    "Did you see the match last night? They were two goals down at half time and then somehow they came back and won it in the very last minute of the game.",
    "My brother is moving to another city next month for his new job, and he asked if I could help him carry the boxes and the old piano down the stairs.",
    "We should book the tickets early this year, because last summer everything was sold out and we ended up taking the night train, which took forever.",
];

/// Voices, pitches and speeds of the babble talkers.
const BABBLE_VOICES: [(&str, u32, u32); 6] = [
    ("en-us", 35, 165),
    ("en-gb", 60, 150),
    ("en-us+f3", 55, 175),
    ("en-gb-scotland", 45, 160),
    ("en-us+m3", 30, 155),
    ("en-029+f2", 70, 170),
];

/// Six espeak-ng talkers at once (each looped from its own offset), made in `dir` with
/// espeak-ng and sox (`scripts/install-deps.sh --test` installs both).
pub fn babble(n: usize, seed: u64, dir: &Path) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut sum = vec![0f32; n];
    for (i, ((voice, pitch, speed), text)) in BABBLE_VOICES.iter().zip(BABBLE_TEXTS).enumerate() {
        let raw = dir.join(format!("babble{i}.wav"));
        let wav = dir.join(format!("babble{i}-48k.wav"));
        let ok = Command::new("espeak-ng")
            .args([
                "-v",
                voice,
                "-p",
                &pitch.to_string(),
                "-s",
                &speed.to_string(),
                "-w",
            ])
            .arg(&raw)
            .arg(text)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "espeak-ng failed (scripts/install-deps.sh --test installs it)"
        );
        let ok = Command::new("sox")
            .arg("-R")
            .arg(&raw)
            .args(["-r", "48000", "-c", "1", "-b", "16"])
            .arg(&wav)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sox failed");
        let (_, talker) = super::audio::read_wav(&wav);
        let talker = normalise(talker);
        let offset = (rng.unit() * talker.len() as f64) as usize;
        let gain = 0.6 + rng.unit() as f32 * 0.8;
        for (k, s) in sum.iter_mut().enumerate() {
            *s += gain * talker[(k + offset) % talker.len()];
        }
    }
    normalise(sum)
}

/// A café: babble, clatter 6 dB below it, pink noise 12 dB below it.
pub fn cafe(n: usize, seed: u64, dir: &Path) -> Vec<f32> {
    let b = babble(n, seed, dir);
    let c = clatter(n, seed ^ 0xC1A7);
    let p = pink(n, seed ^ 0x91);
    normalise(
        b.iter()
            .zip(&c)
            .zip(&p)
            .map(|((b, c), p)| b + 0.5 * c + 0.25 * p)
            .collect(),
    )
}

/// Active speech power of `speech`: the mean power of its 10 ms frames within 35 dB of the
/// loudest one (a simple stand-in for ITU-T P.56's active speech level).
pub fn active_power(speech: &[f32]) -> f32 {
    let frames: Vec<f32> = speech
        .chunks(480)
        .map(|c| c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32)
        .collect();
    let max = frames.iter().copied().fold(0.0, f32::max);
    let active: Vec<f32> = frames
        .into_iter()
        .filter(|p| *p > max * 10f32.powf(-3.5))
        .collect();
    active.iter().sum::<f32>() / active.len().max(1) as f32
}

/// The gain that puts `noise` (RMS over its whole length) `snr_db` below `speech`'s active
/// level.
pub fn noise_gain(speech: &[f32], noise: &[f32], snr_db: f32) -> f32 {
    let pn = noise.iter().map(|s| s * s).sum::<f32>() / noise.len().max(1) as f32;
    (active_power(speech) / pn / 10f32.powf(snr_db / 10.0)).sqrt()
}

/// f32 (-1..1) to i16, saturating.
pub fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}
