//! What this kernel and these filesystems let the sandbox do, for
//! `kiln doctor`: each feature the documented confinement needs, tried for
//! real.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::confine::{AUDIT_ARCH, ID_BASE, ID_COUNT};
use crate::{Bind, Io, Outcome, Sandbox, Spec, View};

/// One feature: whether it works, and what was found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: impl Into<String>, result: Result<String, String>) -> Check {
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Check {
        name: name.into(),
        ok,
        detail,
    }
}

/// Runs every check; `dirs` are where trees live (the stage cache, the work
/// directory), each tried for idmapped mounts through a real sandbox.
pub fn probe(sandbox: &Sandbox, dirs: &[&Path]) -> Vec<Check> {
    let mut out = vec![
        check("user namespaces", user_namespaces()),
        check("seccomp", seccomp()),
        check(format!("id range {ID_BASE}+{ID_COUNT}"), id_range()),
    ];
    for dir in dirs {
        out.push(check(
            format!("sandbox on {}", dir.display()),
            confined_run(sandbox, dir),
        ));
    }
    out
}

fn user_namespaces() -> Result<String, String> {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map_err(|e| format!("cannot read /proc/sys/user/max_user_namespaces: {e}"))?;
    if max.trim() == "0" {
        return Err("user.max_user_namespaces is 0 (sysctl -w user.max_user_namespaces=15000)".to_owned());
    }
    crate::userns::create().map(|_| format!("available (max {})", max.trim()))
}

fn seccomp() -> Result<String, String> {
    if AUDIT_ARCH.is_none() {
        return Err(format!("kiln has no seccomp filter for {}", std::env::consts::ARCH));
    }
    let status = fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        Ok(format!("filter mode available ({})", std::env::consts::ARCH))
    } else {
        Err("the kernel has no seccomp (CONFIG_SECCOMP_FILTER)".to_owned())
    }
}

/// The sandbox's ids must belong to nobody on the host.
fn id_range() -> Result<String, String> {
    let (lo, hi) = (u64::from(ID_BASE), u64::from(ID_BASE) + u64::from(ID_COUNT));
    let overlaps = |a: u64, n: u64| a < hi && lo < a + n;
    let mut found = Vec::new();
    for file in ["/etc/subuid", "/etc/subgid"] {
        for line in fs::read_to_string(file).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let [who, start, count] = f[..]
                && let (Ok(s), Ok(c)) = (start.parse::<u64>(), count.parse::<u64>())
                && overlaps(s, c)
            {
                found.push(format!("{file}: {who}"));
            }
        }
    }
    for file in ["/etc/passwd", "/etc/group"] {
        for line in fs::read_to_string(file).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let Some(id) = f.get(2).and_then(|v| v.parse::<u64>().ok())
                && overlaps(id, 1)
            {
                found.push(format!("{file}: {}", f[0]));
            }
        }
    }
    if found.is_empty() {
        Ok("unused on this host".to_owned())
    } else {
        Err(format!("also used by {}", found.join(", ")))
    }
}

/// A strict sandbox in the host view writing into a tree under `dir`: the
/// file must land owned by root.
fn confined_run(sandbox: &Sandbox, dir: &Path) -> Result<String, String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let work = tempfile_dir(dir)?;
    let (view, tree) = (work.join("view"), work.join("tree"));
    let result = (|| {
        for d in [&view, &tree] {
            fs::create_dir(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        let mut spec = Spec::new(
            &view,
            vec!["/bin/sh".into(), "-c".into(), "echo ok > /kiln/root/probe".into()],
        );
        spec.view = View::Host;
        spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
        spec.binds = vec![Bind {
            source: tree.clone(),
            target: "/kiln/root".into(),
            read_only: false,
        }];
        spec.timeout = Some(std::time::Duration::from_secs(30));
        let mut output = Vec::new();
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let outcome = sandbox
            .run(&spec, Io::Capture(Box::new(move |b| drop(tx.send(b.to_vec())))))
            .map_err(|e| e.to_string())?;
        while let Ok(chunk) = rx.try_recv() {
            output.extend(chunk);
        }
        if outcome != Outcome::Exited(0) {
            return Err(format!(
                "the test command ended {outcome:?}: {}",
                String::from_utf8_lossy(&output).trim()
            ));
        }
        let meta = fs::metadata(tree.join("probe")).map_err(|e| format!("the test file is missing: {e}"))?;
        if meta.uid() != 0 || meta.gid() != 0 {
            return Err(format!(
                "the test file is owned by {}:{}, not root",
                meta.uid(),
                meta.gid()
            ));
        }
        let fs_type = fs_type(dir);
        Ok(format!("user namespace, idmapped mounts ({fs_type}), seccomp"))
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

fn tempfile_dir(dir: &Path) -> Result<std::path::PathBuf, String> {
    for n in 0..100 {
        let p = dir.join(format!(".kiln-probe-{}-{n}", std::process::id()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("create {}: {e}", p.display())),
        }
    }
    Err(format!("cannot create a probe directory in {}", dir.display()))
}

/// The filesystem type `dir` is on, from the mount table.
fn fs_type(dir: &Path) -> String {
    let Ok(dir) = fs::canonicalize(dir) else {
        return "unknown".into();
    };
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((f.get(1)?.to_string(), f.get(2)?.to_string()))
        })
        .filter(|(point, _)| dir.starts_with(point))
        .max_by_key(|(point, _)| point.len())
        .map_or_else(|| "unknown".into(), |(_, t)| t)
}
