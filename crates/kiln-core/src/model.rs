//! Definitions as written: images, features, variants, subprofile sections
//! and repo defaults, parsed from spanned TOML into one [`Def`] shape.
//!
//! Parsing never stops at the first problem: every unknown field, wrong type
//! and bad value in a file becomes a [`Diagnostic`], and the rest of the file
//! is still read.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::macros::is_macro_name;
use crate::tags::TagExpr;

/// Where a resolved value came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A place in a repository file.
    Source(Span),
    /// Outside the repository: `--define`, a builder config, a hub target…
    External(String),
    /// kiln's built-in default.
    Default,
}

impl Origin {
    pub fn span(&self) -> Option<&Span> {
        match self {
            Origin::Source(s) => Some(s),
            _ => None,
        }
    }
}

/// A value with the span it was read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sp<T> {
    pub v: T,
    pub span: Span,
    /// Offset of the value's text inside `span` when it is a string whose
    /// source bytes equal its value (no escapes): lets diagnostics point at a
    /// character inside the string.
    pub inner: Option<usize>,
}

impl<T> Sp<T> {
    pub fn new(v: T, span: Span) -> Self {
        Sp { v, span, inner: None }
    }

    /// The span of `range` (relative to the string's value) when it can be
    /// located exactly, else the whole value.
    pub fn sub_span(&self, range: Range<usize>) -> Span {
        match self.inner {
            Some(off) => Span::new(
                &self.span.file,
                self.span.range.start + off + range.start..self.span.range.start + off + range.end,
            ),
            None => self.span.clone(),
        }
    }
}

/// Which kind of definition a table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Defaults,
    Image,
    Feature,
    Variant,
    Subprofile,
}

impl Context {
    fn bit(self) -> u8 {
        match self {
            Context::Defaults => D,
            Context::Image => I,
            Context::Feature => F,
            Context::Variant => V,
            Context::Subprofile => S,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Context::Defaults => "`[defaults]` of kiln.toml",
            Context::Image => "an image definition",
            Context::Feature => "a feature definition",
            Context::Variant => "a feature variant",
            Context::Subprofile => "a `[subprofile.NAME]` section",
        }
    }
}

const D: u8 = 1;
const I: u8 = 2;
const F: u8 = 4;
const V: u8 = 8;
const S: u8 = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    /// A string scalar.
    Str,
    /// A list of strings that composes by appending.
    Set,
    /// A list of strings that is a scalar (replaced as a whole).
    ListScalar,
    Tagged,
    Base,
    Macros,
    Output,
    Build,
    Variants,
    Subprofile,
    Files,
}

/// Every field of the definition vocabulary and where it is allowed.
const FIELDS: &[(&str, FieldKind, u8)] = &[
    ("kind", FieldKind::Str, I),
    ("name", FieldKind::Str, I),
    ("extends", FieldKind::Set, I),
    ("description", FieldKind::Str, I | F | V | S),
    ("use", FieldKind::Set, I),
    ("requires", FieldKind::Set, F | V),
    ("lists", FieldKind::Set, D | I | F | V | S),
    ("tagged", FieldKind::Tagged, D | I | F | V | S),
    ("packages", FieldKind::Set, D | I | F | V | S),
    ("remove", FieldKind::Set, D | I | F | V | S),
    ("subprofiles", FieldKind::Set, I),
    ("scripts", FieldKind::Set, I),
    ("outputs", FieldKind::ListScalar, D | I),
    ("version", FieldKind::Str, D | I),
    ("release", FieldKind::Str, D | I),
    ("macros_file", FieldKind::Str, D | I),
    ("base", FieldKind::Base, D | I),
    ("macros", FieldKind::Macros, I | F | V),
    ("output", FieldKind::Output, D | I | F | V),
    ("build", FieldKind::Build, D | I | F | V),
    ("variants", FieldKind::Variants, F),
    ("subprofile", FieldKind::Subprofile, I | F),
    ("override", FieldKind::Set, F | V),
    ("files", FieldKind::Files, F | V),
];

mod output_options;
pub use output_options::{
    ISO_BOOT, ISO_MAX_TIMEOUT, check_output_item, check_output_option, output_option_keys, valid_cmdline,
    valid_volume_id,
};
use output_options::{compression_choices, level_range};

