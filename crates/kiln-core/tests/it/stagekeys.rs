//! Stage keys (docs/cache.md): each input kind invalidates exactly the stage that
//! reads it and the stages after it, never an earlier one.

use std::collections::BTreeMap;

use kiln_core::plan::Plan;
use kiln_core::stagekey::{KeyInputs, StageId, StageKey, stage_keys};

use crate::support::{SCRIPT, plan};

const BASE: &str = "[defaults.base]\nsuite = \"bookworm\"\nvariant = \"minbase\"\ncomponents = [\"main\"]\n";
const IMAGE: &str = "kind = \"ve\"\nuse = [\"f\"]\npackages = [\"less\"]\nremove = [\"tzdata\"]\n\
     outputs = [\"squashfs\", \"tar.zst\"]\nscripts = [\"scripts/late.sh\"]\nmacros_file = \"/etc/kiln/macros\"\n\
     [macros]\nvendor = \"Acme\"\n[output.squashfs]\ncompression = \"zstd\"\n";

fn files(image: &str, kiln: &str) -> Vec<(String, String)> {
    vec![
        ("kiln.toml".into(), kiln.into()),
        ("images/img.toml".into(), image.into()),
        ("features/f/feature.toml".into(), "description = \"f\"\n".into()),
        ("features/f/files/etc/motd".into(), "hello\n".into()),
        ("features/f/image-scripts.d/10-first".into(), SCRIPT.into()),
        ("features/f/image-scripts.d/20-second".into(), SCRIPT.into()),
        ("features/f/scripts.d/30-build".into(), SCRIPT.into()),
        ("scripts/late.sh".into(), SCRIPT.into()),
    ]
}

fn resolve(image: &str, kiln: &str) -> Plan {
    let f = files(image, kiln);
    let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    plan(&refs)
}

fn inputs(plan: &Plan) -> KeyInputs {
    let mut files = BTreeMap::new();
    for p in kiln_core::stagekey::key_files(plan) {
        files.insert(p.clone(), format!("hash-of-{p}"));
    }
    KeyInputs {
        files,
        tools: [("mmdebstrap", "1.3.5"), ("mksquashfs", "4.5.1"), ("mkfs.erofs", "1.5")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        mirror_digest: Some("release-1".into()),
        epoch: Some(1_700_000_000),
        kiln_version: "0.1.0".into(),
    }
}

fn label(k: &StageKey) -> String {
    match &k.step {
        Some(s) => format!("{}:{s}", k.id.kind()),
        None => k.id.kind().to_string(),
    }
}

/// The labels of the stages whose key differs between two key lists.
fn changed(a: &[StageKey], b: &[StageKey]) -> Vec<String> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.key != y.key)
        .map(|(x, _)| label(x))
        .collect()
}

fn baseline() -> (Plan, KeyInputs, Vec<StageKey>) {
    let p = resolve(IMAGE, BASE);
    let i = inputs(&p);
    let k = stage_keys(&p, &i);
    (p, i, k)
}

const AFTER_BASE: [&str; 10] = [
    "packages",
    "files",
    "image-scripts:10-first",
    "image-scripts:20-second",
    "image-scripts:late.sh",
    "scripts:30-build",
    "cleanup",
    "outputs:img-0-1.amd64.squashfs",
    "outputs:img-0-1.amd64.tar.zst",
    "",
];

fn from(first: &str) -> Vec<String> {
    let all: Vec<&str> = std::iter::once("base")
        .chain(AFTER_BASE.iter().copied())
        .filter(|s| !s.is_empty())
        .collect();
    let at = all.iter().position(|s| *s == first).expect("known stage");
    all[at..].iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_stages_in_order() {
    let (_, _, k) = baseline();
    let labels: Vec<String> = k.iter().map(label).collect();
    assert_eq!(labels, from("base"));
    assert!(k.iter().all(|k| k.key.len() == 64));
    assert_eq!(k[0].id, StageId::Base);
}

#[test]
fn keys_are_deterministic() {
    let (p, i, k) = baseline();
    assert_eq!(stage_keys(&p, &i), k);
}

#[test]
fn a_script_edit_invalidates_from_that_script_on() {
    let (p, mut i, k) = baseline();
    i.files
        .insert("features/f/image-scripts.d/20-second".into(), "edited".into());
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("image-scripts:20-second"));
    let (p, mut i, k) = baseline();
    i.files.insert("features/f/scripts.d/30-build".into(), "edited".into());
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("scripts:30-build"));
    let (p, mut i, k) = baseline();
    i.files.insert("scripts/late.sh".into(), "edited".into());
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("image-scripts:late.sh"));
}

#[test]
fn a_feature_file_edit_invalidates_from_files_on() {
    let (p, mut i, k) = baseline();
    i.files.insert("features/f/files/etc/motd".into(), "edited".into());
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("files"));
}

