//! Reading a squashfs 4.0 image into kiln's tree: every inode, directory,
//! xattr and id, with file data left where it is (positions, not bytes).

use std::collections::{HashMap, HashSet};
use std::fs::File;

use crate::meta::{Compressor, MetaReader, read_at};
use crate::{Error, Kind, Node, NodeId, Tree, Xattrs};

pub const MAGIC: u32 = 0x7371_7368;
pub const NOT_SET: u64 = u64::MAX;
pub const NO_FRAGMENT: u32 = u32::MAX;
pub const NO_XATTR: u32 = u32::MAX;
/// A data block's size field: stored uncompressed when this bit is set.
pub const BLOCK_UNCOMPRESSED: u32 = 1 << 24;

pub mod flags {
    pub const UNCOMPRESSED_INODES: u16 = 0x0001;
    pub const UNCOMPRESSED_DATA: u16 = 0x0002;
    pub const UNCOMPRESSED_FRAGMENTS: u16 = 0x0008;
    pub const NO_FRAGMENTS: u16 = 0x0010;
    pub const ALWAYS_FRAGMENTS: u16 = 0x0020;
    pub const DUPLICATES: u16 = 0x0040;
    pub const EXPORTABLE: u16 = 0x0080;
    pub const UNCOMPRESSED_XATTRS: u16 = 0x0100;
    pub const NO_XATTRS: u16 = 0x0200;
    pub const COMPRESSOR_OPTIONS: u16 = 0x0400;
    pub const UNCOMPRESSED_IDS: u16 = 0x0800;
}

