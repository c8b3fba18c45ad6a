//! The builds' pages: the list, searched by an NVR pattern, and a build
//! with its files (download, size, sha256), its manifest rendered (base,
//! packages, scripts with commits and digests, macros with the layer that
//! won, stages cached or built with their keys), the tags it is in and its
//! task.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::session::{PageResult, Viewer, reader};
use super::{VERSION, failed, filters, page};
use crate::api::Hub;
use crate::model::Build;

const PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "builds.html")]
struct BuildsPage {
    version: &'static str,
    viewer: Viewer,
    q: String,
    builds: Vec<Build>,
    total: i64,
    prev: Option<i64>,
    next: Option<i64>,
}

/// A glob over NVRs (`*` any run, `?` one character) as a LIKE pattern,
/// `\` escaping LIKE's own wildcards.
pub(super) fn like(glob: &str) -> String {
    let mut out = String::new();
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    if !glob.contains(['*', '?']) {
        // A plain word finds the builds whose NVR contains it.
        out = format!("%{out}%");
    }
    out
}

pub(super) async fn list(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(s): Query<super::Search>,
) -> PageResult {
    let viewer = reader(&hub, &headers, "/builds").await?;
    let (q, offset, pattern) = s.terms();
    let p = hub
        .db
        .search_builds(pattern.as_deref(), offset, PAGE)
        .await
        .map_err(failed)?;
    let (prev, next) = super::around(offset, PAGE, p.total);
    let t = BuildsPage {
        version: VERSION,
        viewer,
        total: p.total,
        prev,
        next,
        builds: p.items,
        q,
    };
    page(&t).map_err(failed)
}

/// A stage of a manifest: its name, status, seconds, and its steps
/// (step, status, key).
type StageRow = (String, String, String, Vec<(String, String, String)>);

/// A manifest, as the page shows it.
#[derive(Default)]
struct ManifestView {
    kind: String,
    base: Vec<(String, String)>,
    packages: Vec<(String, String, String)>,
    scripts: Vec<(String, String, String, String)>,
    macros: Vec<(String, String, String)>,
    stages: Vec<StageRow>,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn manifest_view(m: &Value) -> ManifestView {
    let mut view = ManifestView {
        kind: text(&m["kind"]),
        ..ManifestView::default()
    };
    if let Some(base) = m["base"].as_object() {
        view.base = base.iter().map(|(k, v)| (k.clone(), text(v))).collect();
    }
    if let Some(src) = m["source"].as_object() {
        view.base = src.iter().map(|(k, v)| (format!("source {k}"), text(v))).collect();
    }
    for p in m["packages"].as_array().into_iter().flatten() {
        view.packages
            .push((text(&p["name"]), text(&p["version"]), text(&p["arch"])));
    }
    for s in m["scripts"].as_array().into_iter().flatten() {
        let origin = if s["git"].is_null() {
            text(&s["path"])
        } else {
            text(&s["git"])
        };
        view.scripts
            .push((text(&s["stage"]), text(&s["name"]), origin, text(&s["sha256"])));
    }
    if m["script"].is_object() {
        let s = &m["script"];
        let origin = format!("{} {}", text(&s["origin"]), text(&s["commit"]));
        view.scripts
            .push(("update".into(), "script".into(), origin, text(&s["sha256"])));
    }
    for mac in m["plan"]["macros"].as_array().into_iter().flatten() {
        view.macros
            .push((text(&mac["name"]), text(&mac["value"]), text(&mac["layer"])));
    }
    if let Some(defs) = m["macros"].as_object() {
        for (k, v) in defs {
            view.macros.push((k.clone(), text(v), "cli".into()));
        }
    }
    for st in m["stages"].as_array().into_iter().flatten() {
        let steps = st["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (text(&s["step"]), text(&s["status"]), text(&s["key"])))
            .collect();
        view.stages
            .push((text(&st["stage"]), text(&st["status"]), text(&st["seconds"]), steps));
    }
    view
}

#[derive(Template)]
#[template(path = "build.html")]
struct BuildPage {
    version: &'static str,
    viewer: Viewer,
    build: Build,
    tags: Vec<String>,
    manifest: ManifestView,
}

pub(super) async fn show(State(hub): State<Arc<Hub>>, headers: HeaderMap, Path(nvr): Path<String>) -> PageResult {
    let viewer = reader(&hub, &headers, &format!("/builds/{nvr}")).await?;
    let build = hub.db.build(&nvr, true).await.map_err(failed)?;
    let tags = hub.db.build_tags(&nvr).await.map_err(failed)?;
    let manifest = build.manifest.as_ref().map(manifest_view).unwrap_or_default();
    let t = BuildPage {
        version: VERSION,
        viewer,
        build,
        tags,
        manifest,
    };
    page(&t).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_like_patterns_with_its_wildcards_escaped() {
        assert_eq!(like("cam-fw-*"), "cam-fw-%");
        assert_eq!(like("cam-?-1"), "cam-_-1");
        assert_eq!(like("fw"), "%fw%");
        assert_eq!(like("50%_off*"), "50\\%\\_off%");
    }

    #[test]
    fn manifests_of_builds_and_updates_render() {
        let b = serde_json::json!({"kind": "image", "base": {"mode": "bootstrap", "command": "mmdebstrap …"},
            "packages": [{"name": "bash", "version": "5.2", "arch": "amd64"}],
            "scripts": [{"stage": "scripts", "name": "a.sh", "git": "git+x@c:a.sh", "sha256": "ab"}],
            "plan": {"macros": [{"name": "dist", "value": ".el", "layer": "image"}]},
            "stages": [{"stage": "base", "status": "cached", "seconds": 0.1,
                        "steps": [{"step": "base", "key": "k1", "status": "cached"}]}]});
        let v = manifest_view(&b);
        assert_eq!(v.packages, [("bash".into(), "5.2".into(), "amd64".into())]);
        assert_eq!(v.macros, [("dist".into(), ".el".into(), "image".into())]);
        assert_eq!(v.stages[0].3, [("base".into(), "cached".into(), "k1".into())]);
        let u = serde_json::json!({"kind": "update", "source": {"name": "cam", "version": "1"},
            "script": {"origin": "git+x@main:u.sh", "commit": "c0", "sha256": "ff"}, "macros": {"release": "1"}});
        let v = manifest_view(&u);
        assert_eq!(v.scripts[0].2, "git+x@main:u.sh c0");
        assert_eq!(v.macros, [("release".into(), "1".into(), "cli".into())]);
    }
}
