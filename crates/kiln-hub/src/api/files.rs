//! Blobs behind the API: the streamed download response, and the deletion
//! of the blobs nothing references any more — right away when a row goes,
//! and by the store sweep for what a hub that died left behind.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::Hub;
use crate::error::Result;
use crate::store::Orphans;

/// Deletes the uploads of task attempts that can no longer complete, and
/// the blobs nothing else references. Returns how many blobs went.
pub async fn sweep(hub: &Hub) -> Result<usize> {
    let keys = hub.db.sweep_uploads().await?;
    forget(hub, &keys).await
}

/// What [`sweep_store`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreSweep {
    /// Temporary objects and unfinished uploads.
    pub orphans: Orphans,
    /// Blobs nothing referenced.
    pub blobs: usize,
}

/// Removes from the store what hubs that died left there, as of now minus
/// the store's grace: temporary objects and unfinished uploads
/// ([`crate::store::Store::remove_orphans`]), and blobs that nothing
/// references — stored by an upload whose row never came — older than the
/// grace (a younger one may be another hub's upload about to record its
/// row). Slower than [`sweep`]: it lists every blob.
pub async fn sweep_store(hub: &Hub) -> Result<StoreSweep> {
    let cutoff = SystemTime::now().checked_sub(hub.store.grace).unwrap_or(UNIX_EPOCH);
    let orphans = hub.store.remove_orphans(cutoff).await?;
    let mut unused = Vec::new();
    for k in hub.store.keys_older_than("blobs/", cutoff).await? {
        if !hub.db.key_used(&k).await? {
            unused.push(k);
        }
    }
    let mut blobs = 0;
    if !unused.is_empty() {
        let _gc = hub.gc.write().await;
        for k in unused {
            // Again under the lock: an upload may have recorded its row, or
            // stored the same content again (a new modification time), since.
            let old = hub.store.modified(&k).await?.is_some_and(|t| t < cutoff);
            if old && !hub.db.key_used(&k).await? {
                hub.store.delete(&k).await?;
                blobs += 1;
            }
        }
    }
    Ok(StoreSweep { orphans, blobs })
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
