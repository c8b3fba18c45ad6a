//! Builds: stage order, the stage cache and `--rebuild-from`, outputs and
//! subprofiles, and what a failure reports.

use std::fs;
use std::sync::Arc;

use kiln_core::stagekey::{RebuildFrom, Stage};
use kiln_engine::{HOST_VIEW_REPO, HOST_VIEW_ROOT, Phase, View, build_with};

use crate::support::{
    Dirs, Events, FakeHost, FakeInside, HostCall, TestRepo, files_of, manifest_json, pairs, stage_statuses,
};

const KILN: &str = "[defaults.base]\nsuite = \"bookworm\"\nvariant = \"minbase\"\n";

/// An image with a feature file, two image-scripts, a build-side script and
/// three outputs.
fn test_repo() -> TestRepo {
    TestRepo::new(&[
        ("kiln.toml", KILN),
        (
            "images/ve/test.toml",
            "use = [\"f\"]\npackages = [\"less\"]\noutputs = [\"squashfs\", \"tar.zst\", \"erofs\"]\n",
        ),
        ("features/f/feature.toml", "description = \"f\"\n"),
        ("features/f/files/etc/motd", "hello\n"),
        (
            "features/f/image-scripts.d/10-first",
            "#!/bin/sh\necho first\ntouch /etc/ran-first\n",
        ),
        (
            "features/f/image-scripts.d/20-second",
            "#!/bin/sh\necho second\ntouch /etc/ran-second\n",
        ),
        (
            "features/f/scripts.d/30-build",
            "#!/bin/sh\ntouch $KILN_ROOT/etc/ran-build\n",
        ),
    ])
}

const ALL_BUILT: &[(&str, &str)] = &[
    ("base", "built"),
    ("files", "built"),
    ("image-scripts", "built"),
    ("scripts", "built"),
    ("cleanup", "built"),
    ("outputs", "built"),
];

