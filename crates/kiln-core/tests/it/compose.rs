//! Composition (docs/profiles.md § Composition): what a plan
//! contains and in which order, with provenance.

use kiln_core::macros::MacroLayer;
use kiln_core::plan::{Base, FileEntry};

use crate::support::*;

// ----- extends ----------------------------------------------------------------

#[test]
fn extends_chain_is_parents_first_depth_first_each_image_once() {
    // A diamond: img → (left, right), both → base; left also → extra.
    let files = [
        KILN,
        ("images/base.toml", "kind = \"ve\"\n"),
        ("images/extra.toml", "kind = \"ve\"\n"),
        ("images/left.toml", "extends = [\"base\", \"extra\"]\n"),
        ("images/right.toml", "extends = [\"base\"]\n"),
        ("images/img.toml", "extends = [\"left\", \"right\"]\n"),
    ];
    let p = plan(&files);
    assert_eq!(chain(&p), ["base", "extra", "left", "right", "img"]);
    assert_eq!(p.chain[4].file, "images/img.toml");
}

#[test]
fn extends_order_follows_the_list_not_the_names() {
    let files = [
        KILN,
        ("images/a.toml", "kind = \"ve\"\n"),
        ("images/b.toml", "kind = \"ve\"\n"),
        ("images/img.toml", "extends = [\"b\", \"a\"]\n"),
    ];
    assert_eq!(chain(&plan(&files)), ["b", "a", "img"]);
}

#[test]
fn a_child_overrides_a_parent_scalar_and_keeps_what_it_overrode() {
    let files = [
        KILN,
        ("images/grand.toml", "kind = \"ve\"\ndescription = \"grand\"\n"),
        (
            "images/parent.toml",
            "extends = [\"grand\"]\ndescription = \"parent\"\n",
        ),
        ("images/img.toml", "extends = [\"parent\"]\ndescription = \"child\"\n"),
    ];
    let p = plan(&files);
    let d = p.description.expect("description");
    assert_eq!(d.value, "child");
    assert_eq!(prov(&d.origin), "images/img.toml:2:15");
    let lost: Vec<String> = d
        .overrode
        .iter()
        .map(|o| format!("{} @ {}", o.value, o.origin))
        .collect();
    assert_eq!(
        lost,
        ["parent @ images/parent.toml:2:15", "grand @ images/grand.toml:2:15"],
        "most recent first"
    );
    // The kind comes from the grandparent, untouched.
    assert_eq!(p.kind.value, "ve");
    assert_eq!(prov(&p.kind.origin), "images/grand.toml:1:8");
    assert!(p.kind.overrode.is_empty());
}

// ----- features ---------------------------------------------------------------

#[test]
fn features_ancestors_first_then_own_requires_before_each_once() {
    let files = [
        KILN,
        ("features/a/feature.toml", "requires = [\"r\"]\n"),
        ("features/b/feature.toml", ""),
        ("features/p/feature.toml", "requires = [\"q\"]\n"),
        ("features/q/feature.toml", ""),
        ("features/r/feature.toml", "requires = [\"q\"]\n"),
        ("images/parent.toml", "kind = \"ve\"\nuse = [\"p\", \"b\"]\n"),
        (
            "images/img.toml",
            "extends = [\"parent\"]\nuse = [\"a\", \"b\", \"p\", \"a\"]\n",
        ),
    ];
    let p = plan(&files);
    assert_eq!(features(&p), ["q", "p", "b", "r", "a"]);
    // Who pulled each feature in first.
    let by: Vec<String> = p
        .features
        .iter()
        .map(|f| format!("{} {}", f.name, f.requested_by))
        .collect();
    assert_eq!(
        by,
        [
            "q features/p/feature.toml:1:13",
            "p images/parent.toml:2:8",
            "b images/parent.toml:2:13",
            "r features/a/feature.toml:1:13",
            "a images/img.toml:2:8",
        ]
    );
}

const NET: (&str, &str) = (
    "features/net/feature.toml",
    r#"packages = ["net-base"]
[macros]
mode = "none"
[variants.dhcp]
packages = ["isc-dhcp-client"]
[variants.dhcp.macros]
mode = "dhcp"
[variants.static]
packages = ["ifupdown"]
requires = ["netcore"]
"#,
);

#[test]
fn a_variant_applies_its_packages_and_macros_right_after_its_feature() {
    let later = ("features/later/feature.toml", "[macros]\nmode = \"later\"\n");
    let core = ("features/netcore/feature.toml", "");

    // net/dhcp, then a later feature: the later feature wins the macro.
    let files = [
        KILN,
        NET,
        later,
        core,
        ("images/img.toml", "kind = \"ve\"\nuse = [\"net/dhcp\", \"later\"]\n"),
    ];
    let p = plan(&files);
    assert_eq!(features(&p), ["net/dhcp", "later"]);
    assert_eq!(p.package_names(), ["isc-dhcp-client", "net-base"]);
    assert_eq!(
        prov(&package(&p, "isc-dhcp-client").origin),
        "features/net/feature.toml:5:13"
    );
    assert_eq!(
        macro_line(&p, "mode"),
        "mode = later (feature) @ features/later/feature.toml:2:8"
    );

    // The other way round the variant wins, over its own feature too.
    let files = [
        KILN,
        NET,
        later,
        core,
        ("images/img.toml", "kind = \"ve\"\nuse = [\"later\", \"net/dhcp\"]\n"),
    ];
    let p = plan(&files);
    assert_eq!(
        macro_line(&p, "mode"),
        "mode = dhcp (feature) @ features/net/feature.toml:7:8"
    );
    let m = p.macros.iter().find(|m| m.name == "mode").expect("mode");
    let lost: Vec<String> = m
        .overrode
        .iter()
        .map(|o| format!("{} @ {}", o.value, o.origin))
        .collect();
    assert_eq!(
        lost,
        [
            "none @ features/net/feature.toml:3:8",
            "later @ features/later/feature.toml:2:8"
        ]
    );
}

