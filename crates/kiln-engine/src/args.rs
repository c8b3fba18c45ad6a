//! Command lines of the host tools, built from the plan. Pure: unit-tested
//! without running anything.

use std::ffi::OsString;
use std::path::Path;

use kiln_core::plan::{Base, Output, Plan};

/// A command: program and arguments, plus extra environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub program: &'static str,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new(program: &'static str) -> Self {
        Cmd {
            program,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// The command as a shell-like line, for logs and error messages.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(self.program.to_string());
        for a in &self.args {
            let s = a.to_string_lossy();
            if s.is_empty() || s.contains([' ', '\'', '"']) {
                parts.push(format!("'{}'", s.replace('\'', "'\\''")));
            } else {
                parts.push(s.into_owned());
            }
        }
        parts.join(" ")
    }
}

/// `mmdebstrap` for a bootstrap base: the variant, suite, architecture,
/// components and the resolved package set, into `target` (a directory).
pub fn mmdebstrap(plan: &Plan, target: &Path) -> Option<Cmd> {
    let Base::Bootstrap {
        suite,
        variant,
        mirror,
        components,
        ..
    } = &plan.base
    else {
        return None;
    };
    let mut cmd = Cmd::new("mmdebstrap").arg("--mode=unshare").arg("--format=directory");
    if let Some(v) = variant {
        cmd = cmd.arg(format!("--variant={}", v.value));
    }
    cmd = cmd.arg(format!("--architectures={}", plan.arch));
    cmd = cmd.arg(format!("--components={}", components.value.join(",")));
    let names: Vec<&str> = plan.packages.iter().map(|p| p.name.as_str()).collect();
    if !names.is_empty() {
        cmd = cmd.arg(format!("--include={}", names.join(",")));
    }
    cmd = cmd.arg(&suite.value).arg(target.as_os_str());
    if let Some(m) = mirror {
        cmd = cmd.arg(&m.value);
    }
    Some(cmd)
}

fn opt_str<'a>(o: &'a Output, key: &str) -> Option<&'a str> {
    o.options.get(key).and_then(|v| v.value.as_str())
}

fn opt_int(o: &Output, key: &str) -> Option<i64> {
    o.options.get(key).and_then(|v| v.value.as_i64())
}

