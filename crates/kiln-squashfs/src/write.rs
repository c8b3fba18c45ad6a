//! Writing a tree as a squashfs 4.0 image: data and fragment blocks copied
//! from the input images in sequential runs, metadata built fresh.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use crate::meta::{Compressor, MetaWriter};
use crate::read::{BLOCK_UNCOMPRESSED, Image, NO_FRAGMENT, NO_XATTR, NOT_SET, SuperBlock, flags};
use crate::{Error, Kind, Node, NodeId, Options, Stats, Tree, XattrList, Xattrs};

const SIZE_MASK: u32 = BLOCK_UNCOMPRESSED - 1;
/// squashfs's limit on a file name.
const NAME_MAX: usize = 256;

/// A run of bytes copied from one input image: `[start, end)` there,
/// `new_start` in the output.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    end: u64,
    new_start: u64,
}

/// Where each input's data ended up.
struct DataMap {
    runs: Vec<Vec<Run>>,
}

impl DataMap {
    fn map(&self, source: usize, pos: u64) -> Result<u64, Error> {
        let runs = &self.runs[source];
        let i = runs.partition_point(|r| r.end <= pos);
        match runs.get(i) {
            Some(r) if r.start <= pos => Ok(r.new_start + (pos - r.start)),
            _ => Err(Error::Format(format!("data at byte {pos} was not copied"))),
        }
    }
}

fn data_len(block_sizes: &[u32]) -> u64 {
    block_sizes.iter().map(|s| u64::from(s & SIZE_MASK)).sum()
}

/// Copies every range the tree uses, coalesced into runs, after `at`.
fn copy_data(
    tree: &Tree,
    reach: &[NodeId],
    images: &[&Image],
    out: &mut File,
    mut at: u64,
    stats: &mut Stats,
) -> Result<(DataMap, u64), Error> {
    let mut ranges: Vec<Vec<(u64, u64)>> = vec![Vec::new(); images.len()];
    for &id in reach {
        if let Kind::File {
            source,
            blocks_start,
            block_sizes,
            fragment,
            ..
        } = &tree.nodes[id].kind
        {
            let len = data_len(block_sizes);
            if len > 0 {
                ranges[*source].push((*blocks_start, blocks_start + len));
            }
            if let Some((f, _)) = fragment {
                ranges[*source].push((f.start, f.start + u64::from(f.size & SIZE_MASK)));
            }
        }
    }
    let mut runs = Vec::with_capacity(images.len());
    for (source, mut r) in ranges.into_iter().enumerate() {
        let img = images[source];
        r.sort_unstable();
        let mut merged: Vec<Run> = Vec::new();
        for (s, e) in r {
            if e > img.len {
                return Err(Error::Format(format!(
                    "data at byte {s} runs past the end of an input image"
                )));
            }
            match merged.last_mut() {
                Some(last) if s <= last.end => last.end = last.end.max(e),
                _ => merged.push(Run {
                    start: s,
                    end: e,
                    new_start: 0,
                }),
            }
        }
        out.seek(SeekFrom::Start(at))
            .map_err(|e| Error::Io("seeking in the output".into(), e))?;
        for run in &mut merged {
            run.new_start = at;
            let len = run.end - run.start;
            let mut src = &img.file;
            src.seek(SeekFrom::Start(run.start))
                .map_err(|e| Error::Io("seeking in an input".into(), e))?;
            let copied = std::io::copy(&mut std::io::Read::take(src, len), out)
                .map_err(|e| Error::Io("copying data blocks".into(), e))?;
            if copied != len {
                return Err(Error::Format(format!(
                    "an input image ended inside the data at byte {}",
                    run.start
                )));
            }
            at += len;
            if source == 0 {
                stats.reused_bytes += len;
            } else {
                stats.new_bytes += len;
            }
        }
        runs.push(merged);
    }
    Ok((DataMap { runs }, at))
}

