//! Tests against the real host: real binaries, real files, no mocks.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_host::{TOOLS, arch_from_rust, debian_arch, find_in_path, is_root, missing_packages, probe, tool_version};

/// The real `git`, found through the process environment.
fn real_git() -> PathBuf {
    find_in_path("git", None).expect("git must be installed to run these tests")
}

fn write_file(path: &Path, contents: &str, mode: u32) {
    fs::write(path, contents).expect("write file");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    write_file(&path, &format!("#!/bin/sh\n{body}\n"), 0o755);
    path
}

#[test]
fn probe_with_only_git_on_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("git");
    symlink(real_git(), &link).expect("symlink git");

    let statuses = probe(Some(dir.path().as_os_str()));

    assert_eq!(statuses.len(), TOOLS.len());
    for (status, tool) in statuses.iter().zip(TOOLS) {
        assert_eq!(status.tool, tool);
        if tool.name == "git" {
            assert_eq!(status.path.as_deref(), Some(link.as_path()));
            let version = status.version.as_deref().expect("git has a version");
            assert!(version.starts_with("git version"), "{version:?}");
            assert!(status.is_found());
        } else {
            assert_eq!(status.path, None, "{} must not be found", tool.name);
            assert_eq!(status.version, None, "{}", tool.name);
            assert!(!status.is_found());
        }
    }
    assert_eq!(
        missing_packages(&statuses),
        [
            "mmdebstrap",
            "squashfs-tools",
            "erofs-utils",
            "e2fsprogs",
            "qemu-utils",
            "xorriso",
            "grub-common",
            "grub-pc-bin",
            "grub-efi-amd64-bin",
            "dosfstools",
            "mtools"
        ]
    );
}

#[test]
fn non_executable_files_are_not_found() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");

    // A non-executable regular file with a tool's name.
    write_file(&first.path().join("mksquashfs"), "#!/bin/sh\n", 0o644);
    // A directory with execute bits is not an executable either.
    fs::create_dir(first.path().join("debugfs")).expect("mkdir");
    // A dangling symlink.
    symlink(first.path().join("nowhere"), first.path().join("qemu-img")).expect("symlink");
    // A symlink to a non-executable file.
    symlink(first.path().join("mksquashfs"), first.path().join("unsquashfs")).expect("symlink");

    let only_first = first.path().as_os_str();
    for name in ["mksquashfs", "debugfs", "qemu-img", "unsquashfs"] {
        assert_eq!(find_in_path(name, Some(only_first)), None, "{name}");
    }
    let statuses = probe(Some(only_first));
    assert!(statuses.iter().all(|s| s.path.is_none() && s.version.is_none()));
    assert_eq!(missing_packages(&statuses).len(), 12);

    // PATH order: the non-executable file is skipped, the executable one in
    // a later directory is found; an executable in an earlier directory wins.
    let later = write_script(second.path(), "mksquashfs", "echo later");
    let path_var = std::env::join_paths([first.path(), second.path()]).expect("join paths");
    assert_eq!(find_in_path("mksquashfs", Some(&path_var)), Some(later));
    let earlier = write_script(first.path(), "git", "echo earlier");
    write_script(second.path(), "git", "echo later");
    assert_eq!(find_in_path("git", Some(&path_var)), Some(earlier));
}

#[test]
fn explicit_path_var_is_searched_exactly() {
    let empty = tempfile::tempdir().expect("tempdir");
    let only_empty = Some(empty.path().as_os_str());
    // No sbin fallback when a search path is given.
    assert_eq!(find_in_path("mkfs.ext4", only_empty), None);
    assert_eq!(find_in_path("sh", only_empty), None);
    assert_eq!(find_in_path("sh", Some(OsStr::new(""))), None);
    // Relative entries are skipped.
    assert_eq!(find_in_path("sh", Some(OsStr::new("bin:usr/bin"))), None);
    assert_eq!(
        find_in_path("sh", Some(OsStr::new("/nonexistent::/bin"))),
        Some(PathBuf::from("/bin/sh"))
    );
}

