//! What a pipeline's configuration must hold (docs/pipelines.md), checked
//! without the database: its kind's fields, its git specs, its
//! target-name pattern expanded with sample values, its defines and push
//! filters. The database then checks what it refers to (the target, the
//! builder) and the loops pipelines would make through the catalog.

use kiln_core::macros::MacroDef;
use kiln_core::pipeline::{self, BUILTINS, RunFacts, SourceVersion};
use kiln_hub_api::names::{self, MAX_NAME, MAX_TEXT};

use crate::error::{HubError, Result};
use crate::model::{Pipeline, PipelineKind};

/// What the checks found that the database keeps beside the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The source image whose new versions start runs (`on_new_source`).
    pub chain_source: Option<String>,
    /// The source image's name (update pipelines).
    pub source_name: Option<String>,
    /// The image name results are imported as (`import_image`).
    pub produces: Option<String>,
}

fn bad(msg: impl Into<String>) -> HubError {
    HubError::bad_request(msg)
}

fn name(kind: &str, v: &str) -> Result<()> {
    names::check_name(kind, v).map_err(bad)
}

fn line(field: &str, v: &str) -> Result<()> {
    names::check_line(field, v, MAX_TEXT).map_err(bad)
}

fn required<'a>(kind: PipelineKind, field: &str, v: &'a Option<String>) -> Result<&'a str> {
    v.as_deref()
        .ok_or_else(|| bad(format!("{} pipelines need `{field}`", kind.as_str())))
}

fn absent(kind: PipelineKind, field: &str, v: &Option<String>) -> Result<()> {
    match v {
        Some(_) => Err(bad(format!("`{field}` is not for {} pipelines", kind.as_str()))),
        None => Ok(()),
    }
}

/// Checks a configuration; `layers` are its target's macro layers (the
/// target's own, then its build tag's), used to expand the target-name
/// pattern with sample values.
pub fn check(p: &Pipeline, layers: &[MacroDef]) -> Result<Checked> {
    name("pipeline name", &p.name)?;
    name("target", &p.target)?;
    if let Some(b) = &p.builder {
        name("builder", b)?;
    }
    name("channel", &p.channel)?;
    name("arch", &p.arch)?;
    if !(0..=1_000_000).contains(&p.priority) {
        return Err(bad(format!(
            "priority must be between 0 and 1000000, not {}",
            p.priority
        )));
    }
    if let Some(f) = &p.format {
        name("format", f)?;
    }
    for (k, v) in &p.defines {
        if !kiln_core::macros::is_macro_name(k) || k.len() > MAX_NAME {
            return Err(bad(format!(
                "bad macro name `{}`: 1 to {MAX_NAME} letters, digits and _",
                k.escape_debug()
            )));
        }
        if BUILTINS.contains(&k.as_str()) {
            return Err(bad(format!("`{k}` is set by every run; define another name")));
        }
        names::check_value(&format!("define `{k}`"), v).map_err(bad)?;
    }
    check_filters(p)?;
    let mut checked = Checked::default();
    match p.kind {
        PipelineKind::Update => {
            let source = required(p.kind, "source", &p.source)?;
            let s = pipeline::parse_source(source).map_err(bad)?;
            name("source image name", &s.name)?;
            if let SourceVersion::Exact(v) = &s.version {
                name("source version", v)?;
            }
            let script = required(p.kind, "script", &p.script)?;
            line("script", script)?;
            kiln_core::resolve::parse_git_ref(script).map_err(|e| bad(format!("script `{script}`: {e}")))?;
            required(p.kind, "target_name", &p.target_name)?;
            absent(p.kind, "repo", &p.repo)?;
            absent(p.kind, "image", &p.image)?;
            if p.on_new_source {
                if s.version != SourceVersion::Latest {
                    return Err(bad(format!(
                        "on_new_source needs a source that follows new versions: `{}@latest`, not `{source}`",
                        s.name
                    )));
                }
                checked.chain_source = Some(s.name.clone());
            }
            checked.source_name = Some(s.name);
        }
        PipelineKind::Build => {
            let repo = required(p.kind, "repo", &p.repo)?;
            line("repo", repo)?;
            kiln_core::resolve::parse_git_repo(repo).map_err(|e| bad(format!("repo `{repo}`: {e}")))?;
            line("image", required(p.kind, "image", &p.image)?)?;
            absent(p.kind, "source", &p.source)?;
            absent(p.kind, "script", &p.script)?;
            absent(p.kind, "format", &p.format)?;
            if p.on_new_source || p.import_image {
                return Err(bad("on_new_source and import_image are for update pipelines"));
            }
        }
    }
    if let Some(pattern) = &p.target_name {
        line("target_name", pattern)?;
        let sample = expand(p, pattern, layers, checked.source_name.as_deref())?;
        check_nvr(pattern, &sample)?;
    }
    if p.import_image {
        let pattern = p.target_name.as_deref().unwrap_or_default();
        let produced = pipeline::static_image_name(pattern, checked.source_name.as_deref(), &p.defines, layers)
            .map_err(bad)?
            .ok_or_else(|| {
                bad(format!(
                    "import_image needs a target name whose NAME part is the same for every run: \
                     in `{pattern}` it depends on %{{run}}, %{{date}}, the source version or the commit"
                ))
            })?;
        name("imported image name", &produced)?;
        checked.produces = Some(produced);
    }
    Ok(checked)
}

