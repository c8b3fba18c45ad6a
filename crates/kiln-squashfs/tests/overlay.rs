//! The rewriter against the real thing: a source image made by mksquashfs,
//! changed through a real overlayfs mount, rewritten, then read back by
//! squashfs-tools and by the kernel and compared with mksquashfs's own
//! image of the merged tree. Needs root (loop and overlay mounts).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_squashfs::{Error, Options, overlay, settings};

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-ec").arg(cmd).output().expect("sh runs");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// Deterministic pseudo-random bytes that compress poorly.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn lower_tree(root: &Path) {
    let w = |p: &str, data: &[u8]| {
        let p = root.join(p);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, data).expect("write");
    };
    w("etc/hostname", b"lower\n");
    w("etc/empty", b"");
    w("etc/os-release", b"NAME=test\nVERSION=1\n");
    w("usr/bin/tool", &noise(1, 50_000));
    w("usr/bin/exact", &noise(2, 4096 * 3));
    w("usr/lib/big", &noise(3, 200_000));
    w("usr/lib/dup1", &noise(4, 9000));
    w("usr/lib/dup2", &noise(4, 9000));
    w("usr/share/text", "compressible text\n".repeat(5000).as_bytes());
    w("var/lib/state", b"state\n");
    w("opt/gone/a", b"a");
    w("opt/gone/sub/b", b"b");
    w("opt/redo/old", b"old");
    w("opt/becomes-dir", b"file");
    w("opt/becomes-file/inner", b"inner");
    w(&format!("names/{}", "n".repeat(255)), b"long name");
    for i in 0..600 {
        w(&format!("many/entry-{i:04}"), format!("{i}\n").as_bytes());
    }
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/lib/tool-link")).expect("link");
    fs::hard_link(root.join("etc/hostname"), root.join("var/lib/hostname-link")).expect("link");
    symlink("../lib/big", root.join("usr/bin/big-link")).expect("symlink");
    symlink("/nonexistent/target", root.join("etc/dangling")).expect("symlink");
    sh(&format!(
        "cd {r} && truncate -s 1M usr/lib/sparse && printf data | dd of=usr/lib/sparse bs=1 seek=300000 conv=notrunc status=none \
         && mkfifo var/lib/fifo && mknod dev-null c 1 3 && mknod dev-loop b 7 0 \
         && chown 1000:1001 var/lib/state && chown 65534:65534 usr/share/text && chmod 4755 usr/bin/tool \
         && chmod 700 var/lib && setfattr -n user.kiln -v lowervalue etc/os-release \
         && setcap cap_net_raw+ep usr/bin/exact && setfattr -n user.dir -v d usr/share \
         && touch -d @1600000000 etc/hostname",
        r = q(root)
    ));
}

/// The changes an update script makes, through the overlay.
fn change(m: &Path) {
    sh(&format!(
        "cd {m} && echo changed > etc/hostname.new && mv etc/hostname.new etc/hostname \
         && printf more >> usr/lib/big && rm usr/lib/dup2 && rm -r opt/gone \
         && rm -r opt/redo && mkdir opt/redo && echo new > opt/redo/fresh \
         && rm opt/becomes-dir && mkdir opt/becomes-dir && echo x > opt/becomes-dir/x \
         && rm -r opt/becomes-file && echo now-a-file > opt/becomes-file \
         && chmod 600 etc/os-release && chown 1000:1000 var/lib/fifo \
         && mkdir -p new/deep/er && head -c 70000 /dev/urandom > new/deep/er/blob \
         && echo small > new/small && ln new/small new/small-link && ln -s small new/small-sym \
         && rm many/entry-0100 && echo added > many/entry-0100-new \
         && setfattr -n user.added -v yes var/lib/state && setcap cap_sys_admin+ep usr/share/text \
         && rm usr/lib/tool-link && touch -d @1650000000 usr",
        m = q(m)
    ));
}