/// Re-runs this test in a child process whose `PATH` lacks every standard
/// directory: `find_in_path(_, None)` must still find sbin tools.
#[test]
fn sbin_is_searched_even_when_missing_from_path() {
    const CHILD: &str = "KILN_HOST_TEST_SBIN_CHILD";
    let sbin_tool = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let Some(sbin_tool) = sbin_tool else {
        eprintln!("skipped: mkfs.ext4 is not installed in /usr/sbin or /sbin");
        return;
    };

    if std::env::var_os(CHILD).is_some() {
        let found = find_in_path("mkfs.ext4", None).expect("mkfs.ext4 found via sbin");
        assert!(found.starts_with("/usr/sbin") || found.starts_with("/sbin"));
        // PATH itself is honoured: git (in a bin directory) is not found.
        assert_eq!(find_in_path("git", None), None);
        return;
    }

    let exe = std::env::current_exe().expect("current test executable");
    let output = Command::new(exe)
        .args([
            "--exact",
            "sbin_is_searched_even_when_missing_from_path",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PATH", "/nonexistent")
        .env(CHILD, "1")
        .output()
        .expect("run child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed ({sbin_tool} exists):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn hanging_tool_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `sleep` runs as a grandchild that keeps the output pipes open after
    // the shell is killed: this must not block tool_version either.
    let script = write_script(dir.path(), "hang", "echo starting >&2\nsleep 30\necho done");
    let start = Instant::now();
    let version = tool_version(&script, &["--version"]);
    let elapsed = start.elapsed();
    assert_eq!(version, None);
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
}

#[test]
fn version_output_rules_with_real_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    let stdout = write_script(d, "out", "echo\necho '  tool 1.0  '\necho second");
    assert_eq!(tool_version(&stdout, &[]).as_deref(), Some("tool 1.0"));

    // Like `mkfs.ext4 -V`: exit 0, version on stderr only.
    let stderr = write_script(d, "err", "echo 'mke2fs 9.9 (1-Jan-2030)' >&2");
    assert_eq!(tool_version(&stderr, &[]).as_deref(), Some("mke2fs 9.9 (1-Jan-2030)"));

    // Like `unsquashfs -version`: version on stdout, exit 1.
    let fails = write_script(d, "fails", "echo 'tool 2.0'\necho oops >&2\nexit 1");
    assert_eq!(tool_version(&fails, &[]).as_deref(), Some("tool 2.0"));

    // A failure with only an error message has no version.
    let rejects = write_script(d, "rejects", "echo \"unknown option $1\" >&2\nexit 2");
    assert_eq!(tool_version(&rejects, &["--version"]), None);

    // Arguments are passed through.
    let echo_args = write_script(d, "args", "echo \"$#:$1:$2\"");
    assert_eq!(tool_version(&echo_args, &["-V", "x y"]).as_deref(), Some("2:-V:x y"));

    // stdin is /dev/null: a tool reading it does not hang.
    let reads = write_script(d, "reads", "cat >/dev/null\necho read-eof");
    assert_eq!(tool_version(&reads, &[]).as_deref(), Some("read-eof"));

    // Output is stable: the C locale is forced.
    let locale = write_script(d, "locale", "echo \"lc=$LC_ALL\"");
    assert_eq!(tool_version(&locale, &[]).as_deref(), Some("lc=C"));

    // Nothing printed, not executable, missing: no version.
    let silent = write_script(d, "silent", "exit 0");
    assert_eq!(tool_version(&silent, &[]), None);
    let plain = d.join("plain");
    write_file(&plain, "#!/bin/sh\necho hi\n", 0o644);
    assert_eq!(tool_version(&plain, &[]), None);
    assert_eq!(tool_version(&d.join("missing"), &[]), None);

    // Huge output is truncated, not a problem.
    let chatty = write_script(d, "chatty", "echo big\nhead -c 5000000 /dev/zero");
    assert_eq!(tool_version(&chatty, &[]).as_deref(), Some("big"));
}

#[test]
fn probe_this_host() {
    let statuses = probe(None);
    assert_eq!(statuses.len(), TOOLS.len());
    for tool in TOOLS {
        let count = statuses.iter().filter(|s| s.tool.name == tool.name).count();
        assert_eq!(count, 1, "{}", tool.name);
    }
    for (status, tool) in statuses.iter().zip(TOOLS) {
        assert_eq!(status.tool, tool, "TOOLS order");
        if status.version.is_some() {
            assert!(status.path.is_some(), "{}: version without path", tool.name);
        }
        if let Some(path) = &status.path {
            assert!(path.is_absolute(), "{}: {}", tool.name, path.display());
            match tool.file {
                Some(file) => assert_eq!(path, std::path::Path::new(file)),
                None => assert!(path.ends_with(tool.name)),
            }
        }
    }
    let git = statuses.iter().find(|s| s.tool.name == "git").expect("git status");
    if git.path.is_some() {
        let version = git.version.as_deref().expect("git version");
        assert!(version.starts_with("git version"), "{version:?}");
    }
    let missing = missing_packages(&statuses);
    for status in &statuses {
        assert_eq!(
            missing.contains(&status.tool.package),
            statuses
                .iter()
                .any(|s| s.tool.package == status.tool.package && s.path.is_none())
        );
    }
    for s in &statuses {
        eprintln!(
            "{:<11} {:<40} {}",
            s.tool.name,
            s.path.as_deref().map_or("-".to_owned(), |p| p.display().to_string()),
            s.version.as_deref().unwrap_or("-")
        );
    }
}

#[test]
fn root_detection_matches_id() {
    let Ok(output) = Command::new("id").arg("-u").output() else {
        eprintln!("skipped: no `id`");
        return;
    };
    let uid = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(is_root(), uid == "0", "id -u said {uid:?}");
}

#[test]
fn debian_arch_matches_dpkg() {
    let arch = debian_arch();
    assert!(!arch.is_empty());
    match Command::new("dpkg").arg("--print-architecture").output() {
        Ok(output) if output.status.success() => {
            assert_eq!(arch, String::from_utf8_lossy(&output.stdout).trim());
        }
        _ => assert_eq!(arch, arch_from_rust(std::env::consts::ARCH)),
    }
}

#[test]
fn install_needs_root() {
    // Nothing to install is fine for anyone.
    assert!(kiln_host::install_packages(&[]).is_ok());
    if is_root() {
        eprintln!("skipped: running as root (would really install)");
        return;
    }
    let err = kiln_host::install_packages(&["git"]).expect_err("not root");
    assert!(matches!(err, kiln_host::HostError::NotRoot { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("root"), "{message}");
    assert!(
        message.contains("apt-get install -y --no-install-recommends git"),
        "{message}"
    );
}
