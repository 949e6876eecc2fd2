//! Loading prompt audio files for the built-in interviewer (F5).
//!
//! Owns: decoding a WAV or FLAC file with symphonia, downmixing to mono and resampling to the
//! internal 48 kHz i16 format, with clear errors (never panics) for missing, garbled or
//! oversized files. The result is aligned: the resampler's filter delay is removed and the
//! length is the source duration at 48 kHz.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::resample::{ResampleError, StreamResampler};

/// Output sample rate.
pub use crate::units::SAMPLE_RATE;
/// Longest prompt accepted (10 minutes), to bound memory on hostile files.
pub const MAX_PROMPT_SECONDS: u64 = 600;
/// Lowest sample rate accepted. Below it a few header bytes would claim minutes of output
/// (found by fuzzing: 4 samples at 1 Hz resampled into 4 s of audio, about 100 ms in a debug
/// build, and 600 samples would make the full 10 minutes).
pub const MIN_PROMPT_RATE: u32 = 8_000;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot open prompt {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot decode prompt {path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("prompt {path} is longer than {MAX_PROMPT_SECONDS} s")]
    TooLong { path: String },
    #[error("prompt {path}: {source}")]
    Resample { path: String, source: ResampleError },
}

/// Decode `path` (WAV or FLAC) to 48 kHz mono i16.
pub fn load_prompt(path: impl AsRef<Path>) -> Result<Vec<i16>, PromptError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|source| PromptError::Open {
        path: name.clone(),
        source,
    })?;
    check_declared_lengths(&mut file).map_err(|reason| PromptError::Decode {
        path: name.clone(),
        reason,
    })?;
    let extension = path.extension().and_then(|e| e.to_str());
    decode(Box::new(file), name, extension)
}

/// Decode a prompt file's bytes (WAV or FLAC) to 48 kHz mono i16, exactly as [`load_prompt`]
/// decodes the file: `name` labels errors, `extension` is the format hint a file name would
/// give (`Some("wav")`, `Some("flac")` or `None`). Used by the fuzz targets in `benches/fuzz`.
pub fn load_prompt_from_bytes(
    bytes: &[u8],
    name: &str,
    extension: Option<&str>,
) -> Result<Vec<i16>, PromptError> {
    let mut source = std::io::Cursor::new(bytes.to_vec());
    check_declared_lengths(&mut source).map_err(|reason| PromptError::Decode {
        path: name.to_owned(),
        reason,
    })?;
    decode(Box::new(source), name.to_owned(), extension)
}

/// Checks the container's header before symphonia parses it, and rewinds. A prompt must start
/// with its WAV (`RIFF`) or FLAC (`fLaC`) marker (symphonia would search the first MiB for
/// one). Symphonia 0.5 allocates some declared lengths before reading them (a FLAC Vorbis
/// comment or picture field, a WAV `LIST`/`INFO` chunk): found by fuzzing, a 600-byte file
/// asked for 1 GiB, up to 4 GiB is possible. Such lengths must fit in what follows in the file.
fn check_declared_lengths<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let total = r.seek(SeekFrom::End(0)).map_err(io)?;
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).is_err() {
        return Err("not a WAV or FLAC file (too short)".into());
    }
    let checked = match &magic {
        b"RIFF" => check_wav(r, total),
        b"fLaC" => check_flac(r, total),
        _ => Err("not a WAV (RIFF) or FLAC (fLaC) file".into()),
    };
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    checked
}

fn read_array<const N: usize, R: Read>(r: &mut R) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).ok().map(|()| b)
}

/// The RIFF chunks before `data`, walked as symphonia walks them: each must fit in the file.
fn check_wav<R: Read + Seek>(r: &mut R, total: u64) -> Result<(), String> {
    let Some(head) = read_array::<8, _>(r) else {
        return Ok(()); // symphonia reports the truncated header
    };
    let riff_len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    if &head[4..] != b"WAVE" {
        return Ok(());
    }
    let (mut consumed, mut pos) = (0u64, 12u64);
    loop {
        if consumed & 1 == 1 {
            consumed += 1;
            pos += 1;
        }
        if consumed + 8 > riff_len || r.seek(SeekFrom::Start(pos)).is_err() {
            return Ok(());
        }
        let Some(chunk) = read_array::<8, _>(r) else {
            return Ok(());
        };
        let len = u64::from(u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        consumed += 8;
        pos += 8;
        if &chunk[..4] == b"data" {
            return Ok(());
        }
        let left = total.saturating_sub(pos);
        if len > left {
            return Err(format!(
                "WAV chunk {:?} declares {len} bytes, only {left} follow",
                String::from_utf8_lossy(&chunk[..4])
            ));
        }
        // Symphonia 0.5 panics on a sample rate of 0 (a zero time base; found by fuzzing).
        if &chunk[..4] == b"fmt "
            && len >= 8
            && let Some(fmt) = read_array::<8, _>(r)
            && fmt[4..8] == [0, 0, 0, 0]
        {
            return Err("WAV sample rate is 0".into());
        }
        consumed += len;
        pos += len;
    }
}

/// The FLAC metadata blocks: each must fit in the file, and so must the lengths inside a
/// Vorbis comment or picture block that symphonia allocates.
fn check_flac<R: Read + Seek>(r: &mut R, total: u64) -> Result<(), String> {
    let mut pos = 4u64;
    loop {
        let Some(h) = read_array::<4, _>(r) else {
            return Ok(());
        };
        let (last, kind) = (h[0] & 0x80 != 0, h[0] & 0x7f);
        let len = u64::from(u32::from_be_bytes([0, h[1], h[2], h[3]]));
        pos += 4;
        let left = total.saturating_sub(pos);
        if len > left {
            return Err(format!(
                "FLAC metadata block of {len} bytes, only {left} follow"
            ));
        }
        if kind == 4 || kind == 6 {
            // At most 16 MiB (24-bit length), and within the file.
            let mut block = vec![0u8; len as usize];
            r.read_exact(&mut block).map_err(|e| e.to_string())?;
            if kind == 4 {
                check_vorbis_comment(&block)?;
            } else {
                check_picture(&block)?;
            }
        }
        pos += len;
        if last || r.seek(SeekFrom::Start(pos)).is_err() {
            return Ok(());
        }
    }
}

/// Reads a length at `at` (`be`: big-endian) and checks it against the bytes after it.
fn field_len(block: &[u8], at: usize, be: bool, what: &str) -> Result<Option<usize>, String> {
    let Some(b) = block.get(at..at + 4) else {
        return Ok(None);
    };
    let b = [b[0], b[1], b[2], b[3]];
    let n = if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    } as usize;
    let left = block.len() - (at + 4);
    if n > left {
        return Err(format!(
            "FLAC {what} declares {n} bytes, only {left} follow in its block"
        ));
    }
    Ok(Some(n))
}

