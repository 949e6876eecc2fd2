//! The file format's guarantees: round trip, ranges, tampering, reordering, truncation, keys.

use crate::*;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

const PCM: Content = Content::Pcm {
    channels: 1,
    bits: 16,
    sample_rate: 48_000,
};

/// A sealed file of `pieces`, each flushed as one chunk, finished or not.
fn write(path: &Path, ring: &KeyRing, content: Content, pieces: &[Vec<u8>], finish: bool) {
    let mut w = SealedWriter::create(path, ring, content).unwrap();
    for p in pieces {
        w.write_all(p).unwrap();
        w.flush().unwrap();
    }
    if finish {
        w.finish().unwrap();
    }
}

fn pieces() -> Vec<Vec<u8>> {
    // Different sizes, content that differs per byte so a misplaced range shows.
    [1000usize, 1, 4097, 0, 2500]
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (j * 7 + i * 31) as u8).collect())
        .collect()
}

fn read_all(path: &Path, ring: &KeyRing) -> Result<(Vec<u8>, bool), SealError> {
    let r = SealedReader::open(File::open(path)?, ring)?;
    let finished = r.is_finished();
    let len = r.plaintext_len();
    let mut out = Vec::new();
    let mut src = r.range(0, len);
    while let Some(piece) = src.next_piece()? {
        out.extend_from_slice(&piece);
    }
    Ok((out, finished))
}

/// Chunk boundaries on disk: (offset, stored length) of each chunk.
fn chunk_spans(path: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut pos = HEADER_LEN;
    let mut spans = Vec::new();
    while pos + 4 <= bytes.len() {
        let word = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let len = 4 + 24 + (word & !(1 << 31)) as usize;
        spans.push((pos, len));
        pos += len;
    }
    spans
}

#[test]
fn round_trip_and_every_range() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("a.bin");
    let plain: Vec<u8> = pieces().concat();
    write(&path, &ring, Content::Bytes, &pieces(), true);
    let (back, finished) = read_all(&path, &ring).unwrap();
    assert_eq!(back, plain);
    assert!(finished);
    // Every (start, end) on a coarse grid plus every boundary region.
    let n = plain.len() as u64;
    let mut points: Vec<u64> = (0..=n).step_by(97).collect();
    for b in [0u64, 1, 999, 1000, 1001, 5097, 5098, 7597, 7598] {
        points.push(b.min(n));
    }
    for &s in &points {
        for &e in &points {
            if e < s {
                continue;
            }
            let r = SealedReader::open(File::open(&path).unwrap(), &ring).unwrap();
            let mut src = r.range(s, e);
            assert_eq!(src.remaining(), e - s);
            let mut got = Vec::new();
            while let Some(piece) = src.next_piece().unwrap() {
                got.extend_from_slice(&piece);
            }
            assert_eq!(got, plain[s as usize..e as usize], "range {s}..{e}");
        }
    }
    // Nothing of the plaintext is on disk.
    let disk = std::fs::read(&path).unwrap();
    assert!(
        !disk
            .windows(64)
            .any(|w| plain.windows(64).take(50).any(|p| p == w))
    );
}

#[test]
fn pcm_reads_as_a_wav_whose_header_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("t.wav");
    let samples: Vec<u8> = (0..9600u32)
        .flat_map(|i| (i as i16).to_le_bytes())
        .collect();
    write(&path, &ring, PCM, std::slice::from_ref(&samples), true);
    let disk = std::fs::read(&path).unwrap();
    assert!(!disk.windows(4).any(|w| w == b"RIFF" || w == b"WAVE"));
    let (wav, _) = read_all(&path, &ring).unwrap();
    assert_eq!(wav.len(), 44 + samples.len());
    assert_eq!(wav[..44], wav_header(1, 16, 48_000, samples.len() as u64));
    assert_eq!(&wav[44..], &samples[..]);
    let r = SealedReader::open(File::open(&path).unwrap(), &ring).unwrap();
    assert_eq!((r.content(), r.body_len()), (PCM, samples.len() as u64));
    assert_eq!(plaintext_len(&path).unwrap(), Some(wav.len() as u64));
    // A range across the rebuilt header and the samples.
    let mut part = Vec::new();
    r.range(40, 50).read_to_end(&mut part).unwrap();
    assert_eq!(part, wav[40..50]);
}

