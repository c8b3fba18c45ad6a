//! The stage cache end to end (docs/cache.md): unchanged rebuilds do no stage
//! work, an edit rebuilds from the stage that reads it, concurrent builds
//! share one cache, damaged entries are rebuilt, and `kiln cache` manages it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{examples_copy, kiln, run};

const EPOCH: &str = "1700000000";
const NVR: &str = "ve-minimal-1.0-1.kiln1.amd64";

fn build_cmd(repo: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = kiln();
    c.args(["build", "--arch", "amd64", "ve/minimal"])
        .args(extra)
        .arg("-C")
        .arg(repo)
        .arg("-o")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    c
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join(format!("{NVR}.manifest.json"))).expect("manifest"))
        .expect("JSON")
}

/// (stage, status) of every stage of a manifest.
fn stages(m: &serde_json::Value) -> Vec<(String, String)> {
    m["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or("").to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn status_of(m: &serde_json::Value, stage: &str) -> String {
    stages(m)
        .into_iter()
        .find(|(s, _)| s == stage)
        .map(|(_, st)| st)
        .unwrap_or_else(|| panic!("no stage {stage}: {:?}", stages(m)))
}

fn bytes(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn an_unchanged_rebuild_does_no_stage_work_and_gives_identical_outputs() {
    let repo = examples_copy();
    let (a, b) = (repo.path().join("a"), repo.path().join("b"));
    let r = run(&mut build_cmd(repo.path(), &a, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&mut build_cmd(repo.path(), &b, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = manifest(&b);
    for (stage, status) in stages(&m) {
        assert_eq!(status, "cached", "{stage}: {}", r.stderr);
    }
    for step in m["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .flat_map(|s| s["steps"].as_array().cloned().unwrap_or_default())
    {
        assert_eq!(step["status"], "cached");
        assert_eq!(step["key"].as_str().map(str::len), Some(64));
    }
    // The log says so too, and no tool ran.
    let log = std::fs::read_to_string(b.join(format!("{NVR}.build.log"))).expect("log");
    assert!(!log.contains("$ "), "a command ran:\n{log}");
    for ext in ["squashfs", "tar.zst"] {
        assert!(
            bytes(a.join(format!("{NVR}.{ext}"))) == bytes(b.join(format!("{NVR}.{ext}"))),
            "{ext} differs"
        );
    }
    // The manifest still lists the packages and scripts of the tree.
    assert_eq!(m["packages"], manifest(&a)["packages"]);
    assert_eq!(
        m["scripts"].as_array().map(Vec::len),
        manifest(&a)["scripts"].as_array().map(Vec::len)
    );
}

#[test]
fn an_edited_image_script_rebuilds_from_that_script_on() {
    let repo = examples_copy();
    let (a, b, c) = (repo.path().join("a"), repo.path().join("b"), repo.path().join("c"));
    let r = run(&mut build_cmd(repo.path(), &a, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = repo.path().join("features/cleanup/image-scripts.d/90-cleanup");
    let mut text = std::fs::read_to_string(&script).expect("script");
    text.push_str("echo edited > /etc/kiln-edited\n");
    std::fs::write(&script, text).expect("edit");
    let r = run(&mut build_cmd(repo.path(), &b, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = manifest(&b);
    assert_eq!(status_of(&m, "base"), "cached");
    assert_eq!(status_of(&m, "files"), "cached");
    assert_eq!(status_of(&m, "image-scripts"), "built");
    assert_eq!(status_of(&m, "cleanup"), "built");
    assert_eq!(status_of(&m, "outputs"), "built");
    let list = String::from_utf8_lossy(
        &Command::new("unsquashfs")
            .arg("-l")
            .arg(b.join(format!("{NVR}.squashfs")))
            .output()
            .expect("unsquashfs")
            .stdout,
    )
    .into_owned();
    assert!(list.contains("/etc/kiln-edited"), "the edit is in the image");
    // --rebuild-from: that stage and every later one, even when cached.
    let r = run(&mut build_cmd(repo.path(), &c, &["--rebuild-from", "files"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = manifest(&c);
    assert_eq!(status_of(&m, "base"), "cached");
    assert_eq!(status_of(&m, "files"), "built");
    assert_eq!(status_of(&m, "outputs"), "built");
    let r = run(&mut build_cmd(repo.path(), &c, &["--rebuild-from", "nonsense"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a stage"), "{}", r.stderr);
}

fn cache_entries(cache: &Path) -> Vec<serde_json::Value> {
    let r = run(kiln().args(["cache", "ls", "--json"]).env("KILN_CACHE_DIR", cache));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str::<Vec<serde_json::Value>>(&r.stdout).expect("JSON")
}

#[test]
fn concurrent_builds_share_a_cache_and_damaged_entries_are_rebuilt() {
    let repo = examples_copy();
    let cache = repo.path().join("cache");
    let outs: Vec<PathBuf> = (0..2).map(|i| repo.path().join(format!("out{i}"))).collect();
    let children: Vec<_> = outs
        .iter()
        .map(|o| {
            build_cmd(repo.path(), o, &[])
                .env("KILN_CACHE_DIR", &cache)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kiln starts")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("kiln ends");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let squashfs = format!("{NVR}.squashfs");
    assert!(bytes(outs[0].join(&squashfs)) == bytes(outs[1].join(&squashfs)));
    // One entry per key, nothing left under construction.
    let entries = cache_entries(&cache);
    let mut keys: Vec<&str> = entries.iter().filter_map(|e| e["key"].as_str()).collect();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n);
    assert_eq!(std::fs::read_dir(cache.join("v1/tmp")).expect("tmp").count(), 0);

    // Damage the files layer and the squashfs entry.
    let entry_dir = |stage: &str| {
        let e = entries
            .iter()
            .find(|e| e["stage"] == stage && e["step"].as_str().is_none_or(|s| s.ends_with(".squashfs")))
            .expect("entry");
        cache.join("v1/entries").join(e["key"].as_str().expect("key"))
    };
    let files_layer = entry_dir("files").join("layer");
    let victim = walk_first_file(&files_layer).expect("a file in the files layer");
    std::fs::write(&victim, "damaged\n").expect("damage");
    let sq_entry = entry_dir("outputs").join("files").join(&squashfs);
    let len = std::fs::metadata(&sq_entry).expect("entry").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sq_entry)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let again = repo.path().join("again");
    let r = run(build_cmd(repo.path(), &again, &[]).env("KILN_CACHE_DIR", &cache));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = std::fs::read_to_string(again.join(format!("{NVR}.build.log"))).expect("log");
    assert!(log.contains("does not match its sha256"), "{log}");
    assert!(
        log.contains("discarded (its content does not match its digest)"),
        "{log}"
    );
    let m = manifest(&again);
    assert_eq!(status_of(&m, "base"), "cached");
    assert_eq!(status_of(&m, "files"), "built");
    assert!(
        bytes(again.join(&squashfs)) == bytes(outs[0].join(&squashfs)),
        "rebuilt output differs"
    );

    // kiln cache prune and clear.
    let total: u64 = cache_entries(&cache).iter().filter_map(|e| e["size"].as_u64()).sum();
    let r = run(kiln()
        .args(["cache", "prune", "--max-size", "100M"])
        .env("KILN_CACHE_DIR", &cache));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left: u64 = cache_entries(&cache).iter().filter_map(|e| e["size"].as_u64()).sum();
    assert!(left <= 100 << 20 && left < total, "{left} of {total}: {}", r.stdout);
    let r = run(kiln().args(["cache", "clear"]).env("KILN_CACHE_DIR", &cache));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(cache_entries(&cache).is_empty());
    let r = run(kiln()
        .args(["cache", "prune", "--max-size", "lots"])
        .env("KILN_CACHE_DIR", &cache));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("expected a size"), "{}", r.stderr);
}

fn walk_first_file(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let m = std::fs::symlink_metadata(&p).ok()?;
        if m.is_file() && m.len() > 0 {
            return Some(p);
        }
        if m.is_dir()
            && let Some(f) = walk_first_file(&p)
        {
            return Some(f);
        }
    }
    None
}
