//! overlayfs mounts of cached layers, in kiln's own mount namespace.
//!
//! A build runs in a private mount namespace of its own
//! ([`enter_private_mount_namespace`]): every mount it makes is invisible to
//! the host and is undone by the kernel when the build's last process ends,
//! however it ends (even by SIGKILL). A [`Mount`] is also unmounted when
//! dropped, so a stage's mount ends with the stage.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// Moves the calling process (it must still be single-threaded, or only the
/// calling thread moves) into a new mount namespace whose mounts do not
/// propagate back to the host.
pub fn enter_private_mount_namespace() -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNS): {e}")))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("making / private: {e}")))
}

/// A mounted overlay (or bind mount); unmounted on drop.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    mounted: bool,
}

impl Mount {
    /// Takes charge of a mount made elsewhere (e.g. by `mount -o loop`), so
    /// it is undone like the others.
    pub fn adopt(target: &Path) -> Mount {
        Mount {
            target: target.to_path_buf(),
            mounted: true,
        }
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure (drop ignores it and detaches).
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> io::Result<()> {
        self.mounted = false;
        umount2(&self.target, MntFlags::empty())
            .map_err(|e| io::Error::other(format!("unmounting {}: {e}", self.target.display())))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted && umount2(&self.target, MntFlags::empty()).is_err() {
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

/// A writable overlay that keeps its layers, so it can be mounted again.
#[derive(Debug)]
pub struct Layered {
    lowers: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    mount: Mount,
}

impl Layered {
    /// [`mount_layers`] with an upper layer, remembered.
    pub fn mount(lowers: Vec<PathBuf>, upper: PathBuf, work: PathBuf, target: &Path) -> io::Result<Self> {
        let mount = mount_layers(&lowers, Some((&upper, &work)), target)?;
        Ok(Self {
            lowers,
            upper,
            work,
            mount,
        })
    }

    pub fn target(&self) -> &Path {
        self.mount.target()
    }

    /// Unmounts and mounts the same layers again. overlayfs caches what it
    /// has seen of its layers; after another overlay of them (the
    /// sandbox's) wrote to the upper layer, only a new mount sees it all.
    pub fn remount(&mut self) -> io::Result<()> {
        let target = self.mount.target.clone();
        if self.mount.unmount_now().is_err() {
            // Busy: detach it, as drop would; the new mount takes its place.
            umount2(&target, MntFlags::MNT_DETACH)
                .map_err(|e| io::Error::other(format!("unmounting {}: {e}", target.display())))?;
        }
        self.mount = mount_layers(&self.lowers, Some((&self.upper, &self.work)), &target)?;
        Ok(())
    }
}

fn check_path(p: &Path) -> io::Result<&str> {
    let s = p
        .to_str()
        .ok_or_else(|| io::Error::other(format!("{} is not UTF-8", p.display())))?;
    if s.contains([':', ',', '\\']) {
        return Err(io::Error::other(format!(
            "{s}: overlayfs paths cannot contain `:`, `,` or `\\`"
        )));
    }
    Ok(s)
}

/// The kernel reads mount options from one page.
const MAX_OPTIONS: usize = 4000;

/// Mounts `lowers` (bottom first) at `target`, with `upper` (upper and work
/// directories, on one file system) receiving every change, or read-only
/// without it. A single lower layer without an upper is bind-mounted
/// read-only.
pub fn mount_layers(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<Mount> {
    if lowers.is_empty() {
        return Err(io::Error::other("an overlay needs at least one lower layer"));
    }
    if lowers.len() == 1 && upper.is_none() {
        mount(Some(&lowers[0]), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| io::Error::other(format!("bind-mounting {}: {e}", lowers[0].display())))?;
        let m = Mount {
            target: target.to_path_buf(),
            mounted: true,
        };
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| io::Error::other(format!("making {} read-only: {e}", target.display())))?;
        return Ok(m);
    }
    // overlayfs lists lower layers top first.
    let mut lower = Vec::with_capacity(lowers.len());
    for l in lowers.iter().rev() {
        lower.push(check_path(l)?);
    }
    let mut options = format!("lowerdir={}", lower.join(":"));
    if let Some((u, w)) = upper {
        // Every change lands in the upper layer as a whole: no redirects to
        // lower directories, no metadata-only copies. A layer then stands
        // on its own, as a cache entry and as the input of a squashfs rewrite.
        options += &format!(
            ",upperdir={},workdir={},redirect_dir=off,metacopy=off",
            check_path(u)?,
            check_path(w)?
        );
    }
    if options.len() > MAX_OPTIONS {
        return Err(io::Error::other(format!(
            "{} layers are more than one overlay mount can stack; build with --no-cache",
            lowers.len()
        )));
    }
    let flags = if upper.is_none() {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(Some("overlay"), target, Some("overlay"), flags, Some(options.as_str()))
        .map_err(|e| io::Error::other(format!("mounting the overlay at {}: {e}", target.display())))?;
    Ok(Mount {
        target: target.to_path_buf(),
        mounted: true,
    })
}