#[test]
fn a_flipped_byte_anywhere_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("a.bin");
    write(&path, &ring, Content::Bytes, &pieces(), true);
    let good = std::fs::read(&path).unwrap();
    // Every byte of the header and a spread of chunk bytes.
    let spots: Vec<usize> = (0..HEADER_LEN + 40)
        .chain((HEADER_LEN..good.len()).step_by(13))
        .collect();
    for i in spots {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        match read_all(&path, &ring) {
            Err(_) => {}
            // A flipped length word can make the tail look torn: then the file must read
            // unfinished, never as the complete original.
            Ok((_, finished)) => assert!(!finished, "byte {i} flipped went unnoticed"),
        }
    }
}

#[test]
fn reordered_or_dropped_middle_chunks_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("a.bin");
    write(&path, &ring, Content::Bytes, &pieces(), true);
    let good = std::fs::read(&path).unwrap();
    let spans = chunk_spans(&path);
    assert_eq!(
        spans.len(),
        5,
        "four pieces (an empty flush writes none) and the last chunk"
    );
    let chunk = |i: usize| &good[spans[i].0..spans[i].0 + spans[i].1];
    // Swap chunks 0 and 1.
    let mut swapped = good[..HEADER_LEN].to_vec();
    for i in [1, 0, 2, 3, 4] {
        swapped.extend_from_slice(chunk(i));
    }
    std::fs::write(&path, &swapped).unwrap();
    assert!(matches!(read_all(&path, &ring), Err(SealError::Corrupt(_))));
    // Drop chunk 2.
    let mut dropped = good[..HEADER_LEN].to_vec();
    for i in [0, 1, 3, 4] {
        dropped.extend_from_slice(chunk(i));
    }
    std::fs::write(&path, &dropped).unwrap();
    assert!(matches!(read_all(&path, &ring), Err(SealError::Corrupt(_))));
    // A chunk from another file with the same key ring, at the same place.
    let other = dir.path().join("b.bin");
    write(&other, &ring, Content::Bytes, &pieces(), true);
    let other_bytes = std::fs::read(&other).unwrap();
    let mut mixed = good[..HEADER_LEN].to_vec();
    mixed.extend_from_slice(chunk(0));
    mixed.extend_from_slice(&other_bytes[spans[1].0..spans[1].0 + spans[1].1]);
    for i in 2..5 {
        mixed.extend_from_slice(chunk(i));
    }
    std::fs::write(&path, &mixed).unwrap();
    assert!(matches!(read_all(&path, &ring), Err(SealError::Corrupt(_))));
}

#[test]
fn a_truncated_tail_reads_as_its_whole_chunks_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("a.bin");
    let pieces = pieces();
    write(&path, &ring, Content::Bytes, &pieces, true);
    let good = std::fs::read(&path).unwrap();
    let spans = chunk_spans(&path);
    // The chunks' plaintexts: the empty piece made no chunk.
    let chunks = [&pieces[0], &pieces[1], &pieces[2], &pieces[4]];
    let first = |k: usize| {
        chunks[..k]
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect::<Vec<u8>>()
    };
    // Cut inside chunk 2 (torn), at the end of chunk 2 (a clean cut), and the last chunk off.
    for (cut, whole_chunks) in [
        (spans[2].0 + 10, 2),
        (spans[2].0 + 2, 2),
        (spans[3].0, 3),
        (spans[4].0, 4),
        (spans[4].0 + spans[4].1 - 1, 4),
    ] {
        std::fs::write(&path, &good[..cut]).unwrap();
        let (back, finished) = read_all(&path, &ring).unwrap();
        assert!(!finished, "cut at {cut}");
        assert_eq!(back, first(whole_chunks), "cut at {cut}");
    }
    // A file that is only a header.
    std::fs::write(&path, &good[..HEADER_LEN]).unwrap();
    assert_eq!(read_all(&path, &ring).unwrap(), (Vec::new(), false));
    // Trailing bytes after the last chunk are not a torn tail.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 40]);
    std::fs::write(&path, &longer).unwrap();
    assert!(read_all(&path, &ring).is_err());
}

