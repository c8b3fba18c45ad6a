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
use kiln_tar::extract::{ExtractError, Limits, decompressed, extract, extract_with, scan};
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

/// Both the scan and extraction refuse `entries` for `reason`, the same way.
fn hostile(entries: &[(&str, u8, &str, &[u8])], reason: &str) {
    hostile_within(entries, reason, &Limits::default());
}

fn hostile_within(entries: &[(&str, u8, &str, &[u8])], reason: &str, limits: &Limits) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let scanned = scan(std::io::Cursor::new(crafted(entries)), limits).unwrap_err();
    let err = extract_with(std::io::Cursor::new(crafted(entries)), &dest, limits).unwrap_err();
    assert!(matches!(err, ExtractError::Hostile { .. }), "{err}");
    assert!(err.to_string().contains(reason), "{err}");
    assert_eq!(scanned.to_string(), err.to_string(), "the scan applies the same rules");
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
        "is a hard link to `missing`, which is not an earlier file of the archive",
    );
    hostile(
        &[("d", b'5', "", b""), ("x", b'1', "d", b"")],
        "is a hard link to `d`, which is not an earlier file",
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

#[test]
fn entries_are_named_with_their_position() {
    let err = scan(
        std::io::Cursor::new(crafted(&[("etc", b'5', "", b""), ("../x", b'0', "", b"x")])),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hostile archive: entry `../x` has a `..` component (entry 2, header at byte 512 of the tar stream)"
    );
}

#[test]
fn a_directory_and_a_file_do_not_replace_each_other() {
    hostile(&[("d", b'5', "", b""), ("d", b'0', "", b"x")], "replaces a directory");
    hostile(&[("d", b'5', "", b""), ("d", b'2', "/x", b"")], "replaces a directory");
    hostile(
        &[("f", b'0', "", b"x"), ("f", b'5', "", b"")],
        "replaces a file or symlink with a directory",
    );
    hostile(
        &[("f", b'0', "", b"x"), ("f/g", b'0', "", b"x")],
        "would be written below a file",
    );
}

#[test]
fn unsupported_types_are_refused() {
    hostile(&[("z", b'Z', "", b"")], "has an unsupported type");
    hostile(&[("g", b'g', "", b"")], "has an unsupported type");
}

#[test]
fn the_scan_accepts_a_plain_tree_and_writes_nothing() {
    let data = crafted(&[
        ("./", b'5', "", b""),
        ("etc/", b'5', "", b""),
        ("etc/os-release", b'0', "", b"ID=test\n"),
        ("etc/os-release-link", b'1', "etc/os-release", b""),
        ("bin/sh", b'2', "/usr/bin/dash", b""),
        ("lib/x", b'2', "../bin/sh", b""),
        ("run/fifo", b'6', "", b""),
        ("dev/null", b'3', "", b""),
    ]);
    let stats = scan(std::io::Cursor::new(data), &Limits::default()).unwrap();
    assert_eq!((stats.entries, stats.bytes), (7, 8));
}

#[test]
fn too_many_entries_are_refused() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, u8, &str, &[u8])> = names.iter().map(|n| (n.as_str(), b'0', "", &b""[..])).collect();
    let limits = Limits {
        max_entries: 10,
        max_bytes: 1 << 30,
    };
    hostile_within(&entries, "is past the limit of 10 entries per archive", &limits);
}

/// A ustar header of `size` bytes of data.
fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// One header that declares `size` bytes of data and holds none.
fn declares(size: u64) -> Vec<u8> {
    let h = header("huge", tar::EntryType::Regular, size);
    let mut out = h.as_bytes().to_vec();
    out.resize(out.len() + 4096, 0);
    out
}

#[test]
fn huge_declared_sizes_are_refused_before_reading() {
    let err = scan(std::io::Cursor::new(declares(1 << 50)), &Limits::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("declares 1125899906842624 bytes of data, which takes the archive past its limit"),
        "{err}"
    );
    let err = scan(std::io::Cursor::new(declares(10 << 30)), &Limits::for_source(8192)).unwrap_err();
    assert!(err.to_string().contains("past its limit of 1073741824 bytes"), "{err}");
    // Within the limits, the missing data is a truncated archive.
    let err = scan(std::io::Cursor::new(declares(1 << 20)), &Limits::default()).unwrap_err();
    assert!(matches!(err, ExtractError::Read(_)), "{err}");
}

#[test]
fn a_compressed_bomb_stops_at_the_limit() {
    // 64 MiB of zeros in one file, gzip-compressed to a few dozen KiB.
    let h = header("zeros", tar::EntryType::Regular, 64 << 20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
    }
    let gz = gz.finish().unwrap();
    let limits = Limits::for_source(gz.len() as u64);
    assert!(limits.max_bytes >= 1 << 30, "the floor lets it through");
    scan(decompressed(std::io::Cursor::new(gz.clone())).unwrap(), &limits).unwrap();
    let small = Limits {
        max_entries: 10,
        max_bytes: 16 << 20,
    };
    let err = scan(decompressed(std::io::Cursor::new(gz)).unwrap(), &small).unwrap_err();
    assert!(err.to_string().contains("past its limit of 16777216 bytes"), "{err}");
}

#[test]
fn a_huge_pax_header_stops_at_the_limit() {
    // A pax header of 4 MiB of records: metadata the entry sizes do not count.
    let record = b"20 comment=xxxxxxxx\n";
    let mut records = Vec::new();
    while records.len() < 4 << 20 {
        records.extend_from_slice(record);
    }
    let h = header("pax", tar::EntryType::XHeader, records.len() as u64);
    let mut data = h.as_bytes().to_vec();
    data.extend_from_slice(&records);
    data.resize(data.len().div_ceil(512) * 512, 0);
    data.extend_from_slice(&crafted(&[("f", b'0', "", b"x")]));
    let limits = Limits {
        max_entries: 10,
        max_bytes: 1 << 20,
    };
    let err = scan(std::io::Cursor::new(data.clone()), &limits).unwrap_err();
    assert!(
        err.to_string().contains("the tar stream goes past 1048576 bytes"),
        "{err}"
    );
    scan(std::io::Cursor::new(data), &Limits::default()).unwrap();
}
