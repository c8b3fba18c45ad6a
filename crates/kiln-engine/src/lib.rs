//! kiln's build engine: a resolved [`Plan`] in, image files out (docs/profiles.md).
//!
//! Stages, in order: **base** (mmdebstrap with the whole package set),
//! **files** (feature files), **image-scripts** (inside the image, through
//! the sandbox), **scripts** (build side, `$KILN_ROOT`), **cleanup**, then
//! **outputs** (and each subprofile's squashfs). Outputs are written into a
//! hidden directory inside `OUTDIR`, checksummed, and renamed into place only
//! when every one of them is complete: a failed or interrupted build leaves
//! no output file (its log stays, for diagnosis).
//!
//! The engine runs commands inside the image through the [`Inside`] trait
//! (implemented with `kiln-sandbox` by the front end), and host commands
//! through [`run::run_logged`].

// A build fails at most once; the error carries its log tail and context by
// value, and its size does not matter on that cold path.
#![allow(clippy::result_large_err)]

pub mod args;
pub mod dpkg;
pub mod fsutil;
pub mod gitfetch;
mod hostside;
pub mod keys;
pub mod log;
pub mod manifest;
pub mod run;
pub mod tree;
pub mod update;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_core::plan::{Plan, Script};
use kiln_core::stagekey::{StageId, StageKey};
use kiln_store::{Cache, Lookup};

use crate::args::Cmd;
pub use crate::hostside::cleanup;
use crate::hostside::{dpkg_status, populate_dev};
use crate::log::{BuildLog, Reporter};
use crate::manifest::{
    BaseRecord, Manifest, OutputRecord, RepoInfo, ScriptRecord, StageRecord, StepRecord, ToolRecord,
};
use crate::run::{Ended, interrupted, run_logged};

/// A command to run in the sandbox (docs/sandbox.md): inside the image
/// tree, or on it with the host's tools.
#[derive(Clone, Debug)]
pub struct InsideRun {
    /// The image tree ([`View::Image`]), or an empty directory the host view
    /// is mounted on ([`View::Host`]).
    pub root: PathBuf,
    pub view: View,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory inside.
    pub cwd: String,
    pub network: bool,
    /// (host path, path inside, read-only)
    pub binds: Vec<(PathBuf, String, bool)>,
    /// (host file, path inside under `/run`, mode): copied in, never bound.
    pub copies: Vec<(PathBuf, String, u32)>,
    /// The command mounts in namespaces of its own (the package bootstrap).
    pub nested_mounts: bool,
    pub timeout: Option<Duration>,
    /// Interactive (terminal attached): `--shell-on-failure`.
    pub interactive: bool,
}

/// What a sandboxed command sees as `/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The image tree.
    Image,
    /// The host's programs read-only; the tree is bound at [`HOST_VIEW_ROOT`].
    Host,
}

/// Where the host view shows the image tree (`$KILN_ROOT` of build-side
/// scripts).
pub const HOST_VIEW_ROOT: &str = "/kiln/root";
/// Where the host view shows the profile repository, read-only.
pub const HOST_VIEW_REPO: &str = "/kiln/repo";

impl InsideRun {
    /// `argv` inside the image tree `root`: no network, binds or copies.
    pub fn image(root: &Path, argv: Vec<String>, env: Vec<(String, String)>, timeout: Option<Duration>) -> Self {
        InsideRun {
            root: root.to_path_buf(),
            view: View::Image,
            argv,
            env,
            cwd: "/".into(),
            network: false,
            binds: Vec::new(),
            copies: Vec::new(),
            nested_mounts: false,
            timeout,
            interactive: false,
        }
    }
}

/// Runs commands inside an image tree. Implemented by the front end with
/// `kiln-sandbox`; output goes to the log.
pub trait Inside: Send + Sync {
    fn run(&self, req: &InsideRun, log: &BuildLog) -> Result<Ended, String>;
}

/// What to build and how.
pub struct Request {
    pub plan: Plan,
    /// The profile repository on disk, as an absolute path (scripts and
    /// files are read from it; build-side scripts run in it).
    pub repo: PathBuf,
    pub outdir: PathBuf,
    /// Where the work tree is made (a directory of its own is created inside).
    pub workdir: PathBuf,
    /// `SOURCE_DATE_EPOCH` (docs/cache.md); `None` leaves times unpinned.
    pub source_date_epoch: Option<u64>,
    /// Compressor threads (`--jobs`); outputs do not depend on it.
    pub jobs: u32,
    pub keep_workdir: bool,
    pub shell_on_failure: bool,
    pub reporter: Arc<dyn Reporter>,
    /// The stage cache (docs/cache.md); `None` with `--no-cache`. The process
    /// must be in a private mount namespace of its own (the cache mounts
    /// overlays; so do subprofiles).
    pub cache: Option<Cache>,
    /// `--rebuild-from`: a stage kind or a script name; that step and every
    /// later one are built even when cached.
    pub rebuild_from: Option<String>,
    /// The catalog of source images, for `[base] from` (docs/update.md).
    pub catalog: Option<kiln_store::catalog::Catalog>,
    /// Where mirrors of the repositories of `git+` scripts are kept.
    pub git_mirrors: PathBuf,
}

/// A finished build.
#[derive(Debug)]
pub struct Built {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub log_path: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub workdir: Option<PathBuf>,
}

/// Why a build failed: where, what ran, and what it printed last.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct BuildError {
    pub stage: String,
    pub step: Option<String>,
    pub command: Option<String>,
    pub message: String,
    pub log_tail: Vec<String>,
    pub log_path: Option<PathBuf>,
    /// Debian packages to install (missing host tools).
    pub missing_packages: Vec<String>,
    pub interrupted: bool,
    pub workdir: Option<PathBuf>,
}

impl BuildError {
    fn new(stage: &str, message: impl Into<String>) -> Self {
        BuildError {
            stage: stage.to_string(),
            step: None,
            command: None,
            message: message.into(),
            log_tail: Vec::new(),
            log_path: None,
            missing_packages: Vec::new(),
            interrupted: interrupted(),
            workdir: None,
        }
    }
}

/// `--jobs` when not given: every CPU.
pub fn default_jobs() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// Which host tools a plan needs, by tool name.
pub fn required_tools(plan: &Plan) -> Vec<&'static str> {
    let mut tools = Vec::new();
    if matches!(plan.base, kiln_core::plan::Base::Bootstrap { .. }) {
        tools.push("mmdebstrap");
    }
    for o in &plan.outputs {
        match o.format.as_str() {
            "squashfs" => tools.push("mksquashfs"),
            "erofs" => tools.push("mkfs.erofs"),
            "ext4" => tools.push("mkfs.ext4"),
            "qcow2" => tools.extend(["mkfs.ext4", "qemu-img"]),
            _ => {}
        }
    }
    if !plan.subprofiles.is_empty() {
        tools.push("mksquashfs");
    }
    if !kiln_core::stagekey::remote_scripts(plan).is_empty() {
        tools.push("git");
    }
    tools.sort_unstable();
    tools.dedup();
    tools
}

/// The clean base of every script's environment (docs/sandbox.md), with
/// `SOURCE_DATE_EPOCH` when set.
pub fn base_env(epoch: Option<u64>) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME".to_string(), "/root".to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string()),
    ];
    if let Some(epoch) = epoch {
        env.push(("SOURCE_DATE_EPOCH".to_string(), epoch.to_string()));
    }
    env
}

/// Environment of every script (docs/sandbox.md): clean, with `KILN_*` and the
/// macros as `KILN_MACRO_<name>`.
pub fn script_env(plan: &Plan, epoch: Option<u64>, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = base_env(epoch);
    env.extend([
        ("KILN_IMAGE".to_string(), plan.image.clone()),
        ("KILN_NVR".to_string(), plan.nvr.clone()),
        ("KILN_ARCH".to_string(), plan.arch.clone()),
        ("KILN_KIND".to_string(), plan.kind.value.clone()),
    ]);
    // As `kiln update` gives it, so one script serves both.
    if let kiln_core::plan::Base::Source { from, .. } = &plan.base {
        env.push(("KILN_SOURCE".to_string(), from.value.clone()));
    }
    env.extend(extra.iter().map(|(k, v)| ((*k).to_string(), v.clone())));
    env.extend(
        plan.macros
            .iter()
            .map(|m| (format!("KILN_MACRO_{}", m.name), m.value.clone())),
    );
    env
}

