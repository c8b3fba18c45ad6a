//! `kiln tag pkg`: a tag's package list (koji's add-pkg, block-pkg,
//! remove-pkg, list-pkgs).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use kiln_hub_api::model::*;

use super::*;

#[derive(Subcommand, Debug)]
pub enum PkgCommand {
    /// Add packages to a tag's list (koji add-pkg).
    Add {
        tag: String,
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        owner: Option<String>,
        /// Change a locked tag (admins).
        #[arg(long)]
        force: bool,
    },
    /// Block packages on a tag (koji block-pkg).
    Block {
        tag: String,
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// Remove packages from a tag's own list (koji remove-pkg).
    Rm {
        tag: String,
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// List a tag's packages (koji list-pkgs).
    Ls {
        tag: String,
        /// Include inherited entries.
        #[arg(long)]
        inherit: bool,
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

/// Adds (or blocks) packages on a tag's own list, one request each.
fn set_packages(
    c: &Client,
    tag: &str,
    packages: &[String],
    owner: Option<&str>,
    blocked: bool,
    force: bool,
) -> Result<()> {
    for p in packages {
        let entry = PackageIn {
            package: p.clone(),
            owner: owner.map(str::to_string),
            blocked,
        };
        c.set_package(tag, &entry, force)?;
    }
    Ok(())
}

pub(super) fn pkg(c: &Client, cmd: &PkgCommand) -> Result<ExitCode> {
    match cmd {
        PkgCommand::Add {
            tag,
            packages,
            owner,
            force: f,
        } => {
            set_packages(c, tag, packages, owner.as_deref(), false, *f)?;
            println!("added {} to {tag}", packages.join(", "));
        }
        PkgCommand::Block {
            tag,
            packages,
            force: f,
        } => {
            set_packages(c, tag, packages, None, true, *f)?;
            println!("blocked {} in {tag}", packages.join(", "));
        }
        PkgCommand::Rm {
            tag,
            packages,
            force: f,
        } => {
            for p in packages {
                c.remove_package(tag, p, *f)?;
            }
            println!("removed {} from {tag}", packages.join(", "));
        }
        PkgCommand::Ls {
            tag,
            inherit,
            event,
            json,
        } => {
            let l = c.packages(tag, *inherit, *event)?;
            if json.json {
                return print_json(&l).map(|()| ExitCode::SUCCESS);
            }
            table(
                &["PACKAGE", "TAG", "OWNER", "BLOCKED"],
                l.into_iter()
                    .map(|p| {
                        vec![
                            p.package,
                            p.tag,
                            p.owner,
                            if p.blocked { "[BLOCKED]".into() } else { String::new() },
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