/// A filesystem UUID derived from the build (reproducible, distinct per NVR).
pub fn uuid_for(seed: &str) -> String {
    // FNV-1a over the seed, spread into 128 bits; a UUID only has to be
    // stable and distinct, not secret.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in seed.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let x = format!("{h:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &x[0..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}

/// The compression of a `tar*` output format at `level` (zstd 3, xz and
/// gzip 6 when unset or out of range).
pub fn tar_compression(format: &str, level: Option<i64>) -> kiln_tar::Compression {
    match format {
        "tar.zst" => kiln_tar::Compression::Zstd {
            level: level.and_then(|l| i32::try_from(l).ok()).unwrap_or(3),
        },
        "tar.xz" => kiln_tar::Compression::Xz {
            level: level.and_then(|l| u32::try_from(l).ok()).unwrap_or(6),
        },
        "tar.gz" => kiln_tar::Compression::Gzip {
            level: level.and_then(|l| u32::try_from(l).ok()).unwrap_or(6),
        },
        _ => kiln_tar::Compression::None,
    }
}

/// `mksquashfs` for a tree (docs/profiles.md): compression, level and block size
/// from the options, xattrs kept, the filesystem time fixed to `epoch`,
/// `jobs` compressor threads (mksquashfs's output does not depend on them).
pub fn mksquashfs(o: &Output, root: &Path, dest: &Path, epoch: Option<u64>, jobs: u32) -> Cmd {
    let mut cmd = Cmd::new("mksquashfs")
        .arg(root.as_os_str())
        .arg(dest.as_os_str())
        .arg("-noappend")
        .arg("-quiet");
    if let Some(c) = opt_str(o, "compression") {
        cmd = cmd.arg("-comp").arg(c);
        if let Some(l) = opt_int(o, "level") {
            // squashfs-tools' xz and lz4 compressors take no numeric level.
            if matches!(c, "zstd" | "gzip" | "lzo") {
                cmd = cmd.arg("-Xcompression-level").arg(l.to_string());
            }
        }
    }
    if let Some(b) = opt_str(o, "block_size") {
        cmd = cmd.arg("-b").arg(b);
    }
    // squashfs-tools take the filesystem time from SOURCE_DATE_EPOCH (and
    // refuse -mkfs-time alongside it).
    cmd = cmd.arg("-xattrs");
    if jobs > 0 {
        cmd = cmd.arg("-processors").arg(jobs.to_string());
    }
    if let Some(epoch) = epoch {
        cmd.env.push(("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
    }
    cmd
}

/// GRUB's platforms for an ISO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grub {
    /// BIOS: an El Torito image (`cdboot.img` and the core image).
    Bios,
    /// UEFI on x86-64: `BOOTX64.EFI`.
    Uefi,
}

impl Grub {
    /// GRUB's module directory for the platform (from grub-pc-bin or
    /// grub-efi-amd64-bin).
    pub fn dir(self) -> &'static str {
        match self {
            Grub::Bios => "/usr/lib/grub/i386-pc",
            Grub::Uefi => "/usr/lib/grub/x86_64-efi",
        }
    }
}

/// `grub-mkimage` for `platform` with `early` (a file) as its built-in
/// configuration and every module the menu uses built in.
pub fn grub_mkimage(platform: Grub, early: &Path, dest: &Path) -> Cmd {
    use kiln_core::iso::{GRUB_BIOS_MODULES, GRUB_DIR, GRUB_MODULES};
    let format = match platform {
        Grub::Bios => "i386-pc-eltorito",
        Grub::Uefi => "x86_64-efi",
    };
    let mut cmd = Cmd::new("grub-mkimage")
        .arg("-O")
        .arg(format)
        .arg("-d")
        .arg(platform.dir())
        .arg("-p")
        .arg(format!("/{GRUB_DIR}"))
        .arg("-c")
        .arg(early.as_os_str())
        .arg("-o")
        .arg(dest.as_os_str());
    for m in GRUB_MODULES {
        cmd = cmd.arg(*m);
    }
    if platform == Grub::Bios {
        for m in GRUB_BIOS_MODULES {
            cmd = cmd.arg(*m);
        }
    }
    cmd
}

/// The size in KiB of a FAT image that holds `payload` bytes: the payload
/// plus room for the file system's own structures, at least 1,440 KiB.
pub fn efi_image_kib(payload: u64) -> u64 {
    (payload.div_ceil(1024) + 512).max(1440).div_ceil(32) * 32
}

/// `mkfs.vfat` for the EFI partition image: a fixed volume serial and no
/// time-dependent fields (`--invariant`), so it is reproducible.
pub fn mkfs_vfat(dest: &Path, kib: u64, serial: &str) -> Cmd {
    Cmd::new("mkfs.vfat")
        .arg("-C")
        .arg("--invariant")
        .arg("-i")
        .arg(serial)
        .arg("-n")
        .arg("EFIBOOT")
        .arg(dest.as_os_str())
        .arg(kib.to_string())
}

/// `mmd` making `EFI/BOOT` in a FAT image (mtools take their timestamps
/// from `SOURCE_DATE_EPOCH`).
pub fn mmd_efi_boot(image: &Path) -> Cmd {
    Cmd::new("mmd")
        .arg("-i")
        .arg(image.as_os_str())
        .arg("::/EFI")
        .arg("::/EFI/BOOT")
}

/// `mcopy` of `file` into a FAT image as `to`, keeping its mtime.
pub fn mcopy(image: &Path, file: &Path, to: &str) -> Cmd {
    Cmd::new("mcopy")
        .arg("-i")
        .arg(image.as_os_str())
        .arg("-m")
        .arg(file.as_os_str())
        .arg(format!("::{to}"))
}

/// A path as the right side of an xorriso graft point: `\` and `=` escaped.
fn graft_escape(p: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if b == b'\\' || b == b'=' {
            out.push(b'\\');
        }
        out.push(b);
    }
    OsString::from_vec(out)
}

/// What an ISO is made of.
pub struct IsoParts<'a> {
    /// The staged small files (menu, kernel, initrd, `.module` files, GRUB's
    /// El Torito image when BIOS boots).
    pub tree: &'a Path,
    /// Files placed on the medium from elsewhere: (path on the medium,
    /// file), the squashfs images, which are not copied.
    pub grafts: Vec<(String, &'a Path)>,
    pub volume_id: &'a str,
    pub bios: bool,
    /// The EFI partition image when UEFI boots.
    pub efi: Option<&'a Path>,
}

