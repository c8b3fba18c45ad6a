//! kiln's own tar writer for image root trees: the `tar`, `tar.zst`,
//! `tar.xz` and `tar.gz` outputs (docs/profiles.md), byte-for-byte reproducible
//! (ARCHITECTURE.md, "Reproducible outputs").
//!
//! [`write_tree`] walks a root file system tree (an unpacked or mounted Linux
//! root, possibly an overlay) and streams it as a POSIX.1-2001 ("pax") tar
//! archive, optionally compressed; [`write_tree_to_file`] does the same into a
//! file, atomically.
//!
//! # Format choices
//!
//! * **pax format.** Every entry is a ustar header block (magic `ustar\0`,
//!   version `00`). When something does not fit ustar, or the entry has
//!   extended attributes, a pax extended header (`x`) precedes it with these
//!   records, in this order: `path` (names longer than 100 bytes; the ustar
//!   `prefix` field is never used), `linkpath` (link targets longer than 100
//!   bytes), `size` (≥ 8 GiB), `uid`/`gid` (≥ 2 097 152), `mtime` (negative
//!   or beyond year 2242), then one `SCHILY.xattr.<name>` record per extended
//!   attribute, sorted by name. Every pax header has the fixed name
//!   `././@PaxHeader`, mode 0644, owner 0/0 and mtime 0, so it does not
//!   depend on process ids the way GNU tar's `PaxHeaders.<pid>` names do.
//! * **Paths** are relative and without a `./` prefix, like
//!   `tar -C root -cf - etc usr …` writes them: `etc/`, `etc/passwd`. The
//!   root directory itself is the first entry, named `./` (so extracting with
//!   `-p` restores the root's mode and owner). Directory names end in `/`.
//!   Names are the file system's bytes, not re-encoded.
//! * **Order.** Depth first; each directory's entry comes before its
//!   contents and its children are visited sorted bytewise by name (the order
//!   of GNU tar's `--sort=name`). This is a total order independent of the
//!   file system's directory order.
//! * **Owners** are numeric only: `uname`/`gname` are left empty, so the
//!   archive does not depend on the build host's passwd and group files.
//!   Extractors fall back to the numeric ids when the names are empty;
//!   GNU tar's `--numeric-owner` makes that explicit.
//! * **Modes** are `st_mode & 07777`: permissions with setuid, setgid and
//!   sticky bits.
//! * **Scope.** Everything below the root is written, crossing mount points
//!   (the tree may be an overlay mount; the caller passes the tree it wants,
//!   without `/proc` or `/sys` mounted in it). The root itself may be given
//!   through a symlink; nothing below it is followed.
//! * **Types.** Regular files, directories, symlinks (never followed),
//!   character and block devices (with major/minor), FIFOs. Sockets are
//!   skipped. A non-directory with several links inside the tree is stored
//!   once, at its first path in archive order; its other paths become
//!   hardlink (`1`) entries pointing at that path.
//! * **Times.** Only the mtime, in whole seconds (sub-second precision is
//!   dropped); with [`Options::mtime_clamp`] (`SOURCE_DATE_EPOCH`) any mtime
//!   newer than the clamp is set to it. No atime or ctime is recorded.
//! * **Extended attributes** (when [`Options::xattrs`]) are read without
//!   following symlinks and stored as `SCHILY.xattr.<name>=<raw value>`, the
//!   keyword GNU tar, star and libarchive use; values are binary-safe (the
//!   record length delimits them), which matters for `security.capability`.
//!   As GNU tar does, `%` and `=` in a name are escaped as `%25` and `%3D`.
//!   All namespaces are kept (`user.`, `security.`, `trusted.`, `system.`):
//!   GNU tar needs `--xattrs --xattrs-include='*'` to restore the
//!   non-`user.` ones. Hardlink entries carry no attributes (they share the
//!   first path's inode).
//! * **End.** Two zero blocks; no padding to a record size beyond them.
//! * **Compression** is deterministic: zstd at the given level with a
//!   content checksum (like the `zstd` CLI); xz with the given preset and a
//!   CRC64 check (like `xz`); gzip with mtime 0, no file name and OS byte 3
//!   (like `gzip -n`). With [`Options::threads`] 0 the zstd and xz encoders
//!   are single-threaded; with 1 or more they are the multi-threaded ones,
//!   whose output depends on the level only, not on the number of threads
//!   (zstd's and liblzma's guarantee): `--jobs` never changes an image.
//!
//! # Consistency
//!
//! The tree is expected to be quiescent. A regular file whose size changes
//! while it is read, or that is replaced between `lstat` and `open`, fails
//! the write with [`TarError::Changed`] rather than producing an archive that
//! does not match any state of the tree. Files are streamed, never read
//! whole into memory.