#[derive(Clone, Debug)]
pub struct SuperBlock {
    pub inode_count: u32,
    pub mod_time: u32,
    pub block_size: u32,
    pub fragment_count: u32,
    pub compression_id: u16,
    pub block_log: u16,
    pub flags: u16,
    pub id_count: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table_start: u64,
    pub xattr_id_table_start: u64,
    pub inode_table_start: u64,
    pub directory_table_start: u64,
    pub fragment_table_start: u64,
    pub export_table_start: u64,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl SuperBlock {
    pub fn parse(b: &[u8; 96]) -> Result<SuperBlock, Error> {
        if u32_at(b, 0) != MAGIC {
            return Err(Error::Format("not a squashfs image (bad magic)".into()));
        }
        let (major, minor) = (u16_at(b, 28), u16_at(b, 30));
        if (major, minor) != (4, 0) {
            // The kernel reads no other version either.
            return Err(Error::Format(format!("squashfs version {major}.{minor}, not 4.0")));
        }
        let sb = SuperBlock {
            inode_count: u32_at(b, 4),
            mod_time: u32_at(b, 8),
            block_size: u32_at(b, 12),
            fragment_count: u32_at(b, 16),
            compression_id: u16_at(b, 20),
            block_log: u16_at(b, 22),
            flags: u16_at(b, 24),
            id_count: u16_at(b, 26),
            root_inode: u64_at(b, 32),
            bytes_used: u64_at(b, 40),
            id_table_start: u64_at(b, 48),
            xattr_id_table_start: u64_at(b, 56),
            inode_table_start: u64_at(b, 64),
            directory_table_start: u64_at(b, 72),
            fragment_table_start: u64_at(b, 80),
            export_table_start: u64_at(b, 88),
        };
        if !sb.block_size.is_power_of_two() || !(4096..=1 << 20).contains(&sb.block_size) {
            return Err(Error::Format(format!("bad block size {}", sb.block_size)));
        }
        Ok(sb)
    }

    /// The tables' positions: inside the `bytes_used` bytes the image
    /// claims, which the file must hold, in mksquashfs's order (inodes,
    /// directories, then the lookup tables).
    pub fn check_layout(&self, len: u64) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Format(m));
        if self.bytes_used > len {
            return bad(format!(
                "the superblock's bytes_used ({}) is past the end of the file ({len} bytes): truncated?",
                self.bytes_used
            ));
        }
        if 1u32.checked_shl(u32::from(self.block_log)) != Some(self.block_size) {
            return bad(format!(
                "the superblock's block_log ({}) does not match its block size ({})",
                self.block_log, self.block_size
            ));
        }
        let end = self.bytes_used;
        let mut tables = vec![
            ("inode_table_start", self.inode_table_start),
            ("directory_table_start", self.directory_table_start),
            ("id_table_start", self.id_table_start),
        ];
        for (name, v) in [
            ("fragment_table_start", self.fragment_table_start),
            ("export_table_start", self.export_table_start),
            ("xattr_id_table_start", self.xattr_id_table_start),
        ] {
            if v != NOT_SET {
                tables.push((name, v));
            }
        }
        for (name, v) in &tables {
            if *v < 96 || *v >= end {
                return bad(format!(
                    "the superblock's {name} ({v}) is outside the image (bytes 96 to {end})"
                ));
            }
        }
        if self.inode_table_start >= self.directory_table_start {
            return bad(format!(
                "the inode table ({}) does not come before the directory table ({})",
                self.inode_table_start, self.directory_table_start
            ));
        }
        if self.root_inode >> 16 >= self.directory_table_start - self.inode_table_start {
            return bad(format!(
                "the root inode's block ({}) is outside the inode table",
                self.root_inode >> 16
            ));
        }
        if self.id_count == 0 {
            return bad("the superblock has no ids (id_count 0)".into());
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> [u8; 96] {
        let mut b = [0u8; 96];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.inode_count.to_le_bytes());
        b[8..12].copy_from_slice(&self.mod_time.to_le_bytes());
        b[12..16].copy_from_slice(&self.block_size.to_le_bytes());
        b[16..20].copy_from_slice(&self.fragment_count.to_le_bytes());
        b[20..22].copy_from_slice(&self.compression_id.to_le_bytes());
        b[22..24].copy_from_slice(&self.block_log.to_le_bytes());
        b[24..26].copy_from_slice(&self.flags.to_le_bytes());
        b[26..28].copy_from_slice(&self.id_count.to_le_bytes());
        b[28..30].copy_from_slice(&4u16.to_le_bytes());
        b[30..32].copy_from_slice(&0u16.to_le_bytes());
        for (i, v) in [
            self.root_inode,
            self.bytes_used,
            self.id_table_start,
            self.xattr_id_table_start,
            self.inode_table_start,
            self.directory_table_start,
            self.fragment_table_start,
            self.export_table_start,
        ]
        .into_iter()
        .enumerate()
        {
            b[32 + i * 8..40 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// One fragment block of an image: position and size field (with its
/// uncompressed bit).
#[derive(Clone, Copy, Debug)]
pub struct Fragment {
    pub start: u64,
    pub size: u32,
}

/// An opened image: its superblock, compressor options and tables.
pub struct Image {
    pub file: File,
    pub len: u64,
    pub sb: SuperBlock,
    pub comp: Compressor,
    /// The raw compressor-options metadata block (header included), if any.
    pub comp_options: Option<Vec<u8>>,
    pub fragments: Vec<Fragment>,
    pub ids: Vec<u32>,
}

impl Image {
    pub fn open(file: File) -> Result<Image, Error> {
        let len = file
            .metadata()
            .map_err(|e| Error::Io("reading the image's size".into(), e))?
            .len();
        let mut b = [0u8; 96];
        read_at(&file, &mut b, 0, len)?;
        let sb = SuperBlock::parse(&b)?;
        sb.check_layout(len)?;
        let comp = Compressor::from_id(sb.compression_id)?;
        let comp_options = if sb.flags & flags::COMPRESSOR_OPTIONS != 0 {
            let mut h = [0u8; 2];
            read_at(&file, &mut h, 96, len)?;
            let size = usize::from(u16::from_le_bytes(h) & 0x7fff);
            let mut raw = vec![0u8; 2 + size];
            read_at(&file, &mut raw, 96, len)?;
            if u16::from_le_bytes(h) & 0x8000 == 0 {
                return Err(Error::Unsupported("compressed compressor options".into()));
            }
            Some(raw)
        } else {
            None
        };
        let mut img = Image {
            file,
            len,
            sb,
            comp,
            comp_options,
            fragments: Vec::new(),
            ids: Vec::new(),
        };
        let frag_count = if img.sb.flags & flags::NO_FRAGMENTS != 0 || img.sb.fragment_table_start == NOT_SET {
            0
        } else {
            img.sb.fragment_count as usize
        };
        let raw = img.table(img.sb.fragment_table_start, frag_count, 16)?;
        img.fragments = raw
            .chunks_exact(16)
            .map(|c| Fragment {
                start: u64_at(c, 0),
                size: u32_at(c, 8),
            })
            .collect();
        let raw = img.table(img.sb.id_table_start, usize::from(img.sb.id_count), 4)?;
        img.ids = raw.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
        Ok(img)
    }

    /// A table of `count` fixed-size entries stored in metadata blocks whose
    /// positions are listed at `start`.
    fn table(&self, start: u64, count: usize, entry: usize) -> Result<Vec<u8>, Error> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let bytes = count * entry;
        // A table's entries each stand for something the image holds (a
        // fragment block, a set of xattrs, an id): never more than a few
        // bytes of table per byte of image.
        if bytes as u64 > self.len.saturating_mul(4).saturating_add(1 << 16) {
            return Err(Error::Format(format!(
                "the table at byte {start} claims {count} entries, more than a {}-byte image holds",
                self.len
            )));
        }
        let blocks = bytes.div_ceil(crate::meta::METADATA_SIZE);
        let mut index = vec![0u8; blocks * 8];
        read_at(&self.file, &mut index, start, self.len)?;
        let mut r = MetaReader::new(&self.file, self.comp, self.len);
        let mut out = Vec::with_capacity(bytes);
        for (i, p) in index.chunks_exact(8).enumerate() {
            let want = (bytes - out.len()).min(crate::meta::METADATA_SIZE);
            let (b, _, _) = r.read(u64_at(p, 0), 0, want).map_err(|e| match e {
                Error::Format(m) => Error::Format(format!("table at {start}, block {i}: {m}")),
                e => e,
            })?;
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    /// Every xattr set, by xattr index: full names ("user.x") with values.
    fn xattr_sets(&self) -> Result<Vec<Xattrs>, Error> {
        if self.sb.xattr_id_table_start == NOT_SET || self.sb.flags & flags::NO_XATTRS != 0 {
            return Ok(Vec::new());
        }
        let mut head = [0u8; 16];
        read_at(&self.file, &mut head, self.sb.xattr_id_table_start, self.len)?;
        let kv_start = u64_at(&head, 0);
        let count = u32_at(&head, 8) as usize;
        let raw = self.table(self.sb.xattr_id_table_start + 16, count, 16)?;
        let mut r = MetaReader::new(&self.file, self.comp, self.len);
        let mut sets = Vec::with_capacity(raw.len() / 16);
        for c in raw.chunks_exact(16) {
            let (xref, n) = (u64_at(c, 0), u32_at(c, 8));
            let (mut pos, mut off) = (kv_start + (xref >> 16), (xref & 0xffff) as usize);
            // Grown as entries are read: `n` is the image's word.
            let mut set = Vec::new();
            for _ in 0..n {
                let (h, p, o) = r.read(pos, off, 4)?;
                let (kind, name_len) = (u16_at(&h, 0), usize::from(u16_at(&h, 2)));
                let (name, p, o) = r.read(p, o, name_len)?;
                let (vh, p, o) = r.read(p, o, 4)?;
                let vlen = u32_at(&vh, 0) as usize;
                let (mut value, p, o) = r.read(p, o, vlen)?;
                (pos, off) = (p, o);
                if kind & 0x100 != 0 {
                    // Stored out of line: the value is a reference to it.
                    if value.len() != 8 {
                        return Err(Error::Format("bad out-of-line xattr reference".into()));
                    }
                    let vref = u64_at(&value, 0);
                    let (vh, p, o) = r.read(kv_start + (vref >> 16), (vref & 0xffff) as usize, 4)?;
                    value = r.read(p, o, u32_at(&vh, 0) as usize)?.0;
                }
                let prefix: &[u8] = match kind & 0xff {
                    0 => b"user.",
                    1 => b"trusted.",
                    2 => b"security.",
                    k => return Err(Error::Format(format!("unknown xattr prefix {k}"))),
                };
                set.push(([prefix, &name].concat(), value));
            }
            sets.push(Xattrs::new(set));
        }
        Ok(sets)
    }

    /// Loads the whole directory tree into `tree` (nodes tagged with
    /// `source`); returns the root. Inodes reached twice (hard links) are
    /// one node.
    pub fn load(&self, tree: &mut Tree, source: usize) -> Result<NodeId, Error> {
        let xattrs = self.xattr_sets()?;
        let mut l = Loader {
            budget: self
                .len
                .saturating_mul(METADATA_READS_PER_BYTE)
                .saturating_add(64 << 20),
            img: self,
            inodes: MetaReader::new(&self.file, self.comp, self.len),
            dirs: MetaReader::new(&self.file, self.comp, self.len),
            xattrs,
            seen: HashMap::new(),
            ancestors: HashSet::new(),
            source,
            depth: 0,
        };
        // Directories are loaded recursively: on a thread of its own, with
        // room for the deepest tree allowed whatever the caller's stack.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("squashfs-load".into())
                .stack_size(LOADER_STACK)
                .spawn_scoped(s, || l.inode(tree, self.sb.root_inode))
                .map_err(|e| Error::Io("starting the squashfs loader".into(), e))?
                .join()
                .map_err(|_| Error::Format("the squashfs loader panicked".into()))?
        })
    }
}

/// The loader thread's stack: [`MAX_DEPTH`] nested directories take a few
/// MiB in an unoptimised build; only what is used is committed.
const LOADER_STACK: usize = 256 << 20;

/// How deep directories may nest.
const MAX_DEPTH: usize = 4096;

/// How many bytes of inodes and directory listings loading may read per
/// byte of image (each is read once; metadata compresses far less), plus
/// 64 MiB: a crafted image whose references overlap stops there instead of
/// exhausting the memory.
const METADATA_READS_PER_BYTE: u64 = 64;

struct Loader<'a> {
    /// Bytes of metadata still allowed to be read.
    budget: u64,
    img: &'a Image,
    inodes: MetaReader<'a>,
    dirs: MetaReader<'a>,
    xattrs: Vec<Xattrs>,
    seen: HashMap<u64, NodeId>,
    /// The directories being loaded, root first: none may contain one.
    ancestors: HashSet<u64>,
    source: usize,
    depth: usize,
}

impl Loader<'_> {
    fn spend(&mut self, n: usize) -> Result<(), Error> {
        self.budget = self.budget.checked_sub(n as u64).ok_or_else(|| {
            Error::Format("the inodes and directories read far more metadata than the image holds".into())
        })?;
        Ok(())
    }

    fn id(&self, idx: u16) -> Result<u32, Error> {
        self.img
            .ids
            .get(usize::from(idx))
            .copied()
            .ok_or_else(|| Error::Format(format!("id index {idx} out of range")))
    }

    fn xattr(&self, idx: u32) -> Result<Xattrs, Error> {
        if idx == NO_XATTR {
            return Ok(Xattrs::default());
        }
        self.xattrs
            .get(idx as usize)
            .cloned()
            .ok_or_else(|| Error::Format(format!("xattr index {idx} out of range")))
    }

    fn inode(&mut self, tree: &mut Tree, iref: u64) -> Result<NodeId, Error> {
        if let Some(&id) = self.seen.get(&iref) {
            return Ok(id);
        }
        let table = self.img.sb.inode_table_start;
        self.spend(16)?;
        let (h, mut pos, mut off) = self.inodes.read(table + (iref >> 16), (iref & 0xffff) as usize, 16)?;
        let kind = u16_at(&h, 0);
        let mode = u16_at(&h, 2);
        let uid = self.id(u16_at(&h, 4))?;
        let gid = self.id(u16_at(&h, 6))?;
        let mtime = u32_at(&h, 8);
        let mut read = |n: usize, s: &mut Self| -> Result<Vec<u8>, Error> {
            s.spend(n)?;
            let (b, p, o) = s.inodes.read(pos, off, n)?;
            (pos, off) = (p, o);
            Ok(b)
        };
        let mut xattr = NO_XATTR;
        let node_kind = match kind {
            1 | 8 => {
                let (start, size, doff) = if kind == 1 {
                    let b = read(16, self)?;
                    (u32_at(&b, 0), u32::from(u16_at(&b, 8)), u16_at(&b, 10))
                } else {
                    let b = read(24, self)?;
                    xattr = u32_at(&b, 20);
                    (u32_at(&b, 8), u32_at(&b, 4), u16_at(&b, 18))
                };
                self.ancestors.insert(iref);
                let entries = self.listing(tree, start, doff, size)?;
                self.ancestors.remove(&iref);
                Kind::Dir(entries)
            }
            2 | 9 => {
                let (blocks_start, file_size, fragment, offset, sparse) = if kind == 2 {
                    let b = read(16, self)?;
                    (
                        u64::from(u32_at(&b, 0)),
                        u64::from(u32_at(&b, 12)),
                        u32_at(&b, 4),
                        u32_at(&b, 8),
                        0,
                    )
                } else {
                    let b = read(40, self)?;
                    xattr = u32_at(&b, 36);
                    (
                        u64_at(&b, 0),
                        u64_at(&b, 8),
                        u32_at(&b, 28),
                        u32_at(&b, 32),
                        u64_at(&b, 16),
                    )
                };
                let bs = u64::from(self.img.sb.block_size);
                let blocks = if fragment == NO_FRAGMENT {
                    file_size.div_ceil(bs)
                } else {
                    file_size / bs
                };
                if blocks > self.img.len {
                    return Err(Error::Format("a file claims more blocks than the image holds".into()));
                }
                let b = read(blocks as usize * 4, self)?;
                let block_sizes: Vec<u32> = b.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
                let fragment = if fragment == NO_FRAGMENT {
                    None
                } else {
                    let f = self
                        .img
                        .fragments
                        .get(fragment as usize)
                        .ok_or_else(|| Error::Format(format!("fragment {fragment} out of range")))?;
                    Some((*f, offset))
                };
                Kind::File {
                    source: self.source,
                    blocks_start,
                    file_size,
                    sparse,
                    block_sizes,
                    fragment,
                }
            }
            3 | 10 => {
                let b = read(8, self)?;
                let target = read(u32_at(&b, 4) as usize, self)?;
                if kind == 10 {
                    xattr = u32_at(&read(4, self)?, 0);
                }
                Kind::Symlink(target)
            }
            4 | 5 | 11 | 12 => {
                let b = read(if kind > 10 { 12 } else { 8 }, self)?;
                if kind > 10 {
                    xattr = u32_at(&b, 8);
                }
                Kind::Device {
                    block: kind == 4 || kind == 11,
                    rdev: u32_at(&b, 4),
                }
            }
            6 | 7 | 13 | 14 => {
                let b = read(if kind > 10 { 8 } else { 4 }, self)?;
                if kind > 10 {
                    xattr = u32_at(&b, 4);
                }
                if kind == 6 || kind == 13 {
                    Kind::Fifo
                } else {
                    Kind::Socket
                }
            }
            k => return Err(Error::Format(format!("unknown inode type {k}"))),
        };
        let node = Node {
            mode: mode & 0o7777,
            uid,
            gid,
            mtime,
            xattrs: self.xattr(xattr)?,
            kind: node_kind,
        };
        let id = tree.push(node);
        self.seen.insert(iref, id);
        Ok(id)
    }

    /// A directory's entries, sorted as stored (by name).
    fn listing(
        &mut self,
        tree: &mut Tree,
        start: u32,
        offset: u16,
        size: u32,
    ) -> Result<Vec<(Vec<u8>, NodeId)>, Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::Format("directories nest too deep (a loop?)".into()));
        }
        let mut left = size.saturating_sub(3) as usize;
        let (mut pos, mut off) = (
            self.img.sb.directory_table_start + u64::from(start),
            usize::from(offset),
        );
        let mut refs = Vec::new();
        while left > 0 {
            self.spend(12)?;
            let (h, p, o) = self.dirs.read(pos, off, 12)?;
            (pos, off) = (p, o);
            left = left
                .checked_sub(12)
                .ok_or_else(|| Error::Format("a directory listing is truncated".into()))?;
            let count = u32_at(&h, 0) as usize + 1;
            let block = u64::from(u32_at(&h, 4));
            for _ in 0..count {
                let (e, p, o) = self.dirs.read(pos, off, 8)?;
                let name_len = usize::from(u16_at(&e, 6)) + 1;
                self.spend(8 + name_len)?;
                let (name, p, o) = self.dirs.read(p, o, name_len)?;
                (pos, off) = (p, o);
                left = left
                    .checked_sub(8 + name_len)
                    .ok_or_else(|| Error::Format("a directory listing is truncated".into()))?;
                refs.push((name, (block << 16) | u64::from(u16_at(&e, 0))));
            }
        }
        let mut entries = Vec::with_capacity(refs.len());
        for (name, r) in refs {
            if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
                return Err(Error::Format(format!(
                    "bad file name {:?}",
                    String::from_utf8_lossy(&name)
                )));
            }
            if self.ancestors.contains(&r) {
                return Err(Error::Format(format!(
                    "directory `{}` is its own ancestor (a loop)",
                    String::from_utf8_lossy(&name)
                )));
            }
            let id = self.inode(tree, r)?;
            entries.push((name, id));
        }
        self.depth -= 1;
        Ok(entries)
    }
}
