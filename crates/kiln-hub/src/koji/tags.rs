//! Tags: `getTag`, `getTagID`, `listTags`, `createTag`, `editTag2`,
//! `deleteTag`, `getBuildConfig`.

use std::collections::{BTreeMap, HashMap};

use super::args::{Args, Ref};
use super::values::{b, int, json, list, opt_int, opt_s, s, st, to_json};
use super::wire::{Call, Fault, Value, code};
use super::{Ctx, Out, fault, glob};
use crate::model::{NewTag, TagEdit, TagInfo};

pub async fn method(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    match call.method.as_str() {
        "getTag" => {
            let a = Args::bind(call, &["tagInfo", "strict", "event", "blocked"])?;
            let event = a.int("event")?;
            let Some(t) = find(ctx, a.need("tagInfo")?, event, a.flag("strict")).await? else {
                return Ok(Value::Nil);
            };
            let perms = perm_ids(ctx).await?;
            Ok(tag_map(&t, &perms, true, a.flag("blocked")))
        }
        "getTagID" => {
            let a = Args::bind(call, &["info", "strict", "create"])?;
            Ok(find(ctx, a.need("info")?, None, a.flag("strict"))
                .await?
                .map_or(Value::Nil, |t| int(t.id)))
        }
        "listTags" => list_tags(ctx, call).await,
        "createTag" => create(ctx, call).await,
        "editTag2" => edit(ctx, call).await,
        "deleteTag" => {
            let a = Args::bind(call, &["tagInfo"])?;
            ctx.perm_needed("tag")?;
            let t = need(ctx, a.need("tagInfo")?, None).await?;
            ctx.hub.db.delete_tag(&ctx.who, &t.name).await.map_err(fault)?;
            Ok(Value::Nil)
        }
        "getBuildConfig" => build_config(ctx, call).await,
        m => Err(Fault::generic(format!("Invalid method: {m}"))),
    }
}

/// The tag `v` names (an id, a name, or a map with either) as of
/// `event`; a missing tag is `None`, or with `strict` Koji's fault.
pub async fn find(ctx: &Ctx<'_>, v: &Value, event: Option<i64>, strict: bool) -> Result<Option<TagInfo>, Fault> {
    let r = Ref::from_value(v, "tag")?;
    let name = match &r {
        Ref::Name(n) => Some(n.clone()),
        Ref::Id(id) => ctx.hub.db.koji_tag_name(*id, event).await.map_err(fault)?,
    };
    let found = match name {
        Some(n) => match ctx.hub.db.tag_info(&n, event).await {
            Ok(t) => Some(t),
            Err(e) if e.status == 404 => None,
            Err(e) => return Err(fault(e)),
        },
        None => None,
    };
    if found.is_none() && strict {
        return Err(Fault::generic(format!("No such tagInfo: {}", r.shown())));
    }
    Ok(found)
}

/// The tag `v` names, which must exist.
pub async fn need(ctx: &Ctx<'_>, v: &Value, event: Option<i64>) -> Result<TagInfo, Fault> {
    find(ctx, v, event, true)
        .await?
        .ok_or_else(|| Fault::generic("No such tag"))
}

/// Permission names to their ids.
pub async fn perm_ids(ctx: &Ctx<'_>) -> Result<HashMap<String, i64>, Fault> {
    Ok(ctx
        .hub
        .db
        .koji_permissions()
        .await
        .map_err(fault)?
        .into_iter()
        .map(|(id, name, _)| (name, id))
        .collect())
}

/// A permission given by id or name, as its name.
pub async fn perm_name(ctx: &Ctx<'_>, v: &Value) -> Result<String, Fault> {
    let all = ctx.hub.db.koji_permissions().await.map_err(fault)?;
    let found = match Ref::from_value(v, "permission")? {
        Ref::Id(id) => all.into_iter().find(|p| p.0 == id),
        Ref::Name(n) => all.into_iter().find(|p| p.1 == n),
    };
    found.map(|p| p.1).ok_or_else(|| {
        Fault::generic(format!(
            "No such permission: {}",
            super::values::printable(&format!("{v:?}"))
        ))
    })
}

