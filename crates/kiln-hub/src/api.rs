//! The REST API under `/api/v1` (axum). Handlers authenticate, check the
//! permission, call the database, and answer JSON; errors are
//! `{"error": {"code", "message"}}`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::{self, LoginLimiter};
use crate::db::{self, Db};
use crate::error::{HubError, Result};
use crate::model::*;
use crate::store::{self, Expect, Store};

/// Largest JSON body the API accepts; uploads stream without a limit.
pub const MAX_JSON: usize = 1 << 20;

pub struct Hub {
    pub db: Db,
    pub store: Store,
    pub anonymous_read: bool,
    pub limiter: LoginLimiter,
    /// Held shared from a blob's upload until a row references it, and
    /// exclusively while [`sweep`] deletes blobs nothing references: a
    /// blob is never deleted under an upload that is about to use it.
    pub gc: tokio::sync::RwLock<()>,
}

/// Deletes the uploads of task attempts that can no longer complete, and
/// the blobs nothing else references. Returns how many blobs went.
pub async fn sweep(hub: &Hub) -> Result<usize> {
    let keys = hub.db.sweep_uploads().await?;
    forget(hub, &keys).await
}

/// Deletes the blobs among `keys` that nothing references, holding `gc`
/// exclusively: an upload of the same content that has stored its blob
/// but not yet its row finishes first. The caller holds no `gc` guard.
/// Returns how many blobs went.
async fn forget(hub: &Hub, keys: &[String]) -> Result<usize> {
    if keys.is_empty() {
        return Ok(0);
    }
    let _gc = hub.gc.write().await;
    let mut n = 0;
    for k in keys {
        if !hub.db.key_used(k).await? {
            hub.store.delete(k).await?;
            n += 1;
        }
    }
    Ok(n)
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

pub fn router(hub: Arc<Hub>) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/status", get(status))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{name}/perms", post(grant))
        .route("/users/{name}/perms/{perm}", axum::routing::delete(revoke))
        .route("/users/{name}/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/tags", get(list_tags).post(create_tag))
        .route("/tags/{tag}", get(tag_info).patch(edit_tag).delete(delete_tag))
        .route("/tags/{tag}/history", get(tag_history))
        .route("/tags/{tag}/inheritance", get(inheritance).post(add_link))
        .route(
            "/tags/{tag}/inheritance/{parent}",
            axum::routing::patch(edit_link).delete(remove_link),
        )
        .route("/tags/{tag}/config", get(tag_config))
        .route("/tags/{tag}/packages", get(packages).post(set_package))
        .route("/tags/{tag}/packages/{package}", axum::routing::delete(remove_package))
        .route("/tags/{tag}/builds", get(list_tagged).post(tag_build))
        .route("/tags/{tag}/builds/{nvr}", axum::routing::delete(untag_build))
        .route("/builds", get(list_builds).post(create_build))
        .route("/builds/{nvr}", get(build_info))
        .route("/builds/{nvr}/state", post(finish_build))
        .route("/targets", get(list_targets).post(create_target))
        .route(
            "/targets/{name}",
            get(target).put(apply_target).patch(edit_target).delete(delete_target),
        )
        .route("/targets/{name}/macros", get(target_macros))
        .route("/images", get(list_images))
        .route("/images/{name}/{version}", get(image_info).delete(remove_image))
        .route("/images/{name}/{version}/blob", get(image_blob))
        .route("/hosts", get(list_hosts).post(create_host))
        .route("/host/heartbeat", post(heartbeat))
        .route("/host/claim", post(claim))
        .route("/tasks", get(list_tasks).post(submit_task))
        .route("/tasks/{id}", get(task_info))
        .route("/tasks/{id}/cancel", post(cancel_task))
        .route("/tasks/{id}/result", post(finish_task))
        .route("/tasks/{id}/log", get(task_log).post(append_log))
        .route("/tasks/{id}/release", post(release_task))
        .layer(DefaultBodyLimit::max(MAX_JSON));
    // Streams: no body limit.
    let streams = Router::new()
        .route(
            "/builds/{nvr}/files/{file}",
            put(upload_artifact).get(download_artifact),
        )
        .route("/images/{name}/{version}/upload", put(upload_image))
        .route(
            "/tasks/{id}/files/{file}",
            put(upload_task_file).get(download_task_file),
        )
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .nest("/api/v1", api.merge(streams))
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

