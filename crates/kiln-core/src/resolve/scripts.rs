//! Scripts: the features' `image-scripts.d` and `scripts.d` (tagged ones
//! included) and the images' own `scripts`, local or `git+URL@REF:PATH`.

use std::collections::BTreeSet;

use super::Resolver;
use super::features::FeatSel;
use super::git::parse_git_ref;
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::model::Sp;
use crate::plan::{self, Provenance};
use crate::repo::{Content, ScriptItem};
use crate::snapshot::EntryKind;

impl<'a> Resolver<'a> {
    /// Scripts of every feature, feature by feature, each feature's in
    /// lexical order. With `sub`, the subprofile's additions only.
    pub(super) fn feature_scripts(
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

    pub(super) fn image_script(&mut self, s: &Sp<String>) -> Option<plan::Script> {
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
}
