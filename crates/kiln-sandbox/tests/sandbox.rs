//! The sandbox for real: namespaces, mounts and processes, as root, in a tiny
//! busybox tree (`apt-get install busybox-static`). Without root or without
//! /bin/busybox the tests print why and pass without checking anything.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kiln_sandbox::{Bind, Cancel, HELPER_ARG, Io, Outcome, Sandbox, SandboxError, Spec, mounts_under};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "ls", "echo", "env", "hostname", "touch", "stat", "mount", "readlink", "grep", "mkdir", "id",
    "true", "wc", "head", "mknod", "chown", "umount", "unshare", "dmesg",
];

/// Why the tests cannot run here, if they cannot.
fn unsupported() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".to_owned());
    }
    if !Path::new(BUSYBOX).is_file() {
        return Some(format!("{BUSYBOX} missing (apt-get install busybox-static)"));
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = unsupported() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

/// A minimal root tree: busybox and some applets in bin/, empty etc/ and
/// mount points.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("kiln-sandbox-test-").tempdir().unwrap();
        for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "run"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        fs::copy(BUSYBOX, dir.path().join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", dir.path().join("bin").join(applet)).unwrap();
        }
        Self { dir }
    }

    /// Without the mount points: the sandbox creates them.
    fn bare() -> Self {
        let tree = Self::new();
        for sub in ["proc", "sys", "dev", "tmp", "run"] {
            fs::remove_dir(tree.path().join(sub)).unwrap();
        }
        tree
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sh(&self, script: &str) -> Spec {
        let mut spec = self.argv(&["/bin/sh", "-c", script]);
        spec.env = vec![("PATH".into(), "/bin".into())];
        spec
    }

    fn argv(&self, argv: &[&str]) -> Spec {
        Spec::new(self.path(), argv.iter().map(|s| s.to_string()).collect())
    }
}

fn sandbox() -> Sandbox {
    Sandbox::with_helper(env!("CARGO_BIN_EXE_kiln-sandbox-helper").into())
}

/// Runs with captured output.
fn run(spec: &Spec) -> (Result<Outcome, SandboxError>, String) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    let result = sandbox().run(
        spec,
        Io::Capture(Box::new(move |bytes| sink.lock().unwrap().extend_from_slice(bytes))),
    );
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    (result, text)
}

/// Runs and expects `Exited(0)`; returns the output.
fn ok(spec: &Spec) -> String {
    let (result, out) = run(spec);
    assert_eq!(result.unwrap(), Outcome::Exited(0), "output:\n{out}");
    out
}

fn setup_error(spec: &Spec) -> (String, String) {
    match run(spec) {
        (Err(SandboxError::Setup { step, message }), _) => (step, message),
        (other, out) => panic!("expected a setup error, got {other:?}, output:\n{out}"),
    }
}

/// A `sleep` argument unique to this test process (test binaries may run
/// side by side): `base` followed by our PID.
fn marker(base: &str) -> String {
    format!("{base}{}", std::process::id())
}

/// Host PIDs of processes whose command line is `<...>sleep <marker(base)>`.
fn sleepers(base: &str) -> Vec<i32> {
    let marker = marker(base);
    processes(|argv, _| argv.len() == 2 && argv[0].ends_with("sleep") && argv[1] == marker)
}

fn processes(matches: impl Fn(&[String], i32) -> bool) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if matches(&argv, pid) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_mounts(tree: &Tree) {
    let mounts = mounts_under(tree.path());
    assert!(mounts.is_empty(), "mounts left under the root: {mounts:?}");
}

// ---------------------------------------------------------------- basics

#[test]
fn output_is_captured_and_exit_code_propagated() {
    require_root!();
    let tree = Tree::new();
    let (result, out) = run(&tree.sh("echo hello; echo oops >&2; exit 3"));
    assert_eq!(result.unwrap(), Outcome::Exited(3));
    assert_eq!(out, "hello\noops\n");
    assert_no_mounts(&tree);
}

