//! Tasks and hosts: `getTaskInfo`, `getTaskRequest`, `getTaskResult`,
//! `getTaskChildren`, `getTaskDescendents`, `listTasks`, `listTaskOutput`,
//! `getHost`, `listHosts`.
//!
//! kiln's tasks in Koji's shapes (docs/koji.md): states by Koji's numbers;
//! a `build` task's request as Koji's `[source, target, opts]` with the
//! profile repository as the source (`git+URL?IMAGE#REF`), so the client's
//! label reads `build (TARGET, /repo:IMAGE:REF)`; an `update` task's as a
//! keyword-style request; `tagBuild` as Koji's `[tag_id, build_id, force,
//! fromtag]`.

use std::collections::{BTreeMap, HashMap};

use super::args::{Args, Ref};
use super::builds::QueryOpts;
use super::values::{b, int, json, list, opt_int, opt_time, opt_ts, s, st, time, ts};
use super::wire::{Call, Fault, Value, truthy};
use super::{Ctx, Out, fault};
use crate::db::{KojiTask, TaskFilter};
use crate::model::{HostInfo, HostState, TaskRequest};

/// Koji's task states, in their numeric order.
pub const TASK_STATES: &[&str] = &["FREE", "OPEN", "CLOSED", "CANCELED", "ASSIGNED", "FAILED"];

pub async fn method(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    match call.method.as_str() {
        "getTaskInfo" => {
            let a = Args::bind(call, &["task_id", "request", "strict"])?;
            let (ids, single) = match a.need("task_id")? {
                Value::Array(items) => (
                    items
                        .iter()
                        .map(|v| super::args::int(v, "task_id"))
                        .collect::<Result<Vec<_>, _>>()?,
                    false,
                ),
                v => (vec![super::args::int(v, "task_id")?], true),
            };
            let found = by_ids(ctx, &ids).await?;
            let mut out = Vec::new();
            for id in &ids {
                match found.get(id) {
                    Some(t) => out.push(task_map(ctx, t, a.flag("request"), false).await?),
                    None if a.flag("strict") => return Err(Fault::generic(format!("No such task: {id}"))),
                    None => out.push(Value::Nil),
                }
            }
            Ok(if single { out.remove(0) } else { Value::Array(out) })
        }
        "getTaskRequest" => {
            let a = Args::bind(call, &["taskId"])?;
            let t = need(ctx, a.need_int("taskId")?).await?;
            request(ctx, &t.task.request).await
        }
        "getTaskResult" => {
            let a = Args::bind(call, &["taskId", "raise_fault"])?;
            let t = need(ctx, a.need_int("taskId")?).await?;
            let raise = a.get("raise_fault").is_none_or(truthy);
            result(&t, raise)
        }
        "getTaskChildren" => {
            let a = Args::bind(call, &["task_id", "request", "strict"])?;
            let id = a.need_int("task_id")?;
            if a.flag("strict") {
                need(ctx, id).await?;
            }
            children(ctx, id, a.flag("request")).await.map(Value::Array)
        }
        "getTaskDescendents" => {
            let a = Args::bind(call, &["task_id", "request"])?;
            let mut out = BTreeMap::new();
            let mut todo = vec![a.need_int("task_id")?];
            while let Some(id) = todo.pop() {
                let kids = children(ctx, id, a.flag("request")).await?;
                todo.extend(kids.iter().filter_map(|k| match super::values::member(k, "id") {
                    Some(v) => super::args::int(v, "id").ok(),
                    None => None,
                }));
                out.insert(id.to_string(), Value::Array(kids));
                if out.len() > 100_000 {
                    return Err(Fault::generic("too many descendant tasks"));
                }
            }
            Ok(Value::Struct(out))
        }
        "listTasks" => list_tasks(ctx, call).await,
        "listTaskOutput" => {
            let a = Args::bind(call, &["taskID", "stat", "all_volumes", "strict"])?;
            let id = a.need_int("taskID")?;
            if a.flag("strict") && by_ids(ctx, &[id]).await?.is_empty() {
                return Err(Fault::generic("Task doesn't exist"));
            }
            let files = ctx.hub.db.koji_task_files(id).await.map_err(fault)?;
            Ok(task_output(&files, a.flag("stat"), a.flag("all_volumes")))
        }
        "getHost" => {
            let a = Args::bind(call, &["hostInfo", "strict", "event"])?;
            let r = Ref::from_value(a.need("hostInfo")?, "host")?;
            let hosts = hosts(ctx).await?;
            let found = hosts.into_iter().find(|(id, h, _)| match &r {
                Ref::Id(i) => id == i,
                Ref::Name(n) => h.name == *n,
            });
            match found {
                Some((id, h, user)) => Ok(host_map(id, &h, user)),
                None if a.flag("strict") => Err(Fault::generic(format!("Invalid hostInfo: {}", r.shown()))),
                None => Ok(Value::Nil),
            }
        }
        "listHosts" => {
            let a = Args::bind(
                call,
                &["arches", "channelID", "ready", "enabled", "userID", "queryOpts"],
            )?;
            let arches: Vec<String> = a
                .list("arches")
                .iter()
                .map(|v| super::args::text(v, "arches"))
                .collect::<Result<_, _>>()?;
            let user = a.int("userID")?;
            let rows: Vec<Value> = hosts(ctx)
                .await?
                .into_iter()
                .filter(|(_, h, u)| {
                    (arches.is_empty() || arches.contains(&h.arch))
                        && a.get("ready")
                            .is_none_or(|r| truthy(r) == (h.state == HostState::Ready))
                        && a.get("enabled").is_none_or(|e| truthy(e) == h.enabled)
                        && user.is_none_or(|x| Some(x) == *u)
                })
                .map(|(id, h, u)| host_map(id, &h, u))
                .collect();
            if a.get("channelID").is_some() {
                return Ok(list([]));
            }
            Ok(QueryOpts::read(&a.map("queryOpts")?)?.apply(rows))
        }
        m => Err(Fault::generic(format!("Invalid method: {m}"))),
    }
}

