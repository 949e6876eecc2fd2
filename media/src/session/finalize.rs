//! The end of a session's recordings: periodic flushes, and the WAVs closed on the finalizer
//! thread (also for sessions left on disk by a restart) with the mix and MP3s made there at
//! once, or later when first asked for ([`derive_file`]). Each WAV gets its waveform peaks
//! (`crate::peaks`) once, when it is finished.

use super::{Recording, SessionTask};
use crate::recorder::{Quality, TrackWriter};
use crate::request::RecordingRequest;
use earshot_vocab::media_port::{MediaEvent, RecordingFile};
use earshot_vocab::{Format, Track};

impl SessionTask {
    pub(super) fn flush(&mut self) {
        if let Some(rec) = &mut self.recording {
            for w in [&mut rec.participant, &mut rec.ai] {
                if let Err(e) = w.flush() {
                    tracing::warn!(session = %self.core.id(), error = %e, "flushing recording failed");
                }
            }
        }
    }

    /// Finalizes the WAVs, then (off the async threads) builds the mix and the MP3s.
    pub(super) async fn finalize(mut self) {
        let id = self.core.id().to_owned();
        if let Some(rec) = self.recording.take() {
            let events = self.events.clone();
            let sid = id.clone();
            // Bulk work: one session at a time, below the real-time path (finalizer.rs).
            let queued = self.metrics.finalize_queued();
            let result = crate::finalizer::run(move || finalize_files(rec)).await;
            let written = match &result {
                Some(Ok(files)) => files.as_slice(),
                _ => &[],
            };
            self.metrics.finalize_done(queued, written);
            let outcome = match result {
                Some(Ok(files)) => Ok(files),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("the finalizer thread failed".to_owned()),
            };
            match outcome {
                Ok(files) => {
                    for file in files {
                        let _ = events
                            .send(MediaEvent::RecordingReady {
                                session_id: sid.clone(),
                                file,
                            })
                            .await;
                    }
                }
                Err(detail) => {
                    tracing::error!(session = %sid, %detail, "finalizing recordings failed");
                    let _ = events
                        .send(MediaEvent::Failed {
                            session_id: sid.clone(),
                            detail,
                        })
                        .await;
                }
            }
        }
        let _ = self
            .events
            .send(MediaEvent::RecordingsFinished { session_id: id })
            .await;
    }
}

/// Finalizes the tracks a session left on disk without a media task (the process restarted and
/// the session ended without the participant coming back): the flushed WAVs are closed (and
/// the mix and MP3s made, unless they are made on request). Nothing on disk: nothing to report.
pub(crate) fn finalize_orphan(
    req: &RecordingRequest,
) -> Result<Vec<RecordingFile>, crate::recorder::RecorderError> {
    let participant = req.dir.join("participant.wav");
    let ai = req.dir.join("ai.wav");
    if !participant.exists() && !ai.exists() {
        return Ok(Vec::new());
    }
    finalize_files(Recording {
        dir: req.dir.clone(),
        quality: req.quality,
        derive_at_end: req.derive_at_end,
        sealing: req.sealing.clone(),
        participant: TrackWriter::open(participant, req.quality, req.sealing.as_ref())?,
        ai: TrackWriter::open(ai, req.quality, req.sealing.as_ref())?,
    })
}

pub(super) fn finalize_files(
    rec: Recording,
) -> Result<Vec<RecordingFile>, crate::recorder::RecorderError> {
    let mut files = Vec::with_capacity(2 + DERIVED.len());
    let sealing = rec.sealing.as_ref();
    let participant = rec.participant.finalize()?;
    crate::peaks::store(&participant.path, sealing);
    files.push(recorded(Track::Participant, Format::Wav, participant));
    let ai = rec.ai.finalize()?;
    crate::peaks::store(&ai.path, sealing);
    files.push(recorded(Track::Ai, Format::Wav, ai));
    if rec.derive_at_end {
        for (track, format) in DERIVED {
            files.push(derive_file(&rec.dir, rec.quality, track, format, sealing)?);
        }
    }
    Ok(files)
}

/// The files made from a session's two tracks, in an order that makes each one's input first.
pub(crate) const DERIVED: [(Track, Format); 4] = [
    (Track::Mix, Format::Wav),
    (Track::Participant, Format::Mp3),
    (Track::Ai, Format::Mp3),
    (Track::Mix, Format::Mp3),
];

/// Makes one derived file from the finalized tracks in `dir`. It is written under a temporary
/// name and renamed, so a reader never sees a partial file.
pub(crate) fn derive_file(
    dir: &std::path::Path,
    quality: Quality,
    track: Track,
    format: Format,
    sealing: Option<&crate::recorder::Sealing>,
) -> Result<RecordingFile, crate::recorder::RecorderError> {
    use crate::recorder::{RecorderError, encode_mp3, mix_wavs};
    let wav = |t: Track| dir.join(t.file_name(Format::Wav));
    let out = dir.join(track.file_name(format));
    let part = dir.join(format!("{}.part", track.file_name(format)));
    let info = match (track, format) {
        (Track::Mix, Format::Wav) => {
            mix_wavs(&wav(Track::Participant), &wav(Track::Ai), &part, sealing)?
        }
        (_, Format::Mp3) => {
            if track == Track::Mix && !wav(Track::Mix).exists() {
                derive_file(dir, quality, Track::Mix, Format::Wav, sealing)?;
            }
            encode_mp3(&wav(track), &part, quality.into(), sealing)?
        }
        (Track::Participant | Track::Ai, Format::Wav) => {
            return Err(RecorderError::Unsupported(format!(
                "{} is recorded, not made from the tracks",
                track.file_name(format)
            )));
        }
    };
    std::fs::rename(&part, &out)?;
    if format == Format::Wav {
        crate::peaks::store(&out, sealing);
    }
    Ok(recorded(
        track,
        format,
        crate::recorder::TrackInfo { path: out, ..info },
    ))
}

pub(super) fn recorded(
    track: Track,
    format: Format,
    info: crate::recorder::TrackInfo,
) -> RecordingFile {
    RecordingFile {
        track,
        format,
        path: info.path,
        duration_ms: info.duration_ms,
        bytes: info.bytes,
    }
}
