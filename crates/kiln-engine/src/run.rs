//! Running host commands (the bootstrap, output tools, build-side scripts):
//! output streamed to the log, a timeout, and the whole process group
//! killed when the step ends, fails, times out or the build is interrupted.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::log::BuildLog;

/// Set by the front end's signal handler (Ctrl-C): running steps are killed
/// and the build unwinds, cleaning up.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    Interrupted,
}

impl Ended {
    pub fn success(self) -> bool {
        self == Ended::Exited(0)
    }

    pub fn describe(self) -> String {
        match self {
            Ended::Exited(c) => format!("exited with status {c}"),
            Ended::Signaled(s) => format!("was killed by signal {s}"),
            Ended::TimedOut => "timed out".into(),
            Ended::Interrupted => "was interrupted".into(),
        }
    }
}

/// Runs `cmd` in its own process group with stdout and stderr streamed into
/// `log`. Every process left in the group is killed when it returns.
pub fn run_logged(mut cmd: Command, log: &BuildLog, timeout: Option<Duration>) -> std::io::Result<Ended> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let readers: Vec<_> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.output(&buf[..n]);
            }
        })
    })
    .collect();
    let start = Instant::now();
    let ended = loop {
        if let Some(status) = child.try_wait()? {
            break match (status.code(), status.signal()) {
                (Some(c), _) => Ended::Exited(c),
                (None, Some(s)) => Ended::Signaled(s),
                _ => Ended::Exited(-1),
            };
        }
        if interrupted() {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.wait();
            break Ended::Interrupted;
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.wait();
            break Ended::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the step started and left behind goes with it.
    let _ = killpg(pgid, Signal::SIGKILL);
    for r in readers {
        let _ = r.join();
    }
    Ok(ended)
}