/// `xorriso` writing the hybrid ISO: El Torito boot entries for BIOS (GRUB
/// with its hybrid MBR, so the image also boots from a USB stick) and UEFI
/// (the EFI partition, appended and listed in a GPT). Dates and the GPT
/// GUIDs follow `SOURCE_DATE_EPOCH` when the build sets it.
pub fn xorriso_iso(p: &IsoParts<'_>, dest: &Path) -> Cmd {
    let mut cmd = Cmd::new("xorriso")
        .arg("-as")
        .arg("mkisofs")
        .arg("-o")
        .arg(dest.as_os_str())
        .arg("-V")
        .arg(p.volume_id)
        .arg("-iso-level")
        .arg("3")
        .arg("-r")
        .arg("-J")
        .arg("-joliet-long")
        .arg("-graft-points");
    if p.bios {
        cmd = cmd
            .arg("-b")
            .arg(format!("{}/{}", kiln_core::iso::GRUB_DIR, kiln_core::iso::BIOS_IMAGE))
            .arg("-no-emul-boot")
            .arg("-boot-load-size")
            .arg("4")
            .arg("-boot-info-table")
            .arg("--grub2-boot-info")
            .arg("--grub2-mbr")
            .arg(format!("{}/boot_hybrid.img", Grub::Bios.dir()));
    }
    if let Some(efi) = p.efi {
        cmd = cmd
            .arg("-append_partition")
            .arg("2")
            .arg("0xef")
            .arg(efi.as_os_str())
            .arg("-appended_part_as_gpt");
        if p.bios {
            cmd = cmd.arg("-eltorito-alt-boot");
        }
        cmd = cmd
            .arg("-e")
            .arg("--interval:appended_partition_2:all::")
            .arg("-no-emul-boot");
    }
    let mut root = OsString::from("/=");
    root.push(graft_escape(p.tree));
    cmd = cmd.arg(root);
    for (at, file) in &p.grafts {
        let mut g = OsString::from(format!("/{at}="));
        g.push(graft_escape(file));
        cmd = cmd.arg(g);
    }
    cmd
}

/// `xorriso` (as osirrox) copying the file `at` of an ISO to `dest`.
pub fn xorriso_extract(iso: &Path, at: &str, dest: &Path) -> Cmd {
    Cmd::new("xorriso")
        .arg("-abort_on")
        .arg("FAILURE")
        .arg("-osirrox")
        .arg("on")
        .arg("-indev")
        .arg(iso.as_os_str())
        .arg("-extract")
        .arg(format!("/{at}"))
        .arg(dest.as_os_str())
}

/// `xorriso` writing a new ISO at `dest` from `src` with files replaced
/// (`maps`: file, path on the medium), its boot setup replayed: El Torito
/// entries, MBR, GPT and appended partitions as the source has them.
/// `hfsplus_off` drops an HFS+ tree and Apple partition map, which
/// grub-mkrescue's media carry and xorriso cannot replay beside a GPT.
pub fn xorriso_remaster(src: &Path, dest: &Path, maps: &[(&Path, &str)], hfsplus_off: bool) -> Cmd {
    let mut cmd = Cmd::new("xorriso")
        .arg("-abort_on")
        .arg("FAILURE")
        .arg("-indev")
        .arg(src.as_os_str())
        .arg("-outdev")
        .arg(dest.as_os_str())
        .arg("-boot_image")
        .arg("any")
        .arg("replay");
    if hfsplus_off {
        cmd = cmd.arg("-hfsplus").arg("off");
    }
    for (file, at) in maps {
        cmd = cmd.arg("-map").arg(file.as_os_str()).arg(format!("/{at}"));
    }
    cmd.arg("-commit")
}

/// `unsquashfs` listing the entries of `image` under `/boot` (where a
/// kernel and its initrd are) with their types and sizes.
pub fn unsquashfs_list(image: &Path) -> Cmd {
    Cmd::new("unsquashfs")
        .arg("-lls")
        .arg("-d")
        .arg("")
        .arg(image.as_os_str())
        .arg("boot")
}

/// `unsquashfs` extracting `files` (paths relative to the image's root)
/// from `image` into `dest`, without extended attributes.
pub fn unsquashfs_files(image: &Path, dest: &Path, files: &[&str]) -> Cmd {
    let mut cmd = Cmd::new("unsquashfs")
        .arg("-n")
        .arg("-no-xattrs")
        .arg("-d")
        .arg(dest.as_os_str())
        .arg(image.as_os_str());
    for f in files {
        cmd = cmd.arg(*f);
    }
    cmd
}

/// `mkfs.erofs` (lz4hc by default), timestamps fixed to `epoch`.
pub fn mkfs_erofs(o: &Output, root: &Path, dest: &Path, epoch: Option<u64>, uuid: &str) -> Cmd {
    let comp = opt_str(o, "compression").unwrap_or("lz4hc");
    let z = match opt_int(o, "level") {
        Some(l) => format!("-z{comp},{l}"),
        None => format!("-z{comp}"),
    };
    let mut cmd = Cmd::new("mkfs.erofs").arg("--quiet").arg(z);
    if let Some(epoch) = epoch {
        cmd = cmd.arg(format!("-T{epoch}"));
    }
    cmd.arg(format!("-U{uuid}")).arg(dest.as_os_str()).arg(root.as_os_str())
}

