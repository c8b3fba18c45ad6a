//! `kiln pipeline`: builds and updates configured once on the hub and run
//! on every trigger (docs/pipelines.md).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kiln_hub_api::model::*;

use super::*;

/// A pipeline's settings as options (create takes them all; edit, the ones given).
#[derive(Args, Debug, Default)]
pub struct PipelineOpts {
    /// update: the source image, NAME@VERSION or NAME@latest.
    #[arg(long, value_name = "NAME@VERSION")]
    source: Option<String>,
    /// update: the script, git+URL@REF:PATH.
    #[arg(long, value_name = "git+URL@REF:PATH")]
    script: Option<String>,
    /// build: the profile repository, git+URL@REF.
    #[arg(long, value_name = "git+URL@REF")]
    repo: Option<String>,
    /// build: the image to build (e.g. ve/minimal).
    #[arg(long)]
    image: Option<String>,
    /// The result's NAME-VERSION-RELEASE, with macros: %{run}, %{source_name},
    /// %{source_version}, %{commit}, %{commit_short}, %{date}, the defines and the target's.
    #[arg(long, value_name = "PATTERN")]
    target_name: Option<String>,
    /// The hub target (its macros; its destination tag receives the result).
    #[arg(long)]
    target: Option<String>,
    /// Run on this builder only (the designated device).
    #[arg(long, value_name = "NAME")]
    builder: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    arch: Option<String>,
    /// Lower runs first.
    #[arg(long)]
    priority: Option<i64>,
    /// update: the target's format (default: the source's).
    #[arg(long)]
    format: Option<String>,
    /// Define a macro for every run; repeatable.
    #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
    defines: Vec<String>,
    /// Run when a newer version of the source image arrives (NAME@latest sources).
    #[arg(long, overrides_with = "no_on_new_source")]
    on_new_source: bool,
    #[arg(long, hide = true)]
    no_on_new_source: bool,
    /// Import each result into the hub's image catalog as NAME@VERSION-RELEASE.
    #[arg(long, overrides_with = "no_import_image")]
    import_image: bool,
    #[arg(long, hide = true)]
    no_import_image: bool,
    /// Pushes of branches matching this glob start runs; repeatable.
    #[arg(long = "branch", value_name = "GLOB")]
    branches: Vec<String>,
    /// Pushes of tags matching this glob start runs; repeatable.
    #[arg(long = "tag", value_name = "GLOB")]
    tags: Vec<String>,
}

