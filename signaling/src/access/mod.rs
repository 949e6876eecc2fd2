//! Users, their roles per campaign, API keys and console sign-ins: turning a credential into
//! a [`Principal`], and the users' passwords (argon2id) and secrets (SHA-256 of 206-bit random
//! values). What a principal may do is decided by [`authz::authorize`] alone.
//!
//! Console sign-ins live server-side: the cookie holds a random id, the database its hash,
//! with an absolute expiry ([`SIGNIN_TTL`]) and an idle timeout ([`SIGNIN_IDLE`]); every
//! sign-in makes a new id and sign-out deletes the row. Failed sign-ins are throttled per
//! account and per client address (see [`Access::sign_in`]).

pub mod authz;
mod secrets;
mod signin;

use crate::audit::AuditLog;
use crate::error::ApiError;
use crate::ids;
use crate::routes::limits::RateLimiter;
use crate::store::Store;
use crate::store::access::{ApiKeyRow, GrantRow, UserRow};
pub use authz::{Action, Denied, Grant, Permission, Principal, Resource, Role, authorize};
pub use secrets::{hash_password, secret_hash, verify_password};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// A console sign-in lasts at most this long.
pub const SIGNIN_TTL: Duration = Duration::from_secs(12 * 3600);
/// A console sign-in unused this long is over.
pub const SIGNIN_IDLE: Duration = Duration::from_secs(30 * 60);
/// Failed sign-ins one account may have per minute (a burst of that many, then one per
/// 12 s), and per hour (then one per 3 min: the wait grows as the guessing goes on); the
/// per-minute address limit is wider, for several people behind one NAT.
pub const SIGNIN_FAILURES_PER_ACCOUNT: u32 = 5;
pub const SIGNIN_FAILURES_PER_ACCOUNT_HOURLY: u32 = 20;
pub const SIGNIN_FAILURES_PER_ADDRESS: u32 = 20;
/// API keys start with this (the rest is random).
pub const KEY_PREFIX: &str = "ek";
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Users, keys, sign-ins and the audit log, over the store.
pub struct Access {
    store: Arc<dyn Store>,
    pub audit: AuditLog,
    /// Whether the configured admin token is accepted (`[auth] admin_token_enabled`).
    pub admin_token_enabled: bool,
    failures_per_account: RateLimiter,
    failures_per_account_hourly: RateLimiter,
    failures_per_address: RateLimiter,
}

/// A new user's details.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub password: String,
    pub superuser: bool,
}

/// A new API key's details; `None` narrows nothing.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub user_id: String,
    pub name: String,
    pub permissions: Option<BTreeSet<Permission>>,
    pub campaigns: Option<Vec<String>>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_body", message)
}

/// Checks an email's shape: one `@` with something on both sides, no spaces, 3-254 chars.
fn valid_email(email: &str) -> bool {
    (3..=254).contains(&email.len())
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('@'))
}

impl Access {
    pub fn new(store: Arc<dyn Store>, admin_token_enabled: bool) -> Access {
        Access {
            audit: AuditLog::new(store.clone()),
            store,
            admin_token_enabled,
            failures_per_account: RateLimiter::new(SIGNIN_FAILURES_PER_ACCOUNT),
            failures_per_account_hourly: RateLimiter::with_window(
                SIGNIN_FAILURES_PER_ACCOUNT_HOURLY,
                Duration::from_secs(3600),
            ),
            failures_per_address: RateLimiter::new(SIGNIN_FAILURES_PER_ADDRESS),
        }
    }

