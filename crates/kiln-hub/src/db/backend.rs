//! What every area of the domain shares: the `Dialect` a database brings,
//! the `Backend` (its pools and the lease), the migrations, the event every
//! change records first, the tag row a change locks and checks, and the
//! revocation of versioned rows.
//!
//! The domain is generic over the database `D`. sqlx needs to know that
//! `D` can run queries and encode and decode the column types the domain
//! uses; Rust does not imply where-clauses, so every `impl` block of the
//! areas repeats the same bounds as the one below.

use sqlx::migrate::{Migrate, Migrator};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use crate::db::now;
use crate::db::rules::{active, may_change};
use crate::error::{HubError, Result};
use crate::model::Principal;

/// What differs between the databases: their migrations, a few pieces of
/// SQL, and how a statement's result counts the rows it changed.
pub trait Dialect: Database<QueryResult: RowsAffected> {
    /// The schema's migrations, in this database's dialect.
    const MIGRATIONS: Migrator;
    /// Migrations whose text changed after they were released, in comments
    /// only: (version, the released text's checksum). A database that
    /// applied the released text gets the new checksum recorded, so sqlx's
    /// check of applied migrations still guards every other change.
    const REWORDED: &'static [(i64, &'static str)];
    /// The row lock a claim takes on the task it picks.
    const SKIP_LOCKED: &'static str;
    /// The aggregate that joins a user's permissions with commas.
    const STRING_AGG: &'static str;
    /// Whether an UPDATE … RETURNING may be a `WITH` query, so that a claim
    /// returns its task, names joined, in one round trip.
    const DML_IN_WITH: bool;
    /// How a transaction that will write begins. On SQLite it takes the
    /// write lock at once (`BEGIN IMMEDIATE`): a deferred transaction that
    /// read first and then writes fails at once with "database is locked"
    /// when another connection (another process on the same file, such as
    /// `kiln user create --db`) wrote in between, where waiting on the lock
    /// at the start is safe.
    const BEGIN_WRITE: &'static str;
    /// The statement that holds a lock on the 64-bit id `$1` until the
    /// transaction ends, serialising login attempts on one key across
    /// connections and hubs; empty when one statement is atomic by itself.
    const KEY_LOCK: &'static str;
    /// The current tag listings, as a `FROM` item that reads them from the
    /// covering index alone. SQLite's planner picks the unique index on
    /// (tag, build) instead and then reads every row from the table, ten
    /// times slower on a deep tag's walk; PostgreSQL's index-only scan
    /// needs no hint.
    const CURRENT_LISTINGS: &'static str;
    /// An aggregate of a group's listings as the text of one JSON array of
    /// `[build_id, create_event, package]`: a deep tag's walk reads
    /// thousands of listings, and one row per tag instead of one per
    /// listing saves sqlx's per-row cost (on SQLite, most of the time).
    const LISTINGS_JSON: &'static str;
}

/// The number of rows a statement changed (each driver's result type has
/// it as an inherent method).
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

/// A type stored in a column of database `D`: bound to queries and read
/// from rows.
pub trait Col<D: Database>: for<'q> Encode<'q, D> + for<'r> Decode<'r, D> + Type<D> + Send {}

impl<D: Database, T> Col<D> for T where T: for<'q> Encode<'q, D> + for<'r> Decode<'r, D> + Type<D> + Send {}

/// A transaction on database `D`.
pub(super) type Tx<'a, D> = sqlx::Transaction<'a, D>;

/// Reads go to `read`, changes to `write` (for SQLite a single
/// connection, so writers queue instead of failing busy).
pub struct Backend<D: Database> {
    pub read: sqlx::Pool<D>,
    pub write: sqlx::Pool<D>,
    /// Seconds a claimed task stays a builder's without a heartbeat.
    pub lease: i64,
    /// Resolved answers of the present (`db::cache`).
    pub cache: super::cache::ReadCache,
}

/// A tag and its configuration.
pub(super) struct TagRow {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) arches: Option<String>,
    pub(super) perm: Option<String>,
    pub(super) locked: bool,
}

/// A value bound to a parameter of a row filter.
#[derive(Clone, Copy)]
pub(super) enum Key<'a> {
    Id(i64),
    Text(&'a str),
}

/// The current rows of a versioned table that `filter` selects; the
/// filter's parameters are `$2`, `$3`, … bound from `keys` in order (`$1`
/// is the revoking event).
pub(super) struct Current<'a, const N: usize> {
    table: &'static str,
    filter: &'static str,
    keys: [Key<'a>; N],
}

impl<'a, const N: usize> Current<'a, N> {
    pub(super) fn new(table: &'static str, filter: &'static str, keys: [Key<'a>; N]) -> Self {
        Current { table, filter, keys }
    }
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
    /// A transaction that will write ([`Dialect::BEGIN_WRITE`]).
    pub(super) async fn begin_write(&self) -> Result<Tx<'static, D>> {
        Ok(self.write.begin_with(D::BEGIN_WRITE).await?)
    }

    pub async fn migrate(&self) -> Result<()>
    where
        D::Connection: Migrate,
        for<'q> Vec<u8>: Encode<'q, D> + Type<D>,
    {
        self.accept_reworded().await?;
        D::MIGRATIONS
            .run(&self.write)
            .await
            .map_err(|e| HubError::internal(format!("applying migrations: {e}")))
    }

