//! Builds and tagging: `getBuild`, `listBuilds`, `listTagged`, `tagBuild`,
//! `untagBuild`, `tagBuildBypass`, `untagBuildBypass`, and the empty
//! answers of the RPM, Maven, Windows and repository calls the client
//! makes on the way (kiln has none of those things; docs/koji.md).

use std::collections::HashMap;
use std::sync::Arc;

use super::args::Args;
use super::values::{b, int, json, list, member, opt_int, opt_time, opt_ts, s, st, time, ts};
use super::wire::{Call, Fault, Value, code};
use super::{Ctx, Out, fault, packages, tags};
use crate::db::{BuildFilter, KojiBuild};
use crate::model::TagInfo;

/// Koji's build states, in their numeric order.
pub const BUILD_STATES: &[&str] = &["BUILDING", "COMPLETE", "DELETED", "FAILED", "CANCELED"];

pub async fn method(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    match call.method.as_str() {
        "getBuild" => {
            let a = Args::bind(call, &["buildInfo", "strict"])?;
            match find(ctx, a.need("buildInfo")?).await? {
                Some(found) => Ok(build_map(&found, true)),
                None if a.flag("strict") => Err(no_such(a.need("buildInfo")?)),
                None => Ok(Value::Nil),
            }
        }
        "listBuilds" => list_builds(ctx, call).await,
        "listTagged" => list_tagged(ctx, call).await,
        "tagBuild" | "tagBuildBypass" => tag(ctx, call).await,
        "untagBuild" | "untagBuildBypass" => untag(ctx, call).await,
        m => Err(Fault::generic(format!("Invalid method: {m}"))),
    }
}

/// The build `v` names: an id, an NVR, or a map with `name`, `version` and
/// `release` (Koji's `find_build_id`).
pub async fn find(ctx: &Ctx<'_>, v: &Value) -> Result<Option<KojiBuild>, Fault> {
    let found = match v {
        Value::Integer(_) | Value::Long(_) => {
            let id = super::args::int(v, "buildInfo")?;
            ctx.hub.db.koji_builds_by_id(&[id]).await.map(|mut all| all.pop())
        }
        Value::String(nvr) => {
            if nvr.rsplitn(3, '-').count() < 3 {
                return Err(Fault::generic(format!(
                    "invalid format: {}",
                    super::values::printable(nvr)
                )));
            }
            ctx.hub.db.koji_build_by_nvr(nvr).await
        }
        Value::Struct(m) => {
            let part = |k: &str| match m.get(k) {
                Some(x) => super::args::text(x, k),
                None => Err(Fault::generic("did not provide name, version, and release")),
            };
            let nvr = format!("{}-{}-{}", part("name")?, part("version")?, part("release")?);
            ctx.hub.db.koji_build_by_nvr(&nvr).await
        }
        _ => {
            return Err(Fault::generic(format!(
                "Invalid type for argument: {}",
                super::values::kind(v)
            )));
        }
    };
    found.map_err(fault)
}

/// The build `v` names, which must exist.
pub async fn need(ctx: &Ctx<'_>, v: &Value) -> Result<KojiBuild, Fault> {
    find(ctx, v).await?.ok_or_else(|| no_such(v))
}

fn no_such(v: &Value) -> Fault {
    let shown = match v {
        Value::String(t) => format!("'{}'", super::values::printable(t)),
        Value::Integer(i) => i.to_string(),
        Value::Long(i) => i.to_string(),
        _ => "{...}".into(),
    };
    Fault::generic(format!("No such build: {shown}"))
}

/// A kiln build state as Koji's number.
pub fn state_number(state: &str) -> i32 {
    BUILD_STATES.iter().position(|s| *s == state).map_or(3, |i| i as i32)
}

