//! The hub end to end: a real `kiln serve`, driven by the `kiln` client
//! commands as a user would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{kiln, run};

pub(crate) struct Served {
    child: Child,
    pub(crate) url: String,
    pub(crate) db: String,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Stops the hub (SIGTERM, a clean shutdown) and returns its log.
    fn stop(mut self) -> String {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "kiln serve exits 0 on SIGTERM: {status}");
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }
}

fn serve() -> Served {
    serve_with(&[])
}

/// A hub on a free loopback port with its data in a temporary directory.
pub(crate) fn serve_with(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let db = format!("sqlite://{}", dir.path().join("data/hub.db").display());
    let child = kiln()
        .args([
            "serve",
            "--db",
            &db,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
        ])
        .arg(format!("file://{}", dir.path().join("data/store").display()))
        .arg("--key-file")
        .arg(dir.path().join("data/hub.key"))
        .args(extra)
        .stdout(Stdio::null())
        // A file, not a pipe: a busy hub would fill a pipe nobody reads and stall.
        .stderr(std::fs::File::create(dir.path().join("serve.log")).expect("serve.log"))
        .spawn()
        .expect("kiln serve");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
        db,
        dir,
    }
}

impl Served {
    /// The first admin, created on the database directly (the bootstrap):
    /// its token.
    fn bootstrap_admin(&self) -> String {
        let r = run(kiln().args(["user", "create", "admin", "--admin", "--db", &self.db]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_string()
    }

    /// `kiln` as a client of this hub, with its own HOME (client.toml).
    pub(crate) fn kiln(&self, token: Option<&str>) -> Command {
        let mut c = kiln();
        c.env("KILN_HUB", &self.url)
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("KILN_TOKEN");
        if let Some(t) = token {
            c.env("KILN_TOKEN", t);
        }
        c
    }

    pub(crate) fn ok(&self, token: &str, args: &[&str]) -> String {
        let r = run(self.kiln(Some(token)).args(args));
        assert_eq!(r.code, 0, "kiln {}: {}{}", args.join(" "), r.stdout, r.stderr);
        r.stdout
    }
}

pub(crate) fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn a_team_publishes_tags_and_releases_a_build() {
    let hub = serve();
    // Bootstrap: the first admin, on the database directly.
    let admin = hub.bootstrap_admin();
    assert!(admin.starts_with("kiln_"), "{admin}");

    // A release engineer with a password logs in; the token lands in client.toml.
    let mut c = hub.kiln(Some(&admin));
    c.args([
        "user",
        "create",
        "rel",
        "--perm",
        "tag",
        "--perm",
        "build",
        "--perm",
        "target",
        "--perm",
        "image",
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"release-password\n")
            .expect("write");
    }
    assert!(child.wait().expect("wait").success());
    let mut c = hub.kiln(None);
    c.args(["login", "--user", "rel"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"release-password\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("login");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = std::fs::read_to_string(hub.dir.path().join(".config/kiln/client.toml")).expect("client.toml");
    let token = cfg
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("token in client.toml")
        .to_string();
    let r = run(hub.kiln(None).args(["tag", "ls"]));
    assert_eq!(r.code, 0, "the stored token is used: {}", r.stderr);

    // Tags with inheritance, a package list, a target with macros.
    hub.ok(
        &token,
        &[
            "tag",
            "create",
            "dist-base",
            "--arches",
            "x86_64",
            "-x",
            "rpm.macro.dist=.k1",
        ],
    );
    hub.ok(&token, &["tag", "create", "dist-1", "--parent", "dist-base"]);
    hub.ok(&token, &["tag", "create", "dist-1-build"]);
    hub.ok(
        &token,
        &[
            "tag",
            "inherit",
            "add",
            "dist-1-build",
            "dist-1",
            "--priority",
            "10",
            "--pkg-filter",
            "^ve-",
        ],
    );
    let walk = json(&hub.ok(&token, &["tag", "inherit", "ls", "dist-1-build", "--full", "--json"]));
    let tags: Vec<&str> = walk
        .as_array()
        .expect("walk")
        .iter()
        .filter_map(|e| e["tag"].as_str())
        .collect();
    assert_eq!(tags, ["dist-1", "dist-base"]);
    assert_eq!(walk[1]["filter"], serde_json::json!(["^ve-"]));
    let text = hub.ok(&token, &["tag", "inherit", "ls", "dist-1-build", "--full"]);
    assert!(text.contains("dist-base") && text.contains("filter: ^ve-"), "{text}");
    let cfg = json(&hub.ok(&token, &["tag", "config", "dist-1-build", "--json"]));
    assert_eq!(cfg["arches"]["from"], "dist-base");
    hub.ok(&token, &["tag", "pkg", "add", "dist-base", "ve-src", "other"]);
    hub.ok(
        &token,
        &[
            "target",
            "create",
            "dist-1",
            "dist-1-build",
            "dist-1",
            "-D",
            "vendor=acme",
        ],
    );
    let layers = json(&hub.ok(&token, &["target", "macros", "dist-1", "--json"]));
    assert_eq!(layers["target_macros"]["vendor"], "acme");
    assert_eq!(layers["build_tag_macros"]["dist"]["value"], ".k1");

    // Publish a real build's output directory.
    let (squashfs, _) = crate::update::sources();
    let outdir = squashfs.parent().expect("outdir");
    let out = hub.ok(&token, &["builds", "import", &outdir.display().to_string()]);
    assert!(out.contains("imported ve-src-1.0-1.kiln1"), "{out}");
    let b = json(&hub.ok(&token, &["builds", "info", "ve-src-1.0-1.kiln1", "--json"]));
    assert_eq!(b["state"], "COMPLETE");
    assert!(
        b["artifacts"]
            .as_array()
            .expect("files")
            .iter()
            .all(|a| a["stored"] == true)
    );
    assert_eq!(b["manifest"]["name"], "ve-src");

    // Tag it; the child's inherited view sees it; the event query sees the past.
    let before = json(&hub.ok(&token, &["tag", "history", "dist-1", "--json"]));
    let event = before
        .as_array()
        .and_then(|a| a.last())
        .and_then(|e| e["event"].as_i64())
        .expect("event");
    hub.ok(&token, &["tag-build", "dist-1", "ve-src-1.0-1.kiln1"]);
    let r = run(hub
        .kiln(Some(&token))
        .args(["tag-build", "dist-1", "ve-src-1.0-1.kiln1"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("already in tag dist-1"), "{}", r.stderr);
    let l = json(&hub.ok(
        &token,
        &["list-tagged", "dist-1-build", "--inherit", "--latest", "--json"],
    ));
    assert_eq!(l[0]["nvr"], "ve-src-1.0-1.kiln1");
    assert_eq!(l[0]["tag"], "dist-1");
    let then = json(&hub.ok(
        &token,
        &["list-tagged", "dist-1", "--event", &event.to_string(), "--json"],
    ));
    assert_eq!(then, serde_json::json!([]));
    let table = hub.ok(&token, &["list-tagged", "dist-1"]);
    assert!(
        table.starts_with("BUILD") && table.contains("ve-src-1.0-1.kiln1"),
        "{table}"
    );

    // Download, verified.
    let dl = hub.dir.path().join("dl");
    hub.ok(
        &token,
        &[
            "builds",
            "download",
            "ve-src-1.0-1.kiln1",
            "-o",
            &dl.display().to_string(),
        ],
    );
    assert_eq!(
        std::fs::read(dl.join(squashfs.file_name().expect("name"))).expect("downloaded"),
        std::fs::read(squashfs).expect("original")
    );

    // Target backup round trip.
    let saved = hub.dir.path().join("target.json");
    std::fs::write(&saved, hub.ok(&token, &["target", "show", "dist-1", "--json"])).expect("save");
    hub.ok(&token, &["target", "rm", "dist-1"]);
    hub.ok(&token, &["target", "apply", &saved.display().to_string()]);
    assert_eq!(
        json(&hub.ok(&token, &["target", "show", "dist-1", "--json"]))["macros"]["vendor"],
        "acme"
    );

    // Source images on the hub.
    let out = hub.ok(
        &token,
        &[
            "image",
            "import",
            "cam-fw",
            "1.0",
            &squashfs.display().to_string(),
            "--hub",
            &hub.url,
        ],
    );
    assert!(out.contains("uploaded cam-fw@1.0 (squashfs"), "{out}");
    let imgs = json(&hub.ok(&token, &["image", "ls", "--hub", &hub.url, "--json"]));
    assert_eq!(imgs[0]["name"], "cam-fw");

    // Errors name the problem; nothing changes.
    let r =
        run(hub
            .kiln(Some(&token))
            .args(["tag", "inherit", "add", "dist-1-build", "dist-base", "--priority", "10"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("already has parent dist-1 at priority 10"),
        "{}",
        r.stderr
    );
    let r = run(hub.kiln(None).env("HOME", "/nonexistent").args(["tag", "create", "x"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("authentication required"), "{}", r.stderr);
    let r = run(hub
        .kiln(Some(&token))
        .env("KILN_HUB", "http://127.0.0.1:1")
        .args(["tag", "ls"]));
    assert!(r.stderr.contains("cannot reach the hub"), "{}", r.stderr);

    // The log has every request and no secret.
    let log = hub.stop();
    assert!(log.contains("POST /api/v1/login 201"), "{log}");
    assert!(log.contains("PUT /api/v1/builds/{nvr}/files/{file} 201"), "{log}");
    for secret in [admin.as_str(), token.as_str(), "release-password"] {
        assert!(!log.contains(secret), "a secret in the log: {log}");
    }
}

#[test]
fn import_refuses_a_damaged_output_directory() {
    let hub = serve();
    let r = run(kiln().args(["user", "create", "admin", "--admin", "--db", &hub.db]));
    let admin = r.stdout.trim().to_string();
    let (squashfs, _) = crate::update::sources();
    let copy = hub.dir.path().join("out");
    std::fs::create_dir(&copy).expect("dir");
    for e in std::fs::read_dir(squashfs.parent().expect("outdir")).expect("read") {
        let p: PathBuf = e.expect("entry").path();
        std::fs::copy(&p, copy.join(p.file_name().expect("name"))).expect("copy");
    }
    let victim = copy.join(squashfs.file_name().expect("name"));
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&victim, bytes).expect("write");
    let r = run(hub.kiln(Some(&admin)).args(["builds", "import"]).arg(&copy));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does not match SHA256SUMS"), "{}", r.stderr);
    let l = run(hub.kiln(Some(&admin)).args(["builds", "ls", "--json"]));
    assert_eq!(json(&l.stdout), serde_json::json!([]));
    assert!(!Path::new(&hub.dir.path().join("data/store/blobs")).exists());
}

#[test]
fn builders_claim_and_run_tasks() {
    let hub = serve();
    let r = run(kiln().args(["user", "create", "admin", "--admin", "--db", &hub.db]));
    let admin = r.stdout.trim().to_string();
    let host_token = hub
        .ok(&admin, &["host", "add", "b1", "--arch", "amd64", "--capacity", "2"])
        .trim()
        .to_string();
    assert!(host_token.starts_with("kiln_"));
    let ids = hub.ok(&admin, &["task", "submit", "noop", "--count", "5"]);
    assert_eq!(ids.lines().count(), 5);
    hub.ok(&admin, &["tag", "create", "t-build"]);
    hub.ok(&admin, &["tag", "create", "t-dest"]);
    hub.ok(&admin, &["target", "create", "t", "t-build", "t-dest"]);
    // A build from a repository that does not exist fails with the reason.
    let build = hub
        .ok(
            &admin,
            &[
                "submit",
                "--target",
                "t",
                "ve/minimal",
                "--repo",
                "git+file:///nonexistent/kiln-profiles@main",
                "--builder",
                "b1",
            ],
        )
        .trim()
        .to_string();
    let r = run(hub.kiln(Some(&host_token)).args([
        "builder",
        "--name",
        "b1",
        "--capacity",
        "2",
        "--exit-when-idle",
        "1",
        "--poll",
        "0.1",
        "--stats",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stats = json(r.stdout.trim());
    assert_eq!(stats["tasks"], 6);
    let tasks = json(&hub.ok(&admin, &["task", "ls", "--json"]));
    let states: Vec<&str> = tasks
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(states.iter().filter(|s| **s == "CLOSED").count(), 5, "{tasks}");
    let b = json(&hub.ok(&admin, &["task", "info", &build, "--json"]));
    assert_eq!(b["state"], "FAILED");
    assert!(
        b["result"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot fetch file:///nonexistent/kiln-profiles"),
        "{b}"
    );
    // watch exits with the task's outcome.
    let r = run(hub.kiln(Some(&admin)).args(["task", "watch", &build]));
    assert_eq!(r.code, 1);
    let first = ids.lines().next().expect("id");
    let r = run(hub.kiln(Some(&admin)).args(["task", "watch", first]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hosts = hub.ok(&admin, &["host", "ls"]);
    assert!(hosts.contains("b1") && hosts.contains("ready"), "{hosts}");
    // A user token is not a host token.
    let r = run(hub
        .kiln(Some(&admin))
        .args(["builder", "--name", "x", "--exit-when-idle", "0"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a host"), "{}", r.stderr);

    // The host token never goes on the command line; a token file must be
    // private to the builder.
    let r = run(hub.kiln(None).args([
        "builder",
        "--name",
        "b1",
        "--exit-when-idle",
        "0",
        "--token",
        &host_token,
    ]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not take --token"), "{}", r.stderr);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{host_token}\n")).expect("token file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let with_file = |hub: &Served| {
        run(hub
            .kiln(None)
            .args(["builder", "--name", "b1", "--exit-when-idle", "0", "--token-file"])
            .arg(&file))
    };
    let r = with_file(&hub);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("readable by other users (mode 0644)"), "{}", r.stderr);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let r = with_file(&hub);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `kiln login` keeps its token readable by its owner only: an existing
/// world-readable client.toml is replaced by a 0600 one, and the directory
/// is 0700, even under umask 0.
#[test]
fn login_keeps_the_token_private_whatever_was_there() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let hub = serve();
    let admin = hub.bootstrap_admin();
    let mut c = hub.kiln(Some(&admin));
    c.args(["user", "create", "dev", "--password-stdin"])
        .stdin(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"dev-password\n")
        .expect("write");
    assert!(child.wait().expect("wait").success());

    let dir = hub.dir.path().join(".config/kiln");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod dir");
    let cfg = dir.join("client.toml");
    std::fs::write(&cfg, "token = \"old\"\n").expect("write");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod file");

    // Under umask 0, through a shell (the test may not set a child's umask itself).
    let kiln_bin = crate::support::kiln().get_program().to_owned();
    let c = hub.kiln(None);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("umask 0; exec \"$0\" login --user dev")
        .arg(kiln_bin)
        .envs(
            c.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in c
        .get_envs()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.to_owned())
        .collect::<Vec<_>>()
    {
        sh.env_remove(k);
    }
    let mut child = sh.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"dev-password\n")
        .expect("write");
    let out = child.wait_with_output().expect("login");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&cfg), 0o600, "client.toml is the owner's only");
    assert_eq!(mode(&dir), 0o700, "its directory too");
    let text = std::fs::read_to_string(&cfg).expect("read");
    assert!(text.contains("kiln_") && !text.contains("\"old\""), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "client.toml")
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left: {leftovers:?}");
}

/// `kiln login --user USER` with `password` on stdin.
fn login_as(hub: &Served, user: &str, password: &str) -> std::process::Output {
    use std::io::Write;
    let mut c = hub.kiln(None);
    c.args(["login", "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write");
    child.wait_with_output().expect("login")
}

/// The hub's log cannot be forged through a user name, and never holds the
/// name typed at a failed login, which may be a password typed in the
/// wrong field.
#[test]
fn failed_logins_neither_forge_log_lines_nor_log_what_was_typed() {
    use std::io::Write;
    let hub = serve();
    let admin = hub.bootstrap_admin();
    let secret = "dev-Secret-Pa55w0rd";
    let mut c = hub.kiln(Some(&admin));
    c.args(["user", "create", "dev", "--password-stdin"])
        .stdin(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{secret}\n").as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());

    let forged = "x\nFORGED line: admin logged in\r\n\u{1b}[2KFORGED too";
    let out = login_as(&hub, forged, "some-password");
    assert!(!out.status.success(), "a forged name logs in?");
    // The fields swapped: the password typed as the user name.
    let out = login_as(&hub, secret, "dev");
    assert!(!out.status.success(), "swapped fields log in?");
    let out = login_as(&hub, "dev", secret);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let log = hub.stop();
    for line in log.lines() {
        assert!(!line.trim_start().starts_with("FORGED"), "a forged line: {log}");
    }
    assert!(!log.contains(secret), "a secret in the log: {log}");
    assert!(!log.contains("FORGED"), "the name typed is logged: {log}");
    assert_eq!(log.matches("failed login").count(), 2, "{log}");
    assert!(log.contains("client=127.0.0.1"), "{log}");
}
