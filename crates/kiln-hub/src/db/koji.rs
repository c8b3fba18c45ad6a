//! What Koji's protocol (docs/koji.md) reads that kiln's own API does not:
//! things by their integer ids (tags, builds, packages, users, targets,
//! permissions), builds with their ids and their package's, and the
//! sessions of Koji clients.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect};
use crate::db::now;
use crate::db::rules::{active, id_list, parse_json};
use crate::error::Result;

/// A build with everything Koji's build maps carry.
#[derive(Clone, Debug)]
pub struct KojiBuild {
    pub id: i64,
    pub nvr: String,
    pub name: String,
    pub version: String,
    pub release: String,
    pub state: String,
    pub owner_id: i64,
    pub owner: String,
    pub task_id: Option<i64>,
    pub start_time: i64,
    pub completion_time: Option<i64>,
    pub package_id: i64,
    pub extra: serde_json::Value,
}

/// A Koji client's session.
#[derive(Clone, Debug)]
pub struct KojiSession {
    pub id: i64,
    pub user_id: i64,
    pub key_sha256: String,
    pub callnum: Option<i64>,
    pub expires: i64,
    pub closed: bool,
}

/// A user as Koji shows one.
#[derive(Clone, Debug)]
pub struct KojiUser {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub perms: Vec<String>,
}

/// A target with its tags' ids and names.
#[derive(Clone, Debug)]
pub struct KojiTarget {
    pub id: i64,
    pub name: String,
    pub build_tag: i64,
    pub build_tag_name: String,
    pub dest_tag: i64,
    pub dest_tag_name: String,
}

/// What `listBuilds` filters on.
#[derive(Clone, Debug, Default)]
pub struct BuildFilter {
    pub package: Option<String>,
    pub owner_id: Option<i64>,
    pub task_id: Option<i64>,
    pub prefix: Option<String>,
    pub pattern: Option<String>,
    pub state: Option<String>,
    pub created_before: Option<i64>,
    pub created_after: Option<i64>,
    pub completed_before: Option<i64>,
    pub completed_after: Option<i64>,
    pub ids: Option<Vec<i64>>,
    /// Only builds made by a task.
    pub has_task: bool,
}

/// What `listTasks` filters on in the database (Koji's other filters are
/// applied to the rows).
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub ids: Option<Vec<i64>>,
    /// kiln's state names.
    pub states: Option<Vec<String>>,
    pub owners: Option<Vec<i64>>,
    /// `Some(None)`: top-level tasks only.
    pub parent: Option<Option<i64>>,
    pub method: Option<String>,
}

/// A task with the ids Koji's task maps carry.
#[derive(Clone, Debug)]
pub struct KojiTask {
    pub task: crate::model::Task,
    pub owner_id: i64,
    pub host_id: Option<i64>,
}

const KOJI_BUILD_COLS: &str = "b.id, b.nvr, b.name, b.version, b.release, b.state, b.owner_id, u.name, b.task_id, \
     b.start_time, b.completion_time, COALESCE(p.id, 0), b.extra";
