//! Pipelines (docs/pipelines.md), the pure part: source images named by
//! version or `latest`, git specs moved to a pushed ref or commit, the
//! target-name pattern's expansion, and the chains pipelines make through
//! the image catalog.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::macros::{self, MacroDef};
use crate::resolve::{parse_git_ref, parse_git_repo};
use crate::version;

/// The version a pipeline starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceVersion {
    /// The highest version in the hub's catalog when the run starts.
    Latest,
    Exact(String),
}

/// A pipeline's source image: `NAME@VERSION` or `NAME@latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub version: SourceVersion,
}

/// Reads `NAME@VERSION` or `NAME@latest` (the name and version are checked
/// by the caller's name rule).
pub fn parse_source(s: &str) -> Result<Source, String> {
    let (name, version) = s
        .split_once('@')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("source `{s}`: expected NAME@VERSION or NAME@latest"))?;
    Ok(Source {
        name: name.to_string(),
        version: if version == "latest" {
            SourceVersion::Latest
        } else {
            SourceVersion::Exact(version.to_string())
        },
    })
}

/// The highest of `versions` in Debian's ordering (docs/update.md).
pub fn latest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions
        .into_iter()
        .max_by(|a, b| version::compare(a, b).then_with(|| a.cmp(b)))
}

/// Whether `a` sorts after `b` in Debian's ordering.
pub fn newer(a: &str, b: &str) -> bool {
    version::compare(a, b) == Ordering::Greater
}

/// `git+URL@REF:PATH` with its ref replaced (a pushed branch, tag or commit).
pub fn script_at(script: &str, rev: &str) -> Result<String, String> {
    let r = parse_git_ref(script)?;
    let spec = format!("git+{}@{rev}:{}", r.url, r.path);
    parse_git_ref(&spec)?;
    Ok(spec)
}

/// `git+URL@REF` with its ref replaced.
pub fn repo_at(repo: &str, rev: &str) -> Result<String, String> {
    let (url, _) = parse_git_repo(repo)?;
    let spec = format!("git+{url}@{rev}");
    parse_git_repo(&spec)?;
    Ok(spec)
}

/// The ref of a `git+URL@REF:PATH` script or a `git+URL@REF` repository.
pub fn spec_rev(spec: &str) -> Result<String, String> {
    match parse_git_ref(spec) {
        Ok(r) => Ok(r.rev),
        Err(_) => parse_git_repo(spec).map(|(_, rev)| rev),
    }
}

/// The macros every run defines; a pipeline's own defines may not use
/// these names.
pub const BUILTINS: [&str; 6] = ["run", "source_name", "source_version", "commit", "commit_short", "date"];

/// Builtins whose value a builder supplies when the run starts without a
/// known commit (the builder resolves the ref first): the hub leaves them
/// in the expanded name as `%{commit}` / `%{commit_short}`, and
/// [`fill_commit`] replaces them.
const DEFERRED: [&str; 2] = ["commit", "commit_short"];

/// What a run knows when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFacts {
    pub run: i64,
    /// The resolved source image, for update pipelines.
    pub source: Option<(String, String)>,
    /// The commit, when the trigger named one.
    pub commit: Option<String>,
    /// Seconds since the epoch (`%{date}` is its UTC day, YYYYMMDD).
    pub time: i64,
}

/// Marks a deferred builtin inside the expander's output; names never hold
/// control characters, so the marker cannot come from a definition.
fn marker(name: &str) -> String {
    format!("\u{1}{name}\u{1}")
}

/// Expands a target-name pattern. Precedence, highest first: the builtins,
/// the pipeline's defines, then `layers` (the target's and the build tag's
/// macros, in docs/profiles.md's order). A commit the run does not know yet
/// is left as `%{commit}` / `%{commit_short}` for the builder.
pub fn expand_name(
    pattern: &str,
    facts: &RunFacts,
    defines: &BTreeMap<String, String>,
    layers: &[MacroDef],
) -> Result<String, String> {
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for d in layers.iter().rev() {
        // `layers` lists higher precedence first: keep the first seen.
        values.insert(d.name.as_str(), d.value.clone());
    }
    for (k, v) in defines {
        values.insert(k.as_str(), v.clone());
    }
    values.insert("run", facts.run.to_string());
    values.insert("date", crate::utc::day(facts.time));
    if let Some((name, version)) = &facts.source {
        values.insert("source_name", name.clone());
        values.insert("source_version", nvr_field(version));
    }
    match &facts.commit {
        Some(c) => {
            values.insert("commit", c.clone());
            values.insert("commit_short", c.chars().take(12).collect());
        }
        None => {
            for d in DEFERRED {
                values.insert(d, marker(d));
            }
        }
    }
    let lookup = |n: &str| values.get(n).map(String::as_str);
    let mut out = macros::expand(pattern, &lookup).map_err(|e| format!("target name `{pattern}`: {e}"))?;
    for d in DEFERRED {
        out = out.replace(&marker(d), &format!("%{{{d}}}"));
    }
    Ok(out)
}

