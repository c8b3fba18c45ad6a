//! `kiln update` (docs/update.md): a source image from the catalog, an update script
//! run inside it in the sandbox, the result compressed into a named target.
//!
//! squashfs and erofs sources are loop-mounted read-only under an overlayfs
//! upper layer: nothing is unpacked and the source file is never written.
//! tar sources are extracted with `kiln_tar::extract` (hostile entries are
//! rejected). An ISO source (docs/iso.md) is read with xorriso, never
//! mounted: its live squashfs is copied out and treated as a squashfs
//! source; an ISO target is the source medium remastered with the new
//! squashfs (and the new kernel and initrd when the update changed them),
//! its boot records replayed. The target gets the source's format and, for
//! squashfs, its compressor and block size unless `--format` says
//! otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use kiln_core::plan::{Output, Provenance, Value};
use kiln_store::catalog::{Format, Image};

use crate::args::Cmd;
use crate::host::{Host, Mounted, Overlay, RealHost};
use crate::log::{BuildLog, Reporter};
use crate::run::interrupted;
use crate::{BuildError, Inside, InsideRun, args, fsutil};

/// The steps of an update, as progress, the manifest's timings and error
/// reports name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpdateStage {
    /// The source made the sandbox's root.
    Prepare,
    /// The update script, inside.
    Script,
    /// The target written, with its manifest and checksums.
    Compress,
}

impl UpdateStage {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStage::Prepare => "prepare",
            UpdateStage::Script => "script",
            UpdateStage::Compress => "compress",
        }
    }
}

impl std::fmt::Display for UpdateStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the update script comes from.
#[derive(Clone, Debug, Serialize)]
pub struct ScriptOrigin {
    /// As given: a local path or `git+URL@REF:PATH`.
    pub origin: String,
    /// The resolved commit, for a git script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub sha256: String,
}

pub struct UpdateRequest {
    pub source: Image,
    /// The source image file (the catalog's blob).
    pub blob: PathBuf,
    /// The script on disk (fetched already for a git script).
    pub script_path: PathBuf,
    pub script: ScriptOrigin,
    /// TARGET: the file name without extension.
    pub name: String,
    /// Output format; default the source's.
    pub format: Option<String>,
    pub macros: BTreeMap<String, String>,
    pub network: bool,
    pub outdir: PathBuf,
    pub workdir: PathBuf,
    pub source_date_epoch: Option<u64>,
    pub jobs: u32,
    pub force: bool,
    pub timeout: Duration,
    pub reporter: Arc<dyn Reporter>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UpdateManifest {
    pub schema: u32,
    pub kind: &'static str,
    pub kiln_version: String,
    pub source: Image,
    pub script: ScriptOrigin,
    pub macros: BTreeMap<String, String>,
    pub network: bool,
    pub source_date_epoch: Option<u64>,
    pub target: Target,
    /// Seconds per step: `prepare`, `script`, `compress`.
    pub timings: BTreeMap<&'static str, f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub file: String,
    pub format: String,
    pub options: BTreeMap<String, serde_json::Value>,
    pub size: u64,
    pub sha256: String,
    /// How a squashfs target was written from a squashfs source:
    /// `rewrite` (the source's compressed blocks reused) or `mksquashfs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    /// Compressed bytes taken over from the source as they were stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_bytes: Option<u64>,
    /// How an ISO target was remastered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaster: Option<Remaster>,
}

/// An ISO target's remastering: the source's layout, how its boot setup
/// was carried over and which files of the medium were replaced.
#[derive(Clone, Debug, Serialize)]
pub struct Remaster {
    pub layout: &'static str,
    /// `replayed`, or `replayed without HFS+` when the source's HFS+ tree
    /// could not be replayed beside its GPT.
    pub boot: &'static str,
    pub replaced: Vec<String>,
}

/// A finished update.
#[derive(Debug)]
pub struct Updated {
    pub manifest: UpdateManifest,
    pub target: PathBuf,
    pub manifest_path: PathBuf,
    pub log_path: PathBuf,
}

fn err(stage: impl Into<crate::Phase>, message: impl Into<String>) -> BuildError {
    BuildError::new(stage, message)
}

/// Compressor and block size of a squashfs image (`unsquashfs -s`).
pub fn squashfs_options(text: &str) -> BTreeMap<String, serde_json::Value> {
    let mut o = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("Compression ") {
            o.insert("compression".into(), serde_json::json!(c.trim()));
        } else if let Some(b) = line.strip_prefix("Block size ") {
            o.insert("block_size".into(), serde_json::json!(b.trim()));
        } else if let Some(l) = line.strip_prefix("compression-level ")
            && let Ok(l) = l.trim().parse::<i64>()
        {
            o.insert("level".into(), serde_json::json!(l));
        }
    }
    o
}

