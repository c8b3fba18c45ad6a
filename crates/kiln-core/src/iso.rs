//! Bootable ISOs (docs/iso.md): what an `iso` output holds and how it
//! boots, as pure functions over the plan. The engine stages the tree these
//! name and runs GRUB's and xorriso's tools on it.
//!
//! The medium follows Debian's live layout, which live-boot's initramfs
//! understands:
//!
//! ```text
//! live/filesystem.squashfs   the root subprofile (or the image)
//! live/filesystem.module     "filesystem.squashfs": the default entry's stack
//! live/NAME.squashfs         each extra subprofile
//! live/NAME.module           "NAME.squashfs": selected by `module=NAME`
//! live/vmlinuz, live/initrd.img   from the root tree
//! boot/grub/grub.cfg         the menu (console and serial)
//! boot/grub/bios.img         GRUB's El Torito image (BIOS)
//! kiln/NVR.ARCH              the marker GRUB's early config searches for
//! sha256sum.txt              every file above, as `sha256sum -c` reads it
//! ```
//!
//! UEFI firmware boots `EFI/BOOT/BOOTX64.EFI` from a FAT image appended to
//! the ISO as a GPT partition.

use std::fmt::Write as _;

use crate::plan::Output;

/// Where live-boot looks for squashfs images and their `.module` files.
pub const LIVE_DIR: &str = "live";
/// The root squashfs, under [`LIVE_DIR`].
pub const ROOT_SQUASHFS: &str = "filesystem.squashfs";
/// The kernel and initrd, under [`LIVE_DIR`].
pub const KERNEL: &str = "vmlinuz";
pub const INITRD: &str = "initrd.img";
/// GRUB's directory on the medium (its `$prefix`).
pub const GRUB_DIR: &str = "boot/grub";
/// GRUB's BIOS El Torito image, under [`GRUB_DIR`].
pub const BIOS_IMAGE: &str = "bios.img";
/// The checksum file on the medium, in Debian live's format.
pub const CHECKSUMS: &str = "sha256sum.txt";
/// The serial console the menu and the kernel use besides the screen.
pub const SERIAL: &str = "ttyS0,115200n8";

/// An `iso` output's options, read from the plan (where the resolver has
/// checked them and filled in the defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoOptions {
    pub bios: bool,
    pub uefi: bool,
    /// `image` or a subprofile's name.
    pub root: String,
    /// Subprofiles added as selectable modules, in menu order.
    pub extra: Vec<String>,
    pub volume_id: String,
    pub cmdline: String,
    pub timeout: i64,
}

impl IsoOptions {
    /// The options of `o`, an `iso` output of a resolved plan.
    pub fn of(o: &Output) -> Result<IsoOptions, String> {
        let get = |k: &str| {
            o.options
                .get(k)
                .map(|v| &v.value)
                .ok_or_else(|| format!("the iso output has no `{k}` option"))
        };
        let strs = |k: &str| -> Result<Vec<String>, String> {
            get(k)?
                .as_array()
                .ok_or_else(|| format!("`output.iso.{k}` is not a list"))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`output.iso.{k}` holds a non-string"))
                })
                .collect()
        };
        let str_of = |k: &str| -> Result<String, String> {
            get(k)?
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("`output.iso.{k}` is not a string"))
        };
        let boot = strs("boot")?;
        Ok(IsoOptions {
            bios: boot.iter().any(|b| b == "bios"),
            uefi: boot.iter().any(|b| b == "uefi"),
            root: str_of("root")?,
            extra: strs("extra")?,
            volume_id: str_of("volume_id")?,
            cmdline: str_of("cmdline")?,
            timeout: get("timeout")?
                .as_i64()
                .ok_or("`output.iso.timeout` is not an integer")?,
        })
    }
}

/// The file GRUB's early configuration searches for to find the medium (on
/// UEFI, GRUB starts from the EFI partition, not the ISO 9660 tree).
pub fn marker_file(nvr: &str, arch: &str) -> String {
    format!("kiln/{nvr}.{arch}")
}

/// One boot menu entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// GRUB's `--id` (the module name, or `live`).
    pub id: String,
    pub title: String,
    /// live-boot's `module=`: None boots `filesystem.module`.
    pub module: Option<String>,
}

/// The menu: the root first (the default), then each extra module.
pub fn entries(opts: &IsoOptions, nvr: &str, arch: &str) -> Vec<Entry> {
    let mut out = vec![Entry {
        id: "live".into(),
        title: format!("{nvr} ({arch})"),
        module: None,
    }];
    for e in &opts.extra {
        out.push(Entry {
            id: e.clone(),
            title: format!("{nvr} ({arch}): {e}"),
            module: Some(e.clone()),
        });
    }
    out
}

