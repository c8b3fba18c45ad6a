//! `kiln check`: every file parsed and every image resolved, all problems
//! reported at once.

use std::collections::BTreeSet;

use crate::diag::{Diagnostic, Span, sort_dedup};
use crate::repo::Repo;
use crate::resolve::{ResolveOptions, resolve};

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
    for name in repo.images.keys() {
        diags.extend(resolve(repo, name, opts).diagnostics);
    }
    diags.extend(unused_tags(repo));
    sort_dedup(&mut diags);
    Report {
        images: repo.images.len(),
        features: repo.features.len(),
        lists: repo.lists.len() + repo.tagged.len(),
        diagnostics: diags,
    }
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
