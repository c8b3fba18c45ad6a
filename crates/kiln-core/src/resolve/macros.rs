//! The macro table of a resolution (built from all seven layers), expansion
//! of values with diagnostics at their location, and the plan's macro list.

use std::collections::HashSet;

use super::{Layer, LayerKind, Resolver};
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::macros::{MacroDef, MacroError, MacroLayer, MacroTable};
use crate::model::{Origin, Sp};
use crate::plan;

impl<'a> Resolver<'a> {
    pub(super) fn build_macros(&mut self, layers: &[Layer<'a>]) {
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
    pub(super) fn expand(&mut self, sp: &Sp<String>) -> Option<String> {
        match self.macros.expand(&sp.v) {
            Ok(s) => Some(s),
            Err(e) => {
                let d = self.macro_diag(&e, sp);
                self.error(d);
                None
            }
        }
    }

    pub(super) fn plan_macros(&mut self) -> Vec<plan::Macro> {
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