/// The `.module` files under [`LIVE_DIR`], with their contents: each entry
/// mounts only its own squashfs.
pub fn module_files(opts: &IsoOptions) -> Vec<(String, String)> {
    let mut out = vec![("filesystem.module".to_string(), format!("{ROOT_SQUASHFS}\n"))];
    for e in &opts.extra {
        out.push((format!("{e}.module"), format!("{e}.squashfs\n")));
    }
    out
}

/// The kernel command line of an entry.
pub fn kernel_cmdline(opts: &IsoOptions, entry: &Entry) -> String {
    let mut line = String::from("boot=live components");
    if let Some(m) = &entry.module {
        let _ = write!(line, " module={m}");
    }
    let _ = write!(line, " console=tty0 console={SERIAL}");
    if !opts.cmdline.is_empty() {
        line.push(' ');
        line.push_str(&opts.cmdline);
    }
    line
}

/// GRUB's menu, `boot/grub/grub.cfg`. Titles and the command line are
/// checked characters only (NVRs, subprofile names, `valid_cmdline`), so
/// nothing in them is GRUB syntax.
pub fn grub_cfg(opts: &IsoOptions, nvr: &str, arch: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# The boot menu of {nvr}.{arch}, written by kiln.");
    s.push_str("serial --unit=0 --speed=115200\n");
    s.push_str("terminal_input console serial\n");
    s.push_str("terminal_output console serial\n");
    s.push_str("set default=live\n");
    let _ = writeln!(s, "set timeout={}", opts.timeout);
    s.push_str("set timeout_style=menu\n");
    for e in entries(opts, nvr, arch) {
        let _ = writeln!(s, "\nmenuentry '{}' --id {} {{", e.title, e.id);
        let _ = writeln!(s, "    linux /{LIVE_DIR}/{KERNEL} {}", kernel_cmdline(opts, &e));
        let _ = writeln!(s, "    initrd /{LIVE_DIR}/{INITRD}");
        s.push_str("}\n");
    }
    s
}

/// The configuration built into GRUB's images: find the medium by its
/// marker and read the menu from it.
pub fn early_cfg(marker: &str) -> String {
    format!(
        "search --no-floppy --set=root --file /{marker}\nset prefix=($root)/{GRUB_DIR}\nconfigfile /{GRUB_DIR}/grub.cfg\n"
    )
}

/// GRUB modules built into both images: no module is loaded at boot, so
/// the medium carries none.
pub const GRUB_MODULES: &[&str] = &[
    "iso9660",
    "part_gpt",
    "part_msdos",
    "fat",
    "normal",
    "search",
    "search_fs_file",
    "configfile",
    "linux",
    "echo",
    "serial",
    "terminal",
    "test",
    "sleep",
    "ls",
    "cat",
    "gzio",
    "all_video",
    "boot",
];
/// Modules only the BIOS image needs.
pub const GRUB_BIOS_MODULES: &[&str] = &["biosdisk"];

/// The kernel and initrd of a root tree, from the list of its regular files:
/// exactly one `boot/vmlinuz-VERSION` and its `boot/initrd.img-VERSION`.
pub fn pick_kernel<'f>(files: impl IntoIterator<Item = &'f str>) -> Result<(String, String), String> {
    let files: Vec<&str> = files.into_iter().collect();
    let kernels: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| {
            f.strip_prefix("boot/vmlinuz-")
                .is_some_and(|v| !v.is_empty() && !v.contains('/'))
        })
        .collect();
    match kernels.as_slice() {
        [] => Err("the root tree has no kernel (no boot/vmlinuz-*): install one, e.g. linux-image-amd64".into()),
        [k] => {
            let version = &k["boot/vmlinuz-".len()..];
            let initrd = format!("boot/initrd.img-{version}");
            if files.contains(&initrd.as_str()) {
                Ok(((*k).to_string(), initrd))
            } else {
                Err(format!(
                    "the root tree has kernel {k} but no {initrd}: install initramfs-tools and live-boot in the root tree"
                ))
            }
        }
        many => Err(format!(
            "the root tree has {} kernels ({}); an ISO boots exactly one: remove the others",
            many.len(),
            many.join(", ")
        )),
    }
}

