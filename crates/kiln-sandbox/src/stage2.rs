//! Stage 2 of the helper: PID 1 of the sandbox. Builds the filesystem view,
//! then execs the command (which stays PID 1).

use std::convert::Infallible;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{Mode, SFlag, fstat, umask};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{chdir, chroot, pivot_root, sethostname};

use crate::confine::{self, ID_BASE};
use crate::protocol::{self, ENV_STAGE1, ENV_USERNS, Report, SETUP_FAILED_EXIT, StatusWriter};
use crate::stage1::{Failure, check_root, fail};
use crate::{Bind, CopyIn, Spec, View, hostview, mounts, overlay, sys};

/// Device nodes bound from the host into the sandbox's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const RESOLV_CONF: &str = "/etc/resolv.conf";

pub(crate) fn main() -> ! {
    // Stage 1 blocked signals for sigwait; the command must start clean.
    let _ = SigSet::empty().thread_set_mask();
    // Die with stage 1, and make sure it did not die before this was set.
    if set_pdeathsig(Signal::SIGKILL).is_err() || !parent_is_stage1() {
        std::process::exit(SETUP_FAILED_EXIT);
    }
    let status = StatusWriter::open();
    let Err(Failure { step, message }) = setup_and_exec();
    status.send(&Report::Setup { step, message });
    std::process::exit(SETUP_FAILED_EXIT)
}

/// Our parent is outside our PID namespace, so `getppid()` says 0; the
/// host's `/proc` (still mounted here) shows its real PID.
fn parent_is_stage1() -> bool {
    let Some(expected) = std::env::var(ENV_STAGE1).ok() else {
        return true;
    };
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("PPid:"))
            .is_some_and(|ppid| ppid.trim() == expected)
    })
}

/// A host file or directory opened (`O_PATH`) before leaving the host's tree;
/// mounted later from the descriptor (`open_tree`).
struct HostPath {
    fd: OwnedFd,
    is_dir: bool,
}

impl HostPath {
    fn open(path: &Path) -> nix::Result<Self> {
        let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
        let stat = fstat(&fd)?;
        let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        Ok(Self { fd, is_dir })
    }
}

/// How the command is confined: the user namespace it enters (and whose
/// mapping the tree's mount gets), if any.
struct Confined {
    userns: Option<OwnedFd>,
}

impl Confined {
    fn idmap(&self) -> Option<BorrowedFd<'_>> {
        self.userns.as_ref().map(AsFd::as_fd)
    }

    /// Mount options giving a tmpfs's root to the sandbox's root.
    fn tmpfs_owner(&self) -> String {
        if self.userns.is_some() {
            format!(",uid={ID_BASE},gid={ID_BASE}")
        } else {
            String::new()
        }
    }
}

/// The user namespace stage 1 made, through `/proc/<stage 1>/fd/<n>`.
fn open_userns(spec: &Spec) -> Result<Confined, Failure> {
    let Some(path) = std::env::var_os(ENV_USERNS) else {
        if spec.insecure {
            return Ok(Confined { userns: None });
        }
        return Err(fail("user namespace", "stage 1 passed no user namespace"));
    };
    let fd = open(path.as_os_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail("user namespace", format!("open {}: {e}", path.to_string_lossy())))?;
    Ok(Confined { userns: Some(fd) })
}