async fn by_ids(ctx: &Ctx<'_>, ids: &[i64]) -> Result<HashMap<i64, KojiTask>, Fault> {
    let f = TaskFilter {
        ids: Some(ids.to_vec()),
        ..TaskFilter::default()
    };
    let rows = ctx.hub.db.koji_tasks(&f).await.map_err(fault)?;
    Ok(rows.into_iter().map(|t| (t.task.id, t)).collect())
}

async fn need(ctx: &Ctx<'_>, id: i64) -> Result<KojiTask, Fault> {
    by_ids(ctx, &[id])
        .await?
        .remove(&id)
        .ok_or_else(|| Fault::generic("No such task"))
}

async fn children(ctx: &Ctx<'_>, id: i64, with_request: bool) -> Result<Vec<Value>, Fault> {
    let f = TaskFilter {
        parent: Some(Some(id)),
        ..TaskFilter::default()
    };
    let mut out = Vec::new();
    for t in ctx.hub.db.koji_tasks(&f).await.map_err(fault)? {
        out.push(task_map(ctx, &t, with_request, false).await?);
    }
    Ok(out)
}

/// A kiln task state as Koji's number.
pub fn state_number(state: &str) -> i32 {
    TASK_STATES.iter().position(|s| *s == state).map_or(5, |i| i as i32)
}

/// Koji's task map (`Task.getInfo`); `listed` adds what `listTasks` adds.
async fn task_map(ctx: &Ctx<'_>, t: &KojiTask, with_request: bool, listed: bool) -> Out {
    let k = &t.task;
    let mut v = st([
        ("id", int(k.id)),
        ("state", Value::Integer(state_number(&k.state))),
        ("create_time", time(k.created)),
        ("create_ts", ts(k.created)),
        ("start_time", opt_time(k.started)),
        ("start_ts", opt_ts(k.started)),
        ("completion_time", opt_time(k.finished)),
        ("completion_ts", opt_ts(k.finished)),
        ("channel_id", Value::Nil),
        ("host_id", opt_int(t.host_id)),
        ("parent", opt_int(k.parent)),
        ("label", Value::Nil),
        ("waiting", Value::Nil),
        ("awaited", Value::Nil),
        ("owner", int(t.owner_id)),
        ("method", s(k.method())),
        ("arch", s(&k.arch)),
        ("priority", int(k.priority)),
        ("weight", Value::Double(1.0)),
    ]);
    let mut more = Vec::new();
    if with_request || listed {
        more.push(("request".to_string(), request(ctx, &k.request).await?));
    }
    if listed {
        let r = if matches!(k.state.as_str(), "CLOSED" | "FAILED") {
            result(t, false)?
        } else {
            Value::Nil
        };
        more.push(("result".to_string(), r));
        more.push(("owner_name".to_string(), s(&k.owner)));
        more.push(("owner_type".to_string(), Value::Integer(0)));
    }
    super::values::extend(&mut v, more);
    Ok(v)
}

