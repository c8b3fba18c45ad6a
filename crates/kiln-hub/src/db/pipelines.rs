//! Pipelines (docs/pipelines.md): their versioned configuration, its
//! history, the hook secrets' rows (a nonce and a hash, never the secret),
//! and the loop check over the pipelines that import their results.

use std::collections::{BTreeMap, BTreeSet};

use kiln_core::pipeline::{ChainEdge, find_cycle};
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Current, Dialect, Key, Tx};
use crate::db::rules::{about, active, exists, id_list};
use crate::error::{HubError, Result};
use crate::model::{Pipeline, PipelineVersion, Principal};
use crate::pipelines::Checked;

/// How a configuration is saved.
#[derive(Clone, Copy, Debug)]
pub enum Save<'a> {
    /// A new pipeline; its name must be free.
    Create,
    /// Create or replace the pipeline of this name (`kiln pipeline apply`).
    Apply,
    /// Replace the pipeline now named this (an edit, maybe a rename).
    Edit(&'a str),
}

/// A hook's stored secret material.
#[derive(Clone, Debug)]
pub struct HookRow {
    pub pipeline_id: i64,
    pub nonce: String,
    pub secret_sha256: String,
}

/// A pipeline's current configuration with the ids the hub needs.
#[derive(Clone, Debug)]
pub struct PipelineRow {
    pub id: i64,
    pub owner_id: i64,
    /// When this configuration was saved.
    pub saved: i64,
    pub config: Pipeline,
}

