//! The outputs stage: each output file written from the finished tree
//! (through the cache), recorded with its sha256; then the manifest and
//! `SHA256SUMS`, and everything moved from the partial directory into
//! `OUTDIR` only when complete.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use kiln_core::stagekey::{Stage, StageId};

use crate::args::{self, Cmd};
use crate::hostside::dpkg_status;
use crate::manifest::{self, BaseRecord, Manifest, OutputRecord, RepoInfo, ToolRecord};
use crate::{BuildError, Built, Engine, dpkg, fsutil};

impl Engine<'_> {
    /// The outputs stage: every output, then every subprofile's squashfs,
    /// then the ISOs, which pack those.
    pub(crate) fn outputs(&mut self) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let root = self.root.clone();
        for (i, o) in plan.outputs.iter().enumerate().filter(|(_, o)| o.format != "iso") {
            let dest = self.partial.join(&o.file);
            self.cached_output(StageId::Output(i), &o.file, |e| e.output(o, &root, &dest))?;
        }
        for (i, sub) in plan.subprofiles.iter().enumerate() {
            self.subprofile(i, sub)?;
        }
        for (i, o) in plan.outputs.iter().enumerate().filter(|(_, o)| o.format == "iso") {
            self.iso(i, o)?;
        }
        Ok(())
    }

    fn output(&mut self, o: &kiln_core::plan::Output, root: &Path, dest: &Path) -> Result<(), BuildError> {
        let epoch = self.req.source_date_epoch;
        let uuid = args::uuid_for(&format!("{}.{}", self.plan().nvr, self.plan().arch));
        let tool = |e: &Self, cmd: &Cmd| e.run_tool(Stage::Outputs, &o.file, cmd, None);
        match o.format.as_str() {
            "squashfs" => tool(self, &args::mksquashfs(o, root, dest, epoch, self.req.jobs)),
            "erofs" => tool(self, &args::mkfs_erofs(o, root, dest, epoch, &uuid)),
            "ext4" | "qcow2" => {
                let used =
                    fsutil::tree_size(root).map_err(self.io(Stage::Outputs, "cannot measure the tree".into()))?;
                let size = args::ext4_size(o, used);
                let raw = if o.format == "ext4" {
                    dest.to_path_buf()
                } else {
                    self.work.join("disk.ext4")
                };
                tool(self, &args::mkfs_ext4(o, root, &raw, size, epoch, &uuid))?;
                if o.format == "qcow2" {
                    tool(self, &args::qemu_img_convert(o, &raw, dest))?;
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
                tool(self, &cmd)
            }
            "tar" | "tar.zst" | "tar.xz" | "tar.gz" => self.tar(o, root, dest),
            other => Err(self.fail(
                Stage::Outputs,
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
        let stats = self.host.write_tar(root, dest, &opts).map_err(|e| {
            self.fail(
                Stage::Outputs,
                Some(&o.file),
                None,
                format!("cannot write {}: {e}", o.file),
            )
        })?;
        self.log.note(&format!(
            "{} entries, {} bytes in, {} bytes out",
            stats.entries, stats.bytes_in, stats.bytes_out
        ));
        Ok(())
    }

    pub(crate) fn record_output(
        &mut self,
        file: &str,
        format: &str,
        sub: Option<&str>,
        path: &Path,
    ) -> Result<(), BuildError> {
        let meta = fs::metadata(path).map_err(self.io(Stage::Outputs, format!("{file} was not written")))?;
        let sha256 = if meta.is_dir() {
            String::new()
        } else {
            fsutil::sha256_file(path).map_err(self.io(Stage::Outputs, format!("cannot hash {file}")))?
        };
        if !meta.is_dir() && meta.len() == 0 {
            return Err(self.fail(Stage::Outputs, Some(file), None, format!("{file} is empty")));
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

    /// The manifest and `SHA256SUMS` written, then every file moved into
    /// `OUTDIR`.
    pub(crate) fn finish(&mut self, tools: Vec<ToolRecord>, log_path: &Path) -> Result<Built, BuildError> {
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
        let (manifest_name, sums_name) = self.write_sums(&manifest)?;
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
            fs::rename(&from, &to).map_err(self.io(Stage::Outputs, format!("cannot move {name} into place")))?;
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

    /// Writes the manifest and `SHA256SUMS` into the partial directory;
    /// their names.
    fn write_sums(&self, manifest: &Manifest) -> Result<(String, String), BuildError> {
        let nvr_arch = format!("{}.{}", manifest.nvr, manifest.arch);
        let manifest_name = format!("{nvr_arch}.manifest.json");
        let json = serde_json::to_string_pretty(manifest)
            .map_err(|e| self.fail(Stage::Outputs, None, None, format!("manifest: {e}")))?;
        fs::write(self.partial.join(&manifest_name), json + "\n")
            .map_err(self.io(Stage::Outputs, "cannot write the manifest".into()))?;
        let mut sums = String::new();
        for o in &self.outputs {
            if !o.sha256.is_empty() {
                sums += &format!("{}  {}\n", o.sha256, o.file);
            }
        }
        let manifest_sum = fsutil::sha256_file(&self.partial.join(&manifest_name))
            .map_err(self.io(Stage::Outputs, "cannot hash the manifest".into()))?;
        sums += &format!("{manifest_sum}  {manifest_name}\n");
        let sums_name = format!("{nvr_arch}.SHA256SUMS");
        let mut f = fs::File::create(self.partial.join(&sums_name))
            .map_err(self.io(Stage::Outputs, "cannot write SHA256SUMS".into()))?;
        f.write_all(sums.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(self.io(Stage::Outputs, "cannot write SHA256SUMS".into()))?;
        Ok((manifest_name, sums_name))
    }
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