/// The regular files of `unsquashfs -lls -d ''` output, as paths relative
/// to the root: lines whose mode starts with `-`; the path is what follows
/// the time column (symlinks, devices and directories are skipped).
pub fn regular_files(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            // "-rw-r--r-- root/root 123 2024-01-01 00:00 /boot/x"
            let mut rest = l;
            for _ in 0..5 {
                rest = rest.trim_start().split_once(char::is_whitespace)?.1;
            }
            let path = rest.trim_start().strip_prefix('/')?;
            (!path.is_empty()).then(|| path.to_string())
        })
        .collect()
}

/// `sha256sum.txt`: `HASH  ./PATH` per file, sorted by path.
pub fn checksums<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut v: Vec<(&str, &str)> = files.into_iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v.iter().fold(String::new(), |mut s, (path, hash)| {
        let _ = writeln!(s, "{hash}  ./{path}");
        s
    })
}

/// The plan shown by `kiln show`: what goes where on the medium.
pub fn describe(opts: &IsoOptions, nvr: &str, arch: &str) -> Vec<String> {
    let mut boot = Vec::new();
    if opts.bios {
        boot.push("BIOS (El Torito, hybrid MBR)");
    }
    if opts.uefi {
        boot.push("UEFI (EFI partition, GPT)");
    }
    let root = if opts.root == "image" {
        "the image".to_string()
    } else {
        format!("subprofile {}", opts.root)
    };
    let mut out = vec![
        format!("boots by {}; volume `{}`", boot.join(" and "), opts.volume_id),
        format!("/{LIVE_DIR}/{ROOT_SQUASHFS} and the kernel and initrd: {root}"),
    ];
    for e in &opts.extra {
        out.push(format!("/{LIVE_DIR}/{e}.squashfs: subprofile {e}"));
    }
    for e in entries(opts, nvr, arch) {
        out.push(format!(
            "menu: {} (boot=live{})",
            e.title,
            e.module.map(|m| format!(" module={m}")).unwrap_or_default()
        ));
    }
    out
}

/// One regular file of an ISO's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediumFile {
    /// Relative to the medium's root, no leading `/`.
    pub path: String,
    pub size: u64,
}

/// Reads `xorriso -find / -type f -exec lsdl --` output: one line per
/// regular file, `MODE LINKS UID GID SIZE MON DAY TIME 'PATH'`, the path in
/// shell single quotes (a quote inside written as `'"'"'`). Lines of any
/// other shape are skipped.
pub fn parse_lsdl(listing: &str) -> Vec<MediumFile> {
    listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let size = fields.nth(4)?.parse().ok()?;
            let quoted = &l[l.find('\'')?..];
            let path = unquote(quoted)?;
            let path = path.strip_prefix('/')?.to_string();
            (!path.is_empty()).then_some(MediumFile { path, size })
        })
        .collect()
}

/// Undoes xorriso's shell quoting: `'..'` runs and `"'"` for a quote.
fn unquote(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'')?;
            out.push_str(&r[..end]);
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix("\"'\"") {
            out.push('\'');
            rest = r;
        } else {
            return None;
        }
    }
    Some(out)
}

/// The live media layouts kiln updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutKind {
    /// Debian live (live-build, kiln): `live/filesystem.squashfs`, the
    /// kernel and initrd beside it.
    DebianLive,
    /// mkimage-profiles: stage2 squashfs images named after their stage
    /// at the root (`live`, `rescue`, `altinst`), the kernel and initrd
    /// as `boot/vmlinuz` and `boot/full.cz`.
    MkimageProfiles,
}

impl LayoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutKind::DebianLive => "Debian live",
            LayoutKind::MkimageProfiles => "mkimage-profiles",
        }
    }
}

/// Where an ISO keeps what an update changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub kind: LayoutKind,
    /// The squashfs the update script runs in.
    pub root: MediumFile,
    /// Kernel and initrd files that boot the root (replaced together when
    /// the update changes the tree's kernel).
    pub kernels: Vec<String>,
    pub initrds: Vec<String>,
    /// Checksum files at the root of the medium (`sha256sum.txt`,
    /// `sha512sum.txt`, `md5sum.txt`).
    pub checksums: Vec<String>,
}

/// Checksum files kiln refreshes, with their digest.
pub const CHECKSUM_FILES: &[&str] = &["sha256sum.txt", "sha512sum.txt", "md5sum.txt"];

