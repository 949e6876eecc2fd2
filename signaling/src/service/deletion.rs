//! Participants' deletion requests (F10, GDPR erasure). Once a session has ended, the holder
//! of its invite may get a deletion token (a fresh random token each time, replacing the
//! last; only its SHA-256 is stored): the invite token itself is never the credential, so a
//! link forwarded after the interview is not enough to erase it. The token files a request;
//! an admin fulfils it, or it is fulfilled at once when the campaign says so; fulfilling runs
//! the same full deletion as `DELETE /v1/sessions/{id}` (every row and file). Afterwards only
//! the fact remains: request id, session id, campaign, times, and who fulfilled it.

use super::SessionService;
use crate::error::ApiError;
use crate::ids;
use crate::store::InviteRow;
use crate::store::privacy::DeletionRequestRow;
use sha2::{Digest, Sha256};

/// Most requests one list holds.
pub const MAX_REQUESTS: i64 = 1000;

fn token_not_found() -> ApiError {
    ApiError::not_found(
        "deletion_token_not_found",
        "no session with this deletion token",
    )
}

fn request_not_found() -> ApiError {
    ApiError::not_found(
        "deletion_request_not_found",
        "no deletion request with this id",
    )
}

/// The stored form of a deletion token.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SessionService {
    /// A fresh deletion token for the invite's newest session, which must have ended
    /// (`409 session_not_ended` otherwise).
    pub async fn issue_deletion_token(&self, invite: &InviteRow) -> Result<String, ApiError> {
        let store = self.privacy_store()?;
        let session = self
            .store
            .latest_session_for_invite(&invite.token)
            .await?
            .ok_or_else(|| {
                ApiError::conflict("session_not_ended", "the interview has not ended")
            })?;
        if !session.state.is_terminal() {
            return Err(ApiError::conflict(
                "session_not_ended",
                "the interview has not ended",
            ));
        }
        let token = ids::new_secret("dtk");
        store
            .set_deletion_token(&session.id, &token_hash(&token))
            .await?;
        Ok(token)
    }

    /// Files the participant's request to delete the session of `token` (once: a second
    /// request while one is pending returns it). Fulfilled at once when the campaign says so.
    pub async fn request_deletion(&self, token: &str) -> Result<DeletionRequestRow, ApiError> {
        let store = self.privacy_store()?.clone();
        if !ids::is_valid_id("dtk", token) {
            return Err(token_not_found());
        }
        let (session_id, campaign_id) = store
            .session_by_deletion_token(&token_hash(token))
            .await?
            .ok_or_else(token_not_found)?;
        if let Some(pending) = store.pending_request_for(&session_id).await? {
            return Ok(pending);
        }
        let row = DeletionRequestRow {
            id: ids::new_id("del"),
            session_id,
            campaign_id,
            requested_at: self.now().0,
            fulfilled_at: None,
            fulfilled_by: None,
        };
        store.insert_deletion_request(&row).await?;
        self.audit_system(
            "participant",
            "deletion.request",
            &row.session_id,
            Some(&row.campaign_id),
        )
        .await;
        if self
            .campaign_privacy(&row.campaign_id)
            .await?
            .auto_delete_requests
        {
            return self.fulfil_deletion_request(&row.id, "policy").await;
        }
        Ok(row)
    }

    /// Every deletion request, newest first.
    pub async fn deletion_requests(&self) -> Result<Vec<DeletionRequestRow>, ApiError> {
        Ok(self
            .privacy_store()?
            .deletion_requests(MAX_REQUESTS)
            .await?)
    }

    /// One deletion request; `404 deletion_request_not_found` for an unknown id.
    pub async fn deletion_request(&self, id: &str) -> Result<DeletionRequestRow, ApiError> {
        if !ids::is_valid_id("del", id) {
            return Err(request_not_found());
        }
        self.privacy_store()?
            .deletion_request(id)
            .await?
            .ok_or_else(request_not_found)
    }

    /// Fulfils a pending request: deletes every row and file of its session. `by` is who
    /// did it (a principal's id as the audit log names it, or `policy`). A fulfilled one is `409 deletion_already_fulfilled`.
    pub async fn fulfil_deletion_request(
        &self,
        id: &str,
        by: &str,
    ) -> Result<DeletionRequestRow, ApiError> {
        let store = self.privacy_store()?.clone();
        let request = self.deletion_request(id).await?;
        if request.fulfilled_at.is_some() {
            return Err(ApiError::conflict(
                "deletion_already_fulfilled",
                "this request was fulfilled already",
            ));
        }
        match self.delete_by(&request.session_id, by).await {
            Ok(()) => {}
            // Deleted another way meanwhile: the request is fulfilled all the same.
            Err(e) if e.code == "session_not_found" => {}
            Err(e) => return Err(e),
        }
        store
            .fulfil_requests(&request.session_id, self.now().0, by)
            .await?;
        if by == "policy" {
            // A caller's fulfilment is audited by its route.
            self.audit_system("policy", "deletion.fulfil", id, Some(&request.campaign_id))
                .await;
        }
        store
            .deletion_request(id)
            .await?
            .ok_or_else(request_not_found)
    }

    /// After a session was deleted by any route: its pending requests are fulfilled.
    pub(super) async fn deletion_done(&self, session_id: &str, by: &str) {
        if let Some(store) = &self.privacy
            && let Err(e) = store.fulfil_requests(session_id, self.now().0, by).await
        {
            tracing::error!(session = session_id, error = %e, "marking requests fulfilled failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::token_hash;

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
