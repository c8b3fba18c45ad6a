//! kiln's edge to the host machine: the external tools kiln drives.
//!
//! kiln builds OS images by running a handful of host tools (`mmdebstrap`,
//! `mksquashfs`, `mkfs.ext4`, ...). This crate knows which tools those are,
//! which Debian package ships each of them, how to find them, how to ask them
//! for their version and how to install the missing ones with `apt-get`.
//!
//! * [`TOOLS`] lists the tools; [`probe`] locates every one of them and reads
//!   its version; [`missing_packages`] turns the result into the list of
//!   packages to install and [`install_packages`] installs them.
//! * [`find_in_path`] and [`tool_version`] are the building blocks of
//!   [`probe`].
//! * [`debian_arch`] and [`arch_from_rust`] give the host's Debian
//!   architecture name.
//!
//! Nothing here panics on an odd environment: an unset or strange `PATH`, a
//! missing `/proc`, a tool that hangs, crashes or prints garbage all end up
//! as "not found" or "no version" rather than as an error or a panic. Child
//! processes that would hang are killed after [`VERSION_TIMEOUT`].
//!
//! The crate targets Linux (it uses Unix permission bits and reads
//! `/proc/self/status`).

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A host tool kiln runs, and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Tool {
    /// Executable name, looked up in `PATH` (e.g. `mkfs.ext4`).
    pub name: &'static str,
    /// Debian package shipping the executable (e.g. `e2fsprogs`).
    pub package: &'static str,
    /// What kiln uses the tool for, for humans (`kiln doctor`).
    pub purpose: &'static str,
    /// Arguments that make the tool print its version and exit.
    pub version_args: &'static [&'static str],
    /// For data rather than an executable (GRUB's platform images): the
    /// absolute path of a file the package installs. The tool is found when
    /// the file is there; its version is the package's.
    pub file: Option<&'static str>,
}

/// The host tools kiln uses, in a stable order (also the order of
/// [`probe`]'s result and of [`missing_packages`]).
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "mmdebstrap",
        package: "mmdebstrap",
        purpose: "bootstrap Debian/Ubuntu root trees",
        version_args: &["--version"],
        file: None,
    },
    Tool {
        name: "mksquashfs",
        package: "squashfs-tools",
        purpose: "create squashfs images",
        version_args: &["-version"],
        file: None,
    },
    Tool {
        name: "unsquashfs",
        package: "squashfs-tools",
        purpose: "extract squashfs images",
        version_args: &["-version"],
        file: None,
    },
    Tool {
        name: "mkfs.erofs",
        package: "erofs-utils",
        purpose: "create EROFS images",
        version_args: &["--version"],
        file: None,
    },
    Tool {
        name: "mkfs.ext4",
        package: "e2fsprogs",
        purpose: "create ext4 filesystem images",
        version_args: &["-V"],
        file: None,
    },
    Tool {
        name: "debugfs",
        package: "e2fsprogs",
        purpose: "inspect and edit ext4 images without mounting them",
        version_args: &["-V"],
        file: None,
    },
    Tool {
        name: "qemu-img",
        package: "qemu-utils",
        purpose: "convert disk images (qcow2, vmdk, vdi, ...)",
        version_args: &["--version"],
        file: None,
    },
    Tool {
        name: "git",
        package: "git",
        purpose: "read repository revisions and fetch git sources",
        version_args: &["--version"],
        file: None,
    },
    Tool {
        name: "xorriso",
        package: "xorriso",
        purpose: "write and remaster bootable ISO images",
        version_args: &["-version"],
        file: None,
    },
    Tool {
        name: "grub-mkimage",
        package: "grub-common",
        purpose: "make GRUB boot images for ISOs",
        version_args: &["--version"],
        file: None,
    },
    Tool {
        name: "grub i386-pc",
        package: "grub-pc-bin",
        purpose: "GRUB for BIOS (ISO El Torito boot)",
        version_args: &[],
        file: Some("/usr/lib/grub/i386-pc/boot_hybrid.img"),
    },
    Tool {
        name: "grub x86_64-efi",
        package: "grub-efi-amd64-bin",
        purpose: "GRUB for UEFI (ISO EFI partition)",
        version_args: &[],
        file: Some("/usr/lib/grub/x86_64-efi/linux.mod"),
    },
    Tool {
        name: "mkfs.vfat",
        package: "dosfstools",
        purpose: "create the EFI partition of ISOs",
        version_args: &["--help"],
        file: None,
    },
    Tool {
        name: "mcopy",
        package: "mtools",
        purpose: "fill the EFI partition without mounting it",
        version_args: &["--version"],
        file: None,
    },
];