#[test]
fn output_is_streamed_as_produced() {
    require_root!();
    let tree = Tree::new();
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let tx = Mutex::new(tx);
    let start = Instant::now();
    let outcome = sandbox()
        .run(
            &tree.sh("echo first; sleep 1; echo second"),
            Io::Capture(Box::new(move |bytes| {
                let _ = tx.lock().unwrap().send((Instant::now(), bytes.to_vec()));
            })),
        )
        .unwrap();
    assert_eq!(outcome, Outcome::Exited(0));
    let chunks: Vec<_> = rx.try_iter().collect();
    let first = chunks
        .iter()
        .find(|(_, b)| b.starts_with(b"first"))
        .expect("first chunk");
    assert!(
        first.0.duration_since(start) < Duration::from_millis(900),
        "the first line arrived only after {:?}",
        first.0.duration_since(start)
    );
}

#[test]
fn files_io_separates_stdout_and_stderr() {
    require_root!();
    let tree = Tree::new();
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("out"), logs.path().join("err"));
    let outcome = sandbox()
        .run(
            &tree.sh("echo to-out; echo to-err >&2"),
            Io::Files {
                stdout: fs::File::create(&out).unwrap(),
                stderr: fs::File::create(&err).unwrap(),
            },
        )
        .unwrap();
    assert_eq!(outcome, Outcome::Exited(0));
    assert_eq!(fs::read_to_string(out).unwrap(), "to-out\n");
    assert_eq!(fs::read_to_string(err).unwrap(), "to-err\n");
}

#[test]
fn a_signal_is_reported() {
    require_root!();
    let tree = Tree::new();
    let spec = tree.argv(&["/bin/sleep", &marker("982")]);
    let runner = thread::spawn(move || run(&spec).0);
    wait_until("the sleeper", Duration::from_secs(10), || !sleepers("982").is_empty());
    // PID 1 of a namespace takes only SIGKILL from outside.
    for pid in sleepers("982") {
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    }
    assert_eq!(runner.join().unwrap().unwrap(), Outcome::Signaled(9));
}

#[test]
fn the_command_is_pid_1_with_the_given_hostname_and_cwd() {
    require_root!();
    let tree = Tree::new();
    let mut spec = tree.sh("echo pid=$$; hostname; pwd");
    spec.hostname = "kiln-test-host".into();
    spec.cwd = "/etc".into();
    assert_eq!(ok(&spec), "pid=1\nkiln-test-host\n/etc\n");
}

#[test]
fn the_environment_is_exactly_the_given_one() {
    require_root!();
    let tree = Tree::new();
    let mut spec = tree.argv(&["/bin/env"]);
    spec.env = vec![
        ("PATH".into(), "/bin".into()),
        ("FOO".into(), "bar baz".into()),
        ("SOURCE_DATE_EPOCH".into(), "0".into()),
    ];
    // std::process passes the environment sorted by name.
    assert_eq!(ok(&spec), "FOO=bar baz\nPATH=/bin\nSOURCE_DATE_EPOCH=0\n");
}

#[test]
fn the_command_starts_with_clean_signals_and_umask() {
    require_root!();
    let tree = Tree::new();
    // cat is PID 1 itself here: what it has, stage 2 gave it.
    let out = ok(&tree.argv(&["/bin/cat", "/proc/self/status"]));
    let mask = |field: &str| {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in\n{out}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "no signal is blocked");
    // No standard signal is ignored (SIGPIPE, which Rust ignores, is reset).
    // glibc's internal signals 32 and 33 may be: its posix_spawn sets them
    // to SIG_IGN in children, and glibc installs their handlers when needed.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "ignored signals 1-31");
    assert_eq!(ok(&tree.sh("umask")), "0022\n");
}

// ---------------------------------------------------------------- filesystem

#[test]
fn proc_is_fresh() {
    require_root!();
    let tree = Tree::new();
    let out = ok(&tree.sh("ls /proc"));
    let pids: Vec<u32> = out.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    // sh (1) and ls.
    assert!(pids.len() <= 3 && pids.contains(&1), "{pids:?}");
    assert!(pids.iter().all(|p| *p < 10), "{pids:?}");
}

