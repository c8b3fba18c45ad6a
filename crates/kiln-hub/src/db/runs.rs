//! Pipeline runs (docs/pipelines.md): a run is numbered, records what
//! started it and what it resolved, and queues one task, all in one
//! transaction; a delivery id starts at most one run. A run that cannot
//! start is recorded with its error. When its task's build is recorded,
//! the run learns the build's NVR and commit, and an importing pipeline's
//! image joins the catalog in the same transaction.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect, Tx};
use crate::db::now;
use crate::error::{HubError, Result};
use crate::model::{NewBuild, NewTask, Page, PipelineRun, Principal};

/// What a run records before its task is made.
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    pub pipeline_id: i64,
    pub pipeline: String,
    /// `manual`, `github`, `gitlab`, `generic` or `source`.
    pub trigger: String,
    pub delivery: Option<String>,
    /// Who started a manual run.
    pub user_id: Option<i64>,
    pub git_ref: Option<String>,
    pub commit: Option<String>,
    /// NAME@VERSION.
    pub source: Option<String>,
}

/// Makes a run's task from its number: the task, and the NVR it will make.
pub type MakeTask<'a> = &'a (dyn Fn(i64) -> Result<(NewTask, String)> + Send + Sync);

const RUN_COLS: &str = "c.name, r.number, r.trigger, r.delivery, u.name, r.git_ref, r.commit_id, r.source, r.nvr, \
     r.task_id, t.state, r.error, r.created";
const RUN_FROM: &str = "pipeline_runs r \
     JOIN pipeline_config c ON c.pipeline_id = r.pipeline_id \
       AND c.create_event = (SELECT MAX(x.create_event) FROM pipeline_config x WHERE x.pipeline_id = r.pipeline_id) \
     LEFT JOIN users u ON u.id = r.user_id LEFT JOIN tasks t ON t.id = r.task_id";

/// A run's state from its task's.
fn run_state(task_state: Option<&str>) -> &'static str {
    match task_state {
        None => "error",
        Some("FREE") => "queued",
        Some("OPEN") => "running",
        Some("CLOSED") => "succeeded",
        Some("FAILED") => "failed",
        Some(_) => "canceled",
    }
}