fn setup_and_exec() -> Result<Infallible, Failure> {
    let spec = protocol::decode_spec().map_err(|e| fail("spec", e))?;
    umask(Mode::from_bits_truncate(0o022));
    if !spec.network {
        loopback_up().map_err(|e| fail("loopback", e))?;
    }
    let root = check_root(&spec.root)?;
    let mut confined = open_userns(&spec)?;
    let stage1 = stage1_pidfd();
    if confined.userns.is_some() {
        // Files kiln creates from here on (mount points, copies, and the
        // overlays it mounts, which keep their mounter's credentials) belong
        // to the sandbox's root, i.e. to root through idmapped mounts.
        // Changing the fsuid drops the file capabilities from the effective
        // set; raise them again.
        sys::set_fs_ids(ID_BASE, ID_BASE);
        confine::raise_effective().map_err(|e| fail("user namespace", e))?;
    }

    // Everything the sandbox gets from the host is opened now, while the
    // host's tree is still ours to name.
    let mut devices = Vec::new();
    for name in DEVICES {
        let path = format!("/dev/{name}");
        let host =
            HostPath::open(Path::new(&path)).map_err(|e| fail(format!("dev {path}"), format!("host {path}: {e}")))?;
        devices.push((path, host));
    }
    let resolv = if spec.network {
        Some(
            HostPath::open(Path::new(RESOLV_CONF))
                .map_err(|e| fail("resolv.conf", format!("host {RESOLV_CONF}: {e}")))?,
        )
    } else {
        None
    };
    let mut binds = Vec::new();
    for bind in &spec.binds {
        let step = || format!("bind {}", bind.target);
        // A writable overlay is idmapped through its layers, in place.
        let premapped = match (confined.idmap(), bind.read_only) {
            (Some(userns), false) => map_overlay(&bind.source, userns).map_err(|e| fail(step(), e))?,
            _ => false,
        };
        let host =
            HostPath::open(&bind.source).map_err(|e| fail(step(), format!("source {}: {e}", bind.source.display())))?;
        binds.push((bind, host, premapped));
    }
    let mut copies = Vec::new();
    for copy in &spec.copies {
        let file = File::open(&copy.source).map_err(|e| {
            fail(
                format!("copy {}", copy.target),
                format!("source {}: {e}", copy.source.display()),
            )
        })?;
        copies.push((copy, file));
    }

    if spec.view == View::Host {
        mount(
            Some("tmpfs"),
            &root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode=755{}", confined.tmpfs_owner()).as_str()),
        )
        .map_err(|e| fail("host view", format!("tmpfs on {}: {e}", root.display())))?;
        hostview::build(&root)?;
    }

    if spec.view == View::Tree
        && let Some(userns) = confined.idmap()
        && let Err(e) = map_root(&root, userns)
    {
        if !spec.insecure {
            return Err(fail("idmap root", e));
        }
        // Insecure: run as the host's root, as kiln did without user
        // namespaces.
        sys::set_fs_ids(0, 0);
        confined.userns = None;
    }
    let pivoted = enter_root(&root)?;

    // From here on every path is inside the tree: symlinks in it resolve in
    // it. The old root is still attached (stacked on top of "/" after
    // pivot_root, or underneath after the chroot fallback), so the host paths
    // opened above can still be attached through their descriptors.
    let owner = confined.tmpfs_owner();
    mount_proc()?;
    mount_sys()?;
    mount_dev(&devices, &owner)?;
    mount_tmpfs("/tmp", &format!("mode=1777{owner}"))?;
    mount_tmpfs("/run", &format!("mode=755{owner}"))?;
    if let Some(resolv) = &resolv {
        bind_resolv_conf(resolv)?;
    }
    for (bind, host, premapped) in &binds {
        bind_caller(bind, host, *premapped, &confined, spec.insecure)?;
    }
    for (copy, file) in copies {
        copy_in(copy, file)?;
    }
    if !spec.nested_mounts {
        // A fresh proc in a namespace of the command's own needs a fully
        // visible one here; only the bootstrap (which mounts one) goes
        // without these. Its user namespace keeps it out of what they hide.
        if let Some((_, null)) = devices.first() {
            mask_paths(null)?;
        }
        protect_proc()?;
    }
    if spec.view == View::Host {
        remount_read_only(Path::new("/")).map_err(|e| fail("host view", e))?;
    }

    if pivoted {
        // cwd is still the new root, under the old root stacked on it.
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| fail("detach old root", e.to_string()))?;
    }
    chdir("/").map_err(|e| fail("detach old root", format!("chdir /: {e}")))?;
    drop(devices);
    drop(resolv);
    drop(binds);

    sethostname(&spec.hostname).map_err(|e| fail("hostname", format!("{:?}: {e}", spec.hostname)))?;
    if let Some(userns) = &confined.userns {
        confine::enter_userns(userns).map_err(|e| fail("user namespace", e))?;
    }
    drop(confined);
    let confinement = confine::drop_capabilities(spec.nested_mounts)
        .map_err(|e| fail("capabilities", e))
        .and_then(|()| confine::seccomp(spec.nested_mounts).map_err(|e| fail("seccomp", e)));
    if let Err(e) = confinement
        && !spec.insecure
    {
        return Err(e);
    }
    // Changing credentials (fsuid above, the user namespace) cleared the
    // parent-death signal: set it again, then make sure stage 1 did not die
    // in between.
    rearm_parent_death(stage1.as_ref()).map_err(|e| fail("parent death signal", e))?;
    chdir(spec.cwd.as_str()).map_err(|e| fail("cwd", format!("{}: {e}", spec.cwd)))?;
    Err(exec(&spec))
}