async fn status(State(hub): St) -> Result<Json<serde_json::Value>> {
    Ok(Json(serde_json::json!({
        "kiln": env!("CARGO_PKG_VERSION"),
        "database": hub.db.kind(),
        "event": hub.db.last_event().await?,
        "anonymous_read": hub.anonymous_read,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginIn {
    user: String,
    password: String,
    #[serde(default)]
    token_name: Option<String>,
    #[serde(default)]
    expires_days: Option<i64>,
}

async fn login(State(hub): St, Peer(addr): Peer, J(l): J<LoginIn>) -> Result<Response> {
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
    let expires = l.expires_days.map(|d| db::now() + d * 86_400);
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

async fn whoami(State(hub): St, headers: HeaderMap) -> Result<Json<serde_json::Value>> {
    let p = principal(&hub, &headers).await?;
    Ok(Json(
        serde_json::json!({"name": p.name, "authenticated": p.id.is_some(), "admin": p.admin, "perms": p.perms}),
    ))
}

async fn list_users(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<User>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_users().await?))
}

async fn create_user(State(hub): St, headers: HeaderMap, J(u): J<NewUser>) -> Result<Response> {
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
    Ok(created(serde_json::json!({"name": u.name})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermIn {
    perm: String,
}

async fn grant(State(hub): St, headers: HeaderMap, Path(name): Path<String>, J(p): J<PermIn>) -> Result<Response> {
    let who = writer(&hub, &headers, "admin").await?;
    hub.db.grant(&who, &name, &p.perm).await?;
    Ok(no_content())
}

async fn revoke(State(hub): St, headers: HeaderMap, Path((name, perm)): Path<(String, String)>) -> Result<Response> {
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

async fn list_tokens(State(hub): St, headers: HeaderMap, Path(name): Path<String>) -> Result<Json<Vec<TokenInfo>>> {
    self_or_admin(&hub, &headers, &name).await?;
    Ok(Json(hub.db.list_tokens(&name).await?))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct TokenIn {
    name: Option<String>,
    expires_days: Option<i64>,
}

async fn create_token(
    State(hub): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    J(t): J<TokenIn>,
) -> Result<Response> {
    self_or_admin(&hub, &headers, &name).await?;
    if t.expires_days.is_some_and(|d| d <= 0) {
        return Err(HubError::bad_request("expires_days must be positive"));
    }
    let token = auth::new_token();
    let expires = t.expires_days.map(|d| db::now() + d * 86_400);
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

async fn revoke_token(State(hub): St, headers: HeaderMap, Path(id): Path<i64>) -> Result<Response> {
    let p = principal(&hub, &headers).await?;
    if p.id.is_none() {
        return Err(HubError::unauthorized("authentication required"));
    }
    hub.db.revoke_token(&p, id).await?;
    Ok(no_content())
}

async fn list_tags(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Page<TagInfo>>> {
    reader(&hub, &headers).await?;
    let (offset, limit) = q.page()?;
    Ok(Json(hub.db.list_tags(offset, limit, q.event).await?))
}

async fn create_tag(State(hub): St, headers: HeaderMap, J(t): J<NewTag>) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(created(hub.db.create_tag(&who, &t).await?))
}

async fn tag_info(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<TagInfo>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.tag_info(&tag, q.event).await?))
}

async fn edit_tag(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    J(e): J<TagEdit>,
) -> Result<Json<TagInfo>> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(Json(hub.db.edit_tag(&who, &tag, &e).await?))
}

async fn delete_tag(State(hub): St, headers: HeaderMap, Path(tag): Path<String>) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.delete_tag(&who, &tag).await?;
    Ok(no_content())
}

async fn tag_history(State(hub): St, headers: HeaderMap, Path(tag): Path<String>) -> Result<Json<Vec<HistoryEntry>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.tag_history(&tag).await?))
}

async fn inheritance(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Q(q): Q<ListQuery>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    if q.full {
        Ok(Json(hub.db.full_inheritance(&tag, q.reverse, q.event).await?).into_response())
    } else {
        Ok(Json(hub.db.links(&tag, q.reverse, q.event).await?).into_response())
    }
}

async fn add_link(State(hub): St, headers: HeaderMap, Path(tag): Path<String>, J(l): J<LinkIn>) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(created(hub.db.add_link(&who, &tag, &l).await?))
}

async fn edit_link(
    State(hub): St,
    headers: HeaderMap,
    Path((tag, parent)): Path<(String, String)>,
    J(e): J<LinkEdit>,
) -> Result<Json<Vec<LinkOut>>> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(Json(hub.db.edit_link(&who, &tag, &parent, &e).await?))
}

async fn remove_link(
    State(hub): St,
    headers: HeaderMap,
    Path((tag, parent)): Path<(String, String)>,
) -> Result<Json<Vec<LinkOut>>> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(Json(hub.db.remove_link(&who, &tag, &parent).await?))
}

