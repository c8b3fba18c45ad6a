//! A hub serving on a loopback port, for the tests that talk HTTP to it.
//! Its own module (declared by those tests next to `common`), because
//! `common` is shared with test crates that link neither axum nor tokio.
//! Like `common`, each test crate uses part of it.

#![allow(dead_code)]

/// A hub on database `t` with a fresh local store, serving its router on a
/// loopback port (with the peer address, as `kiln serve` does).
pub struct Served {
    pub addr: std::net::SocketAddr,
    pub hub: std::sync::Arc<kiln_hub::api::Hub>,
    pub store: tempfile::TempDir,
}

pub async fn serve(t: &crate::common::TestDb, anonymous_read: bool) -> Served {
    serve_with(t, anonymous_read, kiln_hub::KOJI_SESSION_SECONDS).await
}

/// `serve`, with Koji sessions that last `koji_session_seconds`.
pub async fn serve_with(t: &crate::common::TestDb, anonymous_read: bool, koji_session_seconds: i64) -> Served {
    let store = tempfile::tempdir().expect("store");
    let opts = kiln_hub::ServeOptions {
        db: t.url.clone(),
        store: format!("file://{}", store.path().display()),
        listen: "127.0.0.1:0".into(),
        anonymous_read,
        lease_seconds: kiln_hub::db::LEASE_SECONDS,
        key_file: None,
        koji_session_seconds,
        read_cache_mb: kiln_hub::db::cache::DEFAULT_MB,
    };
    let hub = std::sync::Arc::new(kiln_hub::open(&opts).await.expect("open the hub"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = kiln_hub::api::router(hub.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Served { addr, hub, store }
}
