//! Pipelines (docs/pipelines.md): their configuration, history and runs,
//! their hook secrets, and starting a run — by hand, from a hook
//! (`api::hooks`) or on a new version of the source image ([`chain`]).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use kiln_core::pipeline::{self, RunFacts, SourceVersion};

use super::{Hub, J, ListQuery, P, Q, St, created, no_content, reader, writer};
use crate::db::{self, NewRun, PipelineRow, Save};
use crate::error::{HubError, Result};
use crate::model::*;
use crate::pipelines::{check, check_nvr};

/// The services a pipeline's hooks speak.
pub const SERVICES: [&str; 3] = ["github", "gitlab", "generic"];

/// What the key file derives a hook secret from, with the row's nonce.
const HOOK_PURPOSE: &str = "kiln pipeline hook secret v1";

/// A hook's secret, as shown once and as derived again to check a delivery.
pub(crate) fn hook_secret(hub: &Hub, nonce: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hub.key.derive(HOOK_PURPOSE, nonce))
}

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(crate::hooks::token_sha256(s))
}

/// Checks a configuration against its target's macro layers.
pub(crate) async fn checked(hub: &Hub, p: &Pipeline) -> Result<crate::pipelines::Checked> {
    let layers = db::macro_layers(&hub.db, &p.target).await.map_err(|e| HubError {
        message: format!("target: {}", e.message),
        ..e
    })?;
    let defs = layers.defs().map_err(HubError::bad_request)?;
    check(p, &defs)
}

pub(super) async fn list_pipelines(State(hub): St, headers: HeaderMap) -> Result<Json<Vec<Pipeline>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.list_pipelines().await?))
}

pub(super) async fn create_pipeline(State(hub): St, headers: HeaderMap, J(p): J<Pipeline>) -> Result<Response> {
    let who = writer(&hub, &headers, "pipeline").await?;
    let c = checked(&hub, &p).await?;
    Ok(created(hub.db.put_pipeline(&who, &p, &c, Save::Create).await?))
}