/// How long [`tool_version`] (and [`debian_arch`]'s `dpkg` call) lets a
/// child process run before killing it.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Directories searched in addition to `PATH` by [`find_in_path`] when it
/// uses the process environment: `mkfs.*` and `debugfs` live there and the
/// `PATH` of non-root users often lacks them.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin"];

/// Search path used when the `PATH` environment variable is not set at all
/// (Debian's default for root, which includes the sbin directories).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// At most this many bytes of a child's stdout (and as many of its stderr)
/// are kept; the rest is read and discarded so that the child never blocks
/// on a full pipe.
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// Longest pause between two checks of whether a child has exited.
const MAX_POLL: Duration = Duration::from_millis(50);

/// How long to wait for a killed child to be reaped before giving up on it.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// Minimum time granted to the output readers once the child has exited.
const READ_GRACE: Duration = Duration::from_millis(200);

/// How often spawning is retried when the executable is busy (`ETXTBSY`:
/// it was just written and another thread's fork still holds it open).
const BUSY_RETRIES: u32 = 20;

/// Errors of the operations that change the host ([`install_packages`]).
///
/// Probing never fails: a tool that cannot be found or run is reported as
/// missing or versionless in its [`ToolStatus`] instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Installing packages needs root and the effective uid is not 0.
    #[error(
        "installing host packages requires root: re-run kiln as root (for example with sudo), \
         or install them yourself with `{command}`"
    )]
    NotRoot {
        /// The command that would install the packages, for the user to run.
        command: String,
    },
    /// A package name that is empty, starts with `-` or contains characters
    /// no Debian package name (with optional `:arch`, `=version` or
    /// `/release` suffix) contains.
    #[error("invalid package name {name:?}")]
    InvalidPackageName {
        /// The rejected name.
        name: String,
    },
    /// `apt-get` is not installed: the host is not Debian-based.
    #[error("apt-get not found; installing host packages is only supported on Debian-based hosts")]
    AptGetNotFound,
    /// A command could not be started.
    #[error("failed to run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// A command ran but did not succeed.
    #[error("`{command}` failed ({status})")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
    },
}

/// The state of one host tool, as found by [`probe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolStatus {
    /// The tool (an entry of [`TOOLS`]).
    pub tool: &'static Tool,
    /// Where it was found, `None` if it is missing.
    pub path: Option<PathBuf>,
    /// Its version line, `None` if it is missing or did not say.
    pub version: Option<String>,
}

impl ToolStatus {
    /// Whether the tool was found.
    pub fn is_found(&self) -> bool {
        self.path.is_some()
    }
}

/// The entry of [`TOOLS`] with this executable name.
pub fn tool(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Locates the executable `name` like a shell would.
///
/// Returns the first `dir/name` that is a regular file (symlinks followed)
/// which the current user may execute, trying the directories in order.
///
/// * `path_var: None` searches the process's `PATH` (or, if `PATH` is not
///   set, Debian's default search path), then `/usr/sbin` and `/sbin`, which
///   hold `mkfs.*` and `debugfs` and are often missing from the `PATH` of
///   ordinary users.
/// * `path_var: Some(p)` searches exactly the directories of `p`, a
///   `PATH`-style colon-separated list.
///
/// Empty and relative `PATH` entries are skipped (a tool must never be
/// picked up from the current directory). `name` must be a plain file name:
/// an empty name, `.`, `..` or a name containing `/` is never found.
/// The returned path is not canonicalised: a symlink in `PATH` is returned
/// as such.
pub fn find_in_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return None;
    }
    let creds = Credentials::current();
    let env_path;
    let (search, extra): (&OsStr, &[&str]) = match path_var {
        Some(p) => (p, &[]),
        None => {
            env_path = std::env::var_os("PATH");
            let p = env_path.as_deref().unwrap_or(OsStr::new(DEFAULT_PATH));
            (p, SBIN_DIRS)
        }
    };
    std::env::split_paths(search)
        .chain(extra.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate, creds.as_ref()))
}