fn check_vorbis_comment(block: &[u8]) -> Result<(), String> {
    // The vendor string is skipped without allocating; comments are allocated.
    let Some(vendor) = block
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return Ok(());
    };
    let mut at = 4usize.saturating_add(vendor as usize);
    let Some(n) = block.get(at..at + 4) else {
        return Ok(());
    };
    let count = u32::from_le_bytes([n[0], n[1], n[2], n[3]]);
    at += 4;
    for _ in 0..count {
        let Some(len) = field_len(block, at, false, "Vorbis comment")? else {
            return Ok(());
        };
        at += 4 + len;
    }
    Ok(())
}

fn check_picture(block: &[u8]) -> Result<(), String> {
    let mut at = 4; // picture type
    for what in ["picture MIME type", "picture description"] {
        let Some(len) = field_len(block, at, true, what)? else {
            return Ok(());
        };
        at += 4 + len;
    }
    at += 16; // width, height, depth, colours
    field_len(block, at, true, "picture data")?;
    Ok(())
}

/// Decodes with symphonia; a panic inside it (a library bug, like the zero sample rate above)
/// becomes a decode error instead of taking the caller down.
fn decode(
    source: Box<dyn symphonia::core::io::MediaSource>,
    name: String,
    extension: Option<&str>,
) -> Result<Vec<i16>, PromptError> {
    let path = name.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_unguarded(source, name, extension)
    }))
    .unwrap_or_else(|_| {
        Err(PromptError::Decode {
            path,
            reason: "the decoder panicked".into(),
        })
    })
}

fn decode_unguarded(
    source: Box<dyn symphonia::core::io::MediaSource>,
    name: String,
    extension: Option<&str>,
) -> Result<Vec<i16>, PromptError> {
    let decode_err = |reason: String| PromptError::Decode {
        path: name.clone(),
        reason,
    };
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| decode_err(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| decode_err("no audio track".into()))?;
    let track_id = track.id;
    let rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| decode_err("unknown sample rate".into()))?;
    if rate < MIN_PROMPT_RATE {
        return Err(decode_err(format!(
            "sample rate {rate} Hz is below {MIN_PROMPT_RATE} Hz"
        )));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| decode_err(e.to_string()))?;
    let mut resampler =
        StreamResampler::new(rate, SAMPLE_RATE).map_err(|source| PromptError::Resample {
            path: name.clone(),
            source,
        })?;

    let max_in = MAX_PROMPT_SECONDS * u64::from(rate);
    let mut total_in = 0u64;
    let mut out = Vec::new();
    let mut mono: Vec<i16> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(decode_err(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(msg)) => {
                tracing::warn!(path = %name, msg, "prompt: skipping undecodable packet");
                continue;
            }
            Err(e) => return Err(decode_err(e.to_string())),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        if channels == 0 {
            return Err(decode_err("no channels".into()));
        }
        let needed = decoded.frames() * channels;
        if buf.as_ref().is_none_or(|b| b.capacity() < needed) {
            buf = Some(SampleBuffer::new(
                decoded.capacity().max(decoded.frames()) as u64,
                spec,
            ));
        }
        let Some(b) = buf.as_mut() else { continue };
        b.copy_interleaved_ref(decoded);
        mono.clear();
        mono.extend(b.samples().chunks_exact(channels).map(|frame| {
            let mean = frame.iter().sum::<f32>() / channels as f32;
            (mean * 32768.0).round().clamp(-32768.0, 32767.0) as i16
        }));
        total_in += mono.len() as u64;
        if total_in > max_in {
            return Err(PromptError::TooLong { path: name });
        }
        resampler
            .process(&mono, &mut out)
            .map_err(|source| PromptError::Resample {
                path: name.clone(),
                source,
            })?;
    }
    if total_in == 0 {
        return Err(decode_err("no audio samples".into()));
    }
    resampler
        .flush(&mut out)
        .map_err(|source| PromptError::Resample {
            path: name.clone(),
            source,
        })?;
    let delay = resampler.delay().min(out.len());
    let len = usize::try_from(resampler.expected_output()).unwrap_or(usize::MAX);
    out.drain(..delay);
    out.truncate(len);
    tracing::debug!(path = %name, rate, samples = out.len(), "prompt loaded");
    Ok(out)
}
