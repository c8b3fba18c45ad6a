//! The image's outputs: formats, their options and output file names.

use std::collections::BTreeMap;

use super::Resolver;
use super::scalars::{ScalarState, scalar_json};
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::model::{OUTPUT_FORMATS, Scalar, check_output_option};
use crate::plan;

impl<'a> Resolver<'a> {
    pub(super) fn outputs(
        &mut self,
        scalars: &BTreeMap<String, ScalarState>,
        nvr: &str,
        arch: &str,
    ) -> Vec<plan::Output> {
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
}
