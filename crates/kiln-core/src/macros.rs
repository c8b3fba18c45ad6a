//! Macro expansion (`%{name}`, `%{?name}`, `%{?name:text}`, `%{!?name:text}`,
//! `%%`) and the seven precedence layers of docs/profiles.md.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::model::Origin;

/// Maximum nesting of macro expansion before it is reported as runaway.
pub const MAX_DEPTH: usize = 32;

/// Where a macro definition comes from, highest precedence first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MacroLayer {
    /// `--define name=value`.
    Cli,
    /// The build target's macros (hub).
    Target,
    /// The builder's global config (`/etc/kiln/builder.toml`).
    Builder,
    /// The build tag's `macro.*` / `rpm.macro.*` extra (hub, through inheritance).
    BuildTag,
    /// The image definition (a child over its parents).
    Image,
    /// Features (a later feature over an earlier one).
    Feature,
    /// Repo defaults (`kiln.toml [macros]`).
    Repo,
}

impl MacroLayer {
    pub const ALL: [MacroLayer; 7] = [
        MacroLayer::Cli,
        MacroLayer::Target,
        MacroLayer::Builder,
        MacroLayer::BuildTag,
        MacroLayer::Image,
        MacroLayer::Feature,
        MacroLayer::Repo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MacroLayer::Cli => "cli",
            MacroLayer::Target => "target",
            MacroLayer::Builder => "builder",
            MacroLayer::BuildTag => "build-tag",
            MacroLayer::Image => "image",
            MacroLayer::Feature => "feature",
            MacroLayer::Repo => "repo",
        }
    }
}

impl fmt::Display for MacroLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn is_macro_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One definition of a macro in one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroDef {
    pub name: String,
    pub value: String,
    pub layer: MacroLayer,
    pub origin: Origin,
}

/// The winning definition of a macro and the ones it overrode (most recent
/// first, i.e. in decreasing precedence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroEntry {
    pub winner: MacroDef,
    pub overrode: Vec<MacroDef>,
}

/// All macros visible to a resolution, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MacroTable {
    entries: BTreeMap<String, MacroEntry>,
}

impl MacroTable {
    /// Builds the table from definitions given in **application order**: lowest
    /// precedence first (repo defaults, then features, …, then `--define`).
    /// Within one layer a later definition wins, matching composition order.
    pub fn from_defs(defs: impl IntoIterator<Item = MacroDef>) -> Self {
        let mut all: Vec<MacroDef> = defs.into_iter().collect();
        // Stable sort by layer, lowest precedence first; keeps the given order
        // inside a layer.
        all.sort_by_key(|d| std::cmp::Reverse(d.layer));
        let mut entries: BTreeMap<String, MacroEntry> = BTreeMap::new();
        for def in all {
            match entries.get_mut(&def.name) {
                Some(e) => {
                    let old = std::mem::replace(&mut e.winner, def);
                    e.overrode.insert(0, old);
                }
                None => {
                    entries.insert(
                        def.name.clone(),
                        MacroEntry {
                            winner: def,
                            overrode: Vec::new(),
                        },
                    );
                }
            }
        }
        MacroTable { entries }
    }

