use crate::support::{kiln, run};

#[test]
fn version_and_help() {
    let r = run(kiln().arg("--version"));
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, format!("kiln {}\n", env!("CARGO_PKG_VERSION")));
    let r = run(kiln().arg("--help"));
    assert_eq!(r.code, 0);
    for cmd in [
        "build",
        "show",
        "check",
        "doctor",
        "cache",
        "image",
        "update",
        "serve",
        "login",
        "user",
        "tag",
        "tag-build",
        "untag-build",
        "list-tagged",
        "builds",
        "target",
        "pipeline",
        "channel",
    ] {
        assert!(r.stdout.contains(cmd), "--help lists {cmd}");
        let sub = run(kiln().args([cmd, "--help"]));
        assert_eq!(sub.code, 0, "{cmd} --help");
        assert!(sub.stdout.contains("Usage: kiln"), "{cmd} --help prints usage");
    }
    // Every subcommand's arguments are well-formed (clap checks them when
    // the subcommand is built).
    for sub in [
        ["cache", "ls"],
        ["cache", "prune"],
        ["cache", "clear"],
        ["image", "import"],
        ["image", "ls"],
        ["image", "show"],
        ["image", "rm"],
        ["image", "pull"],
        ["tag", "inherit"],
        ["tag", "pkg"],
        ["user", "token"],
        ["builds", "import"],
        ["target", "apply"],
    ] {
        let r = run(kiln().args(sub).arg("--help"));
        assert_eq!(r.code, 0, "{sub:?} --help: {}", r.stderr);
    }
}

#[test]
fn usage_errors_exit_2() {
    let r = run(kiln().arg("frobnicate"));
    assert_eq!(r.code, 2);
    let r = run(kiln().args(["show"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("IMAGE"), "{}", r.stderr);
}
