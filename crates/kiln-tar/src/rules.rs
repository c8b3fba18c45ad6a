//! The rules an untrusted root-filesystem archive must follow, and its size
//! limits (docs/update.md). [`crate::extract::extract`] applies them before
//! writing each entry and [`crate::extract::scan`] applies them without
//! writing anything, so an archive that passes the scan extracts.
//!
//! Every entry is checked against a model of the tree built so far (what
//! each earlier path became), never against the disk:
//!
//! * absolute paths and `..` components are refused;
//! * no entry may sit below a symlink or a file of the archive, so a
//!   symlink entry cannot redirect later entries outside;
//! * a non-directory may not replace a directory, nor a directory a
//!   non-directory;
//! * a relative symlink target may not climb above the archive's root
//!   (absolute targets are kept: inside an image they name image paths);
//! * hard links must name an earlier file, by the same path rules;
//! * device nodes are accepted only under `dev/`;
//! * anything else (sparse files, unknown types, pax global headers) is
//!   refused;
//! * at most [`Limits::max_entries`] entries and [`Limits::max_bytes`] bytes
//!   of tar stream (headers and data, after decompression).

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::extract::ExtractError;

/// How much an archive may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries, directories included.
    pub max_entries: u64,
    /// Bytes of the (decompressed) tar stream: headers and data.
    pub max_bytes: u64,
}

impl Limits {
    /// Entries of any archive: ten times a full desktop distribution's.
    pub const MAX_ENTRIES: u64 = 5_000_000;
    /// Bytes of any archive's tar stream: 1 TiB.
    pub const MAX_BYTES: u64 = 1 << 40;
    /// How many times its file's size a compressed archive may expand to
    /// (root file systems compress 3 to 5 times; a bomb by thousands).
    pub const RATIO: u64 = 100;
    /// Small archives may always expand to 1 GiB.
    pub const FLOOR: u64 = 1 << 30;

    /// The limits for an archive file of `len` bytes: its tar stream may be
    /// [`Limits::RATIO`] times as large, at least [`Limits::FLOOR`], at most
    /// [`Limits::MAX_BYTES`].
    pub fn for_source(len: u64) -> Limits {
        Limits {
            max_entries: Limits::MAX_ENTRIES,
            max_bytes: len
                .saturating_mul(Limits::RATIO)
                .clamp(Limits::FLOOR, Limits::MAX_BYTES),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: Limits::MAX_ENTRIES,
            max_bytes: Limits::MAX_BYTES,
        }
    }
}

/// What a path of the archive has become so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Dir,
    File,
    Symlink,
    /// A device node or fifo.
    Node,
}

/// The kinds of entries a root file system archive may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Dir,
    File,
    Symlink(PathBuf),
    /// A hard link to this earlier file (relative to the root).
    HardLink(PathBuf),
    Char,
    Block,
    Fifo,
}

/// One entry that passed the rules.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The entry's name as stored, for messages.
    pub name: String,
    /// Its path relative to the root.
    pub rel: PathBuf,
    pub action: Action,
    /// Permission bits (07777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev: (u32, u32),
}

/// Where an entry is: its number (from 1) and its header's offset in the
/// tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub index: u64,
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {}, header at byte {} of the tar stream",
            self.index, self.offset
        )
    }
}

/// Applies the rules to a stream of entries.
pub(crate) struct Checker {
    limits: Limits,
    entries: u64,
    bytes: u64,
    tree: HashMap<PathBuf, Seen>,
}

