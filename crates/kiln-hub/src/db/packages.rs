//! Package lists: a tag's own entries (added, blocked, removed) and the
//! list it inherits, filtered along the inheritance by `kiln_core::koji`.

use std::collections::{BTreeMap, HashMap};

use kiln_core::koji;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Current, Dialect, Key, Tx};
use crate::db::rules::{active, check_name, id_list};
use crate::error::{HubError, Result};
use crate::model::{PackageIn, PackageOut, Principal};

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
    pub(super) async fn package_lists<'e, E>(
        ex: E,
        ids: &[i64],
        event: Option<i64>,
    ) -> Result<HashMap<i64, Vec<koji::PkgEntry>>>
    where
        E: sqlx::Executor<'e, Database = D>,
    {
        let mut out: HashMap<i64, Vec<koji::PkgEntry>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let list = id_list(ids);
        let sql = format!(
            "SELECT tag_id, package, owner, blocked FROM tag_packages WHERE tag_id IN ({list}) AND {} ORDER BY package",
            active(event, 1, "")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        for r in q.fetch_all(ex).await? {
            let tag: i64 = r.try_get(0)?;
            out.entry(tag).or_default().push(koji::PkgEntry {
                package: r.try_get(1)?,
                tag,
                owner: r.try_get(2)?,
                blocked: r.try_get(3)?,
            });
        }
        Ok(out)
    }

    pub(super) async fn inherited_packages_tx(
        tx: &mut Tx<'_, D>,
        tag: i64,
    ) -> Result<BTreeMap<String, koji::PkgEntry>> {
        let set = koji::LinkSet(Self::links_from(&mut **tx, tag, false, None).await?);
        let walk = koji::full_inheritance(&set, tag, false);
        let mut ids = vec![tag];
        ids.extend(walk.iter().map(|w| w.link.parent));
        let lists = Self::package_lists(&mut **tx, &ids, None).await?;
        koji::inherited_packages(tag, &walk, &lists)
            .map_err(|e| HubError::bad_request(format!("invalid pkg_filter in the inheritance: {e}")))
    }

    pub async fn packages(&self, tag: &str, inherit: bool, event: Option<i64>) -> Result<Vec<PackageOut>> {
        let t = Self::tag_row(&self.read, tag, event).await?;
        let walk = if inherit {
            self.walk_ids(t.id, false, event).await?
        } else {
            Vec::new()
        };
        let mut ids = vec![t.id];
        ids.extend(walk.iter().map(|w| w.link.parent));
        let lists = Self::package_lists(&self.read, &ids, event).await?;
        let pk = koji::inherited_packages(t.id, &walk, &lists)
            .map_err(|e| HubError::bad_request(format!("invalid pkg_filter in the inheritance: {e}")))?;
        let names = Self::tag_names(&self.read, pk.values().map(|p| p.tag), event).await?;
        Ok(pk
            .into_values()
            .map(|p| PackageOut {
                package: p.package,
                owner: p.owner,
                blocked: p.blocked,
                tag: names.get(&p.tag).cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// Adds, blocks or unblocks a package on a tag's own list.
    pub async fn set_package(&self, who: &Principal, tag: &str, p: &PackageIn, force: bool) -> Result<()> {
        check_name("package name", &p.package)?;
        if let Some(o) = &p.owner {
            check_name("package owner", o)?;
        }
        let (mut tx, t) = self.begin_tag_change(who, tag, force).await?;
        let ev = Self::event(
            &mut tx,
            who,
            &format!(
                "{} package {} on {tag}",
                if p.blocked { "block" } else { "add" },
                p.package
            ),
        )
        .await?;
        let prev: Option<String> = sqlx::query_scalar(
            "SELECT owner FROM tag_packages WHERE tag_id = $1 AND package = $2 AND revoke_event IS NULL",
        )
        .bind(t.id)
        .bind(&p.package)
        .fetch_optional(&mut *tx)
        .await?;
        let owner = p.owner.clone().or(prev).unwrap_or_else(|| who.name.clone());
        Self::revoke_rows(&mut tx, ev, listed(t.id, &p.package)).await?;
        sqlx::query(
            "INSERT INTO tag_packages (tag_id, package, owner, blocked, create_event) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(t.id)
        .bind(&p.package)
        .bind(owner)
        .bind(p.blocked)
        .bind(ev)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a package entry from a tag's own list.
    pub async fn remove_package(&self, who: &Principal, tag: &str, package: &str, force: bool) -> Result<()> {
        let (tx, t) = self.begin_tag_change(who, tag, force).await?;
        Self::revoke_and_commit(
            tx,
            who,
            &format!("remove package {package} from {tag}"),
            listed(t.id, package),
            || HubError::not_found(format!("package {package} is not on {tag}'s own list")),
        )
        .await
    }
}

/// Package `package`'s current entry on tag `tag`'s own list.
fn listed(tag: i64, package: &str) -> Current<'_, 2> {
    Current::new(
        "tag_packages",
        "tag_id = $2 AND package = $3",
        [Key::Id(tag), Key::Text(package)],
    )
}
