//! The sandbox (docs/sandbox.md): run one command inside a root tree, in
//! fresh namespaces, as root of a user namespace that owns nothing of the
//! host, so that it sees the tree and nothing else of the host, can change
//! nothing but the tree, and every process it starts dies when it ends.
//!
//! # Two stages, never a fork of the caller
//!
//! The caller (kiln: multi-threaded, maybe async) never forks or unshares
//! itself. [`Sandbox::run`] starts a helper — the kiln binary itself, whose
//! `main` calls [`maybe_run_helper`] first — with [`HELPER_ARG`] as its first
//! argument:
//!
//! ```text
//! caller ──spawn──▶ stage 1 (helper, host PID namespace)
//!                     ──spawn──▶ userns helper: unshare(NEWUSER); stage 1 writes its id maps
//!                     unshare(NEWNS|NEWPID|NEWIPC|NEWUTS[|NEWNET]); mount --make-rprivate /
//!                     ──spawn──▶ stage 2 = PID 1 of the new PID namespace
//!                                  idmapped tree, mounts, pivot_root, masks, hostname,
//!                                  setns(userns), capabilities, no_new_privs, seccomp, cwd
//!                                  ──exec──▶ the command (still PID 1)
//! ```
//!
//! * **Stage 1** reads the [`Spec`], creates the namespaces and makes every
//!   mount private (so nothing propagates back to the host), then spawns
//!   itself again. Because `unshare(CLONE_NEWPID)` applies to children, that
//!   child is PID 1 of the new PID namespace. Stage 1 then only waits: for the
//!   child's exit (reported to the caller) or for `SIGTERM`/`SIGHUP`, on which
//!   it SIGKILLs the child and waits for it.
//! * **Stage 2** (`__kiln-sandbox-init`) sets `PR_SET_PDEATHSIG(SIGKILL)`,
//!   binds the tree onto itself, `pivot_root`s into it, builds `/proc`,
//!   `/sys`, `/dev`, `/tmp`, `/run`, the caller's binds and (with network)
//!   `/etc/resolv.conf`, detaches the old root, sets the hostname and the
//!   working directory and execs the command with exactly the given
//!   environment. The command is PID 1.
//!
//! Doing this in fresh single-threaded processes is what makes it safe:
//! `unshare`, mounts and `pivot_root` affect the calling process (or
//! thread), which must never be kiln's runtime. The whole crate contains no
//! `unsafe`; it uses `nix`'s safe wrappers and `std::process`.
//!
//! # How the stages talk
//!
//! The spec travels as JSON in environment variables of the helper (in
//! chunks below Linux's 128 KiB limit per string); the command never sees
//! them. Outcomes and setup failures come back as JSON lines on a status pipe
//! that the caller creates close-on-exec and that each stage opens through
//! `/proc/<caller pid>/fd/<n>`, so no descriptor has to be inherited (which
//! would need `pre_exec`, i.e. `unsafe`, and would leak into concurrent
//! spawns). A failed step becomes [`SandboxError::Setup`] with the step's name
//! (`root`, `unshare`, `bind root`, `pivot_root`, `mount /proc`, `dev
//! /dev/null`, `resolv.conf`, `bind /target`, `hostname`, `cwd`, `exec`, …)
//! and a message naming the path; a helper stage that fails also exits with
//! the reserved code 125, and without a status pipe (started by hand) it
//! prints the failure on stderr as `kiln-sandbox: <step>: <message>`.
//!
//! # What is guaranteed
//!
//! * **Confinement** (unless [`Spec::insecure`], and then as much as the
//!   kernel gives): the command is root of a user namespace mapping its ids
//!   0–65535 to the host's [`ID_BASE`]…; the tree (and every writable
//!   bind) is mounted idmapped so what it writes is root's on disk (an
//!   overlay tree through idmapped layers); capabilities reduced,
//!   `no_new_privs`, a seccomp filter, masked `/proc`
//!   paths, a new session keyring. docs/sandbox.md lists them all.
//! * **Namespaces**: new mount, PID, IPC and UTS namespaces; a new network
//!   namespace (with only `lo`, brought up) unless [`Spec::network`].
//! * **Filesystem**: the root is the tree (`pivot_root`; the old root is
//!   detached). Inside: a fresh `proc` (`/proc/sys` and
//!   `/proc/sysrq-trigger` read-only, so a script cannot change the host
//!   kernel's settings), a fresh read-only `sysfs` at `/sys`, a tmpfs `/dev`
//!   with `null zero full random urandom tty` bound from the host, a private
//!   `devpts` instance at `/dev/pts` (`newinstance,ptmxmode=0666`),
//!   `/dev/ptmx → pts/ptmx`, `/dev/fd → /proc/self/fd`,
//!   `/dev/std{in,out,err}`, a tmpfs `/dev/shm`, tmpfs `/tmp` and `/run`, and
//!   the caller's [`Bind`]s (mounted in the given order, after everything
//!   else, so targets under `/run` or `/tmp` land on the tmpfs). Nothing else
//!   of the host is visible.
//! * **Network** (`network = true`): the host's network namespace and its
//!   `/etc/resolv.conf`, bound read-only onto the tree's `/etc/resolv.conf`.
//!   If the tree's `/etc/resolv.conf` is a symlink (systemd-resolved's
//!   `../run/systemd/resolve/stub-resolv.conf`), the file is bound over the
//!   symlink's *target* inside the tree; a missing target is created only when
//!   it lies on the sandbox's own tmpfs (`/run`, `/tmp`), where it vanishes
//!   with the sandbox; a dangling symlink pointing anywhere else is a setup
//!   error (`resolv.conf`), because kiln does not add files to the image
//!   behind its back. A tree without any `/etc/resolv.conf` gets an empty
//!   file as mount point, which remains in the tree.
//! * **Mount points** that a tree lacks are created: `/proc`, `/sys`, `/dev`,
//!   `/tmp`, `/run` (every Linux root has them) and the targets of binds (a
//!   directory or an empty file, like the source). Everything is created
//!   *after* `pivot_root`, so symlinks in the tree resolve inside the tree and
//!   can never make kiln create or mount anything on the host. Bind targets
//!   outside `/run` and `/tmp` leave their empty mount point in the tree;
//!   put script directories under `/run`.
//! * **Environment**: exactly [`Spec::env`] (no `PATH` is added; without one
//!   the command is looked up in `/bin:/usr/bin`; `std::process` passes the
//!   variables sorted by name, a repeated name's last value winning), umask
//!   `022`, the working directory [`Spec::cwd`], the hostname
//!   [`Spec::hostname`], no blocked signals, `SIGPIPE` at its default.
//! * **Processes**: when the command (PID 1) exits, the kernel kills every
//!   other process of its PID namespace, so nothing a step started survives
//!   it; [`Sandbox::run`] returns only after all of them are gone. On timeout
//!   or [`Cancel`] the caller sends `SIGTERM` to stage 1, which SIGKILLs
//!   PID 1 and waits for the namespace to empty (falling back to SIGKILL of
//!   stage 1 after 10 s). If the caller dies (Ctrl-C, crash, SIGKILL), stage 1
//!   dies by its parent-death signal and stage 2 by its own: the chain tears
//!   everything down without the caller's help (within milliseconds, but
//!   asynchronously). Stage 1 ignores the terminal's `SIGINT` and `SIGQUIT`
//!   (the command gets them itself; an interactive shell survives Ctrl-C);
//!   what an interrupt means for the build is the caller's decision.
//! * **Mounts**: all sandbox mounts live in the private mount namespace and
//!   never appear in the host's mount table; they disappear with the
//!   namespace's last process ([`mounts_under`] checks this).
//!
//! # Caveats
//!
//! * Root (`CAP_SYS_ADMIN`) is required; without it stage 1 reports a setup
//!   error at `user namespace` or `unshare`.
//! * An overlay tree is remounted (over its idmapped layers) inside the
//!   sandbox: the caller's own overlay mount of the same layers is stale
//!   afterwards and must be mounted again before it is read.
//! * The parent-death signal of stage 1 belongs to the *thread* that spawned
//!   it. [`Sandbox::run`] blocks that thread until the sandbox is gone, so
//!   this holds; do not move the wait elsewhere.
//! * The command is PID 1: signals it has no handler for are ignored when
//!   sent from inside the sandbox (a script's `kill $$` does nothing); from
//!   the host only SIGKILL is delivered (reported as
//!   [`Outcome::Signaled`]).
//! * Signals the caller *ignores* stay ignored in the command (resetting a
//!   disposition needs `sigaction`, which is `unsafe`); Rust's own `SIGPIPE`
//!   is reset by `std::process`. glibc's `posix_spawn` also sets its internal
//!   signals 32 and 33 to ignored in children; glibc installs their handlers
//!   when it needs them.
//! * File descriptors the caller leaked without close-on-exec reach the
//!   command (closing descriptors one does not own needs `unsafe`); Rust opens
//!   every descriptor close-on-exec, so kiln leaks none.
//! * If `pivot_root` is refused (`EINVAL`, e.g. kiln itself runs in a
//!   chroot or on an initramfs root), stage 2 falls back to moving the tree
//!   onto `/` and `chroot`ing into it; the host's mounts then stay
//!   underneath, unreachable, in the private namespace.

