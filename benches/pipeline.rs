//! Per-frame cost of each stage of the audio pipeline, on real speech.
//!
//! Every figure is the time for one 20 ms frame of 48 kHz mono audio (960 samples) on one
//! core. Stages that work on whole files (mix, MP3) run on a 10 s recording and are reported
//! per frame of it, so all rows add up in the same unit.
//!
//!     cargo bench --bench pipeline            # all stages
//!     cargo bench --bench pipeline -- --quick # fewer samples, for a quick look
//!     cargo bench --bench pipeline -- denoise # one stage
//!
//! Live event fan-out to N subscribers is not benched: it does not exist yet.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{FRAME, FRAMES_PER_SECOND};
use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use earshot_media::codec::{OpusEncoder, OpusSettings, ParticipantDecoder};
use earshot_media::denoise::Denoiser;
use earshot_media::jitter::{JitterBuffer, JitterOutput};
use earshot_media::recorder::{Mp3Spec, Quality, Sealing, TrackWriter, encode_mp3, mix_wavs};
use earshot_media::resample::StreamResampler;
use earshot_media::vad::{VadConfig, VoiceActivity};

/// The server's reorder wait (media::session::REORDER_WAIT).
const REORDER_WAIT: Duration = Duration::from_millis(30);
const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Seconds of audio in the file-level benches.
const FILE_SECONDS: usize = 10;
/// A WAV track is restarted after this many frames (10 minutes), so the bench never runs into
/// the recorder's length limit or fills the disk.
const WAV_RESTART_FRAMES: usize = 30_000;

/// Times `op`, which handles `units` frames per call, and reports the time per frame.
/// Criterion's iteration count is honoured in frames: `iters` frames cost
/// `ceil(iters / units)` calls.
fn per_frame(b: &mut Bencher<'_>, units: u64, mut op: impl FnMut()) {
    b.iter_custom(|iters| {
        let calls = iters.div_ceil(units).max(1);
        let start = Instant::now();
        for _ in 0..calls {
            op();
        }
        let elapsed = start.elapsed();
        elapsed.mul_f64(iters as f64 / (calls * units) as f64)
    });
}