/// Recognises the layout of a medium from its regular files.
pub fn layout(files: &[MediumFile]) -> Result<Layout, String> {
    let find = |p: &str| files.iter().find(|f| f.path == p);
    let named = |dir: &str, prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = files
            .iter()
            .filter(|f| {
                f.path
                    .strip_prefix(dir)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|n| !n.contains('/') && n.starts_with(prefix))
            })
            .map(|f| f.path.clone())
            .collect();
        v.sort();
        v
    };
    let checksums: Vec<String> = CHECKSUM_FILES
        .iter()
        .filter(|c| find(c).is_some())
        .map(|c| (*c).to_string())
        .collect();
    if let Some(root) = find(&format!("{LIVE_DIR}/{ROOT_SQUASHFS}")) {
        return Ok(Layout {
            kind: LayoutKind::DebianLive,
            root: root.clone(),
            kernels: named(LIVE_DIR, "vmlinuz"),
            initrds: named(LIVE_DIR, "initrd"),
            checksums,
        });
    }
    if let Some(root) = ["live", "rescue", "altinst"].iter().find_map(|s| find(s)) {
        let pick = |names: &[&str]| {
            names
                .iter()
                .filter(|n| find(n).is_some())
                .map(|n| (*n).to_string())
                .collect()
        };
        return Ok(Layout {
            kind: LayoutKind::MkimageProfiles,
            root: root.clone(),
            kernels: pick(&["boot/vmlinuz", "syslinux/alt0/vmlinuz"]),
            initrds: pick(&["boot/full.cz", "boot/initrd.img", "syslinux/alt0/full.cz"]),
            checksums,
        });
    }
    Err(format!(
        "no live squashfs on the medium: neither /{LIVE_DIR}/{ROOT_SQUASHFS} (Debian live) nor /live, /rescue or /altinst (mkimage-profiles)"
    ))
}