mod confine;
mod hostview;
mod mountinfo;
mod mounts;
mod overlay;
mod probe;
mod protocol;
mod stage1;
mod stage2;
mod sys;
mod userns;

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, pipe2};
use serde::{Deserialize, Serialize};

pub use confine::{ID_BASE, ID_COUNT};
pub use hostview::{HOST_DIRS, HOST_ETC};
pub use mountinfo::mounts_under;
pub use probe::{Check, probe};
pub use stage2::{MASKED, READ_ONLY_PROC};
pub use userns::USERNS_ARG;

use protocol::Report;

/// `argv[1]` of the helper's first stage.
pub const HELPER_ARG: &str = "__kiln-sandbox";
/// `argv[1]` of the helper's second stage (PID 1 of the sandbox).
pub const INIT_ARG: &str = "__kiln-sandbox-init";

/// How long stage 1 gets to tear the sandbox down after `SIGTERM` before the
/// caller SIGKILLs it.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Call first thing in `main()`: if `argv[1]` is [`HELPER_ARG`] or
/// [`INIT_ARG`], runs that helper stage and never returns; otherwise returns
/// at once and does nothing.
pub fn maybe_run_helper() {
    let Some(arg) = std::env::args_os().nth(1) else {
        return;
    };
    if arg == HELPER_ARG {
        stage1::main()
    } else if arg == INIT_ARG {
        stage2::main()
    } else if arg == USERNS_ARG {
        userns::helper_main()
    }
}

