//! Koji sessions (docs/koji.md): `login(user, password)` answers a session
//! id and key; the client sends them with every call (the
//! `Koji-Session-*` headers, or `session-id`, `session-key` and `callnum`
//! in the query string), with a call number that must grow. A session
//! lasts `Hub::koji_session` seconds after its last call; then its calls
//! are refused as expired (fault 1007) and the client logs in again. A
//! login counts against the same limit as the API's.

use std::collections::HashMap;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use super::args::{Args, Ref};
use super::values::{b, int, list, s, st};
use super::wire::{Call, Fault, Value, code};
use super::{Ctx, Out, fault};
use crate::api::{Hub, Login, check_login};
use crate::auth;
use crate::db::now;
use crate::model::Principal;

/// Methods an anonymous caller may use on a hub without anonymous reads.
pub const OPEN: &[&str] = &[
    "login",
    "logout",
    "getAPIVersion",
    "getKojiVersion",
    "getLoggedInUser",
    "system.listMethods",
];

/// Who makes a call: the session's user (checked: key, expiry, call
/// number), a kiln API token (`Authorization: Bearer`), or anonymous.
pub async fn caller(
    hub: &Hub,
    method: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    write: bool,
) -> Result<(Principal, Option<i64>), Fault> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        let p = crate::api::principal(hub, headers).await.map_err(fault)?;
        return Ok((p, None));
    }
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let id = header("Koji-Session-Id").or_else(|| query.get("session-id").cloned());
    let key = header("Koji-Session-Key").or_else(|| query.get("session-key").cloned());
    let callnum = header("Koji-Session-Callnum").or_else(|| query.get("callnum").cloned());
    // A login starts anew whatever session the client still holds (the
    // client sends its expired one when it renews).
    let (Some(id), Some(key)) = (id, key) else {
        return Ok((Principal::anonymous(), None));
    };
    if method == "login" {
        return Ok((Principal::anonymous(), None));
    }
    let id: i64 = id
        .trim()
        .parse()
        .map_err(|_| Fault::new(code::AUTH, "Invalid session id"))?;
    // The key is `ID-SECRET`, as Koji's; the database keeps the secret's hash.
    let secret = key.trim().strip_prefix(&format!("{id}-")).unwrap_or_default();
    let row = hub.db.koji_session(id).await.map_err(fault)?;
    let row = row
        .filter(|r| bool::from(auth::token_hash(secret).as_bytes().ct_eq(r.key_sha256.as_bytes())))
        .ok_or_else(|| Fault::new(code::AUTH, "Invalid session or bad credentials"))?;
    if row.closed || row.expires <= now() {
        return Err(Fault::new(code::AUTH_EXPIRED, format!("session \"{id}\" has expired")));
    }
    let expires = now() + hub.koji_session;
    match callnum {
        Some(n) => {
            let n: i64 = n.trim().parse().map_err(|_| {
                Fault::new(
                    code::AUTH,
                    format!("Invalid callnum: {:?}", super::values::printable(&n)),
                )
            })?;
            if !hub.db.koji_session_call(id, n, expires).await.map_err(fault)? {
                // Read the number again: it may have moved meanwhile.
                let last = hub.db.koji_session(id).await.map_err(fault)?.and_then(|r| r.callnum);
                match last {
                    Some(last) if last > n => {
                        return Err(Fault::new(code::SEQUENCE, format!("{last} > {n} (session {id})")));
                    }
                    _ if write => {
                        return Err(Fault::new(
                            code::RETRY,
                            format!("unable to retry call {n} (method {method}) for session {id}"),
                        ));
                    }
                    _ => {}
                }
            }
        }
        None => hub.db.koji_session_touch(id, expires).await.map_err(fault)?,
    }
    let who = hub.db.user_principal(row.user_id).await.map_err(fault)?;
    Ok((who, Some(id)))
}

