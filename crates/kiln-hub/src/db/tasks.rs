//! Tasks (docs/hub.md): submitted, claimed by hosts under a lease,
//! finished, released, cancelled; their logs; and the checks a build or
//! update request passes before it is queued.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect, RowsAffected, Tx};
use crate::db::now;
use crate::db::rules::{
    PRIORITIES, about, check_name, check_range, check_task_request, json_text, may_change, parse_json,
};
use crate::error::{HubError, Result};
use crate::model::{NewTask, Page, Principal, Task, TaskRequest};

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
    /// Tasks whose lease ran out go back to FREE, or to FAILED
    /// once they used all their attempts.
    pub async fn expire_leases(&self, t: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let failed = sqlx::query(
            "UPDATE tasks SET state = 'FAILED', finished = $1, lease_expires = NULL, \
             result = '{\"error\": \"the builder stopped answering (lease expired) on the last attempt\"}' \
             WHERE state = 'OPEN' AND lease_expires < $1 AND attempts >= max_attempts",
        )
        .bind(t)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let freed = sqlx::query(
            "UPDATE tasks SET state = 'FREE', host_id = NULL, lease_expires = NULL \
             WHERE state = 'OPEN' AND lease_expires < $1",
        )
        .bind(t)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(failed + freed)
    }

    /// Claims the next FREE task this host may run: designated to
    /// it or to nobody, on one of its channels, of its arch (or
    /// noarch), lowest priority first; none when it is at capacity.
    pub async fn claim(&self, who: &Principal) -> Result<Option<Task>> {
        let (host, arch, channels, capacity) = self.host_of(who).await?;
        let t = now();
        // Channel names are checked names: safe as literals. One
        // statement: the capacity check, the pick and the claim.
        let chans = channels
            .iter()
            .map(|c| format!("'{}'", c.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(",");
        let update = format!(
            "UPDATE tasks SET state = 'OPEN', host_id = $1, attempts = attempts + 1, lease_expires = $2, \
             started = $3 WHERE state = 'FREE' AND id = (SELECT id FROM tasks WHERE state = 'FREE' \
             AND (designated_host IS NULL OR designated_host = $1) AND (arch = $4 OR arch = 'noarch') \
             AND channel IN ({chans}) ORDER BY priority, id LIMIT 1 {skip}) \
             AND (SELECT COUNT(*) FROM tasks o WHERE o.host_id = $1 AND o.state = 'OPEN') < $5",
            skip = D::SKIP_LOCKED
        );
        let sql = if D::DML_IN_WITH {
            // One round trip: the claimed row comes back with its
            // names. The outer query reads the CTE's new row
            // (`tasks` itself it would see as before the update).
            format!(
                "WITH t AS ({update} RETURNING *) SELECT {} FROM {}",
                Self::TASK_COLS,
                Self::TASK_FROM.replacen("tasks t", "t", 1)
            )
        } else {
            format!("{update} RETURNING id")
        };
        let row = sqlx::query(&sql)
            .bind(host)
            .bind(t + self.lease)
            .bind(t)
            .bind(&arch)
            .bind(capacity)
            .fetch_optional(&self.write)
            .await?;
        match row {
            None => Ok(None),
            Some(r) if D::DML_IN_WITH => Self::task_row(&r).map(Some),
            Some(r) => Ok(Some(self.task(r.try_get(0)?).await?)),
        }
    }

    /// A builder reports a task's end.
    pub async fn finish_task(&self, who: &Principal, id: i64, ok: bool, result: &serde_json::Value) -> Result<Task> {
        let (host, ..) = self.host_of(who).await?;
        let n = sqlx::query(
            "UPDATE tasks SET state = $1, result = $2, finished = $3, lease_expires = NULL \
             WHERE id = $4 AND host_id = $5 AND state = 'OPEN'",
        )
        .bind(if ok { "CLOSED" } else { "FAILED" })
        .bind(json_text(result))
        .bind(now())
        .bind(id)
        .bind(host)
        .execute(&self.write)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(HubError::conflict(format!(
                "task {id} is not open on {} (cancelled, or its lease expired)",
                who.name
            )));
        }
        self.task(id).await
    }

    pub async fn submit_task(&self, who: &Principal, t: &NewTask) -> Result<Task> {
        let owner = who.id.ok_or_else(|| HubError::unauthorized("log in to submit tasks"))?;
        let designated = self.check_task(who, t).await?;
        let mut tx = self.begin_write().await?;
        if let Some(p) = t.parent {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE id = $1")
                .bind(p)
                .fetch_one(&mut *tx)
                .await?;
            if n == 0 {
                return Err(HubError::not_found(format!("parent: no task {p}")));
            }
        }
        let id = Self::insert_task(&mut tx, owner, t, designated).await?;
        tx.commit().await?;
        self.task(id).await
    }

    /// Checks a task before it is queued (its placement, its request, and
    /// that `who` may publish where it will); returns the designated
    /// builder's id.
    pub(super) async fn check_task(&self, who: &Principal, t: &NewTask) -> Result<Option<i64>> {
        check_name("channel", &t.channel)?;
        check_name("arch", &t.arch)?;
        check_range("max_attempts", t.max_attempts, 1..=100)?;
        check_range("priority", t.priority, PRIORITIES)?;
        if who.id.is_none() {
            return Err(HubError::unauthorized("log in to submit tasks"));
        }
        self.check_build_request(who, t).await?;
        match &t.builder {
            Some(b) => Ok(Some(
                sqlx::query_scalar("SELECT id FROM hosts WHERE name = $1")
                    .bind(b)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| HubError::not_found(format!("unknown builder `{b}`")))?,
            )),
            None => Ok(None),
        }
    }

    /// Queues a checked task; returns its id.
    pub(super) async fn insert_task(
        tx: &mut Tx<'_, D>,
        owner: i64,
        t: &NewTask,
        designated: Option<i64>,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO tasks (method, state, priority, channel, arch, owner_id, parent_id, designated_host, \
             request, attempts, max_attempts, created) VALUES ($1, 'FREE', $2, $3, $4, $5, $6, $7, $8, 0, $9, $10) \
             RETURNING id",
        )
        .bind(t.request.method())
        .bind(t.priority)
        .bind(&t.channel)
        .bind(&t.arch)
        .bind(owner)
        .bind(t.parent)
        .bind(designated)
        .bind(json_text(&t.request.to_value()))
        .bind(t.max_attempts)
        .bind(now())
        .fetch_one(&mut **tx)
        .await?)
    }

    pub(super) const TASK_COLS: &'static str = "t.id, t.method, t.state, t.priority, t.channel, t.arch, u.name, t.parent_id, \
         h.name, d.name, t.request, t.result, t.attempts, t.max_attempts, t.lease_expires, t.created, t.started, \
         t.finished";
    pub(super) const TASK_FROM: &'static str = "tasks t JOIN users u ON u.id = t.owner_id LEFT JOIN hosts h ON h.id = t.host_id \
         LEFT JOIN hosts d ON d.id = t.designated_host";

    pub(super) fn task_row(r: &D::Row) -> Result<Task> {
        let method: String = r.try_get(1)?;
        let request: String = r.try_get(10)?;
        let request: serde_json::Value = serde_json::from_str(&request).unwrap_or_default();
        Ok(Task {
            id: r.try_get(0)?,
            request: TaskRequest::from_parts(&method, &request).map_err(HubError::internal)?,
            state: r.try_get(2)?,
            priority: r.try_get(3)?,
            channel: r.try_get(4)?,
            arch: r.try_get(5)?,
            owner: r.try_get(6)?,
            parent: r.try_get(7)?,
            host: r.try_get(8)?,
            designated_host: r.try_get(9)?,

            result: parse_json(r.try_get(11)?),
            attempts: r.try_get(12)?,
            max_attempts: r.try_get(13)?,
            lease_expires: r.try_get(14)?,
            created: r.try_get(15)?,
            started: r.try_get(16)?,
            finished: r.try_get(17)?,
        })
    }

    pub async fn task(&self, id: i64) -> Result<Task> {
        let sql = format!("SELECT {} FROM {} WHERE t.id = $1", Self::TASK_COLS, Self::TASK_FROM);
        let r = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| HubError::not_found(format!("no task {id}")))?;
        Self::task_row(&r)
    }

    pub async fn list_tasks(&self, offset: i64, limit: i64, state: Option<&str>) -> Result<Page<Task>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE ($1 IS NULL OR state = $1)")
            .bind(state)
            .fetch_one(&self.read)
            .await?;
        let sql = format!(
            "SELECT {} FROM {} WHERE ($1 IS NULL OR t.state = $1) ORDER BY t.id DESC LIMIT {} OFFSET {}",
            Self::TASK_COLS,
            Self::TASK_FROM,
            limit.max(0),
            offset.max(0)
        );
        let rows = sqlx::query(&sql).bind(state).fetch_all(&self.read).await?;
        let items = rows.iter().map(Self::task_row).collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            total,
            offset,
            limit,
        })
    }

    /// Cancels a task and its children (owner or admin).
    /// The tasks whose parent is `id`, in order.
    pub async fn task_children(&self, id: i64) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE t.parent_id = $1 ORDER BY t.id",
            Self::TASK_COLS,
            Self::TASK_FROM
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.read).await?;
        rows.iter().map(Self::task_row).collect()
    }

    pub async fn cancel_task(&self, who: &Principal, id: i64) -> Result<Task> {
        let t = self.task(id).await?;
        if t.owner != who.name && !who.admin {
            return Err(HubError::forbidden(format!("task {id} belongs to {}", t.owner)));
        }
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE tasks SET state = 'CANCELED', finished = $1, lease_expires = NULL \
             WHERE (id = $2 OR parent_id = $2) AND state IN ('FREE', 'ASSIGNED', 'OPEN')",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(HubError::conflict(format!("task {id} is already {}", t.state)));
        }
        tx.commit().await?;
        self.task(id).await
    }

    pub async fn append_log(&self, who: &Principal, id: i64, data: &str) -> Result<()> {
        let (host, ..) = self.host_of(who).await?;
        let mut tx = self.begin_write().await?;
        let mine: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE id = $1 AND host_id = $2")
            .bind(id)
            .bind(host)
            .fetch_one(&mut *tx)
            .await?;
        if mine == 0 {
            return Err(HubError::forbidden(format!("task {id} is not {}'s", who.name)));
        }
        // The databases cannot keep NUL in text: it becomes U+FFFD.
        let data = if data.contains('\0') {
            std::borrow::Cow::Owned(data.replace('\0', "\u{fffd}"))
        } else {
            std::borrow::Cow::Borrowed(data)
        };
        sqlx::query("INSERT INTO task_logs (task_id, data) VALUES ($1, $2)")
            .bind(id)
            .bind(data.as_ref())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Log chunks after chunk `after`: (id, text).
    pub async fn task_log(&self, id: i64, after: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT id, data FROM task_logs WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT 1000")
            .bind(id)
            .bind(after)
            .fetch_all(&self.read)
            .await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// A builder shutting down hands a task back: FREE again,
    /// without using up an attempt.
    pub async fn release_task(&self, who: &Principal, id: i64) -> Result<Task> {
        let (host, ..) = self.host_of(who).await?;
        let n = sqlx::query(
            "UPDATE tasks SET state = 'FREE', host_id = NULL, lease_expires = NULL, started = NULL, \
             attempts = attempts - 1 WHERE id = $1 AND host_id = $2 AND state = 'OPEN'",
        )
        .bind(id)
        .bind(host)
        .execute(&self.write)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(HubError::conflict(format!("task {id} is not open on {}", who.name)));
        }
        self.task(id).await
    }

    /// Checks a build or update request before it is queued:
    /// its shape, its target, and (unless scratch) that the
    /// submitter may tag into the destination tag.
    async fn check_build_request(&self, who: &Principal, t: &NewTask) -> Result<()> {
        let method = t.request.method();
        t.request
            .check()
            .map_err(|e| HubError::bad_request(format!("{method} request: {e}")))?;
        check_task_request(&t.request).map_err(|e| about(&format!("{method} request"), e))?;
        let (target, scratch) = match &t.request {
            TaskRequest::Build(r) => (&r.target, r.scratch),
            TaskRequest::Update(r) => {
                let (name, version) = r.from.split_once('@').unwrap_or_default();
                if !self.images(Some(name)).await?.iter().any(|(i, _)| i.version == version) {
                    return Err(HubError::not_found(format!(
                        "no source image {} on the hub (`kiln image import --hub`)",
                        r.from
                    )));
                }
                (&r.target, r.scratch)
            }
            // `check` refused it above: the hub alone records these.
            TaskRequest::Noop | TaskRequest::TagBuild(_) => return Ok(()),
        };
        let target = self.target(target, None).await?;
        if !scratch {
            let dest = Self::tag_row(&self.read, &target.dest_tag, None).await?;
            may_change(who, &target.dest_tag, dest.perm.as_deref(), dest.locked, false)?;
        }
        Ok(())
    }
}
