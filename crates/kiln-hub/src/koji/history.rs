//! Events and history: `getEvent`, `getLastEvent`, `queryHistory`.
//!
//! `queryHistory` answers Koji's per-table rows: each version with the
//! events that created and revoked it, who made them and when, and the
//! names Koji joins in. A filter that does not apply to a table leaves the
//! table out, as Koji does; the tables Koji has and kiln does not (groups,
//! external repositories, hosts, content generators) answer no rows.

use std::collections::{BTreeMap, HashMap};

use super::args::{Args, Ref};
use super::builds::QueryOpts;
use super::values::{b, int, json, opt_int, s, st, ts};
use super::wire::{Call, Fault, Value, truthy};
use super::{Ctx, Out, fault};
use crate::db::{HISTORY_TABLES, HistoryFilter, HistoryRow};

/// Every table Koji keeps history in.
const KOJI_TABLES: &[&str] = &[
    "build_target_config",
    "cg_users",
    "external_repo_config",
    "external_repo_data",
    "group_config",
    "group_package_listing",
    "group_req_listing",
    "host_channels",
    "host_config",
    "tag_config",
    "tag_external_repos",
    "tag_extra",
    "tag_inheritance",
    "tag_listing",
    "tag_package_owners",
    "tag_packages",
    "user_groups",
    "user_perms",
];

/// The filters of `queryHistory`, and the tables each applies to (`None`:
/// every table).
const FILTERS: &[(&str, Option<&[&str]>)] = &[
    (
        "tag",
        Some(&[
            "build_target_config",
            "group_config",
            "group_package_listing",
            "group_req_listing",
            "tag_config",
            "tag_external_repos",
            "tag_extra",
            "tag_inheritance",
            "tag_listing",
            "tag_package_owners",
            "tag_packages",
        ]),
    ),
    ("build", Some(&["tag_listing"])),
    (
        "package",
        Some(&[
            "group_package_listing",
            "tag_listing",
            "tag_package_owners",
            "tag_packages",
        ]),
    ),
    (
        "user",
        Some(&["cg_users", "tag_package_owners", "user_groups", "user_perms"]),
    ),
    ("permission", Some(&["tag_config", "user_perms"])),
    ("cg", Some(&["cg_users"])),
    (
        "external_repo",
        Some(&["external_repo_config", "external_repo_data", "tag_external_repos"]),
    ),
    ("build_target", Some(&["build_target_config"])),
    (
        "group",
        Some(&["group_config", "group_package_listing", "group_req_listing"]),
    ),
    ("host", Some(&["host_channels", "host_config"])),
    ("channel", Some(&["host_channels"])),
    ("xkey", Some(&["tag_extra"])),
    ("active", None),
    ("editor", None),
    ("before", None),
    ("after", None),
    ("beforeEvent", None),
    ("afterEvent", None),
    ("queryOpts", None),
];

/// `getEvent(id, strict=True)` and `getLastEvent(before=None, strict=True)`.
pub async fn event(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let found = if call.method == "getEvent" {
        let a = Args::bind(call, &["id", "strict"])?;
        let id = a.need_int("id")?;
        let strict = a.get("strict").is_none_or(truthy);
        let at = ctx.hub.db.koji_event(id).await.map_err(fault)?;
        match at {
            Some(t) => Some((id, t)),
            None if strict => return Err(Fault::generic("query returned no rows")),
            None => None,
        }
    } else {
        let a = Args::bind(call, &["before", "strict"])?;
        let strict = a.get("strict").is_none_or(truthy);
        // Events strictly before `before` (seconds, maybe fractional).
        let bound = match a.get("before") {
            None => None,
            Some(Value::Double(d)) => Some(d.ceil() as i64 - 1),
            Some(v @ (Value::Integer(_) | Value::Long(_))) => Some(super::args::int(v, "before")? - 1),
            Some(v) => {
                return Err(Fault::generic(format!(
                    "Invalid type for before: <class '{}'>",
                    super::values::kind(v)
                )));
            }
        };
        let last = ctx.hub.db.koji_last_event(bound).await.map_err(fault)?;
        if last.is_none() && strict {
            return Err(Fault::generic("query returned no rows"));
        }
        last
    };
    Ok(found.map_or(Value::Nil, |(id, t)| st([("id", int(id)), ("ts", ts(t))])))
}

