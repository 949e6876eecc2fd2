//! Time-limited TURN credentials, minted per session from a secret shared with the TURN server
//! (coturn's `use-auth-secret` / `static-auth-secret`, the "TURN REST API" scheme): the
//! username is `<expiry unix time>:<session id>` and the password the base64 HMAC-SHA1 of the
//! username under the secret. The TURN server checks both without asking Earshot; a leaked
//! credential stops working at its expiry.

use crate::routes::IceServerView;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Mints the TURN entries of the ICE server list handed to a participant.
#[derive(Clone)]
pub struct TurnMinter {
    urls: Vec<String>,
    secret: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for TurnMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnMinter")
            .field("urls", &self.urls)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl TurnMinter {
    pub fn new(urls: Vec<String>, secret: String, ttl_secs: u64) -> Self {
        Self {
            urls,
            secret,
            ttl_secs,
        }
    }

    /// Credentials for `session`, valid until `now_unix + ttl`.
    pub fn mint(&self, session: &str, now_unix: u64) -> IceServerView {
        let username = format!("{}:{session}", now_unix.saturating_add(self.ttl_secs));
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let credential = Hmac::<Sha1>::new_from_slice(self.secret.as_bytes())
            .map(|mut mac| {
                mac.update(username.as_bytes());
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            })
            .unwrap_or_default();
        IceServerView {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let m = TurnMinter::new(
            vec!["turn:127.0.0.1:3478?transport=udp".into()],
            "north-wind-0123456789".into(),
            300,
        );
        let s = m.mint("ses_abc", 1_699_999_700);
        assert_eq!(s.urls, ["turn:127.0.0.1:3478?transport=udp"]);
        assert_eq!(s.username.as_deref(), Some("1700000000:ses_abc"));
        // Computed independently: Python's hmac.new(secret, username, sha1), base64.
        assert_eq!(
            s.credential.as_deref(),
            Some("QjdSi9v+z7OfAgnszkbkxxUJBXg=")
        );
        assert!(
            !format!("{m:?}").contains("north-wind"),
            "the secret stays out of logs"
        );
    }
}
