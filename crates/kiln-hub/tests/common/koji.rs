//! The real `koji` client (koji 1.36.1 from PyPI) against a hub served on
//! a loopback port: a profile for it, users with passwords, and one call
//! of the command line as a result to compare. Declared by the Koji tests
//! next to `common` and `served`.
//!
//! Without the client the tests are skipped with a message, except under
//! `CI=true`, where they fail: tools/test.sh installs it into
//! `target/test-venv`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_hub::model::Principal;

use crate::common::TestDb;
use crate::served::{self, Served};

/// The passwords of the users every Koji test has: `admin` (admin),
/// `tagger` (the `tag` permission) and `alice` (none).
pub const USERS: &[(&str, &str, &[&str])] = &[
    ("admin", "admin-password", &["admin"]),
    ("tagger", "tagger-password", &["tag"]),
    ("alice", "alice-password", &[]),
];

/// The venv's Python (with the koji package), if tools/test.sh made it.
pub fn venv_python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/python");
    Command::new(&p)
        .args(["-c", "import koji, koji_cli"])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(p)
}

/// The `koji` command of the test venv, if its library is koji 1.36.
fn koji_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/koji");
    let python = venv_python()?;
    let version = Command::new(python)
        .args(["-c", "import koji; print(koji.__version__)"])
        .output()
        .ok()?;
    (bin.exists() && String::from_utf8_lossy(&version.stdout).starts_with("1.36")).then_some(bin)
}

/// Whether the client is there; if not, says why the test is skipped (or
/// fails under CI).
pub fn available() -> bool {
    if koji_bin().is_some() && venv_python().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the koji client is not installed (tools/test.sh installs koji 1.36.1 into target/test-venv)"
    );
    eprintln!("SKIPPED: the koji client is not installed (pip install --no-deps koji==1.36.1; tools/test.sh does)");
    false
}

/// What one call of the command line did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The message of the error the client logged (after `koji: `), its
    /// usage error (`error: …`), or else the last line it wrote to stderr.
    pub fn error(&self) -> String {
        let mut lines = self.stderr.lines().rev().filter(|l| !l.trim().is_empty());
        let line = match self.stderr.lines().rev().find(|l| l.contains("koji: ")) {
            Some(l) => l,
            None => lines.next().unwrap_or_default(),
        };
        line[line.find("koji: ").map_or(0, |i| i + 6)..].to_string()
    }
}

/// A served hub with the Koji users and a client profile pointing at it.
pub struct Koji {
    pub served: Served,
    pub url: String,
    pub db_url: String,
    home: tempfile::TempDir,
    conf: PathBuf,
    bin: PathBuf,
}

impl Koji {
    pub async fn start(t: &TestDb) -> Koji {
        Self::start_with(t, kiln_hub::KOJI_SESSION_SECONDS).await
    }

