//! Checking a source image before it enters a catalog (docs/update.md): the
//! local one (`kiln image import`) and the hub's. A broken or hostile image
//! is refused there, with what is wrong and where, instead of failing later
//! in `kiln update`.
//!
//! * squashfs: the superblock, every lookup table and the whole inode and
//!   directory tree are read, and every reference must lie inside the image
//!   (`kiln_squashfs::check`; file data is not decompressed);
//! * erofs: the superblock (magic, checksum, block size, sizes within the
//!   file) and the root directory's inode;
//! * tar, tar.zst, tar.xz, tar.gz: every header is read through the safe
//!   extractor's rules and limits (`kiln_tar::extract::scan`), writing
//!   nothing;
//! * ISO 9660: the primary volume descriptor, then the tree as xorriso
//!   lists it (never mounted), which must hold a live system in a layout
//!   `kiln update` knows (Debian live or mkimage-profiles).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::catalog::Format;

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidImage {
    #[error("not a squashfs, erofs, ISO 9660 or tar (optionally zstd, xz or gzip compressed) image")]
    Unknown,
    #[error("not a valid {}: {message}", format.ext())]
    Broken { format: Format, message: String },
    #[error("cannot read the image: {0}")]
    Io(#[source] io::Error),
}

/// What the check found, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub format: Format,
    /// E.g. "9700 inodes" or "1200 entries, 210 MB of files".
    pub summary: String,
}

/// The first bytes [`Format::detect`] needs (an ISO's volume descriptor
/// identifier ends there).
pub const HEAD: usize = 32_774;

/// Detects and checks the image file at `path`.
pub fn check(path: &Path) -> Result<Checked, InvalidImage> {
    let f = File::open(path).map_err(InvalidImage::Io)?;
    check_file(f)
}

/// Detects and checks an open image file.
pub fn check_file(f: File) -> Result<Checked, InvalidImage> {
    let len = f.metadata().map_err(InvalidImage::Io)?.len();
    let mut head = vec![0u8; HEAD.min(len as usize)];
    f.read_exact_at(&mut head, 0).map_err(InvalidImage::Io)?;
    let format = Format::detect(&head).ok_or(InvalidImage::Unknown)?;
    let broken = |message: String| InvalidImage::Broken { format, message };
    let summary = match format {
        Format::Squashfs => {
            let s = kiln_squashfs::check_file(f).map_err(|e| broken(squashfs_message(e)))?;
            if s.tree_checked {
                format!("{} inodes, {} bytes of files", s.inodes, s.file_bytes)
            } else {
                "superblock only: kiln cannot read this compressor's metadata".to_string()
            }
        }
        Format::Erofs => erofs(&f, len).map_err(broken)?,
        Format::Iso => {
            // xorriso reads the open file through its descriptor.
            use std::os::fd::AsRawFd;
            let path = std::path::PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()));
            crate::iso::check(&f, &path, len).map_err(broken)?.1
        }
        Format::Tar | Format::TarZst | Format::TarXz | Format::TarGz => {
            let limits = kiln_tar::extract::Limits::for_source(len);
            let stream = kiln_tar::extract::decompressed(f).map_err(|e| broken(e.to_string()))?;
            let s = kiln_tar::extract::scan(stream, &limits).map_err(|e| broken(e.to_string()))?;
            if s.entries == 0 {
                return Err(broken("the archive holds no entries".into()));
            }
            format!("{} entries, {} bytes of files", s.entries, s.bytes)
        }
    };
    Ok(Checked { format, summary })
}

fn squashfs_message(e: kiln_squashfs::Error) -> String {
    match e {
        kiln_squashfs::Error::Format(m) => m,
        e => e.to_string(),
    }
}

