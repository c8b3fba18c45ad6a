//! Files a task's attempt uploads, and what becomes of them: a build task's
//! report turns them into a COMPLETE, tagged build, a scratch task keeps
//! them, and the sweep forgets those of attempts that can no longer report.
//! Also whether a store key is still used by anything.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Type};

use super::backend::{Backend, Col, Dialect, Tx};
use crate::db::now;
use crate::db::rules::{
    active, check_file_name, check_new_build, check_sha256, exists, id_list, json_text, may_change,
};
use crate::error::{HubError, Result};
use crate::model::{NewBuild, Principal, Task, TaskFile};

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
    /// The task a host may report on: locks its row (a no-op
    /// update) and returns (attempt, request, owner id, owner name).
    async fn open_task_for(
        tx: &mut Tx<'_, D>,
        who: &Principal,
        host: i64,
        id: i64,
    ) -> Result<(i64, serde_json::Value, i64, String)> {
        let r: Option<(i64, String, i64)> = sqlx::query_as(
            "UPDATE tasks SET lease_expires = lease_expires WHERE id = $1 AND host_id = $2 AND state = 'OPEN' \
             RETURNING attempts, request, owner_id",
        )
        .bind(id)
        .bind(host)
        .fetch_optional(&mut **tx)
        .await?;
        let (attempt, request, owner) = r.ok_or_else(|| {
            HubError::conflict(format!(
                "task {id} is not open on {} (cancelled, or its lease expired)",
                who.name
            ))
        })?;
        let owner_name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(owner)
            .fetch_one(&mut **tx)
            .await?;
        Ok((
            attempt,
            serde_json::from_str(&request).unwrap_or_default(),
            owner,
            owner_name,
        ))
    }

    /// A builder starts uploading a file of its task's current
    /// attempt. The row comes first, so the blob it writes is
    /// referenced from its first byte; returns the row's id.
    pub async fn begin_upload(&self, who: &Principal, id: i64, file: &str, sha256: &str, size: i64) -> Result<i64> {
        let (host, ..) = self.host_of(who).await?;
        check_file_name(file)?;
        check_sha256(file, sha256, size)?;
        let sha256 = sha256.to_ascii_lowercase();
        let mut tx = self.begin_write().await?;
        let (attempt, ..) = Self::open_task_for(&mut tx, who, host, id).await?;
        let stored: Option<bool> =
            sqlx::query_scalar("SELECT stored FROM task_uploads WHERE task_id = $1 AND attempt = $2 AND file = $3")
                .bind(id)
                .bind(attempt)
                .bind(file)
                .fetch_optional(&mut *tx)
                .await?;
        match stored {
            Some(true) => return Err(HubError::conflict(format!("{file} of task {id} is already uploaded"))),
            // An upload of this file that broke off: start over.
            Some(false) => {
                sqlx::query("DELETE FROM task_uploads WHERE task_id = $1 AND attempt = $2 AND file = $3")
                    .bind(id)
                    .bind(attempt)
                    .bind(file)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {}
        }
        let up: i64 = sqlx::query_scalar(
            "INSERT INTO task_uploads (task_id, attempt, file, sha256, size, store_key, stored) \
             VALUES ($1, $2, $3, $4, $5, $6, FALSE) RETURNING id",
        )
        .bind(id)
        .bind(attempt)
        .bind(file)
        .bind(&sha256)
        .bind(size)
        .bind(format!("blobs/sha256/{sha256}"))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(up)
    }

    /// The upload's bytes are stored and verified (or not: the row goes).
    pub async fn end_upload(&self, upload: i64, ok: bool) -> Result<()> {
        let sql = if ok {
            "UPDATE task_uploads SET stored = TRUE WHERE id = $1"
        } else {
            "DELETE FROM task_uploads WHERE id = $1"
        };
        sqlx::query(sql).bind(upload).execute(&self.write).await?;
        Ok(())
    }

    /// Forgets the uploads of attempts that can no longer
    /// complete (the task was freed, failed or cancelled, or a
    /// later attempt runs); returns their store keys, for the
    /// caller to delete those nothing else references.
    pub async fn sweep_uploads(&self) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT u.id, u.store_key FROM task_uploads u JOIN tasks t ON t.id = u.task_id \
             WHERE t.state IN ('FREE', 'FAILED', 'CANCELED') OR u.attempt <> t.attempts",
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids = id_list(&rows.iter().map(|r| r.0).collect::<Vec<_>>());
        sqlx::query(&format!("DELETE FROM task_uploads WHERE id IN ({ids})"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut keys: Vec<String> = rows.into_iter().map(|r| r.1).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// A build or update task succeeded: in one transaction the
    /// build is recorded COMPLETE with the files this attempt
    /// uploaded, tagged into the target's destination tag, and
    /// the task closed. A scratch task keeps its files instead.
    pub async fn complete_task_build(
        &self,
        who: &Principal,
        id: i64,
        b: &NewBuild,
        result: &serde_json::Value,
    ) -> Result<Task> {
        let (host, ..) = self.host_of(who).await?;
        let nvr = check_new_build(b)?;
        let mut tx = self.begin_write().await?;
        let (attempt, request, owner, owner_name) = Self::open_task_for(&mut tx, who, host, id).await?;
        let keys = Self::uploaded_keys(&mut tx, id, attempt, b).await?;
        let scratch = request["scratch"].as_bool().unwrap_or(false);
        let mut out = result.clone();
        if !out.is_object() {
            out = serde_json::json!({});
        }
        out["nvr"] = serde_json::json!(nvr);
        out["scratch"] = serde_json::json!(scratch);
        out["files"] = serde_json::json!(b.artifacts.iter().map(|a| &a.file).collect::<Vec<_>>());
        if !scratch {
            let target = request["target"].as_str().unwrap_or_default().to_string();
            let dest: String = sqlx::query_scalar(&format!(
                "SELECT d.name FROM target_config c JOIN tag_names d ON d.tag_id = c.dest_tag AND {} \
                 WHERE c.name = $1 AND {}",
                active(None, 2, "d"),
                active(None, 2, "c")
            ))
            .bind(&target)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| HubError::conflict(format!("target `{target}` no longer exists")))?;
            let perms: Vec<String> =
                sqlx::query_scalar("SELECT perm FROM user_perms WHERE user_id = $1 AND revoke_event IS NULL")
                    .bind(owner)
                    .fetch_all(&mut *tx)
                    .await?;
            let owner_id = owner;
            let owner = Principal {
                id: Some(owner),
                name: owner_name,
                admin: perms.iter().any(|p| p == "admin"),
                perms,
                host: None,
            };
            let bid = Self::insert_task_build(&mut tx, id, owner.id, b, &nvr, &keys).await?;
            // The build is tagged as its owner, with the owner's rights
            // of now: permissions or the tag may have changed since the
            // task was submitted (a lock refuses even an admin's task).
            let t = Self::tag_for_change(&mut tx, &dest).await?;
            if !owner.has("build") {
                return Err(HubError::forbidden(format!(
                    "{} no longer holds the `build` permission",
                    owner.name
                )));
            }
            may_change(&owner, &dest, t.perm.as_deref(), t.locked, false)?;
            Self::tag_into(&mut tx, &owner, &dest, &t, (bid, &nvr, &b.name), false).await?;
            let commit = result["commit"].as_str().filter(|c| kiln_hub_api::names::is_commit(c));
            if let Some(image) = Self::run_built(&mut tx, id, owner_id, b, &keys, commit).await? {
                out["image"] = serde_json::json!(format!("{image}@{}-{}", b.version, b.release));
            }
            sqlx::query("DELETE FROM task_uploads WHERE task_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            out["tag"] = serde_json::json!(dest);
        }
        sqlx::query(
            "UPDATE tasks SET state = 'CLOSED', result = $1, finished = $2, lease_expires = NULL WHERE id = $3",
        )
        .bind(json_text(&out))
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.task(id).await
    }

    /// The store keys of the files of build `b`, uploaded and stored by
    /// attempt `attempt` of task `id`, with the sizes and checksums `b`
    /// gives them.
    async fn uploaded_keys(tx: &mut Tx<'_, D>, id: i64, attempt: i64, b: &NewBuild) -> Result<Vec<String>> {
        let uploads: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT file, sha256, size, store_key FROM task_uploads WHERE task_id = $1 AND attempt = $2 AND stored",
        )
        .bind(id)
        .bind(attempt)
        .fetch_all(&mut **tx)
        .await?;
        let mut keys = Vec::new();
        for a in &b.artifacts {
            let up = uploads
                .iter()
                .find(|u| u.0 == a.file)
                .ok_or_else(|| HubError::conflict(format!("{} was not uploaded for task {id}", a.file)))?;
            if !up.1.eq_ignore_ascii_case(&a.sha256) || up.2 != a.size {
                return Err(HubError::conflict(format!(
                    "{} differs from its upload (sha256 {}, {} bytes)",
                    a.file, up.1, up.2
                )));
            }
            keys.push(up.3.clone());
        }
        Ok(keys)
    }

    /// Records build `b` (NVR `nvr`) of task `id`, COMPLETE with its files
    /// at `keys`; returns its id.
    async fn insert_task_build(
        tx: &mut Tx<'_, D>,
        id: i64,
        owner: Option<i64>,
        b: &NewBuild,
        nvr: &str,
        keys: &[String],
    ) -> Result<i64> {
        let bid: i64 = sqlx::query_scalar(
            "INSERT INTO builds (name, version, release, nvr, state, owner_id, task_id, start_time, \
             completion_time, manifest, extra) VALUES ($1, $2, $3, $4, 'COMPLETE', $5, $6, $7, $8, $9, $10) \
             RETURNING id",
        )
        .bind(&b.name)
        .bind(&b.version)
        .bind(&b.release)
        .bind(nvr)
        .bind(owner)
        .bind(id)
        .bind(now())
        .bind(now())
        .bind(b.manifest.as_ref().map(json_text))
        .bind(json_text(b.extra.as_ref().unwrap_or(&serde_json::json!({}))))
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| exists(e, || format!("build {nvr} exists")))?;
        for (a, key) in b.artifacts.iter().zip(keys) {
            sqlx::query(
                "INSERT INTO artifacts (build_id, file, format, size, sha256, store_key) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(bid)
            .bind(&a.file)
            .bind(&a.format)
            .bind(a.size)
            .bind(a.sha256.to_ascii_lowercase())
            .bind(key)
            .execute(&mut **tx)
            .await?;
        }
        Ok(bid)
    }

    /// A file a finished task kept (a scratch build's): its store key.
    pub async fn task_file(&self, id: i64, file: &str) -> Result<(TaskFile, String)> {
        let r: Option<(String, i64, String, String)> = sqlx::query_as(
            "SELECT u.file, u.size, u.sha256, u.store_key FROM task_uploads u JOIN tasks t ON t.id = u.task_id \
             WHERE u.task_id = $1 AND u.file = $2 AND u.attempt = t.attempts AND u.stored AND t.state = 'CLOSED'",
        )
        .bind(id)
        .bind(file)
        .fetch_optional(&self.read)
        .await?;
        let (file, size, sha256, key) =
            r.ok_or_else(|| HubError::not_found(format!("task {id} has no file `{file}`")))?;
        Ok((TaskFile { file, size, sha256 }, key))
    }

    /// Whether any image or artifact still uses a store key.
    pub async fn key_used(&self, key: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM images WHERE store_key = $1) \
             + (SELECT COUNT(*) FROM artifacts WHERE store_key = $1) \
             + (SELECT COUNT(*) FROM task_uploads WHERE store_key = $1)",
        )
        .bind(key)
        .fetch_one(&self.read)
        .await?;
        Ok(n > 0)
    }
}
