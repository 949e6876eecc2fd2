//! Recording files of one session: per-track WAV writing on the session timeline, the mix of
//! two tracks, and MP3 encoding.
//!
//! Owns: sample placement ([`TrackWriter::write_at`] fills gaps with silence and trims overlaps,
//! never going backwards), crash safety (the WAV header is rewritten at least once per second of
//! audio, so a killed process leaves a playable file losing at most the last second), quality
//! presets, and streaming file conversions that never hold a whole track in memory.
//! Everything is 48 kHz mono; 16-bit WAV, or 24-bit for [`Quality::Ultra`]. Files are plain
//! or sealed (encrypted at rest) as [`Sealing`] says; `crate::track_file` owns the difference.

use std::io::Read;
use std::path::{Path, PathBuf};

use mp3lame_encoder::{Builder, FlushGap, MonoPcm};

use crate::track_file::{ByteSink, PcmSink, PcmSource};
pub use crate::track_file::{Sealing, is_sealed_file};

/// Recording sample rate.
pub use crate::units::SAMPLE_RATE;
/// Longest track accepted (6 hours); keeps even 24-bit files below the 4 GiB WAV limit.
pub const MAX_TRACK_SAMPLES: u64 = 6 * 3600 * SAMPLE_RATE as u64;
/// The WAV header is rewritten after at most this many samples (1 s).
const FLUSH_EVERY_SAMPLES: u64 = SAMPLE_RATE as u64;
/// Samples per read/write step in file conversions (100 ms).
const CHUNK: usize = 4800;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("wav: {0}")]
    Wav(#[from] hound::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("mp3 encoder: {0}")]
    Mp3(String),
    #[error("unsupported recording: {0}")]
    Unsupported(String),
    #[error("track would exceed {MAX_TRACK_SAMPLES} samples")]
    TooLong,
    /// An encrypted recording that cannot be opened or written (no key, wrong key, tampered).
    #[error("encrypted recording: {0}")]
    Sealed(String),
}

pub type Result<T, E = RecorderError> = std::result::Result<T, E>;

/// Recording quality, chosen per script (MP3 bitrate and WAV depth per preset).
pub use earshot_vocab::Quality;

/// A finished file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub path: PathBuf,
    pub duration_ms: u64,
    pub bytes: u64,
}

fn samples_to_ms(samples: u64) -> u64 {
    samples * 1000 / u64::from(SAMPLE_RATE)
}

pub(crate) fn wav_spec(bits: u16) -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    }
}

/// One track's WAV file, written on the session timeline.
pub struct TrackWriter {
    path: PathBuf,
    writer: PcmSink,
    bits: u16,
    written: u64,
    since_flush: u64,
}

