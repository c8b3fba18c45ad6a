//! Builds: creating and finishing them, and streaming their artifacts in
//! and out.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::files::stream;
use super::{J, ListQuery, P, Q, St, created, reader, writer};
use crate::error::{HubError, Result};
use crate::model::*;
use crate::store::Expect;

pub(super) async fn list_builds(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Page<Build>>> {
    reader(&hub, &headers).await?;
    let (offset, limit) = q.page()?;
    known_state(q.state.as_deref(), BUILD_STATES)?;
    Ok(Json(hub.db.list_builds(offset, limit, q.state.as_deref()).await?))
}

/// The states a build may be in.
const BUILD_STATES: &[&str] = &["BUILDING", "COMPLETE", "FAILED", "CANCELED", "DELETED"];

/// Checks a listing's `?state=`: one of `states`.
pub(super) fn known_state(state: Option<&str>, states: &[&str]) -> Result<()> {
    match state {
        Some(s) if !states.contains(&s) => Err(HubError::bad_request(format!(
            "state must be one of {}, not `{}`",
            states.join(", "),
            s.escape_debug()
        ))),
        _ => Ok(()),
    }
}

pub(super) async fn create_build(State(hub): St, headers: HeaderMap, J(b): J<NewBuild>) -> Result<Response> {
    let who = writer(&hub, &headers, "build").await?;
    Ok(created(hub.db.create_build(&who, &b).await?))
}

pub(super) async fn build_info(State(hub): St, headers: HeaderMap, P(nvr): P<String>) -> Result<Json<Build>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.build(&nvr, true).await?))
}

pub(super) async fn finish_build(
    State(hub): St,
    headers: HeaderMap,
    P(nvr): P<String>,
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

pub(super) async fn upload_artifact(
    State(hub): St,
    headers: HeaderMap,
    P((nvr, file)): P<(String, String)>,
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
    Ok(created(Uploaded {
        file,
        sha256: stored.sha256,
        size: stored.size,
    }))
}

pub(super) async fn download_artifact(
    State(hub): St,
    headers: HeaderMap,
    P((nvr, file)): P<(String, String)>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    let (a, key) = hub.db.artifact_key(&nvr, &file).await?;
    let key = key.ok_or_else(|| HubError::not_found(format!("{file} of {nvr} was never uploaded")))?;
    stream(&hub, &key, &a.sha256, &file).await
}
