//! Recording files on disk, plain or sealed (encrypted at rest with `earshot-sealed`): the
//! sample sink a track or mix is written through ([`PcmSink`]), the byte sink of an MP3
//! ([`ByteSink`]) and the sample source every reader opens a WAV with ([`open_pcm`]).
//!
//! A sealed WAV stores only its samples ([`Content::Pcm`]); the 44-byte header is rebuilt
//! from the sealed header's authenticated fields when it is read, because a WAV header is
//! rewritten in place as the file grows, which an append-only sealed stream cannot do, and
//! so no `RIFF`/`WAVE` bytes are ever on disk. Which kind a file is comes from its first
//! bytes (the sealed magic), so plain files made before encryption was on stay readable.

use crate::recorder::{RecorderError, Result};
use crate::units::SAMPLE_RATE;
use earshot_sealed::{Content, KeyRing, SealedReader, SealedWriter};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// How recording files are sealed: the key ring sealed files open with, and whether new
/// files are sealed (`[encryption] enabled`; with it off, files sealed before still open).
#[derive(Debug, Clone)]
pub struct Sealing {
    pub keys: Arc<KeyRing>,
    pub seal_new: bool,
}

/// The key ring of new files, when they are to be sealed.
fn sealing_keys(sealing: Option<&Sealing>) -> Option<&KeyRing> {
    sealing.filter(|s| s.seal_new).map(|s| &*s.keys)
}

fn pcm_content(bits: u16) -> Content {
    Content::Pcm {
        channels: 1,
        bits: bits as u8,
        sample_rate: SAMPLE_RATE,
    }
}

/// Whether the file at `path` is sealed (starts with the sealed magic).
pub fn is_sealed_file(path: &Path) -> Result<bool> {
    let mut head = [0u8; earshot_sealed::MAGIC.len()];
    let mut f = File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(earshot_sealed::is_sealed(&head[..got]))
}

/// The length of the file at `path` as it is read (a sealed file: its plaintext's, WAV
/// header included): the size a download of it has.
pub(crate) fn plain_len(path: &Path) -> Result<u64> {
    match earshot_sealed::plaintext_len(path).map_err(|e| sealed_err(path, e))? {
        Some(len) => Ok(len),
        None => Ok(std::fs::metadata(path)?.len()),
    }
}

fn sealed_err(path: &Path, e: earshot_sealed::SealError) -> RecorderError {
    RecorderError::Sealed(format!("{}: {e}", path.display()))
}

fn ring_for<'a>(sealing: Option<&'a Sealing>, path: &Path) -> Result<&'a KeyRing> {
    sealing.map(|s| &*s.keys).ok_or_else(|| {
        RecorderError::Sealed(format!(
            "{} is encrypted and no master key is configured",
            path.display()
        ))
    })
}

/// Where a WAV's samples go: a hound WAV writer, or a sealed file of the samples.
pub(crate) enum PcmSink {
    Plain(hound::WavWriter<BufWriter<File>>),
    Sealed { writer: SealedWriter, bits: u16 },
}

impl PcmSink {
    /// Creates (or truncates) the file at `path`: sealed when `sealing` says new files are.
    pub fn create(path: &Path, bits: u16, sealing: Option<&Sealing>) -> Result<PcmSink> {
        Ok(match sealing_keys(sealing) {
            Some(ring) => PcmSink::Sealed {
                writer: SealedWriter::create(path, ring, pcm_content(bits))
                    .map_err(|e| sealed_err(path, e))?,
                bits,
            },
            None => PcmSink::Plain(hound::WavWriter::create(
                path,
                crate::recorder::wav_spec(bits),
            )?),
        })
    }

    /// Continues the sealed file at `path` (after a restart): its bit depth and the samples
    /// it holds; a torn last chunk is dropped.
    pub fn append_sealed(path: &Path, sealing: Option<&Sealing>) -> Result<(PcmSink, u64)> {
        let writer = SealedWriter::append(path, ring_for(sealing, path)?)
            .map_err(|e| sealed_err(path, e))?;
        let Content::Pcm {
            channels: 1,
            bits: bits @ (16 | 24),
            sample_rate: SAMPLE_RATE,
        } = writer.content()
        else {
            return Err(RecorderError::Unsupported(format!(
                "{}: sealed content is not a 48 kHz mono track",
                path.display()
            )));
        };
        let bits = u16::from(bits);
        let samples = writer.len() / u64::from(bits / 8);
        Ok((PcmSink::Sealed { writer, bits }, samples))
    }

    /// Writes 16-bit samples into a sink of `bits` (16, or 24: shifted up).
    pub fn write_i16(&mut self, pcm: &[i16], bits: u16) -> Result<()> {
        match self {
            PcmSink::Plain(w) if bits == 24 => {
                for &s in pcm {
                    w.write_sample(i32::from(s) << 8)?;
                }
            }
            PcmSink::Plain(w) => {
                for &s in pcm {
                    w.write_sample(s)?;
                }
            }
            PcmSink::Sealed { writer, bits } => {
                // Through a buffer on the stack: this runs for every frame of every track.
                const STEP: usize = 480;
                let width = usize::from(*bits / 8);
                let shift = *bits - 16;
                let mut bytes = [0u8; STEP * 3];
                for part in pcm.chunks(STEP) {
                    for (dst, &s) in bytes.chunks_exact_mut(width).zip(part) {
                        dst.copy_from_slice(&(i32::from(s) << shift).to_le_bytes()[..width]);
                    }
                    writer.write_all(&bytes[..part.len() * width])?;
                }
            }
        }
        Ok(())
    }