/// `mkfs.ext4 -d` of `size` bytes, reproducible for a given epoch and UUID.
pub fn mkfs_ext4(o: &Output, root: &Path, dest: &Path, size: u64, epoch: Option<u64>, uuid: &str) -> Cmd {
    let mut cmd = Cmd::new("mkfs.ext4").arg("-q").arg("-F").arg("-t").arg("ext4");
    cmd = cmd.arg("-d").arg(root.as_os_str());
    if let Some(l) = opt_str(o, "label") {
        cmd = cmd.arg("-L").arg(l);
    }
    cmd = cmd
        .arg("-U")
        .arg(uuid)
        .arg("-E")
        .arg(format!("root_owner=0:0,hash_seed={uuid}"));
    cmd = cmd.arg(dest.as_os_str()).arg(format!("{}k", size.div_ceil(1024)));
    if let Some(epoch) = epoch {
        cmd.env.push(("E2FSPROGS_FAKE_TIME".into(), epoch.to_string()));
    }
    cmd
}

/// The ext4 image size: as set, else used × 1.2 + 64 MiB, rounded up to 1 MiB.
pub fn ext4_size(o: &Output, used: u64) -> u64 {
    if let Some(s) = opt_str(o, "size").and_then(kiln_core::model::parse_size) {
        return s;
    }
    let raw = used + used / 5 + (64 << 20);
    raw.div_ceil(1 << 20) << 20
}

/// `qemu-img convert` of a raw ext4 image.
pub fn qemu_img_convert(o: &Output, raw: &Path, dest: &Path) -> Cmd {
    let mut cmd = Cmd::new("qemu-img")
        .arg("convert")
        .arg("-f")
        .arg("raw")
        .arg("-O")
        .arg("qcow2");
    if o.options.get("compress").and_then(|v| v.value.as_bool()) == Some(true) {
        cmd = cmd.arg("-c");
    }
    cmd.arg(raw.as_os_str()).arg(dest.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let a = uuid_for("ve-minimal-1.0-1");
        assert_eq!(a, uuid_for("ve-minimal-1.0-1"));
        assert_ne!(a, uuid_for("ve-minimal-1.0-2"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    fn plan(image: &str, extra: &str) -> Plan {
        let mut s = kiln_core::Snapshot::new();
        s.add_file(
            "kiln.toml",
            "[defaults.base]\nsuite = \"bookworm\"\nvariant = \"minbase\"\ncomponents = [\"main\", \"contrib\"]\n",
        )
        .add_file(
            &format!("images/{image}.toml"),
            &format!("packages = [\"less\", \"curl@arm64\"]\n{extra}"),
        );
        let repo = kiln_core::Repo::load(s);
        let opts = kiln_core::ResolveOptions {
            arch: "amd64".into(),
            external_macros: vec![],
        };
        kiln_core::resolve(&repo, image, &opts).plan.expect("resolves")
    }

    #[test]
    fn mmdebstrap_from_the_plan() {
        let p = plan("ve/x", "[base]\nmirror = \"http://mirror.invalid/debian\"\n");
        let cmd = mmdebstrap(&p, Path::new("/w/root")).expect("bootstrap");
        assert_eq!(
            cmd.display(),
            "mmdebstrap --mode=unshare --format=directory --variant=minbase --architectures=amd64 \
             --components=main,contrib --include=less bookworm /w/root http://mirror.invalid/debian"
        );
        let src = plan("ve/y", "[base]\nfrom = \"edge@1\"\n");
        assert!(mmdebstrap(&src, Path::new("/w/root")).is_none());
    }

    #[test]
    fn output_tools_from_options() {
        let p = plan(
            "ve/x",
            "outputs = [\"squashfs\", \"ext4\"]\n[output.squashfs]\ncompression = \"zstd\"\nlevel = 15\nblock_size = \"1M\"\n[output.ext4]\nlabel = \"root\"\n",
        );
        let sq = mksquashfs(&p.outputs[0], Path::new("/r"), Path::new("/o.sqfs"), Some(7), 2);
        assert_eq!(
            sq.display(),
            "SOURCE_DATE_EPOCH=7 mksquashfs /r /o.sqfs -noappend -quiet -comp zstd -Xcompression-level 15 -b 1M -xattrs -processors 2"
        );
        let unpinned = mksquashfs(&p.outputs[0], Path::new("/r"), Path::new("/o.sqfs"), None, 0);
        assert!(unpinned.env.is_empty() && !unpinned.display().contains("-processors"));
        assert_eq!(ext4_size(&p.outputs[1], 100 << 20), 184 << 20);
        let e = mkfs_ext4(
            &p.outputs[1],
            Path::new("/r"),
            Path::new("/o.img"),
            184 << 20,
            Some(7),
            "u",
        );
        assert_eq!(
            e.display(),
            "E2FSPROGS_FAKE_TIME=7 mkfs.ext4 -q -F -t ext4 -d /r -L root -U u -E root_owner=0:0,hash_seed=u /o.img 188416k"
        );
    }

    #[test]
    fn display_quotes() {
        let c = Cmd::new("x").arg("a b").arg("c");
        assert_eq!(c.display(), "x 'a b' c");
    }
}
