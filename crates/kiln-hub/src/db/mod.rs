//! The database: one domain implementation instantiated for SQLite and for
//! PostgreSQL (each with its own pool and migrations), so both run the same
//! queries and the same rules. Every change runs in one transaction that
//! first records an event; versioned rows are created and revoked by events.
//!
//! The domain is written once, by area, as `impl<D: Dialect> Backend<D>`
//! blocks generic over the sqlx database: `users`, `tags`, `inheritance`,
//! `packages`, `builds`, `targets`, `images`, `hosts`, `tasks`, `uploads`,
//! `logins` (the failed-login counts), `pipelines` and `runs`, `channels`, and `events`, with `backend` for what they share. `sqlite` and `pg` give
//! each database's `Dialect` (migrations and the few pieces of SQL that
//! differ) and name its `Backend`; `rules` holds what needs no database.
//! `Db` forwards to either.

use std::collections::BTreeMap;

use crate::error::{HubError, Result};
use crate::model::*;

mod backend;
mod builds;
pub mod cache;
mod channels;
mod events;
mod hosts;
mod images;
mod inheritance;
mod koji;
mod koji_history;
mod logins;
mod packages;
mod pipelines;
mod rules;
mod runs;
mod sessions;
mod tags;
mod targets;
mod tasks;
mod uploads;
mod users;

pub use channels::{IndexRow, KeyRow, MakeIndex};
pub use inheritance::LinkChange;
/// One entry of Koji's `listTagged`: the build, the id and name of the tag
/// it is listed in, and the event that tagged it.
pub type KojiTagged = (KojiBuild, i64, String, i64);
pub use koji::{BuildFilter, KojiBuild, KojiSession, KojiTarget, KojiTask, KojiUser, TaskFilter};
pub use koji_history::{HISTORY_TABLES, HistoryFilter, HistoryRow};
pub use logins::Admission;
pub use pipelines::{HookRow, PipelineRow, Save};
pub use runs::{MakeTask, NewRun};

