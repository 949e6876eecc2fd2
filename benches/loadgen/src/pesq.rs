//! PESQ-WB of the AI audio at the client, for a sample of sessions (`--pesq-sessions`).
//!
//! The first N sessions to connect keep the AI packets their participant receives
//! ([`Capture`]); no other participant keeps or decodes anything, so the figures of the rest
//! do not move. After the run each kept stream is played as a browser would
//! ([`heard_at_16k`]: a reorder wait, in-band FEC or concealment for what is lost, Opus
//! decoded at 48 kHz, placed by RTP timestamp), resampled to 16 kHz, and each source talk is
//! found in it (align.rs) and scored against the source with PESQ-WB (ITU-T P.862.2) by
//! `scripts/pesq_wb.py` (PyPI `pesq`), all talks in one batch.
//!
//! The sources are 16 kHz: with `--agent` the talks the test agent sent (agent.rs), without
//! it the built-in interviewer's prompt files the server plays.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use earshot_media::codec::ParticipantDecoder;
use earshot_media::jitter::JitterBuffer;
use earshot_media::peer::RtpAudioPacket;
use earshot_media::resample::StreamResampler;
use serde::Serialize;

use super::align::find_talks;
use super::stats::percentile;

/// Opus' clock and the rate PESQ-WB scores at.
const DECODE_HZ: u32 = 48_000;
const PESQ_HZ: u32 = 16_000;
/// The client's reorder wait adapts between these, as a browser's jitter buffer starts at
/// about one frame and grows with the network's reordering.
const CLIENT_MIN_WAIT: Duration = Duration::from_millis(20);
const CLIENT_MAX_WAIT: Duration = Duration::from_millis(120);
/// Silence around each talk scored, as P.862 wants speech with silence before and after: the
/// reference gets digital silence, the degraded side what the client heard there.
const PAD: usize = PESQ_HZ as usize / 2;
/// Audio placed further than this from the stream's first packet is a broken timestamp.
const MAX_PLACED_SAMPLES: usize = DECODE_HZ as usize * 3600;

pub const INSTALL_HINT: &str = "bash scripts/install-deps.sh --quality";

/// The AI packets of the sampled sessions.
pub struct Capture {
    wanted: usize,
    claimed: AtomicUsize,
    heard: Mutex<Vec<Vec<RtpAudioPacket>>>,
}

impl Capture {
    pub fn new(wanted: usize) -> Self {
        Self {
            wanted,
            claimed: AtomicUsize::new(0),
            heard: Mutex::new(Vec::new()),
        }
    }