    /// With Koji sessions that last `session_seconds`.
    pub async fn start_with(t: &TestDb, session_seconds: i64) -> Koji {
        let served = served::serve_with(t, true, session_seconds).await;
        for (name, password, perms) in USERS {
            let perms: Vec<String> = perms.iter().map(|p| p.to_string()).collect();
            kiln_hub::bootstrap_user(&t.url, name, Some(password), &perms)
                .await
                .expect("user");
        }
        let url = format!("http://{}", served.addr);
        let home = tempfile::tempdir().expect("home");
        let conf = home.path().join("koji.conf");
        std::fs::write(
            &conf,
            format!("[kiln]\nserver = {url}/kojihub\nweburl = {url}/\ntopurl = {url}/\nauthtype = password\n"),
        )
        .expect("koji.conf");
        Koji {
            served,
            db_url: t.url.clone(),
            url,
            home,
            conf,
            bin: koji_bin().expect("koji"),
        }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `koji ARGS` as `user` (logged in with its password), or anonymous.
    pub async fn run(&self, user: Option<&str>, args: &[&str]) -> Out {
        let password = user.map(|u| {
            let (_, password, _) = USERS.iter().find(|(n, _, _)| *n == u).expect("a known user");
            *password
        });
        self.run_password(user.zip(password), args).await
    }

    /// `koji ARGS` logged in with this user name and password (or anonymous).
    pub async fn run_password(&self, login: Option<(&str, &str)>, args: &[&str]) -> Out {
        let mut c = Command::new(&self.bin);
        c.env("HOME", self.home.path())
            .env("TZ", "UTC")
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(std::process::Stdio::null())
            .arg("-c")
            .arg(&self.conf)
            .args(["-p", "kiln"]);
        match login {
            Some((u, password)) => {
                c.args(["--user", u, "--password", password]);
            }
            None => {
                c.arg("--noauth");
            }
        }
        c.args(args);
        let o = tokio::task::spawn_blocking(move || c.output())
            .await
            .expect("join")
            .expect("koji runs");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// `koji ARGS` as `user`, which must fail: its exit code and error.
    pub async fn fails(&self, user: Option<&str>, args: &[&str]) -> (i32, String) {
        let o = self.run(user, args).await;
        assert_ne!(o.code, 0, "koji {} succeeded: {o:?}", args.join(" "));
        (o.code, o.error())
    }

    /// `koji ARGS` as admin, which must succeed: its output.
    pub async fn admin(&self, args: &[&str]) -> String {
        self.ok(Some("admin"), args).await
    }

    /// `koji ARGS` as `user`, which must succeed: its output.
    pub async fn ok(&self, user: Option<&str>, args: &[&str]) -> String {
        let o = self.run(user, args).await;
        assert_eq!(o.code, 0, "koji {}: {o:?}", args.join(" "));
        o.stdout
    }

    /// A Python script run by the venv's Python (the koji library
    /// importable) with the hub's URL as its argument: its output.
    pub async fn python(&self, script: &str) -> String {
        let mut c = Command::new(venv_python().expect("python"));
        c.env("HOME", self.home.path())
            .arg("-c")
            .arg(script)
            .arg(format!("{}/kojihub", self.url));
        let o = tokio::task::spawn_blocking(move || c.output())
            .await
            .expect("join")
            .expect("python runs");
        assert!(
            o.status.success(),
            "python: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The admin as the hub's `Principal`, for fixtures written directly.
    pub async fn principal(&self, name: &str) -> Principal {
        let db = &self.served.hub.db;
        let u = db.koji_user(None, Some(name)).await.expect("user").expect("exists");
        db.user_principal(u.id).await.expect("principal")
    }
}

/// `text` with the times the client prints (`Fri Dec  4 15:49:22 2026`,
/// `Fri, 04 Dec 2026 15:49:03 UTC`, `2026-12-04 15:49:03+00:00`) replaced
/// by `<time>`, so outputs compare exactly otherwise.
pub fn mask_times(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        out.push_str(&mask_line(line));
    }
    out
}

fn mask_line(line: &str) -> String {
    let b = line.as_bytes();
    let clock = |i: usize| {
        i + 8 <= b.len()
            && [0, 1, 3, 4, 6, 7].iter().all(|&k| b[i + k].is_ascii_digit())
            && b[i + 2] == b':'
            && b[i + 5] == b':'
    };
    let alpha = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_alphabetic);
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let mut out = String::new();
    let mut from = 0;
    let mut i = 0;
    while i < b.len() {
        if !clock(i) {
            i += 1;
            continue;
        }
        // `Fri Dec  4 15:49:22 2026`: the clock 11 bytes in, 24 in all.
        let asctime =
            i >= 11 && i + 13 <= b.len() && alpha(i - 11..i - 8) && alpha(i - 7..i - 4) && digits(i + 9..i + 13);
        // `Fri, 04 Dec 2026 15:49:03 UTC`: 17 bytes in, 29 in all.
        let rfc = i >= 17 && i + 12 <= b.len() && alpha(i - 17..i - 14) && &b[i + 8..i + 12] == b" UTC";
        // `2026-12-04 15:49:03+00:00`, maybe with a fraction.
        let iso = i >= 11 && digits(i - 11..i - 7) && b[i - 7] == b'-';
        let (start, end) = if asctime {
            (i - 11, i + 13)
        } else if rfc {
            (i - 17, i + 12)
        } else if iso {
            let mut e = i + 8;
            if b.get(e) == Some(&b'.') {
                e += 1;
                while b.get(e).is_some_and(u8::is_ascii_digit) {
                    e += 1;
                }
            }
            if line[e..].starts_with("+00:00") {
                e += 6;
            }
            (i - 11, e)
        } else {
            i += 8;
            continue;
        };
        out.push_str(&line[from..start]);
        out.push_str("<time>");
        from = end;
        i = end;
    }
    out.push_str(&line[from..]);
    out
}
