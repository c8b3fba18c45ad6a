//! The web UI in a real browser (docs/web.md): `tests/web/ui.py` drives
//! Debian's chromium through Playwright against a real `kiln serve` with a
//! real builder, and checks every page with axe-core. Screenshots of every
//! page land in `target/web-screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use crate::farm::Farm;
use crate::support::run;
use crate::update::{script_repo, sources};

/// The test venv's python with Playwright and axe, and the browser.
fn browser_kit() -> Option<PathBuf> {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import playwright, axe_playwright_python"])
        .output()
        .is_ok_and(|o| o.status.success());
    (ok && std::path::Path::new("/usr/bin/chromium").exists()).then_some(py)
}

#[test]
fn the_browser_configures_runs_watches_and_downloads() {
    let Some(py) = browser_kit() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Playwright or chromium is missing (tools/test.sh installs them)"
        );
        eprintln!("SKIPPED: Playwright (PyPI) or Debian's chromium is not installed; tools/test.sh installs them");
        return;
    };
    let marker = format!("kiln-web-{}", std::process::id());
    let farm = Farm::new(&["cam-lab"], &marker);
    let dir = farm.dir().to_path_buf();
    let (squashfs, _) = sources();
    farm.ok(&["image", "import", "src", "1.0", &squashfs.to_string_lossy(), "--hub"]);
    let scripts = script_repo(&dir);
    for t in ["base", "mid", "top"] {
        farm.ok(&["tag", "create", t]);
    }
    farm.ok(&["tag", "inherit", "add", "mid", "base", "--priority", "10"]);
    farm.ok(&["tag", "inherit", "add", "top", "mid", "--priority", "5"]);
    let user = |name: &str, password: &str, admin: bool| {
        use std::io::Write;
        let mut c = farm.hub.kiln(Some(&farm.admin));
        c.args(["user", "create", name, "--password-stdin"]);
        if admin {
            c.arg("--admin");
        }
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kiln user create");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("password");
        let out = child.wait_with_output().expect("kiln user create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    user("web", "web-password-1", true);
    user("reader", "reader-password-1", false);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/web-screenshots");
    let r = run(Command::new(&py)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web/ui.py"))
        .args([farm.hub.url.as_str(), "web-password-1", "reader-password-1"])
        .arg(&scripts)
        .arg(&out));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}
