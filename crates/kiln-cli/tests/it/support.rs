use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace's `examples/` repository.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A `kiln` command with a hermetic environment: no builder config from the
/// host, no colors, a fixed terminal width.
pub fn kiln() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.env("KILN_BUILDER_CONFIG", "/dev/null")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("KILN_REPO")
        .env_remove("KILN_COLOR")
        .env("KILN_CACHE_DIR", shared_cache());
    cmd
}

/// One stage cache for the whole test run, shared by every test process
/// (nextest runs each test in a process of its own): the base is
/// bootstrapped once per run, not per test.
pub fn shared_cache() -> PathBuf {
    let run_id = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cache-{run_id}"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output { status, stdout, stderr } = cmd.output().expect("kiln runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A writable copy of the examples, to tamper with.
pub fn examples_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", examples().display()))
        .arg(dir.path())
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying the examples failed");
    dir
}

/// Replaces `from` by `to` in a file of `repo`, insisting that it occurs.
pub fn edit(repo: &Path, file: &str, from: &str, to: &str) {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).expect("readable");
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("writable");
}

pub fn write(repo: &Path, file: &str, text: &str) {
    let path = repo.join(file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("writable");
}

/// Makes a file executable (mode 0755).
pub fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Command lines of running processes that mention `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(cmd);
            }
        }
    }
    found
}
