//! Builders (hosts): registration, listing, and the host-token calls that
//! keep a builder's leases and hand it tasks.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{J, St, authenticated, created, reader, writer};
use crate::auth;
use crate::error::Result;
use crate::model::*;

pub(super) async fn create_host(State(hub): St, headers: HeaderMap, J(h): J<NewHost>) -> Result<Response> {
    let who = writer(&hub, &headers, "host").await?;
    let token = auth::new_token();
    hub.db.create_host(&who, &h, &auth::token_hash(&token)).await?;
    Ok(created(HostToken { name: h.name, token }))
}

pub(super) async fn list_hosts(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<HostInfo>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_hosts().await?))
}

pub(super) async fn heartbeat(State(hub): St, headers: HeaderMap) -> Result<Json<Heartbeat>> {
    let who = authenticated(&hub, &headers).await?;
    let cancel = hub.db.heartbeat(&who).await?;
    Ok(Json(Heartbeat {
        cancel,
        lease_seconds: hub.db.lease(),
    }))
}

pub(super) async fn claim(State(hub): St, headers: HeaderMap) -> Result<Json<Option<Task>>> {
    let who = authenticated(&hub, &headers).await?;
    Ok(Json(hub.db.claim(&who).await?))
}
