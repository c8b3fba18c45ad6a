//! Packages and package lists: `getPackage`, `getPackageID`,
//! `listPackages`, `listPackagesSimple`, `packageListAdd`,
//! `packageListBlock`, `packageListUnblock`, `packageListRemove`.
//! A package's id is the `packages` row its name got when a build or a
//! list entry first used it.

use std::collections::HashMap;

use super::args::{Args, Ref};
use super::values::{b, int, list, opt_int, s, st};
use super::wire::{Call, Fault, Value};
use super::{Ctx, Out, fault, tags};
use crate::model::{PackageIn, PackageOut, TagInfo};

pub async fn method(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    match call.method.as_str() {
        "getPackage" => {
            let a = Args::bind(call, &["info", "strict", "create"])?;
            let info = a.need("info")?;
            match find(ctx, info).await? {
                Some((id, name)) => Ok(st([("id", int(id)), ("name", s(name))])),
                None if a.flag("strict") => Err(no_such(info)),
                None => Ok(Value::Nil),
            }
        }
        "getPackageID" => {
            let a = Args::bind(call, &["name", "strict"])?;
            let info = a.need("name")?;
            match find(ctx, info).await? {
                Some((id, _)) => Ok(int(id)),
                None if a.flag("strict") => Err(no_such(info)),
                None => Ok(Value::Nil),
            }
        }
        "listPackages" | "listPackagesSimple" => list_packages(ctx, call).await,
        "packageListAdd" => {
            let a = Args::bind(
                call,
                &[
                    "taginfo",
                    "pkginfo",
                    "owner",
                    "block",
                    "extra_arches",
                    "force",
                    "update",
                ],
            )?;
            ctx.perm_needed("tag")?;
            let t = tags::need(ctx, a.need("taginfo")?, None).await?;
            let package = package_name(ctx, a.need("pkginfo")?).await?;
            let owner = match a.get("owner") {
                Some(o) => Some(user_name(ctx, o).await?),
                None => None,
            };
            let own = ctx.hub.db.packages(&t.name, true, None).await.map_err(fault)?;
            let previous = own.iter().find(|p| p.package == package);
            if previous.is_none() && owner.is_none() {
                if a.flag("update") {
                    return Err(Fault::generic(format!(
                        "cannot update: package {package} is not in the list of tag {}",
                        t.name
                    )));
                }
                return Err(Fault::generic("owner not specified"));
            }
            let block = match a.get("block") {
                Some(v) => super::wire::truthy(v),
                None => previous.is_some_and(|p| p.blocked),
            };
            if previous.is_some_and(|p| p.blocked) && !block && !a.flag("force") {
                return Err(Fault::generic(format!(
                    "package {package} is blocked in tag {}",
                    t.name
                )));
            }
            set(ctx, &t, package, owner, block, a.flag("force")).await
        }
        "packageListBlock" | "packageListUnblock" => {
            let a = Args::bind(call, &["taginfo", "pkginfo", "force"])?;
            ctx.perm_needed("tag")?;
            let t = tags::need(ctx, a.need("taginfo")?, None).await?;
            let info = a.need("pkginfo")?;
            let (_, package) = find(ctx, info).await?.ok_or_else(|| no_such(info))?;
            let listed = ctx.hub.db.packages(&t.name, true, None).await.map_err(fault)?;
            let Some(entry) = listed.iter().find(|p| p.package == package) else {
                return Err(Fault::generic(format!(
                    "Package {package} is not in tag listing for {}",
                    t.name
                )));
            };
            if call.method == "packageListBlock" {
                set(ctx, &t, package, None, true, a.flag("force")).await
            } else {
                if !entry.blocked {
                    return Err(Fault::generic(format!(
                        "package {package} is not blocked in tag {}",
                        t.name
                    )));
                }
                if entry.tag == t.name {
                    ctx.hub
                        .db
                        .remove_package(&ctx.who, &t.name, &package, a.flag("force"))
                        .await
                        .map_err(fault)?;
                    Ok(Value::Nil)
                } else {
                    let owner = Some(entry.owner.clone());
                    set(ctx, &t, package, owner, false, a.flag("force")).await
                }
            }
        }
        "packageListRemove" => {
            let a = Args::bind(call, &["taginfo", "pkginfo", "force"])?;
            ctx.perm_needed("tag")?;
            let t = tags::need(ctx, a.need("taginfo")?, None).await?;
            let info = a.need("pkginfo")?;
            let (_, package) = find(ctx, info).await?.ok_or_else(|| no_such(info))?;
            ctx.hub
                .db
                .remove_package(&ctx.who, &t.name, &package, a.flag("force"))
                .await
                .map_err(fault)?;
            Ok(Value::Nil)
        }
        m => Err(Fault::generic(format!("Invalid method: {m}"))),
    }
}

async fn set(ctx: &Ctx<'_>, t: &TagInfo, package: String, owner: Option<String>, blocked: bool, force: bool) -> Out {
    let p = PackageIn {
        package,
        owner,
        blocked,
    };
    ctx.hub
        .db
        .set_package(&ctx.who, &t.name, &p, force)
        .await
        .map_err(fault)?;
    Ok(Value::Nil)
}

fn no_such(v: &Value) -> Fault {
    let shown = Ref::from_value(v, "package").map_or_else(|_| String::from("?"), |r| r.shown());
    Fault::generic(format!("No such package: {shown}"))
}

