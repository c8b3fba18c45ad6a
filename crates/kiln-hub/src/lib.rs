//! kiln's hub (docs/hub.md): the database of builds, tags, targets, users and
//! source images, with Koji's tag semantics (`kiln_core::koji`), served as
//! a REST API. Its wire model and client live in `kiln_hub_api`. This is the
//! only crate that knows SQL and serves HTTP.

pub mod api;
pub mod auth;
pub mod db;
pub mod error;
pub mod hooks;
pub mod keys;
pub mod koji;
pub mod logsafe;
pub mod model;
pub mod openapi;
pub mod pipelines;
pub mod store;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

pub use error::HubError;
use logsafe::esc;

/// How long a Koji session lives after its last call by default: a day.
pub const KOJI_SESSION_SECONDS: i64 = 86_400;
/// How long an expired Koji session is kept before the upkeep forgets it.
pub const KOJI_SESSION_KEPT: i64 = 7 * 86_400;

/// `kiln serve`'s settings.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub db: String,
    pub store: String,
    pub listen: String,
    pub anonymous_read: bool,
    /// Seconds a claimed task stays a builder's without a heartbeat.
    pub lease_seconds: i64,
    /// The hub's key file (`keys`), created when missing; `None`: a key
    /// that lives as long as the process (hook secrets and the channel key
    /// then die with it).
    pub key_file: Option<std::path::PathBuf>,
    /// Seconds a Koji client's session lives after its last call
    /// (docs/koji.md); then its calls fail as expired and the client logs in again.
    pub koji_session_seconds: i64,
    /// The read cache's bound in MiB (`db::cache`); 0 turns it off.
    pub read_cache_mb: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            db: "sqlite://./kiln-data/hub.db".into(),
            store: "file://./kiln-data/store".into(),
            listen: "127.0.0.1:8700".into(),
            anonymous_read: true,
            lease_seconds: db::LEASE_SECONDS,
            key_file: None,
            koji_session_seconds: KOJI_SESSION_SECONDS,
            read_cache_mb: db::cache::DEFAULT_MB,
        }
    }
}

/// Opens the database (applying migrations) and the store.
pub async fn open(opts: &ServeOptions) -> Result<api::Hub, HubError> {
    let mut db = db::Db::open(&opts.db).await?;
    if !(2..=86_400).contains(&opts.lease_seconds) {
        return Err(HubError::bad_request("the lease must be between 2 and 86400 seconds"));
    }
    db.set_lease(opts.lease_seconds);
    if opts.read_cache_mb > 64 << 10 {
        return Err(HubError::bad_request("the read cache is bounded at 65536 MiB"));
    }
    db.set_read_cache(opts.read_cache_mb << 20);
    if !(1..=30 * 86_400).contains(&opts.koji_session_seconds) {
        return Err(HubError::bad_request(
            "a Koji session must live between 1 second and 30 days",
        ));
    }
    let store = store::Store::open(&opts.store)?;
    let key = match &opts.key_file {
        Some(path) => keys::HubKey::load_or_create(path)?,
        None => keys::HubKey::random(),
    };
    Ok(api::Hub {
        key,
        changed: tokio::sync::Notify::new(),
        db,
        store,
        anonymous_read: opts.anonymous_read,
        limiter: api::default_limiter(),
        gc: tokio::sync::RwLock::new(()),
        koji_session: opts.koji_session_seconds,
    })
}

/// Serves until SIGINT/SIGTERM; `ready` receives the bound address.
pub async fn serve(opts: &ServeOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), HubError> {
    let hub = Arc::new(open(opts).await?);
    remove_orphans_at_start(&hub).await;
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| HubError::internal(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| HubError::internal(format!("listening address: {e}")))?;
    ready(addr);
    // Leases that ran out (a builder died) free their tasks for others.
    let expiry = hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tick.tick().await;
            if let Err(e) = expiry.db.expire_leases(db::now()).await {
                tracing::warn!("expiring leases: {}", esc(e));
            }
            if let Err(e) = api::sweep(&expiry).await {
                tracing::warn!("sweeping task uploads: {}", esc(e));
            }
            if let Err(e) = expiry.db.maintain().await {
                tracing::warn!("database upkeep: {}", esc(e));
            }
            // Attempts that left the window no longer count.
            let window_start = db::now().saturating_sub(expiry.limiter.window_secs());
            if let Err(e) = expiry.db.prune_logins(window_start).await {
                tracing::warn!("forgetting old login attempts: {}", esc(e));
            }
            if let Err(e) = expiry.db.prune_sessions(db::now()).await {
                tracing::warn!("forgetting expired web sessions: {}", esc(e));
            }
            // Expired Koji sessions stay a week, so that a client coming
            // back with one hears "expired" (and logs in again) rather
            // than "invalid".
            let koji_cutoff = db::now().saturating_sub(KOJI_SESSION_KEPT);
            if let Err(e) = expiry.db.koji_prune_sessions(koji_cutoff).await {
                tracing::warn!("forgetting expired Koji sessions: {}", esc(e));
            }
        }
    });
    spawn_store_sweep(hub.clone());
    spawn_channels_and_chains(hub.clone());
    let app = api::router(hub).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
        .map_err(|e| HubError::internal(format!("serving: {e}")))
}

