//! Users, their roles per campaign and API keys (issue 16):
//!
//! - `GET /v1/me`: the caller (`{"id","superuser","grants"}`), any principal.
//! - `GET/POST /v1/users`, `DELETE /v1/users/{id}`: superusers.
//! - `GET /v1/campaigns/{id}/grants`, `PUT/DELETE /v1/campaigns/{id}/grants/{user}`: the
//!   campaign's owners and superusers.
//! - `GET/POST /v1/keys`, `DELETE /v1/keys/{id}`: a user's own keys (superusers: anyone's).
//!   The key is shown once, in the answer that made it.
//!
//! Every change is audited.

use super::auth::{Admin, Caller};
use super::extract::{body_rejection, path_or_not_found};
use super::state::AppState;
use crate::access::{Action, NewKey, NewUser, Permission, Resource, Role};
use crate::error::ApiError;
use crate::store::access::{ApiKeyRow, GrantRow, UserRow};
use crate::timestamps::rfc3339;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/users", get(list_users).post(create_user))
        .route("/v1/users/{id}", delete(delete_user))
        .route("/v1/campaigns/{id}/grants", get(list_grants))
        .route(
            "/v1/campaigns/{id}/grants/{user}",
            put(put_grant).delete(delete_grant),
        )
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key))
}

fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(body_rejection)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}

fn user_view(u: &UserRow) -> Value {
    json!({"id": u.id, "email": u.email, "name": u.name, "superuser": u.superuser,
           "created_at": rfc3339(u.created_at)})
}

fn grant_view(g: &GrantRow) -> Value {
    let permissions: Vec<&str> = g.permissions.split(',').filter(|p| !p.is_empty()).collect();
    json!({"user_id": g.user_id, "campaign_id": g.campaign_id, "role": g.role,
           "permissions": permissions, "created_at": rfc3339(g.created_at)})
}

fn key_view(k: &ApiKeyRow) -> Value {
    fn list(v: &Option<String>) -> Option<Vec<&str>> {
        v.as_ref()
            .map(|s| s.split(',').filter(|p| !p.is_empty()).collect())
    }
    json!({"id": k.id, "user_id": k.user_id, "name": k.name, "prefix": k.prefix,
           "permissions": list(&k.permissions), "campaigns": list(&k.campaigns),
           "created_at": rfc3339(k.created_at), "revoked_at": k.revoked_at.map(rfc3339)})
}

async fn me(caller: Caller) -> impl IntoResponse {
    let p = &caller.principal;
    let grants: serde_json::Map<String, Value> = p
        .grants
        .iter()
        .map(|(c, g)| {
            let perms: Vec<&str> = g.permissions.iter().map(|p| p.as_str()).collect();
            (
                c.clone(),
                json!({"role": g.role.as_str(), "permissions": perms}),
            )
        })
        .collect();
    axum::Json(
        json!({"id": p.id, "superuser": p.superuser, "key_id": p.key_id,
                      "grants": grants}),
    )
}

async fn list_users(_: Admin, State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let users: Vec<Value> = app.access.users().await?.iter().map(user_view).collect();
    Ok(axum::Json(json!({"users": users})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    superuser: bool,
}

async fn create_user(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.may(Action::Superuser, Resource::Deployment)?;
    let req: CreateUser = json_body(body)?;
    let result = app
        .access
        .create_user(NewUser {
            email: req.email.clone(),
            name: req.name,
            password: req.password,
            superuser: req.superuser,
        })
        .await;
    let resource = result.as_ref().map_or(req.email, |u| u.id.clone());
    let user = caller
        .audited(&app, "user.create", &resource, None, result)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user_view(&user))))
}