/// What to run, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The root tree (a directory on the host).
    pub root: PathBuf,
    /// The command; `argv[0]` is looked up in the `PATH` of [`Spec::env`]
    /// when it contains no `/`.
    pub argv: Vec<String>,
    /// The command's whole environment; nothing is added. (The program
    /// receives it sorted by name; for a repeated name the last value wins.)
    pub env: Vec<(String, String)>,
    /// Working directory inside the tree (absolute).
    pub cwd: String,
    /// Hostname inside (the UTS namespace is new).
    pub hostname: String,
    /// Share the host's network (and bind its resolv.conf); otherwise a new
    /// network namespace with only `lo`.
    pub network: bool,
    /// Host paths to make visible inside, mounted in this order.
    pub binds: Vec<Bind>,
    /// Kill everything this long after [`Sandbox::run`] started the helper
    /// ([`Outcome::TimedOut`]).
    pub timeout: Option<Duration>,
    /// What the root is: the tree itself, or the host's programs.
    #[serde(default)]
    pub view: View,
    /// Host files copied into the sandbox's own tmpfs before the command
    /// starts (never bind-mounted: nothing of the host file is reachable).
    #[serde(default)]
    pub copies: Vec<CopyIn>,
    /// Let the command mount in namespaces of its own (the package bootstrap,
    /// which mounts `/proc` and `/dev` in the tree it builds). Its user
    /// namespace still keeps it from mounting anything of the host; the
    /// seccomp filter allows the mount calls and keeps the rest.
    #[serde(default)]
    pub nested_mounts: bool,
    /// Run even if the kernel cannot give the documented confinement (no user
    /// namespaces, no idmapped mounts on the tree's filesystem, no seccomp):
    /// then with whatever it can give. Never the default.
    #[serde(default)]
    pub insecure: bool,
}

