//! PostgreSQL side of users, grants, API keys, console sign-ins and the audit log. Emails
//! compare without case (`lower(email)`, a unique index). The audit log is only ever
//! inserted into and read; the table's triggers refuse UPDATE, DELETE and TRUNCATE.

use super::PgStore;
use crate::store::Result;
use crate::store::access::{
    AccessStore, ApiKeyRow, AuditFilter, AuditRow, AuditStore, ConsoleSessionRow, GrantRow,
    TOUCH_EVERY_MS, UserRow,
};
use sqlx::{Postgres, QueryBuilder};

#[async_trait::async_trait]
impl AccessStore for PgStore {
    async fn insert_user(&self, u: &UserRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, superuser, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&u.id)
        .bind(&u.email)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.superuser)
        .bind(u.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_user(&self, id: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM users WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM users ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn delete_user(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_superusers(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE superuser")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn put_grant(&self, g: &GrantRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO grants (user_id, campaign_id, role, permissions, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, campaign_id) DO UPDATE SET \
             role = excluded.role, permissions = excluded.permissions",
        )
        .bind(&g.user_id)
        .bind(&g.campaign_id)
        .bind(&g.role)
        .bind(&g.permissions)
        .bind(g.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_grant(&self, user_id: &str, campaign_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM grants WHERE user_id = $1 AND campaign_id = $2")
            .bind(user_id)
            .bind(campaign_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn grants_of_user(&self, user_id: &str) -> Result<Vec<GrantRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM grants WHERE user_id = $1 ORDER BY campaign_id")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn grants_of_campaign(&self, campaign_id: &str) -> Result<Vec<GrantRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM grants WHERE campaign_id = $1 ORDER BY created_at, user_id",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, permissions, campaigns, \
             created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&k.id)
        .bind(&k.user_id)
        .bind(&k.name)
        .bind(&k.key_hash)
        .bind(&k.prefix)
        .bind(&k.permissions)
        .bind(&k.campaigns)
        .bind(k.created_at)
        .bind(k.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn live_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        Ok(sqlx::query_as("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM api_keys WHERE ($1::text IS NULL OR user_id = $1) \
             ORDER BY created_at DESC, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoke_api_key(&self, id: &str, at: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_stale_console_sessions(&self, now: i64, idle_since: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at < $2")
                .bind(now)
                .bind(idle_since)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn insert_console_session(&self, s: &ConsoleSessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_id, created_at, last_seen_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn touch_console_session(
        &self,
        id_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> Result<Option<ConsoleSessionRow>> {
        let row: Option<ConsoleSessionRow> = sqlx::query_as(
            "SELECT * FROM console_sessions WHERE id_hash = $1 AND expires_at > $2 \
             AND last_seen_at >= $3",
        )
        .bind(id_hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => {
                self.delete_console_session(id_hash).await?;
                Ok(None)
            }
            Some(mut row) => {
                if now - row.last_seen_at >= TOUCH_EVERY_MS {
                    sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
                        .bind(now)
                        .bind(id_hash)
                        .execute(&self.pool)
                        .await?;
                    row.last_seen_at = now;
                }
                Ok(Some(row))
            }
        }
    }

    async fn delete_console_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait::async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, r: &AuditRow) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, action, resource, campaign_id, client, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
        )
        .bind(r.at)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.resource)
        .bind(&r.campaign_id)
        .bind(&r.client)
        .bind(&r.outcome)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM audit_log WHERE TRUE");
        if let Some(campaigns) = &f.campaigns {
            q.push(" AND campaign_id = ANY(")
                .push_bind(campaigns)
                .push(")");
        }
        if let Some(v) = &f.actor {
            q.push(" AND actor = ").push_bind(v);
        }
        if let Some(v) = &f.action {
            q.push(" AND action = ").push_bind(v);
        }
        if let Some(v) = &f.resource {
            q.push(" AND resource = ").push_bind(v);
        }
        if let Some(v) = f.from {
            q.push(" AND at >= ").push_bind(v);
        }
        if let Some(v) = f.to {
            q.push(" AND at < ").push_bind(v);
        }
        if let Some(v) = f.before {
            q.push(" AND seq < ").push_bind(v);
        }
        q.push(" ORDER BY seq DESC LIMIT ").push_bind(f.limit);
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }
}
