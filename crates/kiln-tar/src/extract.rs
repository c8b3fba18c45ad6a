//! Safe extraction of untrusted root-filesystem archives (docs/update.md).
//!
//! Every entry is checked before anything is written for it, and nothing is
//! ever written outside the destination:
//!
//! * absolute paths and `..` components are rejected;
//! * no path is resolved through a symlink: an entry whose parent is a
//!   symlink (or a file) in the destination is rejected, so a symlink entry
//!   cannot redirect later entries outside;
//! * a relative symlink target may not climb above the archive's root
//!   (absolute targets are kept: inside an image they name image paths);
//! * hard links must name an earlier entry, by the same rules;
//! * device nodes are accepted only under `dev/`;
//! * anything else (sparse files, unknown types) is rejected.
//!
//! Owners, modes, mtimes and extended attributes (PAX `SCHILY.xattr.*`) are
//! restored; directory times last.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

/// Why an archive was rejected or could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive tries to reach outside its destination, or holds what a
    /// root file system archive may not.
    #[error("hostile archive: entry `{entry}` {reason}; nothing was written outside the destination")]
    Hostile { entry: String, reason: String },
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

fn hostile(entry: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Hostile {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// What was extracted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    pub entries: u64,
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

/// The entry's path made relative and checked: no absolute path, no `..`.
/// `None` for the root itself.
fn relative(entry: &str, p: &Path) -> Result<Option<PathBuf>, ExtractError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => {
                return Err(hostile(entry, "has an absolute path"));
            }
            Component::ParentDir => return Err(hostile(entry, "has a `..` component")),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates the parents of `rel` under `dest`, refusing to go through
/// anything but real directories.
fn parents(dest: &Path, rel: &Path, entry: &str) -> Result<(), ExtractError> {
    let mut cur = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(hostile(entry, "would be written through a symlink"));
            }
            Ok(_) => return Err(hostile(entry, "would be written below a file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|source| ExtractError::Write {
                    entry: entry.to_string(),
                    source,
                })?;
                let _ = fs::set_permissions(&cur, fs::Permissions::from_mode(0o755));
            }
            Err(source) => {
                return Err(ExtractError::Write {
                    entry: entry.to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Whether a relative symlink target, resolved lexically from the link's
/// directory, stays inside the root.
fn stays_inside(link_rel: &Path, target: &Path) -> bool {
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
/// exist.
pub fn extract(src: impl Read, dest: &Path) -> Result<ExtractStats, ExtractError> {
    let mut archive = tar::Archive::new(src);
    let mut stats = ExtractStats::default();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for e in archive.entries().map_err(ExtractError::Read)? {
        let mut e = e.map_err(ExtractError::Read)?;
        let raw = e.path().map_err(ExtractError::Read)?.into_owned();
        let name = raw.display().to_string();
        let Some(rel) = relative(&name, &raw)? else {
            continue;
        };
        parents(dest, &rel, &name)?;
        let path = dest.join(&rel);
        let header = e.header().clone();
        let mode = header.mode().map_err(ExtractError::Read)? & 0o7777;
        let (uid, gid) = (
            header.uid().map_err(ExtractError::Read)?,
            header.gid().map_err(ExtractError::Read)?,
        );
        let mtime = header.mtime().map_err(ExtractError::Read)?;
        let werr = |source: io::Error| ExtractError::Write {
            entry: name.clone(),
            source,
        };
        let kind = header.entry_type();
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
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(hostile(&name, "replaces a file or symlink with a directory")),
                    Err(_) => fs::create_dir(&path).map_err(werr)?,
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(werr)?;
                dir_times.push((path.clone(), i64::try_from(mtime).unwrap_or(0)));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&path).map_err(werr)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(werr)?;
                stats.bytes += io::copy(&mut e, &mut f).map_err(werr)?;
                f.set_permissions(fs::Permissions::from_mode(mode)).map_err(werr)?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(ExtractError::Read)?
                    .ok_or_else(|| hostile(&name, "is a symlink without a target"))?
                    .into_owned();
                if !stays_inside(&rel, &target) {
                    return Err(hostile(
                        &name,
                        format!("is a symlink to `{}`, outside the archive", target.display()),
                    ));
                }
                clear(&path).map_err(werr)?;
                symlink(&target, &path).map_err(werr)?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(ExtractError::Read)?
                    .ok_or_else(|| hostile(&name, "is a hard link without a target"))?
                    .into_owned();
                let Some(trel) = relative(&name, &target)? else {
                    return Err(hostile(&name, "is a hard link to the root"));
                };
                parents(dest, &trel, &name)?;
                let tpath = dest.join(&trel);
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if m.is_file() => {}
                    _ => return Err(hostile(&name, "is a hard link to something other than an earlier file")),
                }
                clear(&path).map_err(werr)?;
                fs::hard_link(&tpath, &path).map_err(werr)?;
                stats.entries += 1;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let is_fifo = kind == tar::EntryType::Fifo;
                if !is_fifo && !rel.starts_with("dev") {
                    return Err(hostile(&name, "is a device node outside /dev"));
                }
                let (major, minor) = (
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                clear(&path).map_err(werr)?;
                mknod(
                    &path,
                    sflag,
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| werr(e.into()))?;
            }
            other => return Err(hostile(&name, format!("has an unsupported type ({other:?})"))),
        }
        std::os::unix::fs::lchown(&path, Some(uid as u32), Some(gid as u32)).map_err(werr)?;
        if kind != tar::EntryType::Symlink && kind != tar::EntryType::Directory {
            // chown clears set-id bits: restore the mode.
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(werr)?;
        }
        for (k, v) in &xattrs {
            if kind != tar::EntryType::Symlink {
                xattr::set(&path, k, v).map_err(werr)?;
            }
        }
        if kind != tar::EntryType::Directory {
            let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
            utimensat(nix::fcntl::AT_FDCWD, &path, &t, &t, UtimensatFlags::NoFollowSymlink)
                .map_err(|e| werr(e.into()))?;
        }
        stats.entries += 1;
    }
    for (p, t) in dir_times.into_iter().rev() {
        let t = TimeSpec::new(t, 0);
        let _ = utimensat(nix::fcntl::AT_FDCWD, &p, &t, &t, UtimensatFlags::NoFollowSymlink);
    }
    Ok(stats)
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
}
