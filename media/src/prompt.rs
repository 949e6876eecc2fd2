//! Loading prompt audio files for the built-in interviewer (F5).
//!
//! Owns: decoding a WAV or FLAC file with symphonia, downmixing to mono and resampling to the
//! internal 48 kHz i16 format, with clear errors (never panics) for missing, garbled or
//! oversized files. The result is aligned: the resampler's filter delay is removed and the
//! length is the source duration at 48 kHz.

use std::fs::File;
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
    let decode_err = |reason: String| PromptError::Decode {
        path: name.clone(),
        reason,
    };

    let file = File::open(path).map_err(|source| PromptError::Open {
        path: name.clone(),
        source,
    })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
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
