//! The sandbox's user namespace: made by a short-lived helper process
//! (`__kiln-sandbox-userns`) that unshares one and waits; stage 1, root in
//! the host's namespace, writes its id maps and keeps a descriptor of it.
//! Stage 2 uses that descriptor twice: as the idmapping of the tree's mount
//! (so what the command writes as its root lands as root on disk) and as the
//! namespace the command enters.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use crate::confine::{ID_BASE, ID_COUNT};

/// `argv[1]` of the user-namespace helper.
pub const USERNS_ARG: &str = "__kiln-sandbox-userns";

/// The helper: unshare a user namespace, say so, wait for stdin to close.
pub(crate) fn helper_main() -> ! {
    if set_pdeathsig(Signal::SIGKILL).is_err() {
        std::process::exit(1);
    }
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        println!("error {e}");
        std::process::exit(1);
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    std::process::exit(0)
}

/// Makes a user namespace whose ids 0…[`ID_COUNT`] map to the host's
/// [`ID_BASE`]…, and returns a descriptor of it.
pub(crate) fn create() -> Result<OwnedFd, String> {
    let mut child = Command::new("/proc/self/exe")
        .arg(USERNS_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the helper: {e}"))?;
    let result = map_and_open(&mut child);
    drop(child.stdin.take());
    let _ = child.wait();
    result
}

fn map_and_open(child: &mut std::process::Child) -> Result<OwnedFd, String> {
    let stdout = child.stdout.take().ok_or("the helper has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("read the helper: {e}"))?;
    match line.trim() {
        "ready" => {}
        other => {
            let why = other.strip_prefix("error ").unwrap_or(other);
            return Err(format!(
                "cannot create a user namespace: {why} \
                 (is user.max_user_namespaces 0, or are user namespaces restricted?)"
            ));
        }
    }
    let pid = child.id();
    let map = format!("0 {ID_BASE} {ID_COUNT}\n");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        let mut f = File::options()
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {path}: {e}"))?;
        f.write_all(map.as_bytes())
            .map_err(|e| format!("write {path} ({}): {e}", map.trim()))?;
    }
    let ns = format!("/proc/{pid}/ns/user");
    let fd =
        open(ns.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| format!("open {ns}: {e}"))?;
    // The helper must still be the process we mapped (it cannot exit before
    // its stdin closes, but check that the namespace is a new one).
    let ours = fs::read_link("/proc/self/ns/user").ok();
    let theirs = fs::read_link(&ns).ok();
    if ours.is_some() && ours == theirs {
        return Err("the helper did not get a user namespace of its own".to_owned());
    }
    Ok(fd)
}