async fn tag_config(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<BuildConfigOut>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.build_config(&tag, q.event).await?))
}

async fn packages(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<PackageOut>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.packages(&tag, q.inherit, q.event).await?))
}

async fn set_package(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Q(q): Q<ListQuery>,
    J(p): J<PackageIn>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.set_package(&who, &tag, &p, q.force).await?;
    Ok(no_content())
}

async fn remove_package(
    State(hub): St,
    headers: HeaderMap,
    Path((tag, package)): Path<(String, String)>,
    Q(q): Q<ListQuery>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.remove_package(&who, &tag, &package, q.force).await?;
    Ok(no_content())
}

async fn list_tagged(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<TaggedOut>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_tagged(&tag, q.inherit, q.latest, q.event).await?))
}

async fn tag_build(
    State(hub): St,
    headers: HeaderMap,
    Path(tag): Path<String>,
    J(t): J<TagBuildIn>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.tag_build(&who, &tag, &t.nvr, t.force).await?;
    Ok(no_content())
}

async fn untag_build(
    State(hub): St,
    headers: HeaderMap,
    Path((tag, nvr)): Path<(String, String)>,
    Q(q): Q<ListQuery>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.untag_build(&who, &tag, &nvr, q.force).await?;
    Ok(no_content())
}

async fn list_builds(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Page<Build>>> {
    reader(&hub, &headers).await?;
    let (offset, limit) = q.page()?;
    Ok(Json(hub.db.list_builds(offset, limit, q.state.as_deref()).await?))
}

async fn create_build(State(hub): St, headers: HeaderMap, J(b): J<NewBuild>) -> Result<Response> {
    let who = writer(&hub, &headers, "build").await?;
    Ok(created(hub.db.create_build(&who, &b).await?))
}

async fn build_info(State(hub): St, headers: HeaderMap, Path(nvr): Path<String>) -> Result<Json<Build>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.build(&nvr, true).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateIn {
    state: String,
}

async fn finish_build(
    State(hub): St,
    headers: HeaderMap,
    Path(nvr): Path<String>,
    J(s): J<StateIn>,
) -> Result<Json<Build>> {
    let who = writer(&hub, &headers, "build").await?;
    if !matches!(s.state.as_str(), "COMPLETE" | "FAILED" | "CANCELED") {
        return Err(HubError::bad_request(format!(
            "state must be COMPLETE, FAILED or CANCELED, not {}",
            s.state
        )));
    }
    Ok(Json(hub.db.finish_build(&who, &nvr, &s.state).await?))
}

async fn upload_artifact(
    State(hub): St,
    headers: HeaderMap,
    Path((nvr, file)): Path<(String, String)>,
    body: Body,
) -> Result<Response> {
    let who = writer(&hub, &headers, "build").await?;
    let _gc = hub.gc.read().await;
    let (a, key) = hub.db.artifact_key(&nvr, &file).await?;
    if key.is_some() {
        return Err(HubError::conflict(format!("{file} of {nvr} is already uploaded")));
    }
    let stored = hub
        .store
        .put(
            body.into_data_stream(),
            Expect {
                sha256: Some(&a.sha256),
                size: Some(a.size as u64),
            },
        )
        .await?;
    hub.db.set_artifact_key(&who, &nvr, &file, &stored.key).await?;
    Ok(created(
        serde_json::json!({"file": file, "sha256": stored.sha256, "size": stored.size}),
    ))
}

async fn stream(hub: &Hub, key: &str, sha256: &str, name: &str) -> Result<Response> {
    let (size, s) = hub.store.get(key).await?;
    let mut r = Body::from_stream(s).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(sha256) {
        h.insert("x-kiln-sha256", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

async fn download_artifact(
    State(hub): St,
    headers: HeaderMap,
    Path((nvr, file)): Path<(String, String)>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    let (a, key) = hub.db.artifact_key(&nvr, &file).await?;
    let key = key.ok_or_else(|| HubError::not_found(format!("{file} of {nvr} was never uploaded")))?;
    stream(&hub, &key, &a.sha256, &file).await
}

async fn list_targets(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<Target>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_targets().await?))
}

async fn create_target(State(hub): St, headers: HeaderMap, J(t): J<Target>) -> Result<Response> {
    let who = writer(&hub, &headers, "target").await?;
    Ok(created(hub.db.put_target(&who, &t, true, None).await?))
}

async fn target(
    State(hub): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Target>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.target(&name, q.event).await?))
}

