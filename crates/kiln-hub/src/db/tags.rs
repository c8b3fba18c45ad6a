//! Tags: their names, configuration (arches, permission, lock) and extra
//! values, created, read as of an event, edited, renamed and deleted.
//!
//! A tag is an id (`tags`); everything else is versioned, its name
//! included (`tag_names`): a deletion or a rename is an event like any
//! other change, reads as of an earlier event still see the tag as it was,
//! and a deleted tag's name may be given to a new tag (docs/hub.md,
//! "Versioned data").

use std::collections::{BTreeMap, HashMap};

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Current, Dialect, Key, Tx};
use crate::db::rules::{about, active, check_new_tag, check_tag_edit, exists, id_list, json_text, parse_json};
use crate::error::{HubError, Result};
use crate::model::{ExtraValue, NewTag, Page, Principal, TagEdit, TagInfo};

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
    pub async fn create_tag(&self, who: &Principal, t: &NewTag) -> Result<TagInfo> {
        check_new_tag(t)?;
        let mut tx = self.begin_write().await?;
        let ev = Self::event(&mut tx, who, &format!("create tag {}", t.name)).await?;
        // `slot` means nothing but must be unique: `#` and the id (until
        // the id is known, `#new-` and this tag's own event).
        let id: i64 = sqlx::query_scalar("INSERT INTO tags (slot) VALUES ($1) RETURNING id")
            .bind(format!("#new-{ev}"))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE tags SET slot = '#' || id WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Self::name_tag(&mut tx, id, &t.name, ev).await?;
        sqlx::query("INSERT INTO tag_config (tag_id, arches, perm, locked, create_event) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(&t.arches)
            .bind(&t.perm)
            .bind(t.locked)
            .bind(ev)
            .execute(&mut *tx)
            .await?;
        for (k, v) in &t.extra {
            sqlx::query(
                "INSERT INTO tag_extra (tag_id, key, value, blocked, create_event) VALUES ($1, $2, $3, FALSE, $4)",
            )
            .bind(id)
            .bind(k)
            .bind(json_text(v))
            .bind(ev)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(p) = &t.parent {
            let parent = Self::tag_row(&mut *tx, p, None).await.map_err(|e| about("parent", e))?;
            sqlx::query(
                "INSERT INTO tag_inheritance (tag_id, parent_id, priority, maxdepth, intransitive, noconfig, \
                 pkg_filter, create_event) VALUES ($1, $2, 0, NULL, FALSE, FALSE, '', $3)",
            )
            .bind(id)
            .bind(parent.id)
            .bind(ev)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.tag_info(&t.name, None).await
    }

    pub async fn tag_info(&self, name: &str, event: Option<i64>) -> Result<TagInfo> {
        let t = Self::tag_row(&self.read, name, event).await?;
        let sql = format!(
            "SELECT key, value, blocked FROM tag_extra WHERE tag_id = $1 AND {} ORDER BY key",
            active(event, 2, "")
        );
        let mut q = sqlx::query(&sql).bind(t.id);
        if let Some(e) = event {
            q = q.bind(e);
        }
        let mut extra = BTreeMap::new();
        for r in q.fetch_all(&self.read).await? {
            let (k, v, b): (String, Option<String>, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            extra.insert(
                k,
                ExtraValue {
                    value: parse_json(v),
                    blocked: b,
                },
            );
        }
        Ok(TagInfo {
            id: t.id,
            name: t.name,
            arches: t.arches,
            perm: t.perm,
            locked: t.locked,
            extra,
        })
    }

    /// The tags whose name now is LIKE `pattern` (`\\` escaping), by name.
    pub async fn search_tags(&self, pattern: Option<&str>, offset: i64, limit: i64) -> Result<Page<TagInfo>> {
        let Some(pattern) = pattern else {
            return self.list_tags(offset, limit, None).await;
        };
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tag_names WHERE revoke_event IS NULL AND name LIKE $1 ESCAPE '\\'",
        )
        .bind(pattern)
        .fetch_one(&self.read)
        .await?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tag_names WHERE revoke_event IS NULL AND name LIKE $1 ESCAPE '\\' \
             ORDER BY name LIMIT $2 OFFSET $3",
        )
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        let mut items = Vec::with_capacity(names.len());
        for n in names {
            items.push(self.tag_info(&n, None).await?);
        }
        Ok(Page {
            items,
            total,
            offset,
            limit,
        })
    }

    pub async fn list_tags(&self, offset: i64, limit: i64, event: Option<i64>) -> Result<Page<TagInfo>> {
        let (offset, limit) = (offset.max(0), limit.max(0));
        let count_sql = format!(
            "SELECT COUNT(*) FROM tag_names n JOIN tag_config c ON c.tag_id = n.tag_id WHERE {} AND {}",
            active(event, 1, "n"),
            active(event, 1, "c")
        );
        let mut q = sqlx::query_scalar::<_, i64>(&count_sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        let total = q.fetch_one(&self.read).await?;
        // One query for the page, one for its extra.
        let sql = format!(
            "SELECT n.tag_id, n.name, c.arches, c.perm, c.locked FROM tag_names n \
             JOIN tag_config c ON c.tag_id = n.tag_id WHERE {} AND {} ORDER BY n.name LIMIT {limit} OFFSET {offset}",
            active(event, 1, "n"),
            active(event, 1, "c")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        let mut items = Vec::new();
        for r in q.fetch_all(&self.read).await? {
            items.push(TagInfo {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                arches: r.try_get(2)?,
                perm: r.try_get(3)?,
                locked: r.try_get(4)?,
                extra: BTreeMap::new(),
            });
        }
        if !items.is_empty() {
            let ids: Vec<i64> = items.iter().map(|t| t.id).collect();
            let sql = format!(
                "SELECT tag_id, key, value, blocked FROM tag_extra WHERE tag_id IN ({}) AND {}",
                id_list(&ids),
                active(event, 1, "")
            );
            let mut q = sqlx::query(&sql);
            if let Some(e) = event {
                q = q.bind(e);
            }
            let mut extra: HashMap<i64, BTreeMap<String, ExtraValue>> = HashMap::new();
            for r in q.fetch_all(&self.read).await? {
                let (id, k, v, b): (i64, String, Option<String>, bool) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                extra.entry(id).or_default().insert(
                    k,
                    ExtraValue {
                        value: parse_json(v),
                        blocked: b,
                    },
                );
            }
            for t in &mut items {
                t.extra = extra.remove(&t.id).unwrap_or_default();
            }
        }
        Ok(Page {
            items,
            total,
            offset,
            limit,
        })
    }

    pub async fn edit_tag(&self, who: &Principal, name: &str, e: &TagEdit) -> Result<TagInfo> {
        check_tag_edit(e)?;
        let mut tx = self.begin_write().await?;
        let t = Self::tag_for_change(&mut tx, name).await?;
        if let Some(p) = &t.perm
            && !who.has(p)
        {
            return Err(HubError::forbidden(format!("tag {name} requires the `{p}` permission")));
        }
        if (e.locked.is_some() || e.perm.is_some()) && !who.admin {
            return Err(HubError::forbidden(format!(
                "only admins lock, unlock or set the permission of a tag ({name})"
            )));
        }
        if t.locked && !who.admin {
            return Err(HubError::locked(format!("tag {name} is locked")));
        }
        let ev = Self::event(&mut tx, who, &format!("edit tag {name}")).await?;
        let mut final_name = name.to_string();
        if let Some(new) = e.rename.as_ref().filter(|new| **new != t.name) {
            Self::revoke_rows(&mut tx, ev, Current::new("tag_names", "tag_id = $2", [Key::Id(t.id)])).await?;
            Self::name_tag(&mut tx, t.id, new, ev).await?;
            final_name = new.clone();
        }
        if e.arches.is_some() || e.perm.is_some() || e.locked.is_some() {
            Self::revoke_rows(&mut tx, ev, Current::new("tag_config", "tag_id = $2", [Key::Id(t.id)])).await?;
            sqlx::query(
                "INSERT INTO tag_config (tag_id, arches, perm, locked, create_event) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(t.id)
            .bind(e.arches.clone().unwrap_or(t.arches))
            .bind(e.perm.clone().unwrap_or(t.perm))
            .bind(e.locked.unwrap_or(t.locked))
            .bind(ev)
            .execute(&mut *tx)
            .await?;
        }
        let mut changes: Vec<(&str, Option<String>, bool)> = Vec::new();
        for (k, v) in &e.extra {
            changes.push((k, Some(json_text(v)), false));
        }
        for k in &e.block_extra {
            changes.push((k, None, true));
        }
        for (k, value, blocked) in changes {
            Self::revoke_rows(&mut tx, ev, extra(t.id, k)).await?;
            sqlx::query(
                "INSERT INTO tag_extra (tag_id, key, value, blocked, create_event) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(t.id)
            .bind(k)
            .bind(value)
            .bind(blocked)
            .bind(ev)
            .execute(&mut *tx)
            .await?;
        }
        for k in &e.remove_extra {
            Self::revoke_existing(&mut tx, ev, extra(t.id, k), || {
                HubError::not_found(format!("tag {name} has no extra `{k}`"))
            })
            .await?;
        }
        tx.commit().await?;
        self.tag_info(&final_name, None).await
    }

    /// Deletes a tag: its name, config, extra, links (both ways),
    /// package list and listings are revoked by one event, so reads as of
    /// an earlier event still see it and the name is free for a new tag;
    /// targets using it keep it alive.
    pub async fn delete_tag(&self, who: &Principal, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let t = Self::tag_for_change(&mut tx, name).await?;
        if let Some(p) = &t.perm
            && !who.has(p)
        {
            return Err(HubError::forbidden(format!("tag {name} requires the `{p}` permission")));
        }
        if t.locked && !who.admin {
            return Err(HubError::locked(format!("tag {name} is locked")));
        }
        let used: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM target_config WHERE revoke_event IS NULL AND (build_tag = $1 OR dest_tag = $1) \
             ORDER BY name",
        )
        .bind(t.id)
        .fetch_all(&mut *tx)
        .await?;
        if !used.is_empty() {
            return Err(HubError::conflict(format!(
                "tag {name} is used by target(s) {}",
                used.join(", ")
            )));
        }
        let ev = Self::event(&mut tx, who, &format!("delete tag {name}")).await?;
        for (table, filter) in [
            ("tag_names", "tag_id = $2"),
            ("tag_config", "tag_id = $2"),
            ("tag_extra", "tag_id = $2"),
            ("tag_inheritance", "(tag_id = $2 OR parent_id = $2)"),
            ("tag_packages", "tag_id = $2"),
            ("tag_listing", "tag_id = $2"),
        ] {
            Self::revoke_rows(&mut tx, ev, Current::new(table, filter, [Key::Id(t.id)])).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives tag `id` the name `name` from event `ev`: a conflict when
    /// another tag has it now.
    async fn name_tag(tx: &mut Tx<'_, D>, id: i64, name: &str, ev: i64) -> Result<()> {
        sqlx::query("INSERT INTO tag_names (tag_id, name, create_event) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(ev)
            .execute(&mut **tx)
            .await
            .map_err(|e| exists(e, || format!("tag `{name}` exists")))?;
        Ok(())
    }
}

/// Tag `tag`'s current extra value `key`.
fn extra(tag: i64, key: &str) -> Current<'_, 2> {
    Current::new("tag_extra", "tag_id = $2 AND key = $3", [Key::Id(tag), Key::Text(key)])
}
