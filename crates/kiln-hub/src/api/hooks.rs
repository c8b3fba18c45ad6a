//! `POST /pipelines/{name}/hooks/{service}`: a CI service's delivery
//! (docs/pipelines.md, "Hooks"). The secret is checked before anything of
//! the body is read, and a delivery that fails it records nothing; then
//! the pushed ref must pass the pipeline's filters, and a delivery id
//! starts at most one run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::pipelines::{Trigger, hook_secret, known_service, start};
use super::{P, St};
use crate::error::{HubError, Result};
use crate::hooks::{self, Event, RefFilter, Secret, Service};
use crate::model::*;

pub(super) async fn receive_hook(
    State(hub): St,
    headers: HeaderMap,
    P((name, service)): P<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let service = known_service(&service)?;
    let svc = Service::from_path_segment(service).ok_or_else(|| HubError::not_found("no such hook service"))?;
    let row = hub.db.pipeline_row(&name, None).await?;
    let stored = hub.db.hook(row.id, service).await?.ok_or_else(|| {
        HubError::unauthorized(format!(
            "pipeline {name} has no {service} hook secret: make one with `kiln pipeline hook {name} {service}`"
        ))
    })?;
    let secret = hook_secret(&hub, &stored.nonce);
    let digest = hooks::token_sha256(&secret);
    if hex::encode(digest) != stored.secret_sha256 {
        tracing::error!("pipeline {name}: the {service} hook's secret no longer derives from the key file");
        return Err(HubError::internal(format!(
            "the hub's key file is not the one the {service} hook secret of pipeline {name} was made with: \
             make a new secret (`kiln pipeline hook {name} {service}`)"
        )));
    }
    let material = match svc {
        Service::GitHub => Secret::Key(secret.as_bytes()),
        _ => Secret::TokenSha256(&digest),
    };
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let delivery = hooks::receive(svc, material, hooks::Headers::new(&pairs), &body)?;
    let (git_ref, commit) = match delivery.event {
        Event::Ping => {
            let out = HookOutcome {
                run: None,
                message: format!("pong: pipeline {name} is listening for {service} pushes"),
            };
            return Ok((StatusCode::OK, Json(out)).into_response());
        }
        Event::Ignored(reason) => return Err(HubError::ignored(reason)),
        Event::Push { git_ref, commit } => (Some(git_ref), Some(commit)),
        Event::Run { git_ref, commit } => (git_ref, commit),
    };
    if let Some(r) = &git_ref {
        admit(&row.config, r).map_err(HubError::ignored)?;
    }
    let trigger = Trigger {
        kind: service,
        delivery: delivery.id,
        user: None,
        git_ref,
        commit,
    };
    match start(&hub, &row, trigger).await? {
        (run, None) => {
            let out = HookOutcome {
                message: format!(
                    "started run {} of pipeline {name} (task {})",
                    run.run,
                    run.task.unwrap_or(0)
                ),
                run: Some(run),
            };
            Ok((StatusCode::ACCEPTED, Json(out)).into_response())
        }
        (run, Some(e)) => Err(HubError {
            message: format!("run {} of pipeline {name} could not start: {}", run.run, e.message),
            ..e
        }),
    }
}

/// Whether a pushed ref starts a run: by the pipeline's branch and tag
/// patterns, or without any, when it is the configured ref's branch (or tag).
fn admit(p: &Pipeline, git_ref: &str) -> std::result::Result<(), String> {
    if !p.branches.is_empty() || !p.tags.is_empty() {
        let filter = RefFilter {
            branches: p.branches.clone(),
            tags: p.tags.clone(),
        };
        return filter.admit(git_ref);
    }
    let spec = p.script.as_deref().or(p.repo.as_deref()).unwrap_or_default();
    let rev = kiln_core::pipeline::spec_rev(spec).unwrap_or_default();
    let short = git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref);
    if short == rev || git_ref == rev {
        Ok(())
    } else {
        Err(format!(
            "{git_ref} is not the pipeline's ref `{rev}`, and it sets no branch or tag patterns"
        ))
    }
}
