//! The end of a session's recordings: periodic flushes, and the WAVs closed on the finalizer
//! thread (also for sessions left on disk by a restart) with the mix and MP3s made there at
//! once, or later when first asked for ([`derive_file`]).

use super::{Recording, SessionTask};
use crate::engine::{EngineEvent, RecordedFile, RecordingRequest};
use crate::recorder::{QualityPreset, TrackWriter};

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
            self.metrics.finalize_queued();
            let result = crate::finalizer::run(move || finalize_files(rec)).await;
            self.metrics.finalize_done();
            let outcome = match result {
                Some(Ok(files)) => Ok(files),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("the finalizer thread failed".to_owned()),
            };
            match outcome {
                Ok(files) => {
                    for file in files {
                        let _ = events
                            .send(EngineEvent::RecordingReady {
                                session_id: sid.clone(),
                                file,
                            })
                            .await;
                    }
                }
                Err(detail) => {
                    tracing::error!(session = %sid, %detail, "finalizing recordings failed");
                    let _ = events
                        .send(EngineEvent::Failed {
                            session_id: sid.clone(),
                            detail,
                        })
                        .await;
                }
            }
        }
        let _ = self
            .events
            .send(EngineEvent::RecordingsFinished { session_id: id })
            .await;
    }
}

/// Finalizes the tracks a session left on disk without a media task (the process restarted and
/// the session ended without the participant coming back): the flushed WAVs are closed (and
/// the mix and MP3s made, unless they are made on request). Nothing on disk: nothing to report.
pub(crate) fn finalize_orphan(
    req: &RecordingRequest,
) -> Result<Vec<RecordedFile>, crate::recorder::RecorderError> {
    let participant = req.dir.join("participant.wav");
    let ai = req.dir.join("ai.wav");
    if !participant.exists() && !ai.exists() {
        return Ok(Vec::new());
    }
    finalize_files(Recording {
        dir: req.dir.clone(),
        quality: req.quality,
        derive_at_end: req.derive_at_end,
        participant: TrackWriter::open(participant, req.quality)?,
        ai: TrackWriter::open(ai, req.quality)?,
    })
}

pub(super) fn finalize_files(
    rec: Recording,
) -> Result<Vec<RecordedFile>, crate::recorder::RecorderError> {
    let mut files = Vec::with_capacity(2 + DERIVED.len());
    files.push(recorded("participant", "wav", rec.participant.finalize()?));
    files.push(recorded("ai", "wav", rec.ai.finalize()?));
    if rec.derive_at_end {
        for (track, format) in DERIVED {
            files.push(derive_file(&rec.dir, rec.quality, track, format)?);
        }
    }
    Ok(files)
}

/// The files made from a session's two tracks, in an order that makes each one's input first.
pub(crate) const DERIVED: [(&str, &str); 4] = [
    ("mix", "wav"),
    ("participant", "mp3"),
    ("ai", "mp3"),
    ("mix", "mp3"),
];

/// Makes one derived file from the finalized tracks in `dir`. It is written under a temporary
/// name and renamed, so a reader never sees a partial file.
pub(crate) fn derive_file(
    dir: &std::path::Path,
    quality: QualityPreset,
    track: &str,
    format: &str,
) -> Result<RecordedFile, crate::recorder::RecorderError> {
    use crate::recorder::{RecorderError, encode_mp3, mix_wavs};
    let wav = |t: &str| dir.join(format!("{t}.wav"));
    let out = dir.join(format!("{track}.{format}"));
    let part = dir.join(format!("{track}.{format}.part"));
    let info = match (track, format) {
        ("mix", "wav") => mix_wavs(&wav("participant"), &wav("ai"), &part)?,
        ("participant" | "ai" | "mix", "mp3") => {
            if track == "mix" && !wav("mix").exists() {
                derive_file(dir, quality, "mix", "wav")?;
            }
            encode_mp3(&wav(track), &part, quality.mp3_bitrate_kbps())?
        }
        _ => {
            return Err(RecorderError::Unsupported(format!(
                "{track}.{format} is not made from the tracks"
            )));
        }
    };
    std::fs::rename(&part, &out)?;
    Ok(recorded(
        track,
        format,
        crate::recorder::TrackInfo { path: out, ..info },
    ))
}

pub(super) fn recorded(
    track: &str,
    format: &str,
    info: crate::recorder::TrackInfo,
) -> RecordedFile {
    RecordedFile {
        track: track.into(),
        format: format.into(),
        path: info.path,
        duration_ms: info.duration_ms,
        bytes: info.bytes,
    }
}
