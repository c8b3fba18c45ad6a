//! The REST API under `/api/v1` (axum). Handlers authenticate, check the
//! permission, call the database, and answer JSON; errors are
//! `{"error": {"code", "message"}}`.
//!
//! This module holds the hub's state, the extractors (each rejection an
//! API error), the authentication helpers, the router and its layers: the
//! access log, the limits on URLs and headers, a JSON 500 for a handler
//! that panics and a JSON error for any refusal of axum's own. [`ROUTES`]
//! declares every route once; the router and the OpenAPI document are both
//! built from it. The handlers live in one module per area (`users`, `tags`, `builds`,
//! `targets`, `images`, `hosts`, `tasks`; `about` for the hub itself,
//! `files` for the blobs behind them).

mod about;
mod builds;
mod channels;
mod files;
mod hooks;
mod hosts;
mod images;
pub(crate) use images::put_image;
pub(crate) use users::make_token;
mod pipelines;
mod routes;
mod tags;
mod targets;
mod tasks;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{self, LoginLimit};
use crate::db::Db;
use crate::error::{HubError, Result};
use crate::model::*;
use crate::store::Store;

pub use channels::{publish_auto, publish_channel};
pub use files::{StoreSweep, sweep, sweep_store};
pub(crate) use pipelines::{Trigger, checked, hook_secret, known_service, sha256_hex, start};
pub use pipelines::{chain, chain_catch_up};
pub use routes::{Answer, Body, Limit, Query, ROUTES, Route, SchemaFn, Verb};
pub(crate) use users::{Login, check_login};

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
    /// The key hook secrets and the channel signing key derive from.
    pub key: crate::keys::HubKey,
    /// Woken when builds are tagged or untagged: channels that publish
    /// automatically are looked at again ([`publish_auto`]).
    pub changed: tokio::sync::Notify,
    /// Seconds a Koji client's session lives after its last call.
    pub koji_session: i64,
}

type St = State<Arc<Hub>>;

/// A JSON body whose rejections are API errors: 413 past [`MAX_JSON`], 415
/// without a JSON content type, 400 for anything else.
pub struct J<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for J<T> {
    type Rejection = HubError;
    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(J(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) if e.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE => Err(HubError::new(
                415,
                "unsupported_media_type",
                "the body must be JSON, sent with `Content-Type: application/json`",
            )),
            Err(e) => Err(HubError::bad_request(e.body_text())),
        }
    }
}

/// A UTF-8 text body (at most [`MAX_JSON`] bytes) whose rejections are API
/// errors.
pub struct Text(pub String);

impl<S: Send + Sync> FromRequest<S> for Text {
    type Rejection = HubError;
    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match String::from_request(req, state).await {
            Ok(s) => Ok(Text(s)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(HubError::bad_request(e.body_text())),
        }
    }
}

fn too_large() -> HubError {
    HubError::new(413, "too_large", format!("request body larger than {MAX_JSON} bytes"))
}

/// Path parameters whose rejections are API errors: a parameter that does
/// not parse (`/tasks/abc`, bytes that are not UTF-8) is a 400.
pub struct P<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = HubError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(P(p.0)),
            Err(e) if e.status().is_server_error() => Err(HubError::internal(e.body_text())),
            Err(e) => Err(HubError::bad_request(format!("bad path: {}", e.body_text()))),
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
pub struct Peer(pub Option<std::net::IpAddr>);

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

/// The query parameters of the reads; each route reads some of them (its
/// entry in [`ROUTES`] names which).
#[derive(Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    event: Option<i64>,
    inherit: bool,
    latest: bool,
    full: bool,
    reverse: bool,
    #[schemars(range(min = 0))]
    offset: Option<i64>,
    #[schemars(range(min = 1, max = 1000))]
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

