//! SQLite's dialect, and the domain's `Backend` on SQLite.

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteQueryResult;

use super::backend::{Dialect, RowsAffected};

impl Dialect for sqlx::Sqlite {
    const MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
    // 0003 and 0004 cited a design note instead of docs/hub.md.
    const REWORDED: &'static [(i64, &'static str)] = &[
        (
            3,
            "fe1e983f7db4637bf4440f22dc9c0bfb1458e4bd97fdecc1dda67a603f0a0d4a2d49c42e504e98bf5506b0afbf09722c",
        ),
        (
            4,
            "b4f6c3ac01fd34ff9947022fcf8b40cf8503d0740a25e512704f867e535511c727d6deb307d9683dfa5ed943f4cb32ea",
        ),
    ];
    // None: SQLite's single writer makes the claim's conditional UPDATE
    // atomic by itself.
    const SKIP_LOCKED: &'static str = "";
    const STRING_AGG: &'static str = "group_concat(p.perm, ',')";
    const DML_IN_WITH: bool = false;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // None: a statement holds SQLite's write lock from its first write to
    // its end.
    const KEY_LOCK: &'static str = "";
    const CURRENT_LISTINGS: &'static str = "tag_listing INDEXED BY tag_listing_active_tag";
    const LISTINGS_JSON: &'static str = "json_group_array(json_array(build_id, create_event, package))";
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}

/// The hub's database on SQLite.
pub type Backend = super::backend::Backend<sqlx::Sqlite>;