/// A pidfd of stage 1 (our parent, outside our PID namespace).
fn stage1_pidfd() -> Option<OwnedFd> {
    let pid = std::env::var(ENV_STAGE1).ok()?.parse::<i32>().ok()?;
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

fn rearm_parent_death(stage1: Option<&OwnedFd>) -> Result<(), String> {
    set_pdeathsig(Signal::SIGKILL).map_err(|e| e.to_string())?;
    let Some(fd) = stage1 else { return Ok(()) };
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ready = rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 }))
        .map_err(|e| format!("poll stage 1: {e}"))?;
    if ready > 0 {
        // Stage 1 is gone: nobody waits for us.
        std::process::exit(SETUP_FAILED_EXIT);
    }
    Ok(())
}

/// Paths of `/proc` and `/sys` that tell about, or act on, the host rather
/// than the sandbox (the list OCI runtimes mask): files get `/dev/null`
/// bound over them, directories an empty read-only tmpfs.
pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/kallsyms",
    "/proc/kmsg",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/kernel/debug",
    "/sys/kernel/security",
];
/// Made read-only (besides `/proc/sys` and `/proc/sysrq-trigger`).
pub const READ_ONLY_PROC: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq"];

fn mask_paths(null: &HostPath) -> Result<(), Failure> {
    for path in MASKED {
        let step = || format!("mask {path}");
        let Ok(meta) = fs::symlink_metadata(path) else {
            continue;
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                *path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=555"),
            )
            .map_err(|e| fail(step(), format!("tmpfs on {path}: {e}")))?;
        } else {
            bind_host(null, Path::new(path), true).map_err(|e| fail(step(), e))?;
        }
    }
    Ok(())
}

/// Copies a host file (opened before `pivot_root`) into the sandbox's tmpfs.
fn copy_in(copy: &CopyIn, mut file: File) -> Result<(), Failure> {
    let step = || format!("copy {}", copy.target);
    let target = Path::new(&copy.target);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| fail(step(), format!("create {}: {e}", parent.display())))?;
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(copy.mode & 0o7777)
        .open(target)
        .map_err(|e| fail(step(), format!("create {}: {e}", copy.target)))?;
    io::copy(&mut file, &mut out).map_err(|e| fail(step(), format!("copy from {}: {e}", copy.source.display())))?;
    out.set_permissions(fs::Permissions::from_mode(copy.mode & 0o7777))
        .map_err(|e| fail(step(), format!("chmod {}: {e}", copy.target)))
}

fn exec(spec: &Spec) -> Failure {
    let Some((program, args)) = spec.argv.split_first() else {
        return fail("exec", "the command is empty");
    };
    let err = Command::new(program)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .exec();
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("unset: /bin:/usr/bin", |(_, v)| v.as_str());
    if program.contains('/') {
        fail("exec", format!("{program}: {err}"))
    } else {
        fail("exec", format!("{program}: {err} (PATH={path})"))
    }
}

/// Idmaps the tree at `root` through `userns`: an overlay through its
/// layers, anything else as a recursive idmapped bind of itself.
fn map_root(root: &Path, userns: BorrowedFd<'_>) -> Result<(), String> {
    if map_overlay(root, userns)? {
        return Ok(());
    }
    let tree = mounts::clone_path(root, true).map_err(|e| format!("{}: {e}", root.display()))?;
    mounts::attach(tree, root, true, false, Some(userns))
}

/// If `path` is an overlay mount, mounts over it an overlay of the same
/// layers idmapped through `userns` and says so.
fn map_overlay(path: &Path, userns: BorrowedFd<'_>) -> Result<bool, String> {
    let Ok(path) = fs::canonicalize(path) else {
        return Ok(false);
    };
    let table = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    match overlay::find(&table, &path) {
        Some(layers) => overlay::mount_idmapped(&path, &layers, userns).map(|()| true),
        None => Ok(false),
    }
}

/// Makes the tree the root: a bind of it onto itself (pivot_root needs a
/// mount point; an idmapped mount stays idmapped). Returns whether
/// `pivot_root` was used (then the old root must still be detached) rather
/// than the chroot fallback.
fn enter_root(root: &Path) -> Result<bool, Failure> {
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| fail("bind root", format!("{}: {e}", root.display())))?;
    chdir(root).map_err(|e| fail("bind root", format!("chdir {}: {e}", root.display())))?;
    match pivot_root(".", ".") {
        Ok(()) => Ok(true),
        // pivot_root refuses when our root is not a mount namespace's root
        // (kiln run in a chroot) or is the initramfs: switch_root's way.
        Err(Errno::EINVAL) => {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(|e| fail("pivot_root", format!("move the tree onto /: {e}")))?;
            chroot(".").map_err(|e| fail("pivot_root", format!("chroot: {e}")))?;
            Ok(false)
        }
        Err(e) => Err(fail("pivot_root", format!("{}: {e}", root.display()))),
    }
}

