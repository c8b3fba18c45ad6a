//! Source images and `kiln update` (docs/update.md), end to end: a source squashfs
//! and tar.gz built from the shared bootstrapped base, imported in two
//! versions, updated with scripts from a git repository made here (at a tag
//! and at a moving branch), and every error the issue names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{examples_copy, kiln, run, write};

/// The source images: ve/minimal with an lz4 squashfs (256 KiB blocks) and a
/// tar.gz, built once per test run (under a lock shared by the test
/// processes) through the run's shared stage cache.
pub(crate) fn sources() -> &'static (PathBuf, PathBuf) {
    static S: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    S.get_or_init(|| {
        let run_id = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("update-sources-{run_id}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let lock = std::fs::File::create(dir.join("lock")).expect("lock");
        lock.lock().expect("lock");
        let out = dir.join("out");
        let nvr = "ve-src-1.0-1.kiln1.amd64";
        let files = (out.join(format!("{nvr}.squashfs")), out.join(format!("{nvr}.tar.gz")));
        if dir.join("done").exists() {
            return files;
        }
        let repo = examples_copy();
        write(
            repo.path(),
            "images/ve/src.toml",
            "extends = [\"ve/minimal\"]\noutputs = [\"squashfs\", \"tar.gz\"]\n\
             [output.squashfs]\ncompression = \"lz4\"\nblock_size = \"256K\"\n[output.\"tar.gz\"]\nlevel = 1\n",
        );
        let r = run(kiln()
            .args(["build", "--arch", "amd64", "ve/src", "-C"])
            .arg(repo.path())
            .arg("-o")
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::write(dir.join("done"), "").expect("done");
        files
    })
}

pub(crate) fn git(dir: &Path, args: &[&str]) {
    let s = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@example.invalid", "-c", "user.name=t"])
        .args(args)
        .status()
        .expect("git");
    assert!(s.success(), "git {args:?}");
}

/// A git repository with `cam/update.sh` at tag v1 and at branch `main`.
pub(crate) fn script_repo(root: &Path) -> PathBuf {
    let g = root.join("scripts.git");
    std::fs::create_dir_all(g.join("cam")).expect("mkdir");
    git(&g, &["init", "-q", "-b", "main"]);
    std::fs::write(
        g.join("cam/update.sh"),
        "#!/bin/sh\nset -eu\necho \"v1 $KILN_MACRO_release from $KILN_SOURCE\" > /etc/kiln-update\n",
    )
    .expect("script");
    git(&g, &["add", "."]);
    git(&g, &["commit", "-qm", "v1"]);
    git(&g, &["tag", "v1"]);
    g
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

fn cat_in_squashfs(img: &Path, path: &str) -> String {
    let out = Command::new("unsquashfs")
        .arg("-cat")
        .arg(img)
        .arg(path)
        .output()
        .expect("unsquashfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Env {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        Env { dir, cache }
    }

    fn kiln(&self, args: &[&str]) -> crate::support::Run {
        run(kiln()
            .args(args)
            .env("KILN_CACHE_DIR", &self.cache)
            .env("SOURCE_DATE_EPOCH", "1700000000"))
    }

    fn out(&self) -> String {
        self.dir.path().join("out").display().to_string()
    }
}

#[test]
fn import_list_and_update_with_git_scripts() {
    let (squashfs, targz) = sources();
    let env = Env::new();
    let sq = squashfs.display().to_string();
    let source_sha = sha256(squashfs);
    let r = env.kiln(&["image", "import", "cam-fw", "2.3.10", &sq]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("imported cam-fw@2.3.10 (squashfs"), "{}", r.stdout);
    let r = env.kiln(&["image", "import", "cam-fw", "2.3.9", &sq]);
    assert!(r.stdout.contains("already stored"), "stored once: {}", r.stdout);
    let r = env.kiln(&["image", "import", "cam-fw", "3.0~rc1", &targz.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = env.kiln(&["image", "ls", "cam-fw", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("JSON");
    let versions: Vec<&str> = list.iter().filter_map(|i| i["version"].as_str()).collect();
    assert_eq!(versions, ["2.3.9", "2.3.10", "3.0~rc1"]);
    let blobs = std::fs::read_dir(env.cache.join("v1/images/blobs"))
        .expect("blobs")
        .count();
    assert_eq!(blobs, 2);

    // At a tag.
    let g = script_repo(env.dir.path());
    let url = format!("git+file://{}@v1:cam/update.sh", g.display());
    let out = env.out();
    let r = env.kiln(&[
        "update",
        "--from",
        "cam-fw@2.3.10",
        "--script",
        &url,
        "--name",
        "cam-fw-2.3.11",
        "-D",
        "release=2.3.11",
        "-o",
        &out,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let target = env.dir.path().join("out/cam-fw-2.3.11.squashfs");
    assert_eq!(
        cat_in_squashfs(&target, "etc/kiln-update"),
        "v1 2.3.11 from cam-fw@2.3.10\n"
    );
    // Everything of the source is there.
    assert!(cat_in_squashfs(&target, "etc/kiln/macros").contains("%vendor"));
    // The default target format and compression are the source's.
    let stat = String::from_utf8_lossy(
        &Command::new("unsquashfs")
            .arg("-s")
            .arg(&target)
            .output()
            .expect("s")
            .stdout,
    )
    .into_owned();
    assert!(
        stat.contains("Compression lz4") && stat.contains("Block size 262144"),
        "{stat}"
    );
    assert_eq!(sha256(squashfs), source_sha, "the source is untouched");
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.path().join("out/cam-fw-2.3.11.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(m["source"]["name"], "cam-fw");
    assert_eq!(m["source"]["version"], "2.3.10");
    assert_eq!(m["source"]["sha256"], source_sha.as_str());
    assert_eq!(m["script"]["origin"], url.as_str());
    assert_eq!(m["script"]["commit"].as_str().map(str::len), Some(40));
    assert_eq!(m["script"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(m["macros"]["release"], "2.3.11");
    assert_eq!(m["target"]["sha256"], sha256(&target).as_str());
    assert!(m["timings"]["script"].as_f64().is_some());
    // The source's compressed blocks were reused, not recompressed, and
    // every file the script did not touch lists exactly as in the source.
    assert_eq!(m["target"]["method"], "rewrite");
    assert!(
        m["target"]["reused_bytes"].as_u64().is_some_and(|b| b > 1_000_000),
        "{m}"
    );
    let untouched = |img: &Path| -> Vec<String> {
        let out = Command::new("unsquashfs")
            .arg("-lln")
            .arg(img)
            .output()
            .expect("unsquashfs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("squashfs-root/") && !l.contains("squashfs-root/etc"))
            .map(|l| {
                // A directory's size depends on how its listing is split
                // into headers, which is the writer's choice.
                let mut f: Vec<&str> = l.split_whitespace().collect();
                if l.starts_with('d') && f.len() > 2 {
                    f[2] = "-";
                }
                f.join(" ")
            })
            .collect()
    };
    let (before, after) = (untouched(squashfs), untouched(&target));
    assert!(before.len() > 1000, "{}", before.len());
    let changed: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .take(10)
        .map(|(b, a)| format!("source {b}\ntarget {a}"))
        .collect();
    assert!(before == after, "untouched files differ:\n{}", changed.join("\n"));
    let sums = Command::new("sha256sum")
        .args(["-c", "cam-fw-2.3.11.SHA256SUMS"])
        .current_dir(env.dir.path().join("out"))
        .status()
        .expect("sha256sum");
    assert!(sums.success());
    let first_commit = m["script"]["commit"].as_str().expect("commit").to_string();

    // At a branch that moved: the new commit, fetched incrementally.
    std::fs::write(
        g.join("cam/update.sh"),
        "#!/bin/sh\nset -eu\necho \"v2 $KILN_MACRO_release\" > /etc/kiln-update\n",
    )
    .expect("edit");
    git(&g, &["commit", "-qam", "v2"]);
    let url = format!("git+file://{}@main:cam/update.sh", g.display());
    let r = env.kiln(&[
        "update",
        "--from",
        "cam-fw@2.3.10",
        "--script",
        &url,
        "--name",
        "cam-fw-2.3.12",
        "-D",
        "release=2.3.12",
        "-o",
        &out,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        cat_in_squashfs(&env.dir.path().join("out/cam-fw-2.3.12.squashfs"), "etc/kiln-update"),
        "v2 2.3.12\n"
    );
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.path().join("out/cam-fw-2.3.12.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_ne!(m["script"]["commit"].as_str(), Some(first_commit.as_str()));

    // A tar.gz source is extracted safely and gives a tar.gz target.
    let local = env.dir.path().join("local.sh");
    std::fs::write(&local, "echo local > /etc/kiln-update\n").expect("script");
    let r = env.kiln(&[
        "update",
        "--from",
        "cam-fw@3.0~rc1",
        "--script",
        &local.display().to_string(),
        "--name",
        "cam-fw-3.0",
        "-o",
        &out,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tgz = env.dir.path().join("out/cam-fw-3.0.tar.gz");
    let listing = Command::new("tar")
        .arg("-xzOf")
        .arg(&tgz)
        .arg("etc/kiln-update")
        .output()
        .expect("tar");
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "local\n");
}

#[test]
fn update_errors_are_clear_and_leave_no_target() {
    let (squashfs, _) = sources();
    let env = Env::new();
    let out = env.out();
    let r = env.kiln(&["image", "import", "edge", "1.0", &squashfs.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ok = env.dir.path().join("ok.sh");
    std::fs::write(&ok, "true\n").expect("script");
    let ok = ok.display().to_string();
    let update = |from: &str, script: &str, name: &str| {
        env.kiln(&["update", "--from", from, "--script", script, "--name", name, "-o", &out])
    };

    let r = update("edge@9.9", &ok, "t");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("`edge` has no version 9.9; available: 1.0"),
        "{}",
        r.stderr
    );
    let r = update("nothing@1", &ok, "t");
    assert!(r.stderr.contains("no source image named `nothing`"), "{}", r.stderr);

    let r = update("edge@1.0", "git+file:///nonexistent/repo.git@main:x.sh", "t");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("cannot fetch file:///nonexistent/repo.git"),
        "{}",
        r.stderr
    );
    let g = script_repo(env.dir.path());
    let r = update("edge@1.0", &format!("git+file://{}@v9:cam/update.sh", g.display()), "t");
    assert!(
        r.stderr.contains("has no branch, tag or commit `v9`; it has main, v1"),
        "{}",
        r.stderr
    );
    let r = update(
        "edge@1.0",
        &format!("git+file://{}@v1:cam/missing.sh", g.display()),
        "t",
    );
    assert!(r.stderr.contains("has no file `cam/missing.sh` at v1"), "{}", r.stderr);

    let fail = env.dir.path().join("fail.sh");
    std::fs::write(&fail, "echo partial > /etc/x\necho the update broke\nexit 7\n").expect("script");
    let r = update("edge@1.0", &fail.display().to_string(), "broken");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("failed in stage `script`"), "{}", r.stderr);
    assert!(
        r.stderr.contains("exited with status 7") && r.stderr.contains("| the update broke"),
        "{}",
        r.stderr
    );
    assert!(!env.dir.path().join("out/broken.squashfs").exists());

    let r = update("edge@1.0", &ok, "done");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = update("edge@1.0", &ok, "done");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("already exists; choose another --name or pass --force"),
        "{}",
        r.stderr
    );
    let r = env.kiln(&[
        "update", "--from", "edge@1.0", "--script", &ok, "--name", "done", "-o", &out, "--force",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn hostile_source_archives_are_rejected() {
    let env = Env::new();
    let evil = env.dir.path().join("evil.tar");
    // A symlink to /tmp, then a file through it.
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import tarfile,io,sys\n\
             t=tarfile.open(sys.argv[1],'w')\n\
             d=tarfile.TarInfo('etc'); d.type=tarfile.SYMTYPE; d.linkname='/tmp'; t.addfile(d)\n\
             f=tarfile.TarInfo('etc/kiln-escaped'); data=b'x'; f.size=1; t.addfile(f, io.BytesIO(data))\n\
             t.close()\n",
        )
        .arg(&evil)
        .status()
        .expect("python3");
    assert!(status.success());
    // Refused at import (docs/update.md): it never reaches `kiln update`.
    let r = env.kiln(&["image", "import", "evil", "1", &evil.display().to_string()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("hostile archive: entry `etc/kiln-escaped` would be written through a symlink"),
        "{}",
        r.stderr
    );
    assert!(env.kiln(&["image", "ls", "--json"]).stdout.trim() == "[]");
    assert!(!Path::new("/tmp/kiln-escaped").exists());
}

#[test]
fn profiles_build_from_a_source_image_with_remote_scripts() {
    let (squashfs, _) = sources();
    let env = Env::new();
    let r = env.kiln(&["image", "import", "edge", "2.0", &squashfs.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let g = script_repo(env.dir.path());
    let repo = examples_copy();
    write(
        repo.path(),
        "images/ve/edge.toml",
        &format!(
            "kind = \"ve\"\npackages = [\"hello\"]\nscripts = [\"git+file://{}@v1:cam/update.sh\"]\n\
             outputs = [\"tar\"]\n[base]\nfrom = \"edge@2.0\"\n[macros]\nrelease = \"profile\"\n",
            g.display()
        ),
    );
    let out = env.dir.path().join("built");
    let build = || {
        run(kiln()
            .args(["build", "--arch", "amd64", "ve/edge", "-C"])
            .arg(repo.path())
            .arg("-o")
            .arg(&out)
            .env("KILN_CACHE_DIR", &env.cache)
            .env("SOURCE_DATE_EPOCH", "1700000000"))
    };
    let r = build();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tar = out.join("ve-edge-1.0-1.kiln1.amd64.tar");
    let file = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("etc/kiln-update")
        .output()
        .expect("tar");
    assert_eq!(String::from_utf8_lossy(&file.stdout), "v1 profile from edge@2.0\n");
    let list = Command::new("tar").arg("-tf").arg(&tar).output().expect("tar");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("usr/bin/hello"),
        "the package set is installed"
    );
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("ve-edge-1.0-1.kiln1.amd64.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(m["base"]["mode"], "source");
    assert_eq!(m["base"]["from"], "edge@2.0");
    assert_eq!(m["base"]["sha256"], sha256(squashfs).as_str());
    assert_eq!(m["scripts"][0]["commit"].as_str().map(str::len), Some(40));
    // Unchanged: everything from the cache.
    let r = build();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("ve-edge-1.0-1.kiln1.amd64.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert!(
        m["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .all(|s| s["status"] == "cached"),
        "{}",
        m["stages"]
    );
}