fn jitter(c: &mut Criterion) {
    let packets = common::participant_packets();
    let mut g = c.benchmark_group("jitter");

    g.bench_function("in_order_push_poll", |b| {
        let mut jb = JitterBuffer::new(REORDER_WAIT);
        let t0 = Instant::now();
        let mut i: u64 = 0;
        b.iter(|| {
            let now = t0 + FRAME_DURATION * (i as u32);
            let p = &packets[i as usize % packets.len()];
            jb.push(i as u16, (i as u32).wrapping_mul(960), p.clone(), now);
            while let Some(out) = jb.poll(now) {
                black_box(out);
            }
            i += 1;
        });
    });

    // Per block of 50 packets (one second): one packet lost (recovered from the next one's
    // FEC) and one pair swapped. Costs per 20 ms frame.
    g.bench_function("reorder_and_2pct_loss_push_poll", |b| {
        let mut jb = JitterBuffer::new(REORDER_WAIT);
        let t0 = Instant::now();
        let mut block: u64 = 0;
        per_frame(b, FRAMES_PER_SECOND as u64, || {
            let base = block * FRAMES_PER_SECOND as u64;
            for k in 0..FRAMES_PER_SECOND as u64 {
                let seq = match k {
                    10 => continue, // lost
                    30 => base + 31,
                    31 => base + 30,
                    _ => base + k,
                };
                let now = t0 + FRAME_DURATION * ((base + k) as u32);
                let p = &packets[seq as usize % packets.len()];
                jb.push(seq as u16, (seq as u32).wrapping_mul(960), p.clone(), now);
                while let Some(out) = jb.poll(now) {
                    black_box(out);
                }
            }
            block += 1;
        });
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let packets = common::participant_packets();
    let mut g = c.benchmark_group("opus_decode");
    g.bench_function("packet", |b| {
        let mut dec = ParticipantDecoder::new().expect("decoder");
        let mut i = 0usize;
        b.iter(|| {
            let out = JitterOutput::Packet {
                timestamp: (i as u32).wrapping_mul(960),
                payload: packets[i % packets.len()].clone(),
            };
            black_box(dec.decode(out).pcm.len());
            i += 1;
        });
    });
    g.bench_function("lost_recovered_by_fec", |b| {
        let mut dec = ParticipantDecoder::new().expect("decoder");
        let mut i = 0usize;
        b.iter(|| {
            let out = JitterOutput::Lost {
                timestamp: (i as u32).wrapping_mul(960),
                samples: 960,
                fec_from: Some(packets[(i + 1) % packets.len()].clone()),
            };
            black_box(dec.decode(out).pcm.len());
            i += 1;
        });
    });
    g.bench_function("lost_concealed_plc", |b| {
        let mut dec = ParticipantDecoder::new().expect("decoder");
        // Prime the decoder with speech so PLC extrapolates a real signal.
        for (i, p) in packets.iter().take(100).enumerate() {
            dec.decode(JitterOutput::Packet {
                timestamp: (i as u32) * 960,
                payload: p.clone(),
            });
        }
        let mut i = 0u32;
        b.iter(|| {
            let out = JitterOutput::Lost {
                timestamp: i.wrapping_mul(960),
                samples: 960,
                fec_from: None,
            };
            black_box(dec.decode(out).pcm.len());
            i = i.wrapping_add(1);
        });
    });
    g.finish();
}

fn denoise_and_vad(c: &mut Criterion) {
    let frames = common::participant_frames();
    let inputs = common::voice_inputs();
    let mut g = c.benchmark_group("dsp");
    g.bench_function("denoise_rnnoise", |b| {
        let mut dn = Denoiser::new(true);
        let mut i = 0usize;
        b.iter(|| {
            let d = dn.process(&frames[i % frames.len()]).expect("denoise");
            black_box(d.voice_prob);
            i += 1;
        });
    });
    g.bench_function("voice_activity_with_level", |b| {
        let mut vad = VoiceActivity::new(VadConfig::default());
        let mut i = 0usize;
        b.iter(|| {
            let f = &frames[i % frames.len()];
            let rms = earshot_media::level::rms_dbfs(f);
            let prob = inputs[i % inputs.len()].0;
            black_box(vad.update(prob, rms, 20));
            i += 1;
        });
    });
    g.bench_function("resample_48k_to_16k", |b| {
        let mut rs = StreamResampler::new(48_000, 16_000).expect("resampler");
        let mut out = Vec::with_capacity(FRAME);
        let mut i = 0usize;
        b.iter(|| {
            out.clear();
            rs.process(&frames[i % frames.len()], &mut out)
                .expect("resample");
            black_box(out.len());
            i += 1;
        });
    });
    g.bench_function("resample_16k_to_48k", |b| {
        // A 20 ms frame at 16 kHz (what an agent sends back) up to 48 kHz.
        let mut down = StreamResampler::new(48_000, 16_000).expect("resampler");
        let mut pcm16 = Vec::new();
        for f in &frames {
            down.process(f, &mut pcm16).expect("resample");
        }
        let frames16: Vec<&[i16]> = pcm16.chunks_exact(320).collect();
        let mut rs = StreamResampler::new(16_000, 48_000).expect("resampler");
        let mut out = Vec::with_capacity(FRAME);
        let mut i = 0usize;
        b.iter(|| {
            out.clear();
            rs.process(frames16[i % frames16.len()], &mut out)
                .expect("resample");
            black_box(out.len());
            i += 1;
        });
    });
    g.finish();
}

fn opus_encode(c: &mut Criterion) {
    let frames = common::ai_frames();
    let mut g = c.benchmark_group("opus_encode");
    let default = OpusSettings::default();
    // The server's default first, then the knobs that decide the cost (docs/FEATURES.md F11).
    let variants = [
        ("ai_speech_32kbps_c5", default),
        (
            "ai_speech_32kbps_c5_no_fec",
            OpusSettings {
                fec: false,
                expected_loss_pct: 0,
                ..default
            },
        ),
        (
            "ai_speech_32kbps_c2",
            OpusSettings {
                complexity: 2,
                ..default
            },
        ),
        (
            "ai_speech_32kbps_c0",
            OpusSettings {
                complexity: 0,
                ..default
            },
        ),
    ];
    for (name, settings) in variants {
        g.bench_function(name, |b| {
            let mut enc = OpusEncoder::new(settings).expect("encoder");
            let mut i = 0usize;
            b.iter(|| {
                black_box(enc.encode(&frames[i % frames.len()]).expect("encode"));
                i += 1;
            });
        });
    }
    // Between prompts the server still sends a frame every 20 ms: digital silence.
    for (name, settings) in [
        ("ai_silence_32kbps_c5", default),
        (
            "ai_silence_32kbps_c5_dtx",
            OpusSettings {
                dtx: true,
                ..default
            },
        ),
    ] {
        g.bench_function(name, |b| {
            let mut enc = OpusEncoder::new(settings).expect("encoder");
            let silence = [0i16; FRAME];
            b.iter(|| black_box(enc.encode(&silence).expect("encode")));
        });
    }
    g.finish();
}

fn recording(c: &mut Criterion) {
    let participant = common::participant_frames();
    let ai = common::ai_frames();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("recording");
    // Encryption at rest (README "Encryption at rest"): the same work on sealed files.
    let sealing = Sealing {
        keys: std::sync::Arc::new(earshot_sealed::KeyRing::generate("k1").expect("key")),
        seal_new: true,
    };

    for (name, preset, seal) in [
        ("wav_write_16bit", Quality::Standard, None),
        ("wav_write_24bit", Quality::Ultra, None),
        ("wav_write_16bit_sealed", Quality::Standard, Some(&sealing)),
    ] {
        let path = dir.path().join(format!("{name}.wav"));
        g.bench_function(name, |b| {
            let mut w = TrackWriter::create(&path, preset, seal).expect("wav");
            let mut i = 0usize;
            b.iter(|| {
                if i > 0 && i.is_multiple_of(WAV_RESTART_FRAMES) {
                    w = TrackWriter::create(&path, preset, seal).expect("wav");
                }
                let pos = (i % WAV_RESTART_FRAMES * FRAME) as u64;
                w.write_at(pos, &participant[i % participant.len()])
                    .expect("write");
                i += 1;
            });
        });
    }

    // File-level work, done when a session ends: per 20 ms frame of a 10 s recording.
    let p_wav = dir.path().join("participant.wav");
    let a_wav = dir.path().join("ai.wav");
    let mix = dir.path().join("mix.wav");
    common::write_track(&p_wav, &participant, FILE_SECONDS);
    common::write_track(&a_wav, &ai, FILE_SECONDS);
    mix_wavs(&p_wav, &a_wav, &mix, None).expect("mix");
    let frames = (FILE_SECONDS * FRAMES_PER_SECOND) as u64;
    g.sample_size(10);
    let out = dir.path().join("mix_out.wav");
    g.bench_function("mix_two_tracks", |b| {
        per_frame(b, frames, || {
            black_box(mix_wavs(&p_wav, &a_wav, &out, None).expect("mix"));
        });
    });
    // Per preset: standard and high code 24 kHz MP3s (resampled first), ultra 48 kHz; and
    // the former 48 kHz 128 kbps default for comparison.
    let former = Mp3Spec {
        kbps: 128,
        sample_rate: 48_000,
    };
    for (name, spec) in [
        ("standard", Quality::Standard.into()),
        ("high", Quality::High.into()),
        ("ultra", Quality::Ultra.into()),
        ("48khz_128kbps", former),
    ] {
        let spec: Mp3Spec = spec;
        let mp3 = dir.path().join(format!("mix_{name}.mp3"));
        g.bench_function(format!("mp3_encode_{name}"), |b| {
            per_frame(b, frames, || {
                black_box(encode_mp3(&mix, &mp3, spec, None).expect("mp3"));
            });
        });
    }
    // The same from sealed tracks to sealed outputs.
    let sealed_p = dir.path().join("sealed_participant.wav");
    let sealed_a = dir.path().join("sealed_ai.wav");
    let sealed_mix = dir.path().join("sealed_mix.wav");
    mix_wavs(&p_wav, &p_wav, &sealed_p, Some(&sealing)).expect("seal");
    mix_wavs(&a_wav, &a_wav, &sealed_a, Some(&sealing)).expect("seal");
    g.bench_function("mix_two_tracks_sealed", |b| {
        per_frame(b, frames, || {
            black_box(mix_wavs(&sealed_p, &sealed_a, &sealed_mix, Some(&sealing)).expect("mix"));
        });
    });
    let sealed_mp3 = dir.path().join("sealed_mix_high.mp3");
    g.bench_function("mp3_encode_high_sealed", |b| {
        per_frame(b, frames, || {
            black_box(
                encode_mp3(
                    &sealed_mix,
                    &sealed_mp3,
                    Quality::High.into(),
                    Some(&sealing),
                )
                .expect("mp3"),
            );
        });
    });
    g.finish();
    remove(dir.path());
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = jitter, decode, denoise_and_vad, opus_encode, recording
}
criterion_main!(benches);
