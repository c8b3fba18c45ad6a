//! The pipelines' pages: the list, and the configuration page — the
//! designated builder or a channel (from the hosts), the source image and
//! version (from the catalog, or `latest`), the script's git URL, ref and
//! path, the target-name pattern with a live preview of the name it
//! expands to, the target, defines and triggers — with save, run now and
//! the runs, refreshed while they run.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use kiln_core::pipeline::{self, RunFacts};
use serde::Deserialize;

use super::session::{PageResult, Viewer, reader, viewer};
use super::{VERSION, failed, page};
use crate::api::{Hub, Trigger, checked, hook_secret, known_service, sha256_hex, start};
use crate::db::{self, Save};
use crate::error::{HubError, Result};
use crate::model::{HostInfo, Pipeline, PipelineKind, PipelineRun, Target};

#[derive(Template)]
#[template(path = "pipelines.html")]
struct ListPage {
    version: &'static str,
    viewer: Viewer,
    pipelines: Vec<Pipeline>,
}

pub(super) async fn list(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/pipelines").await?;
    let pipelines = hub.db.list_pipelines().await.map_err(failed)?;
    page(&ListPage {
        version: VERSION,
        viewer,
        pipelines,
    })
    .map_err(failed)
}

/// The form's fields, as the page shows them and as a save sends them.
#[derive(Deserialize, Default, Clone)]
pub(super) struct PipelineForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    builder: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    arch: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    git_url: String,
    #[serde(default)]
    git_ref: String,
    #[serde(default)]
    script_path: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    target_name: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    defines: String,
    #[serde(default)]
    branches: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    on_new_source: Option<String>,
    #[serde(default)]
    import_image: Option<String>,
    /// The services with a hook secret (shown, never sent).
    #[serde(skip)]
    hooks: String,
}

fn words(s: &str) -> Vec<String> {
    s.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl PipelineForm {
    fn from_pipeline(p: &Pipeline) -> PipelineForm {
        let spec = p.script.as_deref().or(p.repo.as_deref()).unwrap_or_default();
        let (git_url, git_ref, script_path) = match kiln_core::resolve::parse_git_ref(spec) {
            Ok(r) => (r.url, r.rev, r.path),
            Err(_) => match kiln_core::resolve::parse_git_repo(spec) {
                Ok((u, r)) => (u, r, String::new()),
                Err(_) => Default::default(),
            },
        };
        PipelineForm {
            csrf: String::new(),
            name: p.name.clone(),
            kind: p.kind.as_str().to_string(),
            builder: p.builder.clone().unwrap_or_default(),
            channel: p.channel.clone(),
            arch: p.arch.clone(),
            source: p.source.clone().unwrap_or_default(),
            git_url,
            git_ref,
            script_path,
            image: p.image.clone().unwrap_or_default(),
            target_name: p.target_name.clone().unwrap_or_default(),
            target: p.target.clone(),
            defines: p.defines.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
            branches: p.branches.join(", "),
            tags: p.tags.join(", "),
            enabled: p.enabled.then(|| "on".into()),
            on_new_source: p.on_new_source.then(|| "on".into()),
            import_image: p.import_image.then(|| "on".into()),
            hooks: p.hooks.join(", "),
        }
    }

    fn defines(&self) -> Result<BTreeMap<String, String>> {
        self.defines
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                    .ok_or_else(|| HubError::bad_request(format!("define `{l}`: expected NAME=VALUE")))
            })
            .collect()
    }

    fn to_pipeline(&self) -> Result<Pipeline> {
        let kind = match self.kind.as_str() {
            "build" => PipelineKind::Build,
            _ => PipelineKind::Update,
        };
        let url = self.git_url.trim();
        let rev = if self.git_ref.trim().is_empty() {
            "main"
        } else {
            self.git_ref.trim()
        };
        let (script, repo) = match kind {
            PipelineKind::Update => (Some(format!("git+{url}@{rev}:{}", self.script_path.trim())), None),
            PipelineKind::Build => (None, Some(format!("git+{url}@{rev}"))),
        };
        Ok(Pipeline {
            name: self.name.trim().to_string(),
            kind,
            source: (kind == PipelineKind::Update).then(|| opt(&self.source)).flatten(),
            script,
            repo,
            image: (kind == PipelineKind::Build).then(|| opt(&self.image)).flatten(),
            target_name: opt(&self.target_name),
            target: self.target.trim().to_string(),
            builder: opt(&self.builder),
            channel: opt(&self.channel).unwrap_or_else(|| "default".into()),
            arch: opt(&self.arch).unwrap_or_else(|| "noarch".into()),
            priority: 20,
            format: None,
            defines: self.defines()?,
            enabled: self.enabled.is_some(),
            on_new_source: self.on_new_source.is_some(),
            import_image: self.import_image.is_some(),
            branches: words(&self.branches),
            tags: words(&self.tags),
            owner: None,
            hooks: Vec::new(),
        })
    }
}

