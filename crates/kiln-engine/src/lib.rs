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
//! (implemented with `kiln-sandbox` by the front end), and everything it
//! does on the host (host tools, mounts of cached layers, the tar writer)
//! through the [`Host`] trait ([`RealHost`]: the machine itself).
//!
//! This file holds the public API and the order of the stages; the stage
//! cache is in `cache`, each stage's work in `stages`.

// A build fails at most once; the error carries its log tail and context by
// value, and its size does not matter on that cold path.
#![allow(clippy::result_large_err)]

pub mod args;
mod cache;
pub mod dpkg;
pub mod fsutil;
pub mod gitfetch;
pub mod host;
mod hostside;
pub mod keys;
pub mod log;
pub mod manifest;
pub mod run;
mod stages;
pub mod tree;
pub mod update;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_core::plan::Plan;
pub use kiln_core::stagekey::{RebuildFrom, Stage};
use kiln_core::stagekey::{StageId, StageKey};

use crate::args::Cmd;
pub use crate::host::{Host, RealHost};
pub use crate::hostside::cleanup;
use crate::log::{BuildLog, Reporter};
use crate::manifest::{BaseRecord, OutputRecord, ScriptRecord, StageRecord, StepRecord, ToolRecord};
use crate::run::{Ended, interrupted};

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
    pub cache: Option<kiln_store::Cache>,
    /// `--rebuild-from`: a stage or a script; that step and every later one
    /// are built even when cached.
    pub rebuild_from: Option<RebuildFrom>,
    /// The catalog of source images, for `[base] from` (docs/update.md).
    pub catalog: Option<kiln_store::catalog::Catalog>,
    /// Where mirrors of the repositories of `git+` scripts are kept.
    pub git_mirrors: PathBuf,
}

/// A finished build.
#[derive(Debug)]
pub struct Built {
    pub manifest: manifest::Manifest,
    pub manifest_path: PathBuf,
    pub log_path: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub workdir: Option<PathBuf>,
}

/// Where a build or an update failed: before its first stage, in a stage
/// of the build, or in a step of `kiln update`. Shown and serialized by
/// name (`preflight`, `base`, …, `outputs`; `prepare`, `script`, `compress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Checks and preparations before any stage (`preflight`).
    Preflight,
    Stage(Stage),
    Update(update::UpdateStage),
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Stage(s) => s.as_str(),
            Phase::Update(u) => u.as_str(),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<Stage> for Phase {
    fn from(s: Stage) -> Self {
        Phase::Stage(s)
    }
}

impl From<update::UpdateStage> for Phase {
    fn from(u: update::UpdateStage) -> Self {
        Phase::Update(u)
    }
}

