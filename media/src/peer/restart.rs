//! ICE restart without renegotiating media, as WHIP does it (RFC 9725 §4.3): the client sends
//! new ICE credentials (`a=ice-ufrag`, `a=ice-pwd`) in a trickle fragment and gets the server's
//! new ones back. Underneath, the server applies the client's last offer again with the new
//! credentials (the library restarts its agent on a remote credential change) and answers; the
//! DTLS association and the media carry on over the new path.

use super::PeerError;

/// ICE credentials and candidates of one side, as carried in a trickle-ice-sdpfrag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceRestart {
    pub ufrag: String,
    pub pwd: String,
    /// `candidate:...` attributes (without `a=`).
    pub candidates: Vec<String>,
}

/// RFC 8839 §5.4: ice-char is ALPHA / DIGIT / "+" / "/"; ufrag 4-256, pwd 22-256 characters.
pub(super) fn check_credentials(ufrag: &str, pwd: &str) -> Result<(), PeerError> {
    let ice_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    if !(4..=256).contains(&ufrag.len()) || !ice_chars(ufrag) {
        return Err(PeerError::InvalidCandidate(
            "ice-ufrag must be 4-256 ICE characters".to_owned(),
        ));
    }
    if !(22..=256).contains(&pwd.len()) || !ice_chars(pwd) {
        return Err(PeerError::InvalidCandidate(
            "ice-pwd must be 22-256 ICE characters".to_owned(),
        ));
    }
    Ok(())
}

/// `offer` with its ICE credentials replaced by `ufrag`/`pwd` and its candidates dropped (they
/// belong to the old path; new ones are trickled).
pub(super) fn offer_with_credentials(offer: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        if body.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
        } else if body.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
        } else if body.starts_with("a=candidate:") || body == "a=end-of-candidates" {
            continue;
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A client's side of the restart: the server's last answer with the server's new credentials
/// and candidates in place of the old ones.
pub(crate) fn answer_with_credentials(answer: &str, server: &IceRestart) -> String {
    let mut out = offer_with_credentials(answer, &server.ufrag, &server.pwd);
    let at = out.find("\r\na=ice-ufrag:").map_or(out.len(), |i| i + 2);
    let candidates: String = server
        .candidates
        .iter()
        .map(|c| format!("a={c}\r\n"))
        .collect();
    out.insert_str(at, &candidates);
    out
}

/// The first ICE credentials and all candidates of an SDP.
pub(crate) fn credentials_of(sdp: &str) -> Option<IceRestart> {
    let mut ufrag = None;
    let mut pwd = None;
    let mut candidates = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            ufrag.get_or_insert_with(|| v.to_owned());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            pwd.get_or_insert_with(|| v.to_owned());
        } else if let Some(c) = line.strip_prefix("a=")
            && c.starts_with("candidate:")
        {
            candidates.push(c.to_owned());
        }
    }
    Some(IceRestart {
        ufrag: ufrag?,
        pwd: pwd?,
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old1\r\na=ice-pwd:oldpasswordoldpassword12\r\n\
        a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn credentials_are_replaced_and_old_candidates_dropped() {
        let out = offer_with_credentials(OFFER, "new2", "newpasswordnewpassword34");
        let c = credentials_of(&out).expect("credentials");
        assert_eq!(c.ufrag, "new2");
        assert_eq!(c.pwd, "newpasswordnewpassword34");
        assert!(c.candidates.is_empty());
        assert!(out.contains("a=rtpmap:111 opus/48000/2\r\n"));
        assert!(!out.contains("old1"));
        let c = credentials_of(OFFER).expect("credentials");
        assert_eq!(
            c.candidates,
            vec!["candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"]
        );
    }

    #[test]
    fn credentials_are_checked() {
        assert!(check_credentials("abcd", "0123456789012345678901").is_ok());
        assert!(check_credentials("abc", "0123456789012345678901").is_err());
        assert!(check_credentials("ab d", "0123456789012345678901").is_err());
        assert!(check_credentials("abcd", "short").is_err());
        assert!(check_credentials("abcd", "01234567890123456789\r\na=x").is_err());
    }
}
