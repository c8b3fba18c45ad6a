//! The database: one domain implementation instantiated for SQLite and for
//! PostgreSQL (each with its own pool and migrations), so both run the same
//! queries and the same rules. Every change runs in one transaction that
//! first records an event; versioned rows are created and revoked by events.

use std::collections::{BTreeMap, HashMap};

use kiln_core::koji;

use crate::error::{HubError, Result};
use crate::model::*;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The row filter for versioned tables: current rows, or rows active at
/// `event` (bound as parameter `$n`).
fn active(event: Option<i64>, n: usize, alias: &str) -> String {
    let p = if alias.is_empty() {
        String::new()
    } else {
        format!("{alias}.")
    };
    match event {
        None => format!("{p}revoke_event IS NULL"),
        Some(_) => format!("{p}create_event <= ${n} AND ({p}revoke_event IS NULL OR {p}revoke_event > ${n})"),
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '~'));
    if ok {
        Ok(())
    } else {
        Err(HubError::bad_request(format!(
            "bad {what} name `{name}`: use letters, digits and - _ . + ~ (at most 200)"
        )))
    }
}

/// A literal list of ids for `IN (…)` (numbers only, never user text).
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// A unique-constraint failure as a conflict that names what exists.
fn exists(e: sqlx::Error, what: impl FnOnce() -> String) -> HubError {
    match HubError::from(e) {
        e if e.code == "conflict" => HubError::conflict(what()),
        e => e,
    }
}

fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

