//! Users, their permissions and their tokens.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Current, Dialect, Key, Tx};
use crate::db::now;
use crate::db::rules::{check_label, check_name, exists};
use crate::error::{HubError, Result};
use crate::model::{HostRef, Principal, TokenInfo, User};

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
    pub async fn create_user(
        &self,
        who: &Principal,
        name: &str,
        password_hash: Option<String>,
        perms: &[String],
        kind: &str,
    ) -> Result<i64> {
        check_name("user name", name)?;
        perms.iter().try_for_each(|p| check_name("permission", p))?;
        let mut tx = self.begin_write().await?;
        let ev = Self::event(&mut tx, who, &format!("create user {name}")).await?;
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
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.read)
            .await?)
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
            let (name, kind, perm): (String, String, Option<String>) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            match out.last_mut() {
                Some(u) if u.name == name => u.perms.extend(perm),
                _ => out.push(User {
                    name,
                    kind,
                    perms: perm.into_iter().collect(),
                }),
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
            agg = D::STRING_AGG
        );
        let Some(r) = sqlx::query(&sql)
            .bind(hash)
            .bind(now())
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let perms = perm_list(r.try_get(2)?);
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
        let mut tx = self.begin_write().await?;
        let uid = Self::user_id(&mut tx, user).await?;
        let ev = Self::event(&mut tx, who, &format!("grant {perm} to {user}")).await?;
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
        let mut tx = self.begin_write().await?;
        let uid = Self::user_id(&mut tx, user).await?;
        Self::revoke_and_commit(
            tx,
            who,
            &format!("revoke {perm} from {user}"),
            Current::new(
                "user_perms",
                "user_id = $2 AND perm = $3",
                [Key::Id(uid), Key::Text(perm)],
            ),
            || HubError::not_found(format!("{user} does not have `{perm}`")),
        )
        .await
    }

    pub async fn create_token(&self, user: &str, hash: &str, name: &str, expires: Option<i64>) -> Result<i64> {
        check_label("token name", name)?;
        let mut tx = self.begin_write().await?;
        let uid = Self::user_id(&mut tx, user).await?;
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
        let mut tx = self.begin_write().await?;
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

    /// The id of user `name`.
    async fn user_id(tx: &mut Tx<'_, D>, name: &str) -> Result<i64> {
        sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| HubError::not_found(format!("unknown user `{name}`")))
    }
}

/// A user's permissions as `Dialect::STRING_AGG` joins them, sorted.
pub(super) fn perm_list(joined: Option<String>) -> Vec<String> {
    let mut perms: Vec<String> = joined
        .iter()
        .flat_map(|p| p.split(','))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    perms.sort();
    perms
}
