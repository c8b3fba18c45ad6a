//! `kiln tag inherit`: inheritance links (koji's add/edit/remove-tag-inheritance,
//! list-tag-inheritance).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use kiln_hub_api::model::*;

use super::*;

#[derive(Subcommand, Debug)]
pub enum InheritCommand {
    /// Add a parent (koji add-tag-inheritance).
    Add {
        child: String,
        parent: String,
        #[arg(long, default_value_t = 0)]
        priority: i64,
        #[arg(long)]
        maxdepth: Option<i64>,
        #[arg(long)]
        intransitive: bool,
        #[arg(long)]
        noconfig: bool,
        #[arg(long = "pkg-filter", value_name = "REGEX")]
        pkg_filter: Option<String>,
    },
    /// Edit a link (koji edit-tag-inheritance).
    Edit {
        child: String,
        parent: String,
        #[arg(long)]
        priority: Option<i64>,
        /// Maximum depth; `none` for unlimited.
        #[arg(long)]
        maxdepth: Option<String>,
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        intransitive: Option<bool>,
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        noconfig: Option<bool>,
        #[arg(long = "pkg-filter", value_name = "REGEX")]
        pkg_filter: Option<String>,
    },
    /// Remove a link.
    Rm { child: String, parent: String },
    /// List the parents; --full prints the whole walk with depths (koji list-tag-inheritance).
    Ls {
        tag: String,
        #[arg(long)]
        full: bool,
        #[arg(long)]
        reverse: bool,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

fn link_rows(links: &[LinkOut]) -> Vec<Vec<String>> {
    links
        .iter()
        .map(|l| {
            let mut flags = String::new();
            if l.intransitive {
                flags.push('I');
            }
            if l.noconfig {
                flags.push('N');
            }
            vec![
                l.priority.to_string(),
                l.parent.clone(),
                l.maxdepth.map_or("-".into(), |d| d.to_string()),
                if flags.is_empty() { "-".into() } else { flags },
                if l.pkg_filter.is_empty() {
                    "-".into()
                } else {
                    l.pkg_filter.clone()
                },
            ]
        })
        .collect()
}

pub(super) fn inherit(c: &Client, cmd: &InheritCommand) -> Result<ExitCode> {
    match cmd {
        InheritCommand::Add {
            child,
            parent,
            priority,
            maxdepth,
            intransitive,
            noconfig,
            pkg_filter,
        } => {
            let l = LinkIn {
                parent: parent.clone(),
                priority: *priority,
                maxdepth: *maxdepth,
                intransitive: *intransitive,
                noconfig: *noconfig,
                pkg_filter: pkg_filter.clone().unwrap_or_default(),
            };
            c.add_link(child, &l)?;
            println!("{child} now inherits from {parent} (priority {priority})");
        }
        InheritCommand::Edit {
            child,
            parent,
            priority,
            maxdepth,
            intransitive,
            noconfig,
            pkg_filter,
        } => {
            let maxdepth = match maxdepth.as_deref() {
                None => None,
                Some("none") | Some("None") | Some("") => Some(None),
                Some(d) => Some(Some(
                    d.parse::<i64>()
                        .with_context(|| format!("--maxdepth {d}: a number or none"))?,
                )),
            };
            let e = LinkEdit {
                priority: *priority,
                maxdepth,
                intransitive: *intransitive,
                noconfig: *noconfig,
                pkg_filter: pkg_filter.clone(),
            };
            c.edit_link(child, parent, &e)?;
            println!("edited {child} -> {parent}");
        }
        InheritCommand::Rm { child, parent } => {
            c.remove_link(child, parent)?;
            println!("{child} no longer inherits from {parent}");
        }
        InheritCommand::Ls {
            tag,
            full,
            reverse,
            event,
            json,
        } => {
            if *full {
                let w = c.full_inheritance(tag, *reverse, *event)?;
                if json.json {
                    return print_json(&w).map(|()| ExitCode::SUCCESS);
                }
                // koji list-tag-inheritance: the tag, then each entry indented by depth.
                println!("{tag}");
                for e in &w {
                    let mut flags = String::new();
                    flags.push(if e.link.maxdepth.is_some() { 'M' } else { '.' });
                    flags.push(if e.link.noconfig { 'N' } else { '.' });
                    flags.push(if e.link.intransitive { 'I' } else { '.' });
                    flags.push(if e.filter.is_empty() { '.' } else { 'F' });
                    println!("  {flags} {}{}", "   ".repeat((e.currdepth.max(1) - 1) as usize), e.tag);
                    for f in &e.filter {
                        println!("        {}filter: {f}", "   ".repeat((e.currdepth.max(1) - 1) as usize));
                    }
                }
            } else {
                let l = c.links(tag, *reverse, *event)?;
                if json.json {
                    return print_json(&l).map(|()| ExitCode::SUCCESS);
                }
                let rows = if *reverse {
                    l.iter()
                        .map(|l| {
                            let mut r = link_rows(std::slice::from_ref(l)).remove(0);
                            r[1] = l.child.clone();
                            r
                        })
                        .collect()
                } else {
                    link_rows(&l)
                };
                table(
                    &[
                        "PRIORITY",
                        if *reverse { "CHILD" } else { "PARENT" },
                        "MAXDEPTH",
                        "FLAGS",
                        "PKG_FILTER",
                    ],
                    rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