impl std::fmt::Debug for TrackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackWriter")
            .field("path", &self.path)
            .field("bits", &self.bits)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl TrackWriter {
    /// Create (or truncate) the WAV file at `path`, sealed if `sealing` seals new files.
    pub fn create(
        path: impl AsRef<Path>,
        preset: Quality,
        sealing: Option<&Sealing>,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bits = preset.wav_bits();
        let writer = PcmSink::create(&path, bits, sealing)?;
        Ok(Self {
            path,
            writer,
            bits,
            written: 0,
            since_flush: 0,
        })
    }

    /// Continue the WAV at `path` if one is there (a session resumed after a restart of the
    /// process: the flushed audio stays and new audio follows it on the same timeline), else
    /// create it. A file that is not a readable WAV is replaced. A sealed one is continued
    /// sealed (its torn last chunk dropped); one that does not open (no key, a wrong key) is
    /// an error and is left as it is.
    pub fn open(
        path: impl AsRef<Path>,
        preset: Quality,
        sealing: Option<&Sealing>,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // A sealed file shorter than its header holds no audio (a crash as it was made): it
        // is replaced below like any file that is not a readable track.
        if path.exists()
            && is_sealed_file(&path)?
            && std::fs::metadata(&path)?.len() >= earshot_sealed::HEADER_LEN as u64
        {
            let (writer, written) = PcmSink::append_sealed(&path, sealing)?;
            let bits = match &writer {
                PcmSink::Sealed { bits, .. } => *bits,
                PcmSink::Plain(w) => w.spec().bits_per_sample,
            };
            tracing::info!(path = %path.display(), written, "recorder: continuing an existing sealed track");
            return Ok(Self {
                path,
                writer,
                bits,
                written,
                since_flush: 0,
            });
        }
        if path.exists() {
            // A killed process leaves a header that counts only what was flushed; the samples
            // written after it are on disk too and belong to the track.
            match repair_data_length(&path) {
                Ok(Some(recovered)) => {
                    tracing::info!(path = %path.display(), recovered_bytes = recovered, "recorder: samples after the last header flush recovered");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "recorder: header not repaired");
                }
            }
            match hound::WavWriter::append(&path) {
                Ok(writer) => {
                    let spec = writer.spec();
                    if spec.channels == 1 && spec.sample_rate == SAMPLE_RATE {
                        let written = u64::from(writer.len());
                        tracing::info!(path = %path.display(), written, "recorder: continuing an existing track");
                        return Ok(Self {
                            path,
                            writer: PcmSink::Plain(writer),
                            bits: spec.bits_per_sample,
                            written,
                            since_flush: 0,
                        });
                    }
                    tracing::warn!(path = %path.display(), "recorder: existing track has another format; replacing it");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "recorder: existing track unreadable; replacing it");
                }
            }
        }
        Self::create(path, preset, sealing)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples written so far: the timeline position the next sample lands on.
    pub fn position(&self) -> u64 {
        self.written
    }

    /// Place `pcm` at sample `position` of the session timeline. A gap before it becomes
    /// silence; the part overlapping audio already written is dropped.
    pub fn write_at(&mut self, position: u64, pcm: &[i16]) -> Result<()> {
        let skip = self.written.saturating_sub(position);
        let Some(pcm) = usize::try_from(skip).ok().and_then(|s| pcm.get(s..)) else {
            return Ok(()); // entirely in the past
        };
        if pcm.is_empty() {
            return Ok(());
        }
        let gap = position.saturating_sub(self.written);
        let end = self
            .written
            .checked_add(gap)
            .and_then(|e| e.checked_add(pcm.len() as u64));
        if end.is_none_or(|e| e > MAX_TRACK_SAMPLES) {
            return Err(RecorderError::TooLong);
        }
        if skip > 0 {
            tracing::trace!(path = %self.path.display(), skip, "recorder: overlap trimmed");
        }
        const SILENCE: [i16; CHUNK] = [0; CHUNK];
        let mut gap_left = gap;
        while gap_left > 0 {
            let n = gap_left.min(CHUNK as u64) as usize;
            self.put(&SILENCE[..n])?;
            gap_left -= n as u64;
        }
        for chunk in pcm.chunks(CHUNK) {
            self.put(chunk)?;
        }
        Ok(())
    }

    fn put(&mut self, pcm: &[i16]) -> Result<()> {
        self.writer.write_i16(pcm, self.bits)?;
        self.written += pcm.len() as u64;
        self.since_flush += pcm.len() as u64;
        if self.since_flush >= FLUSH_EVERY_SAMPLES {
            self.flush()?;
        }
        Ok(())
    }

    /// Rewrite the header and push buffered samples to the OS (sealed: seal them as a chunk):
    /// after this, the file on disk holds everything written so far.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()?;
        self.since_flush = 0;
        Ok(())
    }

    /// Finish the file.
    pub fn finalize(self) -> Result<TrackInfo> {
        let Self {
            path,
            writer,
            written,
            ..
        } = self;
        writer.finalize()?;
        let bytes = crate::track_file::plain_len(&path)?;
        Ok(TrackInfo {
            path,
            duration_ms: samples_to_ms(written),
            bytes,
        })
    }
}

/// Open a recording WAV (plain or sealed), checking it is 48 kHz mono integer PCM of 16 or 24
/// bits.
fn open_track(path: &Path, sealing: Option<&Sealing>) -> Result<PcmSource> {
    let reader = crate::track_file::open_pcm(path, sealing)?;
    let spec = reader.spec;
    if spec.channels != 1
        || spec.sample_rate != SAMPLE_RATE
        || spec.sample_format != hound::SampleFormat::Int
        || !(spec.bits_per_sample == 16 || spec.bits_per_sample == 24)
    {
        return Err(RecorderError::Unsupported(format!(
            "{}: {} ch, {} Hz, {} bit {:?} (want 1 ch, 48000 Hz, 16/24 bit int)",
            path.display(),
            spec.channels,
            spec.sample_rate,
            spec.bits_per_sample,
            spec.sample_format
        )));
    }
    Ok(reader)
}

