//! Real builds: mmdebstrap, the sandbox, every output format, checked with
//! the tools that read them. One full build is shared by the inspection
//! tests; failure cases build on their own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{chmod_x, edit, examples_copy, kiln, processes_with, run, write};

const EPOCH: &str = "1700000000";

/// A feature that exercises what the outputs must preserve: an owner other
/// than root, a hardlink, a file capability, a process left running.
fn add_test_feature(repo: &Path) {
    write(
        repo,
        "features/probe/feature.toml",
        "description = \"test probe\"\npackages = [\"libcap2-bin\"]\n[files.\"etc/kiln-probe/owned\"]\nowner = \"1000:1000\"\nmode = \"0640\"\n",
    );
    write(repo, "features/probe/files/etc/kiln-probe/owned", "owned by 1000\n");
    write(repo, "features/probe/files/etc/kiln-probe/plain", "plain\n");
    write(
        repo,
        "features/probe/image-scripts.d/50-probe",
        "#!/bin/sh\nset -eu\ncp /bin/true /usr/local/bin/kiln-cap\nsetcap cap_net_raw+ep /usr/local/bin/kiln-cap\n\
         ln /usr/local/bin/kiln-cap /usr/local/bin/kiln-cap-link\n\
         echo \"$KILN_MACRO_vendor $KILN_IMAGE\" > /etc/kiln-probe/env\n\
         # A process left behind must die with the step.\nsleep 987 &\necho probe done\n",
    );
    chmod_x(&repo.join("features/probe/image-scripts.d/50-probe"));
    write(
        repo,
        "features/probe/scripts.d/10-build-side",
        "#!/bin/sh\nset -eu\necho \"$KILN_IMAGE\" > \"$KILN_ROOT/etc/kiln-probe/build-side\"\n",
    );
    chmod_x(&repo.join("features/probe/scripts.d/10-build-side"));
}

struct Fixture {
    out: PathBuf,
    nvr: String,
    stderr: String,
}

fn build(repo: &Path, image: &str, out: &Path) -> crate::support::Run {
    run(kiln()
        .args(["build", "--arch", "amd64", image])
        .arg("-C")
        .arg(repo)
        .arg("-o")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH))
}