pub mod pg;
pub mod sqlite;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How long a claimed task stays a builder's without a heartbeat.
pub const LEASE_SECONDS: i64 = 60;

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
                cache: cache::ReadCache::default(),
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
                cache: cache::ReadCache::default(),
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

    /// `koji_tagged_derived` of either database (generic, so outside
    /// `forward!`).
    pub async fn koji_tagged_derived(
        &self,
        tag: &str,
        inherit: bool,
        latest: bool,
        f: impl FnOnce(Vec<KojiTagged>) -> std::sync::Arc<str>,
    ) -> Result<Option<std::sync::Arc<str>>> {
        match self {
            Db::Sqlite(b) => b.koji_tagged_derived(tag, inherit, latest, f).await,
            Db::Pg(b) => b.koji_tagged_derived(tag, inherit, latest, f).await,
        }
    }

    /// Bounds the read cache (`kiln serve --read-cache-mb`; 0 turns it off).
    pub fn set_read_cache(&mut self, max_bytes: u64) {
        let c = cache::ReadCache::new(max_bytes);
        match self {
            Db::Sqlite(b) => b.cache = c,
            Db::Pg(b) => b.cache = c,
        }
    }

    /// The read cache's entries and their weight in bytes.
    pub fn read_cache_usage(&self) -> (u64, u64) {
        match self {
            Db::Sqlite(b) => b.cache.usage(),
            Db::Pg(b) => b.cache.usage(),
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
    fn create_user(
        &self, who: &Principal, name: &str, password_hash: Option<String>, perms: &[String], kind: &str
    ) -> i64;
    fn user_count(&self) -> i64;
    fn list_users(&self) -> Vec<User>;
    fn principal_by_token(&self, hash: &str) -> Option<Principal>;
    fn password_of(&self, name: &str) -> Option<(i64, Option<String>)>;
    fn grant(&self, who: &Principal, user: &str, perm: &str) -> ();
    fn revoke(&self, who: &Principal, user: &str, perm: &str) -> ();
    fn create_token(&self, user: &str, hash: &str, name: &str, expires: Option<i64>) -> i64;
    fn list_tokens(&self, user: &str) -> Vec<TokenInfo>;
    fn revoke_token(&self, who: &Principal, id: i64) -> ();
    fn admit_login(&self, keys: &[String], now: i64, limit: crate::auth::LoginLimit) -> Admission;
    fn login_succeeded(&self, user_key: &str, attempts: &[i64]) -> ();
    fn prune_logins(&self, before: i64) -> u64;
    fn login_attempts(&self, key: &str, after: i64) -> i64;
    fn create_tag(&self, who: &Principal, t: &NewTag) -> TagInfo;
    fn tag_info(&self, name: &str, event: Option<i64>) -> TagInfo;
    fn list_tags(&self, offset: i64, limit: i64, event: Option<i64>) -> Page<TagInfo>;
    fn search_tags(&self, pattern: Option<&str>, offset: i64, limit: i64) -> Page<TagInfo>;
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
    fn recent_builds(&self, limit: i64) -> Vec<Build>;
    fn search_builds(&self, pattern: Option<&str>, offset: i64, limit: i64) -> Page<Build>;
    fn build_tags(&self, nvr: &str) -> Vec<String>;
    fn tag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> ();
    fn tag_build_task(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> i64;
    fn untag_build(&self, who: &Principal, tag: &str, nvr: &str, force: bool) -> ();
    fn list_tagged(&self, tag: &str, inherit: bool, latest: bool, event: Option<i64>) -> Vec<TaggedOut>;
    fn list_tagged_page(&self, tag: &str, flags: (bool, bool), event: Option<i64>, offset: usize, limit: usize) -> (usize, Vec<TaggedOut>);
    fn tag_history(&self, tag: &str, event: Option<i64>) -> Vec<HistoryEntry>;
    fn last_event(&self) -> i64;
    fn check_event(&self, event: Option<i64>) -> ();
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
    fn task_children(&self, id: i64) -> Vec<Task>;
    fn append_log(&self, who: &Principal, id: i64, data: &str) -> ();
    fn task_log(&self, id: i64, after: i64) -> Vec<(i64, String)>;
    fn begin_upload(&self, who: &Principal, id: i64, file: &str, sha256: &str, size: i64) -> i64;
    fn end_upload(&self, upload: i64, ok: bool) -> ();
    fn sweep_uploads(&self) -> Vec<String>;
    fn complete_task_build(&self, who: &Principal, id: i64, b: &NewBuild, result: &serde_json::Value) -> Task;
    fn release_task(&self, who: &Principal, id: i64) -> Task;
    fn task_file(&self, id: i64, file: &str) -> (TaskFile, String);
    fn pipeline_row(&self, name: &str, event: Option<i64>) -> PipelineRow;
    fn pipeline(&self, name: &str, event: Option<i64>) -> Pipeline;
    fn list_pipelines(&self) -> Vec<Pipeline>;
    fn chained_pipelines(&self, source: Option<&str>) -> Vec<PipelineRow>;
    fn put_pipeline(
        &self, who: &Principal, p: &Pipeline, checked: &crate::pipelines::Checked, save: Save<'_>
    ) -> Pipeline;
    fn delete_pipeline(&self, who: &Principal, name: &str) -> ();
    fn pipeline_history(&self, name: &str) -> Vec<PipelineVersion>;
    fn set_hook(&self, who: &Principal, name: &str, service: &str, nonce: &str, sha256: &str) -> ();
    fn remove_hook(&self, who: &Principal, name: &str, service: &str) -> ();
    fn hook(&self, pipeline_id: i64, service: &str) -> Option<HookRow>;
    fn user_principal(&self, id: i64) -> Principal;
    fn start_run(&self, owner: &Principal, run: &NewRun, make: MakeTask<'_>) -> (PipelineRun, Option<HubError>);
    fn list_runs(&self, pipeline_id: i64, offset: i64, limit: i64) -> Page<PipelineRun>;
    fn pipeline_run(&self, pipeline_id: i64, number: i64) -> PipelineRun;
    fn run_of_task(&self, task: i64) -> Option<PipelineRun>;
    fn recent_runs(&self, limit: i64) -> Vec<PipelineRun>;
    fn channel_key(&self) -> Option<KeyRow>;
    fn set_channel_key(&self, who: &Principal, key_id: &str, nonce: &str, public_key: &str) -> ();
    fn channel_index(&self, tag: &str) -> Option<IndexRow>;
    fn channel_indexes(&self) -> Vec<IndexRow>;
    fn publish_channel(
        &self, tag: &str, event: i64, content_sha256: &str, images: i64, force: bool, make: MakeIndex<'_>
    ) -> (IndexRow, bool);
    fn auto_channels(&self) -> Vec<String>;
    fn create_session(&self, user_id: i64, token_sha256: &str, csrf: &str, expires: i64) -> ();
    fn session(&self, token_sha256: &str) -> Option<(Principal, String)>;
    fn end_session(&self, token_sha256: &str) -> ();
    fn prune_sessions(&self, at: i64) -> u64;
    fn set_inheritance(&self, who: &Principal, child: &str, changes: &[LinkChange], clear: bool) -> Vec<LinkOut>;
    fn koji_list_tagged(&self, tag: &str, inherit: bool, latest: bool, event: Option<i64>) -> Vec<KojiTagged>;
    fn koji_builds_by_id(&self, ids: &[i64]) -> Vec<KojiBuild>;
    fn koji_build_by_nvr(&self, nvr: &str) -> Option<KojiBuild>;
    fn koji_list_builds(&self, f: &BuildFilter, offset: i64, limit: i64) -> Vec<KojiBuild>;
    fn koji_tasks(&self, f: &TaskFilter) -> Vec<KojiTask>;
    fn koji_history(&self, tables: &[String], f: &HistoryFilter) -> Vec<HistoryRow>;
    fn koji_host_ids(&self) -> std::collections::HashMap<String, i64>;
    fn koji_task_files(&self, task: i64) -> Vec<(String, i64)>;
    fn koji_tag_name(&self, id: i64, event: Option<i64>) -> Option<String>;
    fn koji_tag_ids(&self, names: &[String], event: Option<i64>) -> std::collections::HashMap<String, i64>;
    fn koji_build_tag_ids(&self, build: i64) -> Vec<i64>;
    fn koji_package(&self, id: Option<i64>, name: Option<&str>) -> Option<(i64, String)>;
    fn koji_package_ids(&self) -> std::collections::HashMap<String, i64>;
    fn koji_user(&self, id: Option<i64>, name: Option<&str>) -> Option<KojiUser>;
    fn koji_user_ids(&self) -> std::collections::HashMap<String, i64>;
    fn koji_permissions(&self) -> Vec<(i64, String, String)>;
    fn koji_targets(&self, event: Option<i64>) -> Vec<KojiTarget>;
    fn koji_event(&self, id: i64) -> Option<i64>;
    fn koji_last_event(&self, before: Option<i64>) -> Option<(i64, i64)>;
    fn koji_events(&self, ids: &[i64]) -> std::collections::HashMap<i64, (i64, Option<i64>, Option<String>)>;
    fn koji_session_create(&self, user_id: i64, key_sha256: &str, expires: i64) -> i64;
    fn koji_session(&self, id: i64) -> Option<KojiSession>;
    fn koji_session_call(&self, id: i64, callnum: i64, expires: i64) -> bool;
    fn koji_session_touch(&self, id: i64, expires: i64) -> ();
    fn koji_session_close(&self, id: i64) -> ();
    fn koji_prune_sessions(&self, at: i64) -> u64;
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
