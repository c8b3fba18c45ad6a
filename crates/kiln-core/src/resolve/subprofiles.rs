//! Subprofiles of a `distro` image: what each adds to or removes from the
//! main image's packages, files and scripts.

use std::collections::BTreeSet;

use super::Resolver;
use super::features::FeatSel;
use super::packages::PkgSet;
use crate::diag::Diagnostic;
use crate::model::Sp;
use crate::plan;
use crate::repo::Image;

impl<'a> Resolver<'a> {
    /// The subprofiles the chain declares, each once, in order of
    /// declaration; reports `[subprofile.NAME]` sections of the others.
    pub(super) fn subprofile_names(&mut self, chain: &[&'a Image]) -> Vec<&'a Sp<String>> {
        let mut sub_names: Vec<&'a Sp<String>> = Vec::new();
        for img in chain {
            for s in &img.def.subprofiles {
                if !sub_names.iter().any(|x| x.v == s.v) {
                    sub_names.push(s);
                }
            }
        }
        for img in chain {
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
        sub_names
    }

    pub(super) fn subprofile(
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
}
