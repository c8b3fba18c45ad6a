//! Checking untrusted images: real images made by mksquashfs pass, and
//! truncated or corrupted ones are refused with what is wrong and where.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_squashfs::{Error, check};

fn image(dir: &Path, comp: &str) -> PathBuf {
    let root = dir.join(format!("root-{comp}"));
    for d in ["etc", "usr/bin", "usr/share/doc", "var/empty"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::write(root.join("etc/os-release"), "ID=test\n").expect("write");
    fs::write(root.join("usr/share/doc/big"), "text ".repeat(60_000)).expect("write");
    for i in 0..300 {
        fs::write(root.join(format!("usr/bin/tool-{i}")), format!("#!/bin/sh\necho {i}\n")).expect("write");
    }
    std::os::unix::fs::symlink("../usr/bin/tool-1", root.join("etc/link")).expect("symlink");
    let out = dir.join(format!("{comp}.squashfs"));
    let st = Command::new("mksquashfs")
        .arg(&root)
        .arg(&out)
        .args(["-comp", comp, "-noappend", "-quiet", "-no-progress", "-all-root"])
        .status()
        .expect("mksquashfs runs");
    assert!(st.success());
    out
}

fn corrupt(src: &Path, dest: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = fs::read(src).expect("read");
    edit(&mut b);
    fs::write(dest, &b).expect("write");
    dest.to_path_buf()
}

fn refused(p: &Path, what: &str) {
    match check(p) {
        Err(e @ Error::Format(_)) => assert!(e.to_string().contains(what), "{e}"),
        other => panic!("{}: expected a format error with `{what}`, got {other:?}", p.display()),
    }
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn real_images_pass() {
    let tmp = tempfile::tempdir().expect("tmp");
    for comp in ["gzip", "xz", "zstd", "lz4"] {
        let s = check(&image(tmp.path(), comp)).expect("a real image passes");
        assert_eq!((s.files, s.directories), (302, 8), "{comp}: {s:?}");
        assert!(s.file_bytes > 300_000 && s.tree_checked);
    }
}

#[test]
fn broken_images_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = image(tmp.path(), "gzip");
    let len = fs::metadata(&good).expect("stat").len();
    let d = |n: &str| tmp.path().join(n);

    let mut tiny = b"hsqs".to_vec();
    tiny.resize(200, 0);
    fs::write(d("tiny"), &tiny).expect("write");
    refused(&d("tiny"), "squashfs version 0.0, not 4.0");
    let p = corrupt(&good, &d("short"), |b| b.truncate(60));
    refused(&p, "points past the end of the image");
    let p = corrupt(&good, &d("half"), |b| b.truncate(b.len() / 2));
    refused(&p, "is past the end of the file");
    // block_size 128 KiB with block_log 12.
    let p = corrupt(&good, &d("log"), |b| b[22..24].copy_from_slice(&12u16.to_le_bytes()));
    refused(&p, "block_log (12) does not match its block size (131072)");
    let p = corrupt(&good, &d("comp"), |b| b[20..22].copy_from_slice(&9u16.to_le_bytes()));
    refused(&p, "unknown compressor id 9");
    // The id table, then the directory table, beyond the end of the file.
    let p = corrupt(&good, &d("ids"), |b| put_u64(b, 48, len + 4096));
    refused(&p, &format!("id_table_start ({})", len + 4096));
    let p = corrupt(&good, &d("dirs"), |b| put_u64(b, 72, u64::MAX - 7));
    refused(&p, "directory_table_start");
    // The root inode's reference past its table.
    let p = corrupt(&good, &d("root"), |b| put_u64(b, 32, 0xffff_0000_0000));
    refused(&p, "root inode");
    // Garbage over the inode table.
    let p = corrupt(&good, &d("inodes"), |b| {
        let at = u64::from_le_bytes(b[64..72].try_into().expect("8 bytes")) as usize;
        b[at + 2..at + 200].fill(0x5a);
    });
    assert!(matches!(check(&p), Err(Error::Format(_))), "{:?}", check(&p));
}

#[test]
fn a_directory_that_contains_its_ancestor_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("a")).expect("mkdir");
    let img = tmp.path().join("loop.squashfs");
    let st = Command::new("mksquashfs")
        .arg(&root)
        .arg(&img)
        .args(["-noI", "-noappend", "-quiet", "-no-progress"])
        .status()
        .expect("mksquashfs runs");
    assert!(st.success());
    // The directory table is stored uncompressed: point `a`'s entry at the
    // root inode, so that the root contains itself.
    let p = corrupt(&img, &tmp.path().join("looped.squashfs"), |b| {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let (root_ref, dirs) = (u64_at(32), u64_at(72) as usize);
        assert_eq!(
            u16::from_le_bytes([b[dirs], b[dirs + 1]]) & 0x8000,
            0x8000,
            "stored uncompressed"
        );
        let listing = dirs + 2;
        b[listing + 4..listing + 8].copy_from_slice(&((root_ref >> 16) as u32).to_le_bytes());
        b[listing + 12..listing + 14].copy_from_slice(&((root_ref & 0xffff) as u16).to_le_bytes());
    });
    refused(&p, "directory `a` is its own ancestor");
}
