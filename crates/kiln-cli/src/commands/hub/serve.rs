//! `kiln serve`: the hub itself.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Database: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "KILN_DB",
        default_value = "sqlite://./kiln-data/hub.db",
        value_name = "URL"
    )]
    db: String,
    /// Blob store for artifacts and source images: file://PATH or
    /// s3://BUCKET[/PREFIX]?endpoint=URL (credentials from AWS_* variables).
    #[arg(
        long,
        env = "KILN_STORE",
        default_value = "file://./kiln-data/store",
        value_name = "URL"
    )]
    store: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8700", value_name = "ADDR")]
    listen: String,
    /// Require a token for reading too.
    #[arg(long)]
    no_anonymous_read: bool,
    /// Seconds a claimed task stays a builder's without a heartbeat; then
    /// it is retried elsewhere. Builders beat three times per lease.
    #[arg(long, value_name = "SECONDS", default_value_t = kiln_hub::db::LEASE_SECONDS)]
    lease: i64,
    /// The hub's key file, created (mode 0600) when missing: hook secrets
    /// and the channel signing key derive from it. Every hub on one
    /// database needs the same file; keep it out of database backups.
    #[arg(
        long,
        env = "KILN_KEY_FILE",
        default_value = "./kiln-data/hub.key",
        value_name = "PATH"
    )]
    key_file: std::path::PathBuf,
    /// Seconds a Koji client's session (`koji --authtype=password …`, see
    /// docs/koji.md) lives after its last call; the client then logs in again.
    #[arg(long, value_name = "SECONDS", default_value_t = kiln_hub::KOJI_SESSION_SECONDS)]
    koji_session_lifetime: i64,
    /// Memory for resolved `list-tagged` answers, shared by the API, the web
    /// UI and the Koji endpoint, in MiB (0: no cache); answers are checked
    /// against the database's tag versions before each use, so they are
    /// never stale, on this hub or beside others.
    #[arg(long, value_name = "MIB", default_value_t = kiln_hub::db::cache::DEFAULT_MB)]
    read_cache_mb: u64,
}

pub fn serve(a: &ServeArgs) -> Result<ExitCode> {
    let opts = kiln_hub::ServeOptions {
        db: a.db.clone(),
        store: a.store.clone(),
        listen: a.listen.clone(),
        anonymous_read: !a.no_anonymous_read,
        lease_seconds: a.lease,
        key_file: Some(a.key_file.clone()),
        koji_session_seconds: a.koji_session_lifetime,
        read_cache_mb: a.read_cache_mb,
    };
    let db_shown = if a.db.starts_with("postgres") {
        "postgres://…"
    } else {
        a.db.as_str()
    };
    kiln_hub::serve_blocking(&opts, |addr| {
        eprintln!(
            "kiln hub listening on http://{addr}/ (web UI; API under /api/v1; database {db_shown}, store {}, key file {})",
            opts.store,
            a.key_file.display()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
