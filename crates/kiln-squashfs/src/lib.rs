//! Rewrites a squashfs image with an overlay's changes, without
//! recompressing what did not change.
//!
//! `kiln update` runs its script on an overlay whose lower layer is the
//! loop-mounted source image. The changes are the upper layer: new and
//! changed files whole, deletions as whiteouts, replaced directories marked
//! opaque. [`overlay`] takes the source image and a squashfs image of that
//! upper layer (made by mksquashfs with the source's settings, so new data
//! is compressed in parallel by the field's tool) and writes the merged
//! image. Data and fragment blocks of both are copied as they are stored,
//! compressed, in long sequential runs; only the metadata (inodes,
//! directories, tables) is rebuilt. Blocks of deleted files are left out, so
//! repeated updates do not grow the image.
//!
//! The result is a plain squashfs 4.0 image the kernel and squashfs-tools
//! read like any other: the same compressor, compressor options, block size
//! and data flags as the source.
//!
//! [`check`] reads an untrusted image's metadata the same way, to refuse a
//! broken one before it is used.

mod check;
mod meta;
mod read;
mod write;

use std::fs::File;
use std::path::Path;

pub use check::{Summary, check, check_file};
pub use meta::Compressor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("malformed squashfs image: {0}")]
    Format(String),
    /// The images use something the rewriter does not handle; the caller
    /// falls back to a full mksquashfs.
    #[error("not supported by the squashfs rewriter: {0}")]
    Unsupported(String),
}

impl Error {
    fn context(self, what: &Path) -> Error {
        match self {
            Error::Format(m) => Error::Format(format!("{}: {m}", what.display())),
            Error::Io(m, e) => Error::Io(format!("{}: {m}", what.display()), e),
            e => e,
        }
    }
}

pub type NodeId = usize;

/// An inode's extended attributes: full names ("security.capability") and
/// values. Shared: the inodes of an image that use one xattr set hold it
/// once.
pub type Xattrs = std::sync::Arc<XattrList>;

/// Extended attributes as (name, value) pairs.
pub type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// One inode of the tree being assembled.
#[derive(Clone, Debug)]
pub struct Node {
    /// Permission bits (the file type is in `kind`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub xattrs: Xattrs,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub enum Kind {
    /// Entries sorted by name, as squashfs stores them.
    Dir(Vec<(Vec<u8>, NodeId)>),
    File {
        /// Which input image holds the data.
        source: usize,
        blocks_start: u64,
        file_size: u64,
        sparse: u64,
        /// Size fields as stored (uncompressed bit included; 0 is a hole).
        block_sizes: Vec<u32>,
        /// The tail's fragment block and offset in it.
        fragment: Option<(read::Fragment, u32)>,
    },
    Symlink(Vec<u8>),
    Device {
        block: bool,
        rdev: u32,
    },
    Fifo,
    Socket,
}

/// An arena of nodes from one or more images.
#[derive(Default)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.nodes.len() - 1
    }
}

/// What [`overlay`] did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Compressed bytes copied from the source image.
    pub reused_bytes: u64,
    /// Compressed bytes copied from the upper layer's image.
    pub new_bytes: u64,
    pub inodes: u32,
}

pub struct Options {
    /// Filesystem time; also the clamp for every inode's mtime.
    pub source_date_epoch: Option<u64>,
}

/// The settings mksquashfs needs so that the upper layer's image can be
/// merged into `source`: compressor, block size and data flags.
pub struct Settings {
    pub compressor: Compressor,
    pub block_size: u32,
    /// Extra mksquashfs arguments reproducing the source's data layout.
    pub mksquashfs_args: Vec<String>,
}

/// Reads the source's settings, or says why it cannot be rewritten.
pub fn settings(source: &Path) -> Result<Settings, Error> {
    let f = File::open(source).map_err(|e| Error::Io(format!("opening {}", source.display()), e))?;
    let img = read::Image::open(f).map_err(|e| e.context(source))?;
    let mut args = vec![
        "-comp".to_string(),
        img.comp.name().to_string(),
        "-b".to_string(),
        img.sb.block_size.to_string(),
    ];
    let fl = img.sb.flags;
    for (bit, arg) in [
        (read::flags::UNCOMPRESSED_DATA, "-noD"),
        (read::flags::UNCOMPRESSED_FRAGMENTS, "-noF"),
        (read::flags::NO_FRAGMENTS, "-no-fragments"),
        (read::flags::ALWAYS_FRAGMENTS, "-always-use-fragments"),
    ] {
        if fl & bit != 0 {
            args.push(arg.to_string());
        }
    }
    if img.comp == Compressor::Xz
        && let Some(raw) = &img.comp_options
        && raw.len() >= 6
    {
        // The kernel sizes its xz dictionary from the source's options: new
        // blocks must not need a larger one.
        let dict = u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]);
        args.extend(["-Xdict-size".to_string(), dict.to_string()]);
    }
    Ok(Settings {
        compressor: img.comp,
        block_size: img.sb.block_size,
        mksquashfs_args: args,
    })
}