#[test]
fn a_wrong_or_missing_key_is_an_error_never_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("a.bin");
    write(&path, &ring, Content::Bytes, &pieces(), true);
    let same_id_other_key = KeyRing::generate("k1").unwrap();
    assert!(matches!(
        read_all(&path, &same_id_other_key),
        Err(SealError::WrongKey(id)) if id == "k1"
    ));
    let other_id = KeyRing::generate("k9").unwrap();
    assert!(matches!(
        read_all(&path, &other_id),
        Err(SealError::UnknownKey(id)) if id == "k1"
    ));
    std::fs::write(&path, b"RIFF....WAVEfmt ").unwrap();
    assert!(matches!(read_all(&path, &ring), Err(SealError::NotSealed)));
}

#[test]
fn rotation_rewraps_only_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("a.bin");
    write(&path, &ring, Content::Bytes, &pieces(), true);
    let before = std::fs::read(&path).unwrap();
    ring.add_current("k2").unwrap();
    assert_eq!(rewrap_file(&path, &ring).unwrap().as_deref(), Some("k1"));
    let after = std::fs::read(&path).unwrap();
    assert_eq!(before.len(), after.len());
    assert_eq!(before[..32], after[..32], "fixed part kept");
    assert_ne!(
        before[32..HEADER_LEN],
        after[32..HEADER_LEN],
        "key slot rewritten"
    );
    assert_eq!(
        before[HEADER_LEN..],
        after[HEADER_LEN..],
        "chunks untouched"
    );
    assert_eq!(key_id_of(&path).unwrap().as_deref(), Some("k2"));
    // Again: nothing to do.
    assert_eq!(rewrap_file(&path, &ring).unwrap().as_deref(), Some("k2"));
    ring.remove("k1").unwrap();
    assert_eq!(read_all(&path, &ring).unwrap(), (pieces().concat(), true));
    // A plain file is left alone.
    let plain = dir.path().join("p.wav");
    std::fs::write(&plain, b"RIFF").unwrap();
    assert_eq!(rewrap_file(&plain, &ring).unwrap(), None);
    assert_eq!(std::fs::read(&plain).unwrap(), b"RIFF");
}

#[test]
fn a_writer_continues_a_killed_or_finished_file() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate("k1").unwrap();
    let path = dir.path().join("t.wav");
    let pieces = pieces();
    // Killed: the chunks flushed, then half of a chunk.
    write(&path, &ring, PCM, &pieces[..3], false);
    let whole = std::fs::metadata(&path).unwrap().len();
    let mut f = File::options().append(true).open(&path).unwrap();
    f.write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
    drop(f);
    let mut w = SealedWriter::append(&path, &ring).unwrap();
    assert_eq!(w.len(), pieces[..3].concat().len() as u64);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        whole,
        "torn tail cut"
    );
    w.write_all(&pieces[4]).unwrap();
    w.finish().unwrap();
    let r = SealedReader::open(File::open(&path).unwrap(), &ring).unwrap();
    assert!(r.is_finished());
    let mut body = Vec::new();
    r.body().read_to_end(&mut body).unwrap();
    let mut want = pieces[..3].concat();
    want.extend_from_slice(&pieces[4]);
    want.truncate(want.len() / 2 * 2);
    assert_eq!(body, want);
    // Finished: its last chunk is reopened and more follows it.
    let mut w = SealedWriter::append(&path, &ring).unwrap();
    w.write_all(&[9, 9]).unwrap();
    w.finish().unwrap();
    let r = SealedReader::open(File::open(&path).unwrap(), &ring).unwrap();
    let mut body = Vec::new();
    r.body().read_to_end(&mut body).unwrap();
    let mut want = pieces[..3].concat();
    want.extend_from_slice(&pieces[4]);
    want.extend_from_slice(&[9, 9]);
    assert_eq!(body, want);
}