/// Creates a missing directory (a mount point); an existing entry of any
/// kind is left for mount(2) to judge.
fn ensure_dir(path: &str) -> Result<(), Failure> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(format!("mount {path}"), format!("create {path}: {e}"))),
    }
}

fn mount_fs(step_path: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<(), Failure> {
    ensure_dir(step_path)?;
    mount(Some(fstype), step_path, Some(fstype), flags, data)
        .map_err(|e| fail(format!("mount {step_path}"), format!("{fstype} on {step_path}: {e}")))
}

fn mount_proc() -> Result<(), Failure> {
    mount_fs(
        "/proc",
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

fn mount_sys() -> Result<(), Failure> {
    mount_fs(
        "/sys",
        "sysfs",
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

fn mount_tmpfs(path: &str, data: &str) -> Result<(), Failure> {
    mount_fs(path, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data))
}

fn mount_dev(devices: &[(String, HostPath)], owner: &str) -> Result<(), Failure> {
    mount_fs(
        "/dev",
        "tmpfs",
        MsFlags::MS_NOSUID,
        Some(&format!("mode=755,size=65536k{owner}")),
    )?;
    for (path, host) in devices {
        let step = || format!("dev {path}");
        File::create(path).map_err(|e| fail(step(), format!("create {path}: {e}")))?;
        bind_host(host, Path::new(path), false).map_err(|e| fail(step(), e))?;
    }
    mount_fs(
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, link).map_err(|e| fail(format!("dev {link}"), format!("symlink {link} -> {target}: {e}")))?;
    }
    mount_fs(
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=1777{owner}")),
    )
}

/// `/proc/sys`, `/proc/sysrq-trigger` and [`READ_ONLY_PROC`] read-only:
/// most sysctls are not namespaced, and a script must not change the host
/// kernel.
fn protect_proc() -> Result<(), Failure> {
    for &path in ["/proc/sys", "/proc/sysrq-trigger"].iter().chain(READ_ONLY_PROC) {
        let step = || format!("protect {path}");
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| fail(step(), format!("bind {path}: {e}")))?;
        remount_read_only(Path::new(path)).map_err(|e| fail(step(), e))?;
    }
    Ok(())
}

/// Binds `host` onto `target` (which exists), read-only if asked.
fn bind_host(host: &HostPath, target: &Path, read_only: bool) -> Result<(), String> {
    let tree =
        mounts::clone_fd(host.fd.as_fd(), false).map_err(|e| format!("open_tree for {}: {e}", target.display()))?;
    mounts::attach(tree, target, false, read_only, None)
}

/// Makes the bind mount at `target` read-only, keeping the flags it has
/// (dropping e.g. `nosuid` on a remount is refused in some setups).
fn remount_read_only(target: &Path) -> Result<(), String> {
    let current = statvfs(target)
        .map_err(|e| format!("statvfs {}: {e}", target.display()))?
        .flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for (have, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(have) {
            flags |= keep;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remount {} read-only: {e}", target.display()))
}

/// A caller's bind: creates the mount point like the source (directory or
/// empty file) if missing. With a user namespace the bind is idmapped like
/// the tree (so the sandbox's root owns what root owns on the host); a
/// filesystem that cannot do that is refused for a writable bind (unless
/// insecure) and bound as is for a read-only one (its files then belong to
/// `nobody` inside).
fn bind_caller(
    bind: &Bind,
    host: &HostPath,
    premapped: bool,
    confined: &Confined,
    insecure: bool,
) -> Result<(), Failure> {
    let step = || format!("bind {}", bind.target);
    let target = Path::new(&bind.target);
    if fs::symlink_metadata(target).is_err() {
        let created = if host.is_dir {
            fs::create_dir_all(target)
        } else {
            target.parent().map_or(Ok(()), fs::create_dir_all).and_then(|()| {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(target)
                    .map(drop)
            })
        };
        created.map_err(|e| fail(step(), format!("create mount point {}: {e}", bind.target)))?;
    }
    let clone = || {
        mounts::clone_fd(host.fd.as_fd(), false)
            .map_err(|e| fail(step(), format!("open_tree {}: {e}", bind.source.display())))
    };
    let idmapped = match confined.idmap() {
        Some(_) if premapped => mounts::attach(clone()?, target, false, bind.read_only, None),
        Some(userns) => mounts::attach(clone()?, target, false, bind.read_only, Some(userns)),
        None => Err(String::new()),
    };
    match idmapped {
        Ok(()) => Ok(()),
        Err(e) if confined.userns.is_some() && !bind.read_only && !insecure => {
            Err(fail(step(), format!("{e} (source {})", bind.source.display())))
        }
        Err(_) => mounts::attach(clone()?, target, false, bind.read_only, None)
            .map_err(|e| fail(step(), format!("{e} (source {})", bind.source.display()))),
    }
}

fn bind_resolv_conf(host: &HostPath) -> Result<(), Failure> {
    let target = resolv_conf_target().map_err(|e| fail("resolv.conf", e))?;
    bind_host(host, &target, true).map_err(|e| fail("resolv.conf", e))
}

/// Where the host's resolv.conf goes: the tree's `/etc/resolv.conf`, or, if
/// that is a symlink, the file it finally points to (inside the tree). See
/// the crate docs for when a missing file is created.
fn resolv_conf_target() -> Result<PathBuf, String> {
    let start = PathBuf::from(RESOLV_CONF);
    let mut path = start.clone();
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&path).map_err(|e| format!("readlink {}: {e}", path.display()))?;
                let base = path.parent().unwrap_or(Path::new("/"));
                path = normalize(&base.join(link));
            }
            Ok(meta) if meta.is_dir() => {
                return Err(format!("{} is a directory in the tree", path.display()));
            }
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return create_resolv_conf(&start, &path);
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Err(format!("{RESOLV_CONF}: too many levels of symbolic links"))
}

fn create_resolv_conf(start: &Path, path: &Path) -> Result<PathBuf, String> {
    let on_tmpfs = |p: &Path| p.starts_with("/run") || p.starts_with("/tmp");
    let create = |p: &Path| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .map(drop)
            .map_err(|e| format!("create {}: {e}", p.display()))
    };
    if path == start {
        // No resolv.conf at all: an empty mount point (it stays in the tree).
        fs::create_dir_all("/etc").map_err(|e| format!("create /etc: {e}"))?;
        create(path)?;
        return Ok(path.to_path_buf());
    }
    if on_tmpfs(path) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
            // /run and /tmp are fresh and empty, so this holds; check anyway.
            let real = fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            if !on_tmpfs(&real) {
                return Err(format!(
                    "{} resolves to {}, outside the sandbox's tmpfs",
                    parent.display(),
                    real.display()
                ));
            }
        }
        create(path)?;
        return Ok(path.to_path_buf());
    }
    Err(format!(
        "{RESOLV_CONF} in the tree is a symlink to {}, which does not exist; \
         kiln creates a missing target only on the sandbox's own tmpfs (/run, /tmp) \
         and will not add it to the tree",
        path.display()
    ))
}