/// A task's request in Koji's shape (see the module's comment).
async fn request(ctx: &Ctx<'_>, r: &TaskRequest) -> Out {
    Ok(match r {
        TaskRequest::Noop => list([]),
        TaskRequest::Build(bq) => {
            let (url, git_ref) = bq.repo.rsplit_once('@').unwrap_or((bq.repo.as_str(), "HEAD"));
            let mut opts = BTreeMap::new();
            if bq.scratch {
                opts.insert("scratch".to_string(), b(true));
            }
            if !bq.defines.is_empty() {
                let d = bq.defines.iter().map(|(k, v)| (k.clone(), s(v))).collect();
                opts.insert("defines".to_string(), Value::Struct(d));
            }
            if let Some(n) = &bq.nvr {
                opts.insert("nvr".to_string(), s(n));
            }
            list([
                s(format!("{url}?{}#{git_ref}", bq.image)),
                s(&bq.target),
                Value::Struct(opts),
            ])
        }
        TaskRequest::Update(u) => {
            let mut m = super::values::members(json(&serde_json::to_value(u).unwrap_or_default()));
            m.insert("__method__".to_string(), s("update"));
            list([Value::Struct(m)])
        }
        TaskRequest::TagBuild(tb) => {
            let tags = ctx
                .hub
                .db
                .koji_tag_ids(std::slice::from_ref(&tb.tag), None)
                .await
                .map_err(fault)?;
            let build = ctx.hub.db.koji_build_by_nvr(&tb.build).await.map_err(fault)?;
            list([
                opt_int(tags.get(&tb.tag).copied()),
                opt_int(build.map(|x| x.id)),
                b(tb.force),
                Value::Nil,
            ])
        }
    })
}

/// A finished task's result; a failed one's as its fault (raised, or as
/// the `faultCode`/`faultString` struct).
fn result(t: &KojiTask, raise: bool) -> Out {
    let k = &t.task;
    match k.state.as_str() {
        "CANCELED" => Err(Fault::generic(format!("Task {} is canceled", k.id))),
        "CLOSED" => Ok(k.result.as_ref().map_or(Value::Nil, json)),
        "FAILED" => {
            let message = k
                .result
                .as_ref()
                .and_then(|r| r.get("error"))
                .and_then(|e| e.as_str())
                .unwrap_or("the task failed")
                .to_string();
            let f = Fault::generic(message);
            if raise {
                Err(f)
            } else {
                Ok(st([
                    ("faultCode", Value::Integer(f.code)),
                    ("faultString", s(f.message)),
                ]))
            }
        }
        _ => Err(Fault::generic(format!("Task {} is not finished", k.id))),
    }
}

/// `listTaskOutput`'s answer for the files of a task.
fn task_output(files: &[(String, i64)], stat: bool, all_volumes: bool) -> Value {
    let stat_of = |size: i64| {
        st([
            ("st_size", s(size.to_string())),
            ("st_atime", Value::Nil),
            ("st_mtime", Value::Nil),
            ("st_ctime", Value::Nil),
        ])
    };
    if !stat && !all_volumes {
        return list(files.iter().map(|(f, _)| s(f)));
    }
    Value::Struct(
        files
            .iter()
            .map(|(f, size)| {
                let v = match (stat, all_volumes) {
                    (true, true) => st([("DEFAULT", stat_of(*size))]),
                    (true, false) => stat_of(*size),
                    _ => list([s("DEFAULT")]),
                };
                (f.clone(), v)
            })
            .collect(),
    )
}