/// A recording WAV's samples read in bulk: whole chunks of bytes converted at once (hound's
/// per-sample iterator was 7 % of the server's CPU under load, in the end-of-session work).
pub(crate) struct TrackReader {
    inner: Box<dyn Read + Send>,
    bytes_per_sample: usize,
    left: u64,
    bytes: Vec<u8>,
}

impl TrackReader {
    /// Samples not read yet.
    pub(crate) fn remaining(&self) -> u64 {
        self.left
    }

    pub(crate) fn open(path: &Path, sealing: Option<&Sealing>) -> Result<(Self, u16)> {
        let reader = open_track(path, sealing)?;
        let bits = reader.spec.bits_per_sample;
        let left = reader.frames;
        Ok((
            Self {
                inner: reader.bytes,
                bytes_per_sample: usize::from(bits / 8),
                left,
                bytes: Vec::with_capacity(CHUNK * 3),
            },
            bits,
        ))
    }

    /// Reads up to `CHUNK` samples, shifted left by `shift` bits, into `buf`; false at the end.
    pub(crate) fn read_chunk(&mut self, shift: u16, buf: &mut Vec<i32>) -> Result<bool> {
        buf.clear();
        let n = self.left.min(CHUNK as u64) as usize;
        if n == 0 {
            return Ok(false);
        }
        self.bytes.resize(n * self.bytes_per_sample, 0);
        self.inner.read_exact(&mut self.bytes)?;
        self.left -= n as u64;
        if self.bytes_per_sample == 2 {
            buf.extend(
                self.bytes
                    .chunks_exact(2)
                    .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])) << shift),
            );
        } else {
            // 24-bit: sign-extend from the top byte.
            buf.extend(
                self.bytes
                    .chunks_exact(3)
                    .map(|b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) << shift),
            );
        }
        Ok(true)
    }
}

/// Sum two tracks sample-aligned into `out` (saturating). The longer track decides the length;
/// the output has the larger bit depth of the two. Sealed inputs open with `sealing`'s keys;
/// the output is sealed if it seals new files.
pub fn mix_wavs(a: &Path, b: &Path, out: &Path, sealing: Option<&Sealing>) -> Result<TrackInfo> {
    let (mut ra, bits_a) = TrackReader::open(a, sealing)?;
    let (mut rb, bits_b) = TrackReader::open(b, sealing)?;
    let bits = bits_a.max(bits_b);
    let max = (1i32 << (bits - 1)) - 1;
    let min = -(1i32 << (bits - 1));
    let mut writer = PcmSink::create(out, bits, sealing)?;
    let (mut ba, mut bb) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
    let mut total = 0u64;
    loop {
        let more_a = ra.read_chunk(bits - bits_a, &mut ba)?;
        let more_b = rb.read_chunk(bits - bits_b, &mut bb)?;
        if !more_a && !more_b {
            break;
        }
        for i in 0..ba.len().max(bb.len()) {
            let sum = ba.get(i).copied().unwrap_or(0) + bb.get(i).copied().unwrap_or(0);
            writer.write_sample(sum.clamp(min, max))?;
        }
        total += ba.len().max(bb.len()) as u64;
    }
    writer.finalize()?;
    let bytes = crate::track_file::plain_len(out)?;
    Ok(TrackInfo {
        path: out.to_path_buf(),
        duration_ms: samples_to_ms(total),
        bytes,
    })
}

fn lame_bitrate(kbps: u32) -> Result<mp3lame_encoder::Bitrate> {
    use mp3lame_encoder::Bitrate::*;
    Ok(match kbps {
        32 => Kbps32,
        40 => Kbps40,
        48 => Kbps48,
        64 => Kbps64,
        80 => Kbps80,
        96 => Kbps96,
        112 => Kbps112,
        128 => Kbps128,
        160 => Kbps160,
        192 => Kbps192,
        224 => Kbps224,
        256 => Kbps256,
        320 => Kbps320,
        other => {
            return Err(RecorderError::Unsupported(format!(
                "mp3 bitrate {other} kbps"
            )));
        }
    })
}

