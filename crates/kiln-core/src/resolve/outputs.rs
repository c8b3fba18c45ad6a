//! The image's outputs: formats, their options and output file names.

use std::collections::BTreeMap;

use super::Resolver;
use super::scalars::{ScalarState, scalar_json};
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::model::{OUTPUT_FORMATS, Scalar, Sp, check_output_option};
use crate::plan;
use crate::plan::Provenance;

impl<'a> Resolver<'a> {
    pub(super) fn outputs(
        &mut self,
        scalars: &BTreeMap<String, ScalarState>,
        nvr: &str,
        arch: &str,
        subs: &[&Sp<String>],
        title: &str,
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
                    Scalar::List(items) => items.iter().map(|i| serde_json::Value::from(i.v.clone())).collect(),
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
            if format == "iso" {
                self.iso_options(&mut options, scalars, arch, subs, title);
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

/// The boot methods an `iso` output gets on `arch` when it names none, and
/// those it may name there.
pub fn iso_boot_for(arch: &str) -> &'static [&'static str] {
    match arch {
        "amd64" => &["bios", "uefi"],
        "i386" => &["bios"],
        _ => &[],
    }
}

/// The volume identifier an `iso` output gets when it names none: the
/// image's name and version, cut to 32 characters of what a volume
/// identifier may hold.
pub fn default_volume_id(title: &str) -> String {
    let mut id: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.+".contains(c) {
                c
            } else {
                ' '
            }
        })
        .take(32)
        .collect();
    id = id.trim().to_string();
    if id.is_empty() { "KILN".to_string() } else { id }
}

impl<'a> Resolver<'a> {
    /// Checks an `iso` output's options against the image (its
    /// subprofiles, its architecture) and fills in the defaults.
    fn iso_options(
        &mut self,
        options: &mut BTreeMap<String, plan::Value<serde_json::Value>>,
        scalars: &BTreeMap<String, ScalarState>,
        arch: &str,
        subs: &[&Sp<String>],
        title: &str,
    ) {
        let span_of = |key: &str| {
            scalars
                .get(&format!("output.iso.{key}"))
                .map(|st| st.value.span.clone())
        };
        let items_of = |key: &str| match scalars.get(&format!("output.iso.{key}")).map(|st| &st.value.v) {
            Some(Scalar::List(items)) => items.clone(),
            _ => Vec::new(),
        };
        let sub_list = || {
            let names: Vec<&str> = subs.iter().map(|s| s.v.as_str()).collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        let supported = iso_boot_for(arch);
        if supported.is_empty() {
            let mut d = Diagnostic::error(
                "unsupported-arch",
                format!("the `iso` output has no boot loader for `{arch}`"),
            )
            .help("kiln writes bootable ISOs for amd64 (BIOS and UEFI) and i386 (BIOS)");
            if let Some(span) = span_of("boot") {
                d = d.at(span, "here");
            }
            self.error(d);
        }
        let boot = items_of("boot");
        let mut seen: Vec<&str> = Vec::new();
        for b in &boot {
            if seen.contains(&b.v.as_str()) {
                self.error(
                    Diagnostic::error("bad-value", format!("`output.iso.boot` lists `{}` twice", b.v))
                        .at(b.span.clone(), "again here"),
                );
            } else if !supported.is_empty() && !supported.contains(&b.v.as_str()) {
                self.error(
                    Diagnostic::error("bad-value", format!("`{arch}` images cannot boot by `{}`", b.v))
                        .at(b.span.clone(), "here")
                        .help(format!("on {arch}: {}", supported.join(", "))),
                );
            }
            seen.push(&b.v);
        }
        if scalars.contains_key("output.iso.boot") && boot.is_empty() {
            let mut d = Diagnostic::error("bad-value", "`output.iso.boot` is empty: the ISO would not boot");
            if let Some(span) = span_of("boot") {
                d = d.at(span, "here");
            }
            self.error(d.help(format!("leave it out for the default, {}", supported.join(" and "))));
        }
        let default = || Provenance::Default { default: true };
        let mut put = |key: &str, value: serde_json::Value| {
            options.entry(key.to_string()).or_insert(plan::Value {
                value,
                origin: default(),
                overrode: Vec::new(),
            });
        };
        put("boot", supported.iter().map(|b| serde_json::Value::from(*b)).collect());
        let default_root = if subs.iter().any(|s| s.v == "live") {
            "live"
        } else {
            "image"
        };
        put("root", default_root.into());
        put("extra", serde_json::Value::Array(Vec::new()));
        put("volume_id", default_volume_id(title).into());
        put("cmdline", "".into());
        put("timeout", 5.into());

        let root = options
            .get("root")
            .and_then(|v| v.value.as_str())
            .unwrap_or("image")
            .to_string();
        if root != "image" && !subs.iter().any(|s| s.v == root) {
            let mut d = Diagnostic::error(
                "unknown-subprofile",
                format!("`output.iso.root` names `{root}`, which the image does not build"),
            );
            if let Some(span) = span_of("root") {
                d = d.at(span, "not in `subprofiles`");
            }
            if let Some(h) = did_you_mean(&root, subs.iter().map(|s| s.v.as_str())) {
                d = d.help(format!("did you mean `{h}`?"));
            } else {
                d = d.help(format!("`image` or a subprofile ({})", sub_list()));
            }
            self.error(d);
        }
        let mut seen: Vec<&str> = Vec::new();
        let extra = items_of("extra");
        for e in &extra {
            let msg = if !subs.iter().any(|s| s.v == e.v) {
                Some((
                    "unknown-subprofile",
                    format!("`output.iso.extra` names `{}`, which the image does not build", e.v),
                    format!("subprofiles: {}", sub_list()),
                ))
            } else if e.v == root {
                Some((
                    "bad-value",
                    format!("`{}` is the ISO's root; it cannot also be an extra module", e.v),
                    "remove it from `extra`".to_string(),
                ))
            } else if seen.contains(&e.v.as_str()) {
                Some((
                    "bad-value",
                    format!("`output.iso.extra` lists `{}` twice", e.v),
                    "remove one".to_string(),
                ))
            } else {
                None
            };
            if let Some((code, msg, help)) = msg {
                self.error(Diagnostic::error(code, msg).at(e.span.clone(), "here").help(help));
            }
            seen.push(&e.v);
        }
    }
}
