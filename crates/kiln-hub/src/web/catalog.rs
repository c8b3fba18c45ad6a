//! The pages of what builds are made with: targets with their macros (the
//! target's own and the build tag's inherited `macro.*` extra), the
//! source-image catalog (and its upload form), and the builders.

use std::sync::Arc;

use askama::Template;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{PageResult, Viewer, reader, viewer};
use super::{VERSION, failed, filters, page};
use crate::api::Hub;
use crate::db;
use crate::error::{HubError, Result};
use crate::model::{HostInfo, Image, Target};

/// A build tag's macro: name, value, and the tag it came from.
type TagMacro = (String, String, String);

#[derive(Template)]
#[template(path = "targets.html")]
struct TargetsPage {
    version: &'static str,
    viewer: Viewer,
    /// Each target, with its build tag's macros: name, value, the tag it came from.
    targets: Vec<(Target, Vec<TagMacro>)>,
}

pub(super) async fn targets(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/targets").await?;
    let load = async {
        let mut out = Vec::new();
        for t in hub.db.list_targets().await? {
            let layers = db::macro_layers(&hub.db, &t.name).await?;
            let tag = layers
                .build_tag_macros
                .into_iter()
                .map(|(k, v)| (k, v.value, v.from))
                .collect();
            out.push((t, tag));
        }
        Ok::<_, HubError>(out)
    };
    let targets = load.await.map_err(failed)?;
    page(&TargetsPage {
        version: VERSION,
        viewer,
        targets,
    })
    .map_err(failed)
}

#[derive(Template)]
#[template(path = "images.html")]
struct ImagesPage {
    version: &'static str,
    viewer: Viewer,
    images: Vec<Image>,
    /// The catalog's image names, for the upload form.
    names: Vec<String>,
}

pub(super) async fn images(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/images").await?;
    let images: Vec<Image> = hub
        .db
        .images(None)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let mut names: Vec<String> = images.iter().map(|i| i.name.clone()).collect();
    names.sort();
    names.dedup();
    page(&ImagesPage {
        version: VERSION,
        viewer,
        images,
        names,
    })
    .map_err(failed)
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    version: &'static str,
    viewer: Viewer,
    hosts: Vec<HostInfo>,
}

pub(super) async fn hosts(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/hosts").await?;
    let hosts = hub.db.list_hosts().await.map_err(failed)?;
    page(&HostsPage {
        version: VERSION,
        viewer,
        hosts,
    })
    .map_err(failed)
}

/// The upload form's text fields are short: a longer one is refused.
const MAX_FIELD: usize = 4096;

/// `POST /images`: the upload form (multipart: `csrf`, `name`, `version`,
/// then `file`), for those with `image`. The file streams to the store
/// through the API's upload path ([`crate::api::put_image`]), checked the
/// same way; the CSRF token is checked before a byte of it is read.
pub(super) async fn upload(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    form: std::result::Result<Multipart, MultipartRejection>,
) -> Response {
    let act = async {
        let v = viewer(&hub, &headers).await?;
        if v.who.id.is_none() {
            return Err(HubError::unauthorized("log in to upload images"));
        }
        let mut form = form.map_err(|e| HubError::bad_request(format!("the upload form: {e}")))?;
        let (mut csrf, mut name, mut version) = (String::new(), String::new(), String::new());
        while let Some(field) = form.next_field().await.map_err(bad_form)? {
            match field.name().unwrap_or_default() {
                "csrf" => csrf = text(field).await?,
                "name" => name = text(field).await?.trim().to_string(),
                "version" => version = text(field).await?.trim().to_string(),
                "file" => {
                    v.check_csrf(&csrf)?;
                    if !v.may("image") {
                        return Err(HubError::forbidden(format!(
                            "{} lacks the `image` permission",
                            v.who.name
                        )));
                    }
                    return crate::api::put_image(&hub, &v.who, (name, version), field, None).await;
                }
                other => {
                    return Err(HubError::bad_request(format!("the upload form has no field `{other}`")));
                }
            }
        }
        Err(HubError::bad_request("the upload form sent no file"))
    };
    match act.await {
        Ok(i) => Redirect::to(&format!("/images#image-{}-{}", i.name, i.version)).into_response(),
        Err(e) => failed(e),
    }
}

fn bad_form(e: axum::extract::multipart::MultipartError) -> HubError {
    HubError::bad_request(format!("the upload form: {e}"))
}

/// A short text field of the upload form.
async fn text(mut field: Field<'_>) -> Result<String> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        if out.len() + chunk.len() > MAX_FIELD {
            return Err(HubError::bad_request("a field of the upload form is too long"));
        }
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).map_err(|_| HubError::bad_request("a field of the upload form is not UTF-8"))
}
