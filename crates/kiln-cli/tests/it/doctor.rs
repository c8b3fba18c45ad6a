use std::os::unix::fs::symlink;

use crate::support::{kiln, run};

#[test]
fn reports_missing_tools_with_their_packages() {
    let git = kiln_host::find_in_path("git", None).expect("git is installed on test machines");
    let dir = tempfile::tempdir().expect("tempdir");
    symlink(&git, dir.path().join("git")).expect("symlink");
    let r = run(kiln().arg("doctor").env("PATH", dir.path()));
    // mmdebstrap and qemu-img live in /usr/bin, which this PATH lacks.
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let line = |tool: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{tool} ")))
            .map(str::to_string)
    };
    let git_line = line("git").expect("git row");
    assert!(
        git_line.contains("found") && git_line.contains("git version"),
        "{git_line}"
    );
    let mm = line("mmdebstrap").expect("mmdebstrap row");
    assert!(mm.contains("MISSING") && mm.ends_with("mmdebstrap"), "{mm}");
    let qemu = line("qemu-img").expect("qemu-img row");
    assert!(qemu.contains("MISSING") && qemu.ends_with("qemu-utils"), "{qemu}");
    assert!(r.stderr.contains("kiln doctor --fix"), "{}", r.stderr);
}

#[test]
fn json_report() {
    let r = run(kiln().args(["doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["tool"].as_str().expect("tool"))
        .collect();
    assert_eq!(
        tools,
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
    let all_found = v["tools"].as_array().expect("array").iter().all(|t| t["found"] == true);
    let checks = v["sandbox"].as_array().expect("sandbox checks");
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().expect("name")).collect();
    assert!(
        names.contains(&"user namespaces") && names.contains(&"seccomp"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("sandbox on ")), "{names:?}");
    let sandbox_ok = checks.iter().all(|c| c["ok"] == true);
    if nix::unistd::geteuid().is_root() {
        // Test machines run the sandbox as documented.
        assert!(sandbox_ok, "{checks:?}");
    }
    assert_eq!(r.code == 0, all_found && sandbox_ok, "exit code follows the report");
}