pub async fn method(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    match call.method.as_str() {
        "login" => login(ctx, call).await,
        "logout" => {
            let a = Args::bind(call, &["session_id"])?;
            if let Some(own) = ctx.session {
                let target = a.int("session_id")?.unwrap_or(own);
                if target != own {
                    return Err(Fault::new(
                        code::NOT_ALLOWED,
                        "only the session's own logout is supported",
                    ));
                }
                ctx.hub.db.koji_session_close(own).await.map_err(fault)?;
            }
            Ok(Value::Nil)
        }
        "getLoggedInUser" => {
            Args::bind(call, &[])?;
            match ctx.who.id {
                Some(id) => user_info(ctx, Some(id), None).await,
                None => Ok(Value::Nil),
            }
        }
        "getUser" => {
            let a = Args::bind(call, &["userInfo", "strict", "krb_princs", "groups"])?;
            let (id, name) = match a.get("userInfo") {
                None => (ctx.who.id, None),
                Some(v) => match Ref::from_value(v, "user")? {
                    Ref::Id(i) => (Some(i), None),
                    Ref::Name(n) => (None, Some(n)),
                },
            };
            if id.is_none() && name.is_none() {
                return Ok(Value::Nil);
            }
            let found = user_info(ctx, id, name.as_deref()).await?;
            if matches!(found, Value::Nil) && a.flag("strict") {
                let shown = name.map_or_else(|| id.unwrap_or_default().to_string(), |n| format!("'{n}'"));
                return Err(Fault::generic(format!("No such user: {shown}")));
            }
            Ok(found)
        }
        "getUserPerms" => {
            let a = Args::bind(call, &["userID", "with_groups"])?;
            let (id, name) = match a.get("userID") {
                None => (ctx.who.id, None),
                Some(v) => match Ref::from_value(v, "user")? {
                    Ref::Id(i) => (Some(i), None),
                    Ref::Name(n) => (None, Some(n)),
                },
            };
            let u = ctx.hub.db.koji_user(id, name.as_deref()).await.map_err(fault)?;
            let u = u.ok_or_else(|| Fault::generic("No such user"))?;
            Ok(list(u.perms.into_iter().map(s)))
        }
        "hasPerm" => {
            let a = Args::bind(call, &["perm", "strict"])?;
            let perm = a.need_str("perm")?;
            let strict = a.flag("strict");
            let held = ctx.who.id.is_some() && (ctx.who.perms.contains(&perm) || (!strict && ctx.who.admin));
            Ok(b(held))
        }
        "getAllPerms" => {
            Args::bind(call, &[])?;
            let perms = ctx.hub.db.koji_permissions().await.map_err(fault)?;
            Ok(list(perms.into_iter().map(|(id, name, description)| {
                st([("id", int(id)), ("name", s(name)), ("description", s(description))])
            })))
        }
        m => Err(Fault::generic(format!("Invalid method: {m}"))),
    }
}

/// `login(user, password, opts=None, renew=False, exclusive=False)`.
async fn login(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["user", "password", "opts", "renew", "exclusive"])?;
    let user = a.need_str("user")?;
    let password = a.need_str("password")?;
    let id = match check_login(ctx.hub, &user, &password, ctx.addr).await.map_err(fault)? {
        Login::Accepted(id) => id,
        Login::Wrong => return Err(Fault::new(code::AUTH, "Invalid username or password")),
        Login::Limited(wait) => {
            return Err(Fault::new(
                code::AUTH,
                format!("too many failed logins; try again in {wait} seconds"),
            ));
        }
    };
    let key = auth::new_token();
    let expires = now() + ctx.hub.koji_session;
    let sid = ctx
        .hub
        .db
        .koji_session_create(id, &auth::token_hash(&key), expires)
        .await
        .map_err(fault)?;
    Ok(st([
        ("session-id", int(sid)),
        ("session-key", s(format!("{sid}-{key}"))),
        ("header-auth", b(true)),
    ]))
}

/// Koji's user map (`getUser`): id, name, status 0 (normal), usertype 0
/// (a person) or 1 (a builder), no Kerberos principals.
async fn user_info(ctx: &Ctx<'_>, id: Option<i64>, name: Option<&str>) -> Out {
    let Some(u) = ctx.hub.db.koji_user(id, name).await.map_err(fault)? else {
        return Ok(Value::Nil);
    };
    Ok(st([
        ("id", int(u.id)),
        ("name", s(u.name)),
        ("status", Value::Integer(0)),
        ("usertype", Value::Integer(if u.kind == "host" { 1 } else { 0 })),
        ("krb_principal", Value::Nil),
        ("krb_principals", list([])),
    ]))
}
