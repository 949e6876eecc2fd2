//! Console sign-ins: email and password in, a new random sign-in id out (its hash stored
//! with an absolute expiry and an idle timeout), throttled per account and per client
//! address, every attempt audited; the id back in, the user's principal out; sign-out.

use super::secrets::{decoy_hash, secret_hash, verify_password};
use super::{Access, Principal, SIGNIN_IDLE, SIGNIN_TTL};
use crate::error::ApiError;
use crate::ids;
use crate::routes::limits::address_key;
use crate::store::access::{ConsoleSessionRow, UserRow};
use std::net::IpAddr;

/// Now, and the time before which an unused sign-in is idle, as unix ms.
fn signin_window() -> (i64, i64) {
    let now = crate::now_ms();
    (
        now,
        now - i64::try_from(SIGNIN_IDLE.as_millis()).unwrap_or(i64::MAX),
    )
}

impl Access {
    /// The principal of a console sign-in cookie's id, or `None` if it is unknown, expired
    /// or idle too long.
    pub async fn principal_of_signin(&self, id: &str) -> Result<Option<Principal>, ApiError> {
        let (now, idle_since) = signin_window();
        let Some(row) = self
            .store
            .touch_console_session(&secret_hash(id), now, idle_since)
            .await?
        else {
            return Ok(None);
        };
        self.principal_of(&row.user_id, None).await
    }

    /// Signs a user in by email and password: a new sign-in id (for the cookie). Throttled:
    /// an account or address with too many recent failures gets `429 rate_limited` (with
    /// `Retry-After`) before the password is even checked. Every attempt is audited.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(String, UserRow), ApiError> {
        let account = format!("account:{}", email.trim().to_lowercase());
        let address = client.map(|ip| format!("address:{}", address_key(ip)));
        self.failures_per_account
            .available(&account, "failed sign-ins for this account")?;
        self.failures_per_account_hourly
            .available(&account, "failed sign-ins for this account")?;
        if let Some(address) = &address {
            self.failures_per_address
                .available(address, "failed sign-ins from this address")?;
        }
        let user = self.store.user_by_email(email.trim()).await?;
        let hash = user
            .as_ref()
            .map_or(decoy_hash(), |u| u.password_hash.as_str());
        let matches = verify_password(hash, password);
        match user {
            Some(user) if matches => {
                let id = ids::new_secret("cs");
                let (now, idle_since) = signin_window();
                // Sign-ins nobody used again would otherwise stay: swept at every new one.
                self.store
                    .delete_stale_console_sessions(now, idle_since)
                    .await?;
                self.store
                    .insert_console_session(&ConsoleSessionRow {
                        id_hash: secret_hash(&id),
                        user_id: user.id.clone(),
                        created_at: now,
                        last_seen_at: now,
                        expires_at: now + i64::try_from(SIGNIN_TTL.as_millis()).unwrap_or(0),
                    })
                    .await?;
                self.audit
                    .record(crate::audit::Entry {
                        actor: &user.id,
                        action: "signin",
                        resource: &user.id,
                        campaign: None,
                        client,
                        outcome: crate::audit::Outcome::Ok,
                    })
                    .await;
                Ok((id, user))
            }
            found => {
                let _ = self.failures_per_account.check(&account, "failed sign-ins");
                let _ = self
                    .failures_per_account_hourly
                    .check(&account, "failed sign-ins");
                if let Some(address) = &address {
                    let _ = self.failures_per_address.check(address, "failed sign-ins");
                }
                let actor = found.map_or_else(|| format!("email:{}", email.trim()), |u| u.id);
                self.audit
                    .record(crate::audit::Entry {
                        actor: &actor,
                        action: "signin",
                        resource: &actor,
                        campaign: None,
                        client,
                        outcome: crate::audit::Outcome::Denied,
                    })
                    .await;
                Err(ApiError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "invalid_credentials",
                    "wrong email or password",
                ))
            }
        }
    }

    /// Ends a console sign-in (its row is deleted).
    pub async fn sign_out(&self, id: &str) -> Result<(), ApiError> {
        self.store.delete_console_session(&secret_hash(id)).await?;
        Ok(())
    }
}
