//! Fixture tree and helpers shared by the integration tests.
//!
//! The fixture needs root (chown, device nodes, `security.capability`);
//! tests call [`needs_root`] and skip (with a message) otherwise.

#![allow(dead_code, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, UTIME_OMIT, makedev, mknodat, utimensat};

/// SOURCE_DATE_EPOCH of the fixture: 2020-09-13T12:26:40Z.
pub const SDE: u64 = 1_600_000_000;
/// The mtime of `old/past`, before [`SDE`], kept as is.
pub const PAST: i64 = 1_000_000_000;

/// The raw `security.capability` value of `cap_net_raw+ep` (struct
/// vfs_cap_data, revision 2: magic | effective, permitted = 1 << 13).
pub const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    0x00, 0x20, 0x00, 0x00, // permitted[0]: CAP_NET_RAW (13)
    0x00, 0x00, 0x00, 0x00, // inheritable[0]
    0x00, 0x00, 0x00, 0x00, // permitted[1]
    0x00, 0x00, 0x00, 0x00, // inheritable[1]
];

/// A path component longer than 100 bytes in total with its parents.
pub fn long_dir() -> String {
    format!("long/{}/{}", "d".repeat(60), "e".repeat(60))
}

pub fn long_target() -> String {
    format!("../{}", "t".repeat(120))
}

/// True when running as root; prints why a test is skipped otherwise.
pub fn needs_root(test: &str) -> bool {
    let root = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if !root {
        eprintln!("skipping {test}: needs root (chown, mknod, security.capability)");
    }
    root
}

/// Whether a command can be run; prints why a check is skipped otherwise.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
        .unwrap_or(false);
    if !ok {
        eprintln!("note: `{tool}` not installed; skipping the checks that use it");
    }
    ok
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, content: &[u8], mode: u32) {
    fs::write(p, content).unwrap();
    chmod(p, mode);
}

/// Sets the mtime (whole seconds) of `p` without following symlinks,
/// leaving the atime alone.
pub fn set_mtime(p: &Path, secs: i64) {
    let times = rustix::fs::Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: 123_456_789,
        },
    };
    utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Sets the atime of `p`, leaving the mtime alone.
pub fn set_atime(p: &Path, secs: i64) {
    let times = rustix::fs::Timestamps {
        last_access: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
    };
    utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Content of `usr/share/big`: over 1 MiB, so it crosses every buffer
/// boundary of the writer.
pub fn big_content() -> Vec<u8> {
    let mut v = Vec::with_capacity(1300 * 1024 + 7);
    let mut x: u32 = 1;
    while v.len() < 1300 * 1024 + 7 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        v.push((x >> 16) as u8);
    }
    v
}

