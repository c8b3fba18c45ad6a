//! kiln-tar against real tools: GNU tar lists and extracts what it writes,
//! the `tar` crate reads it back, outputs are deterministic, compressed
//! outputs decompress with the CLI tools, and file output is atomic.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;
use kiln_tar::{Compression, Options, Stats, TarError, write_tree, write_tree_to_file};

fn opts(compression: Compression) -> Options {
    Options {
        mtime_clamp: Some(SDE),
        compression,
        xattrs: true,
        threads: 0,
    }
}

fn archive(root: &Path, o: &Options) -> (Vec<u8>, Stats) {
    let mut out = Vec::new();
    let stats = write_tree(root, &mut out, o).unwrap();
    (out, stats)
}

const ALL: [Compression; 4] = [
    Compression::None,
    Compression::Zstd { level: 10 },
    Compression::Xz { level: 3 },
    Compression::Gzip { level: 6 },
];

#[test]
fn gnu_tar_lists_everything() {
    if !needs_root("gnu_tar_lists_everything") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    let out = tmp.path().join("out.tar");
    write_tree_to_file(&root, &out, &opts(Compression::None)).unwrap();

    let listing = run_quiet(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-tvf"])
            .arg(&out),
    );
    // Columns are padded for alignment; compare with single spaces.
    let listing: String = String::from_utf8_lossy(&listing)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    eprintln!("{listing}");
    let line = |suffix: &str| -> &str {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {suffix}")))
            .unwrap_or_else(|| panic!("no entry {suffix:?} in\n{listing}"))
    };
    let first = listing.lines().next().unwrap();
    assert!(
        first.starts_with("drwxr-xr-x 0/0 ") && first.ends_with(" ./"),
        "{first}"
    );
    assert!(line("etc/").starts_with("drwxr-xr-x 0/0 "));
    // GNU tar marks entries with extended attributes with `*`.
    assert!(line("etc/passwd").starts_with("-rw-r--r--* 0/0 "));
    assert!(line("usr/bin/ping").starts_with("-rwxr-xr-x* 0/0 "));
    assert!(line("etc/shadow").starts_with("-rw-r----- 0/42 "));
    assert!(line("usr/bin/su").starts_with("-rwsr-xr-x 0/0 "));
    assert!(line("usr/bin/wall").starts_with("-rwxr-sr-x 0/0 "));
    assert!(line("tmp/").starts_with("drwxrwxrwt 0/0 "));
    assert!(line("root/").starts_with("drwx------ 0/0 "));
    assert!(line("home/user/").starts_with("drwx------ 1000/1000 "));
    assert!(line("home/user/file").starts_with("-rw------- 1000/1000 "));
    assert!(line("usr/bin/hl-a").starts_with("-rwxr-xr-x 0/0 "));
    assert!(line("usr/bin/hl-b link to usr/bin/hl-a").starts_with("hrwxr-xr-x 0/0 "));
    assert!(line("bin -> usr/bin").starts_with("lrwxrwxrwx 0/0 "));
    let long_link = format!("long/link -> {}", long_target());
    assert!(line(&long_link).starts_with("l"));
    let null = line("dev/null");
    assert!(null.starts_with("crw-rw-rw- 0/0 "), "{null}");
    assert!(null.contains(" 1,3 "), "{null}");
    let sda = line("dev/sda");
    assert!(sda.starts_with("brw-rw---- 0/0 ") && sda.contains(" 8,0 "), "{sda}");
    assert!(line("run/initctl").starts_with("prw------- 0/0 "));
    assert!(!listing.contains("run/sock"), "sockets are skipped");
    let long = format!("{}/file-with-a-long-path", long_dir());
    assert!(long.len() > 100);
    assert!(line(&long).starts_with("-rw-r--r-- 0/0 "));
    // A long name that is not UTF-8 (pax `path` with raw bytes).
    assert!(line(&format!("{}/caf\\351", long_dir())).starts_with("-rw-r--r-- 0/0 "));
    assert!(line("usr/share/big").contains(&format!(" {} ", big_content().len())));
    // GNU tar prints mtimes in local time; the clamped and kept ones differ.
    assert_ne!(line("old/past"), line("old/future"));
    assert!(line("old/latin1-\\351t\\351").starts_with("-rw-r--r-- 0/0 "));

    // The same listing without --xattrs: no warnings about our pax keywords.
    run_quiet(Command::new("tar").args(["-tvf"]).arg(&out));
    // And GNU tar agrees on where the archive ends.
    run_quiet(Command::new("tar").args(["--warning=all", "-tf"]).arg(&out));
}