    /// Whether the session that just connected is one of the sample (the first N to connect).
    pub fn claim(&self) -> bool {
        self.claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.wanted).then_some(n + 1)
            })
            .is_ok()
    }

    /// A sampled session is over: its AI packets, in arrival order.
    pub fn keep(&self, packets: Vec<RtpAudioPacket>) {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(packets);
    }

    fn take(&self) -> Vec<Vec<RtpAudioPacket>> {
        std::mem::take(&mut *self.heard.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The AI audio as the participant's browser plays it, at 16 kHz (see the module docs).
pub fn heard_at_16k(packets: &[RtpAudioPacket]) -> anyhow::Result<Vec<i16>> {
    let mut jitter = JitterBuffer::adaptive(CLIENT_MIN_WAIT, CLIENT_MAX_WAIT);
    let mut decoder = ParticipantDecoder::new().context("opus decoder")?;
    let mut at_48k: Vec<i16> = Vec::new();
    let mut first_timestamp: Option<u32> = None;
    let mut play = |jitter: &mut JitterBuffer, now| {
        while let Some(out) = jitter.poll(now) {
            let frame = decoder.decode(out);
            let first = *first_timestamp.get_or_insert(frame.timestamp);
            let at = frame.timestamp.wrapping_sub(first) as usize;
            if at > MAX_PLACED_SAMPLES {
                continue;
            }
            if at_48k.len() < at + frame.pcm.len() {
                at_48k.resize(at + frame.pcm.len(), 0);
            }
            at_48k[at..at + frame.pcm.len()].copy_from_slice(frame.pcm);
        }
    };
    for p in packets {
        play(&mut jitter, p.arrival);
        jitter.push(p.sequence, p.timestamp, p.payload.clone(), p.arrival);
        play(&mut jitter, p.arrival);
    }
    if let Some(last) = packets.last() {
        play(&mut jitter, last.arrival + Duration::from_secs(1));
    }
    let mut down = StreamResampler::new(DECODE_HZ, PESQ_HZ).context("resampler")?;
    let delay = down.delay();
    let mut out = Vec::with_capacity(at_48k.len() / 3 + delay);
    down.process(&at_48k, &mut out).context("resampling")?;
    let expected = usize::try_from(down.expected_output()).context("track length")?;
    down.flush(&mut out).context("resampling")?;
    // Without the resampler's filter delay (sample i is the audio of time i) and the flush's
    // padding past the end.
    out.drain(..delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}

/// The 16 kHz mono 16-bit WAVs of `dir`, in file name order (the built-in prompts).
pub fn read_prompts(dir: &Path) -> anyhow::Result<Vec<Vec<i16>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the prompts directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("the prompts directory {} holds no .wav file", dir.display());
    }
    paths
        .iter()
        .map(|path| {
            let mut r = hound::WavReader::open(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let spec = r.spec();
            if spec.sample_rate != PESQ_HZ || spec.channels != 1 || spec.bits_per_sample != 16 {
                bail!("{}: want 16 kHz mono 16-bit", path.display());
            }
            r.samples::<i16>()
                .collect::<Result<Vec<i16>, _>>()
                .with_context(|| format!("reading {}", path.display()))
        })
        .collect()
}

/// Fails with the install command when `python3` cannot score PESQ-WB.
pub fn check_scorer(script: &Path) -> anyhow::Result<()> {
    if !script.is_file() {
        bail!(
            "PESQ-WB: the scorer {} is not there (run from the repository root, or give \
             --pesq-script; --pesq-sessions 0 turns PESQ off)",
            script.display()
        );
    }
    let ok = Command::new("python3")
        .args(["-c", "import numpy, pesq"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!(
            "PESQ-WB needs python3 with the PyPI packages numpy and pesq: run `{INSTALL_HINT}` \
             (or give --pesq-sessions 0)"
        );
    }
    Ok(())
}

/// The PESQ-WB part of the report.
#[derive(Debug, Default, Serialize)]
pub struct PesqReport {
    /// Sessions asked for (`--pesq-sessions`) and those whose audio was kept.
    pub sessions_wanted: usize,
    pub sessions_sampled: usize,
    /// Source talks found in the sampled sessions' audio, and those PESQ scored.
    pub talks_found: usize,
    pub talks_scored: usize,
    pub median: Option<f64>,
    pub min: Option<f64>,
    /// Every score, by sampled session.
    pub scores: Vec<Vec<f64>>,
    pub reference: String,
    pub note: String,
}

impl PesqReport {
    /// Not measured, and why.
    pub fn not_measured(sessions_wanted: usize, note: impl Into<String>) -> Self {
        Self {
            sessions_wanted,
            note: note.into(),
            ..Self::default()
        }
    }
}

fn write_wav(path: &Path, pcm: &[i16]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: PESQ_HZ,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("writing {}", path.display()))?;
    for s in pcm {
        w.write_sample(*s)?;
    }
    w.finalize()
        .with_context(|| format!("writing {}", path.display()))
}

/// Scores (reference, degraded) WAV pairs with the script; one score per pair (NaN where
/// PESQ found no speech).
fn run_scorer(script: &Path, dir: &Path, pairs: &[(PathBuf, PathBuf)]) -> anyhow::Result<Vec<f64>> {
    let list = dir.join("pairs.tsv");
    let text: String = pairs
        .iter()
        .map(|(r, d)| format!("{}\t{}\n", r.display(), d.display()))
        .collect();
    std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    let out = Command::new("python3")
        .arg(script)
        .arg(&list)
        .output()
        .context("running python3 (PESQ-WB)")?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {} - `{INSTALL_HINT}` installs what it needs",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let scores: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(f64::NAN))
        .collect();
    if scores.len() != pairs.len() {
        bail!(
            "{} gave {} scores for {} pairs",
            script.display(),
            scores.len(),
            pairs.len()
        );
    }
    Ok(scores)
}

/// Decodes the sampled sessions, finds the `sources` (16 kHz talks) in them and scores every
/// talk found; `reference` says what the sources are. The WAVs scored are kept in `keep`
/// when given (`source-<i>.wav`, `heard-<session>.wav` (the whole track),
/// `heard-<session>-<talk>.wav`, `pairs.tsv`), else written to
/// a temporary directory and removed.
pub fn score(
    capture: &Capture,
    sources: &[Vec<i16>],
    script: &Path,
    reference: &str,
    keep: Option<&Path>,
) -> anyhow::Result<PesqReport> {
    let sessions = capture.take();
    let dir = keep.map_or_else(
        || std::env::temp_dir().join(format!("earshot-loadgen-pesq-{}", std::process::id())),
        Path::to_path_buf,
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = score_in(&sessions, sources, script, &dir);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (talks_found, scores) = result?;
    let all: Vec<f64> = scores
        .iter()
        .flatten()
        .copied()
        .filter(|s| s.is_finite())
        .collect();
    Ok(PesqReport {
        sessions_wanted: capture.wanted,
        sessions_sampled: sessions.len(),
        talks_found,
        talks_scored: all.len(),
        median: percentile(&all, 50.0).map(round2),
        min: all.iter().copied().reduce(f64::min).map(round2),
        scores: scores
            .into_iter()
            .map(|s| s.into_iter().map(round2).collect())
            .collect(),
        reference: reference.to_owned(),
        note: "PESQ-WB (P.862.2, PyPI pesq) of each source talk found in a sampled session's \
               AI audio as its client plays it (adaptive reorder wait, FEC/PLC, Opus decoded \
               at 48 kHz, resampled to 16 kHz) with 0.5 s of what was heard before and after it, \
               against the 16 kHz source between 0.5 s of silence; median and minimum \
               over the talks of all sampled sessions"
            .to_owned(),
    })
}

fn score_in(
    sessions: &[Vec<RtpAudioPacket>],
    sources: &[Vec<i16>],
    script: &Path,
    dir: &Path,
) -> anyhow::Result<(usize, Vec<Vec<f64>>)> {
    let mut source_paths = Vec::with_capacity(sources.len());
    for (i, s) in sources.iter().enumerate() {
        let path = dir.join(format!("source-{i}.wav"));
        let mut padded = vec![0i16; PAD];
        padded.extend_from_slice(s);
        padded.resize(padded.len() + PAD, 0);
        write_wav(&path, &padded)?;
        source_paths.push(path);
    }
    let mut pairs = Vec::new();
    let mut per_session = Vec::with_capacity(sessions.len());
    for (k, packets) in sessions.iter().enumerate() {
        let heard = heard_at_16k(packets)?;
        write_wav(&dir.join(format!("heard-{k}.wav")), &heard)?;
        let talks = find_talks(&heard, sources);
        per_session.push(talks.len());
        for (t, m) in talks.iter().enumerate() {
            let path = dir.join(format!("heard-{k}-{t}.wav"));
            write_wav(
                &path,
                &padded_talk(&heard, m.start, sources[m.source].len()),
            )?;
            pairs.push((source_paths[m.source].clone(), path));
        }
    }
    let mut scores = if pairs.is_empty() {
        Vec::new()
    } else {
        run_scorer(script, dir, &pairs)?
    }
    .into_iter();
    let by_session = per_session
        .iter()
        .map(|n| scores.by_ref().take(*n).collect())
        .collect();
    Ok((pairs.len(), by_session))
}

/// `len` samples of `heard` from `start`, with [`PAD`] samples of what was heard before and
/// after (silence where the track ends).
fn padded_talk(heard: &[i16], start: usize, len: usize) -> Vec<i16> {
    let mut out = vec![0i16; PAD.saturating_sub(start)];
    let end = (start + len + PAD).min(heard.len());
    out.extend_from_slice(&heard[start.saturating_sub(PAD)..end]);
    out.resize(len + 2 * PAD, 0);
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tone sent as Opus, one packet lost and two swapped on the way: the client's audio is
    /// as long as what was sent, starts where it did (within the codec's delay) and is the tone.
    #[test]
    fn the_client_plays_what_was_sent_in_order_and_conceals_a_loss() {
        use earshot_media::codec::{FRAME_SAMPLES, OpusEncoder, OpusSettings};
        let frames = 100;
        let tone = |rate: f64, n: usize| -> Vec<i16> {
            (0..n)
                .map(|i| {
                    let t = i as f64 / rate;
                    let syllable = (t * 2.0 * std::f64::consts::PI * 2.0).sin().max(0.0);
                    ((2.0 * std::f64::consts::PI * 300.0 * t).sin() * syllable * 8_000.0) as i16
                })
                .collect()
        };
        let sent = tone(48_000.0, frames * FRAME_SAMPLES);
        let mut enc = OpusEncoder::new(OpusSettings::default()).unwrap();
        let t0 = std::time::Instant::now();
        let mut packets: Vec<RtpAudioPacket> = sent
            .chunks_exact(FRAME_SAMPLES)
            .enumerate()
            .map(|(i, f)| RtpAudioPacket {
                sequence: 1_000 + i as u16,
                timestamp: 7 + (i * FRAME_SAMPLES) as u32,
                payload: enc.encode(f.try_into().unwrap()).unwrap(),
                arrival: t0 + Duration::from_millis(20 * i as u64),
            })
            .collect();
        packets.remove(40);
        packets.swap(60, 61);
        let heard = heard_at_16k(&packets).unwrap();
        assert_eq!(heard.len(), frames * FRAME_SAMPLES / 3);
        let source = tone(16_000.0, heard.len() - 400);
        let a = crate::align::align(&source, &heard, 400).unwrap();
        assert!(a.lag < 200, "{a:?}");
        assert!(a.correlation > 0.9, "{a:?}");
        assert!((a.gain - 1.0).abs() < 0.2, "{a:?}");
    }

    #[test]
    fn a_talk_is_cut_with_what_was_heard_around_it() {
        let heard: Vec<i16> = (1..=20_000).map(|i| i as i16).collect();
        let t = padded_talk(&heard, 10_000, 1_000);
        assert_eq!(t.len(), 1_000 + 2 * PAD);
        assert_eq!(t[PAD], 10_001);
        assert_eq!(t[0], 10_001 - PAD as i16);
        assert_eq!(*t.last().unwrap(), 10_000 + 1_000 + PAD as i16);
        // Near the start and the end of the track: silence where nothing was heard.
        let t = padded_talk(&heard, 100, 19_850);
        assert_eq!(t.len(), 19_850 + 2 * PAD);
        assert!(t[..PAD - 100].iter().all(|s| *s == 0));
        assert_eq!(t[PAD], 101);
        assert_eq!(t[PAD + 19_850 + 49], 20_000);
        assert!(t[PAD + 19_850 + 50..].iter().all(|s| *s == 0));
    }
}
