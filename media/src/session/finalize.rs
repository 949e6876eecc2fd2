//! The end of a session's recordings: periodic flushes, and the WAVs closed with the mix and
//! MP3s made on the finalizer thread (also for sessions left on disk by a restart).

use super::*;

impl SessionMedia {
    pub(super) fn flush(&mut self) {
        if let Some(rec) = &mut self.recording {
            for w in [&mut rec.participant, &mut rec.ai] {
                if let Err(e) = w.flush() {
                    tracing::warn!(session = %self.id, error = %e, "flushing recording failed");
                }
            }
        }
    }

    /// Finalizes the WAVs, then (off the async threads) builds the mix and the MP3s.
    pub(super) async fn finalize(mut self) {
        let id = self.id.clone();
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
        self.emit(EngineEvent::RecordingsFinished { session_id: id })
            .await;
    }
}

/// Finalizes the tracks a session left on disk without a media task (the process restarted and
/// the session ended without the participant coming back): the flushed WAVs are closed, the
/// mix and MP3s made. Nothing on disk: nothing to report.
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
        participant: TrackWriter::open(participant, req.quality)?,
        ai: TrackWriter::open(ai, req.quality)?,
    })
}

pub(super) fn finalize_files(
    rec: Recording,
) -> Result<Vec<RecordedFile>, crate::recorder::RecorderError> {
    let mut files = Vec::with_capacity(6);
    let participant = rec.participant.finalize()?;
    let ai = rec.ai.finalize()?;
    let mix = crate::recorder::mix_wavs(&participant.path, &ai.path, &rec.dir.join("mix.wav"))?;
    for (track, wav) in [("participant", participant), ("ai", ai), ("mix", mix)] {
        let mp3_path = rec.dir.join(format!("{track}.mp3"));
        let mp3 =
            crate::recorder::encode_mp3(&wav.path, &mp3_path, rec.quality.mp3_bitrate_kbps())?;
        files.push(recorded(track, "wav", wav));
        files.push(recorded(track, "mp3", mp3));
    }
    Ok(files)
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