    pub fn get(&self, name: &str) -> Option<&MacroEntry> {
        self.entries.get(name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|e| e.winner.value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &MacroEntry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Expands `input` against this table.
    pub fn expand(&self, input: &str) -> Result<String, MacroError> {
        expand(input, &|n| self.value(n))
    }
}

/// Why an expansion failed. `range` is the byte range, in the string being
/// expanded, of the top-level reference that led to the failure; `chain` the
/// macros being expanded at the time, outermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MacroError {
    Undefined {
        name: String,
        range: Range<usize>,
        chain: Vec<String>,
    },
    Cycle {
        chain: Vec<String>,
        range: Range<usize>,
    },
    TooDeep {
        chain: Vec<String>,
        range: Range<usize>,
    },
    Syntax {
        message: String,
        range: Range<usize>,
        chain: Vec<String>,
    },
}

impl MacroError {
    pub fn range(&self) -> Range<usize> {
        match self {
            MacroError::Undefined { range, .. }
            | MacroError::Cycle { range, .. }
            | MacroError::TooDeep { range, .. }
            | MacroError::Syntax { range, .. } => range.clone(),
        }
    }
}

impl fmt::Display for MacroError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let via = |chain: &[String]| {
            if chain.is_empty() {
                String::new()
            } else {
                format!(
                    " (in the expansion of {})",
                    chain.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" → ")
                )
            }
        };
        match self {
            MacroError::Undefined { name, chain, .. } => {
                write!(f, "undefined macro `{name}`{}", via(chain))
            }
            MacroError::Cycle { chain, .. } => write!(f, "macro cycle: {}", chain.join(" → ")),
            MacroError::TooDeep { chain, .. } => write!(
                f,
                "macro expansion deeper than {MAX_DEPTH} levels: {}",
                chain.join(" → ")
            ),
            MacroError::Syntax { message, chain, .. } => write!(f, "{message}{}", via(chain)),
        }
    }
}

/// Expands every macro reference in `input`, looking names up with `lookup`.
pub fn expand<'a>(input: &str, lookup: &'a dyn Fn(&str) -> Option<&'a str>) -> Result<String, MacroError> {
    if !input.contains('%') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut cx = Expander {
        lookup,
        stack: Vec::new(),
    };
    cx.expand_into(input, &mut out, None)?;
    Ok(out)
}

/// Escapes `text` so that it expands to itself.
pub fn escape(text: &str) -> String {
    text.replace('%', "%%")
}

/// Names referenced by `%{name}` / `%{?name…}` in `input` (not recursively),
/// or the syntax error that stops the scan.
pub fn references(input: &str) -> Result<Vec<String>, MacroError> {
    let mut names = Vec::new();
    let mut i = 0;
    let b = input.as_bytes();
    while i < b.len() {
        if b[i] == b'%' && b.get(i + 1) == Some(&b'%') {
            i += 2;
        } else if b[i] == b'%' && b.get(i + 1) == Some(&b'{') {
            let (inner, end) = braced(input, i)?;
            let r = parse_ref(inner, i + 2, i..end)?;
            names.push(r.name.to_string());
            if let Some((text, _)) = r.text {
                names.extend(references(text)?);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    Ok(names)
}

struct Expander<'a> {
    lookup: &'a dyn Fn(&str) -> Option<&'a str>,
    stack: Vec<String>,
}

enum Cond {
    Plain,
    IfDefined,
    IfUndefined,
}

struct Ref<'s> {
    cond: Cond,
    name: &'s str,
    /// Text after `:` and its offset in the enclosing string.
    text: Option<(&'s str, usize)>,
}

/// Finds the `}` matching the `%{` at `start`; returns the inner text and the
/// index after the `}`.
fn braced(s: &str, start: usize) -> Result<(&str, usize), MacroError> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&s[start + 2..i], i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(MacroError::Syntax {
        message: "unterminated macro reference: `%{` without a matching `}`".into(),
        range: start..s.len(),
        chain: Vec::new(),
    })
}

fn parse_ref(inner: &str, inner_offset: usize, whole: Range<usize>) -> Result<Ref<'_>, MacroError> {
    let (cond, rest, skip) = if let Some(r) = inner.strip_prefix("!?") {
        (Cond::IfUndefined, r, 2)
    } else if let Some(r) = inner.strip_prefix('?') {
        (Cond::IfDefined, r, 1)
    } else {
        (Cond::Plain, inner, 0)
    };
    let (name, text) = match (&cond, rest.find(':')) {
        (Cond::Plain, _) | (_, None) => (rest, None),
        (_, Some(colon)) => (
            &rest[..colon],
            Some((&rest[colon + 1..], inner_offset + skip + colon + 1)),
        ),
    };
    if !is_macro_name(name) {
        let message = if name.is_empty() {
            "empty macro name".to_string()
        } else if matches!(cond, Cond::Plain) && name.contains(':') {
            format!(
                "`%{{{name}}}`: only conditional macros take `:text`, e.g. `%{{?{}}}`",
                name.split(':').next().unwrap_or("")
            )
        } else {
            format!("bad macro name `{name}`: names are [A-Za-z0-9_]+")
        };
        return Err(MacroError::Syntax {
            message,
            range: whole,
            chain: Vec::new(),
        });
    }
    if matches!(cond, Cond::IfUndefined) && text.is_none() {
        return Err(MacroError::Syntax {
            message: format!("`%{{!?{name}}}` needs a text: `%{{!?{name}:text}}`"),
            range: whole,
            chain: Vec::new(),
        });
    }
    Ok(Ref { cond, name, text })
}

