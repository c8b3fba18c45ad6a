//! The host side of a build, behind the [`Host`] trait: the host tools kiln
//! finds and runs on the host (not in the sandbox), the mounts of cached
//! layers, apt's downloader, kiln's tar writer and the `/dev` nodes of a
//! bootstrapped tree. [`RealHost`] is the machine itself; a stand-in that
//! records what it is asked lets the stage logic run without root or tools.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_host::ToolStatus;

use crate::args::Cmd;
use crate::hostside::populate_dev;
use crate::log::BuildLog;
use crate::run::{Ended, run_logged};
use crate::tree::Tree;

/// A mounted tree, unmounted when dropped.
pub trait Mounted {
    /// Where the tree is mounted.
    fn target(&self) -> &Path;
}

/// A writable overlay of cached layers that can be mounted again.
pub trait Overlay: Mounted {
    /// Unmounts and mounts the same layers again: after another overlay of
    /// them (the sandbox's) wrote to the upper layer, only a new mount sees
    /// it all.
    fn remount(&mut self) -> io::Result<()>;
}

/// What a build does on the host, outside the sandbox.
pub trait Host: Send + Sync {
    /// The host tools kiln knows: where each is and its version.
    fn probe(&self) -> Vec<ToolStatus>;

    /// Runs a host tool in a process group of its own, its output streamed
    /// into `log`; killed when `timeout` passes or the build is interrupted.
    /// The tool sees `SOURCE_DATE_EPOCH` only when `cmd.env` sets it.
    fn run(&self, cmd: &Cmd, log: &BuildLog, timeout: Option<Duration>) -> io::Result<Ended>;

    /// Runs a host tool whose output kiln reads (nothing is logged).
    fn output(&self, cmd: &Cmd) -> io::Result<std::process::Output>;

    /// Fetches `url` into `dest` with apt's own downloader, so the host's
    /// proxy settings apply; whether it worked.
    fn download(&self, url: &str, dest: &Path) -> bool;

    /// Mounts `lowers` (bottom first) at `target` with `upper` (and its
    /// overlayfs work directory `work`) receiving every change.
    fn mount_overlay(
        &self,
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: &Path,
    ) -> io::Result<Box<dyn Overlay>>;

    /// Mounts `layers` (bottom first) read-only at `target`.
    fn mount_read_only(&self, layers: &[PathBuf], target: &Path) -> io::Result<Box<dyn Mounted>>;

    /// Takes charge of a mount made by a tool (`mount -o loop`), so it is
    /// undone when dropped like the others.
    fn adopt_mount(&self, target: &Path) -> Box<dyn Mounted>;

    /// Adds the device nodes of a root tree's `/dev` to a bootstrapped tree
    /// (the bootstrap cannot make them in a user namespace).
    fn populate_dev(&self, root: &Path) -> io::Result<()>;

    /// Writes the tree `root` as a tar archive `dest` with kiln's tar writer.
    fn write_tar(&self, root: &Path, dest: &Path, opts: &kiln_tar::Options) -> Result<kiln_tar::Stats, String>;

    /// Copies the tree `from` to `to` (`cp -a`), as far as it goes: a failed
    /// step's tree kept for inspection.
    fn copy_tree(&self, from: &Path, to: &Path);
}

/// The machine kiln runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHost;

impl Mounted for kiln_store::overlay::Mount {
    fn target(&self) -> &Path {
        kiln_store::overlay::Mount::target(self)
    }
}

impl Mounted for kiln_store::overlay::Layered {
    fn target(&self) -> &Path {
        kiln_store::overlay::Layered::target(self)
    }
}

impl Overlay for kiln_store::overlay::Layered {
    fn remount(&mut self) -> io::Result<()> {
        kiln_store::overlay::Layered::remount(self)
    }
}

fn command(cmd: &Cmd) -> Command {
    let mut c = Command::new(cmd.program);
    c.args(&cmd.args).env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    c
}

impl Host for RealHost {
    fn probe(&self) -> Vec<ToolStatus> {
        kiln_host::probe(None)
    }

    fn run(&self, cmd: &Cmd, log: &BuildLog, timeout: Option<Duration>) -> io::Result<Ended> {
        run_logged(command(cmd), log, timeout)
    }

    fn output(&self, cmd: &Cmd) -> io::Result<std::process::Output> {
        let mut c = Command::new(cmd.program);
        c.args(&cmd.args);
        for (k, v) in &cmd.env {
            c.env(k, v);
        }
        c.output()
    }

    fn download(&self, url: &str, dest: &Path) -> bool {
        Command::new("/usr/lib/apt/apt-helper")
            .args(["download-file", url])
            .arg(dest)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn mount_overlay(
        &self,
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: &Path,
    ) -> io::Result<Box<dyn Overlay>> {
        Ok(Box::new(kiln_store::overlay::Layered::mount(
            lowers, upper, work, target,
        )?))
    }

    fn mount_read_only(&self, layers: &[PathBuf], target: &Path) -> io::Result<Box<dyn Mounted>> {
        Ok(Box::new(kiln_store::overlay::mount_layers(layers, None, target)?))
    }

    fn adopt_mount(&self, target: &Path) -> Box<dyn Mounted> {
        Box::new(kiln_store::overlay::Mount::adopt(target))
    }

    fn populate_dev(&self, root: &Path) -> io::Result<()> {
        Tree::open(root).and_then(|tree| populate_dev(&tree))
    }

    fn write_tar(&self, root: &Path, dest: &Path, opts: &kiln_tar::Options) -> Result<kiln_tar::Stats, String> {
        kiln_tar::write_tree_to_file(root, dest, opts).map_err(|e| e.to_string())
    }

    fn copy_tree(&self, from: &Path, to: &Path) {
        let _ = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status();
    }
}