/// `kiln target apply`: create or replace the whole target.
async fn apply_target(
    State(hub): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    J(t): J<Target>,
) -> Result<Json<Target>> {
    let who = writer(&hub, &headers, "target").await?;
    if t.name != name {
        return Err(HubError::bad_request(format!(
            "the body names target {}, the path {name}",
            t.name
        )));
    }
    Ok(Json(hub.db.put_target(&who, &t, false, None).await?))
}

async fn edit_target(
    State(hub): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    J(e): J<TargetEdit>,
) -> Result<Json<Target>> {
    let who = writer(&hub, &headers, "target").await?;
    let mut t = hub.db.target(&name, None).await?;
    if let Some(n) = &e.rename {
        t.name = n.clone();
    }
    if let Some(b) = &e.build_tag {
        t.build_tag = b.clone();
    }
    if let Some(d) = &e.dest_tag {
        t.dest_tag = d.clone();
    }
    for (k, v) in &e.define {
        t.macros.insert(k.clone(), v.clone());
    }
    for k in &e.undefine {
        if t.macros.remove(k).is_none() {
            return Err(HubError::not_found(format!("target {name} does not define `{k}`")));
        }
    }
    Ok(Json(hub.db.put_target(&who, &t, false, Some(&name)).await?))
}

async fn delete_target(State(hub): St, headers: HeaderMap, Path(name): Path<String>) -> Result<Response> {
    let who = writer(&hub, &headers, "target").await?;
    hub.db.delete_target(&who, &name).await?;
    Ok(no_content())
}

async fn target_macros(State(hub): St, headers: HeaderMap, Path(name): Path<String>) -> Result<Json<MacroLayers>> {
    reader(&hub, &headers).await?;
    Ok(Json(db::macro_layers(&hub.db, &name).await?))
}

async fn list_images(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Vec<Image>>> {
    reader(&hub, &headers).await?;
    let mut v: Vec<Image> = hub
        .db
        .images(q.name.as_deref())
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    v.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| kiln_core::version::compare(&a.version, &b.version))
    });
    Ok(Json(v))
}