#[test]
fn proc_sys_and_sys_are_read_only() {
    require_root!();
    let tree = Tree::new();
    let out = ok(&tree.sh("touch /sys/x 2>/dev/null && echo sys-writable; \
         (echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo proc-sys-writable; \
         grep -q ' /sys sysfs ro,' /proc/mounts && echo sys-ro; \
         echo done"));
    assert_eq!(out, "sys-ro\ndone\n");
}

#[test]
fn dev_is_minimal_and_works() {
    require_root!();
    let tree = Tree::new();
    let out = ok(&tree.sh("ls /dev; echo x > /dev/null && echo null-ok; \
         readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin; ls /dev/pts"));
    let words: Vec<&str> = out.split_whitespace().collect();
    for name in [
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "pts",
        "ptmx",
        "fd",
        "shm",
        "stdin",
        "stdout",
        "stderr",
        "null-ok",
        "pts/ptmx",
        "/proc/self/fd",
        "/proc/self/fd/0",
    ] {
        assert!(words.contains(&name), "{name} missing in:\n{out}");
    }
    let names: Vec<&str> = out.lines().take_while(|l| !l.contains("null-ok")).collect();
    assert_eq!(names.len(), 13, "unexpected /dev entries: {names:?}");
    // A private devpts instance: a fresh ptmx and no host ptys.
    assert!(words.ends_with(&["ptmx"]), "{out}");
    assert_eq!(ok(&tree.sh("head -c 4 /dev/zero | wc -c")).trim(), "4");
}

#[test]
fn tmp_run_and_dev_shm_are_tmpfs() {
    require_root!();
    let tree = Tree::new();
    let out = ok(&tree.sh("cat /proc/mounts"));
    for mount_point in ["/tmp", "/run", "/dev", "/dev/shm"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("tmpfs {mount_point} tmpfs "))),
            "{mount_point} is not a tmpfs:\n{out}"
        );
    }
    // Writes there vanish with the sandbox.
    ok(&tree.sh("echo x > /tmp/f && echo y > /run/g"));
    assert_eq!(fs::read_dir(tree.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(tree.path().join("run")).unwrap().count(), 0);
}

#[test]
fn missing_mount_points_are_created() {
    require_root!();
    let tree = Tree::bare();
    let out = ok(&tree.sh("echo pid=$$; ls /dev/null /tmp /run >/dev/null && echo ok"));
    assert_eq!(out, "pid=1\nok\n");
    for sub in ["proc", "sys", "dev", "tmp", "run"] {
        assert!(tree.path().join(sub).is_dir(), "{sub}");
    }
    assert_no_mounts(&tree);
}

#[test]
fn the_host_is_not_visible() {
    require_root!();
    let tree = Tree::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "host").unwrap();
    let script = format!(
        "ls {0} 2>/dev/null && echo outside-visible; \
         cat {0}/secret 2>/dev/null && echo secret-visible; \
         ls /work 2>/dev/null && echo work-visible; \
         ls /; echo; cat /proc/mounts",
        outside.path().display()
    );
    let out = ok(&tree.sh(&script));
    assert!(!out.contains("visible"), "{out}");
    let (listing, mounts) = out.split_once("\n\n").unwrap();
    let mut entries: Vec<&str> = listing.split_whitespace().collect();
    entries.sort_unstable();
    assert_eq!(entries, ["bin", "dev", "etc", "proc", "run", "sys", "tmp"]);
    // Only the sandbox's own mounts.
    let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    let mut expected = vec![
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/pts",
        "/dev/shm",
        "/tmp",
        "/run",
    ];
    // Masked and read-only paths of /proc and /sys, those this kernel has.
    for path in kiln_sandbox::MASKED {
        if Path::new(path).exists() {
            expected.push(path);
        }
    }
    for path in ["/proc/sys", "/proc/sysrq-trigger"]
        .iter()
        .chain(kiln_sandbox::READ_ONLY_PROC)
    {
        if Path::new(path).exists() {
            expected.push(path);
        }
    }
    assert_eq!(points, expected, "{mounts}");
}

// ---------------------------------------------------------------- network