fn lame_err(what: &str, e: impl std::fmt::Display) -> RecorderError {
    RecorderError::Mp3(format!("{what}: {e}"))
}

/// How an MP3 is made: its constant bitrate and its sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp3Spec {
    pub kbps: u32,
    pub sample_rate: u32,
}

impl From<Quality> for Mp3Spec {
    fn from(preset: Quality) -> Mp3Spec {
        Mp3Spec {
            kbps: preset.mp3_bitrate_kbps(),
            sample_rate: preset.mp3_sample_rate(),
        }
    }
}

/// Sample rates an MP3 may have here (MPEG-1 and MPEG-2 rates LAME codes without resampling).
const MP3_RATES: [u32; 6] = [16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// Encode a recording WAV to a CBR mono MP3 at `spec`'s rate, resampled from 48 kHz first
/// when it is lower (rubato's FFT resampler: a few µs a frame, where LAME's own resampler
/// costs about what it saves). A LAME/Xing tag at the start records the encoder delay and
/// padding, so gapless-aware decoders return exactly the WAV's duration. Sealing as for
/// [`mix_wavs`].
pub fn encode_mp3(
    wav: &Path,
    mp3: &Path,
    spec: Mp3Spec,
    sealing: Option<&Sealing>,
) -> Result<TrackInfo> {
    let brate = lame_bitrate(spec.kbps)?;
    if !MP3_RATES.contains(&spec.sample_rate) {
        return Err(lame_err(
            "output rate",
            format!("{} Hz is not an MP3 rate", spec.sample_rate),
        ));
    }
    let (mut reader, bits) = TrackReader::open(wav, sealing)?;
    let shift = bits - 16;
    let mut resampler =
        crate::resample::StreamResampler::with_chunk(SAMPLE_RATE, spec.sample_rate, CHUNK)
            .map_err(|e| lame_err("resample", e))?;
    // Output samples of the resampler's filter delay still to drop (it lags the input).
    let mut skip = resampler.delay();

    let mut builder = Builder::new().ok_or_else(|| lame_err("init", "out of memory"))?;
    builder
        .set_num_channels(1)
        .map_err(|e| lame_err("channels", e))?;
    builder
        .set_sample_rate(spec.sample_rate)
        .map_err(|e| lame_err("input rate", e))?;
    builder
        .set_output_sample_rate(std::num::NonZeroU32::new(spec.sample_rate))
        .map_err(|e| lame_err("output rate", e))?;
    builder
        .set_brate(brate)
        .map_err(|e| lame_err("bitrate", e))?;
    builder
        .set_mode(mp3lame_encoder::Mode::Mono)
        .map_err(|e| lame_err("mode", e))?;
    // LAME -q 7 ("fast, ok quality"): 76 µs per 20 ms frame at 64 kbps instead of 143 µs at
    // the default -q 5 (benches/pipeline.rs); speech comes back at 25 dB waveform SNR (22.8 at
    // -q 5, whose noise shaping spends bits perceptually). MP3s are the bulk of a session's
    // end-of-session CPU.
    builder
        .set_quality(mp3lame_encoder::Quality::Ok)
        .map_err(|e| lame_err("quality", e))?;
    builder
        .set_to_write_vbr_tag(true)
        .map_err(|e| lame_err("lame tag", e))?;
    let mut encoder = builder.build().map_err(|e| lame_err("build", e))?;

    let mut out = ByteSink::create(mp3, sealing)?;
    let mut wide: Vec<i32> = Vec::with_capacity(CHUNK);
    let mut pcm: Vec<i16> = Vec::with_capacity(CHUNK);
    let mut coded: Vec<i16> = Vec::with_capacity(CHUNK + 64);
    let mut encoded: Vec<u8> = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(CHUNK));
    let mut total = 0u64;
    // Samples at the MP3's rate handed to LAME, and how many the input stands for.
    let mut sent = 0u64;
    let mut encode = |samples: &[i16], out: &mut ByteSink| -> Result<()> {
        encoded.clear();
        encoded.reserve(mp3lame_encoder::max_required_buffer_size(samples.len()));
        encoder
            .encode_to_vec(MonoPcm(samples), &mut encoded)
            .map_err(|e| lame_err("encode", e))?;
        out.write_all(&encoded)
    };
    while reader.read_chunk(0, &mut wide)? {
        pcm.clear();
        pcm.extend(wide.iter().map(|s| (s >> shift) as i16));
        total += pcm.len() as u64;
        coded.clear();
        resampler
            .process(&pcm, &mut coded)
            .map_err(|e| lame_err("resample", e))?;
        let drop = skip.min(coded.len());
        skip -= drop;
        sent += (coded.len() - drop) as u64;
        encode(&coded[drop..], &mut out)?;
    }
    // The resampler's tail, cut to exactly the input's duration at the MP3's rate.
    coded.clear();
    resampler
        .flush(&mut coded)
        .map_err(|e| lame_err("resample", e))?;
    let drop = skip.min(coded.len());
    let wanted = resampler.expected_output().saturating_sub(sent) as usize;
    let tail = &coded[drop..];
    encode(&tail[..wanted.min(tail.len())], &mut out)?;
    encoded.clear();
    encoded.reserve(mp3lame_encoder::max_required_buffer_size(0));
    encoder
        .flush_to_vec::<FlushGap>(&mut encoded)
        .map_err(|e| lame_err("flush", e))?;
    out.write_all(&encoded)?;

    // The first frame LAME wrote is a placeholder for the tag; fill it in now.
    encoded.clear();
    encoded.reserve(encoder.lame_tag_size());
    if encoder.lame_tag_encode_to_vec(&mut encoded).is_some() {
        out.finish(Some(&encoded))?;
    } else {
        tracing::warn!(path = %mp3.display(), "mp3: no LAME tag written; players may add ~50 ms");
        out.finish(None)?;
    }
    let bytes = crate::track_file::plain_len(mp3)?;
    Ok(TrackInfo {
        path: mp3.to_path_buf(),
        duration_ms: samples_to_ms(total),
        bytes,
    })
}