/// The pattern expanded with sample values for the run's builtins.
fn expand(p: &Pipeline, pattern: &str, layers: &[MacroDef], source: Option<&str>) -> Result<String> {
    let facts = RunFacts {
        run: 1,
        source: source.map(|s| (s.to_string(), "1.0".to_string())),
        commit: Some("0".repeat(40)),
        time: crate::db::now(),
    };
    pipeline::expand_name(pattern, &facts, &p.defines, layers).map_err(bad)
}

/// Checks an expanded target name: NAME-VERSION-RELEASE, each part a name.
pub fn check_nvr(pattern: &str, nvr: &str) -> Result<()> {
    let Some((n, v, r)) = pipeline::split_nvr(nvr) else {
        return Err(bad(format!(
            "target name `{pattern}` expands to `{}`, not NAME-VERSION-RELEASE",
            nvr.escape_debug()
        )));
    };
    for (kind, part) in [("name", n), ("version", v), ("release", r)] {
        names::check_name(kind, part).map_err(|e| bad(format!("target name `{pattern}` expands to `{nvr}`: {e}")))?;
    }
    Ok(())
}

/// Checks the push filters' patterns.
fn check_filters(p: &Pipeline) -> Result<()> {
    let filter = crate::hooks::RefFilter {
        branches: p.branches.clone(),
        tags: p.tags.clone(),
    };
    filter.check().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn update() -> Pipeline {
        Pipeline {
            name: "cam".into(),
            kind: PipelineKind::Update,
            source: Some("cam-base@latest".into()),
            script: Some("git+https://git.example.com/ops/scripts.git@main:cam/update.sh".into()),
            repo: None,
            image: None,
            target_name: Some("cam-fw-%{source_version}-%{run}".into()),
            target: "cam".into(),
            builder: None,
            channel: "default".into(),
            arch: "noarch".into(),
            priority: 20,
            format: None,
            defines: BTreeMap::new(),
            enabled: true,
            on_new_source: true,
            import_image: true,
            branches: vec!["main".into()],
            tags: vec!["v*".into()],
            owner: None,
            hooks: Vec::new(),
        }
    }

    fn err(p: &Pipeline) -> String {
        check(p, &[]).expect_err("refused").message
    }

    #[test]
    fn an_update_pipeline_names_its_chain_and_what_it_imports() {
        let c = check(&update(), &[]).expect("valid");
        assert_eq!(c.chain_source.as_deref(), Some("cam-base"));
        assert_eq!(c.produces.as_deref(), Some("cam-fw"));
    }

    #[test]
    fn each_kind_needs_its_fields_and_refuses_the_others() {
        let mut p = update();
        p.script = None;
        assert!(err(&p).contains("update pipelines need `script`"), "{}", err(&p));
        let mut p = update();
        p.repo = Some("git+file:///srv/p@main".into());
        assert!(err(&p).contains("`repo` is not for update pipelines"));
        let mut p = update();
        p.kind = PipelineKind::Build;
        assert!(err(&p).contains("build pipelines need `repo`"));
        p.repo = Some("git+file:///srv/p@main".into());
        p.image = Some("ve/minimal".into());
        assert!(err(&p).contains("`source` is not for build pipelines"));
    }

    #[test]
    fn patterns_must_expand_to_an_nvr() {
        let mut p = update();
        p.target_name = Some("cam-fw".into());
        assert!(err(&p).contains("not NAME-VERSION-RELEASE"), "{}", err(&p));
        p.target_name = Some("cam-fw-%{nope}-1".into());
        assert!(err(&p).contains("undefined macro `nope`"), "{}", err(&p));
        p.target_name = Some("cam fw-1-1".into());
        assert!(err(&p).contains("expands to"), "{}", err(&p));
    }

    #[test]
    fn following_new_sources_needs_latest_and_imports_need_a_fixed_name() {
        let mut p = update();
        p.source = Some("cam-base@2.0".into());
        assert!(err(&p).contains("cam-base@latest"), "{}", err(&p));
        let mut p = update();
        p.target_name = Some("cam-fw%{run}-1-1".into());
        assert!(err(&p).contains("import_image needs"), "{}", err(&p));
    }

    #[test]
    fn defines_may_not_shadow_builtins_and_bad_values_are_refused() {
        let mut p = update();
        p.defines.insert("run".into(), "1".into());
        assert!(err(&p).contains("set by every run"));
        let mut p = update();
        p.defines.insert("a b".into(), "1".into());
        assert!(err(&p).contains("bad macro name"));
        let mut p = update();
        p.script = Some("git+https://x.example/s.git@main".into());
        assert!(err(&p).contains("script"), "{}", err(&p));
        let mut p = update();
        p.priority = -1;
        assert!(err(&p).contains("priority"));
    }
}