/// The entry's path made relative and checked: no absolute path, no `..`.
/// `None` for the root itself.
fn relative(p: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path".into()),
            Component::ParentDir => return Err("has a `..` component".into()),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether a relative symlink target, resolved lexically from the link's
/// directory, stays inside the root.
pub(crate) fn stays_inside(link_rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth: i64 = link_rel.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

impl Checker {
    pub fn new(limits: Limits) -> Checker {
        Checker {
            limits,
            entries: 0,
            bytes: 0,
            tree: HashMap::new(),
        }
    }

    /// The parents of `rel` must be directories of the archive, or new
    /// (they are then created as directories).
    fn parents(&mut self, rel: &Path) -> Result<(), String> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut cur = PathBuf::new();
        for c in parent.components() {
            cur.push(c);
            match self.tree.get(&cur) {
                Some(Seen::Dir) => {}
                Some(Seen::Symlink) => return Err("would be written through a symlink".into()),
                Some(_) => return Err("would be written below a file".into()),
                None => {
                    self.tree.insert(cur.clone(), Seen::Dir);
                }
            }
        }
        Ok(())
    }

    /// Checks one entry; `None` for the root directory itself (skipped).
    pub fn check<R: Read>(&mut self, e: &tar::Entry<'_, R>) -> Result<Option<Checked>, ExtractError> {
        let at = Position {
            index: self.entries + 1,
            offset: e.raw_header_position(),
        };
        let raw = e.path().map_err(|err| read_error(at, err))?.into_owned();
        let name = raw.display().to_string();
        let hostile = |reason: String| ExtractError::Hostile {
            entry: name.clone(),
            reason,
            at,
        };
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(hostile(format!(
                "is past the limit of {} entries per archive",
                self.limits.max_entries
            )));
        }
        let size = e.size();
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_bytes {
            return Err(hostile(format!(
                "declares {size} bytes of data, which takes the archive past its limit of {} bytes",
                self.limits.max_bytes
            )));
        }
        let Some(rel) = relative(&raw).map_err(&hostile)? else {
            return Ok(None);
        };
        self.parents(&rel).map_err(&hostile)?;
        let header = e.header();
        let action = match header.entry_type() {
            tar::EntryType::Directory => Action::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => Action::File,
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|err| read_error(at, err))?
                    .ok_or_else(|| hostile("is a symlink without a target".into()))?
                    .into_owned();
                if !stays_inside(&rel, &target) {
                    return Err(hostile(format!(
                        "is a symlink to `{}`, outside the archive",
                        target.display()
                    )));
                }
                Action::Symlink(target)
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(|err| read_error(at, err))?
                    .ok_or_else(|| hostile("is a hard link without a target".into()))?;
                let trel = relative(&target)
                    .map_err(|r| format!("is a hard link to `{}`, which {r}", target.display()))
                    .map_err(&hostile)?
                    .ok_or_else(|| hostile("is a hard link to the root".into()))?;
                if self.tree.get(&trel) != Some(&Seen::File) {
                    return Err(hostile(format!(
                        "is a hard link to `{}`, which is not an earlier file of the archive",
                        target.display()
                    )));
                }
                Action::HardLink(trel)
            }
            tar::EntryType::Char if rel.starts_with("dev") => Action::Char,
            tar::EntryType::Block if rel.starts_with("dev") => Action::Block,
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(hostile("is a device node outside /dev".into()));
            }
            tar::EntryType::Fifo => Action::Fifo,
            other => return Err(hostile(format!("has an unsupported type ({other:?})"))),
        };
        let seen = match action {
            Action::Dir => Seen::Dir,
            Action::File | Action::HardLink(_) => Seen::File,
            Action::Symlink(_) => Seen::Symlink,
            Action::Char | Action::Block | Action::Fifo => Seen::Node,
        };
        match self.tree.get(&rel) {
            Some(Seen::Dir) if seen != Seen::Dir => return Err(hostile("replaces a directory".into())),
            Some(s) if *s != Seen::Dir && seen == Seen::Dir => {
                return Err(hostile("replaces a file or symlink with a directory".into()));
            }
            _ => {}
        }
        let field = |r: io::Result<u64>| r.map_err(|err| read_error(at, err));
        let checked = Checked {
            mode: header.mode().map_err(|err| read_error(at, err))? & 0o7777,
            uid: field(header.uid())?,
            gid: field(header.gid())?,
            mtime: field(header.mtime())?,
            dev: match action {
                Action::Char | Action::Block => (
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                ),
                _ => (0, 0),
            },
            name,
            rel,
            action,
        };
        self.tree.insert(checked.rel.clone(), seen);
        Ok(Some(checked))
    }
}

/// A malformed archive, at an entry.
pub(crate) fn read_error(at: Position, e: io::Error) -> ExtractError {
    ExtractError::Read(io::Error::new(e.kind(), format!("{at}: {e}")))
}

/// Counts the bytes of the tar stream and fails past `max`: a compressed
/// bomb (or a huge long name or pax header) stops at the limit instead of
/// filling the memory or the disk.
pub(crate) struct Budget<R> {
    inner: R,
    pub read: u64,
    max: u64,
}

impl<R: Read> Budget<R> {
    pub fn new(inner: R, limits: &Limits) -> Budget<R> {
        Budget {
            inner,
            read: 0,
            max: limits.max_bytes,
        }
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(io::Error::other(format!(
                "the tar stream goes past {} bytes, the limit for this archive (docs/update.md)",
                self.max
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_are_checked_lexically() {
        assert!(stays_inside(Path::new("usr/lib/x"), Path::new("../../bin/sh")));
        assert!(!stays_inside(Path::new("usr/lib/x"), Path::new("../../../etc")));
        assert!(stays_inside(Path::new("x"), Path::new("/etc/passwd")));
        assert!(!stays_inside(Path::new("x"), Path::new("..")));
    }

    #[test]
    fn limits_follow_the_source_size() {
        assert_eq!(Limits::for_source(0).max_bytes, Limits::FLOOR);
        assert_eq!(Limits::for_source(1 << 30).max_bytes, 100 << 30);
        assert_eq!(Limits::for_source(u64::MAX).max_bytes, Limits::MAX_BYTES);
    }
}
