//! Koji's XML-RPC protocol (docs/koji.md): `POST /kojihub` answers the
//! real `koji` client. Each method reads and changes the hub through the
//! same `Db` functions as the REST API, with the caller's `Principal`, so
//! permissions, locks and Koji's tag rules are the API's; this module only
//! translates: Koji's argument conventions in (`args`), Koji's shapes out
//! (`values`), every error a fault with Koji's code (`wire::code`).
//!
//! `wire` is the pure protocol layer (fuzzed); `session` holds logins and
//! callers; the rest are the methods by area.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::{Hub, Peer};
use crate::error::HubError;
use crate::model::Principal;

pub mod args;
mod builds;
mod glob;
mod history;
mod inherit;
mod packages;
pub mod session;
mod tags;
mod targets;
mod tasks;
pub mod values;
pub mod wire;

use args::Args;
use wire::{Call, Fault, Value, code};

/// The Koji version the hub answers as: the 1.35 and 1.36 clients take the
/// protocol of 1.35 and later (the `Koji-Version` header) from it.
pub const KOJI_VERSION: &str = "1.36.1";
/// Koji's API version (`getAPIVersion`).
pub const API_VERSION: i32 = 1;
/// The largest request the endpoint reads.
pub const MAX_REQUEST: usize = 16 << 20;

type Out = Result<Value, Fault>;

/// Who calls, and through which session.
pub struct Ctx<'a> {
    pub hub: &'a Hub,
    pub who: Principal,
    pub session: Option<i64>,
    pub addr: Option<IpAddr>,
    /// Whether the call is one of a `multiCall`'s.
    pub multicall: bool,
    /// The call's answer already encoded (a `<value>`), when a method kept
    /// it (`listTagged`); then the method's `Value` is ignored.
    pub encoded: Option<std::sync::Arc<str>>,
}

impl Ctx<'_> {
    /// Refuses an anonymous caller (Koji's `assertLogin`).
    pub fn login_needed(&self) -> Result<(), Fault> {
        if self.who.id.is_none() {
            return Err(Fault::new(code::AUTH, "Not logged in"));
        }
        Ok(())
    }

    /// Refuses a caller without `perm` (Koji's `assertPerm`).
    pub fn perm_needed(&self, perm: &str) -> Result<(), Fault> {
        self.login_needed()?;
        if !self.who.has(perm) {
            return Err(Fault::new(code::NOT_ALLOWED, format!("{perm} permission required")));
        }
        Ok(())
    }
}

/// A hub error as Koji's fault.
pub fn fault(e: HubError) -> Fault {
    let c = match e.status {
        401 => code::AUTH,
        403 | 423 => code::NOT_ALLOWED,
        _ => code::GENERIC,
    };
    Fault::new(c, e.message)
}

/// `POST /kojihub`.
pub async fn endpoint(
    State(hub): State<Arc<Hub>>,
    Peer(addr): Peer,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let out = match axum::body::to_bytes(body, MAX_REQUEST).await {
        Ok(bytes) => answer(&hub, addr, &query, &headers, &bytes).await,
        Err(_) => wire::fault_xml(&Fault::generic(format!(
            "the request is larger than {MAX_REQUEST} bytes or was cut off"
        ))),
    };
    let mut r = out.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    h.insert("Koji-Version", HeaderValue::from_static(KOJI_VERSION));
    r
}

async fn answer(
    hub: &Hub,
    addr: Option<IpAddr>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> String {
    let call = match wire::parse_call(body) {
        Ok(c) => c,
        Err(f) => return wire::fault_xml(&f),
    };
    let result = async {
        let (who, session) = session::caller(hub, &call.method, headers, query, is_write(&call.method)).await?;
        if who.id.is_none() && !hub.anonymous_read && !session::OPEN.contains(&call.method.as_str()) {
            return Err(Fault::new(code::AUTH, "this hub requires a login for reading too"));
        }
        let mut ctx = Ctx {
            hub,
            who,
            session,
            addr,
            multicall: false,
            encoded: None,
        };
        if call.method == "multiCall" {
            multicall(&mut ctx, &call).await.map(|v| (v, None))
        } else {
            let v = dispatch(&mut ctx, &call).await?;
            Ok((v, ctx.encoded.take()))
        }
    }
    .await;
    match result {
        Ok((_, Some(encoded))) => wire::reply_encoded(&encoded),
        Ok((v, None)) => wire::reply(v),
        Err(f) => {
            if f.code == code::GENERIC && f.message.starts_with("database error") {
                tracing::error!(method = %crate::logsafe::esc(&call.method), "koji call failed: {}", crate::logsafe::esc(&f.message));
            }
            wire::fault_xml(&f)
        }
    }
}

/// `multiCall(calls, strict=False)`: each call's answer as a list of one
/// value, or its fault as a struct; with `strict`, the first fault is
/// the whole call's.
async fn multicall(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["calls", "strict"])?;
    let strict = a.flag("strict");
    let mut out = Vec::new();
    ctx.multicall = true;
    for entry in a.list("calls") {
        let one = match entry {
            Value::Struct(mut m) => {
                let method = match m.remove("methodName") {
                    Some(Value::String(s)) => s,
                    _ => return Err(Fault::parameter("each call of multiCall needs a methodName")),
                };
                let params = match m.remove("params") {
                    Some(Value::Array(p)) => p,
                    None => Vec::new(),
                    Some(_) => return Err(Fault::parameter("the params of a multiCall call must be a list")),
                };
                wire::split(method, params)
            }
            _ => return Err(Fault::parameter("multiCall takes a list of structs")),
        };
        let r = if one.method == "multiCall" {
            Err(Fault::generic("multiCall cannot be nested"))
        } else {
            dispatch(ctx, &one).await
        };
        match r {
            Ok(v) => out.push(Value::Array(vec![v])),
            Err(f) if strict => return Err(f),
            Err(f) => out.push(values::st([
                ("faultCode", Value::Integer(f.code)),
                ("faultString", Value::String(f.message)),
                ("traceback", Value::String(String::new())),
            ])),
        }
    }
    Ok(Value::Array(out))
}