#[test]
fn two_variants_of_one_feature_accumulate_and_bring_their_requires() {
    let files = [
        KILN,
        NET,
        ("features/netcore/feature.toml", "packages = [\"core\"]\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nuse = [\"net/static\", \"net/dhcp\"]\n",
        ),
    ];
    let p = plan(&files);
    assert_eq!(features(&p), ["netcore", "net/static,dhcp"]);
    assert_eq!(p.package_names(), ["core", "ifupdown", "isc-dhcp-client", "net-base"]);
}

#[test]
fn a_variant_requires_goes_before_the_feature() {
    let files = [
        KILN,
        NET,
        ("features/netcore/feature.toml", ""),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"net/static\"]\n"),
    ];
    let p = plan(&files);
    assert_eq!(features(&p), ["netcore", "net/static"]);
    assert_eq!(prov(&p.features[0].requested_by), "features/net/feature.toml:10:13");
}

// ----- scalars ------------------------------------------------------------------

/// A repository as `(path, text)` pairs.
type Files<'a> = [(&'a str, &'a str)];

#[test]
fn scalar_layers_defaults_then_features_then_parents_then_image() {
    let kiln = (
        "kiln.toml",
        "[defaults.base]\nsuite = \"bookworm\"\n[defaults.output.squashfs]\nlevel = 5\n",
    );
    let feature = ("features/f/feature.toml", "[output.squashfs]\nlevel = 10\n");
    let parent = ("images/parent.toml", "kind = \"ve\"\n[output.squashfs]\nlevel = 12\n");
    let image = (
        "images/img.toml",
        "extends = [\"parent\"]\nuse = [\"f\"]\n[output.squashfs]\nlevel = 15\n",
    );
    // Drop the highest layer one at a time: the next one down wins.
    let cases: [(&Files, i64, &str, usize); 4] = [
        (&[kiln, feature, parent, image], 15, "images/img.toml:4:9", 3),
        (
            &[
                kiln,
                feature,
                parent,
                ("images/img.toml", "extends = [\"parent\"]\nuse = [\"f\"]\n"),
            ],
            12,
            "images/parent.toml:3:9",
            2,
        ),
        (
            &[
                kiln,
                feature,
                ("images/parent.toml", "kind = \"ve\"\n"),
                ("images/img.toml", "extends = [\"parent\"]\nuse = [\"f\"]\n"),
            ],
            10,
            "features/f/feature.toml:2:9",
            1,
        ),
        (
            &[
                kiln,
                ("features/f/feature.toml", ""),
                ("images/parent.toml", "kind = \"ve\"\n"),
                ("images/img.toml", "extends = [\"parent\"]\nuse = [\"f\"]\n"),
            ],
            5,
            "kiln.toml:4:9",
            0,
        ),
    ];
    for (files, value, origin, lost) in cases {
        let p = plan(files);
        assert_eq!(p.outputs.len(), 1);
        let level = &p.outputs[0].options["level"];
        assert_eq!(level.value, serde_json::json!(value));
        assert_eq!(prov(&level.origin), origin);
        assert_eq!(level.overrode.len(), lost);
    }

    let p = plan(&[kiln, feature, parent, image]);
    let lost: Vec<String> = p.outputs[0].options["level"]
        .overrode
        .iter()
        .map(|o| format!("{} @ {}", o.value, o.origin))
        .collect();
    assert_eq!(
        lost,
        [
            "12 @ images/parent.toml:3:9",
            "10 @ features/f/feature.toml:2:9",
            "5 @ kiln.toml:4:9"
        ]
    );
}

#[test]
fn outputs_are_replaced_as_a_whole() {
    let files = [
        (
            "kiln.toml",
            "outputs = []\n[defaults]\noutputs = [\"tar\", \"erofs\"]\n[defaults.base]\nsuite = \"b\"\n",
        ),
        ("images/img.toml", "kind = \"ve\"\noutputs = [\"dir\"]\n"),
    ];
    // `outputs` at the top of kiln.toml is not a kiln.toml field.
    assert_eq!(
        diagnostics(&files),
        ["kiln.toml:1:1: error[unknown-field]: unknown field `outputs` in kiln.toml"]
    );
    let files = [
        (
            "kiln.toml",
            "[defaults]\noutputs = [\"tar\", \"erofs\"]\n[defaults.base]\nsuite = \"b\"\n",
        ),
        ("images/img.toml", "kind = \"ve\"\noutputs = [\"dir\"]\n"),
    ];
    let p = plan(&files);
    let formats: Vec<&str> = p.outputs.iter().map(|o| o.format.as_str()).collect();
    assert_eq!(formats, ["dir"]);
}

// ----- packages -----------------------------------------------------------------

#[test]
fn plain_lists_comments_blank_lines_and_several_per_line() {
    let files = [
        KILN,
        ("lists/base", "# the base\nless\nvim-tiny # editor\n\n   \ncurl  wget\n"),
        ("lists/sub/extra", "jq\n"),
        ("images/img.toml", "kind = \"ve\"\nlists = [\"base\", \"sub/extra\"]\n"),
    ];
    let p = plan(&files);
    assert_eq!(p.package_names(), ["curl", "jq", "less", "vim-tiny", "wget"]);
    let wget = package(&p, "wget");
    assert_eq!(prov(&wget.origin), "lists/base:6:7");
    assert_eq!(wget.via.as_ref().map(prov).as_deref(), Some("images/img.toml:2:10"));
    let lists: Vec<(&str, bool)> = p.lists.iter().map(|l| (l.name.as_str(), l.tagged)).collect();
    assert_eq!(lists, [("base", false), ("sub/extra", false)]);
}