fn output(format: &str, file: &str, options: &BTreeMap<String, serde_json::Value>) -> Output {
    Output {
        format: format.to_string(),
        file: file.to_string(),
        options: options
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value {
                        value: v.clone(),
                        origin: Provenance::External {
                            external: "source image".into(),
                        },
                        overrode: Vec::new(),
                    },
                )
            })
            .collect(),
    }
}

/// Runs the update. On failure nothing is left in `OUTDIR` but the log.
pub fn update(req: &UpdateRequest, inside: &dyn Inside) -> Result<Updated, BuildError> {
    update_with(req, inside, &RealHost)
}

/// [`update`], with `host` doing what the update does on the host.
pub fn update_with(req: &UpdateRequest, inside: &dyn Inside, host: &dyn Host) -> Result<Updated, BuildError> {
    let format = req
        .format
        .clone()
        .unwrap_or_else(|| req.source.format.ext().to_string());
    if !["squashfs", "erofs", "tar", "tar.zst", "tar.xz", "tar.gz", "iso"].contains(&format.as_str()) {
        return Err(err(
            crate::Phase::Preflight,
            format!("unknown target format `{format}` (squashfs, erofs, tar, tar.zst, tar.xz, tar.gz, iso)"),
        ));
    }
    if format == "iso" && req.source.format != Format::Iso {
        return Err(err(
            crate::Phase::Preflight,
            format!(
                "an iso target is remastered from an ISO source, and {} is {}; build ISOs with the `iso` output",
                req.source.reference(),
                req.source.format.ext()
            ),
        ));
    }
    let file = format!("{}.{format}", req.name);
    let target = req.outdir.join(&file);
    if target.exists() && !req.force {
        return Err(err(
            crate::Phase::Preflight,
            format!(
                "{} already exists; choose another --name or pass --force",
                target.display()
            ),
        ));
    }
    fs::create_dir_all(&req.outdir).map_err(|e| {
        err(
            crate::Phase::Preflight,
            format!("cannot create {}: {e}", req.outdir.display()),
        )
    })?;
    let log_path = req.outdir.join(format!("{}.build.log", req.name));
    let log = BuildLog::create(&log_path, Arc::clone(&req.reporter)).map_err(|e| {
        err(
            crate::Phase::Preflight,
            format!("cannot create {}: {e}", log_path.display()),
        )
    })?;
    let work = req.workdir.join(format!("update-{}.{}", req.name, std::process::id()));
    let partial = req.outdir.join(format!(".kiln-partial-{}", std::process::id()));
    let mut run = Update {
        req,
        inside,
        host,
        log: &log,
        root: work.join("root"),
        work: &work,
        partial: &partial,
        format: &format,
        file: &file,
        timings: BTreeMap::new(),
        source_fs: req.blob.clone(),
        layout: None,
        overlay: None,
        loop_mount: None,
    };
    let result = run.run();
    // The mounts end before their directories are removed.
    drop(run);
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(&work);
    match result {
        Ok((manifest, manifest_path)) => Ok(Updated {
            manifest,
            target,
            manifest_path,
            log_path,
        }),
        Err(mut e) => {
            log.note(&format!("FAILED in {}: {}", e.stage, e.message));
            e.log_path = Some(log_path);
            e.interrupted |= interrupted();
            Err(e)
        }
    }
}

/// An update under way: its request, where it works, and the mounts of the
/// source while they are needed.
struct Update<'a> {
    req: &'a UpdateRequest,
    inside: &'a dyn Inside,
    host: &'a dyn Host,
    log: &'a BuildLog,
    /// The sandbox's root: the source, extracted or under an overlay.
    root: PathBuf,
    work: &'a Path,
    partial: &'a Path,
    /// The target's format and file name.
    format: &'a str,
    file: &'a str,
    timings: BTreeMap<&'static str, f64>,
    /// The squashfs or erofs the tree comes from: the source image, or the
    /// live squashfs copied out of an ISO.
    source_fs: PathBuf,
    /// An ISO source's layout.
    layout: Option<kiln_core::iso::Layout>,
    // Dropped in this order: the overlay, then the loop mount below it.
    overlay: Option<Box<dyn Overlay>>,
    loop_mount: Option<Box<dyn Mounted>>,
}