/// The methods that change something: a repeated call number is refused
/// for them (Koji's `RetryError`), as their first attempt may have done
/// its change.
const WRITES: &[&str] = &[
    "createTag",
    "editTag2",
    "deleteTag",
    "setInheritanceData",
    "createBuildTarget",
    "editBuildTarget",
    "deleteBuildTarget",
    "packageListAdd",
    "packageListBlock",
    "packageListUnblock",
    "packageListRemove",
    "tagBuild",
    "untagBuild",
    "tagBuildBypass",
    "untagBuildBypass",
    "multiCall",
];

fn is_write(method: &str) -> bool {
    WRITES.contains(&method)
}

/// Every method the endpoint answers (`system.listMethods`).
pub const METHODS: &[&str] = &[
    "echo",
    "getAPIVersion",
    "getKojiVersion",
    "getLastEvent",
    "getEvent",
    "login",
    "logout",
    "getLoggedInUser",
    "getUser",
    "getUserPerms",
    "hasPerm",
    "getAllPerms",
    "getTag",
    "getTagID",
    "listTags",
    "createTag",
    "editTag2",
    "deleteTag",
    "getBuildConfig",
    "getInheritanceData",
    "setInheritanceData",
    "getFullInheritance",
    "getBuildTarget",
    "getBuildTargets",
    "createBuildTarget",
    "editBuildTarget",
    "deleteBuildTarget",
    "getPackage",
    "getPackageID",
    "listPackages",
    "listPackagesSimple",
    "packageListAdd",
    "packageListBlock",
    "packageListUnblock",
    "packageListRemove",
    "getBuild",
    "listBuilds",
    "listTagged",
    "tagBuild",
    "untagBuild",
    "tagBuildBypass",
    "untagBuildBypass",
    "getTaskInfo",
    "getTaskRequest",
    "getTaskResult",
    "getTaskChildren",
    "getTaskDescendents",
    "listTasks",
    "listTaskOutput",
    "getHost",
    "listHosts",
    "queryHistory",
    "multiCall",
    "system.listMethods",
    "listRPMs",
    "listArchives",
    "getBuildType",
    "getMavenBuild",
    "getWinBuild",
    "getImageBuild",
    "listBTypes",
    "getChangelogEntries",
    "listBuildroots",
    "getRepo",
    "getBuildNotificationBlocks",
    "getAverageBuildDuration",
    "getTagGroups",
    "getTagExternalRepos",
    "getExternalRepoList",
    "listVolumes",
    "mavenEnabled",
    "winEnabled",
];

/// One call.
async fn dispatch(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let m = call.method.as_str();
    match m {
        "echo" => Ok(Value::Array(call.args.clone())),
        "getAPIVersion" => Ok(Value::Integer(API_VERSION)),
        "getKojiVersion" => Ok(values::s(KOJI_VERSION)),
        "system.listMethods" => Ok(values::list(METHODS.iter().map(|m| values::s(*m)))),
        "getLastEvent" | "getEvent" => history::event(ctx, call).await,
        "login" | "logout" | "getLoggedInUser" | "getUser" | "getUserPerms" | "hasPerm" | "getAllPerms" => {
            session::method(ctx, call).await
        }
        "getTag" | "getTagID" | "listTags" | "createTag" | "editTag2" | "deleteTag" | "getBuildConfig" => {
            tags::method(ctx, call).await
        }
        "getInheritanceData" | "setInheritanceData" | "getFullInheritance" => inherit::method(ctx, call).await,
        "getBuildTarget" | "getBuildTargets" | "createBuildTarget" | "editBuildTarget" | "deleteBuildTarget" => {
            targets::method(ctx, call).await
        }
        "getPackage" | "getPackageID" | "listPackages" | "listPackagesSimple" | "packageListAdd"
        | "packageListBlock" | "packageListUnblock" | "packageListRemove" => packages::method(ctx, call).await,
        "getBuild" | "listBuilds" | "listTagged" | "tagBuild" | "untagBuild" | "tagBuildBypass"
        | "untagBuildBypass" => builds::method(ctx, call).await,
        "getTaskInfo" | "getTaskRequest" | "getTaskResult" | "getTaskChildren" | "getTaskDescendents" | "listTasks"
        | "listTaskOutput" | "getHost" | "listHosts" => tasks::method(ctx, call).await,
        "queryHistory" => history::query(ctx, call).await,
        _ => match builds::absent(m) {
            Some(v) => Ok(v),
            None => Err(Fault::generic(format!("Invalid method: {}", values::printable(m)))),
        },
    }
}