/// Every node reachable from `root`, each once, in pre-order.
fn reachable(tree: &Tree, root: NodeId) -> Vec<NodeId> {
    let mut seen = vec![false; tree.nodes.len()];
    let mut order = Vec::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        order.push(id);
        if let Kind::Dir(entries) = &tree.nodes[id].kind {
            stack.extend(entries.iter().rev().map(|(_, c)| *c));
        }
    }
    order
}

struct Writer<'a> {
    tree: &'a Tree,
    data: DataMap,
    inodes: MetaWriter,
    dirs: MetaWriter,
    number: Vec<u32>,
    nlink: Vec<u32>,
    written: HashMap<NodeId, u64>,
    ids: Vec<u32>,
    id_index: HashMap<u32, u16>,
    xattr_sets: Vec<Xattrs>,
    xattr_index: HashMap<XattrList, u32>,
    fragments: Vec<(u64, u32)>,
    fragment_index: HashMap<(usize, u64), u32>,
    export: Vec<u64>,
    data_start: u64,
}

/// The basic inode type a directory entry records for a node.
fn entry_type(n: &Node) -> u16 {
    match n.kind {
        Kind::Dir(_) => 1,
        Kind::File { .. } => 2,
        Kind::Symlink(_) => 3,
        Kind::Device { block: true, .. } => 4,
        Kind::Device { block: false, .. } => 5,
        Kind::Fifo => 6,
        Kind::Socket => 7,
    }
}

