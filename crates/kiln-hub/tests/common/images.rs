//! Source images for upload tests: tar archives written here block by
//! block (hostile ones included), and real squashfs and erofs images made
//! by mksquashfs and mkfs.erofs.

use std::path::Path;
use std::process::Command;

/// One raw ustar entry: (name, type flag, link name, data, declared size
/// when not the data's).
pub type Raw<'a> = (&'a str, u8, &'a str, &'a [u8], Option<u64>);

/// A tar archive of `entries`, with the two closing zero blocks.
pub fn tar_of(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data, declared) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = width - 1);
            h[at..at + width].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, 0o644);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, declared.unwrap_or(data.len() as u64));
        octal(&mut h, 136, 12, 0);
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h, 329, 8, 1);
        octal(&mut h, 337, 8, 3);
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A valid tar image holding `content` as one file.
pub fn tar_image(content: &[u8]) -> Vec<u8> {
    tar_of(&[("etc/", b'5', "", b"", None), ("etc/data", b'0', "", content, None)])
}

fn tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("image-root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::fs::write(root.join("etc/os-release"), "ID=test\n").expect("write");
    for i in 0..50 {
        std::fs::write(root.join(format!("usr/bin/t{i}")), format!("{i}\n").repeat(i + 1)).expect("write");
    }
    root
}

fn made(cmd: &mut Command, out: &Path) -> Vec<u8> {
    let st = cmd.status().expect("the image tool runs");
    assert!(st.success(), "{cmd:?}");
    std::fs::read(out).expect("read the image")
}

/// A real squashfs image.
pub fn squashfs(dir: &Path) -> Vec<u8> {
    let out = dir.join("real.squashfs");
    let _ = std::fs::remove_file(&out);
    made(
        Command::new("mksquashfs")
            .arg(tree(dir))
            .arg(&out)
            .args(["-noappend", "-quiet", "-no-progress"]),
        &out,
    )
}

/// A real erofs image.
pub fn erofs(dir: &Path) -> Vec<u8> {
    let out = dir.join("real.erofs");
    let _ = std::fs::remove_file(&out);
    made(Command::new("mkfs.erofs").arg("--quiet").arg(&out).arg(tree(dir)), &out)
}

/// A real ISO 9660 medium in Debian's live layout (xorriso), or with
/// `live` false a medium without a live system.
pub fn iso(dir: &Path, live: bool) -> Vec<u8> {
    let medium = dir.join(if live { "medium-live" } else { "medium-plain" });
    let _ = std::fs::remove_dir_all(&medium);
    std::fs::create_dir_all(medium.join("live")).expect("mkdir");
    if live {
        std::fs::write(medium.join("live/filesystem.squashfs"), squashfs(dir)).expect("write");
    } else {
        std::fs::write(medium.join("README"), "no live system\n").expect("write");
    }
    let out = dir.join("real.iso");
    let _ = std::fs::remove_file(&out);
    made(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-r", "-V", "TEST", "-o"])
            .arg(&out)
            .arg(&medium)
            .stderr(std::process::Stdio::null()),
        &out,
    )
}

/// Broken and hostile images, each with (part of) the reason it is refused.
pub fn refused(dir: &Path) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let sq = squashfs(dir);
    let len = sq.len() as u64;
    let used = u64::from_le_bytes(sq[40..48].try_into().expect("8 bytes")) as usize;
    let mut tiny = b"hsqs".to_vec();
    tiny.resize(200, 0);
    let mut log = sq.clone();
    log[22..24].copy_from_slice(&9u16.to_le_bytes());
    let mut ids = sq.clone();
    ids[48..56].copy_from_slice(&(len + 8192).to_le_bytes());
    let ef = erofs(dir);
    let short_erofs = ef[..ef.len() / 2].to_vec();
    let mut bad_sum = ef.clone();
    bad_sum[1024 + 16] ^= 1;
    let medium = iso(dir, true);
    let short_iso = medium[..medium.len() / 2].to_vec();
    let plain_iso = iso(dir, false);
    vec![
        ("truncated ISO", short_iso, "truncated?"),
        ("ISO without a live system", plain_iso, "no live squashfs on the medium"),
        ("200-byte squashfs", tiny, "squashfs version 0.0"),
        ("squashfs block_log", log, "block_log (9) does not match its block size"),
        ("squashfs id table past the end", ids, "id_table_start"),
        (
            "truncated squashfs",
            sq[..used - 64].to_vec(),
            "past the end of the file",
        ),
        ("truncated erofs", short_erofs, "truncated?"),
        ("erofs checksum", bad_sum, "the superblock's checksum"),
        (
            "tar ..",
            tar_of(&[("../x", b'0', "", b"x", None)]),
            "entry `../x` has a `..` component",
        ),
        (
            "tar /abs",
            tar_of(&[("/abs", b'0', "", b"x", None)]),
            "entry `/abs` has an absolute path",
        ),
        (
            "tar device",
            tar_of(&[("etc/tty", b'3', "", b"", None)]),
            "is a device node outside /dev",
        ),
        (
            "tar hard link out",
            tar_of(&[("x", b'1', "../../etc/passwd", b"", None)]),
            "is a hard link to `../../etc/passwd`",
        ),
        (
            "tar symlink escape",
            tar_of(&[("up", b'2', "../..", b"", None)]),
            "is a symlink to `../..`, outside the archive",
        ),
        (
            "tar through a symlink",
            tar_of(&[("etc", b'2', "/tmp", b"", None), ("etc/x", b'0', "", b"x", None)]),
            "would be written through a symlink",
        ),
        (
            "tar bomb",
            tar_of(&[("big", b'0', "", b"", Some(0o77_777_777_777))]),
            "declares 8589934591 bytes of data, which takes the archive past its limit of 1073741824 bytes",
        ),
        (
            "empty tar.gz",
            vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "no entries",
        ),
        (
            "junk",
            b"not an image at all".to_vec(),
            "not a squashfs, erofs, ISO 9660 or tar",
        ),
    ]
}
