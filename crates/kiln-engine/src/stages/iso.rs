//! The `iso` output (docs/iso.md): the squashfs images written before it
//! (the root subprofile or the image, and the extra modules), the kernel
//! and initrd read out of the root squashfs, GRUB for BIOS and UEFI, packed
//! by xorriso. The squashfs images are grafted onto the medium, not copied.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
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

        self.kernel_and_initrd(&root, dir, &live, &step)?;
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

        let tool = |e: &Self, cmd: &Cmd| e.run_tool(Stage::Outputs, &step, cmd, None);
        if opts.bios {
            tool(
                self,
                &args::grub_mkimage(Grub::Bios, &early, &grub.join(iso::BIOS_IMAGE)),
            )?;
        }
        let efi = if opts.uefi {
            let efi_app = dir.join("BOOTX64.EFI");
            tool(self, &args::grub_mkimage(Grub::Uefi, &early, &efi_app))?;
            // mcopy -m keeps this time in the FAT image.
            self.set_epoch_mtime(&efi_app)?;
            let size = fs::metadata(&efi_app)
                .map_err(self.io(Stage::Outputs, "GRUB's EFI image was not written".into()))?
                .len();
            let img = dir.join("efi.img");
            let serial = args::uuid_for(&format!("efi {}.{}", plan.nvr, plan.arch))[..8].to_string();
            tool(self, &args::mkfs_vfat(&img, args::efi_image_kib(size), &serial))?;
            tool(self, &args::mmd_efi_boot(&img))?;
            tool(self, &args::mcopy(&img, &efi_app, "/EFI/BOOT/BOOTX64.EFI"))?;
            Some(img)
        } else {
            None
        };

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
        tool(self, &args::xorriso_iso(&parts, &self.partial.join(&o.file)))
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

    /// Copies the root squashfs's one kernel and initrd to `live/vmlinuz`
    /// and `live/initrd.img`.
    fn kernel_and_initrd(&mut self, root: &Path, dir: &Path, live: &Path, step: &str) -> Result<(), BuildError> {
        let (kernel, initrd) = kernel_from(self.host, root, &dir.join("kernel"))
            .map_err(|m| self.fail(Stage::Outputs, Some(step), None, m))?;
        for (from, to) in [(&kernel, iso::KERNEL), (&initrd, iso::INITRD)] {
            copy_regular(from, &live.join(to)).map_err(self.io(
                Stage::Outputs,
                format!("cannot copy {} from the root squashfs", from.display()),
            ))?;
        }
        Ok(())
    }
}

/// The one kernel and initrd of a squashfs tree (`boot/vmlinuz-V` and
/// `boot/initrd.img-V`), extracted under `into`; their paths there.
pub(crate) fn kernel_from(host: &dyn Host, squashfs: &Path, into: &Path) -> Result<(PathBuf, PathBuf), String> {
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
    Ok((into.join(kernel), into.join(initrd)))
}

/// Copies a regular file, refusing a symlink at `from` (the tree that
/// wrote the squashfs is not trusted).
pub(crate) fn copy_regular(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(from)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
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
