//! The `iso` output (docs/iso.md): the squashfs images written before it
//! (the root subprofile or the image, and the extra modules), the kernel
//! and initrd read out of the root squashfs, GRUB for BIOS and UEFI, packed
//! by xorriso. The squashfs images are grafted onto the medium, not copied.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_core::iso::{self, IsoOptions};
use kiln_core::plan::Output;
use kiln_core::stagekey::{Stage, StageId};

use crate::args::{self, Cmd, Grub};
use crate::host::Host;
use crate::{BuildError, Engine, fsutil};

impl Engine<'_> {
    /// The ISO of output `i`, from the cache or written.
    pub(crate) fn iso(&mut self, i: usize, o: &Output) -> Result<(), BuildError> {
        self.cached_output(StageId::Output(i), &o.file, |e| {
            let dir = e.work.join("iso");
            let _ = fs::remove_dir_all(&dir);
            let r = e.write_iso(o, &dir);
            let _ = fs::remove_dir_all(&dir);
            r
        })
    }

    fn write_iso(&mut self, o: &Output, dir: &Path) -> Result<(), BuildError> {
        let step = o.file.clone();
        self.log.note(&format!("assembling {}", o.file));
        let opts = IsoOptions::of(o).map_err(|m| self.fail(Stage::Outputs, Some(&step), None, m))?;
        let plan = self.plan().clone();
        let tree = dir.join("tree");
        let live = tree.join(iso::LIVE_DIR);
        let grub = tree.join(iso::GRUB_DIR);
        let marker = iso::marker_file(&plan.nvr, &plan.arch);
        for d in [&live, &grub, &dir.join("kernel")] {
            fs::create_dir_all(d).map_err(self.io(Stage::Outputs, format!("cannot create {}", d.display())))?;
        }

        // The squashfs images, each with its sha256 (known when the build
        // recorded it).
        let root = self.packed(&opts.root, dir, &step)?;
        let mut grafts = vec![(format!("{}/{}", iso::LIVE_DIR, iso::ROOT_SQUASHFS), root.clone())];
        for e in &opts.extra {
            let p = self.packed(e, dir, &step)?;
            grafts.push((format!("{}/{e}.squashfs", iso::LIVE_DIR), p));
        }

        let write = |e: &Self, path: &Path, text: &str| {
            fs::write(path, text).map_err(e.io(Stage::Outputs, format!("cannot write {}", path.display())))
        };
        for (name, text) in iso::module_files(&opts) {
            write(self, &live.join(name), &text)?;
        }
        write(
            self,
            &grub.join("grub.cfg"),
            &iso::grub_cfg(&opts, &plan.nvr, &plan.arch),
        )?;
        let marker_path = tree.join(&marker);
        if let Some(parent) = marker_path.parent() {
            fs::create_dir_all(parent)
                .map_err(self.io(Stage::Outputs, "cannot create the marker's directory".into()))?;
        }
        write(self, &marker_path, &format!("{}.{}\n", plan.nvr, plan.arch))?;
        let early = dir.join("early.cfg");
        write(self, &early, &iso::early_cfg(&marker))?;
        let efi = self.boot_files(&opts, &root, dir, &early, &step)?;

        // The checksum file covers every file on the medium but itself and
        // GRUB's El Torito image, which xorriso patches as it writes it.
        let mut sums: Vec<(String, String)> = Vec::new();
        for (at, file) in &grafts {
            sums.push((at.clone(), self.sha256_of(file)?));
        }
        for f in walk_files(&tree).map_err(self.io(Stage::Outputs, "cannot list the ISO tree".into()))? {
            if f == format!("{}/{}", iso::GRUB_DIR, iso::BIOS_IMAGE) {
                continue;
            }
            let hash =
                fsutil::sha256_file(&tree.join(&f)).map_err(self.io(Stage::Outputs, format!("cannot hash {f}")))?;
            sums.push((f, hash));
        }
        let text = iso::checksums(sums.iter().map(|(p, h)| (p.as_str(), h.as_str())));
        write(self, &tree.join(iso::CHECKSUMS), &text)?;
        if let Some(epoch) = self.req.source_date_epoch {
            fsutil::clamp_mtimes(&tree, epoch).map_err(self.io(Stage::Outputs, "cannot clamp mtimes".into()))?;
        }
        // xorriso records the grafted files' own times.
        for (_, file) in &grafts {
            self.set_epoch_mtime(file)?;
        }

        let parts = args::IsoParts {
            tree: &tree,
            grafts: grafts.iter().map(|(at, p)| (at.clone(), p.as_path())).collect(),
            volume_id: &opts.volume_id,
            bios: opts.bios,
            efi: efi.as_deref(),
        };
        self.run_tool(
            Stage::Outputs,
            &step,
            &args::xorriso_iso(&parts, &self.partial.join(&o.file)),
            None,
        )?;
        self.log.note(&format!("{} assembled", o.file));
        Ok(())
    }

    /// What boots the medium, made at once (they do not depend on each
    /// other): the kernel and initrd read out of the root squashfs, GRUB's
    /// BIOS image, and GRUB's EFI image in the FAT image of the EFI
    /// partition (returned).
    fn boot_files(
        &self,
        opts: &IsoOptions,
        root: &Path,
        dir: &Path,
        early: &Path,
        step: &str,
    ) -> Result<Option<PathBuf>, BuildError> {
        let plan = self.plan();
        let (host, log, epoch) = (self.host, &self.log, self.req.source_date_epoch);
        let (live, grub) = (
            dir.join("tree").join(iso::LIVE_DIR),
            dir.join("tree").join(iso::GRUB_DIR),
        );
        // A failure: the command (when one failed) and the message.
        type Failed = (Option<String>, String);
        let run = |cmd: &Cmd| -> Result<(), Failed> {
            log.note(&format!("$ {}", cmd.display()));
            let mut with_epoch = cmd.clone();
            if let Some(epoch) = epoch {
                with_epoch
                    .env
                    .insert(0, ("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
            }
            match host.run(&with_epoch, log, None) {
                Ok(ended) if ended.success() => Ok(()),
                Ok(ended) => Err((Some(cmd.display()), format!("`{}` {}", cmd.program, ended.describe()))),
                Err(e) => Err((Some(cmd.display()), format!("cannot run `{}`: {e}", cmd.program))),
            }
        };
        let kernel = || -> Result<(), Failed> {
            let into = dir.join("kernel");
            let (kernel, initrd) = kernel_from(host, root, &into).map_err(|m| (None, m))?;
            for (from, to) in [(&kernel, iso::KERNEL), (&initrd, iso::INITRD)] {
                copy_extracted(&into, from, &live.join(to))
                    .map_err(|e| (None, format!("cannot copy {from} from the root squashfs: {e}")))?;
            }
            Ok(())
        };
        let bios = || -> Result<(), Failed> {
            match opts.bios {
                true => run(&args::grub_mkimage(Grub::Bios, early, &grub.join(iso::BIOS_IMAGE))),
                false => Ok(()),
            }
        };
        let uefi = || -> Result<Option<PathBuf>, Failed> {
            if !opts.uefi {
                return Ok(None);
            }
            let efi_app = dir.join("BOOTX64.EFI");
            run(&args::grub_mkimage(Grub::Uefi, early, &efi_app))?;
            // mcopy -m keeps this time in the FAT image.
            if let Some(epoch) = epoch {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
                fs::File::options()
                    .write(true)
                    .open(&efi_app)
                    .and_then(|f| f.set_modified(at))
                    .map_err(|e| (None, format!("cannot set the time of GRUB's EFI image: {e}")))?;
            }
            let size = fs::metadata(&efi_app)
                .map_err(|e| (None, format!("GRUB's EFI image was not written: {e}")))?
                .len();
            let img = dir.join("efi.img");
            let serial = args::uuid_for(&format!("efi {}.{}", plan.nvr, plan.arch))[..8].to_string();
            run(&args::mkfs_vfat(&img, args::efi_image_kib(size), &serial))?;
            run(&args::mmd_efi_boot(&img))?;
            run(&args::mcopy(&img, &efi_app, "/EFI/BOOT/BOOTX64.EFI"))?;
            Ok(Some(img))
        };
        let (k, b, u) = std::thread::scope(|s| {
            let k = s.spawn(kernel);
            let b = s.spawn(bios);
            let u = uefi();
            let lost = || (None, "a thread making the boot files panicked".to_string());
            (
                k.join().unwrap_or_else(|_| Err(lost())),
                b.join().unwrap_or_else(|_| Err(lost())),
                u,
            )
        });
        let fail = |(command, message): Failed| self.fail(Stage::Outputs, Some(step), command, message);
        k.map_err(fail)?;
        b.map_err(fail)?;
        u.map_err(fail)
    }

    /// The squashfs of `name` (`image` or a subprofile), as written by this
    /// build: the subprofile's file, the image's squashfs output, or for an
    /// image without one a squashfs written here with the defaults.
    fn packed(&mut self, name: &str, dir: &Path, step: &str) -> Result<PathBuf, BuildError> {
        let plan = self.plan().clone();
        let file = if name == "image" {
            plan.outputs
                .iter()
                .find(|o| o.format == "squashfs")
                .map(|o| o.file.clone())
        } else {
            match plan.subprofiles.iter().find(|s| s.name == name) {
                Some(s) => Some(s.file.clone()),
                None => {
                    return Err(self.fail(
                        Stage::Outputs,
                        Some(step),
                        None,
                        format!("the ISO names subprofile `{name}`, which the image does not build"),
                    ));
                }
            }
        };
        if let Some(file) = file {
            let p = self.partial.join(&file);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(self.fail(
                    Stage::Outputs,
                    Some(step),
                    None,
                    format!("{file} was not written before the ISO"),
                ))
            };
        }
        let dest = dir.join("image.squashfs");
        let defaults = Output {
            format: "squashfs".into(),
            file: String::new(),
            options: Default::default(),
        };
        let cmd = args::mksquashfs(
            &defaults,
            &self.root.clone(),
            &dest,
            self.req.source_date_epoch,
            self.req.jobs,
        );
        self.run_tool(Stage::Outputs, step, &cmd, None)?;
        Ok(dest)
    }

    /// Sets the mtime of a file this build wrote to `SOURCE_DATE_EPOCH`,
    /// when the build has one.
    fn set_epoch_mtime(&self, file: &Path) -> Result<(), BuildError> {
        let Some(epoch) = self.req.source_date_epoch else {
            return Ok(());
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
        fs::File::options()
            .write(true)
            .open(file)
            .and_then(|f| f.set_modified(at))
            .map_err(self.io(Stage::Outputs, format!("cannot set the time of {}", file.display())))
    }

    /// A squashfs image's sha256: from the build's record of it, or hashed.
    fn sha256_of(&self, file: &Path) -> Result<String, BuildError> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file.starts_with(&self.partial)
            && let Some(rec) = self.outputs.iter().find(|r| r.file == name && !r.sha256.is_empty())
        {
            return Ok(rec.sha256.clone());
        }
        fsutil::sha256_file(file).map_err(self.io(Stage::Outputs, format!("cannot hash {}", file.display())))
    }
}