/// Output formats kiln can produce.
pub const OUTPUT_FORMATS: &[&str] = &[
    "squashfs", "erofs", "tar", "tar.zst", "tar.xz", "tar.gz", "ext4", "qcow2", "dir", "iso",
];

/// Image kinds.
pub const KINDS: &[&str] = &["ve", "distro", "vm"];

/// mmdebstrap variants.
pub const MMDEBSTRAP_VARIANTS: &[&str] = &[
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
];

pub const DISTRIBUTIONS: &[&str] = &["debian", "ubuntu"];

/// A typed scalar value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Sp<String>>),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "{s:?}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::List(l) => {
                f.write_str("[")?;
                for (i, s) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{:?}", s.v)?;
                }
                f.write_str("]")
            }
        }
    }
}

/// One scalar assignment, e.g. `base.suite = "bookworm"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalarSet {
    /// Dotted key: `version`, `base.suite`, `output.squashfs.level`, `build.network`.
    pub key: String,
    pub value: Sp<Scalar>,
}

/// Attributes of a file a feature ships.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileAttr {
    pub owner: Option<Sp<String>>,
    pub mode: Option<Sp<u32>>,
}

/// One definition (image, feature, variant, subprofile section or defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Def {
    pub file: Arc<str>,
    pub context: Context,
    pub extends: Vec<Sp<String>>,
    pub uses: Vec<Sp<String>>,
    pub requires: Vec<Sp<String>>,
    pub lists: Vec<Sp<String>>,
    pub tagged: Option<(Sp<String>, Option<TagExpr>)>,
    pub packages: Vec<Sp<String>>,
    pub remove: Vec<Sp<String>>,
    pub subprofiles: Vec<Sp<String>>,
    pub scripts: Vec<Sp<String>>,
    pub overrides: Vec<Sp<String>>,
    pub scalars: Vec<ScalarSet>,
    pub macros: Vec<(Sp<String>, Sp<String>)>,
    pub variants: Vec<(Sp<String>, Def)>,
    pub subprofile: Vec<(Sp<String>, Def)>,
    pub files: Vec<(Sp<String>, FileAttr)>,
}

impl Def {
    pub fn empty(file: &Arc<str>, context: Context) -> Self {
        Def {
            file: Arc::clone(file),
            context,
            extends: Vec::new(),
            uses: Vec::new(),
            requires: Vec::new(),
            lists: Vec::new(),
            tagged: None,
            packages: Vec::new(),
            remove: Vec::new(),
            subprofiles: Vec::new(),
            scripts: Vec::new(),
            overrides: Vec::new(),
            scalars: Vec::new(),
            macros: Vec::new(),
            variants: Vec::new(),
            subprofile: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn scalar(&self, key: &str) -> Option<&Sp<Scalar>> {
        self.scalars.iter().rev().find(|s| s.key == key).map(|s| &s.value)
    }

    pub fn variant(&self, name: &str) -> Option<&Def> {
        self.variants.iter().find(|(n, _)| n.v == name).map(|(_, d)| d)
    }
}

/// Parses a TOML document into a table, reporting syntax errors.
pub fn parse_toml<'i>(file: &Arc<str>, text: &'i str, diags: &mut Vec<Diagnostic>) -> Option<Spanned<DeTable<'i>>> {
    match DeTable::parse(text) {
        Ok(t) => Some(t),
        Err(e) => {
            let range = e.span().unwrap_or(0..0);
            // Point at one character at least so the caret is visible.
            let range = if range.is_empty() && range.start < text.len() {
                range.start..range.start + 1
            } else {
                range
            };
            let msg = e.message().trim().to_string();
            diags.push(
                Diagnostic::error("toml-syntax", format!("TOML syntax error: {msg}"))
                    .at(Span::new(file, range), "here"),
            );
            None
        }
    }
}