/// `queryHistory(tables=None, **kwargs)`.
pub async fn query(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    // Koji ignores keyword arguments it does not know (the client sends
    // `pkg` and `utc`, which it does not read).
    let known = Call {
        method: call.method.clone(),
        args: call.args.clone(),
        kwargs: call
            .kwargs
            .iter()
            .filter(|(k, _)| FILTERS.iter().any(|(f, _)| f == k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let mut names: Vec<&'static str> = vec!["tables"];
    names.extend(FILTERS.iter().map(|(f, _)| *f));
    let a = Args::bind(&known, &names)?;
    let tables: Vec<String> = match a.get("tables") {
        None => KOJI_TABLES.iter().map(|t| t.to_string()).collect(),
        Some(_) => {
            let asked: Vec<String> = a
                .list("tables")
                .iter()
                .map(|v| super::args::text(v, "tables"))
                .collect::<Result<_, _>>()?;
            if let Some(bad) = asked.iter().find(|t| !KOJI_TABLES.contains(&t.as_str())) {
                return Err(Fault::generic(format!(
                    "No such history table: {}",
                    super::values::printable(bad)
                )));
            }
            asked
        }
    };
    let given: Vec<&str> = known.kwargs.keys().map(String::as_str).collect();
    let f = resolve(ctx, &a).await?;
    let editor = match a.get("editor") {
        Some(v) => Some(user_id(ctx, v).await?),
        None => None,
    };
    let time = |k: &str| -> Result<Option<i64>, Fault> {
        a.get(k)
            .map(|v| match v {
                Value::String(t) => super::builds::parse_time(t)
                    .ok_or_else(|| Fault::generic(format!("Invalid time: {}", super::values::printable(t)))),
                Value::Double(d) => Ok(d.floor() as i64),
                v => super::args::int(v, k),
            })
            .transpose()
    };
    let bounds = Bounds {
        before: time("before")?,
        after: time("after")?,
        before_event: a.int("beforeEvent")?,
        after_event: a.int("afterEvent")?,
        active: a.get("active").map(truthy),
        editor,
    };
    let q = QueryOpts::read(&a.map("queryOpts")?)?;
    // The tables every given filter applies to (Koji leaves the others out).
    let shown: Vec<String> = tables
        .into_iter()
        .filter(|table| {
            given.iter().all(|arg| {
                FILTERS
                    .iter()
                    .find(|(f, _)| f == arg)
                    .is_none_or(|(_, only)| only.is_none_or(|t| t.contains(&table.as_str())))
            })
        })
        .collect();
    let kept: Vec<String> = shown
        .iter()
        .filter(|t| HISTORY_TABLES.contains(&t.as_str()))
        .cloned()
        .collect();
    let mut by_table: HashMap<&str, Vec<HistoryRow>> = HashMap::new();
    for r in ctx.hub.db.koji_history(&kept, &f).await.map_err(fault)? {
        by_table.entry(r.table).or_default().push(r);
    }
    let mut out = BTreeMap::new();
    for table in shown {
        let rows = by_table.remove(table.as_str()).unwrap_or_default();
        out.insert(table, q.apply(entries(ctx, rows, &bounds).await?));
    }
    Ok(Value::Struct(out))
}

/// Resolves the filters naming things to their ids (strictly, as Koji).
async fn resolve(ctx: &Ctx<'_>, a: &Args) -> Result<HistoryFilter, Fault> {
    let mut f = HistoryFilter::default();
    if let Some(v) = a.get("tag") {
        f.tag = Some(super::tags::need(ctx, v, None).await?.id);
    }
    if let Some(v) = a.get("build") {
        f.build = Some(super::builds::need(ctx, v).await?.id);
    }
    if let Some(v) = a.get("package") {
        f.package = Some(super::packages::need(ctx, v).await?.1);
    }
    if let Some(v) = a.get("user") {
        f.user = Some(user_id(ctx, v).await?);
    }
    if let Some(v) = a.get("permission") {
        f.permission = Some(super::tags::perm_name(ctx, v).await?);
    }
    if let Some(v) = a.get("build_target") {
        let targets = ctx.hub.db.koji_targets(None).await.map_err(fault)?;
        let r = Ref::from_value(v, "build_target")?;
        let found = targets.iter().find(|t| match &r {
            Ref::Id(i) => t.id == *i,
            Ref::Name(n) => t.name == *n,
        });
        let t = found.ok_or_else(|| Fault::generic(format!("No such build target: {}", r.shown())))?;
        f.target = Some(t.id);
    }
    f.xkey = a.str("xkey")?;
    Ok(f)
}

async fn user_id(ctx: &Ctx<'_>, v: &Value) -> Result<i64, Fault> {
    Ok(super::packages::need_user(ctx, v).await?.id)
}

/// The limits on versions by their events: a version matches when its
/// creation or its revocation does; the `_created_*`/`_revoked_*` members
/// tell which (the client shows only the side that matched).
struct Bounds {
    before: Option<i64>,
    after: Option<i64>,
    before_event: Option<i64>,
    after_event: Option<i64>,
    active: Option<bool>,
    editor: Option<i64>,
}

/// A side of a version: its event, time and user.
#[derive(Clone, Copy)]
struct Side {
    event: i64,
    time: i64,
    user: Option<i64>,
}

impl Bounds {
    /// The tests this version is filtered by: (member, created, revoked).
    fn tests(&self, c: Side, r: Option<Side>) -> Vec<(&'static str, bool, Option<bool>)> {
        let mut out = Vec::new();
        let mut test = |name, pass: &dyn Fn(Side) -> bool| out.push((name, pass(c), r.map(pass)));
        if let Some(u) = self.editor {
            test("by", &|x| x.user == Some(u));
        }
        if let Some(t) = self.after {
            test("after", &|x| x.time > t);
        }
        if let Some(t) = self.before {
            test("before", &|x| x.time < t);
        }
        if let Some(e) = self.after_event {
            test("after_event", &|x| x.event > e);
        }
        if let Some(e) = self.before_event {
            test("before_event", &|x| x.event < e);
        }
        out
    }
}

/// History rows as Koji's maps, filtered by `bounds`.
async fn entries(ctx: &Ctx<'_>, rows: Vec<HistoryRow>, bounds: &Bounds) -> Result<Vec<Value>, Fault> {
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| std::iter::once(r.create_event).chain(r.revoke_event))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let events: HashMap<i64, (i64, Option<i64>, Option<String>)> = ctx.hub.db.koji_events(&ids).await.map_err(fault)?;
    let side = |e: i64| {
        let (time, user, _) = events.get(&e).cloned().unwrap_or((0, None, None));
        Side { event: e, time, user }
    };
    let name = |e: Option<i64>| e.and_then(|e| events.get(&e)).and_then(|x| x.2.clone());
    let mut rows = rows;
    rows.sort_by_key(|r| (r.create_event, r.revoke_event));
    let mut out = Vec::new();
    for r in rows {
        if bounds.active.is_some_and(|want| want != r.revoke_event.is_none()) {
            continue;
        }
        let c = side(r.create_event);
        let rv = r.revoke_event.map(side);
        let tests = bounds.tests(c, rv);
        // Koji's clauses: each test holds for the creation or the revocation.
        if !tests.iter().all(|(_, cr, rk)| *cr || rk.unwrap_or(false)) {
            continue;
        }
        let mut m: BTreeMap<String, Value> = r
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match (k.as_str(), v) {
                    ("build.state", serde_json::Value::String(state)) => {
                        Value::Integer(super::builds::state_number(state))
                    }
                    _ => json(v),
                };
                (k.clone(), v)
            })
            .collect();
        let common = [
            ("active", if r.revoke_event.is_none() { b(true) } else { Value::Nil }),
            ("create_event", int(r.create_event)),
            ("revoke_event", opt_int(r.revoke_event)),
            ("creator_id", opt_int(c.user)),
            ("revoker_id", opt_int(rv.and_then(|x| x.user))),
            ("creator_name", name(Some(r.create_event)).map_or(Value::Nil, s)),
            ("revoker_name", name(r.revoke_event).map_or(Value::Nil, s)),
            ("create_ts", ts(c.time)),
            ("revoke_ts", rv.map_or(Value::Nil, |x| ts(x.time))),
        ];
        m.extend(common.into_iter().map(|(k, v)| (k.to_string(), v)));
        for (n, cr, rk) in tests {
            m.insert(format!("_created_{n}"), b(cr));
            m.insert(format!("_revoked_{n}"), rk.map_or(Value::Nil, b));
        }
        out.push(Value::Struct(m));
    }
    Ok(out)
}