impl<'a> Expander<'a> {
    /// `top` is the range of the top-level reference being expanded (None
    /// while expanding the input itself).
    fn expand_into(&mut self, s: &str, out: &mut String, top: Option<&Range<usize>>) -> Result<(), MacroError> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut lit = 0;
        while i < b.len() {
            if b[i] != b'%' {
                i += 1;
                continue;
            }
            match b.get(i + 1) {
                Some(b'%') => {
                    out.push_str(&s[lit..i]);
                    out.push('%');
                    i += 2;
                    lit = i;
                }
                Some(b'{') => {
                    out.push_str(&s[lit..i]);
                    let (inner, end) = braced(s, i).map_err(|e| self.relocate(e, top))?;
                    let here = i..end;
                    let r = parse_ref(inner, i + 2, here.clone()).map_err(|e| self.relocate(e, top))?;
                    let at = top.cloned().unwrap_or(here);
                    self.reference(&r, s, out, &at)?;
                    i = end;
                    lit = i;
                }
                _ => i += 1,
            }
        }
        out.push_str(&s[lit..]);
        Ok(())
    }

    fn relocate(&self, e: MacroError, top: Option<&Range<usize>>) -> MacroError {
        match (e, top) {
            (MacroError::Syntax { message, range, .. }, top) => MacroError::Syntax {
                message,
                range: top.cloned().unwrap_or(range),
                chain: self.stack.clone(),
            },
            (e, _) => e,
        }
    }

    fn reference(&mut self, r: &Ref<'_>, _s: &str, out: &mut String, at: &Range<usize>) -> Result<(), MacroError> {
        let value = (self.lookup)(r.name);
        match (&r.cond, value, r.text) {
            (Cond::Plain, None, _) => Err(MacroError::Undefined {
                name: r.name.to_string(),
                range: at.clone(),
                chain: self.stack.clone(),
            }),
            (Cond::IfDefined, None, _) | (Cond::IfUndefined, Some(_), _) => Ok(()),
            (Cond::IfDefined, Some(_), Some((text, _))) | (Cond::IfUndefined, None, Some((text, _))) => {
                self.expand_into(text, out, Some(at))
            }
            (Cond::IfUndefined, None, None) => Ok(()),
            (Cond::Plain | Cond::IfDefined, Some(v), _) => {
                if self.stack.iter().any(|n| n == r.name) {
                    let mut chain = self.stack.clone();
                    chain.push(r.name.to_string());
                    let first = chain.iter().position(|n| n == r.name).unwrap_or(0);
                    return Err(MacroError::Cycle {
                        chain: chain[first..].to_vec(),
                        range: at.clone(),
                    });
                }
                if self.stack.len() >= MAX_DEPTH {
                    let mut chain = self.stack.clone();
                    chain.push(r.name.to_string());
                    return Err(MacroError::TooDeep {
                        chain,
                        range: at.clone(),
                    });
                }
                self.stack.push(r.name.to_string());
                let res = self.expand_into(v, out, Some(at));
                self.stack.pop();
                res
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(defs: &[(&str, &str)]) -> MacroTable {
        MacroTable::from_defs(defs.iter().map(|(k, v)| MacroDef {
            name: k.to_string(),
            value: v.to_string(),
            layer: MacroLayer::Repo,
            origin: Origin::Default,
        }))
    }

    #[test]
    fn forms() {
        let t = table(&[("dist", ".kiln1"), ("name", "srv"), ("empty", "")]);
        let x = |s: &str| t.expand(s);
        assert_eq!(x("1%{dist}").as_deref(), Ok("1.kiln1"));
        assert_eq!(x("1%{?dist}").as_deref(), Ok("1.kiln1"));
        assert_eq!(x("1%{?nope}").as_deref(), Ok("1"));
        assert_eq!(x("%{?dist:yes}").as_deref(), Ok("yes"));
        assert_eq!(x("%{?nope:yes}").as_deref(), Ok(""));
        assert_eq!(x("%{!?nope:no}").as_deref(), Ok("no"));
        assert_eq!(x("%{!?dist:no}").as_deref(), Ok(""));
        assert_eq!(x("%{?empty:set}").as_deref(), Ok("set"));
        assert_eq!(x("100%% %{name}").as_deref(), Ok("100% srv"));
        assert_eq!(x("50% off").as_deref(), Ok("50% off"));
        assert_eq!(x("%{?dist:%{name}%{dist}}").as_deref(), Ok("srv.kiln1"));
        assert_eq!(x("%%{name}").as_deref(), Ok("%{name}"));
    }

    #[test]
    fn recursion_and_errors() {
        let t = table(&[
            ("a", "<%{b}>"),
            ("b", "%{c}"),
            ("c", "x"),
            ("l1", "%{l2}"),
            ("l2", "%{l1}"),
            ("u", "%{missing}"),
        ]);
        assert_eq!(t.expand("%{a}").as_deref(), Ok("<x>"));
        assert_eq!(
            t.expand("v=%{l1}"),
            Err(MacroError::Cycle {
                chain: vec!["l1".into(), "l2".into(), "l1".into()],
                range: 2..7
            })
        );
        assert_eq!(
            t.expand("ab %{u}"),
            Err(MacroError::Undefined {
                name: "missing".into(),
                range: 3..7,
                chain: vec!["u".into()]
            })
        );
        let e = t.expand("%{x").expect_err("unterminated");
        assert_eq!(e.range(), 0..3);
        let e = t.expand("%{na me}").expect_err("bad name");
        assert!(e.to_string().contains("bad macro name"), "{e}");
        let e = t.expand("%{a:b}").expect_err("plain with text");
        assert!(e.to_string().contains("only conditional"), "{e}");
    }

    #[test]
    fn depth_limit() {
        let defs: Vec<(String, String)> = (0..40).map(|i| (format!("m{i}"), format!("%{{m{}}}", i + 1))).collect();
        let map: BTreeMap<String, String> = defs.into_iter().collect();
        let lookup = |n: &str| map.get(n).map(String::as_str);
        match expand("%{m0}", &lookup) {
            Err(MacroError::TooDeep { chain, .. }) => assert_eq!(chain.len(), MAX_DEPTH + 1),
            other => panic!("expected TooDeep, got {other:?}"),
        }
    }

    #[test]
    fn layers_order() {
        let d = |name: &str, value: &str, layer| MacroDef {
            name: name.into(),
            value: value.into(),
            layer,
            origin: Origin::External(layer.to_string()),
        };
        let t = MacroTable::from_defs([
            d("x", "cli", MacroLayer::Cli),
            d("x", "repo", MacroLayer::Repo),
            d("x", "img1", MacroLayer::Image),
            d("x", "img2", MacroLayer::Image),
            d("y", "feat", MacroLayer::Feature),
        ]);
        let x = t.get("x").expect("x");
        assert_eq!(x.winner.value, "cli");
        let lost: Vec<_> = x.overrode.iter().map(|d| d.value.as_str()).collect();
        assert_eq!(lost, ["img2", "img1", "repo"]);
        assert_eq!(t.value("y"), Some("feat"));
    }

    #[test]
    fn references_scan() {
        assert_eq!(references("%{a} %% %{?b:%{c}}").expect("ok"), ["a", "b", "c"]);
    }
}