pub(super) async fn pipeline_info(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Pipeline>> {
    reader(&hub, &headers).await?;
    hub.db.check_event(q.event).await?;
    Ok(Json(hub.db.pipeline(&name, q.event).await?))
}

/// `kiln pipeline apply`: create or replace the whole configuration.
pub(super) async fn apply_pipeline(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
    J(p): J<Pipeline>,
) -> Result<Json<Pipeline>> {
    let who = writer(&hub, &headers, "pipeline").await?;
    if p.name != name {
        return Err(HubError::bad_request(format!(
            "the body names pipeline {}, the path {name}",
            p.name
        )));
    }
    let c = checked(&hub, &p).await?;
    Ok(Json(hub.db.put_pipeline(&who, &p, &c, Save::Apply).await?))
}

pub(super) async fn edit_pipeline(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
    J(e): J<PipelineEdit>,
) -> Result<Json<Pipeline>> {
    let who = writer(&hub, &headers, "pipeline").await?;
    let p = e
        .apply(&hub.db.pipeline(&name, None).await?)
        .map_err(HubError::not_found)?;
    let c = checked(&hub, &p).await?;
    Ok(Json(hub.db.put_pipeline(&who, &p, &c, Save::Edit(&name)).await?))
}

pub(super) async fn delete_pipeline(State(hub): St, headers: HeaderMap, P(name): P<String>) -> Result<Response> {
    let who = writer(&hub, &headers, "pipeline").await?;
    hub.db.delete_pipeline(&who, &name).await?;
    Ok(no_content())
}

pub(super) async fn pipeline_history(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
) -> Result<Json<Vec<PipelineVersion>>> {
    reader(&hub, &headers).await?;
    Ok(Json(hub.db.pipeline_history(&name).await?))
}

pub(super) async fn list_runs(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Page<PipelineRun>>> {
    reader(&hub, &headers).await?;
    let (offset, limit) = q.page()?;
    let row = hub.db.pipeline_row(&name, None).await?;
    Ok(Json(hub.db.list_runs(row.id, offset, limit).await?))
}

pub(super) async fn run_info(
    State(hub): St,
    headers: HeaderMap,
    P((name, run)): P<(String, i64)>,
) -> Result<Json<PipelineRun>> {
    reader(&hub, &headers).await?;
    let row = hub.db.pipeline_row(&name, None).await?;
    Ok(Json(hub.db.pipeline_run(row.id, run).await?))
}

/// `kiln pipeline run`: a run by hand, as the caller.
pub(super) async fn start_run(
    State(hub): St,
    headers: HeaderMap,
    P(name): P<String>,
    J(r): J<RunRequest>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "build").await?;
    let row = hub.db.pipeline_row(&name, None).await?;
    let git_ref = r.git_ref.as_deref().map(full_ref).transpose()?;
    if let Some(c) = &r.commit
        && !kiln_hub_api::names::is_commit(c)
    {
        return Err(HubError::bad_request(format!(
            "commit `{}`: a full commit id is 40 or 64 lower-case hex digits",
            c.escape_debug()
        )));
    }
    let trigger = Trigger {
        kind: "manual",
        delivery: None,
        user: Some(who),
        git_ref,
        commit: r.commit,
    };
    match start(&hub, &row, trigger).await? {
        (run, None) => Ok(created(run)),
        (_, Some(e)) => Err(e),
    }
}

/// A ref a user typed: a full `refs/…` name, or a branch or tag name,
/// kept as typed (git resolves a short name to a branch or a tag); checked
/// by git's rules for ref names.
fn full_ref(r: &str) -> Result<String> {
    let full = if r.starts_with("refs/") {
        r.to_string()
    } else {
        format!("refs/heads/{r}")
    };
    crate::hooks::check_ref(&full).map_err(|e| HubError::bad_request(format!("ref `{}`: {e}", r.escape_debug())))?;
    Ok(r.to_string())
}

/// `kiln pipeline hook NAME SERVICE`: a new secret for a hook, shown once.
pub(super) async fn set_hook_secret(
    State(hub): St,
    headers: HeaderMap,
    P((name, service)): P<(String, String)>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "pipeline").await?;
    let service = known_service(&service)?;
    let nonce = crate::keys::nonce();
    let secret = hook_secret(&hub, &nonce);
    hub.db
        .set_hook(&who, &name, service, &nonce, &sha256_hex(&secret))
        .await?;
    Ok(created(HookSecret {
        pipeline: name.clone(),
        service: service.to_string(),
        secret,
        path: format!("/api/v1/pipelines/{name}/hooks/{service}"),
    }))
}

pub(super) async fn remove_hook_secret(
    State(hub): St,
    headers: HeaderMap,
    P((name, service)): P<(String, String)>,
) -> Result<Response> {
    let who = writer(&hub, &headers, "pipeline").await?;
    hub.db.remove_hook(&who, &name, known_service(&service)?).await?;
    Ok(no_content())
}

pub(crate) fn known_service(s: &str) -> Result<&'static str> {
    SERVICES.into_iter().find(|k| *k == s).ok_or_else(|| {
        HubError::not_found(format!(
            "no hook service `{}` (github, gitlab, generic)",
            s.escape_debug()
        ))
    })
}

/// What starts a run.
pub(crate) struct Trigger {
    /// `manual`, a hook's service, or `source`.
    pub kind: &'static str,
    pub delivery: Option<String>,
    /// The caller of a manual run; others run as the pipeline's owner.
    pub user: Option<Principal>,
    /// The ref: a full name from a hook, or as a user typed it.
    pub git_ref: Option<String>,
    pub commit: Option<String>,
}

/// The source image a run starts from, resolved in the catalog.
async fn resolve_source(hub: &Hub, source: &str) -> Result<(String, String)> {
    let s = pipeline::parse_source(source).map_err(HubError::bad_request)?;
    match s.version {
        SourceVersion::Exact(v) => Ok((s.name, v)),
        SourceVersion::Latest => {
            let images = hub.db.images(Some(&s.name)).await?;
            let latest = pipeline::latest(images.iter().map(|(i, _)| i.version.as_str()))
                .ok_or_else(|| HubError::not_found(format!("no version of image {} in the hub's catalog", s.name)))?;
            Ok((s.name.clone(), latest.to_string()))
        }
    }
}