/// Koji's tag map. `extra` only where Koji's call has it; with `blocked`,
/// each extra value is `[blocked, value]` and blocked keys are kept.
pub fn tag_map(t: &TagInfo, perms: &HashMap<String, i64>, extra: bool, blocked: bool) -> Value {
    let mut v = st([
        ("id", int(t.id)),
        ("name", s(&t.name)),
        ("perm_id", opt_int(t.perm.as_ref().and_then(|p| perms.get(p).copied()))),
        ("perm", opt_s(t.perm.clone())),
        ("arches", opt_s(t.arches.clone())),
        ("locked", b(t.locked)),
        ("maven_support", b(false)),
        ("maven_include_all", b(false)),
    ]);
    if extra {
        let x: BTreeMap<String, Value> = t
            .extra
            .iter()
            .filter(|(_, e)| blocked || !e.blocked)
            .map(|(k, e)| {
                let value = e.value.as_ref().map_or(Value::Nil, json);
                let shown = if blocked { list([b(e.blocked), value]) } else { value };
                (k.clone(), shown)
            })
            .collect();
        super::values::extend(&mut v, [("extra".to_string(), Value::Struct(x))]);
    }
    v
}

/// `listTags(build=None, package=None, perms=True, queryOpts=None, pattern=None)`.
async fn list_tags(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["build", "package", "perms", "queryOpts", "pattern"])?;
    let pattern = a.str("pattern")?;
    let mut tags = all_tags(ctx).await?;
    if let Some(bv) = a.get("build") {
        let build = super::builds::need(ctx, bv).await?;
        let ids = ctx.hub.db.koji_build_tag_ids(build.id).await.map_err(fault)?;
        tags.retain(|t| ids.contains(&t.id));
    }
    let mut package_rows = HashMap::new();
    if let Some(pv) = a.get("package") {
        let (_, pkg) = super::packages::need(ctx, pv).await?;
        for t in &tags {
            let entries = ctx.hub.db.packages(&t.name, false, None).await.map_err(fault)?;
            if let Some(p) = entries.into_iter().find(|p| p.package == pkg) {
                package_rows.insert(t.id, p);
            }
        }
        tags.retain(|t| package_rows.contains_key(&t.id));
    }
    if let Some(p) = &pattern {
        tags.retain(|t| glob::matches(p, &t.name));
    }
    let perms = perm_ids(ctx).await?;
    let users = super::packages::user_ids(ctx).await?;
    Ok(list(tags.iter().map(|t| {
        let mut v = tag_map(t, &perms, false, false);
        if let Some(p) = package_rows.get(&t.id) {
            super::values::extend(
                &mut v,
                [
                    ("owner_id".to_string(), opt_int(users.get(&p.owner).copied())),
                    ("owner_name".to_string(), s(&p.owner)),
                    ("blocked".to_string(), b(p.blocked)),
                    ("extra_arches".to_string(), Value::Nil),
                ],
            );
        }
        v
    })))
}

/// Every tag now, with extra.
pub async fn all_tags(ctx: &Ctx<'_>) -> Result<Vec<TagInfo>, Fault> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = ctx.hub.db.list_tags(offset, 1000, None).await.map_err(fault)?;
        let n = page.items.len() as i64;
        out.extend(page.items);
        offset += n;
        if n == 0 || offset >= page.total {
            return Ok(out);
        }
    }
}

/// `createTag(name, parent=None, arches=None, perm=None, locked=False,
/// maven_support=False, maven_include_all=False, extra=None)`: the new id.
async fn create(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(
        call,
        &[
            "name",
            "parent",
            "arches",
            "perm",
            "locked",
            "maven_support",
            "maven_include_all",
            "extra",
        ],
    )?;
    ctx.perm_needed("tag")?;
    let name = a.need_str("name")?;
    if a.flag("maven_support") || a.flag("maven_include_all") {
        return Err(Fault::generic("Maven support not enabled"));
    }
    check_name(&name)?;
    if find(ctx, &Value::String(name.clone()), None, false).await?.is_some() {
        return Err(Fault::generic(format!("A tag with the name {name} already exists")));
    }
    let parent = match a.get("parent") {
        Some(p) => Some(need(ctx, p, None).await?.name),
        None => None,
    };
    let perm = match a.get("perm") {
        Some(p) => Some(perm_name(ctx, p).await?),
        None => None,
    };
    let t = NewTag {
        name,
        arches: a.str("arches")?.map(|x| normalize_arches(&x)),
        perm,
        locked: a.flag("locked"),
        extra: a.map("extra")?.iter().map(|(k, v)| (k.clone(), to_json(v))).collect(),
        parent,
    };
    let made = ctx.hub.db.create_tag(&ctx.who, &t).await.map_err(fault)?;
    Ok(int(made.id))
}

/// Koji's name check (`verify_name_internal`): a name Koji would refuse
/// is a `NameValidationError`.
pub fn check_name(name: &str) -> Result<(), Fault> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '~'));
    if !ok {
        return Err(Fault::new(
            code::NAME,
            format!("Name {} is not allowed", super::values::printable(name)),
        ));
    }
    Ok(())
}

