//! Safe extraction of untrusted root-filesystem archives (docs/update.md),
//! and the same checks without extracting ([`scan`]).
//!
//! Every entry is checked by the archive rules ([`crate::rules`]) before
//! anything is written for it, and nothing is ever written outside the
//! destination: on top of the rules, no path is created through anything
//! but a real directory of the destination.
//!
//! Owners, modes, mtimes and extended attributes (PAX `SCHILY.xattr.*`) are
//! restored; directory times last.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use crate::rules::{Action, Budget, Checked, Checker};
pub use crate::rules::{Limits, Position};

/// Why an archive was rejected or could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive tries to reach outside its destination, holds what a
    /// root file system archive may not, or is past its limits.
    #[error("hostile archive: entry `{entry}` {reason} ({at})")]
    Hostile {
        entry: String,
        reason: String,
        at: Position,
    },
    /// The archive is malformed.
    #[error("cannot read the archive: {0}")]
    Read(#[source] io::Error),
    /// Writing into the destination failed.
    #[error("cannot extract `{entry}`: {source}")]
    Write {
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// What was extracted or scanned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    pub entries: u64,
    /// Bytes of file data.
    pub bytes: u64,
}

/// Opens a possibly compressed tar stream: zstd, xz and gzip are recognised
/// by their magic numbers.
pub fn decompressed(mut src: impl Read + 'static) -> io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        let n = src.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = io::Cursor::new(magic[..got].to_vec()).chain(src);
    Ok(match &magic[..got] {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(head)?),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Box::new(liblzma::read::XzDecoder::new_multi_decoder(head)),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(head)),
        _ => Box::new(head),
    })
}

/// Checks a tar stream (see [`decompressed`]) entry by entry with the rules
/// extraction applies, reading every header and skipping the data; writes
/// nothing.
pub fn scan(src: impl Read, limits: &Limits) -> Result<ExtractStats, ExtractError> {
    let mut archive = tar::Archive::new(Budget::new(src, limits));
    let mut checker = Checker::new(*limits);
    let mut stats = ExtractStats::default();
    let mut last = Position::default();
    for e in archive.entries().map_err(ExtractError::Read)? {
        let e = e.map_err(|err| after(last, err))?;
        if let Some(c) = checker.check(&e)? {
            if c.action == Action::File {
                stats.bytes += e.size();
            }
            stats.entries += 1;
        }
        last = Position {
            index: last.index + 1,
            offset: e.raw_header_position(),
        };
    }
    Ok(stats)
}

/// A read error past the entry at `last`.
fn after(last: Position, err: io::Error) -> ExtractError {
    if last.index == 0 {
        return ExtractError::Read(io::Error::new(err.kind(), format!("at the first entry: {err}")));
    }
    ExtractError::Read(io::Error::new(
        err.kind(),
        format!("after entry {} (header at byte {}): {err}", last.index, last.offset),
    ))
}

/// Creates the parents of `rel` under `dest`, never through anything but a
/// real directory (the rules already refused such archives; this guards
/// the destination's own content).
fn parents(dest: &Path, rel: &Path, entry: &str) -> Result<(), ExtractError> {
    let werr = |source: io::Error| ExtractError::Write {
        entry: entry.to_string(),
        source,
    };
    let mut cur = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(werr(io::Error::other(format!(
                    "{} is not a directory of the destination",
                    cur.display()
                ))));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(werr)?;
                let _ = fs::set_permissions(&cur, fs::Permissions::from_mode(0o755));
            }
            Err(e) => return Err(werr(e)),
        }
    }
    Ok(())
}

/// Removes what stands at `path` (not a directory), without following it.
fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Extracts a tar stream (see [`decompressed`]) into `dest`, which must
/// exist, within the default [`Limits`].
pub fn extract(src: impl Read, dest: &Path) -> Result<ExtractStats, ExtractError> {
    extract_with(src, dest, &Limits::default())
}