const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

struct Engine<'a> {
    req: &'a Request,
    inside: &'a dyn Inside,
    log: BuildLog,
    work: PathBuf,
    root: PathBuf,
    partial: PathBuf,
    stages: Vec<StageRecord>,
    scripts: Vec<ScriptRecord>,
    outputs: Vec<OutputRecord>,
    base: Option<BaseRecord>,
    keys: Vec<StageKey>,
    /// The tree so far: cached layers bottom first (or the work tree).
    layers: Vec<PathBuf>,
    /// Entries in use, shared-locked until the build ends.
    held: Vec<kiln_store::Entry>,
    /// The read-only overlay of the finished tree, for the outputs.
    tree_mount: Option<kiln_store::overlay::Mount>,
    /// Installed packages, when they come from a cached output's record.
    packages: Option<Vec<dpkg::Installed>>,
    /// Steps of the running stage.
    steps: Vec<StepRecord>,
    /// `--rebuild-from` was reached.
    forced: bool,
    /// `git+` scripts, fetched before the keys are computed.
    remote: std::collections::BTreeMap<String, gitfetch::Fetched>,
    /// The source image of a `[base] from` image and its file.
    source: Option<(kiln_store::catalog::Image, PathBuf)>,
    /// The writable overlay of the running step, remounted after each
    /// sandboxed command (which worked on an overlay of its own over the
    /// same layers: this one's caches are stale then).
    overlay: Option<kiln_store::overlay::Layered>,
}

/// Builds the plan. On failure nothing is left in `OUTDIR` but the log.
pub fn build(req: &Request, inside: &dyn Inside) -> Result<Built, BuildError> {
    let plan = &req.plan;
    if !req.repo.is_absolute() {
        return Err(BuildError::new(
            "preflight",
            format!("the repository path `{}` must be absolute", req.repo.display()),
        ));
    }
    let statuses = kiln_host::probe(None);
    let needed = required_tools(plan);
    let missing: Vec<String> = statuses
        .iter()
        .filter(|s| needed.contains(&s.tool.name) && !s.is_found())
        .map(|s| s.tool.package.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let mut e = BuildError::new(
            "preflight",
            format!(
                "missing host tools; install them with `apt-get install {}` or `kiln doctor --fix`",
                missing.join(" ")
            ),
        );
        e.missing_packages = missing;
        return Err(e);
    }
    fs::create_dir_all(&req.outdir)
        .map_err(|e| BuildError::new("preflight", format!("cannot create `{}`: {e}", req.outdir.display())))?;
    let log_path = req.outdir.join(format!("{}.{}.build.log", plan.nvr, plan.arch));
    let log = BuildLog::create(&log_path, Arc::clone(&req.reporter)).map_err(|e| {
        BuildError::new(
            "preflight",
            format!("cannot create the log `{}`: {e}", log_path.display()),
        )
    })?;
    fs::create_dir_all(&req.workdir)
        .map_err(|e| BuildError::new("preflight", format!("cannot create `{}`: {e}", req.workdir.display())))?;
    let work = req
        .workdir
        .join(format!("{}.{}.{}", plan.nvr, plan.arch, std::process::id()));
    let partial = req.outdir.join(format!(".kiln-partial-{}", std::process::id()));
    let mut engine = Engine {
        req,
        inside,
        log,
        root: work.join("root"),
        work,
        partial,
        stages: Vec::new(),
        scripts: Vec::new(),
        outputs: Vec::new(),
        base: None,
        keys: Vec::new(),
        layers: Vec::new(),
        held: Vec::new(),
        tree_mount: None,
        packages: None,
        steps: Vec::new(),
        forced: false,
        remote: std::collections::BTreeMap::new(),
        source: None,
        overlay: None,
    };
    let mut extra = std::collections::BTreeMap::new();
    for g in kiln_core::stagekey::remote_scripts(plan) {
        let spec = kiln_core::stagekey::remote_key(&g);
        let dest = engine.work.join("remote").join(extra.len().to_string());
        let work_dir = engine.work.clone();
        let fetched = gitfetch::fetch(&g, &req.git_mirrors, &dest).map_err(|m| {
            let _ = fs::remove_dir_all(&work_dir);
            let mut e = BuildError::new("preflight", format!("cannot get the script {spec}: {m}"));
            e.log_path = Some(log_path.clone());
            e
        })?;
        engine.log.note(&format!("fetched {spec} at {}", fetched.commit));
        extra.insert(spec.clone(), keys::file_hash(&fetched.path));
        engine.remote.insert(spec, fetched);
    }
    let mut source_digest = None;
    if let kiln_core::plan::Base::Source { from, .. } = &plan.base {
        let Some(catalog) = &req.catalog else {
            return Err(BuildError::new("preflight", "no catalog of source images".to_string()));
        };
        let img = catalog.get(&from.value).map_err(|e| {
            BuildError::new(
                "preflight",
                format!("[base] from = \"{}\" ({}): {e}", from.value, from.origin),
            )
        })?;
        source_digest = Some(img.sha256.clone());
        let blob = catalog.blob(&img);
        engine.source = Some((img, blob));
    }
    let versions: std::collections::BTreeMap<String, String> = statuses
        .iter()
        .filter(|s| s.is_found())
        .map(|s| (s.tool.name.to_string(), s.version.clone().unwrap_or_default()))
        .collect();
    engine.keys = keys::compute(req, versions, &engine.log, extra, source_digest);
    let tools: Vec<ToolRecord> = statuses
        .iter()
        .filter(|s| needed.contains(&s.tool.name))
        .map(|s| ToolRecord {
            name: s.tool.name.to_string(),
            path: s.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            version: s.version.clone(),
        })
        .collect();
    let result = engine.stages().and_then(|()| engine.finish(tools, &log_path));
    engine.tree_mount = None;
    engine.held.clear();
    let keep = req.keep_workdir;
    match result {
        Ok(mut built) => {
            let _ = fs::remove_dir_all(&engine.partial);
            if keep {
                built.workdir = Some(engine.work.clone());
            } else {
                let _ = fs::remove_dir_all(&engine.work);
            }
            Ok(built)
        }
        Err(mut e) => {
            engine.log.note(&format!("FAILED in {}: {}", e.stage, e.message));
            let _ = fs::remove_dir_all(&engine.partial);
            if keep {
                e.workdir = Some(engine.work.clone());
            } else {
                let _ = fs::remove_dir_all(&engine.work);
            }
            e.log_path = Some(log_path);
            e.interrupted |= interrupted();
            Err(e)
        }
    }
}