fn parse_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// A tag's content may change: not locked (unless an admin forces), and the
/// tag's own permission held.
fn may_change(who: &Principal, tag: &str, perm: Option<&str>, locked: bool, force: bool) -> Result<()> {
    if let Some(p) = perm
        && !who.has(p)
    {
        return Err(HubError::forbidden(format!("tag {tag} requires the `{p}` permission")));
    }
    if locked && !(force && who.admin) {
        return Err(HubError::locked(format!(
            "tag {tag} is locked{}",
            if who.admin {
                " (use force to change it anyway)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// Checks a new build's names and files; returns its NVR.
fn check_new_build(b: &NewBuild) -> Result<String> {
    for (what, v) in [("build", &b.name), ("version", &b.version), ("release", &b.release)] {
        check_name(what, v)?;
    }
    if b.name.is_empty() || b.version.contains('-') || b.release.contains('-') {
        return Err(HubError::bad_request("version and release may not contain `-`"));
    }
    let mut seen = std::collections::HashSet::new();
    for a in &b.artifacts {
        check_file_name(&a.file)?;
        if !seen.insert(&a.file) {
            return Err(HubError::bad_request(format!(
                "repeated artifact file name `{}`",
                a.file
            )));
        }
        check_sha256(&a.file, &a.sha256, a.size)?;
    }
    Ok(format!("{}-{}-{}", b.name, b.version, b.release))
}

fn check_file_name(f: &str) -> Result<()> {
    if f.contains('/') || f.starts_with('.') || f.is_empty() || f.len() > 255 {
        return Err(HubError::bad_request(format!("bad file name `{f}`")));
    }
    Ok(())
}

fn check_sha256(file: &str, sha256: &str, size: i64) -> Result<()> {
    if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) || size < 0 {
        return Err(HubError::bad_request(format!("bad sha256 or size for `{file}`")));
    }
    Ok(())
}

/// How long a claimed task stays a builder's without a heartbeat.
pub const LEASE_SECONDS: i64 = 60;

macro_rules! backend {
    ($m:ident, $DB:ty, $skip_locked:expr, $string_agg:expr, $dml_in_with:expr) => {
        pub mod $m {
            use super::*;
            use sqlx::Row;

            type Db = $DB;
            type Tx<'a> = sqlx::Transaction<'a, Db>;

            /// Reads go to `read`, changes to `write` (for SQLite a single
            /// connection, so writers queue instead of failing busy).
            pub struct Backend {
                pub read: sqlx::Pool<Db>,
                pub write: sqlx::Pool<Db>,
                /// Seconds a claimed task stays a builder's without a heartbeat.
                pub lease: i64,
            }

            async fn event(tx: &mut Tx<'_>, who: &Principal, action: &str) -> Result<i64> {
                let id: i64 = sqlx::query_scalar("INSERT INTO events (time, user_id, action) VALUES ($1, $2, $3) RETURNING id")
                    .bind(now())
                    .bind(who.id)
                    .bind(action)
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(id)
            }

            struct TagRow {
                id: i64,
                name: String,
                arches: Option<String>,
                perm: Option<String>,
                locked: bool,
            }

            async fn tag_row<'e, E>(ex: E, name: &str, event: Option<i64>) -> Result<TagRow>
            where
                E: sqlx::Executor<'e, Database = Db>,
            {
                let sql = format!(
                    "SELECT t.id, t.name, c.arches, c.perm, c.locked FROM tags t JOIN tag_config c ON c.tag_id = t.id \
                     WHERE t.name = $1 AND {}",
                    active(event, 2, "c")
                );
                let mut q = sqlx::query(&sql).bind(name);
                if let Some(e) = event {
                    q = q.bind(e);
                }
                let row = q.fetch_optional(ex).await?;
                let row = row.ok_or_else(|| HubError::not_found(format!("unknown tag `{name}`")))?;
                Ok(TagRow {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    arches: row.try_get(2)?,
                    perm: row.try_get(3)?,
                    locked: row.try_get(4)?,
                })
            }

            /// A tag about to change, locked: a row lock in PostgreSQL
            /// (SQLite has a single writer), so checks made after it see
            /// every change committed before it.
            async fn tag_for_change(tx: &mut Tx<'_>, name: &str) -> Result<TagRow> {
                let t = tag_row(&mut **tx, name, None).await?;
                sqlx::query("UPDATE tags SET name = name WHERE id = $1").bind(t.id).execute(&mut **tx).await?;
                Ok(t)
            }

            async fn user_id(tx: &mut Tx<'_>, name: &str) -> Result<i64> {
                sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| HubError::not_found(format!("unknown user `{name}`")))
            }

            impl Backend {
                pub async fn migrate(&self) -> Result<()> {
                    let m = if std::any::type_name::<Db>().contains("Sqlite") {
                        sqlx::migrate!("./migrations/sqlite")
                    } else {
                        sqlx::migrate!("./migrations/postgres")
                    };
                    m.run(&self.write)
                        .await
                        .map_err(|e| HubError::internal(format!("applying migrations: {e}")))
                }

                // ---- users and tokens ------------------------------------

                pub async fn create_user(
                    &self,
                    who: &Principal,
                    name: &str,
                    password_hash: Option<String>,
                    perms: &[String],
                    kind: &str,
                ) -> Result<i64> {
                    check_name("user", name)?;
                    let mut tx = self.write.begin().await?;
                    let ev = event(&mut tx, who, &format!("create user {name}")).await?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO users (name, password_hash, kind, created) VALUES ($1, $2, $3, $4) RETURNING id",
                    )
                    .bind(name)
                    .bind(password_hash)
                    .bind(kind)
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| exists(e, || format!("user `{name}` exists")))?;
                    for p in perms {
                        check_name("permission", p)?;
                        sqlx::query("INSERT INTO user_perms (user_id, perm, create_event) VALUES ($1, $2, $3)")
                            .bind(id)
                            .bind(p)
                            .bind(ev)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(id)
                }

                pub async fn user_count(&self) -> Result<i64> {
                    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.read).await?)
                }

                pub async fn list_users(&self) -> Result<Vec<User>> {
                    let rows = sqlx::query(
                        "SELECT u.name, u.kind, p.perm FROM users u LEFT JOIN user_perms p \
                         ON p.user_id = u.id AND p.revoke_event IS NULL ORDER BY u.name, p.perm",
                    )
                    .fetch_all(&self.read)
                    .await?;
                    let mut out: Vec<User> = Vec::new();
                    for r in rows {
                        let (name, kind, perm): (String, String, Option<String>) =
                            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                        match out.last_mut() {
                            Some(u) if u.name == name => u.perms.extend(perm),
                            _ => out.push(User { name, kind, perms: perm.into_iter().collect() }),
                        }
                    }
                    Ok(out)
                }

                /// The user (or builder) a token belongs to, if it is valid
                /// now: one query, permissions and host registration included.
                pub async fn principal_by_token(&self, hash: &str) -> Result<Option<Principal>> {
                    let sql = format!(
                        "SELECT u.id, u.name, (SELECT {agg} FROM user_perms p WHERE p.user_id = u.id AND p.revoke_event IS NULL), \
                         h.id, h.arch, h.channels, h.capacity, h.enabled \
                         FROM tokens t JOIN users u ON u.id = t.user_id LEFT JOIN hosts h ON h.user_id = u.id \
                         WHERE t.hash = $1 AND t.revoked IS NULL AND (t.expires IS NULL OR t.expires > $2)",
                        agg = $string_agg
                    );
                    let Some(r) = sqlx::query(&sql).bind(hash).bind(now()).fetch_optional(&self.read).await? else {
                        return Ok(None);
                    };
                    let perms: Option<String> = r.try_get(2)?;
                    let mut perms: Vec<String> =
                        perms.iter().flat_map(|p| p.split(',')).filter(|p| !p.is_empty()).map(str::to_string).collect();
                    perms.sort();
                    let host_id: Option<i64> = r.try_get(3)?;
                    let host = match host_id {
                        Some(id) => {
                            let channels: String = r.try_get(5)?;
                            Some(HostRef {
                                id,
                                arch: r.try_get(4)?,
                                channels: channels.split(',').map(str::to_string).collect(),
                                capacity: r.try_get(6)?,
                                enabled: r.try_get(7)?,
                            })
                        }
                        None => None,
                    };
                    Ok(Some(Principal {
                        id: Some(r.try_get(0)?),
                        name: r.try_get(1)?,
                        admin: perms.iter().any(|p| p == "admin"),
                        perms,
                        host,
                    }))
                }

                pub async fn password_of(&self, name: &str) -> Result<Option<(i64, Option<String>)>> {
                    let row = sqlx::query("SELECT id, password_hash FROM users WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await?;
                    match row {
                        Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
                        None => Ok(None),
                    }
                }

                pub async fn grant(&self, who: &Principal, user: &str, perm: &str) -> Result<()> {
                    check_name("permission", perm)?;
                    let mut tx = self.write.begin().await?;
                    let uid = user_id(&mut tx, user).await?;
                    let ev = event(&mut tx, who, &format!("grant {perm} to {user}")).await?;
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM user_perms WHERE user_id = $1 AND perm = $2 AND revoke_event IS NULL",
                    )
                    .bind(uid)
                    .bind(perm)
                    .fetch_one(&mut *tx)
                    .await?;
                    if n > 0 {
                        return Err(HubError::conflict(format!("{user} already has `{perm}`")));
                    }
                    sqlx::query("INSERT INTO user_perms (user_id, perm, create_event) VALUES ($1, $2, $3)")
                        .bind(uid)
                        .bind(perm)
                        .bind(ev)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                pub async fn revoke(&self, who: &Principal, user: &str, perm: &str) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    let uid = user_id(&mut tx, user).await?;
                    let ev = event(&mut tx, who, &format!("revoke {perm} from {user}")).await?;
                    let n = sqlx::query(
                        "UPDATE user_perms SET revoke_event = $1 WHERE user_id = $2 AND perm = $3 AND revoke_event IS NULL",
                    )
                    .bind(ev)
                    .bind(uid)
                    .bind(perm)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        return Err(HubError::not_found(format!("{user} does not have `{perm}`")));
                    }
                    tx.commit().await?;
                    Ok(())
                }

                pub async fn create_token(
                    &self,
                    user: &str,
                    hash: &str,
                    name: &str,
                    expires: Option<i64>,
                ) -> Result<i64> {
                    let mut tx = self.write.begin().await?;
                    let uid = user_id(&mut tx, user).await?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO tokens (user_id, hash, name, created, expires) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(uid)
                    .bind(hash)
                    .bind(name)
                    .bind(now())
                    .bind(expires)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(id)
                }

                pub async fn list_tokens(&self, user: &str) -> Result<Vec<TokenInfo>> {
                    let rows = sqlx::query(
                        "SELECT t.id, t.name, t.created, t.expires, t.revoked FROM tokens t JOIN users u ON u.id = t.user_id \
                         WHERE u.name = $1 ORDER BY t.id",
                    )
                    .bind(user)
                    .fetch_all(&self.read)
                    .await?;
                    rows.into_iter()
                        .map(|r| {
                            Ok(TokenInfo {
                                id: r.try_get(0)?,
                                name: r.try_get(1)?,
                                created: r.try_get(2)?,
                                expires: r.try_get(3)?,
                                revoked: r.try_get(4)?,
                            })
                        })
                        .collect()
                }

                /// Revokes token `id`, which must be `who`'s own unless `who` is an admin.
                pub async fn revoke_token(&self, who: &Principal, id: i64) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    let owner: Option<i64> = sqlx::query_scalar("SELECT user_id FROM tokens WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    match owner {
                        None => return Err(HubError::not_found(format!("no token {id}"))),
                        Some(o) if Some(o) != who.id && !who.admin => {
                            return Err(HubError::forbidden("only an admin may revoke another user's token"));
                        }
                        Some(_) => {}
                    }
                    sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
                        .bind(now())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                // ---- tags --------------------------------------------------

                pub async fn create_tag(&self, who: &Principal, t: &NewTag) -> Result<TagInfo> {
                    check_name("tag", &t.name)?;
                    let mut tx = self.write.begin().await?;
                    let ev = event(&mut tx, who, &format!("create tag {}", t.name)).await?;
                    let id: i64 = sqlx::query_scalar("INSERT INTO tags (name) VALUES ($1) RETURNING id")
                        .bind(&t.name)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| exists(e, || format!("tag `{}` exists", t.name)))?;
                    sqlx::query(
                        "INSERT INTO tag_config (tag_id, arches, perm, locked, create_event) VALUES ($1, $2, $3, $4, $5)",
                    )
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
                        let parent = tag_row(&mut *tx, p, None).await?;
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
                    let t = tag_row(&self.read, name, event).await?;
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
                        extra.insert(k, ExtraValue { value: parse_json(v), blocked: b });
                    }
                    Ok(TagInfo { id: t.id, name: t.name, arches: t.arches, perm: t.perm, locked: t.locked, extra })
                }

                pub async fn list_tags(&self, offset: i64, limit: i64, event: Option<i64>) -> Result<Page<TagInfo>> {
                    let (offset, limit) = (offset.max(0), limit.max(0));
                    let count_sql = format!(
                        "SELECT COUNT(*) FROM tags t JOIN tag_config c ON c.tag_id = t.id WHERE {}",
                        active(event, 1, "c")
                    );
                    let mut q = sqlx::query_scalar::<_, i64>(&count_sql);
                    if let Some(e) = event {
                        q = q.bind(e);
                    }
                    let total = q.fetch_one(&self.read).await?;
                    // One query for the page, one for its extra.
                    let sql = format!(
                        "SELECT t.id, t.name, c.arches, c.perm, c.locked FROM tags t JOIN tag_config c ON c.tag_id = t.id \
                         WHERE {} ORDER BY t.name LIMIT {limit} OFFSET {offset}",
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
                            extra.entry(id).or_default().insert(k, ExtraValue { value: parse_json(v), blocked: b });
                        }
                        for t in &mut items {
                            t.extra = extra.remove(&t.id).unwrap_or_default();
                        }
                    }
                    Ok(Page { items, total, offset, limit })
                }

                pub async fn edit_tag(&self, who: &Principal, name: &str, e: &TagEdit) -> Result<TagInfo> {
                    let mut tx = self.write.begin().await?;
                    let t = tag_for_change(&mut tx, name).await?;
                    if let Some(p) = &t.perm
                        && !who.has(p)
                    {
                        return Err(HubError::forbidden(format!("tag {name} requires the `{p}` permission")));
                    }
                    let ev = event(&mut tx, who, &format!("edit tag {name}")).await?;
                    let mut final_name = name.to_string();
                    if let Some(new) = &e.rename {
                        check_name("tag", new)?;
                        sqlx::query("UPDATE tags SET name = $1 WHERE id = $2")
                            .bind(new)
                            .bind(t.id)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| exists(e, || format!("tag `{new}` exists")))?;
                        final_name = new.clone();
                    }
                    if e.arches.is_some() || e.perm.is_some() || e.locked.is_some() {
                        sqlx::query("UPDATE tag_config SET revoke_event = $1 WHERE tag_id = $2 AND revoke_event IS NULL")
                            .bind(ev)
                            .bind(t.id)
                            .execute(&mut *tx)
                            .await?;
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
                        if k.is_empty() {
                            return Err(HubError::bad_request("an extra key may not be empty"));
                        }
                        sqlx::query("UPDATE tag_extra SET revoke_event = $1 WHERE tag_id = $2 AND key = $3 AND revoke_event IS NULL")
                            .bind(ev)
                            .bind(t.id)
                            .bind(k)
                            .execute(&mut *tx)
                            .await?;
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
                        let n = sqlx::query(
                            "UPDATE tag_extra SET revoke_event = $1 WHERE tag_id = $2 AND key = $3 AND revoke_event IS NULL",
                        )
                        .bind(ev)
                        .bind(t.id)
                        .bind(k)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if n == 0 {
                            return Err(HubError::not_found(format!("tag {name} has no extra `{k}`")));
                        }
                    }
                    tx.commit().await?;
                    self.tag_info(&final_name, None).await
                }

                /// Deletes a tag: its config, extra, links (both ways),
                /// package list and listings are revoked; targets using it
                /// keep it alive.
                pub async fn delete_tag(&self, who: &Principal, name: &str) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    let t = tag_for_change(&mut tx, name).await?;
                    if let Some(p) = &t.perm
                        && !who.has(p)
                    {
                        return Err(HubError::forbidden(format!("tag {name} requires the `{p}` permission")));
                    }
                    let used: Vec<String> = sqlx::query_scalar(
                        "SELECT name FROM target_config WHERE revoke_event IS NULL AND (build_tag = $1 OR dest_tag = $1) ORDER BY name",
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
                    let ev = event(&mut tx, who, &format!("delete tag {name}")).await?;
                    for sql in [
                        "UPDATE tag_config SET revoke_event = $1 WHERE tag_id = $2 AND revoke_event IS NULL",
                        "UPDATE tag_extra SET revoke_event = $1 WHERE tag_id = $2 AND revoke_event IS NULL",
                        "UPDATE tag_inheritance SET revoke_event = $1 WHERE (tag_id = $2 OR parent_id = $2) AND revoke_event IS NULL",
                        "UPDATE tag_packages SET revoke_event = $1 WHERE tag_id = $2 AND revoke_event IS NULL",
                        "UPDATE tag_listing SET revoke_event = $1 WHERE tag_id = $2 AND revoke_event IS NULL",
                    ] {
                        sqlx::query(sql).bind(ev).bind(t.id).execute(&mut *tx).await?;
                    }
                    // The name is free again; the id keeps the history.
                    sqlx::query("UPDATE tags SET name = $1 WHERE id = $2")
                        .bind(format!("{name}#deleted-{}", t.id))
                        .bind(t.id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                // ---- inheritance ------------------------------------------

                /// The links reachable from `start` (towards parents, or with
                /// `reverse` towards children) at `event`: only the subgraph a
                /// walk can visit, found by a recursive query.
                async fn links_from<'e, E>(ex: E, start: i64, reverse: bool, event: Option<i64>) -> Result<Vec<koji::Link>>
                where
                    E: sqlx::Executor<'e, Database = Db>,
                {
                    let (from, to) = if reverse { ("parent_id", "tag_id") } else { ("tag_id", "parent_id") };
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

                /// The names of some tags.
                async fn tag_names<'e, E>(ex: E, ids: impl IntoIterator<Item = i64>) -> Result<HashMap<i64, String>>
                where
                    E: sqlx::Executor<'e, Database = Db>,
                {
                    let mut ids: Vec<i64> = ids.into_iter().collect();
                    ids.sort_unstable();
                    ids.dedup();
                    if ids.is_empty() {
                        return Ok(HashMap::new());
                    }
                    let sql = format!("SELECT id, name FROM tags WHERE id IN ({})", id_list(&ids));
                    let rows = sqlx::query(&sql).fetch_all(ex).await?;
                    rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
                }

                fn link_out(l: &koji::Link, names: &HashMap<i64, String>) -> LinkOut {
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
                    let t = tag_row(&self.read, tag, event).await?;
                    let set = koji::LinkSet(Self::links_from(&self.read, t.id, reverse, event).await?);
                    use koji::Links;
                    let links = if reverse { set.children(t.id) } else { set.parents(t.id) };
                    let names = Self::tag_names(&self.read, links.iter().flat_map(|l| [l.child, l.parent])).await?;
                    Ok(links.iter().map(|l| Self::link_out(l, &names)).collect())
                }

                async fn walk_ids(&self, tag: i64, reverse: bool, event: Option<i64>) -> Result<Vec<koji::WalkEntry>> {
                    let set = koji::LinkSet(Self::links_from(&self.read, tag, reverse, event).await?);
                    Ok(koji::full_inheritance(&set, tag, reverse))
                }

                pub async fn full_inheritance(&self, tag: &str, reverse: bool, event: Option<i64>) -> Result<Vec<WalkOut>> {
                    let t = tag_row(&self.read, tag, event).await?;
                    let walk = self.walk_ids(t.id, reverse, event).await?;
                    let names = Self::tag_names(&self.read, walk.iter().flat_map(|w| [w.link.child, w.link.parent])).await?;
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
                    let mut tx = self.write.begin().await?;
                    let c = tag_for_change(&mut tx, child).await?;
                    let p = tag_row(&mut *tx, parent, None).await?;
                    may_change(who, child, c.perm.as_deref(), c.locked, false)?;
                    if c.id == p.id {
                        return Err(HubError::bad_request(format!("tag {child} cannot inherit from itself")));
                    }
                    let current = Self::links_from(&mut *tx, c.id, false, None).await?;
                    let existing = current.iter().find(|l| l.child == c.id && l.parent == p.id).cloned();
                    let mut link = match (add, edit, existing) {
                        (Some(_), _, Some(_)) => {
                            return Err(HubError::conflict(format!("{child} already inherits from {parent}")));
                        }
                        (Some(a), _, None) => koji::Link {
                            child: c.id,
                            parent: p.id,
                            priority: a.priority,
                            maxdepth: a.maxdepth,
                            intransitive: a.intransitive,
                            noconfig: a.noconfig,
                            pkg_filter: a.pkg_filter.clone(),
                        },
                        (None, _, None) => {
                            return Err(HubError::not_found(format!("{child} does not inherit from {parent}")));
                        }
                        (None, _, Some(l)) => l,
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
                    if !remove {
                        if let Some(d) = link.maxdepth
                            && d < 0
                        {
                            return Err(HubError::bad_request(format!("maxdepth {d} is negative")));
                        }
                        if !link.pkg_filter.is_empty() {
                            koji::compile_filter(&link.pkg_filter)
                                .map_err(|e| HubError::bad_request(format!("invalid pkg_filter: {e}")))?;
                        }
                        if let Some(other) = current
                            .iter()
                            .find(|l| l.child == c.id && l.parent != p.id && l.priority == link.priority)
                        {
                            let names = Self::tag_names(&mut *tx, [other.parent]).await?;
                            return Err(HubError::conflict(format!(
                                "{child} already has parent {} at priority {}",
                                names.get(&other.parent).cloned().unwrap_or_default(),
                                link.priority
                            )));
                        }
                    }
                    let action = if remove { "remove" } else if add.is_some() { "add" } else { "edit" };
                    let ev = event(&mut tx, who, &format!("{action} inheritance {child} -> {parent}")).await?;
                    sqlx::query(
                        "UPDATE tag_inheritance SET revoke_event = $1 WHERE tag_id = $2 AND parent_id = $3 AND revoke_event IS NULL",
                    )
                    .bind(ev)
                    .bind(c.id)
                    .bind(p.id)
                    .execute(&mut *tx)
                    .await?;
                    if !remove {
                        sqlx::query(
                            "INSERT INTO tag_inheritance (tag_id, parent_id, priority, maxdepth, intransitive, noconfig, \
                             pkg_filter, create_event) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(c.id)
                        .bind(p.id)
                        .bind(link.priority)
                        .bind(link.maxdepth)
                        .bind(link.intransitive)
                        .bind(link.noconfig)
                        .bind(&link.pkg_filter)
                        .bind(ev)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    self.links(child, false, None).await
                }

                // ---- build config -----------------------------------------

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
                    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
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
                    let t = tag_row(&self.read, tag, event).await?;
                    let walk = self.walk_ids(t.id, false, event).await?;
                    let mut ids = vec![t.id];
                    ids.extend(walk.iter().map(|w| w.link.parent));
                    let names = Self::tag_names(&self.read, ids.iter().copied()).await?;
                    let configs = self.configs(&ids, event, &names).await?;
                    let bc = koji::build_config(t.id, &walk, &configs);
                    Ok(BuildConfigOut {
                        tag: t.name,
                        arches: bc.arches.map(|a| Sourced { value: serde_json::Value::String(a.value), from: a.from }),
                        extra: bc
                            .extra
                            .into_iter()
                            .map(|(k, v)| (k, Sourced { value: v.value, from: v.from }))
                            .collect(),
                    })
                }

                // ---- package lists ----------------------------------------

                async fn package_lists<'e, E>(
                    ex: E,
                    ids: &[i64],
                    event: Option<i64>,
                ) -> Result<HashMap<i64, Vec<koji::PkgEntry>>>
                where
                    E: sqlx::Executor<'e, Database = Db>,
                {
                    let mut out: HashMap<i64, Vec<koji::PkgEntry>> = HashMap::new();
                    if ids.is_empty() {
                        return Ok(out);
                    }
                    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
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

                async fn inherited_packages_tx(
                    tx: &mut Tx<'_>,
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
                    let t = tag_row(&self.read, tag, event).await?;
                    let walk = if inherit { self.walk_ids(t.id, false, event).await? } else { Vec::new() };
                    let mut ids = vec![t.id];
                    ids.extend(walk.iter().map(|w| w.link.parent));
                    let lists = Self::package_lists(&self.read, &ids, event).await?;
                    let pk = koji::inherited_packages(t.id, &walk, &lists)
                        .map_err(|e| HubError::bad_request(format!("invalid pkg_filter in the inheritance: {e}")))?;
                    let names = Self::tag_names(&self.read, pk.values().map(|p| p.tag)).await?;
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
                    check_name("package", &p.package)?;
                    let mut tx = self.write.begin().await?;
                    let t = tag_for_change(&mut tx, tag).await?;
                    may_change(who, tag, t.perm.as_deref(), t.locked, force)?;
                    let ev = event(
                        &mut tx,
                        who,
                        &format!("{} package {} on {tag}", if p.blocked { "block" } else { "add" }, p.package),
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
                    sqlx::query(
                        "UPDATE tag_packages SET revoke_event = $1 WHERE tag_id = $2 AND package = $3 AND revoke_event IS NULL",
                    )
                    .bind(ev)
                    .bind(t.id)
                    .bind(&p.package)
                    .execute(&mut *tx)
                    .await?;
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
                    let mut tx = self.write.begin().await?;
                    let t = tag_for_change(&mut tx, tag).await?;
                    may_change(who, tag, t.perm.as_deref(), t.locked, force)?;
                    let ev = event(&mut tx, who, &format!("remove package {package} from {tag}")).await?;
                    let n = sqlx::query(
                        "UPDATE tag_packages SET revoke_event = $1 WHERE tag_id = $2 AND package = $3 AND revoke_event IS NULL",
                    )
                    .bind(ev)
                    .bind(t.id)
                    .bind(package)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        return Err(HubError::not_found(format!("package {package} is not on {tag}'s own list")));
                    }
                    tx.commit().await?;
                    Ok(())
                }

                // ---- builds -----------------------------------------------

                fn build_row(r: &<Db as sqlx::Database>::Row) -> Result<Build> {
                    Ok(Build {
                        id: r.try_get(0)?,
                        nvr: r.try_get(1)?,
                        name: r.try_get(2)?,
                        version: r.try_get(3)?,
                        release: r.try_get(4)?,
                        state: r.try_get(5)?,
                        owner: r.try_get(6)?,
                        task_id: r.try_get(7)?,
                        start_time: r.try_get(8)?,
                        completion_time: r.try_get(9)?,
                        artifacts: Vec::new(),
                        manifest: None,
                        extra: parse_json(r.try_get(10)?).unwrap_or(serde_json::Value::Null),
                    })
                }

                const BUILD_COLS: &'static str = "b.id, b.nvr, b.name, b.version, b.release, b.state, u.name, b.task_id, \
                     b.start_time, b.completion_time, b.extra";

                pub async fn create_build(&self, who: &Principal, b: &NewBuild) -> Result<Build> {
                    let nvr = check_new_build(b)?;
                    let mut tx = self.write.begin().await?;
                    let owner = who.id.ok_or_else(|| HubError::unauthorized("log in to create builds"))?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO builds (name, version, release, nvr, state, owner_id, start_time, manifest, extra) \
                         VALUES ($1, $2, $3, $4, 'BUILDING', $5, $6, $7, $8) RETURNING id",
                    )
                    .bind(&b.name)
                    .bind(&b.version)
                    .bind(&b.release)
                    .bind(&nvr)
                    .bind(owner)
                    .bind(now())
                    .bind(b.manifest.as_ref().map(json_text))
                    .bind(json_text(b.extra.as_ref().unwrap_or(&serde_json::json!({}))))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| exists(e, || format!("build {nvr} exists")))?;
                    for a in &b.artifacts {
                        sqlx::query(
                            "INSERT INTO artifacts (build_id, file, format, size, sha256) VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(id)
                        .bind(&a.file)
                        .bind(&a.format)
                        .bind(a.size)
                        .bind(a.sha256.to_ascii_lowercase())
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    self.build(&nvr, false).await
                }

                pub async fn build(&self, nvr: &str, with_manifest: bool) -> Result<Build> {
                    let sql = format!(
                        "SELECT {}, b.manifest FROM builds b JOIN users u ON u.id = b.owner_id WHERE b.nvr = $1",
                        Self::BUILD_COLS
                    );
                    let r = sqlx::query(&sql)
                        .bind(nvr)
                        .fetch_optional(&self.read)
                        .await?
                        .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
                    let mut b = Self::build_row(&r)?;
                    if with_manifest {
                        b.manifest = parse_json(r.try_get(11)?);
                    }
                    let rows = sqlx::query(
                        "SELECT file, format, size, sha256, store_key FROM artifacts WHERE build_id = $1 ORDER BY file",
                    )
                    .bind(b.id)
                    .fetch_all(&self.read)
                    .await?;
                    for r in rows {
                        let key: Option<String> = r.try_get(4)?;
                        b.artifacts.push(Artifact {
                            file: r.try_get(0)?,
                            format: r.try_get(1)?,
                            size: r.try_get(2)?,
                            sha256: r.try_get(3)?,
                            stored: key.is_some(),
                        });
                    }
                    Ok(b)
                }

                pub async fn artifact_key(&self, nvr: &str, file: &str) -> Result<(Artifact, Option<String>)> {
                    let r = sqlx::query(
                        "SELECT a.file, a.format, a.size, a.sha256, a.store_key FROM artifacts a JOIN builds b ON b.id = a.build_id \
                         WHERE b.nvr = $1 AND a.file = $2",
                    )
                    .bind(nvr)
                    .bind(file)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| HubError::not_found(format!("build {nvr} has no file `{file}`")))?;
                    let key: Option<String> = r.try_get(4)?;
                    Ok((
                        Artifact {
                            file: r.try_get(0)?,
                            format: r.try_get(1)?,
                            size: r.try_get(2)?,
                            sha256: r.try_get(3)?,
                            stored: key.is_some(),
                        },
                        key,
                    ))
                }

                pub async fn set_artifact_key(&self, who: &Principal, nvr: &str, file: &str, key: &str) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    let (bid, owner, state): (i64, i64, String) =
                        sqlx::query_as("SELECT id, owner_id, state FROM builds WHERE nvr = $1")
                            .bind(nvr)
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
                    if Some(owner) != who.id && !who.admin {
                        return Err(HubError::forbidden(format!("build {nvr} belongs to another user")));
                    }
                    if state != "BUILDING" {
                        return Err(HubError::conflict(format!("build {nvr} is {state}; its files cannot change")));
                    }
                    sqlx::query("UPDATE artifacts SET store_key = $1 WHERE build_id = $2 AND file = $3")
                        .bind(key)
                        .bind(bid)
                        .bind(file)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                /// BUILDING → COMPLETE once every artifact is stored, or → FAILED/CANCELED.
                pub async fn finish_build(&self, who: &Principal, nvr: &str, state: &str) -> Result<Build> {
                    let mut tx = self.write.begin().await?;
                    let (bid, owner, cur): (i64, i64, String) =
                        sqlx::query_as("SELECT id, owner_id, state FROM builds WHERE nvr = $1")
                            .bind(nvr)
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
                    if Some(owner) != who.id && !who.admin {
                        return Err(HubError::forbidden(format!("build {nvr} belongs to another user")));
                    }
                    if cur != "BUILDING" {
                        return Err(HubError::conflict(format!("build {nvr} is already {cur}")));
                    }
                    if state == "COMPLETE" {
                        let missing: Vec<String> = sqlx::query_scalar(
                            "SELECT file FROM artifacts WHERE build_id = $1 AND store_key IS NULL ORDER BY file",
                        )
                        .bind(bid)
                        .fetch_all(&mut *tx)
                        .await?;
                        if !missing.is_empty() {
                            return Err(HubError::conflict(format!(
                                "build {nvr} cannot complete: not uploaded: {}",
                                missing.join(", ")
                            )));
                        }
                    }
                    sqlx::query("UPDATE builds SET state = $1, completion_time = $2 WHERE id = $3")
                        .bind(state)
                        .bind(now())
                        .bind(bid)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    self.build(nvr, false).await
                }

                pub async fn list_builds(&self, offset: i64, limit: i64, state: Option<&str>) -> Result<Page<Build>> {
                    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM builds WHERE ($1 IS NULL OR state = $1)")
                        .bind(state)
                        .fetch_one(&self.read)
                        .await?;
                    let sql = format!(
                        "SELECT {} FROM builds b JOIN users u ON u.id = b.owner_id WHERE ($1 IS NULL OR b.state = $1) \
                         ORDER BY b.id DESC LIMIT $2 OFFSET $3",
                        Self::BUILD_COLS
                    );
                    let rows = sqlx::query(&sql)
                        .bind(state)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(&self.read)
                        .await?;
                    let items = rows.iter().map(Self::build_row).collect::<Result<Vec<_>>>()?;
                    Ok(Page { items, total, offset, limit })
                }

                // ---- tagging -----------------------------------------------

                pub async fn tag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    let t = tag_for_change(&mut tx, tag).await?;
                    may_change(who, tag, t.perm.as_deref(), t.locked, force)?;
                    let (bid, name, state): (i64, String, String) =
                        sqlx::query_as("SELECT id, name, state FROM builds WHERE nvr = $1")
                            .bind(nvr)
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
                    if state != "COMPLETE" {
                        return Err(HubError::conflict(format!("build {nvr} is {state}; only COMPLETE builds can be tagged")));
                    }
                    Self::tag_into(&mut tx, who, tag, &t, (bid, nvr, &name), force).await?;
                    tx.commit().await?;
                    Ok(())
                }

                /// Tags a COMPLETE build (id, NVR, package) into a tag whose
                /// permissions were checked: Koji's listing rules and one event.
                async fn tag_into(
                    tx: &mut Tx<'_>,
                    who: &Principal,
                    tag: &str,
                    t: &TagRow,
                    (bid, nvr, name): (i64, &str, &str),
                    force: bool,
                ) -> Result<()> {
                    let pk = Self::inherited_packages_tx(tx, t.id).await?;
                    match pk.get(name) {
                        None => {
                            return Err(HubError::conflict(format!(
                                "package {name} is not in tag {tag}'s package list (add it with `kiln tag pkg add {tag} {name}`)"
                            )));
                        }
                        Some(p) if p.blocked => {
                            return Err(HubError::conflict(format!("package {name} is blocked in tag {tag}")));
                        }
                        Some(_) => {}
                    }
                    let present: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM tag_listing WHERE tag_id = $1 AND build_id = $2 AND revoke_event IS NULL",
                    )
                    .bind(t.id)
                    .bind(bid)
                    .fetch_one(&mut **tx)
                    .await?;
                    if present > 0 && !force {
                        return Err(HubError::conflict(format!("build {nvr} is already in tag {tag} (use force to re-tag)")));
                    }
                    let ev = event(tx, who, &format!("tag {nvr} into {tag}")).await?;
                    sqlx::query("UPDATE tag_listing SET revoke_event = $1 WHERE tag_id = $2 AND build_id = $3 AND revoke_event IS NULL")
                        .bind(ev)
                        .bind(t.id)
                        .bind(bid)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("INSERT INTO tag_listing (tag_id, build_id, create_event, package) VALUES ($1, $2, $3, $4)")
                        .bind(t.id)
                        .bind(bid)
                        .bind(ev)
                        .bind(name)
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                }

                pub async fn untag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    let t = tag_for_change(&mut tx, tag).await?;
                    may_change(who, tag, t.perm.as_deref(), t.locked, force)?;
                    let bid: i64 = sqlx::query_scalar("SELECT id FROM builds WHERE nvr = $1")
                        .bind(nvr)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| HubError::not_found(format!("unknown build `{nvr}`")))?;
                    let ev = event(&mut tx, who, &format!("untag {nvr} from {tag}")).await?;
                    let n = sqlx::query(
                        "UPDATE tag_listing SET revoke_event = $1 WHERE tag_id = $2 AND build_id = $3 AND revoke_event IS NULL",
                    )
                    .bind(ev)
                    .bind(t.id)
                    .bind(bid)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        return Err(HubError::not_found(format!("build {nvr} is not in tag {tag}")));
                    }
                    tx.commit().await?;
                    Ok(())
                }

                /// `list-tagged`: Koji's readTaggedBuilds.
                pub async fn list_tagged(
                    &self,
                    tag: &str,
                    inherit: bool,
                    latest: bool,
                    event: Option<i64>,
                ) -> Result<Vec<TaggedOut>> {
                    let t = tag_row(&self.read, tag, event).await?;
                    let walk = self.walk_ids(t.id, false, event).await?;
                    let mut ids = vec![t.id];
                    ids.extend(walk.iter().map(|w| w.link.parent));
                    let lists = Self::package_lists(&self.read, &ids, event).await?;
                    let pk = koji::inherited_packages(t.id, &walk, &lists)
                        .map_err(|e| HubError::bad_request(format!("invalid pkg_filter in the inheritance: {e}")))?;
                    let scan: Vec<i64> = if inherit { ids.clone() } else { vec![t.id] };
                    // The listings alone (one index), then details only for
                    // the builds returned. Every listed build is COMPLETE:
                    // only COMPLETE builds can be tagged, and no change
                    // takes a build out of COMPLETE.
                    let sql = format!(
                        "SELECT tag_id, build_id, create_event, package FROM tag_listing \
                         WHERE tag_id IN ({}) AND {}",
                        id_list(&scan),
                        active(event, 1, "")
                    );
                    let mut q = sqlx::query(&sql);
                    if let Some(e) = event {
                        q = q.bind(e);
                    }
                    let mut listings: HashMap<i64, Vec<koji::Tagged>> = HashMap::new();
                    for r in q.fetch_all(&self.read).await? {
                        let tag_id: i64 = r.try_get(0)?;
                        let build: i64 = r.try_get(1)?;
                        let package: Option<String> = r.try_get(3)?;
                        listings.entry(tag_id).or_default().push(koji::Tagged {
                            nvr: build.to_string(),
                            package: package.unwrap_or_default(),
                            tag: tag_id,
                            tag_event: r.try_get(2)?,
                            complete: true,
                        });
                    }
                    let walk = if inherit { walk } else { Vec::new() };
                    let tagged = koji::tagged_builds(t.id, &walk, inherit, latest, &pk, &listings);
                    let mut build_ids: Vec<i64> = tagged.iter().filter_map(|b| b.nvr.parse().ok()).collect();
                    build_ids.sort_unstable();
                    build_ids.dedup();
                    let mut info: HashMap<i64, (String, String, String, String, String)> = HashMap::new();
                    for chunk in build_ids.chunks(1000) {
                        let sql = format!(
                            "SELECT b.id, b.nvr, b.name, b.version, b.release, u.name FROM builds b \
                             JOIN users u ON u.id = b.owner_id WHERE b.id IN ({})",
                            id_list(chunk)
                        );
                        for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                            info.insert(
                                r.try_get(0)?,
                                (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?),
                            );
                        }
                    }
                    let names = Self::tag_names(&self.read, tagged.iter().map(|b| b.tag)).await?;
                    Ok(tagged
                        .into_iter()
                        .map(|b| {
                            let (nvr, name, version, release, owner) =
                                b.nvr.parse::<i64>().ok().and_then(|id| info.get(&id).cloned()).unwrap_or_default();
                            TaggedOut {
                                nvr,
                                name,
                                version,
                                release,
                                tag: names.get(&b.tag).cloned().unwrap_or_default(),
                                tag_event: b.tag_event,
                                owner,
                            }
                        })
                        .collect())
                }

                // ---- history -----------------------------------------------

                pub async fn tag_history(&self, tag: &str) -> Result<Vec<HistoryEntry>> {
                    let id: i64 = sqlx::query_scalar("SELECT id FROM tags WHERE name = $1")
                        .bind(tag)
                        .fetch_optional(&self.read)
                        .await?
                        .ok_or_else(|| HubError::not_found(format!("unknown tag `{tag}`")))?;
                    enum Detail {
                        Json(serde_json::Value),
                        Link(koji::Link),
                    }
                    let mut raw: Vec<(i64, Option<i64>, &'static str, Detail)> = Vec::new();
                    for r in sqlx::query("SELECT arches, perm, locked, create_event, revoke_event FROM tag_config WHERE tag_id = $1")
                        .bind(id)
                        .fetch_all(&self.read)
                        .await?
                    {
                        let (a, p, l): (Option<String>, Option<String>, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                        raw.push((r.try_get(3)?, r.try_get(4)?, "config", Detail::Json(serde_json::json!({"arches": a, "perm": p, "locked": l}))));
                    }
                    for r in sqlx::query("SELECT key, value, blocked, create_event, revoke_event FROM tag_extra WHERE tag_id = $1")
                        .bind(id)
                        .fetch_all(&self.read)
                        .await?
                    {
                        let (k, v, b): (String, Option<String>, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                        raw.push((r.try_get(3)?, r.try_get(4)?, "extra", Detail::Json(serde_json::json!({"key": k, "value": parse_json(v), "blocked": b}))));
                    }
                    for r in sqlx::query(
                        "SELECT tag_id, parent_id, priority, maxdepth, intransitive, noconfig, pkg_filter, create_event, revoke_event \
                         FROM tag_inheritance WHERE tag_id = $1 OR parent_id = $1",
                    )
                    .bind(id)
                    .fetch_all(&self.read)
                    .await?
                    {
                        let l = koji::Link {
                            child: r.try_get(0)?,
                            parent: r.try_get(1)?,
                            priority: r.try_get(2)?,
                            maxdepth: r.try_get(3)?,
                            intransitive: r.try_get(4)?,
                            noconfig: r.try_get(5)?,
                            pkg_filter: r.try_get(6)?,
                        };
                        raw.push((r.try_get(7)?, r.try_get(8)?, "inheritance", Detail::Link(l)));
                    }
                    for r in sqlx::query("SELECT package, owner, blocked, create_event, revoke_event FROM tag_packages WHERE tag_id = $1")
                        .bind(id)
                        .fetch_all(&self.read)
                        .await?
                    {
                        let (p, o, b): (String, String, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                        raw.push((r.try_get(3)?, r.try_get(4)?, "package", Detail::Json(serde_json::json!({"package": p, "owner": o, "blocked": b}))));
                    }
                    for r in sqlx::query(
                        "SELECT b.nvr, l.create_event, l.revoke_event FROM tag_listing l JOIN builds b ON b.id = l.build_id WHERE l.tag_id = $1",
                    )
                    .bind(id)
                    .fetch_all(&self.read)
                    .await?
                    {
                        let nvr: String = r.try_get(0)?;
                        raw.push((r.try_get(1)?, r.try_get(2)?, "build", Detail::Json(serde_json::json!({"nvr": nvr}))));
                    }
                    // Only the events, users and tag names this history names.
                    let mut ev_ids: Vec<i64> = raw.iter().flat_map(|(c, r, _, _)| std::iter::once(*c).chain(*r)).collect();
                    ev_ids.sort_unstable();
                    ev_ids.dedup();
                    let mut events: HashMap<i64, (i64, Option<i64>)> = HashMap::new();
                    for chunk in ev_ids.chunks(1000) {
                        let sql = format!("SELECT id, time, user_id FROM events WHERE id IN ({})", id_list(chunk));
                        for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                            events.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
                        }
                    }
                    let mut user_ids: Vec<i64> = events.values().filter_map(|(_, u)| *u).collect();
                    user_ids.sort_unstable();
                    user_ids.dedup();
                    let mut users: HashMap<i64, String> = HashMap::new();
                    if !user_ids.is_empty() {
                        let sql = format!("SELECT id, name FROM users WHERE id IN ({})", id_list(&user_ids));
                        for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                            users.insert(r.try_get(0)?, r.try_get(1)?);
                        }
                    }
                    let link_tags = raw.iter().flat_map(|(_, _, _, d)| match d {
                        Detail::Link(l) => vec![l.child, l.parent],
                        Detail::Json(_) => Vec::new(),
                    });
                    let names = Self::tag_names(&self.read, link_tags.collect::<Vec<_>>()).await?;
                    let mut out = Vec::new();
                    for (create, revoke, table, detail) in raw {
                        let detail = match detail {
                            Detail::Json(v) => v,
                            Detail::Link(l) => serde_json::to_value(Self::link_out(&l, &names)).unwrap_or_default(),
                        };
                        for (ev, change) in [(Some(create), "created"), (revoke, "revoked")] {
                            let Some(ev) = ev else { continue };
                            let (time, uid) = events.get(&ev).copied().unwrap_or((0, None));
                            out.push(HistoryEntry {
                                event: ev,
                                time,
                                user: uid.and_then(|u| users.get(&u).cloned()),
                                change: change.into(),
                                table: table.into(),
                                detail: detail.clone(),
                            });
                        }
                    }
                    out.sort_by(|a, b| (a.event, &a.change, &a.table).cmp(&(b.event, &b.change, &b.table)));
                    Ok(out)
                }

                pub async fn last_event(&self) -> Result<i64> {
                    let e: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events").fetch_one(&self.read).await?;
                    Ok(e.unwrap_or(0))
                }

                // ---- targets -----------------------------------------------

                async fn target_row(&self, name: &str, event: Option<i64>) -> Result<(i64, Target)> {
                    let sql = format!(
                        "SELECT c.target_id, c.name, b.name, d.name, c.macros FROM target_config c \
                         JOIN tags b ON b.id = c.build_tag JOIN tags d ON d.id = c.dest_tag \
                         WHERE c.name = $1 AND {}",
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
                         JOIN tags b ON b.id = c.build_tag JOIN tags d ON d.id = c.dest_tag \
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
                pub async fn put_target(&self, who: &Principal, t: &Target, create_only: bool, replace: Option<&str>) -> Result<Target> {
                    check_name("target", &t.name)?;
                    for k in t.macros.keys() {
                        if !kiln_core::macros::is_macro_name(k) {
                            return Err(HubError::bad_request(format!(
                                "bad macro name `{k}`: letters, digits and _, not starting with a digit"
                            )));
                        }
                    }
                    let mut tx = self.write.begin().await?;
                    let b = tag_row(&mut *tx, &t.build_tag, None).await?;
                    let d = tag_row(&mut *tx, &t.dest_tag, None).await?;
                    let lookup = replace.unwrap_or(&t.name);
                    let existing: Option<i64> = sqlx::query_scalar(
                        "SELECT target_id FROM target_config WHERE name = $1 AND revoke_event IS NULL",
                    )
                    .bind(lookup)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if create_only && existing.is_some() {
                        return Err(HubError::conflict(format!("target `{}` exists", t.name)));
                    }
                    if replace.is_some() && existing.is_none() {
                        return Err(HubError::not_found(format!("unknown target `{lookup}`")));
                    }
                    let ev = event(&mut tx, who, &format!("set target {}", t.name)).await?;
                    let id = match existing {
                        Some(id) => {
                            sqlx::query("UPDATE target_config SET revoke_event = $1 WHERE target_id = $2 AND revoke_event IS NULL")
                                .bind(ev)
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                            id
                        }
                        None => sqlx::query_scalar("INSERT INTO targets DEFAULT VALUES RETURNING id")
                            .fetch_one(&mut *tx)
                            .await?,
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

                pub async fn delete_target(&self, who: &Principal, name: &str) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    let ev = event(&mut tx, who, &format!("delete target {name}")).await?;
                    let n = sqlx::query("UPDATE target_config SET revoke_event = $1 WHERE name = $2 AND revoke_event IS NULL")
                        .bind(ev)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if n == 0 {
                        return Err(HubError::not_found(format!("unknown target `{name}`")));
                    }
                    tx.commit().await?;
                    Ok(())
                }

                // ---- images --------------------------------------------------

                pub async fn add_image(&self, who: &Principal, i: &Image, key: &str) -> Result<()> {
                    let uid = who.id.ok_or_else(|| HubError::unauthorized("log in to upload images"))?;
                    let mut tx = self.write.begin().await?;
                    sqlx::query(
                        "INSERT INTO images (name, version, format, size, sha256, store_key, uploader_id, time) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&i.name)
                    .bind(&i.version)
                    .bind(&i.format)
                    .bind(i.size)
                    .bind(&i.sha256)
                    .bind(key)
                    .bind(uid)
                    .bind(i.time)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| exists(e, || format!("image {}@{} exists", i.name, i.version)))?;
                    tx.commit().await?;
                    Ok(())
                }

                pub async fn images(&self, name: Option<&str>) -> Result<Vec<(Image, String)>> {
                    let rows = sqlx::query(
                        "SELECT i.name, i.version, i.format, i.size, i.sha256, u.name, i.time, i.store_key FROM images i \
                         JOIN users u ON u.id = i.uploader_id WHERE ($1 IS NULL OR i.name = $1) ORDER BY i.name, i.id",
                    )
                    .bind(name)
                    .fetch_all(&self.read)
                    .await?;
                    rows.into_iter()
                        .map(|r| {
                            Ok((
                                Image {
                                    name: r.try_get(0)?,
                                    version: r.try_get(1)?,
                                    format: r.try_get(2)?,
                                    size: r.try_get(3)?,
                                    sha256: r.try_get(4)?,
                                    uploader: r.try_get(5)?,
                                    time: r.try_get(6)?,
                                },
                                r.try_get(7)?,
                            ))
                        })
                        .collect()
                }

                pub async fn remove_image(&self, name: &str, version: &str) -> Result<String> {
                    let mut tx = self.write.begin().await?;
                    let key: String = sqlx::query_scalar("SELECT store_key FROM images WHERE name = $1 AND version = $2")
                        .bind(name)
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| HubError::not_found(format!("unknown image {name}@{version}")))?;
                    sqlx::query("DELETE FROM images WHERE name = $1 AND version = $2")
                        .bind(name)
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(key)
                }


                // ---- hosts and tasks (docs/hub.md) -----------------------------

                pub async fn create_host(&self, who: &Principal, h: &NewHost, token_hash: &str) -> Result<()> {
                    check_name("host", &h.name)?;
                    check_name("arch", &h.arch)?;
                    if h.channels.is_empty() || !(1..=1000).contains(&h.capacity) {
                        return Err(HubError::bad_request("a host needs at least one channel and a capacity of 1 to 1000"));
                    }
                    for c in &h.channels {
                        check_name("channel", c)?;
                    }
                    let mut tx = self.write.begin().await?;
                    event(&mut tx, who, &format!("add host {}", h.name)).await?;
                    let uid: i64 = sqlx::query_scalar(
                        "INSERT INTO users (name, password_hash, kind, created) VALUES ($1, NULL, 'host', $2) RETURNING id",
                    )
                    .bind(&h.name)
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| exists(e, || format!("a user or host `{}` exists", h.name)))?;
                    sqlx::query(
                        "INSERT INTO hosts (user_id, name, arch, channels, capacity, enabled) VALUES ($1, $2, $3, $4, $5, TRUE)",
                    )
                    .bind(uid)
                    .bind(&h.name)
                    .bind(&h.arch)
                    .bind(h.channels.join(","))
                    .bind(h.capacity)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("INSERT INTO tokens (user_id, hash, name, created) VALUES ($1, $2, 'host', $3)")
                        .bind(uid)
                        .bind(token_hash)
                        .bind(now())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                pub async fn list_hosts(&self) -> Result<Vec<HostInfo>> {
                    let rows = sqlx::query(
                        "SELECT h.name, h.arch, h.channels, h.capacity, h.enabled, h.last_seen, \
                         (SELECT COUNT(*) FROM tasks t WHERE t.host_id = h.id AND t.state = 'OPEN') \
                         FROM hosts h ORDER BY h.name",
                    )
                    .fetch_all(&self.read)
                    .await?;
                    let now = now();
                    rows.into_iter()
                    .map(|r| {
                    let channels: String = r.try_get(2)?;
                            Ok(HostInfo {
                                name: r.try_get(0)?,
                                arch: r.try_get(1)?,
                                channels: channels.split(',').map(str::to_string).collect(),
                                capacity: r.try_get(3)?,
                                enabled: r.try_get(4)?,
                                last_seen: r.try_get(5)?,
                                load: r.try_get(6)?,
                                state: HostState::judge(r.try_get(4)?, r.try_get(5)?, now, self.lease),
                                })
                        })
                        .collect()
                }

                /// The host a principal is: (id, arch, channels, capacity).
                async fn host_of(&self, who: &Principal) -> Result<(i64, String, Vec<String>, i64)> {
                    let h = who.host.as_ref().ok_or_else(|| match who.id {
                        None => HubError::unauthorized("builders authenticate with their host token"),
                        Some(_) => HubError::forbidden(format!("{} is not a host", who.name)),
                    })?;
                    if !h.enabled {
                        return Err(HubError::forbidden(format!("host {} is disabled", who.name)));
                    }
                    Ok((h.id, h.arch.clone(), h.channels.clone(), h.capacity))
                }

                /// A builder is alive: its leases are renewed. Returns the ids
                /// of its tasks that were cancelled, for it to stop.
                pub async fn heartbeat(&self, who: &Principal) -> Result<Vec<i64>> {
                    let (host, ..) = self.host_of(who).await?;
                    let t = now();
                    let mut tx = self.write.begin().await?;
                    sqlx::query("UPDATE hosts SET last_seen = $1 WHERE id = $2").bind(t).bind(host).execute(&mut *tx).await?;
                    sqlx::query("UPDATE tasks SET lease_expires = $1 WHERE host_id = $2 AND state = 'OPEN'")
                        .bind(t + self.lease)
                        .bind(host)
                        .execute(&mut *tx)
                        .await?;
                    let cancel: Vec<i64> = sqlx::query_scalar(
                        "SELECT id FROM tasks WHERE host_id = $1 AND state = 'CANCELED' AND finished >= $2",
                    )
                    .bind(host)
                    .bind(t - 2 * self.lease)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(cancel)
                }

                /// Tasks whose lease ran out go back to FREE, or to FAILED
                /// once they used all their attempts.
                pub async fn expire_leases(&self, t: i64) -> Result<u64> {
                    let mut tx = self.write.begin().await?;
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
                    let chans = channels.iter().map(|c| format!("'{}'", c.replace('\'', ""))).collect::<Vec<_>>().join(",");
                    let update = format!(
                        "UPDATE tasks SET state = 'OPEN', host_id = $1, attempts = attempts + 1, lease_expires = $2, \
                         started = $3 WHERE state = 'FREE' AND id = (SELECT id FROM tasks WHERE state = 'FREE' \
                         AND (designated_host IS NULL OR designated_host = $1) AND (arch = $4 OR arch = 'noarch') \
                         AND channel IN ({chans}) ORDER BY priority, id LIMIT 1 {skip}) \
                         AND (SELECT COUNT(*) FROM tasks o WHERE o.host_id = $1 AND o.state = 'OPEN') < $5",
                        skip = $skip_locked
                    );
                    let sql = if $dml_in_with {
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
                        Some(r) if $dml_in_with => Self::task_row(&r).map(Some),
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
                    check_name("channel", &t.channel)?;
                    check_name("arch", &t.arch)?;
                    if !(1..=100).contains(&t.max_attempts) {
                        return Err(HubError::bad_request("max_attempts must be between 1 and 100"));
                    }
                    let owner = who.id.ok_or_else(|| HubError::unauthorized("log in to submit tasks"))?;
                    self.check_build_request(who, t).await?;
                    let mut tx = self.write.begin().await?;
                    let designated: Option<i64> = match &t.builder {
                        Some(b) => Some(
                            sqlx::query_scalar("SELECT id FROM hosts WHERE name = $1")
                                .bind(b)
                                .fetch_optional(&mut *tx)
                                .await?
                                .ok_or_else(|| HubError::not_found(format!("unknown builder `{b}`")))?,
                        ),
                        None => None,
                    };
                    let id: i64 = sqlx::query_scalar(
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
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    self.task(id).await
                }

                const TASK_COLS: &'static str = "t.id, t.method, t.state, t.priority, t.channel, t.arch, u.name, t.parent_id, \
                     h.name, d.name, t.request, t.result, t.attempts, t.max_attempts, t.lease_expires, t.created, t.started, t.finished";
                const TASK_FROM: &'static str = "tasks t JOIN users u ON u.id = t.owner_id LEFT JOIN hosts h ON h.id = t.host_id \
                     LEFT JOIN hosts d ON d.id = t.designated_host";

                fn task_row(r: &<Db as sqlx::Database>::Row) -> Result<Task> {
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
                    Ok(Page { items, total, offset, limit })
                }

                /// Cancels a task and its children (owner or admin).
                pub async fn cancel_task(&self, who: &Principal, id: i64) -> Result<Task> {
                    let t = self.task(id).await?;
                    if t.owner != who.name && !who.admin {
                        return Err(HubError::forbidden(format!("task {id} belongs to {}", t.owner)));
                    }
                    let mut tx = self.write.begin().await?;
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
                    let mut tx = self.write.begin().await?;
                    let mine: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE id = $1 AND host_id = $2")
                        .bind(id)
                        .bind(host)
                        .fetch_one(&mut *tx)
                        .await?;
                    if mine == 0 {
                        return Err(HubError::forbidden(format!("task {id} is not {}'s", who.name)));
                    }
                    sqlx::query("INSERT INTO task_logs (task_id, data) VALUES ($1, $2)")
                        .bind(id)
                        .bind(data)
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

                /// The task a host may report on: locks its row (a no-op
                /// update) and returns (attempt, request, owner id, owner name).
                async fn open_task_for(
                    tx: &mut Tx<'_>,
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
                        HubError::conflict(format!("task {id} is not open on {} (cancelled, or its lease expired)", who.name))
                    })?;
                    let owner_name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
                        .bind(owner)
                        .fetch_one(&mut **tx)
                        .await?;
                    Ok((attempt, serde_json::from_str(&request).unwrap_or_default(), owner, owner_name))
                }

                /// A builder starts uploading a file of its task's current
                /// attempt. The row comes first, so the blob it writes is
                /// referenced from its first byte; returns the row's id.
                pub async fn begin_upload(&self, who: &Principal, id: i64, file: &str, sha256: &str, size: i64) -> Result<i64> {
                    let (host, ..) = self.host_of(who).await?;
                    check_file_name(file)?;
                    check_sha256(file, sha256, size)?;
                    let sha256 = sha256.to_ascii_lowercase();
                    let mut tx = self.write.begin().await?;
                    let (attempt, ..) = Self::open_task_for(&mut tx, who, host, id).await?;
                    let stored: Option<bool> = sqlx::query_scalar(
                        "SELECT stored FROM task_uploads WHERE task_id = $1 AND attempt = $2 AND file = $3",
                    )
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
                    let mut tx = self.write.begin().await?;
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
                    sqlx::query(&format!("DELETE FROM task_uploads WHERE id IN ({ids})")).execute(&mut *tx).await?;
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
                    let mut tx = self.write.begin().await?;
                    let (attempt, request, owner, owner_name) = Self::open_task_for(&mut tx, who, host, id).await?;
                    let uploads: Vec<(String, String, i64, String)> = sqlx::query_as(
                        "SELECT file, sha256, size, store_key FROM task_uploads WHERE task_id = $1 AND attempt = $2 AND stored",
                    )
                    .bind(id)
                    .bind(attempt)
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut keys = Vec::new();
                    for a in &b.artifacts {
                        let up = uploads.iter().find(|u| u.0 == a.file).ok_or_else(|| {
                            HubError::conflict(format!("{} was not uploaded for task {id}", a.file))
                        })?;
                        if !up.1.eq_ignore_ascii_case(&a.sha256) || up.2 != a.size {
                            return Err(HubError::conflict(format!(
                                "{} differs from its upload (sha256 {}, {} bytes)",
                                a.file, up.1, up.2
                            )));
                        }
                        keys.push(up.3.clone());
                    }
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
                            "SELECT d.name FROM target_config c JOIN tags d ON d.id = c.dest_tag WHERE c.name = $1 AND {}",
                            active(None, 2, "c")
                        ))
                        .bind(&target)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| HubError::conflict(format!("target `{target}` no longer exists")))?;
                        let owner = Principal {
                            id: Some(owner),
                            name: owner_name,
                            admin: false,
                            perms: Vec::new(),
                            host: None,
                        };
                        let bid: i64 = sqlx::query_scalar(
                            "INSERT INTO builds (name, version, release, nvr, state, owner_id, task_id, start_time, \
                             completion_time, manifest, extra) VALUES ($1, $2, $3, $4, 'COMPLETE', $5, $6, $7, $8, $9, $10) \
                             RETURNING id",
                        )
                        .bind(&b.name)
                        .bind(&b.version)
                        .bind(&b.release)
                        .bind(&nvr)
                        .bind(owner.id)
                        .bind(id)
                        .bind(now())
                        .bind(now())
                        .bind(b.manifest.as_ref().map(json_text))
                        .bind(json_text(b.extra.as_ref().unwrap_or(&serde_json::json!({}))))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| exists(e, || format!("build {nvr} exists")))?;
                        for (a, key) in b.artifacts.iter().zip(&keys) {
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
                            .execute(&mut *tx)
                            .await?;
                        }
                        // The owner's right to tag was checked when the task
                        // was submitted; a tag locked since still refuses.
                        let t = tag_for_change(&mut tx, &dest).await?;
                        if t.locked {
                            return Err(HubError::locked(format!("tag {dest} is locked")));
                        }
                        Self::tag_into(&mut tx, &owner, &dest, &t, (bid, &nvr, &b.name), false).await?;
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

                /// Checks a build or update request before it is queued:
                /// its shape, its target, and (unless scratch) that the
                /// submitter may tag into the destination tag.
                async fn check_build_request(&self, who: &Principal, t: &NewTask) -> Result<()> {
                    let method = t.request.method();
                    t.request
                    .check()
                    .map_err(|e| HubError::bad_request(format!("{method} request: {e}")))?;
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
                            TaskRequest::Noop => return Ok(()),
                            };
                            let target = self.target(target, None).await?;
                    if !scratch {
                        let dest = tag_row(&self.read, &target.dest_tag, None).await?;
                        may_change(who, &target.dest_tag, dest.perm.as_deref(), dest.locked, false)?;
                    }
                    Ok(())
                }

                /// Whether any image or artifact still uses a store key.
                pub async fn key_used(&self, key: &str) -> Result<bool> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT (SELECT COUNT(*) FROM images WHERE store_key = $1) + (SELECT COUNT(*) FROM artifacts WHERE store_key = $1) \
                         + (SELECT COUNT(*) FROM task_uploads WHERE store_key = $1)",
                    )
                    .bind(key)
                    .fetch_one(&self.read)
                    .await?;
                    Ok(n > 0)
                }
            }
        }
    };
}

