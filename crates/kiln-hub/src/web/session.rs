//! Who is looking at a page (docs/web.md, "Sessions"): the session cookie
//! (`kiln_session`, HttpOnly, SameSite=Lax, Secure when the request came
//! over TLS), the CSRF token every form carries, and the login and logout
//! forms. A login through the form is the API's login: the same users, the
//! same failed-login limit.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::page;
use crate::api::{Hub, Login, Peer, check_login};
use crate::auth;
use crate::error::{HubError, Result};
use crate::model::Principal;

/// The session cookie's name.
const SESSION: &str = "kiln_session";
/// The login form's CSRF cookie (before there is a session).
const LOGIN_CSRF: &str = "kiln_login";
/// How long a session lives.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// The caller of a page: a user with a session, or nobody; the CSRF token
/// its forms carry.
#[derive(Clone, Debug, Default)]
pub struct Viewer {
    pub who: Principal,
    pub csrf: String,
}

impl Viewer {
    pub fn name(&self) -> Option<&str> {
        self.who.id.map(|_| self.who.name.as_str())
    }

    pub fn may(&self, perm: &str) -> bool {
        self.who.has(perm)
    }

    /// Checks a form's CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, sent: &str) -> Result<()> {
        if self.csrf.is_empty() || !bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes())) {
            return Err(HubError::forbidden(
                "the form's CSRF token is missing or wrong: reload the page",
            ));
        }
        Ok(())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request came over TLS (directly, or through a proxy that
/// says so): cookies are then `Secure`.
pub(super) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who is looking, from the session cookie.
pub async fn viewer(hub: &Hub, headers: &HeaderMap) -> Result<Viewer> {
    let Some(token) = cookie(headers, SESSION) else {
        return Ok(Viewer::default());
    };
    Ok(match hub.db.session(&auth::token_hash(token)).await? {
        Some((who, csrf)) => Viewer { who, csrf },
        None => Viewer::default(),
    })
}

/// Who is looking, for a page that reads: under `--no-anonymous-read`
/// nobody is sent to the login form.
pub async fn reader(hub: &Hub, headers: &HeaderMap, path: &str) -> std::result::Result<Viewer, Response> {
    let v = viewer(hub, headers).await.map_err(IntoResponse::into_response)?;
    if v.who.id.is_none() && !hub.anonymous_read {
        let to = format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        );
        return Err(Redirect::to(&to).into_response());
    }
    Ok(v)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    version: &'static str,
    viewer: Viewer,
    csrf: String,
    next: String,
    user: String,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// Only paths of this hub: never another site.
fn local(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

fn login_page(headers: &HeaderMap, next: &str, user: &str, error: Option<String>, status: StatusCode) -> Response {
    let csrf = auth::new_token();
    let p = LoginPage {
        version: env!("CARGO_PKG_VERSION"),
        viewer: Viewer::default(),
        csrf: csrf.clone(),
        next: next.to_string(),
        user: user.to_string(),
        error,
    };
    let mut r = match page(&p) {
        Ok(html) => (status, html).into_response(),
        Err(e) => return e.into_response(),
    };
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(headers, LOGIN_CSRF, &csrf, 3600));
    r
}

pub(super) async fn login_form(headers: HeaderMap, Query(q): Query<Next>) -> Response {
    login_page(&headers, &local(q.next.as_deref()), "", None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

pub(super) async fn login(
    State(hub): State<Arc<Hub>>,
    Peer(addr): Peer,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response> {
    let next = local(f.next.as_deref());
    let expected = cookie(&headers, LOGIN_CSRF).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(f.csrf.as_bytes())) {
        let msg = "the form expired or did not come from this hub: try again".to_string();
        return Ok(login_page(&headers, &next, &f.user, Some(msg), StatusCode::FORBIDDEN));
    }
    let user_id = match check_login(&hub, &f.user, &f.password, addr).await? {
        Login::Accepted(id) => id,
        Login::Wrong => {
            let msg = "wrong user name or password".to_string();
            return Ok(login_page(
                &headers,
                &next,
                &f.user,
                Some(msg),
                StatusCode::UNAUTHORIZED,
            ));
        }
        Login::Limited(wait) => {
            let msg = format!("too many failed logins; retry in {wait} s");
            return Ok(login_page(
                &headers,
                &next,
                &f.user,
                Some(msg),
                StatusCode::TOO_MANY_REQUESTS,
            ));
        }
    };
    let token = auth::new_token();
    let csrf = auth::new_token();
    hub.db
        .create_session(
            user_id,
            &auth::token_hash(&token),
            &csrf,
            crate::db::now() + SESSION_SECONDS,
        )
        .await?;
    let mut r = Redirect::to(&next).into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION, &token, SESSION_SECONDS),
    );
    h.append(header::SET_COOKIE, set_cookie(&headers, LOGIN_CSRF, "", 0));
    Ok(r)
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout(State(hub): State<Arc<Hub>>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let act = async {
        let v = viewer(&hub, &headers).await?;
        v.check_csrf(&f.csrf)?;
        if let Some(token) = cookie(&headers, SESSION) {
            hub.db.end_session(&auth::token_hash(token)).await?;
        }
        Ok::<_, HubError>(())
    };
    if let Err(e) = act.await {
        return super::failed(e);
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&headers, SESSION, "", 0));
    r
}

/// A page, or the redirect or error that stands for it.
pub type PageResult = std::result::Result<Html<String>, Response>;