pub(crate) async fn principal(hub: &Hub, headers: &HeaderMap) -> Result<Principal> {
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

/// The longest request target (path and query) the hub reads: a longer one
/// is refused with a JSON 414. (Past 64 KiB the HTTP layer refuses it first,
/// with a bodiless 414; docs/hub.md, "The API".)
pub const MAX_URI: usize = 8 << 10;

/// The most header bytes (names and values) the hub reads: more are refused
/// with a JSON 431.
pub const MAX_HEADERS: usize = 64 << 10;

/// The hub's router: every route of [`ROUTES`] under `/api/v1`, each with
/// its body limit, a JSON 405 for the methods a path does not answer, a
/// JSON 404 for everything else, and the layers of [`harden`].
/// Nothing is routed that the table (and so the OpenAPI document) lacks.
pub fn router(hub: Arc<Hub>) -> Router {
    let api = ROUTES
        .iter()
        .fold(Router::new(), |api, r| api.route(r.path, r.method_router()))
        .method_not_allowed_fallback(method_not_allowed);
    // What devices fetch (docs/channels.md), outside the API.
    let devices = Router::new()
        .route("/channels/key.pub", get(channels::public_key))
        .route("/channels/{tag}/index.json", get(channels::index_json))
        .route("/channels/{tag}/index.json.minisig", get(channels::index_minisig))
        .route("/channels/{tag}/files/{nvr}/{file}", get(channels::channel_file));
    let app = Router::new()
        .nest("/api/v1", api)
        .merge(devices)
        .route("/kojihub", axum::routing::post(crate::koji::endpoint))
        .merge(crate::web::router())
        .fallback(|| async {
            HubError::not_found("no such endpoint (the API is under /api/v1; see /api/v1/openapi.json)")
        });
    harden(app).with_state(hub)
}

/// The layers every answer passes through, innermost first: a handler that
/// panics answers a JSON 500; any other error answer that is not JSON (an
/// extractor's or the router's own) becomes one; a URL or headers past
/// [`MAX_URI`] or [`MAX_HEADERS`] are refused; and every request is logged.
fn harden<S: Clone + Send + Sync + 'static>(app: Router<S>) -> Router<S> {
    app.layer(CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(head_limits))
        .layer(axum::middleware::from_fn(access_log))
}

async fn method_not_allowed(method: Method) -> HubError {
    HubError::new(
        405,
        "method_not_allowed",
        format!("{method} is not allowed on this path; the Allow header lists the methods that are"),
    )
}

/// A handler's panic as an answer: a JSON 500, the panic's message in the
/// log only.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!("a request handler panicked: {what}");
    HubError::internal("the hub failed on this request (a bug: its log has the details)").into_response()
}

/// Refuses a request whose URL or headers are longer than the hub reads.
async fn head_limits(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI {
        return HubError::new(
            414,
            "uri_too_long",
            format!("the URL is {uri} bytes long; the hub reads at most {MAX_URI}"),
        )
        .into_response();
    }
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers > MAX_HEADERS {
        return HubError::new(
            431,
            "headers_too_large",
            format!("the headers are {headers} bytes long; the hub reads at most {MAX_HEADERS}"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Gives an error answer that is not JSON (a rejection of axum's own, a
/// bare status) the documented shape: the same status and headers (`Allow`,
/// `Retry-After`), a code for the status, its text (or the status's name)
/// as the message. Every other answer passes as it is.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // JSON errors, and the web pages' own error pages, pass as they are.
    let answered = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if status.as_u16() < 400 || answered {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty());
    let message = text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let (json_parts, json_body) = HubError::new(status.as_u16(), code_of(status), message)
        .into_response()
        .into_parts();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}

/// The error code of a status, for errors that come without one.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        423 => "locked",
        429 => "too_many_requests",
        431 => "headers_too_large",
        501 => "not_implemented",
        503 => "unavailable",
        _ if status.is_client_error() => "client_error",
        _ => "internal",
    }
}

/// One line per request: method, route template (never the concrete path
/// or query, which may carry names; never headers, which carry tokens),
/// status, time.
async fn access_log(req: Request, next: Next) -> Response {
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// A handler that panics answers the documented JSON 500; the
    /// connection is not dropped.
    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500() {
        async fn boom() -> StatusCode {
            panic!("the handler fails")
        }
        let app = harden(Router::new().route("/boom", get(boom)));
        let req = Request::builder().uri("/boom").body(Body::empty()).expect("request");
        let resp = app.oneshot(req).await.expect("an answer");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["code"], "internal");
        assert!(
            !v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("the handler fails"),
            "{v}"
        );
    }

    /// Errors without a body of their own get the shape, their status and
    /// their headers.
    #[tokio::test]
    async fn bare_error_statuses_become_json_errors() {
        let app = harden(Router::new().route(
            "/bare",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")], "slow down") }),
        ));
        let req = Request::builder().uri("/bare").body(Body::empty()).expect("request");
        let resp = app.oneshot(req).await.expect("an answer");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["code"], "too_many_requests");
        assert_eq!(v["error"]["message"], "slow down");
    }
}