fn interfaces(proc_net_dev: &str) -> Vec<String> {
    let mut names: Vec<String> = proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn without_network_only_lo_exists_and_is_up() {
    require_root!();
    let tree = Tree::new();
    let out = ok(&tree.sh("cat /proc/net/dev; echo; cat /sys/class/net/lo/flags"));
    let (dev, flags) = out.split_once("\n\n").unwrap();
    assert_eq!(interfaces(dev), ["lo"]);
    // IFF_UP | IFF_LOOPBACK
    assert_eq!(flags.trim(), "0x9");
}

#[test]
fn with_network_the_host_interfaces_and_resolv_conf_are_there() {
    require_root!();
    let tree = Tree::new();
    fs::write(tree.path().join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
    let mut spec = tree.sh("cat /proc/net/dev; echo; cat /etc/resolv.conf; \
         (echo x >> /etc/resolv.conf) 2>/dev/null && echo resolv-writable; true");
    spec.network = true;
    let out = ok(&spec);
    let (dev, resolv) = out.split_once("\n\n").unwrap();
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(interfaces(dev), interfaces(&host));
    assert_eq!(resolv, fs::read_to_string("/etc/resolv.conf").unwrap());
    // The tree's own file is untouched.
    assert_eq!(
        fs::read_to_string(tree.path().join("etc/resolv.conf")).unwrap(),
        "nameserver 192.0.2.1\n"
    );
    assert_no_mounts(&tree);
}

#[test]
fn resolv_conf_symlink_to_run_is_followed() {
    require_root!();
    let tree = Tree::new();
    symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        tree.path().join("etc/resolv.conf"),
    )
    .unwrap();
    let mut spec = tree.sh("cat /etc/resolv.conf");
    spec.network = true;
    assert_eq!(ok(&spec), fs::read_to_string("/etc/resolv.conf").unwrap());
    // The symlink is still a symlink; nothing was added to the tree.
    let link = tree.path().join("etc/resolv.conf");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_dir(tree.path().join("run")).unwrap().count(), 0);
}

#[test]
fn resolv_conf_missing_is_created_empty() {
    require_root!();
    let tree = Tree::new();
    let mut spec = tree.sh("cat /etc/resolv.conf");
    spec.network = true;
    assert_eq!(ok(&spec), fs::read_to_string("/etc/resolv.conf").unwrap());
    assert_eq!(
        fs::read(tree.path().join("etc/resolv.conf")).unwrap(),
        b"",
        "the mount point stays, empty"
    );
}

#[test]
fn resolv_conf_dangling_symlink_outside_tmpfs_is_an_error() {
    require_root!();
    let tree = Tree::new();
    symlink("/var/lib/nowhere/resolv.conf", tree.path().join("etc/resolv.conf")).unwrap();
    let mut spec = tree.sh("true");
    spec.network = true;
    let (step, message) = setup_error(&spec);
    assert_eq!(step, "resolv.conf");
    assert!(message.contains("/var/lib/nowhere/resolv.conf"), "{message}");
    assert!(!tree.path().join("var").exists());
    assert_no_mounts(&tree);
}

// ---------------------------------------------------------------- binds

#[test]
fn binds_are_read_only_or_writable_as_asked() {
    require_root!();
    let tree = Tree::new();
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    fs::write(ro.path().join("script"), "echo from-script\n").unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), "single file\n").unwrap();
    let mut spec = tree.sh("sh /run/kiln/scripts/script; \
         touch /run/kiln/scripts/new 2>/dev/null && echo ro-writable; \
         echo data > /mnt/out/result && echo rw-ok; \
         cat /etc/extra.conf");
    spec.binds = vec![
        Bind {
            source: ro.path().into(),
            target: "/run/kiln/scripts".into(),
            read_only: true,
        },
        Bind {
            source: rw.path().into(),
            target: "/mnt/out".into(),
            read_only: false,
        },
        Bind {
            source: file.path().into(),
            target: "/etc/extra.conf".into(),
            read_only: true,
        },
    ];
    assert_eq!(ok(&spec), "from-script\nrw-ok\nsingle file\n");
    assert_eq!(fs::read_to_string(rw.path().join("result")).unwrap(), "data\n");
    assert!(!ro.path().join("new").exists());
    // A target under /run left nothing in the tree; the others left their
    // (empty) mount points.
    assert_eq!(fs::read_dir(tree.path().join("run")).unwrap().count(), 0);
    assert!(tree.path().join("mnt/out").is_dir());
    assert_eq!(fs::read(tree.path().join("etc/extra.conf")).unwrap(), b"");
    assert_no_mounts(&tree);
}

