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
use super::{VERSION, failed, page};
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

#[derive(Deserialize, Default)]
pub(super) struct Search {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: Option<i64>,
}

pub(super) async fn list(State(hub): State<Arc<Hub>>, headers: HeaderMap, Query(s): Query<Search>) -> PageResult {
    let viewer = reader(&hub, &headers, "/tags").await?;
    let q = s.q.unwrap_or_default().trim().chars().take(200).collect::<String>();
    let offset = s.offset.unwrap_or(0).max(0);
    let pattern = (!q.is_empty()).then(|| super::builds::like(&q));
    let p = hub
        .db
        .search_tags(pattern.as_deref(), offset, PAGE)
        .await
        .map_err(failed)?;
    let t = TagsPage {
        version: VERSION,
        viewer,
        total: p.total,
        prev: (offset > 0).then(|| (offset - PAGE).max(0)),
        next: (offset + PAGE < p.total).then_some(offset + PAGE),
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
}

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
    let db = &hub.db;
    let load = async {
        db.check_event(q.event).await?;
        Ok::<_, crate::HubError>(TagPage {
            version: VERSION,
            viewer,
            tag: db.tag_info(&name, q.event).await?,
            event: q.event,
            last_event: db.last_event().await?,
            inherit,
            walk: db.full_inheritance(&name, false, q.event).await?,
            builds: db.list_tagged(&name, inherit, true, q.event).await?,
            packages: db.packages(&name, true, q.event).await?,
            config: db.build_config(&name, q.event).await?,
            history: db
                .tag_history(&name, q.event)
                .await?
                .iter()
                .map(|e| {
                    let user = e.user.clone().unwrap_or_default();
                    (e.event, e.time, user, e.change.clone(), e.table.clone(), detail(e))
                })
                .collect(),
        })
    };
    let t = load.await.map_err(failed)?;
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
