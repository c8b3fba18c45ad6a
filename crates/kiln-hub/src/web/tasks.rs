//! The tasks' pages: the list by state, a task with its request, result,
//! children and log — streamed live (server-sent events) while it runs —
//! and cancelling for those allowed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::Stream;
use serde::Deserialize;

use super::session::{PageResult, Viewer, reader, viewer};
use super::{VERSION, failed, filters, page};
use crate::api::Hub;
use crate::error::HubError;
use crate::model::Task;

/// Tasks per page.
const PAGE: i64 = 50;

/// The states a task can be in, for the filter.
const STATES: [&str; 5] = ["FREE", "OPEN", "CLOSED", "FAILED", "CANCELED"];

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    version: &'static str,
    viewer: Viewer,
    tasks: Vec<Task>,
    states: [&'static str; 5],
    state: String,
    total: i64,
    prev: Option<i64>,
    next: Option<i64>,
}

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    offset: Option<i64>,
}

pub(super) async fn list(State(hub): State<Arc<Hub>>, headers: HeaderMap, Query(q): Query<ListQuery>) -> PageResult {
    let viewer = reader(&hub, &headers, "/tasks").await?;
    let state = q.state.filter(|s| STATES.contains(&s.as_str())).unwrap_or_default();
    let offset = q.offset.unwrap_or(0).max(0);
    let filter = (!state.is_empty()).then_some(state.as_str());
    let p = hub.db.list_tasks(offset, PAGE, filter).await.map_err(failed)?;
    let (prev, next) = super::around(offset, PAGE, p.total);
    let t = TasksPage {
        version: VERSION,
        viewer,
        states: STATES,
        total: p.total,
        prev,
        next,
        tasks: p.items,
        state,
    };
    page(&t).map_err(failed)
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    version: &'static str,
    viewer: Viewer,
    task: Task,
    request: String,
    result: Option<String>,
    children: Vec<Task>,
    may_cancel: bool,
    log: String,
    after: i64,
    live: bool,
}

fn running(state: &str) -> bool {
    matches!(state, "FREE" | "OPEN")
}

pub(super) async fn show(State(hub): State<Arc<Hub>>, headers: HeaderMap, Path(id): Path<i64>) -> PageResult {
    let viewer = reader(&hub, &headers, &format!("/tasks/{id}")).await?;
    let task = hub.db.task(id).await.map_err(failed)?;
    let chunks = hub.db.task_log(id, 0).await.map_err(failed)?;
    let after = chunks.last().map_or(0, |c| c.0);
    let log: String = chunks.into_iter().map(|c| c.1).collect();
    let children = hub.db.task_children(id).await.map_err(failed)?;
    let may_cancel = running(&task.state) && (viewer.who.admin || viewer.name() == Some(task.owner.as_str()));
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let t = TaskPage {
        version: VERSION,
        request: pretty(&task.request.to_value()),
        result: task.result.as_ref().map(pretty),
        live: running(&task.state),
        viewer,
        children,
        may_cancel,
        log,
        after,
        task,
    };
    page(&t).map_err(failed)
}

#[derive(Deserialize, Default)]
pub(super) struct After {
    #[serde(default)]
    after: i64,
}

/// `GET /tasks/{id}/events`: the log as it grows (`log` events) and the
/// task's state when it changes (`state` events), until the task ends.
pub(super) async fn events(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(a): Query<After>,
) -> Response {
    if let Err(r) = reader(&hub, &headers, &format!("/tasks/{id}")).await {
        return r;
    }
    Sse::new(log_stream(hub, id, a.after))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn log_stream(hub: Arc<Hub>, id: i64, after: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    // (after, last state sent, done)
    futures::stream::unfold((after, String::new(), false), move |(after, shown, done)| {
        let hub = hub.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let state = match hub.db.task(id).await {
                    Ok(t) => t.state,
                    Err(_) => return None,
                };
                let chunks = hub.db.task_log(id, after).await.unwrap_or_default();
                if let Some(last) = chunks.last().map(|c| c.0) {
                    // Carriage returns cannot travel in an event.
                    let text: String = chunks.into_iter().map(|c| c.1).collect::<String>().replace('\r', "");
                    return Some((Ok(Event::default().event("log").data(text)), (last, shown, false)));
                }
                if state != shown {
                    let ended = !running(&state);
                    let ev = Event::default().event("state").data(state.clone());
                    return Some((Ok(ev), (after, state, ended)));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// Cancels a task (its owner or an admin), then shows it again.
pub(super) async fn cancel(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let act = async {
        let v = viewer(&hub, &headers).await?;
        v.check_csrf(&f.csrf)?;
        if v.who.id.is_none() {
            return Err(HubError::unauthorized("log in to cancel tasks"));
        }
        hub.db.cancel_task(&v.who, id).await
    };
    match act.await {
        Ok(_) => Redirect::to(&format!("/tasks/{id}")).into_response(),
        Err(e) => failed(e),
    }
}