#[derive(Debug, PartialEq)]
struct Entry {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    nlink: Option<u64>,
    rdev: u64,
    content: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Everything observable about a tree, plus its hard-link groups.
fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Entry>, Vec<Vec<PathBuf>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).expect("stat");
        let rel = p.strip_prefix(root).expect("under root").to_path_buf();
        let ft = md.file_type();
        let (kind, content) = if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&p)
                .expect("readdir")
                .map(|e| e.expect("entry").path())
                .collect();
            names.sort();
            stack.extend(names);
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&p)
                    .expect("readlink")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if ft.is_file() {
            inodes.entry(md.ino()).or_default().push(rel.clone());
            ("file", fs::read(&p).expect("read"))
        } else {
            ("special", Vec::new())
        };
        let mut xattrs = BTreeMap::new();
        if !ft.is_symlink() {
            for name in xattr::list(&p).expect("listxattr") {
                let n = name.to_string_lossy().into_owned();
                let v = xattr::get(&p, &name).expect("getxattr").unwrap_or_default();
                xattrs.insert(n, v);
            }
        }
        out.insert(
            rel,
            Entry {
                kind: kind.into(),
                mode: md.permissions().mode(),
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                nlink: (!ft.is_dir()).then_some(md.nlink()),
                rdev: md.rdev(),
                content,
                xattrs,
            },
        );
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    (out, groups)
}

struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount(args: &str, target: &Path) -> Mounted {
    sh(&format!("mount {args} {}", q(target)));
    Mounted(target.to_path_buf())
}

/// `unsquashfs -lln`, without directory sizes (they depend on how a
/// listing is split into headers, which differs between writers).
fn listing(img: &Path) -> String {
    sh(&format!(
        "unsquashfs -lln {} | sed 1,3d | sed -E 's/^(d[^ ]+ [^ ]+) +[0-9]+ /\\1 - /'",
        q(img)
    ))
}

fn roundtrip(comp: &str, block: u32, extra: &str) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    for s in ["lower", "upper", "work", "merged", "lmnt", "check"] {
        fs::create_dir(d.join(s)).expect("mkdir");
    }
    lower_tree(&d.join("lower"));
    let src = d.join("src.sqfs");
    sh(&format!(
        "mksquashfs {} {} -noappend -quiet -xattrs -b {block} -comp {comp} {extra} >/dev/null",
        q(&d.join("lower")),
        q(&src)
    ));
    let before = sh(&format!("sha256sum {}", q(&src)));
    let set = settings(&src).expect("settings");
    assert_eq!(set.compressor.name(), comp);
    assert_eq!(set.block_size, block);

    let lm = mount(&format!("-t squashfs -o loop,ro {}", q(&src)), &d.join("lmnt"));
    let ovl = mount(
        &format!(
            "-t overlay overlay -o lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
            d.join("lmnt").display(),
            d.join("upper").display(),
            d.join("work").display()
        ),
        &d.join("merged"),
    );
    change(&d.join("merged"));

    let upper = d.join("upper.sqfs");
    sh(&format!(
        "mksquashfs {} {} -noappend -quiet -xattrs {} >/dev/null",
        q(&d.join("upper")),
        q(&upper),
        set.mksquashfs_args.join(" ")
    ));
    let out = d.join("out.sqfs");
    let stats = overlay(
        &src,
        &upper,
        &out,
        &Options {
            source_date_epoch: None,
        },
    )
    .expect("overlay");
    assert!(stats.reused_bytes > 50_000, "{stats:?}");
    assert!(stats.new_bytes > 60_000, "{stats:?}");

    // mksquashfs's own image of the merged tree lists the same.
    let reference = d.join("ref.sqfs");
    sh(&format!(
        "mksquashfs {} {} -noappend -quiet -xattrs {} >/dev/null",
        q(&d.join("merged")),
        q(&reference),
        set.mksquashfs_args.join(" ")
    ));
    let (got, want) = (listing(&out), listing(&reference));
    let diff: Vec<String> = got
        .lines()
        .zip(want.lines())
        .filter(|(g, w)| g != w)
        .map(|(g, w)| format!("got  {g}\nwant {w}"))
        .collect();
    assert!(
        diff.is_empty() && got.lines().count() == want.lines().count(),
        "{}",
        diff.join("\n")
    );
    sh(&format!("unsquashfs -s {} >/dev/null", q(&out)));

    // The kernel reads it back exactly as it reads mksquashfs's image of
    // the merged tree (not the overlay itself: overlayfs keeps reporting a
    // lower file's old link count).
    drop(ovl);
    drop(lm);
    let want = {
        let _m = mount(&format!("-t squashfs -o loop,ro {}", q(&reference)), &d.join("check"));
        snapshot(&d.join("check"))
    };
    let m = mount(&format!("-t squashfs -o loop,ro {}", q(&out)), &d.join("check"));
    let got = snapshot(&d.join("check"));
    assert_eq!(got.1, want.1, "hard-link groups");
    for (path, w) in &want.0 {
        let g = got.0.get(path).unwrap_or_else(|| panic!("{} missing", path.display()));
        assert_eq!(g, w, "{}", path.display());
    }
    assert_eq!(got.0.len(), want.0.len());
    assert_eq!(got.0[Path::new("usr/bin/tool")].nlink, Some(1));
    assert_eq!(got.0[Path::new("new/small")].nlink, Some(2));
    // Lookups by name in a large directory, through the kernel.
    assert_eq!(fs::read(d.join("check/many/entry-0599")).expect("lookup"), b"599\n");
    assert!(!d.join("check/many/entry-0100").exists());
    drop(m);

    // unsquashfs extracts it too, xattrs included.
    sh(&format!(
        "unsquashfs -q -n -d {} {} >/dev/null",
        q(&d.join("x")),
        q(&out)
    ));
    assert_eq!(
        xattr::get(d.join("x/var/lib/state"), "user.added").expect("xattr"),
        Some(b"yes".to_vec())
    );
    // The source is untouched.
    assert_eq!(sh(&format!("sha256sum {}", q(&src))), before);

    // Rewriting an update again (the output as the next source) works, and
    // the epoch clamps every time.
    let again = d.join("again.sqfs");
    overlay(
        &out,
        &upper,
        &again,
        &Options {
            source_date_epoch: Some(1_610_000_000),
        },
    )
    .expect("second overlay");
    let m = mount(&format!("-t squashfs -o loop,ro {}", q(&again)), &d.join("check"));
    let (snap, _) = snapshot(&d.join("check"));
    assert!(snap.values().all(|e| e.mtime <= 1_610_000_000));
    assert_eq!(
        snap[Path::new("etc/hostname")].mtime,
        1_610_000_000.min(snap[Path::new("etc/hostname")].mtime)
    );
    assert_eq!(fs::read(d.join("check/etc/hostname")).expect("read"), b"changed\n");
    drop(m);
}