/// Builds the fixture root under `base/root` and returns its path.
///
/// Contents: dirs with various modes (`tmp` 01777, `root` 0700), files
/// 0644/0640/0600, setuid `usr/bin/su` (04755), setgid `usr/bin/wall`
/// (02755), `home/user` owned 1000:1000, symlinks (one with a target over
/// 100 bytes), a hardlink pair (created in reverse order), a char device
/// `dev/null` (1,3) and a block device `dev/sda` (8,0), a FIFO, a socket
/// (skipped), `user.kiln=value` on `etc/passwd`, `security.capability`
/// cap_net_raw+ep on `usr/bin/ping`, a path over 100 bytes, a name that is
/// not UTF-8, names that sort differently per component than as whole
/// paths (`sort/a/`, `sort/a-b`), a file in the future and one in the past,
/// and a large file.
pub fn build(base: &Path) -> PathBuf {
    let root = base.join("root");
    for d in [
        "",
        "etc",
        "usr",
        "usr/bin",
        "usr/share",
        "home",
        "home/user",
        "root",
        "tmp",
        "dev",
        "run",
        "old",
        "sort",
        "sort/a",
    ] {
        fs::create_dir(root.join(d)).unwrap();
        chmod(&root.join(d), 0o755);
    }
    chmod(&root.join("tmp"), 0o1777);
    chmod(&root.join("root"), 0o700);

    write(&root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    xattr::set(root.join("etc/passwd"), "user.kiln", b"value").unwrap();
    write(&root.join("etc/shadow"), b"root:*:19000:0:99999:7:::\n", 0o640);
    fs::write(root.join("etc/hostname"), b"kiln\n").unwrap();
    std::os::unix::fs::chown(root.join("etc/shadow"), Some(0), Some(42)).unwrap();

    write(&root.join("usr/bin/su"), b"#!/bin/sh\n# su\n", 0o4755);
    write(&root.join("usr/bin/wall"), b"#!/bin/sh\n# wall\n", 0o2755);
    write(&root.join("usr/bin/ping"), b"#!/bin/sh\n# ping\n", 0o755);
    xattr::set(root.join("usr/bin/ping"), "security.capability", &CAP_NET_RAW_EP).unwrap();
    symlink("dash", root.join("usr/bin/sh")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();

    // The pair: hl-b is created first, but hl-a sorts first and is stored.
    write(&root.join("usr/bin/hl-b"), b"hardlinked content\n", 0o755);
    fs::hard_link(root.join("usr/bin/hl-b"), root.join("usr/bin/hl-a")).unwrap();

    write(&root.join("usr/share/big"), &big_content(), 0o644);
    write(&root.join("usr/share/empty"), b"", 0o644);

    let home = root.join("home/user");
    chmod(&home, 0o700);
    write(&home.join("file"), b"mine\n", 0o600);
    std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(home.join("file"), Some(1000), Some(1000)).unwrap();

    mknodat(
        CWD,
        root.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    chmod(&root.join("dev/null"), 0o666);
    mknodat(
        CWD,
        root.join("dev/sda"),
        FileType::BlockDevice,
        Mode::from_bits_truncate(0o660),
        makedev(8, 0),
    )
    .unwrap();
    chmod(&root.join("dev/sda"), 0o660);
    mknodat(
        CWD,
        root.join("run/initctl"),
        FileType::Fifo,
        Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    chmod(&root.join("run/initctl"), 0o600);
    drop(std::os::unix::net::UnixListener::bind(root.join("run/sock")).unwrap());

    let long = root.join(long_dir());
    fs::create_dir_all(&long).unwrap();
    write(&long.join("file-with-a-long-path"), b"long\n", 0o644);
    write(&long.join(OsStr::from_bytes(b"caf\xe9")), b"latin1\n", 0o644);
    symlink(long_target(), root.join("long/link")).unwrap();

    write(
        &root.join(OsStr::from_bytes(b"old/latin1-\xe9t\xe9")),
        b"bytes\n",
        0o644,
    );
    write(&root.join("old/past"), b"old\n", 0o644);
    set_mtime(&root.join("old/past"), PAST);
    write(&root.join("old/future"), b"new\n", 0o644);
    set_mtime(&root.join("old/future"), SDE as i64 + 10_000_000);

    write(&root.join("sort/a-b"), b"", 0o644);
    write(&root.join("sort/a/c"), b"", 0o644);
    write(&root.join("sort/B"), b"", 0o644);

    // Everything else: now, i.e. after SDE (clamped).
    root
}

/// The archive names of the tree under `root` in the order kiln must write
/// them: depth first, children sorted bytewise, directories with a
/// trailing `/`, the root as `./`, sockets left out.
pub fn expected_order(root: &Path) -> Vec<Vec<u8>> {
    fn rec(dir: &Path, prefix: &[u8], out: &mut Vec<Vec<u8>>) {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let p = dir.join(&n);
            let md = fs::symlink_metadata(&p).unwrap();
            let mut name = prefix.to_vec();
            name.extend_from_slice(n.as_bytes());
            if std::os::unix::fs::FileTypeExt::is_socket(&md.file_type()) {
                continue;
            }
            if md.is_dir() {
                name.push(b'/');
                out.push(name.clone());
                rec(&p, &name, out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = vec![b"./".to_vec()];
    rec(root, b"", &mut out);
    out
}

/// Runs a command, asserting success, and returns its stdout.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a command, asserting success and an empty stderr (no warnings).
pub fn run_quiet(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{cmd:?}: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn read(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut File::open(p).unwrap(), &mut v).unwrap();
    v
}
