//! `kiln tag`: tags, their configuration, extra and history (koji's
//! add-tag, edit-tag, taginfo, list-tags, list-history).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use kiln_hub_api::model::*;

use super::*;

#[derive(Subcommand, Debug)]
pub enum TagCommand {
    /// Create a tag.
    Create {
        name: String,
        /// A parent tag (linked at priority 0).
        #[arg(long)]
        parent: Option<String>,
        /// Architectures, space- or comma-separated.
        #[arg(long)]
        arches: Option<String>,
        /// Permission required to change the tag's content.
        #[arg(long)]
        perm: Option<String>,
        /// Create it locked.
        #[arg(long)]
        locked: bool,
        /// Extra: KEY=VALUE (JSON value, else string); repeatable.
        #[arg(short = 'x', long = "extra", value_name = "KEY=VALUE")]
        extra: Vec<String>,
    },
    /// Edit a tag.
    Edit {
        name: String,
        #[arg(long)]
        rename: Option<String>,
        #[arg(long)]
        arches: Option<String>,
        #[arg(long, conflicts_with = "unlock")]
        lock: bool,
        #[arg(long)]
        unlock: bool,
        /// Permission required to change the tag's content.
        #[arg(long, conflicts_with = "no_perm")]
        perm: Option<String>,
        /// Remove the tag's permission requirement.
        #[arg(long)]
        no_perm: bool,
        #[arg(short = 'x', long = "extra", value_name = "KEY=VALUE")]
        extra: Vec<String>,
        #[arg(short = 'r', long = "remove-extra", value_name = "KEY")]
        remove_extra: Vec<String>,
        /// Block a key so it is not inherited.
        #[arg(short = 'b', long = "block-extra", value_name = "KEY")]
        block_extra: Vec<String>,
    },
    /// A tag's configuration and extra.
    Info {
        name: String,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// List tags.
    Ls {
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Delete a tag.
    Rm { name: String },
    /// Every change to a tag: who, when, what.
    History {
        name: String,
        /// The history up to this event, of the tag that had the name then.
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Inheritance links.
    #[command(subcommand)]
    Inherit(super::inherit::InheritCommand),
    /// The build config: arches and extra through the inheritance, with where each came from.
    Config {
        name: String,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Package lists.
    #[command(subcommand)]
    Pkg(super::pkg::PkgCommand),
}

pub fn tag(hub: &HubOpts, cmd: &TagCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        TagCommand::Create {
            name,
            parent,
            arches,
            perm,
            locked,
            extra: x,
        } => {
            let extra: BTreeMap<String, Value> = x.iter().map(|x| extra(x)).collect::<Result<_>>()?;
            let t = c.create_tag(&NewTag {
                name: name.clone(),
                arches: arches.clone(),
                perm: perm.clone(),
                locked: *locked,
                extra,
                parent: parent.clone(),
            })?;
            println!("created tag {} (id {})", t.name, t.id);
        }
        TagCommand::Edit {
            name,
            rename,
            arches,
            lock,
            unlock,
            perm,
            no_perm,
            extra: x,
            remove_extra,
            block_extra,
        } => {
            let e = TagEdit {
                rename: rename.clone(),
                arches: arches.clone().map(Some),
                perm: if *no_perm { Some(None) } else { perm.clone().map(Some) },
                locked: if *lock {
                    Some(true)
                } else if *unlock {
                    Some(false)
                } else {
                    None
                },
                extra: x.iter().map(|x| extra(x)).collect::<Result<_>>()?,
                remove_extra: remove_extra.clone(),
                block_extra: block_extra.clone(),
            };
            let t = c.edit_tag(name, &e)?;
            println!("edited tag {}", t.name);
        }
        TagCommand::Info { name, event, json } => {
            let t = c.tag(name, *event)?;
            if json.json {
                return print_json(&t).map(|()| ExitCode::SUCCESS);
            }
            println!("Tag: {} [{}]", t.name, t.id);
            println!("Arches: {}", t.arches.as_deref().unwrap_or("-"));
            println!("Locked: {}", if t.locked { "yes" } else { "no" });
            println!("Required permission: {}", t.perm.as_deref().unwrap_or("-"));
            if !t.extra.is_empty() {
                println!("Tag options:");
                for (k, v) in &t.extra {
                    match (&v.value, v.blocked) {
                        (_, true) => println!("  {k} : (blocked)"),
                        (Some(v), false) => println!("  {k} : {v}"),
                        (None, false) => println!("  {k}"),
                    }
                }
            }
        }
        TagCommand::Ls { event, json } => {
            let all = c.tags(*event)?;
            if json.json {
                print_json(&all)?;
            } else {
                table(
                    &["TAG", "ARCHES", "LOCKED", "PERM"],
                    all.into_iter()
                        .map(|t| {
                            vec![
                                t.name,
                                t.arches.unwrap_or_else(|| "-".into()),
                                if t.locked { "yes".into() } else { "no".into() },
                                t.perm.unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TagCommand::Rm { name } => {
            c.delete_tag(name)?;
            println!("deleted tag {name}");
        }
        TagCommand::History { name, event, json } => {
            let h = c.tag_history(name, *event)?;
            if json.json {
                print_json(&h)?;
            } else {
                table(
                    &["EVENT", "TIME", "USER", "CHANGE", "WHAT", "DETAIL"],
                    h.into_iter()
                        .map(|e| {
                            vec![
                                e.event.to_string(),
                                e.time.to_string(),
                                e.user.unwrap_or_else(|| "-".into()),
                                e.change,
                                e.table,
                                e.detail.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TagCommand::Config { name, event, json } => {
            let b = c.build_config(name, *event)?;
            if json.json {
                return print_json(&b).map(|()| ExitCode::SUCCESS);
            }
            match &b.arches {
                Some(a) => println!("arches: {} (from {})", a.value.as_str().unwrap_or_default(), a.from),
                None => println!("arches: -"),
            }
            for (k, v) in &b.extra {
                println!("{k} = {} (from {})", v.value, v.from);
            }
        }
        TagCommand::Inherit(i) => return super::inherit::inherit(&c, i),
        TagCommand::Pkg(p) => return super::pkg::pkg(&c, p),
    }
    Ok(ExitCode::SUCCESS)
}