/// The sandbox's root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// [`Spec::root`] is the tree the command runs in (an image).
    #[default]
    Tree,
    /// A read-only tmpfs mounted on [`Spec::root`] (an empty directory)
    /// holding the host's programs and libraries read-only ([`HOST_DIRS`]),
    /// an `/etc` of the listed public files ([`HOST_ETC`]), and the binds.
    /// For commands that run host tools on a tree: build-side scripts, the
    /// package bootstrap.
    Host,
}

/// A host file copied into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyIn {
    /// Host file (read by the sandbox's setup as the caller).
    pub source: PathBuf,
    /// Absolute path under `/run` or `/tmp` (the sandbox's own tmpfs).
    pub target: String,
    /// Permission bits of the copy.
    pub mode: u32,
}

impl Spec {
    /// A spec for `argv` in `root` with no environment, cwd `/`, hostname
    /// `kiln`, no network, no binds and no timeout.
    pub fn new(root: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        Self {
            root: root.into(),
            argv,
            env: Vec::new(),
            cwd: "/".to_owned(),
            hostname: "kiln".to_owned(),
            network: false,
            binds: Vec::new(),
            timeout: None,
            view: View::Tree,
            copies: Vec::new(),
            nested_mounts: false,
            insecure: false,
        }
    }

    /// Rejects what can only fail later, less clearly.
    fn validate(&self) -> Result<(), SandboxError> {
        let bad = |message: String| {
            Err(SandboxError::Setup {
                step: "spec".to_owned(),
                message,
            })
        };
        if self.argv.is_empty() {
            return bad("the command (argv) is empty".to_owned());
        }
        if let Some(arg) = self.argv.iter().find(|a| a.contains('\0')) {
            return bad(format!("argument {arg:?} contains a NUL byte"));
        }
        if let Some((name, _)) = self
            .env
            .iter()
            .find(|(n, v)| n.is_empty() || n.contains(['=', '\0']) || v.contains('\0'))
        {
            return bad(format!("invalid environment variable {name:?}"));
        }
        if !self.cwd.starts_with('/') {
            return bad(format!("the working directory {:?} is not absolute", self.cwd));
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            return bad(format!("the hostname {:?} must have 1 to 64 bytes", self.hostname));
        }
        for bind in &self.binds {
            if !bind.target.starts_with('/') || bind.target == "/" {
                return bad(format!(
                    "bind target {:?} (from {}) must be an absolute path below /",
                    bind.target,
                    bind.source.display()
                ));
            }
        }
        for copy in &self.copies {
            let under_tmpfs = ["/run/", "/tmp/"].iter().any(|p| copy.target.starts_with(p));
            if !under_tmpfs || copy.target.split('/').any(|c| c == "..") {
                return bad(format!(
                    "copy target {:?} (from {}) must be a path under /run or /tmp",
                    copy.target,
                    copy.source.display()
                ));
            }
        }
        Ok(())
    }
}

/// A host path made visible inside the sandbox (a non-recursive bind mount:
/// mounts below `source` are not carried along).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Host path (a directory or a file).
    pub source: PathBuf,
    /// Absolute path inside the tree; created if missing.
    pub target: String,
    /// Mount it read-only.
    pub read_only: bool,
}

/// Receives captured output, chunk by chunk, as it is produced.
pub type OutputSink = Box<dyn FnMut(&[u8]) + Send>;

/// Where the command's standard streams go.
pub enum Io {
    /// The caller's stdin, stdout and stderr (interactive use, e.g.
    /// `--shell-on-failure`).
    Inherit,
    /// stdin is `/dev/null`; stdout and stderr are merged into one pipe whose
    /// bytes are handed to the callback as they are produced (from a thread of
    /// the caller), until every process of the sandbox has closed it.
    Capture(OutputSink),
    /// stdin is `/dev/null`; stdout and stderr go to these files.
    Files { stdout: File, stderr: File },
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Io::Inherit => f.write_str("Inherit"),
            Io::Capture(_) => f.write_str("Capture(..)"),
            Io::Files { stdout, stderr } => f
                .debug_struct("Files")
                .field("stdout", stdout)
                .field("stderr", stderr)
                .finish(),
        }
    }
}

