//! Identifier generation and validation. Every ID that arrives from outside is checked here
//! before it reaches a query, so a malformed one is refused the same way as an unknown one.

use rand::Rng;
use rand::distributions::Alphanumeric;

const RANDOM_LEN: usize = 20;

fn random_part(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

/// A new ID such as `ses_k3j...`: the prefix says what it names.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_part(RANDOM_LEN))
}

/// A new invite token: 24 random characters, unguessable, URL-safe.
pub fn new_invite_token() -> String {
    random_part(24)
}

/// A new secret credential such as `ek_...` (API keys, console sign-ins, deletion tokens): 40 random
/// characters of 36 (about 206 bits), so a fast hash (SHA-256) is enough to store it.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}_{}", random_part(40))
}

/// True when `s` could be an ID with `prefix` made by [`new_id`] (or a fixed seed ID such as
/// `cmp_default`): ASCII lowercase letters, digits and `_`, bounded length.
pub fn is_valid_id(prefix: &str, s: &str) -> bool {
    s.len() <= 64
        && s.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
}

/// True when `s` could be an invite token.
pub fn is_valid_token(s: &str) -> bool {
    (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_validate_and_garbage_does_not() {
        let id = new_id("ses");
        assert!(is_valid_id("ses", &id), "{id}");
        assert!(!is_valid_id("inv", &id));
        assert!(is_valid_id("cmp", "cmp_default"));
        for bad in [
            "",
            "ses",
            "ses_",
            "ses_../etc",
            "ses_A",
            "ses_x y",
            &"ses_".repeat(40),
        ] {
            assert!(!is_valid_id("ses", bad), "{bad}");
        }
        let tok = new_invite_token();
        assert!(is_valid_token(&tok));
        assert!(!is_valid_token("short"));
        assert!(!is_valid_token("abc/def/ghij"));
    }
}
