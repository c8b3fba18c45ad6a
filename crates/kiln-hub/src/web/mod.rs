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
mod users;

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

/// Filters the templates use (askama finds them as `filters::NAME` in the
/// module of the template's type, so each page module imports this one).
pub(super) mod filters {
    /// A time in seconds since the epoch, as a UTC date and time.
    pub fn when(secs: &i64, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(kiln_core::utc::time(*secs))
    }
}

/// The stylesheet and the script, embedded.
const CSS: &str = include_str!("../../assets/kiln.css");
const JS: &str = include_str!("../../assets/kiln.js");

/// What a page may load and who may frame it: the hub's own stylesheet
/// and script only, no inline script, no framing (clickjacking), forms
/// posted to the hub only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

/// Every path the pages answer (route templates, `{x}` one segment),
/// outside `/api/v1`: the hub's route test takes these as served.
pub const PATHS: &[&str] = &[
    "/",
    "/login",
    "/logout",
    "/builds",
    "/builds/{nvr}",
    "/pipelines",
    "/pipelines/-/new",
    "/pipelines/-/preview",
    "/pipelines/{name}",
    "/pipelines/{name}/run",
    "/pipelines/{name}/runs",
    "/pipelines/{name}/hooks/{service}",
    "/targets",
    "/images",
    "/hosts",
    "/users",
    "/users/{name}",
    "/users/{name}/perms",
    "/users/{name}/perms/{perm}/revoke",
    "/users/{name}/tokens",
    "/users/{name}/tokens/{id}/revoke",
    "/tags",
    "/tags/{tag}",
    "/tasks",
    "/tasks/{id}",
    "/tasks/{id}/events",
    "/tasks/{id}/cancel",
    "/static/kiln.css",
    "/static/kiln.js",
];

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
        .route(
            "/images",
            get(catalog::images)
                .post(catalog::upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/hosts", get(catalog::hosts))
        .route("/users", get(users::list))
        .route("/users/{name}", get(users::show))
        .route("/users/{name}/perms", axum::routing::post(users::grant))
        .route("/users/{name}/perms/{perm}/revoke", axum::routing::post(users::revoke))
        .route("/users/{name}/tokens", axum::routing::post(users::new_token))
        .route(
            "/users/{name}/tokens/{id}/revoke",
            axum::routing::post(users::revoke_token),
        )
        .route("/tags", get(tags::list))
        .route("/tags/{tag}", get(tags::show))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/events", get(tasks::events))
        .route("/tasks/{id}/cancel", axum::routing::post(tasks::cancel))
        .route("/static/kiln.css", get(|| asset(CSS, "text/css; charset=utf-8")))
        .route("/static/kiln.js", get(|| asset(JS, "text/javascript; charset=utf-8")))
        .layer(axum::middleware::map_response(guard))
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Every answer of the pages: the content policy, no MIME sniffing, no
/// referrer to other sites, and pages (which may show a session's CSRF
/// token or a hook secret) kept out of shared caches.
async fn guard(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("private, no-store"));
    r
}

/// A list page's query: the search text and the offset.
#[derive(serde::Deserialize, Default)]
pub(super) struct Search {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: Option<i64>,
}

impl Search {
    /// The search text (trimmed, at most 200 characters), the offset, and
    /// the text as a LIKE pattern when there is one.
    fn terms(self) -> (String, i64, Option<String>) {
        let q = self.q.unwrap_or_default().trim().chars().take(200).collect::<String>();
        let pattern = (!q.is_empty()).then(|| builds::like(&q));
        (q, self.offset.unwrap_or(0).max(0), pattern)
    }
}

/// The offsets of the pages before and after the page of `limit` items
/// from `offset`, of `total` in all.
pub(super) fn around<N>(offset: N, limit: N, total: N) -> (Option<N>, Option<N>)
where
    N: Copy + Ord + Default + std::ops::Add<Output = N> + std::ops::Sub<Output = N>,
{
    let zero = N::default();
    let prev = (offset > zero).then(|| if offset > limit { offset - limit } else { zero });
    let next = (offset + limit < total).then_some(offset + limit);
    (prev, next)
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
    let db = &hub.db;
    let (open, free, hosts, builds, runs) = tokio::try_join!(
        db.list_tasks(0, 50, Some("OPEN")),
        db.list_tasks(0, 50, Some("FREE")),
        db.list_hosts(),
        db.recent_builds(10),
        db.recent_runs(10),
    )
    .map_err(failed)?;
    let mut tasks = open.items;
    tasks.extend(free.items);
    let d = Dashboard {
        version: VERSION,
        viewer,
        tasks,
        hosts,
        builds,
        runs,
    };
    page(&d).map_err(failed)
}