impl Writer<'_> {
    fn id(&mut self, v: u32) -> Result<u16, Error> {
        if let Some(&i) = self.id_index.get(&v) {
            return Ok(i);
        }
        let i = u16::try_from(self.ids.len()).map_err(|_| Error::Unsupported("more than 65536 uids/gids".into()))?;
        self.ids.push(v);
        self.id_index.insert(v, i);
        Ok(i)
    }

    fn xattr(&mut self, set: &[(Vec<u8>, Vec<u8>)]) -> u32 {
        if set.is_empty() {
            return NO_XATTR;
        }
        if let Some(&i) = self.xattr_index.get(set) {
            return i;
        }
        let i = self.xattr_sets.len() as u32;
        self.xattr_sets.push(Xattrs::new(set.to_vec()));
        self.xattr_index.insert(set.to_vec(), i);
        i
    }

    fn header(&mut self, n: &Node, kind: u16, id: NodeId) -> Result<Vec<u8>, Error> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&(n.mode & 0o7777).to_le_bytes());
        let (uid, gid) = (self.id(n.uid)?, self.id(n.gid)?);
        b.extend_from_slice(&uid.to_le_bytes());
        b.extend_from_slice(&gid.to_le_bytes());
        b.extend_from_slice(&n.mtime.to_le_bytes());
        b.extend_from_slice(&self.number[id].to_le_bytes());
        Ok(b)
    }

    /// Writes `id` (children first) and returns its inode reference.
    fn node(&mut self, id: NodeId, parent: u32) -> Result<u64, Error> {
        if let Some(&r) = self.written.get(&id) {
            return Ok(r);
        }
        let tree = self.tree;
        let n = &tree.nodes[id];
        let xattr = self.xattr(&n.xattrs);
        let nlink = self.nlink[id];
        let mut b;
        match &n.kind {
            Kind::Dir(entries) => {
                let mut children = Vec::with_capacity(entries.len());
                let mut sorted: Vec<&(Vec<u8>, NodeId)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                for (name, c) in sorted {
                    if name.len() > NAME_MAX {
                        return Err(Error::Format(format!(
                            "file name longer than {NAME_MAX} bytes: {}",
                            String::from_utf8_lossy(name)
                        )));
                    }
                    let r = self.node(*c, self.number[id])?;
                    children.push((name.as_slice(), r, self.number[*c], entry_type(&tree.nodes[*c])));
                }
                let (block, offset) = self.dirs.position();
                let size = self.listing(&children)? + 3;
                if size <= 0xffff && xattr == NO_XATTR {
                    b = self.header(n, 1, id)?;
                    b.extend_from_slice(&block.to_le_bytes());
                    b.extend_from_slice(&nlink.to_le_bytes());
                    b.extend_from_slice(&(size as u16).to_le_bytes());
                    b.extend_from_slice(&offset.to_le_bytes());
                    b.extend_from_slice(&parent.to_le_bytes());
                } else {
                    b = self.header(n, 8, id)?;
                    b.extend_from_slice(&nlink.to_le_bytes());
                    b.extend_from_slice(&size.to_le_bytes());
                    b.extend_from_slice(&block.to_le_bytes());
                    b.extend_from_slice(&parent.to_le_bytes());
                    b.extend_from_slice(&0u16.to_le_bytes());
                    b.extend_from_slice(&offset.to_le_bytes());
                    b.extend_from_slice(&xattr.to_le_bytes());
                }
            }
            Kind::File {
                source,
                blocks_start,
                file_size,
                sparse,
                block_sizes,
                fragment,
            } => {
                let start = if data_len(block_sizes) > 0 {
                    self.data.map(*source, *blocks_start)?
                } else {
                    self.data_start
                };
                let (frag, offset) = match fragment {
                    Some((f, off)) => {
                        let key = (*source, f.start);
                        let i = match self.fragment_index.get(&key) {
                            Some(&i) => i,
                            None => {
                                let i = self.fragments.len() as u32;
                                self.fragments.push((self.data.map(*source, f.start)?, f.size));
                                self.fragment_index.insert(key, i);
                                i
                            }
                        };
                        (i, *off)
                    }
                    None => (NO_FRAGMENT, 0),
                };
                let basic = start <= u64::from(u32::MAX)
                    && *file_size <= u64::from(u32::MAX)
                    && nlink == 1
                    && xattr == NO_XATTR
                    && *sparse == 0;
                if basic {
                    b = self.header(n, 2, id)?;
                    b.extend_from_slice(&(start as u32).to_le_bytes());
                    b.extend_from_slice(&frag.to_le_bytes());
                    b.extend_from_slice(&offset.to_le_bytes());
                    b.extend_from_slice(&(*file_size as u32).to_le_bytes());
                } else {
                    b = self.header(n, 9, id)?;
                    b.extend_from_slice(&start.to_le_bytes());
                    b.extend_from_slice(&file_size.to_le_bytes());
                    b.extend_from_slice(&sparse.to_le_bytes());
                    b.extend_from_slice(&nlink.to_le_bytes());
                    b.extend_from_slice(&frag.to_le_bytes());
                    b.extend_from_slice(&offset.to_le_bytes());
                    b.extend_from_slice(&xattr.to_le_bytes());
                }
                for s in block_sizes {
                    b.extend_from_slice(&s.to_le_bytes());
                }
            }
            Kind::Symlink(target) => {
                b = self.header(n, if xattr == NO_XATTR { 3 } else { 10 }, id)?;
                b.extend_from_slice(&nlink.to_le_bytes());
                b.extend_from_slice(&(target.len() as u32).to_le_bytes());
                b.extend_from_slice(target);
                if xattr != NO_XATTR {
                    b.extend_from_slice(&xattr.to_le_bytes());
                }
            }
            Kind::Device { block, rdev } => {
                let kind = match (block, xattr == NO_XATTR) {
                    (true, true) => 4,
                    (false, true) => 5,
                    (true, false) => 11,
                    (false, false) => 12,
                };
                b = self.header(n, kind, id)?;
                b.extend_from_slice(&nlink.to_le_bytes());
                b.extend_from_slice(&rdev.to_le_bytes());
                if xattr != NO_XATTR {
                    b.extend_from_slice(&xattr.to_le_bytes());
                }
            }
            Kind::Fifo | Kind::Socket => {
                let fifo = matches!(n.kind, Kind::Fifo);
                let kind = match (fifo, xattr == NO_XATTR) {
                    (true, true) => 6,
                    (false, true) => 7,
                    (true, false) => 13,
                    (false, false) => 14,
                };
                b = self.header(n, kind, id)?;
                b.extend_from_slice(&nlink.to_le_bytes());
                if xattr != NO_XATTR {
                    b.extend_from_slice(&xattr.to_le_bytes());
                }
            }
        }
        let r = self.inodes.reference();
        self.inodes.write(&b)?;
        self.written.insert(id, r);
        self.export[self.number[id] as usize - 1] = r;
        Ok(r)
    }

    /// Writes a directory listing; returns its size in bytes.
    fn listing(&mut self, children: &[(&[u8], u64, u32, u16)]) -> Result<u32, Error> {
        let mut b = Vec::new();
        let mut i = 0;
        while i < children.len() {
            let (block, base) = (children[i].1 >> 16, children[i].2);
            let mut j = i;
            while j < children.len()
                && j - i < 256
                && children[j].1 >> 16 == block
                && (i64::from(children[j].2) - i64::from(base)).abs() <= 32767
            {
                j += 1;
            }
            b.extend_from_slice(&((j - i - 1) as u32).to_le_bytes());
            b.extend_from_slice(&(block as u32).to_le_bytes());
            b.extend_from_slice(&base.to_le_bytes());
            for (name, r, number, kind) in &children[i..j] {
                b.extend_from_slice(&((r & 0xffff) as u16).to_le_bytes());
                b.extend_from_slice(&((i64::from(*number) - i64::from(base)) as i16).to_le_bytes());
                b.extend_from_slice(&kind.to_le_bytes());
                b.extend_from_slice(&((name.len() - 1) as u16).to_le_bytes());
                b.extend_from_slice(name);
            }
            i = j;
        }
        self.dirs.write(&b)?;
        Ok(b.len() as u32)
    }
}

