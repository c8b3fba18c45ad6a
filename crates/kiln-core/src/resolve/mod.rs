//! Composition: one image of a [`Repo`] resolved into a [`Plan`] (docs/profiles.md).
//!
//! The order is fixed: linearize the `extends` chain, order the features,
//! build the macro table from all seven layers, then apply every definition
//! (defaults → features and their variants → the chain) to scalars, the
//! package set, files and scripts, expanding macros as values are read.
//!
//! Each step lives in its own module: `chain` (`extends`), `features`,
//! `macros` (the macro table and expansion), `scalars` and `settings`
//! (the image's settings), `packages`, `files`, `scripts`, `outputs`
//! and `subprofiles`; `git` parses remote references. This module runs
//! them in that order and assembles the plan.

mod chain;
mod features;
mod files;
mod git;
mod macros;
mod outputs;
mod packages;
mod scalars;
mod scripts;
mod settings;
mod subprofiles;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::diag::{Diagnostic, Span};
use crate::macros::{MacroDef, MacroLayer, MacroTable};
use crate::model::{Def, Origin};
use crate::plan::{self, PLAN_SCHEMA, Plan, Provenance};
use crate::repo::{Image, Repo};

use features::FeatSel;
pub use git::{parse_git_ref, parse_git_repo};
use packages::PkgSet;
use scalars::compose_scalars;
use settings::Settings;

/// Inputs of a resolution that do not come from the repository.
#[derive(Clone, Debug, Default)]
pub struct ResolveOptions {
    /// Debian architecture to resolve for (arch filters, file names).
    pub arch: String,
    /// Macro definitions of layers 1–4 (`--define`, target, builder config,
    /// build tag), in any order; each carries its layer.
    pub external_macros: Vec<MacroDef>,
}

/// The result of resolving one image: a plan when there was no error, and
/// every diagnostic found (warnings may accompany a plan).
#[derive(Clone, Debug)]
pub struct Resolution {
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Resolves `image` in `repo`.
pub fn resolve(repo: &Repo, image: &str, opts: &ResolveOptions) -> Resolution {
    let mut r = Resolver::new(repo, opts, true);
    let plan = r.run(image);
    let failed = r.diags.iter().any(Diagnostic::is_error);
    Resolution {
        plan: if failed { None } else { plan },
        diagnostics: r.diags,
    }
}

/// Finds every problem of `image` without building its plan (what `kiln
/// check` needs: the same diagnostics as [`resolve`], less work).
pub fn diagnose(repo: &Repo, image: &str, opts: &ResolveOptions) -> Vec<Diagnostic> {
    let mut r = Resolver::new(repo, opts, false);
    r.run(image);
    r.diags
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LayerKind<'a> {
    Defaults,
    Feature(&'a str),
    Image,
}

struct Layer<'a> {
    def: &'a Def,
    kind: LayerKind<'a>,
}

/// The definitions in application order: the defaults, each feature followed
/// by its variants, then the chain from its root to the image.
fn layers<'a>(repo: &'a Repo, features: &[FeatSel<'a>], chain: &[&'a Image]) -> Vec<Layer<'a>> {
    let mut layers: Vec<Layer<'a>> = vec![Layer {
        def: &repo.config.defaults,
        kind: LayerKind::Defaults,
    }];
    for sel in features {
        let f = &repo.features[sel.name];
        layers.push(Layer {
            def: &f.def,
            kind: LayerKind::Feature(sel.name),
        });
        for v in &sel.variants {
            if let Some(vd) = f.def.variant(v) {
                layers.push(Layer {
                    def: vd,
                    kind: LayerKind::Feature(sel.name),
                });
            }
        }
    }
    for img in chain {
        layers.push(Layer {
            def: &img.def,
            kind: LayerKind::Image,
        });
    }
    layers
}

struct Resolver<'a> {
    repo: &'a Repo,
    opts: &'a ResolveOptions,
    diags: Vec<Diagnostic>,
    macros: MacroTable,
    /// False when only diagnostics are wanted: provenance of the package
    /// sets is then not built.
    want_plan: bool,
}

impl<'a> Resolver<'a> {
    fn new(repo: &'a Repo, opts: &'a ResolveOptions, want_plan: bool) -> Self {
        Resolver {
            repo,
            opts,
            diags: Vec::new(),
            macros: MacroTable::default(),
            want_plan,
        }
    }

    fn prov(&self, origin: &Origin) -> Provenance {
        match origin {
            Origin::Source(span) => Provenance::Source(span.location(&self.repo.snapshot)),
            Origin::External(what) => Provenance::External { external: what.clone() },
            Origin::Default => Provenance::Default { default: true },
        }
    }

