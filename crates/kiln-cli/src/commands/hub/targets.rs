//! `kiln target`: build targets and their macros.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use kiln_hub_api::model::*;

use super::*;

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Create a target (koji add-target) with persistent macros.
    Create {
        name: String,
        build_tag: String,
        dest_tag: String,
        #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
        defines: Vec<String>,
    },
    /// Edit a target (koji edit-target).
    Edit {
        name: String,
        #[arg(long)]
        rename: Option<String>,
        #[arg(long)]
        build_tag: Option<String>,
        #[arg(long)]
        dest_tag: Option<String>,
        #[arg(short = 'D', long = "define", value_name = "NAME=VALUE")]
        defines: Vec<String>,
        #[arg(long = "undefine", value_name = "NAME")]
        undefines: Vec<String>,
    },
    /// Show a target; --json output restores with `kiln target apply`.
    Show {
        name: String,
        /// As of this event.
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Create or replace a target from `kiln target show --json` output.
    Apply { file: PathBuf },
    /// List targets.
    Ls(JsonOpt),
    /// Delete a target.
    Rm { name: String },
    /// The macro layers the target gives a build: its own, and its build tag's macro.* extra.
    Macros {
        name: String,
        #[command(flatten)]
        json: JsonOpt,
    },
}

pub fn target(hub: &HubOpts, cmd: &TargetCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        TargetCommand::Create {
            name,
            build_tag,
            dest_tag,
            defines,
        } => {
            let t = Target {
                name: name.clone(),
                build_tag: build_tag.clone(),
                dest_tag: dest_tag.clone(),
                macros: defines.iter().map(|d| define(d)).collect::<Result<_>>()?,
            };
            c.create_target(&t)?;
            println!("created target {name}");
        }
        TargetCommand::Edit {
            name,
            rename,
            build_tag,
            dest_tag,
            defines,
            undefines,
        } => {
            let e = TargetEdit {
                rename: rename.clone(),
                build_tag: build_tag.clone(),
                dest_tag: dest_tag.clone(),
                define: defines.iter().map(|d| define(d)).collect::<Result<_>>()?,
                undefine: undefines.clone(),
            };
            let t = c.edit_target(name, &e)?;
            println!("edited target {}", t.name);
        }
        TargetCommand::Show { name, event, json } => {
            let t = c.target(name, *event)?;
            if json.json {
                return print_json(&t).map(|()| ExitCode::SUCCESS);
            }
            println!("Name: {}", t.name);
            println!("Build tag: {}", t.build_tag);
            println!("Destination tag: {}", t.dest_tag);
            for (k, v) in &t.macros {
                println!("  %{k} {v}");
            }
        }
        TargetCommand::Apply { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let t: Target = serde_json::from_str(&text).with_context(|| format!("{}: not a target", file.display()))?;
            c.apply_target(&t)?;
            println!("applied target {}", t.name);
        }
        TargetCommand::Ls(j) => {
            let l = c.targets()?;
            if j.json {
                print_json(&l)?;
            } else {
                table(
                    &["NAME", "BUILD TAG", "DEST TAG", "MACROS"],
                    l.into_iter()
                        .map(|t| vec![t.name, t.build_tag, t.dest_tag, t.macros.len().to_string()])
                        .collect(),
                );
            }
        }
        TargetCommand::Rm { name } => {
            c.delete_target(name)?;
            println!("deleted target {name}");
        }
        TargetCommand::Macros { name, json } => {
            let m = c.target_macros(name)?;
            if json.json {
                return print_json(&m).map(|()| ExitCode::SUCCESS);
            }
            println!("# layer 2: target {}", m.target);
            for (k, v) in &m.target_macros {
                println!("%{k} {v}");
            }
            println!("# layer 4: build tag {}", m.build_tag);
            for (k, v) in &m.build_tag_macros {
                println!("%{k} {}  # from {}", v.value, v.from);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
