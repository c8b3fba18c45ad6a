//! `kiln host`: builders as registered on the hub.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use kiln_hub_api::model::*;

use super::*;

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// Register a builder; prints its host token once.
    Add {
        name: String,
        /// Channels it serves, comma-separated.
        #[arg(long, default_value = "default", value_delimiter = ',')]
        channels: Vec<String>,
        /// Its Debian architecture (default: this machine's).
        #[arg(long)]
        arch: Option<String>,
        /// Tasks it runs at once.
        #[arg(long, default_value_t = 1)]
        capacity: i64,
    },
    /// List builders with their load and last heartbeat.
    Ls(JsonOpt),
}

pub fn host(hub: &HubOpts, cmd: &HostCommand) -> Result<ExitCode> {
    let c = hub.client()?;
    match cmd {
        HostCommand::Add {
            name,
            channels,
            arch,
            capacity,
        } => {
            let arch = match arch {
                Some(a) => a.clone(),
                None => kiln_host::debian_arch(),
            };
            let h = c.create_host(&NewHost {
                name: name.clone(),
                arch,
                channels: channels.clone(),
                capacity: *capacity,
            })?;
            eprintln!("registered builder {name}; its host token (shown once):");
            println!("{}", h.token);
        }
        HostCommand::Ls(j) => {
            let l = c.hosts()?;
            if j.json {
                return print_json(&l).map(|()| ExitCode::SUCCESS);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            table(
                &["HOST", "ARCH", "CHANNELS", "LOAD", "STATE", "LAST SEEN"],
                l.into_iter()
                    .map(|h| {
                        vec![
                            h.name,
                            h.arch,
                            h.channels.join(","),
                            format!("{}/{}", h.load, h.capacity),
                            h.state.to_string(),
                            h.last_seen.map_or("never".into(), |t| format!("{} s ago", now - t)),
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
