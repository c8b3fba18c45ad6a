//! `kiln user`: users, permissions and API tokens.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use kiln_hub_api::model::*;

use super::*;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. With --db, directly in the database (the bootstrap, before any admin exists); prints a new token once.
    Create {
        name: String,
        /// Give the user the admin permission.
        #[arg(long)]
        admin: bool,
        /// Give a permission; repeatable.
        #[arg(long = "perm", value_name = "PERM")]
        perms: Vec<String>,
        /// Read a password for `kiln login` from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Work on this database directly instead of through a hub.
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
    /// Grant a permission.
    Grant { name: String, perm: String },
    /// Revoke a permission.
    Revoke { name: String, perm: String },
    /// List users.
    Ls(JsonOpt),
    /// Create an API token for a user (yourself unless admin), shown once; or list or revoke tokens.
    Token {
        name: String,
        /// A label for the token.
        #[arg(long = "name", value_name = "LABEL")]
        label: Option<String>,
        /// Lifetime in days.
        #[arg(long)]
        expires_days: Option<i64>,
        /// List the user's tokens instead.
        #[arg(long, conflicts_with_all = ["revoke", "label", "expires_days"])]
        list: bool,
        /// Revoke the token with this id instead.
        #[arg(long, value_name = "ID")]
        revoke: Option<i64>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

pub fn user(hub: &HubOpts, cmd: &UserCommand) -> Result<ExitCode> {
    match cmd {
        UserCommand::Create {
            name,
            admin,
            perms,
            password_stdin,
            db,
        } => {
            let mut perms = perms.clone();
            if *admin {
                perms.push("admin".into());
            }
            let password = if *password_stdin {
                Some(super::login::read_password()?)
            } else {
                None
            };
            if let Some(db) = db {
                let token = kiln_hub::bootstrap_user_blocking(db, name, password.as_deref(), &perms)?;
                eprintln!("created user {name}; its API token (shown once):");
                println!("{token}");
            } else {
                let c = hub.client()?;
                c.create_user(&NewUser {
                    name: name.clone(),
                    password,
                    perms,
                })?;
                println!("created user {name}");
            }
        }
        UserCommand::Grant { name, perm } => {
            hub.client()?.grant(name, perm)?;
            println!("granted {perm} to {name}");
        }
        UserCommand::Revoke { name, perm } => {
            hub.client()?.revoke(name, perm)?;
            println!("revoked {perm} from {name}");
        }
        UserCommand::Ls(j) => {
            let users = hub.client()?.users()?;
            if j.json {
                print_json(&users)?;
            } else {
                table(
                    &["USER", "KIND", "PERMISSIONS"],
                    users
                        .into_iter()
                        .map(|u| vec![u.name, u.kind, u.perms.join(",")])
                        .collect(),
                );
            }
        }
        UserCommand::Token {
            name,
            label,
            expires_days,
            list,
            revoke,
            json,
        } => {
            let c = hub.client()?;
            if *list {
                let t = c.tokens(name)?;
                if json.json {
                    print_json(&t)?;
                } else {
                    table(
                        &["ID", "NAME", "CREATED", "EXPIRES", "REVOKED"],
                        t.into_iter()
                            .map(|t| {
                                vec![
                                    t.id.to_string(),
                                    t.name,
                                    t.created.to_string(),
                                    t.expires.map_or("-".into(), |e| e.to_string()),
                                    t.revoked.map_or("-".into(), |e| e.to_string()),
                                ]
                            })
                            .collect(),
                    );
                }
            } else if let Some(id) = revoke {
                c.revoke_token(*id)?;
                println!("revoked token {id}");
            } else {
                let t = c.create_token(
                    name,
                    &TokenIn {
                        name: label.clone(),
                        expires_days: *expires_days,
                    },
                )?;
                eprintln!("token {} for {name} (shown once):", t.id);
                println!("{}", t.token);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
