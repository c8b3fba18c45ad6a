//! The package set: lists, tagged lists, single packages and removals applied
//! layer by layer, with the history of every name for provenance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Resolver, join_names};
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::model::{Def, Origin, Sp};
use crate::packages::{ArchFilter, PkgRef, parse_pkg};
use crate::plan;

#[derive(Clone)]
pub(super) struct PkgState {
    name: Arc<str>,
    pub(super) arch: Option<Arc<ArchFilter>>,
    pub(super) origin: Origin,
    via: Option<Origin>,
    overrode: Vec<(&'static str, Origin)>,
}

#[derive(Clone, Default)]
pub(super) struct PkgSet {
    /// By package name without a pin ([`PkgSet::sorted`] gives name order).
    pub(super) items: FxHashMap<Arc<str>, PkgState>,
    pub(super) removed: BTreeMap<Arc<str>, (Origin, Vec<Origin>)>,
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
    pub(super) fn sorted(&self) -> Vec<(&Arc<str>, &PkgState)> {
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

impl<'a> Resolver<'a> {
    pub(super) fn apply_packages(&mut self, def: &'a Def, pkgs: &mut PkgSet, list_uses: &mut Vec<plan::ListUse>) {
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

    pub(super) fn package(&self, st: &PkgState) -> plan::Package {
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

    pub(super) fn finish_packages(
        &self,
        pkgs: &PkgSet,
    ) -> (Vec<plan::Package>, Vec<plan::Package>, Vec<plan::Removal>) {
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
}

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
