//! `kiln update`: the source mounted under an overlay, the script inside,
//! the target written and recorded; what a failure reports.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kiln_engine::update::{ScriptOrigin, UpdateRequest, UpdateStage, update_with};
use kiln_engine::{Phase, View};
use kiln_store::catalog::{Format, Image};

use crate::support::{Events, FakeHost, FakeInside, HostCall, files_of, listing};

fn request(tmp: &Path, script: &str, events: Arc<Events>) -> UpdateRequest {
    let blob = tmp.join("source.squashfs");
    fs::write(&blob, "a squashfs image").expect("the source");
    let script_path = tmp.join("update.sh");
    fs::write(&script_path, script).expect("the script");
    fs::set_permissions(&script_path, fs::Permissions::from_mode(0o755)).expect("chmod");
    UpdateRequest {
        source: Image {
            name: "edge".into(),
            version: "1".into(),
            sha256: "00ff".into(),
            format: Format::Squashfs,
            size: 16,
            imported: 0,
            origin: "source.squashfs".into(),
        },
        blob,
        script_path,
        script: ScriptOrigin {
            origin: "update.sh".into(),
            commit: None,
            sha256: "ab".into(),
        },
        name: "edge-2".into(),
        format: Some("tar".into()),
        macros: BTreeMap::from([("vendor".to_string(), "Acme".to_string())]),
        network: false,
        outdir: tmp.join("out"),
        workdir: tmp.join("work"),
        source_date_epoch: Some(1_700_000_000),
        jobs: 1,
        force: false,
        timeout: Duration::from_secs(60),
        reporter: events,
    }
}

#[test]
fn the_script_runs_on_the_mounted_source_and_the_target_is_recorded() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let events = Arc::new(Events::default());
    let req = request(
        tmp.path(),
        "#!/bin/sh\necho updating\ntouch /etc/updated\n",
        Arc::clone(&events),
    );
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let updated = update_with(&req, &inside, &host).expect("the update");

    // The source loop-mounted read-only under a writable overlay, which is
    // mounted again after the sandbox worked on it.
    let calls = host.calls();
    let HostCall::Output(mount) = &calls[0] else {
        panic!("{calls:?}")
    };
    let args: Vec<String> = mount.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    assert_eq!(mount.program, "mount");
    assert_eq!(args[..4], ["-t", "squashfs", "-o", "loop,ro"]);
    assert_eq!(Path::new(&args[4]), req.blob);
    let HostCall::Overlay { lowers, target } = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(lowers, &[Path::new(&args[5]).to_path_buf()]);
    assert_eq!(calls[2], HostCall::Remount(target.clone()));
    assert!(
        matches!(&calls[3], HostCall::Tar { root, .. } if root == target),
        "{calls:?}"
    );

    let run = &inside.calls()[0];
    assert_eq!(run.view, View::Image);
    assert_eq!(run.argv, ["/run/kiln/scripts/update.sh"]);
    assert!(!run.network);
    for var in [
        ("KILN_SOURCE", "edge@1"),
        ("KILN_TARGET", "edge-2"),
        ("KILN_MACRO_vendor", "Acme"),
    ] {
        assert!(run.env.contains(&(var.0.into(), var.1.into())), "{var:?}");
    }

    // The target, its manifest and checksums; the work tree is gone.
    let out = files_of(&req.outdir);
    assert!(
        out["edge-2.tar"].lines().any(|l| l == "etc/updated"),
        "{}",
        out["edge-2.tar"]
    );
    assert_eq!(out.len(), 4, "{:?}", out.keys());
    let m = &updated.manifest;
    assert_eq!(m.target.file, "edge-2.tar");
    assert_eq!(m.target.format, "tar");
    assert_eq!(m.target.method, None);
    assert_eq!(
        m.timings.keys().copied().collect::<Vec<_>>(),
        ["compress", "prepare", "script"]
    );
    assert!(out["edge-2.SHA256SUMS"].contains(&m.target.sha256));
    assert!(listing(&req.workdir).is_empty(), "{:?}", listing(&req.workdir));
    let stages: Vec<String> = events
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("stage ") || l.starts_with("done "))
        .collect();
    assert_eq!(
        stages,
        [
            "stage prepare",
            "done prepare done",
            "stage script",
            "done script done",
            "stage compress",
            "done compress done"
        ]
    );
}

#[test]
fn a_failing_script_fails_the_script_step_and_leaves_no_target() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let req = request(
        tmp.path(),
        "#!/bin/sh\necho cannot update\nexit 2\n",
        Arc::new(Events::default()),
    );
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let e = update_with(&req, &inside, &host).expect_err("the script fails");
    assert_eq!(e.stage, Phase::Update(UpdateStage::Script));
    assert_eq!(e.to_string(), "script: update script `update.sh` exited with status 2");
    assert_eq!(e.step.as_deref(), Some("update.sh"));
    assert_eq!(
        e.command.as_deref(),
        Some("/run/kiln/scripts/update.sh (inside edge@1)")
    );
    assert_eq!(e.log_tail, ["cannot update"]);
    assert!(!host.calls().iter().any(|c| matches!(c, HostCall::Tar { .. })));
    let out = files_of(&req.outdir);
    assert_eq!(out.keys().collect::<Vec<_>>(), ["edge-2.build.log"]);
    assert!(out["edge-2.build.log"].contains("FAILED in script: update script `update.sh` exited with status 2"));
}

#[test]
fn an_unknown_target_format_fails_before_anything_runs() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let mut req = request(tmp.path(), "#!/bin/sh\n", Arc::new(Events::default()));
    req.format = Some("zip".into());
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let e = update_with(&req, &inside, &host).expect_err("zip is no format");
    assert_eq!(e.stage, Phase::Preflight);
    assert_eq!(
        e.message,
        "unknown target format `zip` (squashfs, erofs, tar, tar.zst, tar.xz, tar.gz, iso)"
    );
    assert!(host.calls().is_empty() && inside.calls().is_empty());
    // An ISO is remastered from an ISO, not made from a squashfs.
    req.format = Some("iso".into());
    let e = update_with(&req, &inside, &host).expect_err("no ISO source");
    assert_eq!(e.stage, Phase::Preflight);
    assert!(
        e.message.starts_with("an iso target is remastered from an ISO source"),
        "{}",
        e.message
    );
    assert!(host.calls().is_empty() && inside.calls().is_empty());
}
