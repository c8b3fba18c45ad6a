//! Pipelines end to end (docs/pipelines.md, docs/channels.md), all real
//! processes: `kiln serve`, a `kiln builder` as the designated device, a
//! git repository of scripts, GitHub- and GitLab-shaped pushes → runs →
//! `kiln update` on the builder → the target tagged → the channel's index
//! republished → checked by `kiln channel verify` and Debian's `minisign`.
//! Then the refusals (bad signature, wrong token, replay, another branch,
//! disabled), a chained run on a new source version, and a device refusing
//! a tampered or rolled-back index.

use std::io::{Read, Write};
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::farm::{Farm, wait_until};
use crate::hub::json;
use crate::support::run;
use crate::update::{git, script_repo, sources};

/// One HTTP request to `base` (no TLS, `Connection: close`): status and body.
fn http(base: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes()).expect("write");
    c.write_all(body).expect("write body");
    let mut out = Vec::new();
    c.read_to_end(&mut out).expect("read");
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let status = String::from_utf8_lossy(&out[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, out[split + 4..].to_vec())
}

fn github_sig(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A push event shaped like GitHub's.
fn github_push(git_ref: &str, before: &str, after: &str, repo: &Path) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": git_ref, "before": before, "after": after, "base_ref": null,
        "created": false, "deleted": false, "forced": false, "compare": "https://github.com/ops/scripts/compare",
        "commits": [{"id": after, "message": "update script", "distinct": true,
                     "author": {"name": "Alice", "email": "alice@example.invalid"}}],
        "head_commit": {"id": after, "message": "update script"},
        "repository": {"id": 1, "name": "scripts", "full_name": "ops/scripts",
                       "clone_url": format!("file://{}", repo.display()), "default_branch": "main"},
        "pusher": {"name": "alice", "email": "alice@example.invalid"},
        "sender": {"login": "alice", "id": 2},
    }))
    .expect("json")
}

/// A push event shaped like GitLab's.
fn gitlab_push(git_ref: &str, before: &str, after: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "object_kind": "push", "event_name": "push", "before": before, "after": after, "ref": git_ref,
        "ref_protected": true, "checkout_sha": after, "user_id": 4, "user_name": "Alice", "user_username": "alice",
        "project_id": 15, "project": {"id": 15, "name": "scripts", "path_with_namespace": "ops/scripts",
            "default_branch": "main", "git_http_url": "https://gitlab.example.invalid/ops/scripts.git"},
        "commits": [{"id": after, "message": "update script", "title": "update script",
                     "author": {"name": "Alice", "email": "alice@example.invalid"}}],
        "total_commits_count": 1, "repository": {"name": "scripts"},
    }))
    .expect("json")
}

fn head(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("git");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn runs(farm: &Farm, pipeline: &str) -> Vec<serde_json::Value> {
    json(&farm.ok(&["pipeline", "runs", pipeline, "--json"]))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The channel's index and signature as a device fetches them, into `dir`.
fn fetch_index(farm: &Farm, channel: &str, dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let (s, index) = http(
        &farm.hub.url,
        "GET",
        &format!("/channels/{channel}/index.json"),
        &[],
        b"",
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&index));
    let (s, sig) = http(
        &farm.hub.url,
        "GET",
        &format!("/channels/{channel}/index.json.minisig"),
        &[],
        b"",
    );
    assert_eq!(s, 200);
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("index.json"), &index).expect("write");
    std::fs::write(dir.join("index.json.minisig"), &sig).expect("write");
    (index, sig)
}

/// Debian's `minisign -V` on a fetched index: whether it verifies.
fn minisign_verifies(dir: &Path, pubkey: &Path) -> bool {
    let r = run(std::process::Command::new("minisign")
        .args(["-V", "-q", "-p"])
        .arg(pubkey)
        .arg("-m")
        .arg(dir.join("index.json")));
    r.code == 0
}