async fn find_image(hub: &Hub, name: &str, version: &str) -> Result<(Image, String)> {
    let all = hub.db.images(Some(name)).await?;
    if all.is_empty() {
        return Err(HubError::not_found(format!("unknown image `{name}`")));
    }
    let mut versions: Vec<String> = all.iter().map(|(i, _)| i.version.clone()).collect();
    versions.sort_by(|a, b| kiln_core::version::compare(a, b));
    all.into_iter().find(|(i, _)| i.version == version).ok_or_else(|| {
        HubError::not_found(format!(
            "{name} has no version {version}; available: {}",
            versions.join(", ")
        ))
    })
}

async fn image_info(
    State(hub): St,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Image>> {
    reader(&hub, &headers).await?;
    Ok(Json(find_image(&hub, &name, &version).await?.0))
}

async fn image_blob(
    State(hub): St,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    let (i, key) = find_image(&hub, &name, &version).await?;
    stream(&hub, &key, &i.sha256, &format!("{name}-{version}.{}", i.format)).await
}

async fn upload_image(
    State(hub): St,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: Body,
) -> Result<Response> {
    let who = writer(&hub, &headers, "image").await?;
    for (what, v) in [("image", &name), ("version", &version)] {
        if v.is_empty() || v.len() > 200 || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+~".contains(c)) {
            return Err(HubError::bad_request(format!("bad {what} `{v}`")));
        }
    }
    if hub
        .db
        .images(Some(&name))
        .await?
        .iter()
        .any(|(i, _)| i.version == version)
    {
        return Err(HubError::conflict(format!("image {name}@{version} exists")));
    }
    let want_sha = headers
        .get("x-kiln-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let gc = hub.gc.read().await;
    let stored = hub
        .store
        .put(
            body.into_data_stream(),
            Expect {
                sha256: want_sha.as_deref(),
                size: None,
            },
        )
        .await?;
    let Some(format) = store::sniff(&stored.head) else {
        drop(gc);
        forget(&hub, &[stored.key]).await?;
        return Err(HubError::bad_request("not a squashfs, erofs or tar image"));
    };
    let image = Image {
        name,
        version,
        format: format.to_string(),
        size: stored.size as i64,
        sha256: stored.sha256.clone(),
        uploader: who.name.clone(),
        time: db::now(),
    };
    if let Err(e) = hub.db.add_image(&who, &image, &stored.key).await {
        drop(gc);
        forget(&hub, &[stored.key]).await?;
        return Err(e);
    }
    Ok(created(image))
}

async fn remove_image(
    State(hub): St,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response> {
    writer(&hub, &headers, "image").await?;
    let key = hub.db.remove_image(&name, &version).await?;
    forget(&hub, &[key]).await?;
    Ok(no_content())
}

async fn create_host(State(hub): St, headers: HeaderMap, J(h): J<NewHost>) -> Result<Response> {
    let who = writer(&hub, &headers, "host").await?;
    let token = auth::new_token();
    hub.db.create_host(&who, &h, &auth::token_hash(&token)).await?;
    Ok(created(json!({"name": h.name, "token": token})))
}

async fn list_hosts(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<HostInfo>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_hosts().await?))
}

async fn authenticated(hub: &Hub, headers: &HeaderMap) -> Result<Principal> {
    let p = principal(hub, headers).await?;
    if p.id.is_none() {
        return Err(HubError::unauthorized("authentication required"));
    }
    Ok(p)
}

async fn heartbeat(State(hub): St, headers: HeaderMap) -> Result<Json<serde_json::Value>> {
    let who = authenticated(&hub, &headers).await?;
    let cancel = hub.db.heartbeat(&who).await?;
    Ok(Json(json!({"cancel": cancel, "lease_seconds": hub.db.lease()})))
}

async fn claim(State(hub): St, headers: HeaderMap) -> Result<Json<Option<Task>>> {
    let who = authenticated(&hub, &headers).await?;
    Ok(Json(hub.db.claim(&who).await?))
}

