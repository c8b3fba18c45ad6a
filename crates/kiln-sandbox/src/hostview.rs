//! The host view ([`crate::View::Host`]): a tmpfs root holding the host's
//! programs read-only and an `/etc` of public files, for commands that run
//! host tools on a tree (build-side scripts, the package bootstrap).
//!
//! Host files keep their host owners, which the sandbox's user namespace
//! does not map: inside they belong to `nobody`, so only what the host lets
//! everyone read can be read, whatever the list says.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::mounts::{attach, clone_path};
use crate::stage1::{Failure, fail};

/// Top-level host directories (or their merged-/usr symlinks) in the view.
pub const HOST_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Entries of the host's `/etc` in the view, where present: what programs
/// need to start (dynamic linker, alternatives, name service, time zone),
/// public configuration of the tools (apt, dpkg, perl, python, TLS
/// certificates, mke2fs). Never `shadow`, `sudoers`, `ssh`, `kiln` or any
/// other file of secrets or host configuration.
pub const HOST_ETC: &[&str] = &[
    "alternatives",
    "apt",
    "ca-certificates.conf",
    "debian_version",
    "dpkg",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "mke2fs.conf",
    "mtab",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "perl",
    "protocols",
    "python3",
    "services",
    "ssl/certs",
    "timezone",
    "xattr.conf",
];

/// Fills the tmpfs mounted at `root` (before `pivot_root`, so host paths
/// are still the host's).
pub(crate) fn build(root: &Path) -> Result<(), Failure> {
    for name in HOST_DIRS {
        mirror(Path::new("/").join(name).as_path(), &root.join(name))?;
    }
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(|e| fail("host view", format!("create /etc: {e}")))?;
    for name in HOST_ETC {
        mirror(&Path::new("/etc").join(name), &etc.join(name))?;
    }
    // The mount point of the host's resolv.conf when the command has the
    // network (empty otherwise).
    fs::File::create(etc.join("resolv.conf"))
        .map_err(|e| fail("host view", format!("create /etc/resolv.conf: {e}")))?;
    Ok(())
}

/// Reproduces one host entry: a symlink as a symlink, a directory or file as
/// a read-only bind (recursive for directories). Missing entries are skipped.
fn mirror(host: &Path, inside: &Path) -> Result<(), Failure> {
    let step = || format!("host view {}", host.display());
    let Ok(meta) = fs::symlink_metadata(host) else {
        return Ok(());
    };
    if let Some(parent) = inside.parent() {
        fs::create_dir_all(parent).map_err(|e| fail(step(), format!("create {}: {e}", parent.display())))?;
    }
    if meta.file_type().is_symlink() {
        let target = fs::read_link(host).map_err(|e| fail(step(), format!("readlink: {e}")))?;
        return symlink(&target, inside).map_err(|e| fail(step(), format!("symlink: {e}")));
    }
    if meta.is_dir() {
        fs::create_dir(inside).map_err(|e| fail(step(), format!("create {}: {e}", inside.display())))?;
    } else {
        fs::File::create(inside).map_err(|e| fail(step(), format!("create {}: {e}", inside.display())))?;
    }
    let tree = clone_path(host, meta.is_dir()).map_err(|e| fail(step(), format!("open_tree: {e}")))?;
    attach(tree, inside, meta.is_dir(), true, None).map_err(|e| fail(step(), e))
}