/// A source version as a field of NAME-VERSION-RELEASE, which splits on
/// dashes: `-` becomes `_` (an image a pipeline imported is versioned
/// VERSION-RELEASE, `2.3.1-7`, and goes into a target name as `2.3.1_7`).
pub fn nvr_field(version: &str) -> String {
    version.replace('-', "_")
}

/// Replaces the builtins [`expand_name`] left for the builder.
pub fn fill_commit(name: &str, commit: &str) -> String {
    let short: String = commit.chars().take(12).collect();
    name.replace("%{commit_short}", &short).replace("%{commit}", commit)
}

/// Whether an expanded name still waits for the commit.
pub fn needs_commit(name: &str) -> bool {
    DEFERRED.iter().any(|d| name.contains(&format!("%{{{d}}}")))
}

/// NAME-VERSION-RELEASE split on its last two dashes.
pub fn split_nvr(nvr: &str) -> Option<(&str, &str, &str)> {
    let (nv, r) = nvr.rsplit_once('-')?;
    let (n, v) = nv.rsplit_once('-')?;
    (!n.is_empty() && !v.is_empty() && !r.is_empty()).then_some((n, v, r))
}

/// The image name a pipeline's results carry in the catalog, when it does
/// not depend on the run: the NAME of the pattern expanded with every
/// run-specific builtin set to a value that cannot occur in a name.
pub fn static_image_name(
    pattern: &str,
    source_name: Option<&str>,
    defines: &BTreeMap<String, String>,
    layers: &[MacroDef],
) -> Result<Option<String>, String> {
    let facts = RunFacts {
        run: 0,
        source: source_name.map(|n| (n.to_string(), "\u{2}".to_string())),
        commit: Some("\u{2}".into()),
        time: 0,
    };
    let expanded = expand_name(pattern, &facts, defines, layers)?;
    // `run` and `date` are digits: mark them by expanding twice with
    // different values and keeping only what both agree on.
    let other = RunFacts {
        run: 1,
        time: 86_400 * 400,
        ..facts
    };
    let expanded2 = expand_name(pattern, &other, defines, layers)?;
    let name = split_nvr(&expanded).map(|(n, ..)| n);
    let name2 = split_nvr(&expanded2).map(|(n, ..)| n);
    Ok(match (name, name2) {
        (Some(a), Some(b)) if a == b && !a.contains('\u{2}') => Some(a.to_string()),
        _ => None,
    })
}

/// One pipeline as an edge of the chain graph: it runs on new versions of
/// `source` and imports its results as `produces`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEdge {
    pub pipeline: String,
    pub source: String,
    pub produces: String,
}