#[test]
fn tagged_lists_are_selected_by_expressions() {
    let lists = [
        ("lists/tagged/base+server", "srv\n"),
        ("lists/tagged/base+desktop", "desk\n"),
        ("lists/tagged/net", "netpkg\n"),
        ("lists/tagged/base+net+server", "bns\n"),
    ];
    let cases: &[(&str, &[&str])] = &[
        ("base", &["bns", "desk", "srv"]),
        ("base server", &["bns", "srv"]),
        ("base && server", &["bns", "srv"]),
        ("base && !server", &["desk"]),
        ("!base", &["netpkg"]),
        ("net || desktop", &["bns", "desk", "netpkg"]),
        ("base && (server || net)", &["bns", "srv"]),
        ("base server || net", &["bns", "netpkg", "srv"]),
        ("base (server || net)", &["bns", "srv"]),
        ("!(base || net)", &[]),
        ("!!net", &["bns", "netpkg"]),
    ];
    for (expr, expected) in cases {
        let image = format!("kind = \"ve\"\ntagged = \"{expr}\"\n");
        let mut files = vec![KILN, ("images/img.toml", image.as_str())];
        files.extend(lists);
        let (repo, r) = resolution(&files, "img", &opts("amd64"));
        let p = r
            .plan
            .unwrap_or_else(|| panic!("{expr}: {:?}", shorts(&repo, &r.diagnostics)));
        assert_eq!(p.package_names(), *expected, "tagged = {expr:?}");
        if expected.is_empty() {
            assert_eq!(
                shorts(&repo, &r.diagnostics),
                [format!(
                    "images/img.toml:2:10: warning[empty-tag-selection]: tag expression `{expr}` selects no tagged list"
                )]
            );
        } else {
            assert_eq!(shorts(&repo, &r.diagnostics), Vec::<String>::new(), "{expr}");
        }
    }
    // Selected lists are applied in file-name order.
    let mut files = vec![KILN, ("images/img.toml", "kind = \"ve\"\ntagged = \"base\"\n")];
    files.extend(lists);
    let p = plan(&files);
    let used: Vec<(&str, bool)> = p.lists.iter().map(|l| (l.name.as_str(), l.tagged)).collect();
    assert_eq!(
        used,
        [("base+desktop", true), ("base+net+server", true), ("base+server", true)]
    );
}

#[test]
fn tagged_expressions_of_every_layer_append() {
    let files = [
        (
            "kiln.toml",
            "[defaults]\ntagged = \"a\"\n[defaults.base]\nsuite = \"bookworm\"\n",
        ),
        ("features/f/feature.toml", "tagged = \"b\"\n"),
        ("lists/tagged/a", "pa\n"),
        ("lists/tagged/b", "pb\n"),
        ("lists/tagged/c", "pc\n"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"f\"]\ntagged = \"c\"\n"),
    ];
    assert_eq!(plan(&files).package_names(), ["pa", "pb", "pc"]);
}

#[test]
fn removal_by_bang_entries_and_remove_then_re_adding() {
    let files = [
        KILN,
        (
            "features/f/feature.toml",
            "packages = [\"vim\", \"nano\", \"htop\", \"mc\"]\n",
        ),
        (
            "images/parent.toml",
            "kind = \"ve\"\nuse = [\"f\"]\npackages = [\"!nano\"]\nremove = [\"htop\"]\n",
        ),
        ("lists/extra", "vim\n!mc\n"),
        (
            "images/img.toml",
            "extends = [\"parent\"]\nlists = [\"extra\"]\npackages = [\"htop\"]\n",
        ),
    ];
    let p = plan(&files);
    assert_eq!(p.package_names(), ["htop", "vim"]);
    // htop: added by the feature, removed by the parent, added back by the image.
    assert_eq!(
        history(package(&p, "htop")),
        [
            "images/img.toml:3:13",
            "removed images/parent.toml:4:11",
            "added features/f/feature.toml:1:28",
        ]
    );
    // vim: added twice, the list line wins and remembers the feature.
    assert_eq!(
        history(package(&p, "vim")),
        ["lists/extra:1:1", "added features/f/feature.toml:1:13"]
    );
    let removed: Vec<String> = p
        .removed
        .iter()
        .map(|r| {
            let undone: Vec<String> = r.removed.iter().map(prov).collect();
            format!("{} by {} undoing {}", r.name, r.origin, undone.join(","))
        })
        .collect();
    assert_eq!(
        removed,
        [
            "mc by lists/extra:2:1 undoing features/f/feature.toml:1:36",
            "nano by images/parent.toml:3:13 undoing features/f/feature.toml:1:20",
        ]
    );
}

#[test]
fn within_one_definition_lists_then_tagged_then_packages_then_remove() {
    let files = [
        KILN,
        ("lists/l", "from-list\nboth\n"),
        ("lists/tagged/t", "from-tagged\n!from-list\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nremove = [\"both\"]\npackages = [\"!from-tagged\", \"both\", \"kept\"]\ntagged = \"t\"\nlists = [\"l\"]\n",
        ),
    ];
    // lists adds from-list and both; tagged removes from-list and adds
    // from-tagged; packages removes from-tagged and re-adds both; remove
    // drops both — whatever the order the keys are written in.
    assert_eq!(plan(&files).package_names(), ["kept"]);
}

#[test]
fn removing_what_a_default_added_and_a_version_pin_counts_as_the_package() {
    let files = [
        (
            "kiln.toml",
            "[defaults]\npackages = [\"nano\", \"libc6=2.36-9\"]\n[defaults.base]\nsuite = \"bookworm\"\n",
        ),
        ("features/f/feature.toml", "remove = [\"nano\"]\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nuse = [\"f\"]\npackages = [\"!libc6\"]\n",
        ),
    ];
    let p = plan(&files);
    assert!(p.packages.is_empty(), "{:?}", p.package_names());
    let removed: Vec<&str> = p.removed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(removed, ["libc6", "nano"]);
}

#[test]
fn a_removal_of_what_the_set_never_had_is_kept_for_the_base() {
    // e2fsprogs comes with the bootstrap variant, not from a list: the
    // removal stays in the plan (nothing undone) so the build purges it.
    let files = [
        KILN,
        (
            "images/img.toml",
            "kind = \"ve\"\npackages = [\"nano\", \"!e2fsprogs\"]\nremove = [\"e2fsprogs\"]\n",
        ),
    ];
    let p = plan(&files);
    assert_eq!(p.package_names(), ["nano"]);
    assert_eq!(p.removed.len(), 1);
    assert_eq!(p.removed[0].name, "e2fsprogs");
    assert!(p.removed[0].removed.is_empty());
    assert!(
        p.removed[0].origin.to_string().starts_with("images/img.toml:3:"),
        "{}",
        p.removed[0].origin
    );
}

