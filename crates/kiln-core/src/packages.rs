//! Package entries (`pkg`, `pkg=1.2-3`, `pkg@amd64,arm64`, `pkg@!armhf`,
//! `!pkg`) and package list files.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::diag::{Span, did_you_mean};
use crate::model::Sp;

/// Debian architecture names accepted in filters (release and ports).
pub const DEBIAN_ARCHES: &[&str] = &[
    "amd64", "arm64", "armel", "armhf", "i386", "mips64el", "mipsel", "ppc64el", "s390x", "riscv64", "loong64",
    "alpha", "hppa", "m68k", "powerpc", "ppc64", "sh4", "sparc64", "x32", "ia64",
];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArchFilter {
    pub negated: bool,
    pub arches: Vec<String>,
}

impl ArchFilter {
    pub fn matches(&self, arch: &str) -> bool {
        self.arches.iter().any(|a| a == arch) != self.negated
    }
}

impl fmt::Display for ArchFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bang = if self.negated { "!" } else { "" };
        let parts: Vec<String> = self.arches.iter().map(|a| format!("{bang}{a}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// One parsed package entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PkgSpec {
    /// The package name, with an `=version` pin if given.
    pub name: String,
    pub remove: bool,
    pub arch: Option<ArchFilter>,
}

/// A parsed entry ready to apply: names shared, the set's key precomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkgRef {
    /// As written, with an `=version` pin if any.
    pub name: Arc<str>,
    /// The package name without a pin: what `remove` matches.
    pub key: Arc<str>,
    pub remove: bool,
    pub arch: Option<Arc<ArchFilter>>,
}

impl From<PkgSpec> for PkgRef {
    fn from(spec: PkgSpec) -> Self {
        let key: Arc<str> = match spec.name.split_once('=') {
            Some((bare, _)) => bare.into(),
            None => spec.name.as_str().into(),
        };
        let name = if key.len() == spec.name.len() {
            Arc::clone(&key)
        } else {
            spec.name.into()
        };
        PkgRef {
            name,
            key,
            remove: spec.remove,
            arch: spec.arch.map(Arc::new),
        }
    }
}

/// A problem in one entry: message, range inside the entry, optional hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkgError {
    pub code: &'static str,
    pub message: String,
    pub range: Range<usize>,
    pub help: Option<String>,
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(c))
}

fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~:-".contains(&c))
}

/// Parses one entry.
pub fn parse_pkg(entry: &str) -> Result<PkgSpec, PkgError> {
    let (remove, body, off) = match entry.strip_prefix('!') {
        Some(rest) => (true, rest, 1),
        None => (false, entry, 0),
    };
    let (name, filter) = match body.split_once('@') {
        Some((n, f)) => (n, Some(f)),
        None => (body, None),
    };
    let bare = name.split_once('=').map_or(name, |(n, _)| n);
    if !valid_name(bare) {
        return Err(PkgError {
            code: "bad-package",
            message: format!("bad package name `{bare}`"),
            range: off..off + name.len(),
            help: Some("Debian package names are lowercase letters, digits and + . -, at least two characters".into()),
        });
    }
    if let Some((_, v)) = name.split_once('=')
        && !valid_version(v)
    {
        return Err(PkgError {
            code: "bad-package",
            message: format!("bad version `{v}` in `{name}`"),
            range: off..off + name.len(),
            help: None,
        });
    }
    let arch = match filter {
        None => None,
        Some(f) => Some(parse_arch_filter(f).map_err(|mut e| {
            let shift = off + name.len() + 1;
            e.range = e.range.start + shift..e.range.end + shift;
            e
        })?),
    };
    Ok(PkgSpec {
        name: name.to_string(),
        remove,
        arch,
    })
}