    /// Writes one sample of the sink's depth.
    #[inline]
    pub fn write_sample(&mut self, s: i32) -> Result<()> {
        match self {
            PcmSink::Plain(w) => w.write_sample(s)?,
            PcmSink::Sealed { writer, bits } => {
                let b = s.to_le_bytes();
                writer.write_all(&b[..usize::from(*bits / 8)])?;
            }
        }
        Ok(())
    }

    /// After this the file holds everything written (a plain WAV's header rewritten; a
    /// sealed file's buffer sealed as a chunk).
    pub fn flush(&mut self) -> Result<()> {
        match self {
            PcmSink::Plain(w) => w.flush()?,
            PcmSink::Sealed { writer, .. } => writer.flush()?,
        }
        Ok(())
    }

    pub fn finalize(self) -> Result<()> {
        match self {
            PcmSink::Plain(w) => w.finalize()?,
            PcmSink::Sealed { writer, .. } => writer
                .finish()
                .map_err(|e| RecorderError::Sealed(format!("finishing a sealed track: {e}")))?,
        }
        Ok(())
    }
}

/// A WAV's samples opened for reading: the source of its little-endian sample bytes, its bit
/// depth and channel count, sample rate and number of sample frames.
pub(crate) struct PcmSource {
    pub bytes: Box<dyn Read + Send>,
    pub spec: hound::WavSpec,
    pub frames: u64,
}

/// Opens a recording WAV, plain or sealed, for its samples.
pub(crate) fn open_pcm(path: &Path, sealing: Option<&Sealing>) -> Result<PcmSource> {
    if !is_sealed_file(path)? {
        let reader = hound::WavReader::open(path)?;
        let spec = reader.spec();
        let frames = u64::from(reader.duration());
        return Ok(PcmSource {
            bytes: Box::new(reader.into_inner()),
            spec,
            frames,
        });
    }
    let reader = SealedReader::open(File::open(path)?, ring_for(sealing, path)?)
        .map_err(|e| sealed_err(path, e))?;
    if !reader.is_finished() {
        tracing::warn!(path = %path.display(), "recording: sealed track unfinished (a crash?); reading its whole chunks");
    }
    let Content::Pcm {
        channels,
        bits,
        sample_rate,
    } = reader.content()
    else {
        return Err(RecorderError::Unsupported(format!(
            "{}: sealed content is not PCM",
            path.display()
        )));
    };
    let spec = hound::WavSpec {
        channels: u16::from(channels),
        sample_rate,
        bits_per_sample: u16::from(bits),
        sample_format: hound::SampleFormat::Int,
    };
    let frame_bytes = u64::from(channels) * u64::from(bits).div_ceil(8);
    let frames = reader.body_len() / frame_bytes.max(1);
    Ok(PcmSource {
        bytes: Box::new(BufReader::with_capacity(64 * 1024, reader.body())),
        spec,
        frames,
    })
}

/// Writes `bytes` as the whole file at `path`, sealed if `sealing` seals new files (a
/// recording's waveform peaks: an outline of the voice, kept like the voice).
pub(crate) fn write_whole(path: &Path, bytes: &[u8], sealing: Option<&Sealing>) -> Result<()> {
    let mut sink = ByteSink::create(path, sealing)?;
    sink.write_all(bytes)?;
    sink.finish(None)
}

/// Where an MP3's bytes go: the file itself, or (sealed) a sealed file of them. The LAME tag
/// is written over the first frame at the end; a sealed stream cannot be rewritten, so a
/// sealed MP3 is first sealed into a `.body` file beside it and then copied behind the tag
/// into the final sealed file (MP3s are small: a few percent of the WAV they come from).
pub(crate) enum ByteSink {
    Plain(BufWriter<File>),
    Sealed {
        body: SealedWriter,
        body_path: std::path::PathBuf,
        path: std::path::PathBuf,
        ring: Arc<KeyRing>,
    },
}

impl ByteSink {
    pub fn create(path: &Path, sealing: Option<&Sealing>) -> Result<ByteSink> {
        Ok(match sealing.filter(|s| s.seal_new) {
            Some(s) => {
                let body_path = path.with_extension("body");
                ByteSink::Sealed {
                    body: SealedWriter::create(&body_path, &s.keys, Content::Bytes)
                        .map_err(|e| sealed_err(path, e))?,
                    body_path,
                    path: path.to_path_buf(),
                    ring: s.keys.clone(),
                }
            }
            None => ByteSink::Plain(BufWriter::new(
                File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)?,
            )),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            ByteSink::Plain(w) => w.write_all(bytes)?,
            ByteSink::Sealed { body, .. } => body.write_all(bytes)?,
        }
        Ok(())
    }

    /// Ends the file with `head` written over its first `head.len()` bytes (the LAME tag),
    /// or as it is with `None`.
    pub fn finish(self, head: Option<&[u8]>) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        match self {
            ByteSink::Plain(mut out) => {
                if let Some(head) = head {
                    out.seek(SeekFrom::Start(0))?;
                    out.write_all(head)?;
                }
                out.flush()?;
            }
            ByteSink::Sealed {
                body,
                body_path,
                path,
                ring,
            } => {
                let err = |e| sealed_err(&path, e);
                body.finish().map_err(err)?;
                let reader = SealedReader::open(File::open(&body_path)?, &ring).map_err(err)?;
                let len = reader.plaintext_len();
                let skip = head.map_or(0, |h| h.len() as u64).min(len);
                let mut rest = reader.range(skip, len);
                let mut out = SealedWriter::create(&path, &ring, Content::Bytes).map_err(err)?;
                if let Some(head) = head {
                    out.write_all(head)?;
                }
                while let Some(piece) = rest.next_piece().map_err(err)? {
                    out.write_all(&piece)?;
                }
                out.finish().map_err(err)?;
                std::fs::remove_file(&body_path)?;
            }
        }
        Ok(())
    }
}
