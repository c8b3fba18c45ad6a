//! `kiln image import` checks an image before it enters the catalog
//! (docs/update.md): broken and hostile images are refused with what is
//! wrong and where, and nothing is stored; valid ones still import.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{kiln, run};

fn sh(cmd: &str, dir: &Path) {
    let st = Command::new("sh")
        .arg("-ec")
        .arg(cmd)
        .current_dir(dir)
        .status()
        .expect("sh");
    assert!(st.success(), "{cmd}");
}

/// A tar written by Python's tarfile: `members` is Python code adding
/// entries to `t`.
fn python_tar(dir: &Path, name: &str, members: &str) -> PathBuf {
    let path = dir.join(name);
    let code = format!(
        "import tarfile,io,sys\nt=tarfile.open(sys.argv[1],'w',format=tarfile.USTAR_FORMAT)\n\
         def add(n,kind,link='',data=b'',size=None):\n    i=tarfile.TarInfo(n); i.type=kind; i.linkname=link\n    \
         i.size=len(data) if size is None else size; t.addfile(i, io.BytesIO(data) if data else None)\n{members}\n\
         t.close()\nif 'bomb' in sys.argv[1]:\n    f=open(sys.argv[1],'r+b'); f.truncate(4096)\n"
    );
    let st = Command::new("python3")
        .arg("-c")
        .arg(code)
        .arg(&path)
        .status()
        .expect("python3");
    assert!(st.success(), "{members}");
    path
}

fn corrupt(src: &Path, dest: PathBuf, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = fs::read(src).expect("read");
    edit(&mut b);
    fs::write(&dest, b).expect("write");
    dest
}

fn catalog_files(cache: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["blobs", "index", "tmp"] {
        if let Ok(rd) = fs::read_dir(cache.join("v1/images").join(d)) {
            out.extend(rd.flatten().map(|e| format!("{d}/{}", e.file_name().to_string_lossy())));
        }
    }
    out
}

#[test]
fn imports_refuse_broken_and_hostile_images() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let cache = d.join("cache");
    sh(
        "mkdir -p root/etc root/usr/bin && echo ID=test > root/etc/os-release && seq 1 5000 > root/usr/bin/data \
         && mksquashfs root good.squashfs -noappend -quiet -no-progress && mkfs.erofs --quiet good.erofs root",
        d,
    );
    let sq = d.join("good.squashfs");
    let len = fs::metadata(&sq).expect("stat").len();
    let ef = d.join("good.erofs");
    let cases: Vec<(PathBuf, String)> =
        vec![
        (
            corrupt(&sq, d.join("tiny.squashfs"), |b| b.truncate(200)),
            "is past the end of the file (200 bytes): truncated?".into(),
        ),
        (
            corrupt(&sq, d.join("log.squashfs"), |b| b[22..24].copy_from_slice(&9u16.to_le_bytes())),
            "not a valid squashfs: the superblock's block_log (9) does not match its block size (131072)".into(),
        ),
        (
            corrupt(&sq, d.join("ids.squashfs"), |b| b[48..56].copy_from_slice(&(len * 2).to_le_bytes())),
            format!("the superblock's id_table_start ({}) is outside the image", len * 2),
        ),
        (
            corrupt(&ef, d.join("short.erofs"), |b| b.truncate(b.len() / 2)),
            "not a valid erofs: ".into(),
        ),
        (
            python_tar(d, "dotdot.tar", "add('../x', tarfile.REGTYPE, data=b'x')"),
            "not a valid tar: hostile archive: entry `../x` has a `..` component (entry 1, header at byte 0".into(),
        ),
        (
            python_tar(d, "abs.tar", "add('etc', tarfile.DIRTYPE)\nadd('/abs', tarfile.REGTYPE, data=b'x')"),
            "entry `/abs` has an absolute path (entry 2, header at byte 512".into(),
        ),
        (
            python_tar(d, "dev.tar", "add('etc/tty', tarfile.CHRTYPE)"),
            "entry `etc/tty` is a device node outside /dev".into(),
        ),
        (
            python_tar(d, "link.tar", "add('x', tarfile.LNKTYPE, '../../etc/passwd')"),
            "entry `x` is a hard link to `../../etc/passwd`, which has a `..` component".into(),
        ),
        (
            python_tar(d, "sym.tar", "add('etc', tarfile.SYMTYPE, '/tmp')\nadd('etc/x', tarfile.REGTYPE, data=b'x')"),
            "entry `etc/x` would be written through a symlink".into(),
        ),
        (
            python_tar(d, "escape.tar", "add('a/up', tarfile.SYMTYPE, '../..')"),
            "entry `a/up` is a symlink to `../..`, outside the archive".into(),
        ),
        (
            python_tar(d, "bomb.tar", "add('big', tarfile.REGTYPE, size=8*2**30-1)"),
            "entry `big` declares 8589934591 bytes of data, which takes the archive past its limit of 1073741824 bytes"
                .into(),
        ),
    ];
    for (i, (file, reason)) in cases.iter().enumerate() {
        let r = run(kiln()
            .args(["image", "import", "bad", &i.to_string()])
            .arg(file)
            .env("KILN_CACHE_DIR", &cache));
        assert_ne!(r.code, 0, "{}", file.display());
        assert!(
            r.stderr.contains(&format!("{} is refused: ", file.display())) && r.stderr.contains(reason.as_str()),
            "{}: {}",
            file.display(),
            r.stderr
        );
        assert!(r.stderr.contains("nothing was stored"), "{}", r.stderr);
        assert_eq!(catalog_files(&cache), Vec::<String>::new(), "{}", file.display());
        // The client refuses it before any upload, too.
        let r = run(kiln()
            .args(["image", "import", "bad", "1", "--hub", "http://127.0.0.1:9"])
            .arg(file)
            .env("KILN_TOKEN", "x"));
        assert!(
            r.stderr.contains(reason.as_str()) && r.stderr.contains("nothing was uploaded"),
            "{}",
            r.stderr
        );
    }
    for (version, file, format) in [("1", sq, "squashfs"), ("2", ef, "erofs"), ("3", d.join("root"), "tar")] {
        let r = run(kiln()
            .args(["image", "import", "good", version])
            .arg(&file)
            .env("KILN_CACHE_DIR", &cache));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains(&format!("({format}, ")), "{}", r.stdout);
    }
}