/// Lexical normalization of an absolute path (`..` at `/` stays at `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => out = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

/// Brings up `lo` in the new network namespace (RTM_NEWLINK over rtnetlink;
/// what `ip link set lo up` does).
fn loopback_up() -> Result<(), String> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
    };
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;

    let index = nix::net::if_::if_nametoindex("lo").map_err(|e| format!("lo: {e}"))?;
    let index = i32::try_from(index).map_err(|_| "lo: bad interface index".to_owned())?;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    // struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes).
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    msg.extend_from_slice(&[0, 0]); // AF_UNSPEC, padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // device type
    msg.extend_from_slice(&index.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // change mask
    sendto(sock.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .map_err(|e| format!("netlink send: {e}"))?;
    let mut reply = [0u8; 1024];
    let n = recv(sock.as_raw_fd(), &mut reply, MsgFlags::empty()).map_err(|e| format!("netlink receive: {e}"))?;
    let field = |at: usize, len: usize| reply.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, error) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(code)) => Err(format!("set lo up: {}", Errno::from_raw(code.saturating_neg()))),
        _ => Err("set lo up: unexpected netlink reply".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_stays_inside() {
        assert_eq!(
            normalize(Path::new("/etc/../run/systemd/resolve/stub-resolv.conf")),
            Path::new("/run/systemd/resolve/stub-resolv.conf")
        );
        assert_eq!(normalize(Path::new("/etc/../../../x")), Path::new("/x"));
        assert_eq!(normalize(Path::new("/a/./b//c")), Path::new("/a/b/c"));
    }
}
