//! `kiln login`: a password exchanged for a token kept in client.toml.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_hub_api::model::*;

use super::*;

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    hub: HubOpts,
    /// User name.
    #[arg(long, short = 'u')]
    user: String,
    /// Token lifetime in days (default: no expiry).
    #[arg(long)]
    expires_days: Option<i64>,
}

pub(super) fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .context("reading the password from stdin")?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        bail!("no password on stdin");
    }
    Ok(s)
}

/// `kiln login`: exchanges a password (read from stdin) for a token and
/// keeps hub and token in client.toml (mode 0600).
pub fn login(a: &LoginArgs) -> Result<ExitCode> {
    let client = HubOpts {
        hub: a.hub.hub.clone(),
        token: None,
    }
    .client()?;
    eprintln!("password for {} (from stdin):", a.user);
    let password = read_password()?;
    let t = client.login(&LoginIn {
        user: a.user.clone(),
        password,
        token_name: Some("kiln login".into()),
        expires_days: a.expires_days,
    })?;
    let path = config_path().context("no HOME to keep the token in")?;
    let mut cfg = read_config()?;
    cfg.hub = a.hub.hub.clone().or(cfg.hub);
    cfg.token = Some(t.token);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let text = toml::to_string(&cfg)?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(text.as_bytes())?;
    }
    println!("logged in as {}; token stored in {}", a.user, path.display());
    Ok(ExitCode::SUCCESS)
}
