//! Login attempts counted against the failed-login limit (docs/hub.md,
//! "Users, tokens, permissions"). An attempt is admitted, and counted,
//! before its password is checked, in one atomic step per attempt: SQLite
//! runs the check and the insert as a single statement; PostgreSQL first
//! takes a transaction-scoped advisory lock on each key, so concurrent
//! attempts on one key, from any hub on the database, are admitted one at a
//! time. The keys are sha256 values (`auth::LoginKeys`), never the name
//! typed.

use sha2::{Digest, Sha256};
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Type};

use super::backend::{Backend, Col, Dialect};
use crate::auth::{LoginLimit, retry_after};
use crate::error::Result;

/// Whether a login attempt may go on to its password check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Counted: the ids of the rows recording it, one per key.
    Admitted(Vec<i64>),
    /// Refused without being counted: seconds until one more is admitted.
    Refused(u64),
}

/// The advisory lock id PostgreSQL serialises a key's attempts on: the
/// first 64 bits of its sha256 (a collision only makes two keys wait for
/// each other).
pub(super) fn lock_id(key: &str) -> i64 {
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// The statement that counts one attempt against every key (`$3`, `$4`,
/// …) at time `$1`, only when each has fewer than `$2` attempts after
/// `$N` (the window's start); returns the ids of the rows it added.
fn admit_sql(keys: usize) -> String {
    let cut = keys + 3;
    let rows = (0..keys)
        .map(|i| format!("SELECT ${} AS k", i + 3))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let under = (0..keys)
        .map(|i| {
            format!(
                "(SELECT COUNT(*) FROM login_attempts WHERE key_hash = ${} AND time > ${cut}) < $2",
                i + 3
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    format!("INSERT INTO login_attempts (key_hash, time) SELECT r.k, $1 FROM ({rows}) r WHERE {under} RETURNING id")
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
    /// Counts a login attempt at `now` against every one of `keys`, if
    /// each has fewer than `limit.max` attempts within the window;
    /// otherwise counts nothing and says how long to wait.
    pub async fn admit_login(&self, keys: &[String], now: i64, limit: LoginLimit) -> Result<Admission> {
        let cut = now.saturating_sub(limit.window_secs());
        let mut tx = self.begin_write().await?;
        if !D::KEY_LOCK.is_empty() {
            // In one order, so two attempts sharing keys never deadlock.
            let mut ids: Vec<i64> = keys.iter().map(|k| lock_id(k)).collect();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                sqlx::query(D::KEY_LOCK).bind(id).execute(&mut *tx).await?;
            }
        }
        let sql = admit_sql(keys.len());
        let mut q = sqlx::query_scalar(&sql).bind(now).bind(i64::from(limit.max));
        for k in keys {
            q = q.bind(k.as_str());
        }
        let ids: Vec<i64> = q.bind(cut).fetch_all(&mut *tx).await?;
        if ids.len() == keys.len() {
            tx.commit().await?;
            return Ok(Admission::Admitted(ids));
        }
        let mut wait = 1;
        for k in keys {
            let times: Vec<i64> = sqlx::query_scalar(
                "SELECT time FROM login_attempts WHERE key_hash = $1 AND time > $2 ORDER BY time DESC",
            )
            .bind(k.as_str())
            .bind(cut)
            .fetch_all(&mut *tx)
            .await?;
            wait = wait.max(retry_after(&times, now, limit).unwrap_or(1));
        }
        tx.rollback().await?;
        Ok(Admission::Refused(wait))
    }

    /// A login succeeded: the user's attempts no longer count, and neither
    /// does this attempt itself (`attempts`, from [`Admission::Admitted`]);
    /// the address keeps its other attempts.
    pub async fn login_succeeded(&self, user_key: &str, attempts: &[i64]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM login_attempts WHERE key_hash = $1")
            .bind(user_key)
            .execute(&mut *tx)
            .await?;
        for id in attempts {
            sqlx::query("DELETE FROM login_attempts WHERE id = $1")
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the attempts made at `before` or earlier (the hub's upkeep
    /// passes the start of the window); returns how many.
    pub async fn prune_logins(&self, before: i64) -> Result<u64> {
        use super::backend::RowsAffected;
        Ok(sqlx::query("DELETE FROM login_attempts WHERE time <= $1")
            .bind(before)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    /// How many attempts are counted against `key` after `after`.
    pub async fn login_attempts(&self, key: &str, after: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE key_hash = $1 AND time > $2")
                .bind(key)
                .bind(after)
                .fetch_one(&self.read)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable_and_differ() {
        assert_eq!(lock_id("a"), lock_id("a"));
        assert_ne!(lock_id("a"), lock_id("b"));
    }

    #[test]
    fn the_admitting_statement_checks_every_key() {
        assert_eq!(
            admit_sql(2),
            "INSERT INTO login_attempts (key_hash, time) SELECT r.k, $1 FROM (SELECT $3 AS k UNION ALL SELECT $4 AS k) r \
             WHERE (SELECT COUNT(*) FROM login_attempts WHERE key_hash = $3 AND time > $5) < $2 \
             AND (SELECT COUNT(*) FROM login_attempts WHERE key_hash = $4 AND time > $5) < $2 RETURNING id"
        );
        assert!(admit_sql(1).contains(
            "FROM (SELECT $3 AS k) r WHERE (SELECT COUNT(*) FROM login_attempts WHERE key_hash = $3 AND time > $4) < $2"
        ));
    }
}
