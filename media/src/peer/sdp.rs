//! What comes from the browser as text: the offer (checked for a usable Opus m-line before the
//! library sees it) and trickled candidates.

use std::sync::Arc;

use tracing::debug;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use super::PeerError;

/// Validates the offer and returns the Opus payload type of its first usable audio m-line.
///
/// Public (re-exported as `peer::inspect_offer`) so that the fuzz targets in `benches/fuzz`
/// can feed it arbitrary text; the server calls it on every WHIP offer before the library
/// sees the offer.
pub fn inspect_offer(offer_sdp: &str) -> Result<(RTCSessionDescription, u8), PeerError> {
    if offer_sdp.trim().is_empty() {
        return Err(PeerError::InvalidSdp("empty offer".to_owned()));
    }
    let parsed = std::panic::catch_unwind(|| RTCSessionDescription::offer(offer_sdp.to_owned()))
        .map_err(|_| PeerError::InvalidSdp("SDP parser panicked".to_owned()))?;
    let desc = parsed.map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
    let session = desc
        .unmarshal()
        .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
    if session.media_descriptions.is_empty() {
        return Err(PeerError::InvalidSdp("offer has no m-line".to_owned()));
    }
    let mut saw_audio = false;
    for media in &session.media_descriptions {
        if !media.media_name.media.eq_ignore_ascii_case("audio") || media.media_name.port.value == 0
        {
            continue;
        }
        saw_audio = true;
        for attr in &media.attributes {
            if attr.key != "rtpmap" {
                continue;
            }
            let Some(value) = attr.value.as_deref() else {
                continue;
            };
            let mut parts = value.split_whitespace();
            let (Some(pt), Some(encoding)) = (parts.next(), parts.next()) else {
                continue;
            };
            if encoding.to_ascii_lowercase().starts_with("opus/48000")
                && let Ok(pt) = pt.parse::<u8>()
                && pt < 128
            {
                return Ok((desc, pt));
            }
        }
    }
    if saw_audio {
        debug!("offer has audio but no Opus");
    }
    Err(PeerError::NoAudio)
}

/// Normalises a trickled candidate. `Ok(None)` = nothing to add (end-of-candidates, or an mDNS
/// `.local` candidate, which an ICE-lite server with mDNS disabled cannot use and does not
/// need: the browser's checks reveal its address as a peer-reflexive candidate).
///
/// Public (re-exported as `peer::normalise_candidate`) for the fuzz targets in `benches/fuzz`.
pub fn normalise_candidate(candidate: &str) -> Result<Option<String>, PeerError> {
    let c = candidate.trim();
    let c = c.strip_prefix("a=").unwrap_or(c);
    if c.is_empty() || c == "end-of-candidates" {
        return Ok(None);
    }
    let Some(rest) = c.strip_prefix("candidate:") else {
        return Err(PeerError::InvalidCandidate(format!(
            "expected `candidate:...`, got {c:?}"
        )));
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() < 8 || fields[6] != "typ" {
        return Err(PeerError::InvalidCandidate(c.to_owned()));
    }
    if fields[4].ends_with(".local") {
        debug!(candidate = c, "skipping mDNS candidate");
        return Ok(None);
    }
    Ok(Some(c.to_owned()))
}

pub(crate) async fn add_candidate(
    pc: &Arc<dyn PeerConnection>,
    candidate: &str,
    sdp_mid: Option<String>,
    mline_index: Option<u16>,
) -> Result<(), PeerError> {
    let Some(candidate) = normalise_candidate(candidate)? else {
        return Ok(());
    };
    pc.add_ice_candidate(RTCIceCandidateInit {
        candidate: candidate.clone(),
        sdp_mid,
        sdp_mline_index: mline_index,
        ..Default::default()
    })
    .await
    .map_err(|e| PeerError::InvalidCandidate(format!("{candidate}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_normalised() {
        let c = "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host";
        assert_eq!(
            normalise_candidate(c).expect("ok").as_deref(),
            Some(&c[2..])
        );
        assert!(normalise_candidate("").expect("ok").is_none());
        assert!(
            normalise_candidate("a=end-of-candidates")
                .expect("ok")
                .is_none()
        );
        assert!(
            normalise_candidate("candidate:1 1 udp 1 abc.local 5000 typ host")
                .expect("ok")
                .is_none()
        );
        assert!(normalise_candidate("garbage").is_err());
        assert!(normalise_candidate("candidate:1 1 udp").is_err());
    }
}