const EROFS_SB: u64 = 1024;
const EROFS_FEATURE_COMPAT_SB_CHKSUM: u32 = 1;

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// CRC32C (Castagnoli) as the kernel's `crc32c(~0, ...)`: no final inversion.
fn crc32c_raw(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The erofs superblock and root inode, as the kernel checks them at mount,
/// plus: every size and address inside the file.
fn erofs(f: &File, len: u64) -> Result<String, String> {
    let inside = |pos: u64, n: u64| -> Result<(), String> {
        if pos.checked_add(n).is_none_or(|e| e > len) {
            return Err(format!(
                "{n} bytes at byte {pos} are past the end of the file ({len} bytes): truncated?"
            ));
        }
        Ok(())
    };
    let read = |pos: u64, n: usize| -> Result<Vec<u8>, String> {
        inside(pos, n as u64)?;
        let mut b = vec![0u8; n];
        f.read_exact_at(&mut b, pos)
            .map_err(|e| format!("reading byte {pos}: {e}"))?;
        Ok(b)
    };
    let sb = read(EROFS_SB, 128)?;
    let bits = sb[12];
    if !(9..=16).contains(&bits) {
        return Err(format!(
            "the superblock's block size (2^{bits} bytes) is not 512 bytes to 64 KiB"
        ));
    }
    let blksz = 1u64 << bits;
    if le32(&sb, 8) & EROFS_FEATURE_COMPAT_SB_CHKSUM != 0 {
        let n = if blksz > EROFS_SB { blksz - EROFS_SB } else { blksz };
        let mut block = read(EROFS_SB, n as usize)?;
        let want = le32(&block, 4);
        block[4..8].fill(0);
        let got = crc32c_raw(&block);
        if got != want {
            return Err(format!(
                "the superblock's checksum is {want:#010x}, its content's {got:#010x}"
            ));
        }
    }
    let blocks = u64::from(le32(&sb, 36));
    if blocks.saturating_mul(blksz) > len {
        return Err(format!(
            "the superblock claims {blocks} blocks of {blksz} bytes, the file holds {len} bytes: truncated?"
        ));
    }
    let extra_devices = le16(&sb, 86);
    if extra_devices != 0 {
        return Err(format!(
            "the image needs {extra_devices} extra devices; a source image is one file"
        ));
    }
    for (name, addr) in [("meta_blkaddr", le32(&sb, 40)), ("xattr_blkaddr", le32(&sb, 44))] {
        if u64::from(addr) * blksz >= len {
            return Err(format!("the superblock's {name} ({addr}) is past the end of the file"));
        }
    }
    let root_nid = le16(&sb, 14);
    let root = u64::from(le32(&sb, 40)) * blksz + u64::from(root_nid) * 32;
    let inode = read(root, 32)?;
    let i_format = le16(&inode, 0);
    let mode = le16(&inode, 4);
    if u32::from(mode) & 0o170000 != 0o040000 {
        return Err(format!(
            "the root inode (nid {root_nid}, byte {root}) is not a directory (mode {mode:#o})"
        ));
    }
    let extended = i_format & 1 != 0;
    let (size, isize) = if extended {
        let b = read(root, 64)?;
        (u64::from_le_bytes(b[8..16].try_into().map_err(|_| "inode size")?), 64)
    } else {
        (u64::from(le32(&inode, 8)), 32)
    };
    match (i_format >> 1) & 7 {
        // Plain: the directory's blocks are elsewhere.
        0 => inside(u64::from(le32(&inode, 16)) * blksz, size).map_err(|e| format!("the root directory: {e}"))?,
        // Inline: its data (the tail) follows the inode.
        2 => inside(root + isize, size % blksz).map_err(|e| format!("the root directory: {e}"))?,
        _ => {}
    }
    Ok(format!("{blocks} blocks of {blksz} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(!crc32c_raw(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn short_and_unknown_files_are_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("x");
        std::fs::write(&p, b"hello").expect("write");
        assert!(matches!(check(&p), Err(InvalidImage::Unknown)));
        std::fs::write(&p, b"").expect("write");
        assert!(matches!(check(&p), Err(InvalidImage::Unknown)));
    }
}