#[derive(Template)]
#[template(path = "pipeline.html")]
struct EditPage {
    version: &'static str,
    viewer: Viewer,
    /// None for a new pipeline.
    existing: Option<String>,
    form: PipelineForm,
    may_edit: bool,
    may_run: bool,
    hosts: Vec<HostInfo>,
    targets: Vec<Target>,
    /// Every NAME@VERSION of the catalog, and NAME@latest per name.
    sources: Vec<String>,
    runs: Vec<PipelineRun>,
    error: Option<String>,
}

async fn edit_page(
    hub: &Hub,
    viewer: Viewer,
    existing: Option<String>,
    form: PipelineForm,
    error: Option<String>,
) -> Result<EditPage> {
    let mut sources = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, _) in hub.db.images(None).await? {
        names.insert(i.name.clone());
        sources.push(format!("{}@{}", i.name, i.version));
    }
    sources.extend(names.into_iter().map(|n| format!("{n}@latest")));
    sources.sort();
    let runs = match &existing {
        Some(name) => {
            let row = hub.db.pipeline_row(name, None).await?;
            hub.db.list_runs(row.id, 0, 20).await?.items
        }
        None => Vec::new(),
    };
    Ok(EditPage {
        version: VERSION,
        may_edit: viewer.may("pipeline"),
        may_run: viewer.may("build"),
        viewer,
        existing,
        form,
        hosts: hub.db.list_hosts().await?,
        targets: hub.db.list_targets().await?,
        sources,
        runs,
        error,
    })
}

pub(super) async fn new_form(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&hub, &headers, "/pipelines/-/new").await?;
    let form = PipelineForm {
        kind: "update".into(),
        channel: "default".into(),
        arch: "noarch".into(),
        git_ref: "main".into(),
        enabled: Some("on".into()),
        ..PipelineForm::default()
    };
    let p = edit_page(&hub, viewer, None, form, None).await.map_err(failed)?;
    page(&p).map_err(failed)
}

pub(super) async fn show(State(hub): State<Arc<Hub>>, headers: HeaderMap, Path(name): Path<String>) -> PageResult {
    let viewer = reader(&hub, &headers, &format!("/pipelines/{name}")).await?;
    let load = async {
        let p = hub.db.pipeline(&name, None).await?;
        edit_page(&hub, viewer, Some(name.clone()), PipelineForm::from_pipeline(&p), None).await
    };
    let p = load.await.map_err(failed)?;
    page(&p).map_err(failed)
}

