//! Device channels (docs/channels.md): the signing key, publishing a tag's
//! latest builds as a signed index, and the files devices fetch under
//! `/channels/{tag}/` — the index, its minisign signature, and the files
//! the index lists (nothing else).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kiln_hub_api::minisign::{self, KeyId, SecretKey};
use sha2::{Digest, Sha256};

use super::files::stream;
use super::{Hub, ListQuery, P, Q, St, created, reader, writer};
use crate::db::{IndexRow, KeyRow};
use crate::error::{HubError, Result};
use crate::model::*;

/// What the key file derives the signing key from, with the row's nonce.
const KEY_PURPOSE: &str = "kiln channel signing key v1";

/// The signing key a row names, derived again; refused when the key file
/// is not the one it was made with.
fn signing_key(hub: &Hub, row: &KeyRow) -> Result<SecretKey> {
    let id = key_id_bytes(&row.key_id)?;
    let key = SecretKey::from_seed(hub.key.derive(KEY_PURPOSE, &row.nonce), id);
    if key.public().to_file() != row.public_key {
        tracing::error!(
            "the channel signing key {} no longer derives from the key file",
            row.key_id
        );
        return Err(HubError::internal(format!(
            "the hub's key file is not the one channel key {} was made with: restore it, or make a new key \
             (`kiln channel keygen`) and give devices its public key",
            row.key_id
        )));
    }
    Ok(key)
}

fn key_id_bytes(hex_id: &str) -> Result<KeyId> {
    let n = u64::from_str_radix(hex_id, 16).map_err(|_| HubError::internal(format!("bad key id {hex_id}")))?;
    Ok(KeyId(n.to_le_bytes()))
}

fn key_out(row: &KeyRow) -> ChannelKey {
    ChannelKey {
        key_id: row.key_id.clone(),
        public_key: row.public_key.clone(),
        created: row.created,
    }
}

/// `kiln channel keygen`: a new signing key (admins).
pub(super) async fn keygen(State(hub): St, headers: HeaderMap) -> Result<Response> {
    let who = writer(&hub, &headers, "admin").await?;
    let nonce = crate::keys::nonce();
    let mut id = [0u8; 8];
    rand::fill(&mut id);
    let key = SecretKey::from_seed(hub.key.derive(KEY_PURPOSE, &nonce), KeyId(id));
    let key_id = key.id().to_string();
    let public = key.public().to_file();
    hub.db.set_channel_key(&who, &key_id, &nonce, &public).await?;
    let row = hub
        .db
        .channel_key()
        .await?
        .ok_or_else(|| HubError::internal("the new key is gone"))?;
    Ok(created(key_out(&row)))
}

pub(super) async fn channel_key(State(hub): St, headers: HeaderMap) -> Result<Json<ChannelKey>> {
    reader(&hub, &headers).await?;
    let row = hub.db.channel_key().await?.ok_or_else(no_key)?;
    Ok(Json(key_out(&row)))
}

fn no_key() -> HubError {
    HubError::not_found("the hub has no channel signing key: an admin makes one with `kiln channel keygen`")
}

fn info(row: &IndexRow, key_id: &str, auto: bool) -> ChannelInfo {
    ChannelInfo {
        channel: row.channel.clone(),
        sequence: row.sequence,
        timestamp: row.time,
        event: row.event,
        key_id: key_id.to_string(),
        images: row.images,
        auto,
        path: format!("/channels/{}/index.json", row.channel),
    }
}

fn index_key_id(row: &IndexRow) -> String {
    serde_json::from_str::<ChannelIndex>(&row.body)
        .map(|i| i.key_id)
        .unwrap_or_default()
}

pub(super) async fn list_channels(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<ChannelInfo>>> {
    reader(&hub, &headers).await?;
    let auto = hub.db.auto_channels().await?;
    let rows = hub.db.channel_indexes().await?;
    Ok(Json(
        rows.iter()
            .map(|r| info(r, &index_key_id(r), auto.contains(&r.channel)))
            .collect(),
    ))
}

pub(super) async fn channel_info(State(hub): St, headers: HeaderMap, P(tag): P<String>) -> Result<Json<ChannelInfo>> {
    reader(&hub, &headers).await?;
    let row = hub.db.channel_index(&tag).await?.ok_or_else(|| unpublished(&tag))?;
    let auto = hub.db.auto_channels().await?.contains(&tag);
    Ok(Json(info(&row, &index_key_id(&row), auto)))
}

fn unpublished(tag: &str) -> HubError {
    HubError::not_found(format!(
        "channel {tag} was never published (`kiln channel publish {tag}`)"
    ))
}

/// `kiln channel publish TAG`: publishes when the content changed (or
/// always, with `?force`).
pub(super) async fn publish(
    State(hub): St,
    headers: HeaderMap,
    P(tag): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "tag").await?;
    let t = hub.db.tag_info(&tag, None).await?;
    if let Some(perm) = &t.perm
        && !who.has(perm)
    {
        return Err(HubError::forbidden(format!(
            "tag {tag} needs the `{perm}` permission, which {} lacks",
            who.name
        )));
    }
    let (row, _) = publish_channel(&hub, &tag, q.force).await?;
    let auto = hub.db.auto_channels().await?.contains(&tag);
    Ok(created(info(&row, &index_key_id(&row), auto)))
}