/// Where `tool` is: its file, or its executable in the search path. A
/// search path given explicitly (a pretended host) holds executables only:
/// tools known by a file are missing there.
fn locate(tool: &Tool, path_var: Option<&OsStr>) -> Option<PathBuf> {
    match (tool.file, path_var) {
        (Some(_), Some(_)) => None,
        (Some(file), None) => Path::new(file).is_file().then(|| PathBuf::from(file)),
        (None, _) => find_in_path(tool.name, path_var),
    }
}

/// The version of a found tool: what it prints, or for a file its
/// package's version as dpkg records it.
fn version_of(tool: &Tool, path: &Path, dpkg_query: Option<&Path>) -> Option<String> {
    match tool.file {
        Some(_) => tool_version(dpkg_query?, &["-W", "-f=${Version}\\n", tool.package])
            .map(|v| format!("{} {v}", tool.package)),
        None => tool_version(path, tool.version_args),
    }
}

/// Locates every tool of [`TOOLS`] with [`find_in_path`] and reads the
/// version of those found with [`tool_version`].
///
/// The result has one entry per tool, in [`TOOLS`] order. The version probes
/// run in parallel, so a probe takes at most about [`VERSION_TIMEOUT`] even
/// if several tools hang.
pub fn probe(path_var: Option<&OsStr>) -> Vec<ToolStatus> {
    let dpkg_query = find_in_path("dpkg-query", None);
    let located: Vec<(&'static Tool, Option<PathBuf>)> =
        TOOLS.iter().map(|tool| (tool, locate(tool, path_var))).collect();

    let versions: Vec<Option<String>> = thread::scope(|scope| {
        let pending: Vec<_> = located
            .iter()
            .map(|(tool, path)| {
                let path = path.as_deref()?;
                let dpkg_query = dpkg_query.as_deref();
                let spawned = thread::Builder::new()
                    .name(format!("kiln-host-probe-{}", tool.name))
                    .spawn_scoped(scope, move || version_of(tool, path, dpkg_query));
                // If no thread can be started, probe this tool inline below.
                Some((spawned.ok(), path, *tool, dpkg_query))
            })
            .collect();
        pending
            .into_iter()
            .map(|job| match job? {
                (Some(handle), ..) => handle.join().ok().flatten(),
                (None, path, tool, dpkg_query) => version_of(tool, path, dpkg_query),
            })
            .collect()
    });

    located
        .into_iter()
        .zip(versions)
        .map(|((tool, path), version)| ToolStatus { tool, path, version })
        .collect()
}

/// Runs `path args...` and returns the tool's version line.
///
/// The child runs with stdin connected to `/dev/null` and `LC_ALL=C` (so
/// that the line is not translated and stays stable for cache keys). It is
/// killed if it has not exited after [`VERSION_TIMEOUT`].
///
/// The version line is the first non-empty line of stdout, else of stderr,
/// with surrounding whitespace trimmed. Some tools print their version and
/// then exit with a failure status (`unsquashfs -version` exits 1,
/// `mkfs.erofs --version` 1.5 prints the version on stdout and then rejects
/// the option on stderr), so a non-zero exit status is accepted, but then
/// only stdout is used: stderr of a failing command is an error message, not
/// a version.
///
/// Returns `None` if the program cannot be started, times out, is killed by
/// a signal or prints nothing usable.
pub fn tool_version(path: &Path, args: &[&str]) -> Option<String> {
    let output = run_captured(path, args, VERSION_TIMEOUT)?;
    version_line(output.status, &output.stdout, &output.stderr)
}

/// The packages to install to provide the missing tools of `statuses`:
/// each package once, in [`TOOLS`] order (packages of tools that are not in
/// [`TOOLS`] come last, in the order of `statuses`).
pub fn missing_packages(statuses: &[ToolStatus]) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for status in statuses.iter().filter(|s| s.path.is_none()) {
        if !packages.contains(&status.tool.package) {
            packages.push(status.tool.package);
        }
    }
    packages.sort_by_key(|package| TOOLS.iter().position(|t| t.package == *package).unwrap_or(usize::MAX));
    packages
}

