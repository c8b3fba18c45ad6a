//! PostgreSQL's dialect, and the domain's `Backend` on PostgreSQL.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgQueryResult;

use super::backend::{Dialect, RowsAffected};

impl Dialect for sqlx::Postgres {
    const MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
    // 0003 and 0004 cited a design note instead of docs/hub.md.
    const REWORDED: &'static [(i64, &'static str)] = &[
        (
            3,
            "959f319e9e2fb65d4110ea4130d8f41fe158ec5c6e4fa4ffc21f32fd51d78176ba499383810824a19a92637bd88394e0",
        ),
        (
            4,
            "e5d973c5ac0c3700a1afbd57be71ba1ec2d1bb0fd6f10f7df66eeccae851629541af62b0ddb77cf632e8eb2ef3def75d",
        ),
    ];
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
