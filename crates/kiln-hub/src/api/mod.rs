//! The REST API under `/api/v1` (axum). Handlers authenticate, check the
//! permission, call the database, and answer JSON; errors are
//! `{"error": {"code", "message"}}`.
//!
//! This module holds the hub's state, the extractors, the authentication
//! helpers, the router and its access log. [`ROUTES`] declares every route
//! once; the router and the OpenAPI document are both built from it. The
//! handlers live in one module per area (`users`, `tags`, `builds`,
//! `targets`, `images`, `hosts`, `tasks`; `about` for the hub itself,
//! `files` for the blobs behind them).

mod about;
mod builds;
mod files;
mod hosts;
mod images;
mod routes;
mod tags;
mod targets;
mod tasks;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, LoginLimit};
use crate::db::Db;
use crate::error::{HubError, Result};
use crate::model::*;
use crate::store::Store;

pub use files::{StoreSweep, sweep, sweep_store};
pub use routes::{Limit, ROUTES, Route, Verb};

/// Largest JSON body the API accepts; uploads stream without a limit.
pub const MAX_JSON: usize = 1 << 20;

pub struct Hub {
    pub db: Db,
    pub store: Store,
    pub anonymous_read: bool,
    /// The failed-login limit; the counts are in the database.
    pub limiter: LoginLimit,
    /// Held shared from a blob's upload until a row references it, and
    /// exclusively while [`sweep`] deletes blobs nothing references: a
    /// blob is never deleted under an upload that is about to use it.
    pub gc: tokio::sync::RwLock<()>,
}

type St = State<Arc<Hub>>;

/// A JSON body whose rejections are API errors.
pub struct J<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for J<T> {
    type Rejection = HubError;
    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(J(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(HubError::new(
                413,
                "too_large",
                format!("request body larger than {MAX_JSON} bytes"),
            )),
            Err(e) => Err(HubError::bad_request(e.body_text())),
        }
    }
}

/// Query parameters whose rejections are API errors.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = HubError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| HubError::bad_request(e.body_text()))
    }
}

/// The client's address, when the server knows it.
pub struct Peer(Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = HubError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    event: Option<i64>,
    inherit: bool,
    latest: bool,
    full: bool,
    reverse: bool,
    offset: Option<i64>,
    limit: Option<i64>,
    force: bool,
    state: Option<String>,
    name: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Result<(i64, i64)> {
        let offset = self.offset.unwrap_or(0);
        let limit = self.limit.unwrap_or(100);
        if offset < 0 || !(1..=1000).contains(&limit) {
            return Err(HubError::bad_request("offset must be ≥ 0 and limit between 1 and 1000"));
        }
        Ok((offset, limit))
    }
}

async fn principal(hub: &Hub, headers: &HeaderMap) -> Result<Principal> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(Principal::anonymous());
    };
    let token = v
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .ok_or_else(|| HubError::unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    hub.db
        .principal_by_token(&auth::token_hash(token.trim()))
        .await?
        .ok_or_else(|| HubError::unauthorized("invalid, revoked or expired token"))
}

async fn reader(hub: &Hub, headers: &HeaderMap) -> Result<Principal> {
    let p = principal(hub, headers).await?;
    if p.id.is_none() && !hub.anonymous_read {
        return Err(HubError::unauthorized("this hub requires a token for reading"));
    }
    Ok(p)
}

async fn writer(hub: &Hub, headers: &HeaderMap, perm: &str) -> Result<Principal> {
    let p = principal(hub, headers).await?;
    if p.id.is_none() {
        return Err(HubError::unauthorized(
            "authentication required: pass a token (KILN_TOKEN, --token or kiln login)",
        ));
    }
    if !p.has(perm) {
        return Err(HubError::forbidden(format!("{} lacks the `{perm}` permission", p.name)));
    }
    Ok(p)
}

fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The hub's router: every route of [`ROUTES`] under `/api/v1`, each with
/// its body limit, the access log, and a JSON 404 for everything else.
/// Nothing is routed that the table (and so the OpenAPI document) lacks.
pub fn router(hub: Arc<Hub>) -> Router {
    let api = ROUTES
        .iter()
        .fold(Router::new(), |api, r| api.route(r.path, r.method_router()));
    Router::new()
        .nest("/api/v1", api)
        .layer(axum::middleware::from_fn(access_log))
        .fallback(|| async {
            HubError::not_found("no such endpoint (the API is under /api/v1; see /api/v1/openapi.json)")
        })
        .with_state(hub)
}

/// One line per request: method, route template (never the concrete path
/// or query, which may carry names; never headers, which carry tokens),
/// status, time.
async fn access_log(req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "(unrouted)".to_string(), |p| p.as_str().to_string());
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::info!(
        target: "kiln_hub::access",
        "{method} {route} {} {:.1}ms",
        resp.status().as_u16(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    resp
}

async fn authenticated(hub: &Hub, headers: &HeaderMap) -> Result<Principal> {
    let p = principal(hub, headers).await?;
    if p.id.is_none() {
        return Err(HubError::unauthorized("authentication required"));
    }
    Ok(p)
}

/// Failed logins allowed per user or address within the window.
pub fn default_limiter() -> LoginLimit {
    LoginLimit::new(5, Duration::from_secs(300))
}
