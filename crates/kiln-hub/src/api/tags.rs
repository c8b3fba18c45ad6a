//! Tags: their configuration and history, inheritance links, package
//! lists and tagged builds.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{J, ListQuery, P, Q, St, created, no_content, reader, writer};
use crate::error::Result;
use crate::model::*;

pub(super) async fn list_tags(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Page<TagInfo>>> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    let (offset, limit) = q.page()?;
    Ok(Json(hub.db.list_tags(offset, limit, q.event).await?))
}

pub(super) async fn create_tag(State(hub): St, headers: HeaderMap, J(t): J<NewTag>) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(created(hub.db.create_tag(&who, &t).await?))
}

pub(super) async fn tag_info(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<TagInfo>> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    Ok(Json(hub.db.tag_info(&tag, q.event).await?))
}

pub(super) async fn edit_tag(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    J(e): J<TagEdit>,
) -> Result<Json<TagInfo>> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(Json(hub.db.edit_tag(&who, &tag, &e).await?))
}

pub(super) async fn delete_tag(State(hub): St, headers: HeaderMap, P(tag): P<String>) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.delete_tag(&who, &tag).await?;
    Ok(no_content())
}

pub(super) async fn tag_history(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<HistoryEntry>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.tag_history(&tag, q.event).await?))
}

pub(super) async fn inheritance(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    if q.full {
        Ok(Json(hub.db.full_inheritance(&tag, q.reverse, q.event).await?).into_response())
    } else {
        Ok(Json(hub.db.links(&tag, q.reverse, q.event).await?).into_response())
    }
}

pub(super) async fn add_link(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    J(l): J<LinkIn>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(created(hub.db.add_link(&who, &tag, &l).await?))
}

pub(super) async fn edit_link(
    State(hub): St,
    headers: HeaderMap,
    P((tag, parent)): P<(String, String)>,
    J(e): J<LinkEdit>,
) -> Result<Json<Vec<LinkOut>>> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(Json(hub.db.edit_link(&who, &tag, &parent, &e).await?))
}

pub(super) async fn remove_link(
    State(hub): St,
    headers: HeaderMap,
    P((tag, parent)): P<(String, String)>,
) -> Result<Json<Vec<LinkOut>>> {
    let who = writer(&hub, &headers, "tag").await?;
    Ok(Json(hub.db.remove_link(&who, &tag, &parent).await?))
}

pub(super) async fn tag_config(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<BuildConfigOut>> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    Ok(Json(hub.db.build_config(&tag, q.event).await?))
}

pub(super) async fn packages(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<PackageOut>>> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    Ok(Json(hub.db.packages(&tag, q.inherit, q.event).await?))
}

pub(super) async fn set_package(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
    J(p): J<PackageIn>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.set_package(&who, &tag, &p, q.force).await?;
    Ok(no_content())
}

pub(super) async fn remove_package(
    State(hub): St,
    headers: HeaderMap,
    P((tag, package)): P<(String, String)>,
    Q(q): Q<ListQuery>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.remove_package(&who, &tag, &package, q.force).await?;
    Ok(no_content())
}

pub(super) async fn list_tagged(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<TaggedOut>>> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    Ok(Json(hub.db.list_tagged(&tag, q.inherit, q.latest, q.event).await?))
}

pub(super) async fn tag_build(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    J(t): J<TagBuildIn>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.tag_build(&who, &tag, &t.nvr, t.force).await?;
    hub.changed.notify_one();
    Ok(no_content())
}

pub(super) async fn untag_build(
    State(hub): St,
    headers: HeaderMap,
    P((tag, nvr)): P<(String, String)>,
    Q(q): Q<ListQuery>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    hub.db.untag_build(&who, &tag, &nvr, q.force).await?;
    hub.changed.notify_one();
    Ok(no_content())
}
