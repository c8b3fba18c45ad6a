//! Targets: a build tag, a destination tag and macros, created, applied,
//! edited and deleted.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{J, ListQuery, P, Q, St, created, no_content, reader, writer};
use crate::db;
use crate::error::{HubError, Result};
use crate::model::*;

pub(super) async fn list_targets(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<Target>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_targets().await?))
}

pub(super) async fn create_target(State(hub): St, headers: HeaderMap, J(t): J<Target>) -> Result<Response> {
    let who = writer(&hub, &headers, "target").await?;
    Ok(created(hub.db.put_target(&who, &t, true, None).await?))
}

pub(super) async fn target(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Target>> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    Ok(Json(hub.db.target(&name, q.event).await?))
}

/// `kiln target apply`: create or replace the whole target.
pub(super) async fn apply_target(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
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

pub(super) async fn edit_target(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
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

pub(super) async fn delete_target(State(hub): St, headers: HeaderMap, P(name): P<String>) -> Result<Response> {
    let who = writer(&hub, &headers, "target").await?;
    hub.db.delete_target(&who, &name).await?;
    Ok(no_content())
}

pub(super) async fn target_macros(State(hub): St, headers: HeaderMap, P(name): P<String>) -> Result<Json<MacroLayers>> {
    reader(&hub, &headers).await?;
    Ok(Json(db::macro_layers(&hub.db, &name).await?))
}