/// What a run resolved before it is numbered.
struct Prepared {
    source: Option<(String, String)>,
    defs: Vec<kiln_core::macros::MacroDef>,
    /// The ref or commit the task fetches.
    rev: Option<String>,
}

async fn prepare(hub: &Hub, p: &Pipeline, t: &Trigger) -> Result<Prepared> {
    let source = match &p.source {
        Some(s) => Some(resolve_source(hub, s).await?),
        None => None,
    };
    let layers = db::macro_layers(&hub.db, &p.target).await?;
    let defs = layers.defs().map_err(HubError::bad_request)?;
    Ok(Prepared {
        source,
        defs,
        rev: t.commit.clone().or_else(|| t.git_ref.clone()),
    })
}

/// The task of run `number`, and the NVR it will make.
fn make_task(p: &Pipeline, t: &Trigger, prep: &Prepared, number: i64) -> Result<(NewTask, String)> {
    let facts = RunFacts {
        run: number,
        source: prep.source.clone(),
        commit: t.commit.clone(),
        time: db::now(),
    };
    let bad = HubError::bad_request;
    let nvr = match &p.target_name {
        Some(pattern) => {
            let nvr = pipeline::expand_name(pattern, &facts, &p.defines, &prep.defs).map_err(bad)?;
            check_nvr(pattern, &pipeline::fill_commit(&nvr, &"0".repeat(40)))?;
            Some(nvr)
        }
        None => None,
    };
    let defines: Vec<(String, String)> = p.defines.clone().into_iter().collect();
    let request = match p.kind {
        PipelineKind::Update => {
            let script = p.script.clone().unwrap_or_default();
            let script = match &prep.rev {
                Some(rev) => pipeline::script_at(&script, rev).map_err(bad)?,
                None => script,
            };
            let (name, version) = prep.source.clone().unwrap_or_default();
            TaskRequest::Update(UpdateRequest {
                target: p.target.clone(),
                from: format!("{name}@{version}"),
                script,
                name: nvr.clone().unwrap_or_default(),
                format: p.format.clone(),
                defines,
                scratch: false,
            })
        }
        PipelineKind::Build => {
            let repo = p.repo.clone().unwrap_or_default();
            let repo = match &prep.rev {
                Some(rev) => pipeline::repo_at(&repo, rev).map_err(bad)?,
                None => repo,
            };
            TaskRequest::Build(BuildRequest {
                target: p.target.clone(),
                image: p.image.clone().unwrap_or_default(),
                repo,
                defines,
                scratch: false,
                nvr: nvr.clone(),
            })
        }
    };
    let task = NewTask {
        request,
        priority: p.priority,
        channel: p.channel.clone(),
        arch: p.arch.clone(),
        builder: p.builder.clone(),
        parent: None,
        max_attempts: 3,
    };
    Ok((task, nvr.unwrap_or_default()))
}

