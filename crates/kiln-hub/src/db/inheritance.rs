//! Tag inheritance: the links between tags, the walks over them (Koji's
//! readFullInheritance, computed by `kiln_core::koji` over the links a
//! recursive query loads) and the build config a walk yields.

use std::collections::{BTreeMap, HashMap};

use kiln_core::koji;
use kiln_hub_api::names::MAX_TEXT;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Current, Dialect, Key, Tx};
use crate::db::rules::{PRIORITIES, active, check_line, check_range, id_list, may_change, parse_json};
use crate::error::{HubError, Result};
use crate::model::{BuildConfigOut, LinkEdit, LinkIn, LinkOut, Principal, Sourced, WalkOut};

impl<D: Dialect> Backend<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    usize: ColumnIndex<D::Row>,
    i64: Col<D>,
    Option<i64>: Col<D>,
    bool: Col<D>,
    String: Col<D>,
    Option<String>: Col<D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
{
    /// The links reachable from `start` (towards parents, or with
    /// `reverse` towards children) at `event`: only the subgraph a
    /// walk can visit, found by a recursive query.
    pub(super) async fn links_from<'e, E>(
        ex: E,
        start: i64,
        reverse: bool,
        event: Option<i64>,
    ) -> Result<Vec<koji::Link>>
    where
        E: sqlx::Executor<'e, Database = D>,
    {
        let (from, to) = if reverse {
            ("parent_id", "tag_id")
        } else {
            ("tag_id", "parent_id")
        };
        let sql = format!(
            "WITH RECURSIVE r(id) AS (SELECT CAST($1 AS BIGINT) UNION \
             SELECT l.{to} FROM tag_inheritance l JOIN r ON l.{from} = r.id WHERE {act}) \
             SELECT l.tag_id, l.parent_id, l.priority, l.maxdepth, l.intransitive, l.noconfig, l.pkg_filter \
             FROM tag_inheritance l WHERE l.{from} IN (SELECT id FROM r) AND {act}",
            act = active(event, 2, "l")
        );
        let mut q = sqlx::query(&sql).bind(start);
        if let Some(e) = event {
            q = q.bind(e);
        }
        q.fetch_all(ex)
            .await?
            .into_iter()
            .map(|r| {
                Ok(koji::Link {
                    child: r.try_get(0)?,
                    parent: r.try_get(1)?,
                    priority: r.try_get(2)?,
                    maxdepth: r.try_get(3)?,
                    intransitive: r.try_get(4)?,
                    noconfig: r.try_get(5)?,
                    pkg_filter: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// The names some tags had at `event` (now when `None`).
    pub(super) async fn tag_names<'e, E>(
        ex: E,
        ids: impl IntoIterator<Item = i64>,
        event: Option<i64>,
    ) -> Result<HashMap<i64, String>>
    where
        E: sqlx::Executor<'e, Database = D>,
    {
        let mut ids: Vec<i64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT tag_id, name FROM tag_names WHERE tag_id IN ({}) AND {}",
            id_list(&ids),
            active(event, 1, "")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        let rows = q.fetch_all(ex).await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    pub(super) fn link_out(l: &koji::Link, names: &HashMap<i64, String>) -> LinkOut {
        let n = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
        LinkOut {
            child: n(l.child),
            parent: n(l.parent),
            priority: l.priority,
            maxdepth: l.maxdepth,
            intransitive: l.intransitive,
            noconfig: l.noconfig,
            pkg_filter: l.pkg_filter.clone(),
        }
    }

    /// A tag's direct links (parents, or with `reverse` children).
    pub async fn links(&self, tag: &str, reverse: bool, event: Option<i64>) -> Result<Vec<LinkOut>> {
        let t = Self::tag_row(&self.read, tag, event).await?;
        let set = koji::LinkSet(Self::links_from(&self.read, t.id, reverse, event).await?);
        use koji::Links;
        let links = if reverse { set.children(t.id) } else { set.parents(t.id) };
        let names = Self::tag_names(&self.read, links.iter().flat_map(|l| [l.child, l.parent]), event).await?;
        Ok(links.iter().map(|l| Self::link_out(l, &names)).collect())
    }

    pub(super) async fn walk_ids(&self, tag: i64, reverse: bool, event: Option<i64>) -> Result<Vec<koji::WalkEntry>> {
        let set = koji::LinkSet(Self::links_from(&self.read, tag, reverse, event).await?);
        Ok(koji::full_inheritance(&set, tag, reverse))
    }

    pub async fn full_inheritance(&self, tag: &str, reverse: bool, event: Option<i64>) -> Result<Vec<WalkOut>> {
        let t = Self::tag_row(&self.read, tag, event).await?;
        let walk = self.walk_ids(t.id, reverse, event).await?;
        let ids = walk.iter().flat_map(|w| [w.link.child, w.link.parent]);
        let names = Self::tag_names(&self.read, ids, event).await?;
        Ok(walk
            .iter()
            .map(|w| WalkOut {
                tag: names.get(&w.tag(reverse)).cloned().unwrap_or_default(),
                link: Self::link_out(&w.link, &names),
                currdepth: w.currdepth,
                nextdepth: w.nextdepth,
                filter: w.filter.clone(),
            })
            .collect())
    }

    pub async fn add_link(&self, who: &Principal, child: &str, l: &LinkIn) -> Result<Vec<LinkOut>> {
        self.change_link(who, child, &l.parent, Some(l), None, false).await
    }

    pub async fn edit_link(&self, who: &Principal, child: &str, parent: &str, e: &LinkEdit) -> Result<Vec<LinkOut>> {
        self.change_link(who, child, parent, None, Some(e), false).await
    }

    pub async fn remove_link(&self, who: &Principal, child: &str, parent: &str) -> Result<Vec<LinkOut>> {
        self.change_link(who, child, parent, None, None, true).await
    }

    async fn change_link(
        &self,
        who: &Principal,
        child: &str,
        parent: &str,
        add: Option<&LinkIn>,
        edit: Option<&LinkEdit>,
        remove: bool,
    ) -> Result<Vec<LinkOut>> {
        let mut tx = self.begin_write().await?;
        let c = Self::tag_for_change(&mut tx, child).await?;
        let p = Self::tag_row(&mut *tx, parent, None).await?;
        // The link routes take no `force`: an admin passes a lock.
        may_change(who, child, c.perm.as_deref(), c.locked, true)?;
        if c.id == p.id {
            return Err(HubError::bad_request(format!("tag {child} cannot inherit from itself")));
        }
        let current = Self::links_from(&mut *tx, c.id, false, None).await?;
        let existing = current.iter().find(|l| l.child == c.id && l.parent == p.id).cloned();
        let link = changed_link((child, parent), (c.id, p.id), add, edit, existing)?;
        if !remove {
            Self::check_link(&mut tx, child, &link, &current).await?;
        }
        let action = if remove {
            "remove"
        } else if add.is_some() {
            "add"
        } else {
            "edit"
        };
        let ev = Self::event(&mut tx, who, &format!("{action} inheritance {child} -> {parent}")).await?;
        let link_rows = Current::new(
            "tag_inheritance",
            "tag_id = $2 AND parent_id = $3",
            [Key::Id(c.id), Key::Id(p.id)],
        );
        Self::revoke_rows(&mut tx, ev, link_rows).await?;
        if !remove {
            Self::insert_link(&mut tx, &link, ev).await?;
        }
        tx.commit().await?;
        self.links(child, false, None).await
    }

    /// Koji's `setInheritanceData`: the links of `child` changed as a
    /// whole, in one transaction and one event. Each change names a parent
    /// by id and either deletes its link or sets it (adding or replacing);
    /// with `clear`, links no change names are removed. The result must
    /// have distinct priorities; unchanged links are not rewritten.
    pub async fn set_inheritance(
        &self,
        who: &Principal,
        child: &str,
        changes: &[LinkChange],
        clear: bool,
    ) -> Result<Vec<LinkOut>> {
        let mut tx = self.begin_write().await?;
        let c = Self::tag_for_change(&mut tx, child).await?;
        may_change(who, child, c.perm.as_deref(), c.locked, true)?;
        let current: Vec<koji::Link> = Self::links_from(&mut *tx, c.id, false, None)
            .await?
            .into_iter()
            .filter(|l| l.child == c.id)
            .collect();
        let mut next: BTreeMap<i64, koji::Link> = if clear {
            BTreeMap::new()
        } else {
            current.iter().map(|l| (l.parent, l.clone())).collect()
        };
        let parents = Self::tag_names(&mut *tx, changes.iter().map(|ch| ch.link.parent), None).await?;
        for ch in changes {
            if !parents.contains_key(&ch.link.parent) {
                return Err(HubError::not_found(format!("No such tagInfo: {}", ch.link.parent)));
            }
            if ch.link.parent == c.id {
                return Err(HubError::bad_request(format!("tag {child} cannot inherit from itself")));
            }
            if ch.delete {
                next.remove(&ch.link.parent);
            } else {
                next.insert(
                    ch.link.parent,
                    koji::Link {
                        child: c.id,
                        ..ch.link.clone()
                    },
                );
            }
        }
        let mut by_priority: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for l in next.values() {
            by_priority.entry(l.priority).or_default().push(l.parent);
        }
        if let Some((p, ids)) = by_priority.iter().find(|(_, ids)| ids.len() > 1) {
            let names = Self::tag_names(&mut *tx, ids.iter().copied(), None).await?;
            let shown: Vec<String> = ids.iter().map(|i| names.get(i).cloned().unwrap_or_default()).collect();
            return Err(HubError::conflict(format!(
                "Multiple parent tags ({}) cannot have the same priority value ({p}) on child tag {child}",
                shown.join(", ")
            )));
        }
        for l in next.values() {
            Self::check_link(&mut tx, child, l, &[]).await?;
        }
        let old: BTreeMap<i64, &koji::Link> = current.iter().map(|l| (l.parent, l)).collect();
        let revoke: Vec<i64> = old
            .iter()
            .filter(|(p, l)| next.get(p) != Some(**l))
            .map(|(p, _)| *p)
            .collect();
        let insert: Vec<&koji::Link> = next.values().filter(|l| old.get(&l.parent) != Some(l)).collect();
        if revoke.is_empty() && insert.is_empty() {
            tx.commit().await?;
            return self.links(child, false, None).await;
        }
        let ev = Self::event(&mut tx, who, &format!("set inheritance of {child}")).await?;
        for p in revoke {
            let rows = Current::new(
                "tag_inheritance",
                "tag_id = $2 AND parent_id = $3",
                [Key::Id(c.id), Key::Id(p)],
            );
            Self::revoke_rows(&mut tx, ev, rows).await?;
        }
        for link in insert {
            Self::insert_link(&mut tx, link, ev).await?;
        }
        tx.commit().await?;
        self.links(child, false, None).await
    }

    /// Checks a link about to be written: its depth, its filter, and that
    /// no other parent of `child` has its priority (`current` holds the
    /// links from `child`).
    /// Records `link` (its child and parent ids) as created by event `ev`.
    async fn insert_link(tx: &mut Tx<'_, D>, link: &koji::Link, ev: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO tag_inheritance (tag_id, parent_id, priority, maxdepth, intransitive, noconfig, \
             pkg_filter, create_event) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(link.child)
        .bind(link.parent)
        .bind(link.priority)
        .bind(link.maxdepth)
        .bind(link.intransitive)
        .bind(link.noconfig)
        .bind(&link.pkg_filter)
        .bind(ev)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn check_link(tx: &mut Tx<'_, D>, child: &str, link: &koji::Link, current: &[koji::Link]) -> Result<()> {
        check_range("priority", link.priority, PRIORITIES)?;
        if let Some(d) = link.maxdepth {
            check_range("maxdepth", d, PRIORITIES)?;
        }
        check_line("pkg_filter", &link.pkg_filter, MAX_TEXT)?;
        if !link.pkg_filter.is_empty() {
            koji::compile_filter(&link.pkg_filter)
                .map_err(|e| HubError::bad_request(format!("invalid pkg_filter: {e}")))?;
        }
        if let Some(other) = current
            .iter()
            .find(|l| l.child == link.child && l.parent != link.parent && l.priority == link.priority)
        {
            let names = Self::tag_names(&mut **tx, [other.parent], None).await?;
            return Err(HubError::conflict(format!(
                "{child} already has parent {} at priority {}",
                names.get(&other.parent).cloned().unwrap_or_default(),
                link.priority
            )));
        }
        Ok(())
    }

    // The build config: tag configuration and extra, inherited along the walk.

    async fn configs(
        &self,
        ids: &[i64],
        event: Option<i64>,
        names: &HashMap<i64, String>,
    ) -> Result<HashMap<i64, koji::TagConfig>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let list = id_list(ids);
        let sql = format!(
            "SELECT tag_id, arches FROM tag_config WHERE tag_id IN ({list}) AND {}",
            active(event, 1, "")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        for r in q.fetch_all(&self.read).await? {
            let id: i64 = r.try_get(0)?;
            out.insert(
                id,
                koji::TagConfig {
                    name: names.get(&id).cloned().unwrap_or_default(),
                    arches: r.try_get(1)?,
                    extra: BTreeMap::new(),
                },
            );
        }
        let sql = format!(
            "SELECT tag_id, key, value, blocked FROM tag_extra WHERE tag_id IN ({list}) AND {}",
            active(event, 1, "")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        for r in q.fetch_all(&self.read).await? {
            let id: i64 = r.try_get(0)?;
            let value: Option<String> = r.try_get(2)?;
            if let Some(c) = out.get_mut(&id) {
                c.extra.insert(
                    r.try_get(1)?,
                    (r.try_get(3)?, parse_json(value).unwrap_or(serde_json::Value::Null)),
                );
            }
        }
        Ok(out)
    }

    pub async fn build_config(&self, tag: &str, event: Option<i64>) -> Result<BuildConfigOut> {
        let t = Self::tag_row(&self.read, tag, event).await?;
        let walk = self.walk_ids(t.id, false, event).await?;
        let mut ids = vec![t.id];
        ids.extend(walk.iter().map(|w| w.link.parent));
        let names = Self::tag_names(&self.read, ids.iter().copied(), event).await?;
        let configs = self.configs(&ids, event, &names).await?;
        let bc = koji::build_config(t.id, &walk, &configs);
        Ok(BuildConfigOut {
            tag: t.name,
            arches: bc.arches.map(|a| Sourced {
                value: serde_json::Value::String(a.value),
                from: a.from,
            }),
            extra: bc
                .extra
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        Sourced {
                            value: v.value,
                            from: v.from,
                        },
                    )
                })
                .collect(),
        })
    }
}

/// The link `child` → `parent` (`names`, and `ids` (child, parent)) as a
/// change leaves it: a new one for `add` (none may exist yet), or the
/// `existing` one with `edit` applied.
/// One change of `set_inheritance`: the link to `link.parent` set, or
/// with `delete` removed (`link.child` is ignored).
#[derive(Clone, Debug)]
pub struct LinkChange {
    pub link: koji::Link,
    pub delete: bool,
}

fn changed_link(
    (child, parent): (&str, &str),
    (child_id, parent_id): (i64, i64),
    add: Option<&LinkIn>,
    edit: Option<&LinkEdit>,
    existing: Option<koji::Link>,
) -> Result<koji::Link> {
    let mut link = match (add, existing) {
        (Some(_), Some(_)) => {
            return Err(HubError::conflict(format!("{child} already inherits from {parent}")));
        }
        (Some(a), None) => koji::Link {
            child: child_id,
            parent: parent_id,
            priority: a.priority,
            maxdepth: a.maxdepth,
            intransitive: a.intransitive,
            noconfig: a.noconfig,
            pkg_filter: a.pkg_filter.clone(),
        },
        (None, None) => {
            return Err(HubError::not_found(format!("{child} does not inherit from {parent}")));
        }
        (None, Some(l)) => l,
    };
    if let Some(e) = edit {
        if let Some(v) = e.priority {
            link.priority = v;
        }
        if let Some(v) = e.maxdepth {
            link.maxdepth = v;
        }
        if let Some(v) = e.intransitive {
            link.intransitive = v;
        }
        if let Some(v) = e.noconfig {
            link.noconfig = v;
        }
        if let Some(v) = &e.pkg_filter {
            link.pkg_filter = v.clone();
        }
    }
    Ok(link)
}