/// Installs Debian packages with `apt-get`.
///
/// Runs `apt-get update`, then
/// `apt-get install -y --no-install-recommends PACKAGES...`, both with
/// `DEBIAN_FRONTEND=noninteractive`, stdin from `/dev/null` and the
/// output going to kiln's own stdout and stderr.
///
/// Does nothing when `packages` is empty. Fails with
/// [`HostError::InvalidPackageName`] before running anything if a name
/// could be mistaken for an option or is otherwise not a package name, with
/// [`HostError::NotRoot`] if the effective uid is not 0, and with
/// [`HostError::Spawn`] or [`HostError::CommandFailed`] (which carry the
/// command line) if `apt-get` fails.
pub fn install_packages(packages: &[&str]) -> Result<(), HostError> {
    if packages.is_empty() {
        return Ok(());
    }
    if let Some(bad) = packages.iter().find(|p| !is_valid_package_name(p)) {
        return Err(HostError::InvalidPackageName {
            name: (*bad).to_owned(),
        });
    }
    let mut install_args = vec!["install", "-y", "--no-install-recommends"];
    install_args.extend_from_slice(packages);
    if !is_root() {
        return Err(HostError::NotRoot {
            command: format!("sudo apt-get {}", install_args.join(" ")),
        });
    }
    let apt_get = find_in_path("apt-get", None).ok_or(HostError::AptGetNotFound)?;
    run_apt_get(&apt_get, &["update"])?;
    run_apt_get(&apt_get, &install_args)
}

/// Whether the process runs with effective uid 0.
///
/// Reads the `Uid:` line of `/proc/self/status`, falling back to the output
/// of `id -u`; `false` if neither works.
pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// The host's Debian architecture name (`amd64`, `arm64`, ...).
///
/// Asks `dpkg --print-architecture` when `dpkg` is installed and answers,
/// else maps the architecture kiln was compiled for with
/// [`arch_from_rust`].
pub fn debian_arch() -> String {
    find_in_path("dpkg", None)
        .and_then(|dpkg| run_captured(&dpkg, &["--print-architecture"], VERSION_TIMEOUT))
        .filter(|output| output.status.success())
        .and_then(|output| first_line(&output.stdout))
        .filter(|arch| {
            arch.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .unwrap_or_else(|| arch_from_rust(std::env::consts::ARCH).to_owned())
}

/// Maps a Rust architecture name ([`std::env::consts::ARCH`]) to the Debian
/// architecture name; names without a known mapping are returned unchanged.
///
/// `arm` maps to `armhf`, the usual 32-bit ARM Debian port (Rust's `arm`
/// also covers `armel` targets), and `mips64` to `mips64el`, the only 64-bit
/// MIPS Debian port.
pub fn arch_from_rust(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" => "mips64el",
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Permissions

/// The identity the kernel checks execute permission against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    /// Effective user id.
    euid: u32,
    /// Effective group id and supplementary groups.
    groups: Vec<u32>,
}

impl Credentials {
    /// The current process's credentials from `/proc/self/status`.
    fn current() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::parse(&status)
    }

    /// Parses the `Uid:`, `Gid:` and `Groups:` lines of a
    /// `/proc/<pid>/status` file.
    fn parse(status: &str) -> Option<Self> {
        let euid = status_field(status, "Uid:", 1)?;
        let mut groups = vec![status_field(status, "Gid:", 1)?];
        if let Some(line) = status.lines().find_map(|l| l.strip_prefix("Groups:")) {
            groups.extend(line.split_whitespace().filter_map(|g| g.parse::<u32>().ok()));
        }
        Some(Self { euid, groups })
    }
}

/// The `index`-th number of the `/proc/<pid>/status` line starting with
/// `key` (for `Uid:` and `Gid:`, index 1 is the effective id).
fn status_field(status: &str, key: &str, index: usize) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .nth(index)?
        .parse()
        .ok()
}

/// The effective uid: `/proc/self/status`, else `id -u`.
fn effective_uid() -> Option<u32> {
    if let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status_field(&status, "Uid:", 1))
    {
        return Some(uid);
    }
    let id = find_in_path("id", None)?;
    let output = run_captured(&id, &["-u"], VERSION_TIMEOUT)?;
    if !output.status.success() {
        return None;
    }
    first_line(&output.stdout)?.parse().ok()
}

/// Whether `path` is a regular file (after following symlinks) that
/// `creds` may execute. Without known credentials any execute bit counts.
fn is_executable_file(path: &Path, creds: Option<&Credentials>) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && may_execute(&meta, creds),
        Err(_) => false,
    }
}

