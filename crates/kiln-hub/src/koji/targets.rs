//! Build targets: `getBuildTarget`, `getBuildTargets`,
//! `createBuildTarget`, `editBuildTarget`, `deleteBuildTarget`. A target's
//! macros (kiln's addition) are kept by an edit through this protocol.

use super::args::{Args, Ref};
use super::values::{int, list, s, st};
use super::wire::{Call, Fault, Value};
use super::{Ctx, Out, fault, tags};
use crate::db::KojiTarget;
use crate::model::Target;

pub async fn method(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    match call.method.as_str() {
        "getBuildTargets" => {
            let a = Args::bind(call, &["info", "event", "buildTagID", "destTagID", "queryOpts"])?;
            let event = a.int("event")?;
            let mut all = ctx.hub.db.koji_targets(event).await.map_err(fault)?;
            if let Some(v) = a.get("info") {
                match Ref::from_value(v, "target")? {
                    Ref::Id(id) => all.retain(|t| t.id == id),
                    Ref::Name(n) => all.retain(|t| t.name == n),
                }
            }
            if let Some(v) = a.get("buildTagID") {
                let id = tag_id(ctx, v, event).await?;
                all.retain(|t| Some(t.build_tag) == id);
            }
            if let Some(v) = a.get("destTagID") {
                let id = tag_id(ctx, v, event).await?;
                all.retain(|t| Some(t.dest_tag) == id);
            }
            Ok(list(all.iter().map(target_map)))
        }
        "getBuildTarget" => {
            let a = Args::bind(call, &["info", "event", "strict"])?;
            let found = find(ctx, a.need("info")?, a.int("event")?).await?;
            match found {
                Some(t) => Ok(target_map(&t)),
                None if a.flag("strict") => Err(no_such(a.need("info")?)),
                None => Ok(Value::Nil),
            }
        }
        "createBuildTarget" => {
            let a = Args::bind(call, &["name", "build_tag", "dest_tag"])?;
            ctx.perm_needed("target")?;
            let name = a.need_str("name")?;
            tags::check_name(&name)?;
            if find(ctx, &Value::String(name.clone()), None).await?.is_some() {
                return Err(Fault::generic(format!(
                    "A build target with the name '{name}' already exists"
                )));
            }
            let build_tag = tags::need(ctx, a.need("build_tag")?, None).await?.name;
            let dest_tag = tags::need(ctx, a.need("dest_tag")?, None).await?.name;
            let t = Target {
                name,
                build_tag,
                dest_tag,
                macros: Default::default(),
            };
            ctx.hub.db.put_target(&ctx.who, &t, true, None).await.map_err(fault)?;
            Ok(Value::Nil)
        }
        "editBuildTarget" => {
            let a = Args::bind(call, &["buildTargetInfo", "name", "build_tag", "dest_tag"])?;
            ctx.perm_needed("target")?;
            let info = a.need("buildTargetInfo")?;
            let old = find(ctx, info, None).await?.ok_or_else(|| no_such(info))?;
            let name = a.need_str("name")?;
            tags::check_name(&name)?;
            if name != old.name && find(ctx, &Value::String(name.clone()), None).await?.is_some() {
                return Err(Fault::generic(format!("Target name already in use: {name}")));
            }
            let build_tag = tags::need(ctx, a.need("build_tag")?, None).await?.name;
            let dest_tag = tags::need(ctx, a.need("dest_tag")?, None).await?.name;
            let macros = ctx.hub.db.target(&old.name, None).await.map_err(fault)?.macros;
            let t = Target {
                name,
                build_tag,
                dest_tag,
                macros,
            };
            ctx.hub
                .db
                .put_target(&ctx.who, &t, false, Some(&old.name))
                .await
                .map_err(fault)?;
            Ok(Value::Nil)
        }
        "deleteBuildTarget" => {
            let a = Args::bind(call, &["buildTargetInfo"])?;
            ctx.perm_needed("target")?;
            let info = a.need("buildTargetInfo")?;
            let t = find(ctx, info, None).await?.ok_or_else(|| no_such(info))?;
            ctx.hub.db.delete_target(&ctx.who, &t.name).await.map_err(fault)?;
            Ok(Value::Nil)
        }
        m => Err(Fault::generic(format!("Invalid method: {m}"))),
    }
}

fn no_such(v: &Value) -> Fault {
    let shown = Ref::from_value(v, "target").map_or_else(|_| String::from("?"), |r| r.shown());
    Fault::generic(format!("No such build target: {shown}"))
}

async fn tag_id(ctx: &Ctx<'_>, v: &Value, event: Option<i64>) -> Result<Option<i64>, Fault> {
    Ok(tags::find(ctx, v, event, false).await?.map(|t| t.id))
}

async fn find(ctx: &Ctx<'_>, v: &Value, event: Option<i64>) -> Result<Option<KojiTarget>, Fault> {
    let r = Ref::from_value(v, "target")?;
    let all = ctx.hub.db.koji_targets(event).await.map_err(fault)?;
    Ok(all.into_iter().find(|t| match &r {
        Ref::Id(id) => t.id == *id,
        Ref::Name(n) => t.name == *n,
    }))
}

fn target_map(t: &KojiTarget) -> Value {
    st([
        ("id", int(t.id)),
        ("name", s(&t.name)),
        ("build_tag", int(t.build_tag)),
        ("build_tag_name", s(&t.build_tag_name)),
        ("dest_tag", int(t.dest_tag)),
        ("dest_tag_name", s(&t.dest_tag_name)),
    ])
}