/// How the command ended. In every case every process of the sandbox is gone
/// when [`Sandbox::run`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// [`Spec::timeout`] elapsed and it was killed.
    TimedOut,
}

impl Outcome {
    /// `true` for `Exited(0)`.
    pub fn success(self) -> bool {
        self == Outcome::Exited(0)
    }
}

/// Stops a running sandbox from another thread: [`Sandbox::run_with_cancel`]
/// notices within a few milliseconds, kills everything and returns
/// [`SandboxError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Building the sandbox failed at `step` (`spec`, `root`, `unshare`,
    /// `mount /proc`, `bind /target`, `resolv.conf`, `cwd`, `exec`, …); the
    /// command did not run.
    #[error("sandbox setup failed at {step}: {message}")]
    Setup { step: String, message: String },
    /// [`Cancel::cancel`] was called; everything was killed.
    #[error("the sandboxed command was cancelled")]
    Cancelled,
    /// The helper could not be started.
    #[error("cannot start the sandbox helper {}: {source}", path.display())]
    Spawn { path: PathBuf, source: io::Error },
    /// The helper ended without saying how the command ended.
    #[error("the sandbox helper {} {what}", path.display())]
    Helper { path: PathBuf, what: String },
    /// An I/O error on the caller's side.
    #[error("sandbox: {context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_error(context: &str) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        context: context.to_owned(),
        source,
    }
}

/// Starts sandboxes through a helper executable.
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Timeout,
    Cancel,
}

impl Sandbox {
    /// The running executable is the helper (its `main` must call
    /// [`maybe_run_helper`]). Uses `/proc/self/exe`, so even a kiln binary
    /// replaced on disk during a build starts the same version of itself.
    pub fn current_exe() -> Result<Self, SandboxError> {
        let proc_exe = Path::new("/proc/self/exe");
        if proc_exe.exists() {
            return Ok(Self::with_helper(proc_exe.to_path_buf()));
        }
        std::env::current_exe()
            .map(Self::with_helper)
            .map_err(io_error("cannot locate the running executable"))
    }

    /// `path` is the helper: a program whose `main` calls
    /// [`maybe_run_helper`] first.
    pub fn with_helper(path: PathBuf) -> Self {
        Self { helper: path }
    }

    pub fn helper(&self) -> &Path {
        &self.helper
    }

    /// Runs `spec` and waits for it (blocking this thread) with its timeout.
    pub fn run(&self, spec: &Spec, io: Io) -> Result<Outcome, SandboxError> {
        self.run_with_cancel(spec, io, &Cancel::new())
    }

    /// [`Sandbox::run`] that also stops when `cancel` is cancelled (then it
    /// returns [`SandboxError::Cancelled`] once everything is gone).
    pub fn run_with_cancel(&self, spec: &Spec, io: Io, cancel: &Cancel) -> Result<Outcome, SandboxError> {
        spec.validate()?;
        let spec_env = protocol::encode_spec(spec).map_err(|e| SandboxError::Setup {
            step: "spec".to_owned(),
            message: e.to_string(),
        })?;

        // The status pipe: close-on-exec (no child inherits it); the helper
        // stages open it through /proc/<our pid>/fd/<n>.
        let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| io_error("cannot create the status pipe")(e.into()))?;
        let status_path = format!("/proc/{}/fd/{}", std::process::id(), status_write.as_raw_fd());

        let mut cmd = Command::new(&self.helper);
        cmd.arg(HELPER_ARG)
            .env_clear()
            .envs(spec_env)
            .env(protocol::ENV_STATUS, status_path)
            .env(protocol::ENV_CALLER, std::process::id().to_string());

