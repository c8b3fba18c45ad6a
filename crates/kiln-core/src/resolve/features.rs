//! Feature order: every feature the chain `uses`, after the features it and
//! its variants `require`, each once, with `requires` cycles reported.

use super::{Resolver, join_names};
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::model::Sp;
use crate::repo::Image;

pub(super) struct FeatSel<'a> {
    pub(super) name: &'a str,
    pub(super) variants: Vec<&'a str>,
    pub(super) requested: Span,
}

impl<'a> Resolver<'a> {
    pub(super) fn order_features(&mut self, chain: &[&'a Image]) -> Vec<FeatSel<'a>> {
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
}