#[test]
fn stages_run_in_order_and_outputs_are_complete() {
    let repo = test_repo();
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let events = Arc::new(Events::default());
    let req = dirs.request(&repo, plan.clone(), "out", Arc::clone(&events));
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let built = build_with(&req, &inside, &host).expect("the build");

    // The stages in order, in the manifest and in the progress events.
    let m = manifest_json(&built.manifest_path);
    assert_eq!(stage_statuses(&m), pairs(ALL_BUILT));
    let stages: Vec<String> = events.lines().into_iter().filter(|l| l.starts_with("stage ")).collect();
    assert_eq!(
        stages,
        ["base", "files", "image-scripts", "scripts", "cleanup", "outputs"].map(|s| format!("stage {s}"))
    );
    assert!(events.lines().contains(&"step 20-second (f)".to_string()));

    // The bootstrap in the host view, then each script where it belongs.
    let calls = inside.calls();
    assert_eq!(calls[0].argv[0], "mmdebstrap");
    assert_eq!(calls[0].view, View::Host);
    assert!(calls[0].nested_mounts && calls[0].network);
    assert!(calls[0].argv.contains(&"--skip=cleanup/apt/lists".to_string()));
    assert!(calls[0].argv.contains(&HOST_VIEW_ROOT.to_string()));
    assert_eq!(inside.scripts(), ["10-first", "20-second", "30-build"]);
    assert_eq!(calls[1].view, View::Image);
    assert!(!calls[1].network);
    assert!(calls[1].env.contains(&("KILN_SCRIPT".into(), "10-first".into())));
    assert_eq!(calls[3].view, View::Host);
    assert!(calls[3].env.contains(&("KILN_ROOT".into(), HOST_VIEW_ROOT.into())));
    assert!(host.calls().contains(&HostCall::PopulateDev(calls[0].tree.clone())));
    // No cache: no overlays, no mirror digest.
    assert!(!host.calls().iter().any(|c| matches!(
        c,
        HostCall::Overlay { .. } | HostCall::ReadOnly { .. } | HostCall::Download(_)
    )));

    // The outputs: squashfs through the host tool with the epoch, tar with
    // kiln's writer; both of the finished tree.
    let squashfs = host
        .calls()
        .into_iter()
        .find_map(|c| match c {
            HostCall::Run(cmd) if cmd.program == "mksquashfs" => Some(cmd),
            _ => None,
        })
        .expect("mksquashfs ran");
    assert!(
        squashfs
            .env
            .contains(&("SOURCE_DATE_EPOCH".into(), "1700000000".into()))
    );
    // Every host tool gets the epoch, not only those whose command sets it.
    let erofs = host
        .calls()
        .into_iter()
        .find_map(|c| match c {
            HostCall::Run(cmd) if cmd.program == "mkfs.erofs" => Some(cmd),
            _ => None,
        })
        .expect("mkfs.erofs ran");
    assert_eq!(erofs.env, [("SOURCE_DATE_EPOCH".to_string(), "1700000000".to_string())]);
    assert_eq!(host.programs(), ["mksquashfs", "mkfs.erofs"]);
    assert!(host.calls().iter().any(|c| matches!(c, HostCall::Tar { .. })));
    let out = files_of(&req.outdir);
    let sq = &out[&format!("{}.{}.squashfs", plan.nvr, plan.arch)];
    for path in ["etc/motd", "etc/ran-first", "etc/ran-second", "etc/ran-build", "dev/"] {
        assert!(sq.lines().any(|l| l == path), "{path} not in the image:\n{sq}");
    }
    // Cleanup ran: apt lists emptied, logs truncated, no policy-rc.d left.
    assert!(!sq.contains("_InRelease"), "{sq}");
    assert!(!sq.contains("policy-rc.d"), "{sq}");
    assert_eq!(out[&format!("{}.{}.tar.zst", plan.nvr, plan.arch)], *sq);
    assert_eq!(out[&format!("{}.{}.erofs", plan.nvr, plan.arch)], *sq);

    // Checksums of every output and the manifest; nothing else in OUTDIR
    // but the log.
    let sums = &out[&format!("{}.{}.SHA256SUMS", plan.nvr, plan.arch)];
    assert_eq!(sums.lines().count(), 4, "{sums}");
    assert_eq!(out.len(), 6, "{:?}", out.keys());
    assert_eq!(built.outputs.len(), 5);
    assert!(
        !dirs.work().read_dir().expect("workdir").any(|_| true),
        "the work tree is removed"
    );

    // What the manifest records of the steps.
    let scripts: Vec<(&str, &str)> = m["scripts"]
        .as_array()
        .expect("scripts")
        .iter()
        .map(|s| (s["stage"].as_str().unwrap_or(""), s["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        scripts,
        [
            ("image-scripts", "10-first"),
            ("image-scripts", "20-second"),
            ("scripts", "30-build")
        ]
    );
    assert_eq!(m["base"]["mode"], "bootstrap");
    assert_eq!(
        m["base"]["release_digests"][0][0],
        "deb.example_dists_bookworm_InRelease"
    );
    let packages: Vec<&str> = m["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(packages, ["less"]);
}

#[test]
fn an_unchanged_rebuild_comes_from_the_cache() {
    let repo = test_repo();
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let mut first = dirs.request(&repo, plan.clone(), "out1", Arc::new(Events::default()));
    first.cache = Some(dirs.cache());
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let built = build_with(&first, &inside, &host).expect("the first build");
    assert_eq!(stage_statuses(&manifest_json(&built.manifest_path)), pairs(ALL_BUILT));
    // Each step after the base ran on an overlay of the layers before it.
    let overlays: Vec<usize> = host
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            HostCall::Overlay { lowers, .. } => Some(lowers.len()),
            _ => None,
        })
        .collect();
    assert_eq!(overlays, [1, 2, 3, 4, 5]);
    assert!(host.calls().iter().any(|c| matches!(c, HostCall::Download(_))));
    // The sandbox worked on the overlay: it is mounted again after each run.
    let remounts = host
        .calls()
        .iter()
        .filter(|c| matches!(c, HostCall::Remount(_)))
        .count();
    assert_eq!(remounts, 3);

    let events = Arc::new(Events::default());
    let mut again = dirs.request(&repo, plan, "out2", Arc::clone(&events));
    again.cache = Some(dirs.cache());
    let (inside2, host2) = (FakeInside::default(), FakeHost::default());
    let rebuilt = build_with(&again, &inside2, &host2).expect("the rebuild");
    let cached: Vec<(&str, &str)> = ALL_BUILT.iter().map(|(s, _)| (*s, "cached")).collect();
    assert_eq!(stage_statuses(&manifest_json(&rebuilt.manifest_path)), pairs(&cached));
    assert!(inside2.calls().is_empty(), "{:?}", inside2.calls());
    assert!(host2.programs().is_empty(), "{:?}", host2.programs());
    assert!(events.lines().contains(&"step 20-second (cached)".to_string()));
    // The same files, and the manifest's records restored from the cache.
    let (a, b) = (files_of(&first.outdir), files_of(&again.outdir));
    for name in a.keys().filter(|n| n.ends_with(".squashfs") || n.ends_with(".tar.zst")) {
        assert_eq!(a[name], b[name], "{name}");
    }
    assert_eq!(built.manifest.scripts.len(), rebuilt.manifest.scripts.len());
    assert_eq!(rebuilt.manifest.packages.len(), 1);
    assert_eq!(rebuilt.manifest.stages[3].stage, Stage::Scripts);
}

#[test]
fn rebuild_from_a_script_builds_it_and_every_later_step() {
    let repo = test_repo();
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let mut first = dirs.request(&repo, plan.clone(), "out1", Arc::new(Events::default()));
    first.cache = Some(dirs.cache());
    build_with(&first, &FakeInside::default(), &FakeHost::default()).expect("the first build");

    let from = RebuildFrom::parse("20-second", &plan).expect("a script of the plan");
    assert_eq!(from, RebuildFrom::Script("20-second".into()));
    let mut again = dirs.request(&repo, plan.clone(), "out2", Arc::new(Events::default()));
    again.cache = Some(dirs.cache());
    again.rebuild_from = Some(from);
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let rebuilt = build_with(&again, &inside, &host).expect("the rebuild");
    assert_eq!(
        stage_statuses(&manifest_json(&rebuilt.manifest_path)),
        pairs(&[
            ("base", "cached"),
            ("files", "cached"),
            ("image-scripts", "partly cached"),
            ("scripts", "built"),
            ("cleanup", "built"),
            ("outputs", "built"),
        ])
    );
    assert_eq!(inside.scripts(), ["20-second", "30-build"]);
    assert_eq!(host.programs(), ["mksquashfs", "mkfs.erofs"]);
    // The tree still has what the cached steps did.
    let sq = files_of(&again.outdir)
        .into_iter()
        .find(|(n, _)| n.ends_with(".squashfs"))
        .expect("the squashfs")
        .1;
    assert!(sq.lines().any(|l| l == "etc/ran-first"), "{sq}");

    // A stage name forces that stage on.
    let mut cleanup = dirs.request(&repo, plan.clone(), "out3", Arc::new(Events::default()));
    cleanup.cache = Some(dirs.cache());
    cleanup.rebuild_from = Some(RebuildFrom::parse("cleanup", &plan).expect("a stage"));
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let rebuilt = build_with(&cleanup, &inside, &host).expect("the rebuild");
    let statuses = stage_statuses(&manifest_json(&rebuilt.manifest_path));
    assert_eq!(statuses[3], ("scripts".into(), "cached".into()));
    assert_eq!(statuses[4], ("cleanup".into(), "built".into()));
    assert!(inside.calls().is_empty());

    let e = RebuildFrom::parse("nonsense", &plan).expect_err("neither");
    assert_eq!(
        e.to_string(),
        "not a stage (base, packages, files, image-scripts, scripts, cleanup, outputs) or a script of `ve/test`"
    );
}

#[test]
fn an_edited_script_rebuilds_from_its_step() {
    let mut repo = test_repo();
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let mut first = dirs.request(&repo, plan.clone(), "out1", Arc::new(Events::default()));
    first.cache = Some(dirs.cache());
    build_with(&first, &FakeInside::default(), &FakeHost::default()).expect("the first build");

    repo.write(
        "features/f/image-scripts.d/10-first",
        "#!/bin/sh\necho first, edited\ntouch /etc/ran-first-edited\n",
    );
    let mut again = dirs.request(&repo, plan, "out2", Arc::new(Events::default()));
    again.cache = Some(dirs.cache());
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let rebuilt = build_with(&again, &inside, &host).expect("the rebuild");
    let statuses = stage_statuses(&manifest_json(&rebuilt.manifest_path));
    assert_eq!(statuses[0], ("base".into(), "cached".into()));
    assert_eq!(statuses[1], ("files".into(), "cached".into()));
    assert_eq!(statuses[2], ("image-scripts".into(), "built".into()));
    assert_eq!(inside.scripts(), ["10-first", "20-second", "30-build"]);
    assert!(!host.calls().iter().any(|c| matches!(c, HostCall::PopulateDev(_))));
}

#[test]
fn a_failing_script_reports_where_and_leaves_no_output() {
    let mut repo = test_repo();
    repo.write(
        "features/f/image-scripts.d/20-second",
        "#!/bin/sh\necho about to fail\necho really\nexit 3\n",
    );
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let req = dirs.request(&repo, plan.clone(), "out", Arc::new(Events::default()));
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let e = build_with(&req, &inside, &host).expect_err("the script fails");
    assert_eq!(e.stage, Phase::Stage(Stage::ImageScripts));
    assert_eq!(e.step.as_deref(), Some("20-second (f)"));
    assert_eq!(
        e.command.as_deref(),
        Some("/run/kiln/scripts/20-second (inside the image, from features/f/image-scripts.d/20-second)")
    );
    assert_eq!(e.message, "script `20-second` exited with status 3");
    assert_eq!(e.to_string(), "image-scripts: script `20-second` exited with status 3");
    assert_eq!(e.log_tail, ["about to fail", "really"]);
    assert!(!e.interrupted);
    assert_eq!(inside.scripts(), ["10-first", "20-second"]);
    assert!(host.programs().is_empty());
    // Only the log is left, and it says where the build failed.
    let out = files_of(&req.outdir);
    assert_eq!(out.len(), 1, "{:?}", out.keys());
    let log_path = e.log_path.expect("the log");
    let log = fs::read_to_string(&log_path).expect("the log");
    assert!(
        log.contains("FAILED in image-scripts: script `20-second` exited with status 3"),
        "{log}"
    );
    assert!(e.workdir.is_none());
    assert_eq!(
        serde_json::to_value(e.stage).expect("JSON"),
        serde_json::json!("image-scripts")
    );
}

#[test]
fn a_failing_output_tool_fails_the_outputs_stage() {
    let repo = test_repo();
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let mut req = dirs.request(&repo, plan.clone(), "out", Arc::new(Events::default()));
    req.keep_workdir = true;
    let inside = FakeInside::default();
    let host = FakeHost::failing("mksquashfs");
    let e = build_with(&req, &inside, &host).expect_err("mksquashfs fails");
    let file = format!("{}.{}.squashfs", plan.nvr, plan.arch);
    assert_eq!(e.stage, Phase::Stage(Stage::Outputs));
    assert_eq!(e.step.as_deref(), Some(file.as_str()));
    assert!(
        e.command
            .as_deref()
            .is_some_and(|c| c.starts_with("SOURCE_DATE_EPOCH=1700000000 mksquashfs ")),
        "{e:?}"
    );
    assert_eq!(e.message, "`mksquashfs` exited with status 1");
    assert_eq!(e.log_tail, ["mksquashfs: something went wrong"]);
    // The tar after it never ran; the kept work tree is named.
    assert!(!host.calls().iter().any(|c| matches!(c, HostCall::Tar { .. })));
    assert!(
        e.workdir
            .as_ref()
            .is_some_and(|w| w.join("root/etc/ran-first").exists())
    );
    assert_eq!(files_of(&req.outdir).len(), 1);
}

#[test]
fn missing_tools_fail_before_any_stage() {
    let repo = test_repo();
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let req = dirs.request(&repo, plan, "out", Arc::new(Events::default()));
    let inside = FakeInside::default();
    let host = FakeHost::without(&["mksquashfs", "qemu-img"]);
    let e = build_with(&req, &inside, &host).expect_err("a tool is missing");
    assert_eq!(e.stage, Phase::Preflight);
    assert_eq!(e.missing_packages, ["squashfs-tools"]);
    assert_eq!(
        e.to_string(),
        "preflight: missing host tools; install them with `apt-get install squashfs-tools` or `kiln doctor --fix`"
    );
    assert!(inside.calls().is_empty());
    assert!(!req.outdir.exists());
}

#[test]
fn a_removal_that_takes_an_image_package_fails_before_purging() {
    let repo = TestRepo::new(&[
        ("kiln.toml", KILN),
        (
            "images/ve/test.toml",
            "packages = [\"less\"]\nremove = [\"tzdata\"]\noutputs = [\"tar\"]\n",
        ),
    ]);
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let req = dirs.request(&repo, plan, "out", Arc::new(Events::default()));
    let inside = FakeInside::with_packages(&["tzdata"], "Purg tzdata [1.0]\nPurg less [1.0]\n");
    let e = build_with(&req, &inside, &FakeHost::default()).expect_err("the purge is refused");
    assert_eq!(e.stage, Phase::Stage(Stage::Packages));
    assert_eq!(e.step.as_deref(), Some("apt-get -s purge"));
    assert_eq!(
        e.message,
        "removing tzdata would also remove less, which the image installs; drop the removal or the package"
    );
    let scripts: Vec<String> = inside.calls().iter().map(|c| c.argv.join(" ")).collect();
    assert_eq!(scripts.len(), 2, "{scripts:?}");
    assert!(scripts[1].contains("apt-get -s -q purge"), "{scripts:?}");

    // A harmless purge goes through, and the manifest's packages show it.
    let inside = FakeInside::with_packages(&["tzdata"], "Purg tzdata [1.0]\n");
    let req = dirs.request(&repo, repo.plan("ve/test"), "out2", Arc::new(Events::default()));
    let built = build_with(&req, &inside, &FakeHost::default()).expect("the build");
    let names: Vec<&str> = built.manifest.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["less"]);
    assert_eq!(built.manifest.stages[1].stage, Stage::Packages);
}