/// Everything of a path that must survive a round trip through an archive.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    rdev: u64,
    content: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn meta(p: &Path, clamp: Option<u64>) -> Meta {
    let md = fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "other"
    };
    let content = match kind {
        "file" => read(p),
        "symlink" => fs::read_link(p).unwrap().into_os_string().into_encoded_bytes(),
        _ => Vec::new(),
    };
    let mut xattrs = BTreeMap::new();
    for name in xattr::list(p).unwrap() {
        if let Some(v) = xattr::get(p, &name).unwrap() {
            xattrs.insert(name.as_bytes().to_vec(), v);
        }
    }
    let mut mtime = md.mtime();
    if let Some(c) = clamp {
        mtime = mtime.min(c as i64);
    }
    Meta {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime,
        rdev: md.rdev(),
        content,
        xattrs,
    }
}

#[test]
fn gnu_tar_extracts_everything() {
    if !needs_root("gnu_tar_extracts_everything") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    let out = tmp.path().join("out.tar");
    write_tree_to_file(&root, &out, &opts(Compression::None)).unwrap();
    let dest = tmp.path().join("extracted");
    fs::create_dir(&dest).unwrap();
    run_quiet(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
            .arg(&out)
            .arg("-C")
            .arg(&dest),
    );

    let names = expected_order(&root);
    assert!(names.len() > 30, "{}", names.len());
    for name in &names {
        let rel = OsStr::from_bytes(name);
        let (a, b) = (root.join(rel), dest.join(rel));
        let (want, got) = (meta(&a, Some(SDE)), meta(&b, None));
        if want.kind == "symlink" {
            // Symlink permission bits are always 0777 on Linux; compare the rest.
            assert_eq!((&want.content, want.uid, want.gid), (&got.content, got.uid, got.gid));
            continue;
        }
        assert_eq!(want, got, "{}", String::from_utf8_lossy(name));
    }
    assert!(!dest.join("run/sock").exists());

    // Spot checks of what the brief names, against the extracted tree.
    let ping = dest.join("usr/bin/ping");
    assert_eq!(
        xattr::get(&ping, "security.capability").unwrap().as_deref(),
        Some(&CAP_NET_RAW_EP[..])
    );
    assert_eq!(
        xattr::get(dest.join("etc/passwd"), "user.kiln").unwrap().as_deref(),
        Some(&b"value"[..])
    );
    let (a, b) = (
        fs::metadata(dest.join("usr/bin/hl-a")).unwrap(),
        fs::metadata(dest.join("usr/bin/hl-b")).unwrap(),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "hardlink kept");
    assert_eq!(a.nlink(), 2);
    let null = fs::metadata(dest.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let user = fs::metadata(dest.join("home/user/file")).unwrap();
    assert_eq!((user.uid(), user.gid(), user.mode() & 0o7777), (1000, 1000, 0o600));
    assert_eq!(fs::metadata(dest.join("usr/bin/su")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::metadata(dest.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
    assert_eq!(fs::symlink_metadata(dest.join("old/past")).unwrap().mtime(), PAST);
    assert_eq!(
        fs::symlink_metadata(dest.join("old/future")).unwrap().mtime(),
        SDE as i64
    );
    assert_eq!(fs::symlink_metadata(dest.join("old/future")).unwrap().mtime_nsec(), 0);

    if have("getcap") {
        let caps = run(Command::new("getcap").arg(&ping));
        let caps = String::from_utf8_lossy(&caps);
        assert!(caps.contains("cap_net_raw=ep"), "{caps}");
    }
    if have("getfattr") {
        let attrs = run(Command::new("getfattr")
            .args(["-n", "user.kiln"])
            .arg(dest.join("etc/passwd")));
        assert!(String::from_utf8_lossy(&attrs).contains("user.kiln=\"value\""));
    }
}

#[test]
fn tar_crate_reads_it_back() {
    if !needs_root("tar_crate_reads_it_back") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    let (bytes, stats) = archive(&root, &opts(Compression::None));
    assert_eq!(stats.bytes_out, bytes.len() as u64);
    assert_eq!(bytes.len() % 512, 0);
    assert!(bytes[bytes.len() - 1024..].iter().all(|&b| b == 0), "two zero blocks");

    let mut ar = tar::Archive::new(&bytes[..]);
    let mut names = Vec::new();
    let mut content_bytes = 0u64;
    for entry in ar.entries().unwrap() {
        let mut e = entry.unwrap();
        let name = e.path_bytes().into_owned();
        let h = e.header().clone();
        assert_eq!(h.username_bytes(), Some(&b""[..]), "uname empty");
        assert_eq!(h.groupname_bytes(), Some(&b""[..]), "gname empty");
        assert!(h.as_ustar().is_some(), "ustar magic");
        let rel = if name == b"./" {
            root.clone()
        } else {
            root.join(OsStr::from_bytes(&name))
        };
        let md = fs::symlink_metadata(&rel).unwrap();
        assert_eq!(
            h.mode().unwrap(),
            md.mode() & 0o7777,
            "{}",
            String::from_utf8_lossy(&name)
        );
        assert_eq!(h.uid().unwrap(), u64::from(md.uid()));
        assert_eq!(h.gid().unwrap(), u64::from(md.gid()));
        assert_eq!(h.mtime().unwrap(), (md.mtime() as u64).min(SDE));
        let mut xattrs = BTreeMap::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                let key = ext.key_bytes();
                assert!(
                    [&b"path"[..], b"linkpath", b"size"].contains(&key) || key.starts_with(b"SCHILY.xattr."),
                    "unexpected pax key {}",
                    String::from_utf8_lossy(key)
                );
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.insert(x.to_vec(), ext.value_bytes().to_vec());
                }
            }
        }
        match name.as_slice() {
            b"etc/passwd" => {
                assert_eq!(xattrs.get(&b"user.kiln"[..]).map(Vec::as_slice), Some(&b"value"[..]))
            }
            b"usr/bin/ping" => assert_eq!(
                xattrs.get(&b"security.capability"[..]).map(Vec::as_slice),
                Some(&CAP_NET_RAW_EP[..])
            ),
            b"usr/bin/hl-b" => {
                assert_eq!(h.entry_type(), tar::EntryType::Link);
                assert_eq!(e.link_name_bytes().unwrap().as_ref(), b"usr/bin/hl-a");
                assert!(xattrs.is_empty());
            }
            b"usr/bin/hl-a" => assert_eq!(h.entry_type(), tar::EntryType::Regular),
            b"dev/null" => {
                assert_eq!(h.entry_type(), tar::EntryType::Char);
                assert_eq!(
                    (h.device_major().unwrap(), h.device_minor().unwrap()),
                    (Some(1), Some(3))
                );
            }
            b"dev/sda" => {
                assert_eq!(h.entry_type(), tar::EntryType::Block);
                assert_eq!(
                    (h.device_major().unwrap(), h.device_minor().unwrap()),
                    (Some(8), Some(0))
                );
            }
            b"run/initctl" => assert_eq!(h.entry_type(), tar::EntryType::Fifo),
            b"long/link" => {
                assert_eq!(h.entry_type(), tar::EntryType::Symlink);
                assert_eq!(e.link_name_bytes().unwrap().as_ref(), long_target().as_bytes());
            }
            _ => {}
        }
        if h.entry_type() == tar::EntryType::Regular {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            assert_eq!(data, read(&rel), "{}", String::from_utf8_lossy(&name));
            content_bytes += data.len() as u64;
        }
        if md.is_dir() {
            assert_eq!(h.entry_type(), tar::EntryType::Directory);
        }
        names.push(name);
    }
    assert_eq!(names, expected_order(&root));
    let pos = |n: &[u8]| names.iter().position(|x| x == n).unwrap();
    assert!(pos(b"sort/a/c") < pos(b"sort/a-b"), "per-directory order");
    assert!(pos(b"sort/B") < pos(b"sort/a/"), "bytewise: uppercase first");
    assert_eq!(stats.entries, names.len() as u64);
    assert_eq!(stats.bytes_in, content_bytes);
    assert!(stats.bytes_in > 1024 * 1024);
}

#[test]
fn output_is_deterministic() {
    if !needs_root("output_is_deterministic") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    for c in ALL {
        let o = opts(c);
        let (first, s1) = archive(&root, &o);
        let (second, s2) = archive(&root, &o);
        assert!(first == second, "{c:?}: two writes differ");
        assert_eq!(s1, s2);

        // An mtime beyond the clamp, moved further: same bytes.
        set_mtime(&root.join("old/future"), SDE as i64 + 1);
        set_mtime(&root.join("etc/passwd"), SDE as i64 + 123_456);
        // atime is not recorded.
        set_atime(&root.join("etc/passwd"), 12_345);
        set_atime(&root.join("usr/bin"), 0);
        // Reading every file (updating atimes) changes nothing either.
        let (third, _) = archive(&root, &o);
        assert!(
            first == third,
            "{c:?}: mtime beyond the clamp or atime changed the output"
        );

        // File output is the same stream.
        let dest = tmp.path().join("out");
        let s3 = write_tree_to_file(&root, &dest, &o).unwrap();
        assert!(read(&dest) == first, "{c:?}: file output differs");
        assert_eq!(s3, s1);
    }

    // A change below the clamp does change the output.
    let o = opts(Compression::None);
    let (before, _) = archive(&root, &o);
    set_mtime(&root.join("old/past"), PAST + 1);
    let (after, _) = archive(&root, &o);
    assert!(before != after);
}

#[test]
fn thread_count_does_not_change_the_output() {
    if !needs_root("thread_count_does_not_change_the_output") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    // Enough incompressible data for several zstd jobs and xz blocks.
    let mut noise = Vec::with_capacity(24 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while noise.len() < 24 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes()[..if x.is_multiple_of(3) { 8 } else { 2 }]);
    }
    fs::write(root.join("noise"), &noise).unwrap();
    for c in [Compression::Zstd { level: 3 }, Compression::Xz { level: 0 }] {
        let with = |threads| archive(&root, &Options { threads, ..opts(c) }).0;
        let one = with(1);
        assert!(one == with(4), "{c:?}: 1 and 4 threads differ");
        // The multi-threaded stream is a valid stream of the same archive.
        let single = with(0);
        assert_eq!(decompress(c, &one), decompress(c, &single), "{c:?}");
    }
}

