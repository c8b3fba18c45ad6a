//! Test databases: a fresh SQLite file, and a fresh database on a real
//! PostgreSQL server that this harness starts once per test binary
//! (initdb + postgres on a loopback port, stopped when the tests exit).

#![allow(dead_code)]

pub mod fixtures;
pub mod images;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use kiln_hub::db::Db;

pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    TestDb {
        url: format!("sqlite://{}", dir.path().join("hub.db").display()),
        _dir: Some(dir),
    }
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install postgresql; tools/test.sh does it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// PostgreSQL refuses to run as root: as root, run it as `postgres`.
fn as_pg(cmd: &Path) -> Command {
    let root = nix_is_root();
    let mut c = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    };
    c.stdin(Stdio::null());
    c
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

struct Server {
    port: u16,
    /// The watchdog shell; it stops the server when this process is gone.
    _watchdog: std::process::Child,
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let bin = pg_bin();
        static ATTEMPT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kiln-pg-{}-{}",
            std::process::id(),
            ATTEMPT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pg dir");
        if nix_is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let out = as_pg(&bin.join("initdb"))
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        // The server lives as long as this test process: a watchdog stops it.
        let script = format!(
            "{pg} -D '{data}' -k '{dir}' -h 127.0.0.1 -p {port} -F -c max_connections=300 -c shared_buffers=64MB \
             >'{dir}/log' 2>&1 & pid=$!; \
             while [ -d /proc/{parent} ] && kill -0 $pid 2>/dev/null; do sleep 0.5; done; \
             if kill -INT $pid 2>/dev/null; then wait $pid; rm -rf '{dir}'; fi",
            pg = bin.join("postgres").display(),
            data = data.display(),
            dir = dir.display(),
            parent = std::process::id(),
        );
        let mut c = if nix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let watchdog = c.spawn().expect("postgres starts");
        let mut watchdog = Some(watchdog);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let ready = Command::new(bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ready && let Some(w) = watchdog.take() {
                    return Server { port, _watchdog: w };
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
    })
}

/// A fresh database on the shared server.
pub fn postgres() -> TestDb {
    static N: AtomicU32 = AtomicU32::new(0);
    let s = server();
    let name = format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &s.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
        ])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "create database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    TestDb {
        url: format!("postgres://postgres@127.0.0.1:{}/{name}", s.port),
        _dir: None,
    }
}

pub async fn open(t: &TestDb) -> Db {
    Db::open(&t.url).await.expect("open the database")
}

/// Runs a test body against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let t = common::sqlite();
                ($body)(t).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let t = common::postgres();
                ($body)(t).await;
            }
        }
    };
}