#[test]
fn architecture_filters_select_per_resolved_arch() {
    let files = [
        KILN,
        ("lists/l", "list-amd@amd64\nlist-not-arm@!arm64,!armhf\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nlists = [\"l\"]\npackages = [\"a64@amd64\", \"both@amd64,arm64\", \"notarm@!arm64\", \"plain\", \"r5@riscv64\"]\n",
        ),
    ];
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "amd64",
            &["a64", "both", "list-amd", "list-not-arm", "notarm", "plain"],
            &["r5"],
        ),
        (
            "arm64",
            &["both", "plain"],
            &["a64", "list-amd", "list-not-arm", "notarm", "r5"],
        ),
        (
            "riscv64",
            &["list-not-arm", "notarm", "plain", "r5"],
            &["a64", "both", "list-amd"],
        ),
    ];
    for (arch, included, excluded) in cases {
        let p = plan_for(&files, "img", &opts(arch));
        assert_eq!(p.arch, *arch);
        assert_eq!(p.package_names(), *included, "packages for {arch}");
        assert_eq!(names(&p.arch_excluded), *excluded, "excluded for {arch}");
    }
    let p = plan_for(&files, "img", &opts("arm64"));
    let filters: Vec<String> = p
        .arch_excluded
        .iter()
        .map(|x| format!("{}@{}", x.name, x.arch.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        filters,
        [
            "a64@amd64",
            "list-amd@amd64",
            "list-not-arm@!arm64,!armhf",
            "notarm@!arm64",
            "r5@riscv64"
        ]
    );
    assert_eq!(package(&p, "both").arch.as_deref(), Some("amd64,arm64"));
    assert_eq!(package(&p, "plain").arch, None);
}

#[test]
fn a_later_entry_replaces_an_earlier_arch_filter() {
    let files = [
        KILN,
        ("features/f/feature.toml", "packages = [\"grub-pc@amd64\"]\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nuse = [\"f\"]\npackages = [\"grub-pc\"]\n",
        ),
    ];
    let p = plan_for(&files, "img", &opts("arm64"));
    assert_eq!(p.package_names(), ["grub-pc"]);
    assert!(p.arch_excluded.is_empty());
}

#[test]
fn duplicate_packages_appear_once() {
    let files = [
        KILN,
        ("lists/l", "vim vim\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nlists = [\"l\", \"l\"]\npackages = [\"vim\", \"vim\"]\n",
        ),
    ];
    let p = plan(&files);
    assert_eq!(p.package_names(), ["vim"]);
    let h = history(package(&p, "vim"));
    assert_eq!(h.len(), 6, "{h:?}");
    assert_eq!(h[0], "images/img.toml:3:20");
    assert_eq!(h[1], "added images/img.toml:3:13");
    assert_eq!(h[5], "added lists/l:1:1");
}

// ----- subprofiles --------------------------------------------------------------

fn distro_files() -> Vec<(&'static str, &'static str)> {
    vec![
        KILN,
        (
            "features/livef/feature.toml",
            "packages = [\"main-pkg\", \"gone-in-live\"]\n[subprofile.live]\npackages = [\"live-extra\"]\nremove = [\"gone-in-live\"]\n",
        ),
        ("features/livef/live/files/etc/live.conf", "x"),
        ("features/livef/live/image-scripts.d/50-live", SCRIPT),
        ("features/livef/live/scripts.d/60-live-build", SCRIPT),
        ("features/livef/rescue/files/etc/rescue.conf", "x"),
        ("features/livef/files/etc/motd", "main"),
        ("features/livef/live/files/etc/motd", "live"),
        ("features/livef/image-scripts.d/10-main", SCRIPT),
        ("features/livef/tagged/image-scripts.d/01+live+livef", SCRIPT),
        ("features/livef/tagged/image-scripts.d/02+livef+other", SCRIPT),
        ("features/livef/tagged/image-scripts.d/03+rescue", SCRIPT),
        ("features/livef/tagged/image-scripts.d/04+livef+unused", SCRIPT),
        ("features/livef/tagged/scripts.d/05+live", SCRIPT),
        ("features/other/feature.toml", ""),
        ("features/unused/feature.toml", ""),
        (
            "images/img.toml",
            "kind = \"distro\"\nuse = [\"livef\", \"other\"]\nsubprofiles = [\"live\"]\n[subprofile.live]\npackages = [\"live-boot\"]\n",
        ),
    ]
}

#[test]
fn subprofile_packages_go_only_to_that_subprofile() {
    let p = plan(&distro_files());
    assert_eq!(p.package_names(), ["gone-in-live", "main-pkg"]);
    assert_eq!(p.subprofiles.len(), 1);
    let live = &p.subprofiles[0];
    assert_eq!(live.name, "live");
    assert_eq!(prov(&live.origin), "images/img.toml:3:16");
    assert_eq!(live.file, "img-live-0-1.amd64.squashfs");
    assert_eq!(names(&live.packages), ["live-boot", "live-extra"]);
    let removed: Vec<&str> = live.removed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(removed, ["gone-in-live"]);
    assert!(p.removed.is_empty());
}

#[test]
fn subprofile_folders_of_features_and_tagged_scripts() {
    let p = plan(&distro_files());
    // Main image: the feature's own files and scripts; tagged scripts whose
    // tags are all features in use.
    let main_files: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(main_files, ["/etc/motd"]);
    assert_eq!(scripts(&p.image_scripts), ["livef:02+livef+other", "livef:10-main"]);
    assert!(p.scripts.is_empty(), "{:?}", scripts(&p.scripts));

    // Subprofile live: its folder, plus tagged scripts whose other tags are features.
    let live = &p.subprofiles[0];
    let files: Vec<(&str, &str, Option<&str>)> = live
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.source.as_str(), f.overrode.as_deref()))
        .collect();
    assert_eq!(
        files,
        [
            ("/etc/live.conf", "features/livef/live/files/etc/live.conf", None),
            (
                "/etc/motd",
                "features/livef/live/files/etc/motd",
                Some("features/livef/files/etc/motd")
            ),
        ]
    );
    assert_eq!(scripts(&live.image_scripts), ["livef:01+live+livef", "livef:50-live"]);
    assert_eq!(scripts(&live.scripts), ["livef:05+live", "livef:60-live-build"]);
    assert_eq!(live.image_scripts[0].tags, ["live", "livef"]);
}

