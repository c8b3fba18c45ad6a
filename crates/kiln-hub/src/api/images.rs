//! Source images: listed, streamed in (sniffed and verified) and out, and
//! removed.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::files::{forget, stream};
use super::{Hub, ListQuery, P, Q, St, created, no_content, reader, writer};
use crate::db;
use crate::error::{HubError, Result};
use crate::model::*;
use crate::store::{self, Expect};

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
    for (what, v) in [("image", &name), ("version", &version)] {
        if v.is_empty() || v.len() > 200 || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+~".contains(c)) {
            return Err(HubError::bad_request(format!("bad {what} `{v}`")));
        }
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
    let want_sha = headers
        .get("x-kiln-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let gc = hub.gc.read().await;
    let stored = hub
        .store
        .put(
            body.into_data_stream(),
            Expect {
                sha256: want_sha.as_deref(),
                size: None,
            },
        )
        .await?;
    let Some(format) = store::sniff(&stored.head) else {
        drop(gc);
        forget(&hub, &[stored.key]).await?;
        return Err(HubError::bad_request("not a squashfs, erofs or tar image"));
    };
    let image = Image {
        name,
        version,
        format: format.to_string(),
        size: stored.size as i64,
        sha256: stored.sha256.clone(),
        uploader: who.name.clone(),
        time: db::now(),
    };
    if let Err(e) = hub.db.add_image(&who, &image, &stored.key).await {
        drop(gc);
        forget(&hub, &[stored.key]).await?;
        return Err(e);
    }
    Ok(created(image))
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