/// The classic owner/group/other execute-permission check (ACLs are not
/// consulted). Root may execute a file if any execute bit is set.
fn may_execute(meta: &Metadata, creds: Option<&Credentials>) -> bool {
    let mode = meta.permissions().mode();
    match creds {
        None => mode & 0o111 != 0,
        Some(c) if c.euid == 0 => mode & 0o111 != 0,
        Some(c) if meta.uid() == c.euid => mode & 0o100 != 0,
        Some(c) if c.groups.contains(&meta.gid()) => mode & 0o010 != 0,
        Some(_) => mode & 0o001 != 0,
    }
}

// ---------------------------------------------------------------------------
// Running commands

/// What a finished child printed.
#[derive(Debug)]
struct Captured {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `program args...` with stdin from `/dev/null`, `LC_ALL=C` and
/// captured output; kills it after `timeout`.
///
/// Returns `None` if it cannot be started or does not exit in time. Output
/// is read by helper threads so a chatty child never blocks; if a grandchild
/// keeps the pipes open after the child exits, whatever could not be read
/// by the deadline is dropped (and the helper threads finish on their own
/// once the pipes close).
fn run_captured(program: &Path, args: &[&str], timeout: Duration) -> Option<Captured> {
    let deadline = Instant::now() + timeout;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .env_remove("LANGUAGE");
    let mut child = spawn_retrying_busy(&mut command, deadline)?;
    let stdout = child.stdout.take().and_then(spawn_reader);
    let stderr = child.stderr.take().and_then(spawn_reader);

    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(_) => {
                kill_and_reap(&mut child);
                return None;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill_and_reap(&mut child);
            return None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL);
    };

    Some(Captured {
        status,
        stdout: collect(stdout, deadline),
        stderr: collect(stderr, deadline),
    })
}

/// Spawns `command`, retrying for a short while (never past `deadline`)
/// when the executable is busy: a file just written by this process can be
/// briefly held open by another thread's fork, which makes exec fail with
/// `ETXTBSY`.
fn spawn_retrying_busy(command: &mut Command, deadline: Instant) -> Option<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Ok(child) => return Some(child),
            Err(e)
                if e.kind() == io::ErrorKind::ExecutableFileBusy
                    && attempts < BUSY_RETRIES
                    && Instant::now() < deadline =>
            {
                attempts += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return None,
        }
    }
}

/// Reads `source` to the end on a helper thread; the receiver gets the first
/// [`OUTPUT_LIMIT`] bytes. `None` if no thread could be started (the pipe is
/// then closed, and the child sees a broken pipe if it writes).
fn spawn_reader<R: Read + Send + 'static>(source: R) -> Option<mpsc::Receiver<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("kiln-host-output".to_owned())
        .spawn(move || {
            let mut source = source;
            let mut kept = Vec::new();
            // Errors just end the output; what was read so far is kept.
            let _ = source.by_ref().take(OUTPUT_LIMIT).read_to_end(&mut kept);
            let _ = io::copy(&mut source, &mut io::sink());
            let _ = tx.send(kept);
        })
        .ok()?;
    Some(rx)
}

/// The output of a reader thread, waiting for it until `deadline` (but at
/// least [`READ_GRACE`]); empty if there is none by then.
fn collect(reader: Option<mpsc::Receiver<Vec<u8>>>, deadline: Instant) -> Vec<u8> {
    let Some(reader) = reader else {
        return Vec::new();
    };
    let wait = deadline.saturating_duration_since(Instant::now()).max(READ_GRACE);
    reader.recv_timeout(wait).unwrap_or_default()
}

