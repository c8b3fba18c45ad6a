//! The tags' pages: the list, searched by name, and a tag with its
//! inheritance drawn as an ordered tree (priority, maxdepth, flags, package
//! filter), its latest builds (inheritance on or off), its packages with
//! blocks, its build config with extras and its history — each as of any
//! event.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::session::{PageResult, Viewer, reader};
use super::{VERSION, failed, filters, page};
use crate::api::Hub;
use crate::model::{BuildConfigOut, HistoryEntry, PackageOut, TagInfo, TaggedOut, WalkOut};

const PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "tags.html")]
struct TagsPage {
    version: &'static str,
    viewer: Viewer,
    q: String,
    tags: Vec<TagInfo>,
    total: i64,
    prev: Option<i64>,
    next: Option<i64>,
}

pub(super) async fn list(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(s): Query<super::Search>,
) -> PageResult {
    let viewer = reader(&hub, &headers, "/tags").await?;
    let (q, offset, pattern) = s.terms();
    let p = hub
        .db
        .search_tags(pattern.as_deref(), offset, PAGE)
        .await
        .map_err(failed)?;
    let (prev, next) = super::around(offset, PAGE, p.total);
    let t = TagsPage {
        version: VERSION,
        viewer,
        total: p.total,
        prev,
        next,
        tags: p.items,
        q,
    };
    page(&t).map_err(failed)
}

#[derive(Template)]
#[template(path = "tag.html")]
struct TagPage {
    version: &'static str,
    viewer: Viewer,
    tag: TagInfo,
    /// The event shown (`None`: now), and the latest event.
    event: Option<i64>,
    last_event: i64,
    inherit: bool,
    walk: Vec<WalkOut>,
    builds: Vec<TaggedOut>,
    /// Latest builds in all, and the offsets of the pages around this one.
    builds_total: usize,
    prev: Option<usize>,
    next: Option<usize>,
    /// The query that keeps the inherit toggle and the event, ending in `&`.
    builds_query: String,
    packages: Vec<PackageOut>,
    config: BuildConfigOut,
    /// Event, time, user, change, what changed and its detail.
    history: Vec<(i64, i64, String, String, String, String)>,
}

#[derive(Deserialize, Default)]
pub(super) struct TagQuery {
    #[serde(default)]
    event: Option<i64>,
    #[serde(default)]
    inherit: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
}

/// Latest builds on one page of a tag's page.
const BUILDS_PAGE: usize = 100;

pub(super) async fn show(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<TagQuery>,
) -> PageResult {
    let viewer = reader(&hub, &headers, &format!("/tags/{name}")).await?;
    // This tag's own builds unless asked: the inherited latest builds of a
    // deep tag cost a full walk of its listings.
    let inherit = q.inherit.as_deref() == Some("1");
    let offset = q.offset.unwrap_or(0);
    let db = &hub.db;
    let ev = q.event;
    db.check_event(ev).await.map_err(failed)?;
    // The parts are independent reads: the pool runs them side by side.
    let (tag, last_event, walk, (builds_total, builds), packages, config, history) = tokio::try_join!(
        db.tag_info(&name, ev),
        db.last_event(),
        db.full_inheritance(&name, false, ev),
        db.list_tagged_page(&name, (inherit, true), ev, offset, BUILDS_PAGE),
        db.packages(&name, true, ev),
        db.build_config(&name, ev),
        db.tag_history(&name, ev),
    )
    .map_err(failed)?;
    let (prev, next) = super::around(offset, BUILDS_PAGE, builds_total);
    let t = TagPage {
        version: VERSION,
        viewer,
        tag,
        event: ev,
        last_event,
        inherit,
        walk,
        builds,
        builds_total,
        prev,
        next,
        builds_query: format!(
            "{}{}",
            if inherit { "inherit=1&" } else { "" },
            ev.map(|e| format!("event={e}&")).unwrap_or_default()
        ),
        packages,
        config,
        history: history
            .iter()
            .map(|e| {
                let user = e.user.clone().unwrap_or_default();
                (e.event, e.time, user, e.change.clone(), e.table.clone(), detail(e))
            })
            .collect(),
    };
    page(&t).map_err(failed)
}

/// A history entry's detail, as one line.
fn detail(e: &HistoryEntry) -> String {
    match &e.detail {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}