async fn delete_user(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.may(Action::Superuser, Resource::Deployment)?;
    let id = path_or_not_found(id, "user_not_found")?;
    let result = app.access.delete_user(&id).await;
    caller
        .audited(&app, "user.delete", &id, None, result)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_grants(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "campaign_not_found")?;
    caller.may(Action::ManageCampaign, Resource::Campaign(&id))?;
    app.service.campaign(&id).await?;
    let grants: Vec<Value> = app
        .access
        .grants_of_campaign(&id)
        .await?
        .iter()
        .map(grant_view)
        .collect();
    Ok(axum::Json(json!({"grants": grants})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutGrant {
    role: String,
    #[serde(default)]
    permissions: Vec<String>,
}

async fn put_grant(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (campaign, user) = path_or_not_found(path, "campaign_not_found")?;
    caller.may(Action::ManageCampaign, Resource::Campaign(&campaign))?;
    app.service.campaign(&campaign).await?;
    let req: PutGrant = json_body(body)?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            "role must be owner, member, viewer or analyst",
        )
    })?;
    let permissions = parse_permissions(&req.permissions)?;
    if role != Role::Member && !permissions.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "permissions are named for members only",
        ));
    }
    let result = app
        .access
        .put_grant(&user, &campaign, role, &permissions)
        .await;
    let resource = format!("{user}@{campaign}:{}", role.as_str());
    let grant = caller
        .audited(&app, "grant.put", &resource, Some(&campaign), result)
        .await?;
    Ok(axum::Json(grant_view(&grant)))
}

fn parse_permissions(names: &[String]) -> Result<BTreeSet<Permission>, ApiError> {
    names
        .iter()
        .map(|n| {
            Permission::parse(n).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_body",
                    format!("unknown permission {n:?} (view, edit, invite, listen, export, admin)"),
                )
            })
        })
        .collect()
}

async fn delete_grant(
    caller: Caller,
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (campaign, user) = path_or_not_found(path, "campaign_not_found")?;
    caller.may(Action::ManageCampaign, Resource::Campaign(&campaign))?;
    let result = app.access.delete_grant(&user, &campaign).await;
    let resource = format!("{user}@{campaign}");
    caller
        .audited(&app, "grant.delete", &resource, Some(&campaign), result)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(
    caller: Caller,
    State(app): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let p = &caller.principal;
    let keys = if p.superuser {
        app.access.keys(None).await?
    } else {
        app.access.keys(Some(&p.id)).await?
    };
    let keys: Vec<Value> = keys.iter().map(key_view).collect();
    Ok(axum::Json(json!({"keys": keys})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    /// Whose key (superusers only; default the caller).
    user_id: Option<String>,
    permissions: Option<Vec<String>>,
    campaigns: Option<Vec<String>>,
}

async fn create_key(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req: CreateKey = json_body(body)?;
    let p = &caller.principal;
    if p.key_id.is_some() {
        // A (possibly narrowed) key must not mint an unnarrowed one.
        return Err(super::auth::forbidden(
            "a password sign-in or the admin token",
        ));
    }
    let user_id = match (req.user_id, p.user_id()) {
        (Some(other), own) => {
            if Some(other.as_str()) != own {
                caller.may(Action::Superuser, Resource::Deployment)?;
            }
            other
        }
        (None, Some(own)) => own.to_string(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the admin token has no keys of its own: name a user_id",
            ));
        }
    };
    app.access.user(&user_id).await?;
    // A key holds at most its user's grants, narrowed again at every use.
    let permissions = req
        .permissions
        .as_deref()
        .map(parse_permissions)
        .transpose()?;
    if let Some(campaigns) = &req.campaigns
        && let Some(c) = campaigns
            .iter()
            .find(|c| !crate::ids::is_valid_id("cmp", c))
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("{c:?} is not a campaign id"),
        ));
    }
    let result = app
        .access
        .create_key(NewKey {
            user_id,
            name: req.name,
            permissions,
            campaigns: req.campaigns,
        })
        .await;
    let resource = result.as_ref().map_or(String::new(), |(k, _)| k.id.clone());
    let (row, secret) = caller
        .audited(&app, "key.create", &resource, None, result)
        .await?;
    let mut view = key_view(&row);
    if let Value::Object(m) = &mut view {
        m.insert("key".into(), json!(secret));
    }
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn revoke_key(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_or_not_found(id, "key_not_found")?;
    let key = app.access.key(&id).await?;
    if Some(key.user_id.as_str()) != caller.principal.user_id() {
        caller.may(Action::Superuser, Resource::Deployment)?;
    }
    let result = app.access.revoke_key(&id).await;
    caller
        .audited(&app, "key.revoke", &id, None, result)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
