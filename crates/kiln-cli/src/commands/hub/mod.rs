//! The hub's commands: `kiln serve`, and the client commands (docs/hub.md)
//! that talk to a hub through `kiln_hub_api`'s typed client, one module per
//! command family. Option names follow koji's where a command mirrors one.

mod builder;
mod builds;
mod channels;
mod hosts;
mod images;
mod inherit;
mod login;
mod pipelines;
mod pkg;
mod serve;
mod submit;
mod tagging;
mod tags;
mod targets;
mod tasks;
mod users;

pub use builder::{BuilderArgs, builder};
pub use builds::{BuildsCommand, builds};
pub use channels::{ChannelCommand, channel};
pub use hosts::{HostCommand, host};
pub use images::{image_download, image_import, image_ls, image_rm};
pub use login::{LoginArgs, login};
pub use pipelines::{PipelineCommand, pipeline};
pub use serve::{ServeArgs, serve};
pub use submit::{SubmitArgs, submit};
pub use tagging::{ListTaggedArgs, TagBuildArgs, list_tagged, tag_build};
pub use tags::{TagCommand, tag};
pub use targets::{TargetCommand, target};
pub use tasks::{TaskCommand, task};
pub use users::{UserCommand, user};

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use kiln_hub_api::Client;
use serde_json::Value;

/// Where the hub is and who we are: `--hub`/`KILN_HUB`, `--token`/`KILN_TOKEN`,
/// else `~/.config/kiln/client.toml`.
#[derive(Args, Debug, Clone, Default)]
pub struct HubOpts {
    /// The hub's URL (default: KILN_HUB, else `hub` in ~/.config/kiln/client.toml).
    #[arg(long, global = true, env = "KILN_HUB", value_name = "URL")]
    pub hub: Option<String>,
    /// API token (default: KILN_TOKEN, else `token` in client.toml).
    #[arg(
        long,
        global = true,
        env = "KILN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct ClientConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("kiln/client.toml"))
}

fn read_config() -> Result<ClientConfig> {
    let Some(p) = config_path() else {
        return Ok(ClientConfig::default());
    };
    match std::fs::read_to_string(&p) {
        Ok(s) => toml::from_str(&s).with_context(|| format!("reading {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

impl HubOpts {
    /// The hub's URL and the token, from the options, the environment or client.toml.
    pub fn resolved(&self) -> Result<(String, Option<String>)> {
        let cfg = read_config()?;
        let hub = self
            .hub
            .clone()
            .or(cfg.hub)
            .context("no hub given: pass --hub URL, set KILN_HUB, or run `kiln login --hub URL`")?;
        Ok((hub, self.token.clone().or(cfg.token)))
    }

    pub fn client(&self) -> Result<Client> {
        let (hub, token) = self.resolved()?;
        Ok(Client::new(&hub, token)?)
    }
}

/// A listing command's `--json`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct JsonOpt {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn define(d: &str) -> Result<(String, String)> {
    let (k, v) = d
        .split_once('=')
        .filter(|(k, _)| kiln_core::macros::is_macro_name(k))
        .with_context(|| format!("--define {d}: expected NAME=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

fn extra(x: &str) -> Result<(String, Value)> {
    let (k, v) = x
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .with_context(|| format!("-x {x}: expected KEY=VALUE"))?;
    // koji parses extra values as Python literals; kiln takes JSON, else a string.
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn extra_values_are_json_or_strings() {
        assert_eq!(extra("a=1").expect("ok"), ("a".into(), json!(1)));
        assert_eq!(extra("a=x y").expect("ok"), ("a".into(), json!("x y")));
        assert!(extra("=x").is_err());
    }
}
