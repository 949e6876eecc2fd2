//! Recordings (F3): the rows of the files the media plane finished, the mix and MP3s made on
//! first request (`[recording] derive = "on_request"`), and downloads streamed from the blob
//! store by session id and file name.

use super::SessionService;
use crate::blob_store::{Blob, BlobKey};
use crate::byte_range::ByteRange;
use crate::error::ApiError;
use crate::media_port::RecordingFile;
use crate::store::RecordingRow;
use earshot_vocab::{Format, Track};

fn recording_not_found() -> ApiError {
    ApiError::not_found("recording_not_found", "no such recording")
}

/// A blob store failure as the API says it: an encrypted file that does not open is
/// `500 recording_unreadable` naming why (which key it needs, or that it was tampered with);
/// anything else is internal.
fn blob_error(context: &str, e: crate::blob_store::BlobError) -> ApiError {
    match e {
        crate::blob_store::BlobError::Sealed(why) => {
            tracing::error!(%why, "{context}");
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "recording_unreadable",
                format!("the recording is encrypted and cannot be opened: {why}"),
            )
        }
        other => ApiError::internal(context, other),
    }
}

impl SessionService {
    /// Stores the row of a file the media plane finished.
    pub(super) async fn store_recording(&self, session_id: &str, file: RecordingFile) {
        let row = self.recording_row(session_id, file);
        if let Err(e) = self.store.upsert_recording(&row).await {
            tracing::error!(session = %session_id, error = %e, "storing recording row failed");
        }
    }

    /// The stored row of a file the media plane finished.
    fn recording_row(&self, session_id: &str, file: RecordingFile) -> RecordingRow {
        RecordingRow {
            session_id: session_id.to_owned(),
            track: file.track,
            format: file.format,
            path: file.path.to_string_lossy().into_owned(),
            duration_ms: i64::try_from(file.duration_ms).unwrap_or(i64::MAX),
            bytes: i64::try_from(file.bytes).unwrap_or(i64::MAX),
            created_at: self.now().0,
        }
    }

    /// One recording of a session (`track` participant, ai or mix; `format` wav or mp3),
    /// opened for streaming. A derived file not made yet is made first.
    pub async fn recording(
        &self,
        id: &str,
        track: Track,
        format: Format,
    ) -> Result<Blob, ApiError> {
        self.recording_range(id, track, format, None).await
    }

    /// As [`Self::recording`], all of it or `range` (HTTP range requests).
    pub async fn recording_range(
        &self,
        id: &str,
        track: Track,
        format: Format,
        range: Option<ByteRange>,
    ) -> Result<Blob, ApiError> {
        let stored = self
            .store
            .recordings(id)
            .await?
            .into_iter()
            .find(|r| r.track == track && r.format == format);
        // The mix and the MP3s may be made on first request (`[recording] derive`).
        let derived = track == Track::Mix || format == Format::Mp3;
        let rec = match stored {
            Some(rec) => rec,
            None if self.recordings_deleted_at(id).await?.is_some() => {
                return Err(ApiError::new(
                    axum::http::StatusCode::GONE,
                    "recordings_deleted",
                    "the retention policy deleted this session's recordings",
                ));
            }
            None if derived => self
                .derive_recording(id, track, format)
                .await?
                .ok_or_else(recording_not_found)?,
            None => return Err(recording_not_found()),
        };
        let key =
            BlobKey::new(id, &rec.track.file_name(rec.format)).ok_or_else(recording_not_found)?;
        match self.blobs.open_range(&key, range).await {
            Ok(Some(blob)) => Ok(blob),
            // A row without its file: something removed it behind the service's back.
            Ok(None) => Err(ApiError::internal(
                "opening recording",
                format!("{} of {id} is listed but missing", key.name()),
            )),
            Err(e) => Err(blob_error("opening recording", e)),
        }
    }

    /// The waveform peaks the media plane stored beside a finished WAV track
    /// (`<track>.peaks.json`), opened for streaming.
    pub async fn peaks(&self, id: &str, track: Track) -> Result<Blob, ApiError> {
        let not_found = || ApiError::not_found("peaks_not_found", "no waveform for this track");
        self.session(id).await?;
        let key = BlobKey::new(id, &format!("{track}.peaks.json")).ok_or_else(not_found)?;
        match self.blobs.open(&key).await {
            Ok(Some(blob)) => Ok(blob),
            Ok(None) => Err(not_found()),
            Err(e) => Err(blob_error("opening peaks", e)),
        }
    }

    /// Makes a finished session's derived recording (`mix.wav`, a track's `.mp3`) that is not
    /// there yet, stores its row and returns it. `None`: nothing to make it from (the session
    /// has not ended, or its two tracks are not finalized).
    async fn derive_recording(
        &self,
        session_id: &str,
        track: Track,
        format: Format,
    ) -> Result<Option<RecordingRow>, ApiError> {
        let find = |rows: Vec<RecordingRow>, t: Track, f: Format| {
            rows.into_iter().find(|r| r.track == t && r.format == f)
        };
        let Some(session) = self.store.get_session(session_id).await? else {
            return Ok(None);
        };
        if session.ended_at.is_none() {
            return Ok(None);
        }
        let rows = self.store.recordings(session_id).await?;
        let has_wav = |t: Track| rows.iter().any(|r| r.track == t && r.format == Format::Wav);
        if !(has_wav(Track::Participant) && has_wav(Track::Ai)) {
            return Ok(None);
        }
        let Some(spec) = self.recording_spec(&session).await else {
            return Ok(None);
        };
        // One derivation per session at a time; a request that waited finds the file made.
        let _guard = self.lock(&format!("derive:{session_id}")).await;
        if let Some(row) = find(self.store.recordings(session_id).await?, track, format) {
            return Ok(Some(row));
        }
        let file = self
            .media
            .derive_recording(spec, track, format)
            .await
            .map_err(|e| ApiError::internal("making a recording on request", e))?;
        let row = self.recording_row(session_id, file);
        self.store.upsert_recording(&row).await?;
        Ok(Some(row))
    }
}