// ---------------------------------------------------------------- processes

#[test]
fn timeout_kills_everything() {
    require_root!();
    let tree = Tree::new();
    let mut spec = tree.sh(&format!("sleep {0} & sleep {0}", marker("987")));
    spec.timeout = Some(Duration::from_secs(1));
    let start = Instant::now();
    let (result, _) = run(&spec);
    assert_eq!(result.unwrap(), Outcome::TimedOut);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(sleepers("987").is_empty(), "{:?}", sleepers("987"));
    assert_no_mounts(&tree);
}

#[test]
fn a_background_process_dies_with_the_step() {
    require_root!();
    let tree = Tree::new();
    let (result, out) = run(&tree.sh(&format!("sleep {} & echo started", marker("986"))));
    assert_eq!(result.unwrap(), Outcome::Exited(0));
    assert_eq!(out, "started\n");
    assert!(sleepers("986").is_empty(), "{:?}", sleepers("986"));
}

#[test]
fn a_daemon_that_closed_its_output_dies_too() {
    require_root!();
    let tree = Tree::new();
    let start = Instant::now();
    let (result, out) = run(&tree.sh(&format!(
        "sleep {} >/dev/null 2>&1 </dev/null & echo started",
        marker("981")
    )));
    assert_eq!(result.unwrap(), Outcome::Exited(0));
    assert_eq!(out, "started\n");
    assert!(sleepers("981").is_empty());
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn cancel_stops_the_sandbox() {
    require_root!();
    let tree = Tree::new();
    let cancel = Cancel::new();
    let remote = cancel.clone();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        remote.cancel();
    });
    let start = Instant::now();
    let result = sandbox().run_with_cancel(
        &tree.sh(&format!("sleep {}", marker("980"))),
        Io::Capture(Box::new(|_| {})),
        &cancel,
    );
    stopper.join().unwrap();
    assert!(matches!(result, Err(SandboxError::Cancelled)), "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(sleepers("980").is_empty());
}

#[test]
fn no_mount_is_ever_visible_on_the_host() {
    require_root!();
    let tree = Tree::new();
    let spec = tree.sh(&format!("sleep {}", marker("979")));
    let runner = {
        let mut spec = spec.clone();
        spec.timeout = Some(Duration::from_secs(3));
        thread::spawn(move || run(&spec).0)
    };
    wait_until("the sleeper", Duration::from_secs(10), || !sleepers("979").is_empty());
    // While it runs.
    assert_no_mounts(&tree);
    assert_eq!(runner.join().unwrap().unwrap(), Outcome::TimedOut);
    assert_no_mounts(&tree);
    // After a failure.
    let (result, _) = run(&tree.sh("exit 1"));
    assert_eq!(result.unwrap(), Outcome::Exited(1));
    assert_no_mounts(&tree);
    // After a setup failure late in the setup.
    let mut spec = tree.sh("true");
    spec.cwd = "/does/not/exist".into();
    assert_eq!(setup_error(&spec).0, "cwd");
    assert_no_mounts(&tree);
}

/// Stage 1 dies (SIGKILL from outside): the chain of parent-death signals
/// still takes the whole sandbox down.
#[test]
fn killing_the_helper_kills_the_sandbox() {
    require_root!();
    let tree = Tree::new();
    let spec = tree.sh(&format!("sleep {0} & sleep {0}", marker("983")));
    let runner = thread::spawn(move || run(&spec).0);
    let our_pid = std::process::id().to_string();
    let mut stage1 = Vec::new();
    wait_until("the helper", Duration::from_secs(10), || {
        stage1 = processes(|argv, pid| {
            argv.get(1).is_some_and(|a| a == HELPER_ARG)
                && parent_of(pid).as_deref() == Some(our_pid.as_str())
                && fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&format!("sleep {}", marker("983"))))
        });
        !stage1.is_empty() && sleepers("983").len() == 2
    });
    for pid in &stage1 {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
    }
    let result = runner.join().unwrap();
    assert!(
        matches!(result, Err(SandboxError::Helper { ref what, .. }) if what.contains("signal 9")),
        "{result:?}"
    );
    // Capture mode waits for the output pipe, i.e. for every process.
    assert!(sleepers("983").is_empty(), "{:?}", sleepers("983"));
    assert_no_mounts(&tree);
}