/// Saves the form (a new pipeline when `existing` is None); on a refusal
/// the form comes back with what was typed and why.
async fn save(hub: Arc<Hub>, headers: HeaderMap, existing: Option<String>, form: PipelineForm) -> Response {
    let v = match viewer(&hub, &headers).await {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    if let Err(e) = v.check_csrf(&form.csrf) {
        return failed(e);
    }
    if !v.may("pipeline") {
        return failed(HubError::forbidden(format!(
            "{} lacks the `pipeline` permission",
            v.who.name
        )));
    }
    let attempt = async {
        let p = form.to_pipeline()?;
        let c = checked(&hub, &p).await?;
        let mode = match &existing {
            Some(old) => Save::Edit(old),
            None => Save::Create,
        };
        hub.db.put_pipeline(&v.who, &p, &c, mode).await
    };
    match attempt.await {
        Ok(p) => Redirect::to(&format!("/pipelines/{}", p.name)).into_response(),
        Err(e) => match edit_page(&hub, v, existing, form, Some(e.message.clone())).await {
            Ok(p) => {
                let status = axum::http::StatusCode::from_u16(e.status).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
                match page(&p) {
                    Ok(html) => (status, html).into_response(),
                    Err(e) => failed(e),
                }
            }
            Err(e2) => failed(e2),
        },
    }
}

pub(super) async fn create(State(hub): State<Arc<Hub>>, headers: HeaderMap, Form(f): Form<PipelineForm>) -> Response {
    save(hub, headers, None, f).await
}

pub(super) async fn update(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<PipelineForm>,
) -> Response {
    save(hub, headers, Some(name), f).await
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// Run now, as the caller.
pub(super) async fn run(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let act = async {
        let v = viewer(&hub, &headers).await?;
        v.check_csrf(&f.csrf)?;
        if !v.may("build") {
            return Err(HubError::forbidden(format!(
                "{} lacks the `build` permission",
                v.who.name
            )));
        }
        let row = hub.db.pipeline_row(&name, None).await?;
        let t = Trigger {
            kind: "manual",
            delivery: None,
            user: Some(v.who.clone()),
            git_ref: None,
            commit: None,
        };
        match start(&hub, &row, t).await? {
            (_, Some(e)) => Err(e),
            (run, None) => Ok(run),
        }
    };
    match act.await {
        Ok(_) => Redirect::to(&format!("/pipelines/{name}#runs")).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsFragment {
    runs: Vec<PipelineRun>,
}

/// The runs table alone, for the page to refresh while runs go on.
pub(super) async fn runs(State(hub): State<Arc<Hub>>, headers: HeaderMap, Path(name): Path<String>) -> PageResult {
    reader(&hub, &headers, &format!("/pipelines/{name}")).await?;
    let load = async {
        let row = hub.db.pipeline_row(&name, None).await?;
        Ok::<_, HubError>(hub.db.list_runs(row.id, 0, 20).await?.items)
    };
    let runs = load.await.map_err(failed)?;
    page(&RunsFragment { runs }).map_err(failed)
}

#[derive(Deserialize, Default)]
pub(super) struct PreviewQuery {
    #[serde(default)]
    target_name: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    defines: String,
}

/// The target name a run would make, with sample values for what only a
/// run knows (its number 1, the catalog's newest version for `latest`, a
/// commit of zeros), or why it does not expand.
pub(super) async fn preview(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(q): Query<PreviewQuery>,
) -> Response {
    if let Err(r) = reader(&hub, &headers, "/pipelines").await {
        return r;
    }
    let text = async {
        let form = PipelineForm {
            defines: q.defines.clone(),
            ..PipelineForm::default()
        };
        let defines = form.defines()?;
        let layers = if q.target.trim().is_empty() {
            Vec::new()
        } else {
            db::macro_layers(&hub.db, q.target.trim())
                .await?
                .defs()
                .map_err(HubError::bad_request)?
        };
        let source = match pipeline::parse_source(q.source.trim()) {
            Ok(s) => Some(match s.version {
                pipeline::SourceVersion::Exact(v) => (s.name, v),
                pipeline::SourceVersion::Latest => {
                    let images = hub.db.images(Some(&s.name)).await?;
                    let v = pipeline::latest(images.iter().map(|(i, _)| i.version.as_str())).unwrap_or("VERSION");
                    (s.name.clone(), v.to_string())
                }
            }),
            Err(_) => None,
        };
        let facts = RunFacts {
            run: 1,
            source,
            commit: Some("0".repeat(40)),
            time: db::now(),
        };
        let name = pipeline::expand_name(&q.target_name, &facts, &defines, &layers).map_err(HubError::bad_request)?;
        crate::pipelines::check_nvr(&q.target_name, &name)?;
        Ok::<_, HubError>(name)
    };
    match text.await {
        Ok(name) => Html(format!("<span class=\"ok\">{}</span>", askama_escape(&name))).into_response(),
        Err(e) => Html(format!("<span class=\"error\">{}</span>", askama_escape(&e.message))).into_response(),
    }
}

/// Escapes text for HTML.
fn askama_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[derive(Template)]
#[template(path = "hook_secret.html")]
struct SecretPage {
    version: &'static str,
    viewer: Viewer,
    pipeline: String,
    service: String,
    secret: String,
    url: String,
}

/// A new secret for a hook, shown once (replacing any earlier one).
pub(super) async fn hook(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path((name, service)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let act = async {
        let v = viewer(&hub, &headers).await?;
        v.check_csrf(&f.csrf)?;
        if !v.may("pipeline") {
            return Err(HubError::forbidden(format!(
                "{} lacks the `pipeline` permission",
                v.who.name
            )));
        }
        let service = known_service(&service)?;
        let nonce = crate::keys::nonce();
        let secret = hook_secret(&hub, &nonce);
        hub.db
            .set_hook(&v.who, &name, service, &nonce, &sha256_hex(&secret))
            .await?;
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("HUB");
        Ok(SecretPage {
            version: VERSION,
            viewer: v,
            url: format!(
                "{}://{host}/api/v1/pipelines/{name}/hooks/{service}",
                if super::session::over_tls(&headers) {
                    "https"
                } else {
                    "http"
                }
            ),
            pipeline: name.clone(),
            service: service.to_string(),
            secret,
        })
    };
    match act.await {
        Ok(p) => match page(&p) {
            Ok(html) => html.into_response(),
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    }
}