/// How the target was written: the compressor's options and, for a
/// squashfs from a squashfs, the method and the bytes reused.
struct Written {
    options: BTreeMap<String, serde_json::Value>,
    method: Option<&'static str>,
    reused_bytes: Option<u64>,
    remaster: Option<Remaster>,
}

impl Update<'_> {
    fn io(&self, stage: impl Into<crate::Phase>, what: String) -> impl Fn(std::io::Error) -> BuildError + '_ {
        let stage = stage.into();
        move |e: std::io::Error| {
            let mut b = err(stage, format!("{what}: {e}"));
            b.log_tail = self.log.tail();
            b
        }
    }

    fn run(&mut self) -> Result<(UpdateManifest, PathBuf), BuildError> {
        for d in [self.work, self.partial] {
            fs::create_dir_all(d)
                .map_err(self.io(crate::Phase::Preflight, format!("cannot create {}", d.display())))?;
        }
        self.timed(UpdateStage::Prepare, Self::prepare)?;
        self.timed(UpdateStage::Script, Self::run_script)?;
        let written = self.timed(UpdateStage::Compress, Self::compress)?;
        self.record(written)
    }

    /// Runs one step, reported and timed for the manifest.
    fn timed<T>(
        &mut self,
        stage: UpdateStage,
        f: impl FnOnce(&mut Self) -> Result<T, BuildError>,
    ) -> Result<T, BuildError> {
        let start = Instant::now();
        self.log.reporter().stage(stage.as_str());
        let r = f(self)?;
        let t = start.elapsed().as_secs_f64();
        self.timings.insert(stage.as_str(), t);
        self.log.reporter().stage_done(stage.as_str(), "done", t);
        Ok(r)
    }

    /// 1. The source as the sandbox's root.
    fn prepare(&mut self) -> Result<(), BuildError> {
        let req = self.req;
        fs::create_dir_all(&self.root).map_err(self.io(UpdateStage::Prepare, "cannot create the root".into()))?;
        if req.source.format == Format::Iso {
            return self.prepare_iso();
        }
        if !req.source.format.is_tar() {
            return self.mount_source(req.source.format.ext());
        }
        self.log.note(&format!(
            "extracting {} ({})",
            req.source.reference(),
            req.source.format.ext()
        ));
        let f = fs::File::open(&req.blob)
            .map_err(self.io(UpdateStage::Prepare, format!("cannot open {}", req.blob.display())))?;
        let stream = kiln_tar::extract::decompressed(f)
            .map_err(self.io(UpdateStage::Prepare, "cannot read the source".into()))?;
        kiln_tar::extract::extract(stream, &self.root).map_err(|e| {
            let mut b = err(UpdateStage::Prepare, format!("{}: {e}", req.source.reference()));
            b.log_tail = self.log.tail();
            b
        })?;
        Ok(())
    }

    /// An ISO source: its live squashfs copied out with xorriso, checked
    /// like an imported image, then mounted as a squashfs source.
    fn prepare_iso(&mut self) -> Result<(), BuildError> {
        let req = self.req;
        let prepare = |m: String| err(UpdateStage::Prepare, format!("{}: {m}", req.source.reference()));
        let files = kiln_store::iso::list(&req.blob).map_err(prepare)?;
        let layout = kiln_core::iso::layout(&files).map_err(prepare)?;
        self.log.note(&format!(
            "{} is a {} medium; its root is /{}",
            req.source.reference(),
            layout.kind.as_str(),
            layout.root.path
        ));
        let sq = self.work.join("source.squashfs");
        self.run_tool(
            UpdateStage::Prepare,
            &args::xorriso_extract(&req.blob, &layout.root.path, &sq),
        )?;
        match kiln_store::image_check::check(&sq) {
            Ok(c) if c.format == Format::Squashfs => {}
            Ok(c) => {
                return Err(prepare(format!(
                    "/{} is {}, not a squashfs",
                    layout.root.path,
                    c.format.ext()
                )));
            }
            Err(e) => return Err(prepare(format!("/{}: {e}", layout.root.path))),
        }
        self.source_fs = sq;
        self.layout = Some(layout);
        self.mount_source("squashfs")
    }

    /// A squashfs or erofs source loop-mounted read-only under a writable
    /// overlay: nothing is unpacked and the source file is never written.
    fn mount_source(&mut self, fstype: &str) -> Result<(), BuildError> {
        let req = self.req;
        let lower = self.work.join("lower");
        let (upper, ovl) = (self.work.join("upper"), self.work.join("ovl-work"));
        for d in [&lower, &upper, &ovl] {
            fs::create_dir_all(d).map_err(self.io(UpdateStage::Prepare, format!("cannot create {}", d.display())))?;
        }
        self.log
            .note(&format!("mounting {} ({fstype}) read-only", req.source.reference()));
        let mount = Cmd::new("mount")
            .arg("-t")
            .arg(fstype)
            .arg("-o")
            .arg("loop,ro")
            .arg(&self.source_fs)
            .arg(&lower);
        let out = self
            .host
            .output(&mount)
            .map_err(self.io(UpdateStage::Prepare, "cannot run mount".into()))?;
        if !out.status.success() {
            return Err(err(
                UpdateStage::Prepare,
                format!(
                    "cannot mount {} read-only: {}",
                    req.source.reference(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        self.loop_mount = Some(self.host.adopt_mount(&lower));
        // overlayfs shows the upper directory's owner and mode for the root:
        // make them the source's.
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let md =
                fs::metadata(&lower).map_err(self.io(UpdateStage::Prepare, "cannot stat the source's root".into()))?;
            std::os::unix::fs::chown(&upper, Some(md.uid()), Some(md.gid()))
                .and_then(|()| fs::set_permissions(&upper, fs::Permissions::from_mode(md.mode() & 0o7777)))
                .map_err(self.io(UpdateStage::Prepare, "cannot set the root's owner and mode".into()))?;
        }
        self.overlay = Some(
            self.host
                .mount_overlay(vec![lower], upper, ovl, &self.root)
                .map_err(|e| err(UpdateStage::Prepare, e.to_string()))?,
        );
        Ok(())
    }

    /// 2. The script, inside.
    fn run_script(&mut self) -> Result<(), BuildError> {
        let req = self.req;
        let script_name = req
            .script_path
            .file_name()
            .map_or_else(|| "update".to_string(), |n| n.to_string_lossy().into_owned());
        let inside_path = format!("/run/kiln/scripts/{script_name}");
        let mut env = crate::base_env(req.source_date_epoch);
        env.extend([
            ("KILN_SOURCE".into(), req.source.reference()),
            ("KILN_SOURCE_SHA256".into(), req.source.sha256.clone()),
            ("KILN_TARGET".into(), req.name.clone()),
            ("KILN_SCRIPT".into(), script_name.clone()),
        ]);
        env.extend(req.macros.iter().map(|(k, v)| (format!("KILN_MACRO_{k}"), v.clone())));
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(&req.script_path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        };
        let argv = if executable {
            vec![inside_path.clone()]
        } else {
            vec!["/bin/sh".into(), inside_path.clone()]
        };
        let mut run = InsideRun::image(&self.root, argv.clone(), env, Some(req.timeout));
        run.network = req.network;
        run.copies = vec![(req.script_path.clone(), inside_path, 0o755)];
        self.log.reporter().step(&req.script.origin);
        self.log
            .note(&format!("$ [inside {}] {}", req.source.reference(), argv.join(" ")));
        let ended = self
            .inside
            .run(&run, self.log)
            .map_err(|m| err(UpdateStage::Script, m))?;
        // The sandbox worked on an overlay of its own over the same layers.
        if let Some(o) = &mut self.overlay {
            o.remount().map_err(|e| {
                err(
                    UpdateStage::Script,
                    format!("cannot mount the tree again after the script: {e}"),
                )
            })?;
        }
        if !ended.success() {
            let mut e = err(
                UpdateStage::Script,
                format!("update script `{}` {}", req.script.origin, ended.describe()),
            );
            e.step = Some(script_name);
            e.command = Some(format!("{} (inside {})", argv.join(" "), req.source.reference()));
            e.log_tail = self.log.tail();
            return Err(e);
        }
        Ok(())
    }

    /// 3. The target, into the partial directory; the source's mounts end.
    fn compress(&mut self) -> Result<Written, BuildError> {
        let req = self.req;
        let (format, file) = (self.format, self.file);
        self.log.reporter().step(file);
        let dest = self.partial.join(file);
        let iso = format == "iso";
        // An ISO's squashfs is written first, then remastered into `dest`.
        let squashfs_dest = if iso {
            self.work.join("target.squashfs")
        } else {
            dest.clone()
        };
        let from_squashfs =
            matches!(format, "squashfs" | "iso") && matches!(req.source.format, Format::Squashfs | Format::Iso);
        let mut options = BTreeMap::new();
        if from_squashfs {
            let cmd = Cmd::new("unsquashfs").arg("-s").arg(&self.source_fs);
            let out = self
                .host
                .output(&cmd)
                .map_err(self.io(UpdateStage::Compress, "cannot run unsquashfs".into()))?;
            options = squashfs_options(&String::from_utf8_lossy(&out.stdout));
        }
        let o = output(if iso { "squashfs" } else { format }, file, &options);
        let uuid = args::uuid_for(&req.name);
        let mut method = None;
        let mut reused_bytes = None;
        let mut cmd = match format {
            "squashfs" | "iso" => Some(args::mksquashfs(
                &o,
                &self.root,
                &squashfs_dest,
                req.source_date_epoch,
                req.jobs,
            )),
            "erofs" => Some(args::mkfs_erofs(&o, &self.root, &dest, req.source_date_epoch, &uuid)),
            _ => None,
        };
        if from_squashfs {
            match self.rewrite(&squashfs_dest) {
                Ok(stats) => {
                    self.log.note(&format!(
                        "rewrote the source: {} compressed bytes reused, {} new",
                        stats.reused_bytes, stats.new_bytes
                    ));
                    (method, reused_bytes, cmd) = (Some("rewrite"), Some(stats.reused_bytes), None);
                }
                Err(Rewrite::Unsupported(why)) => {
                    self.log
                        .note(&format!("{why}; compressing the whole tree with mksquashfs"));
                    method = Some("mksquashfs");
                }
                Err(Rewrite::Failed(e)) => return Err(e),
            }
        }
        if let Some(cmd) = cmd {
            self.run_tool(UpdateStage::Compress, &cmd)?;
        } else if method.is_none() {
            let compression = args::tar_compression(format, None);
            let opts = kiln_tar::Options {
                mtime_clamp: req.source_date_epoch,
                compression,
                xattrs: true,
                threads: req.jobs.max(1),
            };
            self.host
                .write_tar(&self.root, &dest, &opts)
                .map_err(|e| err(UpdateStage::Compress, format!("cannot write {file}: {e}")))?;
        }
        let boot_changed = fs::symlink_metadata(self.work.join("upper/boot")).is_ok();
        self.overlay = None;
        self.loop_mount = None;
        let remaster = if iso {
            Some(self.remaster(&squashfs_dest, &dest, boot_changed)?)
        } else {
            None
        };
        Ok(Written {
            options,
            method,
            reused_bytes,
            remaster,
        })
    }

    /// The ISO target: the source medium with its root squashfs replaced,
    /// the kernel and initrd too when the update touched `/boot`, and its
    /// checksum files refreshed; its boot setup replayed by xorriso.
    fn remaster(&self, squashfs: &Path, dest: &Path, boot_changed: bool) -> Result<Remaster, BuildError> {
        let req = self.req;
        let compress = UpdateStage::Compress;
        let Some(layout) = self.layout.clone() else {
            return Err(err(compress, "the ISO source's layout was not read"));
        };
        let mut maps: Vec<(PathBuf, String)> = vec![(squashfs.to_path_buf(), layout.root.path.clone())];
        if boot_changed {
            let into = self.work.join("kernel");
            let (kernel, initrd) = crate::stages::iso::kernel_from(self.host, squashfs, &into).map_err(|m| {
                err(
                    compress,
                    format!("the update changed /boot, so the medium needs its new kernel: {m}"),
                )
            })?;
            if layout.kernels.is_empty() || layout.initrds.is_empty() {
                return Err(err(
                    compress,
                    format!(
                        "the update changed /boot, but {} keeps no kernel and initrd where a {} medium does",
                        req.source.reference(),
                        layout.kind.as_str()
                    ),
                ));
            }
            self.log.note(&format!(
                "the update changed /boot: replacing {} and {} with the tree's {kernel} and {initrd}",
                layout.kernels.join(", "),
                layout.initrds.join(", "),
            ));
            for (from, to) in [(&kernel, "vmlinuz"), (&initrd, "initrd.img")] {
                let copy = self.work.join(to);
                crate::stages::iso::copy_extracted(&into, from, &copy)
                    .map_err(self.io(compress, format!("cannot copy {from}")))?;
                let on_medium = if to == "vmlinuz" {
                    &layout.kernels
                } else {
                    &layout.initrds
                };
                maps.extend(on_medium.iter().map(|p| (copy.clone(), p.clone())));
            }
        }
        let replaced: Vec<String> = maps.iter().map(|(_, at)| at.clone()).collect();
        for (i, name) in layout.checksums.iter().enumerate() {
            let old = self.work.join(format!("sums-{i}.old"));
            self.run_tool(compress, &args::xorriso_extract(&req.blob, name, &old))?;
            let text = read_limited(&old, 16 << 20).map_err(self.io(compress, format!("cannot read {name}")))?;
            let mut changed = Vec::new();
            for (file, at) in &maps {
                let hash = fsutil::digest_file(name, file).map_err(self.io(compress, format!("cannot hash {at}")))?;
                changed.push((at.clone(), hash));
            }
            let new = self.work.join(format!("sums-{i}.new"));
            fs::write(&new, kiln_core::iso::refresh_checksums(&text, &changed))
                .map_err(self.io(compress, format!("cannot write {name}")))?;
            maps.push((new, name.clone()));
        }
        if let Some(epoch) = req.source_date_epoch {
            // xorriso records the mapped files' own times.
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
            for (file, _) in &maps {
                fs::File::options()
                    .write(true)
                    .open(file)
                    .and_then(|f| f.set_modified(at))
                    .map_err(self.io(compress, format!("cannot set the time of {}", file.display())))?;
            }
        }
        let map_refs: Vec<(&Path, &str)> = maps.iter().map(|(f, at)| (f.as_path(), at.as_str())).collect();
        let mut boot = "replayed";
        let first = args::xorriso_remaster(&req.blob, dest, &map_refs, false);
        let run = |cmd: &Cmd| {
            let mut cmd = cmd.clone();
            if let Some(epoch) = req.source_date_epoch {
                cmd.env.push(("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
            }
            self.run_tool(compress, &cmd)
        };
        if let Err(e) = run(&first) {
            self.log.note(&format!(
                "replaying the boot setup failed ({}); trying again without the HFS+ tree",
                e.message
            ));
            let _ = fs::remove_file(dest);
            run(&args::xorriso_remaster(&req.blob, dest, &map_refs, true))?;
            boot = "replayed without HFS+";
        }
        Ok(Remaster {
            layout: layout.kind.as_str(),
            boot,
            replaced,
        })
    }

    /// The manifest and `SHA256SUMS` written, then the target and both
    /// moved into `OUTDIR`.
    fn record(&self, written: Written) -> Result<(UpdateManifest, PathBuf), BuildError> {
        let req = self.req;
        let (format, file, partial) = (self.format, self.file, self.partial);
        let dest = partial.join(file);
        let compress = UpdateStage::Compress;
        let sha256 = fsutil::sha256_file(&dest).map_err(self.io(compress, format!("cannot hash {file}")))?;
        let size = fs::metadata(&dest)
            .map_err(self.io(compress, format!("{file} was not written")))?
            .len();
        let manifest = UpdateManifest {
            schema: 1,
            kind: "update",
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            source: req.source.clone(),
            script: req.script.clone(),
            macros: req.macros.clone(),
            network: req.network,
            source_date_epoch: req.source_date_epoch,
            target: Target {
                file: file.to_string(),
                format: format.to_string(),
                options: written.options,
                size,
                sha256: sha256.clone(),
                method: written.method,
                reused_bytes: written.reused_bytes,
                remaster: written.remaster,
            },
            timings: self.timings.clone(),
        };
        let manifest_name = format!("{}.manifest.json", req.name);
        let json = serde_json::to_string_pretty(&manifest).map_err(|e| err(compress, format!("manifest: {e}")))? + "\n";
        fs::write(partial.join(&manifest_name), json).map_err(self.io(compress, "cannot write the manifest".into()))?;
        let msha = fsutil::sha256_file(&partial.join(&manifest_name))
            .map_err(self.io(compress, "cannot hash the manifest".into()))?;
        let sums_name = format!("{}.SHA256SUMS", req.name);
        let mut f =
            fs::File::create(partial.join(&sums_name)).map_err(self.io(compress, "cannot write SHA256SUMS".into()))?;
        f.write_all(format!("{sha256}  {file}\n{msha}  {manifest_name}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(self.io(compress, "cannot write SHA256SUMS".into()))?;
        for name in [file, manifest_name.as_str(), sums_name.as_str()] {
            fs::rename(partial.join(name), req.outdir.join(name))
                .map_err(self.io(compress, format!("cannot move {name} into place")))?;
        }
        self.log.note("update complete");
        Ok((manifest, req.outdir.join(manifest_name)))
    }

    /// Runs one host tool, logged.
    fn run_tool(&self, stage: UpdateStage, cmd: &Cmd) -> Result<(), BuildError> {
        self.log.note(&format!("$ {}", cmd.display()));
        let ended = self.host.run(cmd, self.log, None).map_err(|e| {
            let mut b = err(stage, format!("cannot run {}: {e}", cmd.program));
            b.log_tail = self.log.tail();
            b
        })?;
        if !ended.success() {
            let mut e = err(stage, format!("`{}` {}", cmd.program, ended.describe()));
            e.command = Some(cmd.display());
            e.log_tail = self.log.tail();
            return Err(e);
        }
        Ok(())
    }

    /// Writes the target from the source image and the overlay's upper
    /// layer, reusing the source's compressed blocks (see kiln-squashfs):
    /// mksquashfs compresses only the upper layer, with the source's
    /// settings.
    fn rewrite(&self, dest: &Path) -> Result<kiln_squashfs::Stats, Rewrite> {
        let req = self.req;
        let settings = match kiln_squashfs::settings(&self.source_fs) {
            Ok(s) => s,
            Err(kiln_squashfs::Error::Unsupported(why)) => return Err(Rewrite::Unsupported(why)),
            Err(e) => {
                return Err(Rewrite::Failed(err(
                    UpdateStage::Compress,
                    format!("{}: {e}", req.source.reference()),
                )));
            }
        };
        let changes = self.work.join("upper.squashfs");
        let mut cmd = Cmd::new("mksquashfs")
            .arg(self.work.join("upper").as_os_str())
            .arg(changes.as_os_str())
            .arg("-noappend")
            .arg("-quiet")
            .arg("-xattrs");
        for a in &settings.mksquashfs_args {
            cmd = cmd.arg(a);
        }
        if req.jobs > 0 {
            cmd = cmd.arg("-processors").arg(req.jobs.to_string());
        }
        self.run_tool(UpdateStage::Compress, &cmd).map_err(Rewrite::Failed)?;
        let opts = kiln_squashfs::Options {
            source_date_epoch: req.source_date_epoch,
        };
        let result = kiln_squashfs::overlay(&self.source_fs, &changes, dest, &opts);
        let _ = fs::remove_file(&changes);
        match result {
            Ok(stats) => Ok(stats),
            Err(kiln_squashfs::Error::Unsupported(why)) => {
                let _ = fs::remove_file(dest);
                Err(Rewrite::Unsupported(why))
            }
            Err(e) => Err(Rewrite::Failed(err(
                UpdateStage::Compress,
                format!("rewriting {}: {e}", req.source.reference()),
            ))),
        }
    }
}

/// A small file's text, refusing one larger than `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut s = String::new();
    fs::File::open(path)?.take(limit + 1).read_to_string(&mut s)?;
    if s.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(s)
}

enum Rewrite {
    /// The source or the changes need a full mksquashfs (the reason).
    Unsupported(String),
    Failed(BuildError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squashfs_settings_from_unsquashfs() {
        let o = squashfs_options(
            "Found a valid SQUASHFS 4:0 superblock on x.\nCompression xz\nBlock size 262144\nXattrs are compressed\n",
        );
        assert_eq!(o["compression"], "xz");
        assert_eq!(o["block_size"], "262144");
        let o = squashfs_options("Compression zstd\n\tcompression-level 19\nBlock size 131072\n");
        assert_eq!(o["level"], 19);
    }
}