/// Arches as Koji keeps them: separated by single spaces.
fn normalize_arches(x: &str) -> String {
    x.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `editTag2(tagInfo, **kwargs)`.
async fn edit(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(
        call,
        &[
            "tagInfo",
            "name",
            "arches",
            "locked",
            "perm",
            "perm_id",
            "maven_support",
            "maven_include_all",
            "extra",
            "remove_extra",
            "block_extra",
        ],
    )?;
    ctx.perm_needed("tag")?;
    let t = need(ctx, a.need("tagInfo")?, None).await?;
    if a.flag("maven_support") || a.flag("maven_include_all") {
        return Err(Fault::generic("Maven support not enabled"));
    }
    let rename = a.str("name")?;
    if let Some(n) = &rename {
        check_name(n)?;
        if *n != t.name && find(ctx, &Value::String(n.clone()), None, false).await?.is_some() {
            return Err(Fault::generic(format!("Name {n} already taken by tag")));
        }
    }
    // `perm` given as nil clears the permission; absent leaves it.
    let perm = match call_has(call, &a, "perm", 4) {
        false => match a.get("perm_id") {
            Some(p) => Some(Some(perm_name(ctx, p).await?)),
            None => None,
        },
        true => match a.get("perm") {
            None => Some(None),
            Some(p) => Some(Some(perm_name(ctx, p).await?)),
        },
    };
    let texts = |name: &str| -> Result<Vec<String>, Fault> {
        a.list(name).iter().map(|v| super::args::text(v, name)).collect()
    };
    let e = TagEdit {
        rename: rename.filter(|n| *n != t.name),
        arches: match call_has(call, &a, "arches", 2) {
            true => Some(a.str("arches")?.map(|x| normalize_arches(&x)).filter(|x| !x.is_empty())),
            false => None,
        },
        perm,
        locked: a.get("locked").map(super::wire::truthy),
        extra: a.map("extra")?.iter().map(|(k, v)| (k.clone(), to_json(v))).collect(),
        remove_extra: texts("remove_extra")?,
        block_extra: texts("block_extra")?,
    };
    if let Some(k) = e.remove_extra.iter().find(|k| e.extra.contains_key(*k)) {
        return Err(Fault::generic(format!(
            "Can not both add/update and remove tag-extra: '{k}'"
        )));
    }
    ctx.hub.db.edit_tag(&ctx.who, &t.name, &e).await.map_err(fault)?;
    Ok(Value::Nil)
}

/// Whether the call gave parameter `name` (at position `pos` or by
/// keyword), nil included.
fn call_has(call: &Call, _a: &Args, name: &str, pos: usize) -> bool {
    call.kwargs.contains_key(name) || call.args.len() > pos
}

/// `getBuildConfig(tag, event=None)`: the tag with the arches and extra it
/// inherits, and `config_inheritance` naming where each came from.
async fn build_config(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["tag", "event"])?;
    let event = a.int("event")?;
    let t = need(ctx, a.need("tag")?, event).await?;
    let bc = ctx.hub.db.build_config(&t.name, event).await.map_err(fault)?;
    let mut from_names: Vec<String> = bc.extra.values().map(|v| v.from.clone()).collect();
    from_names.extend(bc.arches.iter().map(|v| v.from.clone()));
    let ids = ctx.hub.db.koji_tag_ids(&from_names, event).await.map_err(fault)?;
    let origin = |name: &str| st([("id", opt_int(ids.get(name).copied())), ("name", s(name))]);
    let perms = perm_ids(ctx).await?;
    let mut v = tag_map(&t, &perms, false, false);
    let arches = bc.arches.as_ref().and_then(|x| x.value.as_str().map(str::to_string));
    let mut inherited = BTreeMap::new();
    let mut extra = BTreeMap::new();
    for (k, x) in &bc.extra {
        extra.insert(k.clone(), json(&x.value));
        if x.from != t.name {
            inherited.insert(k.clone(), origin(&x.from));
        }
    }
    let mut config = BTreeMap::new();
    config.insert("extra".to_string(), Value::Struct(inherited));
    if let Some(x) = bc.arches.as_ref().filter(|x| x.from != t.name) {
        config.insert("arches".to_string(), origin(&x.from));
    }
    super::values::extend(
        &mut v,
        [
            ("arches".to_string(), opt_s(arches)),
            ("extra".to_string(), Value::Struct(extra)),
            ("config_inheritance".to_string(), Value::Struct(config)),
        ],
    );
    Ok(v)
}