pub mod extract;
mod header;
mod rules;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use header::{BLOCK, Entry, Kind, Xattrs};

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain `tar`.
    #[default]
    None,
    /// `tar.zst`; `level` as for `zstd -<level>` (1–19, up to 22; negative
    /// levels are the fast ones). Out-of-range levels are clamped by libzstd.
    Zstd {
        /// Compression level.
        level: i32,
    },
    /// `tar.xz`; `level` is the preset 0–9, optionally or-ed with
    /// [`XZ_PRESET_EXTREME`] (`xz -9e`).
    Xz {
        /// Preset level.
        level: u32,
    },
    /// `tar.gz`; `level` 0–9.
    Gzip {
        /// Compression level.
        level: u32,
    },
}

/// The flag to or with an xz preset for the slower "extreme" variant.
pub const XZ_PRESET_EXTREME: u32 = liblzma::stream::PRESET_EXTREME;

/// What [`write_tree`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `SOURCE_DATE_EPOCH`: mtimes newer than it are set to it.
    pub mtime_clamp: Option<u64>,
    /// Compression of the stream.
    pub compression: Compression,
    /// Store extended attributes (default true).
    pub xattrs: bool,
    /// Compressor threads: 0 for the single-threaded encoders, N ≥ 1 for
    /// the multi-threaded ones with N workers (same output for every N).
    pub threads: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mtime_clamp: None,
            compression: Compression::None,
            xattrs: true,
            threads: 0,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Archive entries written (not counting pax extended headers).
    pub entries: u64,
    /// Bytes of regular file content read from the tree.
    pub bytes_in: u64,
    /// Bytes written to the output (after compression).
    pub bytes_out: u64,
}

