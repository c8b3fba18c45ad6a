//! Source images: listed, streamed in (checked whole before they are
//! published, docs/hub.md) and out, and removed.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::files::{forget, stream};
use super::{Hub, ListQuery, P, Q, St, created, no_content, reader, writer};
use crate::db;
use crate::error::{HubError, Result};
use crate::model::*;
use crate::store::Expect;

pub(super) async fn list_images(State(hub): St, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Json<Vec<Image>>> {
    reader(&hub, &headers).await?;
    let mut v: Vec<Image> = hub
        .db
        .images(q.name.as_deref())
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    v.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| kiln_core::version::compare(&a.version, &b.version))
    });
    Ok(Json(v))
}

async fn find_image(hub: &Hub, name: &str, version: &str) -> Result<(Image, String)> {
    let all = hub.db.images(Some(name)).await?;
    if all.is_empty() {
        return Err(HubError::not_found(format!("unknown image `{name}`")));
    }
    let mut versions: Vec<String> = all.iter().map(|(i, _)| i.version.clone()).collect();
    versions.sort_by(|a, b| kiln_core::version::compare(a, b));
    all.into_iter().find(|(i, _)| i.version == version).ok_or_else(|| {
        HubError::not_found(format!(
            "{name} has no version {version}; available: {}",
            versions.join(", ")
        ))
    })
}

pub(super) async fn image_info(
    State(hub): St,
    headers: HeaderMap,
    P((name, version)): P<(String, String)>,
) -> Result<Json<Image>> {
    reader(&hub, &headers).await?;
    Ok(Json(find_image(&hub, &name, &version).await?.0))
}

pub(super) async fn image_blob(
    State(hub): St,
    headers: HeaderMap,
    P((name, version)): P<(String, String)>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    let (i, key) = find_image(&hub, &name, &version).await?;
    stream(&hub, &key, &i.sha256, &format!("{name}-{version}.{}", i.format)).await
}

pub(super) async fn upload_image(
    State(hub): St,
    headers: HeaderMap,
    P((name, version)): P<(String, String)>,
    body: Body,
) -> Result<Response> {
    let who = writer(&hub, &headers, "image").await?;
    let want_sha = headers
        .get("x-kiln-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let image = put_image(
        &hub,
        &who,
        (name, version),
        body.into_data_stream(),
        want_sha.as_deref(),
    )
    .await?;
    Ok(created(image))
}

/// Stores an upload into the catalog as `name@version` for `who` (who
/// holds `image`): checked while it streams (`want_sha`, when given, and
/// the import check of the whole file), then recorded; pipelines that
/// follow the image are started. The API and the web upload form share it.
pub(crate) async fn put_image<S, E>(
    hub: &Arc<Hub>,
    who: &Principal,
    (name, version): (String, String),
    body: S,
    want_sha: Option<&str>,
) -> Result<Image>
where
    S: futures::Stream<Item = std::result::Result<bytes::Bytes, E>> + Send,
    E: std::fmt::Display,
{
    for (what, v) in [("image name", &name), ("image version", &version)] {
        kiln_hub_api::names::check_name(what, v).map_err(HubError::bad_request)?;
    }
    if hub
        .db
        .images(Some(&name))
        .await?
        .iter()
        .any(|(i, _)| i.version == version)
    {
        return Err(HubError::conflict(format!("image {name}@{version} exists")));
    }
    let gc = hub.gc.read().await;
    let spool = Spool::new()?;
    let body = Box::pin(spool.tee(body));
    let expect = Expect {
        sha256: want_sha,
        size: None,
    };
    let (stored, format) = hub.store.put_checked(body, expect, spool.check()).await?;
    let image = Image {
        name,
        version,
        format: format.ext().to_string(),
        size: stored.size as i64,
        sha256: stored.sha256.clone(),
        uploader: who.name.clone(),
        time: db::now(),
    };
    if let Err(e) = hub.db.add_image(who, &image, &stored.key).await {
        drop(gc);
        forget(hub, &[stored.key]).await?;
        return Err(e);
    }
    // Pipelines following this image run (docs/pipelines.md).
    let (h, name, version) = (hub.clone(), image.name.clone(), image.version.clone());
    tokio::spawn(async move { super::chain(&h, &name, &version).await });
    Ok(image)
}

pub(super) async fn remove_image(
    State(hub): St,
    headers: HeaderMap,
    P((name, version)): P<(String, String)>,
) -> Result<Response> {
    writer(&hub, &headers, "image").await?;
    let key = hub.db.remove_image(&name, &version).await?;
    forget(&hub, &[key]).await?;
    Ok(no_content())
}

/// A local copy of an upload, written while it streams to the store, that
/// the import check reads whole (the store may be remote): in the hub's
/// temporary directory, removed when dropped.
struct Spool {
    path: PathBuf,
    /// The open copy, and the first error writing it.
    file: Arc<tokio::sync::Mutex<(tokio::fs::File, Option<std::io::Error>)>>,
    _tmp: tempfile::TempPath,
}

impl Spool {
    fn new() -> Result<Spool> {
        let (file, tmp) = tempfile::Builder::new()
            .prefix("kiln-upload-")
            .tempfile()
            .map_err(|e| HubError::internal(format!("cannot create a temporary file for an upload: {e}")))?
            .into_parts();
        Ok(Spool {
            path: tmp.to_path_buf(),
            file: Arc::new(tokio::sync::Mutex::new((tokio::fs::File::from_std(file), None))),
            _tmp: tmp,
        })
    }

    /// `body`, copied to the spool as it passes.
    fn tee<S, E>(&self, body: S) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, E>> + use<S, E>
    where
        S: futures::Stream<Item = std::result::Result<bytes::Bytes, E>>,
    {
        let file = self.file.clone();
        body.then(move |chunk| {
            let file = file.clone();
            async move {
                if let Ok(b) = &chunk {
                    let mut g = file.lock().await;
                    let (f, failed) = &mut *g;
                    if failed.is_none()
                        && let Err(e) = f.write_all(b).await
                    {
                        *failed = Some(e);
                    }
                }
                chunk
            }
        })
    }

    /// The import check of the whole spooled upload: its format, or a 400
    /// saying what is wrong.
    async fn check(&self) -> Result<kiln_store::catalog::Format> {
        {
            let mut g = self.file.lock().await;
            let (f, failed) = &mut *g;
            if let Some(e) = failed.take() {
                return Err(HubError::internal(format!("cannot keep a copy of the upload: {e}")));
            }
            f.flush()
                .await
                .map_err(|e| HubError::internal(format!("cannot keep a copy of the upload: {e}")))?;
        }
        let path = self.path.clone();
        let checked = tokio::task::spawn_blocking(move || kiln_store::image_check::check(&path))
            .await
            .map_err(|e| HubError::internal(format!("the image check failed: {e}")))?;
        checked
            .map(|c| c.format)
            .map_err(|e| HubError::bad_request(format!("the image is refused: {e}")))
    }
}
