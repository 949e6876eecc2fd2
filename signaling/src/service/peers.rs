//! The participant's WebRTC peer (WHIP, RFC 9725): answering an offer through the media
//! plane, trickled candidates, and the hang-up that ends the interview. Owns the peer
//! registry: each session's current WHIP resource id (a newer offer replaces it; the
//! lifecycle's end effects clear it).

use super::{SessionService, media_specs};
use crate::error::ApiError;
use crate::ids;
use crate::lifecycle::{Event, Millis};
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

/// The peer registry's entry for a session whose first offer is being answered: a place
/// among the sessions with media is held, but no peer resource exists yet.
const PENDING_PEER: &str = "pending";

/// A peer that has not connected this long after its offer is gone from the media plane,
/// which closes a peer 35 s after its answer if it never connected (README "WebRTC
/// connection"); its session's place among the sessions with media is then free.
const UNCONNECTED_RELEASE_MS: i64 = 40_000;

/// A session's current WHIP peer resource, in the peer registry.
#[derive(Debug, Clone)]
pub(super) struct PeerEntry {
    /// The resource id (`peer_...`), or [`PENDING_PEER`].
    id: String,
    offered_at: Millis,
    /// The media plane reported the session's media connected since this offer.
    connected: bool,
}

impl PeerEntry {
    fn new(id: &str, offered_at: Millis) -> PeerEntry {
        PeerEntry {
            id: id.to_string(),
            offered_at,
            connected: false,
        }
    }
}

pub(super) fn media_error(e: MediaError) -> ApiError {
    match e {
        MediaError::InvalidSdp(m) => ApiError::bad_request("invalid_sdp", m),
        MediaError::NoAudio => ApiError::bad_request("no_audio", "the offer has no audio m-line"),
        MediaError::InvalidCandidate(m) => ApiError::bad_request("invalid_candidate", m),
        MediaError::UnknownSession => {
            ApiError::not_found("peer_not_found", "no media for this session")
        }
        // The detail may name server files (a prompt's path) or internals: it goes to the log,
        // the participant gets a generic message.
        MediaError::Internal(m) => {
            tracing::error!(detail = %m, "the media plane failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "media_unavailable",
                "the media plane could not serve this session; try again later",
            )
        }
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
        let reserved = self.reserve_place(&session.id)?;
        let answer = self
            .media
            .open_participant(OpenParticipant {
                session_id: session.id.clone(),
                offer_sdp: offer.to_string(),
                interview,
                recording,
            })
            .await;
        let answer_sdp = match answer {
            Ok(answer) => answer,
            Err(e) => {
                if reserved {
                    self.peers
                        .remove_if(&session.id, |_, p| p.id == PENDING_PEER);
                }
                return Err(media_error(e));
            }
        };
        let peer_id = ids::new_id("peer");
        self.peers
            .insert(session.id.clone(), PeerEntry::new(&peer_id, self.now()));
        Ok(StartedMedia {
            session_id: session.id,
            peer_id,
            answer_sdp,
        })
    }

    /// A place among the sessions with media for `session_id` (`503 server_busy` when they
    /// are all taken, `503 node_draining` while the node drains). A session that has one (its peer is being replaced, or it returns from
    /// a pause) keeps it; a new one is held by a placeholder until its offer is answered.
    /// Returns whether a place was reserved now.
    fn reserve_place(&self, session_id: &str) -> Result<bool, ApiError> {
        // The check and the insert must not interleave with another offer's, or two offers
        // could take the last place.
        let _admission = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        if self.peers.contains_key(session_id) {
            return Ok(false);
        }
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_draining",
                "this server is draining and takes no new sessions; try again shortly",
            )
            .with_retry_after(30));
        }
        if self.peers.len() >= self.max_sessions {
            self.release_unconnected();
        }
        if self.peers.len() >= self.max_sessions {
            tracing::warn!(
                max = self.max_sessions,
                "session limit reached: offer refused"
            );
            return Err(ApiError::server_busy("sessions").with_retry_after(30));
        }
        self.peers.insert(
            session_id.to_string(),
            PeerEntry::new(PENDING_PEER, self.now()),
        );
        Ok(true)
    }

    /// Frees the places of peers that never connected and that the media plane has closed
    /// since (a participant whose browser could not get through must not hold a place until
    /// the session ends).
    fn release_unconnected(&self) {
        let now = self.now();
        self.peers.retain(|session, p| {
            let gone = !p.connected
                && p.id != PENDING_PEER
                && now.since(p.offered_at) > UNCONNECTED_RELEASE_MS;
            if gone {
                tracing::info!(session = %session, "a peer that never connected gives its place back");
            }
            !gone
        });
    }

    /// The media plane reports the session's media connected: its place is in use.
    pub(super) fn peer_connected(&self, session_id: &str) {
        if let Some(mut p) = self.peers.get_mut(session_id) {
            p.connected = true;
        }
    }

    /// `peer_not_found` unless `peer_id` is the session's current peer resource.
    fn check_peer(&self, session_id: &str, peer_id: &str) -> Result<(), ApiError> {
        match self.peers.get(session_id) {
            Some(p) if p.id == peer_id => Ok(()),
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