/// A checksum file with the lines of `changed` files given new digests;
/// other lines are kept as they are. Paths match with or without `./`.
pub fn refresh_checksums(text: &str, changed: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let replaced = line.split_once("  ").and_then(|(_, path)| {
            let bare = path.trim_start_matches("./").trim_start_matches('/');
            changed
                .iter()
                .find(|(p, _)| p == bare)
                .map(|(_, hash)| format!("{hash}  {path}"))
        });
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> IsoOptions {
        IsoOptions {
            bios: true,
            uefi: true,
            root: "live".into(),
            extra: vec!["rescue".into()],
            volume_id: "KILN LIVE".into(),
            cmdline: "quiet".into(),
            timeout: 3,
        }
    }

    #[test]
    fn the_menu_has_the_root_then_each_module() {
        let cfg = grub_cfg(&opts(), "distro-live-1.0-1", "amd64");
        let live = cfg.find("--id live").expect("live entry");
        let rescue = cfg.find("--id rescue").expect("rescue entry");
        assert!(live < rescue);
        assert!(cfg.contains("set timeout=3\n"));
        assert!(cfg.contains("linux /live/vmlinuz boot=live components console=tty0 console=ttyS0,115200n8 quiet\n"));
        assert!(cfg.contains("boot=live components module=rescue console=tty0"));
        assert!(cfg.contains("terminal_output console serial"));
        assert_eq!(cfg.matches("initrd /live/initrd.img").count(), 2);
    }

    #[test]
    fn each_module_file_names_only_its_squashfs() {
        assert_eq!(
            module_files(&opts()),
            vec![
                ("filesystem.module".to_string(), "filesystem.squashfs\n".to_string()),
                ("rescue.module".to_string(), "rescue.squashfs\n".to_string()),
            ]
        );
    }

    #[test]
    fn the_early_config_finds_the_medium_by_its_marker() {
        let m = marker_file("a-1-1", "amd64");
        assert_eq!(m, "kiln/a-1-1.amd64");
        let cfg = early_cfg(&m);
        assert!(cfg.starts_with("search --no-floppy --set=root --file /kiln/a-1-1.amd64\n"));
        assert!(cfg.ends_with("configfile /boot/grub/grub.cfg\n"));
    }

    #[test]
    fn exactly_one_kernel_with_its_initrd() {
        let files = [
            "boot/vmlinuz-6.1.0-1-amd64",
            "boot/initrd.img-6.1.0-1-amd64",
            "boot/config-6.1.0-1-amd64",
        ];
        assert_eq!(
            pick_kernel(files),
            Ok((
                "boot/vmlinuz-6.1.0-1-amd64".into(),
                "boot/initrd.img-6.1.0-1-amd64".into()
            ))
        );
        let none = pick_kernel(["etc/hostname"]).expect_err("no kernel");
        assert!(none.contains("no kernel"), "{none}");
        let two =
            pick_kernel(["boot/vmlinuz-6.1", "boot/vmlinuz-6.5", "boot/initrd.img-6.1"]).expect_err("two kernels");
        assert!(two.contains("2 kernels (boot/vmlinuz-6.1, boot/vmlinuz-6.5)"), "{two}");
        let no_initrd = pick_kernel(["boot/vmlinuz-6.1"]).expect_err("no initrd");
        assert!(no_initrd.contains("no boot/initrd.img-6.1"), "{no_initrd}");
        // Not a kernel: nested, or the bare name.
        assert!(pick_kernel(["boot/vmlinuz-", "boot/x/vmlinuz-1", "vmlinuz-1"]).is_err());
    }

    #[test]
    fn the_listing_yields_regular_files_only() {
        let listing = "drwxr-xr-x root/root 40 2024-01-01 00:00 /boot\n\
            -rw-r--r-- root/root 8123456 2024-01-01 00:00 /boot/vmlinuz-6.1.0-1-amd64\n\
            lrwxrwxrwx root/root 27 2024-01-01 00:00 /vmlinuz -> boot/vmlinuz-6.1.0-1-amd64\n\
            -rw-r--r-- root/root 12 2024-01-01 00:00 /etc/a file with spaces\n\
            crw-rw-rw- root/root 1,3 2024-01-01 00:00 /dev/null\n";
        assert_eq!(
            regular_files(listing),
            vec![
                "boot/vmlinuz-6.1.0-1-amd64".to_string(),
                "etc/a file with spaces".to_string()
            ]
        );
    }

    #[test]
    fn checksums_are_sorted_with_dot_slash_paths() {
        let s = checksums([("live/vmlinuz", "bb"), ("boot/grub/grub.cfg", "aa")]);
        assert_eq!(s, "aa  ./boot/grub/grub.cfg\nbb  ./live/vmlinuz\n");
    }

    #[test]
    fn xorriso_listings_are_read_with_their_quoting() {
        let listing = "-r--r--r--    1 0        0        184926208 Dec  3 19:52 '/live/filesystem.squashfs'\n\
            dr-xr-xr-x    1 0        0                0 Dec  3 19:52 '/live'\n\
            -r--r--r--    1 0        0               2 Dec  3 20:02 '/a b/it'\"'\"'s'\n\
            -r--r--r--    1 0        0               2 Dec  3 20:02 '/unterminated\n\
            garbage\n";
        assert_eq!(
            parse_lsdl(listing),
            vec![
                MediumFile {
                    path: "live/filesystem.squashfs".into(),
                    size: 184926208
                },
                MediumFile {
                    path: "a b/it's".into(),
                    size: 2
                },
            ]
        );
    }

    fn medium(paths: &[&str]) -> Vec<MediumFile> {
        paths
            .iter()
            .map(|p| MediumFile {
                path: (*p).into(),
                size: 1,
            })
            .collect()
    }

    #[test]
    fn debian_and_mkimage_profiles_layouts() {
        let debian = layout(&medium(&[
            "live/filesystem.squashfs",
            "live/vmlinuz-6.1.0-18-amd64",
            "live/initrd.img-6.1.0-18-amd64",
            "live/filesystem.packages",
            "sha256sum.txt",
            "boot/grub/grub.cfg",
        ]))
        .expect("Debian live");
        assert_eq!(debian.kind, LayoutKind::DebianLive);
        assert_eq!(debian.kernels, ["live/vmlinuz-6.1.0-18-amd64"]);
        assert_eq!(debian.initrds, ["live/initrd.img-6.1.0-18-amd64"]);
        assert_eq!(debian.checksums, ["sha256sum.txt"]);

        let alt = layout(&medium(&[
            "rescue",
            "live",
            "boot/vmlinuz",
            "boot/full.cz",
            "md5sum.txt",
        ]))
        .expect("ALT");
        assert_eq!(alt.kind, LayoutKind::MkimageProfiles);
        assert_eq!(alt.root.path, "live", "live before rescue");
        assert_eq!(alt.kernels, ["boot/vmlinuz"]);
        assert_eq!(alt.initrds, ["boot/full.cz"]);

        let none = layout(&medium(&["live/other.squashfs", "boot/vmlinuz"])).expect_err("no root");
        assert!(none.contains("no live squashfs"), "{none}");
    }

    #[test]
    fn checksum_lines_of_changed_files_are_replaced() {
        let text = "aa  ./live/filesystem.squashfs\nbb  ./boot/grub/grub.cfg\ncc  live/vmlinuz\n";
        let changed = vec![
            ("live/filesystem.squashfs".to_string(), "11".to_string()),
            ("live/vmlinuz".to_string(), "33".to_string()),
        ];
        assert_eq!(
            refresh_checksums(text, &changed),
            "11  ./live/filesystem.squashfs\nbb  ./boot/grub/grub.cfg\n33  live/vmlinuz\n"
        );
    }
}