/// How often channels that publish automatically and pipelines that
/// follow new source versions are looked at when nothing wakes them.
const CHANNELS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Publishes the channels whose content changed, after every tagging and
/// at least every [`CHANNELS_EVERY`], and starts the runs of new source
/// versions that a stopped hub did not start.
pub fn spawn_channels_and_chains(hub: Arc<api::Hub>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = hub.changed.notified() => {}
                () = tokio::time::sleep(CHANNELS_EVERY) => {
                    api::chain_catch_up(&hub).await;
                }
            }
            api::publish_auto(&hub).await;
        }
    });
}

/// How often the store sweep ([`api::sweep_store`]) runs after the one at
/// start-up: it lists every blob.
const STORE_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Before the hub listens: what an earlier hub killed mid-upload left in
/// the store's `tmp/` goes (see [`store::Store::remove_orphans`]). A store
/// that cannot be swept is no reason not to start.
async fn remove_orphans_at_start(hub: &api::Hub) {
    let cutoff = std::time::SystemTime::now()
        .checked_sub(hub.store.grace)
        .unwrap_or(std::time::UNIX_EPOCH);
    match hub.store.remove_orphans(cutoff).await {
        Ok(o) => tracing::info!(
            "start-up: removed {} temporary objects and {} unfinished uploads from the store",
            o.objects,
            o.uploads
        ),
        Err(e) => tracing::warn!("start-up: removing unfinished uploads from the store: {e}"),
    }
}

/// The store sweep, at start-up (alongside serving) and then every
/// [`STORE_SWEEP_EVERY`]; each run logs what it removed.
fn spawn_store_sweep(hub: Arc<api::Hub>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STORE_SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match api::sweep_store(&hub).await {
                Ok(s) => tracing::info!(
                    "store sweep: removed {} temporary objects, {} unfinished uploads and {} unreferenced blobs",
                    s.orphans.objects,
                    s.orphans.uploads,
                    s.blobs
                ),
                Err(e) => tracing::warn!("store sweep: {e}"),
            }
        }
    });
}

/// `kiln user create --db URL`: creates a user directly in the database
/// (the bootstrap before any admin exists) and returns a new API token.
pub async fn bootstrap_user(
    db_url: &str,
    name: &str,
    password: Option<&str>,
    perms: &[String],
) -> Result<String, HubError> {
    let db = db::Db::open(db_url).await?;
    let hash = match password {
        Some(p) => Some(auth::hash_password(p)?),
        None => None,
    };
    let who = model::Principal {
        id: None,
        name: "bootstrap".into(),
        admin: true,
        perms: Vec::new(),
        host: None,
    };
    db.create_user(&who, name, hash, perms, "user").await?;
    let token = auth::new_token();
    db.create_token(name, &auth::token_hash(&token), "bootstrap", None)
        .await?;
    Ok(token)
}

fn runtime() -> Result<tokio::runtime::Runtime, HubError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| HubError::internal(format!("cannot start the async runtime: {e}")))
}

/// [`serve`] for synchronous callers (the CLI).
///
/// What the hub logs (docs/hub.md): every value that comes from outside the
/// program (a name, a path, a key, a message from a client, an error text,
/// which may quote any of these) is written through [`logsafe::esc`], so
/// that no client can start a line of its own or hide part of one; only
/// what the program makes itself (numbers, statuses, addresses, route
/// templates, HTTP methods, which are tokens) is written as it is. Secrets
/// are never logged: not passwords, not tokens, and not the user name typed
/// at login, which may be a password typed in the wrong field.
pub fn serve_blocking(opts: &ServeOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), HubError> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .try_init();
    runtime()?.block_on(serve(opts, ready))
}

/// [`bootstrap_user`] for synchronous callers (the CLI).
pub fn bootstrap_user_blocking(
    db_url: &str,
    name: &str,
    password: Option<&str>,
    perms: &[String],
) -> Result<String, HubError> {
    runtime()?.block_on(bootstrap_user(db_url, name, password, perms))
}
