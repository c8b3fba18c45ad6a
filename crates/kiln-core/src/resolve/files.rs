//! Files the features ship into the image: clashes between features,
//! `override`, and `[files."PATH"]` attributes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::Resolver;
use super::features::FeatSel;
use crate::diag::{Diagnostic, Span};
use crate::model::{Def, Sp, valid_owner};
use crate::plan;
use crate::repo::{Content, FileItem};
use crate::snapshot::EntryKind;

impl<'a> Resolver<'a> {
    pub(super) fn compose_files(&mut self, features: &[FeatSel<'a>], sub: Option<&str>) -> Vec<plan::FileEntry> {
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
}
