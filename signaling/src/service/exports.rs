//! Exports as a use case: everything one session's exports are made of (detail, turn log,
//! campaign and script names), its recordings opened for the audio ZIP, and the pages of a
//! bulk export (keyset paging through the store, so memory stays flat whatever the count).

use super::SessionService;
use super::admin::SessionDetail;
use crate::blob_store::Blob;
use crate::error::ApiError;
use crate::lifecycle::Millis;
use crate::store::{ExportFilter, SessionRow};
use crate::turns::Turn;
use earshot_vocab::{Format, Track};

/// Sessions per page of a bulk export.
pub const EXPORT_PAGE: i64 = 500;

/// What one session's exports hold.
#[derive(Debug, Clone)]
pub struct SessionExport {
    pub detail: SessionDetail,
    pub turns: Vec<Turn>,
    pub campaign_name: Option<String>,
    pub script_name: Option<String>,
}

impl SessionService {
    /// Everything about one session that its exports show.
    pub async fn session_export(&self, id: &str) -> Result<SessionExport, ApiError> {
        let detail = self.session_detail(id).await?;
        let s = &detail.session;
        let campaign_name = self
            .store
            .get_campaign(&s.campaign_id)
            .await?
            .map(|c| c.name);
        let script_name = self.store.get_script(&s.script_id).await?.map(|c| c.name);
        Ok(SessionExport {
            turns: self.stored_turns(id).await?,
            detail,
            campaign_name,
            script_name,
        })
    }

    /// The session's participant, ai and mix recordings in `format`, opened for streaming
    /// (file name, blob): those there are, the mix and MP3s made first where
    /// `[recording] derive = "on_request"` left them for later (as a download would).
    pub async fn recordings_for_zip(
        &self,
        id: &str,
        format: Format,
    ) -> Result<Vec<(String, Blob)>, ApiError> {
        self.session(id).await?;
        let mut out = Vec::new();
        for track in [Track::Participant, Track::Ai, Track::Mix] {
            match self.recording(id, track, format).await {
                Ok(blob) => out.push((track.file_name(format), blob)),
                Err(e) if e.code == "recording_not_found" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One page of a bulk export (see [`crate::store::SessionStore::export_page`]).
    pub async fn export_page(
        &self,
        filter: &ExportFilter,
        after: Option<(i64, String)>,
    ) -> Result<Vec<SessionRow>, ApiError> {
        Ok(self.store.export_page(filter, after, EXPORT_PAGE).await?)
    }

    /// How many sessions a bulk export with `filter` holds.
    pub async fn export_count(&self, filter: &ExportFilter) -> Result<i64, ApiError> {
        Ok(self.store.count_export(filter).await?)
    }

    /// Now, as the service's clock says.
    pub fn clock_now(&self) -> Millis {
        self.now()
    }

    /// Base of the links the service hands out (`[server] public_url`).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}
