//! Scripts from git repositories (`git+URL@REF:PATH`, docs/update.md): fetched
//! with the `git` CLI into a local mirror kept in the cache, so a repeated
//! fetch only transfers what is new; the ref is resolved to a commit and the
//! script's bytes are read from that commit.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_core::plan::GitRef;

/// A script taken from a commit.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// Where the script was written.
    pub path: PathBuf,
    /// The commit REF resolved to.
    pub commit: String,
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    let mut c = Command::new("git");
    if let Some(d) = dir {
        c.arg("-C").arg(d);
    }
    let out = c
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("cannot run git: {e} (install the `git` package)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Updates (or makes) the local mirror of `url` under `mirrors` and
/// resolves `rev` to a commit there: (mirror, commit).
fn mirror_at(url: &str, rev: &str, mirrors: &Path) -> Result<(PathBuf, String), String> {
    fs::create_dir_all(mirrors).map_err(|e| format!("cannot create {}: {e}", mirrors.display()))?;
    let name = blake3::hash(url.as_bytes()).to_hex()[..32].to_string();
    let mirror = mirrors.join(format!("{name}.git"));
    // One fetch of a mirror at a time (builds and builders share the cache).
    let lock = fs::File::create(mirrors.join(format!("{name}.lock")))
        .map_err(|e| format!("cannot create a lock in {}: {e}", mirrors.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock the mirror of {url}: {e}"))?;
    if mirror.join("HEAD").exists() {
        git(&["remote", "update", "--prune"], Some(&mirror)).map_err(|e| format!("cannot fetch {url}: {e}"))?;
    } else {
        let tmp = mirrors.join(format!(
            "{name}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        let tmp_s = tmp.to_string_lossy().into_owned();
        git(&["clone", "--mirror", "--quiet", "--", url, &tmp_s], None).map_err(|e| {
            let _ = fs::remove_dir_all(&tmp);
            format!("cannot fetch {url}: {e}")
        })?;
        if fs::rename(&tmp, &mirror).is_err() {
            // Another build made the mirror meanwhile.
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    let commit = git(
        &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")],
        Some(&mirror),
    )
    .map(|s| s.trim().to_string())
    .map_err(|_| {
        let refs = git(
            &["for-each-ref", "--format=%(refname:short)", "refs/heads", "refs/tags"],
            Some(&mirror),
        )
        .unwrap_or_default();
        let refs: Vec<&str> = refs.lines().collect();
        format!(
            "{url} has no branch, tag or commit `{rev}`{}",
            if refs.is_empty() {
                String::new()
            } else {
                format!("; it has {}", refs.join(", "))
            }
        )
    })?;
    Ok((mirror, commit))
}

/// Resolves `rev` of repository `url` to a commit, through the mirror under
/// `mirrors` (a builder pins a run's script to the commit it will run).
pub fn resolve(url: &str, rev: &str, mirrors: &Path) -> Result<String, String> {
    mirror_at(url, rev, mirrors).map(|(_, commit)| commit)
}

/// Checks out the whole repository `url` at `rev` into `dest` (which must
/// not exist), through the mirror under `mirrors`; returns the commit.
/// `dest` is a git work tree, so the commit's time can date the build.
pub fn checkout(url: &str, rev: &str, mirrors: &Path, dest: &Path) -> Result<String, String> {
    let (mirror, commit) = mirror_at(url, rev, mirrors)?;
    let m = mirror.to_string_lossy().into_owned();
    let d = dest.to_string_lossy().into_owned();
    git(&["clone", "--quiet", "--no-checkout", "--shared", "--", &m, &d], None)
        .map_err(|e| format!("cannot clone {url}: {e}"))?;
    git(&["checkout", "--quiet", "--detach", &commit], Some(dest))
        .map_err(|e| format!("cannot check out {url} at {rev}: {e}"))?;
    Ok(commit)
}

/// Fetches `r` through a mirror under `mirrors` and writes the script into
/// `dest_dir` (executable when git records it so).
pub fn fetch(r: &GitRef, mirrors: &Path, dest_dir: &Path) -> Result<Fetched, String> {
    let (mirror, commit) = mirror_at(&r.url, &r.rev, mirrors)?;
    let tree = git(&["ls-tree", &commit, "--", &r.path], Some(&mirror)).unwrap_or_default();
    let mode = tree.split_whitespace().next().unwrap_or("");
    if !matches!(mode, "100644" | "100755") {
        return Err(format!(
            "{} has no file `{}` at {} ({})",
            r.url,
            r.path,
            r.rev,
            &commit[..12.min(commit.len())]
        ));
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(&mirror)
        .args(["cat-file", "blob", &format!("{commit}:{}", r.path)])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot read {} at {commit}: {}",
            r.path,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    fs::create_dir_all(dest_dir).map_err(|e| format!("cannot create {}: {e}", dest_dir.display()))?;
    let file = Path::new(&r.path)
        .file_name()
        .map_or_else(|| "script".into(), |n| n.to_owned());
    let path = dest_dir.join(file);
    fs::write(&path, &out.stdout).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let perm = if mode == "100755" { 0o755 } else { 0o644 };
    fs::set_permissions(&path, fs::Permissions::from_mode(perm))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Fetched { path, commit })
}