#[test]
fn several_subprofiles_each_get_their_own_additions() {
    let mut files = distro_files();
    files.pop();
    files.push((
        "images/img.toml",
        "kind = \"distro\"\nuse = [\"livef\", \"other\"]\nsubprofiles = [\"live\", \"rescue\"]\n[subprofile.live]\npackages = [\"live-boot\"]\n[subprofile.rescue]\npackages = [\"testdisk\"]\n",
    ));
    let p = plan(&files);
    let subs: Vec<(&str, Vec<&str>, usize, Vec<String>)> = p
        .subprofiles
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                names(&s.packages),
                s.files.len(),
                scripts(&s.image_scripts),
            )
        })
        .collect();
    assert_eq!(
        subs,
        [
            (
                "live",
                vec!["live-boot", "live-extra"],
                2,
                vec!["livef:01+live+livef".to_string(), "livef:50-live".to_string()]
            ),
            ("rescue", vec!["testdisk"], 1, vec!["livef:03+rescue".to_string()]),
        ]
    );
}

#[test]
fn subprofiles_declared_by_a_parent_are_built_by_the_child() {
    let files = [
        KILN,
        ("images/parent.toml", "kind = \"distro\"\nsubprofiles = [\"live\"]\n"),
        (
            "images/img.toml",
            "extends = [\"parent\"]\nsubprofiles = [\"live\"]\n[subprofile.live]\npackages = [\"live-boot\"]\n",
        ),
    ];
    let p = plan(&files);
    let subs: Vec<(&str, String)> = p
        .subprofiles
        .iter()
        .map(|s| (s.name.as_str(), prov(&s.origin)))
        .collect();
    assert_eq!(subs, [("live", "images/parent.toml:2:16".to_string())]);
    assert_eq!(names(&p.subprofiles[0].packages), ["live-boot"]);
}

// ----- files --------------------------------------------------------------------

fn file_row(f: &FileEntry) -> String {
    format!(
        "{} {} {} {} {}{}",
        f.path,
        f.feature,
        f.mode.as_deref().unwrap_or("-"),
        f.owner,
        f.source,
        f.overrode.as_deref().map(|o| format!(" over {o}")).unwrap_or_default()
    )
}

#[test]
fn feature_files_variant_files_overrides_and_attributes() {
    let files = [
        KILN,
        (
            "features/a/feature.toml",
            "[variants.v]\n[files.\"etc/secret\"]\nmode = \"0600\"\nowner = \"root:shadow\"\n[files.\"/usr/bin/tool\"]\nowner = \"0:0\"\n",
        ),
        ("features/a/files/etc/motd", "a"),
        ("features/a/files/etc/a.conf", "a"),
        ("features/a/files/etc/secret", "s"),
        ("features/a/files/usr/bin/tool", SCRIPT),
        ("features/a/variants/v/files/etc/a.conf", "v"),
        ("features/b/feature.toml", "override = [\"/etc/motd\"]\n"),
        ("features/b/files/etc/motd", "b"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"a/v\", \"b\"]\n"),
    ];
    let p = plan(&files);
    let rows: Vec<String> = p.files.iter().map(file_row).collect();
    assert_eq!(
        rows,
        [
            "/etc/a.conf a 0644 root:root features/a/variants/v/files/etc/a.conf over features/a/files/etc/a.conf",
            "/etc/motd b 0644 root:root features/b/files/etc/motd over features/a/files/etc/motd",
            "/etc/secret a 0600 root:shadow features/a/files/etc/secret",
            "/usr/bin/tool a 0755 0:0 features/a/files/usr/bin/tool",
        ]
    );
    assert!(p.files.iter().all(|f| f.kind == "file"));
}

#[test]
fn a_file_clash_without_override_is_an_error() {
    let files = [
        KILN,
        ("features/a/feature.toml", ""),
        ("features/a/files/etc/motd", "a"),
        ("features/b/feature.toml", ""),
        ("features/b/files/etc/motd", "b"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"a\", \"b\"]\n"),
    ];
    assert_eq!(
        diagnostics(&files),
        ["images/img.toml:2:13: error[file-clash]: file clash: `/etc/motd` is shipped by features `a` and `b`"]
    );
}

// ----- scripts ------------------------------------------------------------------