/// The catalog's format of a build's file, by its name; None for files
/// that are not images the catalog holds.
fn catalog_format(file: &str) -> Option<&'static str> {
    ["tar.zst", "tar.xz", "tar.gz", "squashfs", "erofs", "tar", "iso"]
        .into_iter()
        .find(|f| file.strip_suffix(f).is_some_and(|stem| stem.ends_with('.')))
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
    fn run_row(r: &D::Row) -> Result<PipelineRun> {
        let state: Option<String> = r.try_get(10)?;
        Ok(PipelineRun {
            pipeline: r.try_get(0)?,
            run: r.try_get(1)?,
            trigger: r.try_get(2)?,
            delivery: r.try_get(3)?,
            user: r.try_get(4)?,
            git_ref: r.try_get(5)?,
            commit: r.try_get(6)?,
            source: r.try_get(7)?,
            nvr: r.try_get(8)?,
            task: r.try_get(9)?,
            state: run_state(state.as_deref()).to_string(),
            error: r.try_get(11)?,
            created: r.try_get(12)?,
        })
    }

    async fn run_by_number(&self, pipeline_id: i64, number: i64) -> Result<PipelineRun> {
        let sql = format!("SELECT {RUN_COLS} FROM {RUN_FROM} WHERE r.pipeline_id = $1 AND r.number = $2");
        let r = sqlx::query(&sql)
            .bind(pipeline_id)
            .bind(number)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| HubError::not_found(format!("no run {number}")))?;
        Self::run_row(&r)
    }

    /// Starts a run as `owner`: records it and queues its task, or records
    /// why it could not start (the error is returned beside the run).
    pub async fn start_run(
        &self,
        owner: &Principal,
        run: &NewRun,
        make: MakeTask<'_>,
    ) -> Result<(PipelineRun, Option<HubError>)> {
        let mut tx = self.begin_write().await?;
        if let Some(d) = &run.delivery {
            let seen: Option<i64> = sqlx::query_scalar(
                "SELECT number FROM pipeline_runs WHERE pipeline_id = $1 AND trigger = $2 AND delivery = $3",
            )
            .bind(run.pipeline_id)
            .bind(&run.trigger)
            .bind(d)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(n) = seen {
                return Err(HubError::conflict(format!(
                    "delivery {d} already started run {n} of pipeline {}",
                    run.pipeline
                )));
            }
        }
        let number: i64 = sqlx::query_scalar("UPDATE pipelines SET runs = runs + 1 WHERE id = $1 RETURNING runs")
            .bind(run.pipeline_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| HubError::not_found(format!("unknown pipeline `{}`", run.pipeline)))?;
        let queued = match make(number) {
            Ok((task, nvr)) => match self.check_task(owner, &task).await {
                Ok(designated) => Ok((task, nvr, designated)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (task_id, nvr, refused) = match queued {
            Ok((task, nvr, designated)) => {
                let owner_id = owner.id.ok_or_else(|| HubError::unauthorized("runs need an owner"))?;
                (
                    Some(Self::insert_task(&mut tx, owner_id, &task, designated).await?),
                    Some(nvr),
                    None,
                )
            }
            Err(e) => (None, None, Some(e)),
        };
        Self::insert_run(
            &mut tx,
            run,
            number,
            task_id,
            nvr.as_deref(),
            refused.as_ref().map(|e| &e.message[..]),
        )
        .await?;
        tx.commit().await?;
        Ok((self.run_by_number(run.pipeline_id, number).await?, refused))
    }

    async fn insert_run(
        tx: &mut Tx<'_, D>,
        run: &NewRun,
        number: i64,
        task: Option<i64>,
        nvr: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO pipeline_runs (pipeline_id, number, trigger, delivery, user_id, git_ref, commit_id, source, \
             nvr, task_id, error, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(run.pipeline_id)
        .bind(number)
        .bind(&run.trigger)
        .bind(run.delivery.as_deref())
        .bind(run.user_id)
        .bind(run.git_ref.as_deref())
        .bind(run.commit.as_deref())
        .bind(run.source.as_deref())
        .bind(nvr)
        .bind(task)
        .bind(error)
        .bind(now())
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            crate::db::rules::exists(e, || {
                format!(
                    "delivery {} already started a run of pipeline {}",
                    run.delivery.as_deref().unwrap_or("?"),
                    run.pipeline
                )
            })
        })?;
        Ok(())
    }

    /// A pipeline's runs, newest first.
    pub async fn list_runs(&self, pipeline_id: i64, offset: i64, limit: i64) -> Result<Page<PipelineRun>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pipeline_runs WHERE pipeline_id = $1")
            .bind(pipeline_id)
            .fetch_one(&self.read)
            .await?;
        let sql = format!(
            "SELECT {RUN_COLS} FROM {RUN_FROM} WHERE r.pipeline_id = $1 ORDER BY r.number DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql)
            .bind(pipeline_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.read)
            .await?;
        Ok(Page {
            items: rows.iter().map(Self::run_row).collect::<Result<_>>()?,
            total,
            offset,
            limit,
        })
    }

    /// The latest runs of every pipeline, newest first.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<PipelineRun>> {
        let sql = format!("SELECT {RUN_COLS} FROM {RUN_FROM} ORDER BY r.id DESC LIMIT $1");
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(Self::run_row).collect()
    }

    pub async fn pipeline_run(&self, pipeline_id: i64, number: i64) -> Result<PipelineRun> {
        self.run_by_number(pipeline_id, number).await
    }

    /// The run a task belongs to, if any.
    pub async fn run_of_task(&self, task: i64) -> Result<Option<PipelineRun>> {
        let sql = format!("SELECT {RUN_COLS} FROM {RUN_FROM} WHERE r.task_id = $1");
        let r = sqlx::query(&sql).bind(task).fetch_optional(&self.read).await?;
        r.as_ref().map(Self::run_row).transpose()
    }

    /// A run's build was recorded (in the transaction that records it):
    /// the run learns its NVR and commit, and when its pipeline imports
    /// results, the image file becomes NAME@VERSION-RELEASE of the
    /// catalog. Returns the imported image's name.
    pub(super) async fn run_built(
        tx: &mut Tx<'_, D>,
        task: i64,
        owner: i64,
        b: &NewBuild,
        keys: &[String],
        commit: Option<&str>,
    ) -> Result<Option<String>> {
        let nvr = format!("{}-{}-{}", b.name, b.version, b.release);
        let n =
            sqlx::query("UPDATE pipeline_runs SET nvr = $1, commit_id = COALESCE(commit_id, $2) WHERE task_id = $3")
                .bind(&nvr)
                .bind(commit)
                .bind(task)
                .execute(&mut **tx)
                .await?;
        if super::backend::RowsAffected::rows_affected(&n) == 0 {
            return Ok(None);
        }
        let imports: Option<Option<String>> = sqlx::query_scalar(
            "SELECT c.produces FROM pipeline_runs r JOIN pipeline_config c ON c.pipeline_id = r.pipeline_id \
             AND c.revoke_event IS NULL WHERE r.task_id = $1",
        )
        .bind(task)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(Some(_)) = imports else {
            return Ok(None);
        };
        let image = b
            .artifacts
            .iter()
            .zip(keys)
            .find_map(|(a, key)| catalog_format(&a.file).map(|f| (a, key, f)));
        let Some((a, key, format)) = image else {
            return Ok(None);
        };
        let version = format!("{}-{}", b.version, b.release);
        let n = sqlx::query(
            "INSERT INTO images (name, version, format, size, sha256, store_key, uploader_id, time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(&b.name)
        .bind(&version)
        .bind(format)
        .bind(a.size)
        .bind(&a.sha256)
        .bind(key)
        .bind(owner)
        .bind(now())
        .execute(&mut **tx)
        .await?;
        if super::backend::RowsAffected::rows_affected(&n) == 0 {
            // The build stands; the catalog keeps the image it had.
            sqlx::query("UPDATE pipeline_runs SET error = $1 WHERE task_id = $2")
                .bind(format!("not imported: the catalog already holds {}@{version}", b.name))
                .bind(task)
                .execute(&mut **tx)
                .await?;
            return Ok(None);
        }
        Ok(Some(b.name.clone()))
    }
}