fn parent_of(pid: i32) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .map(|p| p.trim().to_owned())
}

const CALLER_ENV: &str = "KILN_SANDBOX_TEST_CALLER_SPEC";

/// Not a test: the body of the caller process of
/// `killing_the_caller_kills_the_sandbox` (this test binary, re-executed).
#[test]
#[ignore = "run by killing_the_caller_kills_the_sandbox"]
fn caller_process() {
    let Ok(json) = std::env::var(CALLER_ENV) else {
        return;
    };
    let spec: Spec = serde_json::from_str(&json).unwrap();
    let _ = sandbox().run(&spec, Io::Inherit);
}

/// The caller (kiln) dies — Ctrl-C, crash, SIGKILL: nothing survives it.
#[test]
fn killing_the_caller_kills_the_sandbox() {
    require_root!();
    let tree = Tree::new();
    let spec = tree.sh(&format!("sleep {0} & sleep {0}", marker("984")));
    let mut caller = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "caller_process", "--ignored", "--nocapture"])
        .env(CALLER_ENV, serde_json::to_string(&spec).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the sleepers", Duration::from_secs(10), || sleepers("984").len() == 2);
    caller.kill().unwrap();
    caller.wait().unwrap();
    wait_until("the sandbox to die", Duration::from_secs(5), || {
        sleepers("984").is_empty()
            && processes(|argv, _| argv.get(1).is_some_and(|a| a.starts_with(HELPER_ARG)))
                .iter()
                .all(|pid| {
                    !fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&format!("sleep {}", marker("984"))))
                })
    });
    assert_no_mounts(&tree);
}

// ---------------------------------------------------------------- errors

#[test]
fn setup_errors_name_the_step() {
    require_root!();
    let tree = Tree::new();

    let mut spec = tree.sh("true");
    spec.root = PathBuf::from("/nonexistent/kiln-root");
    let (step, message) = setup_error(&spec);
    assert_eq!(step, "root");
    assert!(message.contains("/nonexistent/kiln-root"), "{message}");

    let mut spec = tree.sh("true");
    spec.root = tree.path().join("bin/busybox");
    let (step, message) = setup_error(&spec);
    assert_eq!(step, "root");
    assert!(message.contains("not a directory"), "{message}");

    let mut spec = tree.argv(&["no-such-command", "x"]);
    spec.env = vec![("PATH".into(), "/bin:/usr/bin".into())];
    let (step, message) = setup_error(&spec);
    assert_eq!(step, "exec");
    assert!(
        message.contains("no-such-command") && message.contains("PATH=/bin:/usr/bin"),
        "{message}"
    );

    let (step, message) = setup_error(&tree.argv(&["/bin/nope"]));
    assert_eq!(step, "exec");
    assert!(message.contains("/bin/nope"), "{message}");

    let mut spec = tree.sh("true");
    spec.cwd = "/missing-dir".into();
    let (step, message) = setup_error(&spec);
    assert_eq!(step, "cwd");
    assert!(message.contains("/missing-dir"), "{message}");

    let mut spec = tree.sh("true");
    spec.binds.push(Bind {
        source: "/nonexistent/scripts".into(),
        target: "/run/scripts".into(),
        read_only: true,
    });
    let (step, message) = setup_error(&spec);
    assert_eq!(step, "bind /run/scripts");
    assert!(message.contains("/nonexistent/scripts"), "{message}");

    let (step, _) = setup_error(&tree.argv(&[]));
    assert_eq!(step, "spec");

    let mut spec = tree.sh("true");
    spec.cwd = "relative".into();
    assert_eq!(setup_error(&spec).0, "spec");
    assert_no_mounts(&tree);
}