#[test]
fn subprofiles_are_the_image_tree_plus_their_additions() {
    let repo = TestRepo::new(&[
        ("kiln.toml", KILN),
        (
            "images/distro/test.toml",
            "use = [\"f\"]\nsubprofiles = [\"sub\"]\noutputs = [\"squashfs\"]\n\
             [subprofile.sub]\npackages = [\"hello\"]\n",
        ),
        ("features/f/feature.toml", "description = \"f\"\n"),
        ("features/f/files/etc/motd", "hello\n"),
        ("features/f/sub/files/etc/only-sub", "sub\n"),
        (
            "features/f/sub/image-scripts.d/10-mark",
            "#!/bin/sh\ntouch /etc/sub-mark\n",
        ),
    ]);
    let plan = repo.plan("distro/test");
    let dirs = Dirs::new();
    let mut req = dirs.request(&repo, plan.clone(), "out", Arc::new(Events::default()));
    req.cache = Some(dirs.cache());
    let (inside, host) = (FakeInside::default(), FakeHost::default());
    let built = build_with(&req, &inside, &host).expect("the build");
    let sub = &plan.subprofiles[0];
    let out = files_of(&req.outdir);
    let sub_list = &out[&sub.file];
    let main_list = &out[&format!("{}.{}.squashfs", plan.nvr, plan.arch)];
    for path in ["etc/only-sub", "etc/sub-mark", "etc/apt-installed"] {
        assert!(sub_list.lines().any(|l| l == path), "{path} not in the subprofile");
        assert!(!main_list.lines().any(|l| l == path), "{path} leaked into the image");
    }
    assert!(sub_list.lines().any(|l| l == "etc/motd"));
    // The subprofile's tree is an overlay of every layer of the image.
    let layers = host
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            HostCall::ReadOnly { layers, .. } => Some(layers),
            _ => None,
        })
        .next()
        .expect("the finished tree was mounted");
    let sub_overlay = host
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            HostCall::Overlay { lowers, target } if target.ends_with("tree") => Some(lowers),
            _ => None,
        })
        .next()
        .expect("the subprofile's overlay");
    assert_eq!(sub_overlay, layers);
    let mark = inside
        .calls()
        .into_iter()
        .find(|c| c.script.as_deref() == Some("10-mark"))
        .expect("the subprofile's script ran");
    assert!(mark.env.contains(&("KILN_SUBPROFILE".into(), "sub".into())));
    let apt = inside
        .calls()
        .into_iter()
        .find(|c| c.argv.join(" ").contains("apt-get install"))
        .expect("the subprofile's packages");
    assert!(apt.network);
    let outputs: Vec<(&str, Option<&str>)> = built
        .manifest
        .outputs
        .iter()
        .map(|o| (o.format.as_str(), o.subprofile.as_deref()))
        .collect();
    assert_eq!(outputs, [("squashfs", None), ("squashfs", Some("sub"))]);
    assert_eq!(built.manifest.scripts[0].subprofile.as_deref(), Some("sub"));
}

#[test]
fn build_side_scripts_see_the_repository_read_only() {
    let repo = test_repo();
    let plan = repo.plan("ve/test");
    let dirs = Dirs::new();
    let req = dirs.request(&repo, plan, "out", Arc::new(Events::default()));
    let inside = FakeInside::default();
    build_with(&req, &inside, &FakeHost::default()).expect("the build");
    let build_side = inside
        .calls()
        .into_iter()
        .find(|c| c.script.as_deref() == Some("30-build"))
        .expect("the build-side script");
    assert_eq!(build_side.view, View::Host);
    assert!(
        build_side.env.contains(&("KILN_ROOT".into(), HOST_VIEW_ROOT.into())),
        "{:?}",
        build_side.env
    );
    assert_eq!(build_side.cwd, HOST_VIEW_REPO);
    let binds: Vec<(&str, bool)> = build_side.binds.iter().map(|(_, t, ro)| (t.as_str(), *ro)).collect();
    assert_eq!(binds, [(HOST_VIEW_ROOT, false), (HOST_VIEW_REPO, true)]);
    assert_eq!(build_side.binds[1].0, repo.path());
}
