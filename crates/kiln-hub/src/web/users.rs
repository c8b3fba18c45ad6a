//! Users and their tokens: the list for admins, and each user's page (for
//! the user and for admins) with permissions (granted and revoked by
//! admins) and API tokens (revoked by their owner or an admin). Every
//! action goes through the same database functions as the API, which
//! check the permission again.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{PageResult, Viewer, reader, viewer};
use super::{VERSION, failed, filters, page};
use crate::api::Hub;
use crate::error::{HubError, Result};
use crate::model::{TokenInfo, User};

/// The permissions the grant form offers (docs/hub.md, "Permissions");
/// tag permissions (`tag:NAME`) are typed in.
const PERMS: [&str; 7] = ["admin", "tag", "target", "image", "build", "host", "pipeline"];

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    version: &'static str,
    viewer: Viewer,
    users: Vec<User>,
}

/// Admins only.
pub(super) async fn list(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
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

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    version: &'static str,
    viewer: Viewer,
    user: User,
    tokens: Vec<TokenInfo>,
    perms: &'static [&'static str],
}

/// The user's own page, or any user's for an admin.
pub(super) async fn show(State(hub): State<Arc<Hub>>, headers: HeaderMap, Path(name): Path<String>) -> PageResult {
    let viewer = reader(&hub, &headers, &format!("/users/{name}")).await?;
    let load = async {
        self_or_admin(&viewer, &name)?;
        let user = hub
            .db
            .list_users()
            .await?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| HubError::not_found(format!("no user {name}")))?;
        let tokens = hub.db.list_tokens(&name).await?;
        Ok::<_, HubError>((user, tokens))
    };
    let (user, tokens) = load.await.map_err(failed)?;
    page(&UserPage {
        version: VERSION,
        viewer,
        user,
        tokens,
        perms: &PERMS,
    })
    .map_err(failed)
}

fn self_or_admin(v: &Viewer, name: &str) -> Result<()> {
    if v.who.id.is_none() {
        return Err(HubError::unauthorized("log in to see a user's page"));
    }
    if v.who.name != name && !v.who.admin {
        return Err(HubError::forbidden("only an admin may see another user's page"));
    }
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct PermForm {
    csrf: String,
    perm: String,
}

/// Grants a permission (admins).
pub(super) async fn grant(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<PermForm>,
) -> Response {
    let act = async {
        let v = admin(&hub, &headers, &f.csrf).await?;
        hub.db.grant(&v.who, &name, f.perm.trim()).await
    };
    back_to(&name, act.await)
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    csrf: String,
}

/// Revokes a permission (admins).
pub(super) async fn revoke(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path((name, perm)): Path<(String, String)>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let act = async {
        let v = admin(&hub, &headers, &f.csrf).await?;
        hub.db.revoke(&v.who, &name, &perm).await
    };
    back_to(&name, act.await)
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires_days: String,
}

#[derive(Template)]
#[template(path = "token_new.html")]
struct NewTokenPage {
    version: &'static str,
    viewer: Viewer,
    user: String,
    token: kiln_hub_api::model::NewToken,
}

/// Makes an API token (the user, or an admin) and shows it once.
pub(super) async fn new_token(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<TokenForm>,
) -> Response {
    let act = async {
        let v = viewer(&hub, &headers).await?;
        v.check_csrf(&f.csrf)?;
        self_or_admin(&v, &name)?;
        let expires_days = match f.expires_days.trim() {
            "" => None,
            d => Some(
                d.parse::<i64>()
                    .map_err(|_| HubError::bad_request(format!("expiry `{d}` is not a number of days")))?,
            ),
        };
        let label = f.label.trim();
        let t = kiln_hub_api::model::TokenIn {
            name: (!label.is_empty()).then(|| label.to_string()),
            expires_days,
        };
        let token = crate::api::make_token(&hub, &name, &t).await?;
        Ok::<_, HubError>(NewTokenPage {
            version: VERSION,
            viewer: v,
            user: name.clone(),
            token,
        })
    };
    match act.await {
        Ok(p) => page(&p).map_or_else(failed, IntoResponse::into_response),
        Err(e) => failed(e),
    }
}

/// Revokes one of the user's tokens (the user, or an admin).
pub(super) async fn revoke_token(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, i64)>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let act = async {
        let v = viewer(&hub, &headers).await?;
        v.check_csrf(&f.csrf)?;
        self_or_admin(&v, &name)?;
        if !hub.db.list_tokens(&name).await?.iter().any(|t| t.id == id) {
            return Err(HubError::not_found(format!("{name} has no token {id}")));
        }
        hub.db.revoke_token(&v.who, id).await
    };
    back_to(&name, act.await)
}

/// The session's viewer, who must be an admin and send the form's token.
async fn admin(hub: &Hub, headers: &HeaderMap, csrf: &str) -> Result<Viewer> {
    let v = viewer(hub, headers).await?;
    v.check_csrf(csrf)?;
    if v.who.id.is_none() {
        return Err(HubError::unauthorized("log in to manage users"));
    }
    if !v.who.admin {
        return Err(HubError::forbidden(format!("{} is not an admin", v.who.name)));
    }
    Ok(v)
}

/// After an action: the user's page again, or the error page.
fn back_to(name: &str, r: Result<()>) -> Response {
    match r {
        Ok(()) => {
            let to = format!(
                "/users/{}",
                url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
            );
            Redirect::to(&to).into_response()
        }
        Err(e) => failed(e),
    }
}
