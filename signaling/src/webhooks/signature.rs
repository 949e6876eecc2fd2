//! Webhook signatures as Standard Webhooks defines them: the endpoint's secret is
//! `whsec_<base64 key>`; each delivery carries `webhook-id`, `webhook-timestamp` (unix seconds)
//! and `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: 24 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key of a secret (`whsec_` and base64); `None` if it is not one.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    (key.len() >= 16 && key.len() <= 64).then_some(key)
}

/// The `webhook-signature` value of a body.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_fresh_and_valid() {
        let a = new_secret();
        assert!(secret_key(&a).is_some_and(|k| k.len() == 24));
        assert_ne!(a, new_secret());
        assert_eq!(secret_key("whsec_not base64!"), None);
        assert_eq!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
    }
}