#[test]
fn scripts_feature_order_then_lexical_then_image_scripts() {
    let files = [
        KILN,
        ("features/a/feature.toml", "[variants.v]\n"),
        ("features/a/image-scripts.d/20-x", SCRIPT),
        ("features/a/image-scripts.d/10-y", SCRIPT),
        ("features/a/image-scripts.d/.hidden", SCRIPT),
        ("features/a/image-scripts.d/30-old~", SCRIPT),
        ("features/a/image-scripts.d/40-x.bak", SCRIPT),
        ("features/a/image-scripts.d/41-x.swp", SCRIPT),
        ("features/a/image-scripts.d/42-x.dpkg-old", SCRIPT),
        ("features/a/variants/v/image-scripts.d/15-v", SCRIPT),
        ("features/a/scripts.d/99-build", SCRIPT),
        ("features/b/feature.toml", "requires = [\"a\"]\n"),
        ("features/b/image-scripts.d/05-b", SCRIPT),
        ("features/b/scripts.d/01-build", SCRIPT),
        ("scripts/p.sh", SCRIPT),
        ("scripts/harden.sh", SCRIPT),
        ("images/parent.toml", "kind = \"ve\"\nscripts = [\"scripts/p.sh\"]\n"),
        (
            "images/img.toml",
            "extends = [\"parent\"]\nuse = [\"b\", \"a/v\"]\nscripts = [\"./scripts/harden.sh\", \"git+https://git.example.com/ops/s.git@v2:fix/it.sh\"]\n",
        ),
    ];
    let p = plan(&files);
    assert_eq!(features(&p), ["a/v", "b"]);
    assert_eq!(
        scripts(&p.image_scripts),
        [
            "a:10-y",
            "a:15-v",
            "a:20-x",
            "b:05-b",
            "image:p.sh",
            "image:harden.sh",
            "image:it.sh"
        ]
    );
    assert_eq!(scripts(&p.scripts), ["a:99-build", "b:01-build"]);
    let paths: Vec<Option<&str>> = p.image_scripts.iter().map(|s| s.path.as_deref()).collect();
    assert_eq!(
        paths,
        [
            Some("features/a/image-scripts.d/10-y"),
            Some("features/a/variants/v/image-scripts.d/15-v"),
            Some("features/a/image-scripts.d/20-x"),
            Some("features/b/image-scripts.d/05-b"),
            Some("scripts/p.sh"),
            Some("scripts/harden.sh"),
            None
        ]
    );
    let git = p.image_scripts[6].git.as_ref().expect("a git script");
    assert_eq!(
        (git.url.as_str(), git.rev.as_str(), git.path.as_str()),
        ("https://git.example.com/ops/s.git", "v2", "fix/it.sh")
    );
    assert_eq!(prov(&p.image_scripts[6].origin), "images/img.toml:3:35");
    assert_eq!(prov(&p.image_scripts[0].origin), "features/a/image-scripts.d/10-y");
}

