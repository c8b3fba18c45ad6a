//! Failed-login limiting over real HTTP, on SQLite and PostgreSQL
//! (docs/hub.md, "Users, tokens, permissions"): every attempt is counted
//! before its password is checked, atomically, per user name and per client
//! address, in the database, so concurrent attempts and several hubs on one
//! database share one count.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kiln_hub::auth::LoginLimit;
use reqwest::StatusCode;
use serde_json::json;

/// How many attempts each concurrency test sends at once.
const BURST: usize = 60;

/// A hub serving on a loopback port.
struct Served {
    base: String,
    hub: Arc<kiln_hub::api::Hub>,
    _store: tempfile::TempDir,
}

/// A hub on database `t` with the login limit `limit`; user `alice`
/// (password `alice-password`) exists.
async fn serve(t: &common::TestDb, limit: LoginLimit) -> Served {
    let store = tempfile::tempdir().expect("store");
    let opts = kiln_hub::ServeOptions {
        db: t.url.clone(),
        store: format!("file://{}", store.path().display()),
        listen: "127.0.0.1:0".into(),
        anonymous_read: true,
        lease_seconds: kiln_hub::db::LEASE_SECONDS,
        key_file: None,
        koji_session_seconds: kiln_hub::KOJI_SESSION_SECONDS,
        read_cache_mb: kiln_hub::db::cache::DEFAULT_MB,
    };
    let mut hub = kiln_hub::open(&opts).await.expect("open");
    hub.limiter = limit;
    if hub.db.password_of("alice").await.expect("lookup").is_none() {
        kiln_hub::bootstrap_user(&t.url, "alice", Some("alice-password"), &[])
            .await
            .expect("bootstrap");
    }
    let hub = Arc::new(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = kiln_hub::api::router(hub.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Served {
        base: format!("http://{addr}/api/v1"),
        hub,
        _store: store,
    }
}

/// An HTTP client whose connections come from loopback address `from`.
fn client(from: &str) -> reqwest::Client {
    let ip: IpAddr = from.parse().expect("address");
    reqwest::Client::builder()
        .local_address(ip)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// One login; the status and the `Retry-After` header.
async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> (StatusCode, Option<u64>) {
    let r = http
        .post(format!("{base}/login"))
        .json(&json!({"user": user, "password": password}))
        .send()
        .await
        .expect("send");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (r.status(), retry)
}

/// Sends `attempts` (hub, user, password) at once; counts the answers by status.
async fn burst(http: &reqwest::Client, attempts: Vec<(String, String, String)>) -> (usize, usize) {
    let tasks: Vec<_> = attempts
        .into_iter()
        .map(|(base, user, password)| {
            let http = http.clone();
            tokio::spawn(async move { login(&http, &base, &user, &password).await })
        })
        .collect();
    let (mut refused, mut limited) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            (StatusCode::UNAUTHORIZED, _) => refused += 1,
            (StatusCode::TOO_MANY_REQUESTS, Some(wait)) => {
                assert!(wait >= 1, "Retry-After {wait}");
                limited += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (refused, limited)
}

fn default_limit() -> LoginLimit {
    kiln_hub::api::default_limiter()
}

both!(
    concurrent_wrong_passwords_are_verified_at_most_max_times,
    |t| async move {
        let h = serve(&t, default_limit()).await;
        let max = h.hub.limiter.max as usize;
        let http = client("127.0.0.1");
        let attempts = (0..BURST)
            .map(|i| (h.base.clone(), "alice".to_string(), format!("wrong-password-{i}")))
            .collect();
        let (refused, limited) = burst(&http, attempts).await;
        assert_eq!((refused, limited), (max, BURST - max), "401s and 429s");
        // The right password is refused too while the count is full.
        let (s, wait) = login(&http, &h.base, "alice", "alice-password").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        let window = h.hub.limiter.window.as_secs();
        assert!(wait.is_some_and(|w| (1..=window + 1).contains(&w)), "{wait:?}");
    }
);

both!(concurrent_attempts_from_one_address_are_limited, |t| async move {
    let h = serve(&t, default_limit()).await;
    let max = h.hub.limiter.max as usize;
    let http = client("127.0.0.1");
    // Different (unknown) user names, one address.
    let attempts = (0..BURST)
        .map(|i| (h.base.clone(), format!("user{i}"), "some-password".to_string()))
        .collect();
    let (refused, limited) = burst(&http, attempts).await;
    assert_eq!((refused, limited), (max, BURST - max), "401s and 429s");
    let (s, _) = login(&http, &h.base, "alice", "alice-password").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "the address is limited");
    // Another address is not.
    let (s, _) = login(&client("127.0.0.2"), &h.base, "alice", "alice-password").await;
    assert_eq!(s, StatusCode::CREATED);
});

both!(a_user_name_is_limited_whatever_the_address, |t| async move {
    let h = serve(&t, LoginLimit::new(3, Duration::from_secs(300))).await;
    for i in 0..3 {
        let from = format!("127.0.0.{}", 10 + i);
        let (s, _) = login(&client(&from), &h.base, "alice", "wrong-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let (s, wait) = login(&client("127.0.0.20"), &h.base, "alice", "alice-password").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(wait.is_some_and(|w| (1..=301).contains(&w)), "{wait:?}");
    // Other users are not limited by alice's count.
    let (s, _) = login(&client("127.0.0.20"), &h.base, "bob", "wrong-password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
});

both!(a_success_clears_the_user_but_not_the_address, |t| async move {
    let h = serve(&t, LoginLimit::new(3, Duration::from_secs(300))).await;
    let http = client("127.0.0.1");
    for _ in 0..2 {
        assert_eq!(
            login(&http, &h.base, "alice", "wrong-password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&http, &h.base, "alice", "alice-password").await.0,
        StatusCode::CREATED
    );
    // alice's own count starts again (from another address)...
    for i in 0..3 {
        let from = format!("127.0.0.{}", 30 + i);
        let (s, _) = login(&client(&from), &h.base, "alice", "wrong-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // ...but the address keeps its two failures: one more fills it.
    assert_eq!(
        login(&http, &h.base, "bob", "wrong-password").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&http, &h.base, "carol", "wrong-password").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
});

both!(two_hubs_on_one_database_share_the_count, |t| async move {
    let a = serve(&t, default_limit()).await;
    let b = serve(&t, default_limit()).await;
    let max = a.hub.limiter.max as usize;
    let http = client("127.0.0.1");
    // One after the other, alternating hubs: the (max+1)-th is refused.
    for i in 0..max {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(
            login(&http, base, "alice", "wrong-password").await.0,
            StatusCode::UNAUTHORIZED,
            "attempt {i}"
        );
    }
    for base in [&a.base, &b.base] {
        assert_eq!(
            login(&http, base, "alice", "alice-password").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // At once, on both hubs, for another user from another address.
    let attempts = (0..BURST)
        .map(|i| {
            let base = if i % 2 == 0 { &a.base } else { &b.base };
            (base.clone(), "dave".to_string(), format!("wrong-password-{i}"))
        })
        .collect();
    let (refused, limited) = burst(&client("127.0.0.2"), attempts).await;
    assert_eq!((refused, limited), (max, BURST - max), "401s and 429s");
});

/// Every key stored for the attempts made so far.
async fn stored_keys(db: &kiln_hub::db::Db) -> Vec<String> {
    let sql = "SELECT key_hash FROM login_attempts";
    match db {
        kiln_hub::db::Db::Sqlite(b) => sqlx::query_scalar(sql).fetch_all(&b.read).await,
        kiln_hub::db::Db::Pg(b) => sqlx::query_scalar(sql).fetch_all(&b.read).await,
    }
    .expect("login_attempts")
}

both!(the_name_typed_is_never_stored, |t| async move {
    let h = serve(&t, default_limit()).await;
    let secret = "Pa55word-typed-as-the-user";
    let (s, _) = login(&client("127.0.0.1"), &h.base, secret, "alice").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let keys = stored_keys(&h.hub.db).await;
    assert_eq!(keys.len(), 2, "one row for the name, one for the address");
    assert!(
        keys.iter().all(|k| !k.contains(secret) && !k.contains("127.0.0.1")),
        "{keys:?}"
    );
});

// The limit on the database alone, at chosen times.
both!(attempts_count_within_the_window_and_are_pruned, |t| async move {
    let db = common::open(&t).await;
    let limit = LoginLimit::new(3, Duration::from_secs(60));
    let keys = kiln_hub::auth::LoginKeys::new("alice", Some("192.0.2.1".parse().expect("ip"))).all();
    for at in [1000, 1010, 1020] {
        assert!(matches!(
            db.admit_login(&keys, at, limit).await.expect("admit"),
            kiln_hub::db::Admission::Admitted(ids) if ids.len() == 2
        ));
    }
    // Full: the oldest leaves the window at 1060.
    let refused = kiln_hub::db::Admission::Refused(30);
    assert_eq!(db.admit_login(&keys, 1030, limit).await.expect("admit"), refused);
    assert_eq!(
        db.login_attempts(&keys[0], 1030 - 60).await.expect("count"),
        3,
        "a refusal is not counted"
    );
    assert!(matches!(
        db.admit_login(&keys, 1060, limit).await.expect("admit"),
        kiln_hub::db::Admission::Admitted(_)
    ));
    // A key that is full refuses the attempt on the other too, uncounted.
    let other = kiln_hub::auth::LoginKeys::new("bob", Some("192.0.2.1".parse().expect("ip"))).all();
    assert!(matches!(
        db.admit_login(&other, 1061, limit).await.expect("admit"),
        kiln_hub::db::Admission::Refused(9)
    ));
    assert_eq!(db.login_attempts(&other[0], 0).await.expect("count"), 0);
    // Upkeep forgets what left the window.
    assert_eq!(db.prune_logins(1061 - 60).await.expect("prune"), 2);
    assert_eq!(db.login_attempts(&keys[0], 0).await.expect("count"), 3);
});

both!(a_success_clears_its_user_and_its_own_attempt, |t| async move {
    let db = common::open(&t).await;
    let limit = LoginLimit::new(5, Duration::from_secs(300));
    let keys = kiln_hub::auth::LoginKeys::new("alice", Some("192.0.2.1".parse().expect("ip")));
    let bob = kiln_hub::auth::LoginKeys::new("bob", Some("192.0.2.1".parse().expect("ip")));
    let admit = |k: Vec<String>| {
        let db = &db;
        async move {
            match db.admit_login(&k, 100, limit).await.expect("admit") {
                kiln_hub::db::Admission::Admitted(ids) => ids,
                r => panic!("{r:?}"),
            }
        }
    };
    admit(keys.all()).await;
    admit(bob.all()).await;
    let ok = admit(keys.all()).await;
    db.login_succeeded(&keys.user, &ok).await.expect("success");
    assert_eq!(db.login_attempts(&keys.user, 0).await.expect("count"), 0);
    assert_eq!(db.login_attempts(&bob.user, 0).await.expect("count"), 1);
    let addr = keys.addr.as_deref().expect("address key");
    assert_eq!(db.login_attempts(addr, 0).await.expect("count"), 2, "the failures stay");
});

// Many attempts at once on one key, through two handles on one database
// (as two hubs would): exactly `max` are admitted.
both!(admission_is_atomic_across_connections_and_hubs, |t| async move {
    let dbs = [Arc::new(common::open(&t).await), Arc::new(common::open(&t).await)];
    let limit = LoginLimit::new(7, Duration::from_secs(300));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let db = dbs[i % 2].clone();
            // Every attempt shares the user; the addresses vary.
            let keys =
                kiln_hub::auth::LoginKeys::new("alice", Some(format!("192.0.2.{}", i % 50).parse().expect("ip")));
            tokio::spawn(async move { db.admit_login(&keys.all(), 500, limit).await.expect("admit") })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        if let kiln_hub::db::Admission::Admitted(_) = t.await.expect("task") {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 7);
    let user = kiln_hub::auth::LoginKeys::new("alice", None).user;
    assert_eq!(dbs[0].login_attempts(&user, 0).await.expect("count"), 7);
});
