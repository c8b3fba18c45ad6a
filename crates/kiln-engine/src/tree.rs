//! Host-side access to a tree kiln does not trust: an image tree (written
//! by packages and scripts) or a profile repository (written by its author).
//!
//! Every path is resolved by the kernel *inside* the tree's root
//! (`openat2` with `RESOLVE_IN_ROOT`): an absolute symlink or a `..` in the
//! tree resolves as it would for a process chrooted there, never to a host
//! path, and `/proc` magic links are refused. Final components that kiln
//! creates, truncates or removes are not followed at all. Reads of a
//! repository file refuse symlinks altogether ([`Tree::read_regular`]).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};

/// A directory opened as the root of path resolution.
#[derive(Debug)]
pub struct Tree {
    dir: OwnedFd,
    path: PathBuf,
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// `rel` split into normal components (leading `/` and `.` dropped; `..`
/// kept for the kernel to resolve inside the root).
fn components(rel: &str) -> Vec<&OsStr> {
    Path::new(rel)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect()
}

fn join(parts: &[&OsStr]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in parts {
        p.push(c);
    }
    if p.as_os_str().is_empty() {
        p.push(".");
    }
    p
}

impl Tree {
    /// Opens `path` (a host path kiln chose) as a tree root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let dir = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))?;
        Ok(Self {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The host path it was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, rel: &str, e: impl Into<io::Error>) -> io::Error {
        let e: io::Error = e.into();
        io::Error::new(
            e.kind(),
            format!("/{} in {}: {e}", rel.trim_start_matches('/'), self.path.display()),
        )
    }

    fn resolve(&self, rel: &[&OsStr], flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat2(&self.dir, join(rel), flags | OFlags::CLOEXEC, mode, IN_ROOT)
    }

    /// Opens `rel` for reading (symlinks followed inside the tree).
    pub fn open_file(&self, rel: &str) -> io::Result<File> {
        let fd = self
            .resolve(&components(rel), OFlags::RDONLY | OFlags::NOCTTY, Mode::empty())
            .map_err(|e| self.err(rel, e))?;
        Ok(File::from(fd))
    }

    /// The contents of `rel`, if it is there.
    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_file(rel)?
            .read_to_end(&mut out)
            .map_err(|e| self.err(rel, e))?;
        Ok(out)
    }

    pub fn read_to_string(&self, rel: &str) -> io::Result<String> {
        String::from_utf8(self.read(rel)?).map_err(|e| self.err(rel, io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// A regular file that must not be reached through any symlink (files
    /// of a profile repository): its open handle.
    pub fn read_regular(&self, rel: &str) -> io::Result<File> {
        let fd = rustix::fs::openat2(
            &self.dir,
            join(&components(rel)),
            OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| self.err(rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err(rel, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(self.err(rel, io::Error::other("not a regular file")));
        }
        Ok(File::from(fd))
    }

    /// Whether `rel` exists (symlinks followed inside the tree).
    pub fn exists(&self, rel: &str) -> bool {
        self.resolve(&components(rel), OFlags::PATH, Mode::empty()).is_ok()
    }

    /// The directory that contains `rel`'s last component, created (0755)
    /// where missing, and that component's name.
    fn parent_of<'a>(&self, rel: &'a str, create: bool) -> io::Result<(OwnedFd, &'a OsStr)> {
        let parts = components(rel);
        let Some((name, parents)) = parts.split_last() else {
            return Err(self.err(rel, io::Error::other("names the tree's root")));
        };
        if *name == OsStr::new("..") {
            return Err(self.err(rel, io::Error::other("ends in ..")));
        }
        for i in 0..=parents.len() {
            let prefix = &parents[..i];
            match self.resolve(prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
                Ok(fd) if i == parents.len() => return Ok((fd, name)),
                Ok(_) => {}
                Err(rustix::io::Errno::NOENT) if create && i > 0 => {
                    let (up, last) = (&parents[..i - 1], parents[i - 1]);
                    let dir = self
                        .resolve(up, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                        .map_err(|e| self.err(rel, e))?;
                    match rustix::fs::mkdirat(&dir, last, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(self.err(rel, e)),
                    }
                    if i == parents.len() {
                        let fd = self
                            .resolve(prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                            .map_err(|e| self.err(rel, e))?;
                        return Ok((fd, name));
                    }
                }
                Err(e) => return Err(self.err(rel, e)),
            }
        }
        Err(self.err(rel, io::Error::other("cannot resolve")))
    }

    /// Removes the entry `rel` names (not what a symlink there points to);
    /// a missing entry is not an error. Directories are refused.
    pub fn remove_file(&self, rel: &str) -> io::Result<()> {
        let (dir, name) = match self.parent_of(rel, false) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Replaces `rel` with a new regular file of `mode` holding what `data`
    /// yields; the parents are created inside the tree. Returns the open
    /// file (for owners, times).
    pub fn create_file(&self, rel: &str, mode: u32, data: &mut dyn Read) -> io::Result<File> {
        let (dir, name) = self.parent_of(rel, true)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(self.err(rel, e)),
        }
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )
        .map_err(|e| self.err(rel, e))?;
        let mut file = File::from(fd);
        io::copy(data, &mut file).map_err(|e| self.err(rel, e))?;
        file.flush().map_err(|e| self.err(rel, e))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777)).map_err(|e| self.err(rel, e))?;
        Ok(file)
    }

    /// Creates the character device `rel` (if nothing is there) with `mode`
    /// and owner root.
    pub fn create_char_device(&self, rel: &str, major: u32, minor: u32, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel, true)?;
        match rustix::fs::mknodat(
            &dir,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(mode & 0o777),
            rustix::fs::makedev(major, minor),
        ) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(self.err(rel, e)),
        }
        // mknod applies the umask: set the mode on what is there, unless
        // something else (a link) is.
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| self.err(rel, e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice {
            self.set_mode(rel, mode)?;
        }
        Ok(())
    }

    /// Creates directory `rel` (and its parents) if missing.
    pub fn create_dir(&self, rel: &str, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel, true)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode & 0o7777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Replaces `rel` with a symlink to `target`.
    pub fn create_symlink(&self, rel: &str, target: &str) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel, true)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(self.err(rel, e)),
        }
        rustix::fs::symlinkat(target, &dir, name).map_err(|e| self.err(rel, e))
    }