/// A lookup table: entries in metadata blocks, then the blocks' positions.
/// Returns the position of that index.
fn lookup_table(out: &mut Vec<u8>, base: u64, entries: &[u8], comp: Option<Compressor>) -> Result<u64, Error> {
    let mut w = MetaWriter::new(comp);
    w.write(entries)?;
    let (bytes, blocks) = w.finish()?;
    let meta_start = base + out.len() as u64;
    out.extend_from_slice(&bytes);
    let index = base + out.len() as u64;
    for b in blocks {
        out.extend_from_slice(&(meta_start + b).to_le_bytes());
    }
    Ok(index)
}

fn prefix(name: &[u8]) -> Result<(u16, &[u8]), Error> {
    for (id, p) in [(0u16, &b"user."[..]), (1, b"trusted."), (2, b"security.")] {
        if let Some(rest) = name.strip_prefix(p) {
            return Ok((id, rest));
        }
    }
    Err(Error::Unsupported(format!(
        "the xattr {}",
        String::from_utf8_lossy(name)
    )))
}

/// Inode numbers (1-based, in `reach` order) and link counts of the nodes.
fn number_inodes(tree: &Tree, reach: &[NodeId]) -> (Vec<u32>, Vec<u32>) {
    let mut number = vec![0u32; tree.nodes.len()];
    let mut nlink = vec![0u32; tree.nodes.len()];
    for (i, &id) in reach.iter().enumerate() {
        number[id] = i as u32 + 1;
        if let Kind::Dir(entries) = &tree.nodes[id].kind {
            nlink[id] += 2;
            for (_, c) in entries {
                if matches!(tree.nodes[*c].kind, Kind::Dir(_)) {
                    nlink[id] += 1;
                } else {
                    nlink[*c] += 1;
                }
            }
        }
    }
    (number, nlink)
}

/// The compressor for a metadata kind: none when the input's `fl` stores it
/// uncompressed (`bit`).
fn meta_comp(fl: u16, comp: Compressor, bit: u16) -> Option<Compressor> {
    if fl & bit != 0 { None } else { Some(comp) }
}

/// Where each table starts in the output.
struct TableStarts {
    inode: u64,
    directory: u64,
    fragment: u64,
    export: u64,
    id: u64,
    xattr_id: u64,
}

