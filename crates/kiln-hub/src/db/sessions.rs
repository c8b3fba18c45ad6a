//! Web sessions (docs/web.md): made at a login through the web form, found
//! by the sha256 of the cookie's token, ended by logging out or by
//! expiring. A session acts as its user with the permissions the user holds
//! at each request.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect};
use crate::db::now;
use crate::error::Result;
use crate::model::Principal;

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
    /// Records a new session of user `user_id` until `expires`.
    pub async fn create_session(&self, user_id: i64, token_sha256: &str, csrf: &str, expires: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO web_sessions (token_sha256, user_id, csrf, created, expires) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_sha256)
        .bind(user_id)
        .bind(csrf)
        .bind(now())
        .bind(expires)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The user of a live session and the session's CSRF token.
    pub async fn session(&self, token_sha256: &str) -> Result<Option<(Principal, String)>> {
        let sql = format!(
            "SELECT u.id, u.name, (SELECT {agg} FROM user_perms p WHERE p.user_id = u.id AND p.revoke_event IS NULL), \
             s.csrf FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = $1 AND s.expires > $2",
            agg = D::STRING_AGG
        );
        let Some(r) = sqlx::query(&sql)
            .bind(token_sha256)
            .bind(now())
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let perms = super::users::perm_list(r.try_get(2)?);
        let p = Principal {
            id: Some(r.try_get(0)?),
            name: r.try_get(1)?,
            admin: perms.iter().any(|p| p == "admin"),
            perms,
            host: None,
        };
        Ok(Some((p, r.try_get(3)?)))
    }

    /// Ends a session (logging out).
    pub async fn end_session(&self, token_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Forgets the sessions that expired before `at`.
    pub async fn prune_sessions(&self, at: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM web_sessions WHERE expires <= $1")
            .bind(at)
            .execute(&self.write)
            .await?;
        Ok(super::backend::RowsAffected::rows_affected(&r))
    }
}
