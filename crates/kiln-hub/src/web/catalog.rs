//! The pages of what builds are made with: targets with their macros (the
//! target's own and the build tag's inherited `macro.*` extra), the
//! source-image catalog, the builders, and (for admins) the users.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;

use super::session::{PageResult, Viewer, reader};
use super::{VERSION, failed, page};
use crate::api::Hub;
use crate::db;
use crate::error::HubError;
use crate::model::{HostInfo, Image, Target, User};

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
}

pub(super) async fn images(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/images").await?;
    let images = hub.db.images(None).await.map_err(failed)?;
    page(&ImagesPage {
        version: VERSION,
        viewer,
        images: images.into_iter().map(|(i, _)| i).collect(),
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

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    version: &'static str,
    viewer: Viewer,
    users: Vec<User>,
}

/// Admins only.
pub(super) async fn users(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/users").await?;
    if !viewer.who.admin {
        return Err(failed(HubError::forbidden("the users page is for admins")));
    }
    let users = hub.db.list_users().await.map_err(failed)?;
    page(&UsersPage {
        version: VERSION,
        viewer,
        users,
    })
    .map_err(failed)
}
