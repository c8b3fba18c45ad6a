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

/// `POST /login`. The attempt is counted against the user name typed and
/// the client's address before the password is checked, atomically and in
/// the database (`db::logins`), so no burst of attempts, on one hub or on
/// several sharing the database, gets more than the limit's checks; a
/// success takes the user's count back to zero.
pub(super) async fn login(State(hub): St, Peer(addr): Peer, J(l): J<LoginIn>) -> Result<Response> {
    let expires = expiry(l.expires_days)?;
    match check_login(&hub, &l.user, &l.password, addr).await? {
        Login::Limited(wait) => Ok(too_many_logins(wait)),
        Login::Wrong => Err(HubError::unauthorized("wrong user name or password")),
        Login::Accepted(_) => {
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
    }
}

/// What a login attempt came to.
pub(crate) enum Login {
    /// The password is the user's (this user id); the user's failed count is back to zero.
    Accepted(i64),
    /// A wrong name or password (logged without the name typed).
    Wrong,
    /// Too many failed attempts for the name or the address: retry in so many seconds.
    Limited(u64),
}

/// One login attempt, by the API or the web form: counted against the name
/// typed and the client's address before the password is checked.
pub(crate) async fn check_login(
    hub: &Hub,
    user: &str,
    password: &str,
    addr: Option<std::net::IpAddr>,
) -> Result<Login> {
    let keys = auth::LoginKeys::new(user, addr);
    let attempts = match hub.db.admit_login(&keys.all(), db::now(), hub.limiter).await? {
        db::Admission::Admitted(ids) => ids,
        db::Admission::Refused(wait) => {
            tracing::warn!(client = %shown(addr), "login refused: too many failed attempts");
            return Ok(Login::Limited(wait));
        }
    };
    let (user_id, ok) = check_password(hub, user, password).await?;
    match user_id.filter(|_| ok) {
        Some(id) => {
            hub.db.login_succeeded(&keys.user, &attempts).await?;
            Ok(Login::Accepted(id))
        }
        None => {
            // Never the name typed: it may be a password.
            tracing::warn!(client = %shown(addr), user_id, known_user = user_id.is_some(), "failed login");
            Ok(Login::Wrong)
        }
    }
}

/// Whether `password` is `user`'s, and the user's id if there is one. An
/// unknown user costs the same work, so timing does not tell.
async fn check_password(hub: &Hub, user: &str, password: &str) -> Result<(Option<i64>, bool)> {
    let pw = password.to_string();
    Ok(match hub.db.password_of(user).await? {
        Some((id, Some(hash))) => {
            let ok = tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
                .await
                .unwrap_or(false);
            (Some(id), ok)
        }
        found => {
            let _ = tokio::task::spawn_blocking(move || auth::hash_password(&format!("{pw}-padding"))).await;
            (found.map(|(id, _)| id), false)
        }
    })
}

/// A client's address for the log (made by the program, never input).
fn shown(addr: Option<std::net::IpAddr>) -> String {
    addr.map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

/// `429` with `Retry-After`: the limit is reached for the user or address.
fn too_many_logins(wait: u64) -> Response {
    let mut r = HubError::new(
        429,
        "too_many_requests",
        format!("too many failed logins; retry in {wait} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
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
    Ok(created(make_token(&hub, &name, &t).await?))
}

/// A new API token for user `name` (the caller is the user or an admin);
/// the hub keeps only its hash. The API and the user's web page share it.
pub(crate) async fn make_token(hub: &Hub, name: &str, t: &TokenIn) -> Result<NewToken> {
    let expires = expiry(t.expires_days)?;
    let token = auth::new_token();
    let id = hub
        .db
        .create_token(
            name,
            &auth::token_hash(&token),
            t.name.as_deref().unwrap_or("api"),
            expires,
        )
        .await?;
    Ok(NewToken { id, token, expires })
}

pub(super) async fn revoke_token(State(hub): St, headers: HeaderMap, P(id): P<i64>) -> Result<Response> {
    let p = principal(&hub, &headers).await?;
    if p.id.is_none() {
        return Err(HubError::unauthorized("authentication required"));
    }
    hub.db.revoke_token(&p, id).await?;
    Ok(no_content())
}