/// Writes `dest`: `source` with `upper` (a squashfs image of an overlayfs
/// upper directory, whiteouts and opaque markers included) laid over it.
/// `dest` is written in place; callers write to a temporary name.
pub fn overlay(source: &Path, upper: &Path, dest: &Path, opts: &Options) -> Result<Stats, Error> {
    let open = |p: &Path| -> Result<read::Image, Error> {
        let f = File::open(p).map_err(|e| Error::Io(format!("opening {}", p.display()), e))?;
        read::Image::open(f).map_err(|e| e.context(p))
    };
    let lower = open(source)?;
    let up = open(upper)?;
    if (up.comp, up.sb.block_size) != (lower.comp, lower.sb.block_size) {
        return Err(Error::Unsupported(format!(
            "the upper image uses {} with {}-byte blocks, the source {} with {}-byte blocks",
            up.comp.name(),
            up.sb.block_size,
            lower.comp.name(),
            lower.sb.block_size
        )));
    }
    let mut tree = Tree::default();
    let lroot = lower.load(&mut tree, 0).map_err(|e| e.context(source))?;
    let uroot = up.load(&mut tree, 1).map_err(|e| e.context(upper))?;
    let root = merge_dir(&mut tree, Some(lroot), uroot)?;
    if let Some(epoch) = opts.source_date_epoch {
        let epoch = u32::try_from(epoch).unwrap_or(u32::MAX);
        for n in &mut tree.nodes {
            n.mtime = n.mtime.min(epoch);
        }
    }
    let out = File::create(dest).map_err(|e| Error::Io(format!("creating {}", dest.display()), e))?;
    write::write(&tree, root, &[&lower, &up], out, opts).map_err(|e| e.context(dest))
}

const OVERLAY_PREFIX: &[u8] = b"trusted.overlay.";

fn is_whiteout(n: &Node) -> bool {
    matches!(n.kind, Kind::Device { block: false, rdev: 0 })
}

/// Merges the upper directory `upper` over the lower directory `lower`
/// the way overlayfs presents them; returns the merged directory's node.
fn merge_dir(tree: &mut Tree, lower: Option<NodeId>, upper: NodeId) -> Result<NodeId, Error> {
    let u = tree.nodes[upper].clone();
    for (name, value) in u.xattrs.iter() {
        if name.starts_with(b"trusted.overlay.redirect") || name.starts_with(b"trusted.overlay.metacopy") {
            return Err(Error::Unsupported(format!(
                "the upper layer uses overlayfs {} (value {:?})",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            )));
        }
    }
    let opaque = u
        .xattrs
        .iter()
        .any(|(n, v)| n == b"trusted.overlay.opaque" && v == b"y");
    let Kind::Dir(uentries) = &u.kind else {
        return Err(Error::Format("merging a non-directory".into()));
    };
    let mut entries: Vec<(Vec<u8>, NodeId)> = match lower.map(|l| &tree.nodes[l].kind) {
        Some(Kind::Dir(e)) if !opaque => e.clone(),
        _ => Vec::new(),
    };
    for (name, id) in uentries {
        let pos = entries.binary_search_by(|(n, _)| n.as_slice().cmp(name));
        let node = &tree.nodes[*id];
        if is_whiteout(node) {
            if let Ok(i) = pos {
                entries.remove(i);
            }
            continue;
        }
        let merged = match &node.kind {
            Kind::Dir(_) => {
                let below = pos
                    .ok()
                    .map(|i| entries[i].1)
                    .filter(|l| matches!(tree.nodes[*l].kind, Kind::Dir(_)));
                merge_dir(tree, below, *id)?
            }
            _ => {
                for (n, v) in node.xattrs.iter() {
                    if n.starts_with(b"trusted.overlay.metacopy") || n.starts_with(b"trusted.overlay.redirect") {
                        return Err(Error::Unsupported(format!(
                            "the upper layer uses overlayfs {} (value {:?})",
                            String::from_utf8_lossy(n),
                            String::from_utf8_lossy(v)
                        )));
                    }
                }
                let mut n = tree.nodes[*id].clone();
                if n.xattrs.iter().any(|(k, _)| k.starts_with(OVERLAY_PREFIX)) {
                    std::sync::Arc::make_mut(&mut n.xattrs).retain(|(k, _)| !k.starts_with(OVERLAY_PREFIX));
                    tree.nodes[*id] = n;
                }
                *id
            }
        };
        match pos {
            Ok(i) => entries[i].1 = merged,
            Err(i) => entries.insert(i, (name.clone(), merged)),
        }
    }
    let mut node = u;
    std::sync::Arc::make_mut(&mut node.xattrs).retain(|(k, _)| !k.starts_with(OVERLAY_PREFIX));
    node.kind = Kind::Dir(entries);
    Ok(tree.push(node))
}
