//! Composition: one image of a [`Repo`] resolved into a [`Plan`] (docs/profiles.md).
//!
//! The order is fixed: linearize the `extends` chain, order the features,
//! build the macro table from all seven layers, then apply every definition
//! (defaults → features and their variants → the chain) to scalars, the
//! package set, files and scripts, expanding macros as values are read.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::macros::{MacroDef, MacroError, MacroLayer, MacroTable};
use crate::model::{
    Def, KINDS, OUTPUT_FORMATS, Origin, Scalar, Sp, check_output_option, parse_name_at_version, valid_owner,
};
use crate::packages::{ArchFilter, PkgRef, parse_pkg};
use crate::plan::{self, PLAN_SCHEMA, Plan, Provenance};
use crate::repo::{Content, FileItem, Image, Repo, ScriptItem};
use crate::snapshot::EntryKind;

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

/// Splits `git+URL@TAIL` into the URL and what follows its `@`.
fn split_git_url(s: &str) -> Result<(&str, &str), String> {
    let rest = s.strip_prefix("git+").ok_or("a git reference starts with `git+`")?;
    let scheme_ok = ["https://", "http://", "ssh://", "file://"]
        .iter()
        .any(|p| rest.starts_with(p));
    if !scheme_ok {
        return Err("the URL must start with https://, http://, ssh:// or file://".into());
    }
    // The URL's authority may hold `user@`; the `@` before the ref is the
    // first one in the URL's path (a script path may contain `@` too).
    let scheme_end = rest.find("://").map_or(0, |i| i + 3);
    let path_start = rest[scheme_end..].find('/').map_or(rest.len(), |i| scheme_end + i);
    let at = rest[path_start..]
        .find('@')
        .map(|i| path_start + i)
        .ok_or("missing `@REF` after the URL")?;
    let (url, tail) = (&rest[..at], &rest[at + 1..]);
    if url.len() <= "file://".len() {
        return Err("empty repository URL".into());
    }
    Ok((url, tail))
}

fn check_rev(rev: &str) -> Result<(), String> {
    if rev.is_empty() || rev.chars().any(char::is_whitespace) || rev.starts_with('-') {
        return Err("the ref must be a branch, tag or commit without spaces".into());
    }
    Ok(())
}

/// Parses `git+URL@REF:PATH`.
pub fn parse_git_ref(s: &str) -> Result<plan::GitRef, String> {
    let (url, tail) = split_git_url(s)?;
    let (rev, path) = tail.split_once(':').ok_or("missing `:PATH` after the ref")?;
    check_rev(rev)?;
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err("the path must be relative to the repository, without `..`".into());
    }
    Ok(plan::GitRef {
        url: url.to_string(),
        rev: rev.to_string(),
        path: path.to_string(),
    })
}

/// Parses a whole repository at a ref, `git+URL@REF`: (URL, REF).
pub fn parse_git_repo(s: &str) -> Result<(String, String), String> {
    let (url, rev) = split_git_url(s)?;
    check_rev(rev)?;
    Ok((url.to_string(), rev.to_string()))
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

struct FeatSel<'a> {
    name: &'a str,
    variants: Vec<&'a str>,
    requested: Span,
}

#[derive(Clone)]
struct ScalarState {
    value: Sp<Scalar>,
    overrode: Vec<(Scalar, Origin)>,
    default: bool,
}

#[derive(Clone)]
struct PkgState {
    name: Arc<str>,
    arch: Option<Arc<ArchFilter>>,
    origin: Origin,
    via: Option<Origin>,
    overrode: Vec<(&'static str, Origin)>,
}

#[derive(Clone, Default)]
struct PkgSet {
    /// By package name without a pin ([`PkgSet::sorted`] gives name order).
    items: FxHashMap<Arc<str>, PkgState>,
    removed: BTreeMap<Arc<str>, (Origin, Vec<Origin>)>,
    /// Past events of names currently absent, to attach on re-addition.
    history: FxHashMap<Arc<str>, Vec<(&'static str, Origin)>>,
}

impl PkgSet {
    fn add(&mut self, p: &PkgRef, origin: Origin, via: Option<Origin>) {
        let mut overrode = if self.history.is_empty() {
            None
        } else {
            self.history.remove(&p.key)
        }
        .unwrap_or_default();
        if !self.removed.is_empty() {
            self.removed.remove(&p.key);
        }
        let state = |overrode| PkgState {
            name: Arc::clone(&p.name),
            arch: p.arch.clone(),
            origin,
            via,
            overrode,
        };
        match self.items.entry(Arc::clone(&p.key)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(state(overrode));
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let old = o.get_mut();
                overrode.push(("added", old.origin.clone()));
                overrode.append(&mut old.overrode);
                *old = state(overrode);
            }
        }
    }

    /// The packages in name order.
    fn sorted(&self) -> Vec<(&Arc<str>, &PkgState)> {
        let mut v: Vec<_> = self.items.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Removes `key`; returns false when it was not in the set. The removal
    /// is recorded either way: a package the set never had may still come
    /// with the base (the bootstrap variant, a dependency, a source image),
    /// and the build's packages stage purges it there.
    fn remove(&mut self, key: &str, origin: Origin) -> bool {
        match self.items.remove_entry(key) {
            Some((key, old)) => {
                let mut hist = vec![("removed", origin.clone()), ("added", old.origin.clone())];
                hist.extend(old.overrode);
                self.history.insert(Arc::clone(&key), hist);
                self.removed.insert(key, (origin, vec![old.origin]));
                true
            }
            None => {
                self.removed
                    .entry(Arc::from(key))
                    .and_modify(|e| e.0 = origin.clone())
                    .or_insert((origin, Vec::new()));
                false
            }
        }
    }
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

    // ----- extends -----------------------------------------------------------

    fn linearize(&mut self, image: &str) -> Vec<&'a Image> {
        let mut chain = Vec::new();
        let mut stack: Vec<(String, Option<Span>)> = Vec::new();
        let mut done = HashSet::new();
        self.visit(image, None, &mut stack, &mut done, &mut chain);
        chain
    }