        let mut capture = None;
        match io {
            Io::Inherit => {}
            Io::Capture(callback) => {
                let (read, write) =
                    pipe2(OFlag::O_CLOEXEC).map_err(|e| io_error("cannot create the output pipe")(e.into()))?;
                let write2 = write
                    .try_clone()
                    .map_err(io_error("cannot duplicate the output pipe"))?;
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::from(write))
                    .stderr(Stdio::from(write2));
                capture = Some((read, callback));
            }
            Io::Files { stdout, stderr } => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::from(stdout))
                    .stderr(Stdio::from(stderr));
            }
        }

        let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
            path: self.helper.clone(),
            source,
        })?;
        // The command holds our copies of the output pipe's writing end: drop
        // them so the reader sees EOF when the sandbox is gone.
        drop(cmd);

        let pump = match capture {
            None => None,
            Some((read, callback)) => {
                match thread::Builder::new()
                    .name("kiln-sandbox-output".to_owned())
                    .spawn(move || pump_output(read, callback))
                {
                    Ok(handle) => Some(handle),
                    Err(e) => {
                        // The helper dies by SIGKILL; its children by their
                        // parent-death signals.
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(io_error("cannot start the output thread")(e));
                    }
                }
            }
        };

        let (status, stopped) = wait_helper(&mut child, spec.timeout, cancel)?;

        // Returns once every holder of the output pipe — every process of the
        // sandbox — is gone.
        if let Some(Err(panic)) = pump.map(thread::JoinHandle::join) {
            std::panic::resume_unwind(panic);
        }

        drop(status_write);
        let reports = protocol::parse_reports(&read_available(status_read));
        self.outcome(&reports, status, stopped)
    }

    fn outcome(
        &self,
        reports: &[Report],
        status: ExitStatus,
        stopped: Option<StopReason>,
    ) -> Result<Outcome, SandboxError> {
        for report in reports {
            if let Report::Setup { step, message } = report {
                return Err(SandboxError::Setup {
                    step: step.clone(),
                    message: message.clone(),
                });
            }
        }
        for report in reports {
            match report {
                Report::Exited { code } => return Ok(Outcome::Exited(*code)),
                Report::Signaled { signal } => return Ok(Outcome::Signaled(*signal)),
                _ => {}
            }
        }
        match stopped {
            Some(StopReason::Timeout) => Ok(Outcome::TimedOut),
            Some(StopReason::Cancel) => Err(SandboxError::Cancelled),
            None => {
                let what = if reports.contains(&Report::Killed) {
                    "was stopped from outside (SIGTERM or SIGHUP) and killed the sandbox".to_owned()
                } else if let Some(signal) = status.signal() {
                    format!("was killed by signal {signal} before reporting the command's outcome")
                } else {
                    format!(
                        "exited with {status} without reporting an outcome \
                         (does its main() call kiln_sandbox::maybe_run_helper()?)"
                    )
                };
                Err(SandboxError::Helper {
                    path: self.helper.clone(),
                    what,
                })
            }
        }
    }
}

/// Waits for stage 1, stopping it on timeout or cancellation: SIGTERM first
/// (stage 1 then kills PID 1 and waits for the namespace to empty), SIGKILL
/// after [`KILL_GRACE`].
fn wait_helper(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
    cancel: &Cancel,
) -> Result<(ExitStatus, Option<StopReason>), SandboxError> {
    let start = Instant::now();
    let deadline = timeout.map(|t| start + t);
    let mut stopped: Option<(StopReason, Instant)> = None;
    let mut killed = false;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_error("cannot wait for the sandbox helper"))?
        {
            return Ok((status, stopped.map(|(reason, _)| reason)));
        }
        let now = Instant::now();
        match stopped {
            None => {
                let reason = if cancel.is_cancelled() {
                    Some(StopReason::Cancel)
                } else if deadline.is_some_and(|d| now >= d) {
                    Some(StopReason::Timeout)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    // The child is not reaped yet (try_wait said so), so its
                    // PID is still ours to signal.
                    if let Ok(pid) = i32::try_from(child.id()) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    }
                    stopped = Some((reason, now));
                    pause = Duration::from_millis(1);
                }
            }
            Some((_, since)) => {
                if !killed && now.duration_since(since) >= KILL_GRACE {
                    let _ = child.kill();
                    killed = true;
                }
            }
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn pump_output(read: OwnedFd, mut callback: OutputSink) {
    let mut file = File::from(read);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => callback(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Everything currently in the (non-blocking) status pipe.
fn read_available(read: OwnedFd) -> Vec<u8> {
    let mut file = File::from(read);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}