/// Koji's build map (`get_build`). `extra` only where Koji's call has it.
/// kiln records no creation event for a build: its creation is its start.
pub fn build_map(bd: &KojiBuild, extra: bool) -> Value {
    let mut v = st([
        ("id", int(bd.id)),
        ("build_id", int(bd.id)),
        ("name", s(&bd.name)),
        ("package_name", s(&bd.name)),
        ("package_id", int(bd.package_id)),
        ("version", s(&bd.version)),
        ("release", s(&bd.release)),
        ("epoch", Value::Nil),
        ("nvr", s(&bd.nvr)),
        ("draft", b(false)),
        ("state", Value::Integer(state_number(&bd.state))),
        ("task_id", opt_int(bd.task_id)),
        ("owner_id", int(bd.owner_id)),
        ("owner_name", s(&bd.owner)),
        ("volume_id", Value::Integer(0)),
        ("volume_name", s("DEFAULT")),
        ("creation_event_id", Value::Nil),
        ("creation_time", time(bd.start_time)),
        ("creation_ts", ts(bd.start_time)),
        ("start_time", time(bd.start_time)),
        ("start_ts", ts(bd.start_time)),
        ("completion_time", opt_time(bd.completion_time)),
        ("completion_ts", opt_ts(bd.completion_time)),
        ("promotion_time", Value::Nil),
        ("promotion_ts", Value::Nil),
        ("promoter_id", Value::Nil),
        ("promoter_name", Value::Nil),
        ("source", Value::Nil),
        ("cg_id", Value::Nil),
        ("cg_name", Value::Nil),
    ]);
    if extra {
        let x = match &bd.extra {
            serde_json::Value::Object(o) if o.is_empty() => Value::Nil,
            other => json(other),
        };
        super::values::extend(&mut v, [("extra".to_string(), x)]);
    }
    v
}

/// A time argument (seconds, or Koji's ISO text) as seconds.
fn when(v: &Value, name: &str) -> Result<i64, Fault> {
    match v {
        Value::Double(d) => Ok(d.floor() as i64),
        Value::String(t) => {
            parse_time(t).ok_or_else(|| Fault::parameter(format!("{name}: cannot read {t:?} as a time")))
        }
        other => super::args::int(other, name),
    }
}