/// The one kernel and initrd of a squashfs tree (`boot/vmlinuz-V` and
/// `boot/initrd.img-V`), extracted under `into`; their paths there,
/// relative to it.
pub(crate) fn kernel_from(host: &dyn Host, squashfs: &Path, into: &Path) -> Result<(String, String), String> {
    let list = args::unsquashfs_list(squashfs);
    let out = host.output(&list).map_err(|e| format!("cannot run unsquashfs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            list.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let files = iso::regular_files(&String::from_utf8_lossy(&out.stdout));
    let (kernel, initrd) = iso::pick_kernel(files.iter().map(String::as_str))?;
    let extract = args::unsquashfs_files(squashfs, into, &[&kernel, &initrd]);
    let out = host
        .output(&extract)
        .map_err(|e| format!("cannot run unsquashfs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            extract.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((kernel, initrd))
}

/// Copies the regular file `rel` of a directory extracted from a squashfs
/// to `to`, reached through no symlink (the tree that wrote the squashfs is
/// not trusted).
pub(crate) fn copy_extracted(dir: &Path, rel: &str, to: &Path) -> std::io::Result<()> {
    let mut f = crate::tree::Tree::open(dir)?.read_regular(rel)?;
    let mut out = fs::File::create(to)?;
    std::io::copy(&mut f, &mut out)?;
    Ok(())
}

/// The regular files under `root`, as sorted relative paths.
fn walk_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let t = entry.file_type()?;
            if t.is_dir() {
                stack.push(path);
            } else if t.is_file() {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}
