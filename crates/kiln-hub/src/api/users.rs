//! Users, their permissions and API tokens, and logging in.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{Hub, J, P, Peer, St, created, no_content, principal, reader, writer};
use crate::auth;
use crate::db;
use crate::error::{HubError, Result};
use crate::model::*;

/// The longest a token may live: 100 years.
const MAX_TOKEN_DAYS: i64 = 36_500;

/// When a token asked to live `days` expires: none without a lifetime, else
/// between 1 and [`MAX_TOKEN_DAYS`] days from now.
fn expiry(days: Option<i64>) -> Result<Option<i64>> {
    match days {
        None => Ok(None),
        Some(d) if (1..=MAX_TOKEN_DAYS).contains(&d) => Ok(Some(db::now() + d * 86_400)),
        Some(_) => Err(HubError::bad_request(format!(
            "expires_days must be between 1 and {MAX_TOKEN_DAYS}"
        ))),
    }
}

pub(super) async fn login(State(hub): St, Peer(addr): Peer, J(l): J<LoginIn>) -> Result<Response> {
    let expires = expiry(l.expires_days)?;
    let mut keys = vec![format!("user:{}", l.user)];
    if let Some(a) = addr {
        keys.push(format!("addr:{a}"));
    }
    if let Err(wait) = hub.limiter.check(&keys) {
        let mut r = HubError::new(
            429,
            "too_many_requests",
            format!("too many failed logins; retry in {wait} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(r);
    }
    let ok = match hub.db.password_of(&l.user).await? {
        Some((_, Some(hash))) => {
            let pw = l.password.clone();
            tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
                .await
                .unwrap_or(false)
        }
        _ => {
            // Same work for unknown users, so timing does not tell.
            let pw = l.password.clone();
            let _ = tokio::task::spawn_blocking(move || auth::hash_password(&format!("{pw}-padding"))).await;
            false
        }
    };
    if !ok {
        hub.limiter.failed(&keys);
        tracing::warn!(user = %l.user, "failed login");
        return Err(HubError::unauthorized("wrong user name or password"));
    }
    hub.limiter.succeeded(&keys);
    let token = auth::new_token();
    let id = hub
        .db
        .create_token(
            &l.user,
            &auth::token_hash(&token),
            l.token_name.as_deref().unwrap_or("login"),
            expires,
        )
        .await?;
    Ok(created(NewToken { id, token, expires }))
}

pub(super) async fn whoami(State(hub): St, headers: HeaderMap) -> Result<Json<WhoAmI>> {
    let p = principal(&hub, &headers).await?;
    Ok(Json(WhoAmI {
        authenticated: p.id.is_some(),
        name: p.name,
        admin: p.admin,
        perms: p.perms,
    }))
}

pub(super) async fn list_users(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<User>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_users().await?))
}

pub(super) async fn create_user(State(hub): St, headers: HeaderMap, J(u): J<NewUser>) -> Result<Response> {
    let who = writer(&hub, &headers, "admin").await?;
    let hash = match u.password {
        Some(pw) => Some(
            tokio::task::spawn_blocking(move || auth::hash_password(&pw))
                .await
                .map_err(|e| HubError::internal(e.to_string()))??,
        ),
        None => None,
    };
    hub.db.create_user(&who, &u.name, hash, &u.perms, "user").await?;
    Ok(created(UserCreated { name: u.name }))
}

pub(super) async fn grant(State(hub): St, headers: HeaderMap, P(name): P<String>, J(p): J<PermIn>) -> Result<Response> {
    let who = writer(&hub, &headers, "admin").await?;
    hub.db.grant(&who, &name, &p.perm).await?;
    Ok(no_content())
}

pub(super) async fn revoke(
    State(hub): St,
    headers: HeaderMap,
    P((name, perm)): P<(String, String)>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "admin").await?;
    hub.db.revoke(&who, &name, &perm).await?;
    Ok(no_content())
}

async fn self_or_admin(hub: &Hub, headers: &HeaderMap, user: &str) -> Result<Principal> {
    let p = principal(hub, headers).await?;
    if p.id.is_none() {
        return Err(HubError::unauthorized("authentication required"));
    }
    if p.name != user && !p.admin {
        return Err(HubError::forbidden("only an admin may manage another user's tokens"));
    }
    Ok(p)
}

pub(super) async fn list_tokens(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
) -> Result<Json<Vec<TokenInfo>>> {
    self_or_admin(&hub, &headers, &name).await?;
    Ok(Json(hub.db.list_tokens(&name).await?))
}

pub(super) async fn create_token(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
    J(t): J<TokenIn>,
) -> Result<Response> {
    self_or_admin(&hub, &headers, &name).await?;
    let expires = expiry(t.expires_days)?;
    let token = auth::new_token();
    let id = hub
        .db
        .create_token(
            &name,
            &auth::token_hash(&token),
            t.name.as_deref().unwrap_or("api"),
            expires,
        )
        .await?;
    Ok(created(NewToken { id, token, expires }))
}

pub(super) async fn revoke_token(State(hub): St, headers: HeaderMap, P(id): P<i64>) -> Result<Response> {
    let p = principal(&hub, &headers).await?;
    if p.id.is_none() {
        return Err(HubError::unauthorized("authentication required"));
    }
    hub.db.revoke_token(&p, id).await?;
    Ok(no_content())
}
