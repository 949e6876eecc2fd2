//! What sealing costs per second of recorded audio (48 kHz mono 16-bit: 96,000 bytes, one
//! chunk per second as the recorder flushes): sealing it (a track being recorded) and opening
//! it again (the mix, MP3s and peaks read every track at the end of a session). Run with
//! `cargo run -p earshot-sealed --release --example seal_cost` (a figure, not a test).

use earshot_sealed::{Content, KeyRing, SealedReader, SealedWriter};
use std::io::Write;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SECONDS: usize = 600;
    let ring = KeyRing::generate("k1")?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("track.wav");
    let second: Vec<u8> = (0..96_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let content = Content::Pcm {
        channels: 1,
        bits: 16,
        sample_rate: 48_000,
    };
    let start = Instant::now();
    let mut w = SealedWriter::create(&path, &ring, content)?;
    for _ in 0..SECONDS {
        w.write_all(&second)?;
        w.flush()?;
    }
    w.finish()?;
    let seal = start.elapsed();
    let start = Instant::now();
    let r = SealedReader::open(std::fs::File::open(&path)?, &ring)?;
    let mut src = r.body();
    let mut n = 0usize;
    while let Some(piece) = src.next_piece()? {
        n += piece.len();
    }
    let open = start.elapsed();
    assert_eq!(n, SECONDS * second.len());
    let disk = std::fs::metadata(&path)?.len();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / SECONDS as f64;
    println!(
        "per second of audio: seal {:.1} us, open {:.1} us; on disk {} bytes for {} of samples \
         (+{:.3} %)",
        per(seal),
        per(open),
        disk,
        n,
        (disk as f64 - n as f64) * 100.0 / n as f64
    );
    Ok(())
}