/// Errors of [`write_tree`] and [`write_tree_to_file`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A path of the tree could not be read (stat, directory listing, link
    /// target, extended attributes or content).
    #[error("cannot read {}", path.display())]
    Read {
        /// The path in the tree (as given by the caller, joined).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The root is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The root that was given.
        path: PathBuf,
    },
    /// A file changed while it was archived.
    #[error("{} changed while it was archived: {what}", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What changed.
        what: &'static str,
    },
    /// A compression level the compressor does not accept.
    #[error("invalid {format} compression level {level}")]
    InvalidLevel {
        /// `xz` or `gzip`.
        format: &'static str,
        /// The level given.
        level: u32,
    },
    /// The output stream could not be written.
    #[error("cannot write the archive")]
    Write {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The destination file (or its temporary file, or its directory) could
    /// not be created, written, synced or renamed.
    #[error("cannot write {}", path.display())]
    Dest {
        /// The destination path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> TarError + '_ {
    move |source| TarError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_err(source: io::Error) -> TarError {
    TarError::Write { source }
}

/// Writes the tree under `root` as a tar archive to `out`, compressed as
/// `opts.compression` says, and returns what was written. See the crate
/// documentation for the format. `out` is buffered internally and flushed
/// at the end.
pub fn write_tree(root: &Path, out: impl Write, opts: &Options) -> Result<Stats, TarError> {
    write_inner(root, out, opts, None).map(|(stats, _)| stats)
}

/// Writes the tree under `root` to `dest` atomically: into a temporary file
/// next to it (mode 0644 less the umask), fsynced, then renamed over `dest`
/// (and the directory fsynced). On any error the temporary file is removed
/// and `dest` is untouched. The temporary file is never archived, even when
/// `dest` lies inside `root`.
pub fn write_tree_to_file(root: &Path, dest: &Path, opts: &Options) -> Result<Stats, TarError> {
    let dest_err = |source: io::Error| TarError::Dest {
        path: dest.to_path_buf(),
        source,
    };
    let Some(name) = dest.file_name() else {
        return Err(dest_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the destination has no file name",
        )));
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(dest_err)?;
    let md = tmp.as_file().metadata().map_err(dest_err)?;
    let (stats, _) = match write_inner(root, tmp.as_file(), opts, Some((md.dev(), md.ino()))) {
        Ok(v) => v,
        Err(TarError::Write { source }) => return Err(dest_err(source)),
        Err(e) => return Err(e),
    };
    tmp.as_file().sync_all().map_err(dest_err)?;
    // On failure the PersistError holds the temporary file, which is removed
    // when it is dropped here.
    tmp.persist(dest).map_err(|e| dest_err(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(dest_err)?;
    Ok(stats)
}

/// The output side: counts the bytes given to the caller's writer.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor between the tar stream and the output.
enum Sink<W: Write> {
    Plain(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Xz(liblzma::write::XzEncoder<W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Sink<W> {
    fn new(out: W, compression: Compression, threads: u32) -> Result<Self, TarError> {
        Ok(match compression {
            Compression::None => Sink::Plain(out),
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(out, level).map_err(write_err)?;
                enc.include_checksum(true).map_err(write_err)?;
                if threads > 0 {
                    enc.multithread(threads).map_err(write_err)?;
                }
                Sink::Zstd(enc)
            }
            Compression::Xz { level } => {
                let stream = if threads > 0 {
                    liblzma::stream::MtStreamBuilder::new()
                        .preset(level)
                        .threads(threads)
                        .check(liblzma::stream::Check::Crc64)
                        .encoder()
                } else {
                    liblzma::stream::Stream::new_easy_encoder(level, liblzma::stream::Check::Crc64)
                }
                .map_err(|_| TarError::InvalidLevel { format: "xz", level })?;
                Sink::Xz(liblzma::write::XzEncoder::new_stream(out, stream))
            }
            Compression::Gzip { level } => {
                if level > 9 {
                    return Err(TarError::InvalidLevel { format: "gzip", level });
                }
                Sink::Gzip(
                    flate2::GzBuilder::new()
                        .mtime(0)
                        .operating_system(3)
                        .write(out, flate2::Compression::new(level)),
                )
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Zstd(enc) => enc.finish(),
            Sink::Xz(enc) => enc.finish(),
            Sink::Gzip(enc) => enc.finish(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
            Sink::Xz(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
            Sink::Xz(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}

type Stream<W> = BufWriter<Sink<Counting<BufWriter<W>>>>;

fn write_inner<W: Write>(
    root: &Path,
    out: W,
    opts: &Options,
    skip: Option<(u64, u64)>,
) -> Result<(Stats, W), TarError> {
    let counting = Counting {
        inner: BufWriter::with_capacity(64 * 1024, out),
        count: 0,
    };
    let sink = Sink::new(counting, opts.compression, opts.threads)?;
    let mut walker = Walker {
        out: BufWriter::with_capacity(1024 * 1024, sink),
        opts,
        skip,
        links: HashMap::new(),
        stats: Stats::default(),
        header: Vec::with_capacity(2 * BLOCK),
        buf: vec![0; 256 * 1024],
    };
    walker.walk(root)?;
    walker.out.write_all(&[0; 2 * BLOCK]).map_err(write_err)?;
    let mut stats = walker.stats;
    let sink = walker.out.into_inner().map_err(|e| write_err(e.into_error()))?;
    let counting = sink.finish().map_err(write_err)?;
    stats.bytes_out = counting.count;
    let mut counting = counting;
    counting.flush().map_err(write_err)?;
    let out = counting.inner.into_inner().map_err(|e| write_err(e.into_error()))?;
    Ok((stats, out))
}

/// A path still to be archived.
struct Pending {
    /// The path on disk.
    disk: PathBuf,
    /// The path in the archive, without a trailing slash.
    name: Vec<u8>,
}

struct Walker<'a, W: Write> {
    out: Stream<W>,
    opts: &'a Options,
    /// The inode of the temporary output file, never archived.
    skip: Option<(u64, u64)>,
    /// (dev, ino) of multiply linked files seen so far → their archive path
    /// and how many more links to them may still come.
    links: HashMap<(u64, u64), (Vec<u8>, u64)>,
    stats: Stats,
    header: Vec<u8>,
    buf: Vec<u8>,
}

impl<W: Write> Walker<'_, W> {
    fn walk(&mut self, root: &Path) -> Result<(), TarError> {
        // The root itself may be given through a symlink; nothing below it is
        // followed.
        let md = fs::metadata(root).map_err(read_err(root))?;
        if !md.is_dir() {
            return Err(TarError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        self.entry(root, b"./", &md)?;
        let mut stack = Vec::new();
        self.push_children(root, &[], &mut stack)?;
        while let Some(p) = stack.pop() {
            let md = fs::symlink_metadata(&p.disk).map_err(read_err(&p.disk))?;
            if md.is_dir() {
                let mut name = p.name.clone();
                name.push(b'/');
                self.entry(&p.disk, &name, &md)?;
                self.push_children(&p.disk, &p.name, &mut stack)?;
            } else {
                self.entry(&p.disk, &p.name, &md)?;
            }
        }
        Ok(())
    }

    /// Pushes the children of directory `dir` (archive name `name`, empty
    /// for the root) so that they pop sorted by name.
    fn push_children(&mut self, dir: &Path, name: &[u8], stack: &mut Vec<Pending>) -> Result<(), TarError> {
        let mut children: Vec<OsString> = Vec::new();
        for ent in fs::read_dir(dir).map_err(read_err(dir))? {
            children.push(ent.map_err(read_err(dir))?.file_name());
        }
        children.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for child in children.into_iter().rev() {
            let mut child_name = Vec::with_capacity(name.len() + 1 + child.len());
            if !name.is_empty() {
                child_name.extend_from_slice(name);
                child_name.push(b'/');
            }
            child_name.extend_from_slice(child.as_bytes());
            stack.push(Pending {
                disk: dir.join(&child),
                name: child_name,
            });
        }
        Ok(())
    }

    /// Archives one path (not its children).
    fn entry(&mut self, disk: &Path, name: &[u8], md: &Metadata) -> Result<(), TarError> {
        let key = (md.dev(), md.ino());
        if self.skip == Some(key) {
            return Ok(());
        }
        let ft = md.file_type();
        let mut kind = if ft.is_dir() {
            Kind::Directory
        } else if ft.is_file() {
            Kind::Regular
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            // Sockets (and anything unknown) are not archived.
            return Ok(());
        };

        let mut link: Vec<u8> = Vec::new();
        if kind != Kind::Directory && md.nlink() > 1 {
            if let Some((first, left)) = self.links.get_mut(&key) {
                kind = Kind::HardLink;
                link = first.clone();
                *left -= 1;
                if *left == 0 {
                    self.links.remove(&key);
                }
            } else {
                self.links.insert(key, (name.to_vec(), md.nlink() - 1));
            }
        }
        if kind == Kind::Symlink {
            link = fs::read_link(disk).map_err(read_err(disk))?.into_os_string().into_vec();
        }
        let xattrs = if self.opts.xattrs && kind != Kind::HardLink {
            read_xattrs(disk)?
        } else {
            Vec::new()
        };
        let (dev_major, dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
            split_dev(md.rdev())
        } else {
            (0, 0)
        };
        let mut mtime = md.mtime();
        if let Some(clamp) = self.opts.mtime_clamp {
            mtime = mtime.min(i64::try_from(clamp).unwrap_or(i64::MAX));
        }
        let size = if kind == Kind::Regular { md.len() } else { 0 };

        // Open the file before writing its header, so that a file that
        // cannot be read fails before anything of it is written.
        let file = if kind == Kind::Regular {
            Some(open_same(disk, md)?)
        } else {
            None
        };

        self.header.clear();
        header::encode(
            &Entry {
                path: name,
                kind,
                mode: md.mode(),
                uid: u64::from(md.uid()),
                gid: u64::from(md.gid()),
                size,
                mtime,
                link: &link,
                dev_major,
                dev_minor,
                xattrs: &xattrs,
            },
            &mut self.header,
        );
        self.out.write_all(&self.header).map_err(write_err)?;
        self.stats.entries += 1;
        if let Some(file) = file {
            self.copy(disk, file, size)?;
        }
        Ok(())
    }

    /// Streams exactly `size` bytes of `file` and the block padding.
    fn copy(&mut self, disk: &Path, mut file: File, size: u64) -> Result<(), TarError> {
        let mut left = size;
        while left > 0 {
            let want = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(TarError::Changed {
                        path: disk.to_path_buf(),
                        what: "it shrank",
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(disk)(e)),
            };
            self.out.write_all(&self.buf[..n]).map_err(write_err)?;
            left -= n as u64;
        }
        loop {
            match file.read(&mut self.buf[..1]) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(TarError::Changed {
                        path: disk.to_path_buf(),
                        what: "it grew",
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(disk)(e)),
            }
        }
        self.stats.bytes_in += size;
        let pad = header::padding(size);
        self.out.write_all(&[0u8; BLOCK][..pad]).map_err(write_err)?;
        Ok(())
    }
}

/// Opens a regular file without following symlinks and checks it is still
/// the inode that was stat'ed.
fn open_same(disk: &Path, md: &Metadata) -> Result<File, TarError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(disk)
        .map_err(read_err(disk))?;
    let now = file.metadata().map_err(read_err(disk))?;
    if (now.dev(), now.ino()) != (md.dev(), md.ino()) {
        return Err(TarError::Changed {
            path: disk.to_path_buf(),
            what: "it was replaced",
        });
    }
    Ok(file)
}

/// The extended attributes of `disk` (not following symlinks), sorted by
/// name. A file system without xattr support has none.
fn read_xattrs(disk: &Path) -> Result<Xattrs, TarError> {
    let names = match xattr::list(disk) {
        Ok(names) => names,
        Err(e) if is_unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(read_err(disk)(e)),
    };
    let mut out = Vec::new();
    for name in names {
        // An attribute removed between listing and reading is skipped.
        if let Some(value) = xattr::get(disk, &name).map_err(read_err(disk))? {
            out.push((OsStr::as_bytes(&name).to_vec(), value));
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn is_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
}

/// Splits a Linux `dev_t` into major and minor (glibc's encoding).
fn split_dev(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::split_dev;

    #[test]
    fn dev_split() {
        assert_eq!(split_dev(0x0103), (1, 3));
        // makedev(259, 1048575)
        let (ma, mi) = (259u64, 1_048_575u64);
        let dev = ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12);
        assert_eq!(split_dev(dev), (ma, mi));
    }
}
