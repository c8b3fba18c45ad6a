//! The few system calls the sandbox needs that neither `nix` nor `rustix`
//! wraps. This is the crate's only `unsafe` code: each function is one call
//! with plain integer or pointer-to-local arguments, and the kernel copies
//! what it reads before returning.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// `MOUNT_ATTR_RDONLY`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_IDMAP`.
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (linux/mount.h, version 0: 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], {attr_set, userns_fd})`
/// on a detached mount made by `open_tree(OPEN_TREE_CLONE)`.
pub(crate) fn mount_setattr(
    mount: BorrowedFd<'_>,
    recursive: bool,
    attr_set: u64,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| u64::try_from(fd.as_raw_fd()).unwrap_or(0)),
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the path is a NUL-terminated literal, `attr` lives across the
    // call and its size is passed; the kernel only reads both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_fd().as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the filesystem user and group ids used for file creation and access
/// checks (`setfsgid`, then `setfsuid`). Both calls return the previous id
/// and never fail in a way they report; the caller checks the effect.
pub(crate) fn set_fs_ids(uid: u32, gid: u32) {
    // SAFETY: plain integer arguments; no memory is involved.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
    }
}

/// Drops capability `cap` from the bounding set (`PR_CAPBSET_DROP`).
/// Capabilities the kernel does not know are not an error.
pub(crate) fn drop_bounding(cap: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Joins a new anonymous session keyring, so the keys of whoever started
/// kiln are not the sandbox's (`keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`).
pub(crate) fn new_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks for an anonymous keyring; nothing is read.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<u8>()) };
    if ret >= 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
