//! Koji's `queryHistory` over kiln's versioned rows: each table Koji keeps
//! history in that kiln has (tag listings, inheritance, tag configuration
//! and extra, package lists and their owners, targets, permissions), its
//! versions with the events that created and revoked them and the names
//! Koji joins in. kiln keeps a package entry's owner and block in one row;
//! Koji's `tag_packages` and `tag_package_owners` are both read from it,
//! each version spanning the events its value held.

use std::collections::HashMap;

use serde_json::{Value as J, json};
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect};
use crate::error::Result;

/// The tables kiln has history for, in Koji's names.
pub const HISTORY_TABLES: &[&str] = &[
    "build_target_config",
    "tag_config",
    "tag_extra",
    "tag_inheritance",
    "tag_listing",
    "tag_package_owners",
    "tag_packages",
    "user_perms",
];

/// What a history query is limited to (already resolved to ids/names).
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub tag: Option<i64>,
    pub build: Option<i64>,
    pub package: Option<String>,
    pub user: Option<i64>,
    pub permission: Option<String>,
    pub target: Option<i64>,
    pub xkey: Option<String>,
}

/// One version of a row.
#[derive(Clone, Debug)]
pub struct HistoryRow {
    pub table: &'static str,
    pub create_event: i64,
    pub revoke_event: Option<i64>,
    /// The row's own fields and the names Koji joins in.
    pub fields: Vec<(String, J)>,
}

/// A query's text and its bound values.
#[derive(Default)]
struct Sql {
    conds: Vec<String>,
    ints: Vec<i64>,
    texts: Vec<String>,
}

impl Sql {
    fn int(&mut self, cond: &str, v: i64) {
        self.ints.push(v);
        self.conds.push(cond.replace('?', &format!("$I{}", self.ints.len())));
    }

    fn text(&mut self, cond: &str, v: &str) {
        self.texts.push(v.to_string());
        self.conds.push(cond.replace('?', &format!("$T{}", self.texts.len())));
    }

    /// `select` with the conditions; placeholders numbered texts first.
    fn finish(&self, select: &str) -> String {
        let mut sql = select.to_string();
        if !self.conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.conds.join(" AND "));
        }
        for i in (1..=self.texts.len()).rev() {
            sql = sql.replace(&format!("$T{i}"), &format!("${i}"));
        }
        for i in (1..=self.ints.len()).rev() {
            sql = sql.replace(&format!("$I{i}"), &format!("${}", self.texts.len() + i));
        }
        sql
    }
}

/// Names Koji joins into history rows.
struct Names {
    tags: HashMap<i64, String>,
    users: HashMap<i64, String>,
    user_ids: HashMap<String, i64>,
    perms: HashMap<String, i64>,
    packages: HashMap<String, i64>,
}