    /// Sets the owner of `rel` itself (a symlink is not followed).
    pub fn chown(&self, rel: &str, uid: u32, gid: u32) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel, false)?;
        rustix::fs::chownat(
            &dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(rel, e))
    }

    /// Sets the permission bits of `rel` (a regular file or directory; the
    /// last component is not followed).
    pub fn set_mode(&self, rel: &str, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel, false)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err(rel, e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(self.err(rel, io::Error::other("is a symlink")));
        }
        // An O_PATH descriptor cannot fchmod; its /proc link names exactly it.
        rustix::fs::chmod(
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
            Mode::from_raw_mode(mode & 0o7777),
        )
        .map_err(|e| self.err(rel, e))
    }

    /// The entries of directory `rel` (followed inside the tree): names and
    /// whether each is a directory (not following a symlink). A missing
    /// directory has none.
    pub fn entries(&self, rel: &str) -> io::Result<Vec<(PathBuf, EntryKind)>> {
        let fd = match self.resolve(&components(rel), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(rel, e)),
        };
        list(&fd).map_err(|e| self.err(rel, e))
    }

    /// Removes everything in directory `rel` for which `remove(name, kind)`
    /// says so, directories with their contents. Nothing through a symlink.
    pub fn clear_dir(&self, rel: &str, remove: impl Fn(&OsStr, EntryKind) -> bool) -> io::Result<()> {
        let fd = match self.resolve(&components(rel), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(self.err(rel, e)),
        };
        for (name, kind) in list(&fd).map_err(|e| self.err(rel, e))? {
            if remove(name.as_os_str(), kind) {
                remove_at(&fd, name.as_os_str(), kind).map_err(|e| self.err(rel, e))?;
            }
        }
        Ok(())
    }

    /// Truncates every regular file under directory `rel` to zero bytes,
    /// descending into real directories only.
    pub fn truncate_all(&self, rel: &str) -> io::Result<()> {
        let fd = match self.resolve(&components(rel), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(self.err(rel, e)),
        };
        truncate_under(&fd).map_err(|e| self.err(rel, e))
    }

    /// Truncates `rel` to zero bytes if it is a regular file (reached inside
    /// the tree, the last component not followed).
    pub fn truncate(&self, rel: &str) -> io::Result<()> {
        let (dir, name) = match self.parent_of(rel, false) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        truncate_at(&dir, name).map_err(|e| self.err(rel, e))
    }
}

/// What a directory entry is (its own type, links not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Other,
}

fn list(dir: &impl AsFd) -> io::Result<Vec<(PathBuf, EntryKind)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name);
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => EntryKind::Dir,
            FileType::RegularFile => EntryKind::File,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        out.push((PathBuf::from(name), kind));
    }
    out.sort();
    Ok(out)
}

fn open_subdir(dir: &impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn remove_at(dir: &impl AsFd, name: &OsStr, kind: EntryKind) -> io::Result<()> {
    if kind == EntryKind::Dir {
        let sub = open_subdir(dir, name)?;
        for (child, kind) in list(&sub)? {
            remove_at(&sub, child.as_os_str(), kind)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

fn truncate_at(dir: &impl AsFd, name: &OsStr) -> io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(());
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Checked again on the open file: it is the regular file we looked at.
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::RegularFile {
        rustix::fs::ftruncate(&fd, 0)?;
    }
    Ok(())
}

fn truncate_under(dir: &impl AsFd) -> io::Result<()> {
    for (name, kind) in list(dir)? {
        match kind {
            EntryKind::Dir => truncate_under(&open_subdir(dir, name.as_os_str())?)?,
            EntryKind::File => truncate_at(dir, name.as_os_str())?,
            EntryKind::Symlink | EntryKind::Other => {}
        }
    }
    Ok(())
}
