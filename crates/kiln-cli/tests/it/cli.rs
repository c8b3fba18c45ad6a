use crate::support::{kiln, run};

#[test]
fn version_and_help() {
    let r = run(kiln().arg("--version"));
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, format!("kiln {}\n", env!("CARGO_PKG_VERSION")));
    let r = run(kiln().arg("--help"));
    assert_eq!(r.code, 0);
    for cmd in ["show", "check", "doctor"] {
        assert!(r.stdout.contains(cmd), "--help lists {cmd}");
        let sub = run(kiln().args([cmd, "--help"]));
        assert_eq!(sub.code, 0, "{cmd} --help");
        assert!(sub.stdout.contains("Usage: kiln"), "{cmd} --help prints usage");
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
