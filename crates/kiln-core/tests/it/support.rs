//! Helpers shared by the integration tests: an in-memory repository from a
//! list of `(path, text)` files, resolution and check wrappers, and compact
//! string renderings of plans and diagnostics so assertions compare strings.

#![allow(dead_code)]

use kiln_core::check::{self, Report};
use kiln_core::macros::{MacroDef, MacroLayer};
use kiln_core::plan::{Package, Plan, Provenance, Script};
use kiln_core::resolve::external_macro;
use kiln_core::{Diagnostic, Repo, Resolution, ResolveOptions, Snapshot, resolve};

/// Marks an entry of a file list as an executable script (added with
/// [`Snapshot::add_script`], no text). Paths inside a `*.d` folder and under
/// `scripts/` are scripts anyway.
pub const SCRIPT: &str = "\u{0}script";

/// The smallest `kiln.toml` that lets an image resolve: a bootstrap base.
pub const KILN: (&str, &str) = ("kiln.toml", "[defaults.base]\nsuite = \"bookworm\"\n");

fn is_script(path: &str, text: &str) -> bool {
    text == SCRIPT || path.starts_with("scripts/") || path.contains("/image-scripts.d/") || path.contains("/scripts.d/")
}

/// An in-memory repository snapshot.
pub fn snapshot(files: &[(&str, &str)]) -> Snapshot {
    let mut s = Snapshot::new();
    for (path, text) in files {
        if is_script(path, text) {
            s.add_script(path);
        } else {
            s.add_file(path, text);
        }
    }
    s
}

pub fn load(files: &[(&str, &str)]) -> Repo {
    Repo::load(snapshot(files))
}

pub fn opts(arch: &str) -> ResolveOptions {
    ResolveOptions {
        arch: arch.into(),
        external_macros: vec![],
    }
}

pub fn opts_with(arch: &str, external_macros: Vec<MacroDef>) -> ResolveOptions {
    ResolveOptions {
        arch: arch.into(),
        external_macros,
    }
}

/// A layer 1–4 macro definition.
pub fn ext(name: &str, value: &str, layer: MacroLayer) -> MacroDef {
    external_macro(name, value, layer, &format!("{layer} {name}"))
}

/// `file:line:col: severity[code]: message`.
pub fn short(repo: &Repo, d: &Diagnostic) -> String {
    d.short(&repo.snapshot)
}

pub fn shorts(repo: &Repo, diags: &[Diagnostic]) -> Vec<String> {
    diags.iter().map(|d| short(repo, d)).collect()
}

pub fn resolution(files: &[(&str, &str)], image: &str, o: &ResolveOptions) -> (Repo, Resolution) {
    let repo = load(files);
    let r = resolve(&repo, image, o);
    (repo, r)
}

/// Resolves `image` and returns its plan; fails the test with every
/// diagnostic when there is none.
pub fn plan_for(files: &[(&str, &str)], image: &str, o: &ResolveOptions) -> Plan {
    let (repo, r) = resolution(files, image, o);
    match r.plan {
        Some(p) => p,
        None => panic!(
            "`{image}` did not resolve:\n{}",
            shorts(&repo, &r.diagnostics).join("\n")
        ),
    }
}

/// The plan of image `img` for amd64.
pub fn plan(files: &[(&str, &str)]) -> Plan {
    plan_for(files, "img", &opts("amd64"))
}

/// Every diagnostic of resolving `image`, rendered with [`short`].
pub fn diagnostics_for(files: &[(&str, &str)], image: &str, o: &ResolveOptions) -> Vec<String> {
    let (repo, r) = resolution(files, image, o);
    shorts(&repo, &r.diagnostics)
}

/// Every diagnostic of resolving image `img` for amd64; the resolution must
/// have failed when one of them is an error.
pub fn diagnostics(files: &[(&str, &str)]) -> Vec<String> {
    let (repo, r) = resolution(files, "img", &opts("amd64"));
    let errors = r.diagnostics.iter().any(Diagnostic::is_error);
    assert_eq!(r.plan.is_none(), errors, "a plan exactly when there is no error");
    shorts(&repo, &r.diagnostics)
}

/// The single diagnostic of resolving image `img`.
pub fn the_diagnostic(files: &[(&str, &str)]) -> (String, Option<String>) {
    let (repo, r) = resolution(files, "img", &opts("amd64"));
    assert_eq!(
        r.diagnostics.len(),
        1,
        "expected one diagnostic, got:\n{}",
        shorts(&repo, &r.diagnostics).join("\n")
    );
    assert!(r.plan.is_none(), "an error leaves no plan");
    let d = &r.diagnostics[0];
    (short(&repo, d), d.help.clone())
}

pub fn check_report(files: &[(&str, &str)]) -> (Repo, Report) {
    let repo = load(files);
    let report = check::check(&repo, &opts("amd64"));
    (repo, report)
}

/// Every diagnostic `kiln check` reports, rendered with [`short`].
pub fn check_all(files: &[(&str, &str)]) -> Vec<String> {
    let (repo, report) = check_report(files);
    shorts(&repo, &report.diagnostics)
}

// ----- plan renderings -------------------------------------------------------

pub fn chain(p: &Plan) -> Vec<&str> {
    p.chain.iter().map(|c| c.image.as_str()).collect()
}

/// Features in order, `name` or `name/v1,v2`.
pub fn features(p: &Plan) -> Vec<String> {
    p.features
        .iter()
        .map(|f| {
            if f.variants.is_empty() {
                f.name.clone()
            } else {
                format!("{}/{}", f.name, f.variants.join(","))
            }
        })
        .collect()
}

pub fn names(pkgs: &[Package]) -> Vec<&str> {
    pkgs.iter().map(|p| p.name.as_str()).collect()
}

pub fn package<'p>(p: &'p Plan, name: &str) -> &'p Package {
    p.packages
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("package `{name}` not in {:?}", p.package_names()))
}

/// How a package entered the set: `origin` plus its earlier events,
/// e.g. `["images/img.toml:3:13", "removed images/img.toml:2:11", …]`.
pub fn history(pkg: &Package) -> Vec<String> {
    let mut out = vec![pkg.origin.to_string()];
    out.extend(pkg.overrode.iter().map(|e| format!("{} {}", e.action, e.origin)));
    out
}

/// Script names with their source: `feature:name` or `image:name`.
pub fn scripts(list: &[Script]) -> Vec<String> {
    list.iter()
        .map(|s| format!("{}:{}", s.feature.as_deref().unwrap_or("image"), s.name))
        .collect()
}

/// `name = value (layer) @ origin`.
pub fn macro_line(p: &Plan, name: &str) -> String {
    let m = p
        .macros
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("macro `{name}` not in the plan"));
    format!("{} = {} ({}) @ {}", m.name, m.value, m.layer, m.origin)
}

pub fn prov(p: &Provenance) -> String {
    p.to_string()
}
