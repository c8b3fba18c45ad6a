//! kiln's own steps on an image tree, run as root on the host: the cleanup
//! stage, the `/dev` nodes after the bootstrap, reading the dpkg status.
//! Every path goes through [`Tree`], so nothing the tree planted leads
//! them onto the host (docs/sandbox.md).

use std::path::Path;

use crate::tree::{EntryKind, Tree};

/// The cleanup stage (docs/profiles.md): apt lists and caches, machine-id
/// emptied, logs truncated. Every path resolves inside the tree's root and
/// nothing is removed or truncated through a symlink.
pub fn cleanup(root: &Path) -> std::io::Result<()> {
    let tree = Tree::open(root)?;
    tree.clear_dir("var/lib/apt/lists", |name, _| name != "lock")?;
    tree.clear_dir("var/cache/apt/archives", |name, kind| {
        !(name == "lock" || (name == "partial" && kind == EntryKind::Dir))
    })?;
    for f in ["var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"] {
        tree.remove_file(f)?;
    }
    tree.truncate("etc/machine-id")?;
    tree.remove_file("var/lib/dbus/machine-id")?;
    tree.truncate_all("var/log")
}

/// The standard nodes of a root tree's `/dev`, as `mmdebstrap --mode=root`
/// leaves them: character devices (major, minor), `pts` and `shm`, and the
/// links to `/proc/self/fd`.
const DEV_NODES: &[(&str, u32, u32)] = &[
    ("console", 5, 1),
    ("full", 1, 7),
    ("null", 1, 3),
    ("ptmx", 5, 2),
    ("random", 1, 8),
    ("tty", 5, 0),
    ("urandom", 1, 9),
    ("zero", 1, 5),
];
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

pub(crate) fn populate_dev(tree: &Tree) -> std::io::Result<()> {
    tree.create_dir("dev", 0o755)?;
    for (name, major, minor) in DEV_NODES {
        tree.create_char_device(&format!("dev/{name}"), *major, *minor, 0o666)?;
    }
    for dir in ["pts", "shm"] {
        tree.create_dir(&format!("dev/{dir}"), 0o755)?;
    }
    for (name, target) in DEV_LINKS {
        if !tree.exists(&format!("dev/{name}")) {
            tree.create_symlink(&format!("dev/{name}"), target)?;
        }
    }
    Ok(())
}

/// The tree's dpkg status database (read inside the tree's root), or
/// nothing.
pub(crate) fn dpkg_status(root: &Path) -> String {
    Tree::open(root)
        .and_then(|t| t.read_to_string("var/lib/dpkg/status"))
        .unwrap_or_default()
}