/// Why a build failed: where, what ran, and what it printed last.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct BuildError {
    pub stage: Phase,
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
    pub(crate) fn new(stage: impl Into<Phase>, message: impl Into<String>) -> Self {
        BuildError {
            stage: stage.into(),
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

    fn preflight(message: impl Into<String>) -> Self {
        BuildError::new(Phase::Preflight, message)
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
            "iso" => {
                tools.extend(["xorriso", "grub-mkimage", "unsquashfs", "mksquashfs"]);
                let opts = kiln_core::iso::IsoOptions::of(o).ok();
                if opts.as_ref().is_some_and(|i| i.bios) {
                    tools.push("grub i386-pc");
                }
                if opts.as_ref().is_some_and(|i| i.uefi) {
                    tools.extend(["grub x86_64-efi", "mkfs.vfat", "mcopy"]);
                }
            }
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

/// A build under way: the request, what it runs commands with, and what it
/// has done so far.
struct Engine<'a> {
    req: &'a Request,
    inside: &'a dyn Inside,
    host: &'a dyn Host,
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
    tree_mount: Option<Box<dyn host::Mounted>>,
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
    overlay: Option<Box<dyn host::Overlay>>,
}

/// Builds the plan. On failure nothing is left in `OUTDIR` but the log.
pub fn build(req: &Request, inside: &dyn Inside) -> Result<Built, BuildError> {
    build_with(req, inside, &RealHost)
}

/// [`build`], with `host` doing what the build does on the host.
pub fn build_with(req: &Request, inside: &dyn Inside, host: &dyn Host) -> Result<Built, BuildError> {
    let plan = &req.plan;
    if !req.repo.is_absolute() {
        return Err(BuildError::preflight(format!(
            "the repository path `{}` must be absolute",
            req.repo.display()
        )));
    }
    let statuses = host.probe();
    let needed = required_tools(plan);
    check_tools(&statuses, &needed)?;
    fs::create_dir_all(&req.outdir)
        .map_err(|e| BuildError::preflight(format!("cannot create `{}`: {e}", req.outdir.display())))?;
    let log_path = req.outdir.join(format!("{}.{}.build.log", plan.nvr, plan.arch));
    let log = BuildLog::create(&log_path, Arc::clone(&req.reporter))
        .map_err(|e| BuildError::preflight(format!("cannot create the log `{}`: {e}", log_path.display())))?;
    fs::create_dir_all(&req.workdir)
        .map_err(|e| BuildError::preflight(format!("cannot create `{}`: {e}", req.workdir.display())))?;
    let mut engine = Engine::new(req, inside, host, log);
    engine.prepare(&statuses, &log_path)?;
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
    engine.conclude(result, log_path)
}

/// Fails when a tool the plan needs is missing, naming the packages to install.
fn check_tools(statuses: &[kiln_host::ToolStatus], needed: &[&str]) -> Result<(), BuildError> {
    let missing: Vec<String> = statuses
        .iter()
        .filter(|s| needed.contains(&s.tool.name) && !s.is_found())
        .map(|s| s.tool.package.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut e = BuildError::preflight(format!(
        "missing host tools; install them with `apt-get install {}` or `kiln doctor --fix`",
        missing.join(" ")
    ));
    e.missing_packages = missing;
    Err(e)
}

impl<'a> Engine<'a> {
    fn new(req: &'a Request, inside: &'a dyn Inside, host: &'a dyn Host, log: BuildLog) -> Self {
        let plan = &req.plan;
        let work = req
            .workdir
            .join(format!("{}.{}.{}", plan.nvr, plan.arch, std::process::id()));
        let partial = req.outdir.join(format!(".kiln-partial-{}", std::process::id()));
        Engine {
            req,
            inside,
            host,
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
        }
    }
}

impl Engine<'_> {
    /// What the keys need before any stage: the `git+` scripts fetched, the
    /// source image of a `[base] from` image found; then the keys.
    fn prepare(&mut self, statuses: &[kiln_host::ToolStatus], log_path: &Path) -> Result<(), BuildError> {
        let req = self.req;
        let mut extra = std::collections::BTreeMap::new();
        for g in kiln_core::stagekey::remote_scripts(&req.plan) {
            let spec = kiln_core::stagekey::remote_key(&g);
            let dest = self.work.join("remote").join(extra.len().to_string());
            let fetched = gitfetch::fetch(&g, &req.git_mirrors, &dest).map_err(|m| {
                let _ = fs::remove_dir_all(&self.work);
                let mut e = BuildError::preflight(format!("cannot get the script {spec}: {m}"));
                e.log_path = Some(log_path.to_path_buf());
                e
            })?;
            self.log.note(&format!("fetched {spec} at {}", fetched.commit));
            extra.insert(spec.clone(), keys::file_hash(&fetched.path));
            self.remote.insert(spec, fetched);
        }
        let mut source_digest = None;
        if let kiln_core::plan::Base::Source { from, .. } = &req.plan.base {
            let Some(catalog) = &req.catalog else {
                return Err(BuildError::preflight("no catalog of source images".to_string()));
            };
            let img = catalog.get(&from.value).map_err(|e| {
                BuildError::preflight(format!("[base] from = \"{}\" ({}): {e}", from.value, from.origin))
            })?;
            source_digest = Some(img.sha256.clone());
            let blob = catalog.blob(&img);
            self.source = Some((img, blob));
        }
        let versions: std::collections::BTreeMap<String, String> = statuses
            .iter()
            .filter(|s| s.is_found())
            .map(|s| (s.tool.name.to_string(), s.version.clone().unwrap_or_default()))
            .collect();
        self.keys = keys::compute(req, self.host, versions, &self.log, extra, source_digest);
        Ok(())
    }

    /// The end of a build: the partial directory removed, the work tree too
    /// unless kept, and a failure logged with where the log is.
    fn conclude(self, result: Result<Built, BuildError>, log_path: PathBuf) -> Result<Built, BuildError> {
        let keep = self.req.keep_workdir;
        match result {
            Ok(mut built) => {
                let _ = fs::remove_dir_all(&self.partial);
                if keep {
                    built.workdir = Some(self.work.clone());
                } else {
                    let _ = fs::remove_dir_all(&self.work);
                }
                Ok(built)
            }
            Err(mut e) => {
                self.log.note(&format!("FAILED in {}: {}", e.stage, e.message));
                let _ = fs::remove_dir_all(&self.partial);
                if keep {
                    e.workdir = Some(self.work.clone());
                } else {
                    let _ = fs::remove_dir_all(&self.work);
                }
                e.log_path = Some(log_path);
                e.interrupted |= interrupted();
                Err(e)
            }
        }
    }

    fn plan(&self) -> &Plan {
        &self.req.plan
    }

    fn fail(
        &self,
        stage: impl Into<Phase>,
        step: Option<&str>,
        command: Option<String>,
        message: String,
    ) -> BuildError {
        let mut e = BuildError::new(stage, message);
        e.step = step.map(str::to_string);
        e.command = command;
        e.log_tail = self.log.tail();
        e
    }

    fn io(&self, stage: impl Into<Phase>, what: String) -> impl Fn(std::io::Error) -> BuildError + '_ {
        let stage = stage.into();
        move |e| self.fail(stage, None, None, format!("{what}: {e}"))
    }

    fn stage<T>(&mut self, name: Stage, f: impl FnOnce(&mut Self) -> Result<T, BuildError>) -> Result<T, BuildError> {
        if interrupted() {
            return Err(self.fail(name, None, None, "interrupted".into()));
        }
        self.log.note(&format!("==> stage {name}"));
        self.log.reporter().stage(name.as_str());
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
        self.log.reporter().stage_done(name.as_str(), status, seconds);
        self.log.note(&format!("<== stage {name} {status} in {seconds:.1}s"));
        self.stages.push(StageRecord {
            stage: name,
            status,
            seconds,
            steps,
        });
        Ok(r)
    }

    /// Runs a host tool as a step of `stage`; it fails the stage unless it
    /// exits with 0.
    fn run_tool(&self, stage: Stage, step: &str, cmd: &Cmd, timeout: Option<Duration>) -> Result<(), BuildError> {
        self.log.reset_tail();
        self.log.reporter().step(step);
        self.log.note(&format!("$ {}", cmd.display()));
        let mut run = cmd.clone();
        if let Some(epoch) = self.req.source_date_epoch {
            run.env.insert(0, ("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
        }
        let ended = self.host.run(&run, &self.log, timeout).map_err(|e| {
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

    /// Every stage in order: the tree steps (each from the cache or run),
    /// then the outputs; or only the outputs, all from the cache.
    fn stages(&mut self) -> Result<(), BuildError> {
        fs::create_dir_all(&self.work)
            .map_err(self.io(Phase::Preflight, format!("cannot create {}", self.work.display())))?;
        fs::create_dir_all(&self.partial)
            .map_err(self.io(Phase::Preflight, format!("cannot create {}", self.partial.display())))?;
        if self.fast_outputs()? {
            return Ok(());
        }
        for (kind, group) in self.tree_groups() {
            self.stage(kind, |e| group.iter().try_for_each(|k| e.tree_step(k)))?;
        }
        self.mount_tree()?;
        self.stage(Stage::Outputs, Self::outputs)?;
        Ok(())
    }

    /// The tree steps, grouped by stage in build order.
    fn tree_groups(&self) -> Vec<(Stage, Vec<StageKey>)> {
        let mut groups: Vec<(Stage, Vec<StageKey>)> = Vec::new();
        for k in self.keys.iter().filter(|k| k.id.is_tree()) {
            match groups.last_mut() {
                Some((kind, g)) if *kind == k.id.kind() => g.push(k.clone()),
                _ => groups.push((k.id.kind(), vec![k.clone()])),
            }
        }
        groups
    }

    /// The work of one tree step, on the tree at `self.root`.
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
            StageId::Cleanup => self.clean_tree(&root),
            StageId::Output(_) | StageId::Subprofile(_) => Ok(()),
        }
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
        self.overlay = Some(
            self.host
                .mount_overlay(lowers, upper, work, &target)
                .map_err(|e| e.to_string())?,
        );
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
        fs::create_dir_all(&view_root)
            .map_err(self.io(Stage::Scripts, format!("cannot create {}", view_root.display())))?;
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
}

/// The plan's limit for one step inside the sandbox.
fn step_timeout(plan: &Plan) -> Duration {
    Duration::from_secs(u64::try_from(plan.build.timeout.value).unwrap_or(1800))
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
