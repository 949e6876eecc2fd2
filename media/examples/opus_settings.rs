//! The AI audio's Opus settings, weighed: encode time and PESQ-WB per setting, for speech that
//! is 16 kHz at the source (the built-in prompts; agents send 16 kHz too).
//!
//!     cargo run --release -p earshot-media --example opus_settings
//!
//! The five built-in prompts (with 0.5 s pauses) are upsampled to 48 kHz as the server does,
//! encoded with each setting (20 ms frames, as the session core does), decoded at 48 kHz as a
//! browser does, resampled to 16 kHz and scored against the source with PyPI's `pesq`
//! (`scripts/pesq_wb.py`; `scripts/install-deps.sh --quality` installs it). Encode time is the
//! mean per 20 ms frame on one core; run it on a quiet machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use earshot_media::codec::{OpusEncoder, OpusSettings};
use earshot_media::resample::StreamResampler;

fn read(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.samples::<i16>().map(|s| s.expect("sample")).collect()
}

fn write(path: &Path, pcm: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for s in pcm {
        w.write_sample(*s).expect("write");
    }
    w.finalize().expect("finalize");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tmp");
    let mut source = Vec::new();
    for f in ["greeting", "q1", "q2", "q3", "goodbye"] {
        source.extend(read(
            &root.join(format!("assets/interviewer/default/{f}.wav")),
        ));
        source.extend(std::iter::repeat_n(0i16, 8_000));
    }
    let reference = dir.path().join("reference.wav");
    write(&reference, &source);
    let mut up = StreamResampler::new(16_000, 48_000).expect("resampler");
    let mut source48 = Vec::new();
    up.process(&source, &mut source48).expect("upsample");

    let default = OpusSettings::default();
    let fullband = OpusSettings {
        wideband: false,
        ..default
    };
    let cases: Vec<(&str, OpusSettings)> = vec![
        (
            "fullband 32 kbps, c5, FEC for 10 % (the old default)",
            OpusSettings {
                bitrate_bps: 32_000,
                expected_loss_pct: 10,
                ..fullband
            },
        ),
        (
            "fullband 32 kbps, c10, FEC for 10 %",
            OpusSettings {
                bitrate_bps: 32_000,
                complexity: 10,
                expected_loss_pct: 10,
                ..fullband
            },
        ),
        (
            "fullband 64 kbps, c10, FEC for 10 %",
            OpusSettings {
                bitrate_bps: 64_000,
                complexity: 10,
                expected_loss_pct: 10,
                ..fullband
            },
        ),
        (
            "fullband 48 kbps, c5, no loss reported",
            OpusSettings { ..fullband },
        ),
        (
            "wideband 48 kbps, c5, no loss reported (the default)",
            default,
        ),
        (
            "wideband 48 kbps, c5, FEC for 5 % (loss reported)",
            OpusSettings {
                expected_loss_pct: 5,
                ..default
            },
        ),
        (
            "wideband 48 kbps, c5, FEC for 10 %",
            OpusSettings {
                expected_loss_pct: 10,
                ..default
            },
        ),
        (
            "wideband 64 kbps, c5, FEC for 10 %",
            OpusSettings {
                bitrate_bps: 64_000,
                expected_loss_pct: 10,
                ..default
            },
        ),
        (
            "wideband 40 kbps, c5, no loss reported",
            OpusSettings {
                bitrate_bps: 40_000,
                ..default
            },
        ),
        (
            "wideband 32 kbps, c5, no loss reported",
            OpusSettings {
                bitrate_bps: 32_000,
                ..default
            },
        ),
        (
            "wideband 32 kbps, c8, no loss reported",
            OpusSettings {
                bitrate_bps: 32_000,
                complexity: 8,
                ..default
            },
        ),
        (
            "wideband 48 kbps, c3, no loss reported",
            OpusSettings {
                complexity: 3,
                ..default
            },
        ),
        (
            "wideband 48 kbps, c10, no loss reported",
            OpusSettings {
                complexity: 10,
                ..default
            },
        ),
    ];
    let mut pairs = String::new();
    let mut rows = Vec::new();
    for (i, (name, settings)) in cases.iter().enumerate() {
        let mut enc = OpusEncoder::new(*settings).expect("encoder");
        let frames: Vec<&[i16; 960]> = source48
            .chunks_exact(960)
            .map(|f| f.try_into().expect("960"))
            .collect();
        let start = Instant::now();
        let packets: Vec<bytes::Bytes> = frames
            .iter()
            .map(|f| enc.encode(f).expect("encode"))
            .collect();
        let us = start.elapsed().as_secs_f64() * 1e6 / frames.len() as f64;
        let kbps = packets.iter().map(|p| p.len()).sum::<usize>() as f64 * 8.0
            / (packets.len() as f64 * 20.0);
        let mut dec = earshot_media::codec::OpusDecoder::new().expect("decoder");
        let mut decoded = Vec::new();
        for p in &packets {
            decoded.extend_from_slice(dec.decode(p).expect("decode"));
        }
        let mut down = StreamResampler::new(48_000, 16_000).expect("resampler");
        let mut d16 = Vec::new();
        down.process(&decoded, &mut d16).expect("downsample");
        let path: PathBuf = dir.path().join(format!("{i}.wav"));
        write(&path, &d16);
        pairs.push_str(&format!("{}\t{}\n", reference.display(), path.display()));
        rows.push((name, us, kbps));
    }
    let list = dir.path().join("pairs.txt");
    std::fs::write(&list, pairs).expect("pairs");
    let out = Command::new("python3")
        .arg(root.join("scripts/pesq_wb.py"))
        .arg(&list)
        .output()
        .expect("python3 scripts/pesq_wb.py");
    let scores = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("| Opus settings (AI audio) | PESQ-WB | kbit/s sent | encode, µs per frame |");
    println!("|---|---|---|---|");
    for ((name, us, kbps), score) in rows.iter().zip(scores.lines()) {
        println!("| {name} | {score} | {kbps:.1} | {us:.0} |");
    }
}