fn flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Create a pipeline: `update` (source image → script → target) or `build`.
    Create {
        name: String,
        /// update or build.
        #[arg(long, default_value = "update")]
        kind: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        opts: PipelineOpts,
    },
    /// Change some of a pipeline's settings.
    Edit {
        name: String,
        #[arg(long)]
        rename: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        /// Remove a define; repeatable.
        #[arg(long = "undefine", value_name = "NAME")]
        undefines: Vec<String>,
        /// Clear the designated builder (any builder of the channel and arch).
        #[arg(long, conflicts_with = "builder")]
        any_builder: bool,
        #[command(flatten)]
        opts: PipelineOpts,
    },
    /// Show a pipeline; --json output restores with `kiln pipeline apply`.
    Show {
        name: String,
        /// As of this event.
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Create or replace a pipeline from `kiln pipeline show --json` output.
    Apply { file: PathBuf },
    /// List pipelines.
    Ls(JsonOpt),
    /// Delete a pipeline (its runs stay listed in the history).
    Rm { name: String },
    /// Every change to a pipeline, by event.
    History {
        name: String,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Start a run now.
    Run {
        name: String,
        /// A branch, tag or full ref to run instead of the configured one.
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
        /// Pin the run to this commit (40 or 64 hex digits).
        #[arg(long)]
        commit: Option<String>,
        /// Follow the run's task until it ends; exit with its outcome.
        #[arg(long)]
        watch: bool,
    },
    /// A pipeline's runs, newest first.
    Runs {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Make (or replace) a hook's secret and print it, once; --remove removes it.
    Hook {
        name: String,
        /// github, gitlab or generic.
        service: String,
        #[arg(long)]
        remove: bool,
    },
}

fn defines(d: &[String]) -> Result<BTreeMap<String, String>> {
    d.iter().map(|d| define(d)).collect()
}

fn kind(k: &str) -> Result<PipelineKind> {
    match k {
        "update" => Ok(PipelineKind::Update),
        "build" => Ok(PipelineKind::Build),
        _ => bail!("--kind {k}: expected update or build"),
    }
}

fn create(name: &str, k: &str, disabled: bool, o: &PipelineOpts) -> Result<Pipeline> {
    Ok(Pipeline {
        name: name.to_string(),
        kind: kind(k)?,
        source: o.source.clone(),
        script: o.script.clone(),
        repo: o.repo.clone(),
        image: o.image.clone(),
        target_name: o.target_name.clone(),
        target: o.target.clone().context("--target is required")?,
        builder: o.builder.clone(),
        channel: o.channel.clone().unwrap_or_else(|| "default".into()),
        arch: o.arch.clone().unwrap_or_else(|| "noarch".into()),
        priority: o.priority.unwrap_or(20),
        format: o.format.clone(),
        defines: defines(&o.defines)?,
        enabled: !disabled,
        on_new_source: o.on_new_source,
        import_image: o.import_image,
        branches: o.branches.clone(),
        tags: o.tags.clone(),
        owner: None,
        hooks: Vec::new(),
    })
}

fn print_pipeline(p: &Pipeline) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("Name: {} ({})", p.name, if p.enabled { "enabled" } else { "disabled" });
    println!("Kind: {}", p.kind.as_str());
    match p.kind {
        PipelineKind::Update => {
            println!(
                "Source: {}{}",
                opt(&p.source),
                if p.on_new_source { " (runs on new versions)" } else { "" }
            );
            println!("Script: {}", opt(&p.script));
        }
        PipelineKind::Build => {
            println!("Repository: {}", opt(&p.repo));
            println!("Image: {}", opt(&p.image));
        }
    }
    println!("Target name: {}", opt(&p.target_name));
    println!("Target: {}", p.target);
    match &p.builder {
        Some(b) => println!("Builder: {b}"),
        None => println!("Builders: channel {}, arch {}", p.channel, p.arch),
    }
    println!("Priority: {}", p.priority);
    if let Some(f) = &p.format {
        println!("Format: {f}");
    }
    if p.import_image {
        println!("Imports results into the image catalog");
    }
    let pushes: Vec<String> = p
        .branches
        .iter()
        .map(|b| format!("branch {b}"))
        .chain(p.tags.iter().map(|t| format!("tag {t}")))
        .collect();
    if pushes.is_empty() {
        println!("Pushes: the configured ref only");
    } else {
        println!("Pushes: {}", pushes.join(", "));
    }
    println!(
        "Hooks: {}",
        if p.hooks.is_empty() {
            "-".into()
        } else {
            p.hooks.join(", ")
        }
    );
    println!("Owner: {}", opt(&p.owner));
    for (k, v) in &p.defines {
        println!("  %{k} {v}");
    }
}

fn run_row(r: &PipelineRun) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    vec![
        r.run.to_string(),
        r.state.clone(),
        r.trigger.clone(),
        opt(&r.source),
        r.commit.as_deref().map_or("-".into(), |c| c.chars().take(12).collect()),
        opt(&r.nvr),
        r.task.map_or("-".into(), |t| t.to_string()),
        r.error.clone().unwrap_or_default(),
    ]
}

/// What `kiln pipeline edit` changes.
fn edit_of(cmd: &PipelineCommand) -> Result<PipelineEdit> {
    let PipelineCommand::Edit {
        rename,
        enable,
        disable,
        undefines,
        any_builder,
        opts: o,
        ..
    } = cmd
    else {
        bail!("not an edit");
    };
    Ok(PipelineEdit {
        rename: rename.clone(),
        source: o.source.clone().map(Some),
        script: o.script.clone().map(Some),
        repo: o.repo.clone().map(Some),
        image: o.image.clone().map(Some),
        target_name: o.target_name.clone().map(Some),
        target: o.target.clone(),
        builder: if *any_builder {
            Some(None)
        } else {
            o.builder.clone().map(Some)
        },
        channel: o.channel.clone(),
        arch: o.arch.clone(),
        priority: o.priority,
        format: o.format.clone().map(Some),
        define: defines(&o.defines)?,
        undefine: undefines.clone(),
        enabled: flag(*enable, *disable),
        on_new_source: flag(o.on_new_source, o.no_on_new_source),
        import_image: flag(o.import_image, o.no_import_image),
        branches: (!o.branches.is_empty()).then(|| o.branches.clone()),
        tags: (!o.tags.is_empty()).then(|| o.tags.clone()),
    })
}