#[test]
fn git_script_references_are_parsed() {
    use kiln_core::resolve::parse_git_ref;
    let cases: &[(&str, (&str, &str, &str))] = &[
        (
            "git+https://git.example.com/ops/s.git@v2:fix.sh",
            ("https://git.example.com/ops/s.git", "v2", "fix.sh"),
        ),
        (
            "git+ssh://git@example.com/ops/s.git@main:a/b.sh",
            ("ssh://git@example.com/ops/s.git", "main", "a/b.sh"),
        ),
        (
            "git+file:///srv/git/s.git@0123abc:x",
            ("file:///srv/git/s.git", "0123abc", "x"),
        ),
    ];
    for (text, (url, rev, path)) in cases {
        let g = parse_git_ref(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!((g.url.as_str(), g.rev.as_str(), g.path.as_str()), (*url, *rev, *path));
    }
    for bad in [
        "git+ftp://h/r.git@v1:x",
        "git+https://h/r.git",
        "git+https://h/r.git@v1",
        "git+https://h/r.git@:x",
        "git+https://h/r.git@v1:/abs",
        "git+https://h/r.git@v1:../up",
        "git+file://@v1:x",
    ] {
        assert!(parse_git_ref(bad).is_err(), "{bad} must be rejected");
    }
}

#[test]
fn git_script_path_may_contain_an_at_sign() {
    use kiln_core::resolve::parse_git_ref;
    // The ref is after the last `@` *followed by REF:PATH* (kiln_core::resolve), so a
    // path such as a systemd template unit must work.
    let g = parse_git_ref("git+https://h/r.git@v1:units/getty@.sh").expect("valid reference");
    assert_eq!(
        (g.url.as_str(), g.rev.as_str(), g.path.as_str()),
        ("https://h/r.git", "v1", "units/getty@.sh")
    );
}

// ----- macros -------------------------------------------------------------------

/// The seven layers, highest precedence first.
const LAYERS: [MacroLayer; 7] = MacroLayer::ALL;

fn layered_files(present: &[MacroLayer]) -> Vec<(&'static str, &'static str)> {
    let has = |l| present.contains(&l);
    vec![
        (
            "kiln.toml",
            if has(MacroLayer::Repo) {
                "[defaults.base]\nsuite = \"bookworm\"\n[macros]\nx = \"repo\"\n"
            } else {
                KILN.1
            },
        ),
        (
            "features/f/feature.toml",
            if has(MacroLayer::Feature) {
                "[macros]\nx = \"feature\"\n"
            } else {
                ""
            },
        ),
        (
            "images/img.toml",
            if has(MacroLayer::Image) {
                "kind = \"ve\"\nuse = [\"f\"]\ndescription = \"%{x}\"\n[macros]\nx = \"image\"\n"
            } else {
                "kind = \"ve\"\nuse = [\"f\"]\ndescription = \"%{x}\"\n"
            },
        ),
    ]
}

#[test]
fn macro_layers_highest_precedence_wins() {
    let expected = [
        "x = cli (cli) @ cli x",
        "x = target (target) @ target x",
        "x = builder (builder) @ builder x",
        "x = build-tag (build-tag) @ build-tag x",
        "x = image (image) @ images/img.toml:5:5",
        "x = feature (feature) @ features/f/feature.toml:2:5",
        "x = repo (repo) @ kiln.toml:4:5",
    ];
    // Remove the layers top-down, one at a time.
    for (top, want) in expected.iter().enumerate() {
        let present = &LAYERS[top..];
        let external: Vec<_> = present
            .iter()
            .filter(|l| **l < MacroLayer::Image)
            .map(|l| ext("x", l.as_str(), *l))
            .collect();
        let p = plan_for(&layered_files(present), "img", &opts_with("amd64", external));
        assert_eq!(macro_line(&p, "x"), *want, "layers {present:?}");
        let winner = want.split(' ').nth(2).expect("value");
        assert_eq!(p.description.as_ref().map(|d| d.value.as_str()), Some(winner));
        let m = p.macros.iter().find(|m| m.name == "x").expect("x");
        let lost: Vec<MacroLayer> = m.overrode.iter().map(|o| o.layer).collect();
        assert_eq!(lost, present[1..], "overrode, in decreasing precedence");
    }
}

#[test]
fn external_layers_given_in_any_order() {
    let external = vec![
        ext("x", "build-tag", MacroLayer::BuildTag),
        ext("x", "cli", MacroLayer::Cli),
        ext("x", "builder", MacroLayer::Builder),
        ext("x", "target", MacroLayer::Target),
    ];
    let p = plan_for(&layered_files(&LAYERS), "img", &opts_with("amd64", external));
    assert_eq!(macro_line(&p, "x"), "x = cli (cli) @ cli x");
    let lost: Vec<&str> = p.macros[0].overrode.iter().map(|o| o.value.as_str()).collect();
    assert_eq!(lost, ["target", "builder", "build-tag", "image", "feature", "repo"]);
}

#[test]
fn macro_layers_within_the_profile_child_over_parent_later_feature_variant() {
    let files = [
        KILN,
        ("features/early/feature.toml", "[macros]\nf = \"early\"\n"),
        (
            "features/late/feature.toml",
            "[macros]\nf = \"late\"\nv = \"late\"\n[variants.x.macros]\nv = \"variant\"\n",
        ),
        ("images/parent.toml", "kind = \"ve\"\n[macros]\ni = \"parent\"\n"),
        (
            "images/img.toml",
            "extends = [\"parent\"]\nuse = [\"early\", \"late/x\"]\n[macros]\ni = \"child\"\n",
        ),
    ];
    let p = plan(&files);
    assert_eq!(
        macro_line(&p, "f"),
        "f = late (feature) @ features/late/feature.toml:2:5"
    );
    assert_eq!(
        macro_line(&p, "v"),
        "v = variant (feature) @ features/late/feature.toml:5:5"
    );
    assert_eq!(macro_line(&p, "i"), "i = child (image) @ images/img.toml:4:5");
}

#[test]
fn macro_forms() {
    let kiln = (
        "kiln.toml",
        "[defaults.base]\nsuite = \"bookworm\"\n[macros]\ndist = \".k1\"\nempty = \"\"\na = \"<%{b}>\"\nb = \"%{c}\"\nc = \"x\"\n",
    );
    let cases: &[(&str, &str)] = &[
        ("%{dist}", ".k1"),
        ("1%{?dist}", "1.k1"),
        ("1%{?nope}", "1"),
        ("%{?dist:yes}", "yes"),
        ("%{?nope:yes}", ""),
        ("%{!?nope:no}", "no"),
        ("%{!?dist:no}", ""),
        ("%{?empty:set}", "set"),
        ("100%%", "100%"),
        ("%%{dist}", "%{dist}"),
        ("50% off %x", "50% off %x"),
        ("%{a}", "<x>"),
        ("%{?dist:%{a}%{dist}}", "<x>.k1"),
        ("%{!?nope:%{?dist}}", ".k1"),
    ];
    for (written, expanded) in cases {
        let image = format!("kind = \"ve\"\ndescription = '{written}'\n");
        let p = plan(&[kiln, ("images/img.toml", image.as_str())]);
        let d = p.description.expect("description");
        assert_eq!(d.value, *expanded, "{written}");
    }
}

#[test]
fn macros_in_list_entries_release_and_nvr() {
    let files = [
        (
            "kiln.toml",
            "[defaults]\nversion = \"1.4\"\nrelease = \"2%{?dist}\"\n[defaults.base]\nsuite = \"bookworm\"\n[macros]\ndist = \".k1\"\n",
        ),
        ("lists/base", "kernel-%{flavor}@amd64\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nname = \"srv-%{flavor}\"\nlists = [\"base\"]\npackages = [\"tool-%{flavor}\"]\nremove = [\"gone-%{flavor}\"]\noutputs = [\"squashfs\", \"tar.zst\", \"dir\"]\n[macros]\nflavor = \"cloud\"\n",
        ),
        ("features/none/feature.toml", ""),
    ];
    let p = plan(&files);
    assert_eq!(p.package_names(), ["kernel-cloud", "tool-cloud"]);
    assert_eq!(p.name.value, "srv-cloud");
    assert_eq!(p.version.value, "1.4");
    assert_eq!(p.release.value, "2.k1");
    assert_eq!(prov(&p.release.origin), "kiln.toml:3:11");
    assert_eq!(p.nvr, "srv-cloud-1.4-2.k1");
    let outputs: Vec<&str> = p.outputs.iter().map(|o| o.file.as_str()).collect();
    assert_eq!(
        outputs,
        [
            "srv-cloud-1.4-2.k1.amd64.squashfs",
            "srv-cloud-1.4-2.k1.amd64.tar.zst",
            "srv-cloud-1.4-2.k1.amd64"
        ]
    );
    let m = p.macros.iter().find(|m| m.name == "flavor").expect("flavor");
    assert_eq!((m.raw.as_str(), m.value.as_str()), ("cloud", "cloud"));
}

#[test]
fn a_macro_value_keeps_its_raw_text() {
    let files = [
        (
            "kiln.toml",
            "[defaults.base]\nsuite = \"bookworm\"\n[macros]\nvendor = \"ACME\"\nbanner = \"%{vendor} %{?dist:%{dist}}OS\"\n",
        ),
        ("images/img.toml", "kind = \"ve\"\n"),
    ];
    let p = plan(&files);
    let m = p.macros.iter().find(|m| m.name == "banner").expect("banner");
    assert_eq!(m.raw, "%{vendor} %{?dist:%{dist}}OS");
    assert_eq!(m.value, "ACME OS");
    let p = plan_for(
        &files,
        "img",
        &opts_with("amd64", vec![ext("dist", "9", MacroLayer::Cli)]),
    );
    let m = p.macros.iter().find(|m| m.name == "banner").expect("banner");
    assert_eq!(m.value, "ACME 9OS");
}

// ----- kind, name, outputs, base --------------------------------------------------

#[test]
fn kind_is_inferred_from_the_name_and_name_defaults_to_the_image_path() {
    let files = [
        KILN,
        (
            "images/ve/minimal.toml",
            "outputs = [\"squashfs\", \"tar.zst\", \"dir\"]\n",
        ),
        ("images/distro/live.toml", ""),
        ("images/vm/disk.toml", "name = \"disk\"\nversion = \"2\"\n"),
    ];
    let p = plan_for(&files, "ve/minimal", &opts("amd64"));
    assert_eq!(p.image, "ve/minimal");
    assert_eq!(p.kind.value, "ve");
    assert_eq!(prov(&p.kind.origin), "inferred from the image name `ve/minimal`");
    assert_eq!(p.name.value, "ve-minimal");
    assert_eq!(prov(&p.name.origin), "from the image name `ve/minimal`");
    assert_eq!(p.nvr, "ve-minimal-0-1");
    let outputs: Vec<(&str, &str)> = p.outputs.iter().map(|o| (o.format.as_str(), o.file.as_str())).collect();
    assert_eq!(
        outputs,
        [
            ("squashfs", "ve-minimal-0-1.amd64.squashfs"),
            ("tar.zst", "ve-minimal-0-1.amd64.tar.zst"),
            ("dir", "ve-minimal-0-1.amd64"),
        ]
    );

    let p = plan_for(&files, "distro/live", &opts("arm64"));
    assert_eq!((p.kind.value.as_str(), p.nvr.as_str()), ("distro", "distro-live-0-1"));
    assert_eq!(
        p.outputs[0].file, "distro-live-0-1.arm64.squashfs",
        "squashfs by default"
    );

    let p = plan_for(&files, "vm/disk", &opts("amd64"));
    assert_eq!((p.kind.value.as_str(), p.nvr.as_str()), ("vm", "disk-2-1"));
}

#[test]
fn an_explicit_kind_beats_the_name() {
    let files = [KILN, ("images/ve/box.toml", "kind = \"vm\"\n")];
    let p = plan_for(&files, "ve/box", &opts("amd64"));
    assert_eq!(p.kind.value, "vm");
    assert_eq!(prov(&p.kind.origin), "images/ve/box.toml:1:8");
}

#[test]
fn base_bootstrap_defaults_and_from_replacing_a_bootstrap() {
    let files = [
        (
            "kiln.toml",
            "[defaults.base]\nsuite = \"bookworm\"\nvariant = \"minbase\"\n",
        ),
        ("images/boot.toml", "kind = \"ve\"\n"),
        ("images/img.toml", "kind = \"ve\"\n[base]\nfrom = \"edge-os@2.3.1\"\n"),
    ];
    let p = plan_for(&files, "boot", &opts("amd64"));
    match &p.base {
        Base::Bootstrap {
            distribution,
            suite,
            variant,
            mirror,
            components,
        } => {
            assert_eq!(distribution.value, "debian");
            assert_eq!(prov(&distribution.origin), "kiln default");
            assert_eq!(suite.value, "bookworm");
            assert_eq!(variant.as_ref().map(|v| v.value.as_str()), Some("minbase"));
            assert!(mirror.is_none());
            assert_eq!(components.value, ["main"]);
        }
        other => panic!("expected a bootstrap, got {other:?}"),
    }
    let p = plan(&files);
    match &p.base {
        Base::Source { from, name, version } => {
            assert_eq!((name.as_str(), version.as_str()), ("edge-os", "2.3.1"));
            assert_eq!(prov(&from.origin), "images/img.toml:3:8");
            let lost: Vec<String> = from.overrode.iter().map(|o| o.value.clone()).collect();
            assert_eq!(lost, ["base.suite = \"bookworm\"", "base.variant = \"minbase\""]);
        }
        other => panic!("expected a source image, got {other:?}"),
    }
}

#[test]
fn build_settings_defaults_and_overrides() {
    let files = [
        KILN,
        ("features/f/feature.toml", "[build]\nnetwork = true\ntimeout = \"2h\"\n"),
        (
            "images/img.toml",
            "kind = \"ve\"\nuse = [\"f\"]\n[build]\ntimeout = 90\n",
        ),
    ];
    let p = plan(&files);
    assert!(p.build.network.value);
    assert_eq!(p.build.timeout.value, 90);
    assert_eq!(p.build.timeout.overrode[0].value, 7200);
    assert!(p.build.cleanup.value);
    assert_eq!(prov(&p.build.cleanup.origin), "kiln default");
}

#[test]
fn a_later_variant_requires_still_goes_before_the_feature() {
    // `requires`: "features placed before this one" — also for a variant
    // selected by a second `use` entry of the same feature.
    let files = [
        KILN,
        NET,
        ("features/netcore/feature.toml", ""),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"net\", \"net/static\"]\n"),
    ];
    assert_eq!(features(&plan(&files)), ["netcore", "net/static"]);
}

