//! `kiln check`: every file parsed and every image resolved, all problems
//! reported at once.

use std::collections::BTreeSet;

use crate::diag::{Diagnostic, Span, sort_dedup};
use crate::repo::Repo;
use crate::resolve::{ResolveOptions, diagnose};

/// The outcome of checking a whole repository.
#[derive(Clone, Debug)]
pub struct Report {
    pub images: usize,
    pub features: usize,
    pub lists: usize,
    /// Sorted by file and position, duplicates removed.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Resolves every image of `repo` with `opts` and gathers every diagnostic.
pub fn check(repo: &Repo, opts: &ResolveOptions) -> Report {
    let mut diags = repo.diagnostics.clone();
    diags.extend(diagnose_all(repo, opts));
    diags.extend(unused_tags(repo));
    sort_dedup(&mut diags);
    Report {
        images: repo.images.len(),
        features: repo.features.len(),
        lists: repo.lists.len() + repo.tagged.len(),
        diagnostics: diags,
    }
}

/// Diagnoses every image, spread over the cores (resolution is pure, so the
/// result does not depend on the split).
fn diagnose_all(repo: &Repo, opts: &ResolveOptions) -> Vec<Diagnostic> {
    let names: Vec<&String> = repo.images.keys().collect();
    crate::parallel::map_in_order(&names, 16, |n| diagnose(repo, n, opts))
        .into_iter()
        .flatten()
        .collect()
}

/// Tagged scripts whose tags name neither a feature nor a subprofile never run.
fn unused_tags(repo: &Repo) -> Vec<Diagnostic> {
    let subs = repo.known_subprofiles();
    let known: BTreeSet<&str> = repo
        .features
        .keys()
        .map(String::as_str)
        .chain(subs.iter().copied())
        .collect();
    let mut out = Vec::new();
    for f in repo.features.values() {
        for s in f.content.tagged.image_scripts.iter().chain(&f.content.tagged.scripts) {
            for t in &s.tags {
                if !known.contains(t.as_str()) {
                    out.push(
                        Diagnostic::warning("unknown-tag", format!("tagged script `{}` needs tag `{t}`, which is neither a feature nor a subprofile: it never runs", s.name))
                            .at(Span::whole_file(&s.source), ""),
                    );
                }
            }
        }
    }
    out
}
