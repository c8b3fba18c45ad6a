//! Blobs behind the API: the streamed download response, and the deletion
//! of the blobs nothing references any more.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::Hub;
use crate::error::Result;

/// Deletes the uploads of task attempts that can no longer complete, and
/// the blobs nothing else references. Returns how many blobs went.
pub async fn sweep(hub: &Hub) -> Result<usize> {
    let keys = hub.db.sweep_uploads().await?;
    forget(hub, &keys).await
}

/// Deletes the blobs among `keys` that nothing references, holding `gc`
/// exclusively: an upload of the same content that has stored its blob
/// but not yet its row finishes first. The caller holds no `gc` guard.
/// Returns how many blobs went.
pub(super) async fn forget(hub: &Hub, keys: &[String]) -> Result<usize> {
    if keys.is_empty() {
        return Ok(0);
    }
    let _gc = hub.gc.write().await;
    let mut n = 0;
    for k in keys {
        if !hub.db.key_used(k).await? {
            hub.store.delete(k).await?;
            n += 1;
        }
    }
    Ok(n)
}

pub(super) async fn stream(hub: &Hub, key: &str, sha256: &str, name: &str) -> Result<Response> {
    let (size, s) = hub.store.get(key).await?;
    let mut r = Body::from_stream(s).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(sha256) {
        h.insert("x-kiln-sha256", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