#[test]
fn a_package_list_change_invalidates_everything() {
    let (_, i, k) = baseline();
    let p = resolve(&IMAGE.replace("\"less\"", "\"less\", \"nano\""), BASE);
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("base"));
}

#[test]
fn a_removal_change_invalidates_from_packages_on() {
    let (_, i, k) = baseline();
    let p = resolve(&IMAGE.replace("[\"tzdata\"]", "[\"tzdata\", \"e2fsprogs\"]"), BASE);
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("packages"));
}

#[test]
fn a_macro_value_invalidates_what_reads_macros() {
    let (_, i, k) = baseline();
    let p = resolve(&IMAGE.replace("\"Acme\"", "\"Other\""), BASE);
    // The macros file is written in the files stage; scripts see the macros.
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("files"));
    // Without a macros file the first reader is the first script.
    let plain = IMAGE.replace("macros_file = \"/etc/kiln/macros\"\n", "");
    let a = resolve(&plain, BASE);
    let b = resolve(&plain.replace("\"Acme\"", "\"Other\""), BASE);
    assert_eq!(
        changed(&stage_keys(&a, &inputs(&a)), &stage_keys(&b, &inputs(&b))),
        from("image-scripts:10-first")
    );
}

#[test]
fn a_base_option_or_mirror_state_invalidates_everything() {
    let (_, i, k) = baseline();
    let p = resolve(IMAGE, &BASE.replace("minbase", "buildd"));
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("base"));
    let (p, mut i, k) = baseline();
    i.mirror_digest = Some("release-2".into());
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("base"));
}

#[test]
fn a_tool_version_invalidates_only_the_stages_that_call_it() {
    let (p, mut i, k) = baseline();
    i.tools.insert("mksquashfs".into(), "4.6.1".into());
    assert_eq!(changed(&k, &stage_keys(&p, &i)), ["outputs:img-0-1.amd64.squashfs"]);
    let (p, mut i, k) = baseline();
    i.tools.insert("mmdebstrap".into(), "1.4.0".into());
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("base"));
    // A tool no stage calls changes nothing.
    let (p, mut i, k) = baseline();
    i.tools.insert("qemu-img".into(), "9".into());
    assert!(changed(&k, &stage_keys(&p, &i)).is_empty());
}

#[test]
fn an_output_option_invalidates_only_that_output() {
    let (_, i, k) = baseline();
    let p = resolve(&IMAGE.replace("compression = \"zstd\"", "compression = \"xz\""), BASE);
    assert_eq!(changed(&k, &stage_keys(&p, &i)), ["outputs:img-0-1.amd64.squashfs"]);
}

#[test]
fn the_epoch_reaches_scripts_and_outputs_not_the_base() {
    let (p, mut i, k) = baseline();
    i.epoch = Some(1);
    assert_eq!(changed(&k, &stage_keys(&p, &i)), from("image-scripts:10-first"));
}

#[test]
fn an_iso_follows_the_squashfs_files_it_packs() {
    let image = "kind = \"distro\"\nuse = [\"f\"]\nsubprofiles = [\"live\", \"rescue\", \"other\"]\n\
        outputs = [\"iso\", \"squashfs\"]\n[output.iso]\nextra = [\"rescue\"]\n\
        [subprofile.live]\npackages = [\"live-boot\"]\n[subprofile.rescue]\npackages = [\"testdisk\"]\n\
        [subprofile.other]\npackages = [\"vim\"]\n";
    let p = resolve(image, BASE);
    let i = inputs(&p);
    let k = stage_keys(&p, &i);
    // The ISO's key comes after every squashfs it may pack.
    let labels: Vec<String> = k.iter().map(label).collect();
    assert_eq!(
        labels.last().map(String::as_str),
        Some("outputs:img-0-1.amd64.iso"),
        "{labels:?}"
    );
    let iso_only = |edit: &str, with: &str| {
        let q = resolve(&image.replace(edit, with), BASE);
        changed(&k, &stage_keys(&q, &inputs(&q)))
    };
    // Its own options touch only it.
    assert_eq!(
        iso_only("extra = [\"rescue\"]", "extra = [\"rescue\"]\ntimeout = 9"),
        ["outputs:img-0-1.amd64.iso"]
    );
    // A packed subprofile changes it too; one it does not pack does not.
    assert_eq!(
        iso_only("\"testdisk\"", "\"gddrescue\""),
        ["outputs:img-rescue-0-1.amd64.squashfs", "outputs:img-0-1.amd64.iso"]
    );
    assert_eq!(
        iso_only("\"vim\"", "\"nano\""),
        ["outputs:img-other-0-1.amd64.squashfs"]
    );
    // So do its tools.
    let mut j = inputs(&p);
    j.tools.insert("xorriso".into(), "1.5.6".into());
    assert_eq!(changed(&k, &stage_keys(&p, &j)), ["outputs:img-0-1.amd64.iso"]);
}
