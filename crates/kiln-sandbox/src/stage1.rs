//! Stage 1 of the helper: create the namespaces, start PID 1, wait.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::getppid;

use crate::protocol::{self, ENV_CALLER, ENV_STAGE1, ENV_USERNS, Report, SETUP_FAILED_EXIT, StatusWriter};
use crate::{INIT_ARG, userns};

/// A failed setup step.
pub(crate) struct Failure {
    pub(crate) step: String,
    pub(crate) message: String,
}

pub(crate) fn fail(step: impl Into<String>, message: impl Into<String>) -> Failure {
    Failure {
        step: step.into(),
        message: message.into(),
    }
}

pub(crate) fn main() -> ! {
    // Die with the caller. Set before anything else, then check that the
    // caller did not die before it was set.
    if set_pdeathsig(Signal::SIGKILL).is_err() || !parent_is_caller() {
        std::process::exit(SETUP_FAILED_EXIT);
    }
    let status = StatusWriter::open();
    match run(&status) {
        Ok(code) => std::process::exit(code),
        Err(Failure { step, message }) => {
            status.send(&Report::Setup { step, message });
            std::process::exit(SETUP_FAILED_EXIT)
        }
    }
}

fn parent_is_caller() -> bool {
    match std::env::var(ENV_CALLER).ok().and_then(|v| v.parse::<i32>().ok()) {
        Some(caller) => getppid().as_raw() == caller,
        // Started by hand: nothing to check against.
        None => true,
    }
}

/// Checks the root on the host side, before any namespace exists.
pub(crate) fn check_root(root: &Path) -> Result<PathBuf, Failure> {
    let canonical = std::fs::canonicalize(root).map_err(|e| fail("root", format!("{}: {e}", root.display())))?;
    if !canonical.is_dir() {
        return Err(fail("root", format!("{} is not a directory", root.display())));
    }
    if canonical == Path::new("/") {
        return Err(fail(
            "root",
            "the sandbox root cannot be the host's / (nothing would be hidden)",
        ));
    }
    Ok(canonical)
}

fn run(status: &StatusWriter) -> Result<i32, Failure> {
    let spec = protocol::decode_spec().map_err(|e| fail("spec", e))?;
    check_root(&spec.root)?;

    // The command's user namespace, made while we are still in the host's
    // PID namespace (its helper's PID is the one /proc shows). Kept open
    // until the end; stage 2 opens it through our descriptor table.
    let userns = match userns::create() {
        Ok(fd) => Some(fd),
        Err(_) if spec.insecure => None,
        Err(e) => return Err(fail("user namespace", e)),
    };

    // Signals are taken with sigwait: SIGCHLD (PID 1 ended), SIGTERM/SIGHUP
    // (stop: kill PID 1, wait for the namespace to empty), SIGINT/SIGQUIT
    // (the terminal's Ctrl-C/Ctrl-\: ignored here; the command gets them
    // itself and the caller decides what an interrupt means). Stage 2 starts
    // with an empty mask.
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        signals.add(signal);
    }
    signals.thread_block().map_err(|e| fail("signals", e.to_string()))?;

    let mut flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if !spec.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| fail("unshare", format!("{e} (the sandbox needs root, i.e. CAP_SYS_ADMIN)")))?;
    // Nothing mounted from now on propagates to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| fail("make / private", e.to_string()))?;

    // After unshare(CLONE_NEWPID) our first child is PID 1 of the new
    // namespace. /proc/self/exe: the very binary we are, even if replaced.
    let mut init = Command::new("/proc/self/exe");
    init.arg(INIT_ARG)
        .env_clear()
        .envs(protocol::passthrough_env())
        .env(ENV_STAGE1, std::process::id().to_string());
    if let Some(fd) = &userns {
        init.env(
            ENV_USERNS,
            format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd()),
        );
    }
    let mut child = init.spawn().map_err(|e| fail("start init", e.to_string()))?;

    let report = match wait(&mut child, &signals) {
        Ok(Some(exit)) => {
            use std::os::unix::process::ExitStatusExt;
            match (exit.code(), exit.signal()) {
                (Some(code), _) => Report::Exited { code },
                (None, Some(signal)) => Report::Signaled { signal },
                (None, None) => Report::Killed,
            }
        }
        Ok(None) => Report::Killed,
        Err(e) => return Err(fail("wait", e.to_string())),
    };
    status.send(&report);
    Ok(match report {
        Report::Exited { code } => code,
        Report::Signaled { signal } => 128 + signal,
        _ => 128 + Signal::SIGKILL as i32,
    })
}

/// Waits for PID 1: `Some(status)` when it ended by itself, `None` when we
/// were told to stop and killed it. Either way it has been reaped, which for a
/// PID namespace's init means every process of the namespace is gone.
fn wait(child: &mut Child, signals: &SigSet) -> std::io::Result<Option<ExitStatus>> {
    loop {
        match signals.wait() {
            Ok(Signal::SIGTERM | Signal::SIGHUP) => {
                let _ = child.kill();
                child.wait()?;
                return Ok(None);
            }
            // SIGCHLD, or an ignored one: check (a SIGCHLD may have been
            // merged with another).
            Ok(_) | Err(_) => {
                if let Some(status) = child.try_wait()? {
                    return Ok(Some(status));
                }
            }
        }
    }
}