/// The xattr key/value table and its id table after `t`, which starts at
/// `base` in the output; returns the position of the id table's header.
fn xattr_tables(sets: &[Xattrs], t: &mut Vec<u8>, base: u64, comp: Option<Compressor>) -> Result<u64, Error> {
    let mut kv = MetaWriter::new(comp);
    let mut ids = Vec::with_capacity(sets.len() * 16);
    for set in sets {
        let r = kv.reference();
        let mut b = Vec::new();
        for (name, value) in set.iter() {
            let (p, rest) = prefix(name)?;
            b.extend_from_slice(&p.to_le_bytes());
            b.extend_from_slice(&(rest.len() as u16).to_le_bytes());
            b.extend_from_slice(rest);
            b.extend_from_slice(&(value.len() as u32).to_le_bytes());
            b.extend_from_slice(value);
        }
        kv.write(&b)?;
        ids.extend_from_slice(&r.to_le_bytes());
        ids.extend_from_slice(&(set.len() as u32).to_le_bytes());
        ids.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    let kv_start = base + t.len() as u64;
    t.extend_from_slice(&kv.finish()?.0);
    let mut w2 = MetaWriter::new(comp);
    w2.write(&ids)?;
    let (bytes, blocks) = w2.finish()?;
    let meta_start = base + t.len() as u64;
    t.extend_from_slice(&bytes);
    let head = base + t.len() as u64;
    t.extend_from_slice(&kv_start.to_le_bytes());
    t.extend_from_slice(&(sets.len() as u32).to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    for b in blocks {
        t.extend_from_slice(&(meta_start + b).to_le_bytes());
    }
    Ok(head)
}

impl Writer<'_> {
    /// The metadata tables, in mksquashfs's order, to be written at
    /// `data_end`; `fl` and `comp` are the input's flags and compressor.
    fn tables(&mut self, data_end: u64, fl: u16, comp: Compressor) -> Result<(Vec<u8>, TableStarts), Error> {
        let meta = |bit: u16| meta_comp(fl, comp, bit);
        let mut t = Vec::new();
        let inode = data_end;
        let (bytes, _) = std::mem::replace(&mut self.inodes, MetaWriter::new(None)).finish()?;
        t.extend_from_slice(&bytes);
        let directory = data_end + t.len() as u64;
        let (bytes, _) = std::mem::replace(&mut self.dirs, MetaWriter::new(None)).finish()?;
        t.extend_from_slice(&bytes);

        let fragment = if self.fragments.is_empty() {
            NOT_SET
        } else {
            let mut e = Vec::with_capacity(self.fragments.len() * 16);
            for (start, size) in &self.fragments {
                e.extend_from_slice(&start.to_le_bytes());
                e.extend_from_slice(&size.to_le_bytes());
                e.extend_from_slice(&0u32.to_le_bytes());
            }
            lookup_table(&mut t, data_end, &e, meta(flags::UNCOMPRESSED_FRAGMENTS))?
        };
        let export = if fl & flags::EXPORTABLE != 0 {
            let e: Vec<u8> = self.export.iter().flat_map(|r| r.to_le_bytes()).collect();
            lookup_table(&mut t, data_end, &e, meta(flags::UNCOMPRESSED_INODES))?
        } else {
            NOT_SET
        };
        let e: Vec<u8> = self.ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        let id = lookup_table(&mut t, data_end, &e, meta(flags::UNCOMPRESSED_IDS))?;

        let xattr_id = if self.xattr_sets.is_empty() {
            NOT_SET
        } else {
            xattr_tables(&self.xattr_sets, &mut t, data_end, meta(flags::UNCOMPRESSED_XATTRS))?
        };
        let starts = TableStarts {
            inode,
            directory,
            fragment,
            export,
            id,
            xattr_id,
        };
        Ok((t, starts))
    }
}

/// The output's superblock flags: the input's `fl` that still hold, with
/// what this image has or lacks of xattrs and fragments.
fn superblock_flags(fl: u16, has_xattrs: bool, has_fragments: bool) -> u16 {
    let keep = flags::UNCOMPRESSED_INODES
        | flags::UNCOMPRESSED_DATA
        | flags::UNCOMPRESSED_FRAGMENTS
        | flags::NO_FRAGMENTS
        | flags::ALWAYS_FRAGMENTS
        | flags::DUPLICATES
        | flags::EXPORTABLE
        | flags::UNCOMPRESSED_XATTRS
        | flags::UNCOMPRESSED_IDS
        | flags::COMPRESSOR_OPTIONS;
    let mut sb_flags = fl & keep;
    if !has_xattrs {
        sb_flags |= flags::NO_XATTRS;
    }
    if has_fragments {
        sb_flags &= !flags::NO_FRAGMENTS;
    }
    sb_flags
}

/// The image's modification time: `SOURCE_DATE_EPOCH` when given, else now.
fn mod_time(opts: &Options) -> u32 {
    match opts.source_date_epoch {
        Some(e) => u32::try_from(e).unwrap_or(u32::MAX),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
    }
}

/// Writes the tables `t` at `data_end`, then the superblock and the
/// compressor options at the start, and syncs the output.
fn finish(out: &mut File, data_end: u64, t: &[u8], sb: &SuperBlock, comp_options: Option<&[u8]>) -> Result<(), Error> {
    let io = |what: &'static str| move |e: std::io::Error| Error::Io(what.into(), e);
    out.seek(SeekFrom::Start(data_end))
        .map_err(io("seeking in the output"))?;
    out.write_all(t).map_err(io("writing the tables"))?;
    out.seek(SeekFrom::Start(0)).map_err(io("seeking in the output"))?;
    out.write_all(&sb.to_bytes()).map_err(io("writing the superblock"))?;
    if let Some(o) = comp_options {
        out.write_all(o).map_err(io("writing the compressor options"))?;
    }
    out.sync_all().map_err(io("syncing the output"))?;
    Ok(())
}

pub fn write(tree: &Tree, root: NodeId, images: &[&Image], mut out: File, opts: &Options) -> Result<Stats, Error> {
    let src = images[0];
    let comp = src.comp;
    let fl = src.sb.flags;
    let meta = |bit: u16| meta_comp(fl, comp, bit);
    let mut stats = Stats::default();

    let reach = reachable(tree, root);
    let count = u32::try_from(reach.len()).map_err(|_| Error::Unsupported("too many inodes".into()))?;
    let (number, nlink) = number_inodes(tree, &reach);

    let data_start = 96 + src.comp_options.as_ref().map_or(0, |o| o.len() as u64);
    let (data, data_end) = copy_data(tree, &reach, images, &mut out, data_start, &mut stats)?;
    let mut w = Writer {
        tree,
        data,
        inodes: MetaWriter::new(meta(flags::UNCOMPRESSED_INODES)),
        dirs: MetaWriter::new(meta(flags::UNCOMPRESSED_INODES)),
        number,
        nlink,
        written: HashMap::new(),
        ids: Vec::new(),
        id_index: HashMap::new(),
        xattr_sets: Vec::new(),
        xattr_index: HashMap::new(),
        fragments: Vec::new(),
        fragment_index: HashMap::new(),
        export: vec![0; count as usize],
        data_start,
    };
    let root_ref = w.node(root, count + 1)?;

    let (mut t, starts) = w.tables(data_end, fl, comp)?;
    let bytes_used = data_end + t.len() as u64;
    // Padded to 4 KiB like mksquashfs does, so loop devices see whole blocks.
    t.resize(t.len() + (4096 - (bytes_used % 4096) as usize) % 4096, 0);

    let sb = SuperBlock {
        inode_count: count,
        mod_time: mod_time(opts),
        block_size: src.sb.block_size,
        fragment_count: w.fragments.len() as u32,
        compression_id: src.sb.compression_id,
        block_log: src.sb.block_log,
        flags: superblock_flags(fl, !w.xattr_sets.is_empty(), !w.fragments.is_empty()),
        id_count: w.ids.len() as u16,
        root_inode: root_ref,
        bytes_used,
        id_table_start: starts.id,
        xattr_id_table_start: starts.xattr_id,
        inode_table_start: starts.inode,
        directory_table_start: starts.directory,
        fragment_table_start: starts.fragment,
        export_table_start: starts.export,
    };
    finish(&mut out, data_end, &t, &sb, src.comp_options.as_deref())?;
    stats.inodes = count;
    Ok(stats)
}
