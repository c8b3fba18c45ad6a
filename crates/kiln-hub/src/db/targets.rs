//! Targets: a name for a build tag, a destination tag and the target's
//! macros, versioned like tags.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Current, Dialect, Key};
use crate::db::rules::{about, active, check_macro, check_name, exists};
use crate::error::{HubError, Result};
use crate::model::{Principal, Target};

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
    async fn target_row(&self, name: &str, event: Option<i64>) -> Result<(i64, Target)> {
        let sql = format!(
            "SELECT c.target_id, c.name, b.name, d.name, c.macros FROM target_config c \
             JOIN tag_names b ON b.tag_id = c.build_tag AND {} JOIN tag_names d ON d.tag_id = c.dest_tag AND {} \
             WHERE c.name = $1 AND {}",
            active(event, 2, "b"),
            active(event, 2, "d"),
            active(event, 2, "c")
        );
        let mut q = sqlx::query(&sql).bind(name);
        if let Some(e) = event {
            q = q.bind(e);
        }
        let r = q
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| HubError::not_found(format!("unknown target `{name}`")))?;
        let macros: String = r.try_get(4)?;
        Ok((
            r.try_get(0)?,
            Target {
                name: r.try_get(1)?,
                build_tag: r.try_get(2)?,
                dest_tag: r.try_get(3)?,
                macros: serde_json::from_str(&macros).unwrap_or_default(),
            },
        ))
    }

    pub async fn target(&self, name: &str, event: Option<i64>) -> Result<Target> {
        Ok(self.target_row(name, event).await?.1)
    }

    pub async fn list_targets(&self) -> Result<Vec<Target>> {
        let rows = sqlx::query(
            "SELECT c.name, b.name, d.name, c.macros FROM target_config c \
             JOIN tag_names b ON b.tag_id = c.build_tag AND b.revoke_event IS NULL \
             JOIN tag_names d ON d.tag_id = c.dest_tag AND d.revoke_event IS NULL \
             WHERE c.revoke_event IS NULL ORDER BY c.name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|r| {
                let macros: String = r.try_get(3)?;
                Ok(Target {
                    name: r.try_get(0)?,
                    build_tag: r.try_get(1)?,
                    dest_tag: r.try_get(2)?,
                    macros: serde_json::from_str(&macros).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Creates or replaces (`apply`) a target's whole configuration.
    pub async fn put_target(
        &self,
        who: &Principal,
        t: &Target,
        create_only: bool,
        replace: Option<&str>,
    ) -> Result<Target> {
        check_name("target name", &t.name)?;
        for (k, v) in &t.macros {
            check_macro("macro", k, v)?;
        }
        let mut tx = self.begin_write().await?;
        let b = Self::tag_row(&mut *tx, &t.build_tag, None)
            .await
            .map_err(|e| about("build_tag", e))?;
        let d = Self::tag_row(&mut *tx, &t.dest_tag, None)
            .await
            .map_err(|e| about("dest_tag", e))?;
        let lookup = replace.unwrap_or(&t.name);
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT target_id FROM target_config WHERE name = $1 AND revoke_event IS NULL")
                .bind(lookup)
                .fetch_optional(&mut *tx)
                .await?;
        if create_only && existing.is_some() {
            return Err(HubError::conflict(format!("target `{}` exists", t.name)));
        }
        if replace.is_some() && existing.is_none() {
            return Err(HubError::not_found(format!("unknown target `{lookup}`")));
        }
        let ev = Self::event(&mut tx, who, &format!("set target {}", t.name)).await?;
        let id = match existing {
            Some(id) => {
                let config = Current::new("target_config", "target_id = $2", [Key::Id(id)]);
                Self::revoke_rows(&mut tx, ev, config).await?;
                id
            }
            None => {
                sqlx::query_scalar("INSERT INTO targets DEFAULT VALUES RETURNING id")
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        let macros = serde_json::to_string(&t.macros).map_err(|e| HubError::internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO target_config (target_id, name, build_tag, dest_tag, macros, create_event) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(&t.name)
        .bind(b.id)
        .bind(d.id)
        .bind(macros)
        .bind(ev)
        .execute(&mut *tx)
        .await
        .map_err(|e| exists(e, || format!("target `{}` exists", t.name)))?;
        tx.commit().await?;
        self.target(&t.name, None).await
    }

    /// Deletes a target no pipeline uses.
    pub async fn delete_target(&self, who: &Principal, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::lock_pipelines(&mut tx).await?;
        let id: Option<i64> =
            sqlx::query_scalar("SELECT target_id FROM target_config WHERE name = $1 AND revoke_event IS NULL")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = id {
            let users = Self::pipelines_of_target(&mut tx, id).await?;
            if !users.is_empty() {
                return Err(HubError::conflict(format!(
                    "target {name} is used by pipeline {}: change or delete it first",
                    users.join(", ")
                )));
            }
        }
        Self::revoke_and_commit(
            tx,
            who,
            &format!("delete target {name}"),
            Current::new("target_config", "name = $2", [Key::Text(name)]),
            || HubError::not_found(format!("unknown target `{name}`")),
        )
        .await
    }
}