fn decompress(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match c {
        Compression::Zstd { .. } => {
            zstd::stream::read::Decoder::new(data)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Xz { .. } => {
            liblzma::read::XzDecoder::new_multi_decoder(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        _ => out.extend_from_slice(data),
    }
    out
}

#[test]
fn pax_headers_are_fixed() {
    if !needs_root("pax_headers_are_fixed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    let (bytes, _) = archive(&root, &opts(Compression::None));
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut pax = 0;
    for e in ar.entries().unwrap().raw(true) {
        let e = e.unwrap();
        let h = e.header();
        if h.entry_type() == tar::EntryType::XHeader {
            pax += 1;
            assert_eq!(h.path_bytes().as_ref(), b"././@PaxHeader");
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap()), (0, 0, 0o644));
        }
        assert!(!matches!(
            h.entry_type(),
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink | tar::EntryType::XGlobalHeader
        ));
    }
    // etc/passwd and usr/bin/ping (xattrs), the long directory, the two
    // files in it and the long symlink target.
    assert_eq!(pax, 6);

    // Without xattrs only the long names need pax headers.
    let (bytes, _) = archive(
        &root,
        &Options {
            xattrs: false,
            ..opts(Compression::None)
        },
    );
    assert!(!bytes.windows(13).any(|w| w == b"SCHILY.xattr."));
    let count = tar::Archive::new(&bytes[..])
        .entries()
        .unwrap()
        .raw(true)
        .filter(|e| e.as_ref().unwrap().header().entry_type() == tar::EntryType::XHeader)
        .count();
    assert_eq!(count, 4);
}

#[test]
fn compressed_outputs_match_the_cli_tools() {
    if !needs_root("compressed_outputs_match_the_cli_tools") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = build(tmp.path());
    let (plain, _) = archive(&root, &opts(Compression::None));
    for (c, tool) in [
        (Compression::Zstd { level: 3 }, "zstd"),
        (Compression::Zstd { level: 19 }, "zstd"),
        (Compression::Xz { level: 6 }, "xz"),
        (Compression::Xz { level: 0 }, "xz"),
        (Compression::Gzip { level: 9 }, "gzip"),
        (Compression::Gzip { level: 1 }, "gzip"),
    ] {
        let (packed, stats) = archive(&root, &opts(c));
        assert_eq!(stats.bytes_out, packed.len() as u64);
        assert!(packed.len() < plain.len(), "{c:?} compresses");

        // In-process decoders.
        let mut unpacked = Vec::new();
        match c {
            Compression::Zstd { .. } => zstd::stream::read::Decoder::new(&packed[..])
                .unwrap()
                .read_to_end(&mut unpacked),
            Compression::Xz { .. } => liblzma::read::XzDecoder::new(&packed[..]).read_to_end(&mut unpacked),
            Compression::Gzip { .. } => flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut unpacked),
            Compression::None => unreachable!(),
        }
        .unwrap();
        assert!(unpacked == plain, "{c:?}: in-process decode differs");

        if let Compression::Gzip { .. } = c {
            assert_eq!(&packed[..4], &[0x1f, 0x8b, 8, 0], "no FNAME or other flags");
            assert_eq!(&packed[4..8], &[0, 0, 0, 0], "mtime 0");
            assert_eq!(packed[9], 3, "OS unix");
        }

        if have(tool) {
            let file = tmp.path().join("packed");
            fs::write(&file, &packed).unwrap();
            let out = run(Command::new(tool).args(["-d", "-c"]).arg(&file));
            assert!(out == plain, "{tool} -d gives different bytes for {c:?}");
            run(Command::new(tool).arg("-t").arg(&file));
        }
    }
    // GNU tar reads the compressed archives directly too.
    let dest = tmp.path().join("out.tar.zst");
    write_tree_to_file(&root, &dest, &opts(Compression::Zstd { level: 3 })).unwrap();
    if have("zstd") {
        let listing = run_quiet(Command::new("tar").args(["--zstd", "-tf"]).arg(&dest));
        assert_eq!(
            listing.iter().filter(|&&b| b == b'\n').count(),
            expected_order(&root).len()
        );
    }
}

#[test]
fn invalid_levels_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for c in [Compression::Xz { level: 10 }, Compression::Gzip { level: 10 }] {
        let err = write_tree(tmp.path(), Vec::new(), &opts(c)).unwrap_err();
        assert!(matches!(err, TarError::InvalidLevel { .. }), "{err:?}");
    }
    // Extreme presets are fine.
    write_tree(
        tmp.path(),
        Vec::new(),
        &opts(Compression::Xz {
            level: 9 | kiln_tar::XZ_PRESET_EXTREME,
        }),
    )
    .unwrap();
}

