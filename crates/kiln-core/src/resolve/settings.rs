//! The image's own settings read from its scalars: `kind`, name, version
//! and release, and the base (a bootstrap or a source image).

use std::collections::BTreeMap;

use super::Resolver;
use super::scalars::{ScalarState, scalar_text};
use crate::diag::{Diagnostic, Span};
use crate::model::{KINDS, Scalar, Sp, parse_name_at_version};
use crate::plan::{self, Provenance};
use crate::repo::Image;

/// The image's settings as plan values; each is None where a diagnostic was
/// reported.
pub(super) struct Settings {
    pub(super) kind: Option<plan::Value<String>>,
    pub(super) name: Option<plan::Value<String>>,
    pub(super) version: Option<plan::Value<String>>,
    pub(super) release: Option<plan::Value<String>>,
    pub(super) description: Option<plan::Value<String>>,
    pub(super) macros_file: Option<plan::Value<String>>,
    pub(super) base: Option<plan::Base>,
    pub(super) build: plan::Build,
}

impl Settings {
    /// NAME-VERSION-RELEASE, empty when one of them is missing.
    pub(super) fn nvr(&self) -> String {
        match (&self.name, &self.version, &self.release) {
            (Some(n), Some(v), Some(r)) => format!("{}-{}-{}", n.value, v.value, r.value),
            _ => String::new(),
        }
    }

    /// Names each subprofile's image file after the image's name, version
    /// and release (left empty when one of them is missing).
    pub(super) fn name_subprofiles(&self, subprofiles: &mut [plan::Subprofile], arch: &str) {
        if let (Some(n), Some(v), Some(r)) = (&self.name, &self.version, &self.release) {
            for s in subprofiles {
                s.file = format!("{}-{}-{}-{}.{arch}.squashfs", n.value, s.name, v.value, r.value);
            }
        }
    }
}