async fn finish_task(
    State(hub): St,
    headers: HeaderMap,
    Path(id): Path<i64>,
    J(r): J<TaskReport>,
) -> Result<Json<Task>> {
    let who = authenticated(&hub, &headers).await?;
    match (&r.build, r.ok) {
        (Some(b), true) => Ok(Json(hub.db.complete_task_build(&who, id, b, &r.result).await?)),
        (Some(_), false) => Err(HubError::bad_request("a failed task carries no build")),
        (None, ok) => Ok(Json(hub.db.finish_task(&who, id, ok, &r.result).await?)),
    }
}

async fn release_task(State(hub): St, headers: HeaderMap, Path(id): Path<i64>) -> Result<Json<Task>> {
    let who = authenticated(&hub, &headers).await?;
    Ok(Json(hub.db.release_task(&who, id).await?))
}

/// A builder's file for its task's current attempt: streamed into the
/// store, verified against the declared sha256 and size.
async fn upload_task_file(
    State(hub): St,
    headers: HeaderMap,
    Path((id, file)): Path<(i64, String)>,
    body: Body,
) -> Result<Response> {
    let who = authenticated(&hub, &headers).await?;
    let sha256 = headers
        .get("x-kiln-sha256")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| HubError::bad_request("an x-kiln-sha256 header is required"))?
        .to_string();
    let size: i64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| HubError::bad_request("a Content-Length is required"))?;
    let _gc = hub.gc.read().await;
    let up = hub.db.begin_upload(&who, id, &file, &sha256, size).await?;
    let put = hub
        .store
        .put(
            body.into_data_stream(),
            Expect {
                sha256: Some(&sha256),
                size: Some(size as u64),
            },
        )
        .await;
    match put {
        Ok(stored) => {
            hub.db.end_upload(up, true).await?;
            Ok(created(
                serde_json::json!({"file": file, "sha256": stored.sha256, "size": stored.size}),
            ))
        }
        Err(e) => {
            if let Err(e2) = hub.db.end_upload(up, false).await {
                tracing::warn!("forgetting a failed upload: {e2}");
            }
            Err(e)
        }
    }
}

async fn download_task_file(
    State(hub): St,
    headers: HeaderMap,
    Path((id, file)): Path<(i64, String)>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    let (f, key) = hub.db.task_file(id, &file).await?;
    stream(&hub, &key, &f.sha256, &file).await
}

async fn submit_task(State(hub): St, headers: HeaderMap, J(t): J<NewTask>) -> Result<Response> {
    let who = writer(&hub, &headers, "build").await?;
    Ok(created(hub.db.submit_task(&who, &t).await?))
}

async fn list_tasks(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Page<Task>>> {
    reader(&hub, &headers).await?;
    let (offset, limit) = q.page()?;
    Ok(Json(hub.db.list_tasks(offset, limit, q.state.as_deref()).await?))
}

async fn task_info(State(hub): St, headers: HeaderMap, Path(id): Path<i64>) -> Result<Json<Task>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.task(id).await?))
}

async fn cancel_task(State(hub): St, headers: HeaderMap, Path(id): Path<i64>) -> Result<Json<Task>> {
    let who = authenticated(&hub, &headers).await?;
    Ok(Json(hub.db.cancel_task(&who, id).await?))
}

async fn append_log(State(hub): St, headers: HeaderMap, Path(id): Path<i64>, body: String) -> Result<Response> {
    let who = authenticated(&hub, &headers).await?;
    hub.db.append_log(&who, id, &body).await?;
    Ok(no_content())
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct LogQuery {
    after: i64,
}

async fn task_log(
    State(hub): St,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Q(q): Q<LogQuery>,
) -> Result<Json<serde_json::Value>> {
    reader(&hub, &headers).await?;
    let t = hub.db.task(id).await?;
    let chunks = hub.db.task_log(id, q.after).await?;
    let next = chunks.last().map_or(q.after, |c| c.0);
    let text: String = chunks.into_iter().map(|c| c.1).collect();
    Ok(Json(json!({"state": t.state, "text": text, "next": next})))
}

/// Failed logins allowed per user or address within the window.
pub fn default_limiter() -> LoginLimiter {
    LoginLimiter::new(5, Duration::from_secs(300))
}