#[test]
fn root_must_be_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    fs::write(&file, b"x").unwrap();
    let err = write_tree(&file, Vec::new(), &Options::default()).unwrap_err();
    assert!(
        matches!(&err, TarError::NotADirectory { path } if path == &file),
        "{err:?}"
    );
    let err = write_tree(&tmp.path().join("missing"), Vec::new(), &Options::default()).unwrap_err();
    assert!(
        matches!(&err, TarError::Read { path, .. } if path.ends_with("missing")),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn empty_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (bytes, stats) = archive(tmp.path(), &Options::default());
    assert_eq!(bytes.len(), 3 * 512);
    assert_eq!(
        stats,
        Stats {
            entries: 1,
            bytes_in: 0,
            bytes_out: 1536
        }
    );
    let file = tmp.path().join("empty.tar");
    fs::write(&file, &bytes).unwrap();
    let listing = run_quiet(Command::new("tar").arg("-tf").arg(&file));
    assert_eq!(listing, b"./\n");
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn file_output_is_atomic() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a"), b"a").unwrap();
    let outdir = tmp.path().join("out");
    fs::create_dir(&outdir).unwrap();
    let dest = outdir.join("image.tar.zst");
    let o = opts(Compression::Zstd { level: 3 });

    // A destination directory that does not exist.
    let err = write_tree_to_file(&tree, &tmp.path().join("nope/image.tar"), &o).unwrap_err();
    assert!(
        matches!(&err, TarError::Dest { path, .. } if path.ends_with("nope/image.tar")),
        "{err:?}"
    );
    assert!(!tmp.path().join("nope").exists());

    // A root that does not exist: fails after the temporary file exists.
    fs::write(&dest, b"previous").unwrap();
    let err = write_tree_to_file(&tmp.path().join("missing"), &dest, &o).unwrap_err();
    assert!(matches!(err, TarError::Read { .. }), "{err:?}");
    assert_eq!(read(&dest), b"previous");
    assert_eq!(leftovers(&outdir), Vec::<String>::new());

    // A failure in the middle of the walk, after entries were written:
    // /proc files claim size 0 but have content.
    let err = write_tree_to_file(Path::new("/proc/self/fdinfo"), &dest, &o).unwrap_err();
    assert!(matches!(&err, TarError::Changed { what: "it grew", .. }), "{err:?}");
    assert_eq!(read(&dest), b"previous");
    assert_eq!(leftovers(&outdir), Vec::<String>::new());

    // A root given as a dangling symlink: the error names it.
    let dangling = tmp.path().join("dangling");
    std::os::unix::fs::symlink("does-not-exist", &dangling).unwrap();
    let err = write_tree_to_file(&dangling, &dest, &o).unwrap_err();
    assert!(
        matches!(&err, TarError::Read { path, .. } if path == &dangling),
        "{err:?}"
    );
    assert_eq!(read(&dest), b"previous");
    assert_eq!(leftovers(&outdir), Vec::<String>::new());

    // Success replaces the old file, leaves nothing else, mode 0644 - umask.
    let stats = write_tree_to_file(&tree, &dest, &o).unwrap();
    assert_eq!(stats.bytes_out, fs::metadata(&dest).unwrap().len());
    assert_eq!(leftovers(&outdir), Vec::<String>::new());
    let mode = fs::metadata(&dest).unwrap().mode() & 0o777;
    assert_eq!(mode & 0o600, 0o600, "{mode:o}");
    assert_eq!(mode & 0o133, 0, "{mode:o}");

    // A destination inside the tree: its temporary file is not archived.
    let inside = tree.join("self.tar");
    write_tree_to_file(&tree, &inside, &Options::default()).unwrap();
    let names: Vec<Vec<u8>> = tar::Archive::new(&read(&inside)[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    assert_eq!(names, vec![b"./".to_vec(), b"a".to_vec()]);
}

#[test]
fn file_larger_than_8_gib_uses_pax_size() {
    // A sparse file of 8 GiB + 1 byte, streamed into a sink that keeps only
    // the headers: exercises the pax `size` record and proves files are
    // streamed, not read into memory.
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("huge");
    let f = fs::File::create(&big).unwrap();
    let size = 8u64 * 1024 * 1024 * 1024 + 1;
    f.set_len(size).unwrap();
    drop(f);

    struct Head {
        kept: Vec<u8>,
        total: u64,
    }
    impl std::io::Write for Head {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = 8192usize.saturating_sub(self.kept.len());
            self.kept.extend_from_slice(&buf[..room.min(buf.len())]);
            self.total += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut head = Head {
        kept: Vec::new(),
        total: 0,
    };
    let stats = write_tree(tmp.path(), &mut head, &Options::default()).unwrap();
    assert_eq!(stats.bytes_in, size);
    // "./", then the pax header, its records and the ustar header of "huge",
    // the data padded to a block, the two zero blocks.
    assert_eq!(head.total, 512 + 3 * 512 + size + 511 + 1024);

    let mut ar = tar::Archive::new(&head.kept[..]);
    let mut entries = ar.entries().unwrap();
    let root = entries.next().unwrap().unwrap();
    assert_eq!(root.path_bytes().as_ref(), b"./");
    let mut e = entries.next().unwrap().unwrap();
    assert_eq!(e.path_bytes().as_ref(), b"huge");
    assert_eq!(e.size(), size);
    let size_record = e
        .pax_extensions()
        .unwrap()
        .unwrap()
        .map(|x| x.unwrap())
        .find(|x| x.key_bytes() == b"size")
        .map(|x| x.value_bytes().to_vec());
    assert_eq!(size_record.as_deref(), Some(size.to_string().as_bytes()));
}