impl Resolver<'_> {
    /// Reads the image's settings from its scalars, checking name, version,
    /// release and that only `distro` images have subprofiles.
    pub(super) fn settings(
        &mut self,
        leaf: &Image,
        scalars: &BTreeMap<String, ScalarState>,
        sub_names: &[&Sp<String>],
    ) -> Settings {
        let kind = self.kind(leaf, scalars);
        let name_default = leaf.name.replace('/', "-");
        let name = self.str_value(scalars, "name", Some(&name_default)).map(|mut v| {
            if !scalars.contains_key("name") {
                v.origin = Provenance::External {
                    external: format!("from the image name `{}`", leaf.name),
                };
            }
            v
        });
        let version = self.str_value(scalars, "version", Some("0"));
        let release = self.str_value(scalars, "release", Some("1"));
        let description = scalars
            .contains_key("description")
            .then(|| self.str_value(scalars, "description", None))
            .flatten();
        let macros_file = scalars
            .contains_key("macros_file")
            .then(|| self.str_value(scalars, "macros_file", None))
            .flatten();
        for (key, v) in [("name", &name), ("version", &version), ("release", &release)] {
            if let Some(v) = v {
                self.check_nvr_part(key, v, scalars);
            }
        }
        if let (Some(kind), Some(first)) = (&kind, sub_names.first())
            && kind.value != "distro"
        {
            let d = Diagnostic::error(
                "subprofiles-not-allowed",
                format!(
                    "only `distro` images have subprofiles; `{}` is a `{}` image",
                    leaf.name, kind.value
                ),
            )
            .at(first.span.clone(), "subprofile declared here")
            .help("set kind = \"distro\" or drop `subprofiles`");
            self.error(d);
        }
        let base = self.base(leaf, scalars);
        let build = plan::Build {
            network: self.bool_value(scalars, "build.network", false),
            timeout: self.int_value(scalars, "build.timeout", 1800),
            cleanup: self.bool_value(scalars, "build.cleanup", true),
        };
        Settings {
            kind,
            name,
            version,
            release,
            description,
            macros_file,
            base,
            build,
        }
    }

    fn kind(&mut self, leaf: &Image, scalars: &BTreeMap<String, ScalarState>) -> Option<plan::Value<String>> {
        if let Some(st) = scalars.get("kind") {
            // `kind` is structural: it is not macro-expanded.
            let Scalar::Str(raw) = &st.value.v else { return None };
            let v = self.typed(st, raw.clone(), scalar_text);
            if !KINDS.contains(&v.value.as_str()) {
                let span = scalars.get("kind").map(|s| s.value.span.clone());
                let mut d = Diagnostic::error("bad-value", format!("`kind` cannot be `{}`", v.value)).help(
                    "kinds: ve (root filesystem / container), distro (bootable, may have subprofiles), vm (disk)",
                );
                if let Some(span) = span {
                    d = d.at(span, "expected ve, distro or vm");
                }
                self.error(d);
                return None;
            }
            return Some(v);
        }
        let first = leaf.name.split('/').next().unwrap_or("");
        if KINDS.contains(&first) && leaf.name.contains('/') {
            return Some(plan::Value {
                value: first.to_string(),
                origin: Provenance::External {
                    external: format!("inferred from the image name `{}`", leaf.name),
                },
                overrode: Vec::new(),
            });
        }
        self.error(
            Diagnostic::error("missing-kind", format!("image `{}` has no `kind`", leaf.name))
                .at(Span::whole_file(&leaf.file), "")
                .help("set kind = \"ve\", \"distro\" or \"vm\" in the image or a parent, or name it ve/…, distro/… or vm/…"),
        );
        None
    }

    fn check_nvr_part(&mut self, key: &str, v: &plan::Value<String>, scalars: &BTreeMap<String, ScalarState>) {
        let bad = if v.value.is_empty() {
            Some("must not be empty".to_string())
        } else if key != "name" && v.value.contains('-') {
            Some(format!(
                "must not contain `-` (it separates name, version and release), got `{}`",
                v.value
            ))
        } else {
            v.value
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "._+~-".contains(*c)))
                .map(|c| format!("contains `{c}`; use letters, digits and . _ + ~"))
        };
        if let Some(msg) = bad {
            let mut d = Diagnostic::error("bad-value", format!("`{key}` {msg}"));
            if let Some(s) = scalars.get(key).filter(|s| !s.default) {
                d = d.at(s.value.span.clone(), "after macro expansion");
            }
            self.error(d);
        }
    }

    fn base(&mut self, leaf: &Image, scalars: &BTreeMap<String, ScalarState>) -> Option<plan::Base> {
        if scalars.contains_key("base.from") {
            let from = self.str_value(scalars, "base.from", None)?;
            let Some((name, version)) = parse_name_at_version(&from.value) else {
                let span = scalars.get("base.from").map(|s| s.value.span.clone());
                let mut d = Diagnostic::error(
                    "bad-value",
                    format!("`base.from` must be NAME@VERSION, not `{}`", from.value),
                )
                .help("e.g. from = \"edge-os@2.3.1\"");
                if let Some(span) = span {
                    d = d.at(span, "after macro expansion");
                }
                self.error(d);
                return None;
            };
            let (name, version) = (name.to_string(), version.to_string());
            return Some(plan::Base::Source { from, name, version });
        }
        let Some(suite) = scalars
            .contains_key("base.suite")
            .then(|| self.str_value(scalars, "base.suite", None))
            .flatten()
        else {
            if !scalars.contains_key("base.suite") {
                self.error(
                    Diagnostic::error("missing-base", format!("image `{}` has no base", leaf.name))
                        .at(Span::whole_file(&leaf.file), "")
                        .help("set `[base] suite = \"bookworm\"` (a bootstrap) or `[base] from = \"NAME@VERSION\"` (a source image) in the image, a parent or kiln.toml `[defaults.base]`"),
                );
            }
            return None;
        };
        let distribution = self.str_value(scalars, "base.distribution", Some("debian"))?;
        let variant = scalars
            .contains_key("base.variant")
            .then(|| self.str_value(scalars, "base.variant", None))
            .flatten();
        let mirror = scalars
            .contains_key("base.mirror")
            .then(|| self.str_value(scalars, "base.mirror", None))
            .flatten();
        let components = match self.list_value(scalars, "base.components") {
            Some((v, _)) => v,
            None => plan::Value {
                value: vec!["main".to_string()],
                origin: Provenance::Default { default: true },
                overrode: Vec::new(),
            },
        };
        Some(plan::Base::Bootstrap {
            distribution,
            suite,
            variant,
            mirror,
            components,
        })
    }
}