    fn visit(
        &mut self,
        name: &str,
        at: Option<&Sp<String>>,
        stack: &mut Vec<(String, Option<Span>)>,
        done: &mut HashSet<String>,
        chain: &mut Vec<&'a Image>,
    ) {
        if let Some(pos) = stack.iter().position(|(n, _)| n == name) {
            // Report the cycle the same way whichever image it is reached
            // from: start at its smallest member, point at the `extends`
            // entry that closes it.
            let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| n.as_str()).collect();
            let min = (0..cycle.len()).min_by_key(|i| cycle[*i]).unwrap_or(0);
            cycle.rotate_left(min);
            let (first, last) = (cycle[0], cycle[cycle.len() - 1]);
            let closing = self
                .repo
                .images
                .get(last)
                .and_then(|img| img.def.extends.iter().find(|e| e.v == first));
            cycle.push(first);
            let mut d = Diagnostic::error("extends-cycle", format!("`extends` cycle: {}", cycle.join(" → ")));
            if let Some(e) = closing {
                d = d.at(e.span.clone(), format!("`{last}` extends `{first}`, closing the cycle"));
            } else if let Some(at) = at {
                d = d.at(at.span.clone(), "closes the cycle");
            }
            self.error(d);
            return;
        }
        if done.contains(name) {
            return;
        }
        let Some(img) = self.repo.images.get(name) else {
            let mut d = Diagnostic::error("unknown-image", format!("unknown image `{name}`"));
            if let Some(at) = at {
                d = d.at(at.span.clone(), "no such image");
            }
            let hint = did_you_mean(name, self.repo.images.keys().map(String::as_str));
            d = match hint {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "images are files images/NAME.toml; known: {}",
                    join_names(self.repo.images.keys())
                )),
            };
            self.error(d);
            return;
        };
        stack.push((name.to_string(), at.map(|a| a.span.clone())));
        for parent in &img.def.extends {
            self.visit(&parent.v, Some(parent), stack, done, chain);
        }
        stack.pop();
        done.insert(name.to_string());
        chain.push(img);
    }

    // ----- features ----------------------------------------------------------

    fn order_features(&mut self, chain: &[&'a Image]) -> Vec<FeatSel<'a>> {
        let mut order: Vec<FeatSel<'a>> = Vec::new();
        let mut stack: Vec<&'a str> = Vec::new();
        for img in chain {
            for spec in &img.def.uses {
                self.add_feature(spec, &mut order, &mut stack);
            }
        }
        order
    }

    fn add_feature(&mut self, spec: &'a Sp<String>, order: &mut Vec<FeatSel<'a>>, stack: &mut Vec<&'a str>) {
        let repo = self.repo;
        let (fname, variant) = match spec.v.split_once('/') {
            Some((f, v)) => (f, Some(v)),
            None => (spec.v.as_str(), None),
        };
        let Some((fkey, feature)) = repo.features.get_key_value(fname) else {
            let mut d = Diagnostic::error("unknown-feature", format!("unknown feature `{fname}`"))
                .at(spec.sub_span(0..fname.len()), "no such feature");
            d = match did_you_mean(fname, repo.features.keys().map(String::as_str)) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "features are folders features/NAME/ with a feature.toml; known: {}",
                    join_names(repo.features.keys())
                )),
            };
            self.error(d);
            return;
        };
        let fname: &'a str = fkey.as_str();
        let variant_def = match variant {
            None => None,
            Some(v) => match feature.def.variants.iter().find(|(n, _)| n.v == v) {
                Some((n, d)) => Some((n.v.as_str(), d)),
                None if repo.broken.contains(&feature.file) => {
                    self.uses_file(&feature.file);
                    return;
                }
                None => {
                    let names: Vec<&str> = feature.def.variants.iter().map(|(n, _)| n.v.as_str()).collect();
                    let mut d = Diagnostic::error("unknown-variant", format!("feature `{fname}` has no variant `{v}`"))
                        .at(spec.sub_span(fname.len() + 1..spec.v.len()), "unknown variant");
                    d = match did_you_mean(v, names.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{fname}/{s}`?")),
                        None if names.is_empty() => d.help(format!("`{fname}` has no variants")),
                        None => d.help(format!("variants of `{fname}`: {}", names.join(", "))),
                    };
                    self.error(d);
                    return;
                }
            },
        };
        if let Some(pos) = stack.iter().position(|n| *n == fname) {
            let mut cycle: Vec<&str> = stack[pos..].to_vec();
            cycle.push(fname);
            let d = Diagnostic::error("requires-cycle", format!("`requires` cycle: {}", cycle.join(" → "))).at(
                spec.span.clone(),
                format!("`{}` requires `{fname}` again", stack.last().copied().unwrap_or("")),
            );
            self.error(d);
            return;
        }
        if let Some(idx) = order.iter().position(|s| s.name == fname) {
            if let Some((v, vdef)) = variant_def
                && !order[idx].variants.contains(&v)
            {
                order[idx].variants.push(v);
                // Features the variant requires go before the feature.
                let before = order.len();
                stack.push(fname);
                for r in &vdef.requires {
                    self.add_feature(r, order, stack);
                }
                stack.pop();
                let added: Vec<FeatSel<'a>> = order.drain(before..).collect();
                let at = order.iter().position(|s| s.name == fname).unwrap_or(order.len());
                order.splice(at..at, added);
            }
            return;
        }
        stack.push(fname);
        for r in &feature.def.requires {
            self.add_feature(r, order, stack);
        }
        if let Some((_, vdef)) = variant_def {
            for r in &vdef.requires {
                self.add_feature(r, order, stack);
            }
        }
        stack.pop();
        order.push(FeatSel {
            name: fname,
            variants: variant_def.map(|(v, _)| v).into_iter().collect(),
            requested: spec.span.clone(),
        });
    }

    // ----- macros ------------------------------------------------------------

    fn build_macros(&mut self, layers: &[Layer<'a>]) {
        let mut defs: Vec<MacroDef> = Vec::new();
        for (name, value) in &self.repo.config.macros {
            defs.push(MacroDef {
                name: name.v.clone(),
                value: value.v.clone(),
                layer: MacroLayer::Repo,
                origin: Origin::Source(value.span.clone()),
            });
        }
        for layer in layers {
            let layer_kind = match layer.kind {
                LayerKind::Defaults => continue,
                LayerKind::Feature(_) => MacroLayer::Feature,
                LayerKind::Image => MacroLayer::Image,
            };
            for (name, value) in &layer.def.macros {
                defs.push(MacroDef {
                    name: name.v.clone(),
                    value: value.v.clone(),
                    layer: layer_kind,
                    origin: Origin::Source(value.span.clone()),
                });
            }
        }
        defs.extend(self.opts.external_macros.iter().cloned());
        self.macros = MacroTable::from_defs(defs);
    }

    fn macro_diag(&self, e: &MacroError, sp: &Sp<String>) -> Diagnostic {
        let code = match e {
            MacroError::Undefined { .. } => "undefined-macro",
            MacroError::Cycle { .. } | MacroError::TooDeep { .. } => "macro-cycle",
            MacroError::Syntax { .. } => "macro-syntax",
        };
        let mut d = Diagnostic::error(code, e.to_string()).at(sp.sub_span(e.range()), "here");
        let chain: &[String] = match e {
            MacroError::Undefined { chain, .. } | MacroError::Syntax { chain, .. } => chain,
            MacroError::Cycle { chain, .. } | MacroError::TooDeep { chain, .. } => chain,
        };
        let mut seen = HashSet::new();
        for name in chain {
            if !seen.insert(name) {
                continue;
            }
            if let Some(entry) = self.macros.get(name)
                && let Origin::Source(span) = &entry.winner.origin
            {
                d = d.also(
                    span.clone(),
                    format!("`{name}` is defined here ({} layer)", entry.winner.layer),
                );
            }
        }
        if let MacroError::Undefined { name, .. } = e {
            let names: Vec<&str> = self.macros.iter().map(|(n, _)| n.as_str()).collect();
            d = match did_you_mean(name, names.iter().copied()) {
                Some(s) => d.help(format!("did you mean `%{{{s}}}`? `%{{?{name}}}` expands to nothing when undefined")),
                None => d.help(format!("define it in a `[macros]` table or with `--define {name}=VALUE`; `%{{?{name}}}` expands to nothing when undefined")),
            };
        }
        d
    }

    /// Expands a string, reporting failures at its location.
    fn expand(&mut self, sp: &Sp<String>) -> Option<String> {
        match self.macros.expand(&sp.v) {
            Ok(s) => Some(s),
            Err(e) => {
                let d = self.macro_diag(&e, sp);
                self.error(d);
                None
            }
        }
    }

    // ----- the run -----------------------------------------------------------

    fn run(&mut self, image: &str) -> Option<Plan> {
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
        let features = self.order_features(&chain);
        let mut intact = true;
        for sel in &features {
            intact &= self.uses_file(&repo.features[sel.name].file);
        }
        if !intact {
            return None;
        }

        // Layers in application order.
        let mut layers: Vec<Layer<'a>> = vec![Layer {
            def: &repo.config.defaults,
            kind: LayerKind::Defaults,
        }];
        for sel in &features {
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
        for img in &chain {
            layers.push(Layer {
                def: &img.def,
                kind: LayerKind::Image,
            });
        }
        self.build_macros(&layers);

        // Scalars.
        let mut scalars: BTreeMap<String, ScalarState> = BTreeMap::new();
        for layer in &layers {
            for set in &layer.def.scalars {
                apply_scalar(&mut scalars, &set.key, &set.value);
            }
        }

        // Packages.
        let mut list_uses = Vec::new();
        let mut pkgs = PkgSet::default();
        for layer in &layers {
            self.apply_packages(layer.def, &mut pkgs, &mut list_uses);
        }

        // Subprofiles.
        let mut sub_names: Vec<&'a Sp<String>> = Vec::new();
        for img in &chain {
            for s in &img.def.subprofiles {
                if !sub_names.iter().any(|x| x.v == s.v) {
                    sub_names.push(s);
                }
            }
        }
        for img in &chain {
            for (name, _) in &img.def.subprofile {
                if !sub_names.iter().any(|s| s.v == name.v) {
                    let d = Diagnostic::error(
                        "unknown-subprofile",
                        format!("`[subprofile.{}]` names a subprofile the image does not build", name.v),
                    )
                    .at(name.span.clone(), "not in `subprofiles`")
                    .help(format!("add \"{}\" to `subprofiles`, or remove this section", name.v));
                    self.error(d);
                }
            }
        }

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

        // Scalars → typed values.
        let kind = self.kind(leaf, &scalars);
        let name_default = leaf.name.replace('/', "-");
        let name = self.str_value(&scalars, "name", Some(&name_default)).map(|mut v| {
            if !scalars.contains_key("name") {
                v.origin = Provenance::External {
                    external: format!("from the image name `{}`", leaf.name),
                };
            }
            v
        });
        let version = self.str_value(&scalars, "version", Some("0"));
        let release = self.str_value(&scalars, "release", Some("1"));
        let description = scalars
            .contains_key("description")
            .then(|| self.str_value(&scalars, "description", None))
            .flatten();
        let macros_file = scalars
            .contains_key("macros_file")
            .then(|| self.str_value(&scalars, "macros_file", None))
            .flatten();
        for (key, v) in [("name", &name), ("version", &version), ("release", &release)] {
            if let Some(v) = v {
                self.check_nvr_part(key, v, &scalars);
            }
        }
        if let (Some(kind), Some(first)) = (&kind, sub_names.first())
            && kind.value != "distro"
        {
            let d = Diagnostic::error(
                "subprofiles-not-allowed",
                format!(
                    "only `distro` images have subprofiles; `{}` is a `{}` image",
                    leaf.name, kind.value
                ),
            )
            .at(first.span.clone(), "subprofile declared here")
            .help("set kind = \"distro\" or drop `subprofiles`");
            self.error(d);
        }
        let base = self.base(leaf, &scalars);
        let build = plan::Build {
            network: self.bool_value(&scalars, "build.network", false),
            timeout: self.int_value(&scalars, "build.timeout", 1800),
            cleanup: self.bool_value(&scalars, "build.cleanup", true),
        };

        let (packages, arch_excluded, removed) = if self.want_plan {
            self.finish_packages(&pkgs)
        } else {
            Default::default()
        };
        let arch = self.opts.arch.clone();
        let nvr = match (&name, &version, &release) {
            (Some(n), Some(v), Some(r)) => format!("{}-{}-{}", n.value, v.value, r.value),
            _ => String::new(),
        };
        let outputs = self.outputs(&scalars, &nvr, &arch);

        let mut subprofiles: Vec<plan::Subprofile> = sub_names
            .iter()
            .map(|s| self.subprofile(s, &features, &feature_names, &chain, &pkgs, &files))
            .collect();
        if let (Some(n), Some(v), Some(r)) = (&name, &version, &release) {
            for s in &mut subprofiles {
                s.file = format!("{}-{}-{}-{}.{arch}.squashfs", n.value, s.name, v.value, r.value);
            }
        }
        let macros = self.plan_macros();
        if !self.want_plan {
            return None;
        }

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
            chain: chain
                .iter()
                .map(|i| plan::ChainEntry {
                    image: i.name.clone(),
                    file: i.file.to_string(),
                })
                .collect(),
            features: features
                .iter()
                .map(|f| plan::FeatureUse {
                    name: f.name.to_string(),
                    variants: f.variants.iter().map(|v| v.to_string()).collect(),
                    file: repo.features[f.name].file.to_string(),
                    requested_by: self.span_prov(&f.requested),
                })
                .collect(),
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

    fn kind(&mut self, leaf: &Image, scalars: &BTreeMap<String, ScalarState>) -> Option<plan::Value<String>> {
        if let Some(st) = scalars.get("kind") {
            // `kind` is structural: it is not macro-expanded.
            let Scalar::Str(raw) = &st.value.v else { return None };
            let v = self.typed(st, raw.clone(), scalar_text);
            if !KINDS.contains(&v.value.as_str()) {
                let span = scalars.get("kind").map(|s| s.value.span.clone());
                let mut d = Diagnostic::error("bad-value", format!("`kind` cannot be `{}`", v.value)).help(
                    "kinds: ve (root filesystem / container), distro (bootable, may have subprofiles), vm (disk)",
                );
                if let Some(span) = span {
                    d = d.at(span, "expected ve, distro or vm");
                }
                self.error(d);
                return None;
            }
            return Some(v);
        }
        let first = leaf.name.split('/').next().unwrap_or("");
        if KINDS.contains(&first) && leaf.name.contains('/') {
            return Some(plan::Value {
                value: first.to_string(),
                origin: Provenance::External {
                    external: format!("inferred from the image name `{}`", leaf.name),
                },
                overrode: Vec::new(),
            });
        }
        self.error(
            Diagnostic::error("missing-kind", format!("image `{}` has no `kind`", leaf.name))
                .at(Span::whole_file(&leaf.file), "")
                .help("set kind = \"ve\", \"distro\" or \"vm\" in the image or a parent, or name it ve/…, distro/… or vm/…"),
        );
        None
    }

    fn check_nvr_part(&mut self, key: &str, v: &plan::Value<String>, scalars: &BTreeMap<String, ScalarState>) {
        let bad = if v.value.is_empty() {
            Some("must not be empty".to_string())
        } else if key != "name" && v.value.contains('-') {
            Some(format!(
                "must not contain `-` (it separates name, version and release), got `{}`",
                v.value
            ))
        } else {
            v.value
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "._+~-".contains(*c)))
                .map(|c| format!("contains `{c}`; use letters, digits and . _ + ~"))
        };
        if let Some(msg) = bad {
            let mut d = Diagnostic::error("bad-value", format!("`{key}` {msg}"));
            if let Some(s) = scalars.get(key).filter(|s| !s.default) {
                d = d.at(s.value.span.clone(), "after macro expansion");
            }
            self.error(d);
        }
    }

    fn scalar_prov(&self, st: &ScalarState) -> (Provenance, Vec<(Scalar, Provenance)>) {
        let origin = if st.default {
            Provenance::Default { default: true }
        } else {
            self.span_prov(&st.value.span)
        };
        let overrode = st.overrode.iter().map(|(v, o)| (v.clone(), self.prov(o))).collect();
        (origin, overrode)
    }

    /// A plan value from a scalar's state: `value` is the winner (already
    /// converted), `convert` turns the overridden ones.
    fn typed<T>(&self, st: &ScalarState, value: T, convert: impl Fn(&Scalar) -> T) -> plan::Value<T> {
        let (origin, overrode) = self.scalar_prov(st);
        let overrode = overrode
            .into_iter()
            .map(|(v, origin)| plan::Overridden {
                value: convert(&v),
                origin,
            })
            .collect();
        plan::Value {
            value,
            origin,
            overrode,
        }
    }

    fn default_value<T>(value: T) -> plan::Value<T> {
        plan::Value {
            value,
            origin: Provenance::Default { default: true },
            overrode: Vec::new(),
        }
    }

    fn expand_scalar_str(&mut self, st: &ScalarState, s: &str) -> Option<String> {
        let sp = Sp {
            v: s.to_string(),
            span: st.value.span.clone(),
            inner: st.value.inner,
        };
        self.expand(&sp)
    }

    fn str_value(
        &mut self,
        scalars: &BTreeMap<String, ScalarState>,
        key: &str,
        default: Option<&str>,
    ) -> Option<plan::Value<String>> {
        let Some(st) = scalars.get(key) else {
            return default.map(|d| Self::default_value(d.to_string()));
        };
        let Scalar::Str(raw) = &st.value.v else { return None };
        let value = self.expand_scalar_str(st, raw)?;
        Some(self.typed(st, value, scalar_text))
    }

    fn list_value(&mut self, scalars: &BTreeMap<String, ScalarState>, key: &str) -> Option<ListScalar> {
        let st = scalars.get(key)?;
        let Scalar::List(items) = &st.value.v else { return None };
        let mut out = Vec::new();
        for it in items {
            out.push(self.expand(it)?);
        }
        let (origin, overrode) = self.scalar_prov(st);
        let overrode = overrode
            .into_iter()
            .map(|(v, origin)| plan::Overridden {
                value: match v {
                    Scalar::List(l) => l.into_iter().map(|s| s.v).collect(),
                    other => vec![scalar_text(&other)],
                },
                origin,
            })
            .collect();
        Some((
            plan::Value {
                value: out,
                origin,
                overrode,
            },
            items.clone(),
        ))
    }

    fn bool_value(&mut self, scalars: &BTreeMap<String, ScalarState>, key: &str, default: bool) -> plan::Value<bool> {
        let as_bool = |v: &Scalar| matches!(v, Scalar::Bool(true));
        match scalars.get(key) {
            Some(st) => self.typed(st, as_bool(&st.value.v), as_bool),
            None => Self::default_value(default),
        }
    }

    fn int_value(&mut self, scalars: &BTreeMap<String, ScalarState>, key: &str, default: i64) -> plan::Value<i64> {
        let as_int = |v: &Scalar| if let Scalar::Int(i) = v { *i } else { default };
        match scalars.get(key) {
            Some(st) => self.typed(st, as_int(&st.value.v), as_int),
            None => Self::default_value(default),
        }
    }

    fn base(&mut self, leaf: &Image, scalars: &BTreeMap<String, ScalarState>) -> Option<plan::Base> {
        if scalars.contains_key("base.from") {
            let from = self.str_value(scalars, "base.from", None)?;
            let Some((name, version)) = parse_name_at_version(&from.value) else {
                let span = scalars.get("base.from").map(|s| s.value.span.clone());
                let mut d = Diagnostic::error(
                    "bad-value",
                    format!("`base.from` must be NAME@VERSION, not `{}`", from.value),
                )
                .help("e.g. from = \"edge-os@2.3.1\"");
                if let Some(span) = span {
                    d = d.at(span, "after macro expansion");
                }
                self.error(d);
                return None;
            };
            let (name, version) = (name.to_string(), version.to_string());
            return Some(plan::Base::Source { from, name, version });
        }
        let Some(suite) = scalars
            .contains_key("base.suite")
            .then(|| self.str_value(scalars, "base.suite", None))
            .flatten()
        else {
            if !scalars.contains_key("base.suite") {
                self.error(
                    Diagnostic::error("missing-base", format!("image `{}` has no base", leaf.name))
                        .at(Span::whole_file(&leaf.file), "")
                        .help("set `[base] suite = \"bookworm\"` (a bootstrap) or `[base] from = \"NAME@VERSION\"` (a source image) in the image, a parent or kiln.toml `[defaults.base]`"),
                );
            }
            return None;
        };
        let distribution = self.str_value(scalars, "base.distribution", Some("debian"))?;
        let variant = scalars
            .contains_key("base.variant")
            .then(|| self.str_value(scalars, "base.variant", None))
            .flatten();
        let mirror = scalars
            .contains_key("base.mirror")
            .then(|| self.str_value(scalars, "base.mirror", None))
            .flatten();
        let components = match self.list_value(scalars, "base.components") {
            Some((v, _)) => v,
            None => plan::Value {
                value: vec!["main".to_string()],
                origin: Provenance::Default { default: true },
                overrode: Vec::new(),
            },
        };
        Some(plan::Base::Bootstrap {
            distribution,
            suite,
            variant,
            mirror,
            components,
        })
    }

    fn outputs(&mut self, scalars: &BTreeMap<String, ScalarState>, nvr: &str, arch: &str) -> Vec<plan::Output> {
        let formats: Vec<(String, Option<Span>)> = match self.list_value(scalars, "outputs") {
            Some((v, items)) => v
                .value
                .into_iter()
                .zip(items.into_iter().map(|s| Some(s.span)))
                .collect(),
            None if scalars.contains_key("outputs") => return Vec::new(),
            None => vec![("squashfs".to_string(), None)],
        };
        let mut out: Vec<plan::Output> = Vec::new();
        for (format, span) in formats {
            if !OUTPUT_FORMATS.contains(&format.as_str()) {
                let mut d = Diagnostic::error("unknown-output", format!("unknown output format `{format}`"));
                if let Some(span) = span.clone() {
                    d = d.at(span, "no such format");
                }
                d = match did_you_mean(&format, OUTPUT_FORMATS.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("formats: {}", OUTPUT_FORMATS.join(", "))),
                };
                self.error(d);
                continue;
            }
            if out.iter().any(|o| o.format == format) {
                let mut d = Diagnostic::error("duplicate-output", format!("output `{format}` is listed twice"));
                if let Some(span) = span {
                    d = d.at(span, "again here");
                }
                self.error(d);
                continue;
            }
            let prefix = format!("output.{format}.");
            let mut options = BTreeMap::new();
            for (key, st) in scalars.range(prefix.clone()..) {
                let Some(opt) = key.strip_prefix(&prefix) else { break };
                let value = match &st.value.v {
                    Scalar::Str(s) => match self.expand_scalar_str(st, s) {
                        Some(x) => {
                            if let Err(msg) = check_output_option(&format, opt, &x) {
                                let at = if x == *s { "here" } else { "after macro expansion" };
                                self.error(Diagnostic::error("bad-value", msg).at(st.value.span.clone(), at));
                                continue;
                            }
                            serde_json::Value::String(x)
                        }
                        None => continue,
                    },
                    Scalar::List(_) => continue,
                    other => scalar_json(other),
                };
                let (origin, overrode) = self.scalar_prov(st);
                let overrode = overrode
                    .into_iter()
                    .map(|(v, origin)| plan::Overridden {
                        value: scalar_json(&v),
                        origin,
                    })
                    .collect();
                options.insert(
                    opt.to_string(),
                    plan::Value {
                        value,
                        origin,
                        overrode,
                    },
                );
            }
            let ext = if format == "dir" {
                String::new()
            } else {
                format!(".{format}")
            };
            out.push(plan::Output {
                file: format!("{nvr}.{arch}{ext}"),
                format,
                options,
            });
        }
        out
    }

    fn apply_packages(&mut self, def: &'a Def, pkgs: &mut PkgSet, list_uses: &mut Vec<plan::ListUse>) {
        let repo = self.repo;
        for l in &def.lists {
            match repo.lists.get(&l.v) {
                Some(list) => {
                    list_uses.push(plan::ListUse {
                        name: list.name.clone(),
                        file: list.file.to_string(),
                        tagged: false,
                        via: self.span_prov(&l.span),
                    });
                    for (e, parsed) in list.entries.iter().zip(&list.parsed) {
                        self.apply_entry(e, parsed.as_ref(), pkgs, Some(&l.span));
                    }
                }
                None => {
                    let mut d = Diagnostic::error("unknown-list", format!("unknown package list `{}`", l.v))
                        .at(l.span.clone(), "no such list");
                    d = match did_you_mean(&l.v, repo.lists.keys().map(String::as_str)) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "lists are files lists/NAME; known: {}",
                            join_names(repo.lists.keys())
                        )),
                    };
                    self.error(d);
                }
            }
        }
        if let Some((expr_sp, Some(expr))) = &def.tagged {
            let mut any = false;
            for t in &repo.tagged {
                let tags: BTreeSet<&str> = t.tags.iter().map(String::as_str).collect();
                if expr.eval(&tags) {
                    any = true;
                    list_uses.push(plan::ListUse {
                        name: t.list.name.clone(),
                        file: t.list.file.to_string(),
                        tagged: true,
                        via: self.span_prov(&expr_sp.span),
                    });
                    for (e, parsed) in t.list.entries.iter().zip(&t.list.parsed) {
                        self.apply_entry(e, parsed.as_ref(), pkgs, Some(&expr_sp.span));
                    }
                }
            }
            if !any {
                self.error(
                    Diagnostic::warning(
                        "empty-tag-selection",
                        format!("tag expression `{}` selects no tagged list", expr_sp.v),
                    )
                    .at(expr_sp.span.clone(), "selects nothing"),
                );
            }
        }
        for p in &def.packages {
            self.apply_entry(p, None, pkgs, None);
        }
        for r in &def.remove {
            let Some(name) = self.expand(r) else { continue };
            let name = name.strip_prefix('!').unwrap_or(&name).to_string();
            match parse_pkg(&name) {
                Ok(spec) if spec.arch.is_none() => {
                    pkgs.remove(&spec.name, Origin::Source(r.span.clone()));
                }
                Ok(_) => self.error(
                    Diagnostic::error(
                        "bad-package",
                        "`remove` takes package names without architecture filters",
                    )
                    .at(r.span.clone(), "filter not allowed here")
                    .help("to keep a package off one architecture, filter where it is added: `pkg@!arm64`"),
                ),
                Err(e) => self.error(pkg_error(e, r)),
            }
        }
    }

    /// Applies one package entry; `parsed` is its parse from load time, when
    /// it has no macros.
    fn apply_entry(&mut self, entry: &Sp<String>, parsed: Option<&PkgRef>, pkgs: &mut PkgSet, via: Option<&Span>) {
        let apply = |pkgs: &mut PkgSet, p: &PkgRef| {
            let origin = Origin::Source(entry.span.clone());
            if p.remove {
                pkgs.remove(&p.key, origin);
            } else {
                pkgs.add(p, origin, via.map(|s| Origin::Source(s.clone())));
            }
        };
        if let Some(p) = parsed {
            apply(pkgs, p);
            return;
        }
        let expanded;
        let text = if entry.v.contains('%') {
            let Some(t) = self.expand(entry) else { return };
            expanded = t;
            expanded.as_str()
        } else {
            entry.v.as_str()
        };
        match parse_pkg(text) {
            Ok(spec) => apply(pkgs, &PkgRef::from(spec)),
            Err(e) => {
                // Locate inside the entry only when expansion did not change it.
                let d = if text == entry.v {
                    pkg_error(e, entry)
                } else {
                    let mut d = Diagnostic::error(e.code, e.message).at(entry.span.clone(), "after macro expansion");
                    if let Some(h) = e.help {
                        d = d.help(h);
                    }
                    d
                };
                self.error(d);
            }
        }
    }

    fn package(&self, st: &PkgState) -> plan::Package {
        plan::Package {
            name: st.name.to_string(),
            arch: st.arch.as_ref().map(|a| a.to_string()),
            origin: self.prov(&st.origin),
            via: st.via.as_ref().map(|v| self.prov(v)),
            overrode: st
                .overrode
                .iter()
                .map(|(a, o)| plan::PackageEvent {
                    action: a,
                    origin: self.prov(o),
                })
                .collect(),
        }
    }

    fn finish_packages(&self, pkgs: &PkgSet) -> (Vec<plan::Package>, Vec<plan::Package>, Vec<plan::Removal>) {
        let mut inc = Vec::new();
        let mut exc = Vec::new();
        for (_, st) in pkgs.sorted() {
            if st.arch.as_ref().is_none_or(|a| a.matches(&self.opts.arch)) {
                inc.push(self.package(st));
            } else {
                exc.push(self.package(st));
            }
        }
        let removed = pkgs
            .removed
            .iter()
            .map(|(name, (origin, undone))| plan::Removal {
                name: name.to_string(),
                origin: self.prov(origin),
                removed: undone.iter().map(|o| self.prov(o)).collect(),
            })
            .collect();
        (inc, exc, removed)
    }

    fn compose_files(&mut self, features: &[FeatSel<'a>], sub: Option<&str>) -> Vec<plan::FileEntry> {
        let repo = self.repo;
        // Image path → (entry, feature, source); entries are built only for a plan.
        let mut by_dest: BTreeMap<&'a str, (Option<plan::FileEntry>, &'a str, &'a Arc<str>)> = BTreeMap::new();
        for sel in features {
            let f = &repo.features[sel.name];
            let mut contents: Vec<(&'a Content, Option<&'a Def>)> = Vec::new();
            match sub {
                None => {
                    contents.push((&f.content.main, None));
                    for v in &sel.variants {
                        if let Some(c) = f.content.variants.get(*v) {
                            contents.push((c, f.def.variant(v)));
                        }
                    }
                }
                Some(s) => {
                    if let Some(c) = f.content.subprofiles.get(s) {
                        contents.push((c, None));
                    }
                }
            }
            let overrides: Vec<&Sp<String>> = f
                .def
                .overrides
                .iter()
                .chain(
                    sel.variants
                        .iter()
                        .filter_map(|v| f.def.variant(v))
                        .flat_map(|d| d.overrides.iter()),
                )
                .collect();
            let attrs: Vec<&(Sp<String>, crate::model::FileAttr)> = f
                .def
                .files
                .iter()
                .chain(
                    sel.variants
                        .iter()
                        .filter_map(|v| f.def.variant(v))
                        .flat_map(|d| d.files.iter()),
                )
                .collect();
            let mut shipped: HashSet<&str> = HashSet::new();
            for (content, _) in &contents {
                for item in &content.files {
                    shipped.insert(item.dest.as_str());
                    let has_attr = attrs.iter().any(|(p, _)| p.v == item.dest);
                    let mut entry = (self.want_plan || has_attr).then(|| self.file_entry(item, sel.name, &attrs));
                    if let Some((_, prev_feature, prev_source)) = by_dest.get(item.dest.as_str()) {
                        let allowed = *prev_feature == sel.name
                            || overrides.iter().any(|o| o.v.trim_start_matches('/') == item.dest);
                        if !allowed {
                            let d = Diagnostic::error(
                                "file-clash",
                                format!(
                                    "file clash: `/{}` is shipped by features `{}` and `{}`",
                                    item.dest, prev_feature, sel.name
                                ),
                            )
                            .at(
                                sel.requested.clone(),
                                format!("`{}` is used here, after `{}`", sel.name, prev_feature),
                            )
                            .also(Span::whole_file(prev_source), format!("shipped by `{prev_feature}`"))
                            .also(Span::whole_file(&item.source), format!("shipped by `{}`", sel.name))
                            .help(format!(
                                "if `{}` means to replace it, add `override = [\"{}\"]` to {}",
                                sel.name, item.dest, f.file
                            ));
                            self.error(d);
                            continue;
                        }
                        if let Some(e) = entry.as_mut() {
                            e.overrode = Some(prev_source.to_string());
                        }
                    }
                    by_dest.insert(item.dest.as_str(), (entry, sel.name, &item.source));
                }
            }
            if sub.is_none() {
                for o in &overrides {
                    if !shipped.contains(o.v.trim_start_matches('/')) {
                        self.error(
                            Diagnostic::error(
                                "bad-override",
                                format!("`override` names `{}`, which feature `{}` does not ship", o.v, sel.name),
                            )
                            .at(o.span.clone(), "not in the feature's files/")
                            .help(format!("override paths are relative to {}/files/", f.dir)),
                        );
                    }
                }
                for (path, _) in &attrs {
                    if !shipped.contains(path.v.as_str()) {
                        self.error(
                            Diagnostic::error(
                                "unknown-file",
                                format!("`[files.\"{}\"]`: feature `{}` ships no such file", path.v, sel.name),
                            )
                            .at(path.span.clone(), "no such file")
                            .help(format!("paths are relative to {}/files/", f.dir)),
                        );
                    }
                }
            }
        }
        by_dest
            .into_values()
            .filter_map(|(e, _, _)| e)
            .filter(|_| self.want_plan)
            .collect()
    }

    fn file_entry(
        &mut self,
        item: &FileItem,
        feature: &str,
        attrs: &[&(Sp<String>, crate::model::FileAttr)],
    ) -> plan::FileEntry {
        let attr = attrs.iter().rev().find(|(p, _)| p.v == item.dest).map(|(_, a)| a);
        let owner = match attr.and_then(|a| a.owner.as_ref()) {
            None => "root:root".to_string(),
            Some(o) => match self.expand(o) {
                Some(x) if valid_owner(&x) => x,
                Some(x) => {
                    self.error(
                        Diagnostic::error(
                            "bad-value",
                            format!("`owner` must be USER:GROUP (names or ids), not `{x}`"),
                        )
                        .at(o.span.clone(), "after macro expansion"),
                    );
                    "root:root".to_string()
                }
                None => "root:root".to_string(),
            },
        };
        let (kind, target, mode) = match &item.kind {
            EntryKind::Symlink { target } => ("symlink", Some(target.clone()), None),
            _ => {
                let mode = attr.and_then(|a| a.mode.as_ref()).map_or(item.mode & 0o7777, |m| m.v);
                ("file", None, Some(format!("{mode:04o}")))
            }
        };
        plan::FileEntry {
            path: format!("/{}", item.dest),
            source: item.source.to_string(),
            feature: feature.to_string(),
            kind,
            target,
            mode,
            owner,
            overrode: None,
        }
    }

    /// Scripts of every feature, feature by feature, each feature's in
    /// lexical order. With `sub`, the subprofile's additions only.
    fn feature_scripts(
        &mut self,
        features: &[FeatSel<'a>],
        in_use: &BTreeSet<&str>,
        sub: Option<&str>,
        inside: bool,
    ) -> Vec<plan::Script> {
        if !self.want_plan {
            // Scripts yield no diagnostics; only a plan lists them.
            return Vec::new();
        }
        let repo = self.repo;
        let pick = |c: &'a Content| if inside { &c.image_scripts } else { &c.scripts };
        let mut out = Vec::new();
        for sel in features {
            let f = &repo.features[sel.name];
            let mut items: Vec<&ScriptItem> = Vec::new();
            match sub {
                None => {
                    items.extend(pick(&f.content.main));
                    for v in &sel.variants {
                        if let Some(c) = f.content.variants.get(*v) {
                            items.extend(pick(c));
                        }
                    }
                }
                Some(s) => {
                    if let Some(c) = f.content.subprofiles.get(s) {
                        items.extend(pick(c));
                    }
                }
            }
            for t in pick(&f.content.tagged) {
                let main_ok = t.tags.iter().all(|tag| in_use.contains(tag.as_str()));
                let sub_ok = sub.is_some_and(|s| t.tags.iter().all(|tag| in_use.contains(tag.as_str()) || tag == s));
                if (sub.is_none() && main_ok) || (sub.is_some() && sub_ok && !main_ok) {
                    items.push(t);
                }
            }
            items.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.source.cmp(&b.source)));
            for it in items {
                out.push(plan::Script {
                    name: it.name.clone(),
                    path: Some(it.source.to_string()),
                    git: None,
                    feature: Some(sel.name.to_string()),
                    tags: it.tags.clone(),
                    origin: Provenance::Source(Span::whole_file(&it.source).location(&repo.snapshot)),
                });
            }
        }
        out
    }

    fn image_script(&mut self, s: &Sp<String>) -> Option<plan::Script> {
        let text = self.expand(s)?;
        if text.starts_with("git+") {
            return match parse_git_ref(&text) {
                Ok(g) => Some(plan::Script {
                    name: g.path.rsplit('/').next().unwrap_or(&g.path).to_string(),
                    path: None,
                    git: Some(g),
                    feature: None,
                    tags: Vec::new(),
                    origin: self.span_prov(&s.span),
                }),
                Err(msg) => {
                    self.error(
                        Diagnostic::error("bad-script", format!("bad remote script `{text}`: {msg}"))
                            .at(s.span.clone(), "expected git+URL@REF:PATH")
                            .help("e.g. \"git+https://git.example.com/ops/scripts.git@v1.2:update.sh\""),
                    );
                    None
                }
            };
        }
        let path = text.trim_start_matches("./");
        if path.starts_with('/') || path.split('/').any(|c| c == "..") {
            self.error(
                Diagnostic::error(
                    "bad-script",
                    format!("script path `{text}` must be inside the profile repository"),
                )
                .at(s.span.clone(), "relative to the repository root, without `..`"),
            );
            return None;
        }
        if !self.repo.snapshot.is_file(path) {
            let candidates: Vec<&str> = self
                .repo
                .snapshot
                .iter()
                .filter(|(_, e)| e.kind == EntryKind::File)
                .map(|(k, _)| &**k)
                .filter(|k| k.starts_with("scripts/"))
                .collect();
            let mut d = Diagnostic::error(
                "missing-script",
                format!("script `{path}` does not exist in the profile repository"),
            )
            .at(s.span.clone(), "no such file");
            if let Some(h) = did_you_mean(path, candidates.iter().copied()) {
                d = d.help(format!("did you mean `{h}`?"));
            }
            self.error(d);
            return None;
        }
        Some(plan::Script {
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            path: Some(path.to_string()),
            git: None,
            feature: None,
            tags: Vec::new(),
            origin: self.span_prov(&s.span),
        })
    }

    fn subprofile(
        &mut self,
        name: &Sp<String>,
        features: &[FeatSel<'a>],
        in_use: &BTreeSet<&str>,
        chain: &[&'a Image],
        main: &PkgSet,
        main_files: &[plan::FileEntry],
    ) -> plan::Subprofile {
        let repo = self.repo;
        // Diagnostics do not depend on what the set holds: without a plan, the
        // subprofile's additions are applied to an empty set.
        let mut pkgs = if self.want_plan {
            main.clone()
        } else {
            PkgSet::default()
        };
        let mut lists = Vec::new();
        for sel in features {
            let f = &repo.features[sel.name];
            let defs = std::iter::once(&f.def).chain(sel.variants.iter().filter_map(|v| f.def.variant(v)));
            for def in defs {
                if let Some((_, sd)) = def.subprofile.iter().find(|(n, _)| n.v == name.v) {
                    self.apply_packages(sd, &mut pkgs, &mut lists);
                }
            }
        }
        for img in chain {
            if let Some((_, sd)) = img.def.subprofile.iter().find(|(n, _)| n.v == name.v) {
                self.apply_packages(sd, &mut pkgs, &mut lists);
            }
        }
        let added: Vec<plan::Package> = (if self.want_plan { pkgs.sorted() } else { Vec::new() })
            .into_iter()
            .filter(|(k, st)| {
                main.items.get(*k).is_none_or(|m| m.origin != st.origin)
                    && st.arch.as_ref().is_none_or(|a| a.matches(&self.opts.arch))
            })
            .map(|(_, st)| self.package(st))
            .collect();
        let removed: Vec<plan::Removal> = pkgs
            .removed
            .iter()
            .filter(|(k, _)| self.want_plan && main.items.contains_key(*k))
            .map(|(n, (origin, undone))| plan::Removal {
                name: n.to_string(),
                origin: self.prov(origin),
                removed: undone.iter().map(|o| self.prov(o)).collect(),
            })
            .collect();
        let mut files = self.compose_files(features, Some(&name.v));
        for f in &mut files {
            if let Some(m) = main_files.iter().find(|m| m.path == f.path) {
                f.overrode = Some(m.source.clone());
            }
        }
        plan::Subprofile {
            name: name.v.clone(),
            file: String::new(),
            origin: self.span_prov(&name.span),
            packages: added,
            removed,
            files,
            image_scripts: self.feature_scripts(features, in_use, Some(&name.v), true),
            scripts: self.feature_scripts(features, in_use, Some(&name.v), false),
        }
    }

    fn plan_macros(&mut self) -> Vec<plan::Macro> {
        let entries: Vec<(String, crate::macros::MacroEntry)> =
            self.macros.iter().map(|(n, e)| (n.clone(), e.clone())).collect();
        let reported = self
            .diags
            .iter()
            .any(|d| matches!(d.code, "macro-cycle" | "undefined-macro" | "macro-syntax"));
        let mut out = Vec::new();
        for (name, entry) in entries {
            let value = match self.macros.expand(&entry.winner.value) {
                Ok(v) => v,
                Err(_) if reported => entry.winner.value.clone(),
                Err(e) => {
                    // An unused macro that cannot expand is a warning; every
                    // use of it is an error at the use site.
                    let mut d =
                        Diagnostic::warning("macro-unexpandable", format!("macro `{name}` cannot be expanded: {e}"));
                    if let Origin::Source(span) = &entry.winner.origin {
                        let sp = Sp {
                            v: entry.winner.value.clone(),
                            span: span.clone(),
                            inner: self.inner_of(span, &entry.winner.value),
                        };
                        d = d.at(sp.sub_span(e.range()), "here");
                    }
                    self.error(d);
                    entry.winner.value.clone()
                }
            };
            out.push(plan::Macro {
                name,
                value,
                raw: entry.winner.value.clone(),
                layer: entry.winner.layer,
                origin: self.prov(&entry.winner.origin),
                overrode: entry
                    .overrode
                    .iter()
                    .map(|d| plan::MacroOverride {
                        value: d.value.clone(),
                        layer: d.layer,
                        origin: self.prov(&d.origin),
                    })
                    .collect(),
            });
        }
        out
    }

    /// Recomputes whether a string value's span maps 1:1 to its text.
    fn inner_of(&self, span: &Span, value: &str) -> Option<usize> {
        let raw = self.repo.snapshot.text(&span.file)?.get(span.range.clone())?;
        (raw.len() == value.len() + 2 && &raw[1..raw.len() - 1] == value).then_some(1)
    }
}

/// A resolved list scalar and its items as written (for locating errors).
type ListScalar = (plan::Value<Vec<String>>, Vec<Sp<String>>);

fn pkg_error(e: crate::packages::PkgError, at: &Sp<String>) -> Diagnostic {
    let range = if e.range.is_empty() {
        e.range.start.saturating_sub(1)..e.range.start
    } else {
        e.range.clone()
    };
    let label = if e.code == "bad-arch-filter" {
        "bad architecture filter"
    } else {
        "bad package"
    };
    let mut d = Diagnostic::error(e.code, e.message).at(at.sub_span(range), label);
    if let Some(h) = e.help {
        d = d.help(h);
    }
    d
}

fn apply_scalar(scalars: &mut BTreeMap<String, ScalarState>, key: &str, value: &Sp<Scalar>) {
    let origin = |st: &ScalarState| {
        if st.default {
            Origin::Default
        } else {
            Origin::Source(st.value.span.clone())
        }
    };
    let mut overrode = Vec::new();
    // A source image replaces a bootstrap, and the other way round.
    let conflicting: Vec<String> = if key == "base.from" {
        scalars
            .keys()
            .filter(|k| k.starts_with("base.") && *k != "base.from")
            .cloned()
            .collect()
    } else if key.starts_with("base.") {
        scalars.keys().filter(|k| *k == "base.from").cloned().collect()
    } else {
        Vec::new()
    };
    for k in conflicting {
        if let Some(st) = scalars.remove(&k) {
            overrode.push((Scalar::Str(format!("{k} = {}", st.value.v)), origin(&st)));
        }
    }
    if let Some(old) = scalars.remove(key) {
        overrode.insert(0, (old.value.v.clone(), origin(&old)));
        overrode.extend(old.overrode);
    }
    scalars.insert(
        key.to_string(),
        ScalarState {
            value: value.clone(),
            overrode,
            default: false,
        },
    );
}

fn scalar_text(v: &Scalar) -> String {
    match v {
        Scalar::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

fn scalar_json(v: &Scalar) -> serde_json::Value {
    match v {
        Scalar::Str(s) => serde_json::Value::String(s.clone()),
        Scalar::Int(i) => serde_json::Value::from(*i),
        Scalar::Bool(b) => serde_json::Value::Bool(*b),
        Scalar::List(l) => serde_json::Value::Array(l.iter().map(|s| serde_json::Value::String(s.v.clone())).collect()),
    }
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
