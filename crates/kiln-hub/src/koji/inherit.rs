//! Inheritance: `getInheritanceData`, `setInheritanceData` (the whole
//! list in one transaction, `delete link` entries, priorities as numbers
//! or their text), `getFullInheritance` (forward and `reverse`).

use kiln_core::koji::Link;

use super::args::{Args, int as arg_int, text};
use super::values::{b, int, list, opt_int, s, st};
use super::wire::{Call, Fault, Value, truthy};
use super::{Ctx, Out, fault, tags};
use crate::db::LinkChange;
use crate::model::LinkOut;

pub async fn method(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    match call.method.as_str() {
        "getInheritanceData" => {
            let a = Args::bind(call, &["tag", "event"])?;
            let event = a.int("event")?;
            let t = tags::need(ctx, a.need("tag")?, event).await?;
            let links = ctx.hub.db.links(&t.name, false, event).await.map_err(fault)?;
            link_maps(ctx, &links, event).await
        }
        "getFullInheritance" => full(ctx, call).await,
        "setInheritanceData" => set(ctx, call).await,
        m => Err(Fault::generic(format!("Invalid method: {m}"))),
    }
}

/// Koji's link maps (`readInheritanceData`), parents by priority.
async fn link_maps(ctx: &Ctx<'_>, links: &[LinkOut], event: Option<i64>) -> Out {
    let names: Vec<String> = links.iter().flat_map(|l| [l.child.clone(), l.parent.clone()]).collect();
    let ids = ctx.hub.db.koji_tag_ids(&names, event).await.map_err(fault)?;
    let mut sorted: Vec<&LinkOut> = links.iter().collect();
    sorted.sort_by_key(|l| l.priority);
    Ok(list(sorted.into_iter().map(|l| {
        let child = opt_int(ids.get(&l.child).copied());
        st([
            ("child_id", child),
            ("parent_id", opt_int(ids.get(&l.parent).copied())),
            ("name", s(&l.parent)),
            ("priority", int(l.priority)),
            ("maxdepth", opt_int(l.maxdepth)),
            ("intransitive", b(l.intransitive)),
            ("noconfig", b(l.noconfig)),
            ("pkg_filter", s(&l.pkg_filter)),
        ])
    })))
}

/// `getFullInheritance(tag, event=None, reverse=False)`.
async fn full(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["tag", "event", "reverse"])?;
    let event = a.int("event")?;
    let reverse = a.flag("reverse");
    let t = tags::need(ctx, a.need("tag")?, event).await?;
    let walk = ctx
        .hub
        .db
        .full_inheritance(&t.name, reverse, event)
        .await
        .map_err(fault)?;
    let names: Vec<String> = walk
        .iter()
        .flat_map(|w| [w.link.child.clone(), w.link.parent.clone()])
        .collect();
    let ids = ctx.hub.db.koji_tag_ids(&names, event).await.map_err(fault)?;
    let id = |n: &str| opt_int(ids.get(n).copied());
    Ok(list(walk.iter().map(|w| {
        st([
            // Forward entries name the link's child as `child_id`; reverse
            // ones (Koji's descendants rows) as `tag_id`.
            (if reverse { "tag_id" } else { "child_id" }, id(&w.link.child)),
            ("parent_id", id(&w.link.parent)),
            ("name", s(&w.tag)),
            ("priority", int(w.link.priority)),
            ("maxdepth", opt_int(w.link.maxdepth)),
            ("intransitive", b(w.link.intransitive)),
            ("noconfig", b(w.link.noconfig)),
            ("pkg_filter", s(&w.link.pkg_filter)),
            ("currdepth", int(w.currdepth)),
            ("nextdepth", opt_int(w.nextdepth)),
            ("filter", list(w.filter.iter().map(s))),
        ])
    })))
}

/// `setInheritanceData(tag, data, clear=False)`.
async fn set(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["tag", "data", "clear"])?;
    ctx.perm_needed("tag")?;
    let t = tags::need(ctx, a.need("tag")?, None).await?;
    let mut changes = Vec::new();
    for entry in a.list("data") {
        let Value::Struct(m) = entry else {
            return Err(Fault::parameter("setInheritanceData takes a list of link maps"));
        };
        let field = |k: &str| m.get(k).filter(|v| !matches!(v, Value::Nil));
        let parent = match field("parent_id") {
            Some(v) => arg_int(v, "parent_id")?,
            None => return Err(Fault::generic("No value for parent_id")),
        };
        let delete = field("delete link").is_some_and(truthy);
        let need = |k: &str| -> Result<&Value, Fault> {
            match field(k) {
                Some(v) => Ok(v),
                None if delete => Ok(&Value::Nil),
                None if k == "maxdepth" => Ok(&Value::Nil),
                None => Err(Fault::generic(format!("No value for {k}"))),
            }
        };
        let priority = match need("priority")? {
            Value::Nil => 0,
            v => arg_int(v, "priority").map_err(|_| {
                Fault::generic(format!(
                    "Invalid priority: {}",
                    super::values::printable(&text(v, "priority").unwrap_or_default())
                ))
            })?,
        };
        let maxdepth = match need("maxdepth")? {
            Value::Nil => None,
            Value::String(x) if x.trim().is_empty() => None,
            v => Some(arg_int(v, "maxdepth")?),
        };
        changes.push(LinkChange {
            link: Link {
                child: t.id,
                parent,
                priority,
                maxdepth,
                intransitive: truthy(need("intransitive")?),
                noconfig: truthy(need("noconfig")?),
                pkg_filter: match need("pkg_filter")? {
                    Value::Nil => String::new(),
                    v => text(v, "pkg_filter")?,
                },
            },
            delete,
        });
    }
    ctx.hub
        .db
        .set_inheritance(&ctx.who, &t.name, &changes, a.flag("clear"))
        .await
        .map_err(fault)?;
    Ok(Value::Nil)
}