/// `YYYY-MM-DD[ HH:MM[:SS]]` (UTC; a trailing `+00:00` or fraction is
/// allowed) as seconds since the epoch.
pub fn parse_time(t: &str) -> Option<i64> {
    let t = t.trim();
    let t = t.strip_suffix("+00:00").unwrap_or(t);
    let t = t.split('.').next()?;
    let (date, clock) = match t.split_once([' ', 'T']) {
        Some((d, c)) => (d, c),
        None => (t, "00:00:00"),
    };
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (c.next()??, c.next().unwrap_or(Some(0))?, c.next().unwrap_or(Some(0))?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days since the epoch (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// `listBuilds(packageID, userID, taskID, prefix, state, volumeID, source,
/// createdBefore, createdAfter, completeBefore, completeAfter, type,
/// typeInfo, queryOpts, pattern, cgID, draft, ...)`.
async fn list_builds(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(
        call,
        &[
            "packageID",
            "userID",
            "taskID",
            "prefix",
            "state",
            "volumeID",
            "source",
            "createdBefore",
            "createdAfter",
            "completeBefore",
            "completeAfter",
            "type",
            "typeInfo",
            "queryOpts",
            "pattern",
            "cgID",
            "draft",
            "promotedBefore",
            "promotedAfter",
            "promoter",
        ],
    )?;
    let mut f = BuildFilter::default();
    if let Some(v) = a.get("packageID") {
        match packages::find(ctx, v).await? {
            Some((_, name)) => f.package = Some(name),
            None => return Ok(list([])),
        }
    }
    if let Some(v) = a.get("userID") {
        match packages::find_user(ctx, v).await? {
            Some(u) => f.owner_id = Some(u.id),
            None => return Ok(list([])),
        }
    }
    if let Some(t) = a.int("taskID")? {
        if t == -1 {
            f.has_task = true;
        } else {
            f.task_id = Some(t);
        }
    }
    f.prefix = a.str("prefix")?.filter(|p| !p.is_empty());
    f.pattern = a.str("pattern")?.filter(|p| !p.is_empty());
    if let Some(n) = a.int("state")? {
        let Some(name) = usize::try_from(n).ok().and_then(|i| BUILD_STATES.get(i)) else {
            return Ok(list([]));
        };
        f.state = Some((*name).to_string());
    }
    if a.get("volumeID")
        .is_some_and(|v| super::args::int(v, "volumeID").ok() != Some(0))
    {
        return Ok(list([]));
    }
    // Sources, promotions, content generators and drafts kiln does not
    // have: a filter on them matches nothing (a draft=False filter, all).
    if a.get("source").is_some() || a.get("cgID").is_some() || a.get("promoter").is_some() {
        return Ok(list([]));
    }
    if a.get("promotedBefore").is_some() || a.get("promotedAfter").is_some() || a.flag("draft") {
        return Ok(list([]));
    }
    if let Some(t) = a.str("type")?
        && t != "image"
    {
        return Ok(list([]));
    }
    let time = |name: &str| a.get(name).map(|v| when(v, name)).transpose();
    f.created_before = time("createdBefore")?;
    f.created_after = time("createdAfter")?;
    f.completed_before = time("completeBefore")?;
    f.completed_after = time("completeAfter")?;
    let q = QueryOpts::read(&a.map("queryOpts")?)?;
    let mut all = ctx.hub.db.koji_list_builds(&f, 0, i64::MAX).await.map_err(fault)?;
    all.reverse();
    let maps: Vec<Value> = all.iter().map(|bd| build_map(bd, true)).collect();
    Ok(q.apply(maps))
}

/// Koji's `queryOpts`: `order` (keys, `-` for descending), `offset`,
/// `limit` and `countOnly`, applied to the answer's maps.
pub struct QueryOpts {
    order: Vec<(String, bool)>,
    offset: usize,
    limit: Option<usize>,
    count_only: bool,
}

impl QueryOpts {
    pub fn read(m: &std::collections::BTreeMap<String, Value>) -> Result<QueryOpts, Fault> {
        let order = match m.get("order") {
            Some(Value::String(o)) => o
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| match k.strip_prefix('-') {
                    Some(k) => (k.to_string(), true),
                    None => (k.to_string(), false),
                })
                .collect(),
            _ => Vec::new(),
        };
        let number = |k: &str| -> Result<Option<usize>, Fault> {
            match m.get(k).filter(|v| !matches!(v, Value::Nil)) {
                None => Ok(None),
                Some(v) => {
                    let n = super::args::int(v, k)?;
                    usize::try_from(n)
                        .map(Some)
                        .map_err(|_| Fault::parameter(format!("{k} must be 0 or more")))
                }
            }
        };
        Ok(QueryOpts {
            order,
            offset: number("offset")?.unwrap_or(0),
            limit: number("limit")?,
            count_only: m.get("countOnly").is_some_and(super::wire::truthy),
        })
    }

    /// Sorts, pages or counts `rows` (structs).
    pub fn apply(&self, mut rows: Vec<Value>) -> Value {
        if self.count_only {
            return int(rows.len() as i64);
        }
        if !self.order.is_empty() {
            rows.sort_by(|x, y| {
                for (k, desc) in &self.order {
                    let o = cmp_values(member(x, k), member(y, k));
                    let o = if *desc { o.reverse() } else { o };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        let rows = rows.into_iter().skip(self.offset);
        match self.limit {
            Some(n) => list(rows.take(n)),
            None => list(rows),
        }
    }
}

/// An order over reply values like PostgreSQL's (nulls last).
fn cmp_values(x: Option<&Value>, y: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let num = |v: &Value| match v {
        Value::Integer(i) => Some(f64::from(*i)),
        Value::Long(i) => Some(*i as f64),
        Value::Double(d) => Some(*d),
        Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    match (
        x.filter(|v| !matches!(v, Value::Nil)),
        y.filter(|v| !matches!(v, Value::Nil)),
    ) {
        (None, None) => Equal,
        (None, Some(_)) => Greater,
        (Some(_), None) => Less,
        (Some(a), Some(b)) => match (num(a), num(b)) {
            (Some(p), Some(q)) => p.partial_cmp(&q).unwrap_or(Equal),
            _ => match (a, b) {
                (Value::String(p), Value::String(q)) => p.cmp(q),
                _ => Equal,
            },
        },
    }
}

/// `listTagged(tag, event=None, inherit=False, prefix=None, latest=False,
/// package=None, owner=None, type=None, strict=True, extra=False,
/// draft=None)`: `latest` may be a number N, the N latest per package.
async fn list_tagged(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(
        call,
        &[
            "tag", "event", "inherit", "prefix", "latest", "package", "owner", "type", "strict", "extra", "draft",
        ],
    )?;
    let event = a.int("event")?;
    let strict = a.get("strict").is_none_or(super::wire::truthy);
    let Some(t) = tags::find(ctx, a.need("tag")?, event, strict).await? else {
        return Ok(list([]));
    };
    // True: one per package; a number N: N per package; false/0: all.
    let per_package: Option<usize> = match a.get("latest") {
        None | Some(Value::Boolean(false)) => None,
        Some(Value::Boolean(true)) => Some(1),
        Some(v) => match super::args::int(v, "latest")? {
            n if n <= 0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        },
    };
    if a.flag("draft") || a.str("type")?.is_some_and(|ty| ty != "image") {
        return Ok(list([]));
    }
    let filter = Filter {
        package: a.str("package")?,
        owner: a.str("owner")?,
        prefix: a.str("prefix")?.map(|p| p.to_lowercase()),
        per_package,
        extra: a.flag("extra"),
    };
    let (inherit, latest) = (a.flag("inherit"), per_package == Some(1));
    // The plain call of the present (`koji list-tagged [--inherit]
    // [--latest] TAG`): its encoded answer is kept with the hub's cached
    // listing (`db::cache`).
    let plain = filter.package.is_none()
        && filter.owner.is_none()
        && filter.prefix.is_none()
        && !filter.extra
        && matches!(per_package, None | Some(1));
    if plain && event.is_none() && !ctx.multicall {
        let encoded = ctx
            .hub
            .db
            .koji_tagged_derived(&t.name, inherit, latest, |rows| {
                Arc::from(super::wire::value_xml(&listing(rows, &filter)).unwrap_or_default())
            })
            .await
            .map_err(fault)?;
        if let Some(xml) = encoded.filter(|x| !x.is_empty()) {
            ctx.encoded = Some(xml);
            return Ok(Value::Nil);
        }
    }
    let rows = ctx
        .hub
        .db
        .koji_list_tagged(&t.name, inherit, latest, event)
        .await
        .map_err(fault)?;
    Ok(listing(rows, &filter))
}

/// `listTagged`'s filters applied after the listing.
struct Filter {
    package: Option<String>,
    owner: Option<String>,
    prefix: Option<String>,
    per_package: Option<usize>,
    extra: bool,
}

/// `listTagged`'s answer from the listing.
fn listing(rows: Vec<crate::db::KojiTagged>, f: &Filter) -> Value {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (bd, tag_id, tag_name, tag_event) in rows {
        if f.package.as_ref().is_some_and(|p| *p != bd.name) || f.owner.as_ref().is_some_and(|o| *o != bd.owner) {
            continue;
        }
        if let Some(n) = f.per_package {
            let count = seen.entry(bd.name.clone()).or_default();
            if *count >= n {
                continue;
            }
            *count += 1;
        }
        if f.prefix
            .as_ref()
            .is_some_and(|p| !bd.name.to_lowercase().starts_with(p.as_str()))
        {
            continue;
        }
        let mut v = build_map(&bd, f.extra);
        super::values::extend(
            &mut v,
            [
                ("tag_id".to_string(), int(tag_id)),
                ("tag_name".to_string(), s(tag_name)),
                ("create_event".to_string(), int(tag_event)),
            ],
        );
        out.push(v);
    }
    Value::Array(out)
}

/// Koji's tag access check (`check_tag_access`), with its messages.
fn tag_access(ctx: &Ctx<'_>, t: &TagInfo, force: bool) -> Result<(), Fault> {
    let overridden = force && ctx.who.admin;
    if t.locked && !overridden {
        return Err(Fault::new(code::NOT_ALLOWED, "tag is locked"));
    }
    if let Some(p) = &t.perm
        && !ctx.who.has(p)
        && !overridden
    {
        return Err(Fault::new(code::NOT_ALLOWED, format!("tag requires {p} permission")));
    }
    Ok(())
}

/// `tagBuild(tag, build, force=False, fromtag=None)`: the id of the
/// (closed) task recording it; `tagBuildBypass(tag, build, force=False,
/// notify=False)`: nothing.
async fn tag(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let bypass = call.method == "tagBuildBypass";
    let last = if bypass { "notify" } else { "fromtag" };
    let a = Args::bind(call, &["tag", "build", "force", last])?;
    ctx.perm_needed("tag")?;
    let force = a.flag("force");
    let bd = need(ctx, a.need("build")?).await?;
    let t = tags::need(ctx, a.need("tag")?, None).await?;
    if !bypass && a.get("fromtag").is_some() {
        return Err(Fault::generic("moving builds between tags (fromtag) is not supported"));
    }
    if bd.state != "COMPLETE" {
        return Err(Fault::new(
            code::TAG,
            format!("build {} not complete: state {}", bd.nvr, bd.state),
        ));
    }
    tag_access(ctx, &t, force)?;
    let listed = ctx.hub.db.packages(&t.name, true, None).await.map_err(fault)?;
    match listed.iter().find(|p| p.package == bd.name) {
        None => {
            return Err(Fault::new(
                code::TAG,
                format!("Package {} not in list for {}", bd.name, t.name),
            ));
        }
        Some(p) if p.blocked => {
            return Err(Fault::new(
                code::TAG,
                format!("Package {} blocked in {}", bd.name, t.name),
            ));
        }
        Some(_) => {}
    }
    if !force {
        let ids = ctx.hub.db.koji_build_tag_ids(bd.id).await.map_err(fault)?;
        if ids.contains(&t.id) {
            return Err(Fault::new(
                code::TAG,
                format!("build {} already tagged ({})", bd.nvr, t.name),
            ));
        }
    }
    if bypass {
        ctx.hub
            .db
            .tag_build(&ctx.who, &t.name, &bd.nvr, force)
            .await
            .map_err(fault)?;
        return Ok(Value::Nil);
    }
    let task = ctx
        .hub
        .db
        .tag_build_task(&ctx.who, &t.name, &bd.nvr, force)
        .await
        .map_err(fault)?;
    Ok(int(task))
}

/// `untagBuild(tag, build, strict=True, force=False)` and
/// `untagBuildBypass(..., notify=False)`.
async fn untag(ctx: &mut Ctx<'_>, call: &Call) -> Out {
    let a = Args::bind(call, &["tag", "build", "strict", "force", "notify"])?;
    if call.method == "untagBuild" && call.kwargs.contains_key("notify") {
        return Err(Fault::parameter(
            "untagBuild() got an unexpected keyword argument 'notify'",
        ));
    }
    ctx.perm_needed("tag")?;
    let force = a.flag("force");
    let t = tags::need(ctx, a.need("tag")?, None).await?;
    let bd = need(ctx, a.need("build")?).await?;
    tag_access(ctx, &t, force)?;
    let ids = ctx.hub.db.koji_build_tag_ids(bd.id).await.map_err(fault)?;
    if !ids.contains(&t.id) {
        if a.get("strict").is_none_or(super::wire::truthy) {
            return Err(Fault::new(code::TAG, format!("build {} not in tag {}", bd.nvr, t.name)));
        }
        return Ok(Value::Nil);
    }
    ctx.hub
        .db
        .untag_build(&ctx.who, &t.name, &bd.nvr, force)
        .await
        .map_err(fault)?;
    Ok(Value::Nil)
}

/// The answers of calls about things kiln does not have (RPMs, archives,
/// Maven and Windows builds, buildroots, repositories, changelogs, comps
/// groups, external repositories): Koji's empty value for each.
pub fn absent(method: &str) -> Option<Value> {
    Some(match method {
        "listRPMs"
        | "listArchives"
        | "getChangelogEntries"
        | "listBuildroots"
        | "getBuildNotificationBlocks"
        | "getTagGroups"
        | "getTagExternalRepos"
        | "getExternalRepoList"
        | "listVolumes" => list([]),
        "getBuildType" | "listBTypes" => {
            if method == "listBTypes" {
                list([st([("id", int(1)), ("name", s("image"))])])
            } else {
                st([("image", st([]))])
            }
        }
        "getMavenBuild" | "getWinBuild" | "getImageBuild" | "getRepo" | "getAverageBuildDuration" => Value::Nil,
        "mavenEnabled" | "winEnabled" => b(false),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_koji() {
        assert_eq!(parse_time("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_time("2026-12-04 10:20:30+00:00"), Some(1_796_379_630));
        assert_eq!(parse_time("2026-12-04"), Some(1_796_342_400));
        assert_eq!(parse_time("2000-02-29T12:00"), Some(951_825_600));
        assert_eq!(parse_time("2026-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn states_number_as_koji() {
        assert_eq!(state_number("BUILDING"), 0);
        assert_eq!(state_number("COMPLETE"), 1);
        assert_eq!(state_number("FAILED"), 3);
        assert_eq!(state_number("CANCELED"), 4);
    }

    #[test]
    fn query_opts_sort_page_and_count() {
        let rows: Vec<Value> = [3, 1, 2]
            .iter()
            .map(|i| st([("id", int(*i)), ("n", s(format!("x{i}")))]))
            .collect();
        let m = |pairs: &[(&str, Value)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let q = QueryOpts::read(&m(&[("order", s("-id")), ("limit", int(2))])).unwrap();
        let Value::Array(out) = q.apply(rows.clone()) else {
            panic!()
        };
        let ids: Vec<&Value> = out.iter().filter_map(|r| member(r, "id")).collect();
        assert_eq!(ids, vec![&int(3), &int(2)]);
        let q = QueryOpts::read(&m(&[("countOnly", b(true))])).unwrap();
        assert_eq!(q.apply(rows), int(3));
    }
}