/// A loop of pipelines each producing the next one's source, as the
/// pipeline names in order (the first repeated at the end), or None.
pub fn find_cycle(edges: &[ChainEdge]) -> Option<Vec<String>> {
    // Depth-first over image names; an edge is a pipeline.
    let mut by_source: BTreeMap<&str, Vec<&ChainEdge>> = BTreeMap::new();
    for e in edges {
        by_source.entry(e.source.as_str()).or_default().push(e);
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in by_source.keys().copied() {
        let mut path: Vec<&ChainEdge> = Vec::new();
        if let Some(c) = walk(start, &by_source, &mut path, &mut done) {
            return Some(c);
        }
    }
    None
}

fn walk<'a>(
    image: &'a str,
    by_source: &BTreeMap<&'a str, Vec<&'a ChainEdge>>,
    path: &mut Vec<&'a ChainEdge>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<String>> {
    if done.contains(image) {
        return None;
    }
    if let Some(i) = path.iter().position(|e| e.source == image) {
        let mut names: Vec<String> = path[i..].iter().map(|e| e.pipeline.clone()).collect();
        names.push(path[i].pipeline.clone());
        return Some(names);
    }
    for e in by_source.get(image).into_iter().flatten() {
        path.push(e);
        if let Some(c) = walk(&e.produces, by_source, path, done) {
            return Some(c);
        }
        path.pop();
    }
    done.insert(image);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::macros::MacroLayer;
    use crate::model::Origin;

    fn def(name: &str, value: &str, layer: MacroLayer) -> MacroDef {
        MacroDef {
            name: name.into(),
            value: value.into(),
            layer,
            origin: Origin::External("test".into()),
        }
    }

    #[test]
    fn sources_are_name_at_version_or_latest() {
        assert_eq!(
            parse_source("cam-fw@2.3.1"),
            Ok(Source {
                name: "cam-fw".into(),
                version: SourceVersion::Exact("2.3.1".into())
            })
        );
        assert_eq!(
            parse_source("cam-fw@latest").map(|s| s.version),
            Ok(SourceVersion::Latest)
        );
        for bad in ["cam-fw", "@1", "cam-fw@", ""] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn latest_follows_debian_ordering() {
        assert_eq!(latest(["2.3.9", "2.3.10", "2.3.2"]), Some("2.3.10"));
        assert_eq!(latest(["3.0~rc1", "2.9"]), Some("3.0~rc1"));
        assert_eq!(latest(["3.0~rc1", "3.0"]), Some("3.0"));
        assert_eq!(latest(Vec::<&str>::new()), None);
        assert!(newer("2.10", "2.9") && !newer("2.9", "2.10"));
    }

    #[test]
    fn specs_move_to_a_pushed_ref() {
        let s = "git+https://git.example.com/ops/scripts.git@main:cam/update.sh";
        assert_eq!(
            script_at(s, "0123abcd").as_deref(),
            Ok("git+https://git.example.com/ops/scripts.git@0123abcd:cam/update.sh")
        );
        assert_eq!(spec_rev(s).as_deref(), Ok("main"));
        assert_eq!(
            repo_at("git+file:///srv/profiles@v1", "refs/tags/v2").as_deref(),
            Ok("git+file:///srv/profiles@refs/tags/v2")
        );
        assert_eq!(spec_rev("git+file:///srv/profiles@v1").as_deref(), Ok("v1"));
        assert!(script_at(s, "has space").is_err());
        assert!(script_at(s, "-x").is_err());
        assert!(script_at("cam/update.sh", "main").is_err());
    }

    #[test]
    fn names_expand_builtins_over_defines_over_layers() {
        let facts = RunFacts {
            run: 7,
            source: Some(("cam-base".into(), "2.3.1".into())),
            commit: Some("89abcdef0123456789abcdef0123456789abcdef".into()),
            time: 1_764_720_000, // 2025-12-03
        };
        let defines = BTreeMap::from([("product".to_string(), "cam".to_string())]);
        let layers = [
            def("product", "from-target", MacroLayer::Target),
            def("rel", "%{run}.%{date}", MacroLayer::Target),
            def("rel", "tag", MacroLayer::BuildTag),
        ];
        let got = expand_name(
            "%{product}-fw-%{source_version}+g%{commit_short}-%{rel}",
            &facts,
            &defines,
            &layers,
        );
        assert_eq!(got.as_deref(), Ok("cam-fw-2.3.1+g89abcdef0123-7.20251203"));
        // A source version with a dash (an imported VERSION-RELEASE) keeps the fields apart.
        let dashed = RunFacts {
            source: Some(("cam-fw".into(), "2.3.1-7".into())),
            ..facts.clone()
        };
        let got = expand_name("dev-%{source_version}-%{run}", &dashed, &defines, &layers);
        assert_eq!(got.as_deref(), Ok("dev-2.3.1_7-7"));
        assert_eq!(split_nvr("dev-2.3.1_7-7"), Some(("dev", "2.3.1_7", "7")));
        let e = expand_name("x-%{nope}-1", &facts, &defines, &layers).expect_err("undefined");
        assert!(e.contains("undefined macro `nope`"), "{e}");
    }

    #[test]
    fn an_unknown_commit_is_left_for_the_builder() {
        let facts = RunFacts {
            run: 3,
            ..RunFacts::default()
        };
        let name = expand_name("fw-1.%{run}-%{commit_short}", &facts, &BTreeMap::new(), &[]);
        assert_eq!(name.as_deref(), Ok("fw-1.3-%{commit_short}"));
        let name = name.unwrap_or_default();
        assert!(needs_commit(&name));
        assert_eq!(
            fill_commit(&name, "0123456789abcdef0123456789abcdef01234567"),
            "fw-1.3-0123456789ab"
        );
        assert!(!needs_commit("fw-1.3-1"));
    }

    #[test]
    fn the_image_name_is_static_only_when_no_run_builtin_reaches_it() {
        let none = BTreeMap::new();
        let d = BTreeMap::from([("dev".to_string(), "cam".to_string())]);
        let s = |p: &str| static_image_name(p, Some("base"), &d, &[]);
        assert_eq!(s("%{dev}-fw-%{source_version}-%{run}"), Ok(Some("cam-fw".into())));
        assert_eq!(s("%{source_name}-dev-1-%{run}"), Ok(Some("base-dev".into())));
        assert_eq!(s("fw%{run}-1-1"), Ok(None));
        assert_eq!(s("fw-%{date}-%{commit_short}"), Ok(Some("fw".into())));
        assert_eq!(s("fw-%{date}"), Ok(None));
        assert_eq!(s("fw-%{commit_short}-1-1"), Ok(None));
        assert_eq!(s("%{source_version}-1-1"), Ok(None));
        assert_eq!(static_image_name("fw-1", None, &none, &[]), Ok(None));
    }

    #[test]
    fn chains_through_the_catalog_and_their_loops() {
        let e = |p: &str, s: &str, o: &str| ChainEdge {
            pipeline: p.into(),
            source: s.into(),
            produces: o.into(),
        };
        assert_eq!(find_cycle(&[e("a", "base", "dev"), e("b", "dev", "cam")]), None);
        assert_eq!(
            find_cycle(&[e("self", "fw", "fw")]),
            Some(vec!["self".into(), "self".into()])
        );
        let c = find_cycle(&[e("a", "base", "dev"), e("b", "dev", "cam"), e("c", "cam", "dev")]);
        assert_eq!(c, Some(vec!["b".into(), "c".into(), "b".into()]));
        // Two pipelines from one source are no loop.
        assert_eq!(find_cycle(&[e("a", "base", "x"), e("b", "base", "x")]), None);
    }
}
