//! Arbitrary text as an image definition, a feature.toml, kiln.toml and a
//! package list, inside an otherwise well-formed repository: loading,
//! resolving, checking and printing the results must never panic.
//!
//! The input is split on NUL bytes into up to four parts (each decoded as
//! lossy UTF-8):
//!
//! 0. `images/ve/fuzz.toml`       (also resolved for two architectures)
//! 1. `features/fz/feature.toml`  (a feature with files, scripts, a variant
//!    folder, a subprofile folder and a tagged script)
//! 2. `kiln.toml`
//! 3. `lists/fz` and `lists/tagged/fz+net`
//!
//! Missing parts get a small valid default, so a mutation of one part is
//! still resolved against sensible others.

#![no_main]

use kiln_core::check::check;
use kiln_core::macros::MacroLayer;
use kiln_core::resolve::external_macro;
use kiln_core::snapshot::{Entry, EntryKind, Snapshot};
use kiln_core::{Repo, ResolveOptions, render, resolve};
use libfuzzer_sys::fuzz_target;

const DEFAULT_IMAGE: &str = "extends = [\"ve/base\"]\nuse = [\"fz/a\", \"base\"]\nlists = [\"fz\"]\n\
tagged = \"fz && !x\"\npackages = [\"foo@amd64\", \"!less\"]\nsubprofiles = []\n[macros]\nhostname = \"%{vendor}-fz\"\n";
const DEFAULT_FEATURE: &str = "requires = [\"base\"]\npackages = [\"fz-tool\"]\noverride = []\n\
[variants.a]\npackages = [\"fz-a\"]\n[files.\"etc/fz.conf\"]\nmode = \"0600\"\n";
const DEFAULT_CONFIG: &str = "[defaults]\nversion = \"1\"\nrelease = \"1%{?dist}\"\n\
[defaults.base]\nsuite = \"bookworm\"\n[macros]\ndist = \".fz\"\nvendor = \"Fuzz\"\n";
const DEFAULT_LIST: &str = "# list\nless\ncurl@!armhf\nvim@amd64,arm64\n";

fn snapshot(parts: &[String; 4]) -> Snapshot {
    let [image, feature, config, list] = parts;
    let mut s = Snapshot::new();
    s.add_file("kiln.toml", config)
        .add_file("images/ve/fuzz.toml", image)
        .add_file(
            "images/ve/base.toml",
            "kind = \"ve\"\nuse = [\"base\"]\nlists = [\"base\"]\noutputs = [\"squashfs\", \"tar.zst\"]\n",
        )
        .add_file(
            "images/distro/live.toml",
            "extends = [\"ve/fuzz\"]\nsubprofiles = [\"live\"]\n[subprofile.live]\npackages = [\"live-boot\"]\n",
        )
        .add_file("features/fz/feature.toml", feature)
        .add_file("features/fz/files/etc/fz.conf", "x = 1\n")
        .add_file("features/fz/files/etc/base.conf", "shadow\n")
        .add_script("features/fz/image-scripts.d/50-fz")
        .add_script("features/fz/scripts.d/10-fz")
        .add_script("features/fz/tagged/image-scripts.d/01+live+fz")
        .add_file("features/fz/variants/a/files/etc/fz-a.conf", "a\n")
        .add_file("features/fz/live/files/etc/fz-live.conf", "live\n")
        .add_file(
            "features/base/feature.toml",
            "packages = [\"base-files\"]\n[macros]\nbase_port = \"22\"\n",
        )
        .add_file("features/base/files/etc/base.conf", "base\n")
        .add_script("features/base/image-scripts.d/10-base")
        .add_file("lists/base", "ca-certificates\nless\n")
        .add_file("lists/fz", list)
        .add_file("lists/tagged/fz+net", list)
        .add_script("scripts/harden.sh");
    s.insert(
        "features/fz/files/etc/localtime",
        Entry {
            kind: EntryKind::Symlink {
                target: "/usr/share/zoneinfo/UTC".into(),
            },
            mode: 0o777,
            text: None,
        },
    );
    s
}

fuzz_target!(|data: &[u8]| {
    let mut parts: [String; 4] = [DEFAULT_IMAGE, DEFAULT_FEATURE, DEFAULT_CONFIG, DEFAULT_LIST].map(String::from);
    for (i, chunk) in data.split(|b| *b == 0).take(4).enumerate() {
        parts[i] = String::from_utf8_lossy(chunk).into_owned();
    }
    let repo = Repo::load(snapshot(&parts));
    for d in &repo.diagnostics {
        let _ = d.render(&repo.snapshot, false, 80);
    }
    let opts = ResolveOptions {
        arch: "amd64".into(),
        external_macros: vec![external_macro("hostname", "cli-%{dist}", MacroLayer::Cli, "--define hostname")],
    };
    for image in ["ve/fuzz", "distro/live"] {
        let res = resolve(&repo, image, &opts);
        for d in &res.diagnostics {
            let _ = d.short(&repo.snapshot);
            let _ = d.to_json(&repo.snapshot);
            let _ = d.render(&repo.snapshot, true, 100);
        }
        if let Some(plan) = &res.plan {
            let _ = render::plan_toml(plan);
            let _ = plan.to_json();
        }
    }
    let arm = ResolveOptions {
        arch: "armhf".into(),
        external_macros: Vec::new(),
    };
    let _ = resolve(&repo, "ve/fuzz", &arm);
    let report = check(&repo, &opts);
    for d in &report.diagnostics {
        let _ = d.render(&repo.snapshot, false, 60);
    }
});