/// Makes a WAV's header count every whole sample frame in its data chunk, as far as the file
/// goes, and cuts a partly written frame off the end. hound rewrites the header only on flush,
/// so after a crash the header undercounts the data. Returns the bytes recovered (`None`: the
/// header was right). Only a data chunk that ends the file is repaired (hound writes it last).
fn repair_data_length(path: &Path) -> std::io::Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let file_len = f.metadata()?.len();
    let mut head = Vec::with_capacity(4096);
    (&mut f).take(4096).read_to_end(&mut head)?;
    let Some(chunk) = earshot_vocab::wav::find_data_chunk(&head) else {
        return Ok(None);
    };
    let Some(repaired_len) = earshot_vocab::wav::repair_header(&mut head, file_len) else {
        return Ok(None);
    };
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&head[..chunk.start as usize])?;
    f.set_len(repaired_len)?;
    f.sync_data()?;
    Ok(Some(
        (repaired_len - chunk.start).saturating_sub(chunk.declared),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as DeError, StrDeserializer};

    #[test]
    fn presets_map_and_deserialize_lowercase() {
        let parse = |s: &'static str| {
            let d: StrDeserializer<'_, DeError> = s.into_deserializer();
            Quality::deserialize(d)
        };
        assert_eq!(parse("standard").ok(), Some(Quality::Standard));
        assert_eq!(parse("high").ok(), Some(Quality::High));
        assert_eq!(parse("ultra").ok(), Some(Quality::Ultra));
        assert!(parse("High").is_err());
        let map: Vec<(u32, u32, u16)> = [Quality::Standard, Quality::High, Quality::Ultra]
            .iter()
            .map(|p| (p.mp3_bitrate_kbps(), p.mp3_sample_rate(), p.wav_bits()))
            .collect();
        assert_eq!(
            map,
            vec![(64, 24_000, 16), (96, 24_000, 16), (192, 48_000, 24)]
        );
    }

    #[test]
    fn unsupported_bitrate_is_an_error() {
        assert!(lame_bitrate(65).is_err());
        assert!(lame_bitrate(64).is_ok());
    }
}