const COLS: &str = "c.pipeline_id, c.name, c.config, t.name, u.name, c.owner_id, e.time";

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
    fn from_sql(event: Option<i64>) -> String {
        format!(
            "FROM pipeline_config c JOIN users u ON u.id = c.owner_id JOIN events e ON e.id = c.create_event \
             JOIN target_config t ON t.target_id = c.target_id AND {} WHERE {}",
            active(event, 1, "t"),
            active(event, 1, "c")
        )
    }

    /// Reads a configuration row; the hooks are added by the caller.
    fn config_row(r: &D::Row) -> Result<PipelineRow> {
        let json: String = r.try_get(2)?;
        let name: String = r.try_get(1)?;
        let mut config: Pipeline = serde_json::from_str(&json)
            .map_err(|e| HubError::internal(format!("pipeline {name}: stored configuration: {e}")))?;
        config.name = name;
        config.target = r.try_get(3)?;
        config.owner = Some(r.try_get(4)?);
        Ok(PipelineRow {
            id: r.try_get(0)?,
            owner_id: r.try_get(5)?,
            saved: r.try_get(6)?,
            config,
        })
    }

    async fn hook_services(&self, ids: &[i64], event: Option<i64>) -> Result<BTreeMap<i64, Vec<String>>> {
        let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT pipeline_id, service FROM pipeline_hooks WHERE pipeline_id IN ({}) AND {} ORDER BY service",
            id_list(ids),
            active(event, 1, "")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        for r in q.fetch_all(&self.read).await? {
            out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
        }
        Ok(out)
    }

    /// The pipeline named `name` now, or as of `event`.
    pub async fn pipeline_row(&self, name: &str, event: Option<i64>) -> Result<PipelineRow> {
        let sql = format!(
            "SELECT {COLS} {} AND c.name = ${}",
            Self::from_sql(event),
            if event.is_some() { 2 } else { 1 }
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        let r = q
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| HubError::not_found(format!("unknown pipeline `{name}`")))?;
        let mut row = Self::config_row(&r)?;
        row.config.hooks = self
            .hook_services(&[row.id], event)
            .await?
            .remove(&row.id)
            .unwrap_or_default();
        Ok(row)
    }

    pub async fn pipeline(&self, name: &str, event: Option<i64>) -> Result<Pipeline> {
        Ok(self.pipeline_row(name, event).await?.config)
    }

    pub async fn list_pipelines(&self) -> Result<Vec<Pipeline>> {
        let sql = format!("SELECT {COLS} {} ORDER BY c.name", Self::from_sql(None));
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        let mut rows: Vec<PipelineRow> = rows.iter().map(Self::config_row).collect::<Result<_>>()?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut hooks = self.hook_services(&ids, None).await?;
        for r in &mut rows {
            r.config.hooks = hooks.remove(&r.id).unwrap_or_default();
        }
        Ok(rows.into_iter().map(|r| r.config).collect())
    }

    /// The pipelines that run when a new version of image `source` arrives
    /// (of any image, without one).
    pub async fn chained_pipelines(&self, source: Option<&str>) -> Result<Vec<PipelineRow>> {
        let sql = format!(
            "SELECT {COLS} {} AND c.chain_source IS NOT NULL AND ($1 IS NULL OR c.chain_source = $1) ORDER BY c.name",
            Self::from_sql(None)
        );
        let rows = sqlx::query(&sql).bind(source).fetch_all(&self.read).await?;
        rows.iter().map(Self::config_row).collect()
    }

    /// Saves a configuration `crate::pipelines::check` passed; `who` becomes its owner.
    pub async fn put_pipeline(
        &self,
        who: &Principal,
        p: &Pipeline,
        checked: &Checked,
        save: Save<'_>,
    ) -> Result<Pipeline> {
        let owner = who
            .id
            .ok_or_else(|| HubError::unauthorized("log in to save pipelines"))?;
        let mut tx = self.begin_write().await?;
        Self::lock_pipelines(&mut tx).await?;
        let target: i64 =
            sqlx::query_scalar("SELECT target_id FROM target_config WHERE name = $1 AND revoke_event IS NULL")
                .bind(&p.target)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| about("target", HubError::not_found(format!("unknown target `{}`", p.target))))?;
        if let Some(b) = &p.builder {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hosts WHERE name = $1")
                .bind(b)
                .fetch_one(&mut *tx)
                .await?;
            if n == 0 {
                return Err(HubError::not_found(format!("builder: unknown builder `{b}`")));
            }
        }
        let lookup = match save {
            Save::Edit(old) => old,
            _ => p.name.as_str(),
        };
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT pipeline_id FROM pipeline_config WHERE name = $1 AND revoke_event IS NULL")
                .bind(lookup)
                .fetch_optional(&mut *tx)
                .await?;
        match (save, existing) {
            (Save::Create, Some(_)) => return Err(HubError::conflict(format!("pipeline `{}` exists", p.name))),
            (Save::Edit(old), None) => return Err(HubError::not_found(format!("unknown pipeline `{old}`"))),
            _ => {}
        }
        Self::check_loops(&mut tx, existing, p, checked).await?;
        let ev = Self::event(&mut tx, who, &format!("set pipeline {}", p.name)).await?;
        let id = match existing {
            Some(id) => {
                let rows = Current::new("pipeline_config", "pipeline_id = $2", [Key::Id(id)]);
                Self::revoke_rows(&mut tx, ev, rows).await?;
                id
            }
            None => {
                sqlx::query_scalar("INSERT INTO pipelines (runs) VALUES (0) RETURNING id")
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        let stored = Pipeline {
            owner: None,
            hooks: Vec::new(),
            ..p.clone()
        };
        let json = serde_json::to_string(&stored).map_err(|e| HubError::internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO pipeline_config (pipeline_id, name, kind, target_id, owner_id, chain_source, produces, \
             config, create_event) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(&p.name)
        .bind(p.kind.as_str())
        .bind(target)
        .bind(owner)
        .bind(checked.chain_source.as_deref())
        .bind(checked.produces.as_deref())
        .bind(json)
        .bind(ev)
        .execute(&mut *tx)
        .await
        .map_err(|e| exists(e, || format!("pipeline `{}` exists", p.name)))?;
        tx.commit().await?;
        self.pipeline(&p.name, None).await
    }

    /// Refuses a configuration that would close a loop of pipelines each
    /// importing the next one's source (itself included).
    async fn check_loops(tx: &mut Tx<'_, D>, id: Option<i64>, p: &Pipeline, checked: &Checked) -> Result<()> {
        let (Some(source), Some(produces)) = (&checked.source_name, &checked.produces) else {
            return Ok(());
        };
        let rows = sqlx::query(
            "SELECT pipeline_id, name, config, produces FROM pipeline_config \
             WHERE revoke_event IS NULL AND produces IS NOT NULL",
        )
        .fetch_all(&mut **tx)
        .await?;
        let mut edges = vec![ChainEdge {
            pipeline: p.name.clone(),
            source: source.clone(),
            produces: produces.clone(),
        }];
        for r in rows {
            let other: i64 = r.try_get(0)?;
            if Some(other) == id {
                continue;
            }
            let config: String = r.try_get(2)?;
            let source = serde_json::from_str::<Pipeline>(&config)
                .ok()
                .and_then(|c| c.source)
                .and_then(|s| kiln_core::pipeline::parse_source(&s).ok());
            if let Some(s) = source {
                edges.push(ChainEdge {
                    pipeline: r.try_get(1)?,
                    source: s.name,
                    produces: r.try_get(3)?,
                });
            }
        }
        match find_cycle(&edges) {
            None => Ok(()),
            Some(names) => Err(HubError::conflict(format!(
                "pipelines would loop, each importing the next one's source: {}",
                names.join(" → ")
            ))),
        }
    }

    /// Deletes a pipeline: its configuration and its hook secrets. Its runs stay.
    pub async fn delete_pipeline(&self, who: &Principal, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id: i64 =
            sqlx::query_scalar("SELECT pipeline_id FROM pipeline_config WHERE name = $1 AND revoke_event IS NULL")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| HubError::not_found(format!("unknown pipeline `{name}`")))?;
        let ev = Self::event(&mut tx, who, &format!("delete pipeline {name}")).await?;
        Self::revoke_rows(
            &mut tx,
            ev,
            Current::new("pipeline_config", "pipeline_id = $2", [Key::Id(id)]),
        )
        .await?;
        Self::revoke_rows(
            &mut tx,
            ev,
            Current::new("pipeline_hooks", "pipeline_id = $2", [Key::Id(id)]),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The pipeline id a name has now, or else last had.
    async fn pipeline_id_ever(&self, name: &str) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT pipeline_id FROM pipeline_config WHERE name = $1 ORDER BY (revoke_event IS NULL) DESC, \
             create_event DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| HubError::not_found(format!("unknown pipeline `{name}`")))
    }

    /// Every change to the pipeline named `name` (or the last one that had
    /// the name): its configurations and its hook secrets, by event.
    pub async fn pipeline_history(&self, name: &str) -> Result<Vec<PipelineVersion>> {
        let id = self.pipeline_id_ever(name).await?;
        let configs = sqlx::query(
            "SELECT c.config, c.name, t.name, u.name, c.create_event, c.revoke_event FROM pipeline_config c \
             JOIN users u ON u.id = c.owner_id \
             LEFT JOIN target_config t ON t.target_id = c.target_id AND t.create_event <= c.create_event \
               AND (t.revoke_event IS NULL OR t.revoke_event > c.create_event) \
             WHERE c.pipeline_id = $1 ORDER BY c.create_event",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        let mut by_event: BTreeMap<i64, Option<Pipeline>> = BTreeMap::new();
        let mut revoked: BTreeMap<i64, i64> = BTreeMap::new();
        for r in &configs {
            let json: String = r.try_get(0)?;
            let mut p: Pipeline = serde_json::from_str(&json).map_err(|e| HubError::internal(e.to_string()))?;
            p.name = r.try_get(1)?;
            if let Some(t) = r.try_get::<Option<String>, _>(2)? {
                p.target = t;
            }
            p.owner = Some(r.try_get(3)?);
            let create: i64 = r.try_get(4)?;
            if let Some(rev) = r.try_get::<Option<i64>, _>(5)? {
                revoked.insert(create, rev);
                by_event.entry(rev).or_insert(None);
            }
            by_event.insert(create, Some(p));
        }
        let hooks = sqlx::query("SELECT create_event, revoke_event FROM pipeline_hooks WHERE pipeline_id = $1")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        for r in hooks {
            by_event.entry(r.try_get(0)?).or_insert(None);
            if let Some(rev) = r.try_get::<Option<i64>, _>(1)? {
                by_event.entry(rev).or_insert(None);
            }
        }
        let ids: BTreeSet<i64> = by_event.keys().copied().collect();
        let events = self.event_rows(&ids.into_iter().collect::<Vec<_>>()).await?;
        Ok(by_event
            .into_iter()
            .filter_map(|(ev, config)| {
                let (time, user, action) = events.get(&ev)?.clone();
                Some(PipelineVersion {
                    event: ev,
                    time,
                    user,
                    action,
                    revoked: config.as_ref().and_then(|_| revoked.get(&ev).copied()),
                    config,
                })
            })
            .collect())
    }

    /// Time, user name and action of each event.
    async fn event_rows(&self, ids: &[i64]) -> Result<BTreeMap<i64, (i64, Option<String>, String)>> {
        let mut out = BTreeMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT e.id, e.time, u.name, e.action FROM events e LEFT JOIN users u ON u.id = e.user_id \
             WHERE e.id IN ({})",
            id_list(ids)
        );
        for r in sqlx::query(&sql).fetch_all(&self.read).await? {
            out.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
        }
        Ok(out)
    }

    /// Sets (or replaces) a hook's secret material.
    pub async fn set_hook(&self, who: &Principal, name: &str, service: &str, nonce: &str, sha256: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id: i64 =
            sqlx::query_scalar("SELECT pipeline_id FROM pipeline_config WHERE name = $1 AND revoke_event IS NULL")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| HubError::not_found(format!("unknown pipeline `{name}`")))?;
        let ev = Self::event(
            &mut tx,
            who,
            &format!("set the {service} hook secret of pipeline {name}"),
        )
        .await?;
        let rows = Current::new(
            "pipeline_hooks",
            "pipeline_id = $2 AND service = $3",
            [Key::Id(id), Key::Text(service)],
        );
        Self::revoke_rows(&mut tx, ev, rows).await?;
        sqlx::query(
            "INSERT INTO pipeline_hooks (pipeline_id, service, nonce, secret_sha256, create_event) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(service)
        .bind(nonce)
        .bind(sha256)
        .bind(ev)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a hook's secret: the hook refuses every delivery after it.
    pub async fn remove_hook(&self, who: &Principal, name: &str, service: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id: i64 =
            sqlx::query_scalar("SELECT pipeline_id FROM pipeline_config WHERE name = $1 AND revoke_event IS NULL")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| HubError::not_found(format!("unknown pipeline `{name}`")))?;
        let ev = Self::event(&mut tx, who, &format!("remove the {service} hook of pipeline {name}")).await?;
        let rows = Current::new(
            "pipeline_hooks",
            "pipeline_id = $2 AND service = $3",
            [Key::Id(id), Key::Text(service)],
        );
        Self::revoke_existing(&mut tx, ev, rows, || {
            HubError::not_found(format!("pipeline {name} has no {service} hook"))
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A hook's secret material, if the pipeline has one for `service`.
    pub async fn hook(&self, pipeline_id: i64, service: &str) -> Result<Option<HookRow>> {
        let r = sqlx::query(
            "SELECT nonce, secret_sha256 FROM pipeline_hooks WHERE pipeline_id = $1 AND service = $2 \
             AND revoke_event IS NULL",
        )
        .bind(pipeline_id)
        .bind(service)
        .fetch_optional(&self.read)
        .await?;
        r.map(|r| {
            Ok(HookRow {
                pipeline_id,
                nonce: r.try_get(0)?,
                secret_sha256: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// User `id` as a principal, with the permissions it holds now (runs
    /// that hooks and new sources start act as the pipeline's owner).
    pub async fn user_principal(&self, id: i64) -> Result<Principal> {
        let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| HubError::not_found(format!("no user {id}")))?;
        let perms: Vec<String> =
            sqlx::query_scalar("SELECT perm FROM user_perms WHERE user_id = $1 AND revoke_event IS NULL ORDER BY perm")
                .bind(id)
                .fetch_all(&self.read)
                .await?;
        Ok(Principal {
            id: Some(id),
            name,
            admin: perms.iter().any(|p| p == "admin"),
            perms,
            host: None,
        })
    }

    /// The active pipelines that use target `target_id` (a target in use
    /// cannot be deleted).
    pub(super) async fn pipelines_of_target(tx: &mut Tx<'_, D>, target_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM pipeline_config WHERE target_id = $1 AND revoke_event IS NULL ORDER BY name",
        )
        .bind(target_id)
        .fetch_all(&mut **tx)
        .await?)
    }
}