/// Kills `child` and reaps it, giving up after [`REAP_GRACE`] (a process
/// stuck in uninterruptible sleep cannot be reaped; it is left behind rather
/// than blocking kiln).
fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let give_up = Instant::now() + REAP_GRACE;
    while Instant::now() < give_up {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The version line of a finished version command (see [`tool_version`]).
fn version_line(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Option<String> {
    // No exit code means killed by a signal: the output is not trustworthy.
    status.code()?;
    first_line(stdout).or_else(|| if status.success() { first_line(stderr) } else { None })
}

/// The first line of `bytes` that is not blank, trimmed.
fn first_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

/// Whether `name` looks like an `apt-get install` argument naming a package:
/// starts with a letter or digit and contains only characters of package
/// names, architecture qualifiers (`:arm64`), versions (`=1.2-3~bpo12+1`)
/// and target releases (`/bookworm-backports`).
fn is_valid_package_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.:=~/_".contains(&b))
}

/// Runs `apt-get args...` non-interactively with inherited stdout/stderr.
fn run_apt_get(apt_get: &Path, args: &[&str]) -> Result<(), HostError> {
    let command_line = format!(
        "DEBIAN_FRONTEND=noninteractive {} {}",
        apt_get.display(),
        args.join(" ")
    );
    let status = Command::new(apt_get)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|source| HostError::Spawn {
            command: command_line.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(HostError::CommandFailed {
            command: command_line,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn status(tool: &'static str, found: bool) -> ToolStatus {
        ToolStatus {
            tool: tool_or_panic(tool),
            path: found.then(|| PathBuf::from("/usr/bin").join(tool)),
            version: None,
        }
    }

    fn tool_or_panic(name: &str) -> &'static Tool {
        tool(name).expect("tool is in TOOLS")
    }

    #[test]
    fn arch_mapping() {
        assert_eq!(arch_from_rust("x86_64"), "amd64");
        assert_eq!(arch_from_rust("aarch64"), "arm64");
        assert_eq!(arch_from_rust("arm"), "armhf");
        assert_eq!(arch_from_rust("x86"), "i386");
        assert_eq!(arch_from_rust("powerpc64"), "ppc64el");
        assert_eq!(arch_from_rust("s390x"), "s390x");
        assert_eq!(arch_from_rust("riscv64"), "riscv64");
        assert_eq!(arch_from_rust("loongarch64"), "loong64");
        assert_eq!(arch_from_rust("mips64"), "mips64el");
        assert_eq!(arch_from_rust("sparc64"), "sparc64");
        assert_eq!(arch_from_rust(""), "");
    }

    #[test]
    fn tools_table() {
        let names: Vec<_> = TOOLS.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "mmdebstrap",
                "mksquashfs",
                "unsquashfs",
                "mkfs.erofs",
                "mkfs.ext4",
                "debugfs",
                "qemu-img",
                "git",
                "xorriso",
                "grub-mkimage",
                "grub i386-pc",
                "grub x86_64-efi",
                "mkfs.vfat",
                "mcopy"
            ]
        );
        for t in TOOLS {
            // A tool is an executable with version arguments or a file.
            assert_ne!(t.version_args.is_empty(), t.file.is_none(), "{}", t.name);
            assert!(t.file.is_none_or(|f| f.starts_with('/')), "{}", t.name);
            assert!(!t.purpose.is_empty(), "{}", t.name);
            assert!(is_valid_package_name(t.package), "{}", t.package);
        }
        assert_eq!(tool_or_panic("debugfs").package, "e2fsprogs");
        assert!(tool("mount").is_none());
    }

    #[test]
    fn missing_packages_dedup_and_order() {
        let all_missing: Vec<_> = TOOLS.iter().map(|t| status(t.name, false)).collect();
        assert_eq!(
            missing_packages(&all_missing),
            [
                "mmdebstrap",
                "squashfs-tools",
                "erofs-utils",
                "e2fsprogs",
                "qemu-utils",
                "git",
                "xorriso",
                "grub-common",
                "grub-pc-bin",
                "grub-efi-amd64-bin",
                "dosfstools",
                "mtools"
            ]
        );

        // Order follows TOOLS, not the order of the statuses.
        let shuffled = [
            status("git", false),
            status("debugfs", false),
            status("unsquashfs", false),
            status("mksquashfs", false),
            status("mkfs.ext4", false),
            status("mmdebstrap", true),
        ];
        assert_eq!(missing_packages(&shuffled), ["squashfs-tools", "e2fsprogs", "git"]);

        // A package is needed as soon as one of its tools is missing.
        let half = [status("mkfs.ext4", true), status("debugfs", false)];
        assert_eq!(missing_packages(&half), ["e2fsprogs"]);

        let none_missing: Vec<_> = TOOLS.iter().map(|t| status(t.name, true)).collect();
        assert!(missing_packages(&none_missing).is_empty());
        assert!(missing_packages(&[]).is_empty());
    }

    #[test]
    fn missing_packages_of_unknown_tools_come_last() {
        static EXTRA: Tool = Tool {
            name: "zstd",
            package: "zstd",
            purpose: "compress",
            version_args: &["--version"],
            file: None,
        };
        let statuses = [
            ToolStatus {
                tool: &EXTRA,
                path: None,
                version: None,
            },
            status("qemu-img", false),
            status("mmdebstrap", false),
        ];
        assert_eq!(missing_packages(&statuses), ["mmdebstrap", "qemu-utils", "zstd"]);
    }

    #[test]
    fn version_line_selection() {
        let ok = ExitStatus::from_raw(0);
        let failed = ExitStatus::from_raw(1 << 8);
        let killed = ExitStatus::from_raw(9);

        assert_eq!(
            version_line(ok, b"\n  git version 2.47.3  \nmore\n", b"noise").as_deref(),
            Some("git version 2.47.3")
        );
        assert_eq!(
            version_line(
                ok,
                b"",
                b"mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n"
            )
            .as_deref(),
            Some("mke2fs 1.47.0 (5-Feb-2023)")
        );
        // Failing exit: stdout still counts, stderr does not.
        assert_eq!(
            version_line(failed, b"mkfs.erofs 1.5\n", b"mkfs.erofs: unrecognized option").as_deref(),
            Some("mkfs.erofs 1.5")
        );
        assert_eq!(version_line(failed, b"  \n", b"unknown option -V"), None);
        assert_eq!(version_line(killed, b"v1\n", b""), None);
        assert_eq!(version_line(ok, b"", b"\n\n"), None);
        // Invalid UTF-8 does not get in the way.
        assert_eq!(
            version_line(ok, b"tool \xff 1.0\n", b"").as_deref(),
            Some("tool \u{fffd} 1.0")
        );
    }

    #[test]
    fn proc_status_parsing() {
        let status = "Name:\tcat\nUid:\t1000\t1001\t1002\t1003\n\
                      Gid:\t100\t101\t102\t103\nGroups:\t4 24 27 \n";
        assert_eq!(
            Credentials::parse(status),
            Some(Credentials {
                euid: 1001,
                groups: vec![101, 4, 24, 27]
            })
        );
        let no_groups = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\n";
        assert_eq!(
            Credentials::parse(no_groups),
            Some(Credentials {
                euid: 0,
                groups: vec![0]
            })
        );
        assert_eq!(Credentials::parse("Name:\tx\n"), None);
        assert_eq!(Credentials::parse("Uid:\tbogus\n"), None);
        assert_eq!(status_field("Uid:\t5\t7\t5\t5\n", "Uid:", 1), Some(7));
    }

    #[test]
    fn package_name_validation() {
        for good in [
            "git",
            "e2fsprogs",
            "g++",
            "libc6:arm64",
            "qemu-utils=1:10.0.2+ds-2+deb13u1~bpo12+1",
            "mmdebstrap/bookworm-backports",
        ] {
            assert!(is_valid_package_name(good), "{good}");
        }
        for bad in ["", "-o", "--reinstall", " git", "git;rm", "a b", "pkg\n"] {
            assert!(!is_valid_package_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn install_rejects_bad_names_before_anything_else() {
        let err =
            install_packages(&["git", "-oDebug::pkgProblemResolver=1"]).expect_err("option-like name must be rejected");
        assert!(
            matches!(&err, HostError::InvalidPackageName { name } if name.starts_with("-o")),
            "{err:?}"
        );
        assert!(install_packages(&[]).is_ok());
    }

    #[test]
    fn error_messages() {
        let failed = HostError::CommandFailed {
            command: "DEBIAN_FRONTEND=noninteractive /usr/bin/apt-get update".to_owned(),
            status: ExitStatus::from_raw(100 << 8),
        };
        assert_eq!(
            failed.to_string(),
            "`DEBIAN_FRONTEND=noninteractive /usr/bin/apt-get update` failed (exit status: 100)"
        );
        let not_root = HostError::NotRoot {
            command: "sudo apt-get install -y --no-install-recommends git".to_owned(),
        };
        assert!(not_root.to_string().contains("as root"));
        assert!(not_root.to_string().contains("sudo apt-get install"));
    }

    #[test]
    fn find_in_path_rejects_non_plain_names() {
        let bin = Some(OsStr::new("/bin:/usr/bin"));
        assert_eq!(find_in_path("", bin), None);
        assert_eq!(find_in_path(".", bin), None);
        assert_eq!(find_in_path("..", bin), None);
        assert_eq!(find_in_path("bin/sh", Some(OsStr::new("/usr"))), None);
        assert_eq!(find_in_path("/bin/sh", bin), None);
    }
}