#[test]
fn macros_in_output_options_are_expanded() {
    let files = [
        KILN,
        (
            "images/img.toml",
            "kind = \"ve\"\noutputs = [\"squashfs\", \"ext4\"]\n[output.squashfs]\ncompression = \"%{comp}\"\nblock_size = \"%{bs}\"\n[output.ext4]\nsize = \"%{size}\"\n[macros]\ncomp = \"xz\"\nbs = \"1M\"\nsize = \"2G\"\n",
        ),
    ];
    let p = plan(&files);
    let opts: Vec<String> = p
        .outputs
        .iter()
        .flat_map(|o| {
            o.options
                .iter()
                .map(move |(k, v)| format!("{}.{k} = {}", o.format, v.value))
        })
        .collect();
    assert_eq!(
        opts,
        [
            "squashfs.block_size = \"1M\"",
            "squashfs.compression = \"xz\"",
            "ext4.size = \"2G\""
        ]
    );
}

#[test]
fn macros_in_file_owner_are_expanded() {
    let files = [
        KILN,
        (
            "features/f/feature.toml",
            "[files.\"etc/x\"]\nowner = \"%{user}:root\"\n[macros]\nuser = \"kiln\"\n",
        ),
        ("features/f/files/etc/x", "x"),
        ("images/img.toml", "kind = \"ve\"\nuse = [\"f\"]\n"),
    ];
    let p = plan(&files);
    assert_eq!(p.files[0].owner, "kiln:root");
}