    /// Records the current checksum of each [`Dialect::REWORDED`] migration
    /// where the released text's checksum is recorded (nothing on a fresh
    /// database, which has no migrations table yet).
    async fn accept_reworded(&self) -> Result<()>
    where
        for<'q> Vec<u8>: Encode<'q, D> + Type<D>,
    {
        let migrations = D::MIGRATIONS;
        for (version, released) in D::REWORDED {
            let Some(m) = migrations.iter().find(|m| m.version == *version) else {
                continue;
            };
            let old = hex::decode(released)
                .map_err(|e| HubError::internal(format!("the checksum of migration {version}: {e}")))?;
            let done = sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3")
                .bind(m.checksum.to_vec())
                .bind(*version)
                .bind(old)
                .execute(&self.write)
                .await;
            // No migrations table: nothing was applied, nothing to record.
            if done.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Serialises the changes that check pipelines against each other and
    /// against targets (the loop check, a target in use) across
    /// connections and hubs: an advisory lock in PostgreSQL until the
    /// transaction ends; SQLite has a single writer.
    pub(super) async fn lock_pipelines(tx: &mut Tx<'_, D>) -> Result<()> {
        /// The lock's id: "kilnpipe" as a big-endian 64-bit number.
        const PIPELINES: i64 = 0x6b69_6c6e_7069_7065;
        if !D::KEY_LOCK.is_empty() {
            sqlx::query(D::KEY_LOCK).bind(PIPELINES).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Records the event a change makes; returns its id.
    pub(super) async fn event(tx: &mut Tx<'_, D>, who: &Principal, action: &str) -> Result<i64> {
        let id: i64 = sqlx::query_scalar("INSERT INTO events (time, user_id, action) VALUES ($1, $2, $3) RETURNING id")
            .bind(now())
            .bind(who.id)
            .bind(action)
            .fetch_one(&mut **tx)
            .await?;
        Ok(id)
    }

    /// The tag named `name` as of `event` (now when `None`): names are
    /// versioned (`tag_names`), so an event before a deletion or a rename
    /// finds the tag that had the name then.
    pub(super) async fn tag_row<'e, E>(ex: E, name: &str, event: Option<i64>) -> Result<TagRow>
    where
        E: Executor<'e, Database = D>,
    {
        let sql = format!(
            "SELECT n.tag_id, n.name, c.arches, c.perm, c.locked FROM tag_names n \
             JOIN tag_config c ON c.tag_id = n.tag_id WHERE n.name = $1 AND {} AND {}",
            active(event, 2, "n"),
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
    pub(super) async fn tag_for_change(tx: &mut Tx<'_, D>, name: &str) -> Result<TagRow> {
        let t = Self::tag_row(&mut **tx, name, None).await?;
        sqlx::query("UPDATE tags SET slot = slot WHERE id = $1")
            .bind(t.id)
            .execute(&mut **tx)
            .await?;
        // Read again under the lock: a change committed while this one
        // waited for it (an edit, a rename, a deletion) is seen.
        let again = Self::tag_row(&mut **tx, name, None).await?;
        if again.id != t.id {
            return Err(HubError::conflict(format!("tag {name} changed meanwhile; try again")));
        }
        Ok(again)
    }

    /// A change to a tag's content begins: a transaction holding the tag
    /// (`tag_for_change`), whose permission and lock `who` passed.
    pub(super) async fn begin_tag_change(
        &self,
        who: &Principal,
        tag: &str,
        force: bool,
    ) -> Result<(Tx<'static, D>, TagRow)> {
        let mut tx = self.begin_write().await?;
        let t = Self::tag_for_change(&mut tx, tag).await?;
        may_change(who, tag, t.perm.as_deref(), t.locked, force)?;
        Ok((tx, t))
    }

    /// Revokes `rows` as of event `ev` (versioned rows are revoked, never
    /// updated or deleted); returns how many there were.
    pub(super) async fn revoke_rows<const N: usize>(tx: &mut Tx<'_, D>, ev: i64, rows: Current<'_, N>) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET revoke_event = $1 WHERE {} AND revoke_event IS NULL",
            rows.table, rows.filter
        );
        let mut q = sqlx::query(&sql).bind(ev);
        for key in rows.keys {
            q = match key {
                Key::Id(v) => q.bind(v),
                Key::Text(v) => q.bind(v),
            };
        }
        Ok(q.execute(&mut **tx).await?.rows_affected())
    }

    /// Revokes `rows`, which must exist: `missing` when none is current.
    pub(super) async fn revoke_existing<const N: usize>(
        tx: &mut Tx<'_, D>,
        ev: i64,
        rows: Current<'_, N>,
        missing: impl FnOnce() -> HubError,
    ) -> Result<()> {
        match Self::revoke_rows(tx, ev, rows).await? {
            0 => Err(missing()),
            _ => Ok(()),
        }
    }

    /// Ends a change that takes `rows` away: records its event for
    /// `action`, revokes the rows (`missing` when none is current) and
    /// commits.
    pub(super) async fn revoke_and_commit<const N: usize>(
        mut tx: Tx<'_, D>,
        who: &Principal,
        action: &str,
        rows: Current<'_, N>,
        missing: impl FnOnce() -> HubError,
    ) -> Result<()> {
        let ev = Self::event(&mut tx, who, action).await?;
        Self::revoke_existing(&mut tx, ev, rows, missing).await?;
        tx.commit().await?;
        Ok(())
    }
}