#[test]
fn a_helper_that_is_not_one_is_reported() {
    require_root!();
    let tree = Tree::new();
    let result = Sandbox::with_helper("/bin/true".into()).run(&tree.sh("true"), Io::Inherit);
    match result {
        Err(SandboxError::Helper { what, .. }) => {
            assert!(what.contains("maybe_run_helper"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    let result = Sandbox::with_helper("/nonexistent/kiln".into()).run(&tree.sh("true"), Io::Inherit);
    assert!(matches!(result, Err(SandboxError::Spawn { .. })), "{result:?}");
}

#[test]
fn the_helper_binary_refuses_to_run_alone() {
    let status = Command::new(env!("CARGO_BIN_EXE_kiln-sandbox-helper"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn many_sandboxes_run_concurrently() {
    require_root!();
    let tree = Tree::new();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let spec = tree.sh(&format!("echo $$ {i}"));
            thread::spawn(move || ok(&spec))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), format!("1 {i}\n"));
    }
    assert_no_mounts(&tree);
}

// ---------------------------------------------------------------- confinement

#[test]
fn the_command_is_root_of_its_own_user_namespace_with_little_power() {
    require_root!();
    let tree = Tree::new();
    let out = ok(&tree.sh("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
         grep -E '^(NoNewPrivs|Seccomp|CapBnd|CapEff):' /proc/self/status"));
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "0", "{out}");
    let map = format!("0 {} {}", kiln_sandbox::ID_BASE, kiln_sandbox::ID_COUNT);
    let maps: Vec<String> = lines[2..4]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(maps, [map.clone(), map], "{out}");
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("NoNewPrivs:"), "1", "{out}");
    assert_eq!(field("Seccomp:"), "2", "{out}");
    let bounding = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
    for (cap, name) in [
        (21, "SYS_ADMIN"),
        (27, "MKNOD"),
        (2, "DAC_READ_SEARCH"),
        (16, "SYS_MODULE"),
        (38, "PERFMON"),
    ] {
        assert_eq!(bounding & (1 << cap), 0, "CAP_{name} in the bounding set: {out}");
    }
    assert_ne!(bounding & 1, 0, "CAP_CHOWN is kept: {out}");
}

#[test]
fn files_written_inside_belong_to_root_and_chosen_ids_on_the_host() {
    use std::os::unix::fs::MetadataExt;
    require_root!();
    let tree = Tree::new();
    ok(&tree.sh("echo x > /etc/made; mkdir /etc/dir; echo y > /etc/theirs; chown 1000:1001 /etc/theirs"));
    for name in ["made", "dir"] {
        let m = fs::symlink_metadata(tree.path().join("etc").join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "{name}");
    }
    let m = fs::metadata(tree.path().join("etc/theirs")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
}

#[test]
fn device_nodes_mounts_and_new_user_namespaces_are_refused() {
    require_root!();
    let tree = Tree::new();
    let out = ok(&tree.sh("mknod /tmp/sda b 8 0 2>/dev/null && echo mknod-block; \
         mknod /tmp/mem c 1 1 2>/dev/null && echo mknod-char; \
         mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null && echo mount-tmpfs; \
         mount -t devtmpfs none /tmp/m 2>/dev/null && echo mount-devtmpfs; \
         mount -o remount,rw /sys 2>/dev/null && echo remount-sys; \
         mount -o remount,rw /proc/sys 2>/dev/null && echo remount-proc-sys; \
         umount /proc/sys 2>/dev/null && echo umount-proc-sys; \
         unshare -U true 2>/dev/null && echo unshare-user; \
         dmesg >/dev/null 2>&1 && echo dmesg; \
         cat /proc/kcore 2>/dev/null | head -c 1 | wc -c | grep -qv '^0' && echo kcore; \
         echo done"));
    assert_eq!(out.trim(), "done", "these succeeded:\n{out}");
}

#[test]
fn the_host_view_shows_host_programs_and_no_secrets() {
    require_root!();
    let view = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("in"), "from the host\n").unwrap();
    let mut spec = Spec::new(
        view.path(),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "test -x /usr/bin/env && echo has-env; test -e /etc/shadow && echo has-shadow; \
             test -e /etc/passwd && echo has-passwd; touch /usr/kiln-x 2>/dev/null && echo usr-writable; \
             touch /kiln-x 2>/dev/null && echo root-writable; cat /kiln/root/in; echo made > /kiln/root/out; \
             cat /run/copied; grep -c ' /run/copied ' /proc/mounts"
                .into(),
        ],
    );
    spec.view = kiln_sandbox::View::Host;
    spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    spec.binds = vec![Bind {
        source: work.path().to_path_buf(),
        target: "/kiln/root".into(),
        read_only: false,
    }];
    let copied = work.path().join("copy-source");
    fs::write(&copied, "copied in\n").unwrap();
    spec.copies = vec![kiln_sandbox::CopyIn {
        source: copied,
        target: "/run/copied".into(),
        mode: 0o644,
    }];
    let (result, out) = run(&spec);
    // grep -c exits 1 when it counts 0 matches: the copy is no mount.
    assert_eq!(result.unwrap(), Outcome::Exited(1), "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["has-env", "has-passwd", "from the host", "copied in", "0"],
        "{out}"
    );
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(work.path().join("out")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert!(
        fs::read_dir(view.path()).unwrap().next().is_none(),
        "the view's mount point stays empty"
    );
}

#[test]
fn copies_must_land_on_the_sandbox_tmpfs() {
    require_root!();
    let tree = Tree::new();
    let mut spec = tree.sh("true");
    spec.copies = vec![kiln_sandbox::CopyIn {
        source: PathBuf::from("/etc/hostname"),
        target: "/etc/evil".into(),
        mode: 0o644,
    }];
    let (step, message) = setup_error(&spec);
    assert_eq!(step, "spec");
    assert!(message.contains("under /run or /tmp"), "{message}");
}

/// An overlay mount (as kiln's stage cache makes them), unmounted on drop.
struct Overlay {
    dir: tempfile::TempDir,
}

impl Overlay {
    fn new(lower: &Path) -> Self {
        let dir = tempfile::Builder::new().prefix("kiln-sandbox-ovl-").tempdir().unwrap();
        for d in ["upper", "work", "merged"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
            lower.display(),
            dir.path().join("upper").display(),
            dir.path().join("work").display()
        );
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(dir.path().join("merged"))
            .status()
            .unwrap();
        assert!(status.success(), "mount the overlay");
        Self { dir }
    }

    fn merged(&self) -> PathBuf {
        self.dir.path().join("merged")
    }

    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.merged()).status();
    }
}

#[test]
fn an_overlay_tree_is_written_through_idmapped_layers() {
    use std::os::unix::fs::MetadataExt;
    require_root!();
    let lower = Tree::new();
    fs::write(lower.path().join("etc/old"), "old\n").unwrap();
    std::os::unix::fs::chown(lower.path().join("etc/old"), Some(0), Some(0)).unwrap();
    let overlay = Overlay::new(lower.path());
    let mut spec = Spec::new(
        overlay.merged(),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "stat -c '%u:%g' /etc/old /bin/busybox; echo more >> /etc/old; echo new > /etc/new; \
             echo theirs > /etc/theirs; chown 1000:1000 /etc/theirs"
                .into(),
        ],
    );
    spec.env = vec![("PATH".into(), "/bin".into())];
    let out = ok(&spec);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0:0", "0:0"],
        "owners seen inside: {out}"
    );
    for (name, owner) in [("etc/old", (0, 0)), ("etc/new", (0, 0)), ("etc/theirs", (1000, 1000))] {
        let m = fs::metadata(overlay.upper().join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), owner, "{name} in the upper layer");
    }
    assert_eq!(
        fs::read_to_string(overlay.upper().join("etc/old")).unwrap(),
        "old\nmore\n"
    );
    assert_eq!(
        fs::read_to_string(lower.path().join("etc/old")).unwrap(),
        "old\n",
        "the lower layer is untouched"
    );
}
