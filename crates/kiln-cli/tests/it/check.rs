use std::path::Path;

use crate::support::{edit, examples, examples_copy, kiln, run, write};

fn check_short(repo: &Path) -> (i32, Vec<String>) {
    let r = run(kiln()
        .args(["check", "--arch", "amd64", "--message-format", "short"])
        .arg("-C")
        .arg(repo));
    let lines = r
        .stderr
        .lines()
        .filter(|l| !l.starts_with("checked "))
        .map(str::to_string)
        .collect();
    (r.code, lines)
}

#[test]
fn examples_are_clean() {
    let r = run(kiln().args(["check"]).arg("-C").arg(examples()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("checked 3 images, 5 features, 5 lists"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("0 errors, 0 warnings"), "{}", r.stderr);
}

#[test]
fn extends_cycle_is_printed() {
    let repo = examples_copy();
    edit(
        repo.path(),
        "images/ve/minimal.toml",
        "kind = \"ve\"",
        "kind = \"ve\"\nextends = [\"distro/live\"]",
    );
    let (code, lines) = check_short(repo.path());
    assert_eq!(code, 1);
    assert!(
        lines.iter().any(|l| l.starts_with("images/ve/minimal.toml:")
            && l.ends_with(
                "error[extends-cycle]: `extends` cycle: distro/live → ve/server → ve/minimal → distro/live"
            )),
        "{lines:#?}"
    );
    // Reached from three images, reported once, with nothing that follows from it.
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

#[test]
fn file_clash_names_both_features() {
    let repo = examples_copy();
    write(
        repo.path(),
        "features/live/files/etc/ssh/sshd_config.d/kiln.conf",
        "PermitRootLogin yes\n",
    );
    let (code, lines) = check_short(repo.path());
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "images/distro/live.toml:10:8: error[file-clash]: file clash: `/etc/ssh/sshd_config.d/kiln.conf` is shipped by features `ssh` and `live`"
        ]
    );
    // `override` makes it legal.
    edit(
        repo.path(),
        "features/live/feature.toml",
        "description",
        "override = [\"etc/ssh/sshd_config.d/kiln.conf\"]\ndescription",
    );
    let (code, lines) = check_short(repo.path());
    assert_eq!((code, lines), (0, vec![]));
}

#[test]
fn typo_in_variant_gets_a_suggestion() {
    let repo = examples_copy();
    edit(
        repo.path(),
        "images/ve/server.toml",
        "\"ssh\", \"net/dhcp\"",
        "\"ssh\", \"net/dchp\"",
    );
    let r = run(kiln().args(["check"]).arg("-C").arg(repo.path()));
    assert_eq!(r.code, 1);
    // Human form: location, the offending line, a caret under the variant, the hint.
    assert!(r.stderr.contains("feature `net` has no variant `dchp`"), "{}", r.stderr);
    assert!(r.stderr.contains("images/ve/server.toml:8:20"), "{}", r.stderr);
    assert!(
        r.stderr.contains("use = [\"ssh\", \"net/dchp\", \"cleanup\"]"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("──┬─"), "{}", r.stderr);
    assert!(r.stderr.contains("help: did you mean `net/dhcp`?"), "{}", r.stderr);
    // The error is reported once although two images use ve/server.
    assert_eq!(r.stderr.matches("has no variant").count(), 1);
}

#[test]
fn every_problem_of_a_repo_in_one_run() {
    let repo = examples_copy();
    let p = repo.path();
    edit(
        p,
        "images/ve/server.toml",
        "\"ssh\", \"net/dhcp\"",
        "\"ssh\", \"net/dchp\"",
    );
    edit(p, "features/ssh/feature.toml", "packages", "pakages");
    edit(p, "lists/base", "netbase", "netbase@amd46");
    edit(
        p,
        "images/distro/live.toml",
        "kind = \"distro\"",
        "kind = \"distro\"\nrelease = \"%{relnum}\"",
    );
    edit(
        p,
        "features/net/feature.toml",
        "description",
        "requires = [\"ssh\"]\ndescription",
    );
    write(p, "images/vm/broken.toml", "kind = \"vm\n");
    let (code, lines) = check_short(p);
    assert_eq!(code, 1);
    let codes: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split("error[").nth(1))
        .filter_map(|l| l.split(']').next())
        .collect();
    for expected in [
        "unknown-variant",
        "unknown-field",
        "bad-arch-filter",
        "undefined-macro",
        "requires-cycle",
        "toml-syntax",
    ] {
        assert!(codes.contains(&expected), "{expected} missing from {lines:#?}");
    }
}

#[test]
fn json_diagnostics_on_stdout() {
    let repo = examples_copy();
    edit(
        repo.path(),
        "images/ve/server.toml",
        "tagged = \"server && !desktop\"",
        "tagged = \"server && (desktop\"",
    );
    let r = run(kiln()
        .args(["check", "--message-format", "json"])
        .arg("-C")
        .arg(repo.path()));
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["errors"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "bad-tag-expression");
    assert_eq!(d["message"], "bad tag expression: unclosed `(`");
    assert_eq!(d["location"]["file"], "images/ve/server.toml");
    assert_eq!(d["location"]["line"], 12);
    assert_eq!(d["location"]["column"], 21);
}

#[test]
fn not_a_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(kiln().arg("check").arg("-C").arg(dir.path()));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a profile repository"), "{}", r.stderr);
}