const KOJI_BUILD_FROM: &str = "builds b JOIN users u ON u.id = b.owner_id LEFT JOIN packages p ON p.name = b.name";

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
    fn koji_build_row(r: &D::Row) -> Result<KojiBuild> {
        Ok(KojiBuild {
            id: r.try_get(0)?,
            nvr: r.try_get(1)?,
            name: r.try_get(2)?,
            version: r.try_get(3)?,
            release: r.try_get(4)?,
            state: r.try_get(5)?,
            owner_id: r.try_get(6)?,
            owner: r.try_get(7)?,
            task_id: r.try_get(8)?,
            start_time: r.try_get(9)?,
            completion_time: r.try_get(10)?,
            package_id: r.try_get(11)?,
            extra: parse_json(r.try_get(12)?).unwrap_or(serde_json::Value::Null),
        })
    }

    /// Builds by id (those that exist), in id order.
    pub async fn koji_builds_by_id(&self, ids: &[i64]) -> Result<Vec<KojiBuild>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT {KOJI_BUILD_COLS} FROM {KOJI_BUILD_FROM} WHERE b.id IN ({}) ORDER BY b.id",
                id_list(chunk)
            );
            for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                out.push(Self::koji_build_row(&r)?);
            }
        }
        Ok(out)
    }

    /// The build with NVR `nvr`, if any.
    pub async fn koji_build_by_nvr(&self, nvr: &str) -> Result<Option<KojiBuild>> {
        let sql = format!("SELECT {KOJI_BUILD_COLS} FROM {KOJI_BUILD_FROM} WHERE b.nvr = $1");
        let r = sqlx::query(&sql).bind(nvr).fetch_optional(&self.read).await?;
        r.map(|r| Self::koji_build_row(&r)).transpose()
    }

    /// Builds matching `f`, newest first by id, `limit` of them from `offset`.
    pub async fn koji_list_builds(&self, f: &BuildFilter, offset: i64, limit: i64) -> Result<Vec<KojiBuild>> {
        let mut conds: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        let mut n = 0;
        let mut text = |conds: &mut Vec<String>, sql: &str, v: String| {
            n += 1;
            conds.push(sql.replace("$?", &format!("$T{n}")));
            texts.push(v);
        };
        if let Some(p) = &f.package {
            text(&mut conds, "b.name = $?", p.clone());
        }
        if let Some(p) = &f.prefix {
            text(&mut conds, "substr(b.nvr, 1, length($?)) = $?", p.clone());
        }
        if let Some(p) = &f.pattern {
            text(&mut conds, "b.nvr LIKE $? ESCAPE '\\'", glob_like(p));
        }
        if let Some(s) = &f.state {
            text(&mut conds, "b.state = $?", s.clone());
        }
        let mut int = |conds: &mut Vec<String>, sql: &str, v: i64| {
            conds.push(sql.replace("$?", &format!("$I{}", ints.len())));
            ints.push(v);
        };
        if let Some(v) = f.owner_id {
            int(&mut conds, "b.owner_id = $?", v);
        }
        if let Some(v) = f.task_id {
            int(&mut conds, "b.task_id = $?", v);
        }
        if let Some(v) = f.created_before {
            int(&mut conds, "b.start_time < $?", v);
        }
        if let Some(v) = f.created_after {
            int(&mut conds, "b.start_time > $?", v);
        }
        if let Some(v) = f.completed_before {
            int(&mut conds, "b.completion_time < $?", v);
        }
        if let Some(v) = f.completed_after {
            int(&mut conds, "b.completion_time > $?", v);
        }
        if let Some(ids) = &f.ids {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            conds.push(format!("b.id IN ({})", id_list(ids)));
        }
        if f.has_task {
            conds.push("b.task_id IS NOT NULL".into());
        }
        // Number the placeholders: texts first, then integers.
        let mut sql = format!("SELECT {KOJI_BUILD_COLS} FROM {KOJI_BUILD_FROM}");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        for i in (1..=texts.len()).rev() {
            sql = sql.replace(&format!("$T{i}"), &format!("${i}"));
        }
        for i in (0..ints.len()).rev() {
            sql = sql.replace(&format!("$I{i}"), &format!("${}", texts.len() + i + 1));
        }
        let base = texts.len() + ints.len();
        sql.push_str(&format!(" ORDER BY b.id DESC LIMIT ${} OFFSET ${}", base + 1, base + 2));
        let mut q = sqlx::query(&sql);
        for t in &texts {
            q = q.bind(t.as_str());
        }
        for i in &ints {
            q = q.bind(*i);
        }
        q = q.bind(limit).bind(offset);
        q.fetch_all(&self.read)
            .await?
            .iter()
            .map(Self::koji_build_row)
            .collect()
    }

    /// Tasks matching `f`, in id order.
    pub async fn koji_tasks(&self, f: &TaskFilter) -> Result<Vec<KojiTask>> {
        let mut conds: Vec<String> = Vec::new();
        for (col, ids) in [("t.id", &f.ids), ("t.owner_id", &f.owners)] {
            if let Some(ids) = ids {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                conds.push(format!("{col} IN ({})", id_list(ids)));
            }
        }
        if let Some(states) = &f.states {
            // Only the known names, so they can be written into the query.
            let known: Vec<String> = states
                .iter()
                .filter(|s| ["FREE", "OPEN", "CLOSED", "FAILED", "CANCELED"].contains(&s.as_str()))
                .map(|s| format!("'{s}'"))
                .collect();
            if known.is_empty() {
                return Ok(Vec::new());
            }
            conds.push(format!("t.state IN ({})", known.join(", ")));
        }
        match f.parent {
            Some(Some(p)) => conds.push(format!("t.parent_id = {p}")),
            Some(None) => conds.push("t.parent_id IS NULL".into()),
            None => {}
        }
        if f.method.is_some() {
            conds.push("t.method = $1".into());
        }
        let mut sql = format!(
            "SELECT {}, t.owner_id, t.host_id FROM {}",
            Self::TASK_COLS,
            Self::TASK_FROM
        );
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(" ORDER BY t.id");
        let mut q = sqlx::query(&sql);
        if let Some(m) = &f.method {
            q = q.bind(m.as_str());
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                Ok(KojiTask {
                    task: Self::task_row(r)?,
                    owner_id: r.try_get(18)?,
                    host_id: r.try_get(19)?,
                })
            })
            .collect()
    }

    /// Every host's id by name.
    pub async fn koji_host_ids(&self) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT name, id FROM hosts").fetch_all(&self.read).await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// The files a task's last attempt stored: (name, size).
    pub async fn koji_task_files(&self, task: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT u.file, u.size FROM task_uploads u JOIN tasks t ON t.id = u.task_id \
             WHERE u.task_id = $1 AND u.attempt = t.attempts AND u.stored ORDER BY u.file",
        )
        .bind(task)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// A tag's name at `event` by its id.
    pub async fn koji_tag_name(&self, id: i64, event: Option<i64>) -> Result<Option<String>> {
        Ok(Self::tag_names(&self.read, [id], event).await?.remove(&id))
    }

    /// The ids of tags by name at `event`.
    pub async fn koji_tag_ids(&self, names: &[String], event: Option<i64>) -> Result<HashMap<String, i64>> {
        let mut out = HashMap::new();
        for name in names {
            if out.contains_key(name) {
                continue;
            }
            let sql = format!(
                "SELECT tag_id FROM tag_names WHERE name = $1 AND {}",
                active(event, 2, "")
            );
            let mut q = sqlx::query_scalar::<D, i64>(&sql).bind(name.as_str());
            if let Some(e) = event {
                q = q.bind(e);
            }
            if let Some(id) = q.fetch_optional(&self.read).await? {
                out.insert(name.clone(), id);
            }
        }
        Ok(out)
    }

    /// The ids of the tags that list build `build` now.
    pub async fn koji_build_tag_ids(&self, build: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT tag_id FROM tag_listing WHERE build_id = $1 AND revoke_event IS NULL ORDER BY tag_id",
        )
        .bind(build)
        .fetch_all(&self.read)
        .await?)
    }

    /// A package's id and name, by id or by name.
    pub async fn koji_package(&self, id: Option<i64>, name: Option<&str>) -> Result<Option<(i64, String)>> {
        let r = sqlx::query("SELECT id, name FROM packages WHERE id = $1 OR name = $2")
            .bind(id.unwrap_or(-1))
            .bind(name.unwrap_or(""))
            .fetch_optional(&self.read)
            .await?;
        r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The ids of packages by name.
    pub async fn koji_package_ids(&self) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT name, id FROM packages")
            .fetch_all(&self.read)
            .await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// A user by id or name, with the permissions held now.
    pub async fn koji_user(&self, id: Option<i64>, name: Option<&str>) -> Result<Option<KojiUser>> {
        let Some(r) = sqlx::query("SELECT id, name, kind FROM users WHERE id = $1 OR name = $2")
            .bind(id.unwrap_or(-1))
            .bind(name.unwrap_or(""))
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = r.try_get(0)?;
        let perms =
            sqlx::query_scalar("SELECT perm FROM user_perms WHERE user_id = $1 AND revoke_event IS NULL ORDER BY perm")
                .bind(id)
                .fetch_all(&self.read)
                .await?;
        Ok(Some(KojiUser {
            id,
            name: r.try_get(1)?,
            kind: r.try_get(2)?,
            perms,
        }))
    }

    /// Every user's id by name.
    pub async fn koji_user_ids(&self) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT name, id FROM users").fetch_all(&self.read).await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Every permission a user may hold: (id, name, description).
    pub async fn koji_permissions(&self) -> Result<Vec<(i64, String, String)>> {
        let rows = sqlx::query("SELECT id, name, description FROM permissions ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Targets at `event` with their ids and their tags' ids and names.
    pub async fn koji_targets(&self, event: Option<i64>) -> Result<Vec<KojiTarget>> {
        let sql = format!(
            "SELECT c.target_id, c.name, c.build_tag, c.dest_tag FROM target_config c WHERE {} ORDER BY c.name",
            active(event, 1, "c")
        );
        let mut q = sqlx::query(&sql);
        if let Some(e) = event {
            q = q.bind(e);
        }
        let rows = q.fetch_all(&self.read).await?;
        let mut raw = Vec::new();
        for r in rows {
            raw.push((
                r.try_get::<i64, _>(0)?,
                r.try_get::<String, _>(1)?,
                r.try_get::<i64, _>(2)?,
                r.try_get::<i64, _>(3)?,
            ));
        }
        let names = Self::tag_names(&self.read, raw.iter().flat_map(|t| [t.2, t.3]), event).await?;
        let name = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
        Ok(raw
            .into_iter()
            .map(|(id, n, b, d)| KojiTarget {
                id,
                name: n,
                build_tag: b,
                build_tag_name: name(b),
                dest_tag: d,
                dest_tag_name: name(d),
            })
            .collect())
    }

    /// The time of event `id`, if there is one.
    pub async fn koji_event(&self, id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT time FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    /// The last event at or before `before` (seconds), with its time.
    pub async fn koji_last_event(&self, before: Option<i64>) -> Result<Option<(i64, i64)>> {
        let r = sqlx::query("SELECT id, time FROM events WHERE time <= $1 ORDER BY id DESC LIMIT 1")
            .bind(before.unwrap_or(i64::MAX))
            .fetch_optional(&self.read)
            .await?;
        r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The events' times and users' names, for history rows.
    pub async fn koji_events(&self, ids: &[i64]) -> Result<HashMap<i64, (i64, Option<i64>, Option<String>)>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT e.id, e.time, e.user_id, u.name FROM events e LEFT JOIN users u ON u.id = e.user_id \
                 WHERE e.id IN ({})",
                id_list(chunk)
            );
            for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                out.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
            }
        }
        Ok(out)
    }

    /// Starts a Koji session of `user_id`; returns its id.
    pub async fn koji_session_create(&self, user_id: i64, key_sha256: &str, expires: i64) -> Result<i64> {
        let t = now();
        Ok(sqlx::query_scalar(
            "INSERT INTO koji_sessions (user_id, key_sha256, created, renewed, expires) \
             VALUES ($1, $2, $3, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(key_sha256)
        .bind(t)
        .bind(expires)
        .fetch_one(&self.write)
        .await?)
    }

    pub async fn koji_session(&self, id: i64) -> Result<Option<KojiSession>> {
        let r =
            sqlx::query("SELECT id, user_id, key_sha256, callnum, expires, closed FROM koji_sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        r.map(|r| {
            Ok(KojiSession {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                key_sha256: r.try_get(2)?,
                callnum: r.try_get(3)?,
                expires: r.try_get(4)?,
                closed: r.try_get(5)?,
            })
        })
        .transpose()
    }

    /// Records call `callnum` of session `id` if it is later than the last
    /// one recorded (atomic: of two calls with one number, one wins);
    /// returns whether it was.
    pub async fn koji_session_call(&self, id: i64, callnum: i64, expires: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE koji_sessions SET callnum = $1, renewed = $2, expires = $3 \
             WHERE id = $4 AND NOT closed AND (callnum IS NULL OR callnum < $1)",
        )
        .bind(callnum)
        .bind(now())
        .bind(expires)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(super::backend::RowsAffected::rows_affected(&r) == 1)
    }

    /// Extends session `id` without a call number.
    pub async fn koji_session_touch(&self, id: i64, expires: i64) -> Result<()> {
        sqlx::query("UPDATE koji_sessions SET renewed = $1, expires = $2 WHERE id = $3 AND NOT closed")
            .bind(now())
            .bind(expires)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn koji_session_close(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE koji_sessions SET closed = TRUE WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Forgets sessions that expired before `at`.
    pub async fn koji_prune_sessions(&self, at: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM koji_sessions WHERE expires <= $1")
            .bind(at)
            .execute(&self.write)
            .await?;
        Ok(super::backend::RowsAffected::rows_affected(&r))
    }
}

/// A glob (`*`, `?`) as a LIKE pattern with `\` escaping.
fn glob_like(glob: &str) -> String {
    let mut out = String::new();
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn globs_become_like_patterns() {
        assert_eq!(super::glob_like("a*b?c%_\\"), "a%b_c\\%\\_\\\\");
    }
}