/// `listTasks(opts=None, queryOpts=None)`.
async fn list_tasks(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["opts", "queryOpts"])?;
    let opts = a.map("opts")?;
    let ints = |k: &str| -> Result<Option<Vec<i64>>, Fault> {
        match opts.get(k) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| super::args::int(v, k))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(v) => Ok(Some(vec![super::args::int(v, k)?])),
        }
    };
    let mut f = TaskFilter {
        owners: ints("owner")?,
        ..TaskFilter::default()
    };
    if let Some(states) = ints("state")? {
        f.states = Some(
            states
                .iter()
                .filter_map(|n| usize::try_from(*n).ok().and_then(|i| TASK_STATES.get(i)))
                .map(|s| s.to_string())
                .collect(),
        );
    }
    match opts.get("parent") {
        Some(Value::Nil) => f.parent = Some(None),
        Some(v) => f.parent = Some(Some(super::args::int(v, "parent")?)),
        None => {}
    }
    if let Some(m) = opts.get("method") {
        f.method = Some(super::args::text(m, "method")?);
    }
    let not_states: Vec<&str> = ints("not_state")?
        .unwrap_or_default()
        .iter()
        .filter_map(|n| usize::try_from(*n).ok().and_then(|i| TASK_STATES.get(i)).copied())
        .collect();
    let not_owners = ints("not_owner")?.unwrap_or_default();
    let hosts = ints("host_id")?;
    let texts = |k: &str| -> Result<Option<Vec<String>>, Fault> {
        match opts.get(k) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| super::args::text(v, k))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(v) => Ok(Some(vec![super::args::text(v, k)?])),
        }
    };
    let arches = texts("arch")?;
    let not_arches = texts("not_arch")?.unwrap_or_default();
    let time = |k: &str| -> Result<Option<i64>, Fault> {
        opts.get(k)
            .filter(|v| !matches!(v, Value::Nil))
            .map(|v| match v {
                Value::String(t) => {
                    super::builds::parse_time(t).ok_or_else(|| Fault::parameter(format!("{k}: not a time")))
                }
                Value::Double(d) => Ok(d.floor() as i64),
                v => super::args::int(v, k),
            })
            .transpose()
    };
    let bounds = [
        (time("createdBefore")?, 0u8, true),
        (time("createdAfter")?, 0, false),
        (time("startedBefore")?, 1, true),
        (time("startedAfter")?, 1, false),
        (time("completeBefore")?.or(time("completedBefore")?), 2, true),
        (time("completeAfter")?.or(time("completedAfter")?), 2, false),
    ];
    let rows = ctx.hub.db.koji_tasks(&f).await.map_err(fault)?;
    let mut out = Vec::new();
    for t in rows {
        let k = &t.task;
        let times = [Some(k.created), k.started, k.finished];
        let in_time = bounds.iter().all(|(bound, which, before)| match bound {
            None => true,
            Some(x) => times[usize::from(*which)].is_some_and(|v| if *before { v < *x } else { v > *x }),
        });
        let keep = in_time
            && !not_states.contains(&k.state.as_str())
            && !not_owners.contains(&t.owner_id)
            && hosts
                .as_ref()
                .is_none_or(|h| t.host_id.is_some_and(|id| h.contains(&id)))
            && arches.as_ref().is_none_or(|x| x.contains(&k.arch))
            && !not_arches.contains(&k.arch);
        if keep {
            out.push(task_map(ctx, &t, true, true).await?);
        }
    }
    Ok(QueryOpts::read(&a.map("queryOpts")?)?.apply(out))
}

/// Every host with its id and its user's id.
async fn hosts(ctx: &Ctx<'_>) -> Result<Vec<(i64, HostInfo, Option<i64>)>, Fault> {
    let ids = ctx.hub.db.koji_host_ids().await.map_err(fault)?;
    let users = super::packages::user_ids(ctx).await?;
    let mut out: Vec<(i64, HostInfo, Option<i64>)> = ctx
        .hub
        .db
        .list_hosts()
        .await
        .map_err(fault)?
        .into_iter()
        .filter_map(|h| {
            let id = *ids.get(&h.name)?;
            let user = users.get(&h.name).copied();
            Some((id, h, user))
        })
        .collect();
    out.sort_by_key(|(id, _, _)| *id);
    Ok(out)
}

/// Koji's host map.
fn host_map(id: i64, h: &HostInfo, user: Option<i64>) -> Value {
    st([
        ("id", int(id)),
        ("user_id", opt_int(user)),
        ("name", s(&h.name)),
        ("update_ts", h.last_seen.map_or(Value::Nil, ts)),
        ("ready", b(h.state == HostState::Ready)),
        ("task_load", Value::Double(h.load as f64)),
        ("arches", s(&h.arch)),
        ("capacity", Value::Double(h.capacity as f64)),
        ("description", Value::Nil),
        ("comment", Value::Nil),
        ("enabled", b(h.enabled)),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn states_number_as_koji() {
        assert_eq!(state_number("FREE"), 0);
        assert_eq!(state_number("OPEN"), 1);
        assert_eq!(state_number("CLOSED"), 2);
        assert_eq!(state_number("CANCELED"), 3);
        assert_eq!(state_number("FAILED"), 5);
    }

    #[test]
    fn task_output_shapes() {
        let files = vec![("a.raw".to_string(), 5)];
        assert_eq!(task_output(&files, false, false), list([s("a.raw")]));
        let Value::Struct(m) = task_output(&files, false, true) else {
            panic!()
        };
        assert_eq!(m["a.raw"], list([s("DEFAULT")]));
        let Value::Struct(m) = task_output(&files, true, false) else {
            panic!()
        };
        assert_eq!(super::super::values::member(&m["a.raw"], "st_size"), Some(&s("5")));
    }
}
