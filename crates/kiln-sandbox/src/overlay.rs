//! An overlayfs root for a user namespace. overlayfs itself cannot be
//! idmapped, but its layers can: when the tree is an overlay mount, stage 2
//! mounts a second overlay of the same layers over it (in the sandbox's own
//! mount namespace), each layer an idmapped clone of itself, so what the
//! sandbox's root writes lands in the upper layer owned by root.
//!
//! The caller's overlay stays mounted underneath and untouched while the
//! sandbox runs; the caller must remount its own before reading the tree
//! again (overlayfs caches what it has seen of its layers).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::mountinfo::unescape;
use crate::mounts::{attach, clone_path};
use crate::sys::{self, MOUNT_ATTR_IDMAP};

/// An overlay mount's layers, from the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layers {
    /// Top first, as overlayfs lists them.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Other options kept as they were (`redirect_dir=off`, …).
    pub options: Vec<String>,
}

/// The overlay mounted at `root` (the topmost mount there), if it is one.
pub(crate) fn find(table: &str, root: &Path) -> Option<Layers> {
    let line = table.lines().rfind(|line| {
        line.split(' ')
            .nth(4)
            .map(unescape)
            .is_some_and(|mp| Path::new(&mp) == root)
    })?;
    let (_, after) = line.split_once(" - ")?;
    let mut fields = after.split(' ');
    if fields.next()? != "overlay" {
        return None;
    }
    let super_options = unescape(fields.nth(1)?);
    parse_options(&super_options)
}

/// Splits overlayfs's options at unescaped commas, and `lowerdir` at
/// unescaped colons.
fn parse_options(options: &str) -> Option<Layers> {
    let (mut lowers, mut upper, mut work, mut rest) = (Vec::new(), None, None, Vec::new());
    for option in split_unescaped(options, ',') {
        if let Some(v) = option.strip_prefix("lowerdir=") {
            lowers = split_unescaped(v, ':')
                .into_iter()
                .map(|p| PathBuf::from(unbackslash(&p)))
                .collect();
        } else if let Some(v) = option.strip_prefix("upperdir=") {
            upper = Some(PathBuf::from(unbackslash(v)));
        } else if let Some(v) = option.strip_prefix("workdir=") {
            work = Some(PathBuf::from(unbackslash(v)));
        } else if option.starts_with("lowerdir+") || option.starts_with("datadir+") {
            // Layers given by descriptor: not ours to rebuild.
            return None;
        } else if option != "rw" && option != "ro" {
            rest.push(option);
        }
    }
    if lowers.is_empty() {
        return None;
    }
    let upper = match (upper, work) {
        (Some(u), Some(w)) => Some((u, w)),
        (None, None) => None,
        _ => return None,
    };
    Some(Layers {
        lowers,
        upper,
        options: rest,
    })
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        let last = out.last_mut().expect("never empty");
        if escaped {
            last.push('\\');
            last.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(String::new());
        } else {
            last.push(c);
        }
    }
    out
}

fn unbackslash(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if !escaped && c == '\\' {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

fn escape_path(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Mounts at `root` an overlay of `layers`, each layer an idmapped clone.
///
/// The clones are made detached (nothing of the host's paths changes), then
/// attached to directories of a scratch tmpfs stacked on `root`, and the new
/// overlay is mounted on `root` over that (overlayfs keeps private copies of
/// its layers' mounts, so covering the scratch tmpfs is fine). The upper and
/// work directories share one clone of their common parent: overlayfs wants
/// them on one mount.
pub(crate) fn mount_idmapped(root: &Path, layers: &Layers, userns: BorrowedFd<'_>) -> Result<(), String> {
    let idmapped = |dir: &Path| -> Result<OwnedFd, String> {
        let tree = clone_path(dir, false).map_err(|e| format!("open_tree {}: {e}", dir.display()))?;
        sys::mount_setattr(tree.as_fd(), false, MOUNT_ATTR_IDMAP, Some(userns)).map_err(|e| {
            format!(
                "idmapped mount of the overlay layer {}: {e} (its filesystem does not support idmapped mounts)",
                dir.display()
            )
        })?;
        Ok(tree)
    };
    let lowers = layers
        .lowers
        .iter()
        .map(|l| idmapped(l))
        .collect::<Result<Vec<_>, _>>()?;
    let upper = match &layers.upper {
        None => None,
        Some((upper, work)) => {
            let (Some(parent), Some(upper_name), Some(work_name)) =
                (upper.parent(), upper.file_name(), work.file_name())
            else {
                return Err(format!("bad overlay upper directory {}", upper.display()));
            };
            if work.parent() != Some(parent) {
                return Err(format!(
                    "the overlay's upper {} and work {} directories are not siblings",
                    upper.display(),
                    work.display()
                ));
            }
            Some((idmapped(parent)?, upper_name.to_owned(), work_name.to_owned()))
        }
    };

    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=700,size=64k"),
    )
    .map_err(|e| format!("scratch tmpfs on {}: {e}", root.display()))?;
    let place = |name: &str, tree: OwnedFd| -> Result<PathBuf, String> {
        let at = root.join(name);
        std::fs::create_dir(&at).map_err(|e| format!("create {}: {e}", at.display()))?;
        attach(tree, &at, false, false, None)?;
        Ok(at)
    };
    let mut lower_paths = Vec::new();
    for (i, tree) in lowers.into_iter().enumerate() {
        lower_paths.push(escape_path(&place(&format!("l{i}"), tree)?));
    }
    let mut options = vec![format!("lowerdir={}", lower_paths.join(":"))];
    if let Some((tree, upper_name, work_name)) = upper {
        let parent = place("u", tree)?;
        options.push(format!("upperdir={}", escape_path(&parent.join(upper_name))));
        options.push(format!("workdir={}", escape_path(&parent.join(work_name))));
    }
    options.extend(layers.options.iter().cloned());
    let flags = if layers.upper.is_none() {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    let options = options.join(",");
    mount(Some("overlay"), root, Some("overlay"), flags, Some(options.as_str()))
        .map_err(|e| format!("overlay of idmapped layers at {}: {e}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_come_from_the_mount_table() {
        let table = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
97 22 0:45 / /w/merged rw,relatime - overlay overlay rw,lowerdir=/c/e/b/layer:/c/e/a/layer,upperdir=/c/t/k/layer,workdir=/c/t/k/work,redirect_dir=off,uuid=on,metacopy=off
98 22 0:46 / /w/ro rw,relatime - overlay overlay ro,lowerdir=/c/x\\:y/layer:/c/z
";
        let l = find(table, Path::new("/w/merged")).expect("overlay");
        assert_eq!(l.lowers, [PathBuf::from("/c/e/b/layer"), PathBuf::from("/c/e/a/layer")]);
        assert_eq!(
            l.upper,
            Some((PathBuf::from("/c/t/k/layer"), PathBuf::from("/c/t/k/work")))
        );
        assert_eq!(l.options, ["redirect_dir=off", "uuid=on", "metacopy=off"]);
        let ro = find(table, Path::new("/w/ro")).expect("overlay");
        assert_eq!(ro.lowers, [PathBuf::from("/c/x:y/layer"), PathBuf::from("/c/z")]);
        assert_eq!(ro.upper, None);
        assert_eq!(find(table, Path::new("/")), None);
        assert_eq!(find(table, Path::new("/nowhere")), None);
    }
}