    /// The store (for the CLI's user commands and start-up checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn create_user(&self, new: NewUser) -> Result<UserRow, ApiError> {
        let email = new.email.trim().to_string();
        if !valid_email(&email) {
            return Err(invalid("email must look like name@example.org"));
        }
        if new.password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(invalid(format!(
                "password must be at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if new.name.chars().count() > 200 {
            return Err(invalid("name is at most 200 characters"));
        }
        let row = UserRow {
            id: ids::new_id("usr"),
            email,
            name: new.name,
            password_hash: hash_password(&new.password)?,
            superuser: new.superuser,
            created_at: crate::now_ms(),
        };
        if !self.store.insert_user(&row).await? {
            return Err(ApiError::conflict(
                "email_taken",
                "a user with this email exists",
            ));
        }
        Ok(row)
    }

    pub async fn user(&self, id: &str) -> Result<UserRow, ApiError> {
        let not_found = || ApiError::not_found("user_not_found", "no user with this id");
        if !ids::is_valid_id("usr", id) {
            return Err(not_found());
        }
        self.store.get_user(id).await?.ok_or_else(not_found)
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, ApiError> {
        Ok(self.store.list_users().await?)
    }

    /// Deletes a user; the last superuser is kept while the admin token is off (nobody could
    /// manage the deployment otherwise): `409 last_superuser`.
    pub async fn delete_user(&self, id: &str) -> Result<(), ApiError> {
        let user = self.user(id).await?;
        if user.superuser && !self.admin_token_enabled && self.store.count_superusers().await? <= 1
        {
            return Err(ApiError::conflict(
                "last_superuser",
                "the admin token is off and this is the last superuser",
            ));
        }
        self.store.delete_user(id).await?;
        Ok(())
    }

    pub async fn grants_of_user(&self, user_id: &str) -> Result<Vec<GrantRow>, ApiError> {
        Ok(self.store.grants_of_user(user_id).await?)
    }

    pub async fn grants_of_campaign(&self, campaign_id: &str) -> Result<Vec<GrantRow>, ApiError> {
        Ok(self.store.grants_of_campaign(campaign_id).await?)
    }

    /// Gives `user_id` `role` on `campaign_id` (replacing a role they had there).
    pub async fn put_grant(
        &self,
        user_id: &str,
        campaign_id: &str,
        role: Role,
        permissions: &BTreeSet<Permission>,
    ) -> Result<GrantRow, ApiError> {
        self.user(user_id).await?;
        let row = GrantRow {
            user_id: user_id.to_string(),
            campaign_id: campaign_id.to_string(),
            role: role.as_str().to_string(),
            permissions: if role == Role::Member {
                Permission::join(permissions)
            } else {
                String::new()
            },
            created_at: crate::now_ms(),
        };
        self.store.put_grant(&row).await?;
        Ok(row)
    }

    pub async fn delete_grant(&self, user_id: &str, campaign_id: &str) -> Result<(), ApiError> {
        if self.store.delete_grant(user_id, campaign_id).await? {
            Ok(())
        } else {
            Err(ApiError::not_found(
                "grant_not_found",
                "this user has no role on this campaign",
            ))
        }
    }

    /// Makes a key; returns its row and the key itself (shown once).
    pub async fn create_key(&self, new: NewKey) -> Result<(ApiKeyRow, String), ApiError> {
        if new.name.trim().is_empty() || new.name.chars().count() > 200 {
            return Err(invalid("name must be 1-200 characters"));
        }
        let secret = ids::new_secret(KEY_PREFIX);
        let row = ApiKeyRow {
            id: ids::new_id("key"),
            user_id: new.user_id,
            name: new.name.trim().to_string(),
            key_hash: secret_hash(&secret),
            prefix: secret.chars().take(KEY_PREFIX.len() + 7).collect(),
            permissions: new.permissions.as_ref().map(Permission::join),
            campaigns: new.campaigns.as_ref().map(|c| c.join(",")),
            created_at: crate::now_ms(),
            revoked_at: None,
        };
        self.store.insert_api_key(&row).await?;
        Ok((row, secret))
    }

    pub async fn key(&self, id: &str) -> Result<ApiKeyRow, ApiError> {
        let not_found = || ApiError::not_found("key_not_found", "no API key with this id");
        if !ids::is_valid_id("key", id) {
            return Err(not_found());
        }
        self.store.get_api_key(id).await?.ok_or_else(not_found)
    }

    pub async fn keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRow>, ApiError> {
        Ok(self.store.list_api_keys(user_id).await?)
    }

    /// Revokes a key; revoking one already revoked changes nothing.
    pub async fn revoke_key(&self, id: &str) -> Result<(), ApiError> {
        self.key(id).await?;
        self.store.revoke_api_key(id, crate::now_ms()).await?;
        Ok(())
    }

    /// The principal of a user, narrowed by `key` if the call came with one; `None` if the
    /// user is gone.
    pub async fn principal_of(
        &self,
        user_id: &str,
        key: Option<&ApiKeyRow>,
    ) -> Result<Option<Principal>, ApiError> {
        let Some(user) = self.store.get_user(user_id).await? else {
            return Ok(None);
        };
        // A stored list that no longer parses narrows to nothing (fail closed).
        let key_permissions = key
            .and_then(|k| k.permissions.as_deref())
            .map(|list| Permission::parse_list(list).unwrap_or_default());
        let key_campaigns: Option<BTreeSet<&str>> = key
            .and_then(|k| k.campaigns.as_deref())
            .map(|c| c.split(',').filter(|c| !c.is_empty()).collect());
        // A key narrowed in any way is no superuser's: a superuser's narrowed key acts as
        // the owner of the campaigns it names (and of none when it names none).
        let narrowed = key_permissions.is_some() || key_campaigns.is_some();
        let superuser = user.superuser && !narrowed;
        let mut grants = BTreeMap::new();
        if user.superuser {
            for c in key_campaigns.iter().flatten() {
                grants.insert(c.to_string(), Grant::new(Role::Owner, BTreeSet::new()));
            }
        }
        for g in self.store.grants_of_user(user_id).await? {
            let Some(role) = Role::parse(&g.role) else {
                continue;
            };
            let member = Permission::parse_list(&g.permissions).unwrap_or_default();
            grants.insert(g.campaign_id, Grant::new(role, member));
        }
        if let Some(campaigns) = &key_campaigns {
            grants.retain(|c, _| campaigns.contains(c.as_str()));
        }
        if let Some(permissions) = &key_permissions {
            for g in grants.values_mut() {
                g.permissions.retain(|p| permissions.contains(p));
            }
        }
        Ok(Some(Principal {
            id: user.id,
            superuser,
            grants,
            key_id: key.map(|k| k.id.clone()),
        }))
    }

    /// The principal of an API key, or `None` if it is unknown or revoked.
    pub async fn principal_of_key(&self, secret: &str) -> Result<Option<Principal>, ApiError> {
        let Some(key) = self.store.live_api_key(&secret_hash(secret)).await? else {
            return Ok(None);
        };
        self.principal_of(&key.user_id.clone(), Some(&key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::sqlite::SqliteStore;

    async fn access_with(admin_token_enabled: bool) -> (tempfile::TempDir, Access) {
        let (dir, _, access) = access_and_store(admin_token_enabled).await;
        (dir, access)
    }

    async fn access_and_store(
        admin_token_enabled: bool,
    ) -> (tempfile::TempDir, SqliteStore, Access) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let access = Access::new(Arc::new(store.clone()), admin_token_enabled);
        (dir, store, access)
    }

    fn new_user(email: &str, superuser: bool) -> NewUser {
        NewUser {
            email: email.into(),
            name: String::new(),
            password: "a long enough password".into(),
            superuser,
        }
    }

    #[tokio::test]
    async fn the_last_superuser_stays_while_the_admin_token_is_off() {
        let (_dir, access) = access_with(false).await;
        let root = access
            .create_user(new_user("root@a.org", true))
            .await
            .unwrap();
        let err = access.delete_user(&root.id).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (409, "last_superuser"));
        let second = access
            .create_user(new_user("two@a.org", true))
            .await
            .unwrap();
        access.delete_user(&root.id).await.unwrap();
        assert_eq!(access.users().await.unwrap().len(), 1);
        assert_eq!(
            access.delete_user(&second.id).await.unwrap_err().code,
            "last_superuser"
        );
        let (_dir2, with_token) = access_with(true).await;
        let only = with_token
            .create_user(new_user("r@a.org", true))
            .await
            .unwrap();
        with_token.delete_user(&only.id).await.unwrap();
    }

    #[tokio::test]
    async fn stale_sign_ins_are_swept_at_the_next_sign_in() {
        let (_dir, store, access) = access_and_store(true).await;
        let user = access
            .create_user(new_user("u@a.org", false))
            .await
            .unwrap();
        let (old, _) = access
            .sign_in("u@a.org", "a long enough password", None)
            .await
            .unwrap();
        // Make the first sign-in idle: seen 31 minutes ago.
        let idle = crate::now_ms() - 31 * 60 * 1000;
        sqlx::query("UPDATE console_sessions SET last_seen_at = ?")
            .bind(idle)
            .execute(&store.pool_for_tests())
            .await
            .unwrap();
        let (new, _) = access
            .sign_in("U@a.org", "a long enough password", None)
            .await
            .unwrap();
        let rows: Vec<(String,)> = sqlx::query_as("SELECT user_id FROM console_sessions")
            .fetch_all(&store.pool_for_tests())
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![(user.id.clone(),)],
            "only the new sign-in is left"
        );
        assert!(access.principal_of_signin(&old).await.unwrap().is_none());
        assert_eq!(
            access.principal_of_signin(&new).await.unwrap().unwrap().id,
            user.id
        );
    }

    #[test]
    fn emails_are_checked() {
        assert!(valid_email("a@b.org"));
        assert!(!valid_email("a b@c.org"));
        assert!(!valid_email("@c.org"));
        assert!(!valid_email("a@b@c"));
    }
}
