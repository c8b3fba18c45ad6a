//! Checking an untrusted squashfs image without mounting it (docs/update.md):
//! the superblock, every lookup table, the whole inode and directory tree,
//! and that every data block, fragment and metadata reference lies inside
//! the image. File data is not decompressed.

use std::fs::File;
use std::path::Path;

use crate::read::{self, BLOCK_UNCOMPRESSED};
use crate::{Error, Kind, Tree};

/// What a checked image holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct inodes reached from the root (hard links count once).
    pub inodes: u64,
    pub files: u64,
    pub directories: u64,
    /// The bytes of file data the files add up to (holes included).
    pub file_bytes: u64,
    /// The image's own size (`bytes_used`).
    pub bytes_used: u64,
    /// Whether the tables and the tree were read: not for a compressor
    /// kiln's reader lacks (lzo, lzma), whose images get the superblock's
    /// checks only.
    pub tree_checked: bool,
}

/// Checks the squashfs image at `path`.
pub fn check(path: &Path) -> Result<Summary, Error> {
    let f = File::open(path).map_err(|e| Error::Io(format!("opening {}", path.display()), e))?;
    check_file(f)
}

/// Checks an open squashfs image.
pub fn check_file(file: File) -> Result<Summary, Error> {
    let img = match read::Image::open(file) {
        Ok(img) => img,
        Err(Error::Unsupported(_)) => return Ok(Summary::default()),
        Err(e) => return Err(e),
    };
    let end = img.sb.bytes_used;
    let bs = u64::from(img.sb.block_size);
    let stored = |size: u32| u64::from(size & !BLOCK_UNCOMPRESSED);
    for (i, f) in img.fragments.iter().enumerate() {
        if stored(f.size) > bs || f.start.checked_add(stored(f.size)).is_none_or(|e| e > end) || f.start < 96 {
            return Err(Error::Format(format!(
                "fragment {i} ({} bytes at byte {}) is outside the image ({end} bytes) or larger than a block",
                stored(f.size),
                f.start
            )));
        }
    }
    let mut tree = Tree::default();
    img.load(&mut tree, 0)?;
    let mut sum = Summary {
        inodes: tree.nodes.len() as u64,
        bytes_used: end,
        tree_checked: true,
        ..Summary::default()
    };
    for n in &tree.nodes {
        match &n.kind {
            Kind::Dir(_) => sum.directories += 1,
            Kind::File {
                blocks_start,
                file_size,
                block_sizes,
                fragment,
                ..
            } => {
                sum.files += 1;
                sum.file_bytes += file_size;
                let mut pos = *blocks_start;
                for (i, b) in block_sizes.iter().enumerate() {
                    if stored(*b) > bs || *b & !(BLOCK_UNCOMPRESSED | (BLOCK_UNCOMPRESSED - 1)) != 0 {
                        return Err(Error::Format(format!(
                            "a file's block {i} at byte {pos} has a bad size field {b:#x}"
                        )));
                    }
                    pos = pos.saturating_add(stored(*b));
                }
                if (!block_sizes.is_empty() && *blocks_start < 96) || pos > end {
                    return Err(Error::Format(format!(
                        "a file's data (bytes {blocks_start} to {pos}) is outside the image ({end} bytes)"
                    )));
                }
                if let Some((_, offset)) = fragment {
                    let tail = file_size % bs;
                    if u64::from(*offset) + tail > bs {
                        return Err(Error::Format(format!(
                            "a file's tail ({tail} bytes at offset {offset}) overflows its fragment block"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(sum)
}
