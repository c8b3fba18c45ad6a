//! `kiln submit`: a build or an update as a task on the farm (docs/hub.md).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kiln_hub_api::model::*;

use super::*;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SubmitArgs {
    #[command(subcommand)]
    update: Option<SubmitCommand>,
    #[command(flatten)]
    hub: HubOpts,
    /// The image to build, e.g. `ve/minimal`.
    #[arg(required = true)]
    image: Option<String>,
    /// The build target: its build tag's config and its macros apply; the
    /// build is tagged into its destination tag.
    #[arg(long, required = true)]
    target: Option<String>,
    /// The profile repository, git+URL@REF (default: this directory's
    /// `origin` remote at its HEAD commit).
    #[arg(long, value_name = "git+URL@REF")]
    repo: Option<String>,
    #[command(flatten)]
    task: SubmitTaskOpts,
}

#[derive(Subcommand, Debug)]
pub enum SubmitCommand {
    /// Update a source image on a builder (docs/update.md) and publish the result.
    Update(SubmitUpdateArgs),
}

#[derive(Args, Debug)]
pub struct SubmitUpdateArgs {
    #[command(flatten)]
    hub: HubOpts,
    /// A source image on the hub, NAME@VERSION (`kiln image ls --hub`).
    #[arg(long, value_name = "NAME@VERSION")]
    from: String,
    /// The update script, git+URL@REF:PATH.
    #[arg(long, value_name = "git+URL@REF:PATH")]
    script: String,
    /// The target image's name, NAME-VERSION-RELEASE.
    #[arg(long, value_name = "NVR")]
    name: String,
    #[arg(long)]
    target: String,
    /// squashfs, erofs, tar, tar.zst, tar.xz, tar.gz or (from an ISO) iso (default: the source's).
    #[arg(long)]
    format: Option<String>,
    #[command(flatten)]
    task: SubmitTaskOpts,
}

/// Where and when a task runs.
#[derive(Args, Debug)]
pub struct QueueOpts {
    /// Run on this builder only.
    #[arg(long, value_name = "NAME")]
    builder: Option<String>,
    /// Lower runs first.
    #[arg(long, default_value_t = 20)]
    priority: i64,
    #[arg(long, default_value = "default")]
    channel: String,
    /// Only builders of this architecture (default: any).
    #[arg(long, default_value = "noarch")]
    arch: String,
}

impl QueueOpts {
    pub(super) fn task(&self, request: TaskRequest) -> NewTask {
        NewTask {
            request,
            priority: self.priority,
            channel: self.channel.clone(),
            arch: self.arch.clone(),
            builder: self.builder.clone(),
            parent: None,
            max_attempts: 3,
        }
    }
}

/// What every submitted build or update takes.
#[derive(Args, Debug)]
pub struct SubmitTaskOpts {
    /// Define a macro (layer 1, highest precedence); repeatable.
    #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
    defines: Vec<String>,
    /// Build, but record no build and tag nothing; the files stay with the task.
    #[arg(long)]
    scratch: bool,
    /// Follow the task's log until it ends; exit with its outcome.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    queue: QueueOpts,
}

impl SubmitTaskOpts {
    fn defines(&self) -> Result<Vec<(String, String)>> {
        self.defines
            .iter()
            .map(|d| {
                let m = kiln_core::external::parse_define(d).map_err(anyhow::Error::msg)?;
                Ok((m.name, m.value))
            })
            .collect()
    }

    fn submit(&self, hub: &HubOpts, request: TaskRequest) -> Result<ExitCode> {
        let c = hub.client()?;
        let method = request.method();
        let t = c.submit_task(&self.queue.task(request))?;
        println!("{}", t.id);
        if self.watch {
            eprintln!("task {} ({method}) submitted; following its log", t.id);
            return super::tasks::watch(&c, t.id);
        }
        eprintln!(
            "task {} ({method}) submitted; follow it with `kiln task watch {}`",
            t.id, t.id
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// This directory's `origin` at HEAD, as git+URL@COMMIT.
fn repo_here() -> Result<String> {
    let git = |args: &[&str]| -> Result<String> {
        let o = std::process::Command::new("git")
            .args(args)
            .output()
            .context("cannot run git (install the `git` package)")?;
        if !o.status.success() {
            bail!("{}", String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let url = git(&["remote", "get-url", "origin"])
        .context("no --repo given and this directory has no `origin` remote: pass --repo git+URL@REF")?;
    let head = git(&["rev-parse", "HEAD"]).context("cannot read this repository's HEAD")?;
    let url = if url.contains("://") {
        url
    } else if let Some((host, path)) = url.split_once(':').filter(|(h, _)| !h.contains('/')) {
        // scp-like syntax, user@host:path.
        format!("ssh://{host}/{path}")
    } else {
        format!("file://{}", std::fs::canonicalize(&url)?.display())
    };
    Ok(format!("git+{url}@{head}"))
}

pub fn submit(a: &SubmitArgs) -> Result<ExitCode> {
    if let Some(SubmitCommand::Update(u)) = &a.update {
        let req = UpdateRequest {
            target: u.target.clone(),
            from: u.from.clone(),
            script: u.script.clone(),
            name: u.name.clone(),
            format: u.format.clone(),
            defines: u.task.defines()?,
            scratch: u.task.scratch,
        };
        req.check().map_err(anyhow::Error::msg)?;
        return u.task.submit(&u.hub, TaskRequest::Update(req));
    }
    let (Some(image), Some(target)) = (&a.image, &a.target) else {
        bail!("usage: kiln submit --target TARGET IMAGE [--repo git+URL@REF]");
    };
    let repo = match &a.repo {
        Some(r) => r.clone(),
        None => repo_here()?,
    };
    let req = BuildRequest {
        target: target.clone(),
        image: image.clone(),
        repo,
        defines: a.task.defines()?,
        scratch: a.task.scratch,
        nvr: None,
    };
    req.check().map_err(anyhow::Error::msg)?;
    a.task.submit(&a.hub, TaskRequest::Build(req))
}
