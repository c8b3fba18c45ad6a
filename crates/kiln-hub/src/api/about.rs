//! What the hub says about itself: its status and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::{St, reader};
use crate::error::Result;
use crate::model::Status;

/// The OpenAPI document of `/api/v1` (see [`crate::openapi`]).
pub(super) async fn openapi_json() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

pub(super) async fn status(State(hub): St, headers: HeaderMap) -> Result<Json<Status>> {
    // The version and the event counter are the hub's data too.
    reader(&hub, &headers).await?;
    Ok(Json(Status {
        kiln: env!("CARGO_PKG_VERSION").into(),
        database: hub.db.kind().into(),
        event: hub.db.last_event().await?,
        anonymous_read: hub.anonymous_read,
    }))
}
