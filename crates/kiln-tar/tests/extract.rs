//! Safe extraction: what kiln's writer archives comes back identical, and
//! crafted hostile archives are rejected before anything is written outside
//! the destination.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;
use kiln_tar::extract::{ExtractError, decompressed, extract};
use kiln_tar::{Compression, Options, write_tree};

#[test]
fn what_kiln_writes_comes_back_the_same() {
    if !needs_root("what_kiln_writes_comes_back_the_same") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    for c in [
        Compression::None,
        Compression::Zstd { level: 3 },
        Compression::Xz { level: 1 },
        Compression::Gzip { level: 1 },
    ] {
        let mut data = Vec::new();
        write_tree(
            &root,
            &mut data,
            &Options {
                mtime_clamp: Some(SDE),
                compression: c,
                xattrs: true,
                threads: 0,
            },
        )
        .unwrap();
        let dest = tmp.path().join(format!("x-{c:?}"));
        fs::create_dir(&dest).unwrap();
        extract(decompressed(std::io::Cursor::new(data)).unwrap(), &dest).unwrap();
        // GNU tar's listing of both trees is the same: owners, modes, types,
        // sizes, link targets, device numbers, mtimes.
        let list = |d: &Path| {
            let out = Command::new("find")
                .arg(".")
                .args(["-printf", "%p %M %U:%G %s %l %T@\n"])
                .current_dir(d)
                .output()
                .unwrap();
            let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                // Sizes of directories depend on the file system's history.
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    if f.get(1).is_some_and(|m| m.starts_with('d')) {
                        f[..3].join(" ")
                    } else {
                        l.to_string()
                    }
                })
                .filter(|l| !l.starts_with(". "))
                .collect();
            lines.sort();
            lines
        };
        // Sockets are not archived.
        let mut clamped: Vec<String> = list(&root).into_iter().filter(|l| !l.contains(" s")).collect();
        for l in &mut clamped {
            // The archive clamps mtimes; compare shapes without them.
            if let Some(i) = l.rfind(' ') {
                l.truncate(i);
            }
        }
        let mut got = list(&dest);
        for l in &mut got {
            if let Some(i) = l.rfind(' ') {
                l.truncate(i);
            }
        }
        let missing: Vec<_> = clamped.iter().filter(|l| !got.contains(l)).collect();
        let extra: Vec<_> = got.iter().filter(|l| !clamped.contains(l)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{c:?}: missing {missing:?}, extra {extra:?}"
        );
        let ino = |p: &str| fs::metadata(dest.join(p)).unwrap().ino();
        assert_eq!(ino("usr/bin/hl-a"), ino("usr/bin/hl-b"), "hard link kept");
        assert_eq!(
            xattr::get(dest.join("usr/bin/ping"), "security.capability")
                .unwrap()
                .as_deref(),
            Some(&CAP_NET_RAW_EP[..]),
            "file capability kept"
        );
    }
}

/// A tar with one raw entry per (name, type flag, link name, content).
fn crafted(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn hostile(entries: &[(&str, u8, &str, &[u8])], reason: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let err = extract(std::io::Cursor::new(crafted(entries)), &dest).unwrap_err();
    assert!(matches!(err, ExtractError::Hostile { .. }), "{err}");
    assert!(err.to_string().contains(reason), "{err}");
    // Nothing next to the destination, nothing in /tmp by that name.
    let beside: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside, ["dest"]);
    assert!(!Path::new("/tmp/kiln-evil").exists());
}

#[test]
fn dot_dot_is_rejected() {
    hostile(&[("../kiln-evil", b'0', "", b"x")], "has a `..` component");
    hostile(&[("a/../../kiln-evil", b'0', "", b"x")], "has a `..` component");
}

#[test]
fn absolute_paths_are_rejected() {
    hostile(&[("/tmp/kiln-evil", b'0', "", b"x")], "has an absolute path");
}

#[test]
fn writing_through_a_symlink_is_rejected() {
    hostile(
        &[("etc", b'2', "/tmp", b""), ("etc/kiln-evil", b'0', "", b"x")],
        "would be written through a symlink",
    );
    hostile(
        &[("up", b'2', "..", b""), ("up/kiln-evil", b'0', "", b"x")],
        "outside the archive",
    );
}

#[test]
fn symlinks_climbing_out_are_rejected_and_absolute_ones_kept() {
    hostile(
        &[("usr/lib/x", b'2', "../../../etc/passwd", b"")],
        "outside the archive",
    );
    let tmp = tempfile::tempdir().unwrap();
    extract(
        std::io::Cursor::new(crafted(&[
            ("bin/sh", b'2', "/usr/bin/dash", b""),
            ("lib/x", b'2', "../bin/sh", b""),
        ])),
        tmp.path(),
    )
    .unwrap();
    assert_eq!(
        fs::read_link(tmp.path().join("bin/sh")).unwrap(),
        Path::new("/usr/bin/dash")
    );
}

#[test]
fn hard_links_out_of_the_archive_are_rejected() {
    hostile(&[("x", b'1', "../../etc/passwd", b"")], "has a `..` component");
    hostile(&[("x", b'1', "/etc/passwd", b"")], "has an absolute path");
    hostile(
        &[("x", b'1', "missing", b"")],
        "is a hard link to something other than an earlier file",
    );
}

#[test]
fn device_nodes_only_under_dev() {
    if !needs_root("device_nodes_only_under_dev") {
        return;
    }
    hostile(&[("etc/null", b'3', "", b"")], "is a device node outside /dev");
    let tmp = tempfile::tempdir().unwrap();
    extract(
        std::io::Cursor::new(crafted(&[("dev/null", b'3', "", b"")])),
        tmp.path(),
    )
    .unwrap();
    assert!(
        fs::symlink_metadata(tmp.path().join("dev/null"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let _ = fs::metadata(tmp.path().join("dev/null")).unwrap().rdev();
}
