//! Detached mounts: clone a path or an open descriptor with `open_tree`, set
//! its attributes (idmapping, read-only) while it is attached nowhere, then
//! attach it with `move_mount`. Nothing is visible half-configured.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::CWD;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

use crate::sys::{self, MOUNT_ATTR_IDMAP, MOUNT_ATTR_RDONLY};

fn flags(recursive: bool) -> OpenTreeFlags {
    let mut f = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        f |= OpenTreeFlags::AT_RECURSIVE;
    }
    f
}

/// A detached copy of the mount tree at `path` (recursive: with the mounts
/// below it).
pub(crate) fn clone_path(path: &Path, recursive: bool) -> std::io::Result<OwnedFd> {
    Ok(open_tree(CWD, path, flags(recursive))?)
}

/// A detached copy of what `fd` (an `O_PATH` descriptor) names.
pub(crate) fn clone_fd(fd: BorrowedFd<'_>, recursive: bool) -> std::io::Result<OwnedFd> {
    Ok(open_tree(fd, "", flags(recursive) | OpenTreeFlags::AT_EMPTY_PATH)?)
}

/// Sets the detached mount's attributes and attaches it at `target`.
/// `idmap`: a user namespace whose mapping the mount gets (files owned by
/// host id N appear, through this mount, owned by the id that N maps to).
pub(crate) fn attach(
    tree: OwnedFd,
    target: &Path,
    recursive: bool,
    read_only: bool,
    idmap: Option<BorrowedFd<'_>>,
) -> Result<(), String> {
    let mut attrs = 0;
    if idmap.is_some() {
        attrs |= MOUNT_ATTR_IDMAP;
    }
    if read_only {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    if attrs != 0 {
        sys::mount_setattr(tree.as_fd(), recursive, attrs, idmap).map_err(|e| {
            if idmap.is_some() && e.raw_os_error() == Some(libc::EINVAL) {
                format!(
                    "idmapped mount of {}: {e} (its filesystem does not support idmapped mounts)",
                    target.display()
                )
            } else {
                format!("set the attributes of {}: {e}", target.display())
            }
        })?;
    }
    move_mount(tree.as_fd(), "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(|e| format!("attach onto {}: {e}", target.display()))
}