    fn span_prov(&self, span: &Span) -> Provenance {
        Provenance::Source(span.location(&self.repo.snapshot))
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Adds the parse-time diagnostics of a definition file this resolution
    /// uses; returns false when the file is not valid TOML.
    fn uses_file(&mut self, file: &Arc<str>) -> bool {
        if let Some(ds) = self.repo.file_diagnostics.get(file) {
            for d in ds {
                if !self.diags.contains(d) {
                    self.diags.push(d.clone());
                }
            }
        }
        !self.repo.broken.contains(file)
    }

    // ----- the run -----------------------------------------------------------

    fn run(&mut self, image: &str) -> Option<Plan> {
        let repo = self.repo;
        let (chain, leaf) = self.chain_of(image)?;
        let features = self.features_of(&chain)?;
        let layers = layers(repo, &features, &chain);
        self.build_macros(&layers);
        let scalars = compose_scalars(&layers);

        let mut list_uses = Vec::new();
        let mut pkgs = PkgSet::default();
        for layer in &layers {
            self.apply_packages(layer.def, &mut pkgs, &mut list_uses);
        }
        let sub_names = self.subprofile_names(&chain);

        let feature_names: BTreeSet<&str> = features.iter().map(|f| f.name).collect();
        let files = self.compose_files(&features, None);
        let mut image_scripts = self.feature_scripts(&features, &feature_names, None, true);
        let scripts = self.feature_scripts(&features, &feature_names, None, false);
        for img in &chain {
            for s in &img.def.scripts {
                if let Some(script) = self.image_script(s) {
                    image_scripts.push(script);
                }
            }
        }

        let settings = self.settings(leaf, &scalars, &sub_names);
        let (packages, arch_excluded, removed) = if self.want_plan {
            self.finish_packages(&pkgs)
        } else {
            Default::default()
        };
        let arch = self.opts.arch.clone();
        let nvr = settings.nvr();
        let title = match (&settings.name, &settings.version) {
            (Some(n), Some(v)) => format!("{} {}", n.value, v.value),
            _ => String::new(),
        };
        let outputs = self.outputs(&scalars, &nvr, &arch, &sub_names, &title);

        let mut subprofiles: Vec<plan::Subprofile> = sub_names
            .iter()
            .map(|s| self.subprofile(s, &features, &feature_names, &chain, &pkgs, &files))
            .collect();
        settings.name_subprofiles(&mut subprofiles, &arch);
        let macros = self.plan_macros();
        if !self.want_plan {
            return None;
        }

        let Settings {
            kind,
            name,
            version,
            release,
            description,
            macros_file,
            base,
            build,
        } = settings;
        Some(Plan {
            schema: PLAN_SCHEMA,
            image: leaf.name.clone(),
            arch,
            name: name?,
            nvr,
            kind: kind?,
            description,
            version: version?,
            release: release?,
            chain: chain_entries(&chain),
            features: self.feature_uses(&features),
            base: base?,
            lists: list_uses,
            packages,
            removed,
            arch_excluded,
            files,
            image_scripts,
            scripts,
            outputs,
            subprofiles,
            build,
            macros_file,
            macros,
        })
    }

    /// The `extends` chain of `image`, root first, and the image itself; None
    /// when the chain has a cycle or a file that is not valid TOML, or when
    /// the image does not exist.
    fn chain_of(&mut self, image: &str) -> Option<(Vec<&'a Image>, &'a Image)> {
        let repo = self.repo;
        let config_ok = self.uses_file(&repo.config.file);
        let chain = self.linearize(image);
        if self.diags.iter().any(|d| d.code == "extends-cycle") {
            return None;
        }
        let mut intact = config_ok;
        for img in &chain {
            intact &= self.uses_file(&img.file);
        }
        if !intact {
            // A definition that is not valid TOML reads as empty: resolving
            // further would only report consequences of the syntax error.
            return None;
        }
        let Some(&leaf) = chain.last().filter(|i| i.name == image) else {
            if !self.diags.iter().any(Diagnostic::is_error) {
                self.error(Diagnostic::error("unknown-image", format!("unknown image `{image}`")));
            }
            return None;
        };
        Some((chain, leaf))
    }

    /// The features of the chain in order; None when one of their files is
    /// not valid TOML.
    fn features_of(&mut self, chain: &[&'a Image]) -> Option<Vec<FeatSel<'a>>> {
        let repo = self.repo;
        let features = self.order_features(chain);
        let mut intact = true;
        for sel in &features {
            intact &= self.uses_file(&repo.features[sel.name].file);
        }
        intact.then_some(features)
    }

    /// The plan's record of the features used, with who requested each.
    fn feature_uses(&self, features: &[FeatSel<'a>]) -> Vec<plan::FeatureUse> {
        features
            .iter()
            .map(|f| plan::FeatureUse {
                name: f.name.to_string(),
                variants: f.variants.iter().map(|v| v.to_string()).collect(),
                file: self.repo.features[f.name].file.to_string(),
                requested_by: self.span_prov(&f.requested),
            })
            .collect()
    }
}

/// The plan's record of the `extends` chain.
fn chain_entries(chain: &[&Image]) -> Vec<plan::ChainEntry> {
    chain
        .iter()
        .map(|i| plan::ChainEntry {
            image: i.name.clone(),
            file: i.file.to_string(),
        })
        .collect()
}

fn join_names<'s>(names: impl Iterator<Item = &'s String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).take(12).collect();
    if v.is_empty() { "none".to_string() } else { v.join(", ") }
}

/// Builds an [`Origin::External`] macro definition (for `--define` and
/// other layers from outside the repository).
pub fn external_macro(name: &str, value: &str, layer: MacroLayer, origin: &str) -> MacroDef {
    MacroDef {
        name: name.to_string(),
        value: value.to_string(),
        layer,
        origin: Origin::External(origin.to_string()),
    }
}
