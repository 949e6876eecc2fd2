//! The participant's WebRTC peer (WHIP, RFC 9725): answering an offer through the media
//! plane, trickled candidates, and the hang-up that ends the interview. Owns the peer
//! registry: each session's current WHIP resource id (a newer offer replaces it; the
//! lifecycle's end effects clear it).

use super::{SessionService, media_specs};
use crate::error::ApiError;
use crate::ids;
use crate::lifecycle::Event;
use crate::media_port::IceCredentials;
use crate::media_port::{MediaError, OpenParticipant};
use crate::store::InviteRow;
use axum::http::StatusCode;

/// Result of a WHIP offer.
pub struct StartedMedia {
    pub session_id: String,
    pub peer_id: String,
    pub answer_sdp: String,
}

fn media_error(e: MediaError) -> ApiError {
    match e {
        MediaError::InvalidSdp(m) => ApiError::bad_request("invalid_sdp", m),
        MediaError::NoAudio => ApiError::bad_request("no_audio", "the offer has no audio m-line"),
        MediaError::InvalidCandidate(m) => ApiError::bad_request("invalid_candidate", m),
        MediaError::UnknownSession => {
            ApiError::not_found("peer_not_found", "no media for this session")
        }
        MediaError::Internal(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            format!("the media plane failed: {m}"),
        ),
    }
}

/// A WHIP PATCH body (trickle-ice-sdpfrag, RFC 8840): the ICE credentials it names, if any,
/// and its candidates (`candidate:...`; an empty string is end-of-candidates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrickleFragment {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub candidates: Vec<String>,
}

impl SessionService {
    /// WHIP offer: answers it with a peer for the invite's session.
    pub async fn start_media(
        &self,
        invite: &InviteRow,
        offer: &str,
    ) -> Result<StartedMedia, ApiError> {
        let (session, lc) = self.participant_session(invite).await?;
        let script = self
            .store
            .get_script(&session.script_id)
            .await?
            .ok_or_else(|| ApiError::internal("loading script", "script missing"))?;
        let interview = self.interview_spec(&script, &session, &lc).await?;
        let recording =
            media_specs::recording_spec_of(&script, &session.id, &self.config.recordings_dir);
        let answer_sdp = self
            .media
            .open_participant(OpenParticipant {
                session_id: session.id.clone(),
                offer_sdp: offer.to_string(),
                interview,
                recording,
            })
            .await
            .map_err(media_error)?;
        let peer_id = ids::new_id("peer");
        self.peers.insert(session.id.clone(), peer_id.clone());
        Ok(StartedMedia {
            session_id: session.id,
            peer_id,
            answer_sdp,
        })
    }

    /// `peer_not_found` unless `peer_id` is the session's current peer resource.
    fn check_peer(&self, session_id: &str, peer_id: &str) -> Result<(), ApiError> {
        match self.peers.get(session_id) {
            Some(p) if *p == peer_id => Ok(()),
            _ => Err(ApiError::not_found(
                "peer_not_found",
                "no such peer resource",
            )),
        }
    }

    /// WHIP trickle: candidates for the participant's current peer.
    pub async fn trickle(
        &self,
        invite: &InviteRow,
        peer_id: &str,
        fragment: TrickleFragment,
    ) -> Result<Option<IceCredentials>, ApiError> {
        let (session, _) = self.participant_session(invite).await?;
        self.check_peer(&session.id, peer_id)?;
        if let (Some(ufrag), Some(pwd)) = (fragment.ufrag, fragment.pwd) {
            // Credentials named: new ones are a WHIP ICE restart (RFC 9725 4.3).
            let client = IceCredentials {
                ufrag,
                pwd,
                candidates: fragment.candidates,
            };
            return self
                .media
                .restart_ice(&session.id, client)
                .await
                .map_err(media_error);
        }
        for c in &fragment.candidates {
            self.media
                .add_candidate(&session.id, c)
                .await
                .map_err(media_error)?;
        }
        Ok(None)
    }

    /// WHIP DELETE of the participant's current peer resource: the participant ended the
    /// interview (the page's "End interview", a bot hanging up). The session ends at once as
    /// `abandoned` (`participant_ended`); the lifecycle's end effects close the peer and
    /// finalize the recordings. A peer replaced by a newer offer is `peer_not_found` and
    /// changes nothing; an ended session is `session_ended`.
    pub async fn hang_up(&self, invite: &InviteRow, peer_id: &str) -> Result<(), ApiError> {
        let (session, _) = self.participant_session(invite).await?;
        self.check_peer(&session.id, peer_id)?;
        self.apply(&session.id, Event::ParticipantEnded).await?;
        Ok(())
    }
}