/// Starts a run of `row`: refused (nothing recorded) when the pipeline is
/// disabled or the delivery was seen; otherwise recorded, with its task or
/// with the error that kept it from starting (returned beside it).
pub(crate) async fn start(hub: &Hub, row: &PipelineRow, t: Trigger) -> Result<(PipelineRun, Option<HubError>)> {
    let p = &row.config;
    if !p.enabled {
        return Err(HubError::conflict(format!(
            "pipeline {} is disabled (`kiln pipeline edit {} --enable`)",
            p.name, p.name
        )));
    }
    let owner = match &t.user {
        Some(u) => u.clone(),
        None => hub.db.user_principal(row.owner_id).await?,
    };
    // A hook's or a new source's run acts as the owner, who must still be
    // allowed to build (a manual run's caller passed the route's check).
    let refused = (!owner.has("build")).then(|| {
        HubError::forbidden(format!(
            "{}, the pipeline's owner, lacks the `build` permission: runs need it",
            owner.name
        ))
    });
    let prep = match refused {
        Some(e) => Err(e),
        None => prepare(hub, p, &t).await,
    };
    let run = NewRun {
        pipeline_id: row.id,
        pipeline: p.name.clone(),
        trigger: t.kind.to_string(),
        delivery: t.delivery.clone(),
        user_id: t.user.as_ref().and_then(|u| u.id),
        git_ref: t.git_ref.clone().or_else(|| {
            p.script
                .as_deref()
                .or(p.repo.as_deref())
                .and_then(|s| pipeline::spec_rev(s).ok())
        }),
        commit: t.commit.clone(),
        source: prep
            .as_ref()
            .ok()
            .and_then(|x| x.source.as_ref())
            .map(|(n, v)| format!("{n}@{v}")),
    };
    let make = |number: i64| match &prep {
        Ok(prep) => make_task(p, &t, prep, number),
        Err(e) => Err(e.clone()),
    };
    hub.db.start_run(&owner, &run, &make).await
}

/// A new version of image `name` arrived in the catalog: every pipeline
/// that follows it starts a run, once per version (the delivery is
/// NAME@VERSION), when the version is the newest one. Failures are logged:
/// nobody waits for them.
pub async fn chain(hub: &Hub, name: &str, version: &str) {
    let rows = match hub.db.chained_pipelines(Some(name)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("pipelines following {}: {}", crate::logsafe::esc(name), e);
            return;
        }
    };
    if rows.is_empty() {
        return;
    }
    // An older version imported late starts nothing.
    match resolve_source(hub, &format!("{name}@latest")).await {
        Ok((_, newest)) if newest == version => {}
        _ => return,
    }
    for row in &rows {
        source_run(hub, row, name, version).await;
    }
}

/// What [`chain`] would have started and did not (a hub that stopped
/// between an import and its runs): for each pipeline following an image,
/// a run for the image's newest version if it arrived after the pipeline
/// was last saved and started none yet. Run periodically.
pub async fn chain_catch_up(hub: &Hub) {
    let rows = match hub.db.chained_pipelines(None).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("pipelines following images: {e}");
            return;
        }
    };
    let mut newest: std::collections::BTreeMap<String, Option<(String, i64)>> = Default::default();
    for row in &rows {
        let Some(name) = row
            .config
            .source
            .as_deref()
            .and_then(|s| s.split_once('@'))
            .map(|(n, _)| n)
        else {
            continue;
        };
        if !newest.contains_key(name) {
            let images = hub.db.images(Some(name)).await.unwrap_or_default();
            let latest = pipeline::latest(images.iter().map(|(i, _)| i.version.as_str()));
            let found = images
                .iter()
                .find(|(i, _)| Some(i.version.as_str()) == latest)
                .map(|(i, _)| (i.version.clone(), i.time));
            newest.insert(name.to_string(), found);
        }
        if let Some(Some((version, time))) = newest.get(name)
            && *time >= row.saved
        {
            source_run(hub, row, name, version).await;
        }
    }
}

/// One run for a new source version; a second one for the same version
/// is refused by its delivery id, quietly.
async fn source_run(hub: &Hub, row: &PipelineRow, name: &str, version: &str) {
    if !row.config.enabled {
        return;
    }
    let t = Trigger {
        kind: "source",
        delivery: Some(format!("{name}@{version}")),
        user: None,
        git_ref: None,
        commit: None,
    };
    match start(hub, row, t).await {
        Ok((run, err)) => tracing::info!(
            "pipeline {} run {} for new source {}@{}{}",
            row.config.name,
            run.run,
            crate::logsafe::esc(name),
            crate::logsafe::esc(version),
            err.map(|e| format!(" could not start: {}", e.message))
                .unwrap_or_default()
        ),
        // A replica or an earlier pass started it.
        Err(e) if e.status == 409 => {}
        Err(e) => tracing::warn!("pipeline {}: new source {name}@{version}: {e}", row.config.name),
    }
}