impl Names {
    fn tag(&self, id: i64) -> J {
        self.tags.get(&id).map_or(J::Null, |n| J::from(n.as_str()))
    }
}

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
    /// The versions of each of `tables` (of `HISTORY_TABLES`) matching `f`,
    /// the joined names read once for all of them.
    pub async fn koji_history(&self, tables: &[String], f: &HistoryFilter) -> Result<Vec<HistoryRow>> {
        let names = self.history_names().await?;
        let mut out = Vec::new();
        for table in tables {
            out.extend(self.table_history(table, f, &names).await?);
        }
        Ok(out)
    }

    async fn table_history(&self, table: &str, f: &HistoryFilter, names: &Names) -> Result<Vec<HistoryRow>> {
        let mut q = Sql::default();
        let select = match table {
            "tag_listing" => {
                if let Some(t) = f.tag {
                    q.int("x.tag_id = ?", t);
                }
                if let Some(b) = f.build {
                    q.int("x.build_id = ?", b);
                }
                if let Some(p) = &f.package {
                    q.text("b.name = ?", p);
                }
                "SELECT x.create_event, x.revoke_event, x.tag_id, x.build_id, b.name, b.version, b.release, b.state \
                 FROM tag_listing x JOIN builds b ON b.id = x.build_id"
            }
            "tag_inheritance" => {
                if let Some(t) = f.tag {
                    q.ints.push(t);
                    let n = q.ints.len();
                    q.conds.push(format!("(x.tag_id = $I{n} OR x.parent_id = $I{n})"));
                }
                "SELECT x.create_event, x.revoke_event, x.tag_id, x.parent_id, x.priority, x.maxdepth, \
                 x.intransitive, x.noconfig, x.pkg_filter FROM tag_inheritance x"
            }
            "tag_config" => {
                if let Some(t) = f.tag {
                    q.int("x.tag_id = ?", t);
                }
                if let Some(p) = &f.permission {
                    q.text("x.perm = ?", p);
                }
                "SELECT x.create_event, x.revoke_event, x.tag_id, x.arches, x.perm, x.locked FROM tag_config x"
            }
            "tag_extra" => {
                if let Some(t) = f.tag {
                    q.int("x.tag_id = ?", t);
                }
                if let Some(k) = &f.xkey {
                    q.text("x.key = ?", k);
                }
                "SELECT x.create_event, x.revoke_event, x.tag_id, x.key, x.value, x.blocked FROM tag_extra x"
            }
            "tag_packages" | "tag_package_owners" => {
                if let Some(t) = f.tag {
                    q.int("x.tag_id = ?", t);
                }
                if let Some(p) = &f.package {
                    q.text("x.package = ?", p);
                }
                "SELECT x.create_event, x.revoke_event, x.tag_id, x.package, x.owner, x.blocked FROM tag_packages x"
            }
            "build_target_config" => {
                if let Some(t) = f.target {
                    q.int("x.target_id = ?", t);
                }
                // Koji's quirk: a tag filter matches a target's destination.
                if let Some(t) = f.tag {
                    q.int("x.dest_tag = ?", t);
                }
                "SELECT x.create_event, x.revoke_event, x.target_id, x.name, x.build_tag, x.dest_tag \
                 FROM target_config x"
            }
            "user_perms" => {
                if let Some(u) = f.user {
                    q.int("x.user_id = ?", u);
                }
                if let Some(p) = &f.permission {
                    q.text("x.perm = ?", p);
                }
                "SELECT x.create_event, x.revoke_event, x.user_id, x.perm FROM user_perms x"
            }
            _ => return Ok(Vec::new()),
        };
        let sql = q.finish(select);
        let mut query = sqlx::query(&sql);
        for t in &q.texts {
            query = query.bind(t.as_str());
        }
        for i in &q.ints {
            query = query.bind(*i);
        }
        let rows = query.fetch_all(&self.read).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let (create_event, revoke_event): (i64, Option<i64>) = (r.try_get(0)?, r.try_get(1)?);
            let fields = Self::history_fields(table, r, names)?;
            out.push(HistoryRow {
                table: HISTORY_TABLES
                    .iter()
                    .find(|t| **t == table)
                    .copied()
                    .unwrap_or("tag_listing"),
                create_event,
                revoke_event,
                fields,
            });
        }
        if table == "tag_packages" || table == "tag_package_owners" {
            out = spans(out, if table == "tag_packages" { "blocked" } else { "owner" });
        }
        if table == "tag_package_owners"
            && let Some(u) = f.user
        {
            out.retain(|r| r.fields.iter().any(|(k, v)| k == "owner" && v.as_i64() == Some(u)));
        }
        Ok(out)
    }

    fn history_fields(table: &str, r: &D::Row, n: &Names) -> Result<Vec<(String, J)>> {
        let f = |k: &str, v: J| (k.to_string(), v);
        Ok(match table {
            "tag_listing" => {
                let tag: i64 = r.try_get(2)?;
                let state: String = r.try_get(7)?;
                vec![
                    f("tag_id", J::from(tag)),
                    f("build_id", J::from(r.try_get::<i64, _>(3)?)),
                    f("tag.name", n.tag(tag)),
                    f("name", J::from(r.try_get::<String, _>(4)?)),
                    f("version", J::from(r.try_get::<String, _>(5)?)),
                    f("release", J::from(r.try_get::<String, _>(6)?)),
                    f("epoch", J::Null),
                    // kiln's state name; the protocol layer numbers it.
                    f("build.state", J::from(state)),
                ]
            }
            "tag_inheritance" => {
                let (tag, parent): (i64, i64) = (r.try_get(2)?, r.try_get(3)?);
                vec![
                    f("tag_id", J::from(tag)),
                    f("parent_id", J::from(parent)),
                    f("priority", J::from(r.try_get::<i64, _>(4)?)),
                    f("maxdepth", json!(r.try_get::<Option<i64>, _>(5)?)),
                    f("intransitive", J::from(r.try_get::<bool, _>(6)?)),
                    f("noconfig", J::from(r.try_get::<bool, _>(7)?)),
                    f("pkg_filter", J::from(r.try_get::<String, _>(8)?)),
                    f("tag.name", n.tag(tag)),
                    f("parent.name", n.tag(parent)),
                ]
            }
            "tag_config" => {
                let tag: i64 = r.try_get(2)?;
                let perm: Option<String> = r.try_get(4)?;
                vec![
                    f("tag_id", J::from(tag)),
                    f("arches", json!(r.try_get::<Option<String>, _>(3)?)),
                    f("perm_id", json!(perm.as_ref().and_then(|p| n.perms.get(p)))),
                    f("permission.name", json!(perm)),
                    f("locked", J::from(r.try_get::<bool, _>(5)?)),
                    f("maven_support", J::from(false)),
                    f("maven_include_all", J::from(false)),
                    f("tag.name", n.tag(tag)),
                ]
            }
            "tag_extra" => {
                let tag: i64 = r.try_get(2)?;
                vec![
                    f("tag_id", J::from(tag)),
                    f("key", J::from(r.try_get::<String, _>(3)?)),
                    f("value", json!(r.try_get::<Option<String>, _>(4)?)),
                    f("blocked", J::from(r.try_get::<bool, _>(5)?)),
                    f("tag.name", n.tag(tag)),
                ]
            }
            "tag_packages" | "tag_package_owners" => {
                let tag: i64 = r.try_get(2)?;
                let package: String = r.try_get(3)?;
                let owner: String = r.try_get(4)?;
                let mut v = vec![
                    f("package_id", json!(n.packages.get(&package))),
                    f("tag_id", J::from(tag)),
                    f("package.name", J::from(package)),
                    f("tag.name", n.tag(tag)),
                ];
                if table == "tag_packages" {
                    v.push(f("blocked", J::from(r.try_get::<bool, _>(5)?)));
                    v.push(f("extra_arches", J::Null));
                } else {
                    v.push(f("owner", json!(n.user_ids.get(&owner))));
                    v.push(f("owner.name", J::from(owner)));
                }
                v
            }
            "build_target_config" => {
                let (b, d): (i64, i64) = (r.try_get(4)?, r.try_get(5)?);
                vec![
                    f("build_target_id", J::from(r.try_get::<i64, _>(2)?)),
                    f("build_target.name", J::from(r.try_get::<String, _>(3)?)),
                    f("build_tag", J::from(b)),
                    f("dest_tag", J::from(d)),
                    f("build_tag.name", n.tag(b)),
                    f("dest_tag.name", n.tag(d)),
                ]
            }
            _ => {
                let user: i64 = r.try_get(2)?;
                let perm: String = r.try_get(3)?;
                vec![
                    f("user_id", J::from(user)),
                    f("perm_id", json!(n.perms.get(&perm))),
                    f("user.name", json!(n.users.get(&user))),
                    f("permission.name", J::from(perm)),
                ]
            }
        })
    }

    async fn history_names(&self) -> Result<Names> {
        let mut tags = HashMap::new();
        let rows = sqlx::query("SELECT tag_id, name FROM tag_names ORDER BY create_event, id")
            .fetch_all(&self.read)
            .await?;
        for r in rows {
            tags.insert(r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?);
        }
        let user_ids = self.koji_user_ids().await?;
        let users = user_ids.iter().map(|(n, i)| (*i, n.clone())).collect();
        let perms = self
            .koji_permissions()
            .await?
            .into_iter()
            .map(|(id, name, _)| (name, id))
            .collect();
        Ok(Names {
            tags,
            users,
            user_ids,
            perms,
            packages: self.koji_package_ids().await?,
        })
    }
}