/// The channel's images as of `event`: the latest build of each package in
/// the tag, inheritance included, with its files.
async fn images_at(hub: &Hub, tag: &str, event: i64) -> Result<BTreeMap<String, ChannelImage>> {
    let mut images = BTreeMap::new();
    for b in hub.db.list_tagged(tag, true, true, Some(event)).await? {
        let build = hub.db.build(&b.nvr, false).await?;
        let url = |file: &str| format!("files/{}/{file}", b.nvr);
        let files: Vec<ChannelFile> = build
            .artifacts
            .iter()
            .filter(|a| a.stored)
            .map(|a| ChannelFile {
                file: a.file.clone(),
                format: a.format.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
                url: url(&a.file),
            })
            .collect();
        // The image: the first file that is not the build's manifest,
        // checksums or log.
        let Some(main) = files
            .iter()
            .find(|f| !matches!(f.format.as_str(), "manifest" | "SHA256SUMS" | "log" | "json"))
        else {
            continue;
        };
        images.insert(
            b.name.clone(),
            ChannelImage {
                nvr: b.nvr.clone(),
                version: b.version.clone(),
                release: b.release.clone(),
                file: main.file.clone(),
                format: main.format.clone(),
                size: main.size,
                sha256: main.sha256.clone(),
                url: main.url.clone(),
                files: files.clone(),
            },
        );
    }
    Ok(images)
}

/// Publishes `tag`'s channel if its content changed since the last
/// publication (or always, with `force`). Returns the publication and
/// whether it is new.
pub async fn publish_channel(hub: &Hub, tag: &str, force: bool) -> Result<(IndexRow, bool)> {
    let key_row = hub.db.channel_key().await?.ok_or_else(no_key)?;
    let key = signing_key(hub, &key_row)?;
    let event = hub.db.last_event().await?;
    let images = images_at(hub, tag, event).await?;
    let content = serde_json::to_string(&images).map_err(|e| HubError::internal(e.to_string()))?;
    let content_sha256 = hex::encode(Sha256::digest(content.as_bytes()));
    let make = |sequence: i64| -> Result<(String, String)> {
        let index = ChannelIndex {
            schema: 1,
            channel: tag.to_string(),
            sequence,
            timestamp: crate::db::now(),
            event,
            key_id: key_row.key_id.clone(),
            images: images.clone(),
        };
        let mut body = serde_json::to_string_pretty(&index).map_err(|e| HubError::internal(e.to_string()))?;
        body.push('\n');
        let trusted = format!(
            "kiln channel {tag} sequence {sequence} timestamp {} event {event}",
            index.timestamp
        );
        let sig = minisign::sign(
            &key,
            body.as_bytes(),
            &trusted,
            &format!("signature from kiln channel key {}", key_row.key_id),
        )
        .map_err(|e| HubError::internal(format!("signing the index of channel {tag}: {e}")))?;
        Ok((body, sig))
    };
    hub.db
        .publish_channel(tag, event, &content_sha256, images.len() as i64, force, &make)
        .await
}

/// Republishes every channel whose tag sets `channel.publish` and whose
/// content changed. Run after changes and periodically; errors are logged.
pub async fn publish_auto(hub: &Hub) {
    let tags = match hub.db.auto_channels().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("channels to publish: {e}");
            return;
        }
    };
    if tags.is_empty() {
        return;
    }
    if matches!(hub.db.channel_key().await, Ok(None)) {
        tracing::warn!(
            "channels {} publish automatically, but the hub has no signing key",
            tags.join(", ")
        );
        return;
    }
    for tag in tags {
        match publish_channel(hub, &tag, false).await {
            Ok((row, true)) => tracing::info!("published channel {tag}, sequence {}", row.sequence),
            Ok((_, false)) => {}
            Err(e) if e.status == 409 => {}
            Err(e) => tracing::warn!("publishing channel {tag}: {e}"),
        }
    }
}

// ---- what devices fetch, under /channels/ ---------------------------------

fn text(body: String, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub async fn index_json(State(hub): St, headers: HeaderMap, P(tag): P<String>) -> Result<Response> {
    reader(&hub, &headers).await?;
    let row = hub.db.channel_index(&tag).await?.ok_or_else(|| unpublished(&tag))?;
    Ok(text(row.body, "application/json"))
}

pub async fn index_minisig(State(hub): St, headers: HeaderMap, P(tag): P<String>) -> Result<Response> {
    reader(&hub, &headers).await?;
    let row = hub.db.channel_index(&tag).await?.ok_or_else(|| unpublished(&tag))?;
    Ok(text(row.signature, "text/plain; charset=utf-8"))
}

pub async fn public_key(State(hub): St, headers: HeaderMap) -> Result<Response> {
    reader(&hub, &headers).await?;
    let row = hub.db.channel_key().await?.ok_or_else(no_key)?;
    Ok(text(row.public_key, "text/plain; charset=utf-8"))
}

/// A file the channel's current index lists.
pub async fn channel_file(
    State(hub): St,
    headers: HeaderMap,
    P((tag, nvr, file)): P<(String, String, String)>,
) -> Result<Response> {
    reader(&hub, &headers).await?;
    let row = hub.db.channel_index(&tag).await?.ok_or_else(|| unpublished(&tag))?;
    let index: ChannelIndex = serde_json::from_str(&row.body).map_err(|e| HubError::internal(e.to_string()))?;
    let listed = index
        .images
        .values()
        .any(|i| i.nvr == nvr && i.files.iter().any(|f| f.file == file));
    if !listed {
        return Err(HubError::not_found(format!(
            "channel {tag} (sequence {}) lists no file {file} of {nvr}",
            row.sequence
        )));
    }
    let (a, key) = hub.db.artifact_key(&nvr, &file).await?;
    let key = key.ok_or_else(|| HubError::not_found(format!("{file} of {nvr} was never uploaded")))?;
    stream(&hub, &key, &a.sha256, &file).await
}