#[test]
fn gzip() {
    roundtrip("gzip", 4096, "");
}

#[test]
fn xz_with_a_small_dictionary() {
    roundtrip("xz", 16384, "-Xdict-size 8192");
}

#[test]
fn lz4() {
    roundtrip("lz4", 4096, "-Xhc");
}

#[test]
fn zstd_exportable_no_duplicates() {
    roundtrip("zstd", 4096, "-no-duplicates");
}

#[test]
fn uncompressed_metadata_and_no_fragments() {
    roundtrip("zstd", 8192, "-noI -noX -no-fragments -no-exports");
}

#[test]
fn lzo_is_left_to_mksquashfs() {
    let t = tempfile::tempdir().expect("tempdir");
    fs::write(t.path().join("f"), b"x").expect("write");
    let img = t.path().join("i.sqfs");
    sh(&format!(
        "mksquashfs {} {} -noappend -quiet -comp lzo >/dev/null",
        q(&t.path().join("f")),
        q(&img)
    ));
    assert!(matches!(settings(&img), Err(Error::Unsupported(_))));
}

#[test]
fn damaged_images_fail_cleanly() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    fs::create_dir(d.join("tree")).expect("mkdir");
    lower_tree(&d.join("tree"));
    let img = d.join("i.sqfs");
    sh(&format!(
        "mksquashfs {} {} -noappend -quiet -xattrs -b 4096 >/dev/null",
        q(&d.join("tree")),
        q(&img)
    ));
    let bytes = fs::read(&img).expect("read");
    let len = u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes")) as usize;
    // Truncations and flipped bytes across the image: an error or a
    // well-formed result, never a panic or a hang.
    for (i, cut) in [
        0,
        50,
        96,
        200,
        len / 3,
        len / 2,
        len - 5000,
        len - 100,
        len - 40,
        len - 4,
    ]
    .into_iter()
    .enumerate()
    {
        let p = d.join(format!("cut{i}.sqfs"));
        fs::write(&p, &bytes[..cut.min(len)]).expect("write");
        let r = overlay(
            &p,
            &img,
            &d.join("out.sqfs"),
            &Options {
                source_date_epoch: None,
            },
        );
        assert!(r.is_err(), "truncated at {cut}");
    }
    for step in 1..40 {
        let mut b = bytes.clone();
        let at = len - (len / 40) * step;
        b[at] ^= 0x5a;
        let p = d.join("flip.sqfs");
        fs::write(&p, &b).expect("write");
        let _ = overlay(
            &p,
            &img,
            &d.join("out.sqfs"),
            &Options {
                source_date_epoch: None,
            },
        );
    }
}