impl Engine<'_> {
    fn plan(&self) -> &Plan {
        &self.req.plan
    }

    fn fail(&self, stage: &str, step: Option<&str>, command: Option<String>, message: String) -> BuildError {
        let mut e = BuildError::new(stage, message);
        e.step = step.map(str::to_string);
        e.command = command;
        e.log_tail = self.log.tail();
        e
    }

    fn stage<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<T, BuildError>) -> Result<T, BuildError> {
        if interrupted() {
            return Err(self.fail(name, None, None, "interrupted".into()));
        }
        self.log.note(&format!("==> stage {name}"));
        self.log.reporter().stage(name);
        self.steps.clear();
        let start = Instant::now();
        let r = f(self)?;
        let seconds = start.elapsed().as_secs_f64();
        let steps = std::mem::take(&mut self.steps);
        let cached = steps.iter().filter(|s| s.status == "cached").count();
        let status = match cached {
            0 => "built",
            n if n == steps.len() => "cached",
            _ => "partly cached",
        };
        self.log.reporter().stage_done(name, status, seconds);
        self.log.note(&format!("<== stage {name} {status} in {seconds:.1}s"));
        self.stages.push(StageRecord {
            stage: name.to_string(),
            status,
            seconds,
            steps,
        });
        Ok(r)
    }

    fn host(&self, stage: &str, step: &str, cmd: &Cmd, timeout: Option<Duration>) -> Result<(), BuildError> {
        self.log.reset_tail();
        self.log.reporter().step(step);
        self.log.note(&format!("$ {}", cmd.display()));
        let mut c = Command::new(cmd.program);
        c.args(&cmd.args);
        match self.req.source_date_epoch {
            Some(epoch) => c.env("SOURCE_DATE_EPOCH", epoch.to_string()),
            None => c.env_remove("SOURCE_DATE_EPOCH"),
        };
        for (k, v) in &cmd.env {
            c.env(k, v);
        }
        let ended = run_logged(c, &self.log, timeout).map_err(|e| {
            self.fail(
                stage,
                Some(step),
                Some(cmd.display()),
                format!("cannot run `{}`: {e}", cmd.program),
            )
        })?;
        if ended.success() {
            Ok(())
        } else {
            Err(self.fail(
                stage,
                Some(step),
                Some(cmd.display()),
                format!("`{}` {}", cmd.program, ended.describe()),
            ))
        }
    }

    fn io(&self, stage: &str, what: String) -> impl Fn(std::io::Error) -> BuildError + '_ {
        let stage = stage.to_string();
        move |e| self.fail(&stage, None, None, format!("{what}: {e}"))
    }

    fn stages(&mut self) -> Result<(), BuildError> {
        fs::create_dir_all(&self.work)
            .map_err(self.io("preflight", format!("cannot create {}", self.work.display())))?;
        fs::create_dir_all(&self.partial)
            .map_err(self.io("preflight", format!("cannot create {}", self.partial.display())))?;
        if self.fast_outputs()? {
            return Ok(());
        }
        for (kind, group) in self.tree_groups() {
            self.stage(kind, |e| group.iter().try_for_each(|k| e.tree_step(k)))?;
        }
        self.mount_tree()?;
        self.stage("outputs", Self::outputs)?;
        Ok(())
    }

    /// The tree steps, grouped by stage kind in build order.
    fn tree_groups(&self) -> Vec<(&'static str, Vec<StageKey>)> {
        let mut groups: Vec<(&'static str, Vec<StageKey>)> = Vec::new();
        for k in self.keys.iter().filter(|k| k.id.is_tree()) {
            match groups.last_mut() {
                Some((kind, g)) if *kind == k.id.kind() => g.push(k.clone()),
                _ => groups.push((k.id.kind(), vec![k.clone()])),
            }
        }
        groups
    }

    fn cache_err(&self, k: &StageKey) -> impl Fn(kiln_store::StoreError) -> BuildError + '_ {
        let (stage, step) = (k.id.kind(), k.step.clone());
        move |e| self.fail(stage, step.as_deref(), None, format!("stage cache: {e}"))
    }

    fn note_rebuild_from(&mut self, k: &StageKey) {
        if let Some(r) = self.req.rebuild_from.as_deref()
            && (r == k.id.kind() || k.step.as_deref() == Some(r))
        {
            self.forced = true;
        }
    }

    fn step_done(&mut self, k: &StageKey, status: &'static str, start: Instant) {
        let label = k.step.clone().unwrap_or_else(|| k.id.kind().to_string());
        if status == "cached" {
            self.log.reporter().step(&format!("{label} (cached)"));
        }
        self.log.note(&format!("{label}: {status} (key {})", &k.key[..16]));
        self.steps.push(StepRecord {
            step: k.step.clone(),
            key: k.key.clone(),
            status,
            seconds: start.elapsed().as_secs_f64(),
        });
    }

    /// Brings back what a cached stage contributed to the manifest.
    fn restore(&mut self, record: &serde_json::Value) {
        if let Some(b) = record.get("base").and_then(|b| serde_json::from_value(b.clone()).ok()) {
            self.base = Some(b);
        }
        if let Some(s) = record
            .get("scripts")
            .and_then(|s| serde_json::from_value::<Vec<ScriptRecord>>(s.clone()).ok())
        {
            self.scripts.extend(s);
        }
    }

    /// One tree step: from the cache when its entry is there and intact,
    /// else run on an overlay of the layers so far with a new upper layer
    /// (the base: into a new directory), then stored.
    fn tree_step(&mut self, k: &StageKey) -> Result<(), BuildError> {
        let start = Instant::now();
        self.note_rebuild_from(k);
        let Some(cache) = self.req.cache.clone() else {
            self.root = self.work.join("root");
            self.run_step(&k.id)?;
            if self.layers.is_empty() {
                self.layers.push(self.root.clone());
            }
            self.step_done(k, "built", start);
            return Ok(());
        };
        if !self.forced {
            match cache.lookup(&k.key, true).map_err(self.cache_err(k))? {
                Lookup::Hit(e) => {
                    self.restore(&e.meta.record);
                    self.layers.push(e.layer());
                    self.held.push(*e);
                    self.step_done(k, "cached", start);
                    return Ok(());
                }
                Lookup::Corrupt(why) => self
                    .log
                    .note(&format!("cache entry {} discarded ({why}); rebuilding", &k.key[..16])),
                Lookup::Miss => {}
            }
        }
        let pending = cache.begin(&k.key).map_err(self.cache_err(k))?;
        let scripts_before = self.scripts.len();
        if k.id == StageId::Base {
            self.root = pending.layer();
            self.run_step(&k.id)?;
        } else {
            let merged = self.work.join("merged");
            fs::create_dir_all(&merged).map_err(self.io(k.id.kind(), format!("cannot create {}", merged.display())))?;
            let upper = pending.layer();
            let ovl_work = pending.overlay_work();
            let lowers = self.layers.clone();
            self.mount_overlay(lowers, upper, ovl_work, merged.clone())
                .map_err(|e| self.fail(k.id.kind(), k.step.as_deref(), None, e))?;
            self.root = merged.clone();
            let r = self.run_step(&k.id);
            if r.is_err() && self.req.keep_workdir {
                // The merged tree ends with the mount: keep a copy.
                let _ = Command::new("cp")
                    .arg("-a")
                    .arg(format!("{}/.", merged.display()))
                    .arg(self.work.join("root"))
                    .status();
            }
            self.overlay = None;
            r?;
        }
        let record = serde_json::json!({
            "scripts": &self.scripts[scripts_before..],
            "base": if k.id == StageId::Base { serde_json::to_value(&self.base).unwrap_or_default() } else { serde_json::Value::Null },
        });
        let meta = self.new_meta("layer", k, record, Vec::new());
        let entry = cache.publish(pending, meta).map_err(self.cache_err(k))?;
        self.layers.push(entry.layer());
        self.held.push(entry);
        self.step_done(k, "built", start);
        Ok(())
    }

    /// Mounts a step's writable overlay and keeps it as the running one.
    fn mount_overlay(
        &mut self,
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    ) -> Result<(), String> {
        self.overlay = None;
        self.overlay =
            Some(kiln_store::overlay::Layered::mount(lowers, upper, work, &target).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// Runs `req` in the sandbox; if it worked on the running overlay,
    /// mounts that overlay anew so kiln reads what the command left.
    fn run_inside(&mut self, req: &InsideRun) -> Result<Ended, String> {
        let ended = self.inside.run(req, &self.log);
        if let Some(o) = &mut self.overlay
            && (req.root == o.target() || req.binds.iter().any(|(source, _, _)| source == o.target()))
        {
            o.remount()
                .map_err(|e| format!("cannot mount the tree again after the sandbox: {e}"))?;
        }
        ended
    }

    fn new_meta(
        &self,
        kind: &str,
        k: &StageKey,
        record: serde_json::Value,
        files: Vec<kiln_store::FileMeta>,
    ) -> kiln_store::Meta {
        kiln_store::Meta {
            key: String::new(),
            kind: kind.to_string(),
            stage: k.id.kind().to_string(),
            step: k.step.clone(),
            image: self.plan().image.clone(),
            created: 0,
            size: 0,
            digest: String::new(),
            record,
            files,
        }
    }

    fn run_step(&mut self, id: &StageId) -> Result<(), BuildError> {
        let root = self.root.clone();
        let plan = self.plan().clone();
        match id {
            StageId::Base => self.base(),
            StageId::Packages => self.packages(),
            StageId::Files => {
                self.install_files(&root, &plan.files)?;
                self.write_macros_file(&root)
            }
            StageId::ImageScript(i) => self.image_scripts(&root, &plan.image_scripts[*i..=*i], None),
            StageId::Script(i) => self.build_scripts(&root, &plan.scripts[*i..=*i], None),
            StageId::Cleanup => {
                if plan.build.cleanup.value {
                    cleanup(&root).map_err(self.io("cleanup", "cannot clean the tree".into()))?;
                }
                if let Some(epoch) = self.req.source_date_epoch {
                    fsutil::clamp_mtimes(&root, epoch).map_err(self.io("cleanup", "cannot clamp mtimes".into()))?;
                }
                Ok(())
            }
            StageId::Output(_) | StageId::Subprofile(_) => Ok(()),
        }
    }

    /// The finished tree, read-only, for the outputs.
    fn mount_tree(&mut self) -> Result<(), BuildError> {
        if self.req.cache.is_none() {
            self.root = self.work.join("root");
            return Ok(());
        }
        let merged = self.work.join("merged");
        fs::create_dir_all(&merged).map_err(self.io("outputs", format!("cannot create {}", merged.display())))?;
        let m = kiln_store::overlay::mount_layers(&self.layers, None, &merged)
            .map_err(|e| self.fail("outputs", None, None, e.to_string()))?;
        self.tree_mount = Some(m);
        self.root = merged;
        Ok(())
    }

    fn output_key(&self, id: &StageId) -> Option<StageKey> {
        self.keys.iter().find(|k| &k.id == id).cloned()
    }

    /// An unchanged rebuild: every output is in the cache, so no stage
    /// runs; the files are copied out and verified against their sha256.
    fn fast_outputs(&mut self) -> Result<bool, BuildError> {
        let Some(cache) = self.req.cache.clone() else {
            return Ok(false);
        };
        if self.req.rebuild_from.is_some() || self.plan().outputs.iter().any(|o| o.format == "dir") {
            return Ok(false);
        }
        let wanted: Vec<StageKey> = self.keys.iter().filter(|k| !k.id.is_tree()).cloned().collect();
        let mut hits = Vec::new();
        for k in &wanted {
            match cache.lookup(&k.key, false).map_err(self.cache_err(k))? {
                Lookup::Hit(e) => hits.push(*e),
                _ => return Ok(false),
            }
        }
        // Copy and verify every output before reporting anything.
        let mut steps = Vec::new();
        for (k, entry) in wanted.iter().zip(&hits) {
            let start = Instant::now();
            if !self.copy_cached(k, entry)? {
                // A cached output was damaged (and is discarded now): build.
                self.log.note("a cached output did not verify; building the stages");
                for o in std::mem::take(&mut self.outputs) {
                    let _ = fs::remove_file(self.partial.join(&o.file));
                }
                return Ok(false);
            }
            steps.push((k.clone(), start));
        }
        for (kind, group) in self.tree_groups() {
            self.stage(kind, |e| {
                for k in &group {
                    e.step_done(k, "cached", Instant::now());
                }
                Ok(())
            })?;
        }
        self.stage("outputs", |e| {
            for (k, start) in &steps {
                e.step_done(k, "cached", *start);
            }
            Ok(())
        })?;
        if let Some(first) = hits.first() {
            let rec = first.meta.record.clone();
            self.restore(&rec);
            self.packages = rec.get("packages").and_then(|p| serde_json::from_value(p.clone()).ok());
        }
        self.held.extend(hits);
        Ok(true)
    }

    /// Copies a cached output into the partial directory, hashing as it
    /// goes; false (and the entry discarded) when it does not verify.
    fn copy_cached(&mut self, k: &StageKey, entry: &kiln_store::Entry) -> Result<bool, BuildError> {
        let Some(fm) = entry.meta.files.first().cloned() else {
            return Ok(false);
        };
        let dest = self.partial.join(&fm.name);
        let sha = fsutil::copy_hashed(&entry.file(&fm.name), &dest)
            .map_err(self.io("outputs", format!("cannot copy {} from the cache", fm.name)))?;
        if sha != fm.sha256 {
            let _ = fs::remove_file(&dest);
            // Rebuilt, it replaces the damaged entry when published.
            self.log
                .note(&format!("cached {} does not match its sha256; discarding it", fm.name));
            return Ok(false);
        }
        let (format, sub) = self.output_identity(&k.id);
        self.outputs.push(OutputRecord {
            file: fm.name.clone(),
            format,
            subprofile: sub,
            size: fm.size,
            sha256: sha,
        });
        Ok(true)
    }

    fn output_identity(&self, id: &StageId) -> (String, Option<String>) {
        match id {
            StageId::Output(i) => (self.plan().outputs[*i].format.clone(), None),
            StageId::Subprofile(i) => ("squashfs".into(), Some(self.plan().subprofiles[*i].name.clone())),
            _ => (String::new(), None),
        }
    }

    /// What every output entry records, so an unchanged rebuild can write
    /// the manifest without the tree.
    fn tree_record(&self) -> serde_json::Value {
        let status = fs::read_to_string(self.root.join("var/lib/dpkg/status")).unwrap_or_default();
        serde_json::json!({
            "base": self.base,
            "scripts": self.scripts.iter().filter(|s| s.subprofile.is_none()).collect::<Vec<_>>(),
            "packages": dpkg::parse_status(&status),
        })
    }

    /// An output from the cache when there (verified while copied), else
    /// `make` writes it and it is stored.
    fn cached_output(
        &mut self,
        id: StageId,
        file: &str,
        make: impl FnOnce(&mut Self) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let start = Instant::now();
        let key = self.output_key(&id);
        let cacheable =
            self.req.cache.is_some() && !(matches!(id, StageId::Output(i) if self.plan().outputs[i].format == "dir"));
        if let (Some(k), true) = (&key, cacheable) {
            self.note_rebuild_from(k);
            if !self.forced
                && let Some(cache) = self.req.cache.clone()
                && let Lookup::Hit(e) = cache.lookup(&k.key, false).map_err(self.cache_err(k))?
                && self.copy_cached(k, &e)?
            {
                self.step_done(k, "cached", start);
                return Ok(());
            }
        }
        make(self)?;
        let (format, sub) = self.output_identity(&id);
        let dest = self.partial.join(file);
        self.record_output(file, &format, sub.as_deref(), &dest)?;
        if let (Some(k), true, Some(cache)) = (&key, cacheable, self.req.cache.clone()) {
            let pending = cache.begin(&k.key).map_err(self.cache_err(k))?;
            // A copy (a reflink where the file system shares extents), never
            // a hard link: the user's file and the cache must not change
            // together.
            let stored = pending.files().join(file);
            fs::copy(&dest, &stored).map_err(self.io("outputs", format!("cannot store {file} in the cache")))?;
            let rec = self.outputs.last().cloned();
            let files = rec
                .map(|r| kiln_store::FileMeta {
                    name: r.file,
                    size: r.size,
                    sha256: r.sha256,
                })
                .into_iter()
                .collect();
            let meta = self.new_meta("files", k, self.tree_record(), files);
            cache.publish(pending, meta).map_err(self.cache_err(k))?;
        }
        if let Some(k) = &key {
            self.step_done(k, "built", start);
        }
        Ok(())
    }

    /// A `[base] from` image: the source image's tree (docs/update.md).
    fn source_base(&mut self) -> Result<(), BuildError> {
        let Some((img, blob)) = self.source.clone() else {
            return Err(self.fail("base", None, None, "the source image was not resolved".into()));
        };
        let root = self.root.clone();
        fs::create_dir_all(&root).map_err(self.io("base", format!("cannot create {}", root.display())))?;
        self.log.reporter().step(&img.reference());
        match img.format {
            kiln_store::catalog::Format::Squashfs => {
                let cmd = Cmd {
                    program: "unsquashfs",
                    args: vec![
                        "-f".into(),
                        "-q".into(),
                        "-n".into(),
                        "-d".into(),
                        root.clone().into(),
                        blob.clone().into(),
                    ],
                    env: Vec::new(),
                };
                self.host("base", &img.reference(), &cmd, None)?;
            }
            kiln_store::catalog::Format::Erofs => {
                let cmd = Cmd {
                    program: "fsck.erofs",
                    args: vec![
                        format!("--extract={}", root.display()).into(),
                        "--overwrite".into(),
                        blob.clone().into(),
                    ],
                    env: Vec::new(),
                };
                self.host("base", &img.reference(), &cmd, None)?;
            }
            _ => {
                let f = fs::File::open(&blob).map_err(self.io("base", format!("cannot open {}", blob.display())))?;
                let stream =
                    kiln_tar::extract::decompressed(f).map_err(self.io("base", "cannot read the source".into()))?;
                kiln_tar::extract::extract(stream, &root)
                    .map_err(|e| self.fail("base", Some(&img.reference()), None, e.to_string()))?;
            }
        }
        self.log.note(&format!(
            "base: {} ({}, sha256 {})",
            img.reference(),
            img.format.ext(),
            img.sha256
        ));
        self.base = Some(BaseRecord::Source {
            from: img.reference(),
            sha256: img.sha256.clone(),
        });
        Ok(())
    }

    fn base(&mut self) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let Some(cmd) = args::mmdebstrap(&plan, &self.root) else {
            return self.source_base();
        };
        // Keep the apt lists so the mirror's Release digests can be recorded.
        let mut cmd = cmd;
        cmd.args.insert(2, "--skip=cleanup/apt/lists".into());
        self.bootstrap(&cmd)?;
        let mut digests = Vec::new();
        let tree = tree::Tree::open(&self.root).map_err(self.io("base", "cannot open the tree".into()))?;
        let lists = "var/lib/apt/lists";
        for (name, kind) in tree
            .entries(lists)
            .map_err(self.io("base", "cannot list the apt lists".into()))?
        {
            let name = name.to_string_lossy().into_owned();
            if kind == tree::EntryKind::File
                && (name.ends_with("_InRelease") || name.ends_with("_Release"))
                && let Ok(f) = tree.open_file(&format!("{lists}/{name}"))
                && let Ok((h, _)) = kiln_store::sha256_copy(f, None)
            {
                digests.push((name, h));
            }
        }
        let mirror = match &plan.base {
            kiln_core::plan::Base::Bootstrap { mirror, .. } => mirror.as_ref().map(|m| m.value.clone()),
            kiln_core::plan::Base::Source { .. } => None,
        };
        self.base = Some(BaseRecord::Bootstrap {
            command: cmd.display(),
            mirror,
            release_digests: digests,
        });
        Ok(())
    }

    /// mmdebstrap in the sandbox's host view (docs/sandbox.md): the tree
    /// bound at `/kiln/root`, the network for the mirror, and leave to mount
    /// `/proc` and `/dev` in namespaces of its own; package maintainer
    /// scripts run as the sandbox's root, never the host's.
    fn bootstrap(&mut self, cmd: &Cmd) -> Result<(), BuildError> {
        fs::create_dir_all(&self.root).map_err(self.io("base", format!("cannot create {}", self.root.display())))?;
        let mut argv = vec![cmd.program.to_string()];
        argv.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
        if let Some(target) = argv.iter_mut().find(|a| Path::new(a.as_str()) == self.root) {
            *target = HOST_VIEW_ROOT.to_string();
        }
        let mut env = base_env(self.req.source_date_epoch);
        env.extend(cmd.env.iter().cloned());
        // A proxy the host's apt is told about through the environment.
        for name in [
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
        ] {
            if let Ok(v) = std::env::var(name) {
                env.push((name.to_string(), v));
            }
        }
        let mut req = self.host_view(
            argv.clone(),
            env,
            vec![(self.root.clone(), HOST_VIEW_ROOT.into(), false)],
            Vec::new(),
            true,
        )?;
        req.nested_mounts = true;
        req.timeout = None;
        self.log.reset_tail();
        self.log.reporter().step("mmdebstrap");
        self.log.note(&format!("$ [host view] {}", cmd.display()));
        let ended = self
            .run_inside(&req)
            .map_err(|m| self.fail("base", Some("mmdebstrap"), Some(cmd.display()), m))?;
        if !ended.success() {
            return Err(self.fail(
                "base",
                Some("mmdebstrap"),
                Some(cmd.display()),
                format!("`mmdebstrap` {}", ended.describe()),
            ));
        }
        // mmdebstrap cannot make device nodes in a user namespace; kiln adds
        // the ones its root mode puts in /dev (a booting kernel needs
        // /dev/console before anything mounts devtmpfs).
        tree::Tree::open(&self.root)
            .and_then(|tree| populate_dev(&tree))
            .map_err(self.io("base", "cannot create the device nodes in /dev".into()))
    }

    /// The removals (`remove`, `!pkg`) that the base still has installed:
    /// brought in by the variant or as a dependency, not by the package set.
    fn packages_to_purge(&self) -> Option<Vec<String>> {
        if self.plan().removed.is_empty() {
            return None;
        }
        let status = dpkg_status(&self.root);
        let installed: std::collections::HashSet<String> =
            dpkg::parse_status(&status).into_iter().map(|p| p.name).collect();
        let purge: Vec<String> = self
            .plan()
            .removed
            .iter()
            .filter(|r| installed.contains(&r.name))
            .map(|r| r.name.clone())
            .collect();
        (!purge.is_empty()).then_some(purge)
    }

    /// The packages stage (docs/profiles.md): purge what the image removes but the
    /// base installed. apt's simulation runs first, so a removal that would
    /// take a package of the image with it fails before anything changes.
    fn packages(&mut self) -> Result<(), BuildError> {
        if self.source.is_some() && !self.plan().packages.is_empty() {
            self.install_packages()?;
        }
        let Some(purge) = self.packages_to_purge() else {
            return Ok(());
        };
        let plan = self.plan().clone();
        let simdir = self.work.join("packages");
        fs::create_dir_all(&simdir).map_err(self.io("packages", "cannot create the work directory".into()))?;
        let run = |engine: &mut Self, step: &str, script: &str| -> Result<(), BuildError> {
            let mut argv = vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                script.to_string(),
                "kiln-packages".to_string(),
            ];
            argv.extend(purge.iter().cloned());
            let mut req = InsideRun::image(
                &engine.root,
                argv,
                script_env(&plan, engine.req.source_date_epoch, &[]),
                Some(step_timeout(&plan)),
            );
            req.binds = vec![(simdir.clone(), "/run/kiln/packages".into(), false)];
            engine.log.reset_tail();
            engine.log.reporter().step(step);
            engine.log.note(&format!("$ [inside] {step} {}", purge.join(" ")));
            let ended = engine
                .run_inside(&req)
                .map_err(|m| engine.fail("packages", Some(step), None, m))?;
            if ended.success() {
                Ok(())
            } else {
                Err(engine.fail(
                    "packages",
                    Some(step),
                    Some(format!("{step} {} (inside the image)", purge.join(" "))),
                    format!("removing {} {}", purge.join(", "), ended.describe()),
                ))
            }
        };
        run(
            self,
            "apt-get -s purge",
            "apt-get -s -q purge \"$@\" > /run/kiln/packages/simulation",
        )?;
        let sim = fs::read_to_string(simdir.join("simulation"))
            .map_err(self.io("packages", "cannot read apt's simulation".into()))?;
        self.log.output(sim.as_bytes());
        if sim.contains("essential packages will be removed") {
            return Err(self.fail(
                "packages",
                Some("apt-get -s purge"),
                None,
                format!(
                    "removing {} would remove packages Debian marks essential; apt refuses that",
                    purge.join(", ")
                ),
            ));
        }
        let wanted: std::collections::HashSet<&str> = plan.packages.iter().map(|p| p.name.as_str()).collect();
        let mut taken: Vec<&str> = sim
            .lines()
            .filter_map(|l| l.strip_prefix("Purg ").or_else(|| l.strip_prefix("Remv ")))
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| n.split(':').next().unwrap_or(n))
            .filter(|n| wanted.contains(n))
            .collect();
        taken.sort_unstable();
        taken.dedup();
        if !taken.is_empty() {
            return Err(self.fail(
                "packages",
                Some("apt-get -s purge"),
                None,
                format!(
                    "removing {} would also remove {}, which the image installs; \
                     drop the removal or the package",
                    purge.join(", "),
                    taken.join(", ")
                ),
            ));
        }
        run(self, "apt-get purge", "apt-get purge -y -q \"$@\"")?;
        let _ = fs::remove_dir_all(&simdir);
        Ok(())
    }

    /// Feature files: read from the repository without following symlinks,
    /// written inside the tree's root (docs/sandbox.md).
    fn install_files(&mut self, root: &Path, files: &[kiln_core::plan::FileEntry]) -> Result<(), BuildError> {
        if files.is_empty() {
            return Ok(());
        }
        let tree = tree::Tree::open(root).map_err(self.io("files", "cannot open the tree".into()))?;
        let repo = tree::Tree::open(&self.req.repo).map_err(self.io("files", "cannot open the repository".into()))?;
        for f in files {
            fsutil::in_root(root, &f.path).map_err(self.io("files", f.path.clone()))?;
            let mode = f
                .mode
                .as_deref()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .unwrap_or(0o644);
            let written = match f.target.as_deref() {
                Some(target) => tree.create_symlink(&f.path, target),
                None => repo
                    .read_regular(&f.source)
                    .and_then(|mut source| tree.create_file(&f.path, mode, &mut source).map(drop)),
            };
            written.map_err(self.io("files", format!("cannot install {} from {}", f.path, f.source)))?;
            let (uid, gid) = fsutil::resolve_owner(&tree, &f.owner)
                .map_err(|m| self.fail("files", Some(&f.path), None, format!("owner of {}: {m}", f.path)))?;
            tree.chown(&f.path, uid, gid)
                .map_err(self.io("files", format!("cannot set the owner of {}", f.path)))?;
            if f.target.is_none() {
                // chown clears set-id bits: the mode goes on last.
                tree.set_mode(&f.path, mode)
                    .map_err(self.io("files", format!("cannot set the mode of {}", f.path)))?;
            }
            self.log.note(&format!(
                "installed {} ({} {}) from {}",
                f.path,
                f.owner,
                f.mode.as_deref().unwrap_or("link"),
                f.source
            ));
        }
        Ok(())
    }

    /// `macros_file`: the resolved macros, in RPM macro syntax, for tools
    /// inside the image.
    fn write_macros_file(&mut self, root: &Path) -> Result<(), BuildError> {
        let Some(file) = self.plan().macros_file.clone() else {
            return Ok(());
        };
        fsutil::in_root(root, &file.value).map_err(self.io("files", file.value.clone()))?;
        let text = kiln_core::stagekey::rpm_macros(self.plan());
        tree::Tree::open(root)
            .and_then(|tree| tree.create_file(&file.value, 0o644, &mut text.as_bytes()))
            .map_err(self.io("files", format!("cannot write {}", file.value)))?;
        self.log.note(&format!("wrote the macros to {}", file.value));
        Ok(())
    }

    /// A source image's packages: the image's package set, installed with
    /// apt inside (with the network, which the package manager needs).
    fn install_packages(&mut self) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let names: Vec<String> = plan.packages.iter().map(|p| p.name.clone()).collect();
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "set -e\napt-get update -q\napt-get install -y -q --no-install-recommends \"$@\"\n".to_string(),
            "kiln-packages".to_string(),
        ];
        argv.extend(names.iter().cloned());
        let mut req = InsideRun::image(
            &self.root,
            argv,
            script_env(&plan, self.req.source_date_epoch, &[]),
            Some(step_timeout(&plan)),
        );
        req.network = true;
        self.log.reset_tail();
        self.log.reporter().step("apt-get install");
        self.log
            .note(&format!("$ [inside] apt-get install {}", names.join(" ")));
        let ended = self
            .run_inside(&req)
            .map_err(|m| self.fail("packages", Some("apt-get install"), None, m))?;
        if ended.success() {
            Ok(())
        } else {
            Err(self.fail(
                "packages",
                Some("apt-get install"),
                Some(format!("apt-get install {} (inside the image)", names.join(" "))),
                format!("installing the image's packages {}", ended.describe()),
            ))
        }
    }

    fn script_source(&self, s: &Script, stage: &str) -> Result<PathBuf, BuildError> {
        match (&s.path, &s.git) {
            (Some(p), _) => Ok(self.req.repo.join(p)),
            (None, Some(g)) => match self.remote.get(&kiln_core::stagekey::remote_key(g)) {
                Some(f) => Ok(f.path.clone()),
                None => Err(self.fail(stage, Some(&s.name), None, "remote script was not fetched".into())),
            },
            (None, None) => Err(self.fail(stage, Some(&s.name), None, "script without a source".into())),
        }
    }

    fn record_script(&mut self, stage: &'static str, s: &Script, source: &Path, sub: Option<&str>, seconds: f64) {
        self.scripts.push(ScriptRecord {
            stage: stage.to_string(),
            name: s.name.clone(),
            path: s.path.clone(),
            feature: s.feature.clone(),
            git: s.git.clone(),
            subprofile: sub.map(str::to_string),
            commit: s
                .git
                .as_ref()
                .and_then(|g| self.remote.get(&kiln_core::stagekey::remote_key(g)))
                .map(|f| f.commit.clone()),
            sha256: fsutil::sha256_file(source).unwrap_or_default(),
            seconds,
        });
    }

    fn image_scripts(&mut self, root: &Path, scripts: &[Script], sub: Option<&str>) -> Result<(), BuildError> {
        if scripts.is_empty() {
            return Ok(());
        }
        // Package scripts must not start daemons in the image (docs/sandbox.md).
        // Written and removed inside the tree's root: a /usr/sbin that is a
        // symlink leads elsewhere in the tree, never onto the host.
        let tree = tree::Tree::open(root).map_err(self.io("image-scripts", "cannot open the tree".into()))?;
        let had_policy = tree.exists(POLICY_RC_D);
        if !had_policy {
            tree.create_file(POLICY_RC_D, 0o755, &mut &b"#!/bin/sh\nexit 101\n"[..])
                .map_err(self.io("image-scripts", "cannot write policy-rc.d".into()))?;
        }
        let result = self.run_image_scripts(root, scripts, sub);
        if !had_policy {
            let _ = tree.remove_file(POLICY_RC_D);
        }
        result
    }

    /// A kiln-owned copy of a script: read from the repository without
    /// following any symlink (or from the git mirror), so what runs is
    /// exactly what was hashed.
    fn staged_script(&self, s: &Script, stage: &str) -> Result<(PathBuf, bool), BuildError> {
        let dir = self.work.join("scripts");
        fs::create_dir_all(&dir).map_err(self.io(stage, format!("cannot create {}", dir.display())))?;
        let staged = dir.join(&s.name);
        let mut source = match (&s.path, &s.git) {
            (Some(p), _) => tree::Tree::open(&self.req.repo)
                .and_then(|repo| repo.read_regular(p))
                .map_err(|e| self.fail(stage, Some(&s.name), None, format!("cannot read script {p}: {e}")))?,
            _ => {
                let path = self.script_source(s, stage)?;
                fs::File::open(&path).map_err(self.io(stage, format!("cannot read {}", path.display())))?
            }
        };
        let executable = source.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        let _ = fs::remove_file(&staged);
        let mut out =
            fs::File::create(&staged).map_err(self.io(stage, format!("cannot write {}", staged.display())))?;
        std::io::copy(&mut source, &mut out).map_err(self.io(stage, format!("cannot copy script {}", s.name)))?;
        Ok((staged, executable))
    }

    fn run_image_scripts(&mut self, root: &Path, scripts: &[Script], sub: Option<&str>) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        for s in scripts {
            let (source, executable) = self.staged_script(s, "image-scripts")?;
            let inside_path = format!("/run/kiln/scripts/{}", s.name);
            let mut env = script_env(&plan, self.req.source_date_epoch, &[("KILN_SCRIPT", s.name.clone())]);
            if let Some(sub) = sub {
                env.push(("KILN_SUBPROFILE".into(), sub.to_string()));
            }
            let argv = if executable {
                vec![inside_path.clone()]
            } else {
                vec!["/bin/sh".to_string(), inside_path.clone()]
            };
            let mut req = InsideRun::image(root, argv, env, Some(step_timeout(&plan)));
            req.network = plan.build.network.value;
            req.copies = vec![(source.clone(), inside_path.clone(), 0o755)];
            let step = format!("{} ({})", s.name, s.feature.as_deref().unwrap_or("image"));
            self.log.reset_tail();
            self.log.reporter().step(&step);
            self.log.note(&format!("$ [inside] {}", req.argv.join(" ")));
            let start = Instant::now();
            let ended = self.run_inside(&req).map_err(|m| {
                self.fail(
                    "image-scripts",
                    Some(&step),
                    Some(format!("{} (inside the image)", req.argv.join(" "))),
                    m,
                )
            })?;
            if !ended.success() {
                let err = self.fail(
                    "image-scripts",
                    Some(&step),
                    Some(format!(
                        "{} (inside the image, from {})",
                        req.argv.join(" "),
                        s.path.as_deref().unwrap_or(&s.name)
                    )),
                    format!("script `{}` {}", s.name, ended.describe()),
                );
                if self.req.shell_on_failure && !interrupted() {
                    self.shell(root, &req);
                }
                return Err(err);
            }
            self.record_script("image-scripts", s, &source, sub, start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// `--shell-on-failure`: an interactive shell in the sandbox where the
    /// failing script ran.
    fn shell(&mut self, root: &Path, failed: &InsideRun) {
        eprintln!("kiln: opening a shell in the image at the failing point; exit it to end the build");
        let mut req = failed.clone();
        req.root = root.to_path_buf();
        req.argv = vec!["/bin/sh".to_string(), "-i".to_string()];
        req.timeout = None;
        req.interactive = true;
        req.env.push(("PS1".into(), "kiln-failed# ".into()));
        let _ = self.run_inside(&req);
    }

    /// Build-side scripts (docs/sandbox.md): the host's tools in a sandbox
    /// of their own, the tree at `$KILN_ROOT` (writable), the repository
    /// read-only as the working directory, nothing else of the host.
    fn build_scripts(&mut self, root: &Path, scripts: &[Script], sub: Option<&str>) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        for s in scripts {
            let (source, executable) = self.staged_script(s, "scripts")?;
            let inside_path = format!("/run/kiln/scripts/{}", s.name);
            let mut extra = vec![
                ("KILN_ROOT", HOST_VIEW_ROOT.to_string()),
                ("KILN_SCRIPT", s.name.clone()),
            ];
            if let Some(sub) = sub {
                extra.push(("KILN_SUBPROFILE", sub.to_string()));
            }
            let env = script_env(&plan, self.req.source_date_epoch, &extra);
            let argv = if executable {
                vec![inside_path.clone()]
            } else {
                vec!["/bin/sh".to_string(), inside_path.clone()]
            };
            let req = self.host_view(
                argv,
                env,
                vec![
                    (root.to_path_buf(), HOST_VIEW_ROOT.into(), false),
                    (self.req.repo.clone(), HOST_VIEW_REPO.into(), true),
                ],
                vec![(source.clone(), inside_path.clone(), 0o755)],
                plan.build.network.value,
            )?;
            let step = format!("{} ({})", s.name, s.feature.as_deref().unwrap_or("image"));
            self.log.reset_tail();
            self.log.reporter().step(&step);
            self.log.note(&format!("$ [build side] {}", req.argv.join(" ")));
            let start = Instant::now();
            let command = format!(
                "{} (build side, from {})",
                req.argv.join(" "),
                s.path.as_deref().unwrap_or(&s.name)
            );
            let ended = self
                .run_inside(&req)
                .map_err(|m| self.fail("scripts", Some(&step), Some(command.clone()), m))?;
            if !ended.success() {
                return Err(self.fail(
                    "scripts",
                    Some(&step),
                    Some(command),
                    format!("script `{}` {}", s.name, ended.describe()),
                ));
            }
            self.record_script("scripts", s, &source, sub, start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// A run in the host view: an empty directory of the work tree as the
    /// view's mount point, the repository's directory as cwd when bound.
    fn host_view(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        binds: Vec<(PathBuf, String, bool)>,
        copies: Vec<(PathBuf, String, u32)>,
        network: bool,
    ) -> Result<InsideRun, BuildError> {
        let view_root = self.work.join("host-view");
        fs::create_dir_all(&view_root).map_err(self.io("scripts", format!("cannot create {}", view_root.display())))?;
        let cwd = if binds.iter().any(|(_, t, _)| t == HOST_VIEW_REPO) {
            HOST_VIEW_REPO
        } else {
            "/"
        };
        Ok(InsideRun {
            root: view_root,
            view: View::Host,
            argv,
            env,
            cwd: cwd.into(),
            network,
            binds,
            copies,
            nested_mounts: false,
            timeout: Some(step_timeout(self.plan())),
            interactive: false,
        })
    }

    fn outputs(&mut self) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let epoch = self.req.source_date_epoch;
        let root = self.root.clone();
        for (i, o) in plan.outputs.iter().enumerate() {
            let dest = self.partial.join(&o.file);
            self.cached_output(StageId::Output(i), &o.file, |e| e.output(o, &root, &dest))?;
        }
        for (i, sub) in plan.subprofiles.iter().enumerate() {
            let dest = self.partial.join(&sub.file);
            let sq = plan
                .outputs
                .iter()
                .find(|o| o.format == "squashfs")
                .cloned()
                .unwrap_or(kiln_core::plan::Output {
                    format: "squashfs".into(),
                    file: sub.file.clone(),
                    options: Default::default(),
                });
            self.cached_output(StageId::Subprofile(i), &sub.file, |e| {
                let dir = e.work.join(format!("sub-{}", sub.name));
                let (upper, ovl_work, tree) = (dir.join("upper"), dir.join("work"), dir.join("tree"));
                for d in [&upper, &ovl_work, &tree] {
                    fs::create_dir_all(d).map_err(e.io("outputs", format!("cannot create {}", d.display())))?;
                }
                // The image tree plus the subprofile's additions, in an
                // overlay: nothing of the image is copied.
                let lowers = e.layers.clone();
                e.mount_overlay(lowers, upper, ovl_work, tree.clone())
                    .map_err(|m| e.fail("outputs", Some(&sub.name), None, m))?;
                let r = e.subprofile_tree(&tree, sub).and_then(|()| {
                    let cmd = args::mksquashfs(&sq, &tree, &dest, epoch, e.req.jobs);
                    e.host(
                        "outputs",
                        &format!("{} (subprofile {})", sub.file, sub.name),
                        &cmd,
                        None,
                    )
                });
                e.overlay = None;
                let _ = fs::remove_dir_all(&dir);
                r
            })?;
        }
        Ok(())
    }

    fn output(&mut self, o: &kiln_core::plan::Output, root: &Path, dest: &Path) -> Result<(), BuildError> {
        let epoch = self.req.source_date_epoch;
        let uuid = args::uuid_for(&format!("{}.{}", self.plan().nvr, self.plan().arch));
        match o.format.as_str() {
            "squashfs" => self.host(
                "outputs",
                &o.file,
                &args::mksquashfs(o, root, dest, epoch, self.req.jobs),
                None,
            ),
            "erofs" => self.host("outputs", &o.file, &args::mkfs_erofs(o, root, dest, epoch, &uuid), None),
            "ext4" | "qcow2" => {
                let used = fsutil::tree_size(root).map_err(self.io("outputs", "cannot measure the tree".into()))?;
                let size = args::ext4_size(o, used);
                let raw = if o.format == "ext4" {
                    dest.to_path_buf()
                } else {
                    self.work.join("disk.ext4")
                };
                self.host(
                    "outputs",
                    &o.file,
                    &args::mkfs_ext4(o, root, &raw, size, epoch, &uuid),
                    None,
                )?;
                if o.format == "qcow2" {
                    self.host("outputs", &o.file, &args::qemu_img_convert(o, &raw, dest), None)?;
                    let _ = fs::remove_file(&raw);
                }
                Ok(())
            }
            "dir" => {
                let mut cmd = Cmd {
                    program: "cp",
                    args: Vec::new(),
                    env: Vec::new(),
                };
                cmd.args = vec!["-a".into(), "--reflink=auto".into(), root.into(), dest.into()];
                self.host("outputs", &o.file, &cmd, None)
            }
            "tar" | "tar.zst" | "tar.xz" | "tar.gz" => self.tar(o, root, dest),
            other => Err(self.fail(
                "outputs",
                Some(&o.file),
                None,
                format!("unknown output format `{other}`"),
            )),
        }
    }

    fn tar(&mut self, o: &kiln_core::plan::Output, root: &Path, dest: &Path) -> Result<(), BuildError> {
        let level = o.options.get("level").and_then(|v| v.value.as_i64());
        let compression = args::tar_compression(&o.format, level);
        self.log.reset_tail();
        self.log.reporter().step(&o.file);
        self.log.note(&format!("writing {} (kiln's tar writer)", o.file));
        let opts = kiln_tar::Options {
            mtime_clamp: self.req.source_date_epoch,
            compression,
            xattrs: true,
            threads: self.req.jobs.max(1),
        };
        let stats = kiln_tar::write_tree_to_file(root, dest, &opts)
            .map_err(|e| self.fail("outputs", Some(&o.file), None, format!("cannot write {}: {e}", o.file)))?;
        self.log.note(&format!(
            "{} entries, {} bytes in, {} bytes out",
            stats.entries, stats.bytes_in, stats.bytes_out
        ));
        Ok(())
    }

    fn record_output(&mut self, file: &str, format: &str, sub: Option<&str>, path: &Path) -> Result<(), BuildError> {
        let meta = fs::metadata(path).map_err(self.io("outputs", format!("{file} was not written")))?;
        let sha256 = if meta.is_dir() {
            String::new()
        } else {
            fsutil::sha256_file(path).map_err(self.io("outputs", format!("cannot hash {file}")))?
        };
        if !meta.is_dir() && meta.len() == 0 {
            return Err(self.fail("outputs", Some(file), None, format!("{file} is empty")));
        }
        self.outputs.push(OutputRecord {
            file: file.to_string(),
            format: format.to_string(),
            subprofile: sub.map(str::to_string),
            size: if meta.is_dir() { 0 } else { meta.len() },
            sha256,
        });
        Ok(())
    }

    fn subprofile_tree(&mut self, tree: &Path, sub: &kiln_core::plan::Subprofile) -> Result<(), BuildError> {
        let step = format!("subprofile {}", sub.name);
        if !sub.packages.is_empty() || !sub.removed.is_empty() {
            let plan = self.plan().clone();
            let install: Vec<String> = sub.packages.iter().map(|p| p.name.clone()).collect();
            let purge: Vec<String> = sub.removed.iter().map(|r| r.name.clone()).collect();
            let mut script = String::from("set -e\napt-get update -q\n");
            if !install.is_empty() {
                script += &format!("apt-get install -y -q --no-install-recommends {}\n", install.join(" "));
            }
            if !purge.is_empty() {
                script += &format!("apt-get purge -y -q {}\n", purge.join(" "));
            }
            script += "apt-get clean\nrm -rf /var/lib/apt/lists/*\n";
            let mut req = InsideRun::image(
                tree,
                vec!["/bin/sh".into(), "-c".into(), script],
                script_env(
                    &plan,
                    self.req.source_date_epoch,
                    &[("KILN_SUBPROFILE", sub.name.clone())],
                ),
                Some(step_timeout(&plan)),
            );
            // The package manager needs the mirror; scripts do not get it.
            req.network = true;
            let ended = self
                .run_inside(&req)
                .map_err(|m| self.fail("outputs", Some(&step), None, m))?;
            if !ended.success() {
                return Err(self.fail(
                    "outputs",
                    Some(&step),
                    Some("apt-get (inside the subprofile tree)".into()),
                    format!(
                        "installing the packages of subprofile `{}` {}",
                        sub.name,
                        ended.describe()
                    ),
                ));
            }
        }
        self.install_files(tree, &sub.files)?;
        self.image_scripts(tree, &sub.image_scripts, Some(&sub.name))?;
        self.build_scripts(tree, &sub.scripts, Some(&sub.name))?;
        if self.plan().build.cleanup.value {
            cleanup(tree).map_err(self.io("outputs", "cannot clean the subprofile tree".into()))?;
        }
        if let Some(epoch) = self.req.source_date_epoch {
            fsutil::clamp_mtimes(tree, epoch).map_err(self.io("outputs", "cannot clamp mtimes".into()))?;
        }
        Ok(())
    }

    fn finish(&mut self, tools: Vec<ToolRecord>, log_path: &Path) -> Result<Built, BuildError> {
        let plan = self.plan().clone();
        let packages = match self.packages.take() {
            Some(p) => p,
            None => dpkg::parse_status(&dpkg_status(&self.root)),
        };
        let manifest = Manifest {
            schema: manifest::MANIFEST_SCHEMA,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            image: plan.image.clone(),
            nvr: plan.nvr.clone(),
            name: plan.name.value.clone(),
            version: plan.version.value.clone(),
            release: plan.release.value.clone(),
            kind: plan.kind.value.clone(),
            arch: plan.arch.clone(),
            repo: repo_info(&self.req.repo),
            source_date_epoch: self.req.source_date_epoch,
            base: self.base.clone().unwrap_or(BaseRecord::Source {
                from: String::new(),
                sha256: String::new(),
            }),
            scripts: self.scripts.clone(),
            packages,
            outputs: self.outputs.clone(),
            stages: self.stages.clone(),
            tools,
            plan,
        };
        let nvr_arch = format!("{}.{}", manifest.nvr, manifest.arch);
        let manifest_name = format!("{nvr_arch}.manifest.json");
        let json = serde_json::to_string_pretty(&manifest)
            .map_err(|e| self.fail("outputs", None, None, format!("manifest: {e}")))?;
        fs::write(self.partial.join(&manifest_name), json + "\n")
            .map_err(self.io("outputs", "cannot write the manifest".into()))?;
        let mut sums = String::new();
        for o in &self.outputs {
            if !o.sha256.is_empty() {
                sums += &format!("{}  {}\n", o.sha256, o.file);
            }
        }
        let manifest_sum = fsutil::sha256_file(&self.partial.join(&manifest_name))
            .map_err(self.io("outputs", "cannot hash the manifest".into()))?;
        sums += &format!("{manifest_sum}  {manifest_name}\n");
        let sums_name = format!("{nvr_arch}.SHA256SUMS");
        let mut f = fs::File::create(self.partial.join(&sums_name))
            .map_err(self.io("outputs", "cannot write SHA256SUMS".into()))?;
        f.write_all(sums.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(self.io("outputs", "cannot write SHA256SUMS".into()))?;
        // Everything is complete: move it into place.
        let mut moved = Vec::new();
        let names: Vec<String> = self
            .outputs
            .iter()
            .map(|o| o.file.clone())
            .chain([manifest_name.clone(), sums_name])
            .collect();
        for name in names {
            let from = self.partial.join(&name);
            let to = self.req.outdir.join(&name);
            if to.is_dir() {
                let _ = fs::remove_dir_all(&to);
            }
            fs::rename(&from, &to).map_err(self.io("outputs", format!("cannot move {name} into place")))?;
            moved.push(to);
        }
        self.log.note("build complete");
        let manifest_path = self.req.outdir.join(manifest_name);
        Ok(Built {
            manifest,
            manifest_path,
            log_path: log_path.to_path_buf(),
            outputs: moved,
            workdir: None,
        })
    }
}

/// The plan's limit for one step inside the sandbox.
fn step_timeout(plan: &Plan) -> Duration {
    Duration::from_secs(u64::try_from(plan.build.timeout.value).unwrap_or(1800))
}

fn repo_info(repo: &Path) -> RepoInfo {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(repo).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = commit
        .as_ref()
        .and_then(|_| git(&["status", "--porcelain", "--", "."]))
        .map(|s| !s.is_empty());
    RepoInfo {
        path: repo.display().to_string(),
        commit,
        dirty,
    }
}

/// The default `SOURCE_DATE_EPOCH` (docs/cache.md): the environment's, else the
/// profile repository's last commit time, else 0 when `reproducible`, else
/// none (times are not pinned).
pub fn default_source_date_epoch(repo: &Path, reproducible: bool) -> Option<u64> {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return Some(v);
    }
    let committed = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());
    committed.or(reproducible.then_some(0))
}