/// Serves the files of `dir` over HTTP (python3's http.server), for a
/// device pointed at a copy of an index.
struct Mirror {
    child: std::process::Child,
    url: String,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mirror(dir: &Path) -> Mirror {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    wait_until(30, "the mirror listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Mirror {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[test]
fn pushes_run_the_pipeline_and_devices_verify_the_channel() {
    let marker = format!("kiln-pipe-{}", std::process::id());
    let farm = Farm::new(&["cam-lab"], &marker);
    let dir = farm.dir().to_path_buf();
    let (squashfs, _) = sources();
    farm.ok(&["image", "import", "src", "1.0", &squashfs.to_string_lossy(), "--hub"]);
    let scripts = script_repo(&dir);
    let pubkey = dir.join("channel.pub");
    std::fs::write(&pubkey, farm.ok(&["channel", "keygen"])).expect("pub");
    farm.ok(&["tag", "edit", "rel", "-x", "channel.publish=true"]);

    // The pipeline, configured once; show --json and apply round-trip.
    let script = format!("git+file://{}@main:cam/update.sh", scripts.display());
    farm.ok(&[
        "pipeline",
        "create",
        "cam-fw",
        "--kind",
        "update",
        "--source",
        "src@latest",
        "--script",
        &script,
        "--target-name",
        "cam-fw-%{source_version}-%{run}",
        "--target",
        "rel",
        "--builder",
        "cam-lab",
        "-D",
        "release=r1",
        "--branch",
        "main",
    ]);
    let shown = farm.ok(&["pipeline", "show", "cam-fw", "--json"]);
    std::fs::write(dir.join("cam-fw.json"), &shown).expect("write");
    farm.ok(&["pipeline", "apply", &dir.join("cam-fw.json").to_string_lossy()]);
    assert_eq!(json(&farm.ok(&["pipeline", "show", "cam-fw", "--json"])), json(&shown));
    let secret = farm.ok(&["pipeline", "hook", "cam-fw", "github"]).trim().to_string();
    let hook = "/api/v1/pipelines/cam-fw/hooks/github";

    // A GitHub push of main at the repository's head.
    let commit = head(&scripts);
    let push = github_push("refs/heads/main", &"0".repeat(40), &commit, &scripts);
    let gh = |sig: String, id: &str| {
        vec![
            ("X-GitHub-Event", "push".to_string()),
            ("X-GitHub-Delivery", id.to_string()),
            ("X-Hub-Signature-256", sig),
            ("Content-Type", "application/json".to_string()),
            ("User-Agent", "GitHub-Hookshot/kiln-test".to_string()),
        ]
    };
    // Refusals first: each answers clearly and starts nothing.
    let mut tampered = push.clone();
    tampered[20] ^= 1;
    let (s, _) = http(
        &farm.hub.url,
        "POST",
        hook,
        &gh(github_sig(&secret, &push), "r-0"),
        &tampered,
    );
    assert_eq!(s, 401, "a bad signature");
    let (s, _) = http(
        &farm.hub.url,
        "POST",
        hook,
        &gh(github_sig("not the secret", &push), "r-0"),
        &push,
    );
    assert_eq!(s, 401, "another secret");
    let dev = github_push("refs/heads/dev", &"0".repeat(40), &commit, &scripts);
    let (s, b) = http(&farm.hub.url, "POST", hook, &gh(github_sig(&secret, &dev), "r-1"), &dev);
    assert_eq!(s, 422, "another branch: {}", String::from_utf8_lossy(&b));
    assert!(runs(&farm, "cam-fw").is_empty());

    let (s, b) = http(
        &farm.hub.url,
        "POST",
        hook,
        &gh(github_sig(&secret, &push), "r-2"),
        &push,
    );
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&b));
    let started: serde_json::Value = serde_json::from_slice(&b).expect("json");
    let task = started["run"]["task"].as_i64().expect("task").to_string();
    // A redelivery of the same push starts nothing.
    let (s, _) = http(
        &farm.hub.url,
        "POST",
        hook,
        &gh(github_sig(&secret, &push), "r-2"),
        &push,
    );
    assert_eq!(s, 409, "a replayed delivery");
    let t = farm.wait_for(&task, &["CLOSED", "FAILED"], 900);
    assert_eq!(t["state"], "CLOSED", "{t}\n{}", farm.log_of(&task));
    assert_eq!(t["host"], "cam-lab", "the designated builder ran it");
    let r = &runs(&farm, "cam-fw")[0];
    assert_eq!(
        (
            r["run"].as_i64(),
            r["state"].as_str(),
            r["nvr"].as_str(),
            r["commit"].as_str()
        ),
        (Some(1), Some("succeeded"), Some("cam-fw-1.0-1"), Some(commit.as_str()))
    );
    let tagged = json(&farm.ok(&["list-tagged", "rel", "--json"]));
    assert!(
        tagged
            .as_array()
            .is_some_and(|a| a.iter().any(|b| b["nvr"] == "cam-fw-1.0-1")),
        "{tagged}"
    );

    // The channel republished by itself; a device verifies and downloads it.
    wait_until(60, "the channel lists cam-fw-1.0-1", || {
        let (s, b) = http(&farm.hub.url, "GET", "/channels/rel/index.json", &[], b"");
        s == 200 && String::from_utf8_lossy(&b).contains("cam-fw-1.0-1")
    });
    let index_url = format!("{}/channels/rel/index.json", farm.hub.url);
    let state = dir.join("device-state.json");
    let dl = dir.join("device");
    let v = farm.ok(&[
        "channel",
        "verify",
        &index_url,
        "--pubkey",
        &pubkey.to_string_lossy(),
        "--state",
        &state.to_string_lossy(),
        "--download",
        &dl.to_string_lossy(),
    ]);
    assert!(v.contains("cam-fw-1.0-1"), "{v}");
    let image = dl.join("cam-fw-1.0-1.squashfs");
    assert!(image.is_file(), "the device downloaded the image");
    let first = dir.join("first");
    let (old_index, _) = fetch_index(&farm, "rel", &first);
    assert!(minisign_verifies(&first, &pubkey), "minisign -V accepts the index");
    let seq1 = json(&String::from_utf8_lossy(&old_index))["sequence"]
        .as_i64()
        .expect("sequence");

    // The device recipe of docs/channels.md, as written: installs the image
    // into its slot and remembers the sequence; refuses a rollback.
    let doc = include_str!("../../../../docs/channels.md");
    let recipe = doc
        .split("Save as `update-from-channel`:")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("\n```").next())
        .expect("docs/channels.md has the recipe");
    let script_file = dir.join("update-from-channel");
    std::fs::write(&script_file, format!("{recipe}\n")).expect("write");
    let (slot, recipe_state) = (dir.join("slot-b"), dir.join("recipe-state"));
    let recipe_run = || {
        run(std::process::Command::new("sh")
            .arg(&script_file)
            .args([farm.hub.url.as_str(), "rel", "cam-fw"])
            .args([&pubkey, &recipe_state, &slot]))
    };
    let r = recipe_run();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read(&slot).expect("slot"),
        std::fs::read(&image).expect("image")
    );
    std::fs::write(&recipe_state, "999\n").expect("state");
    let r = recipe_run();
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);

    // A GitLab push of a new commit: run 2, a newer index.
    let before = commit.clone();
    std::fs::write(
        scripts.join("cam/update.sh"),
        "#!/bin/sh\nset -eu\necho \"v2 $KILN_MACRO_release\" > /etc/kiln-update\n",
    )
    .expect("script");
    git(&scripts, &["commit", "-qam", "v2"]);
    let commit2 = head(&scripts);
    let token = farm.ok(&["pipeline", "hook", "cam-fw", "gitlab"]).trim().to_string();
    let gl_hook = "/api/v1/pipelines/cam-fw/hooks/gitlab";
    let gl = |tok: &str, id: &str| {
        vec![
            ("X-Gitlab-Event", "Push Hook".to_string()),
            ("X-Gitlab-Token", tok.to_string()),
            ("X-Gitlab-Event-UUID", id.to_string()),
            ("Content-Type", "application/json".to_string()),
        ]
    };
    let body = gitlab_push("refs/heads/main", &before, &commit2);
    let (s, _) = http(&farm.hub.url, "POST", gl_hook, &gl("wrong-token", "g-1"), &body);
    assert_eq!(s, 401, "a wrong token");
    let (s, b) = http(&farm.hub.url, "POST", gl_hook, &gl(&token, "g-1"), &body);
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&b));
    let started: serde_json::Value = serde_json::from_slice(&b).expect("json");
    let task2 = started["run"]["task"].as_i64().expect("task").to_string();
    let t = farm.wait_for(&task2, &["CLOSED", "FAILED"], 900);
    assert_eq!(t["state"], "CLOSED", "{t}\n{}", farm.log_of(&task2));
    let r = &runs(&farm, "cam-fw")[0];
    assert_eq!(
        (r["trigger"].as_str(), r["nvr"].as_str(), r["commit"].as_str()),
        (Some("gitlab"), Some("cam-fw-1.0-2"), Some(commit2.as_str()))
    );
    wait_until(60, "the channel lists cam-fw-1.0-2", || {
        let (_, b) = http(&farm.hub.url, "GET", "/channels/rel/index.json", &[], b"");
        String::from_utf8_lossy(&b).contains("cam-fw-1.0-2")
    });
    let v = farm.ok(&[
        "channel",
        "verify",
        &index_url,
        "--pubkey",
        &pubkey.to_string_lossy(),
        "--state",
        &state.to_string_lossy(),
    ]);
    assert!(v.contains("cam-fw-1.0-2"), "{v}");
    let second = dir.join("second");
    let (new_index, _) = fetch_index(&farm, "rel", &second);
    assert!(minisign_verifies(&second, &pubkey));
    assert!(json(&String::from_utf8_lossy(&new_index))["sequence"].as_i64() > Some(seq1));

    // A device served the old index (a rollback) or a tampered one refuses it.
    let m = mirror(&first);
    let key = pubkey.to_string_lossy().into_owned();
    let st = state.to_string_lossy().into_owned();
    let r = run(farm.hub.kiln(None).args([
        "channel",
        "verify",
        &format!("{}/index.json", m.url),
        "--pubkey",
        &key,
        "--state",
        &st,
    ]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);
    let mut bad = old_index.clone();
    let at = bad.iter().position(|b| *b == b'1').expect("a digit");
    bad[at] = b'9';
    std::fs::write(first.join("index.json"), &bad).expect("write");
    let r = run(farm.hub.kiln(None).args([
        "channel",
        "verify",
        &format!("{}/index.json", m.url),
        "--pubkey",
        &key,
        "--channel",
        "rel",
    ]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("signature"), "{}", r.stderr);
    assert!(
        !minisign_verifies(&first, &pubkey),
        "minisign -V refuses the tampered index"
    );

    // Disabled: a push starts nothing.
    farm.ok(&["pipeline", "edit", "cam-fw", "--disable"]);
    let push3 = github_push("refs/heads/main", &before, &commit2, &scripts);
    let (s, _) = http(
        &farm.hub.url,
        "POST",
        hook,
        &gh(github_sig(&secret, &push3), "r-3"),
        &push3,
    );
    assert_eq!(s, 409, "a disabled pipeline");
    assert_eq!(runs(&farm, "cam-fw").len(), 2);

    // A pipeline following the source runs once on its new version.
    farm.ok(&[
        "pipeline",
        "create",
        "cam-next",
        "--source",
        "src@latest",
        "--on-new-source",
        "--script",
        &script,
        "--target-name",
        "cam-fw-%{source_version}-n%{run}",
        "--target",
        "rel",
        "-D",
        "release=r2",
    ]);
    farm.ok(&["image", "import", "src", "1.1", &squashfs.to_string_lossy(), "--hub"]);
    wait_until(60, "the new source starts a run", || {
        !runs(&farm, "cam-next").is_empty()
    });
    let r = &runs(&farm, "cam-next")[0];
    assert_eq!(
        (r["trigger"].as_str(), r["source"].as_str()),
        (Some("source"), Some("src@1.1"))
    );
    let task3 = r["task"].as_i64().expect("task").to_string();
    let t = farm.wait_for(&task3, &["CLOSED", "FAILED"], 900);
    assert_eq!(t["state"], "CLOSED", "{t}\n{}", farm.log_of(&task3));
    assert_eq!(runs(&farm, "cam-next").len(), 1, "one run per version");
    // A build pipeline: the profile repository at its ref, named by the
    // pattern with the commit the builder resolved; `run --watch` follows it.
    farm.ok(&[
        "pipeline",
        "create",
        "farm-img",
        "--kind",
        "build",
        "--repo",
        &farm.repo_url(),
        "--image",
        "ve/farm",
        "--target",
        "rel",
        "--target-name",
        "ve-farm-1.0-g%{commit_short}.%{run}",
    ]);
    let out = farm.ok(&["pipeline", "run", "farm-img", "--watch"]);
    assert_eq!(out.lines().next(), Some("1"), "{out}");
    let r = &runs(&farm, "farm-img")[0];
    let nvr = format!("ve-farm-1.0-g{}.1", &head(farm.repo.path())[..12]);
    assert_eq!(
        (r["state"].as_str(), r["nvr"].as_str()),
        (Some("succeeded"), Some(nvr.as_str()))
    );
    let b = json(&farm.ok(&["builds", "info", &nvr, "--json"]));
    assert_eq!(b["state"], "COMPLETE", "{b}");

    // A pipeline that would import its own source is refused.
    let r = run(farm.hub.kiln(Some(&farm.admin)).args([
        "pipeline",
        "create",
        "loop",
        "--source",
        "cam-fw@latest",
        "--import-image",
        "--script",
        &script,
        "--target-name",
        "cam-fw-%{source_version}-%{run}",
        "--target",
        "rel",
    ]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("loop"), "{}", r.stderr);
}