/// ve/formats: ve/minimal plus the probe feature, every output format.
/// Built once per test run and shared by every test process (nextest runs
/// each test in a process of its own): the first process builds under a
/// file lock, the others wait and reuse it.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let run_id = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("build-fixture-{run_id}"));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let lock = std::fs::File::create(dir.join("lock")).expect("lock file");
        lock.lock().expect("lock");
        let out = dir.join("repo/out");
        let done = dir.join("done");
        let nvr = "ve-formats-1.0-1.kiln1.amd64".to_string();
        if let Ok(stderr) = std::fs::read_to_string(&done) {
            return Fixture { out, nvr, stderr };
        }
        let repo = dir.join("repo");
        let _ = std::fs::remove_dir_all(&repo);
        let copy = examples_copy();
        let status = Command::new("cp").arg("-a").arg(copy.path()).arg(&repo).status().expect("cp");
        assert!(status.success());
        add_test_feature(&repo);
        write(
            &repo,
            "images/ve/formats.toml",
            "extends = [\"ve/minimal\"]\nuse = [\"probe\"]\nremove = [\"tzdata\"]\n\
             outputs = [\"squashfs\", \"erofs\", \"tar\", \"tar.zst\", \"tar.xz\", \"tar.gz\", \"ext4\", \"qcow2\", \"dir\"]\n\
             [output.\"tar.zst\"]\nlevel = 3\n[output.\"tar.xz\"]\nlevel = 1\n[output.\"tar.gz\"]\nlevel = 1\n",
        );
        // A relative repository path, as in the README.
        let r = run(kiln()
            .current_dir(&dir)
            .args(["build", "--arch", "amd64", "ve/formats", "-C", "repo", "-o"])
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", EPOCH));
        assert_eq!(r.code, 0, "build failed:\n{}\n{}", r.stdout, r.stderr);
        std::fs::write(&done, &r.stderr).expect("done marker");
        Fixture { out, nvr, stderr: r.stderr }
    })
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("tool runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_output_is_written_with_checksums_and_manifest() {
    let f = fixture();
    let nvr = &f.nvr;
    for ext in [
        "squashfs", "erofs", "tar", "tar.zst", "tar.xz", "tar.gz", "ext4", "qcow2",
    ] {
        let p = f.out.join(format!("{nvr}.{ext}"));
        assert!(p.is_file(), "{} missing; build said:\n{}", p.display(), f.stderr);
    }
    assert!(f.out.join(nvr).join("etc/kiln-probe/plain").is_file(), "dir output");
    // SHA256SUMS verifies.
    let sums = Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{nvr}.SHA256SUMS"))
        .current_dir(&f.out)
        .output()
        .expect("sha256sum");
    assert!(sums.status.success(), "{}", String::from_utf8_lossy(&sums.stdout));
    assert!(f.out.join(format!("{nvr}.build.log")).is_file());
    // No partial directory is left.
    let leftovers: Vec<_> = std::fs::read_dir(&f.out)
        .expect("outdir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".kiln-partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn manifest_packages_match_dpkg_in_the_tree() {
    let f = fixture();
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.out.join(format!("{}.manifest.json", f.nvr))).expect("manifest"),
    )
    .expect("JSON");
    let admindir = f.out.join(&f.nvr).join("var/lib/dpkg");
    let dpkg = output(&[
        "dpkg-query",
        &format!("--admindir={}", admindir.display()),
        "-W",
        "-f",
        "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n",
    ]);
    let mut expected: Vec<String> = dpkg
        .lines()
        .filter(|l| l.starts_with("ii"))
        .map(|l| l.split_once('\t').map_or("", |x| x.1).to_string())
        .collect();
    expected.sort();
    let got: Vec<String> = m["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            format!(
                "{}\t{}\t{}",
                p["name"].as_str().unwrap_or(""),
                p["version"].as_str().unwrap_or(""),
                p["arch"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(got.iter().any(|p| p.starts_with("libcap2-bin\t")));
    // Installed by the bootstrap variant, removed by the image: purged.
    assert!(!got.iter().any(|p| p.starts_with("tzdata\t")), "{got:?}");
    assert_eq!(m["source_date_epoch"], 1_700_000_000u64);
    assert_eq!(m["base"]["mode"], "bootstrap");
    assert!(
        m["base"]["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("mmdebstrap "))
    );
    assert!(!m["base"]["release_digests"].as_array().expect("digests").is_empty());
    let scripts: Vec<&str> = m["scripts"]
        .as_array()
        .expect("scripts")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert!(
        scripts.contains(&"50-probe") && scripts.contains(&"90-cleanup"),
        "{scripts:?}"
    );
    assert!(m["scripts"][0]["sha256"].as_str().is_some_and(|h| h.len() == 64));
    let stages: Vec<&str> = m["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["stage"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        stages,
        [
            "base",
            "packages",
            "files",
            "image-scripts",
            "scripts",
            "cleanup",
            "outputs"
        ]
    );
    assert_eq!(m["plan"]["image"], "ve/formats");
    // Macros reached the script's environment.
    let env = std::fs::read_to_string(f.out.join(&f.nvr).join("etc/kiln-probe/env")).expect("env file");
    assert_eq!(env, "Example ve/formats\n");
    let side = std::fs::read_to_string(f.out.join(&f.nvr).join("etc/kiln-probe/build-side")).expect("build side");
    assert_eq!(side, "ve/formats\n");
    // macros_file: the resolved macros in RPM syntax.
    let macros = std::fs::read_to_string(f.out.join(&f.nvr).join("etc/kiln/macros")).expect("macros file");
    assert!(macros.lines().any(|l| l == "%vendor Example"), "{macros}");
}

#[test]
fn squashfs_contents_and_xattrs() {
    let f = fixture();
    let img = f.out.join(format!("{}.squashfs", f.nvr));
    let list = output(&["unsquashfs", "-lln", img.to_str().expect("utf8")]);
    let line = list
        .lines()
        .find(|l| l.ends_with("/etc/kiln-probe/owned"))
        .expect("owned file listed");
    assert!(line.starts_with("-rw-r----- 1000/1000"), "{line}");
    assert!(list.contains("/usr/local/bin/kiln-cap"));
    let stat = output(&["unsquashfs", "-stat", img.to_str().expect("utf8")]);
    assert!(stat.contains("zstd"), "{stat}");
    assert!(
        stat.contains("Xattrs are compressed") || stat.contains("xattr"),
        "{stat}"
    );
}

#[test]
fn tar_keeps_owners_modes_hardlinks_and_capabilities() {
    let f = fixture();
    let tar = f.out.join(format!("{}.tar", f.nvr));
    let list = output(&["tar", "--numeric-owner", "-tvf", tar.to_str().expect("utf8")]);
    let owned = list
        .lines()
        .find(|l| l.ends_with("etc/kiln-probe/owned"))
        .expect("owned listed");
    assert!(owned.starts_with("-rw-r----- 1000/1000"), "{owned}");
    assert!(
        list.lines()
            .any(|l| l.starts_with('h') && l.contains("kiln-cap-link link to")),
        "hardlink entry"
    );
    // Extract and read the capability back.
    let dir = tempfile::tempdir().expect("tempdir");
    let x = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar");
    assert!(x.success());
    let caps = output(&[
        "getcap",
        dir.path().join("usr/local/bin/kiln-cap").to_str().expect("utf8"),
    ]);
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");
    // Compressed variants hold the same archive.
    let plain = std::fs::read(&tar).expect("tar");
    for (ext, tool) in [("tar.zst", "zstd"), ("tar.xz", "xz"), ("tar.gz", "gzip")] {
        let p = f.out.join(format!("{}.{ext}", f.nvr));
        let out = Command::new(tool).args(["-dc"]).arg(&p).output().expect("decompress");
        assert!(out.status.success(), "{tool}");
        assert!(out.stdout == plain, "{ext} decompresses to the .tar");
    }
}

#[test]
fn ext4_qcow2_and_erofs_images() {
    let f = fixture();
    let ext4 = f.out.join(format!("{}.ext4", f.nvr));
    let stat = output(&[
        "debugfs",
        "-R",
        "stat /etc/kiln-probe/owned",
        ext4.to_str().expect("utf8"),
    ]);
    assert!(stat.contains("User:  1000") && stat.contains("Group:  1000"), "{stat}");
    assert!(stat.contains("Mode:  0640"), "{stat}");
    let info = output(&[
        "qemu-img",
        "info",
        "--output=json",
        f.out.join(format!("{}.qcow2", f.nvr)).to_str().expect("utf8"),
    ]);
    let v: serde_json::Value = serde_json::from_str(info.trim_end_matches(|c: char| c != '}')).expect("json");
    assert_eq!(v["format"], "qcow2");
    let erofs = f.out.join(format!("{}.erofs", f.nvr));
    let fsck = output(&["fsck.erofs", erofs.to_str().expect("utf8")]);
    assert!(!fsck.contains("error"), "{fsck}");
}

#[test]
fn processes_left_by_scripts_are_gone_and_nothing_stays_mounted() {
    let f = fixture();
    assert!(
        processes_with("sleep 987").is_empty(),
        "a script's background process survived"
    );
    assert!(mounts_mentioning("/var/tmp/kiln").is_empty());
    assert!(mounts_mentioning(&f.out.display().to_string()).is_empty());
}

#[test]
fn a_failing_script_fails_the_build_cleanly() {
    let repo = examples_copy();
    write(
        repo.path(),
        "scripts/fail.sh",
        "#!/bin/sh\necho about to fail\necho on stderr >&2\nexit 3\n",
    );
    chmod_x(&repo.path().join("scripts/fail.sh"));
    edit(
        repo.path(),
        "images/ve/minimal.toml",
        "kind = \"ve\"",
        "kind = \"ve\"\nscripts = [\"scripts/fail.sh\"]",
    );
    let out = repo.path().join("out");
    let r = build(repo.path(), "ve/minimal", &out);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("failed in stage `image-scripts`, step `fail.sh (image)`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("script `fail.sh` exited with status 3"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("command: /run/kiln/scripts/fail.sh"), "{}", r.stderr);
    assert!(
        r.stderr.contains("| about to fail") && r.stderr.contains("| on stderr"),
        "{}",
        r.stderr
    );
    let files: Vec<String> = std::fs::read_dir(&out)
        .expect("outdir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["ve-minimal-1.0-1.kiln1.amd64.build.log"],
        "only the log is left"
    );
    assert!(mounts_mentioning("/var/tmp/kiln").is_empty());
}

#[test]
fn scripts_have_no_network_unless_allowed() {
    // A server on the host's loopback: reachable from any process that shares
    // the host's network, not from a sandboxed script.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let repo = examples_copy();
    write(
        repo.path(),
        "scripts/net.sh",
        "#!/bin/bash\nif (exec 3<>/dev/tcp/127.0.0.1/$KILN_MACRO_port) 2>/dev/null; then echo reached the host; exit 0; fi\n\
         echo no network; exit 9\n",
    );
    chmod_x(&repo.path().join("scripts/net.sh"));
    edit(
        repo.path(),
        "images/ve/minimal.toml",
        "kind = \"ve\"",
        "kind = \"ve\"\nscripts = [\"scripts/net.sh\"]",
    );
    let out = repo.path().join("out");
    let r = run(kiln()
        .args([
            "build",
            "--arch",
            "amd64",
            "ve/minimal",
            "--define",
            &format!("port={port}"),
        ])
        .arg("-C")
        .arg(repo.path())
        .arg("-o")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", EPOCH));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("| no network"), "{}", r.stderr);
    drop(listener);
}

#[test]
fn two_builds_with_one_epoch_are_identical() {
    let f = fixture();
    let repo = examples_copy();
    add_test_feature(repo.path());
    write(
        repo.path(),
        "images/ve/formats.toml",
        "extends = [\"ve/minimal\"]\nuse = [\"probe\"]\nremove = [\"tzdata\"]\noutputs = [\"squashfs\", \"tar\"]\n",
    );
    let out = repo.path().join("out");
    // Every stage for real, not from the cache the fixture filled.
    let r = run(kiln()
        .args(["build", "--arch", "amd64", "ve/formats", "--no-cache"])
        .arg("-C")
        .arg(repo.path())
        .arg("-o")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", EPOCH));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("cached"), "{}", r.stderr);
    for ext in ["squashfs", "tar"] {
        let a = std::fs::read(f.out.join(format!("{}.{ext}", f.nvr))).expect("first");
        let b = std::fs::read(out.join(format!("{}.{ext}", f.nvr))).expect("second");
        assert!(
            a == b,
            "{ext} differs between two builds with SOURCE_DATE_EPOCH={EPOCH}"
        );
    }
}

#[test]
fn ctrl_c_during_a_script_cleans_up() {
    let repo = examples_copy();
    write(repo.path(), "scripts/hang.sh", "#!/bin/sh\necho hanging\nsleep 985\n");
    chmod_x(&repo.path().join("scripts/hang.sh"));
    edit(
        repo.path(),
        "images/ve/minimal.toml",
        "kind = \"ve\"",
        "kind = \"ve\"\nscripts = [\"scripts/hang.sh\"]",
    );
    let out = repo.path().join("out");
    let work = repo.path().join("work");
    let mut child = kiln()
        .args(["build", "--arch", "amd64", "ve/minimal"])
        .arg("-C")
        .arg(repo.path())
        .arg("-o")
        .arg(&out)
        .arg("--workdir")
        .arg(&work)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kiln starts");
    // Wait until the script runs inside the sandbox.
    let start = std::time::Instant::now();
    while processes_with("sleep 985").is_empty() {
        assert!(start.elapsed().as_secs() < 600, "the script never started");
        assert!(child.try_wait().expect("wait").is_none(), "kiln ended early");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let interrupted = std::time::Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let outcome = child.wait_with_output().expect("kiln ends");
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert_eq!(outcome.status.code(), Some(130), "{stderr}");
    assert!(
        interrupted.elapsed().as_secs() < 30,
        "cleanup took {:?}",
        interrupted.elapsed()
    );
    assert!(processes_with("sleep 985").is_empty(), "the script survived");
    assert!(mounts_mentioning(&work.display().to_string()).is_empty());
    // No outputs, no partial directory, no work tree: only the log.
    let files: Vec<String> = std::fs::read_dir(&out)
        .expect("outdir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["ve-minimal-1.0-1.kiln1.amd64.build.log"], "{stderr}");
    assert_eq!(
        std::fs::read_dir(&work).expect("workdir").count(),
        0,
        "work tree left behind"
    );
}

/// Files of a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

#[test]
fn a_removal_that_takes_an_image_package_fails_before_purging() {
    let repo = examples_copy();
    edit(
        repo.path(),
        "images/ve/minimal.toml",
        "kind = \"ve\"",
        "kind = \"ve\"\npackages = [\"ca-certificates\"]\nremove = [\"openssl\"]",
    );
    let out = repo.path().join("out");
    let r = build(repo.path(), "ve/minimal", &out);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("failed in stage `packages`"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("removing openssl would also remove ca-certificates, which the image installs"),
        "{}",
        r.stderr
    );
    assert_eq!(listing(&out), ["ve-minimal-1.0-1.kiln1.amd64.build.log"]);
}

#[test]
fn shell_on_failure_opens_a_shell_where_the_script_failed() {
    let repo = examples_copy();
    write(
        repo.path(),
        "scripts/half.sh",
        "#!/bin/sh\necho half-done > /etc/kiln-half\nexit 4\n",
    );
    chmod_x(&repo.path().join("scripts/half.sh"));
    edit(
        repo.path(),
        "images/ve/minimal.toml",
        "kind = \"ve\"",
        "kind = \"ve\"\nscripts = [\"scripts/half.sh\"]",
    );
    let out = repo.path().join("out");
    let mut child = kiln()
        .args(["build", "--arch", "amd64", "ve/minimal", "--shell-on-failure"])
        .arg("-C")
        .arg(repo.path())
        .arg("-o")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kiln starts");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        // Read by the shell once the script has failed.
        stdin
            .write_all(b"echo \"seen: $(cat /etc/kiln-half) as $KILN_SCRIPT in $(hostname)\"\nexit\n")
            .expect("write");
    }
    let done = child.wait_with_output().expect("kiln ends");
    let stdout = String::from_utf8_lossy(&done.stdout);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("seen: half-done as half.sh in kiln"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("opening a shell in the image"), "{stderr}");
    assert!(stderr.contains("script `half.sh` exited with status 4"), "{stderr}");
    assert_eq!(listing(&out), ["ve-minimal-1.0-1.kiln1.amd64.build.log"]);
    assert!(mounts_mentioning("/var/tmp/kiln").is_empty());
}

#[test]
fn subprofiles_are_the_image_tree_plus_their_additions() {
    let repo = examples_copy();
    write(
        repo.path(),
        "features/tiny/feature.toml",
        "description = \"adds to the sub subprofile\"\n",
    );
    write(repo.path(), "features/tiny/sub/files/etc/kiln-sub", "only in sub\n");
    write(
        repo.path(),
        "features/tiny/sub/image-scripts.d/10-mark",
        "#!/bin/sh\nset -eu\necho \"$KILN_SUBPROFILE\" > /etc/kiln-sub-script\n",
    );
    chmod_x(&repo.path().join("features/tiny/sub/image-scripts.d/10-mark"));
    write(
        repo.path(),
        "images/distro/tiny.toml",
        "kind = \"distro\"\nextends = [\"ve/minimal\"]\nuse = [\"tiny\"]\nsubprofiles = [\"sub\"]\n\
         outputs = [\"squashfs\"]\n[subprofile.sub]\npackages = [\"hello\"]\n",
    );
    let out = repo.path().join("out");
    let r = build(repo.path(), "distro/tiny", &out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("distro-tiny-1.0-1.kiln1.amd64.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    let outputs = m["outputs"].as_array().expect("outputs");
    let sub = outputs
        .iter()
        .find(|o| o["subprofile"] == "sub")
        .expect("a subprofile output");
    let sub_file = out.join(sub["file"].as_str().expect("file"));
    let main_file = out.join("distro-tiny-1.0-1.kiln1.amd64.squashfs");
    let sub_list = output(&["unsquashfs", "-lln", sub_file.to_str().expect("utf8")]);
    let main_list = output(&["unsquashfs", "-lln", main_file.to_str().expect("utf8")]);
    for path in ["/etc/kiln-sub", "/etc/kiln-sub-script", "/usr/bin/hello"] {
        assert!(
            sub_list.lines().any(|l| l.ends_with(path)),
            "{path} not in the subprofile"
        );
        assert!(
            !main_list.lines().any(|l| l.ends_with(path)),
            "{path} leaked into the image"
        );
    }
    // Everything of the image is in the subprofile too.
    assert!(sub_list.lines().any(|l| l.ends_with("/etc/kiln/macros")));
    let sums = Command::new("sha256sum")
        .arg("-c")
        .arg("distro-tiny-1.0-1.kiln1.amd64.SHA256SUMS")
        .current_dir(&out)
        .output()
        .expect("sha256sum");
    let checked = String::from_utf8_lossy(&sums.stdout);
    assert!(
        sums.status.success() && checked.contains(sub["file"].as_str().expect("file")),
        "{checked}"
    );
}

#[test]
fn json_progress_ends_with_a_result_event() {
    let repo = examples_copy();
    write(repo.path(), "scripts/fail.sh", "#!/bin/sh\necho json-visible\nexit 5\n");
    chmod_x(&repo.path().join("scripts/fail.sh"));
    edit(
        repo.path(),
        "images/ve/minimal.toml",
        "kind = \"ve\"",
        "kind = \"ve\"\nscripts = [\"scripts/fail.sh\"]",
    );
    let r = run(kiln()
        .args([
            "build",
            "--arch",
            "amd64",
            "ve/minimal",
            "--log-format",
            "json",
            "--jobs",
            "1",
        ])
        .arg("-C")
        .arg(repo.path())
        .arg("-o")
        .arg(repo.path().join("out"))
        .env("SOURCE_DATE_EPOCH", EPOCH));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let events: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let stages: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "stage_done")
        .map(|e| e["stage"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(stages, ["base", "files"]);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "failed");
    assert_eq!(last["stage"], "image-scripts");
    assert_eq!(last["step"], "fail.sh (image)");
    assert!(
        last["log_tail"]
            .as_array()
            .is_some_and(|t| t.iter().any(|l| l == "json-visible")),
        "{last}"
    );
}
