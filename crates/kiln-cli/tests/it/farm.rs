//! The build farm end to end (docs/hub.md): a real `kiln serve`, real `kiln
//! builder` processes building real images through the run's shared stage
//! cache, and `kiln submit` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::hub::{Served, json, serve_with};
use crate::support::{chmod_x, examples_copy, processes_with, run, write};
use crate::update::{git, script_repo, sources};

/// A short lease, so a killed builder's task is retried within seconds.
const LEASE: &str = "4";

pub(crate) struct Farm {
    pub(crate) hub: Served,
    pub(crate) admin: String,
    pub(crate) repo: tempfile::TempDir,
    builders: Vec<Builder>,
}

struct Builder {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Builder {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The examples plus: `ve/farm` (ve/minimal as a plain tar, with the
/// `probe` macro set by the image, a feature and the repository), and
/// `ve/slow`, whose script sleeps (its file name is `marker`).
fn profile_repo(marker: &str) -> tempfile::TempDir {
    let repo = examples_copy();
    let r = repo.path();
    let kiln_toml = std::fs::read_to_string(r.join("kiln.toml")).expect("kiln.toml");
    write(
        r,
        "kiln.toml",
        &kiln_toml.replace("[macros]\n", "[macros]\nprobe = \"repo\"\n"),
    );
    write(
        r,
        "features/probe/feature.toml",
        "description = \"a macro\"\n[macros]\nprobe = \"feature\"\n",
    );
    write(
        r,
        "images/ve/farm.toml",
        "extends = [\"ve/minimal\"]\nuse = [\"probe\"]\noutputs = [\"tar\"]\n[macros]\nprobe = \"image\"\n",
    );
    write(
        r,
        "images/ve/slow.toml",
        &format!("extends = [\"ve/minimal\"]\noutputs = [\"tar\"]\nscripts = [\"scripts/{marker}.sh\"]\n"),
    );
    write(
        r,
        &format!("scripts/{marker}.sh"),
        "#!/bin/sh\necho \"slow script starts\"\nsleep \"${KILN_MACRO_nap:-600}\"\necho \"slow script ends\"\n",
    );
    chmod_x(&r.join(format!("scripts/{marker}.sh")));
    git(r, &["init", "-q", "-b", "main"]);
    git(r, &["add", "."]);
    git(r, &["commit", "-qm", "profiles"]);
    repo
}

impl Farm {
    /// A hub with target `rel` (build tag `rel-build`, destination `rel`,
    /// which lists ve-farm, ve-slow and cam-fw) and registered builders.
    pub(crate) fn new(builders: &[&str], marker: &str) -> Farm {
        let hub = serve_with(&["--lease", LEASE]);
        let r = run(crate::support::kiln().args(["user", "create", "admin", "--admin", "--db", &hub.db]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let admin = r.stdout.trim().to_string();
        let mut farm = Farm {
            hub,
            admin,
            repo: profile_repo(marker),
            builders: Vec::new(),
        };
        farm.ok(&["tag", "create", "rel-build"]);
        farm.ok(&["tag", "create", "rel"]);
        farm.ok(&["tag", "pkg", "add", "rel", "ve-farm", "ve-slow", "cam-fw"]);
        farm.ok(&["target", "create", "rel", "rel-build", "rel"]);
        for b in builders {
            farm.add_builder(b);
        }
        farm
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        self.hub.ok(&self.admin, args)
    }

    pub(crate) fn dir(&self) -> &Path {
        self.hub.dir.path()
    }

    pub(crate) fn repo_url(&self) -> String {
        format!("git+file://{}@main", self.repo.path().display())
    }

    fn add_builder(&mut self, name: &str) {
        let token = self.ok(&["host", "add", name]).trim().to_string();
        std::fs::write(self.dir().join(format!("{name}.token")), &token).expect("token");
        std::fs::write(self.dir().join(format!("{name}.toml")), "[builder]\n").expect("config");
        let log = self.dir().join(format!("{name}.log"));
        let mut b = Builder {
            name: name.to_string(),
            child: None,
            log,
        };
        self.start(&mut b);
        self.builders.push(b);
    }

    fn start(&self, b: &mut Builder) {
        let token = std::fs::read_to_string(self.dir().join(format!("{}.token", b.name))).expect("token");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&b.log)
            .expect("log");
        let child = self
            .hub
            .kiln(Some(&token))
            .args(["builder", "--name", &b.name, "--poll", "0.2", "--workdir"])
            .arg(self.dir().join(format!("work-{}", b.name)))
            .arg("--config")
            .arg(self.dir().join(format!("{}.toml", b.name)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kiln builder");
        b.child = Some(child);
    }

    fn builder_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn submit(&self, args: &[&str]) -> String {
        let mut a = vec!["submit"];
        a.extend_from_slice(args);
        self.ok(&a).trim().to_string()
    }

    pub(crate) fn task(&self, id: &str) -> serde_json::Value {
        json(&self.ok(&["task", "info", id, "--json"]))
    }

    /// Waits until the task is in one of `states`; panics with the logs after `secs`.
    pub(crate) fn wait_for(&self, id: &str, states: &[&str], secs: u64) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let t = self.task(id);
            if states.iter().any(|s| t["state"] == *s) {
                return t;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let logs: Vec<String> = self
                    .builders
                    .iter()
                    .map(|b| format!("--- {} ---\n{}", b.name, self.builder_log(&b.name)))
                    .collect();
                let log = self.ok(&["task", "watch", id]);
                panic!(
                    "task {id} is not {states:?} after {secs} s: {t}\n{log}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub(crate) fn log_of(&self, id: &str) -> String {
        let r = run(self.hub.kiln(Some(&self.admin)).args(["task", "watch", id]));
        r.stdout
    }

    /// Every blob in the store is referenced by a build's artifact or an image.
    fn orphans(&self) -> Vec<String> {
        let mut referenced = std::collections::HashSet::new();
        for b in json(&self.ok(&["builds", "ls", "--json"])).as_array().expect("builds") {
            let nvr = b["nvr"].as_str().expect("nvr");
            let info = json(&self.ok(&["builds", "info", nvr, "--json"]));
            for a in info["artifacts"].as_array().expect("artifacts") {
                referenced.insert(a["sha256"].as_str().expect("sha").to_string());
            }
        }
        for i in json(&self.ok(&["image", "ls", "--hub", "--json"]))
            .as_array()
            .expect("images")
        {
            referenced.insert(i["sha256"].as_str().expect("sha").to_string());
        }
        let blobs = self.dir().join("data/store/blobs/sha256");
        std::fs::read_dir(&blobs)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !referenced.contains(n))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A plain HTTP GET on the hub (anonymous reads are allowed): the body.
pub(crate) fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

pub(crate) fn wait_until(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what} after {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_builders_build_update_tag_and_survive_a_crash() {
    let marker = format!("kiln-crash-{}", std::process::id());
    let mut farm = Farm::new(&["b1", "b2"], &marker);
    // A source image on the hub, and update scripts in git.
    let (squashfs, _) = sources();
    let src = squashfs.to_string_lossy().into_owned();
    farm.ok(&["image", "import", "src", "1.0", &src, "--hub"]);
    let scripts = script_repo(farm.dir());
    let script = format!("git+file://{}@v1:cam/update.sh", scripts.display());
    let repo = farm.repo_url();

    // Ten tasks: five builds and five updates.
    let mut ids = Vec::new();
    for i in 1..=5 {
        let dist = format!("dist=.f{i}");
        ids.push(farm.submit(&["--target", "rel", "ve/farm", "--repo", &repo, "-D", &dist]));
        let name = format!("cam-fw-2.{i}-1");
        let release = format!("release={i}");
        ids.push(farm.submit(&[
            "update", "--from", "src@1.0", "--script", &script, "--name", &name, "--target", "rel", "-D", &release,
        ]));
    }
    for id in &ids {
        let t = farm.wait_for(id, &["CLOSED", "FAILED"], 900);
        assert_eq!(t["state"], "CLOSED", "{t}\n{}", farm.log_of(id));
    }
    let tasks: Vec<_> = ids.iter().map(|id| farm.task(id)).collect();
    let hosts: std::collections::HashSet<_> = tasks.iter().filter_map(|t| t["host"].as_str()).collect();
    assert_eq!(hosts.len(), 2, "both builders took tasks: {hosts:?}");
    let tagged = json(&farm.ok(&["list-tagged", "rel", "--json"]));
    let mut nvrs: Vec<String> = tagged
        .as_array()
        .expect("tagged")
        .iter()
        .filter_map(|b| b["nvr"].as_str().map(str::to_string))
        .collect();
    nvrs.sort();
    let mut want: Vec<String> = (1..=5)
        .flat_map(|i| [format!("cam-fw-2.{i}-1"), format!("ve-farm-1.0-1.f{i}")])
        .collect();
    want.sort();
    assert_eq!(nvrs, want);
    // Each build points at its task, and its artifacts download verified.
    let b = json(&farm.ok(&["builds", "info", "ve-farm-1.0-1.f3", "--json"]));
    assert!(ids.iter().any(|id| b["task_id"].as_i64() == id.parse().ok()), "{b}");
    let dl = farm.dir().join("dl");
    farm.ok(&["builds", "download", "ve-farm-1.0-1.f3", "-o", &dl.to_string_lossy()]);
    assert!(dl.join("ve-farm-1.0-1.f3.amd64.tar").is_file() || std::fs::read_dir(&dl).expect("dl").count() >= 2);
    farm.ok(&["builds", "download", "cam-fw-2.2-1", "-o", &dl.to_string_lossy()]);
    assert!(dl.join("cam-fw-2.2-1.squashfs").is_file());
    // The log was streamed while the build ran and kept.
    let log = farm.log_of(&ids[0]);
    assert!(log.contains("stage outputs") && log.contains("uploaded"), "{log}");

    // A builder dies (SIGKILL) in the middle of a task: after its lease the
    // task runs again on the other builder; the build is recorded once.
    let slow = farm.submit(&["--target", "rel", "ve/slow", "--repo", &repo, "-D", "nap=8"]);
    let t = farm.wait_for(&slow, &["OPEN"], 300);
    let victim = t["host"].as_str().expect("host").to_string();
    wait_until(300, "the slow script did not start", || {
        !processes_with(&marker).is_empty()
    });
    let b = farm.builders.iter_mut().find(|b| b.name == victim).expect("builder");
    let mut child = b.child.take().expect("running");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let t = farm.wait_for(&slow, &["CLOSED", "FAILED"], 600);
    assert_eq!(t["state"], "CLOSED", "{t}\n{}", farm.log_of(&slow));
    assert_eq!(t["attempts"], 2, "{t}");
    assert_ne!(t["host"].as_str(), Some(victim.as_str()), "{t}");
    let builds = json(&farm.ok(&["builds", "ls", "--json"]));
    let slow_builds: Vec<_> = builds
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["name"] == "ve-slow")
        .collect();
    assert_eq!(slow_builds.len(), 1, "{builds}");
    // The killed attempt's build process died with its builder.
    wait_until(60, "the killed builder's build still runs", || {
        processes_with(&marker).is_empty()
    });
    // Nothing in the store that no build or image references (swept
    // within a few seconds of the attempt's end).
    wait_until(30, "orphaned blobs remain", || farm.orphans().is_empty());
}

#[test]
fn cancel_stops_the_sandbox_and_the_builder_goes_on() {
    let marker = format!("kiln-cancel-{}", std::process::id());
    let farm = Farm::new(&["c1"], &marker);
    let slow = farm.submit(&["--target", "rel", "ve/slow", "--repo", &farm.repo_url()]);
    farm.wait_for(&slow, &["OPEN"], 300);
    wait_until(600, "the slow script did not start", || {
        !processes_with(&marker).is_empty()
    });
    // Its log streams while it runs.
    wait_until(30, "the log did not stream while the task ran", || {
        http_get(&farm.hub.url, &format!("/api/v1/tasks/{slow}/log")).contains("slow script starts")
    });
    assert_eq!(farm.task(&slow)["state"], "OPEN");
    let out = farm.ok(&["task", "cancel", &slow]);
    assert!(out.contains("CANCELED"), "{out}");
    // The next heartbeat tells the builder, which interrupts the build: the
    // sandbox's processes are gone.
    wait_until(60, "the cancelled task's processes still run", || {
        processes_with(&marker).is_empty()
    });
    let r = run(farm.hub.kiln(Some(&farm.admin)).args(["task", "watch", &slow]));
    assert_eq!(r.code, 1, "watch exits with the outcome");
    // The builder takes the next task.
    let next = farm.ok(&["task", "submit", "noop"]).trim().to_string();
    let t = farm.wait_for(&next, &["CLOSED"], 60);
    assert_eq!(t["host"], "c1");
    let log = farm.builder_log("c1");
    assert!(log.contains(&format!("task {slow}: cancelled")), "{log}");
}

/// The manifest's record of macro `probe` in a scratch build: (value, layer).
fn probe_of(farm: &Farm, step: &str, extra: &[&str]) -> (String, String) {
    let repo = farm.repo_url();
    let mut args = vec!["--target", "rel", "ve/farm", "--repo", &repo, "--scratch"];
    args.extend_from_slice(extra);
    let id = farm.submit(&args);
    let t = farm.wait_for(&id, &["CLOSED", "FAILED"], 600);
    assert_eq!(t["state"], "CLOSED", "{step}: {t}\n{}", farm.log_of(&id));
    assert_eq!(t["result"]["scratch"], true);
    let dir = farm.dir().join(format!("scratch-{id}"));
    farm.ok(&["task", "download", &id, "-o", &dir.to_string_lossy()]);
    let manifest = std::fs::read_dir(&dir)
        .expect("downloaded")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("manifest.json"))
        .expect("a manifest");
    let m = json(&std::fs::read_to_string(manifest.path()).expect("manifest"));
    let probe = m["plan"]["macros"]
        .as_array()
        .expect("macros")
        .iter()
        .find(|x| x["name"] == "probe")
        .unwrap_or_else(|| panic!("{step}: no probe macro in {}", m["plan"]["macros"]))
        .clone();
    (
        probe["value"].as_str().unwrap_or_default().to_string(),
        probe["layer"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn macros_take_precedence_across_seven_layers() {
    let farm = Farm::new(&["m1"], "kiln-macros-unused");
    let r = farm.repo.path();
    // Layers 7, 6 and 5 are in the repository; 4 is the build tag's extra,
    // 3 the builder's config, 2 the target's macros, 1 the submit's -D.
    farm.ok(&["tag", "edit", "rel-build", "-x", "macro.probe=build-tag"]);
    std::fs::write(farm.dir().join("m1.toml"), "[macros]\nprobe = \"builder\"\n").expect("config");
    farm.ok(&["target", "edit", "rel", "-D", "probe=target"]);
    assert_eq!(
        probe_of(&farm, "every layer", &["-D", "probe=cli"]),
        ("cli".into(), "cli".into())
    );

    // Removed layer by layer, the next one wins.
    farm.ok(&["target", "edit", "rel", "--undefine", "probe"]);
    assert_eq!(
        probe_of(&farm, "no target macro", &[]),
        ("builder".into(), "builder".into())
    );
    std::fs::write(farm.dir().join("m1.toml"), "[macros]\n").expect("config");
    assert_eq!(
        probe_of(&farm, "no builder macro", &[]),
        ("build-tag".into(), "build-tag".into())
    );
    farm.ok(&["tag", "edit", "rel-build", "-r", "macro.probe"]);
    assert_eq!(
        probe_of(&farm, "no build tag macro", &[]),
        ("image".into(), "image".into())
    );
    write(
        r,
        "images/ve/farm.toml",
        "extends = [\"ve/minimal\"]\nuse = [\"probe\"]\noutputs = [\"tar\"]\n",
    );
    git(r, &["commit", "-qam", "no image macro"]);
    assert_eq!(
        probe_of(&farm, "no image macro", &[]),
        ("feature".into(), "feature".into())
    );
    write(r, "features/probe/feature.toml", "description = \"a macro\"\n");
    git(r, &["commit", "-qam", "no feature macro"]);
    assert_eq!(probe_of(&farm, "no feature macro", &[]), ("repo".into(), "repo".into()));
}

/// Sends `sig` to a builder.
fn signal(b: &Builder, sig: &str) {
    let pid = b.child.as_ref().expect("running").id().to_string();
    let s = std::process::Command::new("kill")
        .args(["-s", sig, &pid])
        .status()
        .expect("kill");
    assert!(s.success());
}

#[test]
fn shutdown_finishes_running_tasks_or_hands_them_back() {
    let marker = format!("kiln-shutdown-{}", std::process::id());
    let mut farm = Farm::new(&["s1"], &marker);
    let repo = farm.repo_url();
    // One SIGTERM: no new claims, the running task finishes, then exit 0.
    let first = farm.submit(&[
        "--target", "rel", "ve/slow", "--repo", &repo, "-D", "nap=4", "-D", "dist=.s1",
    ]);
    let queued = farm.ok(&["task", "submit", "noop"]).trim().to_string();
    farm.wait_for(&first, &["OPEN"], 300);
    wait_until(600, "the slow script did not start", || {
        !processes_with(&marker).is_empty()
    });
    signal(&farm.builders[0], "TERM");
    let status = farm.builders[0].child.as_mut().expect("running").wait().expect("wait");
    assert!(status.success(), "{status}: {}", farm.builder_log("s1"));
    assert_eq!(farm.task(&first)["state"], "CLOSED", "{}", farm.builder_log("s1"));
    assert_eq!(farm.task(&queued)["state"], "FREE", "nothing new was claimed");
    farm.ok(&["task", "cancel", &queued]);

    // Two: the running task is interrupted and handed back, unused.
    let b = &mut farm.builders[0];
    b.child = None;
    let mut b = Builder {
        name: b.name.clone(),
        child: None,
        log: b.log.clone(),
    };
    farm.start(&mut b);
    let second = farm.submit(&["--target", "rel", "ve/slow", "--repo", &repo, "-D", "dist=.s2"]);
    farm.wait_for(&second, &["OPEN"], 300);
    wait_until(600, "the slow script did not start", || {
        !processes_with(&marker).is_empty()
    });
    signal(&b, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    signal(&b, "TERM");
    let status = b.child.as_mut().expect("running").wait().expect("wait");
    assert!(status.success(), "{status}: {}", farm.builder_log("s1"));
    let t = farm.task(&second);
    assert_eq!(
        (t["state"].as_str(), t["attempts"].as_i64()),
        (Some("FREE"), Some(0)),
        "{t}"
    );
    wait_until(60, "the interrupted build's processes still run", || {
        processes_with(&marker).is_empty()
    });
}