/// Versions of one (tag, package) entry merged where `key`'s value held
/// from one to the next: Koji's separate tables, read from kiln's one.
fn spans(mut rows: Vec<HistoryRow>, key: &str) -> Vec<HistoryRow> {
    let field = |r: &HistoryRow, k: &str| r.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    rows.sort_by_key(|r| {
        (
            field(r, "tag_id").and_then(|v| v.as_i64()),
            field(r, "package.name").map(|v| v.to_string()),
            r.create_event,
        )
    });
    let mut out: Vec<HistoryRow> = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(last) = out.last_mut() {
            let same_entry = field(last, "tag_id") == field(&r, "tag_id")
                && field(last, "package.name") == field(&r, "package.name");
            if same_entry && last.revoke_event == Some(r.create_event) && field(last, key) == field(&r, key) {
                last.revoke_event = r.revoke_event;
                continue;
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(create: i64, revoke: Option<i64>, owner: &str, blocked: bool) -> HistoryRow {
        HistoryRow {
            table: "tag_packages",
            create_event: create,
            revoke_event: revoke,
            fields: vec![
                ("tag_id".into(), J::from(1)),
                ("package.name".into(), J::from("p")),
                ("owner".into(), J::from(owner)),
                ("blocked".into(), J::from(blocked)),
            ],
        }
    }

    #[test]
    fn versions_merge_while_their_value_holds() {
        // Owner a, then blocked (owner a), then owner b.
        let rows = vec![
            row(1, Some(2), "a", false),
            row(2, Some(3), "a", true),
            row(3, None, "b", true),
        ];
        let owners = spans(rows.clone(), "owner");
        let spans_of = |v: &[HistoryRow]| v.iter().map(|r| (r.create_event, r.revoke_event)).collect::<Vec<_>>();
        assert_eq!(spans_of(&owners), vec![(1, Some(3)), (3, None)]);
        let blocks = spans(rows, "blocked");
        assert_eq!(spans_of(&blocks), vec![(1, Some(2)), (2, None)]);
    }

    #[test]
    fn placeholders_number_texts_then_ints() {
        let mut q = Sql::default();
        q.int("a = ?", 1);
        q.text("b = ?", "x");
        q.int("c = ?", 2);
        assert_eq!(
            q.finish("SELECT 1 FROM t"),
            "SELECT 1 FROM t WHERE a = $2 AND b = $1 AND c = $3"
        );
    }
}