/// The package `v` names (id, name or map), if it exists.
pub async fn find(ctx: &Ctx<'_>, v: &Value) -> Result<Option<(i64, String)>, Fault> {
    let found = match Ref::from_value(v, "package")? {
        Ref::Id(id) => ctx.hub.db.koji_package(Some(id), None).await,
        Ref::Name(n) => ctx.hub.db.koji_package(None, Some(&n)).await,
    };
    found.map_err(fault)
}

/// The package `v` names, which must exist.
pub async fn need(ctx: &Ctx<'_>, v: &Value) -> Result<(i64, String), Fault> {
    find(ctx, v).await?.ok_or_else(|| no_such(v))
}

/// A package for a list entry: an existing one by id, or any valid name
/// (the entry makes the package).
async fn package_name(ctx: &Ctx<'_>, v: &Value) -> Result<String, Fault> {
    match Ref::from_value(v, "package")? {
        Ref::Name(n) => {
            tags::check_name(&n)?;
            Ok(n)
        }
        Ref::Id(_) => Ok(need(ctx, v).await?.1),
    }
}

/// The user `v` names (id, name or map), if there is one.
pub async fn find_user(ctx: &Ctx<'_>, v: &Value) -> Result<Option<crate::db::KojiUser>, Fault> {
    let u = match Ref::from_value(v, "user")? {
        Ref::Id(id) => ctx.hub.db.koji_user(Some(id), None).await,
        Ref::Name(n) => ctx.hub.db.koji_user(None, Some(&n)).await,
    };
    u.map_err(fault)
}

/// The user `v` names, which must exist.
pub async fn need_user(ctx: &Ctx<'_>, v: &Value) -> Result<crate::db::KojiUser, Fault> {
    let shown = Ref::from_value(v, "user")?.shown();
    find_user(ctx, v)
        .await?
        .ok_or_else(|| Fault::generic(format!("No such user: {shown}")))
}

/// A user given by id or name, as its name.
async fn user_name(ctx: &Ctx<'_>, v: &Value) -> Result<String, Fault> {
    Ok(need_user(ctx, v).await?.name)
}

/// User names to ids.
pub async fn user_ids(ctx: &Ctx<'_>) -> Result<HashMap<String, i64>, Fault> {
    ctx.hub.db.koji_user_ids().await.map_err(fault)
}

/// `listPackages(tagID=None, userID=None, pkgID=None, prefix=None,
/// inherited=False, with_dups=False, event=None, queryOpts=None,
/// with_owners=True, with_blocked=True)`.
async fn list_packages(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(
        call,
        &[
            "tagID",
            "userID",
            "pkgID",
            "prefix",
            "inherited",
            "with_dups",
            "event",
            "queryOpts",
            "with_owners",
            "with_blocked",
        ],
    )?;
    let event = a.int("event")?;
    let prefix = a.str("prefix")?;
    let ids = ctx.hub.db.koji_package_ids().await.map_err(fault)?;
    let pkg = match a.get("pkgID") {
        Some(v) => match find(ctx, v).await? {
            Some(p) => Some(p),
            None => return Ok(list([])),
        },
        None => None,
    };
    let owner = match a.get("userID") {
        Some(v) => Some(user_name(ctx, v).await?),
        None => None,
    };
    let tag = match a.get("tagID") {
        Some(v) => Some(tags::need(ctx, v, event).await?),
        None => None,
    };
    if tag.is_none() && owner.is_none() && pkg.is_none() {
        let mut all: Vec<(&String, &i64)> = ids.iter().collect();
        all.sort_by_key(|(_, id)| **id);
        return Ok(list(
            all.into_iter()
                .filter(|(n, _)| prefix.as_ref().is_none_or(|p| n.starts_with(p.as_str())))
                .map(|(n, id)| st([("package_id", int(*id)), ("package_name", s(n))])),
        ));
    }
    let with_blocked = a.get("with_blocked").is_none_or(super::wire::truthy);
    let tags_to_read = match &tag {
        Some(t) => vec![t.clone()],
        None => tags::all_tags(ctx).await?,
    };
    let inherited = tag.is_some() && a.flag("inherited");
    let mut entries: Vec<PackageOut> = Vec::new();
    for t in &tags_to_read {
        let mut own = ctx.hub.db.packages(&t.name, inherited, event).await.map_err(fault)?;
        own.retain(|p| inherited || p.tag == t.name);
        entries.extend(own);
    }
    entries.retain(|p| {
        pkg.as_ref().is_none_or(|(_, n)| p.package == *n)
            && owner.as_ref().is_none_or(|o| p.owner == *o)
            && prefix.as_ref().is_none_or(|x| p.package.starts_with(x.as_str()))
            && (with_blocked || !p.blocked)
    });
    entries.sort_by(|x, y| (&x.package, &x.tag).cmp(&(&y.package, &y.tag)));
    let names: Vec<String> = entries.iter().map(|p| p.tag.clone()).collect();
    let tag_ids = ctx.hub.db.koji_tag_ids(&names, event).await.map_err(fault)?;
    let users = user_ids(ctx).await?;
    Ok(list(entries.iter().map(|p| {
        st([
            ("package_id", opt_int(ids.get(&p.package).copied())),
            ("package_name", s(&p.package)),
            ("tag_id", opt_int(tag_ids.get(&p.tag).copied())),
            ("tag_name", s(&p.tag)),
            ("owner_id", opt_int(users.get(&p.owner).copied())),
            ("owner_name", s(&p.owner)),
            ("blocked", b(p.blocked)),
            ("extra_arches", Value::Nil),
        ])
    })))
}
