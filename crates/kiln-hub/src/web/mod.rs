//! The hub in a browser (docs/web.md): server-rendered pages (askama
//! templates compiled into the binary, under `templates/`) and the
//! embedded stylesheet, served by `kiln serve` beside the API. The pages
//! read through the same database functions as the API and show only what
//! the caller may read.

mod builds;
mod catalog;
mod pipelines;
mod session;
mod tags;
mod tasks;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use session::{PageResult, reader};
pub use session::{SESSION_SECONDS, Viewer};

use crate::api::Hub;
use crate::error::{HubError, Result};
use crate::model::{Build, HostInfo, Task};

/// kiln's version, in every page's footer.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The stylesheet, embedded.
const CSS: &str = include_str!("../../assets/kiln.css");

/// The pages and their assets, merged into the hub's router.
pub fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", axum::routing::post(session::logout))
        .route("/builds", get(builds::list))
        .route("/builds/{nvr}", get(builds::show))
        .route("/pipelines", get(pipelines::list).post(pipelines::create))
        .route("/pipelines/-/new", get(pipelines::new_form))
        .route("/pipelines/-/preview", get(pipelines::preview))
        .route("/pipelines/{name}", get(pipelines::show).post(pipelines::update))
        .route("/pipelines/{name}/run", axum::routing::post(pipelines::run))
        .route("/pipelines/{name}/runs", get(pipelines::runs))
        .route(
            "/pipelines/{name}/hooks/{service}",
            axum::routing::post(pipelines::hook),
        )
        .route("/targets", get(catalog::targets))
        .route("/images", get(catalog::images))
        .route("/hosts", get(catalog::hosts))
        .route("/users", get(catalog::users))
        .route("/tags", get(tags::list))
        .route("/tags/{tag}", get(tags::show))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/events", get(tasks::events))
        .route("/tasks/{id}/cancel", axum::routing::post(tasks::cancel))
        .route("/static/kiln.css", get(css))
}

async fn css() -> Response {
    let mut r = CSS.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}

pub(super) fn page<T: Template>(t: &T) -> Result<Html<String>> {
    t.render()
        .map(Html)
        .map_err(|e| HubError::internal(format!("rendering a page: {e}")))
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    version: &'static str,
    viewer: Viewer,
    tasks: Vec<Task>,
    hosts: Vec<HostInfo>,
    builds: Vec<Build>,
    runs: Vec<crate::model::PipelineRun>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    version: &'static str,
    viewer: Viewer,
    status: u16,
    message: String,
}

/// A page's data could not be read, or an action was refused: the error
/// page, with the error's status, stands for it.
pub(super) fn failed(e: HubError) -> Response {
    let p = ErrorPage {
        version: VERSION,
        viewer: Viewer::default(),
        status: e.status,
        message: e.message.clone(),
    };
    match p.render() {
        Ok(html) => {
            let status =
                axum::http::StatusCode::from_u16(e.status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            (status, Html(html)).into_response()
        }
        Err(_) => e.into_response(),
    }
}

async fn dashboard(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/").await?;
    let load = async {
        let mut tasks = hub.db.list_tasks(0, 50, Some("OPEN")).await?.items;
        tasks.extend(hub.db.list_tasks(0, 50, Some("FREE")).await?.items);
        Ok::<_, HubError>(Dashboard {
            version: VERSION,
            viewer,
            tasks,
            hosts: hub.db.list_hosts().await?,
            builds: hub.db.list_builds(0, 10, None).await?.items,
            runs: hub.db.recent_runs(10).await?,
        })
    };
    let d = load.await.map_err(failed)?;
    page(&d).map_err(failed)
}