/// Parses the part after `@`: `amd64,arm64` or `!arm64,!armhf`.
pub fn parse_arch_filter(f: &str) -> Result<ArchFilter, PkgError> {
    let bad = |message: String, range: Range<usize>, help: Option<String>| PkgError {
        code: "bad-arch-filter",
        message,
        range,
        help,
    };
    if f.is_empty() {
        return Err(bad(
            "empty architecture filter after `@`".into(),
            0..0,
            Some("e.g. `pkg@amd64` or `pkg@!armhf`".into()),
        ));
    }
    let mut negated = None;
    let mut arches = Vec::new();
    let mut pos = 0;
    for part in f.split(',') {
        let range = pos..pos + part.len();
        pos += part.len() + 1;
        let (neg, a) = match part.strip_prefix('!') {
            Some(a) => (true, a),
            None => (false, part),
        };
        if *negated.get_or_insert(neg) != neg {
            return Err(bad(
                format!("architecture filter `@{f}` mixes negated and plain architectures"),
                0..f.len(),
                Some("write either `@a,b` (only these) or `@!a,!b` (all but these)".into()),
            ));
        }
        if !DEBIAN_ARCHES.contains(&a) {
            let help = did_you_mean(a, DEBIAN_ARCHES.iter().copied()).map(|s| format!("did you mean `{s}`?"));
            let msg = if a.is_empty() {
                "empty architecture in filter".to_string()
            } else {
                format!("unknown architecture `{a}` in filter")
            };
            return Err(bad(msg, range, help));
        }
        arches.push(a.to_string());
    }
    Ok(ArchFilter {
        negated: negated.unwrap_or(false),
        arches,
    })
}

/// Splits a package list file into entries with their spans; `#` starts a
/// comment, entries are separated by white space.
pub fn tokenize_list(file: &Arc<str>, text: &str) -> Vec<Sp<String>> {
    let mut out = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let content = line.split('#').next().unwrap_or("");
        let mut i = 0;
        let b = content.as_bytes();
        while i < b.len() {
            if b[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            let span = Span::new(file, line_start + start..line_start + i);
            out.push(Sp {
                v: content[start..i].to_string(),
                span,
                inner: Some(0),
            });
        }
        line_start += line.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let p = parse_pkg("linux-image-amd64@amd64").expect("ok");
        assert_eq!(p.name, "linux-image-amd64");
        assert!(
            p.arch
                .as_ref()
                .is_some_and(|a| a.matches("amd64") && !a.matches("arm64"))
        );
        let p = parse_pkg("!nano").expect("ok");
        assert!(p.remove);
        let p = parse_pkg("foo@!armhf,!i386").expect("ok");
        assert!(
            p.arch
                .as_ref()
                .is_some_and(|a| a.matches("amd64") && !a.matches("i386"))
        );
        assert_eq!(p.arch.map(|a| a.to_string()).as_deref(), Some("!armhf,!i386"));
        assert_eq!(parse_pkg("libc6=2.36-9").expect("ok").name, "libc6=2.36-9");
    }

    #[test]
    fn errors() {
        let e = parse_pkg("foo@amd46").expect_err("bad arch");
        assert_eq!(e.message, "unknown architecture `amd46` in filter");
        assert_eq!(e.range, 4..9);
        assert_eq!(e.help.as_deref(), Some("did you mean `amd64`?"));
        let e = parse_pkg("foo@amd64,!arm64").expect_err("mixed");
        assert_eq!(e.code, "bad-arch-filter");
        let e = parse_pkg("foo@").expect_err("empty");
        assert_eq!(e.code, "bad-arch-filter");
        let e = parse_pkg("Foo").expect_err("uppercase");
        assert_eq!(e.code, "bad-package");
        let e = parse_pkg("!x").expect_err("short");
        assert_eq!(e.range, 1..2);
    }

    #[test]
    fn list_tokens() {
        let f: Arc<str> = "lists/base".into();
        let toks = tokenize_list(&f, "# header\nless  vim-tiny # editor\n\n  curl@amd64\n");
        let v: Vec<_> = toks.iter().map(|t| (t.v.as_str(), t.span.range.clone())).collect();
        assert_eq!(v, [("less", 9..13), ("vim-tiny", 15..23), ("curl@amd64", 36..46)]);
    }
}
