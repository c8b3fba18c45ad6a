//! What the caller, stage 1 and stage 2 tell each other.
//!
//! * **Spec** — the caller serializes the [`Spec`] as JSON into environment
//!   variables of the helper (`KILN_SANDBOX_SPEC_COUNT` and
//!   `KILN_SANDBOX_SPEC_0`…, each at most 64 KiB because Linux limits one
//!   environment string to 128 KiB). Stage 1 passes them on to stage 2; stage 2
//!   execs the command with `env_clear()`, so they never reach it.
//! * **Status** — the caller creates a pipe (close-on-exec, so no other child
//!   inherits it) and passes its path, `/proc/<caller pid>/fd/<n>`. Opening
//!   that path opens the same pipe, so both stages can write to it without any
//!   file descriptor being inherited. Each stage writes one JSON line per
//!   [`Report`]: stage 2 a setup failure, stage 1 the command's outcome. The
//!   caller reads the pipe after stage 1 has exited.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::Spec;

pub(crate) const ENV_SPEC_COUNT: &str = "KILN_SANDBOX_SPEC_COUNT";
pub(crate) const ENV_SPEC_PREFIX: &str = "KILN_SANDBOX_SPEC_";
/// Path of the status pipe: `/proc/<caller pid>/fd/<n>`.
pub(crate) const ENV_STATUS: &str = "KILN_SANDBOX_STATUS";
/// PID of the caller; stage 1 checks it is still its parent.
pub(crate) const ENV_CALLER: &str = "KILN_SANDBOX_CALLER";
/// PID of stage 1 (in the host's PID namespace); stage 2 checks it.
pub(crate) const ENV_STAGE1: &str = "KILN_SANDBOX_STAGE1";
/// The sandbox's user namespace, `/proc/<stage 1 pid>/fd/<n>`, for stage 2.
pub(crate) const ENV_USERNS: &str = "KILN_SANDBOX_USERNS";

/// Exit code of a helper stage whose setup failed (the report says why).
pub(crate) const SETUP_FAILED_EXIT: i32 = 125;

const CHUNK: usize = 64 * 1024;

/// The environment variables that carry `spec` to the helper.
pub(crate) fn encode_spec(spec: &Spec) -> Result<Vec<(String, String)>, serde_json::Error> {
    let json = serde_json::to_string(spec)?;
    let mut chunks = Vec::new();
    let mut rest = json.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        chunks.push(head);
        rest = tail;
    }
    let mut vars = vec![(ENV_SPEC_COUNT.to_owned(), chunks.len().to_string())];
    for (i, chunk) in chunks.into_iter().enumerate() {
        vars.push((format!("{ENV_SPEC_PREFIX}{i}"), chunk.to_owned()));
    }
    Ok(vars)
}

/// Reads the spec back from this process's environment.
pub(crate) fn decode_spec() -> Result<Spec, String> {
    let count: usize = std::env::var(ENV_SPEC_COUNT)
        .map_err(|_| format!("{ENV_SPEC_COUNT} is not set (was the helper started by kiln-sandbox?)"))?
        .parse()
        .map_err(|_| format!("{ENV_SPEC_COUNT} is not a number"))?;
    let mut json = String::new();
    for i in 0..count {
        let name = format!("{ENV_SPEC_PREFIX}{i}");
        let chunk = std::env::var(&name).map_err(|_| format!("{name} is not set"))?;
        json.push_str(&chunk);
    }
    serde_json::from_str(&json).map_err(|e| format!("cannot read the sandbox spec: {e}"))
}

/// The protocol variables of this process, to pass on to stage 2.
pub(crate) fn passthrough_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(|n| n.starts_with(ENV_SPEC_PREFIX) || n == ENV_STATUS)
        })
        .collect()
}

/// One line on the status pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub(crate) enum Report {
    /// A setup step failed; the command was not run.
    Setup { step: String, message: String },
    /// The command exited with this code.
    Exited { code: i32 },
    /// The command was killed by this signal.
    Signaled { signal: i32 },
    /// Stage 1 was asked to stop (SIGTERM/SIGHUP) and killed the sandbox.
    Killed,
}

/// Parses the status pipe's contents; lines that are not reports are skipped.
pub(crate) fn parse_reports(bytes: &[u8]) -> Vec<Report> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The writing end of the status pipe, as seen from a helper stage.
pub(crate) struct StatusWriter(Option<File>);

impl StatusWriter {
    /// Opens the pipe named by `KILN_SANDBOX_STATUS` (close-on-exec, so the
    /// command never inherits it). Without it, reports go to stderr.
    pub(crate) fn open() -> Self {
        let file = std::env::var_os(ENV_STATUS).and_then(|path| {
            open(path.as_os_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
                .ok()
                .map(File::from)
        });
        Self(file)
    }

    pub(crate) fn send(&self, report: &Report) {
        let written = self.0.as_ref().is_some_and(|mut file| {
            serde_json::to_string(report)
                .ok()
                .is_some_and(|line| file.write_all(format!("{line}\n").as_bytes()).is_ok())
        });
        if let (false, Report::Setup { step, message }) = (written, report) {
            eprintln!("kiln-sandbox: {step}: {message}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spec_chunks_split_on_char_boundaries() {
        let mut spec = Spec::new("/r", vec!["sh".into()]);
        spec.env.push(("BIG".into(), "é".repeat(100_000)));
        let vars = encode_spec(&spec).unwrap();
        assert!(vars.len() > 3);
        assert!(vars.iter().all(|(_, v)| v.len() <= CHUNK));
        let json: String = vars[1..].iter().map(|(_, v)| v.as_str()).collect();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.env, spec.env);
    }

    #[test]
    fn reports_round_trip() {
        let reports = [
            Report::Setup {
                step: "mount /proc".into(),
                message: "EPERM".into(),
            },
            Report::Exited { code: 3 },
            Report::Signaled { signal: 9 },
            Report::Killed,
        ];
        let mut text = String::new();
        for r in &reports {
            text.push_str(&serde_json::to_string(r).unwrap());
            text.push('\n');
        }
        text.push_str("garbage\n");
        assert_eq!(parse_reports(text.as_bytes()), reports);
    }
}
