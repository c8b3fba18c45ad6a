//! PostgreSQL's dialect, and the domain's `Backend` on PostgreSQL.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgQueryResult;

use super::backend::{Dialect, RowsAffected};

impl Dialect for sqlx::Postgres {
    const MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
    // Concurrent builders never wait on each other's rows.
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";
    const STRING_AGG: &'static str = "string_agg(p.perm, ',')";
    const DML_IN_WITH: bool = true;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const KEY_LOCK: &'static str = "SELECT pg_advisory_xact_lock($1)";
    const CURRENT_LISTINGS: &'static str = "tag_listing";
    const LISTINGS_JSON: &'static str = "json_agg(json_build_array(build_id, create_event, package))::text";
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
    }
}

/// The hub's database on PostgreSQL.
pub type Backend = super::backend::Backend<sqlx::Postgres>;