/// Reads definitions out of spanned TOML, collecting diagnostics.
pub struct Reader<'a> {
    pub file: &'a Arc<str>,
    pub text: &'a str,
    pub diags: &'a mut Vec<Diagnostic>,
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Reader<'_> {
    fn span(&self, r: Range<usize>) -> Span {
        Span::new(self.file, r)
    }

    fn wrong_type(&mut self, key: &str, expected: &str, v: &Spanned<DeValue<'_>>) {
        let d = Diagnostic::error(
            "wrong-type",
            format!("`{key}` must be {expected}, not {}", type_name(v.get_ref())),
        )
        .at(self.span(v.span()), format!("expected {expected}"));
        self.diags.push(d);
    }

    fn string(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<Sp<String>> {
        match v.get_ref() {
            DeValue::String(s) => {
                let span = v.span();
                let raw = self.text.get(span.clone()).unwrap_or("");
                let inner = if raw.len() == s.len() + 2
                    && (raw.starts_with('"') || raw.starts_with('\''))
                    && &raw[1..raw.len() - 1] == s.as_ref()
                {
                    Some(1)
                } else {
                    None
                };
                Some(Sp {
                    v: s.to_string(),
                    span: self.span(span),
                    inner,
                })
            }
            _ => {
                self.wrong_type(key, "a string", v);
                None
            }
        }
    }

    fn strings(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<Vec<Sp<String>>> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    if let Some(s) = self.string(&format!("{key}[]"), item) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            _ => {
                self.wrong_type(key, "an array of strings", v);
                None
            }
        }
    }

    fn table<'v, 'i>(&mut self, key: &str, v: &'v Spanned<DeValue<'i>>) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(key, "a table", v);
                None
            }
        }
    }

    fn unknown_key(&mut self, what: &str, key: &Spanned<impl AsRef<str>>, expected: &[&str]) {
        let name = key.get_ref().as_ref();
        let mut d = Diagnostic::error("unknown-field", format!("unknown field `{name}` in {what}"))
            .at(self.span(key.span()), "unknown field");
        d = match did_you_mean(name, expected.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("expected one of: {}", expected.join(", "))),
        };
        self.diags.push(d);
    }

    /// Parses a definition table in `ctx`.
    pub fn def(&mut self, table: &DeTable<'_>, ctx: Context) -> Def {
        let mut def = Def::empty(self.file, ctx);
        let allowed: Vec<&str> = FIELDS
            .iter()
            .filter(|(_, _, m)| m & ctx.bit() != 0)
            .map(|(n, _, _)| *n)
            .collect();
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let Some(&(_, kind, mask)) = FIELDS.iter().find(|(n, _, _)| *n == name) else {
                self.unknown_key(ctx.describe(), key, &allowed);
                continue;
            };
            if mask & ctx.bit() == 0 {
                let d = Diagnostic::error(
                    "unknown-field",
                    format!("field `{name}` is not allowed in {}", ctx.describe()),
                )
                .at(self.span(key.span()), "not allowed here")
                .help(format!("fields allowed here: {}", allowed.join(", ")));
                self.diags.push(d);
                continue;
            }
            match kind {
                FieldKind::Str => {
                    if let Some(s) = self.string(name, value) {
                        def.scalars.push(ScalarSet {
                            key: name.to_string(),
                            value: Sp {
                                v: Scalar::Str(s.v),
                                span: s.span,
                                inner: s.inner,
                            },
                        });
                    }
                }
                FieldKind::ListScalar => {
                    if let Some(items) = self.strings(name, value) {
                        def.scalars.push(ScalarSet {
                            key: name.to_string(),
                            value: Sp::new(Scalar::List(items), self.span(value.span())),
                        });
                    }
                }
                FieldKind::Set => {
                    if let Some(items) = self.strings(name, value) {
                        let target = match name {
                            "extends" => &mut def.extends,
                            "use" => &mut def.uses,
                            "requires" => &mut def.requires,
                            "lists" => &mut def.lists,
                            "packages" => &mut def.packages,
                            "remove" => &mut def.remove,
                            "subprofiles" => &mut def.subprofiles,
                            "scripts" => &mut def.scripts,
                            _ => &mut def.overrides,
                        };
                        *target = items;
                    }
                }
                FieldKind::Tagged => {
                    if let Some(s) = self.string(name, value) {
                        let expr = match TagExpr::parse(&s.v) {
                            Ok(e) => Some(e),
                            Err(e) => {
                                self.diags.push(
                                    Diagnostic::error(
                                        "bad-tag-expression",
                                        format!("bad tag expression: {}", e.message),
                                    )
                                    .at(s.sub_span(e.range), "here"),
                                );
                                None
                            }
                        };
                        def.tagged = Some((s, expr));
                    }
                }
                FieldKind::Base => self.base(value, &mut def),
                FieldKind::Macros => {
                    if let Some(t) = self.table(name, value) {
                        for (k, v) in t.iter() {
                            let kname = k.get_ref().as_ref();
                            if !is_macro_name(kname) {
                                self.diags.push(
                                    Diagnostic::error(
                                        "bad-macro-name",
                                        format!("bad macro name `{kname}`: names are [A-Za-z0-9_]+"),
                                    )
                                    .at(self.span(k.span()), "bad name"),
                                );
                                continue;
                            }
                            if let Some(s) = self.string(&format!("macros.{kname}"), v) {
                                def.macros.push((Sp::new(kname.to_string(), self.span(k.span())), s));
                            }
                        }
                    }
                }
                FieldKind::Output => self.outputs(value, &mut def),
                FieldKind::Build => self.build(value, &mut def),
                FieldKind::Variants | FieldKind::Subprofile => {
                    let sub_ctx = if kind == FieldKind::Variants {
                        Context::Variant
                    } else {
                        Context::Subprofile
                    };
                    if let Some(t) = self.table(name, value) {
                        for (k, v) in t.iter() {
                            let kname = k.get_ref().as_ref();
                            if !is_ident(kname) {
                                self.diags.push(
                                    Diagnostic::error(
                                        "bad-name",
                                        format!(
                                            "bad {} name `{kname}`: use [a-z0-9_-]",
                                            if kind == FieldKind::Variants {
                                                "variant"
                                            } else {
                                                "subprofile"
                                            }
                                        ),
                                    )
                                    .at(self.span(k.span()), "bad name"),
                                );
                                continue;
                            }
                            if let Some(sub) = self.table(&format!("{name}.{kname}"), v) {
                                let d = self.def(sub, sub_ctx);
                                let target = if kind == FieldKind::Variants {
                                    &mut def.variants
                                } else {
                                    &mut def.subprofile
                                };
                                target.push((Sp::new(kname.to_string(), self.span(k.span())), d));
                            }
                        }
                    }
                }
                FieldKind::Files => self.files(value, &mut def),
            }
        }
        def
    }

    fn base(&mut self, value: &Spanned<DeValue<'_>>, def: &mut Def) {
        const KEYS: &[&str] = &["distribution", "suite", "variant", "mirror", "components", "from"];
        let Some(t) = self.table("base", value) else { return };
        let mut from_at = None;
        let mut bootstrap_at = None;
        for (k, v) in t.iter() {
            let kname = k.get_ref().as_ref();
            let value = match kname {
                "components" => self.strings("base.components", v).map(Scalar::List),
                "distribution" | "suite" | "variant" | "mirror" | "from" => {
                    self.string(&format!("base.{kname}"), v).map(|s| Scalar::Str(s.v))
                }
                _ => {
                    self.unknown_key("`[base]`", k, KEYS);
                    continue;
                }
            };
            if let Some(value) = value {
                let span = self.span(v.span());
                if kname == "from" {
                    from_at = Some(self.span(k.span()));
                } else {
                    bootstrap_at.get_or_insert(self.span(k.span()));
                }
                // Check values that have a closed set.
                if let Scalar::Str(s) = &value {
                    let choices = match kname {
                        "variant" => Some(MMDEBSTRAP_VARIANTS),
                        "distribution" => Some(DISTRIBUTIONS),
                        _ => None,
                    };
                    if let Some(choices) = choices.filter(|c| !s.contains('%') && !c.contains(&s.as_str())) {
                        self.bad_choice(&format!("base.{kname}"), s, choices, span.clone());
                    }
                }
                def.scalars.push(ScalarSet {
                    key: format!("base.{kname}"),
                    value: Sp::new(value, span),
                });
            }
        }
        if let (Some(f), Some(b)) = (from_at, bootstrap_at) {
            self.diags.push(
                Diagnostic::error("base-conflict", "`[base]` sets both `from` and bootstrap options")
                    .at(f, "a source image")
                    .also(b, "a bootstrap option")
                    .help("a base is either a bootstrap (distribution, suite, …) or `from = \"NAME@VERSION\"`"),
            );
        }
    }

    fn bad_choice(&mut self, key: &str, value: &str, choices: &[&str], span: Span) {
        let mut d = Diagnostic::error("bad-value", format!("`{key}` cannot be `{value}`"))
            .at(span, format!("expected one of: {}", choices.join(", ")));
        if let Some(s) = did_you_mean(value, choices.iter().copied()) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        self.diags.push(d);
    }

    fn outputs(&mut self, value: &Spanned<DeValue<'_>>, def: &mut Def) {
        let Some(t) = self.table("output", value) else { return };
        for (fmt_key, opts) in t.iter() {
            let format = fmt_key.get_ref().as_ref();
            let Some(keys) = output_option_keys(format) else {
                self.unknown_key("`[output]` (output formats)", fmt_key, OUTPUT_FORMATS);
                continue;
            };
            let Some(opts) = self.table(&format!("output.{format}"), opts) else {
                continue;
            };
            for (k, v) in opts.iter() {
                let kname = k.get_ref().as_ref();
                if !keys.contains(&kname) {
                    let what = format!("`[output.\"{format}\"]`");
                    if keys.is_empty() {
                        self.diags.push(
                            Diagnostic::error("unknown-field", format!("unknown field `{kname}` in {what}"))
                                .at(self.span(k.span()), "unknown field")
                                .help(format!("the `{format}` output takes no options")),
                        );
                    } else {
                        self.unknown_key(&what, k, keys);
                    }
                    continue;
                }
                let full = format!("output.{format}.{kname}");
                if let Some(value) = self.output_value(format, kname, &full, v) {
                    def.scalars.push(ScalarSet {
                        key: full,
                        value: Sp::new(value, self.span(v.span())),
                    });
                }
            }
        }
    }

    fn output_value(&mut self, format: &str, key: &str, full: &str, v: &Spanned<DeValue<'_>>) -> Option<Scalar> {
        let span = self.span(v.span());
        match key {
            "level" => match v.get_ref() {
                DeValue::Integer(i) => {
                    let n = i.as_str().replace('_', "").parse::<i64>().ok();
                    let (lo, hi) = level_range(format);
                    match n {
                        Some(n) if (lo..=hi).contains(&n) => Some(Scalar::Int(n)),
                        _ => {
                            self.diags.push(
                                Diagnostic::error("bad-value", format!("`{full}` must be between {lo} and {hi}"))
                                    .at(span, "out of range"),
                            );
                            None
                        }
                    }
                }
                _ => {
                    self.wrong_type(full, "an integer", v);
                    None
                }
            },
            "compress" => match v.get_ref() {
                DeValue::Boolean(b) => Some(Scalar::Bool(*b)),
                _ => {
                    self.wrong_type(full, "a boolean", v);
                    None
                }
            },
            "timeout" => match v.get_ref() {
                DeValue::Integer(i) => match i.as_str().replace('_', "").parse::<i64>() {
                    Ok(n) if (0..=ISO_MAX_TIMEOUT).contains(&n) => Some(Scalar::Int(n)),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                "bad-value",
                                format!("`{full}` must be between 0 and {ISO_MAX_TIMEOUT} seconds"),
                            )
                            .at(span, "out of range"),
                        );
                        None
                    }
                },
                _ => {
                    self.wrong_type(full, "an integer (seconds)", v);
                    None
                }
            },
            "boot" | "extra" => {
                let items = self.strings(full, v)?;
                let mut ok = true;
                for it in &items {
                    if let Err(msg) = check_output_item(key, &it.v) {
                        let mut d = Diagnostic::error("bad-value", msg).at(it.span.clone(), "here");
                        if key == "boot"
                            && let Some(h) = did_you_mean(&it.v, ISO_BOOT.iter().copied())
                        {
                            d = d.help(format!("did you mean `{h}`?"));
                        }
                        self.diags.push(d);
                        ok = false;
                    }
                }
                ok.then_some(Scalar::List(items))
            }
            _ => {
                let s = self.string(full, v)?;
                if !s.v.contains('%')
                    && let Err(msg) = check_output_option(format, key, &s.v)
                {
                    let mut d = Diagnostic::error("bad-value", msg).at(span.clone(), "here");
                    if key == "compression"
                        && let Some(h) = did_you_mean(&s.v, compression_choices(format).iter().copied())
                    {
                        d = d.help(format!("did you mean `{h}`?"));
                    }
                    self.diags.push(d);
                    return None;
                }
                let ok = true;
                ok.then_some(Scalar::Str(s.v))
            }
        }
    }

    fn build(&mut self, value: &Spanned<DeValue<'_>>, def: &mut Def) {
        const KEYS: &[&str] = &["network", "timeout", "cleanup"];
        let Some(t) = self.table("build", value) else { return };
        for (k, v) in t.iter() {
            let kname = k.get_ref().as_ref();
            let full = format!("build.{kname}");
            let value = match kname {
                "network" | "cleanup" => match v.get_ref() {
                    DeValue::Boolean(b) => Some(Scalar::Bool(*b)),
                    _ => {
                        self.wrong_type(&full, "a boolean", v);
                        None
                    }
                },
                "timeout" => {
                    let secs = match v.get_ref() {
                        DeValue::Integer(i) => i.as_str().replace('_', "").parse::<i64>().ok().filter(|n| *n > 0),
                        DeValue::String(s) => parse_duration(s),
                        _ => {
                            self.wrong_type(&full, "a duration (\"30m\") or seconds", v);
                            continue;
                        }
                    };
                    if secs.is_none() {
                        self.diags.push(
                            Diagnostic::error("bad-value", "`build.timeout` must be a positive duration such as \"30m\", \"90s\", \"2h\" or a number of seconds")
                                .at(self.span(v.span()), "bad duration"),
                        );
                    }
                    secs.map(Scalar::Int)
                }
                _ => {
                    self.unknown_key("`[build]`", k, KEYS);
                    continue;
                }
            };
            if let Some(value) = value {
                def.scalars.push(ScalarSet {
                    key: full,
                    value: Sp::new(value, self.span(v.span())),
                });
            }
        }
    }

    fn files(&mut self, value: &Spanned<DeValue<'_>>, def: &mut Def) {
        let Some(t) = self.table("files", value) else { return };
        for (path, attrs) in t.iter() {
            let pname = path.get_ref().as_ref().trim_start_matches('/').to_string();
            let Some(attrs) = self.table(&format!("files.\"{pname}\""), attrs) else {
                continue;
            };
            let mut fa = FileAttr::default();
            for (k, v) in attrs.iter() {
                match k.get_ref().as_ref() {
                    "owner" => {
                        if let Some(s) = self.string("owner", v) {
                            if !s.v.contains('%') && !valid_owner(&s.v) {
                                self.diags.push(
                                    Diagnostic::error(
                                        "bad-value",
                                        format!("`owner` must be USER:GROUP (names or ids), not `{}`", s.v),
                                    )
                                    .at(s.span.clone(), "bad owner"),
                                );
                            } else {
                                fa.owner = Some(s);
                            }
                        }
                    }
                    "mode" => {
                        if let Some(s) = self.string("mode", v) {
                            match u32::from_str_radix(&s.v, 8) {
                                Ok(m) if m <= 0o7777 && !s.v.is_empty() => fa.mode = Some(Sp::new(m, s.span)),
                                _ => self.diags.push(
                                    Diagnostic::error(
                                        "bad-value",
                                        format!("`mode` must be an octal string such as \"0644\", not `{}`", s.v),
                                    )
                                    .at(s.span.clone(), "bad mode"),
                                ),
                            }
                        }
                    }
                    _ => self.unknown_key("a `[files.\"PATH\"]` entry", k, &["owner", "mode"]),
                }
            }
            def.files.push((Sp::new(pname, self.span(path.span())), fa));
        }
    }
}