fn list_row(p: Pipeline) -> Vec<String> {
    vec![
        p.name.clone(),
        p.kind.as_str().into(),
        if p.enabled { "enabled" } else { "disabled" }.into(),
        p.source.clone().or(p.repo.clone()).unwrap_or_default(),
        p.target.clone(),
        p.builder.clone().unwrap_or_else(|| format!("{}/{}", p.channel, p.arch)),
        p.hooks.join(","),
    ]
}

pub fn pipeline(hub: &HubOpts, cmd: &PipelineCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        PipelineCommand::Create {
            name,
            kind: k,
            disabled,
            opts,
        } => {
            let p = c.create_pipeline(&create(name, k, *disabled, opts)?)?;
            println!("created pipeline {}", p.name);
        }
        PipelineCommand::Edit { name, .. } => {
            let p = c.edit_pipeline(name, &edit_of(cmd)?)?;
            println!("edited pipeline {}", p.name);
        }
        PipelineCommand::Show { name, event, json } => {
            let p = c.pipeline(name, *event)?;
            if json.json {
                return print_json(&p).map(|()| ExitCode::SUCCESS);
            }
            print_pipeline(&p);
        }
        PipelineCommand::Apply { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let p: Pipeline =
                serde_json::from_str(&text).with_context(|| format!("{}: not a pipeline", file.display()))?;
            c.apply_pipeline(&p)?;
            println!("applied pipeline {}", p.name);
        }
        PipelineCommand::Ls(j) => {
            let l = c.pipelines()?;
            if j.json {
                return print_json(&l).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["NAME", "KIND", "STATE", "FROM", "TARGET", "BUILDER", "HOOKS"],
                l.into_iter().map(list_row).collect(),
            );
        }
        PipelineCommand::Rm { name } => {
            c.delete_pipeline(name)?;
            println!("deleted pipeline {name}");
        }
        PipelineCommand::History { name, json } => {
            let h = c.pipeline_history(name)?;
            if json.json {
                return print_json(&h).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["EVENT", "TIME", "USER", "ACTION"],
                h.into_iter()
                    .map(|v| {
                        vec![
                            v.event.to_string(),
                            v.time.to_string(),
                            v.user.unwrap_or_default(),
                            v.action,
                        ]
                    })
                    .collect(),
            );
        }
        PipelineCommand::Run {
            name,
            git_ref,
            commit,
            watch,
        } => {
            let r = c.start_run(
                name,
                &RunRequest {
                    git_ref: git_ref.clone(),
                    commit: commit.clone(),
                },
            )?;
            let task = r.task.context("the run has no task")?;
            println!("{}", r.run);
            eprintln!(
                "pipeline {name} run {} started: task {task}{}",
                r.run,
                r.nvr.as_deref().map(|n| format!(", target {n}")).unwrap_or_default()
            );
            if *watch {
                return super::tasks::watch(&c, task);
            }
        }
        PipelineCommand::Runs { name, limit, json } => {
            let p = c.pipeline_runs(name, *limit)?;
            if json.json {
                return print_json(&p.items).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["RUN", "STATE", "TRIGGER", "SOURCE", "COMMIT", "TARGET", "TASK", "ERROR"],
                p.items.iter().map(run_row).collect(),
            );
        }
        PipelineCommand::Hook { name, service, remove } => {
            if *remove {
                c.remove_hook_secret(name, service)?;
                println!("removed the {service} hook of pipeline {name}");
                return Ok(ExitCode::SUCCESS);
            }
            let s = c.set_hook_secret(name, service)?;
            let (hub_url, _) = hub.resolved()?;
            println!("{}", s.secret);
            eprintln!(
                "the {service} hook of pipeline {name}: {}{}\n\
                 the secret above is shown once; paste it into the service's webhook settings{}",
                hub_url.trim_end_matches('/'),
                s.path,
                if service == "generic" {
                    " (send it as `Authorization: Bearer SECRET`)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