/// Extracts a tar stream into `dest` within `limits`.
pub fn extract_with(src: impl Read, dest: &Path, limits: &Limits) -> Result<ExtractStats, ExtractError> {
    let mut archive = tar::Archive::new(Budget::new(src, limits));
    let mut checker = Checker::new(*limits);
    let mut stats = ExtractStats::default();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let mut last = Position::default();
    for e in archive.entries().map_err(ExtractError::Read)? {
        let mut e = e.map_err(|err| after(last, err))?;
        last = Position {
            index: last.index + 1,
            offset: e.raw_header_position(),
        };
        let Some(c) = checker.check(&e)? else {
            continue;
        };
        parents(dest, &c.rel, &c.name)?;
        let mut xattrs = Vec::new();
        if let Ok(Some(exts)) = e.pax_extensions() {
            for x in exts.flatten() {
                if let Some(k) = x.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr."))
                    && !k.is_empty()
                {
                    xattrs.push((k.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        let path = dest.join(&c.rel);
        if let Some(t) = write_entry(&mut e, &c, &path, dest, &mut stats)? {
            dir_times.push((path.clone(), t));
        }
        if !matches!(c.action, Action::HardLink(_)) {
            restore(&c, &path, &xattrs)?;
        }
        stats.entries += 1;
    }
    for (p, t) in dir_times.into_iter().rev() {
        let t = TimeSpec::new(t, 0);
        let _ = utimensat(nix::fcntl::AT_FDCWD, &p, &t, &t, UtimensatFlags::NoFollowSymlink);
    }
    Ok(stats)
}

/// Creates one checked entry at `path`; a directory's mtime is returned,
/// to be set once its content is in place.
fn write_entry(
    e: &mut impl Read,
    c: &Checked,
    path: &Path,
    dest: &Path,
    stats: &mut ExtractStats,
) -> Result<Option<i64>, ExtractError> {
    let werr = |source: io::Error| ExtractError::Write {
        entry: c.name.clone(),
        source,
    };
    match &c.action {
        Action::Dir => {
            match fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(werr(io::Error::other("a non-directory is in the way"))),
                Err(_) => fs::create_dir(path).map_err(werr)?,
            }
            fs::set_permissions(path, fs::Permissions::from_mode(c.mode)).map_err(werr)?;
            return Ok(Some(i64::try_from(c.mtime).unwrap_or(0)));
        }
        Action::File => {
            clear(path).map_err(werr)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(werr)?;
            stats.bytes += io::copy(e, &mut f).map_err(werr)?;
            f.set_permissions(fs::Permissions::from_mode(c.mode)).map_err(werr)?;
        }
        Action::Symlink(target) => {
            clear(path).map_err(werr)?;
            symlink(target, path).map_err(werr)?;
        }
        Action::HardLink(trel) => {
            parents(dest, trel, &c.name)?;
            let tpath = dest.join(trel);
            match fs::symlink_metadata(&tpath) {
                Ok(m) if m.is_file() => {}
                _ => return Err(werr(io::Error::other(format!("{} is not a file", tpath.display())))),
            }
            clear(path).map_err(werr)?;
            fs::hard_link(&tpath, path).map_err(werr)?;
        }
        Action::Char | Action::Block | Action::Fifo => {
            let sflag = match c.action {
                Action::Char => SFlag::S_IFCHR,
                Action::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            clear(path).map_err(werr)?;
            let (major, minor) = c.dev;
            mknod(
                path,
                sflag,
                Mode::from_bits_truncate(c.mode),
                nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
            )
            .map_err(|e| werr(e.into()))?;
        }
    }
    Ok(None)
}

/// Restores an entry's owner, mode, extended attributes and (but for
/// directories) mtime.
fn restore(c: &Checked, path: &Path, xattrs: &[(String, Vec<u8>)]) -> Result<(), ExtractError> {
    let werr = |source: io::Error| ExtractError::Write {
        entry: c.name.clone(),
        source,
    };
    let symlink = matches!(c.action, Action::Symlink(_));
    std::os::unix::fs::lchown(path, Some(c.uid as u32), Some(c.gid as u32)).map_err(werr)?;
    if !symlink && c.action != Action::Dir {
        // chown clears set-id bits: restore the mode.
        fs::set_permissions(path, fs::Permissions::from_mode(c.mode)).map_err(werr)?;
    }
    if !symlink {
        for (k, v) in xattrs {
            xattr::set(path, k, v).map_err(werr)?;
        }
    }
    if c.action != Action::Dir {
        let t = TimeSpec::new(i64::try_from(c.mtime).unwrap_or(0), 0);
        utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(|e| werr(e.into()))?;
    }
    Ok(())
}
