//! Stand-ins for the sandbox ([`FakeInside`]) and the host ([`FakeHost`])
//! that record every call and leave in the tree what the real tool would
//! (the bootstrap's files, a script's marks, an output file listing the
//! tree it was made from), so the engine's stage logic runs without root,
//! without the host tools and without the network.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_core::plan::Plan;
use kiln_engine::args::Cmd;
use kiln_engine::host::{Host, Mounted, Overlay};
use kiln_engine::log::{BuildLog, Reporter};
use kiln_engine::run::Ended;
use kiln_engine::{HOST_VIEW_ROOT, Inside, InsideRun, Request, View};

/// A profile repository on disk, with the plan of one of its images.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    files: Vec<(String, String)>,
}

fn is_script(path: &str) -> bool {
    path.starts_with("scripts/") || path.contains("/image-scripts.d/") || path.contains("/scripts.d/")
}

impl TestRepo {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let repo = TestRepo {
            dir: tempfile::tempdir().expect("temporary directory"),
            files: Vec::new(),
        };
        let mut repo = repo;
        for (path, text) in files {
            repo.write(path, text);
        }
        repo
    }

    /// Writes (or rewrites) a file of the repository; scripts are executable.
    pub fn write(&mut self, path: &str, text: &str) {
        let full = self.dir.path().join(path);
        fs::create_dir_all(full.parent().expect("a parent")).expect("mkdir");
        fs::write(&full, text).expect("write");
        if is_script(path) {
            fs::set_permissions(&full, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        self.files.retain(|(p, _)| p != path);
        self.files.push((path.to_string(), text.to_string()));
    }

    pub fn plan(&self, image: &str) -> Plan {
        let mut s = kiln_core::Snapshot::new();
        for (path, text) in &self.files {
            if is_script(path) {
                s.add_script(path);
            } else {
                s.add_file(path, text);
            }
        }
        let repo = kiln_core::Repo::load(s);
        let opts = kiln_core::ResolveOptions {
            arch: "amd64".into(),
            external_macros: vec![],
        };
        let r = kiln_core::resolve(&repo, image, &opts);
        match r.plan {
            Some(p) => p,
            None => panic!("{image} does not resolve: {:?}", r.diagnostics),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Progress events as lines: `stage base`, `done base built`, `step x`.
#[derive(Default)]
pub struct Events(Mutex<Vec<String>>);

impl Events {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

impl Reporter for Events {
    fn stage(&self, name: &str) {
        self.0.lock().expect("lock").push(format!("stage {name}"));
    }
    fn stage_done(&self, name: &str, status: &str, _: f64) {
        self.0.lock().expect("lock").push(format!("done {name} {status}"));
    }
    fn step(&self, name: &str) {
        self.0.lock().expect("lock").push(format!("step {name}"));
    }
    fn line(&self, _: &str) {}
}

/// Where a build of one test puts things.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Dirs {
            tmp: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    pub fn cache(&self) -> kiln_store::Cache {
        kiln_store::Cache::open(&self.tmp.path().join("cache")).expect("cache")
    }

    /// A request for `plan` with its own output directory `out`.
    pub fn request(&self, repo: &TestRepo, plan: Plan, out: &str, events: Arc<Events>) -> Request {
        Request {
            plan,
            repo: repo.path().to_path_buf(),
            outdir: self.tmp.path().join(out),
            workdir: self.work(),
            source_date_epoch: Some(1_700_000_000),
            jobs: 1,
            keep_workdir: false,
            shell_on_failure: false,
            reporter: events,
            cache: None,
            rebuild_from: None,
            catalog: None,
            git_mirrors: self.tmp.path().join("git"),
        }
    }
}

/// The relative paths under `root`, sorted, directories with a `/`.
pub fn listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Copies the tree `from` over `to` (files, directories, symlinks).
pub fn copy_over(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_over(&src, &dst)?;
        } else if ft.is_symlink() {
            let _ = fs::remove_file(&dst);
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            let _ = fs::remove_file(&dst);
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn empty_dir(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::remove_dir_all(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

/// What the fake sandbox was asked to run.
#[derive(Clone, Debug)]
pub struct InsideCall {
    pub view: View,
    pub argv: Vec<String>,
    /// The tree the command worked on.
    pub tree: PathBuf,
    pub network: bool,
    pub nested_mounts: bool,
    pub env: Vec<(String, String)>,
    pub binds: Vec<(PathBuf, String, bool)>,
    pub cwd: String,
    /// The name of the script copied in, if any.
    pub script: Option<String>,
}

/// The sandbox: runs nothing, but does what the command would to the tree.
/// A script is read as a tiny shell: `echo TEXT` prints, `touch /PATH`
/// creates a file in the tree, `exit N` ends it.
#[derive(Default)]
pub struct FakeInside {
    calls: Mutex<Vec<InsideCall>>,
    /// Written as apt's simulation of a purge.
    simulation: String,
    /// Packages the bootstrap installs, besides the plan's.
    base_packages: Vec<&'static str>,
}

fn status_entry(name: &str) -> String {
    format!("Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n")
}

impl FakeInside {
    /// A sandbox whose bootstrap installs `base_packages` besides the
    /// plan's, and whose apt simulates a purge as `simulation`.
    pub fn with_packages(base_packages: &[&'static str], simulation: &str) -> Self {
        FakeInside {
            base_packages: base_packages.to_vec(),
            simulation: simulation.to_string(),
            ..FakeInside::default()
        }
    }

    pub fn calls(&self) -> Vec<InsideCall> {
        self.calls.lock().expect("lock").clone()
    }

    /// The scripts it ran, by name, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.calls().into_iter().filter_map(|c| c.script).collect()
    }

    fn bootstrap(&self, tree: &Path, argv: &[String]) -> io::Result<()> {
        let owner = fs::metadata(tree)?;
        for d in [
            "etc",
            "usr/sbin",
            "var/lib/dpkg",
            "var/lib/apt/lists",
            "var/log",
            "var/cache/apt/archives",
        ] {
            fs::create_dir_all(tree.join(d))?;
        }
        // root is the build's own user here, so files owned by root can be
        // given to it without privileges.
        fs::write(
            tree.join("etc/passwd"),
            format!("root:x:{}:{}::/root:/bin/sh\n", owner.uid(), owner.gid()),
        )?;
        fs::write(tree.join("etc/group"), format!("root:x:{}:\n", owner.gid()))?;
        fs::write(tree.join("etc/machine-id"), "0123456789abcdef\n")?;
        fs::write(tree.join("var/log/dpkg.log"), "installed everything\n")?;
        fs::write(
            tree.join("var/lib/apt/lists/deb.example_dists_bookworm_InRelease"),
            "release\n",
        )?;
        let mut packages: Vec<String> = self.base_packages.iter().map(|p| p.to_string()).collect();
        if let Some(include) = argv.iter().find_map(|a| a.strip_prefix("--include=")) {
            packages.extend(include.split(',').map(str::to_string));
        }
        let status: String = packages.iter().map(|p| status_entry(p)).collect();
        fs::write(tree.join("var/lib/dpkg/status"), status)
    }

    fn script(&self, tree: &Path, text: &str, log: &BuildLog) -> io::Result<Ended> {
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("echo ") {
                log.output(format!("{t}\n").as_bytes());
            } else if let Some(p) = line.strip_prefix("touch ") {
                let p = p.trim_start_matches("$KILN_ROOT").trim_start_matches('/');
                let full = tree.join(p);
                fs::create_dir_all(full.parent().expect("a parent"))?;
                fs::write(full, "")?;
            } else if let Some(n) = line.strip_prefix("exit ") {
                return Ok(Ended::Exited(n.trim().parse().unwrap_or(1)));
            }
        }
        Ok(Ended::Exited(0))
    }

    fn apt(&self, req: &InsideRun, tree: &Path) -> io::Result<Ended> {
        let script = &req.argv[2];
        let names: Vec<&str> = req.argv.iter().skip(4).map(String::as_str).collect();
        if script.contains("apt-get -s -q purge") {
            let dir = &req.binds[0].0;
            fs::write(dir.join("simulation"), &self.simulation)?;
        } else if script.contains("apt-get purge") {
            let status = fs::read_to_string(tree.join("var/lib/dpkg/status"))?;
            let kept: String = status
                .split("\n\n")
                .filter(|e| !e.is_empty() && !names.iter().any(|n| e.starts_with(&format!("Package: {n}\n"))))
                .map(|e| format!("{e}\n\n"))
                .collect();
            fs::write(tree.join("var/lib/dpkg/status"), kept)?;
        } else if script.contains("apt-get install") {
            fs::create_dir_all(tree.join("etc"))?;
            fs::write(tree.join("etc/apt-installed"), script.as_bytes())?;
        }
        Ok(Ended::Exited(0))
    }
}

impl Inside for FakeInside {
    fn run(&self, req: &InsideRun, log: &BuildLog) -> Result<Ended, String> {
        let tree = match req.view {
            View::Image => req.root.clone(),
            View::Host => req
                .binds
                .iter()
                .find(|(_, target, _)| target == HOST_VIEW_ROOT)
                .map(|(source, _, _)| source.clone())
                .unwrap_or_else(|| req.root.clone()),
        };
        let script = req.copies.first().map(|(source, _, _)| source.clone());
        self.calls.lock().expect("lock").push(InsideCall {
            view: req.view,
            argv: req.argv.clone(),
            tree: tree.clone(),
            network: req.network,
            nested_mounts: req.nested_mounts,
            env: req.env.clone(),
            binds: req.binds.clone(),
            cwd: req.cwd.clone(),
            script: script
                .as_ref()
                .and_then(|s| s.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
        });
        let r = if req.argv[0] == "mmdebstrap" {
            self.bootstrap(&tree, &req.argv).map(|()| Ended::Exited(0))
        } else if let Some(source) = script {
            fs::read_to_string(source).and_then(|text| self.script(&tree, &text, log))
        } else if req.argv.len() > 2 && req.argv[2].contains("apt-get") {
            self.apt(req, &tree)
        } else {
            Ok(Ended::Exited(0))
        };
        r.map_err(|e| e.to_string())
    }
}

/// What the fake host was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum HostCall {
    Run(Cmd),
    Output(Cmd),
    Download(String),
    Overlay { lowers: Vec<PathBuf>, target: PathBuf },
    Remount(PathBuf),
    ReadOnly { layers: Vec<PathBuf>, target: PathBuf },
    PopulateDev(PathBuf),
    Tar { root: PathBuf, dest: PathBuf },
    CopyTree { from: PathBuf, to: PathBuf },
}

/// The host: tools that write a listing of the tree they were given,
/// overlays made of copies, and a mirror that always answers.
#[derive(Default)]
pub struct FakeHost {
    calls: Arc<Mutex<Vec<HostCall>>>,
    /// Tools `probe` does not find.
    missing: Vec<&'static str>,
    /// A tool that fails (prints a line, exits with 1).
    failing: Option<&'static str>,
}

impl FakeHost {
    /// A host where `program` fails.
    pub fn failing(program: &'static str) -> Self {
        FakeHost {
            failing: Some(program),
            ..FakeHost::default()
        }
    }

    /// A host without `tools`.
    pub fn without(tools: &[&'static str]) -> Self {
        FakeHost {
            missing: tools.to_vec(),
            ..FakeHost::default()
        }
    }

    pub fn calls(&self) -> Vec<HostCall> {
        self.calls.lock().expect("lock").clone()
    }

    /// The programs it ran, in order.
    pub fn programs(&self) -> Vec<&'static str> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                HostCall::Run(cmd) => Some(cmd.program),
                _ => None,
            })
            .collect()
    }

    fn record(&self, call: HostCall) {
        self.calls.lock().expect("lock").push(call);
    }
}

/// Writes `dest` as a listing of `root` (what the fake tools produce).
fn write_listing(root: &Path, dest: &Path) -> io::Result<()> {
    let mut text = listing(root).join("\n");
    text.push('\n');
    fs::write(dest, text)
}

impl Host for FakeHost {
    fn probe(&self) -> Vec<kiln_host::ToolStatus> {
        kiln_host::TOOLS
            .iter()
            .map(|tool| {
                let found = !self.missing.contains(&tool.name);
                kiln_host::ToolStatus {
                    tool,
                    path: found.then(|| PathBuf::from("/usr/bin").join(tool.name)),
                    version: found.then(|| "1.0".to_string()),
                }
            })
            .collect()
    }

    fn run(&self, cmd: &Cmd, log: &BuildLog, _: Option<Duration>) -> io::Result<Ended> {
        self.record(HostCall::Run(cmd.clone()));
        if self.failing == Some(cmd.program) {
            log.output(format!("{}: something went wrong\n", cmd.program).as_bytes());
            return Ok(Ended::Exited(1));
        }
        let arg = |i: usize| PathBuf::from(&cmd.args[i]);
        match cmd.program {
            "mksquashfs" => write_listing(&arg(0), &arg(1))?,
            "mkfs.erofs" => write_listing(&arg(cmd.args.len() - 1), &arg(cmd.args.len() - 2))?,
            _ => {}
        }
        Ok(Ended::Exited(0))
    }

    fn output(&self, cmd: &Cmd) -> io::Result<std::process::Output> {
        self.record(HostCall::Output(cmd.clone()));
        std::process::Command::new("true").output()
    }

    fn download(&self, url: &str, dest: &Path) -> bool {
        self.record(HostCall::Download(url.to_string()));
        fs::write(dest, "Suite: bookworm\n").is_ok()
    }

    fn mount_overlay(
        &self,
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        _work: PathBuf,
        target: &Path,
    ) -> io::Result<Box<dyn Overlay>> {
        self.record(HostCall::Overlay {
            lowers: lowers.clone(),
            target: target.to_path_buf(),
        });
        for l in &lowers {
            copy_over(l, target)?;
        }
        copy_over(&upper, target)?;
        Ok(Box::new(FakeOverlay {
            target: target.to_path_buf(),
            upper,
            calls: Arc::clone(&self.calls),
        }))
    }

    fn mount_read_only(&self, layers: &[PathBuf], target: &Path) -> io::Result<Box<dyn Mounted>> {
        self.record(HostCall::ReadOnly {
            layers: layers.to_vec(),
            target: target.to_path_buf(),
        });
        for l in layers {
            copy_over(l, target)?;
        }
        Ok(Box::new(FakeMount(target.to_path_buf())))
    }

    fn adopt_mount(&self, target: &Path) -> Box<dyn Mounted> {
        Box::new(FakeMount(target.to_path_buf()))
    }

    fn populate_dev(&self, root: &Path) -> io::Result<()> {
        self.record(HostCall::PopulateDev(root.to_path_buf()));
        fs::create_dir_all(root.join("dev"))
    }

    fn write_tar(&self, root: &Path, dest: &Path, _: &kiln_tar::Options) -> Result<kiln_tar::Stats, String> {
        self.record(HostCall::Tar {
            root: root.to_path_buf(),
            dest: dest.to_path_buf(),
        });
        write_listing(root, dest).map_err(|e| e.to_string())?;
        Ok(kiln_tar::Stats {
            entries: 1,
            bytes_in: 1,
            bytes_out: 1,
        })
    }

    fn copy_tree(&self, from: &Path, to: &Path) {
        self.record(HostCall::CopyTree {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        let _ = copy_over(from, to);
    }
}

/// An overlay made of copies: the layers copied into the target when
/// mounted, the target copied into the upper layer when unmounted.
struct FakeOverlay {
    target: PathBuf,
    upper: PathBuf,
    calls: Arc<Mutex<Vec<HostCall>>>,
}

impl Mounted for FakeOverlay {
    fn target(&self) -> &Path {
        &self.target
    }
}

impl Overlay for FakeOverlay {
    fn remount(&mut self) -> io::Result<()> {
        self.calls
            .lock()
            .expect("lock")
            .push(HostCall::Remount(self.target.clone()));
        Ok(())
    }
}

impl Drop for FakeOverlay {
    fn drop(&mut self) {
        let _ = copy_over(&self.target, &self.upper);
        empty_dir(&self.target);
    }
}

/// A read-only mount made of copies, emptied when unmounted.
struct FakeMount(PathBuf);

impl Mounted for FakeMount {
    fn target(&self) -> &Path {
        &self.0
    }
}

impl Drop for FakeMount {
    fn drop(&mut self) {
        empty_dir(&self.0);
    }
}

/// The manifest of a build, as JSON.
pub fn manifest_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).expect("manifest")).expect("JSON")
}

/// (stage, status) of every stage of a manifest.
pub fn stage_statuses(m: &serde_json::Value) -> Vec<(String, String)> {
    m["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or("").to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// `(stage, status)` pairs from string literals.
pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Files of a directory, by name, with their contents.
pub fn files_of(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