// PostgreSQL claims with FOR UPDATE SKIP LOCKED so concurrent builders
// never wait on each other's rows; SQLite's single writer makes the
// conditional UPDATE atomic by itself.
backend!(sqlite, sqlx::Sqlite, "", "group_concat(p.perm, ',')", false);
backend!(
    pg,
    sqlx::Postgres,
    "FOR UPDATE SKIP LOCKED",
    "string_agg(p.perm, ',')",
    true
);

/// The hub's database, SQLite or PostgreSQL.
pub enum Db {
    Sqlite(sqlite::Backend),
    Pg(pg::Backend),
}

impl Db {
    /// Opens `url` (`sqlite://PATH` or `postgres://…`) and applies the migrations.
    pub async fn open(url: &str) -> Result<Db> {
        let db = if let Some(path) = url.strip_prefix("sqlite://") {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
            let path = std::path::Path::new(path);
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| HubError::internal(format!("cannot create {}: {e}", dir.display())))?;
            }
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(30));
            let read = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(opts.clone())
                .await
                .map_err(|e| HubError::internal(format!("opening {}: {e}", path.display())))?;
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await
                .map_err(|e| HubError::internal(format!("opening {}: {e}", path.display())))?;
            Db::Sqlite(sqlite::Backend {
                read,
                write,
                lease: LEASE_SECONDS,
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(32)
                .connect(url)
                .await
                .map_err(|e| HubError::internal(format!("connecting to PostgreSQL: {e}")))?;
            Db::Pg(pg::Backend {
                read: pool.clone(),
                write: pool,
                lease: LEASE_SECONDS,
            })
        } else {
            return Err(HubError::bad_request(format!(
                "unsupported database URL `{url}`: use sqlite://PATH or postgres://…"
            )));
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Periodic upkeep (the hub calls it every few seconds). On
    /// PostgreSQL, the claim's plan depends on fresh statistics of the FREE
    /// tasks: a burst of submissions between autovacuum's passes would make
    /// the planner read and sort every FREE row per claim instead of taking
    /// the first one from `tasks_free`, so `tasks` is analyzed once enough of
    /// it changed.
    pub async fn maintain(&self) -> Result<()> {
        if let Db::Pg(b) = self {
            let stale: Option<bool> = sqlx::query_scalar(
                "SELECT s.n_mod_since_analyze > 200 + 0.1 * greatest(c.reltuples, 0) \
                 FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'tasks'",
            )
            .fetch_optional(&b.write)
            .await?;
            if stale == Some(true) {
                sqlx::query("ANALYZE tasks").execute(&b.write).await?;
            }
        }
        Ok(())
    }

    /// Sets how long a claim lasts without a heartbeat (`kiln serve --lease`).
    pub fn set_lease(&mut self, seconds: i64) {
        match self {
            Db::Sqlite(b) => b.lease = seconds,
            Db::Pg(b) => b.lease = seconds,
        }
    }

    pub fn lease(&self) -> i64 {
        match self {
            Db::Sqlite(b) => b.lease,
            Db::Pg(b) => b.lease,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgres",
        }
    }
}

macro_rules! forward {
    ($( fn $f:ident(&self $(, $a:ident : $t:ty)*) -> $r:ty; )*) => {
        impl Db {
            $(
                pub async fn $f(&self $(, $a: $t)*) -> Result<$r> {
                    match self {
                        Db::Sqlite(b) => b.$f($($a),*).await,
                        Db::Pg(b) => b.$f($($a),*).await,
                    }
                }
            )*
        }
    };
}

forward! {
    fn migrate(&self) -> ();
    fn create_user(&self, who: &Principal, name: &str, password_hash: Option<String>, perms: &[String], kind: &str) -> i64;
    fn user_count(&self) -> i64;
    fn list_users(&self) -> Vec<User>;
    fn principal_by_token(&self, hash: &str) -> Option<Principal>;
    fn password_of(&self, name: &str) -> Option<(i64, Option<String>)>;
    fn grant(&self, who: &Principal, user: &str, perm: &str) -> ();
    fn revoke(&self, who: &Principal, user: &str, perm: &str) -> ();
    fn create_token(&self, user: &str, hash: &str, name: &str, expires: Option<i64>) -> i64;
    fn list_tokens(&self, user: &str) -> Vec<TokenInfo>;
    fn revoke_token(&self, who: &Principal, id: i64) -> ();
    fn create_tag(&self, who: &Principal, t: &NewTag) -> TagInfo;
    fn tag_info(&self, name: &str, event: Option<i64>) -> TagInfo;
    fn list_tags(&self, offset: i64, limit: i64, event: Option<i64>) -> Page<TagInfo>;
    fn edit_tag(&self, who: &Principal, name: &str, e: &TagEdit) -> TagInfo;
    fn delete_tag(&self, who: &Principal, name: &str) -> ();
    fn links(&self, tag: &str, reverse: bool, event: Option<i64>) -> Vec<LinkOut>;
    fn full_inheritance(&self, tag: &str, reverse: bool, event: Option<i64>) -> Vec<WalkOut>;
    fn add_link(&self, who: &Principal, child: &str, l: &LinkIn) -> Vec<LinkOut>;
    fn edit_link(&self, who: &Principal, child: &str, parent: &str, e: &LinkEdit) -> Vec<LinkOut>;
    fn remove_link(&self, who: &Principal, child: &str, parent: &str) -> Vec<LinkOut>;
    fn build_config(&self, tag: &str, event: Option<i64>) -> BuildConfigOut;
    fn packages(&self, tag: &str, inherit: bool, event: Option<i64>) -> Vec<PackageOut>;
    fn set_package(&self, who: &Principal, tag: &str, p: &PackageIn, force: bool) -> ();
    fn remove_package(&self, who: &Principal, tag: &str, package: &str, force: bool) -> ();
    fn create_build(&self, who: &Principal, b: &NewBuild) -> Build;
    fn build(&self, nvr: &str, with_manifest: bool) -> Build;
    fn artifact_key(&self, nvr: &str, file: &str) -> (Artifact, Option<String>);
    fn set_artifact_key(&self, who: &Principal, nvr: &str, file: &str, key: &str) -> ();
    fn finish_build(&self, who: &Principal, nvr: &str, state: &str) -> Build;
    fn list_builds(&self, offset: i64, limit: i64, state: Option<&str>) -> Page<Build>;
    fn tag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> ();
    fn untag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> ();
    fn list_tagged(&self, tag: &str, inherit: bool, latest: bool, event: Option<i64>) -> Vec<TaggedOut>;
    fn tag_history(&self, tag: &str) -> Vec<HistoryEntry>;
    fn last_event(&self) -> i64;
    fn target(&self, name: &str, event: Option<i64>) -> Target;
    fn list_targets(&self) -> Vec<Target>;
    fn put_target(&self, who: &Principal, t: &Target, create_only: bool, replace: Option<&str>) -> Target;
    fn delete_target(&self, who: &Principal, name: &str) -> ();
    fn add_image(&self, who: &Principal, i: &Image, key: &str) -> ();
    fn images(&self, name: Option<&str>) -> Vec<(Image, String)>;
    fn remove_image(&self, name: &str, version: &str) -> String;
    fn key_used(&self, key: &str) -> bool;
    fn create_host(&self, who: &Principal, h: &NewHost, token_hash: &str) -> ();
    fn list_hosts(&self) -> Vec<HostInfo>;
    fn heartbeat(&self, who: &Principal) -> Vec<i64>;
    fn expire_leases(&self, at: i64) -> u64;
    fn claim(&self, who: &Principal) -> Option<Task>;
    fn finish_task(&self, who: &Principal, id: i64, ok: bool, result: &serde_json::Value) -> Task;
    fn submit_task(&self, who: &Principal, t: &NewTask) -> Task;
    fn task(&self, id: i64) -> Task;
    fn list_tasks(&self, offset: i64, limit: i64, state: Option<&str>) -> Page<Task>;
    fn cancel_task(&self, who: &Principal, id: i64) -> Task;
    fn append_log(&self, who: &Principal, id: i64, data: &str) -> ();
    fn task_log(&self, id: i64, after: i64) -> Vec<(i64, String)>;
    fn begin_upload(&self, who: &Principal, id: i64, file: &str, sha256: &str, size: i64) -> i64;
    fn end_upload(&self, upload: i64, ok: bool) -> ();
    fn sweep_uploads(&self) -> Vec<String>;
    fn complete_task_build(&self, who: &Principal, id: i64, b: &NewBuild, result: &serde_json::Value) -> Task;
    fn release_task(&self, who: &Principal, id: i64) -> Task;
    fn task_file(&self, id: i64, file: &str) -> (TaskFile, String);
}

/// The macro layers of a target (layers 2 and 4 of docs/profiles.md).
pub async fn macro_layers(db: &Db, target: &str) -> Result<MacroLayers> {
    let t = db.target(target, None).await?;
    let bc = db.build_config(&t.build_tag, None).await?;
    let mut build_tag_macros = BTreeMap::new();
    for (k, v) in bc.extra {
        let name = k.strip_prefix("rpm.macro.").or_else(|| k.strip_prefix("macro."));
        if let Some(name) = name {
            let value = macro_text(&v.value);
            build_tag_macros.insert(name.to_string(), SourcedText { value, from: v.from });
        }
    }
    Ok(MacroLayers {
        target: t.name,
        target_macros: t.macros,
        build_tag: t.build_tag,
        build_tag_macros,
    })
}