/// `USER:GROUP`, names or numeric ids.
pub fn valid_owner(s: &str) -> bool {
    let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    matches!(s.split_once(':'), Some((u, g)) if ok(u) && ok(g))
}

pub fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parses `NAME@VERSION`.
pub fn parse_name_at_version(s: &str) -> Option<(&str, &str)> {
    let (n, v) = s.rsplit_once('@')?;
    let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
    (ok(n) && ok(v)).then_some((n, v))
}

/// Parses sizes such as `1M`, `128K`, `2G`, `4096` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).filter(|v| *v > 0)
}

/// Parses durations `90s`, `30m`, `2h` or bare seconds into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: i64 = num.parse().ok()?;
    n.checked_mul(mult).filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, ctx: Context) -> (Def, Vec<Diagnostic>) {
        let file: Arc<str> = "x.toml".into();
        let mut diags = Vec::new();
        let t = parse_toml(&file, text, &mut diags).expect("valid toml");
        let mut r = Reader {
            file: &file,
            text,
            diags: &mut diags,
        };
        let def = r.def(t.get_ref(), ctx);
        (def, diags)
    }

    #[test]
    fn reads_every_kind_of_field() {
        let (def, diags) = read(
            r#"
kind = "distro"
extends = ["a", "b"]
use = ["ssh", "net/dhcp"]
tagged = "x && y"
outputs = ["squashfs"]
[base]
suite = "bookworm"
components = ["main", "contrib"]
[output.squashfs]
level = 15
block_size = "1M"
[output."tar.zst"]
level = 19
[build]
network = true
timeout = "30m"
[macros]
dist = ".k1"
[subprofile.live]
packages = ["live-boot"]
"#,
            Context::Image,
        );
        assert_eq!(diags, []);
        assert_eq!(def.extends.iter().map(|s| s.v.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(def.scalar("build.timeout").map(|s| &s.v), Some(&Scalar::Int(1800)));
        assert_eq!(def.scalar("output.tar.zst.level").map(|s| &s.v), Some(&Scalar::Int(19)));
        assert_eq!(def.subprofile[0].0.v, "live");
        assert!(def.tagged.as_ref().is_some_and(|(_, e)| e.is_some()));
    }

    #[test]
    fn unknown_and_misplaced_fields() {
        let (_, diags) = read("pakages = []\nextends = []\n", Context::Feature);
        assert_eq!(diags.len(), 2);
        assert_eq!(diags[0].message, "unknown field `pakages` in a feature definition");
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `packages`?"));
        assert_eq!(diags[0].primary.as_ref().map(|l| l.span.range.clone()), Some(0..7));
        assert_eq!(
            diags[1].message,
            "field `extends` is not allowed in a feature definition"
        );
    }

    #[test]
    fn wrong_types_and_values() {
        let (_, diags) = read(
            "packages = \"vim\"\nversion = 1\n[base]\nvariant = \"minbse\"\n[output.squashfs]\ncompression = \"zip\"\nlevel = 99\n",
            Context::Image,
        );
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "`packages` must be an array of strings, not a string",
                "`version` must be a string, not an integer",
                "`base.variant` cannot be `minbse`",
                "`output.squashfs.compression` cannot be `zip` (expected one of: zstd, xz, gzip, lz4, lzo)",
                "`output.squashfs.level` must be between 1 and 22",
            ]
        );
        assert_eq!(diags[2].help.as_deref(), Some("did you mean `minbase`?"));
    }

    #[test]
    fn base_from_and_bootstrap_conflict() {
        let (_, diags) = read("[base]\nsuite = \"bookworm\"\nfrom = \"edge@1\"\n", Context::Image);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, "base-conflict");
    }

    #[test]
    fn tag_expression_error_points_inside_the_string() {
        let text = "tagged = \"a && (b\"\n";
        let (_, diags) = read(text, Context::Image);
        assert_eq!(diags[0].message, "bad tag expression: unclosed `(`");
        let r = diags[0]
            .primary
            .as_ref()
            .map(|l| l.span.range.clone())
            .expect("located");
        assert_eq!(&text[r], "(");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("128K"), Some(128 << 10));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_name_at_version("edge-os@2.3.1"), Some(("edge-os", "2.3.1")));
        assert_eq!(parse_name_at_version("edge-os"), None);
    }
}
