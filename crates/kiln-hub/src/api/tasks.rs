//! Tasks: submitted, listed and cancelled by users; reported, logged,
//! released and given files by the builder that holds them.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;

use super::builds::known_state;
use super::files::stream;
use super::{J, ListQuery, P, Q, St, Text, authenticated, created, no_content, reader, writer};
use crate::error::{HubError, Result};
use crate::model::*;
use crate::store::Expect;

pub(super) async fn finish_task(
    State(hub): St,
    headers: HeaderMap,
    P(id): P<i64>,
    J(r): J<TaskReport>,
) -> Result<Json<Task>> {
    let who = authenticated(&hub, &headers).await?;
    match (&r.build, r.ok) {
        (Some(b), true) => {
            let t = hub.db.complete_task_build(&who, id, b, &r.result).await?;
            hub.changed.notify_one();
            // A pipeline imported the result: the pipelines following it run.
            if let Some((name, version)) = t.result.as_ref().and_then(|r| r["image"].as_str()?.split_once('@')) {
                let (hub, name, version) = (hub.clone(), name.to_string(), version.to_string());
                tokio::spawn(async move { super::chain(&hub, &name, &version).await });
            }
            Ok(Json(t))
        }
        (Some(_), false) => Err(HubError::bad_request("a failed task carries no build")),
        (None, ok) => Ok(Json(hub.db.finish_task(&who, id, ok, &r.result).await?)),
    }
}

pub(super) async fn release_task(State(hub): St, headers: HeaderMap, P(id): P<i64>) -> Result<Json<Task>> {
    let who = authenticated(&hub, &headers).await?;
    Ok(Json(hub.db.release_task(&who, id).await?))
}

/// A builder's file for its task's current attempt: streamed into the
/// store, verified against the declared sha256 and size.
pub(super) async fn upload_task_file(
    State(hub): St,
    headers: HeaderMap,
    P((id, file)): P<(i64, String)>,
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
            Ok(created(Uploaded {
                file,
                sha256: stored.sha256,
                size: stored.size,
            }))
        }
        Err(e) => {
            if let Err(e2) = hub.db.end_upload(up, false).await {
                tracing::warn!("forgetting a failed upload: {}", crate::logsafe::esc(e2));
            }
            Err(e)
        }
    }
}

pub(super) async fn download_task_file(
    State(hub): St,
    headers: HeaderMap,
    P((id, file)): P<(i64, String)>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    let (f, key) = hub.db.task_file(id, &file).await?;
    stream(&hub, &key, &f.sha256, &file).await
}

/// The states a task may be in.
const TASK_STATES: &[&str] = &["FREE", "ASSIGNED", "OPEN", "CLOSED", "FAILED", "CANCELED"];

pub(super) async fn submit_task(State(hub): St, headers: HeaderMap, J(t): J<NewTask>) -> Result<Response> {
    let who = writer(&hub, &headers, "build").await?;
    Ok(created(hub.db.submit_task(&who, &t).await?))
}

pub(super) async fn list_tasks(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Page<Task>>> {
    reader(&hub, &headers).await?;
    let (offset, limit) = q.page()?;
    known_state(q.state.as_deref(), TASK_STATES)?;
    Ok(Json(hub.db.list_tasks(offset, limit, q.state.as_deref()).await?))
}

pub(super) async fn task_info(State(hub): St, headers: HeaderMap, P(id): P<i64>) -> Result<Json<Task>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.task(id).await?))
}

pub(super) async fn cancel_task(State(hub): St, headers: HeaderMap, P(id): P<i64>) -> Result<Json<Task>> {
    let who = authenticated(&hub, &headers).await?;
    Ok(Json(hub.db.cancel_task(&who, id).await?))
}

pub(super) async fn append_log(
    State(hub): St,
    headers: HeaderMap,
    P(id): P<i64>,
    Text(body): Text,
) -> Result<Response> {
    let who = authenticated(&hub, &headers).await?;
    hub.db.append_log(&who, id, &body).await?;
    Ok(no_content())
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(super) struct LogQuery {
    after: i64,
}

pub(super) async fn task_log(
    State(hub): St,
    headers: HeaderMap,
    P(id): P<i64>,
    Q(q): Q<LogQuery>,
) -> Result<Json<TaskLogOut>> {
    reader(&hub, &headers).await?;
    let t = hub.db.task(id).await?;
    let chunks = hub.db.task_log(id, q.after).await?;
    let next = chunks.last().map_or(q.after, |c| c.0);
    let text: String = chunks.into_iter().map(|c| c.1).collect();
    Ok(Json(TaskLogOut {
        state: t.state,
        text,
        next,
    }))
}
